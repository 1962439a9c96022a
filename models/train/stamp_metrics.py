"""stamp_metrics.py - writes the measured metrics of `gmserve eval --json`
into each model file's gm.metrics (shown by /v1/models and the web page).

    python3 models/train/stamp_metrics.py METRICS.json name=FILE ...

name is the key in METRICS.json (nade, vae, gan, classifier, pixelcnn, pixelrnn). Only the
header changes; tensor bytes are copied as they are. Needs no torch.
"""
import json
import os
import struct
import sys


def stamp(path, metrics):
    with open(path, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    metrics = {k: v for k, v in metrics.items() if k != "file"}
    header.setdefault("__metadata__", {})["gm.metrics"] = json.dumps(metrics, sort_keys=True)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(body)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        report = json.load(f)
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        if name not in report:
            sys.exit(f"stamp_metrics: {sys.argv[1]} has no '{name}' section")
        stamp(path, report[name])
        print(f"stamp_metrics: {path} gm.metrics <- {name}")


if __name__ == "__main__":
    main()
