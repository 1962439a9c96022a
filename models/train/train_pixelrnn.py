"""train_pixelrnn.py - the Row LSTM of pixelrnn_net.py on dynamically
binarized Fashion-MNIST, Bernoulli logits per pixel.

    OMP_NUM_THREADS=1 /usr/bin/python3 models/train/train_pixelrnn.py OUT.safetensors
        [--epochs 10] [--hidden 32] [--layers 3] [--k-in 7] [--k-state 7] [--head 64]
        [--checkpoint PATH] [--log-every 100] [--threads 1] [--ema DECAY]

The protocol and the loop are the PixelCNN's (train_pixelcnn.fit): the
first 58 000 training images, a fresh binarization of every batch, the last
2 000 binarized once as the validation set printed after every epoch; Adam
1e-3 with a cosine decay to 1e-5 over --epochs epochs, batch 64. After every
epoch the model, the optimizer and the random state go to --checkpoint and
a later run resumes from it. When --epochs epochs are done the script writes
OUT.safetensors with gmexport.save_pixelrnn (again, without training, when
the checkpoint already holds --epochs epochs).
"""
import argparse
import os

import data
import pixelrnn_net
import train_pixelcnn

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--k-in", type=int, default=7)
    ap.add_argument("--k-state", type=int, default=7)
    ap.add_argument("--head", type=int, default=64)
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoints", "pixelrnn.pt"))
    train_pixelcnn.add_loop_args(ap)
    args = ap.parse_args()
    data.seed_and_threads(args.seed, args.threads)
    arch = {"hidden": args.hidden, "layers": args.layers, "k_in": args.k_in, "k_state": args.k_state,
            "head": args.head}
    model = pixelrnn_net.RowLSTM(**arch)
    done = train_pixelcnn.fit("pixelrnn", model, pixelrnn_net.nll, args, arch)
    if done:
        export(model, args, *done)


def export(model, args, minutes, history, runs, average):
    import gmfile  # noqa: F401  (puts python/ on the path)
    import gmexport
    model.eval()
    gmexport.save_pixelrnn(args.out, model, image="28x28x1", metadata={
        "gm.dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), dynamically binarized",
        "gm.description": f"Row LSTM (PixelRNN), {args.layers} layers of {args.hidden} hidden channels, "
                          f"input-to-state 1x{args.k_in} (mask A, then B), state-to-state {args.k_state}, "
                          f"residual, head {args.head}, Bernoulli logits",
        "gm.training": train_pixelcnn.training_metadata(args, minutes, history, runs, average),
    })
    print(f"[pixelrnn] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
