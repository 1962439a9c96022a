"""Each silently wrong export of issue 16, now exported correctly or refused."""
import unittest
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from common import ExportTest, close  # first: puts the package on sys.path
import gmexport
import interp
import zoo


class Enc(nn.Module):
    def __init__(self, Z=4, D=16):
        super().__init__()
        self.fc = nn.Linear(D, 2 * Z)

    def forward(self, x):
        return self.fc(x.view(x.size(0), -1))


class DoubleSigmoid(ExportTest):
    def test_sequential_decoder_ending_in_sigmoid(self):
        dec = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4)))
        p, enc = self.path("sigmoid_dec"), Enc()
        gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=4)
        tensors, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual(meta["gm.decoder_output"], "probabilities")
        ops = self.ops(meta, "decoder")
        self.assertEqual([o["op"] for o in ops].count("sigmoid"), 1)
        out = tensors["gm.probe.decoder.out"]
        self.assertTrue(bool(((out > 0) & (out < 1)).all()))

    def test_logits_decoder(self):
        dec = nn.Sequential(nn.Linear(4, 16))
        p = self.path("logit_dec")
        enc = Enc()
        gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=4)
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual(meta["gm.decoder_output"], "logits")

    def test_gray_input_recorded(self):
        enc, dec = Enc(), nn.Linear(4, 16)
        p = self.path("gray")
        gmexport.save_vae(p, enc, dec, image="4x4x1", latent_dim=4, input="gray")
        tensors, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual(meta["gm.input"], "gray")
        x = tensors["gm.probe.encoder.in.image"]
        self.assertGreater(int(((x > 0) & (x < 1)).sum()), 0, "gray probes are not binarized")


class ReflectPadding(ExportTest):
    def test_padding_mode_reflect_becomes_a_pad_op(self):
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        x = torch.randn(2, 3, 8, 8)
        ops, tensors, _ = gmexport.export_network("generator", conv, [("image", x)])
        self.assertEqual(ops[0], {"op": "pad", "pad": [1, 1, 1, 1], "mode": "reflect"})
        self.assertEqual(ops[1]["padding"], 0)
        self.assertIsNone(close(interp.run(ops, tensors, [("image", x)]), conv(x)))
        # the zero-padded reading of the same weights differs: the test can fail
        zero = F.conv2d(x, conv.weight, conv.bias, padding=1)
        self.assertIsNotNone(close(zero, conv(x)))

    def test_same_padding_even_kernel_pads_asymmetrically(self):
        conv = nn.Conv2d(2, 2, 4, padding="same")
        x = torch.randn(2, 2, 7, 7)
        with warnings.catch_warnings():  # PyTorch's notice that it pads a copy, as we do
            warnings.simplefilter("ignore")
            ops, tensors, _ = gmexport.export_network("generator", conv, [("image", x)])
            want = conv(x)
        self.assertEqual(ops[0]["op"], "pad")
        self.assertIsNone(close(interp.run(ops, tensors, [("image", x)]), want))

    def test_circular_is_refused(self):
        conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")
        with self.assertRaisesRegex(gmexport.ExportError, "circular"):
            gmexport.export_network("generator", conv, [("image", torch.randn(2, 3, 8, 8))])


class StaleWeightNorm(ExportTest):
    def _check(self, net, x):
        ops, tensors, _ = gmexport.export_network("decoder", net.eval(), [("z", x)])
        with torch.no_grad():
            self.assertIsNone(close(interp.run(ops, tensors, [("z", x)]), net(x)))
        return ops, tensors

    def test_weight_norm_after_an_update(self):
        lin = nn.utils.weight_norm(nn.Linear(6, 5))
        with torch.no_grad():  # a training step after the last forward: lin.weight is now stale
            lin.weight_g.mul_(1.7)
            lin.weight_v.add_(0.3)
        stale = lin.weight.detach().clone()
        net = nn.Sequential(lin, nn.Tanh())
        ops, tensors = self._check(net, torch.randn(3, 6))
        self.assertFalse(torch.allclose(tensors[ops[0]["weight"]], stale))

    def test_weight_norm_conv_inside_a_block(self):
        net = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.utils.weight_norm(nn.Conv2d(1, 2, 3, padding=1)),
                            nn.Flatten())
        with torch.no_grad():
            net[1].weight_g.mul_(0.5)
        self._check(net, torch.randn(3, 16))

    def test_spectral_norm_hook(self):
        lin = nn.utils.spectral_norm(nn.Linear(6, 5))
        lin.train()
        for _ in range(3):
            lin(torch.randn(2, 6))  # power iterations update u
        self._check(nn.Sequential(lin), torch.randn(3, 6))

    def test_parametrizations(self):
        lin = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5))
        orth = nn.utils.parametrizations.orthogonal(nn.Linear(5, 5))
        self._check(nn.Sequential(lin, nn.ReLU(), orth), torch.randn(3, 6))


class MaskedLinear(ExportTest):
    def test_mask_multiplied_in_forward(self):
        made = zoo.MADE(nin=16, hidden_sizes=(24,), nout=16)
        p = self.path("masked")
        gmexport.save_vae(p, self._enc, made, image="4x4x1", latent_dim=16)
        tensors, meta = self.verify(p, {"encoder": self._enc, "decoder": made})
        w = tensors[self.ops(meta, "decoder")[0]["weight"]]
        self.assertTrue(torch.equal(w, made.net[0].weight * made.net[0].mask))
        self.assertFalse(torch.equal(w, made.net[0].weight))

    def setUp(self):
        super().setUp()
        torch.manual_seed(7)
        self._enc = Enc(Z=16)

    def test_mask_applied_to_weight_data_in_forward(self):
        class DataMasked(nn.Linear):  # the other public style: weight.data *= mask inside forward
            def __init__(self, i, o):
                super().__init__(i, o)
                self.register_buffer("mask", (torch.rand(o, i) < 0.5).float())

            def forward(self, x):
                self.weight.data *= self.mask
                return super().forward(x)
        m = DataMasked(6, 4)
        x = torch.randn(2, 6)
        raw = m.weight.detach().clone()
        # fx does not see the update at all; the exporter runs forward() once
        # before it reads the weights, so the graph has the masked ones
        ops, tensors, _ = gmexport.export_network("decoder", m, [("z", x)])
        self.assertTrue(torch.equal(tensors[ops[0]["weight"]], raw * m.mask))
        self.assertIsNone(close(interp.run(ops, tensors, [("z", x)]), m(x)))

    def test_forward_that_changes_every_call_is_refused(self):
        class Drifting(nn.Linear):  # an in-place update that is not idempotent
            def forward(self, x):
                self.weight.data *= 1.5
                return super().forward(x)
        with self.assertRaisesRegex(gmexport.ExportError, "does not reproduce"):
            gmexport.export_network("decoder", Drifting(6, 4), [("z", torch.randn(2, 6))])

    def test_class_name_is_not_trusted(self):
        class Linear(nn.Linear):  # named like the torch class, but masks
            def __init__(self):
                super().__init__(5, 5)
                self.register_buffer("mask", torch.tril(torch.ones(5, 5), -1))

            def forward(self, x):
                return F.linear(x, self.weight * self.mask, self.bias)
        m = Linear()
        x = torch.randn(3, 5)
        ops, tensors, _ = gmexport.export_network("decoder", m, [("z", x)])
        self.assertEqual(int(torch.triu(tensors[ops[0]["weight"]]).count_nonzero()), 0)


class EmbeddingOrientation(ExportTest):
    class CGAN(nn.Module):
        """PyTorch-GAN's cgan: a square Embedding(n_classes, n_classes), so a
        transposed weight would pass every shape check."""

        def __init__(self, n=10, Z=6, D=16):
            super().__init__()
            self.label_emb = nn.Embedding(n, n)
            self.model = nn.Sequential(nn.Linear(Z + n, 32), nn.LeakyReLU(0.2, inplace=True), nn.Linear(32, D),
                                       nn.Tanh())

        def forward(self, noise, labels):
            gen_input = torch.cat((self.label_emb(labels), noise), -1)
            img = self.model(gen_input)
            return img.view(img.size(0), 1, 4, 4)

    def test_square_embedding_is_not_transposed(self):
        G = self.CGAN()
        p = self.path("cgan")
        gmexport.save_gan(p, G, image="4x4x1", latent_dim=6, inputs=("z", "label"), num_classes=10)
        tensors, meta = self.verify(p, {"generator": G})
        ops = self.ops(meta, "generator")
        self.assertEqual(ops[0]["op"], "embedding")
        self.assertTrue(torch.equal(tensors[ops[0]["weight"]], G.label_emb.weight))
        # the transposed weight gives other outputs: the probes would catch it
        T = dict(tensors)
        T[ops[0]["weight"]] = G.label_emb.weight.detach().t().contiguous()
        ins = [("z", tensors["gm.probe.generator.in.z"]), ("label", tensors["gm.probe.generator.in.label"])]
        self.assertIsNotNone(close(interp.run(ops, T, ins), tensors["gm.probe.generator.out"]))

    def test_onehot_declared_for_an_embedding_generator_is_refused(self):
        with self.assertRaisesRegex(gmexport.ExportError, "label"):
            gmexport.save_gan(self.path("cgan_onehot"), self.CGAN(), image="4x4x1", latent_dim=6,
                              inputs=("z", "onehot"), num_classes=10)

    def test_hand_folded_onehot_matmul_is_refused(self):
        class Folded(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Parameter(torch.randn(10, 10))
                self.fc = nn.Linear(16, 16)

            def forward(self, z, onehot):
                return torch.tanh(self.fc(torch.cat([onehot @ self.emb, z], 1)))
        with self.assertRaisesRegex(gmexport.ExportError, "no gmserve op"):
            gmexport.save_gan(self.path("folded"), Folded(), image="4x4x1", latent_dim=6, inputs=("z", "onehot"),
                              num_classes=10)


class PythonOnShapes(ExportTest):
    """What forward() asks Python of traced values: lengths, items, int()."""

    def test_split_by_size_unpacks(self):
        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(6, 8)

            def forward(self, x):
                a, b = torch.split(self.lin(x), 4, dim=1)  # the count comes from the shape
                return a * torch.sigmoid(b)
        m, x = Gate(), torch.randn(3, 6)
        ops, tensors, _ = gmexport.export_network("decoder", m, [("z", x)])
        self.assertIsNone(close(interp.run(ops, tensors, [("z", x)]), m(x)))

    def test_int_sizes_and_pad_modules_made_in_forward(self):
        class Shift(nn.Module):  # the PixelCNN++ port's down_shift
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(2, 3, 3, padding=1)

            def forward(self, x):
                xs = [int(y) for y in x.size()]  # int() of the batch size too, unused after
                x = self.conv(x)[:, :, :xs[2] - 1, :]
                return nn.ZeroPad2d((0, 0, 1, 0))(x)
        m, x = Shift(), torch.randn(3, 2, 5, 4)
        ops, tensors, _ = gmexport.export_network("decoder", m, [("z", x)])
        self.assertIsNone(close(interp.run(ops, tensors, [("z", x)]), m(x)))
        self.assertIsNone(close(interp.run(ops, tensors, [("z", x[:1])]), m(x[:1])))

    def test_shape_unpacking_and_index_forms(self):
        class Crops(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(2, 3, 3, padding=1)
                self.emb = nn.Linear(4, 3)

            def forward(self, x, z):
                B, C, H, W = x.shape
                h = self.conv(x)[..., :H - 1, 1:]  # an Ellipsis, two dimensions cut
                h = F.pad(h, (0, 1, 1, 0)) + self.emb(z)[:, :, None, None]  # None: new dimensions
                return h.reshape(B, -1)
        m, x, z = Crops(), torch.randn(3, 2, 5, 4), torch.randn(3, 4)
        ops, tensors, _ = gmexport.export_network("decoder", m, [("image", x), ("z", z)])
        self.assertIsNone(close(interp.run(ops, tensors, [("image", x), ("z", z)]), m(x, z)))

    def test_indexing_with_a_step_or_before_the_batch_is_refused(self):
        for index, why in ((lambda h: h[:, ::2], "slices with a step"),
                           (lambda h: h[None], "other than by slicing dimensions after the batch")):
            class Net(nn.Module):
                def forward(self, x):
                    return index(x * 2)
            with self.assertRaisesRegex(gmexport.ExportError, why):
                gmexport.export_network("decoder", Net(), [("z", torch.randn(3, 6))])

    def test_batch_size_built_into_the_graph_is_refused(self):
        class Baked(nn.Module):
            def forward(self, x):
                return x * int(x.size(0))  # the probes' batch size as a constant
        with self.assertRaisesRegex(gmexport.ExportError, r"builds the batch size into the graph \(int\(x.size\(0\)\)"):
            gmexport.export_network("decoder", Baked(), [("z", torch.randn(3, 6))])

    def test_module_with_parameters_made_in_forward_is_refused(self):
        class Fresh(nn.Module):
            def forward(self, x):
                return nn.Linear(6, 4)(x)  # new random weights on every call
        with self.assertRaisesRegex(gmexport.ExportError, "creates a Linear with parameters inside forward"):
            gmexport.export_network("decoder", Fresh(), [("z", torch.randn(3, 6))])

    def test_iterating_over_the_batch_is_refused(self):
        class Rows(nn.Module):
            def forward(self, x):
                return torch.stack([r * 2 for r in x])
        with self.assertRaisesRegex(gmexport.ExportError, "iterates over the batch dimension"):
            gmexport.export_network("decoder", Rows(), [("z", torch.randn(3, 6))])


if __name__ == "__main__":
    unittest.main()