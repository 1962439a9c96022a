"""refit_infogan_q.py - a new Q network for a trained InfoGAN, learnt from
the generator's own samples, still without labels.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/refit_infogan_q.py IN.safetensors OUT.safetensors
        [--steps N] [--seed S]

train_infogan.py's Q shares the discriminator's trunk and only ever sees
fakes during the GAN game; on real images it recovers the categories much
worse than the evaluation classifier finds them in the samples. This keeps
IN's generator and discriminator exactly (rebuilt from IN's tensors and
checked against its probes) and trains a separate Q on fresh draws from
the prior (train_infogan.draw), the generator in eval mode as it is
served: the category by cross-entropy and the codes by half the squared
error (train_infogan.info_loss). Q has the evaluation classifier's shape
(conv 32 s2 -> BN-ReLU -> conv 64 s2 -> BN-ReLU -> linear 128 -> ReLU ->
dropout 0.3 in training -> linear 12), sees each fake shifted by up to 2
pixels, and trains with Adam 1e-3 decayed by a cosine over the steps,
batch 128. At the end its BatchNorm statistics are recomputed on real
training images (unlabelled, as train_infogan.py does for its trunk), so
that Q normalizes real images by their own statistics. The labels are
read only for the monitor printed at the end (train_infogan.py's: Q's
match on the first 10 000 training images), which steers nothing.

OUT is IN with the new q_network: the same generator, discriminator and
metadata, gm.training gaining a "q_refit" entry; gm.metrics is dropped
(stamp_metrics.py writes it again from `gmserve eval`).
"""
import argparse
import json
import math

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile  # noqa: F401  (puts python/ on sys.path for gmexport)
import gmexport
from gmexport import safetensors
from train_gan import init
from train_infogan import K, L, MONITOR, Z, Generator, draw, info_loss, match_accuracy, refit_trunk_stats, trunk

B = 128
SHIFT = 2
LR = 1e-3


def load(path):
    """IN's generator and discriminator rebuilt in eval mode, and its
    metadata; raises when they do not reproduce the file's probes."""
    tensors, meta = safetensors.read(path)
    for key, want in (("gm.latent_dim", Z), ("gm.cat_dim", K), ("gm.code_dim", L)):
        if int(meta.get(key, -1)) != want:
            raise SystemExit(f"refit_infogan_q: {path}: {key} is {meta.get(key)}, train_infogan.py's is {want}")
    G, disc = Generator(), nn.Sequential(*trunk(), nn.Linear(64 * 7 * 7, 1))
    for prefix, net in (("generator.", G), ("discriminator.", disc)):
        net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        net.eval()
    with torch.no_grad():
        got = {"generator": G(*(tensors[f"gm.probe.generator.in.{n}"] for n in ("z", "cat", "code"))),
               "discriminator": disc(tensors["gm.probe.discriminator.in.image"])}
    for name, out in got.items():
        err = (out - tensors[f"gm.probe.{name}.out"]).abs().max().item()
        if err > 1e-4:
            raise SystemExit(f"refit_infogan_q: {path}: the rebuilt {name} is {err:.2g} off its probes")
    return G, disc, meta


def q_network():
    features = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU())
    return features, nn.Linear(128, K + L)


def shift(x):
    """Each image moved by a whole number of pixels in [-SHIFT, SHIFT] on
    each axis, the background (-1) filling in."""
    n = len(x)
    d = torch.randint(-SHIFT, SHIFT + 1, (n, 2)).float() * 2 / x.shape[-1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = d
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    data.seed_and_threads(args.seed)
    G, disc, meta = load(args.inp)
    x, y = data.load("train")
    x = x.reshape(-1, 1, 28, 28) * 2 - 1
    features, head = q_network()
    for m in (features, head):
        m.apply(init)
    drop = nn.Dropout(0.3)
    opt = torch.optim.Adam(list(features.parameters()) + list(head.parameters()), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    prog = data.Progress("infogan-q", args.steps // 500)
    sums = {"ce": 0.0, "mse": 0.0, "q_acc": 0.0}
    for s in range(args.steps):
        z, c, cat, code = draw(B)
        with torch.no_grad():
            xf = shift(G(z, cat, code))
        q = head(drop(features(xf)))
        loss, ce, mse = info_loss(q, c, code)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        sums["ce"] += ce.item()
        sums["mse"] += mse.item()
        sums["q_acc"] += (q[:, :K].argmax(1) == c).float().mean().item()
        if (s + 1) % 500 == 0:
            prog.epoch((s + 1) // 500 - 1, **{k: v / 500 for k, v in sums.items()})
            sums = dict.fromkeys(sums, 0.0)
    minutes = prog.minutes()
    # monitor only (labels never steer the training): Q's match on the first
    # 10 000 training images, its BatchNorm refit on the rest, as train_infogan.py prints
    monitor = match_accuracy(features, head, x[MONITOR:], x[:MONITOR], y[:MONITOR])
    print(f"[infogan-q] monitor match (first {MONITOR} training images) {monitor:.4f}", flush=True)
    refit_trunk_stats(features, x[MONITOR:])
    Q = nn.Sequential(*features, head).eval()

    training = json.loads(meta["gm.training"])
    training["q_refit"] = {
        "command": data.command(), "seed": args.seed, "steps": args.steps, "batch": B,
        "recipe": "a new Q (conv 32 s2 - BN-ReLU - conv 64 s2 - BN-ReLU - linear 128 - ReLU - dropout 0.3 - "
                  "linear 12) on fresh generator samples from the prior, the generator and discriminator "
                  "kept; cross-entropy on the category + 0.5 squared error on the codes; shifts of up to "
                  f"{SHIFT} pixels; Adam {LR:g} with a cosine decay; BatchNorm statistics refit on the "
                  f"last {len(x) - MONITOR} training images, unlabelled",
        "monitor_match": round(monitor, 4), "device": "cpu, 1 thread", "minutes": round(minutes, 1)}
    keep = {k: v for k, v in meta.items() if k in ("gm.dataset", "gm.description")}
    keep["gm.description"] = keep["gm.description"].replace(
        "with its discriminator and Q (category logits, code means) on a shared trunk",
        "with its discriminator; Q (category logits, code means) a separate network refit on the "
        "generator's samples")
    keep["gm.training"] = training
    gmexport.save_gan(args.out, G, image="28x28x1", latent_dim=Z, inputs=("z", "cat", "code"), cat_dim=K,
                      code_dim=L, output="tanh", discriminator=disc, q_network=Q, metadata=keep)
    print(f"[infogan-q] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
