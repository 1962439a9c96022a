"""data.py - Fashion-MNIST from Debian's dataset-fashion-mnist (idx.gz files)
and the thread and seed setup every trainer shares.

Images come back as float32 tensors (N, 784) in [0, 1]; labels as int64 (N).
The binarized-data protocol of models/README.md: trainers draw a fresh
Bernoulli(intensity) binarization of every batch (dynamic binarization);
evaluation uses one fixed binarization made by gmserve's own C code.
"""
import gzip
import os
import struct
import sys
import time

import torch

DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["t-shirt/top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def _idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
    return data.reshape(dims)


def load(split):
    """split: 'train' or 't10k'. Returns (images (N, 784) float in [0,1], labels (N))."""
    x = _idx(os.path.join(DIR, f"{split}-images-idx3-ubyte.gz")).reshape(-1, 784).float() / 255.0
    y = _idx(os.path.join(DIR, f"{split}-labels-idx1-ubyte.gz")).long()
    return x, y


def seed_and_threads(seed, threads=1):
    """One thread per training unless told otherwise: two trainings'
    threads fight over 2 cores."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def command():
    """This run's command line, as it can be typed again."""
    return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 1)} /usr/bin/python3 " + " ".join(sys.argv)


class Progress:
    """One line per epoch: epoch, losses, seconds, elapsed."""

    def __init__(self, name, epochs):
        self.name, self.epochs, self.t0 = name, epochs, time.time()
        self.last = self.t0

    def epoch(self, e, **values):
        now = time.time()
        vals = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(f"[{self.name}] epoch {e + 1}/{self.epochs}  {vals}  {now - self.last:.1f} s  "
              f"(total {(now - self.t0) / 60:.1f} min)", flush=True)
        self.last = now

    def minutes(self):
        return (time.time() - self.t0) / 60
