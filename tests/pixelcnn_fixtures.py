"""pixelcnn_fixtures.py - random-weight PixelCNNs exported by
gmexport.save_pixelcnn, with log p computed by PyTorch in float64.

Five ways of writing the network: the gated PixelCNN of the bundled model
(models/train/pixelcnn_net.py: vertical and horizontal stacks, masked
convolutions that multiply weight by a mask buffer), a plain masked
PixelCNN (an explicit F.pad before an unpadded masked conv, residual ReLU
blocks), a gated one without masks, as PixelCNN++ writes it (unpadded
convolutions after F.pad, outputs shifted down / right by a pad and a crop),
the tutorials' nn.Sequential of convolutions masked in place
(weight.data *= mask) with BatchNorm2d and PReLU, and one written with the
PixelCNN++ port's own helpers (int sizes, pad modules made per call,
concat_elu). The dilated bundled recipe is a sixth. Each
NAME.ref.safetensors holds binary images "x" [N, H, W, C] (channels last,
as gmserve takes pixels) and, in its metadata, "logp": the float64 log p of each image (for a
conditional model, log of the mean over classes of p(x | y)). Also two
non-causal networks the server must refuse: a type B first layer (each
output sees its own pixel), and a 3-channel one whose outputs see their own
pixel's channels, which only the numeric check at load can tell.

    /usr/bin/python3 tests/pixelcnn_fixtures.py tests/fixtures
"""
import json
import math
import os
import sys

import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "train"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import gmexport  # noqa: E402
from gmexport.safetensors import write  # noqa: E402
import pixelcnn_net  # noqa: E402


class PlainMasked(nn.Module):
    """van den Oord et al. 2016a: a 7x7 type A conv, then residual blocks of
    3x3 type B convs, ReLU, two 1x1 convs to the logits."""

    def __init__(self, c=6, blocks=2, first_b=False):
        super().__init__()
        self.w0 = nn.Parameter(torch.randn(c, 1, 7, 7) * 0.3)
        self.b0 = nn.Parameter(torch.randn(c) * 0.1)
        m = torch.ones(1, 1, 7, 7)
        m[:, :, 3, 3 + (1 if first_b else 0):] = 0
        m[:, :, 4:] = 0
        self.register_buffer("m0", m)
        self.blocks = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(blocks))
        mb = torch.ones(1, 1, 3, 3)
        mb[:, :, 1, 2:] = 0
        mb[:, :, 2:] = 0
        self.register_buffer("mb", mb)
        self.head = nn.Conv2d(c, c, 1)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        h = F.conv2d(F.pad(x, (3, 3, 3, 3)), self.w0 * self.m0, self.b0)
        for conv in self.blocks:
            h = h + F.relu(F.conv2d(h, conv.weight * self.mb, conv.bias, padding=1))
        return self.out(F.relu(self.head(F.relu(h))))


def down_shift(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x):
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class ShiftedGated(nn.Module):
    """Style 2, as PixelCNN++ writes it: no masks. Unpadded 2x3 and 1x2
    convolutions after an explicit F.pad see the rows up to the pixel and the
    columns up to it; the first layer's outputs are shifted down / right
    (pad, then crop by slicing) so that they see only what came before;
    gates tanh * sigmoid, a residual horizontal stack."""

    def __init__(self, c=6, layers=3, see_self=False):
        super().__init__()
        self.see_self = see_self  # the first horizontal layer not shifted: not causal
        self.v = nn.ModuleList(nn.Conv2d(1 if i == 0 else c, 2 * c, (2, 3)) for i in range(layers))
        self.h = nn.ModuleList(nn.Conv2d(1 if i == 0 else c, 2 * c, (1, 2)) for i in range(layers))
        self.v2h = nn.ModuleList(nn.Conv2d(2 * c, 2 * c, 1) for _ in range(layers))
        self.res = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(layers))
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        v = h = x
        for i in range(len(self.v)):
            fv = self.v[i](F.pad(v, (1, 1, 1, 0)))
            fh = self.h[i](F.pad(h, (1, 0, 0, 0)))
            if i == 0:
                fv = down_shift(fv)
                fh = fh if self.see_self else right_shift(fh)
            fh = fh + self.v2h[i](fv)
            v = torch.tanh(fv[:, :fv.shape[1] // 2]) * torch.sigmoid(fv[:, fv.shape[1] // 2:])
            g = torch.tanh(fh[:, :fh.shape[1] // 2]) * torch.sigmoid(fh[:, fh.shape[1] // 2:])
            h = g if i == 0 else h + self.res[i](g)
        return self.out(F.relu(h))


class DataMaskedConv2d(nn.Conv2d):
    """The masked convolution of most PyTorch PixelCNN tutorials: the mask
    is applied to weight.data in place at every call (fx never sees it; the
    exporter runs forward() once before reading the weights)."""

    def __init__(self, mask_type, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", self.weight.data.clone())
        _, _, kh, kw = self.weight.size()
        self.mask.fill_(1)
        self.mask[:, :, kh // 2, kw // 2 + (mask_type == "B"):] = 0
        self.mask[:, :, kh // 2 + 1:] = 0

    def forward(self, x):
        self.weight.data *= self.mask
        return super().forward(x)


def data_masked(c=6):
    """Style 4: nn.Sequential of such convolutions without bias, BatchNorm2d
    and ReLU / PReLU, a 1x1 conv to the logits."""
    return nn.Sequential(
        DataMaskedConv2d("A", 1, c, 5, 1, 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),
        DataMaskedConv2d("B", c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c),
        DataMaskedConv2d("B", c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),
        nn.Conv2d(c, 1, 1))


def pp_down_shift(x, pad=None):
    """PixelCNN++'s PyTorch port: sizes as Python ints, a pad module made
    inside the call."""
    xs = [int(y) for y in x.size()]
    x = x[:, :, :xs[2] - 1, :]
    pad = nn.ZeroPad2d((0, 0, 1, 0)) if pad is None else pad
    return pad(x)


def pp_right_shift(x, pad=None):
    xs = [int(y) for y in x.size()]
    x = x[:, :, :, :xs[3] - 1]
    pad = nn.ZeroPad2d((1, 0, 0, 0)) if pad is None else pad
    return pad(x)


def concat_elu(x):
    axis = len(x.size()) - 3
    return F.elu(torch.cat([x, -x], dim=axis))


class PixelCNNPPStyle(nn.Module):
    """Style 5, the PixelCNN++ port's helpers: down / right shifts of
    2x3 and 1x2 convolutions, concat_elu (x and -x), gated residual
    layers whose gate halves come from torch.split with a size."""

    def __init__(self, c=5, layers=2):
        super().__init__()
        self.c = c
        self.u0 = nn.Conv2d(1, c, (2, 3))
        self.ul0 = nn.Conv2d(1, c, (1, 2))
        self.u = nn.ModuleList(nn.Conv2d(2 * c, 2 * c, (2, 3)) for _ in range(layers))
        self.ul = nn.ModuleList(nn.Conv2d(4 * c, 2 * c, (2, 2)) for _ in range(layers))
        self.out = nn.Conv2d(2 * c, 1, 1)

    def forward(self, x):
        u = pp_down_shift(self.u0(F.pad(x, (1, 1, 1, 0))))
        ul = pp_down_shift(self.u0(F.pad(x, (1, 1, 1, 0)))) + pp_right_shift(self.ul0(F.pad(x, (1, 0, 0, 0))))
        for cu, cul in zip(self.u, self.ul):
            a, b = torch.split(cu(F.pad(concat_elu(u), (1, 1, 1, 0))), self.c, dim=1)
            u = u + a * torch.sigmoid(b)
            a, b = torch.split(cul(F.pad(concat_elu(torch.cat([ul, u], 1)), (1, 0, 1, 0))), self.c, dim=1)
            ul = ul + a * torch.sigmoid(b)
        return self.out(concat_elu(ul))


def logp64(net, x, labels=None):
    net = net.double()
    with torch.no_grad():
        lg = net(x.double()) if labels is None else net(x.double(), labels)
    net.float()
    return -F.binary_cross_entropy_with_logits(lg, x.double(), reduction="none").flatten(1).sum(1)


def randomize(net, scale):
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * scale)
    return net.eval()


def fixture(out, name, net, h, w, n, classes=0, c=1, save=gmexport.save_pixelcnn):
    """NAME.safetensors written by save, and NAME.ref.safetensors."""
    path = os.path.join(out, name + ".safetensors")
    save(path, net, image=f"{h}x{w}x{c}", num_classes=classes)
    x = (torch.rand(n, c, h, w) < 0.4).float()
    if classes:
        lp = torch.stack([logp64(net, x, torch.full((n,), y, dtype=torch.int64)) for y in range(classes)], 1)
        lp = torch.logsumexp(lp, 1) - math.log(classes)
    else:
        lp = logp64(net, x)
    write(os.path.join(out, name + ".ref.safetensors"), {"x": torch.tensor(x.permute(0, 2, 3, 1).tolist())},
          {"logp": json.dumps([float(v) for v in lp])})


def main(out):
    torch.manual_seed(2026)
    fixture(out, "pixelcnn_gated", randomize(pixelcnn_net.GatedPixelCNN(c=8, layers=4, hidden=16), 0.3), 9, 7, 6)
    fixture(out, "pixelcnn_gated_cond", randomize(pixelcnn_net.GatedPixelCNN(c=6, layers=3, hidden=8,
                                                                              num_classes=3), 0.3), 6, 5, 5, 3)
    fixture(out, "pixelcnn_plain", PlainMasked().eval(), 8, 8, 6)
    fixture(out, "pixelcnn_shifted", randomize(ShiftedGated(), 0.3), 7, 9, 5)
    fixture(out, "pixelcnn_tiny", randomize(pixelcnn_net.GatedPixelCNN(c=4, layers=2, k_first=3, hidden=8), 0.25),
            2, 3, 4)
    fixture(out, "pixelcnn_rgb", randomize(pixelcnn_net.GatedPixelCNN(channels=3, c=6, layers=2, hidden=8), 0.3),
            5, 4, 4, c=3)
    seeing = pixelcnn_net.GatedPixelCNN(channels=3, c=4, layers=2, hidden=8).eval()
    seeing.layers[0].h.mask[:, :, :, 3] = 1  # the first horizontal conv sees its own pixel's channels
    gmexport.save_pixelcnn(os.path.join(out, "pixelcnn_rgb_noncausal.safetensors"), seeing, image="5x4x3")
    gmexport.save_pixelcnn(os.path.join(out, "pixelcnn_noncausal.safetensors"), PlainMasked(first_b=True).eval(),
                           image="5x5x1")
    # the bundled model's style: shifts, no masks, dilations reaching past the frame
    fixture(out, "pixelcnn_dilated", randomize(pixelcnn_net.DilatedGatedPixelCNN(c=5, dilations=(1, 2, 4, 8, 1),
                                                                                 hidden=8), 0.3), 11, 9, 5)
    masked = randomize(data_masked(), 0.3)
    for m in masked.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fixture(out, "pixelcnn_datamasked", masked, 8, 7, 5)
    fixture(out, "pixelcnn_pp", randomize(PixelCNNPPStyle(), 0.3), 7, 8, 5)
    # channel counts past the sampler's 64- and 16-wide register blocks, with
    # a remainder after each: gates 2 * 37 = 74, the head 70
    fixture(out, "pixelcnn_wide", randomize(pixelcnn_net.DilatedGatedPixelCNN(c=37, dilations=(1, 2), hidden=70), 0.2),
            6, 5, 4)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures"))
