#!/usr/bin/env bash
# Overlap of gradient all-reduce with backward, measured where communication waits on
# a wire: 2 ranks on two network-namespace "nodes" joined by a veth link shaped to
# RATE (default 2gbit) with tbf. Runs the MLP with comm.overlap on and off and prints
# step times and the share of the ideal overlap achieved:
#   (t_compute + t_comm - t_step) / (t_compute + t_comm - max(t_compute, t_comm))
# with t_compute (forward + backward) and t_comm (all-reduce after backward) from the
# overlap-off run. Needs root (namespaces, tc).
# usage: bench/overlap.sh [BUILD_DIR] [RATE] [STEPS] [key=value ...]  (extra overrides,
# e.g. comm.first_bucket_mb=0.25: with the default 1 MB first bucket the MLP's
# 2.14 MB of gradients form one bucket, ready only when backward ends)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
graft=$(cd "${1:-build}" && pwd)/graft
rate=${2:-2gbit}
steps=${3:-200}
shift $(($# < 3 ? $# : 3))
. "$here/tests/tools/netns_nodes.sh"
work=$(mktemp -d)
trap 'nodes_down; rm -rf "$work"' EXIT
nodes_up $$ || { echo "overlap.sh: cannot create network namespaces (root needed)" >&2; exit 2; }
nodes_shape "$rate"
cd "$work"
"$graft" data fmnist --out tr --split train >/dev/null
cat >cfg.yaml <<YAML
experiment: overlap
model: {arch: mlp, hidden: [512, 256]}
data: {train: tr, batch_size: 256}
optim: {lr: 0.001}
train: {max_steps: $steps, log_every: 20}
checkpoint: {every_steps: 0}
YAML
extra=("$@")
run() { # NAME OVERLAP
  ip netns exec "$NODE_A" mpirun --allow-run-as-root -np 2 -H "$NET.1:1,$NET.2:1" "${MPI_NODE_ARGS[@]}" \
    -x OPENBLAS_NUM_THREADS=1 -x GRAFT_NETNS_MAP "$graft" train cfg.yaml experiment=$1 comm.overlap=$2 \
    checkpoint.resume=never "${extra[@]}" >"$1.out" 2>&1 || { tail -n 20 "$1.out"; exit 1; }
}
run on true
run off false
python3 - runs/on/metrics.jsonl runs/off/metrics.jsonl "$rate" <<'PY'
import json, sys
def load(path):
    rows = [json.loads(l) for l in open(path)][1:]  # first window: warm-up
    n = len(rows)
    avg = lambda k: sum(r[k] for r in rows) / n
    # the step minus data wait and optimizer: the part overlap can shorten
    step = sum(256 / r["samples_per_s"] for r in rows) / n - avg("time_data") - avg("time_optim")
    return step, avg("time_forward") + avg("time_backward"), avg("time_comm"), avg("comm_bytes")
on, off = load(sys.argv[1]), load(sys.argv[2])
t_compute, t_comm = off[1], off[2]
ideal = t_compute + t_comm - max(t_compute, t_comm)
share = (t_compute + t_comm - on[0]) / ideal if ideal > 0 else float("nan")
print(f"link {sys.argv[3]}, 2 ranks on 2 nodes, MLP 784-512-256-10, {off[3]/1e6:.2f} MB all-reduced per step")
print(f"(step times below leave out data wait and the optimizer, which overlap does not touch)")
print(f"overlap off: step {off[0]*1e3:.1f} ms (compute {t_compute*1e3:.1f} ms, all-reduce after backward {t_comm*1e3:.1f} ms)")
print(f"overlap on:  step {on[0]*1e3:.1f} ms (compute {on[1]*1e3:.1f} ms, wait after backward {on[2]*1e3:.1f} ms)")
print(f"speed-up {off[0]/on[0]:.3f}x; share of the ideal overlap achieved: {share:.2f}")
PY
