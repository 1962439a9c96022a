"""Op coverage: small modules written with the many spellings PyTorch code
uses, each exported and interpreted from the file's definition."""
import unittest

import torch
import torch.nn.functional as F
from torch import nn

from common import ExportTest, Lambda, close  # first: puts the package on sys.path
import gmexport
import interp
import zoo


class StarGANInput(nn.Module):
    """StarGAN's generator input: the domain vector tiled over the image
    and concatenated on channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4 + 3, 4, 3, 1, 1, bias=False)

    def forward(self, x, c):
        c = c.view(c.size(0), c.size(1), 1, 1)
        c = c.repeat(1, 1, x.size(2), x.size(3))
        x = torch.cat([x, c], dim=1)
        return self.conv(x)


class SNGANBlock(nn.Module):
    """SNGAN's generator block: spectral norm, interpolate, a learned shortcut."""

    def __init__(self, i=4, o=6):
        super().__init__()
        self.b1, self.b2 = nn.BatchNorm2d(i), nn.BatchNorm2d(o)
        self.c1 = nn.utils.spectral_norm(nn.Conv2d(i, o, 3, 1, 1))
        self.c2 = nn.utils.spectral_norm(nn.Conv2d(o, o, 3, 1, 1))
        self.c_sc = nn.utils.spectral_norm(nn.Conv2d(i, o, 1))

    def forward(self, x):
        h = self.c1(F.interpolate(F.relu(self.b1(x)), scale_factor=2))
        h = self.c2(F.relu(self.b2(h)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2))


class ShapeChecks(nn.Module):
    """Branches and asserts on shapes, decided at export time."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        assert x.dim() == 4 and x.shape[1] == 4, "NCHW with 4 channels"
        h = self.c(x)
        if h.size(-1) != 16:
            h = F.interpolate(h, size=(16, 16))
        return h


class Gated(nn.Module):
    """Gated PixelCNN style: tuple unpacking of chunk, which plain fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        a, b = self.c(x).chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)


def img(c=4, h=8, w=8):
    return torch.randn(3, c, h, w)


CASES = {
    # name: (module, input, expected op kinds or None)
    "fx_view_size0": (Lambda(lambda s, x: s.fc(F.relu(x.view(x.size(0), -1))), fc=nn.Linear(256, 5)), img(), None),
    "shape0_reshape": (Lambda(lambda s, x: s.fc(x.reshape(x.shape[0], -1)), fc=nn.Linear(256, 5)), img(), None),
    "flatten_fn": (Lambda(lambda s, x: torch.flatten(x, 1)), img(), ["flatten"]),
    "residual": (Lambda(lambda s, x: x + s.c(x), c=nn.Conv2d(4, 4, 3, padding=1)), img(), ["conv2d", "add"]),
    "inplace_relu_chain": (nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(inplace=True), nn.LeakyReLU(0.1, True)),
                           img(), ["conv2d", "relu", "leaky_relu"]),
    "grouped_dilated": (nn.Conv2d(4, 8, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2, groups=2), img(), None),
    "conv_t_grouped": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), img(), None),
    "pools": (nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1, count_include_pad=False)), img(),
              ["max_pool2d", "avg_pool2d"]),
    "pixel_shuffle": (nn.PixelShuffle(2), img(8), ["pixel_shuffle"]),
    "acts": (nn.Sequential(nn.ELU(0.5), nn.GELU(), nn.SiLU(), nn.Softplus(2, 5), nn.PReLU(4), nn.Hardtanh(-0.5, 2),
                           nn.ReLU6(), nn.Tanh()), img(), None),
    "gelu_tanh_prelu1": (nn.Sequential(nn.GELU("tanh"), nn.PReLU()), img(), None),
    "softmax_head": (nn.Sequential(nn.Flatten(), nn.Linear(256, 10), nn.Softmax(dim=1)), img(), None),
    "norms": (nn.Sequential(nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm([4, 8, 8]),
                            nn.BatchNorm2d(4)), img(), ["group_norm", "instance_norm", "layer_norm", "batch_norm"]),
    "upsample_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"), img(), ["upsample"]),
    "upsample_corners": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), img(), ["upsample"]),
    "sngan_block": (SNGANBlock(), img(), None),
    "interpolate_size": (Lambda(lambda s, x: F.interpolate(x, size=(16, 12))), img(), ["upsample"]),
    "pads": (nn.Sequential(nn.ReplicationPad2d((1, 2, 0, 1)), nn.ZeroPad2d(1), nn.ConstantPad2d(2, 0.5)), img(),
             ["pad", "pad", "pad"]),
    "fpad": (Lambda(lambda s, x: F.pad(x, (1, 1, 2, 0), mode="reflect")), img(), ["pad"]),
    "arith_consts": (Lambda(lambda s, x: (torch.tanh(x) + 1) / 2 * 3 - 0.5), img(), None),
    "rsub_neg": (Lambda(lambda s, x: 1 - (-x) * 2), img(), None),
    "per_channel_param": (Lambda(lambda s, x: x * s.scale + s.shift, scale=nn.Parameter(torch.randn(1, 4, 1, 1)),
                                 shift=nn.Parameter(torch.randn(4, 1, 1))), img(), None),
    "sub_acts": (Lambda(lambda s, x: s.a(x) - s.b(x), a=nn.Conv2d(4, 4, 1), b=nn.Conv2d(4, 4, 1)), img(), None),
    "gate": (Lambda(lambda s, x: s.a(x) * torch.sigmoid(s.b(x)), a=nn.Conv2d(4, 4, 1), b=nn.Conv2d(4, 4, 1)),
             img(), None),
    "chunk_unpack": (Gated(), img(), None),
    "shape_branches": (ShapeChecks(), img(), ["conv2d", "upsample"]),
    "slice_heads": (Lambda(lambda s, x: torch.cat([s.f(x)[:, :3], F.softplus(s.f(x)[:, 3:])], 1),
                           f=nn.Sequential(nn.Flatten(), nn.Linear(256, 8))), img(), None),
    "channel_map_concat": (Lambda(lambda s, x: torch.cat([x, s.v(x.flatten(1)).view(x.size(0), 2, 1, 1)
                                                          .repeat(1, 1, 8, 8)], 1), v=nn.Linear(256, 2)),
                           img(), None),
    "unsqueeze_expand": (Lambda(lambda s, x: torch.cat([x, s.v(x.flatten(1)).unsqueeze(2).unsqueeze(3)
                                                       .expand(-1, -1, 8, 8)], dim=1), v=nn.Linear(256, 3)),
                         img(), None),
    "nested_submodules": (nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Sequential(nn.ReLU())),
                                        zoo.ResidualBlock(4), nn.Dropout(0.3)), img(), None),
    "dropout_eval": (Lambda(lambda s, x: F.dropout(x, 0.5, training=s.training) * 2), img(), None),
    "clamp": (Lambda(lambda s, x: x.clamp(-0.5, 0.5) + x.clamp(min=0)), img(), None),
}


class Ops(ExportTest):
    def test_cases(self):
        torch.manual_seed(0)
        for name, (m, x, kinds) in CASES.items():
            with self.subTest(name):
                m = zoo.randomize(m)
                ops, tensors, out = gmexport.export_network("generator", m, [("image", x)])
                with torch.no_grad():
                    want = m(x)
                self.assertIsNone(close(interp.run(ops, tensors, [("image", x)]), want), name)
                if kinds is not None:
                    self.assertEqual([o["op"] for o in ops], kinds)

    def test_stargan_label_map(self):
        m = StarGANInput()
        x, c = torch.randn(3, 4, 8, 8), torch.eye(3)
        ops, tensors, _ = gmexport.export_network("generator", m, [("image", x), ("onehot", c)])
        self.assertEqual([o["op"] for o in ops], ["reshape", "expand", "concat", "conv2d"])
        self.assertIsNone(close(interp.run(ops, tensors, [("image", x), ("onehot", c)]), m(x, c)))

    def test_one_hot_inside_forward(self):
        class G(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8 + 10, 16)

            def forward(self, z, label):
                return torch.tanh(self.fc(torch.cat([z, F.one_hot(label, 10).float()], 1)))
        g = G()
        p = self.path("one_hot")
        gmexport.save_gan(p, g, image="4x4x1", latent_dim=8, inputs=("z", "label"), num_classes=10)
        _, meta = self.verify(p, {"generator": g})
        self.assertEqual(self.ops(meta, "generator")[0]["op"], "embedding")

    def test_legacy_conditional_layout(self):
        """inputs=("z",) with classes: the generator takes [z, onehot] as one
        vector, as the server has always fed it; no inputs key is written."""
        g = nn.Sequential(nn.Linear(8 + 3, 16), nn.Tanh())
        p = self.path("legacy")
        gmexport.save_gan(p, g, image="4x4x1", latent_dim=8, num_classes=3)
        tensors, meta = self.verify(p, {"generator": g})
        self.assertNotIn("gm.generator_inputs", meta)
        z = tensors["gm.probe.generator.in.z"]
        self.assertEqual(list(z.shape), [4, 11])
        self.assertTrue(torch.equal(z[:, 8:].sum(1), torch.ones(4)))

    def test_nade(self):
        D, H = 16, 5
        W, c, V, b = torch.randn(H, D), torch.randn(H), torch.randn(D, H), torch.randn(D)
        p = self.path("nade")
        gmexport.save_nade(p, W, c, V, b, ordering=torch.randperm(D), activation="relu", image="4x4x1")
        from gmexport import safetensors
        tensors, meta = safetensors.read(p)
        self.assertEqual(meta["gm.family"], "nade")
        self.assertEqual(meta["gm.activation"], "relu")
        self.assertEqual(tensors["ordering"].dtype, torch.int64)
        self.assertTrue(torch.equal(tensors["W"], W))
        with self.assertRaisesRegex(gmexport.ExportError, "permutation"):
            gmexport.save_nade(p, W, c, V, b, ordering=torch.zeros(D), image="4x4x1")
        with self.assertRaisesRegex(gmexport.ExportError, "shape"):
            gmexport.save_nade(p, W.t(), c, V, b, image="4x4x1")


if __name__ == "__main__":
    unittest.main()
