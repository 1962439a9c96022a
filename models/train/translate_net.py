"""translate_net.py - what the two bundled translators (train_stargan.py,
train_cyclegan.py) share: the ResNet generator, the PatchGAN trunk, the
evaluation classifier loaded into PyTorch for monitoring, the per-epoch
translation metrics, the common options and the checkpoint that lets a
training resume.

Generator (CycleGAN's ResNet generator, scaled to 28x28): reflection pad,
conv stem x stem (7 in CycleGAN) -> ch, two stride-2 convs 3x3 (ch -> 2ch -> 4ch, 28 -> 14 -> 7),
`res` residual blocks at 7x7 (reflection pad 1, conv 3x3, instance norm,
ReLU, again without the ReLU, plus the input), two transposed convs back to
28x28, reflection pad, conv stem x stem -> 1, tanh. Every conv but the last is
followed by an affine instance norm (but the first, in the StarGAN) and a ReLU. Images are in [-1, 1].
"""
import argparse
import os

import torch
from torch import nn
import torch.nn.functional as F

import data
import gmfile  # noqa: F401 (puts python/ on the path)
from gmexport.safetensors import read  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSIFIER = os.path.join(HERE, "..", "classifier.safetensors")


class Residual(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True))

    def forward(self, x):
        return x + self.body(x)


def resnet_generator(in_ch, ch, res, stem=7, stem_norm=True):
    """stem_norm=False leaves out the first instance norm: a StarGAN's label
    maps are constant over the image (reflection padding keeps them so), so
    the first conv turns them into a constant per channel, which an instance
    norm subtracts: the generator would never see the target class."""
    def norm_relu(c):
        return [nn.InstanceNorm2d(c, affine=True), nn.ReLU()]

    return nn.Sequential(
        nn.ReflectionPad2d(stem // 2), nn.Conv2d(in_ch, ch, stem), *(norm_relu(ch) if stem_norm else [nn.ReLU()]),
        nn.Conv2d(ch, 2 * ch, 3, 2, 1), *norm_relu(2 * ch),
        nn.Conv2d(2 * ch, 4 * ch, 3, 2, 1), *norm_relu(4 * ch),
        *[Residual(4 * ch) for _ in range(res)],
        nn.ConvTranspose2d(4 * ch, 2 * ch, 3, 2, 1, output_padding=1), *norm_relu(2 * ch),
        nn.ConvTranspose2d(2 * ch, ch, 3, 2, 1, output_padding=1), *norm_relu(ch),
        nn.ReflectionPad2d(stem // 2), nn.Conv2d(ch, 1, stem), nn.Tanh())


def patch_trunk(ch):
    """PatchGAN-style trunk: 28 -> 14 -> 7 -> 4 (stride-2 convs 4x4, leaky ReLU)."""
    return nn.Sequential(
        nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * ch, 4 * ch, 4, 2, 2), nn.LeakyReLU(0.2))


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


def classifier():
    """models/classifier.safetensors (train_classifier.py's architecture) as a
    PyTorch module taking [-1, 1] images, in eval mode, frozen."""
    features = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU())
    head = nn.Sequential(nn.Linear(128, 10))
    tensors, _ = read(CLASSIFIER)
    for part, net in (("features", features), ("head", head)):
        state = {k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")}
        for k, v in net.state_dict().items():
            if k.endswith("num_batches_tracked"):
                state[k] = v
        net.load_state_dict(state, strict=True)
    net = nn.Sequential(features, head).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return lambda x: net((x + 1) / 2)


@torch.no_grad()
def metrics(translate, classify, x, target):
    """Share of translations the classifier puts in `target`, mean |y - x| in
    [0, 1] per pixel, and the IoU of the silhouettes (pixels > 0.5 in [0, 1])
    of source and translation; `translate(x_batch, target_batch)`."""
    hit, l1, iou = 0.0, 0.0, 0.0
    for i in range(0, len(x), 500):
        xb, tb = x[i:i + 500], target[i:i + 500]
        yb = translate(xb, tb)
        hit += (classify(yb).argmax(1) == tb).sum().item()
        l1 += ((yb - xb).abs() / 2).mean((1, 2, 3)).sum().item()
        a, b = xb > 0, yb > 0
        inter, union = (a & b).sum((1, 2, 3)).float(), (a | b).sum((1, 2, 3)).float()
        iou += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).sum().item()
    n = len(x)
    return {"accuracy": hit / n, "l1": l1 / n, "iou": iou / n}


def lsgan(pred, real):
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


def linear_decay(opts, lr, step, total, start):
    """Constant `lr` until step `start`, then linearly to 0 at `total`."""
    scale = 1.0 if step < start else max(0.0, (total - step) / (total - start))
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = lr * scale


def parse(ap):
    args = ap.parse_args()
    data.seed_and_threads(args.seed)
    return args


def arguments(epochs, lr, d_ch, checkpoint):
    """The options both trainers take; each adds its loss weights."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--schedule-epochs", type=int, default=0,
                    help="epochs the learning-rate schedule spans (default --epochs; more stops a run early)")
    ap.add_argument("--ch", type=int, default=16, help="generator's first width")
    ap.add_argument("--res", type=int, default=3, help="residual blocks")
    ap.add_argument("--d-ch", type=int, default=d_ch, help="discriminator's first width")
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--checkpoint", default=checkpoint)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (timing runs)")
    ap.add_argument("--seed", type=int, default=1)
    return ap


class Checkpoint:
    """The networks and optimizers (`parts`, name -> module), the random state
    and the progress so far, written atomically after every epoch."""

    def __init__(self, path, parts, name, epochs):
        self.path, self.parts = path, parts
        self.epoch, self.step, self.minutes, self.history = 0, 0, 0.0, []
        if os.path.exists(path):
            ck = torch.load(path)
            for k, m in parts.items():
                m.load_state_dict(ck[k])
            torch.set_rng_state(ck["rng"])
            self.epoch, self.step, self.minutes, self.history = ck["epoch"], ck["step"], ck["minutes"], ck["history"]
            print(f"[{name}] resumed from {path} after epoch {self.epoch}", flush=True)
        self.prog, self.base = data.Progress(name, epochs), self.minutes

    def end_epoch(self, row, args):
        """Logs the epoch's line (`row`: losses and metrics) and saves."""
        self.epoch += 1
        self.prog.epoch(self.epoch - 1, **row)
        self.minutes = self.base + self.prog.minutes()
        self.history.append(dict({k: round(v, 4) for k, v in row.items()}, epoch=self.epoch,
                                 minutes=round(self.minutes, 1)))
        state = {k: m.state_dict() for k, m in self.parts.items()}
        state.update(rng=torch.get_rng_state(), epoch=self.epoch, step=self.step, minutes=self.minutes,
                     history=self.history, args=vars(args))
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def timing(self, n, sums):
        """The line of a --steps timing run after n steps of this run."""
        print(f"[{self.prog.name}] {self.step} steps in {self.prog.minutes() * 60:.1f} s; "
              + "  ".join(f"{k} {v / n:.4f}" for k, v in sums.items()), flush=True)

    def export(self, args, generator, dataset, description, optimizer, **translator):
        """Writes args.out with gmexport.save_translator (28x28x1, tanh)."""
        import gmexport
        generator.eval()
        for net in translator.values():
            if isinstance(net, nn.Module):
                net.eval()
        gmexport.save_translator(args.out, generator, image="28x28x1", output="tanh", metadata={
            "gm.dataset": dataset, "gm.description": description,
            "gm.training": {"command": data.command(), "seed": args.seed, "epochs": args.epochs,
                            "optimizer": optimizer, "device": "cpu, 1 thread", "minutes": round(self.minutes, 1),
                            "history": self.history}}, **translator)
        print(f"[{self.prog.name}] wrote {args.out}", flush=True)
