#!/usr/bin/env bash
# Prepares, on this (networked) machine, what scripts/device-check.sh needs on the GPU machine,
# which reaches no package registry: Debian's -dev packages the build needs (.devdeps/), the
# fixtures the CUDA tests read (.devshared/), and the diffusers wheel for the baseline (.whl/).
# The device tool sends at most 64 MiB: models/train-v3 (37 MB of resumable training state, not
# needed there) is moved aside to /tmp/sine-train-v3 -- `scripts/device-pack.sh --restore` after.
#   scripts/device-pack.sh && <device run: bash scripts/device-check.sh, carry .devdeps .devshared .whl>
#   scripts/device-pack.sh --restore
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --restore ]; then
  [ -d /tmp/sine-train-v3 ] && [ ! -e models/train-v3 ] && mv /tmp/sine-train-v3 models/train-v3
  git status --short models/ | head
  exit 0
fi
for d in .devdeps .devshared .whl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .devdeps .devshared/reference/tiny .devshared/data/clip .whl
(cd .devdeps && apt-get download libicu-dev libicu72 libpng-dev libpng16-16 nlohmann-json3-dev libcli11-dev \
   libgtest-dev libgmock-dev libstb-dev libstb0 zlib1g-dev >/dev/null)
shared=../shared
for f in tiny_sd15_original.safetensors tiny_config.json unet_io.safetensors vae_io.safetensors \
         clip_text_io.safetensors pipeline_txt2img.safetensors; do
  cp "$shared/reference/tiny/$f" .devshared/reference/tiny/
done
cp "$shared/data/clip/bpe_simple_vocab_16e6.txt.gz" .devshared/data/clip/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform any -d .whl diffusers==0.27.2 || echo "device-pack: no diffusers wheel"
if [ -d models/train-v3 ]; then mv models/train-v3 /tmp/sine-train-v3; fi
du -sh --exclude=.git --exclude='build*' --exclude=.venv . | sed 's/^/device-pack: working tree /'
