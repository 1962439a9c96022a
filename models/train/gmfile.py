"""gmfile.py - the nn.Sequential layer lists of the bundled models.

`layer_list` turns an nn.Sequential into the JSON layer list of a gmserve
network and the tensors it names, in a chosen dtype (the fixtures also
write F16 and BF16 files); `write` is the exporter package's safetensors
writer (python/gmexport). Users exporting their own models call gmexport
itself, which traces any nn.Module and stores probes; the training scripts
and tests/make_fixtures.py keep this smaller path so that the bundled
files and the fixtures stay byte for byte what they are.
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from gmexport.safetensors import write  # noqa: E402

__all__ = ["layer_list", "write"]


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
