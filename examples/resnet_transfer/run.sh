#!/usr/bin/env bash
# Pretrain, then transfer with a replaced head, a frozen trunk and gradual unfreezing;
# and the same 150 images trained from scratch, for comparison. Run from the
# repository root after `make` (about 2 minutes on 2 cores).
set -euo pipefail
GRAFT=${GRAFT:-build/graft}
ex=examples/resnet_transfer
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2} OPENBLAS_THREAD_TIMEOUT=4
$GRAFT data fmnist --out data/upper/train --classes 0-4 --per-class 1000
$GRAFT data fmnist --out data/lower/train --classes 5-9 --per-class 30
$GRAFT data fmnist --out data/lower/test --split test --classes 5-9
$GRAFT train $ex/pretrain.yaml checkpoint.resume=never
$GRAFT train $ex/finetune.yaml checkpoint.resume=never | tee runs/finetune.out
$GRAFT train $ex/finetune.yaml checkpoint.resume=never experiment=resnet_scratch \
  model.init=null model.head.num_classes=0 'freeze.trainable=[]' 'freeze.schedule=[]' \
  'optim.groups=[]' | tee runs/scratch.out
echo "transfer:     $(grep '^test accuracy' runs/finetune.out)"
echo "from scratch: $(grep '^test accuracy' runs/scratch.out)"
