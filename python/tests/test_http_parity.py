"""HTTP parity: models from the zoo, exported with gmexport and served by a
real build/gmserve on a loopback port, answer what PyTorch computes on the
same inputs. Skipped when build/gmserve (or $GMSERVE) has not been built.

Values that draw random numbers (sample, logp) are reproduced here with a
port of the server's generator (xoshiro256** seeded by splitmix64, Box-Muller
normals; each row i has its own stream (seed, i)), so they are checked
exactly, not statistically. Images come back as 8-bit PNG: a pixel is within
half a grey level of PyTorch's value mapped to [0, 1]; float outputs (encode,
logp) are within 1e-4 of the output's scale, max(1, max |PyTorch's|). The
largest differences measured are printed when GMSERVE_PARITY_VERBOSE is set.
"""
import base64
import json
import math
import os
import struct
import unittest
import zlib

import torch

import common  # noqa: F401 (first: puts the package on sys.path)
from daemon import GMSERVE, Daemon
import gmexport
import zoo

GREY = 1 / 255 + 1e-4  # an 8-bit pixel against a float in [0, 1]
REL = 1e-4
M64 = (1 << 64) - 1


# ---- the server's random streams (server/core/rng.c) ----

def _splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return x, z ^ (z >> 31)


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Stream:
    def __init__(self, seed, stream):
        _, h = _splitmix(stream)
        x = seed ^ h
        self.s = []
        for _ in range(4):
            x, v = _splitmix(x)
            self.s.append(v)
        self.spare = None

    def next(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def normal(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        u1, u2 = 1.0 - self.uniform(), self.uniform()
        rad, ang = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
        self.spare = rad * math.sin(ang)
        return rad * math.cos(ang)


def sampled_inputs(seed, n, Z, code_dim=0):
    """z (temperature 1, no truncation) and the drawn codes, Uniform(-1, 1)
    after z on the same stream, of rows 0..n-1."""
    zs, codes = [], []
    for i in range(n):
        r = Stream(seed, i)
        zs.append([r.normal() for _ in range(Z)])
        codes.append([2.0 * r.uniform() - 1.0 for _ in range(code_dim)])
    return torch.tensor(zs, dtype=torch.float32), torch.tensor(codes, dtype=torch.float32)


# ---- PNG, standard library only ----

def png_pixels(data):
    """An 8-bit PNG's pixels in [0, 1] as a float64 tensor [H, W, C]."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8, f"bit depth {depth}"
            c = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * c
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - c] if i >= c else 0
            b, d = prev[i], prev[i - c] if i >= c else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - d
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
        out += line
        prev = line
    return torch.tensor(list(out), dtype=torch.float64).reshape(h, w, c) / 255


@unittest.skipUnless(os.access(GMSERVE, os.X_OK), f"{GMSERVE} not built")
class HttpParity(unittest.TestCase):
    measured = {}

    @classmethod
    def setUpClass(cls):
        cls.server = Daemon("gmserve-parity-")
        torch.manual_seed(0)
        cls.vae = zoo.ConvVAE(z_dim=8).eval()
        cls.cond = zoo.randomize(zoo.CondDCGANGenerator(img_size=16), 1)
        cls.info = zoo.randomize(zoo.InfoGANGenerator(), 2)
        files = {k: os.path.join(cls.server.dir, k + ".safetensors") for k in ("vae", "cond", "info")}
        gmexport.save_vae(files["vae"], gmexport.method(cls.vae, "encode"), gmexport.method(cls.vae, "decode"),
                          image="28x28x1", latent_dim=8)
        gmexport.save_gan(files["cond"], cls.cond, image="16x16x1", latent_dim=16, inputs=("z", "label"),
                          num_classes=10)
        gmexport.save_gan(files["info"], cls.info, image="16x16x1", latent_dim=12, inputs=("z", "onehot", "code"),
                          num_classes=10, code_dim=2)
        cls.server.start(files)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("GMSERVE_PARITY_VERBOSE"):
            for k, v in sorted(cls.measured.items()):
                print(f"  max difference {k}: {v:.3g}")
        cls.server.close()

    def post(self, path, body):
        status, _, data = self.server.post_json(path, body)
        return status, json.loads(data)

    def images(self, path, body):
        """The reply's images as [n, H, W, C] in [0, 1]."""
        status, reply = self.post(path, dict(body, format="json"))
        self.assertEqual(status, 200, reply)
        return torch.stack([png_pixels(base64.b64decode(im["png"])) for im in reply["images"]])

    def record(self, what, diff):
        self.measured[what] = max(self.measured.get(what, 0.0), diff)

    def assert_pixels(self, what, got, want):
        """got: PNG pixels [n, H, W, C]; want: PyTorch's [n, C, H, W] in [0, 1]."""
        want = want.double().clamp(0, 1).permute(0, 2, 3, 1)
        self.assertEqual(got.shape, want.shape, what)
        diff = float((got - want).abs().max())
        self.record(what, diff)
        self.record(what + " (grey levels from PyTorch's, rounded)",
                    float((got * 255 - torch.round(want * 255)).abs().max()))
        self.assertLessEqual(diff, GREY, f"{what}: max |pixel difference| {diff}")

    def assert_close(self, what, got, want):
        got, want = torch.as_tensor(got, dtype=torch.float64), want.double()
        diff = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
        self.record(what, diff)
        self.assertLessEqual(diff, REL, f"{what}: max |difference| / scale {diff}")

    # ---- the VAE ----

    def binary_images(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(n, 1, 28, 28, generator=g) < 0.3).float()

    def test_vae_encode(self):
        x = self.binary_images(5, 1)
        status, reply = self.post("/v1/models/vae/encode", {"images": [{"pixels": im.flatten().tolist()} for im in x]})
        self.assertEqual(status, 200, reply)
        with torch.no_grad():
            mu, logvar = self.vae.encode(x)
        self.assert_close("vae encode z", [r["z"] for r in reply["results"]], mu)
        self.assert_close("vae encode logvar", [r["logvar"] for r in reply["results"]], logvar)

    def test_vae_decode_and_sample_mean(self):
        z = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want = self.vae.decode(z)
        self.assert_pixels("vae decode", self.images("/v1/models/vae/decode", {"latents": z.tolist()}), want)
        z, _ = sampled_inputs(31, 3, 8)
        with torch.no_grad():
            want = self.vae.decode(z)
        got = self.images("/v1/models/vae/sample", {"n": 3, "seed": 31, "mode": "mean"})
        self.assert_pixels("vae sample mode=mean", got, want)

    def test_vae_logp(self):
        """logp, elbo and se of K importance samples: z_k = mu + sd * eps_k with
        eps drawn on the row's stream (row, then k, then j), weights
        log p(x|z) + log p(z) - log q(z|x), a Bernoulli likelihood on the
        decoder's probabilities clamped to [eps, 1 - eps]."""
        x, K, seed = self.binary_images(3, 4), 6, 77
        status, reply = self.post("/v1/models/vae/logp",
                                  {"images": [{"pixels": im.flatten().tolist()} for im in x], "k": K, "seed": seed})
        self.assertEqual(status, 200, reply)
        eps32 = torch.finfo(torch.float32).eps
        want = []
        with torch.no_grad():
            mu, logvar = self.vae.encode(x)
            for i in range(len(x)):
                r = Stream(seed, i)
                m, lv = mu[i].double(), logvar[i].double()
                sd = torch.exp(0.5 * lv)
                eps = torch.tensor([[r.normal() for _ in range(8)] for _ in range(K)], dtype=torch.float64)
                z = (m + sd * eps).float()
                p = self.vae.decode(z).double().reshape(K, -1).clamp(eps32, 1 - eps32)
                xi = x[i].double().flatten()
                ll = (xi * p.log() + (1 - xi) * torch.log1p(-p)).sum(1)
                zd = z.double()
                lw = ll + 0.5 * lv.sum() + (-0.5 * zd * zd + 0.5 * eps * eps).sum(1)
                w = torch.exp(lw - lw.max())
                kl = 0.5 * (m * m + lv.exp() - 1 - lv).sum()
                se = w.std() / math.sqrt(K) / w.mean()
                want.append([float(lw.max() + torch.log(w.mean())), float(ll.mean() - kl), float(se)])
        want = torch.tensor(want, dtype=torch.float64)
        got = [[r["logp"], r["elbo"], r["se"]] for r in reply["results"]]
        self.assert_close("vae logp", [g[0] for g in got], want[:, 0])
        self.assert_close("vae elbo", [g[1] for g in got], want[:, 1])
        self.assert_close("vae se", [g[2] for g in got], want[:, 2])

    # ---- the GANs ----

    def test_conditional_dcgan(self):
        z = torch.randn(4, 16, generator=torch.Generator().manual_seed(5))
        labels = [3, 0, 9, 3]
        with torch.no_grad():
            want = (self.cond(z, torch.tensor(labels)) + 1) / 2
        got = self.images("/v1/models/cond/decode", {"latents": z.tolist(), "label": labels})
        self.assert_pixels("cond dcgan decode", got, want)
        z, _ = sampled_inputs(12, 3, 16)
        with torch.no_grad():
            want = (self.cond(z, torch.tensor([7, 7, 7])) + 1) / 2
        self.assert_pixels("cond dcgan sample", self.images("/v1/models/cond/sample", {"n": 3, "seed": 12, "label": 7}),
                           want)

    def infogan(self, z, labels, code):
        with torch.no_grad():
            return (self.info(z, torch.nn.functional.one_hot(torch.tensor(labels), 10).float(), code) + 1) / 2

    def test_infogan_decode(self):
        g = torch.Generator().manual_seed(6)
        z, code = torch.randn(4, 12, generator=g), torch.rand(4, 2, generator=g) * 2 - 1
        labels = [1, 4, 4, 8]
        got = self.images("/v1/models/info/decode", {"latents": z.tolist(), "label": labels, "code": code.tolist()})
        self.assert_pixels("infogan decode, a code per latent", got, self.infogan(z, labels, code))
        got = self.images("/v1/models/info/decode", {"latents": z.tolist(), "label": 2, "code": [0.5, -0.25]})
        self.assert_pixels("infogan decode, one code", got,
                           self.infogan(z, [2] * 4, torch.tensor([[0.5, -0.25]] * 4)))

    def test_infogan_sample(self):
        z, code = sampled_inputs(40, 3, 12, code_dim=2)
        got = self.images("/v1/models/info/sample", {"n": 3, "seed": 40, "label": 5})
        self.assert_pixels("infogan sample, drawn codes", got, self.infogan(z, [5] * 3, code))
        got = self.images("/v1/models/info/sample", {"n": 3, "seed": 40, "label": 5, "code": [-0.75, 0.5]})
        self.assert_pixels("infogan sample, a given code", got,
                           self.infogan(z, [5] * 3, torch.tensor([[-0.75, 0.5]] * 3)))

    def test_models_list_code_dim(self):
        status, _, data = self.server.request("/v1/models")
        self.assertEqual(status, 200, data[:300])
        listing = json.loads(data)
        models = listing["models"] if isinstance(listing, dict) else listing
        dims = {m["name"]: m["code_dim"] for m in models}
        self.assertEqual(dims, {"vae": 0, "cond": 0, "info": 2})

    def test_code_refusals(self):
        status, reply = self.post("/v1/models/info/decode", {"latents": [[0] * 12], "label": 0})
        self.assertEqual(status, 422)
        self.assertIn("code is required", reply["error"]["message"])
        status, reply = self.post("/v1/models/info/decode", {"latents": [[0] * 12], "label": 0, "code": [0]})
        self.assertEqual(status, 422)
        self.assertIn("code must be an array of 2 numbers", reply["error"]["message"])
        status, reply = self.post("/v1/models/cond/sample", {"label": 0, "code": [0, 0]})
        self.assertEqual(status, 422)
        self.assertIn("no continuous code input", reply["error"]["message"])


if __name__ == "__main__":
    unittest.main()
