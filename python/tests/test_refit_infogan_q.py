"""models/train/refit_infogan_q.py: it must rebuild the bundled InfoGAN's
generator and discriminator exactly (the file's probes, computed by the
exporter from the networks that were saved, are the truth), refuse a file
whose networks do not reproduce them, and its augmentation must move each
image by whole pixels within the bound, the background filling in."""
import os
import sys
import tempfile
import unittest

import torch

from common import HERE, safetensors

sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
import refit_infogan_q  # noqa: E402

BUNDLED = os.path.join(HERE, "..", "..", "models", "infogan.safetensors")


class RebuildTest(unittest.TestCase):
    def test_bundled_networks_reproduce_the_probes(self):
        G, disc, meta = refit_infogan_q.load(BUNDLED)
        tensors, _ = safetensors.read(BUNDLED)
        with torch.no_grad():
            out = G(*(tensors[f"gm.probe.generator.in.{n}"] for n in ("z", "cat", "code")))
            d = disc(tensors["gm.probe.discriminator.in.image"])
        torch.testing.assert_close(out, tensors["gm.probe.generator.out"], rtol=0, atol=1e-4)
        torch.testing.assert_close(d, tensors["gm.probe.discriminator.out"], rtol=0, atol=1e-4)
        self.assertEqual(meta["gm.cat_dim"], "10")

    def test_refuses_a_generator_off_its_probes(self):
        tensors, meta = safetensors.read(BUNDLED)
        tensors["generator.net.7.bias"] = tensors["generator.net.7.bias"] + 0.5
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "off.safetensors")
            safetensors.write(path, tensors, meta)
            with self.assertRaisesRegex(SystemExit, "rebuilt generator"):
                refit_infogan_q.load(path)


class ShiftTest(unittest.TestCase):
    def test_whole_pixel_shifts_with_background(self):
        torch.manual_seed(6)
        x = torch.rand(64, 1, 28, 28) * 2 - 1
        y = refit_infogan_q.shift(x)
        S = refit_infogan_q.SHIFT
        pad = torch.nn.functional.pad(x, (S, S, S, S), value=-1.0)
        seen = set()
        for i in range(len(x)):
            hits = [(dy, dx) for dy in range(-S, S + 1) for dx in range(-S, S + 1)
                    if torch.equal(y[i], pad[i, :, S + dy:S + dy + 28, S + dx:S + dx + 28])]
            self.assertEqual(len(hits), 1, f"image {i} is not one shift of its input")
            seen.add(hits[0])
        self.assertGreater(len(seen), 10, "the shifts vary from image to image")


if __name__ == "__main__":
    unittest.main()
