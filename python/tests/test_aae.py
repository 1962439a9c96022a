"""gmexport.save_aae: the adversarial autoencoder as the popular PyTorch GAN
collections write it (eriklindernoren/PyTorch-GAN's aae.py: an MLP encoder
with mu and logvar heads, a tanh decoder), a conv AAE with a point
encoder, and the paper's label-conditioned mixture prior. Each file's
probes must equal the modules' outputs, and gmserve (when built) must load
it, recomputing those probes in C; the mixture's means, stds and classes
read back as given."""
import json
import os
import subprocess
import sys
import unittest

import numpy as np
import torch
from torch import nn

from common import HERE, ExportTest  # first: puts the package on sys.path
import gmexport
from daemon import GMSERVE

IMG, Z = (1, 28, 28), 10


class Encoder(nn.Module):
    """As in PyTorch-GAN's aae.py; forward() reparameterizes, so the served
    code is the mean, exported through mean_logvar()."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(int(np.prod(IMG)), 512), nn.LeakyReLU(0.2, inplace=True),
                                   nn.Linear(512, 512), nn.BatchNorm1d(512), nn.LeakyReLU(0.2, inplace=True))
        self.mu = nn.Linear(512, Z)
        self.logvar = nn.Linear(512, Z)

    def mean_logvar(self, img):
        x = self.model(img.view(img.shape[0], -1))
        return self.mu(x), self.logvar(x)

    def forward(self, img):
        mu, logvar = self.mean_logvar(img)
        return mu + torch.randn_like(mu) * torch.exp(logvar / 2)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(Z, 512), nn.LeakyReLU(0.2, inplace=True), nn.Linear(512, 512),
                                   nn.BatchNorm1d(512), nn.LeakyReLU(0.2, inplace=True),
                                   nn.Linear(512, int(np.prod(IMG))), nn.Tanh())

    def forward(self, z):
        return self.model(z).view(z.shape[0], *IMG)


def randomize(m):
    for b in m.modules():
        if isinstance(b, nn.BatchNorm1d):
            b.running_mean.normal_(0, 0.5)
            b.running_var.uniform_(0.5, 2)
    return m.eval()


class SaveAAE(ExportTest):
    def gmserve_check(self, path, prior="prior N(0, I)"):
        if not os.access(GMSERVE, os.X_OK):
            return
        r = subprocess.run([GMSERVE, "check", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("family aae", r.stdout)
        self.assertIn(prior, r.stdout)
        self.assertIn("encoder, decoder verified", r.stdout)
        self.assertIn("reconstruct", r.stdout)

    def test_collections_aae_gaussian_head(self):
        torch.manual_seed(3)
        enc, dec = randomize(Encoder()), randomize(Decoder())
        head = gmexport.method(enc, "mean_logvar")
        p = self.path("aae_mlp")
        gmexport.save_aae(p, head, dec, image="28x28x1", latent_dim=Z, encoder_head="gaussian", output="tanh")
        _, meta = self.verify(p, {"encoder": head, "decoder": dec})
        self.assertEqual((meta["gm.family"], meta["gm.encoder_head"], meta["gm.output"], meta["gm.prior"]),
                         ("aae", "gaussian", "tanh", "normal"))
        self.gmserve_check(p)

    def test_conv_point_encoder(self):
        torch.manual_seed(4)
        enc = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 4 * 4, 6)).eval()
        dec = nn.Sequential(nn.Linear(6, 8 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (8, 4, 4)),
                            nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid()).eval()
        p = self.path("aae_conv")
        gmexport.save_aae(p, enc, dec, image="8x8x3", latent_dim=6)
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual((meta["gm.encoder_head"], meta["gm.output"]), ("point", "sigmoid"))
        self.gmserve_check(p)

    def test_command_line(self):
        p = self.path("aae_cli")
        r = subprocess.run([sys.executable, "-m", "gmexport", "aae", p, "--from", os.path.abspath(__file__),
                            "--encoder", "Encoder:mean_logvar", "--decoder", "Decoder", "--image", "28x28x1",
                            "--latent-dim", str(Z), "--encoder-head", "gaussian", "--output", "tanh"],
                           capture_output=True, text=True, timeout=120, cwd=os.path.join(HERE, ".."))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.gmserve_check(p)

    def mixture(self, name, stds, **kw):
        torch.manual_seed(5)
        enc, dec = randomize(Encoder()), randomize(Decoder())
        head = gmexport.method(enc, "mean_logvar")
        means = torch.randn(4, Z)
        p = self.path(name)
        gmexport.save_aae(p, head, dec, latent_dim=Z, encoder_head="gaussian", output="tanh", prior="mixture",
                          prior_means=means, prior_stds=stds, **kw)
        tensors, meta = self.verify(p, {"encoder": head, "decoder": dec})
        self.assertEqual((meta["gm.prior"], meta["gm.num_classes"]), ("mixture", "4"))
        self.assertTrue(torch.equal(tensors["prior.means"], means))
        self.gmserve_check(p, prior="prior a mixture of 4 Gaussians (one per class)")
        return tensors, meta

    def test_mixture_prior_round_trips(self):
        names = ["zero", "one", "two", "three"]
        tensors, meta = self.mixture("aae_mix_k", torch.tensor([0.5, 1.0, 1.5, 2.0]), class_names=names)
        self.assertEqual(json.loads(meta["gm.class_names"]), names)
        self.assertEqual(tensors["prior.stds"].tolist(), [0.5, 1.0, 1.5, 2.0])
        stds = torch.rand(4, Z) + 0.1
        tensors, meta = self.mixture("aae_mix_kz", stds)
        self.assertNotIn("gm.class_names", meta)
        self.assertTrue(torch.equal(tensors["prior.stds"], stds))
        tensors, _ = self.mixture("aae_mix_one", 0.25)  # one std for every component
        self.assertEqual(tensors["prior.stds"].tolist(), [0.25] * 4)

    def test_mixture_command_line(self):
        means, p = os.path.join(self.dir, "means.pt"), self.path("aae_mix_cli")
        torch.save(torch.randn(3, Z), means)
        r = subprocess.run([sys.executable, "-m", "gmexport", "aae", p, "--from", os.path.abspath(__file__),
                            "--encoder", "Encoder:mean_logvar", "--decoder", "Decoder", "--image", "28x28x1",
                            "--latent-dim", str(Z), "--encoder-head", "gaussian", "--output", "tanh",
                            "--prior", "mixture", "--prior-means", means, "--prior-stds", "0.5",
                            "--class-names", "a,b,c"], capture_output=True, text=True, timeout=120,
                           cwd=os.path.join(HERE, ".."))
        self.assertEqual(r.returncode, 0, r.stderr)
        tensors, meta = gmexport.safetensors.read(p)
        self.assertEqual((meta["gm.prior"], json.loads(meta["gm.class_names"])), ("mixture", ["a", "b", "c"]))
        self.assertEqual(tensors["prior.stds"].tolist(), [0.5] * 3)
        self.gmserve_check(p, prior="prior a mixture of 3 Gaussians (one per class)")

    def test_mixture_refusals(self):
        enc, dec = Encoder().eval(), Decoder().eval()
        head, p, means = gmexport.method(enc, "mean_logvar"), self.path("bad"), torch.zeros(3, Z)

        def save(**kw):
            gmexport.save_aae(p, head, dec, latent_dim=Z, encoder_head="gaussian", output="tanh", **kw)

        cases = [
            ({"prior": "vampprior"}, "prior: 'vampprior' must be 'normal' or 'mixture'"),
            ({"prior_means": means}, "prior_means: belongs to prior='mixture'"),
            ({"class_names": ["a", "b", "c"]}, "class_names: belongs to prior='mixture'"),
            ({"prior": "mixture", "prior_stds": 1.0}, "prior_means: is required"),
            ({"prior": "mixture", "prior_means": means}, "prior_stds: is required"),
            ({"prior": "mixture", "prior_means": torch.zeros(3, Z + 1), "prior_stds": 1.0},
             r"prior_means: shape \[3, 11\]; a mixture prior needs \[K, Z\]"),
            ({"prior": "mixture", "prior_means": torch.zeros(0, Z), "prior_stds": 1.0}, "K >= 1"),
            ({"prior": "mixture", "prior_means": torch.zeros(Z), "prior_stds": 1.0}, "prior_means: shape"),
            ({"prior": "mixture", "prior_means": means, "prior_stds": torch.ones(2)},
             r"prior_stds: shape \[2\]; one per component \[3\] or per value \[3, 10\]"),
            ({"prior": "mixture", "prior_means": means, "prior_stds": torch.tensor([1.0, 0.0, 1.0])},
             "prior_stds: must be finite and above 0"),
            ({"prior": "mixture", "prior_means": means, "prior_stds": -1.0}, "prior_stds: must be finite and above 0"),
            ({"prior": "mixture", "prior_means": means, "prior_stds": float("inf")}, "prior_stds: must be finite"),
            ({"prior": "mixture", "prior_means": torch.full((3, Z), float("nan")), "prior_stds": 1.0},
             "prior_means: holds NaN or infinity"),
            ({"prior": "mixture", "prior_means": means, "prior_stds": 1.0, "class_names": ["a"]},
             "class_names: 1 names for 3 classes"),
        ]
        for kw, want in cases:
            with self.subTest(kw=list(kw)), self.assertRaisesRegex(gmexport.ExportError, want):
                save(**kw)

    def test_refusals(self):
        enc, dec = randomize(Encoder()), randomize(Decoder())
        p = self.path("bad")
        with self.assertRaisesRegex(gmexport.ExportError, "ends in 'tanh'"):
            gmexport.save_aae(p, gmexport.method(enc, "mean_logvar"), dec, latent_dim=Z, encoder_head="gaussian")
        with self.assertRaisesRegex(gmexport.ExportError, "returns a tuple"):  # a point head gives one tensor
            gmexport.save_aae(p, gmexport.method(enc, "mean_logvar"), dec, latent_dim=Z, output="tanh")
        wide = nn.Sequential(nn.Flatten(), nn.Linear(784, 2 * Z))
        with self.assertRaisesRegex(gmexport.ExportError, "values per sample"):  # Z, not 2Z, for a point head
            gmexport.save_aae(p, wide, dec, latent_dim=Z, output="tanh")
        with self.assertRaisesRegex(gmexport.ExportError, "encoder_head"):
            gmexport.save_aae(p, enc, dec, latent_dim=Z, encoder_head="sampled")


if __name__ == "__main__":
    unittest.main()
