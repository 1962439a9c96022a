"""Shared checks of the exporter tests: read a file back and interpret it.
(Serving files with a real gmserve is daemon.py's.)"""
import os
import shutil
import sys
import tempfile
import unittest

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import interp  # noqa: E402
from gmexport import safetensors  # noqa: E402

REL = 1e-5


def close(got, want):
    """|got - want| <= REL * max(1, max|want|): the first mismatch or None."""
    got, want = got.double().reshape(want.shape[0], -1), want.double().reshape(want.shape[0], -1)
    scale = max(1.0, float(want.abs().max()))
    bad = ((got - want).abs() > REL * scale).nonzero()
    if len(bad):
        i, j = bad[0].tolist()
        return f"sample {i} value {j}: got {float(got[i, j])}, want {float(want[i, j])} (scale {scale})"
    return None


class Lambda(nn.Module):
    """A module whose forward(x) is fn(self, x), with the submodules mods
    (name=module) as its attributes: one spelling of an op per test."""

    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        for k, v in mods.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gmexport-tests-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name + ".safetensors")

    def verify(self, path, modules, legacy_classes=0):
        """Every network of the file, interpreted on its probe inputs, gives
        its probe outputs; and those are what `modules[net]` computes on the
        same inputs. Returns (tensors, metadata)."""
        tensors, meta = safetensors.read(path)
        nets = interp.networks(meta)
        self.assertEqual(set(nets), set(modules), "networks in the file")
        for net, (ops, names) in nets.items():
            ins = [(n, tensors[f"gm.probe.{net}.in.{n}"]) for n in names]
            want = tensors[f"gm.probe.{net}.out"]
            self.assertEqual(want.shape[0], ins[0][1].shape[0])
            got = interp.run(ops, tensors, ins)
            self.assertIsNone(close(got, want), f"{path}: {net} interpreted vs its probe outputs")
            args = [t.long() if n == "label" else t for n, t in ins]
            with torch.no_grad():
                out = modules[net](*args)
            if isinstance(out, tuple):
                out = torch.cat([o.reshape(o.shape[0], -1) for o in out], 1)
            self.assertIsNone(close(want, out), f"{path}: {net} probe outputs vs the module")
        return tensors, meta

    def ops(self, meta, net):
        import json
        return json.loads(meta[f"gm.{net}"])

