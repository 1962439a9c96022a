#!/usr/bin/env bash
# Installs the Debian packages gmserve needs to build and test, when missing.
# Usage: scripts/install-deps.sh [--torch] [--bench] [--browser] [--fuzz] [--format]
#   --torch    python3-torch and Fashion-MNIST: to regenerate fixtures, train,
#              or benchmark against PyTorch
#   --bench    wrk, perf, and FastAPI + uvicorn (with uvloop and httptools) and
#              PIL for the peer server of make bench-peer (with --torch)
#   --fuzz     clang and its libFuzzer runtime: for make fuzz
#   --format   clang-format: for make format-check
#   --browser  chromium, and node and npm when missing: for make test-browser
set -euo pipefail
pkgs=(build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev
      libopenblas0-pthread libpng-dev zlib1g-dev libcmocka-dev curl python3) # curl, python3: the README lines (tests/readme_curl.sh)
for arg in "$@"; do
    case $arg in
    --torch) pkgs+=(python3-torch dataset-fashion-mnist) ;;
    --bench) pkgs+=(wrk linux-perf python3-fastapi python3-uvicorn python3-uvloop python3-httptools python3-pil) ;;
    --fuzz) pkgs+=(clang libclang-rt-dev) ;;
    --format) pkgs+=(clang-format) ;;
    --browser)
        pkgs+=(chromium)
        command -v node >/dev/null || pkgs+=(nodejs)
        command -v npm >/dev/null || pkgs+=(npm) ;;
    *) echo "install-deps: unknown option $arg"; exit 2 ;;
    esac
done
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
