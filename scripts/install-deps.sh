#!/usr/bin/env bash
# Installs every build and test dependency of sine from Debian 12's archive.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config git
      libtorch-dev libopenblas0-pthread
      libicu-dev libpng-dev zlib1g-dev libstb-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libgmock-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
