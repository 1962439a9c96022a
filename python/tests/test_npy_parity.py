"""Float replies: format=npy read by numpy.load, against PyTorch on the same
inputs, to 1e-4 of the output's scale (where 8-bit PNG replies can only be
checked to half a grey level), and against format=pixels of the same
request (the same float32 values). Skipped when build/gmserve (or $GMSERVE)
has not been built."""
import io
import json
import os
import unittest

import numpy
import torch

import common  # noqa: F401 (first: puts the package on sys.path)
from daemon import GMSERVE, Daemon
import gmexport
import zoo

REL = 1e-4


@unittest.skipUnless(os.access(GMSERVE, os.X_OK), f"{GMSERVE} not built")
class NpyParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Daemon("gmserve-npy-")
        torch.manual_seed(0)
        cls.vae = zoo.ConvVAE(z_dim=8).eval()
        cls.cond = zoo.randomize(zoo.CondDCGANGenerator(img_size=16), 1)
        files = {k: os.path.join(cls.server.dir, k + ".safetensors") for k in ("vae", "cond")}
        gmexport.save_vae(files["vae"], gmexport.method(cls.vae, "encode"), gmexport.method(cls.vae, "decode"),
                          image="28x28x1", latent_dim=8)
        gmexport.save_gan(files["cond"], cls.cond, image="16x16x1", latent_dim=16, inputs=("z", "label"),
                          num_classes=10)
        cls.server.start(files)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def post(self, path, body, accept=None):
        """A 200 reply's Content-Type and body."""
        status, headers, data = self.server.post_json(path, body, accept)
        self.assertEqual(status, 200, data[:300])
        return headers.get("Content-Type"), data

    def npy(self, path, body, accept=None):
        ctype, data = self.post(path, body, accept)
        self.assertIn(ctype, ("application/x-npy", "application/octet-stream"))
        a = numpy.load(io.BytesIO(data), allow_pickle=False)
        self.assertEqual(a.dtype, numpy.float32)
        return a

    def assert_close(self, what, got, want):
        want = want.double().numpy()
        self.assertEqual(got.shape, want.shape, what)
        diff = float(numpy.abs(got - want).max()) / max(1.0, float(numpy.abs(want).max()))
        self.assertLessEqual(diff, REL, f"{what}: max |difference| / scale {diff}")

    def test_vae_decode_npy_is_pytorch(self):
        z = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want = self.vae.decode(z).permute(0, 2, 3, 1)  # (n, H, W, C)
        got = self.npy("/v1/models/vae/decode", {"latents": z.tolist(), "format": "npy"})
        self.assert_close("vae decode npy", got, want)
        _, text = self.post("/v1/models/vae/decode", {"latents": z.tolist(), "format": "pixels"})
        pixels = numpy.array([im["pixels"] for im in json.loads(text)["images"]], dtype=numpy.float32)
        numpy.testing.assert_array_equal(got.reshape(4, -1), pixels)

    def test_cond_gan_decode_npy_is_pytorch(self):
        z = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
        labels = [3, 0, 9]
        with torch.no_grad():
            want = ((self.cond(z, torch.tensor(labels)) + 1) / 2).permute(0, 2, 3, 1)
        got = self.npy("/v1/models/cond/decode", {"latents": z.tolist(), "label": labels},
                       accept="application/octet-stream")
        self.assert_close("cond gan decode npy", got, want)

    def test_vae_encode_npy_is_pytorch(self):
        g = torch.Generator().manual_seed(1)
        x = (torch.rand(5, 1, 28, 28, generator=g) < 0.3).float()
        got = self.npy("/v1/models/vae/encode",
                       {"images": [{"pixels": im.flatten().tolist()} for im in x], "format": "npy"})
        with torch.no_grad():
            mu, _ = self.vae.encode(x)
        self.assert_close("vae encode npy", got, mu)


if __name__ == "__main__":
    unittest.main()
