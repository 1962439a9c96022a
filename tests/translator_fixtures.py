"""translator_fixtures.py - random-weight image-to-image translators exported
by gmexport.save_translator, with PyTorch's translations as references.

The generators are written the way the popular PyTorch collections write
them: CycleGAN's ResnetGenerator (junyanz/pytorch-CycleGAN-and-pix2pix:
reflection padding, a 7x7 convolution, instance norm without affine
parameters, two stride-2 convolutions down, residual blocks of padded 3x3
convolutions, two transposed convolutions up, a 7x7 convolution and tanh)
and StarGAN's Generator (yunjey/stargan: the target class as one-hot maps
repeated over the image and concatenated to its channels, instance norm
with affine parameters and running statistics, residual blocks, tanh).

  translator_cyclegan  16x16x3, generator A->B and reverse B->A, domains
                       ("summer", "winter")
  translator_stargan   28x28x1, 10 classes given as "onehot" (StarGAN's c)
  translator_label     8x8x1, sigmoid, 3 classes given as "label" through an
                       nn.Embedding, the image second in forward()'s order
  translator_half      28x28x1, a CycleGAN-like pair whose last convolution
                       has zero weights and bias before a sigmoid: every
                       translation is 0.5 in every pixel, for `gmserve eval`
                       cases worked out by hand
  translator_half_cond the same for a 10-class translator (label input)

Each NAME.ref.safetensors holds images "x" [N, H*W*C] (channels last, in
[0, 1], as gmserve takes pixels), for conditional models their target
classes "label" [N] (I64), and PyTorch's translations "forward" (and
"reverse") [N, H*W*C] as gmserve returns them.

    /usr/bin/python3 tests/translator_fixtures.py tests/fixtures
"""
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import gmexport  # noqa: E402
from gmexport.safetensors import write  # noqa: E402


class ResnetBlock(nn.Module):
    """CycleGAN's residual block: x + (pad, conv, norm, relu, pad, conv, norm)."""

    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=True),
                                        nn.InstanceNorm2d(dim), nn.ReLU(True), nn.ReflectionPad2d(1),
                                        nn.Conv2d(dim, dim, 3, padding=0, bias=True), nn.InstanceNorm2d(dim))

    def forward(self, x):
        out = x + self.conv_block(x)
        return out


class ResnetGenerator(nn.Module):
    """CycleGAN's ResnetGenerator with InstanceNorm2d (its "instance" norm:
    no affine parameters, no running statistics, so use_bias is True)."""

    def __init__(self, input_nc, output_nc, ngf=8, n_blocks=2, last="tanh"):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=True),
                 nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                      nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        for i in range(n_blocks):
            model += [ResnetBlock(ngf * mult)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=True),
                      nn.InstanceNorm2d(int(ngf * mult / 2)), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0)]
        model += [nn.Tanh() if last == "tanh" else nn.Sigmoid()]
        self.model = nn.Sequential(*model)

    def forward(self, input):
        return self.model(input)


class ResidualBlock(nn.Module):
    """StarGAN's residual block."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(dim_out, affine=True, track_running_stats=True), nn.ReLU(inplace=True),
            nn.Conv2d(dim_out, dim_out, kernel_size=3, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(dim_out, affine=True, track_running_stats=True))

    def forward(self, x):
        return x + self.main(x)


class StarGenerator(nn.Module):
    """StarGAN's Generator for image_nc channels and c_dim target classes."""

    def __init__(self, image_nc=1, conv_dim=8, c_dim=10, repeat_num=2):
        super().__init__()
        layers = [nn.Conv2d(image_nc + c_dim, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
                  nn.InstanceNorm2d(conv_dim, affine=True, track_running_stats=True), nn.ReLU(inplace=True)]
        curr_dim = conv_dim
        for i in range(2):
            layers += [nn.Conv2d(curr_dim, curr_dim * 2, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(curr_dim * 2, affine=True, track_running_stats=True), nn.ReLU(inplace=True)]
            curr_dim = curr_dim * 2
        for i in range(repeat_num):
            layers.append(ResidualBlock(dim_in=curr_dim, dim_out=curr_dim))
        for i in range(2):
            layers += [nn.ConvTranspose2d(curr_dim, curr_dim // 2, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(curr_dim // 2, affine=True, track_running_stats=True),
                       nn.ReLU(inplace=True)]
            curr_dim = curr_dim // 2
        layers += [nn.Conv2d(curr_dim, image_nc, kernel_size=7, stride=1, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x, c):
        # replicate spatially and concatenate domain information
        c = c.view(c.size(0), c.size(1), 1, 1)
        c = c.repeat(1, 1, x.size(2), x.size(3))
        x = torch.cat([x, c], dim=1)
        return self.main(x)


class LabelTranslator(nn.Module):
    """forward(label, x): an embedding of the target class, broadcast over
    the image as per-channel maps (expand_as), a small conv net, sigmoid."""

    def __init__(self, classes=3, ch=4):
        super().__init__()
        self.embed = nn.Embedding(classes, ch)
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * ch, ch, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ch, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, label, x):
        h = self.inp(x)
        e = self.embed(label).unsqueeze(2).unsqueeze(3).expand_as(h)
        return self.body(torch.cat([h, e], 1))


class HalfTranslator(nn.Module):
    """Any translator whose last convolution has zero weights and bias
    before a sigmoid: 0.5 in every pixel, whatever the image and class."""

    def __init__(self, classes=0):
        super().__init__()
        self.embed = nn.Embedding(classes, 1) if classes else None
        self.conv = nn.Conv2d(2 if classes else 1, 1, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x, label=None):
        if self.embed is not None:
            x = torch.cat([x, self.embed(label).unsqueeze(2).unsqueeze(3).expand_as(x)], 1)
        return torch.sigmoid(self.conv(x))


def randomize(m):
    """Random running statistics (the fresh ones would make instance norms
    with running statistics the identity) and non-trivial affine terms."""
    g = torch.Generator().manual_seed(7)
    for b in m.modules():
        if isinstance(b, nn.InstanceNorm2d):
            if b.track_running_stats:
                b.running_mean.copy_(torch.randn(b.running_mean.shape, generator=g) * 0.3)
                b.running_var.copy_(torch.rand(b.running_var.shape, generator=g) + 0.5)
            if b.affine:
                b.weight.data.copy_(torch.rand(b.weight.shape, generator=g) + 0.5)
                b.bias.data.copy_(torch.randn(b.bias.shape, generator=g) * 0.1)
    return m.eval()


def translations(module, x, h, w, C, inputs, labels, classes, output):
    """PyTorch's translation of pixels x [N, H*W*C] (channels last, [0, 1])
    as gmserve returns them."""
    img = x.reshape(-1, h, w, C).permute(0, 3, 1, 2)
    img = 2 * img - 1 if output == "tanh" else img
    args = {"image": img, "label": labels, "onehot": nn.functional.one_hot(labels, max(classes, 1)).float()}
    with torch.no_grad():
        y = module(*[args[n] for n in inputs])
    y = y.reshape(-1, C, h, w).permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return ((y + 1) / 2 if output == "tanh" else y).clamp(0, 1)


def fixture(out, name, h, w, C, gen, n, inputs=("image",), classes=0, output="tanh", reverse=None, domains=None):
    gen = randomize(gen)
    reverse = randomize(reverse) if reverse is not None else None
    gmexport.save_translator(os.path.join(out, name + ".safetensors"), gen, image=f"{h}x{w}x{C}", inputs=inputs,
                             num_classes=classes, output=output, reverse=reverse, domains=domains)
    x = torch.rand(n, h * w * C)
    labels = torch.randint(0, max(classes, 1), (n,))
    refs = {"x": x, "forward": translations(gen, x, h, w, C, inputs, labels, classes, output)}
    if classes:
        refs["label"] = labels
    if reverse is not None:
        refs["reverse"] = translations(reverse, x, h, w, C, inputs, labels, classes, output)
    write(os.path.join(out, name + ".ref.safetensors"), {k: v.contiguous() for k, v in refs.items()}, {})


def main(out):
    torch.manual_seed(11)
    fixture(out, "translator_cyclegan", 16, 16, 3, ResnetGenerator(3, 3, ngf=4), 5,
            reverse=ResnetGenerator(3, 3, ngf=4), domains=("summer", "winter"))
    fixture(out, "translator_stargan", 28, 28, 1, StarGenerator(1, conv_dim=4, c_dim=10, repeat_num=2), 5,
            inputs=("image", "onehot"), classes=10)
    fixture(out, "translator_label", 8, 8, 1, LabelTranslator(3), 5, inputs=("label", "image"), classes=3,
            output="sigmoid")
    fixture(out, "translator_half", 28, 28, 1, HalfTranslator(), 2, output="sigmoid", reverse=HalfTranslator(),
            domains=("A", "B"))
    fixture(out, "translator_half_cond", 28, 28, 1, HalfTranslator(10), 2, inputs=("image", "label"), classes=10,
            output="sigmoid")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures"))
