"""gmexport.save_pixelcnn: PixelCNNs written in several styles (masked
convolutions; shifted unmasked ones; the dilated bundled recipe; the
tutorials' convolutions masked in place, with BatchNorm2d and PReLU; the
PixelCNN++ port's helpers, tests/pixelcnn_fixtures.py), exported,
interpreted in float64 and compared with PyTorch's float64 log p (1e-4 nats
per image), then loaded by gmserve (which proves them causal) when built."""
import os
import subprocess
import sys
import unittest

import torch
from torch import nn
import torch.nn.functional as F

from common import HERE, ExportTest  # first: puts the package on sys.path
import gmexport
from daemon import GMSERVE
import interp
from gmexport import safetensors

sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import pixelcnn_net  # noqa: E402  (style 1: masked convolutions, weight * mask)
# shifts without masks; the tutorials' weight.data *= mask; the PixelCNN++ port's helpers
from pixelcnn_fixtures import ShiftedGated, data_masked, DataMaskedConv2d, PixelCNNPPStyle  # noqa: E402


def logp64(net, x, label=None):
    with torch.no_grad():
        lg = net.double()(*([x.double()] + ([] if label is None else [label])))
    net.float()
    return -F.binary_cross_entropy_with_logits(lg, x.double(), reduction="none").flatten(1).sum(1)


class LabelPlanes(nn.Module):
    """Conditioning as some write it: the one-hot label as constant planes
    concatenated to the image before a type A convolution masked in place."""

    def __init__(self, K=3, c=6):
        super().__init__()
        self.K = K
        self.c1 = DataMaskedConv2d("A", 1 + K, c, 5, 1, 2)
        self.c2 = DataMaskedConv2d("B", c, c, 3, 1, 1)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x, y):
        B, _, H, W = x.shape
        planes = F.one_hot(y, self.K).float().view(B, self.K, 1, 1).expand(B, self.K, H, W)
        return self.out(F.relu(self.c2(F.relu(self.c1(torch.cat([x, planes], 1))))))


class LabelBias(nn.Module):
    """...or a per-class bias from an Embedding, indexed with None, before a gate."""

    def __init__(self, K=3, c=6):
        super().__init__()
        self.c1 = DataMaskedConv2d("A", 1, 2 * c, 5, 1, 2)
        self.emb = nn.Embedding(K, 2 * c)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x, y):
        a, b = (self.c1(x) + self.emb(y)[:, :, None, None]).chunk(2, dim=1)
        return self.out(torch.tanh(a) * torch.sigmoid(b))


class PixelCNNExport(ExportTest):
    def check(self, name, net, h, w, classes=0):
        torch.manual_seed(5)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        net.eval()
        path = self.path(name)
        gmexport.save_pixelcnn(path, net, image=f"{h}x{w}x1", num_classes=classes)
        tensors, meta = safetensors.read(path)
        self.assertEqual(meta["gm.family"], "pixelcnn")
        nets = interp.networks(meta)
        ops, names = nets["network"]
        x = (torch.rand(5, 1, h, w) < 0.4).float()
        label = torch.arange(5) % max(classes, 1)
        ins = [("image", x)] + ([("label", label.double())] if classes else [])
        lg = interp.run(ops, tensors, ins)
        got = -F.binary_cross_entropy_with_logits(lg.double(), x.double(), reduction="none").flatten(1).sum(1)
        want = logp64(net, x, label if classes else None)
        self.assertLess(float((got - want).abs().max()), 1e-4, f"{name}: log p of the exported graph vs PyTorch")
        if os.access(GMSERVE, os.X_OK):
            r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("probes: network verified", r.stdout)
        return path

    def test_masked_gated_shapes(self):
        self.check("gated_28", pixelcnn_net.GatedPixelCNN(c=8, layers=3), 28, 28)
        self.check("gated_5x9", pixelcnn_net.GatedPixelCNN(c=5, layers=4, k_first=5), 5, 9)
        self.check("gated_cond", pixelcnn_net.GatedPixelCNN(c=6, layers=2, num_classes=4), 7, 6, classes=4)

    def test_shifted_gated_shapes(self):
        self.check("shifted_8x8", ShiftedGated(), 8, 8)
        self.check("shifted_4x11", ShiftedGated(c=4, layers=5), 4, 11)

    def test_tutorial_styles(self):
        net = data_masked(c=5)
        self.check("datamasked_9x6", net, 9, 6)
        w = net[3].weight  # masked in place by the export's own call of forward()
        self.assertEqual(float(w[:, :, 1, 2:].abs().max()) + float(w[:, :, 2:].abs().max()), 0.0)
        self.check("pp_28", PixelCNNPPStyle(c=4, layers=3), 28, 28)

    def test_conditional_styles(self):
        self.check("label_planes", LabelPlanes(), 6, 5, classes=3)
        self.check("label_bias", LabelBias(), 7, 7, classes=3)

    def test_dilated_gated_shapes(self):
        self.check("dilated_28", pixelcnn_net.DilatedGatedPixelCNN(c=5, dilations=(1, 2, 4, 8, 16), hidden=8), 28, 28)
        self.check("dilated_6x13", pixelcnn_net.DilatedGatedPixelCNN(c=4, dilations=(2, 1, 4), hidden=8), 6, 13)

    def test_mask_is_baked(self):
        net = pixelcnn_net.GatedPixelCNN(c=4, layers=2)
        path = self.check("baked", net, 6, 6)
        tensors, meta = safetensors.read(path)
        w = tensors["network.conv2d.weight"]  # the first vertical conv: rows at and below the centre are zero
        self.assertEqual(float(w[:, :, 3:].abs().max()), 0.0)
        self.assertGreater(float(w[:, :, :3].abs().max()), 0.0)

    @unittest.skipUnless(os.access(GMSERVE, os.X_OK), f"{GMSERVE} not built")
    def test_noncausal_refused_by_gmserve(self):
        path = self.path("noncausal")
        gmexport.save_pixelcnn(path, ShiftedGated(see_self=True).eval(), image="6x6x1")
        r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not causal", r.stderr)
        self.assertIn("pixel (row 0, column 0) depends on input pixel (row 0, column 0)", r.stderr)

    def test_bad_arguments(self):
        net = pixelcnn_net.GatedPixelCNN(c=4, layers=2)
        with self.assertRaises(gmexport.ExportError):
            gmexport.save_pixelcnn(self.path("x"), net, image="6x6x1", likelihood="gaussian")
        with self.assertRaises(gmexport.ExportError):
            gmexport.save_pixelcnn(self.path("x"), net, image="6x6x1", num_classes=3, class_names=["a"])


if __name__ == "__main__":
    unittest.main()
