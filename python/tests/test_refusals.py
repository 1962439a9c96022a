"""What cannot be exported exactly is an ExportError naming the module."""
import unittest

import torch
import torch.nn.functional as F
from torch import nn

from common import ExportTest, Lambda  # first: puts the package on sys.path
import gmexport


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Hooked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc.register_forward_hook(lambda m, i, o: o * 2)

    def forward(self, x):
        return self.fc(x)


class AliasedInplace(nn.Module):
    def forward(self, x):
        y = F.relu(x, inplace=True)
        return x + y * 2


VEC = torch.randn(3, 4)
IMG = torch.randn(3, 2, 4, 4)
CASES = [
    ("data-dependent control flow", Branchy(), VEC, "^decoder: branches on tensor values"),
    ("branch on the batch size", Lambda(lambda s, x: x * 2 if x.size(0) > 1 else x), VEC, "branches on the batch size"),
    ("random numbers", Lambda(lambda s, x: x + torch.rand_like(s.b), b=nn.Parameter(torch.ones(4))), VEC, "random"),
    ("random like", Lambda(lambda s, x: x + torch.randn_like(x)), VEC, "has no gmserve op"),
    ("dropout in training mode", Lambda(lambda s, x: F.dropout(x, 0.5)), VEC, "training=True"),
    ("hard-coded batch size", Lambda(lambda s, x: x.view(3, -1)), IMG, "batch dimension"),
    ("linear on a map", Lambda(lambda s, x: s.l(x), l=nn.Linear(4, 3)), IMG, "last dimension"),
    ("forward hook", Hooked(), VEC, r"fc: has a forward hook"),
    ("in-place change read later", AliasedInplace(), VEC, "in place"),
    ("positional inplace=True read later", Lambda(lambda s, x: F.leaky_relu(x, 0.2, True) + x), VEC, "in place"),
    ("in-place method read later", Lambda(lambda s, x: x.relu_() + x.sigmoid()), VEC, "in place"),
    ("batch statistics", nn.BatchNorm1d(4, track_running_stats=False), VEC, "track_running_stats"),
    ("unsupported function", Lambda(lambda s, x: torch.exp(x)), VEC, "has no gmserve op"),
    ("division by an activation", Lambda(lambda s, x: 1 / (x * x + 1)), VEC, "divides by an activation"),
    ("batch arithmetic", Lambda(lambda s, x: x.view(x.size(0) * 2, -1)), IMG, "batch size"),
    ("full-map constant", Lambda(lambda s, x: x + s.pos, pos=nn.Parameter(torch.randn(2, 4, 4))), IMG,
     "per-channel"),
    ("permute", Lambda(lambda s, x: x.permute(0, 2, 3, 1)), IMG, "has no gmserve op"),
    ("ceil_mode", nn.MaxPool2d(3, 2, ceil_mode=True), IMG, "ceil_mode"),
    ("fractional upsample", nn.Upsample(scale_factor=1.5), IMG, "whole number"),
    ("cat over the batch", Lambda(lambda s, x: torch.cat([x, x], 0)), VEC, "batch dimension"),
]


class Refusals(ExportTest):
    def test_cases(self):
        for name, m, x, pattern in CASES:
            with self.subTest(name):
                with self.assertRaisesRegex(gmexport.ExportError, pattern):
                    gmexport.export_network("decoder", m.eval(), [("z", x)])

    def test_error_names_the_module_path(self):
        net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), Lambda(lambda s, x: torch.exp(x))))
        with self.assertRaises(gmexport.ExportError) as cm:
            gmexport.export_network("decoder", net, [("z", VEC)])
        self.assertEqual(cm.exception.where, "decoder.1.1 (torch.exp)")

    def test_family_checks(self):
        enc, dec = nn.Linear(16, 8), nn.Linear(4, 16)
        with self.assertRaisesRegex(gmexport.ExportError, "8 values per sample"):
            gmexport.save_vae(self.path("r1"), nn.Sequential(nn.Flatten(), enc), dec, image="4x4x1", latent_dim=3)
        with self.assertRaisesRegex(gmexport.ExportError, "likelihood"):
            gmexport.save_vae(self.path("r2"), nn.Sequential(nn.Flatten(), enc), dec, image="4x4x1",
                              latent_dim=4, likelihood="poisson")
        with self.assertRaisesRegex(gmexport.ExportError, "ends in 'sigmoid'"):
            gmexport.save_gan(self.path("r3"), nn.Sequential(nn.Linear(4, 16), nn.Sigmoid()), image="4x4x1",
                              latent_dim=4, output="tanh")
        with self.assertRaisesRegex(gmexport.ExportError, "forward\\(\\) takes 1 inputs"):
            gmexport.save_gan(self.path("r4"), nn.Sequential(nn.Linear(4, 16), nn.Tanh()), image="4x4x1",
                              latent_dim=4, inputs=("z", "label"), num_classes=3)
        with self.assertRaisesRegex(gmexport.ExportError, r"generator\.0\.weight: is torch\.float64"):
            gmexport.save_gan(self.path("r6"), nn.Sequential(nn.Linear(4, 16), nn.Tanh()).double(),
                              image="4x4x1", latent_dim=4)
        with self.assertRaisesRegex(gmexport.ExportError, "written by the exporter"):
            gmexport.save_gan(self.path("r5"), nn.Sequential(nn.Linear(4, 16), nn.Tanh()), image="4x4x1",
                              latent_dim=4, metadata={"gm.family": "vae"})


if __name__ == "__main__":
    unittest.main()
