#!/usr/bin/env bash
# The feature cache (data.cache_features) against the full forward, EPOCHS epochs with
# the cache on and off, only the head trainable:
#   resnet18  torchvision's ResNet-18 (ImageNet stem, width 64), fc trainable, on 10,000
#             Fashion-MNIST images (28x28, 10 classes), batch 128;
#   bert      a 4-layer BERT (width 256, 4 heads), classifier trainable, on fortunes
#             (science vs computers, 64 bytes a sequence), batch 64;
#   gpt2      a 4-layer GPT-2 (width 256, 4 heads), ln_f trainable (its lm_head is tied
#             to the input embedding, at the bottom), on windows of 64 bytes of the same
#             fortunes, batch 64.
# Prints every epoch's time, the speed-up of epochs 2..EPOCHS (the first cached epoch
# includes the pass that computes every sample's features), the cache's size and the
# final losses.
# usage: bench/feature_cache.sh [BUILD_DIR] [MODEL] [EPOCHS] [THREADS] [key=value ...]
#   MODEL resnet18 (default), bert or gpt2, EPOCHS (default 5), OpenBLAS THREADS (default 1);
#   extra overrides go to both runs.
set -euo pipefail
graft=$(cd "${1:-build}" && pwd)/graft
model=${2:-resnet18}
epochs=${3:-5}
export OPENBLAS_NUM_THREADS=${4:-1}
shift $(($# < 4 ? $# : 4))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
data_extra=""
case $model in
resnet18)
  "$graft" data fmnist --out tr --per-class 1000 >/dev/null
  what="ResNet-18, fc trainable, 10000 Fashion-MNIST images 28x28, batch 128"
  batch=128
  spec='model: {arch: resnet18}
freeze: {trainable: ["fc.*"]}' ;;
bert)
  fortunes=/usr/share/games/fortunes
  "$graft" data text --out tr --tokenizer bytes --classify --seq-len 64 "$fortunes/science" \
    "$fortunes/computers" >/dev/null
  what="BERT 4 layers x 256, classifier trainable, fortunes (science vs computers, 64 bytes), batch 64"
  batch=64
  spec='model: {arch: bert, n_layer: 4, n_head: 4, n_embd: 256, n_positions: 64}
freeze: {trainable: ["classifier.*"]}' ;;
gpt2)
  fortunes=/usr/share/games/fortunes
  "$graft" data text --out tr --tokenizer bytes "$fortunes/science" "$fortunes/computers" >/dev/null
  what="GPT-2 4 layers x 256, ln_f trainable, fortunes (science, computers) in 64-byte windows, batch 64"
  batch=64
  data_extra=", seq_len: 64"
  spec='model: {arch: gpt2, n_layer: 4, n_head: 4, n_embd: 256, n_positions: 64}
freeze: {trainable: ["transformer.ln_f.*"]}' ;;
*)
  echo "feature_cache.sh: MODEL is resnet18, bert or gpt2, not '$model'" >&2
  exit 2 ;;
esac
samples=$(python3 -c "
import json
d = json.load(open('tr/index.json'))
print(d['num_samples'] if 'num_samples' in d else (d['num_tokens'] - 1) // 64)")
steps=$(((samples + batch - 1) / batch))
cat >cfg.yaml <<YAML
experiment: bench
$spec
data: {train: tr, batch_size: $batch$data_extra}
optim: {lr: 0.001}
train: {epochs: $epochs, log_every: $steps}
YAML
for mode in off on; do
  "$graft" train cfg.yaml experiment="$mode" data.cache_features="$mode" "$@" >"$mode.out" 2>&1 ||
    { echo "feature_cache.sh: the run with the cache $mode failed:" >&2; tail -n 5 "$mode.out" >&2; exit 1; }
done
echo "$what, $epochs epochs, $OPENBLAS_NUM_THREADS OpenBLAS thread(s)"
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
