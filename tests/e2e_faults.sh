#!/usr/bin/env bash
# ctest-labels: mpi;slow
# The fault matrix: real faults injected into real runs, each case bounded by a timeout.
#   1. SIGKILL of one rank mid-step at np=2 and np=4 under graft launch: restarted,
#      resumed, final weights byte-equal to an uninterrupted run's
#   2. SIGTERM while a checkpoint is being written: exit 75 after a verified checkpoint
#   3. disk full during a save (a small tmpfs as checkpoint.dir; root only): exit 1 with
#      one line, older checkpoints intact
#   4. a bit flip and a truncation in each checkpoint file: resume falls back to the
#      previous checkpoint, says why, and ends with the uninterrupted run's weights
#   5. NaN injected mid-run (a huge learning rate) under graft launch at np=2: exit 1
#      with one line naming the step, not restarted
#   6. two concurrent runs of one experiment: the second exits 2 naming the first's pid;
#      after kill -9 of the first a new run starts
#   7. Ctrl-C (SIGINT to the process group) of graft launch: exit 75, checkpoint verified,
#      resumed run equal to the uninterrupted one
#   8. a checkpoint save slower than comm.timeout_s (rank 0 stopped mid-save): no abort
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
export OPENBLAS_NUM_THREADS=1
mpi_flags=(--oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1)
# wait_for_step FILE N [SECONDS]: until metrics FILE has a line with step >= N
wait_for_step() {
  for _ in $(seq $((${3:-20} * 20))); do
    [ -f "$1" ] && [ "$(tail -n 1 "$1" | sed -n 's/.*"step": *\([0-9]*\).*/\1/p')" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# wait_for_path GLOB [SECONDS]: until something matches GLOB (polled every 10 ms)
wait_for_path() {
  for _ in $(seq $((${2:-20} * 100))); do
    compgen -G "$1" >/dev/null && return 0
    sleep 0.01
  done
  return 1
}
# rank_pid EXPERIMENT RANK: the pid of that rank of a running `graft train`
rank_pid() {
  local p
  for p in $(pgrep -f "$GRAFT train .*experiment=$1( |$)"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return 0; }
  done
  return 1
}
# errors FILE: the ERROR lines of a run's output
errors() { grep -c "ERROR" "$1"; }

"$GRAFT" data fmnist --out tr --classes 0-2 --per-class 100 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: ref
model: {arch: mlp, hidden: [64], dropout: 0.1}
data: {train: tr, batch_size: 32}
optim: {lr: 0.003}
train: {max_steps: 240, log_every: 5}
checkpoint: {every_steps: 20, keep_last: 3}
launch: {np: 2, max_restarts: 2, mpirun_args: [--oversubscribe], threads_per_rank: 1}
YAML

# ---- 1. SIGKILL of one rank mid-step under graft launch --------------------------------
for np in 2 4; do
  timeout 120 "$GRAFT" launch cfg.yaml launch.np=$np experiment=ref$np >ref$np.out 2>&1 ||
    { bad "uninterrupted run at np=$np"; tail -n 3 ref$np.out; }
  timeout 150 "$GRAFT" launch cfg.yaml launch.np=$np experiment=k$np >k$np.out 2>&1 &
  lp=$!
  if wait_for_step runs/k$np/metrics.jsonl 50 60 && victim=$(rank_pid k$np $((np - 1))); then
    kill -KILL "$victim"
  fi
  wait $lp
  rc=$?
  if [ $rc -eq 0 ] && grep -q "restart 1 of 2" k$np.out && grep -q "resuming from runs/k$np/checkpoints/step-" k$np.out &&
    cmp -s runs/ref$np/model.safetensors runs/k$np/model.safetensors; then
    ok "SIGKILL of rank $((np - 1)) of $np: $(grep -o 'resuming from [^:]*' k$np.out | tail -n 1), weights byte-equal"
  else
    bad "SIGKILL of one rank at np=$np: exit $rc"; grep -v '^ \|^-\|^$' k$np.out | tail -n 6
  fi
done

# ---- 2. SIGTERM while a checkpoint is written -----------------------------------------
# a model whose checkpoint (about 22 MB) takes a moment to write and fsync
big=(model.hidden=[1024,1024] train.max_steps=100000 checkpoint.every_steps=10)
timeout 60 "$GRAFT" train cfg.yaml experiment=term "${big[@]}" >term.out 2>&1 &
pid=$!
wait_for_path "runs/term/checkpoints/step-*.tmp" 30 && kill -TERM $pid
wait $pid
rc=$?
latest=$(cat runs/term/checkpoints/latest 2>/dev/null)
if [ $rc -eq 75 ] && grep -q "stopped by a signal at step .*: checkpoint saved and verified ($latest)" term.out &&
  "$GRAFT" ckpt verify "runs/term/checkpoints/$latest" >/dev/null 2>&1; then
  ok "SIGTERM during a checkpoint write: exit 75, $latest verified"
else
  bad "SIGTERM during a checkpoint write: exit $rc, latest '$latest'"; tail -n 3 term.out
fi

# A signal during the save before the final step (so it is seen at the end of the final
# step): the run finishes (final checkpoint, weights, exit 0), nothing is thrown away.
timeout 60 "$GRAFT" train cfg.yaml experiment=last "${big[@]}" train.max_steps=21 checkpoint.every_steps=20 >last.out 2>&1 &
pid=$!
wait_for_path "runs/last/checkpoints/step-00000020.tmp" 30 && kill -TERM $pid && sent=1 || sent=0
wait $pid
rc=$?
[ $sent -eq 1 ] && [ $rc -eq 0 ] && [ -s runs/last/model.safetensors ] && [ "$(cat runs/last/checkpoints/latest)" = step-00000021 ] &&
  ! grep -q "stopped by a signal" last.out && ok "SIGTERM before the final step: the run finished (exit 0, step-00000021, weights)" ||
  { bad "SIGTERM before the final step: exit $rc (signal sent: $sent)"; tail -n 3 last.out; }
# graft launch asked to stop while it waits to restart a failed job: no new start.
mkdir -p fail/latest.tmp # every save fails: with on_error stop each job exits 1 at step 10
timeout 60 "$GRAFT" launch cfg.yaml experiment=nore launch.np=1 launch.max_restarts=3 checkpoint.dir=fail \
  checkpoint.every_steps=10 checkpoint.on_error=stop >nore.out 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "restart 1 of 3 in 1 s" nore.out && break; sleep 0.01; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 1 ] && grep -q "stop signal received while waiting to restart: not restarting" nore.out &&
  [ "$(grep -c "INFO run_loop: training" nore.out)" -eq 1 ] &&
  ok "stop signal during the restart back-off: exit 1, the job not started again" ||
  { bad "stop during back-off: exit $rc, $(grep -c "INFO run_loop: training" nore.out) starts"; grep "graft launch" nore.out; }

# ---- 3. disk full during a save --------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "skip disk full: mounting a tmpfs needs root"
elif ! { mkdir -p full && mount -t tmpfs -o size=12m tmpfs full 2>/dev/null; }; then
  echo "skip disk full: cannot mount a tmpfs here"
else
  # one checkpoint of [1024] (about 9.7 MB) fits, a second one does not
  mid=(model.hidden=[1024] train.max_steps=100000 checkpoint.dir=full/ck)
  # a routine save that fails with checkpoint.on_error: stop
  timeout 60 "$GRAFT" train cfg.yaml experiment=full1 "${mid[@]}" checkpoint.every_steps=10 \
    checkpoint.on_error=stop >full1.out 2>&1
  rc=$?
  [ $rc -eq 1 ] && grep -q "No space left on device" full1.out && [ "$(cat full/ck/latest)" = step-00000010 ] &&
    "$GRAFT" ckpt verify full/ck/step-00000010 >/dev/null 2>&1 && ! compgen -G "full/ck/step-*.tmp" >/dev/null &&
    ok "disk full, on_error stop: exit 1, step-00000010 intact: $(grep -o 'checkpoint at step [0-9]* failed.*' full1.out)" ||
    { bad "disk full, on_error stop: exit $rc"; tail -n 3 full1.out; }
  # on_error: continue keeps training; the save of a stop signal fails: exit 1, not 75
  rm -rf full/ck
  timeout 60 "$GRAFT" train cfg.yaml experiment=full2 "${mid[@]}" checkpoint.every_steps=10 \
    checkpoint.on_error=continue >full2.out 2>&1 &
  pid=$!
  wait_for_step runs/full2/metrics.jsonl 25 30 && kill -TERM $pid
  wait $pid
  rc=$?
  said=$(grep -c "stopped by a signal at step [0-9]*, but its checkpoint could not be saved: exiting with 1" full2.out)
  [ $rc -eq 1 ] && [ "$said" -eq 1 ] && ! grep -q "exiting with 75" full2.out &&
    [ "$(cat full/ck/latest)" = step-00000010 ] && "$GRAFT" ckpt verify full/ck/step-00000010 >/dev/null 2>&1 &&
    ok "disk full at a stop signal: exit 1, one line: $(grep -o 'stopped by a signal.*' full2.out)" ||
    { bad "disk full at a stop signal: exit $rc"; tail -n 4 full2.out; }
  # a converter that runs out of space while writing: exit 1 (not bad input), nothing left
  rm -rf full/ck
  "$GRAFT" data fmnist --out full/ds --per-class 6000 >fullds.out 2>&1
  rc=$?
  [ $rc -eq 1 ] && grep -q "No space left on device" fullds.out && [ -z "$(ls -A full)" ] &&
    ok "disk full while converting: exit 1, nothing left" || { bad "disk full while converting: exit $rc"; tail -n 2 fullds.out; ls -A full; }
  umount full
fi

# ---- 4. a bit flip and a truncation in each checkpoint file ---------------------------
one=(launch.np=1 train.max_steps=40 checkpoint.every_steps=10)
"$GRAFT" train cfg.yaml experiment=dmg "${one[@]}" >dmg.out 2>&1 || bad "run to damage"
for f in model.safetensors optim.safetensors state.json config.yaml MANIFEST; do
  for how in flip cut; do
    name=dmg-${f%%.*}-$how
    rm -rf ck && cp -r runs/dmg/checkpoints ck && rm -rf ck/step-00000040 && echo step-00000030 >ck/latest
    target=ck/step-00000030/$f
    if [ $how = flip ]; then
      python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=4; open(p,"wb").write(b)' "$target"
    else
      truncate -s $(($(stat -c %s "$target") / 2)) "$target"
    fi
    timeout 30 "$GRAFT" train cfg.yaml experiment=$name "${one[@]}" checkpoint.dir=ck >$name.out 2>&1
    rc=$?
    why=$(grep -o "step-00000030: .*resuming from step-00000020 instead" $name.out)
    [ $rc -eq 0 ] && [ -n "$why" ] && cmp -s runs/dmg/model.safetensors runs/$name/model.safetensors &&
      ok "$how $f: $why; weights equal" || { bad "$how $f: exit $rc"; grep -v INFO $name.out | tail -n 3; }
  done
done

# ---- 5. NaN injected mid-run -----------------------------------------------------------
# A huge learning rate makes step 3 non-finite, after a checkpoint at step 2, under graft
# launch at np=2: exit 1 with one line naming the step, the job started once (a restart
# would resume at step 2 and stop at step 3 again), the step-2 checkpoint kept, no weights.
mkdir -p nan && (
  cd nan || exit
  printf '%s\n' 'experiment: nan' 'model: {arch: mlp, hidden: [64, 32]}' \
    'data: {train: ../tr, batch_size: 16}' 'optim: {lr: 1.0e30}' \
    'train: {max_steps: 12, log_every: 3}' 'checkpoint: {every_steps: 2}' \
    'launch: {np: 2, max_restarts: 2, threads_per_rank: 1, mpirun_args: [--oversubscribe, -q]}' >nan.yaml
  timeout 180 "$GRAFT" launch nan.yaml >launch.out 2>launch.err
  echo $? >rc
)
rc=$(cat nan/rc)
others=$(grep -Ev '^\[rank [0-9]+\] (INFO|WARN) |^graft launch: warning: running as root' nan/launch.err)
[ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$others" | grep -c .)" -eq 1 ] &&
  printf '%s\n' "$others" | grep -q 'step 3: non-finite loss nan and gradient norm nan: stopping' &&
  [ "$(grep -c 'run_loop: training nan:' nan/launch.err)" -eq 1 ] && ! grep -q restart nan/launch.err &&
  [ -d nan/runs/nan/checkpoints/step-00000002 ] && [ ! -e nan/runs/nan/model.safetensors ] &&
  ok "NaN mid-run at np=2 under graft launch: exit 1, one line, not restarted: $others" ||
  { bad "NaN mid-run: exit $rc"; cat nan/launch.err; }

# ---- 6. two concurrent runs of one experiment ------------------------------------------
long=(launch.np=1 train.max_steps=100000)
timeout 60 "$GRAFT" train cfg.yaml experiment=two "${long[@]}" >two1.out 2>&1 &
holder=$!
wait_for_step runs/two/metrics.jsonl 5 30
first=$(pgrep -P $holder)
timeout 20 "$GRAFT" train cfg.yaml experiment=two "${long[@]}" >two2.out 2>two2.err
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <two2.err)" -eq 1 ] && grep -q "runs/two is in use by another graft train (pid $first)" two2.err &&
  ok "second run of one experiment: exit 2: $(cat two2.err)" || { bad "second run: exit $rc"; cat two2.err; }
# the same checkpoint.dir under another experiment name, at np=2: every rank exits 2
timeout 60 mpirun -np 2 "${mpi_flags[@]}" "$GRAFT" train cfg.yaml experiment=other "${long[@]}" \
  checkpoint.dir=runs/two/checkpoints >two3.out 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "runs/two/checkpoints is in use by another graft train (pid $first)" two3.out &&
  [ ! -e runs/other ] && ok "shared checkpoint.dir at np=2: exit 2, nothing left behind" ||
  { bad "shared checkpoint.dir at np=2: exit $rc"; grep ERROR two3.out | head -n 3; }
kill -KILL $first
wait $holder 2>/dev/null
timeout 60 "$GRAFT" train cfg.yaml experiment=two train.max_steps=60 checkpoint.resume=never >two4.out 2>&1
rc=$?
[ $rc -eq 0 ] && ok "after kill -9 of the holder a new run of the experiment starts and finishes" ||
  { bad "run after kill -9: exit $rc"; tail -n 3 two4.out; }

# ---- 7. Ctrl-C to the process group of graft launch -----------------------------------
# (no timeout(1) in that group: it would pass the terminal's SIGINT on a second time)
setsid "$GRAFT" launch cfg.yaml experiment=int >int1.out 2>&1 &
lp=$!
(sleep 120 && kill -KILL -- -$lp 2>/dev/null) &
killer=$!
if wait_for_step runs/int/metrics.jsonl 30 60; then
  kill -INT -- -$lp
fi
wait $lp
rc=$?
kill $killer 2>/dev/null
latest=$(cat runs/int/checkpoints/latest 2>/dev/null)
if [ $rc -eq 75 ] && ! grep -q "restart" int1.out && "$GRAFT" ckpt verify "runs/int/checkpoints/$latest" >/dev/null 2>&1; then
  timeout 120 "$GRAFT" launch cfg.yaml experiment=int >int2.out 2>&1
  rc=$?
  [ $rc -eq 0 ] && cmp -s runs/ref2/model.safetensors runs/int/model.safetensors &&
    ok "Ctrl-C to graft launch's group: exit 75 at $latest, resumed to the uninterrupted weights" ||
    { bad "resume after Ctrl-C: exit $rc"; tail -n 3 int2.out; }
else
  bad "Ctrl-C to graft launch's group: exit $rc, latest '$latest'"; grep -v '^ \|^-\|^$' int1.out | tail -n 4
fi

# ---- 8. a save slower than comm.timeout_s -----------------------------------------------
timeout 120 mpirun -np 2 "${mpi_flags[@]}" "$GRAFT" train cfg.yaml experiment=slow "${big[@]}" \
  train.max_steps=60 comm.timeout_s=1 >slow.out 2>&1 &
job=$!
stopped_for=""
for _ in 1 2 3 4 5; do
  wait_for_path "runs/slow/checkpoints/step-*.tmp" 30 || break
  r0=$(rank_pid slow 0) || break
  kill -STOP "$r0"
  if compgen -G "runs/slow/checkpoints/step-*.tmp" >/dev/null; then # stopped mid-save
    sleep 3
    kill -CONT "$r0"
    stopped_for=3
    break
  fi
  kill -CONT "$r0" # the save had just finished: try the next one
  while compgen -G "runs/slow/checkpoints/step-*.tmp" >/dev/null; do sleep 0.01; done
done
wait $job
rc=$?
[ $rc -eq 0 ] && [ -n "$stopped_for" ] && ! grep -q "stuck" slow.out &&
  ok "rank 0 stopped for ${stopped_for} s mid-save with comm.timeout_s=1: no abort, exit 0" ||
  { bad "slow save: exit $rc, stopped for '${stopped_for}'"; grep -E "ERROR|stuck" slow.out | head -n 3; }
finish
