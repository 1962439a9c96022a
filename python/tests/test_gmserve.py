"""End to end: `gmserve check` loads the exported files as the daemon would.
Skipped when build/gmserve (or $GMSERVE) has not been built."""
import os
import re
import subprocess
import unittest

import torch.nn.functional as F
from torch import nn

from common import ExportTest  # first: puts the package on sys.path
import gmexport
from daemon import GMSERVE
import zoo


class MLPEncoder(nn.Module):
    def __init__(self, Z=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 2 * Z)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


class MLPDecoder(nn.Module):
    def __init__(self, Z=4):
        super().__init__()
        self.fc3, self.fc4 = nn.Linear(Z, 32), nn.Linear(32, 64)

    def forward(self, z):
        return self.fc4(F.leaky_relu(self.fc3(z), 0.2))


def dcgan():
    G = nn.Sequential(nn.Linear(6, 16 * 4 * 4), nn.Unflatten(1, (16, 4, 4)), nn.BatchNorm2d(16), nn.ReLU(True),
                      nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2, True), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    return zoo.randomize(G), D.eval()


@unittest.skipUnless(os.access(GMSERVE, os.X_OK), f"{GMSERVE} not built")
class Check(ExportTest):
    def check(self, path):
        r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"gmserve check {path}:\n{r.stdout}{r.stderr}")
        return r.stdout

    def layer_list_files(self):
        """Files that use only the ops every gmserve build has."""
        v, g = self.path("check_vae"), self.path("check_gan")
        gmexport.save_vae(v, MLPEncoder(), MLPDecoder(), image="8x8x1", latent_dim=4)
        G, D = dcgan()
        gmexport.save_gan(g, G, image="8x8x1", latent_dim=6, discriminator=D)
        e = self.path("check_examples_dcgan")
        gmexport.save_gan(e, zoo.randomize(zoo.ExamplesDCGANGenerator()), image="16x16x3", latent_dim=16)
        return [(v, 2), (g, 2), (e, 1)]

    def test_layer_list_files_load(self):
        for path, _ in self.layer_list_files():
            self.check(path)

    def test_probes_verified(self):
        files = self.layer_list_files()
        if "probes:" not in self.check(files[0][0]):
            self.skipTest("this gmserve build does not verify probes yet")
        vae = zoo.ConvVAE(z_dim=8).eval()
        p = self.path("check_conv_vae")
        gmexport.save_vae(p, gmexport.method(vae, "encode"), gmexport.method(vae, "decode"), latent_dim=8)
        files.append((p, 2))
        p = self.path("check_cond_dcgan")
        G = zoo.randomize(zoo.CondDCGANGenerator(img_size=16), 1)
        gmexport.save_gan(p, G, image="16x16x1", latent_dim=16, inputs=("z", "label"), num_classes=10,
                          discriminator=zoo.randomize(zoo.DCGANDiscriminator(img_size=16)))
        files.append((p, 2))
        p = self.path("check_infogan")
        gmexport.save_gan(p, zoo.randomize(zoo.InfoGANGenerator()), image="16x16x1", latent_dim=12,
                          inputs=("z", "onehot", "code"), num_classes=10, code_dim=2)
        files.append((p, 1))
        for path, n in files:
            out = self.check(path)
            # "probes: encoder, decoder verified (4 probe inputs each)"
            m = re.search(r"probes: ([a-z]+(?:, [a-z]+)*) verified", out)
            self.assertIsNotNone(m, f"{path}: {out}")
            self.assertEqual(len(m.group(1).split(", ")), n, f"{path}: {out}")


if __name__ == "__main__":
    unittest.main()
