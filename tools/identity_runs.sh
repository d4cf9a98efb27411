#!/usr/bin/env bash
# Byte-identity of refactors: trains small mlp, resnet18, gpt2, bert (classifier and
# masked LM) and vit runs -- full, partly frozen, with dropout -- with the graft binary
# GRAFT and prints "sha256  run" for every model.safetensors, so two builds (before and
# after a change) can be compared line for line:
#
#   tools/identity_runs.sh build/graft > after.txt
#   git worktree add /tmp/base REV && cmake -S /tmp/base -B /tmp/base/build && \
#     cmake --build /tmp/base/build -j2 && tools/identity_runs.sh /tmp/base/build/graft > before.txt
#   diff before.txt after.txt
#
# An architecture the binary does not know (vit before it existed) is listed as
# "unsupported". Uses real Fashion-MNIST and fortunes; one OpenBLAS thread.
set -euo pipefail
GRAFT=$(realpath "${1:?usage: identity_runs.sh GRAFT}")
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fortunes=/usr/share/games/fortunes

"$GRAFT" data fmnist --out img --classes 0-4 --per-class 64 >/dev/null
"$GRAFT" data text --out tok --tokenizer bytes "$fortunes/science" "$fortunes/computers" >/dev/null
"$GRAFT" data text --out seq --tokenizer bytes --classify --seq-len 32 \
  "$fortunes/science" "$fortunes/computers" >/dev/null

# run NAME YAML [overrides...]: train, then print the weights' digest.
run() {
  local name=$1 yaml=$2
  shift 2
  printf '%s\n' "$yaml" >"$name.yaml"
  if "$GRAFT" train "$name.yaml" experiment="$name" "$@" >"$name.out" 2>&1; then
    echo "$(sha256sum <"runs/$name/model.safetensors" | cut -c1-64)  $name"
  elif grep -q "unknown architecture" "$name.out"; then
    echo "unsupported  $name"
  else
    echo "FAILED  $name: $(tail -n 1 "$name.out")"
  fi
}

common='data: {train: img, batch_size: 16}
optim: {lr: 0.003}
train: {max_steps: 6, log_every: 3}'
run mlp "experiment: x
model: {arch: mlp, hidden: [64, 32]}
$common"
resnet="experiment: x
model: {arch: resnet18, small_stem: true, width: 4, dropout: 0.2}
$common"
run resnet18 "$resnet"
run resnet18_layer4 "$resnet" 'freeze.trainable=["layer4.*", "fc.*"]'
run resnet18_fc_bntrain "$resnet" 'freeze.trainable=["fc.*"]' freeze.bn=train
run resnet50 "$resnet" model.arch=resnet50 'freeze.trainable=["layer3.1.*", "layer4.*", "fc.*"]'

gpt2='experiment: x
model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: 32, n_positions: 32, dropout: 0.1}
data: {train: tok, batch_size: 8, seq_len: 32}
optim: {lr: 0.003}
train: {max_steps: 6, log_every: 3}'
run gpt2 "$gpt2"
run gpt2_upper "$gpt2" 'freeze.trainable=["transformer.h.1.mlp.*", "transformer.ln_f.*"]'

bert='experiment: x
model: {arch: bert, n_layer: 2, n_head: 2, n_embd: 32, n_positions: 32, dropout: 0.1}
data: {train: seq, batch_size: 8}
optim: {lr: 0.003}
train: {max_steps: 6, log_every: 3}'
run bert_cls "$bert"
run bert_cls_head "$bert" 'freeze.trainable=["bert.encoder.layer.1.output.*", "bert.pooler.*", "classifier.*"]'
run bert_mlm "$bert" data.train=tok data.seq_len=32 model.mask_token_id=0

vit='experiment: x
model: {arch: vit, patch_size: 4, n_layer: 2, n_head: 2, n_embd: 32, dropout: 0.1}
data: {train: img, batch_size: 8}
optim: {lr: 0.003}
train: {max_steps: 6, log_every: 3}'
run vit "$vit"
run vit_head "$vit" 'freeze.trainable=["encoder.layers.encoder_layer_1.mlp.*", "encoder.ln.*", "heads.*"]'
