"""save_gan with InfoGAN's categorical code and Q network."""
import unittest

import torch
from torch import nn

from common import ExportTest  # first: puts the package on sys.path
import gmexport


class InfoGenerator(nn.Module):
    """forward(z, cat, code), the inputs concatenated, as PyTorch GAN
    collections write InfoGAN's generator."""

    def __init__(self, Z, K, L):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(Z + K + L, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh())

    def forward(self, z, cat, code):
        return self.net(torch.cat([z, cat, code], 1))


class TestInfoGAN(ExportTest):
    def test_categorical_code_and_q(self):
        G = InfoGenerator(3, 5, 2)
        Q = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.1), nn.Linear(8, 7))
        p = self.path("infogan")
        gmexport.save_gan(p, G, image="4x4x1", latent_dim=3, inputs=("z", "cat", "code"), cat_dim=5, code_dim=2,
                          q_network=Q)
        tensors, meta = self.verify(p, {"generator": G, "q_network": Q})
        self.assertEqual(meta["gm.cat_dim"], "5")
        cat = tensors["gm.probe.generator.in.cat"]
        self.assertTrue(bool(((cat == 0) | (cat == 1)).all() and (cat.sum(1) == 1).all()), "probe cats are one-hot")

    def test_refusals(self):
        G = InfoGenerator(3, 5, 2)
        with self.assertRaisesRegex(gmexport.ExportError, "cat_dim"):  # 'cat' without cat_dim
            gmexport.save_gan(self.path("a"), G, image="4x4x1", latent_dim=3, inputs=("z", "cat", "code"), code_dim=2)
        with self.assertRaisesRegex(gmexport.ExportError, "q_network"):  # Q on a GAN without codes
            gmexport.save_gan(self.path("b"), nn.Sequential(nn.Linear(3, 16), nn.Tanh()), image="4x4x1",
                              latent_dim=3, q_network=nn.Sequential(nn.Flatten(), nn.Linear(16, 2)))
        with self.assertRaisesRegex(gmexport.ExportError, "q_network"):  # Q with the wrong output size
            gmexport.save_gan(self.path("c"), G, image="4x4x1", latent_dim=3, inputs=("z", "cat", "code"),
                              cat_dim=5, code_dim=2, q_network=nn.Sequential(nn.Flatten(), nn.Linear(16, 6)))


if __name__ == "__main__":
    unittest.main()
