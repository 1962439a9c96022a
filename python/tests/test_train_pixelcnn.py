"""models/train/train_pixelcnn.fit, the loop both autoregressive trainers
share: a run lasts hours and resumes from a checkpoint, so a checkpoint of
another architecture must be refused before any step (naming both), and
the folders the export and the checkpoints go to must exist before
training starts, not be found missing later, the commands of a training
resumed over several runs are all kept, and a weight average (--ema) is the
recurrence it promises, kept across runs. The data is a small random
stand-in (70 training images: two steps an epoch)."""
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
                           seed=1, ema=0.0)
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
                minutes, history, runs, average = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll,
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
            minutes, history, runs, average = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll,
                                                                 loop_args(os.path.join(d, "m"), ck), arch(3))
            self.assertEqual([h["epoch"] for h in history], [1])
            self.assertEqual(history[0]["threads"], 1)
            # the same architecture: the checkpoint already holds the epoch, nothing trains
            again = train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(os.path.join(d, "m"), ck), arch(3))
            self.assertEqual(again, (minutes, history, runs, None))
            with self.assertRaises(SystemExit) as e:
                train_pixelcnn.fit("t", tiny(5), pixelrnn_net.nll, loop_args(os.path.join(d, "m"), ck), arch(5))
            self.assertIn("another architecture", str(e.exception))
            self.assertIn("'k_in': 3", str(e.exception))
            self.assertIn("'k_in': 5", str(e.exception))

    def test_averages_the_weights_after_every_step_and_resumes_the_average(self):
        with tempfile.TemporaryDirectory() as d:
            ck, out = os.path.join(d, "ck.pt"), os.path.join(d, "m")
            train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(out, ck, epochs=1), arch(3))
            start = torch.load(ck)["model"]
            seen = []  # the weights after each step, as the optimizer leaves them

            class Recording(torch.optim.Adam):
                def step(self, closure=None):
                    r = super().step(closure)
                    seen.append([p.detach().double().clone() for g in self.param_groups for p in g["params"]])
                    return r
            model = tiny(3)
            with mock.patch.object(train_pixelcnn.torch.optim, "Adam", Recording):
                minutes, history, runs, average = train_pixelcnn.fit("t", model, pixelrnn_net.nll,
                                                                     loop_args(out, ck, epochs=3, ema=0.75), arch(3))
            self.assertEqual(average, {"decay": 0.75, "from_epoch": 1})
            self.assertEqual(len(seen), 4)  # epochs 2 and 3, two steps each
            names = [n for n, _ in model.named_parameters()]
            want = [start[n].double() for n in names]
            for step in seen:  # w_avg = 0.75 w_avg + 0.25 w, in float64
                want = [0.75 * a + 0.25 * w for a, w in zip(want, step)]
            for n, a in zip(names, want):
                self.assertLess((dict(model.named_parameters())[n].double() - a).abs().max().item(), 1e-6, n)
            self.assertNotIn("val_average_nats", history[0])
            self.assertIn("val_average_nats", history[2])
            self.assertIn("from epoch 2 on", train_pixelcnn.training_metadata(loop_args(out, ck), minutes, history,
                                                                              runs, average)["weights"])
            # the checkpoint keeps the trained weights and the average apart
            held = torch.load(ck)
            self.assertLess((held["model"]["out2.weight"].double() - seen[-1][names.index("out2.weight")]).abs()
                            .max().item(), 1e-7)
            # a run that only exports hands back the same average, without --ema
            again = tiny(3)
            self.assertEqual(train_pixelcnn.fit("t", again, pixelrnn_net.nll, loop_args(out, ck, epochs=3),
                                                arch(3))[3], average)
            self.assertTrue(torch.equal(again.out2.weight, model.out2.weight))
            with self.assertRaises(SystemExit) as e:  # another decay than the one it holds
                train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(out, ck, epochs=4, ema=0.5), arch(3))
            self.assertIn("decay 0.75", str(e.exception))
            with self.assertRaises(SystemExit):
                train_pixelcnn.fit("t", tiny(3), pixelrnn_net.nll, loop_args(out, ck, ema=1.0), arch(3))


if __name__ == "__main__":
    unittest.main()
