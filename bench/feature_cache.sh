#!/usr/bin/env bash
# The feature cache (data.cache_features) against the full forward: ResNet-18
# (torchvision's, ImageNet stem, width 64) with only fc trainable on Fashion-MNIST
# (28x28, 10 classes), EPOCHS epochs of batch 128, with the cache on and off. Prints
# every epoch's time, the speed-up of epochs 2..EPOCHS (the first cached epoch includes
# the pass that computes every sample's features), the cache's size and the final
# losses.
# usage: bench/feature_cache.sh [BUILD_DIR] [PER_CLASS] [EPOCHS] [THREADS] [key=value ...]
#   PER_CLASS samples of each class (default 1000: 10k samples), EPOCHS (default 5),
#   OpenBLAS THREADS (default 1); extra overrides go to both runs.
set -euo pipefail
graft=$(cd "${1:-build}" && pwd)/graft
per_class=${2:-1000}
epochs=${3:-5}
export OPENBLAS_NUM_THREADS=${4:-1}
shift $(($# < 4 ? $# : 4))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$graft" data fmnist --out tr --per-class "$per_class" >/dev/null
samples=$((per_class * 10))
steps=$(((samples + 127) / 128))
cat >cfg.yaml <<YAML
experiment: bench
model: {arch: resnet18}
data: {train: tr, batch_size: 128}
freeze: {trainable: ["fc.*"]}
optim: {lr: 0.001}
train: {epochs: $epochs, log_every: $steps}
YAML
for mode in off on; do
  "$graft" train cfg.yaml experiment="$mode" data.cache_features="$mode" "$@" >"$mode.out" 2>&1 ||
    { echo "feature_cache.sh: the run with the cache $mode failed:" >&2; tail -n 5 "$mode.out" >&2; exit 1; }
done
echo "ResNet-18, fc trainable, $samples Fashion-MNIST images 28x28, batch 128, $epochs epochs," \
  "$OPENBLAS_NUM_THREADS OpenBLAS thread(s)"
grep -o "feature cache at .*" on.out | sed 's/^/  /'
python3 - "$samples" <<'PY'
import json, sys
n = int(sys.argv[1])
runs = {m: [json.loads(l) for l in open(f"runs/{m}/metrics.jsonl")] for m in ("off", "on")}
secs = {m: [n / line["samples_per_s"] for line in lines] for m, lines in runs.items()}
print(f"  {'epoch':>5} {'no cache (s)':>13} {'cache (s)':>10} {'speed-up':>9}")
for e, (a, b) in enumerate(zip(secs["off"], secs["on"]), 1):
    print(f"  {e:>5} {a:>13.2f} {b:>10.3f} {a / b:>8.1f}x")
rest = lambda m: sum(secs[m][1:])
print(f"  epochs 2-{len(secs['on'])}: {rest('off'):.2f} s vs {rest('on'):.3f} s: "
      f"{rest('off') / rest('on'):.1f}x faster with the cache")
print(f"  whole run: {sum(secs['off']):.2f} s vs {sum(secs['on']):.2f} s; final loss "
      f"{runs['off'][-1]['loss']:.6f} vs {runs['on'][-1]['loss']:.6f}")
PY
