"""bench/export_times.py - export the exporter's zoo models (python/tests/zoo.py)
and time each export and `gmserve check` on the file (process start, load,
probes and self-test; best of 5). Usage: /usr/bin/python3 bench/export_times.py [BUILD]"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]
import torch  # noqa: E402
import gmexport  # noqa: E402
import zoo  # noqa: E402

out = tempfile.mkdtemp(prefix="gm_export_times_")
GM = os.path.join(ROOT, sys.argv[1] if len(sys.argv) > 1 else "build", "gmserve")
print("| zoo model | export | gmserve check | probes |")
print("|---|---|---|---|")


def timed(name, f):
    t = time.perf_counter(); f(); ex = time.perf_counter() - t
    path = os.path.join(out, name + ".safetensors")
    best = 1e9
    for _ in range(5):
        t = time.perf_counter(); r = subprocess.run([GM, "check", path], capture_output=True, text=True); best = min(best, time.perf_counter() - t)
        assert r.returncode == 0, r.stdout + r.stderr
    probes = [l for l in r.stdout.splitlines() if "probes:" in l][0].split("probes:")[1].strip()
    print(f"| {name} | {ex*1000:.0f} ms | {best*1000:.0f} ms | {probes} |")


torch.manual_seed(0)
vae = zoo.ConvVAE(z_dim=8).eval()
timed("conv_vae", lambda: gmexport.save_vae(os.path.join(out, "conv_vae.safetensors"), gmexport.method(vae, "encode"), gmexport.method(vae, "decode"), latent_dim=8))
G = zoo.randomize(zoo.CondDCGANGenerator(img_size=16), 1)
timed("cond_dcgan", lambda: gmexport.save_gan(os.path.join(out, "cond_dcgan.safetensors"), G, image="16x16x1", latent_dim=16, inputs=("z", "label"), num_classes=10, discriminator=zoo.randomize(zoo.DCGANDiscriminator(img_size=16))))
timed("infogan", lambda: gmexport.save_gan(os.path.join(out, "infogan.safetensors"), zoo.randomize(zoo.InfoGANGenerator()), image="16x16x1", latent_dim=12, inputs=("z", "onehot", "code"), num_classes=10, code_dim=2))
timed("examples_dcgan", lambda: gmexport.save_gan(os.path.join(out, "examples_dcgan.safetensors"), zoo.randomize(zoo.ExamplesDCGANGenerator()), image="16x16x3", latent_dim=16))

import shutil  # noqa: E402  (the exported files are scratch)
shutil.rmtree(out)
