#!/usr/bin/env bash
# ctest-labels: mpi;slow
# Non-finite numbers, as users meet them: a huge learning rate (optim.lr=1e30) makes the
# loss overflow within a few steps.
# - train.on_nonfinite=stop (the default): exit 1 with one line naming the step and what
#   went non-finite, at np=1 and under mpirun at np=2; metrics.jsonl keeps the window
#   with null for the non-finite values; no weights are written.
# - skip: the updates are skipped (the optimizer's step count stays), counted in
#   metrics.jsonl (skipped_steps), eval.json keeps its keys as null, replicas stay
#   bit-identical at np=2, a resumed run writes the same weights (and stops where the
#   uninterrupted one stops), batchnorm statistics are left as they were; more than
#   train.max_nonfinite_steps in a row stop with exit 1.
# - model.init and graft eval --weights refuse a file with NaN or infinite values:
#   exit 2 naming the file and the tensor, nothing left behind.
# - graft launch does not restart a job that stopped at a non-finite step.
# - graft plot draws such runs (null values are gaps).
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
export OPENBLAS_NUM_THREADS=1
run_mpi() { # NP ARGS... (-q: mpirun adds no banner of its own to a rank's exit status)
  local np=$1
  shift
  timeout 120 mpirun -q -np "$np" --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 "$@"
}
# field FILE KEY: the KEY of the last line of a metrics.jsonl, as JSON ("missing" if absent)
field() {
  python3 -c 'import json,sys; o=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(json.dumps(o.get(sys.argv[2], "missing")))' "$1" "$2"
}
# expect_nonfinite_stop NAME PATTERN -- CMD...: exit 1, exactly one line on stderr that
# is not INFO or WARN, matching PATTERN.
expect_nonfinite_stop() {
  local name=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(grep -Evc '^\[rank [0-9]+\] (INFO|WARN) ' "$tmp/err")
  if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -Eq -- "$pattern" "$tmp/err"; then
    ok "$name: $(grep -Ev '^\[rank [0-9]+\] (INFO|WARN) ' "$tmp/err")"
  else
    bad "$name: exit $rc, $lines stderr lines besides INFO/WARN (want 1 and one line matching '$pattern'):"
    cat "$tmp/err"
  fi
}

"$GRAFT" data fmnist --out img --classes 0-4 --per-class 64 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: x
model: {arch: mlp, hidden: [64, 32]}
data: {train: img, batch_size: 16}
optim: {lr: 1.0e30}
train: {max_steps: 12, log_every: 3}
YAML

# --- stop ---------------------------------------------------------------------------
stop_line='step 3: non-finite loss nan and gradient norm nan: stopping \(train.on_nonfinite: stop\)'
expect_nonfinite_stop "np=1: lr 1e30 stops at the first non-finite step" "$stop_line" -- \
  "$GRAFT" train cfg.yaml experiment=stop1
[ ! -e runs/stop1/model.safetensors ] && ok "np=1 stop: no weights written" ||
  bad "np=1 stop wrote model.safetensors"
[ "$(field runs/stop1/metrics.jsonl step)" = 3 ] && [ "$(field runs/stop1/metrics.jsonl grad_norm)" = null ] &&
  [ "$(field runs/stop1/metrics.jsonl skipped_steps)" = 1 ] &&
  ok "np=1 stop: metrics.jsonl ends with the stopping step, grad_norm null" ||
  { bad "np=1 stop: metrics.jsonl"; cat runs/stop1/metrics.jsonl; }
expect_nonfinite_stop "np=2 (mpirun): the same stop, one line, no abort" "$stop_line" -- \
  run_mpi 2 "$GRAFT" train cfg.yaml experiment=stop2
grep -q MPI_ABORT "$tmp/err" && bad "np=2 stop went through MPI_Abort"

# --- skip ---------------------------------------------------------------------------
"$GRAFT" train cfg.yaml experiment=skip1 train.on_nonfinite=skip train.max_nonfinite_steps=100 \
  data.val=img checkpoint.every_steps=6 >skip1.out 2>&1 &&
  ok "np=1 skip: the run finishes (exit 0)" || { bad "np=1 skip"; cat skip1.out; }
grep -q 'WARN .*step 3: non-finite loss nan and gradient norm nan: update skipped (1 in a row' skip1.out &&
  ok "np=1 skip: each skipped step is logged" || bad "np=1 skip: no warning for step 3"
python3 - runs/skip1 <<'PY' && ok "np=1 skip: every metrics key kept (null when non-finite), skipped steps counted" || bad "np=1 skip: metrics.jsonl"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
keys = set(lines[0])
assert all(set(l) == keys for l in lines), "keys differ between lines"
assert [l["skipped_steps"] for l in lines] == [1, 3, 3, 3], lines
assert lines[0]["loss"] is not None and lines[1]["loss"] is None and lines[1]["grad_norm"] is None
PY
python3 - runs/skip1 <<'PY' && ok "np=1 skip: the optimizer's step count stops at the last finite step (2 of 12)" || bad "np=1 skip: optimizer step"
import json, sys
state = json.load(open(sys.argv[1] + "/checkpoints/step-00000012/state.json"))
assert state["step"] == 12 and state["optimizer"]["step"] == 2, state
PY
python3 - runs/skip1/eval.json <<'PY' && ok "np=1 skip: eval.json keeps loss as null" || { bad "np=1 skip: eval.json"; cat runs/skip1/eval.json; }
import json, sys
e = json.load(open(sys.argv[1]))
assert "loss" in e and e["loss"] is None and "accuracy" in e and "per_class" in e, e
PY
# exact resume: from the step-6 checkpoint (in the middle of the skipped steps)
mkdir -p runs/skip1r && cp -r runs/skip1/checkpoints runs/skip1r/ && rm -rf runs/skip1r/checkpoints/step-00000012
"$GRAFT" train cfg.yaml experiment=skip1r train.on_nonfinite=skip train.max_nonfinite_steps=100 \
  data.val=img checkpoint.every_steps=6 checkpoint.resume=runs/skip1r/checkpoints/step-00000006 \
  >skip1r.out 2>&1 && cmp -s runs/skip1/model.safetensors runs/skip1r/model.safetensors &&
  ok "np=1 skip: a run resumed at step 6 writes the same weights" || { bad "np=1 skip: resume"; tail -3 skip1r.out; }
# the count of non-finite steps in a row is kept in checkpoints: a run resumed in the
# middle of them stops at the same step as the uninterrupted one (step 11, not 15)
streak_line='step 11: non-finite loss nan and gradient norm nan, 9 non-finite steps in a row: stopping \(train.max_nonfinite_steps: 8\)'
expect_nonfinite_stop "np=1 skip: 9 in a row stop at step 11" "$streak_line" -- \
  "$GRAFT" train cfg.yaml experiment=streak train.on_nonfinite=skip train.max_nonfinite_steps=8 checkpoint.every_steps=6
grep -q '"nonfinite_in_a_row": 4' runs/streak/checkpoints/step-00000006/state.json &&
  ok "np=1 skip: the checkpoint at step 6 records 4 non-finite steps in a row" || bad "state.json: nonfinite_in_a_row"
mkdir -p runs/streak_r && cp -r runs/streak/checkpoints runs/streak_r/
expect_nonfinite_stop "np=1 skip: resumed at step 6, the same stop at step 11" "$streak_line" -- \
  "$GRAFT" train cfg.yaml experiment=streak_r train.on_nonfinite=skip train.max_nonfinite_steps=8 checkpoint.every_steps=6 \
  checkpoint.resume=runs/streak_r/checkpoints/step-00000006
expect_nonfinite_stop "np=1 skip: more than train.max_nonfinite_steps in a row stop" \
  'step 8: non-finite loss nan and gradient norm nan, 6 non-finite steps in a row: stopping \(train.max_nonfinite_steps: 5\)' -- \
  "$GRAFT" train cfg.yaml experiment=skip_limit train.on_nonfinite=skip train.max_nonfinite_steps=5
run_mpi 2 "$GRAFT" train cfg.yaml experiment=skip2 train.on_nonfinite=skip train.max_nonfinite_steps=100 \
  >skip2.out 2>&1 && grep -q "all 2 replicas are bit-identical" skip2.out &&
  ok "np=2 skip: same steps skipped on both ranks, replicas bit-identical" || { bad "np=2 skip"; tail -5 skip2.out; }

# a skipped step changes nothing: not even batchnorm running statistics, which the
# forward pass updates (resnet18 at lr 1e30: the gradient norm overflows from step 2)
"$GRAFT" train cfg.yaml experiment=bn model='{arch: resnet18, small_stem: true, width: 4}' train.max_steps=6 \
  train.on_nonfinite=skip train.max_nonfinite_steps=100 >bn.out 2>&1 &&
  grep -q "step 2: non-finite gradient norm nan: update skipped" bn.out &&
  python3 - runs/bn/model.safetensors <<'PY' && ok "skip: batchnorm running statistics stay finite" || { bad "skip: batchnorm buffers"; tail -3 bn.out; }
import json, math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
bad = 0
for name, t in json.loads(b[8:8 + n]).items():
    if "running" in name:
        s, e = t["data_offsets"]
        bad += sum(not math.isfinite(x) for x in struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e]))
assert bad == 0, bad
PY

# --- graft launch does not restart a non-finite stop -----------------------------------
# The run has a checkpoint at step 2 and goes non-finite at step 3: a restart would
# resume at step 2 and stop at step 3 again. (-q: no mpirun banner after the one line.)
timeout 180 "$GRAFT" launch cfg.yaml experiment=launched launch.np=2 launch.max_restarts=2 \
  checkpoint.every_steps=2 'launch.mpirun_args=["-q"]' >launch.out 2>launch.err
rc=$?
others=$(grep -Ev '^\[rank [0-9]+\] (INFO|WARN) |^graft launch: warning: running as root' launch.err)
[ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$others" | grep -c .)" -eq 1 ] &&
  printf '%s\n' "$others" | grep -q "step 3: non-finite loss nan and gradient norm nan: stopping" &&
  [ "$(grep -c 'INFO run_loop: training launched' launch.err)" -eq 1 ] && [ -e runs/launched/nonfinite.json ] &&
  [ -d runs/launched/checkpoints/step-00000002 ] &&
  ok "graft launch: a non-finite stop exits 1 with one line, not restarted" ||
  { bad "graft launch on a non-finite stop: exit $rc"; cat launch.err; }

# --- graft plot draws runs with null values -------------------------------------------
"$GRAFT" plot runs/skip1 >plot.out 2>&1 && [ -s runs/skip1/plots/loss.png ] && [ -s runs/skip1/plots/lr.png ] &&
  ok "graft plot draws a run with null losses" || { bad "graft plot on a non-finite run"; cat plot.out; }

# --- weights with NaN or infinity are refused ---------------------------------------------
"$GRAFT" train cfg.yaml experiment=good optim.lr=0.003 >good.out 2>&1 || { bad "finite run"; cat good.out; }
# poison FILE_IN FILE_OUT TENSOR INDEX VALUE: a copy with one F32 value replaced
poison() {
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, name, index, value = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
b = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
start = 8 + n + json.loads(b[8:8 + n])[name]["data_offsets"][0] + 4 * index
b[start:start + 4] = struct.pack("<f", value)
open(dst, "wb").write(b)
PY
}
poison runs/good/model.safetensors nan.safetensors hidden.1.weight 7 nan
poison runs/good/model.safetensors inf.safetensors head.bias 0 -inf
expect_bad_input "model.init with a NaN" \
  "nan.safetensors: tensors that do not fit the model \(1\): hidden.1.weight \(1 of 2048 values NaN or infinite\)" -- \
  "$GRAFT" train cfg.yaml experiment=init_nan optim.lr=0.003 model.init=nan.safetensors
[ ! -e runs/init_nan ] && ok "model.init with a NaN: nothing left behind" || bad "model.init with a NaN left runs/init_nan"
expect_bad_input "model.init with -inf" "inf.safetensors: .*head.bias \(1 of 5 values NaN or infinite\)" -- \
  "$GRAFT" train cfg.yaml experiment=init_inf optim.lr=0.003 model.init=inf.safetensors
expect_bad_input "model.init from a checkpoint whose weights went non-finite (named as the checkpoint)" \
  "runs/skip1/checkpoints/step-00000006: .*hidden.0.weight \(50176 of 50176 values NaN or infinite\)" -- \
  "$GRAFT" train cfg.yaml experiment=init_ckpt optim.lr=0.003 model.init=runs/skip1/checkpoints/step-00000006
expect_bad_input "graft eval --weights with a NaN" "nan.safetensors: .*hidden.1.weight \(1 of 2048" -- \
  "$GRAFT" eval cfg.yaml --weights nan.safetensors
finish
