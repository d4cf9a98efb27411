#!/usr/bin/env bash
# A FIFO or a directory where graft expects a file (the config, a dataset's index.json,
# a checkpoint's MANIFEST, a text to tokenize, a safetensors file): one line naming
# the path, exit 2, and never a hang (each command runs under a timeout).
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
mkfifo pipe.yaml
expect_bad_input "config is a FIFO" "pipe.yaml: cannot read: not a regular file" \
  -- timeout 20 "$GRAFT" train pipe.yaml
mkdir dir.yaml
expect_bad_input "config is a directory" "dir.yaml: cannot read: Is a directory" \
  -- timeout 20 "$GRAFT" train dir.yaml

mkdir -p fifo_data
mkfifo fifo_data/index.json
cat >ok.yaml <<YAML
experiment: e2e_fifo
model: {arch: mlp}
data: {train: fifo_data}
optim: {lr: 0.001}
train: {epochs: 1}
YAML
expect_bad_input "index.json is a FIFO" "fifo_data/index.json: cannot read: not a regular file" \
  -- timeout 20 "$GRAFT" train ok.yaml
[ ! -e runs/e2e_fifo ] && ok "no run directory" || bad "a run directory was created"

mkfifo text.txt
expect_bad_input "text is a FIFO" "text.txt: cannot read: not a regular file" \
  -- timeout 20 "$GRAFT" data text --out tok --tokenizer bytes text.txt
mkfifo weights.safetensors
expect_bad_input "weights are a FIFO" "weights.safetensors: not a regular file" \
  -- timeout 20 "$GRAFT" inspect weights.safetensors

mkdir -p ck/step-00000001
mkfifo ck/step-00000001/MANIFEST
expect_bad_input "MANIFEST is a FIFO" "ck/step-00000001: cannot read MANIFEST: not a regular file" \
  -- timeout 20 "$GRAFT" ckpt verify ck/step-00000001
finish
