#!/usr/bin/env bash
# ctest-labels: slow
# Weights in and out of safetensors through the CLI: a run's model.safetensors can be
# inspected, evaluated and used as model.init of a new run; damaged or mismatched
# weights files give one line and exit 2.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
"$GRAFT" data fmnist --out tr --classes 0-4 --per-class 400 >/dev/null &&
  "$GRAFT" data fmnist --out te --split test --classes 0-4 --per-class 100 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: w
model: {arch: mlp, hidden: [64]}
data: {train: tr, val: te, batch_size: 50}
optim: {lr: 0.002}
train: {epochs: 2, log_every: 10}
YAML
"$GRAFT" train cfg.yaml >train.out 2>&1 || { cat train.out; bad "train"; }
w=runs/w/model.safetensors
acc1=$(sed -n 's/^test accuracy: //p' train.out)
[ -s "$w" ] && [ ! -e "$w.tmp" ] && ok "weights written ($(stat -c %s "$w") bytes), no .tmp left" ||
  bad "weights file missing or .tmp left behind"

"$GRAFT" inspect "$w" >inspect.out 2>&1
grep -q "hidden.0.weight *F32 *\[64, 784\]" inspect.out && grep -q "4 tensors" inspect.out &&
  ok "inspect lists the tensors" || { bad "inspect output:"; cat inspect.out; }

# Starting from the saved weights with a negligible learning rate keeps the accuracy.
"$GRAFT" train cfg.yaml experiment=w2 model.init="$w" optim.lr=1e-12 train.epochs=1 >cont.out 2>&1 ||
  { cat cont.out; bad "train from model.init"; }
acc2=$(sed -n 's/^test accuracy: //p' cont.out)
grep -q "model.init .*: 4 matched, 0 missing, 0 unexpected" cont.out &&
  awk -v a="$acc1" -v b="$acc2" 'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }' &&
  ok "model.init from saved weights: accuracy $acc1 -> $acc2" ||
  { bad "model.init: accuracy '$acc1' -> '$acc2'"; cat cont.out; }

expect_bad_input "shape mismatch" "tensors that do not fit the model \(3\): hidden.0.weight \(file \[64, 784\], model \[32, 784\]\), hidden.0.bias" \
  -- "$GRAFT" train cfg.yaml experiment=w3 model.hidden=[32] model.init="$w"
expect_bad_input "missing weights" "nope.safetensors: .*No such file" -- "$GRAFT" eval cfg.yaml --weights nope.safetensors
head -c 1000 "$w" >trunc.safetensors
expect_bad_input "truncated weights (inspect)" "trunc.safetensors: " -- "$GRAFT" inspect trunc.safetensors
expect_bad_input "truncated weights (init)" "trunc.safetensors: " -- "$GRAFT" train cfg.yaml experiment=w4 model.init=trunc.safetensors
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":1,,,,,,,,,}' >json.safetensors
expect_bad_input "bad header json" "json.safetensors: " -- "$GRAFT" inspect json.safetensors
[ ! -e runs/w3 ] && [ ! -e runs/w4 ] && ok "failed runs left no run directory" || bad "run directory left behind"
finish
