#!/usr/bin/env bash
# ctest-labels: mpi;slow
# LoRA through the real CLI on fortunes: a small GPT-2 pretrained, then fine-tuned with
# adapters (model.lora, dropout on): the base stays frozen, the run writes the merged
# model.safetensors under plain names and a PEFT adapter directory; the merged file, the
# base plus the adapter directory (model.lora.init), `graft ckpt export` with and
# without --merge-lora all evaluate alike, and the merged file also as a plain GPT-2;
# graft sample continues a prompt alike from the merged file, base + adapter directory
# and the checkpoint;
# an interrupted and resumed run ends byte-identical to the uninterrupted one; at np=2
# comm_bytes is exactly the adapters' bytes (+ a trainable head); config and adapter
# errors are one line, exit 2.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
tools="$GRAFT_SOURCE_DIR/tests/tools"
same() { python3 "$tools/compare_safetensors.py" "$1" "$2" --identical --names "$3" >/dev/null; }
mpi() { timeout 180 mpirun --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 "$@"; }
evaluate() { "$GRAFT" eval "$@" 2>/dev/null | head -n 1 | sed 's/.*: //'; }
fortunes=/usr/share/games/fortunes

"$GRAFT" data text --out t --tokenizer bytes $fortunes/science $fortunes/computers >/dev/null || bad "text data"
cat >base.yaml <<YAML
experiment: base
model: {arch: gpt2, n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64}
data: {train: t, val: t, batch_size: 16, seq_len: 64}
optim: {lr: 0.003}
train: {max_steps: 20, log_every: 10}
YAML
"$GRAFT" train base.yaml >base.out 2>&1 || { bad "gpt2 pretraining"; tail -n 5 base.out; }
base=runs/base/model.safetensors
cat >lora.yaml <<YAML
experiment: lora
model: {arch: gpt2, n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64, dropout: 0.1, init: $base,
        lora: {rank: 4, alpha: 8, dropout: 0.1,
               targets: ["transformer.h.*.attn.c_attn", "transformer.h.1.mlp.c_fc"]}}
data: {train: t, val: t, batch_size: 16, seq_len: 64}
optim: {lr: 0.01}
schedule: {name: constant}
train: {max_steps: 20, log_every: 5}
checkpoint: {every_steps: 10}
YAML
"$GRAFT" train lora.yaml >lora.out 2>&1 || { bad "lora run"; tail -n 5 lora.out; }
# 2 x c_attn (4x64 + 192x4) + h.1.mlp.c_fc (4x64 + 256x4) = 3328 trainable floats
grep -Eq "total +3328 " lora.out && ok "only the adapters train (3328 floats)" ||
  { bad "trainable count"; grep total lora.out; }
python3 - runs/lora/adapter <<'PY' && ok "adapter/: PEFT's adapter_config.json and tensor names" || bad "adapter directory"
import json, struct, sys
d = sys.argv[1]
c = json.load(open(d + "/adapter_config.json"))
assert c["peft_type"] == "LORA" and c["r"] == 4 and c["lora_alpha"] == 8, c
assert c["lora_dropout"] == 0.1 and c["fan_in_fan_out"] is True and c["bias"] == "none", c
assert c["task_type"] == "CAUSAL_LM" and c["base_model_name_or_path"] == "", c
assert c["target_modules"] == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn",
                               "transformer.h.1.mlp.c_fc"], c
raw = open(d + "/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
assert h["base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight"]["shape"] == [4, 64], h
assert h["base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"]["shape"] == [256, 4], h
assert len(h) == 6 and all(k.startswith("base_model.model.") for k in h), sorted(h)
PY
"$GRAFT" inspect runs/lora/model.safetensors >merged.txt
! grep -q "lora_" merged.txt && grep -q "transformer.h.1.mlp.c_fc.weight" merged.txt &&
  same $base runs/lora/model.safetensors 'transformer.h.*.mlp.c_proj.*' &&
  ! same $base runs/lora/model.safetensors 'transformer.h.1.mlp.c_fc.weight' &&
  same $base runs/lora/model.safetensors 'transformer.h.1.mlp.c_fc.bias' &&
  ok "model.safetensors: plain names, adapters merged into their layers, the rest the base's" ||
  bad "merged model.safetensors"

# the checkpoint: adapters and their AdamW state per step, the frozen base in one file
ck=runs/lora/checkpoints/step-00000020
"$GRAFT" inspect $ck/model.safetensors | grep -q "^  transformer.h.1.mlp.c_fc.lora_B.weight " &&
  ! "$GRAFT" inspect $ck/model.safetensors | grep -q "^  transformer.h.1.mlp.c_fc.weight " &&
  "$GRAFT" inspect $ck/optim.safetensors | grep -q "^$ck/optim.safetensors: 12 tensors, 26624 data bytes" &&
  [ "$(ls runs/lora/checkpoints | grep -c '^frozen-')" = 1 ] &&
  ok "checkpoints: adapters and their optimizer state (12 tensors), the frozen base written once" ||
  bad "checkpoint contents"

e_merged=$(evaluate lora.yaml --weights runs/lora/model.safetensors)
e_plain=$(evaluate base.yaml --weights runs/lora/model.safetensors)
e_init=$(evaluate lora.yaml --weights $base model.lora.init=runs/lora/adapter)
"$GRAFT" ckpt export runs/lora/checkpoints --out merged.safetensors --merge-lora >/dev/null &&
  "$GRAFT" ckpt export runs/lora/checkpoints --out unmerged.safetensors >/dev/null || bad "ckpt export"
e_export=$(evaluate base.yaml --weights merged.safetensors)
e_unmerged=$(evaluate lora.yaml --weights unmerged.safetensors)
[ -n "$e_merged" ] && [ "$e_merged" = "$e_plain" ] && [ "$e_merged" = "$e_init" ] &&
  [ "$e_merged" = "$e_export" ] && [ "$e_merged" = "$e_unmerged" ] &&
  ok "same evaluation ($e_merged): merged file with and without model.lora, base + adapter dir, ckpt export --merge-lora (plain GPT-2) and unmerged" ||
  bad "evaluations differ: merged '$e_merged' plain '$e_plain' init '$e_init' export '$e_export' unmerged '$e_unmerged'"
# graft sample: the merged file, base weights + the PEFT adapter directory, and the
# checkpoint (adapters + frozen base) continue a prompt alike; the base alone does not
# (sampled with one seed: this briefly trained model's greedy text is all blanks)
draw() { "$GRAFT" sample "$@" --prompt "The " --seed 3 --max-new-tokens 40 2>/dev/null; }
s_merged=$(draw base.yaml --weights runs/lora/model.safetensors)
s_init=$(draw lora.yaml --weights $base model.lora.init=runs/lora/adapter)
s_ckpt=$(draw lora.yaml --weights runs/lora/checkpoints)
s_base=$(draw base.yaml --weights $base)
[ ${#s_merged} -gt 4 ] && [ "$s_merged" = "$s_init" ] && [ "$s_merged" = "$s_ckpt" ] && [ "$s_merged" != "$s_base" ] &&
  ok "graft sample: merged file = base + adapter dir = checkpoint, seed 3 ($(printf %q "$s_merged"))" ||
  bad "sample: merged '$s_merged' init '$s_init' ckpt '$s_ckpt' base '$s_base'"
! "$GRAFT" inspect merged.safetensors | grep -q lora_ && "$GRAFT" inspect unmerged.safetensors | grep -q lora_A &&
  ok "ckpt export: --merge-lora writes plain names, without it the adapters" || bad "export names"

# exact resume: 10 steps, then on to 20 from the checkpoint (dropout on in the base and the adapters)
"$GRAFT" train lora.yaml experiment=res train.max_steps=10 >res1.out 2>&1 &&
  "$GRAFT" train lora.yaml experiment=res checkpoint.allow_config_change=true >res2.out 2>&1 &&
  grep -q "resuming from runs/res/checkpoints/step-00000010" res2.out &&
  cmp -s runs/lora/model.safetensors runs/res/model.safetensors &&
  cmp -s runs/lora/adapter/adapter_model.safetensors runs/res/adapter/adapter_model.safetensors &&
  ok "interrupted at step 10 and resumed: merged weights and adapters byte-identical" ||
  { bad "lora resume"; tail -n 3 res2.out; }

# np=2: only the adapters (and the trainable head) are all-reduced
comm_bytes() { python3 -c "
import json, sys
print(sorted({json.loads(l)['comm_bytes'] for l in open(sys.argv[1])}))" "$1"; }
mpi -np 2 "$GRAFT" train lora.yaml experiment=dp train.max_steps=5 >dp.out 2>&1 &&
  grep -q "replicas are bit-identical" dp.out && [ "$(comm_bytes runs/dp/metrics.jsonl)" = "[13312]" ] &&
  ok "np=2: comm_bytes 13312 per step = 4 x 3328 adapter floats" ||
  { bad "np=2 comm_bytes $(comm_bytes runs/dp/metrics.jsonl)"; tail -n 3 dp.out; }
mpi -np 2 "$GRAFT" train lora.yaml experiment=dph train.max_steps=5 'freeze.trainable=["transformer.ln_f.*"]' \
  >dph.out 2>&1 && [ "$(comm_bytes runs/dph/metrics.jsonl)" = "[13824]" ] &&
  grep -q '"modules_to_save": \[' runs/dph/adapter/adapter_config.json &&
  python3 -c "import json; assert json.load(open('runs/dph/adapter/adapter_config.json'))['modules_to_save'] == ['transformer.ln_f']" &&
  "$GRAFT" inspect runs/dph/adapter/adapter_model.safetensors | grep -q "base_model.model.transformer.ln_f.weight" &&
  ok "np=2 with ln_f trainable: comm_bytes 13824 (+128 floats), saved as modules_to_save" ||
  { bad "np=2 with a head $(comm_bytes runs/dph/metrics.jsonl)"; tail -n 3 dph.out; }

head='freeze.trainable=["transformer.ln_f.*"]'
e_merged=$(evaluate lora.yaml "$head" --weights runs/dph/model.safetensors)
e_init=$(evaluate lora.yaml "$head" --weights $base model.lora.init=runs/dph/adapter)
[ -n "$e_merged" ] && [ "$e_merged" = "$e_init" ] &&
  ok "with a trainable head: base + adapter dir (head included) evaluates as the merged file ($e_merged)" ||
  bad "head: merged '$e_merged' vs base + adapter '$e_init'"

expect_bad_input "glob matching no layer" "model.lora.targets: 'transformer.h.\*.attn.nope' matches no linear layer" \
  -- "$GRAFT" train lora.yaml experiment=x1 'model.lora.targets=["transformer.h.*.attn.nope"]'
expect_bad_input "architecture without adapters" "model.lora: model.arch mlp takes no adapters" \
  -- "$GRAFT" train lora.yaml experiment=x2 model.arch=mlp model.init=null
expect_bad_input "lora keys without targets" "model.lora.targets: must list at least one glob" \
  -- "$GRAFT" train base.yaml experiment=x3 model.lora.rank=4
expect_bad_input "rank 0" "model.lora.rank" -- "$GRAFT" train lora.yaml experiment=x4 model.lora.rank=0
expect_bad_input "alpha 0" "model.lora.alpha" -- "$GRAFT" train lora.yaml experiment=x5 model.lora.alpha=0
expect_bad_input "dropout 1" "model.lora.dropout" -- "$GRAFT" train lora.yaml experiment=x6 model.lora.dropout=1
expect_bad_input "adapter of another rank" "adapter_config.json: r is 4 but model.lora.rank is 8" \
  -- "$GRAFT" train lora.yaml experiment=x7 model.init=null model.lora.rank=8 model.lora.init=runs/lora/adapter
expect_bad_input "adapter of other layers" "adapter_model.safetensors: adapter base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight of the model is missing" \
  -- "$GRAFT" train lora.yaml experiment=x8 model.init=null 'model.lora.targets=["transformer.h.*.mlp.c_fc", "transformer.h.*.attn.c_attn"]' model.lora.init=runs/lora/adapter
expect_bad_input "merge without adapters" "no LoRA adapters to merge" \
  -- "$GRAFT" ckpt export runs/base/checkpoints --out x.safetensors --merge-lora
[ ! -e runs/x1 ] && [ ! -e runs/x7 ] && ok "refused runs leave nothing behind" || bad "leftovers"
finish
