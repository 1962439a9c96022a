"""gmexport.save_translator: CycleGAN's ResnetGenerator pair and StarGAN's
Generator as their collections write them (tests/translator_fixtures.py),
and a label-input translator whose image comes second. Each file's probes,
run by the reference interpreter, must equal the modules' outputs; gmserve
(when built) must load it, recomputing those probes in C. Then the
refusals, each with the message that names what is wrong."""
import json
import os
import subprocess
import sys
import unittest

import torch
from torch import nn

from common import HERE, ExportTest  # first: puts the package on sys.path
import gmexport
from gmexport.safetensors import read as safetensors_read, write

sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import translator_fixtures as tf  # noqa: E402

GMSERVE = os.environ.get("GMSERVE", os.path.join(HERE, "..", "..", "build", "gmserve"))


class SaveTranslator(ExportTest):
    def gmserve_check(self, path, nets):
        if not os.access(GMSERVE, os.X_OK):
            return
        r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("family translator", r.stdout)
        self.assertIn(f"{nets} verified", r.stdout)
        self.assertIn("translate", r.stdout)

    def test_cyclegan_pair(self):
        torch.manual_seed(1)
        g, f = tf.randomize(tf.ResnetGenerator(3, 3, ngf=4)), tf.randomize(tf.ResnetGenerator(3, 3, ngf=4))
        p = self.path("cyclegan")
        gmexport.save_translator(p, g, image="16x16x3", reverse=f, domains=("horse", "zebra"))
        tensors, meta = self.verify(p, {"generator": g, "reverse": f})
        self.assertEqual((meta["gm.family"], meta["gm.output"], json.loads(meta["gm.domains"])),
                         ("translator", "tanh", ["horse", "zebra"]))
        self.assertEqual(json.loads(meta["gm.generator_inputs"]), ["image"])
        self.assertEqual(json.loads(meta["gm.reverse_inputs"]), ["image"])
        ops = [op["op"] for op in self.ops(meta, "generator")]
        for op in ("pad", "instance_norm", "conv_transpose2d", "add", "tanh"):
            self.assertIn(op, ops)
        probe = tensors["gm.probe.generator.in.image"]
        self.assertTrue(bool(probe.min() < 0 <= probe.max() <= 1), "tanh probes are images in [-1, 1]")
        self.gmserve_check(p, "generator, reverse")

    def test_stargan_onehot(self):
        torch.manual_seed(2)
        g = tf.randomize(tf.StarGenerator(1, conv_dim=4, c_dim=5, repeat_num=1))
        p = self.path("stargan")
        names = ["a", "b", "c", "d", "e"]
        gmexport.save_translator(p, g, image="12x12x1", inputs=("image", "onehot"), num_classes=5,
                                 class_names=names)
        _, meta = self.verify(p, {"generator": g})
        self.assertEqual((meta["gm.num_classes"], json.loads(meta["gm.class_names"])), ("5", names))
        self.assertNotIn("gm.domains", meta)
        self.assertIn("expand", [op["op"] for op in self.ops(meta, "generator")])
        self.gmserve_check(p, "generator")

    def test_label_first_sigmoid(self):
        torch.manual_seed(3)
        g = tf.LabelTranslator(3).eval()
        p = self.path("label")
        gmexport.save_translator(p, g, image="8x8x1", inputs=("label", "image"), num_classes=3, output="sigmoid")
        tensors, meta = self.verify(p, {"generator": g})
        self.assertEqual(json.loads(meta["gm.generator_inputs"]), ["label", "image"])
        self.assertTrue(bool((tensors["gm.probe.generator.in.image"] >= 0).all()), "sigmoid probes are in [0, 1]")
        self.gmserve_check(p, "generator")

    def test_command_line(self):
        torch.manual_seed(4)
        star = tf.randomize(tf.StarGenerator())
        ckpt = os.path.join(self.dir, "star.pt")
        torch.save(star.state_dict(), ckpt)
        src = os.path.join(HERE, "..", "..", "tests", "translator_fixtures.py")
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        p = self.path("cli_star")
        r = subprocess.run([sys.executable, "-m", "gmexport", "translator", p, "--from", src, "--generator",
                            "StarGenerator", "--inputs", "image,onehot", "--num-classes", "10", "--image", "28x28x1",
                            "--weights", f"StarGenerator={ckpt}"], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.verify(p, {"generator": star})
        self.gmserve_check(p, "generator")
        p = self.path("cli_pair")
        r = subprocess.run([sys.executable, "-m", "gmexport", "translator", p, "--from", src, "--generator",
                            "HalfTranslator", "--reverse", "HalfTranslator", "--domains", "A,B", "--output", "sigmoid",
                            "--image", "28x28x1"], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        _, meta = safetensors_read(p)
        self.assertEqual(json.loads(meta["gm.domains"]), ["A", "B"])
        r = subprocess.run([sys.executable, "-m", "gmexport", "translator", p, "--from", src, "--generator",
                            "HalfTranslator", "--reverse", "HalfTranslator", "--image", "28x28x1"],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 1)
        self.assertIn("domains", r.stderr)

    def test_refusals(self):
        p = self.path("bad")
        g = tf.ResnetGenerator(1, 1, ngf=2, n_blocks=1)
        star = tf.StarGenerator(1, conv_dim=2, c_dim=3, repeat_num=1)
        cases = [
            ("num_classes", dict(generator=star, inputs=("image", "onehot"))),  # a class input, no classes
            ("num_classes", dict(generator=g, num_classes=3)),  # classes, no class input
            ("inputs", dict(generator=g, inputs=("x",))),
            ("inputs", dict(generator=star, inputs=("onehot",), num_classes=3)),  # no image
            ("not both", dict(generator=star, inputs=("image", "label", "onehot"), num_classes=3)),
            ("domains", dict(generator=g, reverse=g)),  # reverse without domains
            ("reverse", dict(generator=g, domains=("A", "B"))),  # domains without reverse
            ("two different", dict(generator=g, reverse=g, domains=("A", "A"))),
            ("two different", dict(generator=g, reverse=g, domains="AB")),
            ("name the directions", dict(generator=g, reverse=g, domains=("forward", "B"))),
            ("ends in 'tanh'", dict(generator=g, output="sigmoid")),
            ("output", dict(generator=g, output="relu")),
            ("3 classes", dict(generator=star, inputs=("image", "onehot"), num_classes=3, class_names=["a"])),
        ]
        for what, kw in cases:
            with self.subTest(what=what, kw=sorted(kw)):
                gen = kw.pop("generator")
                with self.assertRaisesRegex(gmexport.ExportError, what):
                    gmexport.save_translator(p, gen, image="8x8x1", **kw)
        # an output of another shape than the image: the 8x8 input comes back 4x4
        down = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.Tanh())
        with self.assertRaisesRegex(gmexport.ExportError, "values per sample"):
            gmexport.save_translator(p, down, image="8x8x1")
        # a reverse generator that ends otherwise than the forward one is named
        with self.assertRaisesRegex(gmexport.ExportError, "reverse: output='tanh' but the network ends in 'sigmoid'"):
            gmexport.save_translator(p, g, image="8x8x1", reverse=tf.ResnetGenerator(1, 1, 2, 1, last="sigmoid"),
                                     domains=("A", "B"))
        self.assertFalse(os.path.exists(p), "nothing is written for a refused model")

    def test_server_refuses_inconsistent_files(self):
        """gmserve check on the committed CycleGAN fixture with one metadata
        key changed: each file is refused with a message naming the fault."""
        if not os.access(GMSERVE, os.X_OK):
            self.skipTest("build/gmserve is not built")
        tensors, meta = safetensors_read(os.path.join(HERE, "..", "..", "tests", "fixtures",
                                                      "translator_cyclegan.safetensors"))
        cases = [
            ("gm.output", "logits", 'must be tanh or sigmoid (found "logits")'),
            ("gm.domains", None, 'needs metadata "gm.domains"'),
            ("gm.domains", '["a", "a"]', "names one domain twice"),
            ("gm.domains", '["forward", "b"]', "names a direction"),
            ("gm.domains", '["a"]', "a JSON array of two names"),
            ("gm.num_classes", "3", "does not take the target class but gm.num_classes is 3"),
            ("gm.generator_inputs", '["z"]', "names input 'z'"),
            ("gm.reverse_inputs", '["image", "label"]', "takes the target class but gm.num_classes is 0"),
            ("gm.reverse", None, 'but the file has no "gm.reverse"'),
            # the same values as [3, 256, 1]: an image of another shape than the input's
            ("gm.generator", json.dumps(json.loads(meta["gm.generator"]) + [{"op": "reshape", "shape": [3, 256, 1]}]),
             "must end in an image [C, H, W] = [3, 16, 16]"),
        ]
        for key, value, want in cases:
            with self.subTest(key=key, value=value):
                m = dict(meta)
                if value is None:
                    del m[key]
                else:
                    m[key] = value
                p = self.path("refused")
                write(p, tensors, m)
                r = subprocess.run([GMSERVE, "check", p], capture_output=True, text=True, timeout=60)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(want, r.stderr)


if __name__ == "__main__":
    unittest.main()
