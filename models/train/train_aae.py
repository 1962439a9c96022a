"""train_aae.py - the bundled adversarial autoencoder (Makhzani et al. 2015):
the paper's label-conditioned mixture prior, and an image discriminator
beside the latent one.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_aae.py OUT.safetensors [--epochs N]
        [--prior mixture|normal] [--checkpoint PATH] [--snapshots]

An AAE's encoder and decoder learn to reconstruct, and a discriminator on
the codes pulls their distribution towards the prior, so decoding prior
draws gives images. A decoder trained on a pixel loss alone is blurred:
the first recipe (reconstruction BCE and the latent game only) gave
samples at Fréchet distance 174.8, its reconstructions alone 85.1. So the
decoder here also plays against an image discriminator, as in VAE-GAN
(Larsen et al. 2016): both its reconstructions and its prior draws are the
"fake" images. With the N(0, I) prior that reached 60.5 after 9 epochs;
with the mixture prior (below, the default) one distance a class is
matched instead of one for all ten, and the decoder becomes
class-conditional like the bundled GAN (models/README.md has the runs).

Encoder: conv 64 s2 -> LReLU -> conv 128 s2 -> BN -> LReLU -> linear Z.
Decoder: the bundled GAN's generator without the label: linear 128*7*7 ->
BN-ReLU -> convT 64x14x14 -> BN-ReLU -> convT 1x28x28 -> tanh.
Image discriminator: conv 64 s2 -> LReLU -> conv 128 s2 -> BN -> LReLU ->
linear 1, hinge loss. Latent discriminator: MLP Z-256-256-1, BCE.
Images are grayscale in [-1, 1] (gm.output "tanh").
Each step (batch 64): the image discriminator on real images against the
decoder's reconstructions and prior draws; the latent discriminator on prior
draws against codes; then encoder and decoder together on
--rec-weight x mean |x - dec(enc(x))| + the hinge generator loss on both kinds
of fake + --latent-weight x the encoder's loss against the latent
discriminator. Adam 2e-4, beta1 0.5, all rates decayed linearly to 0.

--prior mixture (the default): the paper's label-conditioned prior (its
section 2.3), one N(r e_k, I) per class k (r = --radius, e_k the k-th
axis). The latent
discriminator sees the label beside the code, so the encoder must put the
codes of class k where the prior's component k lies; the image
discriminator becomes a projection discriminator (Miyato & Koyama 2018, as
the bundled GAN's): real images with their class, reconstructions with the
source's class, and decoded draws of component k with k. Sampling with a
label then draws from that class's component.

--checkpoint PATH: after every epoch the networks, optimizers, step and
random state go there; a run that finds it resumes (a run over several
sessions), and one whose checkpoint holds --epochs epochs only exports.
"""
import argparse
import copy
import os
import time

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile

B = 64
LR = 2e-4


class SubPixelConvT(nn.Module):
    """nn.ConvTranspose2d(cin, cout, 4, 2, 1) computed as a 3x3 convolution to
    4 * cout channels and a pixel shuffle: the same function of the same
    weight (stored in ConvTranspose2d's layout, so it exports as one), but
    4x faster to train here than PyTorch's transposed convolution on one
    thread (0.055 s against 0.22 s forward and backward at 64x128x7x7).
    Output row 2i + a takes kernel rows 3, 1 (a = 0) or 2, 0 (a = 1) at input
    rows i - 1, i (or i, i + 1); index 4 is a zero tap."""

    TAPS = torch.tensor([[3, 1, 4], [4, 2, 0]])

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cin, cout, 4, 4))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        cin, cout = self.weight.shape[:2]
        w = F.pad(self.weight, (0, 1, 0, 1))[:, :, self.TAPS][:, :, :, :, self.TAPS]  # c o a u b v
        k = w.permute(1, 2, 4, 0, 3, 5).reshape(cout * 4, cin, 3, 3)
        return F.pixel_shuffle(F.conv2d(x, k, self.bias.repeat_interleave(4), padding=1), 2)

    def exported(self):
        ct = nn.ConvTranspose2d(*self.weight.shape[:2], 4, 2, 1, dtype=self.weight.dtype)
        with torch.no_grad():
            ct.weight.copy_(self.weight)
            ct.bias.copy_(self.bias)
        return ct


def exportable(seq):
    return nn.Sequential(*(m.exported() if isinstance(m, SubPixelConvT) else m for m in seq))


def encoder(Z):
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2), nn.Flatten(),
        nn.Linear(128 * 7 * 7, Z))


def decoder(Z):
    return nn.Sequential(
        nn.Linear(Z, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
        SubPixelConvT(128, 64), nn.BatchNorm2d(64), nn.ReLU(),
        SubPixelConvT(64, 1), nn.Tanh())


class ImageCritic(nn.Module):
    """logit(x) = psi(h(x)), plus <embed(y), h(x)> when given the class y
    (a projection discriminator): h is conv 64 s2 -> LReLU -> conv 128 s2 ->
    BN -> LReLU."""

    def __init__(self, classes):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2), nn.Flatten())
        self.psi = nn.Linear(128 * 7 * 7, 1)
        self.embed = nn.Embedding(classes, 128 * 7 * 7) if classes else None

    def forward(self, x, y=None):
        h = self.trunk(x)
        out = self.psi(h)
        return out if y is None else out + (self.embed(y) * h).sum(1, keepdim=True)


class LatentCritic(nn.Module):
    """MLP [z, one-hot class] -> 256 -> 256 -> 1 (no class for a normal prior)."""

    def __init__(self, Z, classes):
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(nn.Linear(Z + classes, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256),
                                 nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, z, y=None):
        return self.net(z if y is None else torch.cat([z, F.one_hot(y, self.classes).float()], 1))


class Prior:
    """N(0, I), or the mixture of N(means[k], diag(stds[k]^2)) over classes k
    (stds all 1 in training; fit_prior sets both from the codes at export)."""

    def __init__(self, Z, kind, radius):
        self.Z, self.kind = Z, kind
        self.K = len(data.CLASS_NAMES) if kind == "mixture" else 0
        self.means = torch.zeros(self.K, Z)
        self.stds = torch.ones(self.K, Z)
        if self.K:
            assert Z >= self.K, "a mixture prior puts each class on its own axis: --z must be >= 10"
            self.means[:, :self.K] = radius * torch.eye(self.K)

    def draw(self, labels):
        """One draw per label (labels: a tensor, or a count for N(0, I))."""
        if not self.K:
            return torch.randn(labels, self.Z)
        return self.means[labels] + self.stds[labels] * torch.randn(len(labels), self.Z)

    def labels(self, n):
        """Labels for n prior draws: random classes, or n for the normal prior."""
        return torch.randint(self.K, (n,)) if self.K else n

    def moments(self):
        """Per-dimension mean and standard deviation of a prior draw."""
        if not self.K:
            return torch.zeros(self.Z), torch.ones(self.Z)
        var = (self.stds ** 2).mean(0) + self.means.var(0, unbiased=False)
        return self.means.mean(0), var.sqrt()


def fit_prior(enc, x, y, prior):
    """The mixture fitted to the codes after training ("ex-post density
    estimation", Ghosh et al. 2020): component k's mean and per-dimension
    standard deviation become those of the codes of the training images of
    class k. The latent game leaves each class's codes near, not on, its
    component (measured after 24 epochs: means 0.13 off per dimension on
    average, standard deviations 0.57 to 1.53 where the prior says 1), and
    decoding draws from where the codes are took the samples' Fréchet
    distance from 14.1 to 11.6. Returns a new Prior."""
    with torch.no_grad():
        codes = torch.cat([enc(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    fitted = copy.copy(prior)
    fitted.means = torch.stack([codes[y == k].mean(0) for k in range(prior.K)])
    fitted.stds = torch.stack([codes[y == k].std(0) for k in range(prior.K)])
    return fitted


def init(m):
    if isinstance(m, (nn.Conv2d, nn.Linear, SubPixelConvT)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)


def served(enc, dec, x, y, prior):
    """Copies of the networks as gmserve runs them, in eval mode, and the
    prior they are served with.

    BatchNorm: exact averages over many batches instead of the momentum
    estimates; the encoder's over training images, the decoder's over
    draws of the served prior (what sample decodes, labels round-robin for
    a mixture).

    Codes: the latent discriminator leaves the codes' moments off the
    prior's (measured after 4 epochs: mean 0.25, standard deviations 0.49
    to 0.83 per dimension), which the decoder's batch statistics hid during
    training; served with the prior's statistics, the test reconstructions'
    mean squared error was 0.069 per pixel (gmserve eval) where PyTorch's
    training-mode networks gave 0.018. So each code dimension is given the
    prior's mean and standard deviation over the training images, folded
    into the encoder's last linear layer: the error is then 0.020. A
    mixture prior is then fitted to the codes, class by class (fit_prior)."""
    enc, dec = copy.deepcopy(enc), copy.deepcopy(dec)
    with torch.no_grad():
        for net in (enc, dec):
            for m in net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None
            net.train()
        for i in range(0, 200 * 256, 256):
            enc(x[i:i + 256])
        enc.eval()
        standardize_codes(enc, x, *prior.moments())
        if prior.K:
            prior = fit_prior(enc, x, y, prior)
        round_robin = torch.arange(256) % prior.K if prior.K else 256
        for _ in range(200):
            dec(prior.draw(round_robin))
        dec.eval()
    return enc, dec, prior


def standardize_codes(enc, x, mean=0.0, std=1.0):
    """Folds z' = (z - m) / s * std + mean, with m and s each dimension's
    mean and standard deviation over the images x, into the encoder's last
    linear layer: the codes get the moments (mean, std) of the prior."""
    with torch.no_grad():
        codes = torch.cat([enc(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        m, s = codes.mean(0), codes.std(0)
        scale = std / s
        last = enc[-1]
        last.weight.mul_(scale[:, None])
        last.bias.sub_(m).mul_(scale).add_(mean)


def export(path, enc, dec, prior, args, minutes, epochs_done):
    Z = prior.Z
    el, et = gmfile.layer_list(enc, "enc")
    dl, dt = gmfile.layer_list(exportable(dec), "dec")
    meta = {
        "gm.format": "1", "gm.family": "aae", "gm.image": "28x28x1", "gm.latent_dim": str(Z),
        "gm.encoder": el, "gm.decoder": dl, "gm.prior": prior.kind, "gm.output": "tanh",
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), grayscale in [-1, 1]",
        "gm.description": f"adversarial autoencoder, conv encoder 64-128 -> z = {Z}, decoder z -> 128x7x7 -> "
                          "64x14x14 -> 1x28x28 tanh; codes matched to "
                          + (f"a mixture of N({args.radius:g} e_k, I), one per class, by an MLP discriminator "
                             "given the class, then each component fitted to its class's codes (means and "
                             "per-dimension stds); images sharpened by a projection image discriminator (hinge)"
                             if prior.K else "N(0, I) by an MLP discriminator, images sharpened by an image "
                                             "discriminator (hinge)"),
        "gm.training": {"command": data.command(), "seed": args.seed, "epochs": epochs_done,
                        "optimizer": f"per batch: image discriminator (hinge) on real vs reconstructions and "
                                     f"prior draws; latent discriminator (BCE) on prior vs codes; encoder and "
                                     f"decoder on {args.rec_weight:g} x L1 + hinge generator loss + "
                                     f"{args.latent_weight:g} x latent BCE; Adam 2e-4 beta1 0.5, rates decayed "
                                     "linearly to 0; batch 64",
                        "device": "cpu, 1 thread", "minutes": round(minutes, 1)},
    }
    tensors = dict(et, **dt)
    if prior.K:
        meta["gm.num_classes"] = str(prior.K)
        meta["gm.class_names"] = data.CLASS_NAMES
        tensors["prior.means"] = prior.means.clone()
        tensors["prior.stds"] = prior.stds.clone()
    gmfile.write(path, tensors, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (timing runs)")
    ap.add_argument("--z", type=int, default=32, help="latent size")
    ap.add_argument("--prior", choices=("normal", "mixture"), default="mixture")
    ap.add_argument("--radius", type=float, default=4.0, help="a mixture component's distance from 0")
    ap.add_argument("--rec-weight", type=float, default=10.0, help="weight of the mean L1 reconstruction")
    ap.add_argument("--latent-weight", type=float, default=1.0, help="weight of the encoder's latent loss")
    ap.add_argument("--snapshots", action="store_true", help="also write OUT.eN after every epoch")
    ap.add_argument("--checkpoint", help="resume from and save to this file after every epoch")
    args = ap.parse_args()
    data.seed_and_threads(args.seed)
    x, y = data.load("train")
    x = x.reshape(-1, 1, 28, 28) * 2 - 1
    prior = Prior(args.z, args.prior, args.radius)
    Z, K = prior.Z, prior.K
    enc, dec, dimg, dz = encoder(Z), decoder(Z), ImageCritic(K), LatentCritic(Z, K)
    for m in (enc, dec, dimg, dz):
        m.apply(init)
    opt_ae = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=LR, betas=(0.5, 0.999))
    opt_di = torch.optim.Adam(dimg.parameters(), lr=LR, betas=(0.5, 0.999))
    opt_dz = torch.optim.Adam(dz.parameters(), lr=LR, betas=(0.5, 0.999))
    nets = {"enc": enc, "dec": dec, "dimg": dimg, "dz": dz, "opt_ae": opt_ae, "opt_di": opt_di, "opt_dz": opt_dz}
    prog = data.Progress("aae", args.epochs)
    ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)
    per_epoch = len(x) // B
    step, total, first, minutes = 0, args.epochs * per_epoch, 0, 0.0
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint)
        for k, v in nets.items():
            v.load_state_dict(ck[k])
        torch.set_rng_state(ck["rng"])
        first, step, minutes = ck["epoch"], ck["step"], ck["minutes"]
        print(f"[aae] resumed from {args.checkpoint} after epoch {first} ({minutes:.1f} min)", flush=True)
    cls = (lambda labels: labels) if K else (lambda labels: None)
    for e in range(first, args.epochs):
        t0 = time.time()
        perm = torch.randperm(len(x))
        sums = {"rec": 0.0, "d_img": 0.0, "d_z": 0.0, "g_img": 0.0, "g_z": 0.0}
        for i in range(0, per_epoch * B, B):
            for opt in (opt_ae, opt_di, opt_dz):
                for group in opt.param_groups:
                    group["lr"] = LR * (1 - step / total)
            step += 1
            xb, yb = x[perm[i:i + B]], y[perm[i:i + B]]
            yf = prior.labels(B)
            code = enc(xb)
            rec = dec(code)
            fake = dec(prior.draw(yf))
            # image discriminator: real against both kinds of fake
            ldi = (F.relu(1 - dimg(xb, cls(yb))).mean() +
                   0.5 * (F.relu(1 + dimg(rec.detach(), cls(yb))).mean() +
                          F.relu(1 + dimg(fake.detach(), cls(yf))).mean()))
            opt_di.zero_grad()
            ldi.backward()
            opt_di.step()
            # latent discriminator: prior draws against codes (a mixture's draw of the image's class)
            ldz = (F.binary_cross_entropy_with_logits(dz(prior.draw(yb if K else B), cls(yb)), ones) +
                   F.binary_cross_entropy_with_logits(dz(code.detach(), cls(yb)), zeros))
            opt_dz.zero_grad()
            ldz.backward()
            opt_dz.step()
            # encoder and decoder
            l_rec = (rec - xb).abs().mean()
            l_gi = -0.5 * (dimg(rec, cls(yb)).mean() + dimg(fake, cls(yf)).mean())
            l_gz = F.binary_cross_entropy_with_logits(dz(code, cls(yb)), ones)
            loss = args.rec_weight * l_rec + l_gi + args.latent_weight * l_gz
            opt_ae.zero_grad()
            loss.backward()
            opt_ae.step()
            for k, v in (("rec", l_rec), ("d_img", ldi), ("d_z", ldz), ("g_img", l_gi), ("g_z", l_gz)):
                sums[k] += v.item()
            if args.steps and step >= args.steps:
                print(f"[aae] {step} steps in {prog.minutes() * 60:.1f} s; "
                      + "  ".join(f"{k} {v / (i // B + 1):.4f}" for k, v in sums.items()), flush=True)
                return
        minutes += (time.time() - t0) / 60
        prog.epoch(e, **{k: v / per_epoch for k, v in sums.items()})
        if args.checkpoint:
            os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
            state = {k: v.state_dict() for k, v in nets.items()}
            state.update(rng=torch.get_rng_state(), epoch=e + 1, step=step, minutes=minutes, args=vars(args))
            torch.save(state, args.checkpoint + ".tmp")
            os.replace(args.checkpoint + ".tmp", args.checkpoint)
        if args.snapshots and e + 1 < args.epochs:
            export(f"{args.out}.e{e + 1}", *served(enc, dec, x, y, prior), args, minutes, e + 1)
    export(args.out, *served(enc, dec, x, y, prior), args, minutes, args.epochs)
    print(f"[aae] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
