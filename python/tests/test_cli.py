"""python3 -m gmexport on the zoo's own source file."""
import os
import subprocess
import sys
import unittest

import torch

from common import HERE, ExportTest  # first: puts the package on sys.path
from gmexport import safetensors
import zoo

ZOO = os.path.join(HERE, "zoo.py")


class CLI(ExportTest):
    def run_cli(self, *args):
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        return subprocess.run([sys.executable, "-m", "gmexport", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    def test_vae_methods_with_weights(self):
        torch.manual_seed(11)
        vae = zoo.ConvVAE(z_dim=8)
        ckpt = os.path.join(self.dir, "vae.pt")
        torch.save(vae.state_dict(), ckpt)
        out = self.path("cli_vae")
        r = self.run_cli("vae", out, "--from", ZOO, "--encoder", "ConvVAE:encode", "--decoder", "ConvVAE:decode",
                         "--image", "28x28x1", "--latent-dim", "8", "--weights", f"ConvVAE={ckpt}",
                         "--meta", "gm.description=examples-style conv VAE")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("gmserve check", r.stdout)
        vae.eval()
        tensors, meta = self.verify(out, {"encoder": vae.encode, "decoder": vae.decode})
        self.assertEqual(meta["gm.description"], "examples-style conv VAE")
        self.assertTrue(torch.equal(tensors["encoder.module.conv1.weight"], vae.conv1.weight))

    def test_gan_and_its_errors(self):
        out = self.path("cli_gan")
        r = self.run_cli("gan", out, "--from", ZOO, "--generator", "CondDCGANGenerator", "--image", "16x16x1",
                         "--latent-dim", "16", "--inputs", "z,label", "--num-classes", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        _, meta = safetensors.read(out)
        self.assertEqual(meta["gm.num_classes"], "10")
        r = self.run_cli("gan", out, "--from", ZOO, "--generator", "CondDCGANGenerator", "--image", "16x16x1",
                         "--latent-dim", "16")
        self.assertEqual(r.returncode, 1)
        self.assertIn("beyond the declared inputs", r.stderr)
        r = self.run_cli("gan", out, "--from", ZOO, "--generator", "MaskedLinear", "--image", "4x4x1",
                         "--latent-dim", "16")
        self.assertEqual((r.returncode, r.stderr.count("\n")), (1, 1), r.stderr)
        self.assertIn("cannot be built with no arguments", r.stderr)
        r = self.run_cli("gan", out, "--from", ZOO, "--generator", "CondDCGANGenerator", "--image", "16x16x1",
                         "--latent-dim", "16", "--weights", "CondDCGANGenerator=/nonexistent.pt")
        self.assertEqual((r.returncode, r.stderr.count("\n")), (1, 1), r.stderr)


if __name__ == "__main__":
    unittest.main()
