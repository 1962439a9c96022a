"""models/train/train_pixelcnn.fit, the loop both autoregressive trainers
share: a run lasts hours and resumes from a checkpoint, so a checkpoint of
another architecture must be refused before any step (naming both), and
the folders the export and the checkpoints go to must exist before
training starts, not be found missing later, and the commands of a training
resumed over several runs are all kept. The data is a small random
stand-in."""
import argparse
import os
import sys
import tempfile
import unittest
from unittest import mock

import torch

from common import HERE  # noqa: F401  (puts the package on sys.path)

sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
import pixelrnn_net  # noqa: E402
import train_pixelcnn  # noqa: E402


def fake_load(split):
    g = torch.Generator().manual_seed(1)
    return torch.rand(train_pixelcnn.VAL + 70, 784, generator=g), torch.zeros(train_pixelcnn.VAL + 70)


def loop_args(out, checkpoint, **kw):
    a = argparse.Namespace(out=out, checkpoint=checkpoint, epochs=1, threads=1, max_steps=0, log_every=1000,
                           seed=1)
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def tiny(k_in):
    return pixelrnn_net.RowLSTM(hidden=2, layers=1, k_in=k_in, k_state=1, head=2)


def arch(k_in):
    return {"hidden": 2, "layers": 1, "k_in": k_in, "k_state": 1, "head": 2}


@mock.patch.object(train_pixelcnn.data, "load", fake_load)
class FitTest(unittest.TestCase):
    def test_creates_the_export_and_checkpoint_folders_before_training(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "not", "yet", "model.safetensors")
            ck = os.path.join(d, "no", "checkpoints", "ck.pt")
            args = loop_args(out, ck, max_steps=1)  # stops before the first checkpoint
            self.assertIsNone(train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, args, arch(3)))
            self.assertTrue(os.path.isdir(os.path.dirname(out)))
            self.assertTrue(os.path.isdir(os.path.dirname(ck)))

    def test_keeps_the_command_of_every_run(self):
        with tempfile.TemporaryDirectory() as d:
            ck, out = os.path.join(d, "ck.pt"), os.path.join(d, "m")
            with mock.patch.object(sys, "argv", ["train_x.py", out]):
                train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(out, ck, epochs=1), arch(3))
            with mock.patch.object(sys, "argv", ["train_x.py", out, "--threads", "2"]):
                minutes, history, runs = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll,
                                                            loop_args(out, ck, epochs=2), arch(3))
            with mock.patch.object(sys, "argv", ["train_x.py", out, "--epochs", "2"]):  # exports only
                again = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(out, ck, epochs=2), arch(3))
                meta = train_pixelcnn.training_metadata(loop_args(out, ck, epochs=2), *again)
            self.assertEqual([(r["command"].split("python3 ")[1], r["first_epoch"], r["last_epoch"]) for r in runs],
                             [(f"train_x.py {out}", 1, 1), (f"train_x.py {out} --threads 2", 2, 2)])
            self.assertEqual(again[2], runs)
            self.assertTrue(meta["command"].endswith(f"train_x.py {out}"))  # the run that started it

    def test_resumes_its_own_architecture_and_refuses_another(self):
        with tempfile.TemporaryDirectory() as d:
            ck = os.path.join(d, "ck.pt")
            minutes, history, runs = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll,
                                                        loop_args(os.path.join(d, "m"), ck), arch(3))
            self.assertEqual([h["epoch"] for h in history], [1])
            self.assertEqual(history[0]["threads"], 1)
            # the same architecture: the checkpoint already holds the epoch, nothing trains
            again = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(os.path.join(d, "m"), ck), arch(3))
            self.assertEqual(again, (minutes, history, runs))
            with self.assertRaises(SystemExit) as e:
                train_pixelcnn.fit("t", tiny(5), pixelrnn_net.nll, loop_args(os.path.join(d, "m"), ck), arch(5))
            self.assertIn("another architecture", str(e.exception))
            self.assertIn("'k_in': 3", str(e.exception))
            self.assertIn("'k_in': 5", str(e.exception))


if __name__ == "__main__":
    unittest.main()
