#!/usr/bin/env bash
# The GPU check in one command (issue 12), for the device machine (one H200, 16 cores, python3 with
# torch 2.11.0+cu130, no registries): build with CUDA, run the CUDA test label, then benchmark on
# SD 1.5-size random weights and write $OUT/results.json + $OUT/results.md. Budget: < 8 minutes.
#   on the GPU:   bash scripts/device-check.sh          (after scripts/device-pack.sh here)
#   dry run here: DEVICE_CHECK_DRY=1 scripts/device-check.sh   (CPU, tiny model, the existing build-cuda/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/out/device-check}
mkdir -p "$OUT"
DRY=${DEVICE_CHECK_DRY:-0}
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
note() { echo "device-check [$(elapsed) s] $*" | tee -a "$OUT/log.txt"; }

if [ "$DRY" = 1 ]; then
  build=${BUILD:-build-cuda}; device=cpu; config=tiny; dtypes="fp32 bf16"; threads=2
  [ -x "$build/sine" ] || make build-cuda
  shared=$root/../shared
else
  build=build-device; device=cuda; config=sd15; dtypes="fp16 bf16"; threads=$(nproc)
  devroot=/tmp/devroot
  for deb in .devdeps/*.deb; do dpkg -x "$deb" "$devroot"; done
  export PKG_CONFIG_SYSROOT_DIR=$devroot
  export PKG_CONFIG_PATH=$devroot/usr/lib/x86_64-linux-gnu/pkgconfig:$devroot/usr/share/pkgconfig
  export LD_LIBRARY_PATH=$devroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  shared=$root/.devshared
  note "configure (nvcc $(nvcc --version | tail -1), $(python3 -c 'import torch; print("torch", torch.__version__)'))"
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSINE_CUDA=ON -DSINE_TORCH_PYTHON="$(command -v python3)" \
    -DCMAKE_PREFIX_PATH=$devroot/usr -DCMAKE_CXX_FLAGS="-isystem $devroot/usr/include" \
    -DSINE_SHARED_DIR="$shared" -DTORCH_CUDA_ARCH_LIST=9.0 > "$OUT/configure.txt" 2>&1
  cmake --build $build -j "$(nproc)" > "$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; exit 1; }
fi
note "build ready: $build"
"$build/sine" --version | tee "$OUT/version.txt"

# 1. The CUDA label: parity on CUDA (fp32 1e-4; fp16/bf16 bounds), SDPA = explicit, graphs = eager.
set +e
(cd $build && ctest -L cuda --output-on-failure --output-junit "$OUT/cuda-tests.xml") > "$OUT/cuda-tests.txt" 2>&1
tests_rc=$?
set -e
note "CUDA tests: rc $tests_rc ($(grep -E 'tests passed|tests failed' "$OUT/cuda-tests.txt" | tail -1))"

# 2. Engine benchmarks per dtype: text encode, UNet, CFG step (eager and CUDA graph), VAE decode,
#    whole 20-step image, training steps (full, LoRA), peak memory.
for dt in $dtypes; do
  for graph in off on; do
    [ "$graph" = on ] && [ "$device" != cuda ] && continue
    extra=(); [ "$graph" = on ] && extra=(--cuda-graph --no-train --no-baseline)
    "$build/sine" --threads "$threads" bench --config $config --device $device --dtype "$dt" --repeat 3 \
      --json "$OUT/bench_${dt}_graph-${graph}.json" "${extra[@]}" > "$OUT/bench_${dt}_graph-${graph}.txt" 2>&1 \
      || note "bench $dt graph $graph failed: $(tail -1 "$OUT/bench_${dt}_graph-${graph}.txt")"
    note "bench $dt graph $graph done"
  done
done

# 3. The methods' units of work (SINE fine-tune and edit, SingleInsert stages, SpecRef edit + cache).
for dt in $dtypes; do
  "$build/sine" --threads "$threads" bench --config $config --device $device --dtype "$dt" --methods --only-methods \
    --json "$OUT/methods_${dt}.json" > "$OUT/methods_${dt}.txt" 2>&1 || note "methods $dt failed: $(tail -1 "$OUT/methods_${dt}.txt")"
  note "methods $dt done"
done

# 4. The same sampling step in diffusers (carried wheel), or torch's own SDPA UNet if it cannot load.
py=python3; [ "$DRY" = 1 ] && py=$root/.venv/bin/python
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > /dev/null 2>&1 || true
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
$py scripts/device_baseline.py --config $config --device $device --dtypes $dtypes --out "$OUT/baseline.json" \
  > "$OUT/baseline.txt" 2>&1 || note "baseline failed: $(tail -1 "$OUT/baseline.txt")"
note "baseline done"

$py scripts/device_report.py "$OUT" > "$OUT/results.md"
note "wrote $OUT/results.json and $OUT/results.md"
cat "$OUT/results.md"
exit $tests_rc
