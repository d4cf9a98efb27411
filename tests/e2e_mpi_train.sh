#!/usr/bin/env bash
# ctest-labels: mpi;slow
# Data-parallel training under mpirun with 2, 3 and 4 ranks:
# - replicas end bit-identical, and match single-process training with the same global
#   batch within float-summation tolerance (max |diff| / max |w| per tensor <= 3e-4 after 42 AdamW steps);
# - a global batch that neither divides the dataset nor the ranks (ragged ends) runs;
# - gradient accumulation (micro-batches) gives the same weights;
# - with half the layers frozen, comm_bytes = 4 x trainable elements per step exactly;
# - a rank whose set-up fails alone ends the job with its one line, exit 2, no abort;
#   ranks that disagree on the config stop at the start-up check instead of hanging.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
run_mpi() { # NP ARGS...
  local np=$1
  shift
  # (Open MPI keeps start-up allocations until exit: no leak check inside mpirun)
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout 120 mpirun -np "$np" --oversubscribe \
    --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 -x ASAN_OPTIONS "$@"
}
cmp_weights() { python3 "$GRAFT_SOURCE_DIR/tests/tools/compare_safetensors.py" "$@"; }

"$GRAFT" data fmnist --out tr --classes 0-4 --per-class 200 >/dev/null &&
  "$GRAFT" data fmnist --out te --split test --classes 0-4 --per-class 60 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: single
model: {arch: mlp, hidden: [64, 32, 16]}
data: {train: tr, val: te, batch_size: 48}   # 1000 samples: 20 batches of 48 + one of 40
optim: {name: adamw, lr: 0.003}
train: {epochs: 2, log_every: 7}
YAML
"$GRAFT" train cfg.yaml >single.out 2>&1 || { bad "single-process run"; cat single.out; }

for np in 2 3 4; do
  run_mpi $np "$GRAFT" train cfg.yaml experiment=dp$np >dp$np.out 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q "all $np replicas are bit-identical" dp$np.out &&
    d=$(cmp_weights runs/single/model.safetensors runs/dp$np/model.safetensors --tol 3e-4); then
    ok "np=$np: replicas identical; vs single process: $d"
  else
    bad "np=$np: exit $rc ${d:-}"; tail -5 dp$np.out
  fi
done

run_mpi 2 "$GRAFT" train cfg.yaml experiment=accum data.micro_batch=7 >accum.out 2>&1 &&
  d=$(cmp_weights runs/single/model.safetensors runs/accum/model.safetensors --tol 3e-4) &&
  ok "np=2 with micro-batches of 7 (4 per step): $d" || { bad "accumulation ${d:-}"; tail -5 accum.out; }

run_mpi 2 "$GRAFT" train cfg.yaml experiment=frozen 'freeze.frozen=[hidden.0.*, hidden.1.*]' \
  >frozen.out 2>&1 || { bad "frozen run"; tail -5 frozen.out; }
want=$(( 4 * (32 * 16 + 16 + 16 * 5 + 5) ))
got=$(python3 -c "
import json
print(sorted({json.loads(l)['comm_bytes'] for l in open('runs/frozen/metrics.jsonl')}))")
[ "$got" = "[$want]" ] && ok "half the layers frozen: comm_bytes $want per step (4 x 613 trainable)" ||
  bad "comm_bytes $got, expected [$want]"

# MPMD: rank 1 gets a config whose training set does not exist.
sed 's|train: tr,|train: missing,|' cfg.yaml >broken.yaml
start=$(date +%s)
run_mpi 1 "$GRAFT" train cfg.yaml experiment=fail : -np 1 "$GRAFT" train broken.yaml experiment=fail >fail.out 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "\[rank 1\] ERROR .*missing/index.json" fail.out &&
  [ "$(grep -c ERROR fail.out)" -eq 1 ] && ! grep -q "MPI_ABORT" fail.out && [ ! -e runs/fail ]; then
  ok "a rank failing its set-up alone ends the job (exit 2 after $(($(date +%s) - start)) s, no abort) with its one line, nothing left behind"
else
  bad "failing rank: exit $rc"; cat fail.out
fi
run_mpi 1 "$GRAFT" train cfg.yaml experiment=mix : -np 1 "$GRAFT" train cfg.yaml experiment=mix optim.lr=0.1 >mix.out 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "rank 1 differs from rank 0 in config digest" mix.out &&
  ok "ranks with different configs stop at the start-up check (exit 2)" || { bad "config mismatch: exit $rc"; cat mix.out; }
finish
