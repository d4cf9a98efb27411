#!/usr/bin/env bash
# ctest-labels: mpi;slow
# Transfer learning end to end on real Fashion-MNIST: pretrain on classes 0-4, then
# fine-tune on classes 5-9 with a replaced head and a frozen trunk; discriminative
# learning rates (optim.groups); gradual unfreezing (freeze.schedule) on one and two
# ranks, resumed from checkpoints on either side of the unfreeze; bad weights files.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
cmp_weights() { python3 "$GRAFT_SOURCE_DIR/tests/tools/compare_safetensors.py" "$@" >/dev/null; }
mpi() { timeout 180 mpirun --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 "$@"; }

"$GRAFT" data fmnist --out a --classes 0-4 --per-class 200 >/dev/null &&
  "$GRAFT" data fmnist --out b --classes 5-9 --per-class 200 >/dev/null &&
  "$GRAFT" data fmnist --out bt --split test --classes 5-9 --per-class 40 >/dev/null &&
  "$GRAFT" data fmnist --out c --classes 0-2 --per-class 20 >/dev/null || bad "data"
cat >pre.yaml <<YAML
experiment: pre
model: {arch: mlp, hidden: [64, 32]}
data: {train: a, batch_size: 32}
optim: {lr: 0.003}
schedule: {name: constant}
train: {max_steps: 60, log_every: 10}
YAML
"$GRAFT" train pre.yaml >pre.out 2>&1 || { bad "pretraining"; tail -n 5 pre.out; }
pre=runs/pre/model.safetensors

# 1. Feature extraction on new classes: fresh head, trunk frozen and untouched.
cat >ft.yaml <<YAML
experiment: ft
model: {arch: mlp, hidden: [64, 32], init: $pre, head: {num_classes: 5}}
freeze: {trainable: [head.*]}
data: {train: b, val: bt, batch_size: 32}
optim: {lr: 0.003}
schedule: {name: constant}
train: {max_steps: 40, log_every: 10}
checkpoint: {every_steps: 8, keep_last: 10}
YAML
"$GRAFT" train ft.yaml >ft.out 2>&1 || { bad "fine-tune"; tail -n 5 ft.out; }
grep -q "model.init $pre: 4 matched, 0 missing, 0 unexpected, 2 replaced (head 'head'" ft.out &&
  ok "init report: trunk matched, head replaced" || { bad "init report"; grep model.init ft.out; }
grep -Eq "hidden +0 +52320" ft.out && grep -Eq "head +165 +0" ft.out &&
  ok "freeze table: hidden frozen, head trainable" || { bad "freeze table"; grep -A4 'module' ft.out; }
cmp_weights $pre runs/ft/model.safetensors --identical --names 'hidden.*' &&
  ok "frozen trunk is bit-identical to the pretrained weights" || bad "frozen trunk changed"
acc=$(sed -n 's/^test accuracy: //p' ft.out)
awk -v a="$acc" 'BEGIN { exit !(a > 0.4) }' && ok "new head on a frozen trunk: accuracy $acc (chance 0.2)" ||
  bad "head-only accuracy '$acc'"

# 2. Discriminative learning rates: lr_scale 0 leaves the trunk exactly as loaded.
"$GRAFT" train ft.yaml experiment=groups 'freeze.trainable=[]' \
  'optim.groups=[{params: "hidden.*", lr_scale: 0.0}]' checkpoint.every_steps=0 >groups.out 2>&1
if cmp_weights $pre runs/groups/model.safetensors --identical --names 'hidden.*'; then
  ok "optim.groups lr_scale 0: trunk unchanged while the head trains"
else bad "optim.groups"; tail -n 3 groups.out; fi
"$GRAFT" train ft.yaml experiment=groups2 'freeze.trainable=[]' \
  'optim.groups=[{params: "hidden.*", lr_scale: 0.1}]' checkpoint.every_steps=0 >groups2.out 2>&1
if ! cmp_weights $pre runs/groups2/model.safetensors --identical --names 'hidden.0.*'; then
  ok "optim.groups lr_scale 0.1: trunk fine-tuned"
else bad "optim.groups 0.1"; fi

# 3. Gradual unfreezing: hidden.1 joins at step 12, hidden.0 at step 30.
sched='freeze.schedule=[{at_step: 12, trainable: ["hidden.1.*"]}, {at_step: 30, trainable: ["hidden.0.weight", "hidden.0.bias"]}]'
"$GRAFT" train ft.yaml experiment=gu "$sched" >gu.out 2>&1 || { bad "gradual unfreezing"; tail -n 5 gu.out; }
grep -q "step 12: freeze.schedule\[0\] makes 1 glob(s) trainable" gu.out &&
  grep -q "trainable floats: 165 -> 2245" gu.out && grep -q "trainable floats: 2245 -> 52485" gu.out &&
  ok "unfreezing at steps 12 and 30 grows the trainable set" || { bad "unfreeze log"; grep -i 'trainable\|schedule' gu.out; }
# The same run resumed from checkpoints before and after each unfreeze ends identically.
for s in 8 16 32; do
  "$GRAFT" train ft.yaml experiment=gu$s "$sched" \
    checkpoint.resume=runs/gu/checkpoints/step-000000$(printf %02d $s) >gu$s.out 2>&1
  cmp -s runs/gu/model.safetensors runs/gu$s/model.safetensors &&
    ok "resumed at step $s: weights byte-identical to the uninterrupted run" ||
    { bad "resume at step $s"; grep -i 'error\|resum' gu$s.out | head -3; }
done
# Two ranks: the same schedule, buckets rebuilt on both; replicas agree at the end.
mpi -np 2 "$GRAFT" train ft.yaml experiment=gu2 "$sched" >gu2.out 2>&1 &&
  grep -q "replicas are bit-identical" gu2.out && grep -q "trainable floats: 2245 -> 52485" gu2.out &&
  ok "two ranks: unfreezing keeps the replicas identical" || { bad "two-rank unfreezing"; tail -n 5 gu2.out; }

# 4. Bad input: exit 2, one line, nothing trained.
expect_bad_input "schedule glob" "freeze.schedule\[0\].trainable: 'layer9.\*' matches no parameter" \
  -- "$GRAFT" train ft.yaml experiment=bad1 'freeze.schedule=[{at_step: 3, trainable: ["layer9.*"]}]'
expect_bad_input "head classes vs data" "model.head.num_classes is 7 but b has 5 classes" \
  -- "$GRAFT" train ft.yaml experiment=bad2 model.head.num_classes=7
expect_bad_input "no head replacement" "tensors that do not fit the model \(2\): head.weight \(file \[5, 32\], model \[3, 32\]\)" \
  -- "$GRAFT" train ft.yaml experiment=bad3 model.head.num_classes=0 data.train=c data.val=null
finish
