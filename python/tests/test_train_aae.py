"""models/train/train_aae.py: its decoder trains through SubPixelConvT, a
3x3 convolution and a pixel shuffle standing in for PyTorch's transposed
convolution, and is exported as nn.ConvTranspose2d with the same weight;
so the two must be the same function with the same gradients. The codes'
standardization folded into the encoder's last layer must give codes the
prior's mean and standard deviation on the images it was fitted to, and
the mixture prior's moments are those of its draws."""
import os
import sys
import unittest

import torch
from torch import nn

from common import HERE  # noqa: F401  (puts the package on sys.path)

sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
import train_aae  # noqa: E402


class SubPixelTest(unittest.TestCase):
    def test_same_function_and_gradients_as_conv_transpose(self):
        torch.manual_seed(3)
        for cin, cout, h, w in ((128, 64, 7, 7), (5, 3, 4, 6), (1, 1, 1, 1), (2, 7, 3, 2)):
            sub = train_aae.SubPixelConvT(cin, cout).double()
            nn.init.normal_(sub.weight)
            nn.init.normal_(sub.bias)
            ref = sub.exported().double()
            self.assertIsInstance(ref, nn.ConvTranspose2d)
            x = torch.randn(3, cin, h, w, dtype=torch.float64)
            y, y_ref = sub(x), ref(x)
            self.assertEqual(y.shape, (3, cout, 2 * h, 2 * w))
            torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
            g = torch.randn_like(y)
            grads = torch.autograd.grad(y, (sub.weight, sub.bias), g)
            grads_ref = torch.autograd.grad(y_ref, (ref.weight, ref.bias), g)
            for a, b in zip(grads, grads_ref):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class StandardizeTest(unittest.TestCase):
    def test_codes_have_zero_mean_unit_std(self):
        torch.manual_seed(4)
        enc = train_aae.encoder(6).double().eval()
        for p in enc.parameters():
            nn.init.normal_(p, 0.3, 0.5)
        x = torch.rand(2000, 1, 28, 28, dtype=torch.float64) * 2 - 1
        before = enc(x).detach()
        self.assertGreater((before.mean(0).abs()).max().item(), 0.1)
        train_aae.standardize_codes(enc, x)
        after = enc(x).detach()
        torch.testing.assert_close(after.mean(0), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-9)
        torch.testing.assert_close(after.std(0), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-9)
        torch.testing.assert_close(after, (before - before.mean(0)) / before.std(0), rtol=1e-9, atol=1e-9)

    def test_codes_take_a_mixture_priors_moments(self):
        torch.manual_seed(5)
        Z = 12
        prior = train_aae.Prior(Z, "mixture", 4.0)
        mean, std = prior.moments()
        # the moments of one draw: a component picked uniformly, then N(means[k], I)
        torch.testing.assert_close(mean, torch.tensor([0.4] * 10 + [0.0] * 2), rtol=0, atol=1e-6)
        torch.testing.assert_close(std, torch.tensor([(1 + 16 * 0.1 * 0.9) ** 0.5] * 10 + [1.0] * 2), rtol=0,
                                   atol=1e-6)
        draws = prior.draw(torch.arange(200000) % 10)
        torch.testing.assert_close(draws.mean(0), mean, rtol=0, atol=0.02)
        torch.testing.assert_close(draws.std(0), std, rtol=0, atol=0.02)
        enc = train_aae.encoder(Z).double().eval()
        for p in enc.parameters():
            nn.init.normal_(p, 0.3, 0.5)
        x = torch.rand(2000, 1, 28, 28, dtype=torch.float64) * 2 - 1
        before = enc(x).detach()
        train_aae.standardize_codes(enc, x, mean.double(), std.double())
        after = enc(x).detach()
        torch.testing.assert_close(after.mean(0), mean.double(), rtol=0, atol=1e-9)
        torch.testing.assert_close(after.std(0), std.double(), rtol=0, atol=1e-9)
        torch.testing.assert_close(after, (before - before.mean(0)) / before.std(0) * std + mean, rtol=1e-9,
                                   atol=1e-9)

    def test_fitted_prior_is_each_class_codes_moments(self):
        torch.manual_seed(6)
        Z = 12
        enc = train_aae.encoder(Z).double().eval()
        for p in enc.parameters():
            nn.init.normal_(p, 0.0, 0.3)
        x = torch.rand(3000, 1, 28, 28, dtype=torch.float64) * 2 - 1
        y = torch.arange(3000) % 10
        fitted = train_aae.fit_prior(enc, x, y, train_aae.Prior(Z, "mixture", 4.0))
        codes = enc(x).detach()
        for k in (0, 3, 9):
            torch.testing.assert_close(fitted.means[k], codes[y == k].mean(0), rtol=0, atol=1e-9)
            torch.testing.assert_close(fitted.stds[k], codes[y == k].std(0), rtol=0, atol=1e-9)
        # a draw of the fitted mixture has the moments moments() says
        draws = fitted.draw(torch.arange(200000) % 10)
        mean, std = fitted.moments()
        torch.testing.assert_close(draws.mean(0), mean, rtol=0, atol=0.02 * std.max().item())
        torch.testing.assert_close(draws.std(0), std, rtol=0.02, atol=0)


if __name__ == "__main__":
    unittest.main()
