#!/usr/bin/env bash
# Installs the Debian packages gmserve needs to build and test, when missing.
# Usage: scripts/install-deps.sh [--torch]   (--torch adds python3-torch and
# Fashion-MNIST, needed only to regenerate fixtures, train or benchmark
# against PyTorch).
set -euo pipefail
pkgs=(build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev
      libopenblas0-pthread libpng-dev libcmocka-dev curl)
[ "${1:-}" = "--torch" ] && pkgs+=(python3-torch dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
