"""train_infogan.py - the bundled InfoGAN (Chen et al. 2016), trained on
Fashion-MNIST WITHOUT labels: a 10-way categorical code and 2 continuous
codes that the generator must make recoverable by a network Q.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_infogan.py OUT.safetensors [--epochs N]
        [--checkpoint build/infogan.pt] [--resume]

Generator: [z (62), one-hot category (10), code (2)] -> linear 64*7*7 ->
BN-ReLU -> convT 32x14x14 -> BN-ReLU -> convT 1x28x28 -> tanh (the bundled
GAN's shape at half its channels: on the shared 2-core machine the full
width took about 14 minutes an epoch). Discriminator trunk: conv 32 s2 ->
LReLU -> conv 64 s2 -> BN -> LReLU; on it a real-vs-fake logit (linear) and
Q's head (linear 128 -> LReLU -> linear 12: 10 category logits, then the
means of the 2 continuous codes). z ~ N(0, I), category uniform, codes ~
U(-1, 1).

Losses: the standard (non-saturating) GAN loss plus the mutual-information
bound L_I on fakes, in both players' objectives: cross-entropy of Q's
category logits against the drawn category (weight 1) and, for the
continuous codes, the Gaussian log-likelihood with unit variance, i.e.
half the squared error (weight 1). Adam beta1 0.5, batch 64, learning rates
2e-4 for the discriminator and Q, 1e-3 for the generator (the paper's MNIST
settings), constant, weights N(0, 0.02).

Monitor (one progress line per epoch): `match` is the best one-to-one
assignment of Q's argmax category to the true class (Hungarian algorithm on
the 10x10 confusion) over the first 10 000 training images, whose labels
the training never sees; `q_acc` is how often Q recovers the drawn category
of a fake. The final number on the test set comes from `gmserve eval
--infogan`. The checkpoint (default build/infogan.pt) is rewritten after
every epoch; --resume continues from it (with --epochs equal to the
checkpoint's epochs it only exports).

Served in eval mode: BatchNorm statistics are recomputed as exact averages,
the generator's over many generator batches, the trunk's over real training
images (Q encodes real images; the training batches were real or fake).
"""
import argparse
import copy
import os

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile  # noqa: F401  (puts python/ on sys.path for gmexport)
import gmexport
from train_gan import init

Z, K, L = 62, 10, 2
LR_D, LR_G = 2e-4, 1e-3
B = 64
MONITOR = 10000


class Generator(nn.Module):
    """forward(z, cat, code): the inputs concatenated into one DCGAN generator."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(Z + K + L, 64 * 7 * 7), nn.BatchNorm1d(64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z, cat, code):
        return self.net(torch.cat([z, cat, code], 1))


def trunk():
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2), nn.Flatten())


def draw(n):
    """z, category index, one-hot category and continuous code of n fakes."""
    c = torch.randint(0, K, (n,))
    return torch.randn(n, Z), c, F.one_hot(c, K).float(), torch.rand(n, L) * 2 - 1


def info_loss(q, c, code):
    """L_I: cross-entropy on the category, unit-variance Gaussian NLL (half
    the squared error, constants dropped) on the continuous codes."""
    ce = F.cross_entropy(q[:, :K], c)
    mse = F.mse_loss(q[:, K:], code)
    return ce + 0.5 * mse, ce, mse


def hungarian_max(m):
    """The one-to-one assignment row -> column maximizing the sum of m (a
    square list of lists); O(n^3) shortest augmenting paths. Returns
    assign[row] = column."""
    n = len(m)
    inf = float("inf")
    u, v, p, way = [0.0] * (n + 1), [0.0] * (n + 1), [0] * (n + 1), [0] * (n + 1)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [inf] * (n + 1), [False] * (n + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = -m[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    assign = [0] * n
    for j in range(1, n + 1):
        assign[p[j] - 1] = j - 1
    return assign


def exact_batch_norm(net):
    """Resets net's BatchNorm statistics to accumulate exact averages over
    the batches it sees next (in train mode)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()


def refit_trunk_stats(T, x):
    """BatchNorm statistics of the trunk as exact averages over real images."""
    exact_batch_norm(T)
    with torch.no_grad():
        for i in range(0, len(x), 500):
            T(x[i:i + 500])
    T.eval()


def match_accuracy(T, Qh, x_fit, x, y):
    """Best one-to-one category -> class accuracy of Q's argmax on x."""
    T = copy.deepcopy(T)
    refit_trunk_stats(T, x_fit)
    with torch.no_grad():
        pred = torch.cat([Qh(T(x[i:i + 500]))[:, :K].argmax(1) for i in range(0, len(x), 500)])
    conf = torch.zeros(K, K)
    conf.index_put_((pred, y), torch.ones(len(y)), accumulate=True)
    assign = hungarian_max(conf.tolist())
    return sum(conf[k, assign[k]].item() for k in range(K)) / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--checkpoint", default="build/infogan.pt")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    data.seed_and_threads(args.seed)
    x, y = data.load("train")
    x = x.reshape(-1, 1, 28, 28) * 2 - 1
    G, T = Generator(), trunk()
    Dh = nn.Linear(64 * 7 * 7, 1)
    Qh = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.LeakyReLU(0.2), nn.Linear(128, K + L))
    for m in (G, T, Dh, Qh):
        m.apply(init)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR_G, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(T.parameters()) + list(Dh.parameters()) + list(Qh.parameters()), lr=LR_D,
                             betas=(0.5, 0.999))
    start, history, minutes_before = 0, [], 0.0
    if args.resume:
        ck = torch.load(args.checkpoint)
        for name, mod in (("G", G), ("T", T), ("Dh", Dh), ("Qh", Qh), ("opt_g", opt_g), ("opt_d", opt_d)):
            mod.load_state_dict(ck[name])
        torch.set_rng_state(ck["rng"])
        start, history, minutes_before = ck["epoch"], ck["history"], ck["minutes"]
    prog = data.Progress("infogan", args.epochs)
    ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)
    per_epoch = len(x) // B
    for e in range(start, args.epochs):
        G.train()
        T.train()
        perm = torch.randperm(len(x))
        sums = {"d": 0.0, "g": 0.0, "ce": 0.0, "mse": 0.0, "q_acc": 0.0}
        for i in range(0, per_epoch * B, B):
            xr = x[perm[i:i + B]]
            z, c, cat, code = draw(B)
            xf = G(z, cat, code)
            hr, hf = T(xr), T(xf.detach())
            li_d, _, _ = info_loss(Qh(hf), c, code)
            ld = (F.binary_cross_entropy_with_logits(Dh(hr), ones) +
                  F.binary_cross_entropy_with_logits(Dh(hf), zeros) + li_d)
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            hg = T(xf)
            q = Qh(hg)
            li_g, ce, mse = info_loss(q, c, code)
            lg = F.binary_cross_entropy_with_logits(Dh(hg), ones) + li_g
            opt_g.zero_grad()
            lg.backward()
            opt_g.step()
            sums["d"] += ld.item()
            sums["g"] += lg.item()
            sums["ce"] += ce.item()
            sums["mse"] += mse.item()
            sums["q_acc"] += (q[:, :K].argmax(1) == c).float().mean().item()
        vals = {k: v / per_epoch for k, v in sums.items()}
        vals["match"] = match_accuracy(T, Qh, x[MONITOR:MONITOR + 10000], x[:MONITOR], y[:MONITOR])
        history.append(vals)
        prog.epoch(e, **vals)
        os.makedirs(os.path.dirname(args.checkpoint) or ".", exist_ok=True)
        torch.save({"G": G.state_dict(), "T": T.state_dict(), "Dh": Dh.state_dict(), "Qh": Qh.state_dict(),
                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": torch.get_rng_state(),
                    "epoch": e + 1, "history": history, "minutes": minutes_before + prog.minutes()},
                   args.checkpoint + ".tmp")
        os.replace(args.checkpoint + ".tmp", args.checkpoint)
    minutes = minutes_before + prog.minutes()

    exact_batch_norm(G)
    with torch.no_grad():
        for _ in range(200):
            _, _, cat, code = draw(256)
            G(torch.randn(256, Z), cat, code)
    G.eval()
    refit_trunk_stats(T, x[MONITOR:])
    Q = nn.Sequential(*copy.deepcopy(T), *copy.deepcopy(Qh)).eval()
    disc = nn.Sequential(*T, Dh).eval()
    gmexport.save_gan(args.out, G, image="28x28x1", latent_dim=Z, inputs=("z", "cat", "code"), cat_dim=K,
                      code_dim=L, output="tanh", discriminator=disc, q_network=Q, metadata={
                          "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), grayscale in [-1, 1], "
                                        "trained without labels",
                          "gm.description": "InfoGAN: DCGAN z=62 + one-hot category 10 + 2 codes in U(-1, 1) -> "
                                            "64x7x7 -> 32x14x14 -> 1x28x28; with its discriminator and Q "
                                            "(category logits, code means) on a shared trunk",
                          "gm.training": {"command": data.command(), "seed": args.seed, "epochs": args.epochs,
                                          "optimizer": "non-saturating GAN loss + InfoGAN L_I (categorical "
                                                       "cross-entropy + 0.5 squared error on the codes, weight "
                                                       "1) in both players; Adam beta1 0.5, batch 64, D and Q "
                                                       "2e-4, G 1e-3, constant",
                                          "match_per_epoch": [round(h["match"], 4) for h in history],
                                          "device": "cpu, 1 thread", "minutes": round(minutes, 1)}})
    print(f"[infogan] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
