#!/usr/bin/env bash
# ctest-labels: slow
# Weights in and out of safetensors through the CLI: a run's model.safetensors can be
# inspected, evaluated (with a config that has no training keys) and used as model.init
# of a new run; a checkpoint exports in F16 and BF16; a warmup longer than a trial run
# warns; damaged or mismatched weights files give one line and exit 2.
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

# Evaluating needs no training keys: a config with no train section evaluates.
cat >evalcfg.yaml <<YAML
experiment: w
model: {arch: mlp, hidden: [64]}
data: {train: tr, val: te, batch_size: 50}
YAML
"$GRAFT" eval evalcfg.yaml --weights "$w" >eval.out 2>&1 && grep -q "model.safetensors on te: loss" eval.out &&
  ok "eval without train.epochs or train.max_steps" || { bad "eval without training keys"; cat eval.out; }
expect_bad_input "train still needs optim.lr" "evalcfg.yaml: missing required key 'optim.lr'" \
  -- "$GRAFT" train evalcfg.yaml
expect_bad_input "train still needs a length" "evalcfg.yaml: train: set train.epochs or train.max_steps" \
  -- "$GRAFT" train evalcfg.yaml optim.lr=0.01

# A short trial of a config with a long warmup trains on the unfinished warmup, with one
# warning (on 2 ranks too), as PyTorch and Hugging Face schedules do.
# (leak checks off under a sanitizer build, as for the mpi_* tests: Open MPI's own
# allocations are reported at exit)
ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun -np 2 --oversubscribe --allow-run-as-root \
  -x OPENBLAS_NUM_THREADS=1 -x ASAN_OPTIONS "$GRAFT" train cfg.yaml experiment=wu \
  schedule.warmup_steps=100 train.max_steps=20 checkpoint.every_steps=10 >wu.out 2>&1 &&
  [ "$(grep -c 'WARN.*schedule.warmup_steps 100 is not shorter than the run.s 20 steps' wu.out)" = 1 ] &&
  [ -s runs/wu/model.safetensors ] &&
  ok "warmup_steps 100 with train.max_steps=20: trains, one warning" ||
  { bad "warmup longer than the run"; cat wu.out; }

# graft ckpt export --dtype: half-precision files that evaluate like the F32 weights.
"$GRAFT" eval cfg.yaml --weights runs/wu/model.safetensors >e32.out 2>&1 || { bad "eval f32"; cat e32.out; }
loss32=$(sed -n 's/.* on te: loss \([0-9.]*\).*/\1/p' e32.out)
for dt in f16 bf16; do
  "$GRAFT" ckpt export runs/wu/checkpoints --out "w_$dt.safetensors" --dtype "$dt" >"x_$dt.out" 2>&1 &&
    grep -q "tensors (${dt^^})" "x_$dt.out" &&
    "$GRAFT" inspect "w_$dt.safetensors" | grep -q "hidden.0.weight *${dt^^} *\[64, 784\]" &&
    "$GRAFT" eval cfg.yaml --weights "w_$dt.safetensors" >"e_$dt.out" 2>&1 &&
    loss=$(sed -n 's/.* on te: loss \([0-9.]*\).*/\1/p' "e_$dt.out") &&
    awk -v a="$loss32" -v b="$loss" 'BEGIN { d = a - b; exit !(a > 0 && d < 0.01 && d > -0.01) }' &&
    ok "ckpt export --dtype $dt: $(stat -c %s "w_$dt.safetensors") bytes, eval loss $loss32 -> $loss" ||
    { bad "ckpt export --dtype $dt"; cat "x_$dt.out" "e_$dt.out"; }
done
expect_bad_input "export --dtype f8" "graft ckpt export: --dtype: expected f32, f16 or bf16, found 'f8'" \
  -- "$GRAFT" ckpt export runs/wu/checkpoints --out w8.safetensors --dtype f8
[ ! -e w8.safetensors ] && ok "a refused export writes nothing" || bad "w8.safetensors written"

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
