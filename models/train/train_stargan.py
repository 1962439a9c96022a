"""train_stargan.py - the bundled StarGAN (Choi et al. 2018): one generator
that translates a Fashion-MNIST image into any of the 10 classes.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_stargan.py OUT.safetensors
        [--epochs 8] [--epoch-images 9600] [--checkpoint PATH] [--steps N]

Generator: the target class as 10 one-hot maps concatenated to the image
(StarGAN's way), then translate_net's ResNet generator (11 -> ch 16 -> 32 ->
64 at 7x7 with a 3x3 stem and no instance norm after it, --res 3 residual
blocks, back to 1x28x28, tanh). Discriminator:
translate_net's PatchGAN trunk (32 -> 64 -> 128 channels, 4x4) with two
heads, real/fake per patch (conv 3x3 -> 1x4x4) and the auxiliary domain
classifier (conv 4x4 -> 10 logits). Images in [-1, 1].
Losses: LSGAN for real/fake, cross-entropy domain classification (the
discriminator on real images with their class, the generator on its
translations with the target class), and the reconstruction L1 of
translating back to the source class; weights 1, --lambda-cls 1,
--lambda-rec 10. The target of every training image is a random class other
than its own. Adam 2e-4, betas (0.5, 0.999), batch 32, rates constant for
the first half of the steps, then decayed linearly to 0. An epoch is 300
steps on a fresh random draw of --epoch-images training images, so that a
checkpoint comes every few minutes; 8 epochs took 16.9 minutes here.
After every epoch: the share of the first 2000 test images, each translated
to class (y + 1 + n % 9) % 10, that models/classifier.safetensors puts in the
target class, the mean L1 to the source in [0, 1] and the silhouette IoU
(pixels > 0.5); the model, optimizers and random state go to --checkpoint,
from which a later run resumes (or, with --epochs epochs done, only exports).
"""
import torch
from torch import nn
import torch.nn.functional as F

import data
import translate_net as tn

C, B = 10, 32


class Generator(nn.Module):
    def __init__(self, ch, res, stem):
        super().__init__()
        self.net = tn.resnet_generator(1 + C, ch, res, stem, stem_norm=False)

    def forward(self, image, onehot):
        maps = onehot.view(onehot.size(0), C, 1, 1).expand(-1, -1, 28, 28)
        return self.net(torch.cat([image, maps], 1))


class Discriminator(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.trunk = tn.patch_trunk(ch)
        self.src = nn.Conv2d(4 * ch, 1, 3, 1, 1)
        self.cls = nn.Conv2d(4 * ch, C, 4)

    def forward(self, x):
        h = self.trunk(x)
        return self.src(h), self.cls(h).flatten(1)


def onehot(y):
    return F.one_hot(y, C).float()


def main():
    ap = tn.arguments(epochs=8, lr=2e-4, d_ch=32, checkpoint="build/stargan.pt")
    ap.add_argument("--epoch-images", type=int, default=9600,
                    help="training images per epoch, a fresh random draw of the 60 000 each epoch")
    ap.add_argument("--stem", type=int, default=3, help="kernel of the generator's first and last conv")
    ap.add_argument("--lambda-cls", type=float, default=1.0)
    ap.add_argument("--lambda-rec", type=float, default=10.0)
    args = tn.parse(ap)
    x, y = data.load("train")
    x = x.reshape(-1, 1, 28, 28) * 2 - 1
    xt, yt = data.load("t10k")
    xm, ym = xt[:2000].reshape(-1, 1, 28, 28) * 2 - 1, yt[:2000]
    tm = (ym + 1 + torch.arange(len(ym)) % 9) % C
    classify = tn.classifier()
    G, D = Generator(args.ch, args.res, args.stem), Discriminator(args.d_ch)
    G.apply(tn.init)
    D.apply(tn.init)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    per_epoch = min(args.epoch_images, len(x)) // B
    total = (args.schedule_epochs or args.epochs) * per_epoch
    ck = tn.Checkpoint(args.checkpoint, {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d}, "stargan", args.epochs)
    print(f"[stargan] G {sum(p.numel() for p in G.parameters())} parameters, "
          f"D {sum(p.numel() for p in D.parameters())}, {per_epoch} steps per epoch", flush=True)
    while ck.epoch < args.epochs:
        perm = torch.randperm(len(x))
        sums = dict.fromkeys(("d_adv", "d_cls", "g_adv", "g_cls", "g_rec"), 0.0)
        for i in range(0, per_epoch * B, B):
            tn.linear_decay((opt_g, opt_d), args.lr, ck.step, total, total // 2)
            ck.step += 1
            xr, yr = x[perm[i:i + B]], y[perm[i:i + B]]
            trg = (yr + torch.randint(1, C, (B,))) % C
            src_r, cls_r = D(xr)
            xf = G(xr, onehot(trg))
            src_f, _ = D(xf.detach())
            d_adv = (tn.lsgan(src_r, True) + tn.lsgan(src_f, False)) / 2
            d_cls = F.cross_entropy(cls_r, yr)
            opt_d.zero_grad()
            (d_adv + args.lambda_cls * d_cls).backward()
            opt_d.step()
            src_f, cls_f = D(xf)
            g_adv = tn.lsgan(src_f, True) / 2
            g_cls = F.cross_entropy(cls_f, trg)
            g_rec = (G(xf, onehot(yr)) - xr).abs().mean()
            opt_g.zero_grad()
            (g_adv + args.lambda_cls * g_cls + args.lambda_rec * g_rec).backward()
            opt_g.step()
            for k, v in (("d_adv", d_adv), ("d_cls", d_cls), ("g_adv", g_adv), ("g_cls", g_cls), ("g_rec", g_rec)):
                sums[k] += v.item()
            if args.steps and ck.step >= args.steps:
                return ck.timing(i // B + 1, sums)
        G.eval()
        row = {k: v / per_epoch for k, v in sums.items()}
        row.update(tn.metrics(lambda a, t: G(a, onehot(t)), classify, xm, tm))
        G.train()
        ck.end_epoch(row, args)
    ck.export(args, G, "Fashion-MNIST (Debian dataset-fashion-mnist), grayscale in [-1, 1]",
              f"StarGAN: image + 10 one-hot target maps -> ResNet generator (conv {args.stem}x{args.stem} "
              f"{args.ch}, stride-2 convs to {4 * args.ch}x7x7, {args.res} residual blocks, transposed convs back, "
              f"conv {args.stem}x{args.stem}, tanh; instance norm)",
              f"LSGAN + domain classification (x{args.lambda_cls:g}) + reconstruction L1 (x{args.lambda_rec:g}); "
              f"Adam {args.lr:g} betas (0.5, 0.999), batch {B}, linear decay over the second half",
              inputs=("image", "onehot"), num_classes=C, class_names=data.CLASS_NAMES)


if __name__ == "__main__":
    main()
