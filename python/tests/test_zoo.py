"""The zoo, exported with the documented API and checked by interpreting
each file; prints the time each export took."""
import time
import unittest

import torch
from torch import nn

from common import ExportTest, close  # first: puts the package on sys.path
import gmexport
import interp
import zoo

TIMES = {}


def timed(name, fn):
    t = time.perf_counter()
    fn()
    TIMES[name] = time.perf_counter() - t


class Zoo(ExportTest):
    def test_conv_vae(self):
        torch.manual_seed(1)
        vae = zoo.ConvVAE(z_dim=8).eval()
        enc, dec = gmexport.method(vae, "encode"), gmexport.method(vae, "decode")
        p = self.path("conv_vae")
        timed("conv VAE (examples style)", lambda: gmexport.save_vae(p, enc, dec, image="28x28x1", latent_dim=8))
        _, meta = self.verify(p, {"encoder": enc, "decoder": dec})
        self.assertEqual(meta["gm.decoder_output"], "probabilities")
        self.assertEqual(self.ops(meta, "decoder")[-1]["op"], "sigmoid")
        self.assertEqual(self.ops(meta, "encoder")[-1]["op"], "concat")

    def test_conditional_dcgan(self):
        torch.manual_seed(2)
        G = zoo.randomize(zoo.CondDCGANGenerator(n_classes=10, latent_dim=16, img_size=16), 2)
        D = zoo.randomize(zoo.DCGANDiscriminator(img_size=16), 3)
        p = self.path("cond_dcgan")
        timed("conditional DCGAN (Embedding + Upsample)", lambda: gmexport.save_gan(
            p, G, image="16x16x1", latent_dim=16, inputs=("z", "label"), num_classes=10,
            class_names=[str(i) for i in range(10)], discriminator=D))
        _, meta = self.verify(p, {"generator": G, "discriminator": D})
        kinds = [op["op"] for op in self.ops(meta, "generator")]
        self.assertEqual(kinds[:2], ["embedding", "mul"])
        self.assertIn("upsample", kinds)
        self.assertEqual(meta["gm.generator_inputs"], '["z", "label"]')

    def test_examples_dcgan(self):
        torch.manual_seed(6)
        G = zoo.randomize(zoo.ExamplesDCGANGenerator(nz=16), 6)
        D = zoo.randomize(zoo.ExamplesDCGANDiscriminator(), 7)
        p = self.path("examples_dcgan")
        with self.assertRaisesRegex(gmexport.ExportError, "sigmoid"):
            gmexport.save_gan(p, G, image="16x16x3", latent_dim=16, discriminator=D)
        logit = nn.Sequential(*list(D.main)[:-1], nn.Flatten())  # the discriminator's logit, as BCEWithLogits
        timed("DCGAN (pytorch/examples, z as [B, nz, 1, 1])", lambda: gmexport.save_gan(
            p, G, image="16x16x3", latent_dim=16, discriminator=logit))
        tensors, meta = self.verify(p, {"generator": lambda z: G(z[:, :, None, None]), "discriminator": logit})
        self.assertEqual(list(tensors["gm.probe.generator.in.z"].shape), [4, 16])
        self.assertEqual(self.ops(meta, "generator")[0], {"op": "reshape", "shape": [16, 1, 1]})

    def test_infogan(self):
        torch.manual_seed(3)
        G = zoo.randomize(zoo.InfoGANGenerator(latent_dim=12, n_classes=10, code_dim=2), 4)
        p = self.path("infogan")
        timed("InfoGAN generator (noise, labels, code)", lambda: gmexport.save_gan(
            p, G, image="16x16x1", latent_dim=12, inputs=("z", "onehot", "code"), num_classes=10, code_dim=2))
        _, meta = self.verify(p, {"generator": G})
        self.assertEqual(meta["gm.code_dim"], "2")
        first = self.ops(meta, "generator")[0]
        self.assertEqual((first["op"], first["inputs"]), ("concat", ["z", "onehot", "code"]))

    def test_resnet_translator(self):
        torch.manual_seed(4)
        G = zoo.randomize(zoo.GeneratorResNet(channels=3, num_residual_blocks=2), 5)
        x = torch.rand(3, 3, 16, 16) * 2 - 1
        t = time.perf_counter()
        ops, tensors, out = gmexport.export_network("generator", G.eval(), [("image", x)])
        TIMES["ResNet translator (reflect pad, instance norm)"] = time.perf_counter() - t
        kinds = [op["op"] for op in ops]
        self.assertIn("pad", kinds)
        self.assertIn("instance_norm", kinds)
        self.assertEqual(kinds.count("add"), 2)
        self.assertTrue(any(op["op"] == "pad" and op["mode"] == "reflect" for op in ops))
        self.assertIsNone(close(interp.run(ops, tensors, [("image", x)]), G(x)))

    def test_made(self):
        torch.manual_seed(5)
        made = zoo.MADE(nin=16, hidden_sizes=(32, 32), nout=16).eval()
        x = (torch.rand(4, 16) < 0.5).float()
        t = time.perf_counter()
        ops, tensors, out = gmexport.export_network("decoder", made, [("z", x)])
        TIMES["MADE (masked Linear)"] = time.perf_counter() - t
        self.assertEqual([op["op"] for op in ops], ["linear", "relu", "linear", "relu", "linear"])
        w = tensors[ops[0]["weight"]]
        self.assertTrue(torch.equal(w, made.net[0].weight * made.net[0].mask))
        self.assertIsNone(close(interp.run(ops, tensors, [("z", x)]), made(x)))
        # the masks were applied: through the exported weights, output i
        # is connected only to inputs before i
        reach = torch.eye(16)
        for op in ops[::2]:
            reach = (tensors[op["weight"]] != 0).float() @ reach
        self.assertEqual(int(torch.triu(reach).count_nonzero()), 0)

    @classmethod
    def tearDownClass(cls):
        for name, s in TIMES.items():
            print(f"export time: {name}: {s * 1000:.0f} ms")


if __name__ == "__main__":
    unittest.main()
