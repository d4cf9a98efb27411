#!/usr/bin/env bash
# ctest-labels: slow;slurm
# Preemption under a real scheduler: a one-node SLURM cluster (tests/slurm/cluster.sh,
# Debian's slurm-wlm + munge, installed by scripts/deps_slurm.sh) runs a batch job
# `srun --mpi=pmix graft train` on 2 ranks, submitted with --requeue --signal=B:USR1@60.
# The test preempts it the way the scheduler would at the time limit (USR1 to the batch
# shell), the job checkpoints and exits 75, `scontrol requeue` brings it back, it resumes
# from its checkpoint and ends with weights byte-identical to an uninterrupted run.
# Skips (77) where it cannot run: not root, the packages cannot be installed, the
# daemons do not start.
. "$(dirname "$0")/lib_e2e.sh"
skip() { echo "SKIPPED: $*"; exit 77; }
# Every wait is bounded, and all of them together by a deadline 420 s after the start
# (generous: on a slow 2-core machine with other tests running, the reference run alone
# has taken 90 s; the bounds only matter when something hangs).
deadline=$((SECONDS + 420))
# left N: N seconds, or fewer if the deadline comes first (1 at least).
left() { local l=$((deadline - SECONDS)); [ "$l" -lt "$1" ] || l=$1; [ "$l" -ge 1 ] || l=1; echo "$l"; }

[ "$(id -u)" -eq 0 ] || skip "needs root: slurmd and the jobs it starts run as root here"
# The packages, installed on first use (idempotent and quiet when present).
if command -v apt-get >/dev/null; then
  bash "$GRAFT_SOURCE_DIR/scripts/deps_slurm.sh" >"$tmp/deps.out" 2>&1 ||
    skip "scripts/deps_slurm.sh could not install slurm-wlm and munge: $(tail -n 1 "$tmp/deps.out")"
fi
for prog in slurmctld slurmd munged sbatch srun scontrol; do
  command -v $prog >/dev/null || skip "$prog is not installed and apt-get is not available"
done

cluster_sh=$GRAFT_SOURCE_DIR/tests/slurm/cluster.sh
cluster=$tmp/cluster
# The cluster goes down on every way out (a SIGKILLed test leaves it to the
# cluster's own watchdog, 600 s).
trap 'bash "$cluster_sh" stop "$cluster"; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
chmod 0755 "$tmp" # munged wants every folder above its socket searchable
[ "$(nproc)" -ge 2 ] || skip "needs 2 CPUs (the job runs 2 ranks on the one node)"
if ! bash "$cluster_sh" start "$cluster" 600 2>"$tmp/cluster.err"; then
  sed 's/^/  | /' "$tmp/cluster.err" # cluster.sh adds the tails of the daemons' logs
  skip "the SLURM daemons did not start: $(head -n 1 "$tmp/cluster.err")"
fi
. "$cluster/env" # SLURM_CONF: sbatch, srun, squeue and scontrol talk to this cluster
srun --mpi=list 2>&1 | grep -qw pmix || skip "srun has no pmix plugin (srun --mpi=list)"
ok "one-node cluster up: $(sinfo -h -o '%P %D node %T, %c CPUs')"
cd "$tmp" || exit 1

# A 2-rank MLP run of ~15 s (~25 s under srun, see below); checkpoint.every_steps is past the end, so the only
# checkpoint before the last one is the one the preemption signal asks for.
steps=3000
log_every=20
"$GRAFT" data fmnist --out tr --classes 0-4 --per-class 300 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: slurm
model: {arch: mlp, hidden: [512, 256], dropout: 0.1}
data: {train: tr, batch_size: 32, augment: {hflip: true}}
optim: {lr: 0.002}
train: {max_steps: $steps, log_every: $log_every}
checkpoint: {every_steps: 100000, keep_last: 2}
YAML

# The uninterrupted reference, without the scheduler. Also on 2 ranks (mpirun): the
# weights are byte-identical only at the same world size (summing gradients over
# another number of ranks changes their last bits).
start=$(date +%s)
timeout "$(left 200)" mpirun -np 2 --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 \
  "$GRAFT" train cfg.yaml experiment=ref >ref.out 2>&1 || { bad "reference run"; tail -n 5 ref.out; }
ok "reference: 2 ranks under mpirun, $steps steps in $(($(date +%s) - start)) s"

# The batch script. How the signal reaches graft:
# - --signal=B:USR1@60 sends USR1 60 s before the time limit to the batch shell only
#   (B:), and `scancel --signal=USR1 --batch` sends it the same way now: the test
#   stands in for the time limit (or a preemption) with the latter.
# - The batch shell traps it and passes it to srun, which forwards USR1 to every task
#   of its step: each graft rank sets its stop flag, the ranks agree at the next step
#   boundary, save one checkpoint and exit 75. srun exits 75 too (graft's ranks end with
#   MPI_Abort(75), which the pmix plugin hands to srun as the step's exit code).
# - srun runs in the background because bash runs a trap only between commands, never
#   while it waits for a foreground one; `wait` returns early for each trapped signal,
#   hence the loop, and the last `wait` gives srun's own exit status.
# Without B:, --signal=USR1@60 (and `scancel --signal=USR1 JOBID`) would signal the
#   tasks of every step directly, and no trap is needed; B: keeps the batch shell in
#   charge, which is where a job decides what to do after the step (here: exit 75).
cat >job.sh <<'JOB'
#!/bin/bash
#SBATCH --job-name=graft-preempt
#SBATCH --ntasks=2
#SBATCH --requeue
#SBATCH --signal=B:USR1@60
#SBATCH --time=10
#SBATCH --output=job.out
#SBATCH --open-mode=append
echo "batch: run ${SLURM_RESTART_COUNT:-0} of job $SLURM_JOB_ID"
# 2 ranks, each with a gradient comm thread, on 2 cores: Open MPI must yield the CPU
# while it polls (mpirun --oversubscribe sets this; under srun it cannot know, and busy
# polling makes each step 3x slower here).
export OMPI_MCA_mpi_yield_when_idle=1
forward() { echo "batch: USR1, passed on to srun"; kill -USR1 "$srun_pid"; }
trap forward USR1
srun --mpi=pmix "$GRAFT" train cfg.yaml &
srun_pid=$!
while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid"; done
wait "$srun_pid"
rc=$?
echo "batch: srun exited with $rc"
exit $rc
JOB

# job_field NAME: NAME's value in `scontrol show job` (JobState, ExitCode, Restarts).
job_field() { scontrol -o show job "$jid" 2>/dev/null | grep -o "\<$1=[^ ]*" | cut -d= -f2; }
# wait_for_state SECONDS STATE: until the job is in STATE (bounded).
wait_for_state() {
  for _ in $(seq $(($1 * 5))); do
    [ "$(job_field JobState)" = "$2" ] && return 0
    sleep 0.2
  done
  return 1
}
# wait_for_step SECONDS FILE N: until metrics FILE has a line with step >= N (bounded).
wait_for_step() {
  for _ in $(seq $(($1 * 20))); do
    [ -f "$2" ] && [ "$(tail -n 1 "$2" | sed -n 's/.*"step": *\([0-9]*\).*/\1/p')" -ge "$3" ] 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# Progress lines in job.out end in \r: show the log lines only.
show_log() { tr '\r' '\n' <job.out | grep -v ' ETA ' | tail -n "${1:-15}"; }

start=$(date +%s)
jid=$(sbatch --parsable job.sh) || { bad "sbatch"; finish; exit; }
if wait_for_step "$(left 100)" runs/slurm/metrics.jsonl 1000; then
  ok "job $jid running: step 1000 of $steps after $(($(date +%s) - start)) s"
else
  bad "job $jid did not reach step 1000 in time (state $(job_field JobState))"; show_log; finish; exit
fi

scancel --signal=USR1 --batch "$jid" || bad "scancel --signal=USR1 --batch"
t0=$(date +%s)
wait_for_state "$(left 60)" FAILED
state=$(job_field JobState) exitcode=$(job_field ExitCode)
stopped=$(tr '\r' '\n' <job.out | sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' | tail -n 1)
if [ "$state" = FAILED ] && [ "$exitcode" = 75:0 ] && grep -q "batch: srun exited with 75" job.out &&
  [ -n "$stopped" ] && [ "$stopped" -lt $steps ] && [ -f "runs/slurm/checkpoints/step-$(printf %08d "$stopped")/MANIFEST" ]; then
  ok "USR1 to the batch shell: checkpoint at step $stopped, srun exited 75, job $state with ExitCode $exitcode ($(($(date +%s) - t0)) s)"
else
  bad "preemption: job $state, ExitCode $exitcode, stopped at step '$stopped'"; show_log 25; finish; exit
fi

t0=$(date +%s)
scontrol requeue "$jid" || bad "scontrol requeue $jid"
if wait_for_state "$(left 200)" COMPLETED && [ "$(job_field ExitCode)" = 0:0 ] && [ "$(job_field Restarts)" = 1 ]; then
  ok "scontrol requeue: the job ran again (SLURM_RESTART_COUNT $(sed -n 's/batch: run \([0-9]*\) of.*/\1/p' job.out | tail -n 1)) and COMPLETED with ExitCode 0:0 ($(($(date +%s) - t0)) s)"
else
  bad "after requeue: job $(job_field JobState), ExitCode $(job_field ExitCode), Restarts $(job_field Restarts)"
  show_log 25
fi
grep -q "resuming from runs/slurm/checkpoints/step-0*$stopped:" job.out &&
  ok "$(grep -o 'resuming from [^:]*' job.out)" || bad "the requeued run did not resume from step $stopped"
cmp -s runs/ref/model.safetensors runs/slurm/model.safetensors &&
  ok "final weights byte-identical to the uninterrupted run" ||
  bad "final weights differ from the uninterrupted run"
python3 - runs/slurm/metrics.jsonl $log_every $steps <<'PY' && ok "metrics.jsonl: every step once" || bad "metrics.jsonl repeats or misses steps"
import json, sys
every, last = int(sys.argv[2]), int(sys.argv[3])
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert steps == list(range(every, last + 1, every)), steps
PY
echo "the job's output:"
show_log 40 | sed 's/^/  | /'
finish
