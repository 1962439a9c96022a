"""train_cyclegan.py - the bundled CycleGAN (Zhu et al. 2017) between two
Fashion-MNIST classes, sneaker (7) and ankle boot (9), trained on unpaired
images of each.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_cyclegan.py OUT.safetensors
        [--epochs 5] [--schedule-epochs N] [--checkpoint PATH] [--steps N]
    (the bundled file: --epochs 4 --schedule-epochs 5, 54 minutes here)

Generators G: sneaker -> ankle boot and F: ankle boot -> sneaker, each
translate_net's ResNet generator (conv 7x7 16, stride-2 convs to 64x7x7,
--res residual blocks, back to 1x28x28, tanh; instance norm). Discriminators
D_boot, D_sneaker: translate_net's PatchGAN trunk (32 -> 64 -> 128 channels,
4x4) and a conv 3x3 -> one real/fake score per patch. Images in [-1, 1].
Losses: LSGAN and cycle consistency |F(G(a)) - a| + |G(F(b)) - b| (weight
--lambda-cyc 10); the paper's identity loss |G(b) - b| + |F(a) - a| is off
by default (--lambda-id 0: it preserves colours in photo translation, costs
a third of a step here, and a sneaker must change shape, not stay itself). No image pool (the discriminators
see the current batch's translations). Adam 2e-4, betas (0.5, 0.999), batch
16 of each domain, rates constant for the first half of the steps, then
decayed linearly to 0. An epoch is one pass over the 6000 training images
of each class.
After every epoch: the share of the 1000 test sneakers translated by G that
models/classifier.safetensors calls ankle boots, and of the 1000 test boots
translated by F that it calls sneakers, with the mean L1 to the source and
the cycle-consistency error mean |F(G(x)) - x| in [0, 1]; the models,
optimizers and random state go to --checkpoint, from which a later run
resumes (or, with --epochs epochs done, only exports).
"""
import torch
from torch import nn

import data
import translate_net as tn

A, B_ = 7, 9  # dataset classes of the two domains
DOMAINS = ("sneaker", "ankle_boot")
B = 16


def discriminator(ch):
    return nn.Sequential(*tn.patch_trunk(ch), nn.Conv2d(4 * ch, 1, 3, 1, 1))


@torch.no_grad()
def monitor(G, F_, classify, xa, xb):
    G.eval()
    F_.eval()
    fwd = tn.metrics(lambda v, t: G(v), classify, xa, torch.full((len(xa),), B_))
    rev = tn.metrics(lambda v, t: F_(v), classify, xb, torch.full((len(xb),), A))
    cyc = sum((F_(G(xa[i:i + 500])) - xa[i:i + 500]).abs().sum().item() / 2 for i in range(0, len(xa), 500))
    cyc += sum((G(F_(xb[i:i + 500])) - xb[i:i + 500]).abs().sum().item() / 2 for i in range(0, len(xb), 500))
    G.train()
    F_.train()
    return {"acc_fwd": fwd["accuracy"], "acc_rev": rev["accuracy"], "l1_fwd": fwd["l1"], "l1_rev": rev["l1"],
            "cycle": cyc / (xa.numel() + xb.numel())}


def main():
    ap = tn.arguments(epochs=5, lr=2e-4, d_ch=32, checkpoint="build/cyclegan.pt")
    ap.add_argument("--lambda-cyc", type=float, default=10.0)
    ap.add_argument("--lambda-id", type=float, default=0.0)
    args = tn.parse(ap)
    x, y = data.load("train")
    xt, yt = data.load("t10k")

    def domain(images, labels, c):
        return images[labels == c].reshape(-1, 1, 28, 28) * 2 - 1

    xa, xb = domain(x, y, A), domain(x, y, B_)
    ta, tb = domain(xt, yt, A), domain(xt, yt, B_)
    classify = tn.classifier()
    G, F_ = tn.resnet_generator(1, args.ch, args.res), tn.resnet_generator(1, args.ch, args.res)
    Da, Db = discriminator(args.d_ch), discriminator(args.d_ch)
    for m in (G, F_, Da, Db):
        m.apply(tn.init)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(F_.parameters()), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(Da.parameters()) + list(Db.parameters()), lr=args.lr, betas=(0.5, 0.999))
    per_epoch = min(len(xa), len(xb)) // B
    total = (args.schedule_epochs or args.epochs) * per_epoch
    ck = tn.Checkpoint(args.checkpoint, {"G": G, "F": F_, "Da": Da, "Db": Db, "opt_g": opt_g, "opt_d": opt_d},
                       "cyclegan", args.epochs)
    print(f"[cyclegan] each G {sum(p.numel() for p in G.parameters())} parameters, each D "
          f"{sum(p.numel() for p in Da.parameters())}, {per_epoch} steps per epoch", flush=True)
    while ck.epoch < args.epochs:
        pa, pb = torch.randperm(len(xa)), torch.randperm(len(xb))
        sums = dict.fromkeys(("d", "g_adv", "cyc", "idt"), 0.0)
        for i in range(0, per_epoch * B, B):
            tn.linear_decay((opt_g, opt_d), args.lr, ck.step, total, total // 2)
            ck.step += 1
            a, b = xa[pa[i:i + B]], xb[pb[i:i + B]]
            fb, fa = G(a), F_(b)
            g_adv = (tn.lsgan(Db(fb), True) + tn.lsgan(Da(fa), True))
            cyc = (F_(fb) - a).abs().mean() + (G(fa) - b).abs().mean()
            idt = (G(b) - b).abs().mean() + (F_(a) - a).abs().mean() if args.lambda_id else torch.zeros(())
            opt_g.zero_grad()
            (g_adv + args.lambda_cyc * cyc + args.lambda_id * idt).backward()
            opt_g.step()
            d = (tn.lsgan(Db(b), True) + tn.lsgan(Db(fb.detach()), False) +
                 tn.lsgan(Da(a), True) + tn.lsgan(Da(fa.detach()), False)) / 2
            opt_d.zero_grad()
            d.backward()
            opt_d.step()
            for k, v in (("d", d), ("g_adv", g_adv), ("cyc", cyc), ("idt", idt)):
                sums[k] += v.item()
            if args.steps and ck.step >= args.steps:
                return ck.timing(i // B + 1, sums)
        row = {k: v / per_epoch for k, v in sums.items()}
        row.update(monitor(G, F_, classify, ta, tb))
        ck.end_epoch(row, args)
    ck.export(args, G, "Fashion-MNIST (Debian dataset-fashion-mnist) classes 7 (sneaker) and 9 (ankle boot), "
                       "grayscale in [-1, 1]",
              f"CycleGAN sneaker <-> ankle boot: two ResNet generators (conv 7x7 {args.ch}, stride-2 convs to "
              f"{4 * args.ch}x7x7, {args.res} residual blocks, transposed convs back, conv 7x7, tanh; instance norm)",
              f"LSGAN + cycle L1 (x{args.lambda_cyc:g}) + identity L1 (x{args.lambda_id:g}); Adam {args.lr:g} "
              f"betas (0.5, 0.999), batch {B} per domain, linear decay over the second half",
              inputs=("image",), reverse=F_, domains=DOMAINS)


if __name__ == "__main__":
    main()
