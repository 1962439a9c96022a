"""trace.py - turns an nn.Module into a gmserve layer graph.

torch.fx records forward() as a graph of calls. We walk that graph once,
running every call on real probe inputs as we go, so that each value is
either
  - an activation (Act): depends on the network's inputs, carries its real
    value [P, ...] and the id of the graph value that computes it, or
  - a constant: everything computed from parameters, buffers and literals
    alone (weight * mask, a weight_norm weight, x.size(1)) is simply
    evaluated by PyTorch here, at export time, or
  - BATCH: x.size(0) / x.shape[0], which only view/reshape/expand may use.
Each call on activations is translated into graph ops; one without an exact
translation raises ExportError with the module path. Modules whose class is
exactly a known torch.nn class are translated whole; every other module
(subclasses included, such as a masked Linear) is traced through its
forward, so what it really computes is what gets exported.
"""
import copy
import inspect
import math
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from .errors import ExportError


class _Batch:
    def __repr__(self):
        return "batch size"


BATCH = _Batch()


class Act:
    """An activation: `vid` names its graph value, `t` is its real value."""
    __slots__ = ("vid", "t", "label", "onehot")

    def __init__(self, vid, t, label=False, onehot=False):
        self.vid, self.t, self.label, self.onehot = vid, t, label, onehot

    @property
    def shape(self):  # per sample
        return list(self.t.shape[1:])


class Graph:
    """Ops as emitted, before naming. ops: [(fields, input vids, output vids)]."""

    def __init__(self, net):
        self.net = net
        self.ops = []
        self.tensors = {}
        self.hints = {}
        self._n = 0

    def value(self, hint):
        self._n += 1
        vid = f"%{self._n}"
        self.hints[vid] = hint
        return vid

    def param(self, path, field, t):
        """Stores t as a float32 tensor of the file and returns its name."""
        t = t.detach().to(torch.float32).contiguous()
        base = f"{self.net}.{path}.{field}" if path else f"{self.net}.{field}"
        key, i = base, 1
        while key in self.tensors and not torch.equal(self.tensors[key], t):
            key, i = f"{base}.{i}", i + 1
        self.tensors[key] = t
        return key

    def emit(self, fields, ins, t, hint, **flags):
        vid = self.value(hint)
        self.ops.append((fields, [a.vid for a in ins], [vid]))
        return Act(vid, t, **flags)


class _Proxy(fx.Proxy):
    """Answers what Python asks of a traced value while forward() runs:
    its length and items (`a, b = torch.split(x, c, 1)`, `for s in
    x.size()`), int() of a size, and facts about the device. Lengths and
    sizes come from the probe inputs at two batch sizes, since a shape is
    the same for every input; what differs between them depends on the
    batch size, which the graph must keep symbolic."""

    def __getattr__(self, name):
        # facts of the export, not of the data: the tensors are on the CPU
        # (DCGAN code asks `if input.is_cuda and self.ngpu > 1`)
        if name == "is_cuda":
            return False
        if name == "device":
            return torch.device("cpu")
        return _Attribute(self, name)  # fx's own Attribute would answer len() and iteration with errors

    def _at_two_batches(self):
        return self.tracer.evaluate_at_two_batches(self.node)

    def __len__(self):
        full, one = (len(v) for v in self._at_two_batches())
        if full != one:
            raise ExportError(self.tracer.where(self.node), "iterates over the batch dimension")
        return full

    def __iter__(self):
        return iter([self[i] for i in range(len(self))])

    def __int__(self):
        where = self.tracer.where(self.node)
        if not self.tracer._on_shapes(self.node):
            raise ExportError(where, "converts a value computed from data to a Python number")
        full, one = (int(v) for v in self._at_two_batches())
        if full != one:  # int(x.size(0)): fine unless the graph keeps it, which export_network checks
            self.tracer.batch_as_int = True
        return full


class _Attribute(fx.proxy.Attribute, _Proxy):
    """x.shape and other attributes, with _Proxy's answers (`B, C, H, W =
    x.shape`)."""


def _base_class(m):
    """The torch.nn class behind a parametrized module (its class is a
    generated subclass), else the module's own class."""
    return type(m).__mro__[1] if parametrize.is_parametrized(m) else type(m)


META_METHODS = ("size", "dim")
META_ATTRS = ("shape", "ndim")


class _Tracer(fx.Tracer):
    """Records module paths, and decides `if`s on shapes (`if x.dim() == 4`,
    `assert h.shape[1] == C`) by evaluating them on the probe inputs, since
    a shape is the same for every input. A condition on data or on the
    batch size stays an error."""

    def __init__(self, net, leaves, inputs):
        super().__init__()
        self.net = net
        self.leaves = leaves
        self.stack = [""]
        self.inputs = inputs
        self.copies = {}
        self.batch_as_int = False  # forward() turned the batch size into a Python int

    def is_leaf_module(self, m, qualname):
        return _base_class(m) in self.leaves

    def call_module(self, m, forward, args, kwargs):
        try:
            path = self.path_of_module(m)
        except NameError:  # made inside forward(), as in `nn.ZeroPad2d((1, 0, 0, 0))(x)`
            where = f"{self.net}.{self.stack[-1]}" if self.stack[-1] else self.net
            if next(m.parameters(), None) is not None or next(m.buffers(), None) is not None:
                raise ExportError(where, f"creates a {type(m).__name__} with parameters inside forward(), "
                                         "new on every call; create it in __init__")
            return forward(*args, **kwargs)  # no state of its own: what it computes is its forward
        self.stack.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["gm_path"] = self.stack[-1]
        return node

    def proxy(self, node):
        return _Proxy(node, self)

    def where(self, node):
        path = node.meta.get("gm_path")
        return f"{self.net}.{path}" if path else self.net

    def to_bool(self, obj):
        where = self.where(obj.node)
        if not self._on_shapes(obj.node):
            raise ExportError(where, "branches on tensor values (an `if` or `assert` on data)")
        values = self.evaluate_at_two_batches(obj.node)
        if bool(values[0]) != bool(values[1]):
            raise ExportError(where, "branches on the batch size")
        return bool(values[0])

    def evaluate_at_two_batches(self, node):
        """The value of `node` for the probe inputs, and for their first one alone."""
        return [self._evaluate(node, [t[:n] for t in self.inputs]) for n in (len(self.inputs[0]), 1)]

    def _on_shapes(self, node):
        """True when the inputs reach `node` only through their shapes."""
        todo, seen = [node], set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.op == "placeholder":
                return False
            if (n.op == "call_method" and n.target in META_METHODS) or \
                    (n.op == "call_function" and n.target is getattr and n.args[1] in META_ATTRS):
                continue
            todo += n.all_input_nodes
        return True

    def _evaluate(self, node, inputs):
        """The value of `node` for real inputs: the graph so far, run. While
        fx traces, Module.__call__ and parameter access are patched to make
        proxies, so modules run as private copies through forward() (they
        are torch.nn layers: forward is all they do) and parameters are read
        from named_parameters()."""
        env, it = {}, iter(inputs)
        tensors = dict(self.root.named_parameters())
        tensors.update(self.root.named_buffers())
        with torch.no_grad():
            for n in self.graph.nodes:
                args = fx.node.map_arg(n.args, lambda a: env[a])
                kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
                if n.op == "placeholder":
                    env[n] = next(it, None)
                elif n.op == "get_attr":
                    env[n] = tensors[n.target] if n.target in tensors else _fetch(self.root, n.target)
                elif n.op == "call_module":
                    if n.target not in self.copies:
                        self.copies[n.target] = copy.deepcopy(self.root.get_submodule(n.target))
                    env[n] = self.copies[n.target].forward(*args, **kwargs)
                elif n.op == "call_method":
                    env[n] = getattr(args[0], n.target)(*args[1:], **kwargs)
                else:
                    env[n] = n.target(*args, **kwargs)
                if n is node:
                    return env[n]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(int(x) for x in v)


def _field(p):
    """An int for a square pair, else [h, w]."""
    return p[0] if p[0] == p[1] else list(p)


def _is_act(v):
    return isinstance(v, Act)


def _has(v, pred):
    if isinstance(v, (list, tuple)):
        return any(_has(x, pred) for x in v)
    if isinstance(v, dict):
        return any(_has(x, pred) for x in v.values())
    return pred(v)


def _real(v, P):
    if isinstance(v, Act):
        return v.t
    if v is BATCH:
        return P
    if isinstance(v, (list, tuple)):
        r = [_real(x, P) for x in v]
        return type(v)(r) if isinstance(v, tuple) else r
    if isinstance(v, dict):
        return {k: _real(x, P) for k, x in v.items()}
    return v


RANDOM = {torch.randn, torch.rand, torch.randint, torch.randn_like, torch.rand_like, torch.randint_like,
          torch.normal, torch.bernoulli, torch.multinomial, torch.randperm}
ACT_MODULES = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu"}
DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
VIEW_METHODS = {"view", "reshape", "flatten", "unsqueeze", "squeeze", "contiguous", "view_as", "detach"}
VECTOR_INPUTS = ("z", "onehot", "code")


class Translator:
    """Walks one traced module. `inputs`: [(name, tensor [P, ...])] in
    forward() order."""

    def __init__(self, net, module, inputs):
        self.net, self.root = net, module
        self.g = Graph(net)
        self.P = inputs[0][1].shape[0]
        self.inputs = inputs
        leaves = set(MODULES)
        self._check_hooks(module, leaves)
        try:
            sig = inspect.signature(module.forward)
        except (TypeError, ValueError):
            sig = None
        concrete = {}
        if sig is not None:
            params = [p for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(params) < len(inputs):
                raise ExportError(f"{net} ({type(module).__name__})",
                                  f"forward() takes {len(params)} inputs but the exporter was told of "
                                  f"{len(inputs)}: {[n for n, _ in inputs]}")
            for p in params[len(inputs):]:
                if p.default is inspect.Parameter.empty:
                    raise ExportError(f"{net} ({type(module).__name__})",
                                      f"forward() takes an input '{p.name}' beyond the declared inputs "
                                      f"{[n for n, _ in inputs]}")
                concrete[p.name] = p.default
        if _base_class(module) in leaves:  # fx always traces the root's own forward
            module = nn.Sequential(module)
            self.root = module
        tracer = _Tracer(net, leaves, [t for _, t in inputs])
        self.tracer = tracer
        try:
            self.fx = tracer.trace(module, concrete_args=concrete or None)
        except ExportError:
            raise
        except Exception as e:  # fx's own refusals: data-dependent control flow and the like
            raise ExportError(f"{net} ({type(module).__name__})",
                              f"torch.fx cannot trace forward(): {type(e).__name__}: {e}") from e
        self.order = {n: i for i, n in enumerate(self.fx.nodes)}

    def _check_hooks(self, module, leaves):
        """fx never runs hooks; weight_norm and spectral_norm (the hook-based
        ones) are computed here instead, any other hook is refused."""
        self.fresh = {}
        for path, m in module.named_modules():
            where = f"{self.net}.{path}" if path else self.net
            if m._forward_hooks or getattr(m, "_forward_hooks_with_kwargs", None):
                raise ExportError(where, "has a forward hook, which tracing would skip")
            for h in m._forward_pre_hooks.values():
                if isinstance(h, (WeightNorm, SpectralNorm)) and _base_class(m) in leaves:
                    w = h.compute_weight(m) if isinstance(h, WeightNorm) else \
                        h.compute_weight(m, do_power_iteration=False)
                    self.fresh[(id(m), h.name)] = w.detach()
                else:
                    raise ExportError(where, f"has a forward pre-hook ({type(h).__name__}) that tracing "
                                             "would skip (weight_norm and spectral_norm on torch.nn layers are "
                                             "the ones the exporter computes)")

    def where(self, node):
        """The module path of a node and what it calls, for messages."""
        if node.op == "call_module":
            return f"{self.net}.{node.target} ({type(self.root.get_submodule(node.target)).__name__})"
        path = node.meta.get("gm_path", "")
        name = f"{self.net}.{path}" if path else self.net
        t = node.target
        if node.op == "call_method":
            what = f".{t}()"
        elif callable(t):
            mod = getattr(t, "__module__", None) or ""
            what = f"{'torch.nn.functional' if mod.startswith('torch.nn.functional') else mod}.{t.__name__}"
        else:
            what = str(t)
        return f"{name} ({what})"

    def weight(self, m, name):
        """A module's tensor as its forward would see it (hooks computed,
        parametrizations evaluated)."""
        if (id(m), name) in self.fresh:
            return self.fresh[(id(m), name)]
        t = getattr(m, name)
        return None if t is None else t.detach()

    # ---- the walk ----

    def run(self):
        env = {}
        ph = 0
        out = None
        for node in self.fx.nodes:
            self.node = node
            if node.op == "placeholder":
                if ph >= len(self.inputs):
                    env[node] = node.args[0] if node.args else None
                    continue
                name, t = self.inputs[ph]
                env[node] = Act(name, t, label=(name == "label"))
                if name in VECTOR_INPUTS and t.dim() > 2:  # z fed as [B, Z, 1, 1], as DCGANs take it
                    vid = self.g.value(name)
                    self.g.ops.append(({"op": "reshape", "shape": list(t.shape[1:])}, [name], [vid]))
                    env[node] = Act(vid, t)
                ph += 1
            elif node.op == "get_attr":
                env[node] = _fetch(self.root, node.target)
            elif node.op == "output":
                out = fx.node.map_arg(node.args[0], lambda n: env[n])
            else:
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                env[node] = self.call(node, args, kwargs)
        return out

    def call(self, node, args, kwargs):
        where = self.where(node)
        acts = _has((args, kwargs), _is_act)
        if node.op == "call_module":
            m = self.root.get_submodule(node.target)
            if not acts:  # a layer applied to parameters only: its result is a constant
                with torch.no_grad():
                    return m(*self.real(args), **self.real(kwargs))
            handler = MODULES[_base_class(m)]
            self.inplace_check(node, args, getattr(m, "inplace", False))
            return handler(self, m, node.target, *args, **kwargs)
        target = node.target
        if not acts:
            if target in RANDOM:
                raise ExportError(where, "draws random numbers inside forward()")
            if _has((args, kwargs), lambda v: v is BATCH):
                return self.batch_arith(where, target, args, kwargs)
            return self.constant(node, where, target, args, kwargs)
        if node.op == "call_method":
            handler = METHODS.get(target)
        else:
            handler = FUNCTIONS.get(target)
        if handler is None:
            raise ExportError(where, "has no gmserve op")
        try:
            bound = inspect.signature(handler).bind(self, *args, **kwargs).arguments
        except TypeError as e:
            raise ExportError(where, f"unexpected arguments: {e}") from e
        inplace = bound.get("inplace", False) or (node.op == "call_method" and target.endswith("_")) or \
            target in (operator.iadd, operator.isub, operator.imul, operator.itruediv)
        self.inplace_check(node, args, inplace)
        return handler(self, *args, **kwargs)

    def constant(self, node, where, target, args, kwargs):
        """A call on constants only: evaluated now. In-place calls on them
        would change a parameter behind the graph's back, so they must be
        no-ops (a mask already applied), else they are refused."""
        fn = getattr(args[0], target) if node.op == "call_method" else target
        inplace = (node.op == "call_method" and target.endswith("_") and not target.endswith("__")) or \
            target in (operator.iadd, operator.isub, operator.imul, operator.itruediv)
        if inplace and isinstance(args[0], torch.Tensor):
            before = args[0].detach().clone()
            work = [before.clone()] + list(args[1:])
            fn = getattr(work[0], target) if node.op == "call_method" else target
            with torch.no_grad():
                after = fn(*work, **kwargs)
            if not torch.equal(after, before):
                raise ExportError(where, "modifies a parameter or buffer in place inside forward() "
                                         "(e.g. weight.data *= mask); compute it out of place "
                                         "(F.linear(x, self.weight * self.mask)) or apply it before exporting")
            return args[0]
        with torch.no_grad():
            return fn(*args[1:], **kwargs) if node.op == "call_method" else fn(*args, **kwargs)

    def batch_arith(self, where, target, args, kwargs):
        if target is operator.getitem:  # x.shape[0], x.size()[1:]
            return target(*args, **kwargs)
        raise ExportError(where, "computes with the batch size (x.size(0)) beyond passing it to view/reshape")

    def inplace_check(self, node, args, inplace):
        """An in-place op is translated out of place, which is the same only
        when nothing reads the old value (or a view of it) afterwards."""
        if not inplace or not args or not isinstance(args[0], Act):
            return
        root = node.args[0]
        while isinstance(root, fx.Node) and root.op == "call_method" and root.target in VIEW_METHODS:
            root = root.args[0]
        aliases, todo = set(), [root]
        while todo:
            n = todo.pop()
            if n in aliases or not isinstance(n, fx.Node):
                continue
            aliases.add(n)
            todo += [u for u in n.users if u.op == "call_method" and u.target in VIEW_METHODS]
        for a in aliases:
            for u in a.users:
                if u is not node and u not in aliases and self.order[u] > self.order[node]:
                    raise ExportError(self.where(node), f"changes a value in place that '{u.name}' reads "
                                                        "afterwards; PyTorch would see the changed value there")

    # ---- helpers for the handlers ----

    def fail(self, reason):
        raise ExportError(self.where(self.node), reason)

    def hint(self):
        n = self.node
        return n.target if n.op == "call_module" else n.name

    def path(self):
        n = self.node
        return n.target if n.op == "call_module" else n.name

    def act(self, v, what="input"):
        if not isinstance(v, Act):
            self.fail(f"its {what} must be an activation, not a constant")
        if v.label:
            self.fail("uses the class label as a number; only an embedding (or F.one_hot) can take it")
        return v

    def const_tensor(self, v, what):
        if isinstance(v, Act):
            self.fail(f"its {what} depends on the network's input; it must be a parameter or buffer")
        return v

    def emit(self, fields, ins, t, **flags):
        t = t.detach()
        if t.dim() == 0 or t.shape[0] != self.P:
            self.fail("its result does not keep the batch dimension first")
        return self.g.emit(fields, ins, t, self.hint(), **flags)

    def per_sample_dim(self, x, dim):
        """A PyTorch dim over [B, ...] as a per-sample dim (0 = channels)."""
        rank = x.t.dim()
        d = dim % rank if -rank <= dim < rank else None
        if d is None:
            self.fail(f"dim {dim} is out of range")
        if d == 0:
            self.fail("works across the batch dimension (dim 0)")
        return d - 1

    def real(self, v):
        return _real(v, self.P)

    def reshape(self, x, t):
        x = self.act(x)
        shape = list(t.shape[1:])
        if shape == x.shape:
            return Act(x.vid, t, onehot=x.onehot)
        # one value per sample, [] in PyTorch, is a [1] vector in a graph
        op = {"op": "flatten"} if len(shape) <= 1 else {"op": "reshape", "shape": shape}
        return self.emit(op, [x], t)

    def affine(self, x, scale, shift, t):
        """x * scale + shift with scalar or per-channel constants, written as
        a batch_norm with mean 0, var 1 and eps 0 (which computes exactly
        that)."""
        x = self.act(x)
        if not x.shape:
            self.fail("applies arithmetic to a scalar per sample")
        C = x.shape[0]
        vecs = []
        for c in (scale, shift):
            c = torch.as_tensor(c, dtype=torch.float32)
            full = [1] * (len(x.shape) + 1 - c.dim()) + list(c.shape)
            if c.dim() > len(x.shape) + 1 or full[0] != 1 or any(s != 1 for s in full[2:]) or \
                    full[1] not in (1, C):
                self.fail(f"combines the activation {[self.P] + x.shape} with a constant of shape "
                          f"{list(c.shape)}; only scalars and per-channel constants can be exported")
            vecs.append(c.reshape(-1).expand(C).clone())
        if bool((vecs[0] == 1).all() and (vecs[1] == 0).all()):  # x * 1.0, x + 0: nothing to compute
            return Act(x.vid, t)
        p = self.path()
        op = {"op": "batch_norm", "weight": self.g.param(p, "scale", vecs[0]),
              "bias": self.g.param(p, "shift", vecs[1]),
              "mean": self.g.param(p, "mean", torch.zeros(C)), "var": self.g.param(p, "var", torch.ones(C)),
              "eps": 0.0}
        return self.emit(op, [x], t)

    def binary(self, kind, a, b, t):
        """add / mul of two activations, with PyTorch's broadcasting of a
        per-channel value over a map."""
        a, b = self.act(a), self.act(b)
        big = list(t.shape[1:])
        for v in (a, b):
            s = v.shape
            if s != big and not (len(big) == 3 and s == [big[0], 1, 1]):
                self.fail(f"{kind} of shapes {a.shape} and {b.shape} broadcasts in a way gmserve does not "
                          "(same shape, or a [C,1,1] value over [C,H,W])")
        return self.emit({"op": kind}, [a, b], t)


def _fetch(root, target):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


# ---- modules (exact torch.nn classes) ----

def _m_linear(tr, m, path, x):
    x = tr.act(x)
    if len(x.shape) != 1:
        tr.fail(f"nn.Linear on a {x.shape} value acts on its last dimension; gmserve's linear takes vectors "
                "(flatten first)")
    return _linear(tr, path, x, tr.weight(m, "weight"), tr.weight(m, "bias"), m(x.t))


def _linear(tr, path, x, w, b, t):
    op = {"op": "linear", "weight": tr.g.param(path, "weight", w)}
    if b is not None:
        op["bias"] = tr.g.param(path, "bias", b)
    return tr.emit(op, [x], t)


def _conv_padding(tr, padding, k, dilation):
    """(top, bottom, left, right) as PyTorch pads for a convolution."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out = []
        for kk, d in zip(k, dilation):
            total = d * (kk - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def _conv(tr, path, x, w, b, stride, padding, dilation, groups, mode, t, transposed=False, out_pad=0):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"a 2-d convolution needs a [C, H, W] value, not {x.shape}")
    k = tuple(w.shape[2:])
    dil = _pair(dilation)
    if transposed:
        op = {"op": "conv_transpose2d", "weight": tr.g.param(path, "weight", w), "stride": _field(_pair(stride)),
              "padding": _field(_pair(padding))}
        if _pair(out_pad) != (0, 0):
            op["output_padding"] = _field(_pair(out_pad))
    else:
        top, bottom, left, right = _conv_padding(tr, padding, k, dil)
        if mode not in ("zeros", "reflect", "replicate"):
            tr.fail(f"padding_mode '{mode}' has no gmserve equivalent (zeros, reflect, replicate do)")
        if mode != "zeros" or top != bottom or left != right:
            if top or bottom or left or right:
                padded = F.pad(x.t, (left, right, top, bottom),
                               mode="constant" if mode == "zeros" else mode)
                pad = {"op": "pad", "pad": [left, right, top, bottom],
                       "mode": "zero" if mode == "zeros" else mode}
                if mode == "zeros":
                    pad["value"] = 0.0
                x = tr.emit(pad, [x], padded)
            top = left = 0
        op = {"op": "conv2d", "weight": tr.g.param(path, "weight", w), "stride": _field(_pair(stride)),
              "padding": _field((top, left))}
    if dil != (1, 1):
        op["dilation"] = _field(dil)
    if groups != 1:
        op["groups"] = groups
    if b is not None:
        op["bias"] = tr.g.param(path, "bias", b)
    return tr.emit(op, [x], t)


def _m_conv2d(tr, m, path, x):
    return _conv(tr, path, x, tr.weight(m, "weight"), tr.weight(m, "bias"), m.stride, m.padding, m.dilation,
                 m.groups, m.padding_mode, m(x.t))


def _m_conv_t2d(tr, m, path, x, output_size=None):
    if output_size is not None:
        tr.fail("output_size given at call time; set output_padding on the module instead")
    if m.padding_mode != "zeros":
        tr.fail(f"padding_mode '{m.padding_mode}' on a transposed convolution")
    return _conv(tr, path, x, tr.weight(m, "weight"), tr.weight(m, "bias"), m.stride, m.padding, m.dilation,
                 m.groups, "zeros", m(x.t), transposed=True, out_pad=m.output_padding)


def _norm_fields(tr, path, op, weight, bias):
    if weight is not None:
        op["weight"] = tr.g.param(path, "weight", weight)
    if bias is not None:
        op["bias"] = tr.g.param(path, "bias", bias)
    return op


def _m_batch_norm(tr, m, path, x):
    x = tr.act(x)
    if m.running_mean is None:
        tr.fail("track_running_stats=False normalizes with each batch's own statistics, even in eval mode")
    op = _norm_fields(tr, path, {"op": "batch_norm"}, tr.weight(m, "weight"), tr.weight(m, "bias"))
    op.update(mean=tr.g.param(path, "running_mean", m.running_mean),
              var=tr.g.param(path, "running_var", m.running_var), eps=float(m.eps))
    return tr.emit(op, [x], m(x.t))


def _m_instance_norm(tr, m, path, x):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"InstanceNorm2d needs a [C, H, W] value, not {x.shape}")
    op = _norm_fields(tr, path, {"op": "instance_norm"}, tr.weight(m, "weight") if m.affine else None,
                      tr.weight(m, "bias") if m.affine else None)
    op["eps"] = float(m.eps)
    if m.track_running_stats:
        op.update(mean=tr.g.param(path, "running_mean", m.running_mean),
                  var=tr.g.param(path, "running_var", m.running_var))
    return tr.emit(op, [x], m(x.t))


def _m_group_norm(tr, m, path, x):
    x = tr.act(x)
    op = _norm_fields(tr, path, {"op": "group_norm", "groups": m.num_groups},
                      tr.weight(m, "weight") if m.affine else None, tr.weight(m, "bias") if m.affine else None)
    op["eps"] = float(m.eps)
    return tr.emit(op, [x], m(x.t))


def _m_layer_norm(tr, m, path, x):
    x = tr.act(x)
    op = {"op": "layer_norm", "normalized_shape": list(m.normalized_shape)}
    _norm_fields(tr, path, op, tr.weight(m, "weight") if m.elementwise_affine else None,
                 tr.weight(m, "bias") if m.elementwise_affine else None)
    op["eps"] = float(m.eps)
    return tr.emit(op, [x], m(x.t))


def _label(tr, x):
    if not isinstance(x, Act) or not x.label:
        tr.fail("an embedding's input must be the class label input ('label' in inputs)")


def _embedding(tr, path, x, weight, t):
    _label(tr, x)
    return tr.emit({"op": "embedding", "weight": tr.g.param(path, "weight", weight)}, [x], t)


def _m_embedding(tr, m, path, x):
    if m.max_norm is not None:
        tr.fail("max_norm renormalizes the weights at every forward; export a copy without it")
    _label(tr, x)
    return _embedding(tr, path, x, tr.weight(m, "weight"), m(x.t))


def _upsample(tr, x, size, scale_factor, mode, align_corners, t):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"2-d upsampling needs a [C, H, W] value, not {x.shape}")
    if mode not in ("nearest", "bilinear"):
        tr.fail(f"mode '{mode}' (gmserve has nearest and bilinear)")
    op = {"op": "upsample"}
    if size is not None:
        op["size"] = list(_pair(size))
    else:
        sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
        if any(float(s) != int(s) or s < 1 for s in sf):
            tr.fail(f"scale_factor {scale_factor} is not a whole number")
        op["scale_factor"] = _field(tuple(int(s) for s in sf))
    op["mode"] = mode
    if mode == "bilinear":
        op["align_corners"] = bool(align_corners)
    return tr.emit(op, [x], t)


def _m_upsample(tr, m, path, x):
    return _upsample(tr, x, m.size, m.scale_factor, m.mode, m.align_corners, m(x.t))


def _pad(tr, x, pad, mode, value, t):
    x = tr.act(x)
    pad = [int(p) for p in pad]
    if len(pad) == 2:
        pad += [0, 0]
    if len(pad) != 4 or len(x.shape) != 3:
        tr.fail(f"pads {pad} of a {x.shape} value; gmserve pads the last two dimensions of [C, H, W]")
    if any(p < 0 for p in pad):
        tr.fail(f"negative padding {pad} crops")
    modes = {"constant": "zero", "reflect": "reflect", "replicate": "replicate"}
    if mode not in modes:
        tr.fail(f"mode '{mode}' (zero, reflect and replicate padding exist)")
    op = {"op": "pad", "pad": pad, "mode": modes[mode]}
    if mode == "constant":
        op["value"] = float(value or 0.0)
    return tr.emit(op, [x], t)


def _m_pad(mode):
    def h(tr, m, path, x):
        return _pad(tr, x, m.padding, mode, getattr(m, "value", 0.0), m(x.t))
    return h


def _m_act(tr, m, path, x):
    return tr.emit({"op": ACT_MODULES[type(m)]}, [tr.act(x)], m(x.t))


def _m_leaky(tr, m, path, x):
    return tr.emit({"op": "leaky_relu", "slope": float(m.negative_slope)}, [tr.act(x)], m(x.t))


def _m_elu(tr, m, path, x):
    return tr.emit({"op": "elu", "alpha": float(m.alpha)}, [tr.act(x)], m(x.t))


def _m_gelu(tr, m, path, x):
    return tr.emit({"op": "gelu", "approximate": m.approximate}, [tr.act(x)], m(x.t))


def _m_softplus(tr, m, path, x):
    return tr.emit({"op": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)}, [tr.act(x)], m(x.t))


def _m_prelu(tr, m, path, x):
    return _prelu(tr, path, x, tr.weight(m, "weight"), m(x.t))


def _prelu(tr, path, x, w, t):
    x = tr.act(x)
    if w.numel() not in (1, x.shape[0] if x.shape else 1):
        tr.fail(f"PReLU weight of {w.numel()} values for a {x.shape} value")
    return tr.emit({"op": "prelu", "weight": tr.g.param(path, "weight", w.reshape(-1))}, [x], t)


def _m_hardtanh(tr, m, path, x):
    return tr.emit({"op": "hardtanh", "min": float(m.min_val), "max": float(m.max_val)}, [tr.act(x)], m(x.t))


def _softmax(tr, x, dim, t):
    x = tr.act(x)
    if dim is None:
        tr.fail("softmax without dim (PyTorch guesses one); give dim explicitly")
    return tr.emit({"op": "softmax", "dim": tr.per_sample_dim(x, dim)}, [x], t)


def _m_softmax(tr, m, path, x):
    return _softmax(tr, x, m.dim, m(x.t))


def _pool(tr, kind, x, kernel_size, stride, padding, dilation, ceil_mode, t, count_include_pad=True,
          divisor_override=None):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"2-d pooling needs a [C, H, W] value, not {x.shape}")
    if ceil_mode:
        tr.fail("ceil_mode=True")
    if _pair(dilation) != (1, 1):
        tr.fail("dilated pooling")
    if divisor_override is not None:
        tr.fail("divisor_override")
    k = _pair(kernel_size)
    op = {"op": kind, "kernel_size": _field(k), "stride": _field(_pair(stride) if stride else k),
          "padding": _field(_pair(padding))}
    if kind == "avg_pool2d":
        op["count_include_pad"] = bool(count_include_pad)
    return tr.emit(op, [x], t)


def _m_max_pool(tr, m, path, x):
    if m.return_indices:
        tr.fail("return_indices=True")
    return _pool(tr, "max_pool2d", x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m(x.t))


def _m_avg_pool(tr, m, path, x):
    return _pool(tr, "avg_pool2d", x, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, m(x.t),
                 m.count_include_pad, m.divisor_override)


def _m_pixel_shuffle(tr, m, path, x):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"pixel_shuffle needs a [C, H, W] value, not {x.shape}")
    return tr.emit({"op": "pixel_shuffle", "upscale_factor": int(m.upscale_factor)}, [x], m(x.t))


def _m_identity(tr, m, path, x, *args, **kwargs):
    return x


def _m_flatten(tr, m, path, x):
    x = tr.act(x)
    if m.start_dim % x.t.dim() == 0:
        tr.fail("flattens the batch dimension into the features (start_dim=0)")
    return tr.reshape(x, m(x.t))


def _m_unflatten(tr, m, path, x):
    x = tr.act(x)
    if m.dim % x.t.dim() == 0:
        tr.fail("unflattens the batch dimension")
    return tr.reshape(x, m(x.t))


MODULES = {
    nn.Linear: _m_linear, nn.Conv2d: _m_conv2d, nn.ConvTranspose2d: _m_conv_t2d,
    nn.BatchNorm1d: _m_batch_norm, nn.BatchNorm2d: _m_batch_norm, nn.InstanceNorm2d: _m_instance_norm,
    nn.GroupNorm: _m_group_norm, nn.LayerNorm: _m_layer_norm, nn.Embedding: _m_embedding,
    nn.Upsample: _m_upsample, nn.UpsamplingNearest2d: _m_upsample, nn.UpsamplingBilinear2d: _m_upsample,
    nn.ReflectionPad2d: _m_pad("reflect"), nn.ReplicationPad2d: _m_pad("replicate"),
    nn.ZeroPad2d: _m_pad("constant"), nn.ConstantPad2d: _m_pad("constant"),
    nn.ReLU: _m_act, nn.Sigmoid: _m_act, nn.Tanh: _m_act, nn.SiLU: _m_act, nn.LeakyReLU: _m_leaky,
    nn.ELU: _m_elu, nn.GELU: _m_gelu, nn.Softplus: _m_softplus, nn.PReLU: _m_prelu, nn.Hardtanh: _m_hardtanh,
    nn.ReLU6: _m_hardtanh, nn.Softmax: _m_softmax, nn.MaxPool2d: _m_max_pool, nn.AvgPool2d: _m_avg_pool,
    nn.PixelShuffle: _m_pixel_shuffle, nn.Identity: _m_identity, nn.Flatten: _m_flatten,
    nn.Unflatten: _m_unflatten,
}
MODULES.update({d: _m_identity for d in DROPOUT_MODULES})


# ---- functions and methods ----

def _f_linear(tr, x, weight, bias=None):
    x = tr.act(x)
    if len(x.shape) != 1:
        tr.fail(f"F.linear on a {x.shape} value acts on its last dimension; gmserve's linear takes vectors")
    w, b = tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias")
    return _linear(tr, tr.path(), x, w, b, F.linear(x.t, w, b))


def _f_conv2d(tr, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    w, b = tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias")
    return _conv(tr, tr.path(), x, w, b, stride, padding, dilation, groups, "zeros",
                 F.conv2d(tr.act(x).t, w, b, stride, padding, dilation, groups))


def _f_conv_t2d(tr, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    w, b = tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias")
    return _conv(tr, tr.path(), x, w, b, stride, padding, dilation, groups, "zeros",
                 F.conv_transpose2d(tr.act(x).t, w, b, stride, padding, output_padding, groups, dilation),
                 transposed=True, out_pad=output_padding)


def _f_batch_norm(tr, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                  eps=1e-5):
    x = tr.act(x)
    if training or running_mean is None:
        tr.fail("batch_norm with batch statistics (training=True or no running stats)")
    p = tr.path()
    op = _norm_fields(tr, p, {"op": "batch_norm"}, tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias"))
    op.update(mean=tr.g.param(p, "mean", tr.const_tensor(running_mean, "mean")),
              var=tr.g.param(p, "var", tr.const_tensor(running_var, "var")), eps=float(eps))
    return tr.emit(op, [x], F.batch_norm(x.t, running_mean, running_var, weight, bias, False, momentum, eps))


def _f_instance_norm(tr, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                     momentum=0.1, eps=1e-5):
    x = tr.act(x)
    if len(x.shape) != 3:
        tr.fail(f"instance_norm of a {x.shape} value (gmserve's is 2-d)")
    p = tr.path()
    op = _norm_fields(tr, p, {"op": "instance_norm"}, tr.const_tensor(weight, "weight"),
                      tr.const_tensor(bias, "bias"))
    op["eps"] = float(eps)
    if not use_input_stats:
        op.update(mean=tr.g.param(p, "mean", running_mean), var=tr.g.param(p, "var", running_var))
    return tr.emit(op, [x], F.instance_norm(x.t, running_mean, running_var, weight, bias, use_input_stats,
                                            momentum, eps))


def _f_group_norm(tr, x, num_groups, weight=None, bias=None, eps=1e-5):
    x = tr.act(x)
    op = _norm_fields(tr, tr.path(), {"op": "group_norm", "groups": int(num_groups)},
                      tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias"))
    op["eps"] = float(eps)
    return tr.emit(op, [x], F.group_norm(x.t, num_groups, weight, bias, eps))


def _f_layer_norm(tr, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = tr.act(x)
    op = {"op": "layer_norm", "normalized_shape": list(normalized_shape)}
    _norm_fields(tr, tr.path(), op, tr.const_tensor(weight, "weight"), tr.const_tensor(bias, "bias"))
    op["eps"] = float(eps)
    return tr.emit(op, [x], F.layer_norm(x.t, normalized_shape, weight, bias, eps))


def _f_embedding(tr, x, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                 sparse=False):
    if max_norm is not None:
        tr.fail("max_norm renormalizes the weights at every forward")
    w = tr.const_tensor(weight, "weight")
    _label(tr, x)
    return _embedding(tr, tr.path(), x, w, F.embedding(x.t, w))


def _f_one_hot(tr, x, num_classes=-1):
    """F.one_hot(label, C) is an embedding whose weight is the identity."""
    if not isinstance(x, Act) or not x.label or num_classes < 1:
        tr.fail("F.one_hot needs the class label input and an explicit num_classes")
    t = F.one_hot(x.t, num_classes)
    a = tr.emit({"op": "embedding", "weight": tr.g.param(tr.path(), "eye", torch.eye(num_classes))}, [x], t,
                onehot=True)
    return a


def _f_interpolate(tr, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                   recompute_scale_factor=None, antialias=False):
    if antialias:
        tr.fail("antialias=True")
    return _upsample(tr, x, size, scale_factor, mode, align_corners,
                     F.interpolate(tr.act(x).t, size, scale_factor, mode, align_corners, recompute_scale_factor))


def _f_pad(tr, x, pad, mode="constant", value=None):
    return _pad(tr, x, pad, mode, value, F.pad(tr.act(x).t, pad, mode, value))


def _f_act(kind, fn):
    def h(tr, x, inplace=False):
        x = tr.act(x)
        return tr.emit({"op": kind}, [x], fn(x.t))
    return h


def _f_leaky(tr, x, negative_slope=0.01, inplace=False):
    x = tr.act(x)
    return tr.emit({"op": "leaky_relu", "slope": float(negative_slope)}, [x], F.leaky_relu(x.t, negative_slope))


def _f_elu(tr, x, alpha=1.0, inplace=False):
    x = tr.act(x)
    return tr.emit({"op": "elu", "alpha": float(alpha)}, [x], F.elu(x.t, alpha))


def _f_gelu(tr, x, approximate="none"):
    x = tr.act(x)
    return tr.emit({"op": "gelu", "approximate": approximate}, [x], F.gelu(x.t, approximate=approximate))


def _f_softplus(tr, x, beta=1, threshold=20):
    x = tr.act(x)
    return tr.emit({"op": "softplus", "beta": float(beta), "threshold": float(threshold)}, [x],
                   F.softplus(x.t, beta, threshold))


def _f_hardtanh(tr, x, min_val=-1.0, max_val=1.0, inplace=False):
    x = tr.act(x)
    return tr.emit({"op": "hardtanh", "min": float(min_val), "max": float(max_val)}, [x],
                   F.hardtanh(x.t, min_val, max_val))


def _f_relu6(tr, x, inplace=False):
    return _f_hardtanh(tr, x, 0.0, 6.0)


def _f_clamp(tr, x, min=None, max=None):
    x = tr.act(x)
    if min is not None and max is not None:
        return _f_hardtanh(tr, x, min, max)
    if min == 0 and max is None:
        return tr.emit({"op": "relu"}, [x], torch.clamp(x.t, min=0))
    tr.fail("clamp with only one bound (other than min=0)")


def _f_prelu(tr, x, weight):
    w = tr.const_tensor(weight, "weight")
    return _prelu(tr, tr.path(), x, w, F.prelu(tr.act(x).t, w))


def _f_softmax(tr, x, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        tr.fail("softmax with a dtype")
    return _softmax(tr, x, dim, F.softmax(tr.act(x).t, dim))


def _f_dropout(tr, x, p=0.5, training=True, inplace=False):
    if training and p > 0:
        tr.fail("F.dropout(..., training=True) drops values at random even in eval mode; "
                "pass training=self.training")
    return x


def _f_max_pool(tr, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    if return_indices:
        tr.fail("return_indices=True")
    return _pool(tr, "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode,
                 F.max_pool2d(tr.act(x).t, kernel_size, stride, padding, dilation, ceil_mode))


def _f_avg_pool(tr, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    return _pool(tr, "avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode,
                 F.avg_pool2d(tr.act(x).t, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override), count_include_pad, divisor_override)


def _f_pixel_shuffle(tr, x, upscale_factor):
    x = tr.act(x)
    return tr.emit({"op": "pixel_shuffle", "upscale_factor": int(upscale_factor)}, [x],
                   F.pixel_shuffle(x.t, upscale_factor))


def _f_cat(tr, tensors, dim=0):
    xs = [tr.act(x, "inputs") for x in tensors]
    d = tr.per_sample_dim(xs[0], dim)
    t = torch.cat([x.t for x in xs], dim)
    if len(xs) == 1:
        return xs[0]
    return tr.emit({"op": "concat", "dim": d}, xs, t)


def _split(tr, x, pieces, dim):
    x = tr.act(x)
    d = tr.per_sample_dim(x, dim)
    vids = [tr.g.value(f"{tr.hint()}_{i}") for i in range(len(pieces))]
    tr.g.ops.append(({"op": "split", "sizes": [int(p.shape[d + 1]) for p in pieces], "dim": d}, [x.vid], vids))
    return tuple(Act(v, p) for v, p in zip(vids, pieces))


def _f_chunk(tr, x, chunks, dim=0):
    return _split(tr, x, torch.chunk(tr.act(x).t, chunks, dim), dim)


def _f_split(tr, x, split_size_or_sections, dim=0):
    return _split(tr, x, torch.split(tr.act(x).t, split_size_or_sections, dim), dim)


def _getitem(tr, x, idx):
    """h[:, :Z], h[..., :-1, :], e[:, :, None, None]: slices of dimensions
    after the batch (each a split), then the None entries as a reshape."""
    if isinstance(x, (tuple, list)):
        return x[idx]
    x = tr.act(x)
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(s is Ellipsis for s in idx):
        at = next(i for i, s in enumerate(idx) if s is Ellipsis)
        named = sum(1 for s in idx if s is not None and s is not Ellipsis)
        idx = idx[:at] + (slice(None),) * (x.t.dim() - named) + idx[at + 1:]
    plain = [s for s in idx if s is not None]
    if not idx or idx[0] is None or not plain or plain[0] != slice(None) or \
            not all(isinstance(s, slice) for s in plain):
        tr.fail("indexes an activation other than by slicing dimensions after the batch")
    if any(s.step not in (None, 1) for s in plain):
        tr.fail("slices with a step")
    want = x.t[idx]
    for d, s in enumerate(plain):
        if s == slice(None):
            continue
        n = x.t.shape[d]
        a, b, _ = s.indices(n)
        b = max(a, b)
        sizes = [v for v in (a, b - a, n - b) if v > 0]
        pieces = _split(tr, x, torch.split(x.t, sizes, d), d)
        x = pieces[0 if a == 0 else 1]
    return x if x.t.shape == want.shape else tr.reshape(x, want)


def _arith(kind):
    def h(tr, a, b, alpha=1, rounding_mode=None):
        if alpha != 1 or rounding_mode is not None:
            tr.fail("alpha / rounding_mode")
        ta, tb = tr.real(a), tr.real(b)
        t = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}[kind](ta, tb)
        if isinstance(a, Act) and isinstance(b, Act):
            if kind == "add" or kind == "mul":
                return tr.binary(kind, a, b, t)
            if kind == "sub":
                neg = tr.affine(b, -1.0, 0.0, -b.t)
                return tr.binary("add", a, neg, t)
            tr.fail("divides by an activation")
        x, c = (a, b) if isinstance(a, Act) else (b, a)
        if isinstance(c, torch.Tensor) and c.dtype != torch.float32 and c.is_floating_point():
            c = c.float()
        if kind == "add":
            return tr.affine(x, 1.0, c, t)
        if kind == "mul":
            return tr.affine(x, c, 0.0, t)
        if kind == "sub":
            return tr.affine(x, 1.0, -c, t) if x is a else tr.affine(x, -1.0, c, t)
        if x is b:
            tr.fail("divides by an activation")
        return tr.affine(x, 1.0 / torch.as_tensor(c, dtype=torch.float64), 0.0, t)
    return h


def _f_neg(tr, x):
    return tr.affine(x, -1.0, 0.0, -tr.act(x).t)


def _shape(tr, x):
    x = _any_act(tr, x)
    return (BATCH,) + tuple(x.t.shape[1:])


def _any_act(tr, x):
    if not isinstance(x, Act):
        tr.fail("expects an activation")
    return x


def _m_size(tr, x, dim=None):
    s = _shape(tr, x)
    return s if dim is None else s[dim]


def _m_dim(tr, x):
    return _any_act(tr, x).t.dim()


def _f_getattr(tr, x, name):
    if name == "shape":
        return _shape(tr, x)
    if name in ("dtype", "device"):
        return getattr(_any_act(tr, x).t, name)
    tr.fail(f"reads .{name} of an activation")


def _view_args(tr, x, shape):
    shape = list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else list(shape)
    if not shape or not (shape[0] is BATCH or shape[0] == -1):
        tr.fail("reshapes without keeping the batch dimension first (use x.size(0) or -1 there)")
    rest = shape[1:]
    if any(s is BATCH for s in rest):
        tr.fail("puts the batch size after the first dimension")
    if shape[0] == -1 and (-1 in rest or math.prod(rest) != math.prod(x.shape)):
        tr.fail("reshapes with -1 in front where the batch dimension would change")
    return [tr.P if s is BATCH else s for s in shape]


def _m_view(tr, x, *shape):
    x = _any_act(tr, x)
    return tr.reshape(x, x.t.reshape(_view_args(tr, x, shape)))


def _f_reshape(tr, x, shape):
    return _m_view(tr, x, shape)


def _m_view_as(tr, x, other):
    return tr.reshape(_any_act(tr, x), _any_act(tr, x).t.reshape(tr.real(other).shape))


def _f_flatten(tr, x, start_dim=0, end_dim=-1):
    x = tr.act(x)
    if start_dim % x.t.dim() == 0:
        tr.fail("flattens the batch dimension into the features (start_dim=0)")
    return tr.reshape(x, torch.flatten(x.t, start_dim, end_dim))


def _m_unsqueeze(tr, x, dim):
    x = tr.act(x)
    if dim % (x.t.dim() + 1) == 0:
        tr.fail("unsqueezes before the batch dimension")
    return tr.reshape(x, x.t.unsqueeze(dim))


def _m_squeeze(tr, x, dim=None):
    x = tr.act(x)
    if dim is not None and dim % x.t.dim() == 0:
        tr.fail("squeezes the batch dimension")
    t = x.t.squeeze() if dim is None else x.t.squeeze(dim)
    if dim is None:
        t = x.t.reshape([tr.P] + [s for s in x.shape if s != 1])
    return tr.reshape(x, t)


def _expand_to(tr, x, t):
    x = tr.act(x)
    shape = list(t.shape[1:])
    if x.shape == shape:
        return x
    if len(shape) != 3 or x.shape != [shape[0], 1, 1]:
        tr.fail(f"expands a {x.shape} value to {shape}; gmserve expands a [C, 1, 1] vector to a [C, H, W] map")
    return tr.emit({"op": "expand", "shape": shape}, [x], t)


def _m_expand(tr, x, *sizes):
    x = tr.act(x)
    sizes = list(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)) else list(sizes)
    if not sizes or not (sizes[0] is BATCH or sizes[0] == -1):
        tr.fail("expands without keeping the batch dimension (use -1 or x.size(0) first)")
    return _expand_to(tr, x, x.t.expand([tr.P if s is BATCH else s for s in sizes]))


def _m_expand_as(tr, x, other):
    return _expand_to(tr, x, tr.act(x).t.expand_as(tr.real(other)))


def _m_repeat(tr, x, *reps):
    x = tr.act(x)
    reps = list(reps[0]) if len(reps) == 1 and isinstance(reps[0], (list, tuple)) else list(reps)
    if len(reps) != x.t.dim() or reps[0] != 1:
        tr.fail("repeats along the batch dimension")
    return _expand_to(tr, x, x.t.repeat(reps))


def _m_cast(tr, x, *args, **kwargs):
    """float() / long() / to(dtype): the graph computes in float with labels
    as integers, so a cast is a no-op when it changes no value."""
    x = _any_act(tr, x)
    name = tr.node.target
    if name == "to":
        t = x.t.to(*args, **kwargs)
    elif name == "type_as":
        t = x.t.type_as(_real(args[0], tr.P))
    elif name == "type":
        t = x.t.type(*args, **kwargs)
    else:
        t = getattr(x.t, name)()
    ok = torch.equal(t.double(), x.t.double()) and (
        t.dtype == torch.float32 or (x.label and not t.is_floating_point()) or
        (x.onehot and not t.is_floating_point()))
    if not ok:
        tr.fail(f"converts {x.t.dtype} to {t.dtype}, which changes values the graph computes in float32")
    return Act(x.vid, t, label=x.label, onehot=x.onehot and not t.is_floating_point())


def _identity(tr, x, *args, **kwargs):
    return x


FUNCTIONS = {
    F.linear: _f_linear, F.conv2d: _f_conv2d, F.conv_transpose2d: _f_conv_t2d, F.batch_norm: _f_batch_norm,
    F.instance_norm: _f_instance_norm, F.group_norm: _f_group_norm, F.layer_norm: _f_layer_norm,
    F.embedding: _f_embedding, F.one_hot: _f_one_hot, F.interpolate: _f_interpolate, F.upsample: _f_interpolate,
    F.pad: _f_pad,
    F.relu: _f_act("relu", torch.relu), torch.relu: _f_act("relu", torch.relu), F.relu_: _f_act("relu", torch.relu),
    torch.sigmoid: _f_act("sigmoid", torch.sigmoid), F.sigmoid: _f_act("sigmoid", torch.sigmoid),
    torch.tanh: _f_act("tanh", torch.tanh), F.tanh: _f_act("tanh", torch.tanh), F.silu: _f_act("silu", F.silu),
    F.leaky_relu: _f_leaky, F.elu: _f_elu, F.gelu: _f_gelu, F.softplus: _f_softplus, F.hardtanh: _f_hardtanh,
    F.relu6: _f_relu6, torch.clamp: _f_clamp, torch.clip: _f_clamp, F.prelu: _f_prelu, torch.prelu: _f_prelu,
    F.softmax: _f_softmax, torch.softmax: _f_softmax,
    F.dropout: _f_dropout, F.dropout2d: _f_dropout, F.alpha_dropout: _f_dropout, torch.dropout: _f_dropout,
    F.max_pool2d: _f_max_pool, F.avg_pool2d: _f_avg_pool, F.pixel_shuffle: _f_pixel_shuffle,
    torch.pixel_shuffle: _f_pixel_shuffle,
    torch.cat: _f_cat, torch.concat: _f_cat, torch.chunk: _f_chunk, torch.split: _f_split,
    torch.flatten: _f_flatten, torch.reshape: _f_reshape, torch.squeeze: _m_squeeze, torch.unsqueeze: _m_unsqueeze,
    operator.getitem: _getitem, getattr: _f_getattr,
    operator.add: _arith("add"), operator.iadd: _arith("add"), torch.add: _arith("add"),
    operator.sub: _arith("sub"), operator.isub: _arith("sub"), torch.sub: _arith("sub"),
    operator.mul: _arith("mul"), operator.imul: _arith("mul"), torch.mul: _arith("mul"),
    operator.truediv: _arith("div"), operator.itruediv: _arith("div"), torch.div: _arith("div"),
    operator.neg: _f_neg, torch.neg: _f_neg,
}

METHODS = {
    "size": _m_size, "dim": _m_dim, "view": _m_view, "reshape": _m_view, "view_as": _m_view_as,
    "flatten": _f_flatten, "unsqueeze": _m_unsqueeze, "squeeze": _m_squeeze, "expand": _m_expand,
    "expand_as": _m_expand_as, "repeat": _m_repeat, "contiguous": _identity, "detach": _identity,
    "clone": _identity, "float": _m_cast, "type_as": _m_cast, "long": _m_cast, "int": _m_cast, "to": _m_cast, "type": _m_cast,
    "relu": _f_act("relu", torch.relu), "relu_": _f_act("relu", torch.relu),
    "sigmoid": _f_act("sigmoid", torch.sigmoid), "sigmoid_": _f_act("sigmoid", torch.sigmoid),
    "tanh": _f_act("tanh", torch.tanh), "tanh_": _f_act("tanh", torch.tanh),
    "clamp": _f_clamp, "clamp_": _f_clamp, "clip": _f_clamp, "softmax": _f_softmax,
    "chunk": _f_chunk, "split": _f_split,
    "add": _arith("add"), "add_": _arith("add"), "sub": _arith("sub"), "sub_": _arith("sub"),
    "mul": _arith("mul"), "mul_": _arith("mul"), "div": _arith("div"), "div_": _arith("div"),
    "neg": _f_neg,
}


# ---- from emitted ops to the file's JSON ----

def _finish(g, out, input_names):
    """Drops ops the output does not need, names the values that ops refer
    to explicitly, and returns the JSON op list."""
    needed, keep = {out.vid}, []
    for fields, ins, outs in reversed(g.ops):
        if needed & set(outs):
            needed |= set(ins)
            keep.append((fields, ins, outs))
    keep.reverse()
    if not keep or out.vid not in keep[-1][2]:
        raise ExportError(g.net, "the network's output is one of its inputs, not computed by any op")
    if keep[-1][0]["op"] == "split":
        raise ExportError(g.net, "the network ends in a slice or split; its output must be a whole value")
    explicit = []
    prev = input_names[0]
    for fields, ins, outs in keep:
        explicit.append(ins != [prev])
        prev = outs[0] if len(outs) == 1 else None
    referenced = {v for (f, ins, o), e in zip(keep, explicit) if e for v in ins}
    names, used = {}, set(input_names)

    def name_of(vid):
        if not vid.startswith("%"):
            return vid
        if vid not in names:
            base = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in g.hints[vid]) or "v"
            n, i = base, 1
            while n in used:
                n, i = f"{base}_{i}", i + 1
            used.add(n)
            names[vid] = n
        return names[vid]

    ops = []
    for (fields, ins, outs), e in zip(keep, explicit):
        op = dict(fields)
        if e:
            op["inputs"] = [name_of(v) for v in ins]
        if fields["op"] == "split":
            op["names"] = [name_of(v) for v in outs]
        elif outs[0] in referenced:
            op["name"] = name_of(outs[0])
        ops.append(op)
    tensors = {k: v for k, v in g.tensors.items() if any(k in op.values() for op in ops)}
    return ops, tensors


def export_network(net, module, inputs, tuple_output=False):
    """Traces `module` (already in eval mode) on `inputs`, [(name, tensor
    [P, ...])] in forward() order (a z, onehot or code given as [P, n, 1, 1]
    is a vector input [n] that the graph reshapes first). Returns (ops, tensors, out): the layer
    graph, the tensors it names and PyTorch's own output for the inputs
    ([P, ...]; a tuple output, when allowed, flattened and concatenated, as
    the graph computes it)."""
    tr = Translator(net, module, inputs)
    with torch.no_grad():
        # forward() runs once before the walk reads any weight: a forward that
        # updates its own parameters in place (`self.weight.data *= self.mask`,
        # the common masked convolution) has then done so, and the graph reads
        # the weights every later call computes with. fx never sees such an
        # update; a forward that changes from call to call fails the comparison.
        # One that fails on the probes is left to the walk, which says why in
        # the exporter's terms (a label fed as floats, an op without a
        # translation), or to the comparison's own call of forward().
        try:
            module(*[t for _, t in inputs])
        except Exception:  # noqa: BLE001  (reported below, in context)
            pass
        traced = tr.run()
        want = module(*[t for _, t in inputs])
    if isinstance(traced, (tuple, list)):
        if not tuple_output or not all(isinstance(v, Act) for v in traced):
            raise ExportError(net, f"forward() returns a {type(traced).__name__}; one tensor is needed")
        tr.node = list(tr.fx.nodes)[-1]
        parts = [tr.reshape(v, v.t.reshape(tr.P, -1)) for v in traced]
        want = torch.cat([w.reshape(tr.P, -1) for w in want], 1)
        traced = tr.g.emit({"op": "concat", "dim": 0}, parts, torch.cat([p.t for p in parts], 1), "output")
    if not isinstance(traced, Act):
        raise ExportError(net, "forward() does not return a tensor computed from its inputs")
    got = traced.t.float()
    scale = max(1.0, float(want.abs().max()))
    if got.shape != want.shape or not torch.allclose(got, want.float(), rtol=0, atol=1e-6 * scale):
        raise ExportError(net, "tracing does not reproduce the module's own forward() (Python-side state or "
                               "in-place updates that fx cannot see)")
    ops, tensors = _finish(tr.g, traced, [n for n, _ in inputs])
    if tr.tracer.batch_as_int and not _same_graph_at_batch_one(net, module, inputs, ops):
        raise ExportError(net, "builds the batch size into the graph (int(x.size(0)) used where the batch "
                               "varies); pass x.size(0) itself to view/reshape, or -1")
    return ops, tensors, want.float()


def _same_graph_at_batch_one(net, module, inputs, ops):
    """int(x.size(0)) makes a plain number of the probes' batch size, which
    is harmless when nothing the graph computes depends on it (PixelCNN++'s
    `xs = [int(y) for y in x.size()]`, then only xs[2] used): the graph
    traced from one probe alone is then the same."""
    try:
        tr = Translator(net, module, [(n, t[:1]) for n, t in inputs])
        with torch.no_grad():
            traced = tr.run()
        return isinstance(traced, Act) and _finish(tr.g, traced, [n for n, _ in inputs])[0] == ops
    except ExportError:  # what the batch size changed does not even export at batch 1
        return False


class _Method1(nn.Module):
    def forward(self, a):
        return getattr(self.module, self.method)(a)


class _Method2(nn.Module):
    def forward(self, a, b):
        return getattr(self.module, self.method)(a, b)


class _Method3(nn.Module):
    def forward(self, a, b, c):
        return getattr(self.module, self.method)(a, b, c)


def method(module, name):
    """A module whose forward is `module.<name>` (vae.encode, vae.decode),
    for exporting a part of a model whose own forward() does more."""
    fn = getattr(module, name)
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is inspect.Parameter.empty]
    classes = {1: _Method1, 2: _Method2, 3: _Method3}
    if len(params) not in classes:
        raise ExportError(f"{type(module).__name__}.{name}", f"takes {len(params)} inputs (1 to 3 can be wrapped)")
    m = classes[len(params)]()
    m.module, m.method = module, name
    return m
