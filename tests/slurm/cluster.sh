#!/usr/bin/env bash
# A throwaway one-node SLURM cluster for tests, run as root:
#   tests/slurm/cluster.sh start DIR [LIFETIME]  # prints nothing on success; DIR/env sets SLURM_CONF
#   tests/slurm/cluster.sh stop DIR    # stops exactly the daemons it started, removes DIR
# LIFETIME (seconds, default 900): a detached watchdog runs `stop DIR` then, so a test
# killed before its own cleanup (a ctest timeout sends SIGKILL) leaves no daemons behind.
# Everything lives under DIR (a new, empty or missing folder): slurm.conf, the state
# and spool folders, the logs, and a private munged with its own key, socket, pid and
# seed files. The ports are free ones picked at start (not 6817/6818), so a system
# slurm or munge that is already running is neither used nor disturbed. Clients find
# this cluster through SLURM_CONF=DIR/etc/slurm.conf (`. DIR/env`); slurm.conf's
# AuthInfo points them at the private munge socket.
# Exit status of start: 0 up (node idle), 1 usage, 77 cannot run here (message on stderr,
# daemons already started are stopped again).
set -u

usage() { echo "usage: $0 start DIR [LIFETIME] | stop DIR" >&2; exit 1; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
cmd=$1
dir=$2
lifetime=${3:-900}

# pid_is_ours PIDFILE: the pid in PIDFILE is alive and was started with this DIR in its
# command line (a pid reused by an unrelated process is never killed).
pid_is_ours() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -e "$dir/" -e "$dir "
}

# job_processes: pids of this cluster's slurmstepd and job processes (their environment
# has SLURM_CONF=DIR/etc/slurm.conf, which slurm sets in every job, and slurmstepd or
# SLURM_JOB_ID), leaving out this script and its ancestors (the test that called it).
job_processes() {
  local conf="SLURM_CONF=$dir/etc/slurm.conf" skip=" " p=$$ env
  while [ "$p" -gt 1 ] 2>/dev/null; do
    skip="$skip$p "
    p=$({ awk '/^PPid:/ {print $2}' "/proc/$p/status"; } 2>/dev/null)
  done
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    case $skip in *" $p "*) continue ;; esac
    env=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null) || continue
    grep -qxF "$conf" <<<"$env" || continue
    if [ "$({ cat "/proc/$p/comm"; } 2>/dev/null)" = slurmstepd ] || grep -q '^SLURM_JOB_ID=' <<<"$env"; then
      echo "$p"
    fi
  done
}

# stop_daemons: TERM then (after 10 s) KILL each daemon whose pid file is in DIR/run,
# and the watchdog (unless this is the watchdog).
stop_daemons() {
  local f pid
  if pid_is_ours "$dir/run/watchdog.pid" && [ "$(cat "$dir/run/watchdog.pid")" != $$ ]; then
    kill -TERM -- "-$(cat "$dir/run/watchdog.pid")" 2>/dev/null # its sleep too
  fi
  # Jobs first, while slurmctld can still cancel them (5 s at most)...
  if pid_is_ours "$dir/run/slurmctld.pid"; then
    local jobs
    jobs=$(SLURM_CONF=$dir/etc/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
      SLURM_CONF=$dir/etc/slurm.conf timeout 5 scancel $jobs 2>/dev/null
      for _ in $(seq 50); do
        [ -z "$(job_processes)" ] && break
        sleep 0.1
      done
    fi
  fi
  # ... then whatever of them is left (the daemons cannot clean up after themselves).
  for pid in $(job_processes); do kill -KILL "$pid" 2>/dev/null; done
  for f in "$dir"/run/slurmd.pid "$dir"/run/slurmctld.pid "$dir"/run/munged.pid; do
    pid_is_ours "$f" && kill -TERM "$(cat "$f")" 2>/dev/null
  done
  for _ in $(seq 100); do
    local alive=0
    for f in "$dir"/run/{slurmd,slurmctld,munged}.pid; do pid_is_ours "$f" && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  for f in "$dir"/run/{slurmd,slurmctld,munged}.pid; do
    pid_is_ours "$f" && { echo "cluster.sh: $(basename "$f" .pid) ignored TERM, killing it" >&2; kill -KILL "$(cat "$f")"; }
  done
  return 0
}

# free_port: a TCP port on this machine that nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# cannot REASON: give up starting (exit 77) after stopping what was started.
cannot() {
  echo "cluster.sh: $*" >&2
  for log in "$dir"/log/*.log; do
    [ -s "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
  done
  stop_daemons
  exit 77
}

start() {
  [ "$(id -u)" -eq 0 ] || { echo "cluster.sh: slurmd must run as root" >&2; exit 77; }
  for prog in munged mungekey slurmctld slurmd sinfo python3; do
    command -v $prog >/dev/null || { echo "cluster.sh: $prog is not installed (scripts/deps_slurm.sh)" >&2; exit 77; }
  done
  mkdir -p "$dir" || exit 1
  dir=$(cd "$dir" && pwd)
  # munged refuses a key or socket folder that others can write to.
  chmod 0755 "$dir"
  mkdir -p "$dir"/{etc,run,log,state,spool,munge} || exit 1
  chmod 0755 "$dir"/munge # munged wants its socket folder searchable by all

  local host ctld_port slurmd_port
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$(free_port)

  # The watchdog first, so that it covers every daemon started below. setsid makes it
  # a process group of its own (stop kills the group: bash and its sleep), detached
  # from the caller's terminal and output.
  setsid bash -c 'sleep "$2"; exec "$0" stop "$1"' \
    "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$dir" "$lifetime" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/run/watchdog.pid"

  mungekey --create --keyfile="$dir/munge/munge.key" --force 2>"$dir/log/mungekey.log" ||
    cannot "mungekey failed"
  chmod 0400 "$dir/munge/munge.key"
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" --num-threads=2 ||
    cannot "munged did not start"
  # munged forks and writes its pid file before it returns.
  pid_is_ours "$dir/run/munged.pid" || cannot "munged is not running"

  # The smallest config that runs jobs on this one node. No cgroups: processes are
  # tracked by parentage (linuxproc), tasks are not bound (task/none). JobRequeue=1 lets
  # batch jobs be requeued; cred_expire=10 (default 120) is also how long a requeued job
  # waits before it may start again, and sched_interval=1 (default 60) starts it
  # as soon as it may. MinJobAge keeps finished jobs visible to scontrol.
  cat >"$dir/etc/slurm.conf" <<CONF
ClusterName=grafttest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobRequeue=1
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=600
Waittime=0
SchedulerParameters=sched_interval=1
NodeName=$host CPUs=$(nproc) RealMemory=256 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  echo "export SLURM_CONF=$dir/etc/slurm.conf" >"$dir/env"
  export SLURM_CONF=$dir/etc/slurm.conf

  # -f puts DIR in their command lines (pid_is_ours checks it); -i: slurmctld starts
  # clean, whatever an earlier cluster left in the state folder. Both daemons fork into
  # the background and write their pid files (under DIR/run).
  slurmctld -i -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 || cannot "slurmctld did not start"
  slurmd -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 || cannot "slurmd did not start"
  local state=""
  for _ in $(seq 150); do # 15 s
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1)
    [ "$state" = idle ] && return 0
    sleep 0.1
  done
  cannot "the node did not become idle within 15 s (state '${state}')"
}

case $cmd in
  start) start ;;
  stop)
    [ -d "$dir" ] || exit 0
    dir=$(cd "$dir" && pwd)
    stop_daemons
    rm -rf "$dir"
    ;;
  *) usage ;;
esac
