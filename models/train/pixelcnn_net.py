"""pixelcnn_net.py - the gated PixelCNN of the bundled model (van den Oord et
al. 2016, "Conditional Image Generation with PixelCNN Decoders"), written the
way users write it: masked convolutions that multiply their weight by a mask
buffer.

Causality: the vertical stack at row i sees only rows < i (its first layer's
mask keeps the kernel rows strictly above the centre, later layers keep rows
up to the centre of a stack that is already strictly above). The horizontal
stack at (i, j) sees row i left of j in the first layer (type A: columns
strictly left of the centre) and up to j after it (type B), plus the vertical
stack of the same position through a 1x1 convolution. Both stacks are
gated, tanh(a) * sigmoid(b); the horizontal one is residual after its first
layer. The output is relu -> 1x1 -> relu -> 1x1 to one Bernoulli logit per
pixel. With num_classes, an embedding of the label adds a per-layer bias to
both stacks' pre-activations (the class-conditional PixelCNN).
"""
import torch
from torch import nn
import torch.nn.functional as F


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose kernel is multiplied by a 0/1 mask."""

    def __init__(self, cin, cout, kh, kw, mask):
        super().__init__(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", mask.reshape(1, 1, kh, kw).expand(cout, cin, kh, kw).clone())

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def vertical_mask(k, first):
    """Kernel rows strictly above the centre (first layer) or up to it."""
    m = torch.zeros(k, k)
    m[:k // 2 + (0 if first else 1), :] = 1
    return m


def horizontal_mask(k, first):
    """1 x k: columns strictly left of the centre (type A) or up to it (type B)."""
    m = torch.zeros(1, k)
    m[0, :k // 2 + (0 if first else 1)] = 1
    return m


def gate(t):
    a, b = torch.chunk(t, 2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, cin, c, k, first, num_classes=0):
        super().__init__()
        self.first = first
        self.v = MaskedConv2d(cin, 2 * c, k, k, vertical_mask(k, first))
        self.h = MaskedConv2d(cin, 2 * c, 1, k, horizontal_mask(k, first))
        self.v2h = nn.Conv2d(2 * c, 2 * c, 1)
        self.res = None if first else nn.Conv2d(c, c, 1)
        self.cond = nn.Embedding(num_classes, 4 * c) if num_classes else None

    def forward(self, v, h, label=None):
        fv = self.v(v)
        fh = self.h(h) + self.v2h(fv)
        if self.cond is not None:
            bv, bh = torch.chunk(self.cond(label), 2, dim=1)
            fv = fv + bv.reshape(bv.shape[0], -1, 1, 1)
            fh = fh + bh.reshape(bh.shape[0], -1, 1, 1)
        v = gate(fv)
        g = gate(fh)
        h = g if self.res is None else h + self.res(g)
        return v, h


class GatedPixelCNN(nn.Module):
    """x: [B, channels, H, W] in {0, 1} -> Bernoulli logits of the same shape."""

    def __init__(self, channels=1, c=32, layers=7, k_first=7, k=3, hidden=64, num_classes=0):
        super().__init__()
        self.num_classes = num_classes
        self.layers = nn.ModuleList(
            [GatedLayer(channels, c, k_first, True, num_classes)] +
            [GatedLayer(c, c, k, False, num_classes) for _ in range(layers - 1)])
        self.out1 = nn.Conv2d(c, hidden, 1)
        self.out2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x, label=None):
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, label)
        return self.out2(F.relu(self.out1(F.relu(h))))


def nll(logits, x):
    """Negative log-likelihood in nats per image."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class DilatedGatedPixelCNN(nn.Module):
    """train_pixelcnn.py's recipe: the gated PixelCNN written without masks, as
    PixelCNN++ writes it, its later layers dilated so that the stacks see the
    whole image above and the whole row to the left.

    The first layer is the masked one's (rows strictly above in a 3 x 7
    window, the 3 pixels to the left) as unpadded convolutions after an
    explicit F.pad, shifted down / right by cropping the extra row / column.
    A later layer with dilation d reads, for the vertical stack, rows i - d
    and i at columns j - d, j, j + d (a 2 x 3 kernel), and for the
    horizontal one columns j - d and j (1 x 2): the taps a masked 3 x 3 /
    1 x 3 type B layer keeps, without the multiply-adds by a mask's zeros
    (in FLOPs a third; PyTorch on one core trained no faster for it). Dilations 1, 2, 4, 8, ... compose to every offset up to
    their sum, so nothing in the cone is skipped; zero padding that deep
    also tells each position where it is in the frame.
    """

    def __init__(self, c=32, dilations=(1, 2, 4, 8, 1, 2, 4, 8), hidden=128):
        super().__init__()
        self.dilations = tuple(dilations)
        self.v = nn.ModuleList([nn.Conv2d(1, 2 * c, (3, 7))] +
                               [nn.Conv2d(c, 2 * c, (2, 3), dilation=d) for d in self.dilations])
        self.h = nn.ModuleList([nn.Conv2d(1, 2 * c, (1, 3))] +
                               [nn.Conv2d(c, 2 * c, (1, 2), dilation=d) for d in self.dilations])
        self.v2h = nn.ModuleList(nn.Conv2d(2 * c, 2 * c, 1) for _ in range(len(self.dilations) + 1))
        self.res = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in self.dilations)
        self.out1 = nn.Conv2d(c, hidden, 1)
        self.out2 = nn.Conv2d(hidden, 1, 1)

    def forward(self, x):
        H, W = x.shape[2], x.shape[3]
        fv = self.v[0](F.pad(x, (3, 3, 3, 0)))[:, :, :H, :]
        fh = self.h[0](F.pad(x, (3, 0, 0, 0)))[:, :, :, :W] + self.v2h[0](fv)
        v, h = gate(fv), gate(fh)
        for i, d in enumerate(self.dilations):
            fv = self.v[i + 1](F.pad(v, (d, d, d, 0)))
            fh = self.h[i + 1](F.pad(h, (d, 0, 0, 0))) + self.v2h[i + 1](fv)
            v = gate(fv)
            h = h + self.res[i](gate(fh))
        return self.out2(F.relu(self.out1(F.relu(h))))
