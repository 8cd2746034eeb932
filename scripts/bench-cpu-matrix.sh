#!/usr/bin/env bash
# This CPU, in one run: Debian's LibTorch 1.13 build (build/) and PyPI's 2.11 build (build-cuda/),
# each in fp32 and bf16 -- the CFG sampling step of SD 1.5 at 512x512 (`sine bench`, random weights)
# and the peak RSS of a whole 512x512 txt2img from an SD 1.5-size checkpoint (`sine generate`,
# measured by /usr/bin/time -v). Prints a Markdown table (docs/performance.md).
#   scripts/bench-cpu-matrix.sh [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-2}
work=${WORK:-/tmp/sine-bench}
mkdir -p "$work"
vocab=${VOCAB:-../shared/data/clip/bpe_simple_vocab_16e6.txt.gz}
ckpt=$work/sd15-random.safetensors
[ -f "$ckpt" ] || build/sine -q init-random --config sd15 -o "$ckpt"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), flags: $(grep -o -w -E 'amx_bf16|avx512_bf16|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "threads $threads, txt2img $steps steps"
echo
echo "| LibTorch | dtype | CFG step s (mean) | UNet B2 s | VAE decode 512² s | txt2img peak RSS GB | txt2img wall s |"
echo "|---|---|---:|---:|---:|---:|---:|"
for bin in build/sine build-cuda/sine; do
  [ -x "$bin" ] || continue
  ver=$($bin --version | sed -n 's/^LibTorch \([0-9.]*\).*/\1/p')
  for dt in fp32 bf16; do
    j=$work/bench_${ver}_$dt.json
    $bin --threads "$threads" -q bench --config sd15 --dtype $dt --repeat 2 --no-train --no-image --no-baseline \
      --json "$j" > "$work/bench_${ver}_$dt.txt"
    /usr/bin/time -v $bin --threads "$threads" -q generate -m "$ckpt" --tokenizer "$vocab" -p "a cat" -W 512 -H 512 \
      --steps "$steps" --dtype $dt -o "$work/img_${ver}_$dt.png" > /dev/null 2> "$work/time_${ver}_$dt.txt"
    python3 - "$j" "$work/time_${ver}_$dt.txt" "$ver" "$dt" <<'PY'
import json, re, sys
j = json.load(open(sys.argv[1])); t = open(sys.argv[2]).read()
rows = {r["what"]: r["mean_s"] for r in j["rows"]}
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024 / 1e9
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
print(f"| {sys.argv[3]} | {sys.argv[4]} | {rows['CFG sampling step (UNet B2 + DDIM)']:.2f} | "
      f"{rows['UNet forward (fused attention)']:.2f} | {rows['VAE decode']:.2f} | {rss:.2f} | {secs:.0f} |")
PY
  done
done
