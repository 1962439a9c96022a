"""peer.py - the peer server of `make bench-peer`: FastAPI + uvicorn + PyTorch
on the same model files as gmserve, written the way such a server usually
is (one request at a time per worker process, no batching, float32 eager
PyTorch, PIL for PNGs).

    PEER_MODELS=nade=models/nade.safetensors,vae=models/vae.safetensors,gan=models/gan.safetensors \\
        /usr/bin/python3 -m uvicorn --app-dir bench peer:app --workers 2 --port 18572

It answers the gmserve routes the benchmark drives, with their parameters
and reply shapes: POST /v1/models/{name}/logp (NADE exact; VAE with k
importance samples, default 100), /encode (VAE: z and logvar), /sample
(VAE mean images, GAN with a label drawn per image unless given), each
taking an image/png body or gmserve's JSON bodies, and GET /readyz.
Networks are built from the files' layer lists as torch modules; the
safetensors reader is the exporter's (python/gmexport). Random draws use
torch's generator seeded by `seed`, not gmserve's streams: bench/bench_peer.py
checks the arithmetic against gmserve with gmserve's own draws (vae_logp's
eps argument) before it times anything.
"""
import base64
import io
import json
import math
import os
import sys

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request, Response
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from gmexport.safetensors import read  # noqa: E402

torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "1")))


def build(layers, T):
    """An nn.Sequential from a gmserve layer list (the ops the bundled files use)."""
    mods = []
    for op in layers:
        kind = op["op"]
        if kind == "linear":
            w = T[op["weight"]]
            m = nn.Linear(w.shape[1], w.shape[0], bias="bias" in op)
        elif kind in ("conv2d", "conv_transpose2d"):
            w = T[op["weight"]]
            if kind == "conv2d":
                m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], op.get("stride", 1), op.get("padding", 0),
                              bias="bias" in op)
            else:
                m = nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2:], op.get("stride", 1),
                                       op.get("padding", 0), op.get("output_padding", 0), bias="bias" in op)
        elif kind == "batch_norm":
            n = T[op["mean"]].numel()
            m = nn.BatchNorm1d(n, op.get("eps", 1e-5)) if len(mods) and isinstance(mods[-1], nn.Linear) \
                else nn.BatchNorm2d(n, op.get("eps", 1e-5))
            m.running_mean.copy_(T[op["mean"]])
            m.running_var.copy_(T[op["var"]])
        elif kind in ("relu", "sigmoid", "tanh", "flatten"):
            m = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "flatten": nn.Flatten}[kind]()
        elif kind == "leaky_relu":
            m = nn.LeakyReLU(op.get("slope", 0.01))
        elif kind == "reshape":
            m = nn.Unflatten(1, op["shape"])
        else:
            raise ValueError(f"peer: op {kind} is not supported")
        with torch.no_grad():
            if "weight" in op and hasattr(m, "weight"):
                m.weight.copy_(T[op["weight"]])
            if "bias" in op:
                m.bias.copy_(T[op["bias"]])
        mods.append(m)
    return nn.Sequential(*mods).eval()


class Model:
    def __init__(self, name, path):
        T, meta = read(path)
        T = {k: v.float() for k, v in T.items()}
        self.name, self.family = name, meta["gm.family"]
        self.h, self.w, self.c = (int(v) for v in meta["gm.image"].split("x"))
        self.dim = self.h * self.w * self.c
        self.classes = json.loads(meta.get("gm.class_names", "null"))
        self.num_classes = int(meta.get("gm.num_classes", 0))
        if self.family == "nade":
            self.W, self.V, self.b, self.cb = T["W"], T["V"], T["b"], T["c"]
            assert meta.get("gm.activation", "sigmoid") == "sigmoid", "peer: NADE with sigmoid units only"
        elif self.family == "vae":
            assert meta.get("gm.likelihood", "bernoulli") == "bernoulli", "peer: Bernoulli VAEs only"
            assert meta.get("gm.input", "binary") == "binary", "peer: binary inputs only"
            self.Z = int(meta["gm.latent_dim"])
            self.enc = build(json.loads(meta["gm.encoder"]), T)
            self.dec = build(json.loads(meta["gm.decoder"]), T)
        elif self.family == "gan":
            self.Z = int(meta["gm.latent_dim"])
            self.gen = build(json.loads(meta["gm.generator"]), T)
            self.tanh = meta.get("gm.output", "tanh") == "tanh"

    # x: (B, D) in {0, 1}
    def nade_logp(self, x):
        contrib = x[:, :, None] * self.W.T[None]            # (B, D, H)
        a = self.cb + torch.cumsum(contrib, 1) - contrib    # exclusive prefix sums
        logits = (torch.sigmoid(a) * self.V[None]).sum(-1) + self.b
        return -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).double()

    def encode(self, x):
        stats = self.enc(x.reshape(-1, self.c, self.h, self.w) if isinstance(self.enc[0], nn.Conv2d) else x)
        return stats[:, :self.Z], stats[:, self.Z:]

    def vae_logp(self, x, K, gen=None, eps=None):
        """log p (importance sampling), elbo and se per image; eps (B, K, Z)
        float64 when given, else drawn from gen."""
        B, Z = x.shape[0], self.Z
        mu, lv = self.encode(x)
        if eps is None:
            eps = torch.randn(B, K, Z, generator=gen)
        sd = torch.exp(0.5 * lv.double())
        z = (mu.double()[:, None] + sd[:, None] * eps.double()).float()
        logits = self.dec(z.reshape(B * K, Z)).reshape(B, K, -1)
        ll = (x[:, None] * logits - nn.functional.softplus(logits)).double().sum(-1)
        zd, e = z.double(), eps.double()
        lw = ll + 0.5 * lv.double().sum(-1)[:, None] + (-0.5 * zd * zd + 0.5 * e * e).sum(-1)
        logp = torch.logsumexp(lw, 1) - math.log(K)
        m, v = mu.double(), lv.double()
        kl = 0.5 * (m * m + v.exp() - 1 - v).sum(-1)
        w = torch.exp(lw - lw.max(1, keepdim=True).values)
        se = w.std(1) / math.sqrt(K) / w.mean(1) if K > 1 else torch.full((B,), float("nan"))
        return logp, ll.mean(1) - kl, se

    def images(self, n, gen, label):
        z = torch.randn(n, self.Z, generator=gen)
        if self.family == "vae":
            return torch.sigmoid(self.dec(z)), None
        labels = torch.full((n,), label) if label is not None else torch.randint(self.num_classes, (n,), generator=gen)
        inp = torch.cat([z, nn.functional.one_hot(labels, self.num_classes).float()], 1) if self.num_classes else z
        out = self.gen(inp)
        return ((out + 1) / 2 if self.tanh else out), labels


def png_encode(pixels, m):
    img = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).reshape(m.c, m.h, m.w).permute(1, 2, 0).squeeze(-1)
    buf = io.BytesIO()
    Image.fromarray(img.numpy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_decode(data, m):
    try:
        img = Image.open(io.BytesIO(data)).convert("L" if m.c == 1 else "RGB")
    except Exception as e:  # PIL raises many kinds
        raise HTTPException(400, f"not a PNG: {e}")
    if img.size != (m.w, m.h):
        raise HTTPException(422, f"the image is {img.size[0]}x{img.size[1]}; the model takes {m.w}x{m.h}")
    return torch.from_numpy(np.asarray(img, dtype=np.float32).reshape(-1) / 255.0)


MODELS = {}
for spec in filter(None, os.environ.get("PEER_MODELS", "").split(",")):
    name, path = spec.split("=", 1)
    MODELS[name] = Model(name, path)
app = FastAPI()


def reply(obj):
    return Response(json.dumps(obj), media_type="application/json")


async def request_inputs(name, request):
    if name not in MODELS:
        raise HTTPException(404, f"no model {name}")
    m, body = MODELS[name], await request.body()
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("image/png"):
        return m, params, png_decode(body, m)[None]
    params.update(json.loads(body) if body else {})
    xs = []
    for img in params.get("images", []):
        xs.append(png_decode(base64.b64decode(img["png"]), m) if "png" in img
                  else torch.tensor(img["pixels"], dtype=torch.float32))
    return m, params, torch.stack(xs) if xs else None


@app.get("/readyz")
def readyz():
    return reply({"ready": True})


@app.post("/v1/models/{name}/logp")
async def logp(name: str, request: Request):
    m, params, x = await request_inputs(name, request)
    x = (x >= 0.5).float()
    with torch.no_grad():
        if m.family == "nade":
            lp = m.nade_logp(x)
            results = [{"logp": float(v), "bits_per_dim": -float(v) / (m.dim * math.log(2))} for v in lp]
            return reply({"model": name, "method": "exact", "results": results})
        k, seed = int(params.get("k", 100)), int(params.get("seed", 0))
        lp, elbo, se = m.vae_logp(x, k, torch.Generator().manual_seed(seed))
    results = [{"logp": float(a), "bits_per_dim": -float(a) / (m.dim * math.log(2)), "elbo": float(b),
                "se": float(c)} for a, b, c in zip(lp, elbo, se)]
    return reply({"model": name, "method": "importance_sampling", "results": results, "k": k, "seed": seed})


@app.post("/v1/models/{name}/encode")
async def encode(name: str, request: Request):
    m, _, x = await request_inputs(name, request)
    with torch.no_grad():
        mu, lv = m.encode((x >= 0.5).float())
    return reply({"model": name, "results": [{"z": a.tolist(), "logvar": b.tolist()} for a, b in zip(mu, lv)]})


@app.post("/v1/models/{name}/sample")
async def sample(name: str, request: Request):
    if name not in MODELS:
        raise HTTPException(404, f"no model {name}")
    m, body = MODELS[name], await request.body()
    params = dict(request.query_params)
    params.update(json.loads(body) if body else {})
    n, seed = int(params.get("n", 1)), int(params.get("seed", int.from_bytes(os.urandom(6), "little")))
    label = params.get("label")
    label = m.classes.index(label) if isinstance(label, str) and m.classes and label in m.classes else label
    with torch.no_grad():
        pixels, labels = m.images(n, torch.Generator().manual_seed(seed), None if label is None else int(label))
    images = []
    for i in range(n):
        im = {"png": png_encode(pixels[i], m)}
        if labels is not None:
            im["label"] = int(labels[i])
            if m.classes:
                im["class"] = m.classes[int(labels[i])]
        images.append(im)
    return reply({"model": name, "images": images, "seed": seed})
