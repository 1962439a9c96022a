"""make_fixtures.py - small random-weight models and their PyTorch outputs.

Writes, for each fixture, NAME.safetensors (a model file, written by the same
exporter the training scripts use) and NAME.ref.safetensors (inputs and the
outputs PyTorch computes on them; float64 scalars go in its metadata as JSON
so that no precision is lost). The C tests compare gmserve against these.
Run with Debian's torch: /usr/bin/python3 tests/make_fixtures.py tests/fixtures
"""
import json
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models", "train"))
import gmfile  # noqa: E402
import pixelcnn_fixtures  # noqa: E402  (tests/, beside this file)
import translator_fixtures  # noqa: E402  (tests/, beside this file)
import pixelrnn_fixtures  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
torch.manual_seed(1234)
torch.set_num_threads(1)


def randomize_bn(seq):
    """Non-trivial running statistics and affine parameters, so folding is tested."""
    for m in seq.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n) * 0.5)
            m.running_var.copy_(torch.rand(n) * 1.5 + 0.5)
            m.weight.data.copy_(torch.randn(n) * 0.3 + 1.0)
            m.bias.data.copy_(torch.randn(n) * 0.3)
    return seq.eval()


def ref(name, tensors, doubles):
    gmfile.write(os.path.join(OUT, name + ".ref.safetensors"),
                 {k: v.float().contiguous() if v.is_floating_point() else v for k, v in tensors.items()},
                 {k: json.dumps([float(x) for x in v]) for k, v in doubles.items()})


def model(name, tensors, meta):
    gmfile.write(os.path.join(OUT, name + ".safetensors"), tensors, dict({"gm.format": "1"}, **meta))


# ---------- NADE ----------

def nade_logp64(W, c, V, b, order, x, relu):
    """The NADE of docs/model-files.md evaluated line by line in float64. x: (B, D)."""
    W, c, V, b, x = (t.double() for t in (W, c, V, b, x))
    B, D = x.shape
    a = c.expand(B, -1).clone()
    lp = torch.zeros(B, dtype=torch.float64)
    for k in range(D):
        i = int(order[k])
        h = torch.relu(a) if relu else torch.sigmoid(a)
        logit = b[i] + h @ V[i]
        lp += x[:, i] * nn.functional.logsigmoid(logit) + (1 - x[:, i]) * nn.functional.logsigmoid(-logit)
        a = a + torch.outer(x[:, i], W[:, i])
    return lp


def nade_fixture(name, h, w, H, relu, order_dtype, scale, n_inputs):
    D = h * w
    W, V = torch.randn(H, D) * scale, torch.randn(D, H) * scale
    c, b = torch.randn(H) * 0.5, torch.randn(D) * 0.5
    order = torch.randperm(D) if order_dtype is not None else torch.arange(D)
    tensors = {"W": W, "c": c, "V": V, "b": b}
    meta = {"gm.family": "nade", "gm.image": f"{h}x{w}x1", "gm.description": f"fixture {name}"}
    if order_dtype is not None:
        tensors["ordering"] = order.to(order_dtype)
    if relu:
        meta["gm.activation"] = "relu"
    model(name, tensors, meta)
    if n_inputs == "all":
        x = torch.tensor([[(s >> i) & 1 for i in range(D)] for s in range(2 ** D)], dtype=torch.float32)
    else:
        x = (torch.rand(n_inputs, D) < torch.rand(n_inputs, 1)).float()
    lp = nade_logp64(W, c, V, b, order, x, relu)
    feat = (torch.relu if relu else torch.sigmoid)(x.double() @ W.double().T + c.double())
    ref(name, {"x": x, "features": feat}, {"logp": lp.tolist()})


# ---------- VAE ----------

def vae_fixture(name, h, w, C, Z, enc, dec, n, iw_k):
    D = h * w * C
    enc, dec = randomize_bn(enc), randomize_bn(dec)
    el, et = gmfile.layer_list(enc, "enc")
    dl, dt = gmfile.layer_list(dec, "dec")
    model(name, dict(et, **dt), {"gm.family": "vae", "gm.image": f"{h}x{w}x{C}", "gm.latent_dim": str(Z),
                                 "gm.encoder": el, "gm.decoder": dl, "gm.likelihood": "bernoulli"})
    x = (torch.rand(n, h, w, C) < 0.4).float()           # channels last, as gmserve takes it
    x_nchw = x.permute(0, 3, 1, 2).contiguous()
    z = torch.randn(n, Z)
    with torch.no_grad():
        stats = enc(x_nchw)
        logits = dec(z)
        if logits.dim() == 4:
            logits = logits.permute(0, 2, 3, 1)
        probs = torch.sigmoid(logits.reshape(n, D))
        tensors = {"x": x.reshape(n, D), "mu": stats[:, :Z], "logvar": stats[:, Z:], "z": z, "probs": probs}
        doubles = {}
        if iw_k:
            # float64 importance-sampled log p(x) with K = iw_k, and its standard error
            enc64, dec64 = enc.double(), dec.double()
            st = enc64(x_nchw.double())
            mu, lv = st[:, :Z], st[:, Z:]
            lps, ses, elbos = [], [], []
            xf = x.reshape(n, D).double()
            for r in range(n):
                eps = torch.randn(iw_k, Z, dtype=torch.float64)
                zz = mu[r] + torch.exp(0.5 * lv[r]) * eps
                lg = dec64(zz)
                if lg.dim() == 4:
                    lg = lg.permute(0, 2, 3, 1)
                lg = lg.reshape(iw_k, D)
                ll = (xf[r] * lg - nn.functional.softplus(lg)).sum(1)
                lw = ll - 0.5 * (zz ** 2).sum(1) + 0.5 * (eps ** 2).sum(1) + 0.5 * lv[r].sum()
                lps.append(float(torch.logsumexp(lw, 0) - math.log(iw_k)))
                wn = torch.exp(lw - lw.max())
                ses.append(float(wn.std() / (math.sqrt(iw_k) * wn.mean())))
                kl = 0.5 * (mu[r] ** 2 + torch.exp(lv[r]) - 1 - lv[r]).sum()
                elbos.append(float(ll.mean() - kl))
            doubles = {"logp": lps, "logp_se": ses, "elbo": elbos, "k": [iw_k]}
    ref(name, tensors, doubles)


# ---------- GAN ----------

def gan_fixture(name, h, w, C, Z, classes, gen, disc, encoder, dtype, output):
    D = h * w * C
    K = len(classes)
    gen, disc, encoder = (randomize_bn(m) if m is not None else None for m in (gen, disc, encoder))
    meta = {"gm.family": "gan", "gm.image": f"{h}x{w}x{C}", "gm.latent_dim": str(Z), "gm.output": output}
    tensors = {}
    for key, net, prefix in (("gm.generator", gen, "gen"), ("gm.discriminator", disc, "disc"),
                             ("gm.encoder", encoder, "enc")):
        if net is None:
            continue
        layers, t = gmfile.layer_list(net, prefix, dtype)
        meta[key] = layers
        tensors.update(t)
        # the reference must use the weights as stored: round them through dtype
        for p in list(net.parameters()) + list(net.buffers()):
            if p.is_floating_point():
                p.data.copy_(p.data.to(dtype).float())
    if K:
        meta["gm.num_classes"] = str(K)
        meta["gm.class_names"] = classes
    model(name, tensors, meta)
    n = 6
    z = torch.randn(n, Z)
    labels = torch.arange(n) % max(K, 1)
    with torch.no_grad():
        zin = torch.cat([z, nn.functional.one_hot(labels, K).float()], 1) if K else z
        y = gen(zin)
        if y.dim() == 4:
            y = y.permute(0, 2, 3, 1)
        y = y.reshape(n, D)
        pixels = ((y + 1) / 2 if output == "tanh" else y).clamp(0, 1)
        out = {"z": z, "labels": labels.to(torch.int64), "pixels": pixels}
        x = torch.rand(4, h, w, C)  # images in [0, 1], channels last
        xin = (2 * x - 1 if output == "tanh" else x).permute(0, 3, 1, 2)
        out["x"] = x.reshape(4, D)
        if disc is not None:
            out["disc"] = disc(xin).reshape(4)
        if encoder is not None:
            out["enc"] = encoder(xin)
    ref(name, out, {})


# ---------- AAE ----------

class GaussianHeadEncoder(nn.Module):
    """The AAE encoder of the popular PyTorch GAN collections: a trunk, then
    mu and logvar heads (their forward() reparameterizes; the served code is
    the mean, exported through encode())."""

    def __init__(self, trunk, width, Z):
        super().__init__()
        self.trunk, self.mu, self.logvar = trunk, nn.Linear(width, Z), nn.Linear(width, Z)

    def encode(self, x):
        h = self.trunk(x)
        return self.mu(h), self.logvar(h)


def aae_fixture(name, h, w, C, Z, enc, dec, output, n, **prior):
    """The model file through gmexport.save_aae (with its probes; prior:
    save_aae's prior arguments) and, for images x and latents z: PyTorch's
    codes, decoded images and reconstructions, as gmserve serves them
    (channels last, in [0, 1])."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import gmexport
    D = h * w * C
    enc, dec = randomize_bn(enc), randomize_bn(dec)
    gaussian = isinstance(enc, GaussianHeadEncoder)
    enc_mod = gmexport.method(enc, "encode") if gaussian else enc
    gmexport.save_aae(os.path.join(OUT, name + ".safetensors"), enc_mod, dec, image=f"{h}x{w}x{C}", latent_dim=Z,
                      encoder_head="gaussian" if gaussian else "point", output=output, **prior)
    x = torch.rand(n, h, w, C)
    z = torch.randn(n, Z)

    def to_net(img):  # channels last [0, 1] -> NCHW in the decoder's range
        img = img.reshape(-1, h, w, C).permute(0, 3, 1, 2)
        return 2 * img - 1 if output == "tanh" else img

    def to_pixels(y):  # NCHW (or flat) decoder output -> channels last [0, 1]
        y = y.reshape(-1, C, h, w).permute(0, 2, 3, 1).reshape(-1, D)
        return ((y + 1) / 2 if output == "tanh" else y).clamp(0, 1)

    with torch.no_grad():
        code = enc.encode(to_net(x))[0] if gaussian else enc(to_net(x))
        ref(name, {"x": x.reshape(n, D), "code": code, "z": z, "decoded": to_pixels(dec(z)),
                   "reconstructed": to_pixels(dec(code))}, {})


def aae_fixtures():
    aae_fixture("aae_conv", 28, 28, 1, 6,
                nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 8, 4, 2, 1),
                              nn.BatchNorm2d(8), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 7 * 7, 6)),
                nn.Sequential(nn.Linear(6, 8 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (8, 7, 7)),
                              nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.ConvTranspose2d(4, 1, 4, 2, 1), nn.Sigmoid()),
                "sigmoid", 5)
    # eriklindernoren/PyTorch-GAN's aae.py shape: MLP, LeakyReLU, BatchNorm1d, Gaussian head, tanh decoder
    aae_fixture("aae_gauss_rgb", 6, 6, 3, 4,
                GaussianHeadEncoder(nn.Sequential(nn.Flatten(), nn.Linear(108, 32), nn.LeakyReLU(0.2),
                                                  nn.Linear(32, 32), nn.BatchNorm1d(32), nn.LeakyReLU(0.2)), 32, 4),
                nn.Sequential(nn.Linear(4, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.BatchNorm1d(32),
                              nn.LeakyReLU(0.2), nn.Linear(32, 108), nn.Tanh(), nn.Unflatten(1, (3, 6, 6))),
                "tanh", 5)
    # a decoder that gives 0.5 everywhere (zero weights and bias, then a sigmoid): the reconstruction
    # error of `gmserve eval --aae` is then known by hand for any images
    dec = nn.Sequential(nn.Linear(4, 784), nn.Sigmoid())
    nn.init.zeros_(dec[0].weight)
    nn.init.zeros_(dec[0].bias)
    aae_fixture("aae_half", 28, 28, 1, 4, nn.Sequential(nn.Flatten(), nn.Linear(784, 4)), dec, "sigmoid", 2)


def aae_mixture_fixture():
    """The paper's label-conditioned prior: three Gaussians in a 2-D code
    space, one per class, their means apart and their stds unequal. On a
    stream of its own, so that the fixtures after it stay as committed."""
    with torch.random.fork_rng():
        torch.manual_seed(9)
        aae_fixture("aae_mixture", 8, 8, 1, 2,
                    nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2)),
                    nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 64), nn.Sigmoid(),
                                  nn.Unflatten(1, (1, 8, 8))),
                    "sigmoid", 4, prior="mixture", prior_means=torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 3.0]]),
                    prior_stds=torch.tensor([0.5, 0.25, 1.0]), class_names=["left", "right", "up"])


def aae_mean_fixture():
    """A mixture AAE whose code is the mean pixel (one linear unit of
    weights 1/784, bias 0) and whose decoder gives 0.5 everywhere: which
    component each image falls in, and so what `gmserve eval --aae` reports
    as the components' accuracy, is known by hand. Four components with
    equal stds, so an image's component is the one of the nearest mean;
    nothing here is random but the reference images, on a stream of their
    own."""
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 1))
    nn.init.constant_(enc[1].weight, 1 / 784)
    nn.init.zeros_(enc[1].bias)
    dec = nn.Sequential(nn.Linear(1, 784), nn.Sigmoid())
    nn.init.zeros_(dec[0].weight)
    nn.init.zeros_(dec[0].bias)
    with torch.random.fork_rng():
        torch.manual_seed(10)
        aae_fixture("aae_mixture_mean", 28, 28, 1, 1, enc, dec, "sigmoid", 2, prior="mixture",
                    prior_means=torch.tensor([[0.0], [0.25], [0.5], [1.0]]), prior_stds=torch.tensor([0.1] * 4))


# ---------- VAE likelihoods (torch.distributions, float64) ----------

def discretized_logistic_pixelcnn(x, mu, log_s):
    """One-component discretized logistic as PixelCNN++ writes it, on its [-1, 1]
    scale (bin half-width 1/255, open edge bins): our [0, 1] pixels, locations
    and scales map by 2t - 1 and 2s."""
    x, mu, inv_s = 2 * x - 1, 2 * mu - 1, torch.exp(-(log_s + math.log(2)))
    centered = x - mu
    plus_in, min_in = inv_s * (centered + 1 / 255), inv_s * (centered - 1 / 255)
    log_cdf_plus = plus_in - nn.functional.softplus(plus_in)
    log_one_minus_cdf_min = -nn.functional.softplus(min_in)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta)))


def likelihood_fixture(name):
    """Decoder outputs and pixels (float32, as the C test feeds them) with the
    float64 log p(x | outputs) summed over 8 pixels and the per-pixel means."""
    D = 8
    logits = torch.tensor([-12.0, -3.0, -0.4, 1e-4, 0.0, 0.9, 4.0, 15.0])
    gray = torch.tensor([0.05, 0.3, 0.5, 0.5, 0.0, 0.75, 1.0, 0.9])
    loc = torch.tensor([0.1, -0.1, 0.5, 0.6, 0.95, 0.3, 1.1, 0.42])
    log_s = torch.tensor([-4.0, -2.0, -3.0, -1.5, -5.0, -2.5, -3.5, -4.5])
    levels = torch.tensor([0.0, 3.0, 64.0, 128.0, 250.0, 76.0, 255.0, 107.0]) / 255
    cases = {
        "bernoulli": (logits, gray,
                      torch.distributions.Bernoulli(logits=logits.double(), validate_args=False), None),
        "continuous_bernoulli": (logits, gray, torch.distributions.ContinuousBernoulli(logits=logits.double()), None),
        "gaussian": (loc, gray, torch.distributions.Normal(loc.double(), 0.1), None),
        "gaussian_learned": (torch.cat([loc, log_s]), gray,
                             torch.distributions.Normal(loc.double(), log_s.double().exp()), None),
        "discretized_logistic": (torch.cat([loc, log_s]), levels, None,
                                 discretized_logistic_pixelcnn(levels.double(), loc.double(), log_s.double())),
    }
    tensors, doubles = {}, {}
    for kind, (params, x, dist, logp) in cases.items():
        x = x.float()
        tensors[kind + ".params"], tensors[kind + ".x"] = params.float(), x
        if dist is not None:
            logp = dist.log_prob(x.double())
            if kind != "gaussian" and kind != "gaussian_learned":
                doubles[kind + ".mean"] = dist.mean.tolist()
        doubles[kind + ".logp"] = [logp.sum().item()]
    assert all(t.numel() in (D, 2 * D) for t in tensors.values())
    ref(name, tensors, doubles)


# ---------- layer graphs: one file of op cases ----------

class GraphCases:
    """Cases of graph_ops.safetensors: for case c, metadata "c.graph" (the
    graph JSON, written by hand next to the PyTorch code it stands for) and
    "c.inputs" (input names in order), tensors "c.in.<name>" [B, ...] (a
    label is [B] floats holding integers), "c.out" [B, ...] (PyTorch's
    float32 output) and the case's weights "c.<w>"."""

    def __init__(self):
        self.tensors, self.meta, self.names = {}, {}, []

    def w(self, case, name, t):
        key = f"{case}.{name}"
        self.tensors[key] = t.detach().float().contiguous()
        return key

    def add(self, case, graph, inputs, out):
        self.names.append(case)
        self.meta[case + ".graph"] = graph
        self.meta[case + ".inputs"] = [k for k, _ in inputs]
        for k, v in inputs:
            self.tensors[f"{case}.in.{k}"] = v.float().contiguous()
        self.tensors[case + ".out"] = out.detach().float().contiguous()

    def write(self, name):
        self.meta["cases"] = self.names
        gmfile.write(os.path.join(OUT, name), self.tensors, self.meta)


def random_graph(g, c, rng, B):
    """A random graph over x [4, 6, 6] and y [4], built op by op next to the
    PyTorch call it stands for; an op that does not fit the current value is
    skipped. Differential coverage of the op combinations the hand-written
    cases do not reach (folding next to named values, buffer reuse, every
    op after every other)."""
    F = nn.functional
    vals = {"x": torch.randn(B, 4, 6, 6), "y": torch.randn(B, 4)}
    inputs = [("x", vals["x"]), ("y", vals["y"])]
    graph, prev = [], "x"
    for i in range(rng.randint(1, 8)):
        x, o, y = vals[prev], None, None
        k = rng.choice(["conv", "convt", "pad", "up", "pool", "norm", "act", "bin", "cat", "split", "shuffle", "lin"])
        if x.dim() != 4 and k not in ("act", "lin", "bin", "norm"):
            k = "act"
        if k == "conv":
            gr = rng.choice([d for d in (1, 2, 4) if x.shape[1] % d == 0])
            w, b = torch.randn(4, x.shape[1] // gr, rng.randint(1, 3), rng.randint(1, 3)) * 0.3, torch.randn(4)
            pad, dil = rng.choice([0, "same", [1, 0]]), rng.choice([1, [1, 2]])
            p2, d2 = (pad, pad) if pad in (0, "same") else pad, (dil, dil) if dil == 1 else dil
            if pad == "same" or all(x.shape[2 + a] + 2 * p2[a] > d2[a] * (w.shape[2 + a] - 1) for a in (0, 1)):
                y = F.conv2d(x, w, b, padding=tuple(pad) if isinstance(pad, list) else pad, dilation=dil, groups=gr)
                o = {"op": "conv2d", "weight": g.w(c, f"w{i}", w), "bias": g.w(c, f"b{i}", b), "padding": pad,
                     "dilation": dil, "groups": gr}
        elif k == "convt" and x.shape[2] <= 8:
            gr = rng.choice([d for d in (1, 2) if x.shape[1] % d == 0])
            w, st = torch.randn(x.shape[1], 4 // gr, rng.randint(1, 3), rng.randint(2, 3)) * 0.3, rng.choice([1, [2, 1]])
            y = F.conv_transpose2d(x, w, None, stride=st, groups=gr)
            o = {"op": "conv_transpose2d", "weight": g.w(c, f"w{i}", w), "stride": st, "groups": gr}
        elif k == "pad":
            p, m = [rng.randint(0, 2) for _ in range(4)], rng.choice(["zero", "reflect", "replicate"])
            if m != "reflect" or max(p) < min(x.shape[2], x.shape[3]):
                y = F.pad(x, p, mode="constant", value=0.25) if m == "zero" else F.pad(x, p, mode=m)
                o = dict({"op": "pad", "pad": p, "mode": m}, **({"value": 0.25} if m == "zero" else {}))
        elif k == "up" and x.shape[2] <= 8:
            m = rng.choice(["nearest", "bilinear"])
            ac = {"align_corners": rng.random() < 0.5} if m == "bilinear" else {}
            how = {"scale_factor": rng.choice([1, 2])} if rng.random() < 0.5 else \
                {"size": [rng.randint(2, 11), rng.randint(2, 11)]}
            y = F.interpolate(x, mode=m, **how, **ac)
            o = dict({"op": "upsample", "mode": m}, **how, **ac)
        elif k == "pool":
            ks = rng.randint(1, 3)
            pd, st = rng.randint(0, ks // 2), rng.randint(1, 2)
            if rng.random() < 0.5:
                y, o = F.max_pool2d(x, ks, st, pd), {"op": "max_pool2d", "kernel_size": ks, "stride": st, "padding": pd}
            else:
                cip = rng.random() < 0.5
                y = F.avg_pool2d(x, ks, st, pd, count_include_pad=cip)
                o = {"op": "avg_pool2d", "kernel_size": ks, "stride": st, "padding": pd, "count_include_pad": cip}
        elif k == "norm":
            j, C = rng.randint(0, 3), x.shape[1]
            if j == 0 and x.dim() == 4:
                y, o = F.instance_norm(x), {"op": "instance_norm"}
            elif j == 1 and C % 2 == 0:
                gw, gb = torch.randn(C), torch.randn(C)
                y = F.group_norm(x, 2, gw, gb)
                o = {"op": "group_norm", "groups": 2, "weight": g.w(c, f"gw{i}", gw), "bias": g.w(c, f"gb{i}", gb)}
            elif j == 2:
                y, o = F.layer_norm(x, list(x.shape[-1:])), {"op": "layer_norm", "normalized_shape": list(x.shape[-1:])}
            else:
                d = rng.choice([0, -1])
                y, o = torch.softmax(x, dim=d + 1 if d >= 0 else d), {"op": "softmax", "dim": d}
        elif k == "act":
            a = rng.choice(["relu", "elu", "gelu", "silu", "softplus", "hardtanh", "tanh", "sigmoid", "leaky_relu",
                            "dropout"])
            fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "dropout": lambda t: t}.get(a) or getattr(F, a)
            y, o = fn(x), {"op": a}
        elif k == "lin":
            w, b = torch.randn(4, x[0].numel()) * 0.2, torch.randn(4)
            y, o = x.flatten(1) @ w.T + b, {"op": "linear", "weight": g.w(c, f"w{i}", w), "bias": g.w(c, f"b{i}", b)}
        elif k == "bin":  # the same shape, or a [C] vector over a map's channels
            other = rng.choice([n for n, v in vals.items() if v.shape == x.shape or
                                (v.dim() == 2 and x.dim() == 4 and v.shape[1] == x.shape[1])])
            v = vals[other].view(B, -1, 1, 1) if vals[other].dim() == 2 and x.dim() == 4 else vals[other]
            op = rng.choice(["add", "mul"])
            y, o = (x + v if op == "add" else x * v), {"op": op, "inputs": [prev, other]}
        elif k == "cat":
            others = [n for n, v in vals.items() if v.dim() == x.dim() and v.shape[2:] == x.shape[2:]]
            pick = [prev] + rng.sample(others, min(len(others), rng.randint(0, 2)))
            y, o = torch.cat([vals[n] for n in pick], 1), {"op": "concat", "inputs": pick}
        elif k == "split" and x.shape[1] >= 2:
            a = rng.randint(1, x.shape[1] - 1)
            vals[f"s{i}a"], vals[f"s{i}b"] = torch.split(x, [a, x.shape[1] - a], 1)
            graph.append({"op": "split", "sizes": [a, x.shape[1] - a], "names": [f"s{i}a", f"s{i}b"]})
            prev = f"s{i}a"
        elif k == "shuffle" and x.shape[1] % 4 == 0:
            y, o = F.pixel_shuffle(x, 2), {"op": "pixel_shuffle", "upscale_factor": 2}
        if o is not None:
            o["name"] = f"v{i}"
            vals[o["name"]], prev = y, o["name"]
            graph.append(o)
    if not graph or graph[-1]["op"] == "split":
        graph.append({"op": "relu"})
        vals[prev] = F.relu(vals[prev])
    g.add(c, graph, inputs, vals[prev])


def graph_fixtures():
    torch.manual_seed(16)
    g, B, F = GraphCases(), 3, nn.functional
    with torch.no_grad():
        # a residual MLP block: h is read twice, so nothing may be fused into its linear
        x = torch.randn(B, 6)
        w1, b1, w2 = torch.randn(6, 6) * 0.5, torch.randn(6), torch.randn(6, 6) * 0.5
        h = x @ w1.T + b1
        c = "residual"
        g.add(c, [{"op": "linear", "weight": g.w(c, "w1", w1), "bias": g.w(c, "b1", b1), "name": "h"},
                  {"op": "relu"}, {"op": "dropout"}, {"op": "linear", "weight": g.w(c, "w2", w2), "name": "r"},
                  {"op": "add", "inputs": ["h", "r"]}, {"op": "tanh"}],
              [("x", x)], torch.tanh(h + F.relu(h) @ w2.T))

        # a conditional generator: label -> embedding, z concatenated with
        # it; a label map expanded over the image and concatenated on
        # channels; split into halves for a gated (GLU-style) output
        z, label = torch.randn(B, 4), torch.tensor([2.0, 0.0, 1.0])
        emb, emb2 = torch.randn(3, 2), torch.randn(3, 3)
        wl, bl = torch.randn(12, 6) * 0.4, torch.randn(12)
        wc, bc = torch.randn(4, 6, 3, 3) * 0.3, torch.randn(4)
        li = label.long()
        t = (torch.cat([z, emb[li]], 1) @ wl.T + bl).view(B, 3, 2, 2)
        t = torch.cat([t, emb2[li].view(B, 3, 1, 1).expand(B, 3, 2, 2)], 1)
        t = F.conv2d(t, wc, bc, padding=1)
        a, b = torch.split(t, [2, 2], 1)
        c = "cond_gen"
        g.add(c, [{"op": "embedding", "weight": g.w(c, "emb", emb), "inputs": ["label"], "name": "e"},
                  {"op": "concat", "inputs": ["z", "e"], "dim": 0},
                  {"op": "linear", "weight": g.w(c, "wl", wl), "bias": g.w(c, "bl", bl)},
                  {"op": "reshape", "shape": [3, 2, 2], "name": "t"},
                  {"op": "embedding", "weight": g.w(c, "emb2", emb2), "inputs": ["label"]},
                  {"op": "expand", "shape": [3, 2, 2], "name": "map"},
                  {"op": "concat", "inputs": ["t", "map"]},
                  {"op": "conv2d", "weight": g.w(c, "wc", wc), "bias": g.w(c, "bc", bc), "padding": 1},
                  {"op": "split", "sizes": [2, 2], "dim": -3, "names": ["a", "b"]},
                  {"op": "sigmoid", "inputs": ["b"], "name": "gate"},
                  {"op": "mul", "inputs": ["a", "gate"]}],
              [("z", z), ("label", label)], a * torch.sigmoid(b))

        # broadcasting: a per-channel vector, a [C, 1, 1] and a single value
        # over a map; concatenation along the last dimension
        x, v = torch.randn(B, 3, 4, 5), torch.randn(B, 3)
        s = torch.randn(B, 1)
        t = x + v.view(B, 3, 1, 1)
        u = t * s.view(B, 1, 1, 1)
        c = "broadcast"
        g.add(c, [{"op": "add", "inputs": ["x", "v"], "name": "t"},
                  {"op": "mul", "inputs": ["t", "s"], "name": "u"},
                  {"op": "reshape", "inputs": ["v"], "shape": [3, 1, 1], "name": "v3"},
                  {"op": "mul", "inputs": ["x", "v3"], "name": "xv"},
                  {"op": "concat", "inputs": ["u", "xv", "t"], "dim": -1}],
              [("x", x), ("v", v), ("s", s)], torch.cat([u, x * v.view(B, 3, 1, 1), t], -1))

        # convolutions: groups, dilation, non-square kernel / stride / padding, "same"
        x = torch.randn(B, 4, 7, 6)
        c1 = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), groups=2)
        c2 = nn.Conv2d(6, 6, 3, padding="same", dilation=(2, 1), groups=6)
        c3 = nn.Conv2d(6, 4, (4, 3), padding="same")
        t1 = nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2)
        t2 = nn.ConvTranspose2d(6, 3, 3, stride=2, dilation=2, padding=1, groups=3)
        bn = randomize_bn(nn.BatchNorm2d(6))
        c = "convs"
        conv = lambda m, n, **kw: dict({"op": "conv2d", "weight": g.w(c, n + ".w", m.weight),
                                        "bias": g.w(c, n + ".b", m.bias)}, **kw)
        convt = lambda m, n, **kw: dict({"op": "conv_transpose2d", "weight": g.w(c, n + ".w", m.weight),
                                         "bias": g.w(c, n + ".b", m.bias)}, **kw)
        g.add(c, [conv(c1, "c1", stride=[2, 1], padding=[1, 0], groups=2),
                  {"op": "batch_norm", "weight": g.w(c, "bn.g", bn.weight), "bias": g.w(c, "bn.b", bn.bias),
                   "mean": g.w(c, "bn.m", bn.running_mean), "var": g.w(c, "bn.v", bn.running_var)},
                  {"op": "relu"},
                  conv(c2, "c2", padding="same", dilation=[2, 1], groups=6),
                  conv(c3, "c3", padding="same"),
                  convt(t1, "t1", stride=[2, 3], padding=[1, 0], output_padding=[1, 2], groups=2),
                  convt(t2, "t2", stride=2, dilation=2, padding=1, groups=3)],
              [("image", x)], t2(t1(c3(c2(F.relu(bn(c1(x))))))))

        # a ResNet block with reflection padding, and DCGAN-style upsampling
        x = torch.randn(B, 3, 5, 6)
        r1, r2 = nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)
        u1 = nn.Conv2d(3, 2, 3, padding=1)
        h = x + r2(F.pad(F.relu(r1(F.pad(x, [1, 1, 1, 1], mode="reflect"))), [1, 1, 1, 1], mode="replicate"))
        up = u1(F.interpolate(h, scale_factor=2, mode="nearest"))
        out = torch.cat([F.interpolate(up, size=(7, 9), mode="bilinear", align_corners=False),
                         F.interpolate(up, size=(7, 9), mode="bilinear", align_corners=True),
                         F.interpolate(up, size=(7, 9), mode="nearest"),
                         F.interpolate(F.pad(up, [2, 1, 0, 1], value=1.5), size=(7, 9))], 1)
        c = "resblock_upsample"
        g.add(c, [{"op": "pad", "pad": [1, 1, 1, 1], "mode": "reflect"},
                  {"op": "conv2d", "weight": g.w(c, "r1.w", r1.weight), "bias": g.w(c, "r1.b", r1.bias)},
                  {"op": "relu"}, {"op": "pad", "pad": [1, 1, 1, 1], "mode": "replicate"},
                  {"op": "conv2d", "weight": g.w(c, "r2.w", r2.weight), "bias": g.w(c, "r2.b", r2.bias), "name": "r"},
                  {"op": "add", "inputs": ["image", "r"]},
                  {"op": "upsample", "scale_factor": 2, "mode": "nearest"},
                  {"op": "conv2d", "weight": g.w(c, "u1.w", u1.weight), "bias": g.w(c, "u1.b", u1.bias),
                   "padding": 1, "name": "up"},
                  {"op": "upsample", "inputs": ["up"], "size": [7, 9], "mode": "bilinear", "name": "b0"},
                  {"op": "upsample", "inputs": ["up"], "size": [7, 9], "mode": "bilinear", "align_corners": True,
                   "name": "b1"},
                  {"op": "upsample", "inputs": ["up"], "size": [7, 9], "name": "n0"},
                  {"op": "pad", "inputs": ["up"], "pad": [2, 1, 0, 1], "value": 1.5},
                  {"op": "upsample", "size": [7, 9], "name": "n1"},
                  {"op": "concat", "inputs": ["b0", "b1", "n0", "n1"]}],
              [("image", x)], out)

        # normalizations and the other activations
        x = torch.randn(B, 3, 6, 5)
        k1, k2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3)
        in1 = nn.InstanceNorm2d(4, affine=True)
        in2 = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
        gn, ln = nn.GroupNorm(2, 4), nn.LayerNorm([4, 3], eps=1e-4)
        for m in (in1, in2, gn, ln):
            m.weight.data.normal_(1, 0.3)
            m.bias.data.normal_(0, 0.3)
        in2.running_mean.normal_(0, 0.5)
        in2.running_var.uniform_(0.5, 2)
        in2.eval()
        pr1, pr2 = nn.PReLU(), nn.PReLU(4)
        pr1.weight.data.fill_(0.3)
        pr2.weight.data.uniform_(-0.5, 0.5)
        lin = nn.Linear(48, 10)
        h = F.gelu(in1(k1(x)))
        h = pr2(F.silu(gn(h)))
        h = F.elu(in2(k2(h)), alpha=0.8)                      # [4, 4, 3]
        h = F.softplus(ln(h), beta=1.5, threshold=2.0)
        h = F.gelu(pr1(lin(h.flatten(1))), approximate="tanh")
        out = torch.softmax(F.hardtanh(h, -0.4, 0.6) * 3, dim=-1)
        c = "norms"
        g.add(c, [{"op": "conv2d", "weight": g.w(c, "k1.w", k1.weight), "bias": g.w(c, "k1.b", k1.bias), "padding": 1},
                  {"op": "instance_norm", "weight": g.w(c, "in1.w", in1.weight), "bias": g.w(c, "in1.b", in1.bias)},
                  {"op": "gelu"},
                  {"op": "group_norm", "groups": 2, "weight": g.w(c, "gn.w", gn.weight), "bias": g.w(c, "gn.b", gn.bias)},
                  {"op": "silu"}, {"op": "prelu", "weight": g.w(c, "pr2", pr2.weight)},
                  {"op": "conv2d", "weight": g.w(c, "k2.w", k2.weight), "bias": g.w(c, "k2.b", k2.bias)},
                  {"op": "instance_norm", "weight": g.w(c, "in2.w", in2.weight), "bias": g.w(c, "in2.b", in2.bias),
                   "mean": g.w(c, "in2.m", in2.running_mean), "var": g.w(c, "in2.v", in2.running_var)},
                  {"op": "elu", "alpha": 0.8},
                  {"op": "layer_norm", "normalized_shape": [4, 3], "eps": 1e-4,
                   "weight": g.w(c, "ln.w", ln.weight), "bias": g.w(c, "ln.b", ln.bias)},
                  {"op": "softplus", "beta": 1.5, "threshold": 2.0}, {"op": "flatten"},
                  {"op": "linear", "weight": g.w(c, "lin.w", lin.weight), "bias": g.w(c, "lin.b", lin.bias)},
                  {"op": "prelu", "weight": g.w(c, "pr1", pr1.weight)}, {"op": "gelu", "approximate": "tanh"},
                  {"op": "hardtanh", "min": -0.4, "max": 0.6}, {"op": "dropout"},
                  {"op": "linear", "weight": g.w(c, "three", torch.eye(10) * 3)},  # the * 3
                  {"op": "softmax", "dim": -1}],
              [("image", x)], out)

        # pooling and pixel_shuffle
        x = torch.randn(B, 8, 7, 6)
        a = F.max_pool2d(x, (3, 2), stride=(2, 2), padding=(1, 1), dilation=(1, 2))
        b = F.avg_pool2d(x, (3, 2), stride=2, padding=1)
        d = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        e = F.pixel_shuffle(x, 2)
        c = "pools"
        g.add(c, [{"op": "max_pool2d", "kernel_size": [3, 2], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 2],
                   "name": "a"},
                  {"op": "avg_pool2d", "inputs": ["image"], "kernel_size": [3, 2], "stride": 2, "padding": 1, "name": "b"},
                  {"op": "avg_pool2d", "inputs": ["image"], "kernel_size": 3, "stride": 2, "padding": 1,
                   "count_include_pad": False, "name": "d"},
                  {"op": "pixel_shuffle", "inputs": ["image"], "upscale_factor": 2},
                  {"op": "max_pool2d", "kernel_size": 2, "name": "e"},
                  {"op": "flatten", "inputs": ["a"], "name": "fa"}, {"op": "flatten", "inputs": ["b"], "name": "fb"},
                  {"op": "flatten", "inputs": ["d"], "name": "fd"}, {"op": "flatten", "inputs": ["e"], "name": "fe"},
                  {"op": "concat", "inputs": ["fa", "fb", "fd", "fe"]}],
              [("image", x)], torch.cat([t.flatten(1) for t in (a, b, d, F.max_pool2d(e, 2))], 1))
    g.write("graph_ops.safetensors")

    r, rng = GraphCases(), __import__("random").Random(16)
    with torch.no_grad():
        for i in range(32):
            random_graph(r, f"r{i}", rng, 2)
    r.write("graph_random.safetensors")

    # a GAN generator fed by name, in its own argument order:
    # forward(label, z, onehot, code), the code at its prior mean (zeros)
    emb, wl, bl = torch.randn(2, 2), torch.randn(16, 9) * 0.5, torch.randn(16)
    graph = [{"op": "embedding", "weight": "gen.emb", "inputs": ["label"], "name": "e"},
             {"op": "concat", "inputs": ["z", "e", "onehot", "code"]},
             {"op": "linear", "weight": "gen.wl", "bias": "gen.bl"}, {"op": "tanh"}]
    model("gan_graph", {"gen.emb": emb, "gen.wl": wl, "gen.bl": bl},
          {"gm.family": "gan", "gm.image": "4x4x1", "gm.latent_dim": "3", "gm.num_classes": "2",
           "gm.class_names": ["a", "b"], "gm.generator": graph,
           "gm.generator_inputs": ["label", "z", "onehot", "code"], "gm.code_dim": "2"})
    z, labels = torch.randn(4, 3), torch.tensor([1, 0, 0, 1])
    with torch.no_grad():
        y = torch.tanh(torch.cat([z, emb[labels], F.one_hot(labels, 2).float(), torch.zeros(4, 2)], 1) @ wl.T + bl)
    ref("gan_graph", {"z": z, "labels": labels, "pixels": ((y + 1) / 2).clamp(0, 1)}, {})


# ---------- InfoGAN (categorical and continuous codes, Q network) ----------

class InfoGenerator(nn.Module):
    """forward(z, cat, code), as PyTorch GAN collections write InfoGAN's
    generator: the inputs concatenated, then a small deconvolution stack."""

    def __init__(self, Z, K, L):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(Z + K + L, 8 * 2 * 2), nn.BatchNorm1d(32), nn.ReLU())
        self.conv = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.ConvTranspose2d(4, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z, cat, code):
        return self.conv(self.fc(torch.cat([z, cat, code], 1)).view(-1, 8, 2, 2))


def infogan_fixture():
    """infogan_tiny: 8x8x1, Z = 3, 4 categories, 2 continuous codes, a Q
    network; the reference holds z, categories, codes, PyTorch's images
    (channels last, [0, 1]) and, for images x, Q's K logits + 2 codes."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import gmexport
    F = nn.functional
    Z, K, L, n = 3, 4, 2, 5
    gen = randomize_bn(InfoGenerator(Z, K, L))
    q = randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                                   nn.Linear(64, 16), nn.BatchNorm1d(16), nn.LeakyReLU(0.2), nn.Linear(16, K + L)))
    gmexport.save_gan(os.path.join(OUT, "infogan_tiny.safetensors"), gen, image="8x8x1", latent_dim=Z,
                      inputs=("z", "cat", "code"), code_dim=L, cat_dim=K, q_network=q)
    z, cats, codes, x = torch.randn(n, Z), torch.tensor([0, 3, 1, 2, 3]), torch.rand(n, L) * 2 - 1, torch.rand(n, 64)
    gen.eval()
    q.eval()
    with torch.no_grad():
        y = gen(z, F.one_hot(cats, K).float(), codes)
        prior = gen(z, torch.full((n, K), 1.0 / K), codes)
        qout = q(x.reshape(n, 1, 8, 8) * 2 - 1)
    ref("infogan_tiny", {"z": z, "cats": cats, "codes": codes, "pixels": ((y.reshape(n, 64) + 1) / 2).clamp(0, 1),
                         "prior_pixels": ((prior.reshape(n, 64) + 1) / 2).clamp(0, 1), "x": x, "q": qout}, {})


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[2:] == ["graph"]:  # only the graph cases: the other fixtures stay as committed
        graph_fixtures()
        return
    if sys.argv[2:] == ["infogan"]:  # only the InfoGAN case
        infogan_fixture()
        return
    if sys.argv[2:] == ["aae"]:  # only the AAE cases
        aae_fixtures()
        aae_mixture_fixture()
        aae_mean_fixture()
        return
    if sys.argv[2:] == ["aae_mixture"]:  # only the mixture-prior AAE
        aae_mixture_fixture()
        return
    if sys.argv[2:] == ["aae_mean"]:  # only the mean-pixel mixture AAE of test_eval_aae
        aae_mean_fixture()
        return
    if sys.argv[2:] == ["translator"]:  # only the translator cases
        translator_fixtures.main(OUT)
        return
    nade_fixture("nade_tiny", 2, 5, 6, relu=False, order_dtype=None, scale=1.0, n_inputs="all")
    nade_fixture("nade_tiny_relu", 3, 3, 7, relu=True, order_dtype=torch.int32, scale=1.0, n_inputs="all")
    nade_fixture("nade_ref", 28, 28, 64, relu=False, order_dtype=torch.int64, scale=0.1, n_inputs=8)

    vae_fixture("vae_mlp", 28, 28, 1, 8,
                nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16)),
                nn.Sequential(nn.Linear(8, 64), nn.BatchNorm1d(64), nn.LeakyReLU(0.1), nn.Linear(64, 784)),
                n=6, iw_k=5000)
    vae_fixture("vae_conv", 8, 8, 3, 4,
                nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.Sigmoid(),
                              nn.Conv2d(4, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128, 8)),
                nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Unflatten(1, (8, 2, 2)), nn.BatchNorm2d(8),
                              nn.ConvTranspose2d(8, 6, 3, 2, 1, output_padding=1), nn.BatchNorm2d(6), nn.Tanh(),
                              nn.ConvTranspose2d(6, 3, 4, 2, 1)),
                n=5, iw_k=0)

    gan_fixture("gan_cond", 16, 16, 1, 8, ["shirt", "shoe", "bag"],
                nn.Sequential(nn.Linear(11, 32 * 4 * 4), nn.BatchNorm1d(512), nn.ReLU(), nn.Unflatten(1, (32, 4, 4)),
                              nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                              nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Tanh()),
                nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                              nn.BatchNorm2d(16), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(256, 1)),
                nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 8)),
                torch.float16, "tanh")
    gan_fixture("gan_rgb", 6, 6, 3, 5, [],
                nn.Sequential(nn.Linear(5, 8 * 3 * 3), nn.ReLU(), nn.Unflatten(1, (8, 3, 3)),
                              nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid()),
                None, None, torch.bfloat16, "sigmoid")
    likelihood_fixture("likelihoods")
    graph_fixtures()
    aae_fixtures()
    aae_mixture_fixture()
    aae_mean_fixture()
    infogan_fixture()
    pixelcnn_fixtures.main(OUT)
    translator_fixtures.main(OUT)
    pixelrnn_fixtures.main(OUT)
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
