#!/bin/sh
# Trains (or resumes) shapes-v4: v3's run continued with canvas buckets and the v4 backgrounds.
#   scripts/train-v4.sh [WORK_DIR] [OUTPUT]      (defaults: train-v4, models/shapes-v4.safetensors)
# The first call copies models/train-v3 (v3's stage checkpoints at step 22500) into WORK_DIR; every
# later call resumes WORK_DIR's latest checkpoint (written every 250 steps), so the run can be
# stopped at any time. The committed models/shapes-v4.safetensors is this run's step 40000.
# SINE_BIN picks the binary (default build/sine); one thread is fastest on a 2-core CPU.
# docs/shapes-world.md has the numbers.
set -eu
work=${1:-train-v4}
out=${2:-models/shapes-v4.safetensors}
bin=${SINE_BIN:-build/sine}
if [ ! -d "$work" ]; then
  cp -r models/train-v3 "$work"
fi
exec "$bin" --threads "${SINE_TRAIN_THREADS:-1}" world train --work-dir "$work" --vae-steps 2500 --steps 40000 \
  --batch 16 --lr 1e-3 --warmup 200 --buckets 64x64,96x64,64x96,128x64,64x128,96x96 --textured-backgrounds \
  --checkpoint-every 250 -o "$out"
