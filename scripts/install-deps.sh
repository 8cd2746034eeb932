#!/usr/bin/env bash
# Installs every build and test dependency of sine: Debian 12's archive (apt), and with
# `--torch pip` (or SINE_TORCH=pip) also PyPI's torch 2.11 wheel -- a full LibTorch with CUDA 13 --
# into the project-local virtual environment .venv (never the system Python).
set -euo pipefail
cd "$(dirname "$0")/.."
torch_source="${SINE_TORCH:-debian}"
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) torch_source="${2:?--torch needs debian or pip}"; shift 2 ;;
    --torch=*) torch_source="${1#--torch=}"; shift ;;
    *) echo "install-deps.sh: unknown option '$1' (expected --torch debian|pip)" >&2; exit 2 ;;
  esac
done
case "$torch_source" in debian|pip) ;; *) echo "install-deps.sh: --torch must be debian or pip (got '$torch_source')" >&2; exit 2 ;; esac

pkgs=(build-essential cmake ninja-build ccache pkg-config git
      libtorch-dev libopenblas0-pthread
      libicu-dev libpng-dev zlib1g-dev libstb-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libgmock-dev libcpp-httplib-dev libssl-dev time
      chromium chromium-driver python3-selenium python3-pil  # the page's browser test
      clang-14 libfuzzer-14-dev)                              # make fuzz (libFuzzer, ASan, UBSan)
[ "$torch_source" = pip ] && pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$torch_source" = pip ]; then
  # Exactly the GPU machine's version (torch 2.11.0+cu130); pip's cache keeps a second install quick.
  TORCH_VERSION=2.11.0
  PYTHON="${PYTHON:-python3}"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "torch==$TORCH_VERSION"
  fi
  .venv/bin/python -c "import torch; print('install-deps: torch', torch.__version__, 'CUDA', torch.version.cuda, 'at', torch.utils.cmake_prefix_path)"
fi
