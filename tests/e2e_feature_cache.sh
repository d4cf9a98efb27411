#!/usr/bin/env bash
# ctest-labels: mpi;slow
# The feature cache (data.cache_features) end to end, on a small ResNet-18 and real
# Fashion-MNIST:
# - losses step for step equal those without the cache within 1e-5 relative, at np=1 and
#   np=2, with only fc trainable (AdamW, dropout before fc) and with layer4 + fc;
# - an interrupted run resumed with the cache gives the uninterrupted cached run's bytes,
#   and reuses the cache file; a cache file of other init weights, or a damaged one, is
#   rebuilt, a matching one reused;
# - BERT with only the classifier, or the pooler and the classifier, trainable; GPT-2
#   with only ln_f, or the last block and ln_f, trainable;
# - `on` refuses (exit 2, one line) augmentation, frozen batchnorm in train mode, a
#   trainable stem, dropout in the frozen layers (BERT) and a model that cannot split;
#   auto says why not in one INFO line.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
export OPENBLAS_NUM_THREADS=1
mpi() { timeout 300 mpirun -np 2 --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 "$@"; }
# same_losses A B: metrics.jsonl of runs A and B, step for step, within 1e-5 relative
same_losses() {
  python3 - "runs/$1/metrics.jsonl" "runs/$2/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert [x["step"] for x in a] == [y["step"] for y in b], "different steps"
worst = max(abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in zip(a, b))
print(f"{len(a)} steps, worst relative loss difference {worst:.1e}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
}
cache_line() { grep -o "feature cache at .*" "$1" | head -n 1; }

"$GRAFT" data fmnist --out tr --classes 0-4 --per-class 64 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: x
model: {arch: resnet18, small_stem: true, width: 8, dropout: 0.2}
data: {train: tr, batch_size: 32}
freeze: {trainable: ["fc.*"]}
optim: {lr: 0.003}
train: {epochs: 3, log_every: 1}
YAML
# AdamW turns rounding differences of gradients near zero into whole steps of the
# learning rate (the update is about lr * sign(g) when |g| >> eps): with layer4 training,
# runs that differ only by rounding (the cache, another world size) drift apart by
# more than 1e-5, so the layer4 cases use SGD.
layer4=('freeze.trainable=["layer4.*", "fc.*"]' optim.name=sgd optim.lr=0.02)

# 1. With and without the cache, np=1 and np=2, fc only and layer4 + fc.
check_pair() { # NAME LAUNCH... -- OVERRIDES...
  local name=$1
  shift
  local launch=()
  while [ "$1" != "--" ]; do launch+=("$1"); shift; done
  shift
  "${launch[@]}" "$GRAFT" train cfg.yaml experiment="$name-on" data.cache_features=on "$@" \
    >"$name-on.out" 2>&1 || { bad "$name: cached run"; tail -n 3 "$name-on.out"; return; }
  "${launch[@]}" "$GRAFT" train cfg.yaml experiment="$name-off" data.cache_features=off "$@" \
    >"$name-off.out" 2>&1 || { bad "$name: uncached run"; tail -n 3 "$name-off.out"; return; }
  local d
  if d=$(same_losses "$name-on" "$name-off") && grep -q "feature cache at" "$name-on.out" &&
    ! grep -q "feature cache at" "$name-off.out"; then
    ok "$name: $(cache_line "$name-on.out" | cut -d: -f1); $d"
  else
    bad "$name: $d"
  fi
}
check_pair fc env --
check_pair layer4 env -- "${layer4[@]}"
check_pair fc-np2 mpi -- 
check_pair layer4-np2 mpi -- "${layer4[@]}"
grep -q "input of layer4.0: 320 samples x 1568 floats" layer4-np2-on.out &&
  grep -q "all 2 replicas are bit-identical" layer4-np2-on.out &&
  ok "np=2: the cache at layer4.0's input, replicas bit-identical" || bad "np=2 layer4 line"

# A cache over data.cache_max_gb is a memory-mapped file.
mpi "$GRAFT" train cfg.yaml experiment=mapped data.cache_features=on data.cache_max_gb=0 \
  >mapped.out 2>&1 && grep -q "MiB memory-mapped from runs/mapped/feature-cache.bin" mapped.out &&
  d=$(same_losses mapped fc-np2-off) && ok "np=2, data.cache_max_gb 0: memory-mapped; $d" ||
  { bad "mapped cache: ${d:-}"; tail -n 3 mapped.out; }

# freeze.schedule: unfreezing layer4 at step 12 moves the boundary and rebuilds the
# cache there; unfreezing everything stops using it.
at12='freeze.schedule=[{at_step: 12, trainable: ["layer4.*"]}]'
"$GRAFT" train cfg.yaml experiment=sched-on "$at12" optim.name=sgd optim.lr=0.02 >sched-on.out 2>&1 &&
  "$GRAFT" train cfg.yaml experiment=sched-off "$at12" optim.name=sgd optim.lr=0.02 \
    data.cache_features=off >sched-off.out 2>&1 || bad "freeze.schedule runs"
grep -q "step 0: feature cache at the input of fc" sched-on.out &&
  grep -q "step 12: feature cache at the input of layer4.0" sched-on.out &&
  d=$(same_losses sched-on sched-off) && ok "freeze.schedule at step 12: cache rebuilt at layer4.0; $d" ||
  { bad "freeze.schedule: ${d:-}"; grep "feature cache" sched-on.out; }
"$GRAFT" train cfg.yaml experiment=sched-all 'freeze.schedule=[{at_step: 12, trainable: ["*"]}]' \
  >sched-all.out 2>&1 && grep -q "step 12: feature cache no longer used: the stem (conv1) trains" sched-all.out &&
  ok "freeze.schedule unfreezing the stem: $(grep -o 'feature cache no longer used.*' sched-all.out)" ||
  { bad "unfreezing everything"; tail -n 3 sched-all.out; }

# ... and a run stopped after that step resumes with `on` without the cache.
all12='freeze.schedule=[{at_step: 12, trainable: ["*"]}]'
"$GRAFT" train cfg.yaml experiment=sched-cut data.cache_features=on "$all12" train.max_steps=17 \
  >sched-cut1.out 2>&1 &&
  "$GRAFT" train cfg.yaml experiment=sched-cut data.cache_features=on "$all12" \
    checkpoint.allow_config_change=true >sched-cut2.out 2>&1 &&
  grep -q "feature cache not used (data.cache_features: on): the stem (conv1) trains" sched-cut2.out &&
  ok "on, resumed after freeze.schedule unfroze the stem: runs without the cache" ||
  { bad "on resumed past the unfreeze"; tail -n 3 sched-cut2.out; }

# 2. Resume: stopped at step 17 (of 30), resumed with the cache: the bytes of the
# uninterrupted cached run, the cache file reused.
resume=(schedule.name=constant checkpoint.every_steps=100 data.cache_features=on)
"$GRAFT" train cfg.yaml experiment=whole "${resume[@]}" >whole.out 2>&1 || bad "uninterrupted run"
"$GRAFT" train cfg.yaml experiment=cut "${resume[@]}" train.max_steps=17 >cut1.out 2>&1 &&
  "$GRAFT" train cfg.yaml experiment=cut "${resume[@]}" checkpoint.allow_config_change=true \
    >cut2.out 2>&1 || bad "interrupted and resumed runs"
if grep -q "resuming from runs/cut/checkpoints/step-00000017" cut2.out &&
  grep -q "reused in" cut2.out && cmp -s runs/whole/model.safetensors runs/cut/model.safetensors; then
  ok "stopped at step 17 and resumed: cache reused, weights byte-identical to the uninterrupted run"
else
  bad "resume with the cache"; tail -n 3 cut2.out
fi
"$GRAFT" train cfg.yaml experiment=whole-off schedule.name=constant data.cache_features=off \
  >whole-off.out 2>&1 && d=$(same_losses cut whole-off) &&
  ok "resumed cached run vs uncached run: $d" || bad "resumed vs uncached: ${d:-}"

# 3. A cache file made with other init weights is rebuilt; a matching one is reused;
# a damaged one is rebuilt.
prime() { mkdir -p "runs/$1" && cp runs/fc-on/feature-cache.bin "runs/$1/"; }
prime seed1 && "$GRAFT" train cfg.yaml experiment=seed1 seed=1 data.cache_features=on >seed1.out 2>&1
prime same && "$GRAFT" train cfg.yaml experiment=same data.cache_features=on >same.out 2>&1
prime damaged && printf '\x01' | dd of=runs/damaged/feature-cache.bin bs=1 seek=1000 conv=notrunc 2>/dev/null &&
  "$GRAFT" train cfg.yaml experiment=damaged data.cache_features=on >damaged.out 2>&1
"$GRAFT" train cfg.yaml experiment=seed1-off seed=1 data.cache_features=off >seed1-off.out 2>&1
grep -q "built in" seed1.out && d=$(same_losses seed1 seed1-off) &&
  ok "other init weights (seed 1): stale cache rebuilt; $d" || { bad "stale cache: ${d:-}"; cache_line seed1.out; }
grep -q "reused in" same.out && cmp -s runs/same/model.safetensors runs/fc-on/model.safetensors &&
  ok "same weights and data: cache reused, same bytes" || { bad "matching cache"; cache_line same.out; }
grep -q "built in" damaged.out && cmp -s runs/damaged/model.safetensors runs/fc-on/model.safetensors &&
  ok "damaged cache rows: rebuilt, same bytes" || { bad "damaged cache"; cache_line damaged.out; }

# BERT: the classifier's input (only it trains) or the pooler's.
fortunes=/usr/share/games/fortunes
"$GRAFT" data text --out seq --tokenizer bytes --classify --seq-len 32 "$fortunes/science" \
  "$fortunes/computers" >/dev/null || bad "text data"
cat >bert.yaml <<YAML
experiment: x
model: {arch: bert, n_layer: 2, n_head: 2, n_embd: 32, n_positions: 32}
data: {train: seq, batch_size: 64}
freeze: {trainable: ["classifier.*"]}
optim: {lr: 0.003}
train: {epochs: 2, log_every: 1}
YAML
for head in classifier pooler; do
  over=()
  [ $head = pooler ] && over=('freeze.trainable=["bert.pooler.*", "classifier.*"]')
  for m in on off; do
    "$GRAFT" train bert.yaml experiment=bert-$head-$m data.cache_features=$m "${over[@]}" \
      >bert-$head-$m.out 2>&1 || bad "bert $head $m"
  done
  grep -q "feature cache at the input of $([ $head = pooler ] && echo bert.pooler || echo classifier)" \
    bert-$head-on.out && d=$(same_losses bert-$head-on bert-$head-off) &&
    ok "bert, $head and above trainable: $d" || bad "bert $head: ${d:-}"
done

# GPT-2: the residual stream entering ln_f (only ln_f trains), or block 1 (np=2).
"$GRAFT" data text --out tok --tokenizer bytes "$fortunes/science" "$fortunes/computers" \
  >/dev/null || bad "token data"
cat >gpt2.yaml <<YAML
experiment: x
model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: 32, n_positions: 32}
data: {train: tok, batch_size: 256, seq_len: 32}
freeze: {trainable: ["transformer.ln_f.*"]}
optim: {lr: 0.003}
train: {epochs: 2, log_every: 1}
YAML
for m in on off; do
  "$GRAFT" train gpt2.yaml experiment=gpt2-lnf-$m data.cache_features=$m >gpt2-lnf-$m.out 2>&1 &&
    mpi "$GRAFT" train gpt2.yaml experiment=gpt2-h1-$m data.cache_features=$m \
      'freeze.trainable=["transformer.h.1.*", "transformer.ln_f.*"]' >gpt2-h1-$m.out 2>&1 ||
    bad "gpt2 $m"
done
grep -q "feature cache at the input of transformer.ln_f: 11394 samples x 1024 floats" gpt2-lnf-on.out &&
  d=$(same_losses gpt2-lnf-on gpt2-lnf-off) && ok "gpt2, ln_f trainable: $d" || bad "gpt2 ln_f: ${d:-}"
grep -q "feature cache at the input of transformer.h.1" gpt2-h1-on.out &&
  d=$(same_losses gpt2-h1-on gpt2-h1-off) && ok "gpt2, np=2, h.1 and ln_f trainable: $d" || bad "gpt2 h.1: ${d:-}"
# LoRA adapters with their own dropout above the boundary: the step's draws as without the cache
for m in on off; do
  "$GRAFT" train gpt2.yaml experiment=gpt2-lora-$m data.cache_features=$m model.lora.dropout=0.1 \
    'model.lora.targets=["transformer.h.1.attn.c_attn"]' >gpt2-lora-$m.out 2>&1 || bad "gpt2 lora $m"
done
grep -q "feature cache at the input of transformer.h.1" gpt2-lora-on.out &&
  d=$(same_losses gpt2-lora-on gpt2-lora-off) && ok "gpt2, LoRA on h.1 with adapter dropout: $d" ||
  bad "gpt2 lora: ${d:-}"
expect_bad_input "on with gpt2's tied lm_head trainable" "data.cache_features: on, .*wte, also the tied lm_head" -- \
  "$GRAFT" train gpt2.yaml experiment=r6 data.cache_features=on 'freeze.trainable=["transformer.wte.*"]'

# 4. on refuses what the cache cannot do; auto says why not.
expect_bad_input "on with dropout in the frozen layers" "data.cache_features: on, .*model.dropout 0.1" -- \
  "$GRAFT" train bert.yaml experiment=r5 data.cache_features=on model.dropout=0.1
expect_bad_input "on with augmentation" "data.cache_features: on, .*data.augment.hflip" -- \
  "$GRAFT" train cfg.yaml experiment=r1 data.cache_features=on data.augment.hflip=true
expect_bad_input "on with freeze.bn train" "data.cache_features: on, .*freeze.bn: train" -- \
  "$GRAFT" train cfg.yaml experiment=r2 data.cache_features=on freeze.bn=train
expect_bad_input "on with the stem trainable" "data.cache_features: on, .*conv1" -- \
  "$GRAFT" train cfg.yaml experiment=r3 data.cache_features=on 'freeze.trainable=["*"]'
expect_bad_input "on with an mlp" "data.cache_features: on, .*mlp cannot start its forward" -- \
  "$GRAFT" train cfg.yaml experiment=r4 data.cache_features=on model.arch=mlp 'freeze.trainable=["head.*"]'
[ ! -e runs/r1 ] && [ ! -e runs/r2 ] && ok "refused runs leave no run directory" || bad "refused runs left files"
"$GRAFT" train cfg.yaml experiment=a1 train.epochs=1 >a1.out 2>&1 &&
  "$GRAFT" train cfg.yaml experiment=a2 freeze.bn=train >a2.out 2>&1 &&
  "$GRAFT" train cfg.yaml experiment=a3 >a3.out 2>&1 || bad "auto runs"
[ "$(grep -c "feature cache" a1.out)" = 1 ] && grep -q "not longer than one epoch" a1.out &&
  [ "$(grep -c "feature cache" a2.out)" = 1 ] && grep -q "feature cache not used .*freeze.bn: train" a2.out &&
  grep -q "feature cache at the input of fc" a3.out &&
  ok "auto: $(grep -o 'feature cache not used.*' a1.out | cut -c1-80)...; used for 3 epochs" ||
  { bad "auto lines"; grep "feature cache" a1.out a2.out a3.out; }
finish
