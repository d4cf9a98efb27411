#!/usr/bin/env bash
# Installs every system package graft needs on Debian/Ubuntu. Idempotent: packages
# already installed are left alone, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config          # compiler and build
  libopenmpi-dev openmpi-bin                # MPI
  libopenblas-dev                           # BLAS (cblas_sgemm)
  libyaml-dev                               # experiment configs
  libjansson-dev                            # JSON: safetensors headers, index.json, metrics
  libxxhash-dev                             # checksums of shards and checkpoints
  zlib1g-dev                                # reading the .gz idx files
  libcmocka-dev                             # unit tests
  python3                                   # tests parse our files with Python's stdlib
  dataset-fashion-mnist                     # real data for the demo and tests
  gnuplot-nox                               # graft plot
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
