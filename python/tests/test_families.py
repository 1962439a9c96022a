"""What the family functions record beside the graphs."""
import unittest

import torch
import torch.nn.functional as F
from torch import nn

from common import ExportTest  # first: puts the package on sys.path
import gmexport


class ExamplesVAE(nn.Module):
    """The MLP VAE of pytorch/examples, as written there."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 40)
        self.fc21 = nn.Linear(40, 5)
        self.fc22 = nn.Linear(40, 5)
        self.fc3 = nn.Linear(5, 40)
        self.fc4 = nn.Linear(40, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


class Families(ExportTest):
    def test_examples_mlp_vae(self):
        vae = ExamplesVAE().eval()
        enc = nn.Sequential(nn.Flatten(), gmexport.method(vae, "encode"))  # forward() flattened x first
        dec = gmexport.method(vae, "decode")
        p = self.path("examples_vae")
        gmexport.save_vae(p, enc, dec, image="28x28x1", latent_dim=5, input="gray")
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual((meta["gm.decoder_output"], meta["gm.input"]), ("probabilities", "gray"))
        with self.assertRaisesRegex(gmexport.ExportError, "last dimension"):
            gmexport.save_vae(p, gmexport.method(vae, "encode"), dec, image="28x28x1", latent_dim=5)

    def test_gaussian_likelihoods(self):
        enc, dec = nn.Sequential(nn.Flatten(), nn.Linear(16, 6)), nn.Linear(3, 16)
        p = self.path("gauss")
        gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=3, input="gray", likelihood="gaussian",
                          likelihood_scale=0.1)
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual((meta["gm.likelihood"], meta["gm.likelihood_scale"]), ("gaussian", "0.1"))
        dec2 = nn.Linear(3, 32)  # means, then log-sigmas
        gmexport.save_vae(p, enc, dec2, image="4x4x1", latent_dim=3, likelihood="gaussian",
                          likelihood_scale="learned")
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec2})
        self.assertEqual(meta["gm.likelihood_scale"], "learned")
        with self.assertRaisesRegex(gmexport.ExportError, "16 values per sample"):
            gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=3, likelihood="gaussian",
                              likelihood_scale="learned")
        with self.assertRaisesRegex(gmexport.ExportError, "needs a fixed sigma"):
            gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=3, likelihood="gaussian")

    def test_gan_metadata_and_modes_restored(self):
        class G2(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(4 + 2, 16), nn.BatchNorm1d(16), nn.Dropout(0.5),
                                         nn.Linear(16, 12), nn.Sigmoid())

            def forward(self, z, code):
                return self.net(torch.cat([z, code], dim=1)).view(-1, 3, 2, 2)
        G = G2()
        G.train()
        enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        p = self.path("gan_meta")
        gmexport.save_gan(p, G, image="2x2x3", latent_dim=4, inputs=("z", "code"), code_dim=2, output="sigmoid",
                          encoder=enc, metadata={"gm.description": "tiny", "gm.metrics": {"fid": 1.5}})
        self.assertTrue(G.training and G.net[1].training, "the caller's train mode is restored")
        G.eval()
        tensors, meta = self.verify(p, {"generator": G, "encoder": enc})
        self.assertEqual(meta["gm.output"], "sigmoid")
        self.assertEqual(meta["gm.generator_output"], "probabilities")
        self.assertEqual(meta["gm.generator_inputs"], '["z", "code"]')
        self.assertEqual(meta["gm.metrics"], '{"fid": 1.5}')
        x = tensors["gm.probe.encoder.in.image"]
        self.assertTrue(bool((x >= 0).all() and (x <= 1).all()), "a sigmoid model's encoder sees [0, 1]")


if __name__ == "__main__":
    unittest.main()
