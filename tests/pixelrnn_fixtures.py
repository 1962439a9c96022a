"""pixelrnn_fixtures.py - random-weight Row LSTMs (models/train/pixelrnn_net.py)
exported by gmexport.save_pixelrnn, with log p computed by PyTorch in
float64, and broken copies the server must refuse.

Each NAME.ref.safetensors holds binary images "x" [N, H, W, 1] and, in its
metadata, "logp": the float64 log p of each image (for a conditional model,
log of the mean over classes of p(x | y)). pixelrnn_tiny is 3x3: its
probabilities over all 512 images sum to 1. pixelrnn_bad_*.safetensors are
copies of pixelrnn_small with one thing broken (named by the suffix).

    /usr/bin/python3 tests/pixelrnn_fixtures.py tests/fixtures
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "train"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import gmexport  # noqa: E402
from gmexport.safetensors import read, write  # noqa: E402
import pixelrnn_net  # noqa: E402
import pixelcnn_fixtures  # noqa: E402  (tests/, beside this file)
from pixelcnn_fixtures import randomize  # noqa: E402


def fixture(out, name, net, h, w, n, classes=0):
    pixelcnn_fixtures.fixture(out, name, net, h, w, n, classes, save=gmexport.save_pixelrnn)


def broken(out, base, name, change):
    """A copy of base with change(tensors, metadata) applied."""
    ts, meta = read(os.path.join(out, base + ".safetensors"))
    change(ts, meta)
    write(os.path.join(out, f"pixelrnn_bad_{name}.safetensors"), ts, meta)


def set_tap(ts, meta):
    ts["layers.0.input_to_state.weight"][5, 0, 1] = 0.5  # mask A's centre tap: sees its own pixel


def main(out):
    torch.manual_seed(2027)
    fixture(out, "pixelrnn_small", randomize(pixelrnn_net.RowLSTM(hidden=8, layers=2, head=8), 0.4), 7, 9, 6)
    fixture(out, "pixelrnn_wide", randomize(pixelrnn_net.RowLSTM(hidden=12, layers=3, k_in=5, k_state=5, head=6),
                                            0.3), 6, 11, 5)
    fixture(out, "pixelrnn_cond", randomize(pixelrnn_net.RowLSTM(hidden=6, layers=2, head=5, num_classes=3), 0.4),
            5, 6, 5, classes=3)
    fixture(out, "pixelrnn_one", randomize(pixelrnn_net.RowLSTM(hidden=5, layers=1, k_in=1, k_state=1, head=4), 0.5),
            4, 4, 4)
    fixture(out, "pixelrnn_tiny", randomize(pixelrnn_net.RowLSTM(hidden=4, layers=2, head=4), 0.6), 3, 3, 4)
    # gates of 84 and a head of 70: the sampler's kernels' whole blocks and remainders, the cell's vectors and tail
    fixture(out, "pixelrnn_big", randomize(pixelrnn_net.RowLSTM(hidden=21, layers=2, k_in=7, k_state=7, head=70),
                                           0.35), 6, 13, 5)
    base = "pixelrnn_small"
    broken(out, base, "tap", set_tap)
    broken(out, base, "field", lambda ts, m: m.update({"gm.pixelrnn": m["gm.pixelrnn"][:-1] + ',"gates":4}'}))
    broken(out, base, "kernel", lambda ts, m: m.update({"gm.pixelrnn": m["gm.pixelrnn"].replace(
        '"state_kernel":3', '"state_kernel":2')}))
    broken(out, base, "json", lambda ts, m: m.update({"gm.pixelrnn": "[3]"}))
    broken(out, base, "missing", lambda ts, m: ts.pop("layers.1.state_to_state.weight"))
    broken(out, base, "shape", lambda ts, m: ts.update({"out1.bias": torch.zeros(7)}))
    broken(out, base, "nan", lambda ts, m: ts["layers.1.input_to_state.bias"].__setitem__(3, float("nan")))
    broken(out, base, "extra", lambda ts, m: ts.update({"layers.2.input_to_state.bias": torch.zeros(32)}))
    broken(out, base, "probe", lambda ts, m: ts["gm.pixelrnn.probe.logits"].__setitem__((1, 0, 2, 3), 9.0))
    broken(out, base, "channels", lambda ts, m: m.update({"gm.image": "7x9x3"}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures"))
