"""families.py - one gmserve model file per call: save_vae, save_gan,
save_aae, save_nade, save_pixelcnn, save_pixelrnn, save_translator.

Each network is traced into a layer graph (trace.py) and stored as the JSON
text of a metadata key (gm.encoder, gm.decoder, gm.generator, ...), with
its tensors. Each file also carries, per network, probe inputs and the
outputs PyTorch computed for them ("gm.probe.<net>.in.<input>",
"gm.probe.<net>.out"), so that the server can refuse a file whose graph
does not compute what the module computed.
"""
import contextlib
import json

import torch

from . import safetensors
from .errors import ExportError
from .trace import export_network

PROBES = 4
SEED = 1234
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian", "discretized_gaussian", "categorical256")
GAN_INPUTS = ("z", "label", "onehot", "code", "cat")
TRANSLATOR_INPUTS = ("image", "label", "onehot")
DIRECTIONS = ("forward", "reverse")


def parse_image(image):
    """"HxWxC" (or (H, W, C)) -> (H, W, C)."""
    try:
        h, w, c = (int(v) for v in (image.split("x") if isinstance(image, str) else image))
    except (ValueError, AttributeError) as e:
        raise ExportError("image", f"{image!r} is not \"HxWxC\" (e.g. \"28x28x1\")") from e
    if min(h, w, c) < 1 or c > 4:
        raise ExportError("image", f"{image!r}: sides must be positive and C in 1..4")
    return h, w, c


class _Writer:
    """Collects the networks, tensors and metadata of one file."""

    def __init__(self, family, image, metadata):
        self.h, self.w, self.c = parse_image(image)
        self.D = self.h * self.w * self.c
        self.meta = {"gm.format": "1", "gm.family": family, "gm.image": f"{self.h}x{self.w}x{self.c}"}
        self.user = dict(metadata or {})
        self.tensors = {}
        self.gen = torch.Generator().manual_seed(SEED)

    def images(self, kind):
        shape = (PROBES, self.c, self.h, self.w)
        u = torch.rand(shape, generator=self.gen)
        return {"binary": (u < 0.5).float(), "gray": u, "tanh": u * 2 - 1}[kind]

    def network(self, net, module, inputs, defaults, out_size=None, tuple_output=False):
        """inputs: [(name, tensor [P, ...])] in forward() order."""
        if module is None:
            raise ExportError(net, "no module given")
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.is_floating_point() and (t.dtype != torch.float32 or t.device.type != "cpu"):
                raise ExportError(f"{net}.{name}", f"is {t.dtype} on {t.device}; export a float32 copy on the "
                                                   "CPU (module.float().cpu())")
        with _eval(module):
            ops, tensors, out = export_network(net, module, inputs, tuple_output)
        if out_size is not None and out[0].numel() not in ([out_size] if isinstance(out_size, int) else out_size):
            raise ExportError(net, f"forward() gives {out[0].numel()} values per sample; {out_size} are needed")
        clash = set(tensors) & set(self.tensors)
        if clash:
            raise ExportError(net, f"tensor names {sorted(clash)} already used by another network")
        self.tensors.update(tensors)
        self.meta[f"gm.{net}"] = json.dumps(ops, separators=(",", ":"))
        names = [n for n, _ in inputs]
        if names != defaults:
            self.meta[f"gm.{net}_inputs"] = json.dumps(names)
        for name, t in inputs:
            t = t.reshape(t.shape[0], -1) if name in ("z", "onehot", "code") else t
            self.tensors[f"gm.probe.{net}.in.{name}"] = t.to(torch.float32).contiguous()
        self.tensors[f"gm.probe.{net}.out"] = out.contiguous()
        return ops

    def classes(self, C, class_names):
        """gm.num_classes and gm.class_names of a model with C > 0 classes."""
        if not C:
            if class_names is not None:
                raise ExportError("class_names", "given for a model without classes (num_classes=0)")
            return
        self.meta["gm.num_classes"] = str(C)
        if class_names is not None:
            if len(class_names) != C:
                raise ExportError("class_names", f"{len(class_names)} names for {C} classes")
            self.meta["gm.class_names"] = json.dumps(list(class_names))

    def save(self, path):
        for k, v in self.user.items():
            if k in self.meta:
                raise ExportError("metadata", f"key {k!r} is written by the exporter itself")
            self.meta[k] = v if isinstance(v, str) else json.dumps(v)
        safetensors.write(path, self.tensors, self.meta)


def _last_op(ops):
    """The last op that changes values (reshape/flatten only move them)."""
    for op in reversed(ops):
        if op["op"] not in ("reshape", "flatten"):
            return op["op"]
    return None


def save_vae(path, encoder, decoder, image="28x28x1", latent_dim=None, input="binary", likelihood="bernoulli",
             likelihood_scale=None, metadata=None):
    """A VAE: encoder(x [B, C, H, W]) -> [B, 2Z] or (mean, logvar);
    decoder(z [B, Z]) -> D values (2*D for a gaussian with a learned scale:
    means, then log-sigmas), logits or, when it ends in a sigmoid,
    probabilities (recorded in gm.decoder_output, so that the server never
    applies a sigmoid twice). input: "binary" (images binarized at 0.5, as
    the server does by default) or "gray" (pixels in [0, 1] unchanged)."""
    w = _Writer("vae", image, metadata)
    Z = _positive(latent_dim, "latent_dim")
    if input not in ("binary", "gray"):
        raise ExportError("input", f"{input!r} must be 'binary' or 'gray'")
    if likelihood not in LIKELIHOODS:
        raise ExportError("likelihood", f"{likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
    outs = [w.D]
    if likelihood == "gaussian":
        if likelihood_scale == "learned":
            outs = [2 * w.D]
        elif not (isinstance(likelihood_scale, (int, float)) and likelihood_scale > 0):
            raise ExportError("likelihood_scale", "a gaussian likelihood needs a fixed sigma > 0 or \"learned\"")
        w.meta["gm.likelihood_scale"] = str(likelihood_scale) if likelihood_scale == "learned" else \
            repr(float(likelihood_scale))
    elif likelihood_scale is not None:
        raise ExportError("likelihood_scale", f"only a gaussian likelihood has a scale (this is {likelihood})")
    w.meta.update({"gm.latent_dim": str(Z), "gm.input": input, "gm.likelihood": likelihood})
    w.network("encoder", encoder, [("image", w.images(input))], ["image"], 2 * Z, tuple_output=True)
    z = torch.randn(PROBES, Z, generator=w.gen)
    dec = w.network("decoder", decoder, [("z", z)], ["z"], outs)
    w.meta["gm.decoder_output"] = "probabilities" if _last_op(dec) == "sigmoid" else "logits"
    w.save(path)


def save_gan(path, generator, image="28x28x1", latent_dim=None, inputs=("z",), num_classes=0, class_names=None,
             code_dim=0, cat_dim=0, output="tanh", discriminator=None, encoder=None, q_network=None,
             metadata=None):
    """A GAN generator, forward(*inputs) -> an image of D values ending in
    tanh (output="tanh": [-1, 1]) or sigmoid (output="sigmoid": [0, 1]).
    inputs names forward()'s arguments in order: "z" [B, Z], "label" [B]
    int64, "onehot" [B, C], "code" [B, code_dim], "cat" [B, cat_dim] (one-hot:
    InfoGAN's categorical code). A conditional generator
    declared with inputs=("z",) takes z and the one-hot label concatenated,
    [B, Z + C], as the server has always fed it. The optional discriminator
    (image -> 1 logit) and encoder (image -> Z) see images in the
    generator's range, as does the optional q_network (InfoGAN's Q: image ->
    cat_dim logits followed by code_dim values)."""
    w = _Writer("gan", image, metadata)
    Z = _positive(latent_dim, "latent_dim")
    inputs = tuple(inputs)
    bad = [n for n in inputs if n not in GAN_INPUTS]
    if bad or len(set(inputs)) != len(inputs) or "z" not in inputs:
        raise ExportError("inputs", f"{inputs} must name each of 'z' (required), 'label', 'onehot', 'code', "
                                    "'cat' at most once, in forward() order")
    C = int(num_classes)
    legacy = C > 0 and inputs == ("z",)
    if C < 0 or (("label" in inputs or "onehot" in inputs) and C == 0):
        raise ExportError("num_classes", f"{num_classes} with inputs {inputs}")
    if "label" in inputs and "onehot" in inputs:
        raise ExportError("inputs", "a generator takes the class as 'label' or as 'onehot', not both")
    if (code_dim > 0) != ("code" in inputs):
        raise ExportError("code_dim", f"{code_dim} with inputs {inputs}: 'code' and code_dim > 0 go together")
    if (cat_dim > 0) != ("cat" in inputs):
        raise ExportError("cat_dim", f"{cat_dim} with inputs {inputs}: 'cat' and cat_dim > 0 go together")
    if q_network is not None and not (code_dim or cat_dim):
        raise ExportError("q_network", "predicts InfoGAN's codes; the generator takes no 'code' or 'cat'")
    if output not in ("tanh", "sigmoid"):
        raise ExportError("output", f"{output!r} must be 'tanh' or 'sigmoid'")
    w.meta["gm.latent_dim"] = str(Z)
    w.classes(C, class_names)
    if code_dim:
        w.meta["gm.code_dim"] = str(int(code_dim))
    if cat_dim:
        w.meta["gm.cat_dim"] = str(int(cat_dim))
    w.meta["gm.output"] = output
    w.meta["gm.generator_output"] = "tanh" if output == "tanh" else "probabilities"
    label = torch.randint(0, max(C, 1), (PROBES,), generator=w.gen)
    onehot = torch.nn.functional.one_hot(label, max(C, 1)).float()
    probe = {"z": torch.randn(PROBES, Z, generator=w.gen), "label": label, "onehot": onehot,
             "code": torch.rand(PROBES, max(code_dim, 1), generator=w.gen) * 2 - 1,
             "cat": torch.nn.functional.one_hot(torch.randint(0, max(cat_dim, 1), (PROBES,), generator=w.gen),
                                                max(cat_dim, 1)).float()}
    if legacy:
        probe["z"] = torch.cat([probe["z"], onehot], 1)
    gen_inputs = [(n, probe[n]) for n in inputs]
    if _takes_maps(generator, gen_inputs):
        gen_inputs = [(n, t if n == "label" else t[:, :, None, None]) for n, t in gen_inputs]
    gen = w.network("generator", generator, gen_inputs, ["z"], w.D)
    last = _last_op(gen)
    if last != output:
        raise ExportError("generator", f"output={output!r} but the network ends in {last!r}; the server reads "
                                       f"its values as {'[-1, 1]' if output == 'tanh' else '[0, 1]'}")
    images = w.images("tanh" if output == "tanh" else "gray")
    if discriminator is not None:
        disc = w.network("discriminator", discriminator, [("image", images)], ["image"], 1)
        if _last_op(disc) == "sigmoid":
            raise ExportError("discriminator", "ends in a sigmoid, but the server reports the discriminator's "
                                               "logit; export it without its final nn.Sigmoid")
    if encoder is not None:
        w.network("encoder", encoder, [("image", images)], ["image"], Z)
    if q_network is not None:
        w.network("q_network", q_network, [("image", images)], ["image"], int(cat_dim) + int(code_dim))
    w.save(path)


def save_aae(path, encoder, decoder, image="28x28x1", latent_dim=None, encoder_head="point", output="sigmoid",
             prior="normal", prior_means=None, prior_stds=None, class_names=None, metadata=None):
    """An adversarial autoencoder: encoder(x [B, C, H, W]) -> [B, Z]
    (encoder_head="point") or a Gaussian head's [B, 2Z] or (mean, logvar)
    ("gaussian": the server uses the mean); decoder(z [B, Z]) -> an image
    of D values ending in sigmoid (output="sigmoid": [0, 1]) or tanh
    ("tanh": [-1, 1], and the encoder reads images in [-1, 1]). The prior
    is the one the codes were matched to: the standard normal
    (prior="normal"), or the paper's label-conditioned mixture
    (prior="mixture") of K equally weighted Gaussians, one per class,
    N(prior_means[k], diag(prior_stds[k]^2)): prior_means [K, Z],
    prior_stds one number (every component's), [K] (one per component) or
    [K, Z], and optionally K class_names."""
    w = _Writer("aae", image, metadata)
    Z = _positive(latent_dim, "latent_dim")
    if encoder_head not in ("point", "gaussian"):
        raise ExportError("encoder_head", f"{encoder_head!r} must be 'point' or 'gaussian'")
    if output not in ("tanh", "sigmoid"):
        raise ExportError("output", f"{output!r} must be 'tanh' or 'sigmoid'")
    w.meta.update({"gm.latent_dim": str(Z), "gm.prior": prior, "gm.encoder_head": encoder_head,
                   "gm.output": output})
    _aae_prior(w, Z, prior, prior_means, prior_stds, class_names)
    gaussian = encoder_head == "gaussian"
    w.network("encoder", encoder, [("image", w.images("tanh" if output == "tanh" else "gray"))], ["image"],
              2 * Z if gaussian else Z, tuple_output=gaussian)
    dec = w.network("decoder", decoder, [("z", torch.randn(PROBES, Z, generator=w.gen))], ["z"], w.D)
    last = _last_op(dec)
    if last != output:
        raise ExportError("decoder", f"output={output!r} but the network ends in {last!r}; the server reads "
                                     f"its values as {'[-1, 1]' if output == 'tanh' else '[0, 1]'}")
    w.save(path)


def _aae_prior(w, Z, prior, means, stds, class_names):
    """gm.prior's tensors and classes: none for "normal"; for "mixture",
    prior.means [K, Z] and prior.stds [K] or [K, Z] (finite, stds > 0) and
    K = gm.num_classes."""
    if prior not in ("normal", "mixture"):
        raise ExportError("prior", f"{prior!r} must be 'normal' or 'mixture'")
    if prior == "normal":
        for name, v in (("prior_means", means), ("prior_stds", stds), ("class_names", class_names)):
            if v is not None:
                raise ExportError(name, "belongs to prior='mixture' (a normal prior has no components)")
        return
    if means is None or stds is None:
        raise ExportError("prior_means" if means is None else "prior_stds", "is required with prior='mixture'")
    means = torch.as_tensor(means).detach().to(torch.float32).cpu()
    stds = torch.as_tensor(stds).detach().to(torch.float32).cpu()
    if means.dim() != 2 or means.shape[0] < 1 or means.shape[1] != Z:
        raise ExportError("prior_means", f"shape {list(means.shape)}; a mixture prior needs [K, Z] with K >= 1 "
                                         f"and Z = latent_dim = {Z}")
    K = means.shape[0]
    if stds.dim() == 0:  # one std for every component
        stds = stds.expand(K).clone()
    if list(stds.shape) not in ([K], [K, Z]):
        raise ExportError("prior_stds", f"shape {list(stds.shape)}; one per component [{K}] or per value [{K}, {Z}]")
    if not torch.isfinite(means).all():
        raise ExportError("prior_means", "holds NaN or infinity")
    if not (torch.isfinite(stds).all() and (stds > 0).all()):
        raise ExportError("prior_stds", "must be finite and above 0")
    w.classes(K, class_names)
    w.tensors["prior.means"] = means.contiguous()
    w.tensors["prior.stds"] = stds.contiguous()


def save_nade(path, W, c, V, b, ordering=None, activation="sigmoid", image="28x28x1", metadata=None):
    """A NADE: W [H, D], c [H], V [D, H], b [D], an optional ordering (a
    permutation of 0..D-1, stored as I64) and the hidden activation
    ("sigmoid" or "relu")."""
    w = _Writer("nade", image, metadata)
    D = w.D
    ts = {k: torch.as_tensor(v).detach().to(torch.float32) for k, v in dict(W=W, c=c, V=V, b=b).items()}
    H = ts["W"].shape[0] if ts["W"].dim() == 2 else -1
    want = {"W": [H, D], "c": [H], "V": [D, H], "b": [D]}
    for k, shape in want.items():
        if list(ts[k].shape) != shape or H < 1:
            raise ExportError(k, f"shape {list(ts[k].shape)}; NADE needs W [H, D], c [H], V [D, H], b [D] "
                                 f"with D = {D} from image {w.meta['gm.image']}")
        if not torch.isfinite(ts[k]).all():
            raise ExportError(k, "holds NaN or infinity")
    if ordering is not None:
        o = torch.as_tensor(ordering).to(torch.int64).reshape(-1)
        if sorted(o.tolist()) != list(range(D)):
            raise ExportError("ordering", f"is not a permutation of 0..{D - 1}")
        ts["ordering"] = o
    if activation not in ("sigmoid", "relu"):
        raise ExportError("activation", f"{activation!r} must be 'sigmoid' or 'relu'")
    if activation != "sigmoid":
        w.meta["gm.activation"] = activation
    w.tensors = ts
    w.save(path)


def save_pixelcnn(path, net, image="28x28x1", num_classes=0, class_names=None, likelihood="bernoulli",
                  metadata=None):
    """An autoregressive image model over pixels in raster order (PixelCNN,
    gated PixelCNN): net(x [B, C, H, W]) -> Bernoulli logits [B, C, H, W],
    or net(x, label [B] int64) for a class-conditional one (num_classes >
    0). Masked convolutions that multiply their weight by a mask buffer are
    traced into plain convolutions with the masked weight; the server proves
    the network causal at load and refuses it otherwise."""
    w = _Writer("pixelcnn", image, metadata)
    if likelihood != "bernoulli":
        raise ExportError("likelihood", f"{likelihood!r}: a pixelcnn is served with 'bernoulli' logits only")
    C = int(num_classes)
    if C < 0:
        raise ExportError("num_classes", f"{num_classes} must be 0 or more")
    w.meta["gm.likelihood"] = likelihood
    inputs = [("image", w.images("binary"))]
    w.classes(C, class_names)
    if C:
        inputs.append(("label", torch.randint(0, C, (PROBES,), generator=w.gen)))
    ops = w.network("network", net, inputs, ["image"], w.D)
    if _last_op(ops) == "sigmoid":
        raise ExportError("network", "ends in a sigmoid; export the logits (the server applies the sigmoid)")
    w.save(path)


def save_translator(path, generator, image="28x28x1", inputs=("image",), num_classes=0, class_names=None,
                    output="tanh", reverse=None, domains=None, metadata=None):
    """An image-to-image translator: generator(*inputs) -> an image of the
    input's shape, ending in tanh (output="tanh": images in [-1, 1] in and
    out) or sigmoid ("sigmoid": [0, 1] in and out). inputs names forward()'s
    arguments in order: "image" [B, C, H, W] (required) and, for a
    multi-domain translator (StarGAN) with num_classes > 0 target classes,
    "label" [B] int64 or "onehot" [B, num_classes]. reverse is an optional
    second generator with the same inputs (CycleGAN's B -> A); domains then
    names the two domains (A, B): generator maps A to B, reverse B to A."""
    w = _Writer("translator", image, metadata)
    inputs = tuple(inputs)
    bad = [n for n in inputs if n not in TRANSLATOR_INPUTS]
    if bad or len(set(inputs)) != len(inputs) or "image" not in inputs:
        raise ExportError("inputs", f"{inputs} must name each of 'image' (required), 'label', 'onehot' at most "
                                    "once, in forward() order")
    if "label" in inputs and "onehot" in inputs:
        raise ExportError("inputs", "a translator takes the target class as 'label' or as 'onehot', not both")
    C = num_classes
    if not isinstance(C, int) or isinstance(C, bool) or C < 0:
        raise ExportError("num_classes", f"{num_classes!r} must be an integer >= 0")
    takes_class = "label" in inputs or "onehot" in inputs
    if (C > 0) != takes_class:
        raise ExportError("num_classes", f"{num_classes} with inputs {inputs}: a multi-domain translator "
                                         "(num_classes > 0) takes the target class as 'label' or 'onehot', and "
                                         "only it does")
    if output not in ("tanh", "sigmoid"):
        raise ExportError("output", f"{output!r} must be 'tanh' or 'sigmoid'")
    if (reverse is None) != (domains is None):
        raise ExportError("domains" if reverse is not None else "reverse",
                          "a reverse generator and the two domains' names (domains=(A, B)) go together")
    if domains is not None:
        if isinstance(domains, str) or len(domains) != 2 or not all(isinstance(d, str) and d for d in domains) \
                or domains[0] == domains[1]:
            raise ExportError("domains", f"{domains!r} must be two different non-empty names (A, B)")
        if set(domains) & set(DIRECTIONS):
            raise ExportError("domains", f"{domains!r}: 'forward' and 'reverse' name the directions themselves")
        w.meta["gm.domains"] = json.dumps(list(domains))
    w.classes(C, class_names)
    w.meta["gm.output"] = output
    label = torch.randint(0, max(C, 1), (PROBES,), generator=w.gen)
    probe = {"image": w.images("tanh" if output == "tanh" else "gray"), "label": label,
             "onehot": torch.nn.functional.one_hot(label, max(C, 1)).float()}
    for net, module in (("generator", generator), ("reverse", reverse)):
        if net == "reverse" and module is None:
            continue
        ops = w.network(net, module, [(n, probe[n]) for n in inputs], None, w.D)
        last = _last_op(ops)
        if last != output:
            raise ExportError(net, f"output={output!r} but the network ends in {last!r}; the server reads its "
                                   f"images as {'[-1, 1]' if output == 'tanh' else '[0, 1]'}")
    w.save(path)


def save_pixelrnn(path, net, image="28x28x1", num_classes=0, class_names=None, metadata=None):
    """A Row LSTM (PixelRNN) over binary images of one channel, the fixed
    architecture of models/train/pixelrnn_net.py: net.layers, each with
    input_to_state (a 1 x k_in Conv2d with bias, its weight multiplied by an
    optional `mask` buffer), state_to_state (a k_state Conv1d without bias),
    cond (an Embedding of the label, when num_classes > 0); net.out1 (1x1
    Conv2d hidden -> head) and net.out2 (head -> 1). The tensors are stored
    by name with gm.pixelrnn describing the shapes; the probes are net's own
    outputs, which must equal what the file describes (recomputed here in
    float64), so a module that is not this architecture raises ExportError."""
    w = _Writer("pixelrnn", image, metadata)
    if w.c != 1:
        raise ExportError("image", f"{image!r}: a pixelrnn models binary images of one channel")
    C = int(num_classes)
    if C < 0:
        raise ExportError("num_classes", f"{num_classes} must be 0 or more")
    arch, ts = _row_lstm_tensors(net, C)
    w.meta.update({"gm.likelihood": "bernoulli", "gm.pixelrnn": json.dumps(arch, separators=(",", ":"))})
    w.classes(C, class_names)
    x = w.images("binary")
    label = torch.randint(0, C, (PROBES,), generator=w.gen) if C else None
    with _eval(net), torch.no_grad():
        try:
            out = net(x) if label is None else net(x, label)
        except Exception as e:  # the module's own error, named
            raise ExportError("network", f"forward() failed on {PROBES} probe images: {e}") from e
    if not isinstance(out, torch.Tensor) or list(out.shape) != [PROBES, 1, w.h, w.w]:
        raise ExportError("network", f"forward() must return logits [B, 1, {w.h}, {w.w}]")
    want = _row_lstm_logits(arch, ts, x.double(), label)
    scale = max(1.0, want.abs().max().item())
    diff = (out.double() - want).abs().max().item()
    if not diff <= 1e-4 * scale:
        raise ExportError("network", f"forward() differs from the Row LSTM its tensors describe by {diff:.3g} "
                                     "(the gates must be input, forget, output, candidate; later layers "
                                     "residual; relu -> out1 -> relu -> out2)")
    ts["gm.pixelrnn.probe.image"] = x.contiguous()
    if C:
        ts["gm.pixelrnn.probe.label"] = label.to(torch.float32)
    ts["gm.pixelrnn.probe.logits"] = out.to(torch.float32).contiguous()
    w.tensors = ts
    w.save(path)


def _conv(module, kind, name):
    if not isinstance(module, kind):
        raise ExportError(name, f"must be a torch.nn.{kind.__name__} (found {type(module).__name__})")
    return module


def _row_lstm_tensors(net, C):
    """(the gm.pixelrnn description, the named float32 tensors) of a Row LSTM."""
    layers = getattr(net, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise ExportError("layers", "a Row LSTM has a non-empty torch.nn.ModuleList `layers`")
    ts, arch = {}, None
    for i, layer in enumerate(layers):
        n = f"layers.{i}"
        a = _conv(getattr(layer, "input_to_state", None), torch.nn.Conv2d, f"{n}.input_to_state")
        s = _conv(getattr(layer, "state_to_state", None), torch.nn.Conv1d, f"{n}.state_to_state")
        mask = getattr(a, "mask", None)
        wi = (a.weight * mask if mask is not None else a.weight).detach()
        if wi.dim() != 4 or wi.shape[2] != 1 or wi.shape[0] % 4 or a.bias is None:
            raise ExportError(f"{n}.input_to_state", f"weight {list(wi.shape)}: a 1 x k convolution to 4 x hidden "
                                                     "gates, with a bias")
        h, k_in = wi.shape[0] // 4, wi.shape[3]
        if s.bias is not None or list(s.weight.shape[:2]) != [4 * h, h]:
            raise ExportError(f"{n}.state_to_state", f"weight {list(s.weight.shape)}: [4 x {h}, {h}, k], no bias")
        if arch is None:
            arch = {"layers": len(layers), "hidden": h, "input_kernel": k_in, "state_kernel": s.weight.shape[2]}
        if h != arch["hidden"] or k_in != arch["input_kernel"] or s.weight.shape[2] != arch["state_kernel"]:
            raise ExportError(n, "every layer must have the same hidden size and kernels")
        if wi.shape[1] != (1 if i == 0 else h):
            raise ExportError(f"{n}.input_to_state", f"takes {wi.shape[1]} channels: the first layer takes the "
                                                     f"image (1), later ones the hidden state ({h})")
        if k_in % 2 == 0 or arch["state_kernel"] % 2 == 0:
            raise ExportError(n, "kernels must have odd widths (centred on the pixel)")
        ts[f"{n}.input_to_state.weight"] = wi[:, :, 0, :]
        ts[f"{n}.input_to_state.bias"] = a.bias.detach()
        ts[f"{n}.state_to_state.weight"] = s.weight.detach()
        cond = getattr(layer, "cond", None)
        if (cond is not None) != bool(C):
            raise ExportError(f"{n}.cond", f"num_classes={C} but the layer {'has no' if C else 'has a'} "
                                           "label embedding")
        if C:
            _conv(cond, torch.nn.Embedding, f"{n}.cond")
            if list(cond.weight.shape) != [C, 4 * h]:
                raise ExportError(f"{n}.cond", f"weight {list(cond.weight.shape)} must be [{C}, {4 * h}]")
            ts[f"{n}.class_bias"] = cond.weight.detach()
    o1 = _conv(getattr(net, "out1", None), torch.nn.Conv2d, "out1")
    o2 = _conv(getattr(net, "out2", None), torch.nn.Conv2d, "out2")
    head = o1.weight.shape[0]
    if list(o1.weight.shape) != [head, arch["hidden"], 1, 1] or list(o2.weight.shape) != [1, head, 1, 1] or \
            o1.bias is None or o2.bias is None:
        raise ExportError("out1", f"out1 must be a 1x1 Conv2d {arch['hidden']} -> head and out2 head -> 1, "
                                  "both with a bias")
    arch["head"] = head
    ts.update({"out1.weight": o1.weight.detach()[:, :, 0, 0], "out1.bias": o1.bias.detach(),
               "out2.weight": o2.weight.detach()[:, :, 0, 0], "out2.bias": o2.bias.detach()})
    for k, t in ts.items():
        if t.dtype != torch.float32 or not torch.isfinite(t).all():
            raise ExportError(k, "must be finite float32 on the CPU (module.float().cpu())")
        ts[k] = t.contiguous().cpu()
    return arch, ts


def _row_lstm_logits(arch, ts, x, label):
    """The logits [P, 1, H, W] the tensors describe, in float64: the
    definition the server implements (docs/model-files.md, "pixelrnn")."""
    F = torch.nn.functional
    t = {k: v.double() for k, v in ts.items()}
    h, ks = arch["hidden"], arch["state_kernel"]
    inp = x
    for i in range(arch["layers"]):
        n = f"layers.{i}"
        pre = F.conv2d(inp, t[f"{n}.input_to_state.weight"][:, :, None, :], t[f"{n}.input_to_state.bias"],
                       padding=(0, arch["input_kernel"] // 2))
        if label is not None:
            pre = pre + t[f"{n}.class_bias"][label][:, :, None, None]
        hs = torch.zeros(x.shape[0], h, x.shape[3], dtype=torch.float64)
        cs = torch.zeros_like(hs)
        rows = []
        for r in range(x.shape[2]):
            g = pre[:, :, r] + F.conv1d(hs, t[f"{n}.state_to_state.weight"], padding=ks // 2)
            gi, gf, go, gg = g[:, :h], g[:, h:2 * h], g[:, 2 * h:3 * h], g[:, 3 * h:]
            cs = torch.sigmoid(gf) * cs + torch.sigmoid(gi) * torch.tanh(gg)
            hs = torch.sigmoid(go) * torch.tanh(cs)
            rows.append(hs)
        out = torch.stack(rows, 2)
        inp = out if i == 0 else inp + out
    y = F.relu(torch.einsum("bchw,oc->bohw", F.relu(inp), t["out1.weight"]) + t["out1.bias"][:, None, None])
    return torch.einsum("bchw,oc->bohw", y, t["out2.weight"]) + t["out2.bias"][:, None, None]


@contextlib.contextmanager
def _eval(module):
    """module in eval mode, then each submodule back in its own mode."""
    was = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, t in was:
            m.training = t


def _takes_maps(generator, inputs):
    """True for a generator that takes its vectors as [B, n, 1, 1] (the
    DCGAN of the PyTorch examples starts with a ConvTranspose2d on z) and
    fails on [B, n]."""
    with _eval(generator), torch.no_grad():
        try:
            generator(*[t for _, t in inputs])
            return False
        except Exception:  # only probing: the export itself reports what fails
            pass
        try:
            generator(*[t if n == "label" else t[:, :, None, None] for n, t in inputs])
            return True
        except Exception:  # only probing: the export itself reports what fails
            return False


def _positive(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ExportError(what, f"{v!r} must be a positive integer")
    return v
