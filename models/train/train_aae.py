"""train_aae.py - the bundled adversarial autoencoder (Makhzani et al. 2015):
a conv encoder and decoder whose latent code is matched to a standard normal
prior by a discriminator on the latent space instead of a KL term.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_aae.py OUT.safetensors [--epochs N]

Encoder: conv 32 s2 -> LReLU -> conv 64 s2 -> LReLU -> linear Z = 16 (deterministic).
Decoder: linear 64*7*7 -> ReLU -> convT 32x14x14 -> ReLU -> convT 1x28x28 -> sigmoid.
Latent discriminator: MLP Z-256-256-1. Images are grayscale in [0, 1].
Every batch runs the paper's two phases: reconstruction (encoder and decoder
on the binary cross-entropy of the grayscale image, Adam 1e-3), then
regularisation (the discriminator tells prior draws from encoded codes,
Adam --d-lr 2e-4; then the encoder is updated to fool it, Adam --g-lr 5e-4;
both beta1 0.5). All rates decay linearly to 0. Batch 100, 15 epochs.

Measured over the first 400 steps here with Z = 8 (mean losses, reconstruction as BCE
summed over an image; the discriminator's BCE is 2 ln 2 = 1.39 when it
cannot tell codes from prior draws):
encoder and discriminator both at 2e-4: d 0.32 after 200 steps and 0.08
after 2 epochs, the discriminator wins and the codes stay off the prior;
--g-lr 1e-3 --d-lr 1e-4: d 1.41 but reconstruction 407; --g-lr 5e-4
--d-lr 2e-4 (kept): d 1.05, reconstruction 299. Then, 15 epochs each,
measured by gmserve eval: Z = 8 gave samples at Fréchet distance 246.4
(reconstructions 142.9, 22.5 min); Z = 16 (kept) 174.8 (85.1, 18.1 min).
"""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile

B = 100


def encoder(Z):
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
        nn.Linear(64 * 7 * 7, Z))


def decoder(Z):
    return nn.Sequential(
        nn.Linear(Z, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (timing runs)")
    ap.add_argument("--z", type=int, default=16, help="latent size")
    ap.add_argument("--g-lr", type=float, default=5e-4)
    ap.add_argument("--d-lr", type=float, default=2e-4)
    args = ap.parse_args()
    data.single_thread(args.seed)
    x, _ = data.load("train")
    x = x.reshape(-1, 1, 28, 28)
    Z = args.z
    enc, dec = encoder(Z), decoder(Z)
    disc = nn.Sequential(nn.Linear(Z, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2),
                         nn.Linear(256, 1))
    opt_r = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.d_lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(enc.parameters(), lr=args.g_lr, betas=(0.5, 0.999))
    rates = [(opt_r, 1e-3), (opt_d, args.d_lr), (opt_g, args.g_lr)]
    prog = data.Progress("aae", args.epochs)
    ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)
    per_epoch = len(x) // B
    step, total = 0, args.epochs * per_epoch
    for e in range(args.epochs):
        perm = torch.randperm(len(x))
        sums = {"recon": 0.0, "d": 0.0, "g": 0.0}
        for i in range(0, per_epoch * B, B):
            for opt, lr in rates:
                for group in opt.param_groups:
                    group["lr"] = lr * (1 - step / total)
            step += 1
            xb = x[perm[i:i + B]]
            # reconstruction phase
            lr_ = F.binary_cross_entropy(dec(enc(xb)), xb, reduction="sum") / B
            opt_r.zero_grad()
            lr_.backward()
            opt_r.step()
            # regularisation phase: discriminator, then the encoder as its generator
            zf = enc(xb)
            ld = (F.binary_cross_entropy_with_logits(disc(torch.randn(B, Z)), ones) +
                  F.binary_cross_entropy_with_logits(disc(zf.detach()), zeros))
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            lg = F.binary_cross_entropy_with_logits(disc(zf), ones)
            opt_g.zero_grad()
            lg.backward()
            opt_g.step()
            sums["recon"] += lr_.item()
            sums["d"] += ld.item()
            sums["g"] += lg.item()
            if args.steps and step >= args.steps:
                print(f"[aae] {step} steps in {prog.minutes() * 60:.1f} s; "
                      + "  ".join(f"{k} {v / (i // B + 1):.4f}" for k, v in sums.items()), flush=True)
                return
        prog.epoch(e, **{k: v / per_epoch for k, v in sums.items()})
    enc.eval()
    dec.eval()
    el, et = gmfile.layer_list(enc, "enc")
    dl, dt = gmfile.layer_list(dec, "dec")
    gmfile.write(args.out, dict(et, **dt), {
        "gm.format": "1", "gm.family": "aae", "gm.image": "28x28x1", "gm.latent_dim": str(Z),
        "gm.encoder": el, "gm.decoder": dl, "gm.prior": "normal",
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), grayscale in [0, 1]",
        "gm.description": f"adversarial autoencoder, conv encoder 32-64 -> z = {Z}, conv decoder "
                          "64x7x7 -> 32x14x14 -> 1x28x28 sigmoid; latent matched to N(0, I) by an MLP "
                          "discriminator",
        "gm.training": {"command": data.command(), "seed": args.seed, "epochs": args.epochs,
                        "optimizer": f"per batch: reconstruction (BCE, Adam 1e-3), then latent "
                                     f"discriminator (Adam {args.d_lr:g}) and encoder (Adam {args.g_lr:g}), "
                                     "BCE, beta1 0.5; rates decayed linearly to 0; batch 100",
                        "device": "cpu, 1 thread", "minutes": round(prog.minutes(), 1)},
    })
    print(f"[aae] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
