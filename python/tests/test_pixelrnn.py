"""gmexport.save_pixelrnn: Row LSTMs of models/train/pixelrnn_net.py exported,
their stored tensors run through the exporter's float64 definition and
compared with the module (the probes agree with the module), loaded by
gmserve when built; modules that are not the fixed architecture raise
ExportError."""
import os
import subprocess
import sys
import unittest

import torch
from torch import nn

from common import HERE, ExportTest  # first: puts the package on sys.path
import gmexport
from gmexport import safetensors

sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
import pixelrnn_net  # noqa: E402

GMSERVE = os.environ.get("GMSERVE", os.path.join(HERE, "..", "..", "build", "gmserve"))


def randomized(net):
    torch.manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net.eval()


class PixelRNNExport(ExportTest):
    def check(self, name, net, h, w, classes=0):
        path = self.path(name)
        gmexport.save_pixelrnn(path, randomized(net), image=f"{h}x{w}x1", num_classes=classes)
        tensors, meta = safetensors.read(path)
        self.assertEqual(meta["gm.family"], "pixelrnn")
        x, lg = tensors["gm.pixelrnn.probe.image"], tensors["gm.pixelrnn.probe.logits"]
        with torch.no_grad():
            want = net(x) if not classes else net(x, tensors["gm.pixelrnn.probe.label"].long())
        self.assertLess(float((lg - want).abs().max()), 1e-6)
        # the first layer's stored kernel is mask A's: the centre and right taps are zero
        k = net.k_in
        self.assertEqual(float(tensors["layers.0.input_to_state.weight"][:, :, k // 2:].abs().max()), 0.0)
        if os.access(GMSERVE, os.X_OK):
            r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("probes: network verified (4 probe inputs)", r.stdout)
        return path

    def test_shapes(self):
        self.check("small", pixelrnn_net.RowLSTM(hidden=8, layers=2, head=8), 6, 7)
        self.check("wide", pixelrnn_net.RowLSTM(hidden=6, layers=3, k_in=5, k_state=5, head=4), 5, 12)
        self.check("cond", pixelrnn_net.RowLSTM(hidden=6, layers=2, head=4, num_classes=3), 4, 5, classes=3)

    def test_not_the_architecture(self):
        net = randomized(pixelrnn_net.RowLSTM(hidden=4, layers=2, head=4))
        with self.assertRaises(gmexport.ExportError):  # a GRU-like module: no state_to_state conv
            gmexport.save_pixelrnn(self.path("x"), nn.Sequential(nn.Conv2d(1, 1, 1)), image="5x5x1")
        with self.assertRaises(gmexport.ExportError):
            gmexport.save_pixelrnn(self.path("x"), net, image="5x5x3")
        with self.assertRaises(gmexport.ExportError):  # a label embedding without num_classes
            gmexport.save_pixelrnn(self.path("x"), randomized(pixelrnn_net.RowLSTM(hidden=4, num_classes=2)),
                                   image="5x5x1")
        swapped = randomized(pixelrnn_net.RowLSTM(hidden=4, layers=2, head=4))
        swapped.forward = lambda x, label=None: -net(x)  # computes something else from the same tensors
        with self.assertRaises(gmexport.ExportError) as e:
            gmexport.save_pixelrnn(self.path("x"), swapped, image="5x5x1")
        self.assertIn("differs from the Row LSTM", str(e.exception))


if __name__ == "__main__":
    unittest.main()
