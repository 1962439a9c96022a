"""Writes safetensors files: an 8-byte little-endian header length, a JSON
header mapping each tensor name to its dtype, shape and byte offsets (plus
"__metadata__", a map of strings), then the raw row-major bytes."""
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.float64: "F64", torch.int64: "I64", torch.int32: "I32"}


def write(path, tensors, metadata):
    """tensors: name -> torch.Tensor; metadata: str -> str (dicts and lists
    are dumped as JSON text)."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # align the data section like the reference writer
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read(path):
    """Returns (tensors, metadata) of a file this module wrote (no hostile-input
    checks: the server's loader is the one that validates)."""
    inv = {v: k for k, v in DTYPES.items()}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        dtype = inv[info["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta
