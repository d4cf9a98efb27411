#!/usr/bin/env bash
# ctest-labels: mpi;slow
# graft launch: the mpirun command it builds, the launch mistakes it refuses up front
# (exit 2, one line), and a real 2-rank run through it.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
"$GRAFT" data fmnist --out tr --classes 0-2 --per-class 100 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: l1
model: {arch: mlp, hidden: [16]}
data: {train: tr, batch_size: 30}
optim: {lr: 0.003}
train: {max_steps: 12, log_every: 4}
launch: {np: 2, env: {GRAFT_EXAMPLE: "a b"}}
YAML
cores=$(nproc)
env -u OPENBLAS_THREAD_TIMEOUT "$GRAFT" launch cfg.yaml optim.lr=0.002 --dry-run >dry.out 2>dry.err
root=""
[ "$(id -u)" -eq 0 ] && root=" --allow-run-as-root"
want="mpirun --quiet -np 2$root -x OPENBLAS_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) -x OPENBLAS_THREAD_TIMEOUT=4 -x 'GRAFT_EXAMPLE=a b' $GRAFT train cfg.yaml optim.lr=0.002"
[ "$(cat dry.out)" = "$want" ] && ok "dry run: $want" || { bad "dry run"; echo " got: $(cat dry.out)"; echo "want: $want"; }

expect_bad_input "too many ranks" "launch.np 64 is more than the $cores cores on this machine; add --oversubscribe" \
  -- "$GRAFT" launch cfg.yaml launch.np=64 --dry-run
expect_bad_input "unknown host" "launch.hosts: unknown host 'no-such-host.invalid'" \
  -- "$GRAFT" launch cfg.yaml 'launch.hosts=[no-such-host.invalid:2]' --dry-run
expect_bad_input "bad slots" "launch.hosts\[0\]: 'localhost:x': expected host:slots" \
  -- "$GRAFT" launch cfg.yaml 'launch.hosts=[localhost:x]' --dry-run
expect_bad_input "missing hostfile" "launch.hostfile: nohosts.txt: cannot open: No such file" \
  -- "$GRAFT" launch cfg.yaml launch.hostfile=nohosts.txt --dry-run
expect_bad_input "no mpirun" "mpirun not found on PATH" -- env PATH=/nonexistent "$GRAFT" launch cfg.yaml --dry-run

"$GRAFT" train cfg.yaml experiment=l0 >l0.out 2>&1 || { bad "single"; cat l0.out; }
# bad input found by every rank: one line (rank 0's), exit 2, no mpirun notices
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout 120 "$GRAFT" launch cfg.yaml experiment=lbad \
  data.val=nosuch >lbad.out 2>&1
rc=$?
[ $rc -eq 2 ] && [ "$(grep -c ERROR lbad.out)" -eq 1 ] && grep -q "\[rank 0\] ERROR .*nosuch/index.json" lbad.out &&
  ! grep -q -- "------" lbad.out && [ ! -e runs/lbad ] &&
  ok "a missing data.val on 2 ranks: exit 2, rank 0's one line, no mpirun notices" ||
  { bad "bad input under launch: exit $rc"; cat lbad.out; }
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout 120 "$GRAFT" launch cfg.yaml >l1.out 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "all 2 replicas are bit-identical" l1.out &&
  d=$(python3 "$GRAFT_SOURCE_DIR/tests/tools/compare_safetensors.py" runs/l0/model.safetensors runs/l1/model.safetensors --tol 3e-4); then
  ok "graft launch ran 2 ranks: $d"
else
  bad "graft launch: exit $rc"; tail -5 l1.out
fi
finish
