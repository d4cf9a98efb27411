#!/usr/bin/env bash
# Pretrain on general fortunes, fine-tune on science fortunes with the lower half
# frozen, and compare with the same fine-tuning steps from scratch and with LoRA
# adapters on the frozen model (validation perplexity on held-out science fortunes);
# then sample from the LoRA model. Run from the repository root after `make`.
set -euo pipefail
GRAFT=${GRAFT:-build/graft}
ex=examples/gpt2_fortunes
src=/usr/share/games/fortunes
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2} OPENBLAS_THREAD_TIMEOUT=4
mkdir -p data/fortunes
general=$(ls "$src" | grep -v -e '\.' -e '^science$' | sed "s|^|$src/|")
# the science file split at its fortunes: the first 500 to train on, the rest to validate
awk -v RS='\n%\n' -v ORS='\n%\n' 'NR <= 500' "$src/science" >data/fortunes/science-train.txt
awk -v RS='\n%\n' -v ORS='\n%\n' 'NR > 500' "$src/science" >data/fortunes/science-val.txt
# shellcheck disable=SC2086 # one argument per file
$GRAFT data text --out data/fortunes/general --tokenizer bytes $general
$GRAFT data text --out data/fortunes/science_train --tokenizer bytes data/fortunes/science-train.txt
$GRAFT data text --out data/fortunes/science_val --tokenizer bytes data/fortunes/science-val.txt
$GRAFT train $ex/pretrain.yaml checkpoint.resume=never
$GRAFT train $ex/finetune.yaml checkpoint.resume=never | tee runs/gpt2_finetune.out
$GRAFT train $ex/finetune.yaml checkpoint.resume=never experiment=gpt2_scratch \
  model.init=null 'freeze.trainable=[]' | tee runs/gpt2_scratch.out
$GRAFT train $ex/finetune_lora.yaml checkpoint.resume=never | tee runs/gpt2_lora.out
echo "pretrained + fine-tuned: $(grep '^test perplexity' runs/gpt2_finetune.out)"
echo "from scratch:            $(grep '^test perplexity' runs/gpt2_scratch.out)"
echo "pretrained + LoRA:       $(grep '^test perplexity' runs/gpt2_lora.out)"
echo "a sample of the LoRA model (base weights + its PEFT adapter directory):"
$GRAFT sample $ex/finetune_lora.yaml --weights runs/gpt2_pretrain/model.safetensors \
  model.lora.init=runs/gpt2_lora/adapter --prompt "The scientist " --max-new-tokens 200 \
  --temperature 0.8 --seed 1
