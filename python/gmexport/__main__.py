"""The command line: export the modules defined in a Python file.

    python3 -m gmexport vae vae.safetensors --from model.py --encoder vae:encode --decoder vae:decode \\
        --image 28x28x1 --latent-dim 20 --weights vae=vae.pt
    python3 -m gmexport aae aae.safetensors --from model.py --encoder Encoder:mean_logvar --decoder Decoder \\
        --image 28x28x1 --latent-dim 10 --encoder-head gaussian --output tanh
    python3 -m gmexport aae aae.safetensors --from model.py --encoder Encoder --decoder Decoder \\
        --image 28x28x1 --latent-dim 2 --prior mixture --prior-means means.pt --prior-stds 0.5 --class-names a,b,c
    python3 -m gmexport gan gan.safetensors --from model.py --generator Generator \\
        --image 28x28x1 --latent-dim 100 --inputs z,label --num-classes 10 --weights Generator=G.pt
    python3 -m gmexport translator cyclegan.safetensors --from model.py --generator G_AB --reverse G_BA \\
        --image 28x28x1 --domains sneaker,ankle_boot

A module is named NAME[.ATTR...][:METHOD]: NAME is an nn.Module in the file,
or a class or function that builds one when called with no arguments (once,
so that vae:encode and vae:decode share one model); .ATTR picks a submodule,
:METHOD exports that method instead of forward(). --weights NAME=PATH loads
a state_dict saved with torch.save into NAME before exporting. An AAE's
mixture prior reads its means [K, Z] (and stds [K] or [K, Z], or one number
for every component) from tensors saved with torch.save.
"""
import argparse
import importlib.util
import os
import pickle
import sys
import time

import torch
from torch import nn

from .errors import ExportError
from .families import save_aae, save_gan, save_translator, save_vae
from .trace import method


class _Resolver:
    def __init__(self, path):
        spec = importlib.util.spec_from_file_location("gmexport_user_model", path)
        if spec is None:
            raise ExportError(path, "is not a Python file")
        self.mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        spec.loader.exec_module(self.mod)
        self.path = path
        self.built = {}

    def root(self, name):
        if name not in self.built:
            obj = getattr(self.mod, name, None)
            if obj is None:
                raise ExportError(self.path, f"defines no {name!r}")
            if not isinstance(obj, nn.Module):
                try:
                    obj = obj()
                except TypeError as e:
                    raise ExportError(f"{self.path}:{name}", f"cannot be built with no arguments ({e}); "
                                                             "add a factory function to the file") from e
            if not isinstance(obj, nn.Module):
                raise ExportError(f"{self.path}:{name}", "is not an nn.Module nor builds one with no arguments")
            self.built[name] = obj
        return self.built[name]

    def __call__(self, spec):
        if spec is None:
            return None
        spec, _, meth = spec.partition(":")
        name, *attrs = spec.split(".")
        obj = self.root(name)
        for a in attrs:
            obj = getattr(obj, a)
        return method(obj, meth) if meth else obj

    def load_weights(self, items):
        for item in items:
            name, sep, path = item.partition("=")
            if not sep:
                raise ExportError("--weights", f"{item!r} is not NAME=PATH")
            try:
                state = torch.load(path, map_location="cpu")
                if isinstance(state, nn.Module):  # torch.save(model) rather than its state_dict
                    state = state.state_dict()
                if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                    state = state["state_dict"]
                self.root(name).load_state_dict(state)
            except (OSError, RuntimeError, pickle.UnpicklingError) as e:
                raise ExportError(f"--weights {item}", str(e).splitlines()[0]) from e


def _meta(items):
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise ExportError("--meta", f"{item!r} is not KEY=VALUE")
        out[k] = v
    return out


def _tensor_file(flag, path):
    """The tensor torch.save wrote to path (None: none given)."""
    if path is None:
        return None
    try:
        t = torch.load(path, map_location="cpu")
    except (OSError, RuntimeError, pickle.UnpicklingError) as e:
        raise ExportError(f"{flag} {path}", str(e).splitlines()[0]) from e
    if not isinstance(t, torch.Tensor):
        raise ExportError(f"{flag} {path}", f"holds a {type(t).__name__}, not a tensor")
    return t


def _stds(value):
    """--prior-stds: one std for every component, or a tensor file."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return _tensor_file("--prior-stds", value)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m gmexport", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="family", required=True)
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("out", help="the model file to write (.safetensors)")
    base.add_argument("--from", dest="source", required=True, help="the Python file defining the modules")
    base.add_argument("--image", required=True, help="HxWxC, e.g. 28x28x1")
    base.add_argument("--weights", action="append", default=[], metavar="NAME=PATH")
    base.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                      help="extra metadata, e.g. gm.description=...")
    common = argparse.ArgumentParser(add_help=False, parents=[base])
    common.add_argument("--latent-dim", type=int, required=True)
    v = sub.add_parser("vae", parents=[common], help="a VAE: encoder and decoder")
    v.add_argument("--encoder", required=True)
    v.add_argument("--decoder", required=True)
    v.add_argument("--input", default="binary", choices=["binary", "gray"])
    v.add_argument("--likelihood", default="bernoulli")
    v.add_argument("--likelihood-scale", help="gaussian: a fixed sigma, or 'learned'")
    g = sub.add_parser("gan", parents=[common], help="a GAN generator, optionally its discriminator and encoder")
    g.add_argument("--generator", required=True)
    g.add_argument("--discriminator")
    g.add_argument("--encoder")
    g.add_argument("--inputs", default="z", help="forward()'s inputs in order, from z, label, onehot, code")
    g.add_argument("--num-classes", type=int, default=0)
    g.add_argument("--class-names", help="comma-separated")
    g.add_argument("--code-dim", type=int, default=0)
    g.add_argument("--output", default="tanh", choices=["tanh", "sigmoid"])
    e = sub.add_parser("aae", parents=[common], help="an adversarial autoencoder: encoder and decoder")
    e.add_argument("--encoder", required=True)
    e.add_argument("--decoder", required=True)
    e.add_argument("--encoder-head", default="point", choices=["point", "gaussian"])
    e.add_argument("--output", default="sigmoid", choices=["sigmoid", "tanh"])
    e.add_argument("--prior", default="normal", choices=["normal", "mixture"])
    e.add_argument("--prior-means", metavar="PATH", help="mixture: a [K, Z] tensor saved with torch.save")
    e.add_argument("--prior-stds", metavar="PATH|STD", help="mixture: a [K] or [K, Z] tensor file, or one std")
    e.add_argument("--class-names", help="mixture: the K components' names, comma-separated")
    t = sub.add_parser("translator", parents=[base], help="an image-to-image translator (StarGAN, CycleGAN)")
    t.add_argument("--generator", required=True)
    t.add_argument("--reverse", help="the generator of the other direction (CycleGAN's B -> A)")
    t.add_argument("--domains", help="A,B: the two domains' names (with --reverse)")
    t.add_argument("--inputs", default="image", help="forward()'s inputs in order, from image, label, onehot")
    t.add_argument("--num-classes", type=int, default=0)
    t.add_argument("--class-names", help="comma-separated")
    t.add_argument("--output", default="tanh", choices=["tanh", "sigmoid"])
    a = ap.parse_args(argv)
    t = time.perf_counter()
    try:
        r = _Resolver(a.source)
        r.load_weights(a.weights)
        meta = _meta(a.meta)
        if a.family == "vae":
            scale = a.likelihood_scale
            if scale is not None and scale != "learned":
                scale = float(scale)
            save_vae(a.out, r(a.encoder), r(a.decoder), image=a.image, latent_dim=a.latent_dim, input=a.input,
                     likelihood=a.likelihood, likelihood_scale=scale, metadata=meta)
        elif a.family == "translator":
            save_translator(a.out, r(a.generator), image=a.image, inputs=tuple(x.strip() for x in a.inputs.split(",")),
                            num_classes=a.num_classes,
                            class_names=a.class_names.split(",") if a.class_names else None, output=a.output,
                            reverse=r(a.reverse), domains=tuple(a.domains.split(",")) if a.domains else None,
                            metadata=meta)
        elif a.family == "aae":
            save_aae(a.out, r(a.encoder), r(a.decoder), image=a.image, latent_dim=a.latent_dim,
                     encoder_head=a.encoder_head, output=a.output, prior=a.prior,
                     prior_means=_tensor_file("--prior-means", a.prior_means),
                     prior_stds=_stds(a.prior_stds), class_names=a.class_names.split(",")
                     if a.class_names else None, metadata=meta)
        else:
            names = a.class_names.split(",") if a.class_names else None
            save_gan(a.out, r(a.generator), image=a.image, latent_dim=a.latent_dim,
                     inputs=tuple(s.strip() for s in a.inputs.split(",")), num_classes=a.num_classes,
                     class_names=names, code_dim=a.code_dim, output=a.output,
                     discriminator=r(a.discriminator), encoder=r(a.encoder), metadata=meta)
    except ExportError as e:
        print(f"gmexport: {e}", file=sys.stderr)
        return 1
    print(f"gmexport: wrote {a.out} ({a.family}, {os.path.getsize(a.out)} bytes) in "
          f"{(time.perf_counter() - t) * 1000:.0f} ms; check it with: gmserve check {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
