"""torch_core.py - the PyTorch side of `make bench-core`.

Builds the default architectures of issue 2 with random weights (NADE H=500
on 28x28; MLP VAE 784-512-256-(2x32) / 32-256-512-784; DCGAN generator
z=64 -> 128x7x7 -> 64x14x14 -> 1x28x28; the gated PixelCNN of the first
recipe, 7 layers of 32 channels; the Row LSTM of train_pixelrnn.py's
default recipe, 3 layers of 32, k_in 7, k_state 7), writes them as gmserve model files into
OUT, and times PyTorch on the same weights with the same thread count.
PyTorch's PixelCNN and PixelRNN sampling is the naive loop (one forward
pass per pixel): its first row of 28 pixels is timed and the rate scaled to
784 pixels, since every pass costs the same.
Writes a JSON map "op/batch" -> images per CPU-second (time.process_time,
every thread of the process) to OUT/torch.ROUND.json, ROUND the second
argument; bench_core.sh runs these rounds interleaved with gmserve's.
BENCH_OPS (a comma-separated list of operation names, e.g. pixelcnn_logp)
times those only.
"""
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models", "train"))
import gmfile  # noqa: E402
import gmexport  # noqa: E402  (on the path through gmfile)
import pixelcnn_net  # noqa: E402
import pixelrnn_net  # noqa: E402

OUT = sys.argv[1]
ROUND = sys.argv[2] if len(sys.argv) > 2 else "0"
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)
torch.manual_seed(0)
BATCHES = [1, 16, 64, 256]
D, H, Z_VAE, Z_GAN = 784, 500, 32, 64


def timeit(fn, batch, min_time=0.15, max_reps=1000):
    """Median CPU seconds per call over >= 3 calls and >= min_time, at most
    max_reps calls: the rule bench_core.c uses for gmserve."""
    fn()  # warm-up
    times = []
    start = time.process_time()
    while len(times) < 3 or (time.process_time() - start < min_time and len(times) < max_reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return batch / statistics.median(times)


# NADE: the usual cumsum formulation (B x D x H intermediate)
W = torch.randn(H, D) * 0.05
c, V, b = torch.zeros(H), torch.randn(D, H) * 0.05, torch.zeros(D)


def nade_logp(x):
    contrib = x[:, :, None] * W.T[None]                  # (B, D, H)
    a = c + torch.cumsum(contrib, 1) - contrib           # exclusive prefix sums
    logits = (torch.sigmoid(a) * V[None]).sum(-1) + b
    return -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


def nade_sample(n):
    a = c.expand(n, H).clone()
    x = torch.zeros(n, D)
    for i in range(D):
        p = torch.sigmoid(torch.sigmoid(a) @ V[i] + b[i])
        x[:, i] = torch.bernoulli(p)
        a += x[:, i:i + 1] * W[:, i]
    return x


gmfile.write(os.path.join(OUT, "nade.safetensors"), {"W": W, "c": c, "V": V, "b": b},
             {"gm.format": "1", "gm.family": "nade", "gm.image": "28x28x1"})

enc = nn.Sequential(nn.Flatten(), nn.Linear(D, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                    nn.Linear(256, 2 * Z_VAE)).eval()
dec = nn.Sequential(nn.Linear(Z_VAE, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, D)).eval()
el, et = gmfile.layer_list(enc, "enc")
dl, dt = gmfile.layer_list(dec, "dec")
gmfile.write(os.path.join(OUT, "vae.safetensors"), dict(et, **dt),
             {"gm.format": "1", "gm.family": "vae", "gm.image": "28x28x1", "gm.latent_dim": str(Z_VAE),
              "gm.encoder": el, "gm.decoder": dl})

K_VAE = 100


def vae_logp(x, k=K_VAE):
    """The importance-sampled log p(x) with k samples per image, as gmserve's."""
    stats = enc(x.view(-1, 1, 28, 28))
    mu, logvar = stats[:, :Z_VAE], stats[:, Z_VAE:]
    sd = torch.exp(0.5 * logvar)
    eps = torch.randn(x.shape[0], k, Z_VAE)
    z = mu[:, None] + sd[:, None] * eps
    logits = dec(z.reshape(-1, Z_VAE)).view(x.shape[0], k, D)
    ll = -nn.functional.binary_cross_entropy_with_logits(logits, x[:, None].expand_as(logits),
                                                         reduction="none").sum(-1)
    lw = ll + (-0.5 * z * z + 0.5 * eps * eps).sum(-1) + 0.5 * logvar.sum(-1, keepdim=True)
    return torch.logsumexp(lw, 1) - torch.log(torch.tensor(float(k)))


gen = nn.Sequential(nn.Linear(Z_GAN, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
                    nn.Unflatten(1, (128, 7, 7)), nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64),
                    nn.ReLU(), nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh()).eval()
gl, gt = gmfile.layer_list(gen, "gen")
gmfile.write(os.path.join(OUT, "gan.safetensors"), gt,
             {"gm.format": "1", "gm.family": "gan", "gm.image": "28x28x1", "gm.latent_dim": str(Z_GAN),
              "gm.generator": gl})

pcnn = pixelcnn_net.GatedPixelCNN(c=32, layers=7).eval()
gmexport.save_pixelcnn(os.path.join(OUT, "pixelcnn.safetensors"), pcnn, image="28x28x1")


prnn = pixelrnn_net.RowLSTM(hidden=32, layers=3, k_in=7, k_state=7, head=64).eval()
gmexport.save_pixelrnn(os.path.join(OUT, "pixelrnn.safetensors"), prnn, image="28x28x1")


def pixelcnn_row(n, pixels=28, net=pcnn):
    """The naive loop's first `pixels` steps: a whole forward pass each."""
    x = torch.zeros(n, 1, 28, 28)
    for i in range(pixels):
        p = torch.sigmoid(net(x)[:, 0, i // 28, i % 28])
        x[:, 0, i // 28, i % 28] = torch.bernoulli(p)
    return x


if os.environ.get("BENCH_WRITE_ONLY"):  # bench-http needs only the files
    sys.exit(0)

results = {}
OPS = set(filter(None, os.environ.get("BENCH_OPS", "").split(",")))  # empty: every operation


def cell(op, B, fn, scale=1, **kw):
    """Times op at batch B unless BENCH_OPS leaves it out."""
    if not OPS or op in OPS:
        results[f"{op}/{B}"] = timeit(fn, B, **kw) / scale


with torch.no_grad():
    for B in BATCHES:
        x = (torch.rand(B, D) < 0.3).float()
        cell("nade_logp", B, lambda: nade_logp(x))
        if B <= 64:  # 784 sequential steps; 256 adds nothing but minutes
            cell("nade_sample", B, lambda: nade_sample(B), min_time=0.2, max_reps=5)
        xi = x.view(B, 1, 28, 28)
        cell("vae_encode", B, lambda: enc(xi))
        cell("vae_logp", B, lambda: vae_logp(x))
        cell("gan_sample", B, lambda: (gen(torch.randn(B, Z_GAN)) + 1) / 2)
        cell("pixelcnn_logp", B, lambda: pixelcnn_net.nll(pcnn(xi), xi))
        if B <= 64:  # PyTorch's naive loop: 28 of its 784 forward passes, scaled
            cell("pixelcnn_sample", B, lambda: pixelcnn_row(B), scale=28, min_time=0.2, max_reps=3)
        cell("pixelrnn_logp", B, lambda: pixelrnn_net.nll(prnn(xi), xi))
        if B <= 64:
            cell("pixelrnn_sample", B, lambda: pixelcnn_row(B, net=prnn), scale=28, min_time=0.2, max_reps=3)
json.dump(results, open(os.path.join(OUT, f"torch.{ROUND}.json"), "w"), indent=1)
