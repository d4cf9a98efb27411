#!/usr/bin/env bash
# Samples/s of the MLP on this machine: 1 rank with all cores' BLAS threads against
# one rank per core with 1 thread each (same global batch), side by side in one run.
# usage: bench/scaling.sh [BUILD_DIR] [STEPS]
set -euo pipefail
graft=$(cd "${1:-build}" && pwd)/graft
steps=${2:-300}
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$graft" data fmnist --out tr --split train >/dev/null
cat >cfg.yaml <<YAML
experiment: s
model: {arch: mlp, hidden: [512, 256]}
data: {train: tr, batch_size: 256}
optim: {lr: 0.001}
train: {max_steps: $steps, log_every: 50}
checkpoint: {every_steps: 0, resume: never}
YAML
rate() { python3 -c "
import json, sys
rows = [json.loads(l) for l in open('runs/$1/metrics.jsonl')][1:]
print('%.0f' % (sum(r['samples_per_s'] for r in rows) / len(rows)))"; }
root=""
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
for round in 1 2; do
  OPENBLAS_NUM_THREADS=$cores "$graft" train cfg.yaml experiment=one$round >/dev/null 2>&1
  mpirun $root -np "$cores" -x OPENBLAS_NUM_THREADS=1 "$graft" train cfg.yaml experiment=dp$round >/dev/null 2>&1
  a=$(rate one$round) b=$(rate dp$round)
  echo "round $round: np=1 x $cores threads: $a samples/s; np=$cores x 1 thread: $b samples/s; ratio $(python3 -c "print('%.2f' % ($b / $a))")"
done
