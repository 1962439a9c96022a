"""gmfile.py - write gmserve model files (SPEC.md §1) from PyTorch modules.

A model file is safetensors: an 8-byte little-endian header length, a JSON
header mapping tensor names to dtype/shape/offsets plus "__metadata__", then
the raw bytes. `layer_list` turns an nn.Sequential into the JSON layer list of
SPEC §1.4 and the tensors it names; `write` puts tensors and metadata in a
file. Used by the training scripts and by tests/make_fixtures.py, so the
fixtures exercise exactly the exporter users run.
"""
import json
import struct

import torch
from torch import nn

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


def layer_list(seq, prefix, dtype=torch.float32):
    """Returns (layers, tensors) for an nn.Sequential in eval mode."""
    layers, tensors = [], {}

    def put(name, t):
        key = f"{prefix}.{name}"
        tensors[key] = t.detach().to(dtype)
        return key

    for i, mod in enumerate(seq):
        if isinstance(mod, nn.Linear):
            op = {"op": "linear", "weight": put(f"{i}.weight", mod.weight)}
            if mod.bias is not None:
                op["bias"] = put(f"{i}.bias", mod.bias)
        elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            t = isinstance(mod, nn.ConvTranspose2d)
            assert mod.stride[0] == mod.stride[1] and mod.padding[0] == mod.padding[1], "square params only"
            assert mod.groups == 1 and mod.dilation == (1, 1)
            op = {"op": "conv_transpose2d" if t else "conv2d", "weight": put(f"{i}.weight", mod.weight),
                  "stride": mod.stride[0], "padding": mod.padding[0]}
            if t and mod.output_padding[0]:
                op["output_padding"] = mod.output_padding[0]
            if mod.bias is not None:
                op["bias"] = put(f"{i}.bias", mod.bias)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            op = {"op": "batch_norm", "mean": put(f"{i}.running_mean", mod.running_mean),
                  "var": put(f"{i}.running_var", mod.running_var), "eps": mod.eps}
            if mod.affine:
                op["weight"] = put(f"{i}.weight", mod.weight)
                op["bias"] = put(f"{i}.bias", mod.bias)
        elif isinstance(mod, nn.ReLU):
            op = {"op": "relu"}
        elif isinstance(mod, nn.Sigmoid):
            op = {"op": "sigmoid"}
        elif isinstance(mod, nn.Tanh):
            op = {"op": "tanh"}
        elif isinstance(mod, nn.LeakyReLU):
            op = {"op": "leaky_relu", "slope": mod.negative_slope}
        elif isinstance(mod, nn.Unflatten):
            op = {"op": "reshape", "shape": list(mod.unflattened_size)}
        elif isinstance(mod, nn.Flatten):
            op = {"op": "flatten"}
        else:
            raise ValueError(f"{prefix} layer {i}: {type(mod).__name__} has no gmserve op")
        layers.append(op)
    return layers, tensors
