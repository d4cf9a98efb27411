#!/usr/bin/env bash
# ctest-labels: mpi
# Ranks agree on the data's content, not only its size: an MPMD job whose ranks run in
# different working directories, with a config naming the data by a relative path, sees
# a different dataset of the same size on each rank. It stops at the start-up check,
# exit 2, with one line naming the rank that differs, and leaves no run directory;
# the same data in both directories trains. graft eval checks the same way: the data
# it evaluates on and the weights it loads.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
mpmd() { # DIR_A DIR_B [COMMAND ARGS...]: one rank in each (default: graft train cfg.yaml)
  local a=$1 b=$2
  shift 2
  [ $# -gt 0 ] || set -- train cfg.yaml
  # (leak checks off under a sanitizer build, as for the mpi_* tests: Open MPI's own
  # allocations are reported at exit)
  ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe --allow-run-as-root \
    -x OPENBLAS_NUM_THREADS=1 -x ASAN_OPTIONS \
    -np 1 -wdir "$a" "$GRAFT" "$@" : -np 1 -wdir "$b" "$GRAFT" "$@"
}
cat >cfg.yaml <<YAML
experiment: agree
model: {arch: mlp, hidden: [8]}
data: {train: tr, val: te, batch_size: 10}
optim: {lr: 0.001}
train: {max_steps: 3}
YAML
mkdir A B C D
for d in A B C D; do cp cfg.yaml $d/; done
(cd A && "$GRAFT" data fmnist --out tr --classes 0-1 --per-class 30 >/dev/null &&
  "$GRAFT" data fmnist --out te --split test --classes 0-1 --per-class 10 >/dev/null) || bad "data A"
# B: other classes, the same number of samples
(cd B && "$GRAFT" data fmnist --out tr --classes 2-3 --per-class 30 >/dev/null) && cp -r A/te B/ || bad "data B"
# C: A's training data, another validation set
cp -r A/tr C/ && (cd C && "$GRAFT" data fmnist --out te --split test --classes 4-5 --per-class 10 >/dev/null) ||
  bad "data C"
cp -r A/tr A/te D/

# expect_refused NAME DIR_A DIR_B ITEM [COMMAND ARGS...]
expect_refused() {
  local name=$1 a=$2 b=$3 item=$4
  shift 4
  set -- "$name" "$a" "$b" "$item" "$@"
  mpmd "$a" "$b" "${@:5}" >"$1.out" 2>&1
  local rc=$? errors
  errors=$(grep -c "^\[rank [0-9]*\] ERROR" "$1.out")
  if [ $rc -eq 2 ] && [ "$errors" -eq 1 ] &&
    grep -q "\[rank 0\] ERROR .*rank 1 differs from rank 0 in $4 (digest [0-9a-f]* vs [0-9a-f]* on rank 0)" "$1.out" &&
    { [ $# -gt 4 ] || { [ ! -e "$2/runs" ] && [ ! -e "$3/runs" ]; }; }; then
    ok "$1: exit 2, $(grep "^\[rank" "$1.out" | grep ERROR)"
  else
    bad "$1: exit $rc, $errors error lines:"; cat "$1.out"
  fi
}
expect_refused "different training data" A B "training data"
expect_refused "different validation data" A C "validation data"
mpmd A D >same.out 2>&1 && grep -q "bit-identical" same.out && ok "the same data in both directories trains" ||
  { bad "same data: exit $?"; cat same.out; }

# graft eval: w.safetensors in each directory, the same weights in A, C and D at first
cp A/runs/agree/model.safetensors A/w.safetensors && cp A/w.safetensors C/ && cp A/w.safetensors D/ ||
  bad "weights"
(cd C && "$GRAFT" train cfg.yaml experiment=other train.max_steps=1 >/dev/null 2>&1) || bad "other weights"
expect_refused "eval, different data" A C "evaluation data" eval cfg.yaml --weights w.safetensors
mpmd A D eval cfg.yaml --weights w.safetensors >eval_same.out 2>&1 && grep -q "w.safetensors on te: loss" eval_same.out &&
  ok "eval with the same data and weights in both directories" || { bad "eval same: exit $?"; cat eval_same.out; }
cp C/runs/other/model.safetensors D/w.safetensors
expect_refused "eval, different weights" A D "weights" eval cfg.yaml --weights w.safetensors
finish
