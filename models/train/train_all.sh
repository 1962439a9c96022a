#!/usr/bin/env bash
# make weights: retrains every bundled model on Fashion-MNIST, evaluates them
# with gmserve's own code and stamps the metrics into the files.
#   models/train/train_all.sh BUILD [OUTDIR]
# Lanes of one thread each (more threads fight over the two cores):
#   lane 1: VAE, NADE (C), classifier      lane 2: GAN (+ encoder)      lane 3: AAE
#   lane 4: the gated PixelCNN, 64 channels, which resumes from its checkpoint
#           (models/train/checkpoints/pixelcnn64.pt, PIXELCNN_CHECKPOINT)
#   lane 5: the CycleGAN (about 55 min)   lane 6: the StarGAN
#           (both monitor their target accuracy with models/classifier.safetensors;
#           their checkpoints go to BUILD/weights/*.pt, and a run resumes from them)
#   lane 7: the InfoGAN (about 55 minutes beside other trainings), no labels, then
#           its Q refit on the generator's samples (refit_infogan_q.py, about 3 minutes)
#   lane 8: the Row LSTM (PixelRNN), 4 layers of 48 (head 128), which
#           resumes from its checkpoint (models/train/checkpoints/pixelrnn48.pt,
#           PIXELRNN_CHECKPOINT); it is copied into OUTDIR only when its test NLL
#           reaches the NADE's (models/README.md, "The Row LSTM")
# The GAN and the AAE (each about 75 minutes on one thread) have a lane of
# their own, so that neither waits for the other.
# Each lane's progress lines (epoch, loss, time) go to the terminal and to
# BUILD/weights/train-*.log. The files replace OUTDIR/*.safetensors only when
# every training succeeded. VAE_ARGS, GAN_ARGS, AAE_ARGS, NADE_ARGS and CLASSIFIER_ARGS
# add options to one trainer (e.g. NADE_ARGS="--epochs 1" for a quick check),
# PIXELCNN_ARGS to the PixelCNN's, PIXELRNN_ARGS to the Row LSTM's, CYCLEGAN_ARGS and STARGAN_ARGS to
# the translators', INFOGAN_ARGS to the InfoGAN's, INFOGAN_Q_ARGS to its Q refit.
set -euo pipefail
build=${1:-build}
out=${2:-models}
py=${TORCH_PY:-/usr/bin/python3}
tmp="$build/weights"
mkdir -p "$tmp" "$out/samples"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
here=models/train
lane1() {
    "$py" "$here/train_vae.py" "$tmp/vae.safetensors" ${VAE_ARGS:-} 2>&1 | tee "$tmp/train-vae.log"
    "$build/nade_train" "$tmp/nade.safetensors" --threads 1 ${NADE_ARGS:-} 2>&1 | tee "$tmp/train-nade.log"
    "$py" "$here/train_classifier.py" "$tmp/classifier.safetensors" ${CLASSIFIER_ARGS:-} 2>&1 | tee "$tmp/train-classifier.log"
}
lane2() {
    "$py" "$here/train_gan.py" "$tmp/gan.safetensors" ${GAN_ARGS:-} 2>&1 | tee "$tmp/train-gan.log"
}
lane3() {
    "$py" "$here/train_aae.py" "$tmp/aae.safetensors" --checkpoint "$tmp/aae.pt" ${AAE_ARGS:-} 2>&1 |
        tee "$tmp/train-aae.log"
}
lane4() {
    "$py" "$here/train_pixelcnn.py" "$tmp/pixelcnn.safetensors" --channels 64 \
        --checkpoint "${PIXELCNN_CHECKPOINT:-$here/checkpoints/pixelcnn64.pt}" ${PIXELCNN_ARGS:-} 2>&1 |
        tee "$tmp/train-pixelcnn.log"
}
lane5() {
    "$py" "$here/train_cyclegan.py" "$tmp/cyclegan.safetensors" --epochs 4 --schedule-epochs 5 \
        --checkpoint "$tmp/cyclegan.pt" ${CYCLEGAN_ARGS:-} 2>&1 | tee "$tmp/train-cyclegan.log"
}
lane6() {
    "$py" "$here/train_stargan.py" "$tmp/stargan.safetensors" --checkpoint "$tmp/stargan.pt" ${STARGAN_ARGS:-} 2>&1 |
        tee "$tmp/train-stargan.log"
}
lane7() {
    "$py" "$here/train_infogan.py" "$tmp/infogan-gan.safetensors" --checkpoint "$tmp/infogan.pt" ${INFOGAN_ARGS:-} 2>&1 |
        tee "$tmp/train-infogan.log"
    "$py" "$here/refit_infogan_q.py" "$tmp/infogan-gan.safetensors" "$tmp/infogan.safetensors" ${INFOGAN_Q_ARGS:-} 2>&1 |
        tee "$tmp/train-infogan-q.log"
}
lane8() {
    "$py" "$here/train_pixelrnn.py" "$tmp/pixelrnn.safetensors" --layers 4 --hidden 48 --head 128 \
        --checkpoint "${PIXELRNN_CHECKPOINT:-$here/checkpoints/pixelrnn48.pt}" ${PIXELRNN_ARGS:-} 2>&1 |
        tee "$tmp/train-pixelrnn.log"
}
start=$(date +%s)
lane1 & p1=$!
lane2 & p2=$!
lane3 & p3=$!
lane4 & p4=$!
lane5 & p5=$!
lane6 & p6=$!
lane7 & p7=$!
lane8 & p8=$!
wait $p1 && wait $p2 && wait $p3 && wait $p4 && wait $p5 && wait $p6 && wait $p7 && wait $p8
echo "train_all: trained in $(( ($(date +%s) - start) / 60 )) min; evaluating ..."
"$build/gmserve" eval --nade "$tmp/nade.safetensors" --vae "$tmp/vae.safetensors" \
    --gan "$tmp/gan.safetensors" --aae "$tmp/aae.safetensors" --pixelcnn "$tmp/pixelcnn.safetensors" \
    --stargan "$tmp/stargan.safetensors" --cyclegan "$tmp/cyclegan.safetensors" --cycle-classes 7,9 \
    --infogan "$tmp/infogan.safetensors" --pixelrnn "$tmp/pixelrnn.safetensors" \
    --classifier "$tmp/classifier.safetensors" \
    --json "$tmp/metrics.json" --grids "$out/samples"
python3 "$here/stamp_metrics.py" "$tmp/metrics.json" nade="$tmp/nade.safetensors" \
    vae="$tmp/vae.safetensors" gan="$tmp/gan.safetensors" aae="$tmp/aae.safetensors" \
    classifier="$tmp/classifier.safetensors" pixelcnn="$tmp/pixelcnn.safetensors" \
    stargan="$tmp/stargan.safetensors" cyclegan="$tmp/cyclegan.safetensors" infogan="$tmp/infogan.safetensors" \
    pixelrnn="$tmp/pixelrnn.safetensors"
# the Row LSTM is bundled only when its test NLL reaches the bundled NADE's 230.86 nats
if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["pixelrnn"]["test_nll_nats"] > 230.86)' "$tmp/metrics.json"; then
    cp "$tmp/pixelrnn.safetensors" "$out/"
    echo "train_all: the Row LSTM reached 230.86 nats: wrote $out/pixelrnn.safetensors"
fi
cp "$tmp"/{nade,vae,gan,aae,classifier,pixelcnn,stargan,cyclegan,infogan}.safetensors "$tmp/metrics.json" "$out/"
echo "train_all: wrote $out/{nade,vae,gan,aae,classifier,pixelcnn,stargan,cyclegan,infogan}.safetensors, $out/metrics.json and $out/samples/"
