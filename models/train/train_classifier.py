"""train_classifier.py - the Fashion-MNIST classifier whose penultimate
features `gmserve eval` uses for the GAN's Fréchet distance and whose
predictions give the conditional GAN's class accuracy. Not a served model:
gm.family = "classifier".

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_classifier.py OUT.safetensors [--epochs N]

features: conv 32 s2 -> BN-ReLU -> conv 64 s2 -> BN-ReLU -> linear 128 -> ReLU
(the 128 features); head: dropout 0.3 (training only) -> linear 10. Input:
grayscale in [0, 1] as [1, 28, 28]. Adam 1e-3 with cosine decay, batch 128,
random horizontal flips.
"""
import argparse
import math

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    data.seed_and_threads(args.seed)
    x, y = data.load("train")
    xt, yt = data.load("t10k")
    x, xt = x.reshape(-1, 1, 28, 28), xt.reshape(-1, 1, 28, 28)
    features = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU())
    head = nn.Sequential(nn.Linear(128, 10))
    drop = nn.Dropout(0.3)
    params = list(features.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * math.ceil(len(x) / 128))
    prog = data.Progress("classifier", args.epochs)

    def test_accuracy():
        features.eval()
        with torch.no_grad():
            acc = sum((head(features(xt[i:i + 1000])).argmax(1) == yt[i:i + 1000]).sum().item()
                      for i in range(0, len(xt), 1000)) / len(xt)
        features.train()
        return acc

    for e in range(args.epochs):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 128):
            xb, yb = x[perm[i:i + 128]], y[perm[i:i + 128]]
            flip = torch.rand(len(xb)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(head(drop(features(xb))), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        prog.epoch(e, loss=total / len(x), test_accuracy=test_accuracy())
    features.eval()
    fl, ft = gmfile.layer_list(features, "features")
    hl, ht = gmfile.layer_list(head, "head")
    gmfile.write(args.out, dict(ft, **ht), {
        "gm.format": "1", "gm.family": "classifier", "gm.image": "28x28x1",
        "gm.num_classes": "10", "gm.class_names": data.CLASS_NAMES,
        "gm.features": fl, "gm.head": hl,
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), grayscale in [0, 1]",
        "gm.description": "evaluation classifier: conv 32 s2, conv 64 s2, linear 128 (features), linear 10",
        "gm.training": {"command": data.command(), "seed": args.seed, "epochs": args.epochs,
                        "optimizer": "Adam 1e-3, cosine, batch 128, horizontal flips",
                        "device": "cpu, 1 thread", "minutes": round(prog.minutes(), 1)},
    })
    print(f"[classifier] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
