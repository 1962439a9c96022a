"""train_pixelcnn.py - the bundled gated PixelCNN (pixelcnn_net.py) on
dynamically binarized Fashion-MNIST, Bernoulli logits per pixel.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_pixelcnn.py OUT.safetensors
        [--epochs 12] [--channels 32] [--dilations 1,2,4,8,1,2,4,8] [--hidden 128]
        [--checkpoint PATH] [--log-every 100] [--threads 1] [--ema DECAY]

Trains on the first 58 000 training images; the last 2 000, binarized once
with a fixed seed, are the validation set printed after every epoch (the test
set is for `gmserve eval` alone). Adam 1e-3 with a cosine decay to 1e-5 over
--epochs epochs, batch 64. After every epoch the model, the optimizer and the
random state go to --checkpoint; a run finds the checkpoint and resumes from
it, so a training longer than one session continues where it stopped. When
--epochs epochs are done the script writes OUT.safetensors with
gmexport.save_pixelcnn (it does so again, without training, when the
checkpoint already holds --epochs epochs). With --ema the run also keeps
an exponential moving average of the weights (Polyak averaging), updated
after every step from the epoch it was first given, and exports the
average. fit() is the loop train_pixelrnn.py trains the Row LSTM with.
"""
import argparse
import copy
import math
import os
import sys
import time

import torch

import data
import pixelcnn_net

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 64
VAL = 2000


def evaluate(model, nll, xv):
    model.eval()
    with torch.no_grad():
        total = sum(nll(model(xv[i:i + 250]), xv[i:i + 250]).sum().item()
                    for i in range(0, len(xv), 250))
    model.train()
    return total / len(xv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--dilations", default="1,2,4,8,1,2,4,8",
                    help="the dilation of each layer after the first (comma-separated)")
    ap.add_argument("--hidden", type=int, default=128, help="channels of the output's 1x1 layer")
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoints", "pixelcnn.pt"))
    add_loop_args(ap)
    args = ap.parse_args()
    data.seed_and_threads(args.seed, args.threads)
    args.dilations = [int(d) for d in args.dilations.split(",")]
    model = pixelcnn_net.DilatedGatedPixelCNN(c=args.channels, dilations=args.dilations, hidden=args.hidden)
    done = fit("pixelcnn", model, pixelcnn_net.nll, args,
               {"channels": args.channels, "dilations": args.dilations, "hidden": args.hidden})
    if done:
        export(model, args, *done)


def add_loop_args(ap):
    """The options of fit() every autoregressive trainer shares."""
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (timing runs)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 2 when this is the machine's only training (1.6x per step on 2 cores)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="also average the weights, w_avg = DECAY w_avg + (1 - DECAY) w after every step "
                         "(0 < DECAY < 1), from now on; the export takes the average. The checkpoint keeps it "
                         "and a resumed run goes on with it")


def fit(tag, model, nll, args, arch):
    """Trains model (x [B, 1, 28, 28] -> logits) for args.epochs epochs,
    resuming from and checkpointing to args.checkpoint (arch: the
    architecture options, stored in it). Returns (minutes, history, runs,
    average), or None when --max-steps stopped it early; runs lists each
    command that trained epochs, with the first and last of them. With a
    weight average (--ema, or one the checkpoint holds) the model is left
    holding the average, described by average ({"decay", "from_epoch"});
    otherwise average is None. The checkpoint keeps both weights."""
    if not 0.0 <= args.ema < 1.0:
        sys.exit(f"{tag}: --ema {args.ema}: the decay must be in (0, 1), or 0 for no average")
    # the export and the first checkpoint come much later: a folder that
    # cannot be made must fail now, not lose the run
    for path in (args.out, args.checkpoint):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    x, _ = data.load("train")
    x = x.reshape(-1, 1, 28, 28)
    xt, xv = x[:-VAL], x[-VAL:]
    xv = torch.bernoulli(xv, generator=torch.Generator().manual_seed(7))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps_per_epoch = math.ceil(len(xt) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps_per_epoch, eta_min=1e-5)
    epoch, minutes, history, runs = 0, 0.0, [], []
    average, avg_weights = None, None
    if os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint)
        held = {k: v for k, v in ck["args"].items() if k != "epochs"}
        if held != arch:
            sys.exit(f"{tag}: {args.checkpoint} holds another architecture, {held}, not {arch}: "
                     "pass its options or another --checkpoint")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["rng"])
        epoch, minutes, history = ck["epoch"], ck["minutes"], ck["history"]
        runs = ck.get("runs", [])  # absent from checkpoints written before it was kept
        average, avg_weights = ck.get("average"), ck.get("avg_weights")
        print(f"[{tag}] resumed from {args.checkpoint} after epoch {epoch}", flush=True)
    if average and args.ema and args.ema != average["decay"]:
        sys.exit(f"{tag}: {args.checkpoint} averages the weights with decay {average['decay']} since epoch "
                 f"{average['from_epoch']}, not {args.ema}: drop --ema or pass that decay")
    if args.ema and not average and epoch < args.epochs:
        average = {"decay": args.ema, "from_epoch": epoch}
        avg_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(f"[{tag}] averaging the weights from epoch {epoch + 1} on (decay {args.ema})", flush=True)
    # (average, weights) pairs, made once: a state dict's tensors share the storage that the
    # optimizer updates in place
    tracked = [(avg_weights[k], v) for k, v in model.state_dict().items()] if average else []
    nparams = sum(p.numel() for p in model.parameters())
    print(f"[{tag}] {nparams} parameters, {steps_per_epoch} steps per epoch", flush=True)
    while epoch < args.epochs:
        t0 = time.time()
        perm = torch.randperm(len(xt))
        total, seen, window, wn = 0.0, 0, 0.0, 0
        for step, i in enumerate(range(0, len(xt), BATCH)):
            xb = torch.bernoulli(xt[perm[i:i + BATCH]])
            loss = nll(model(xb), xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for a, v in tracked:
                    a.mul_(average["decay"]).add_(v, alpha=1.0 - average["decay"])
            total += loss.item() * len(xb)
            seen += len(xb)
            window += loss.item()
            wn += 1
            if (step + 1) % args.log_every == 0:
                el = time.time() - t0
                print(f"[{tag}] epoch {epoch + 1} step {step + 1}/{steps_per_epoch}  train {window / wn:.2f} nats"
                      f"  {el / (step + 1):.3f} s/step  (epoch eta {el / (step + 1) * steps_per_epoch / 60:.1f} min)",
                      flush=True)
                window, wn = 0.0, 0
            if args.max_steps and step + 1 >= args.max_steps:
                return None
        val = evaluate(model, nll, xv)
        took = (time.time() - t0) / 60
        minutes += took
        epoch += 1
        history.append({"epoch": epoch, "train_nats": round(total / seen, 3), "val_nats": round(val, 3),
                         "minutes": round(took, 2), "threads": args.threads})
        shown = ""
        if average:
            history[-1]["val_average_nats"] = round(evaluate(with_weights(model, avg_weights), nll, xv), 3)
            shown = f"  (averaged weights {history[-1]['val_average_nats']:.3f})"
        print(f"[{tag}] epoch {epoch}/{args.epochs}  train {total / seen:.3f}  val {val:.3f} nats{shown}"
              f"  {took:.1f} min  (total {minutes:.1f} min)", flush=True)
        if not runs or runs[-1]["command"] != data.command() or runs[-1]["last_epoch"] != epoch - 1:
            runs.append({"command": data.command(), "first_epoch": epoch, "last_epoch": epoch})
        runs[-1]["last_epoch"] = epoch
        tmp = args.checkpoint + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "rng": torch.get_rng_state(), "epoch": epoch, "minutes": minutes, "history": history,
                    "runs": runs, "args": dict(arch, epochs=args.epochs), "average": average,
                    "avg_weights": avg_weights}, tmp)
        os.replace(tmp, args.checkpoint)
    if average:
        model.load_state_dict(avg_weights)
    return minutes, history, runs, average


def with_weights(model, weights):
    """A copy of model holding weights (a state dict)."""
    other = copy.deepcopy(model)
    other.load_state_dict(weights)
    return other


def training_metadata(args, minutes, history, runs, average):
    """gm.training of an autoregressive model: the commands that trained it
    (a training resumed over sessions has several; the first is the one to
    type again), the schedule, the weight average exported if any and each
    epoch's numbers."""
    meta = {"command": runs[0]["command"] if runs else data.command(), "runs": runs, "seed": args.seed,
            "epochs": args.epochs, "optimizer": "Adam 1e-3, cosine to 1e-5, batch 64",
            "device": "cpu (threads per epoch in history)", "minutes": round(minutes, 1), "history": history}
    if average:
        meta["weights"] = (f"exponential moving average, decay {average['decay']}, of the weights after every "
                           f"step from epoch {average['from_epoch'] + 1} on")
    return meta


def export(model, args, minutes, history, runs, average):
    import gmfile  # noqa: F401  (puts python/ on the path)
    import gmexport
    model.eval()
    gmexport.save_pixelcnn(args.out, model, image="28x28x1", metadata={
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), dynamically binarized",
        "gm.description": f"gated PixelCNN, {len(args.dilations) + 1} layers of {args.channels} channels "
                          f"(3x7 above / 3 left, then 2x3 / 1x2 dilated {args.dilations}), Bernoulli logits",
        "gm.training": training_metadata(args, minutes, history, runs, average),
    })
    print(f"[pixelcnn] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
