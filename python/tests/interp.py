"""interp.py - a reference interpreter of gmserve layer graphs, for the tests.

Written from the format's definition, op by op, on batched float64 tensors
[B, per-sample...]: it never calls the modules that were exported, so when
it reproduces their outputs from a file, the file is right. Every field an
op may carry is listed; an unknown field or op fails the test, so the
exporter cannot write anything the format does not define.
"""
import json
import math

import torch
import torch.nn.functional as F

FIELDS = {
    "linear": {"weight", "bias"},
    "conv2d": {"weight", "bias", "stride", "padding", "dilation", "groups"},
    "conv_transpose2d": {"weight", "bias", "stride", "padding", "output_padding", "dilation", "groups"},
    "batch_norm": {"weight", "bias", "mean", "var", "eps"},
    "instance_norm": {"weight", "bias", "mean", "var", "eps"},
    "group_norm": {"groups", "weight", "bias", "eps"},
    "layer_norm": {"normalized_shape", "weight", "bias", "eps"},
    "embedding": {"weight"}, "expand": {"shape"}, "upsample": {"scale_factor", "size", "mode", "align_corners"},
    "pad": {"pad", "mode", "value"}, "dropout": set(), "relu": set(), "sigmoid": set(), "tanh": set(),
    "leaky_relu": {"slope"}, "elu": {"alpha"}, "gelu": {"approximate"}, "silu": set(),
    "softplus": {"beta", "threshold"}, "prelu": {"weight"}, "hardtanh": {"min", "max"}, "softmax": {"dim"},
    "max_pool2d": {"kernel_size", "stride", "padding"},
    "avg_pool2d": {"kernel_size", "stride", "padding", "count_include_pad"},
    "pixel_shuffle": {"upscale_factor"}, "reshape": {"shape"}, "flatten": set(),
    "add": set(), "mul": set(), "concat": {"dim"}, "split": {"sizes", "dim"},
}
COMMON = {"op", "inputs", "name", "names"}
DEFAULT_INPUTS = {"generator": ["z"], "decoder": ["z"], "encoder": ["image"], "discriminator": ["image"],
                  "network": ["image"], "q_network": ["image"], "reverse": ["image"]}


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def channel(v, x):
    """A per-channel vector [C] shaped to broadcast over x [B, C, ...]."""
    return v.reshape([1, -1] + [1] * (x.dim() - 2))


def act(kind, op, x, T):
    if kind == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if kind == "sigmoid":
        return 1 / (1 + torch.exp(-x))
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "leaky_relu":
        return torch.where(x >= 0, x, x * op.get("slope", 0.01))
    if kind == "elu":
        return torch.where(x > 0, x, op.get("alpha", 1.0) * (torch.exp(x) - 1))
    if kind == "gelu":
        if op.get("approximate", "none") == "tanh":
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if kind == "silu":
        return x / (1 + torch.exp(-x))
    if kind == "softplus":
        beta, th = op.get("beta", 1), op.get("threshold", 20)
        return torch.where(x * beta > th, x, torch.log1p(torch.exp(beta * x)) / beta)
    if kind == "prelu":
        w = T[op["weight"]]
        w = w if w.numel() == 1 else channel(w, x)
        return torch.where(x >= 0, x, w * x)
    if kind == "hardtanh":
        return x.clamp(op.get("min", -1.0), op.get("max", 1.0))
    if kind == "softmax":
        d = op["dim"]
        d = d + 1 if d >= 0 else d
        e = torch.exp(x - x.amax(d, keepdim=True))
        return e / e.sum(d, keepdim=True)
    raise KeyError(kind)


def normalize(x, dims, eps):
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def affine(y, op, T, shape_fn):
    if "weight" in op:
        y = y * shape_fn(T[op["weight"]])
    if "bias" in op:
        y = y + shape_fn(T[op["bias"]])
    return y


def upsample(op, x):
    B, C, H, W = x.shape
    mode = op.get("mode", "nearest")
    if "size" in op:
        oh, ow = op["size"]
    else:
        sh, sw = pair(op["scale_factor"])
        oh, ow = H * sh, W * sw
    if mode == "nearest":
        # source index floor(dst * in / out), PyTorch's nearest
        iy = torch.div(torch.arange(oh) * H, oh, rounding_mode="floor")
        ix = torch.div(torch.arange(ow) * W, ow, rounding_mode="floor")
        return x[:, :, iy][:, :, :, ix]
    assert mode == "bilinear"
    corners = op.get("align_corners", False)

    def coords(o, n):
        if corners:  # the corner pixels' centres coincide
            src = torch.arange(o, dtype=torch.float64) * ((n - 1) / (o - 1) if o > 1 else 0.0)
        else:
            src = ((torch.arange(o, dtype=torch.float64) + 0.5) * (n / o) - 0.5).clamp(min=0)
        lo = src.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        return lo, hi, src - lo
    y0, y1, fy = coords(oh, H)
    x0, x1, fx = coords(ow, W)
    top = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return top[..., x0] * (1 - fx) + top[..., x1] * fx


def pool(kind, op, x):
    k = pair(op["kernel_size"])
    s = pair(op.get("stride", op["kernel_size"]))
    p = pair(op.get("padding", 0))
    if kind == "max_pool2d":
        xp = F.pad(x, (p[1], p[1], p[0], p[0]), value=-math.inf)
        return xp.unfold(2, k[0], s[0]).unfold(3, k[1], s[1]).amax((-1, -2))
    xp = F.pad(x, (p[1], p[1], p[0], p[0]))
    sums = xp.unfold(2, k[0], s[0]).unfold(3, k[1], s[1]).sum((-1, -2))
    if op.get("count_include_pad", True):
        return sums / (k[0] * k[1])
    ones = F.pad(torch.ones_like(x[:1, :1]), (p[1], p[1], p[0], p[0]))
    n = ones.unfold(2, k[0], s[0]).unfold(3, k[1], s[1]).sum((-1, -2))
    return sums / n


def step(op, ins, T):
    kind = op["op"]
    extra = set(op) - FIELDS[kind] - COMMON
    assert not extra, f"op {kind} has fields {extra} the format does not define"
    x = ins[0]
    B = x.shape[0]
    if kind == "linear":
        y = x.reshape(B, -1) @ T[op["weight"]].t()
        return y + T[op["bias"]] if "bias" in op else y
    if kind == "conv2d":
        pad = op.get("padding", 0)
        y = F.conv2d(x, T[op["weight"]], T.get(op.get("bias")), pair(op.get("stride", 1)),
                     pad if pad == "same" else pair(pad), pair(op.get("dilation", 1)), op.get("groups", 1))
        return y
    if kind == "conv_transpose2d":
        return F.conv_transpose2d(x, T[op["weight"]], T.get(op.get("bias")), pair(op.get("stride", 1)),
                                  pair(op.get("padding", 0)), pair(op.get("output_padding", 0)),
                                  op.get("groups", 1), pair(op.get("dilation", 1)))
    if kind == "batch_norm":
        y = (x - channel(T[op["mean"]], x)) / torch.sqrt(channel(T[op["var"]], x) + op.get("eps", 1e-5))
        return affine(y, op, T, lambda v: channel(v, x))
    if kind == "instance_norm":
        if "mean" in op:
            y = (x - channel(T[op["mean"]], x)) / torch.sqrt(channel(T[op["var"]], x) + op.get("eps", 1e-5))
        else:
            y = normalize(x, (2, 3), op.get("eps", 1e-5))
        return affine(y, op, T, lambda v: channel(v, x))
    if kind == "group_norm":
        g = op["groups"]
        y = normalize(x.reshape(B, g, -1), (2,), op.get("eps", 1e-5)).reshape(x.shape)
        return affine(y, op, T, lambda v: channel(v, x))
    if kind == "layer_norm":
        n = len(op["normalized_shape"])
        assert list(x.shape[-n:]) == op["normalized_shape"]
        y = normalize(x, tuple(range(-n, 0)), op.get("eps", 1e-5))
        return affine(y, op, T, lambda v: v)
    if kind == "embedding":
        assert torch.equal(x, x.round()), "a label value holds integers"
        return T[op["weight"]][x.long()]
    if kind == "expand":
        C, H, W = op["shape"]
        return x.reshape(B, C, 1, 1).expand(B, C, H, W)
    if kind == "upsample":
        return upsample(op, x)
    if kind == "pad":
        mode = {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}[op.get("mode", "zero")]
        if mode == "constant":
            return F.pad(x, op["pad"], value=op.get("value", 0.0))
        return F.pad(x, op["pad"], mode=mode)
    if kind == "dropout":
        return x
    if kind in ("max_pool2d", "avg_pool2d"):
        return pool(kind, op, x)
    if kind == "pixel_shuffle":
        r = op["upscale_factor"]
        _, C, H, W = x.shape
        return x.reshape(B, C // (r * r), r, r, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, C // (r * r), H * r, W * r)
    if kind == "reshape":
        return x.reshape([B] + op["shape"])
    if kind == "flatten":
        return x.reshape(B, -1)
    if kind in ("add", "mul"):
        a, b = ins
        return a + b if kind == "add" else a * b
    if kind == "concat":
        d = op["dim"]
        return torch.cat(ins, d + 1 if d >= 0 else d)
    if kind == "split":
        d = op["dim"]
        return torch.split(x, op["sizes"], d + 1 if d >= 0 else d)
    return act(kind, op, x, T)


def run(ops, tensors, inputs):
    """inputs: [(name, tensor [B, ...])] in the network's input order."""
    T = {k: v.double() for k, v in tensors.items()}
    vals = {n: v.double() for n, v in inputs}
    prev = inputs[0][1].double()
    for op in ops:
        ins = [vals[n] for n in op["inputs"]] if "inputs" in op else [prev]
        assert all(v is not None for v in ins), f"op {op['op']} reads the output of a split by default"
        out = step(op, ins, T)
        if op["op"] == "split":
            assert len(op["names"]) == len(out)
            vals.update(zip(op["names"], out))
            prev = None
        else:
            if "name" in op:
                vals[op["name"]] = out
            prev = out
    return prev


def networks(meta):
    """The networks of a file: name -> (ops, input names)."""
    out = {}
    for net, default in DEFAULT_INPUTS.items():
        if f"gm.{net}" in meta:
            names = json.loads(meta[f"gm.{net}_inputs"]) if f"gm.{net}_inputs" in meta else default
            out[net] = (json.loads(meta[f"gm.{net}"]), names)
    return out
