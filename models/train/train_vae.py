"""train_vae.py - the bundled VAE: MLP 784-512-512-(2x32) / 32-512-512-784,
Bernoulli decoder, trained on dynamically binarized Fashion-MNIST.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_vae.py OUT.safetensors [--epochs N]

Loss: the negative ELBO (reconstruction BCE summed over pixels + analytic KL),
Adam 1e-3 with a cosine decay to 1e-5 over the run, batch 128.
"""
import argparse
import math

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile

Z = 32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    data.single_thread(args.seed)
    x, _ = data.load("train")
    enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2 * Z))
    dec = nn.Sequential(nn.Linear(Z, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 784))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    steps = args.epochs * math.ceil(len(x) / 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
    prog = data.Progress("vae", args.epochs)
    for e in range(args.epochs):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 128):
            xb = torch.bernoulli(x[perm[i:i + 128]])
            h = enc(xb)
            mu, logvar = h[:, :Z], h[:, Z:]
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            rec = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum")
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
            loss = (rec + kl) / len(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        prog.epoch(e, neg_elbo=total / len(x))
    enc.eval()
    dec.eval()
    el, et = gmfile.layer_list(enc, "enc")
    dl, dt = gmfile.layer_list(dec, "dec")
    gmfile.write(args.out, dict(et, **dt), {
        "gm.format": "1", "gm.family": "vae", "gm.image": "28x28x1", "gm.latent_dim": str(Z),
        "gm.encoder": el, "gm.decoder": dl, "gm.likelihood": "bernoulli",
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), dynamically binarized",
        "gm.description": "MLP VAE 784-512-512-(2x32) / 32-512-512-784, Bernoulli decoder",
        "gm.training": {"command": data.command(), "seed": args.seed, "epochs": args.epochs,
                        "optimizer": "Adam 1e-3, cosine to 1e-5, batch 128", "device": "cpu, 1 thread",
                        "minutes": round(prog.minutes(), 1)},
    })
    print(f"[vae] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
