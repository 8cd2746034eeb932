#!/usr/bin/env bash
# Peak memory of a full SINE fine-tune of SD 1.5 (random weights, 512x512, whole image, gradient
# checkpointing) on this CPU, per precision: `sine finetune` under /usr/bin/time -v, a few steps.
# Prints a Markdown table (docs/performance.md).
#   scripts/bench-train-memory.sh [THREADS] [STEPS] [SINE]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-2}
bin=${3:-build/sine}
work=${WORK:-/tmp/sine-bench}
mkdir -p "$work"
vocab=${VOCAB:-../shared/data/clip/bpe_simple_vocab_16e6.txt.gz}
ckpt=$work/sd15-random.safetensors
[ -f "$ckpt" ] || "$bin" -q init-random --config sd15 -o "$ckpt"
img=$work/train-512.png
[ -f "$img" ] || "$bin" -q world render --caption "a red circle on a blue background" -o "$img"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $($bin --version | sed -n 2p), threads $threads, $steps steps"
echo
echo "| model dtype | master weights | AdamW state | weights+grads+masters+moments GB | peak RSS GB | wall s (load + steps + save) |"
echo "|---|---|---|---:|---:|---:|"
# dtype, optimizer state, extra flags; RUNS picks some ("bf16:bf16,fp32:fp32"), the largest last
runs=${RUNS:-"bf16:bf16:--no-master-weights,bf16:bf16,bf16:fp32,fp32:fp32"}
IFS=, read -r -a list <<< "$runs"
for run in "${list[@]}"; do
  run=${run//:/ }
  set -- $run
  dt=$1; state=$2; extra=${3:-}
  out=$work/ft_${dt}_${state}${extra:+_direct}.safetensors
  rm -f "$out" "$out.ckpt" "$out.ckpt.json"
  /usr/bin/time -v "$bin" --threads "$threads" finetune -m "$ckpt" --tokenizer "$vocab" --dtype "$dt" \
    --optimizer-state "$state" $extra --grad-checkpointing --checkpoint-every 0 -i "$img" --class circle \
    --steps "$steps" -o "$out" > /dev/null 2> "$work/ft_time.txt"
  python3 - "$work/ft_time.txt" "$dt" "$state" "${extra:-}" "$steps" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024 / 1e9
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
dt, state, direct, steps = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
n = 982_600_000  # SD 1.5's trained weights: UNet 859.5 M + text encoder 123.1 M
wb = 4 if dt == "fp32" else 2
master = 0 if dt == "fp32" or direct else 4
moments = 8 if state == "fp32" else 4
print(f"| {dt} | {'no' if (dt == 'fp32' or direct) else 'fp32'} | {state} | {n * (2 * wb + master + moments) / 1e9:.1f} | "
      f"{rss:.2f} | {secs:.0f} |")
PY
  rm -f "$out" "$out.ckpt" "$out.ckpt.json"
done
