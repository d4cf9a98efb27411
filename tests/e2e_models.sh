#!/usr/bin/env bash
# ctest-labels: mpi;slow
# The transfer-learning architectures through the real CLI on real data: a small
# ResNet-18 pretrained on Fashion-MNIST classes 0-4 and fine-tuned on 5-9 (replaced fc,
# frozen trunk with batchnorm in eval or train mode, gradual unfreezing on two ranks);
# a small GPT-2 pretrained on fortunes and fine-tuned with its lower blocks frozen,
# loaded back from the Hugging Face hub layout; a small BERT pretrained as a masked LM
# and fine-tuned as a sequence classifier; a small ViT pretrained on Fashion-MNIST
# 0-4 and given a new head for 5-9 with its lower layers frozen; weights and config
# errors (exit 2).
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
tools="$GRAFT_SOURCE_DIR/tests/tools"
same() { python3 "$tools/compare_safetensors.py" "$1" "$2" --identical --names "$3" >/dev/null; }
mpi() { timeout 180 mpirun --oversubscribe --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 "$@"; }
fortunes=/usr/share/games/fortunes

"$GRAFT" data fmnist --out a --classes 0-4 --per-class 200 >/dev/null &&
  "$GRAFT" data fmnist --out b --classes 5-9 --per-class 200 >/dev/null &&
  "$GRAFT" data fmnist --out bt --split test --classes 5-9 --per-class 40 >/dev/null || bad "data"

# ---- ResNet-18 -------------------------------------------------------------------------
cat >pre.yaml <<YAML
experiment: rpre
model: {arch: resnet18, small_stem: true, width: 8}
data: {train: a, batch_size: 32}
optim: {lr: 0.003}
train: {max_steps: 30, log_every: 10}
YAML
"$GRAFT" train pre.yaml >rpre.out 2>&1 || { bad "resnet pretraining"; tail -n 5 rpre.out; }
pre=runs/rpre/model.safetensors
cat >ft.yaml <<YAML
experiment: rft
model: {arch: resnet18, small_stem: true, width: 8, init: $pre, head: {num_classes: 5}}
freeze: {trainable: [fc.*]}
data: {train: b, val: bt, batch_size: 32}
optim: {lr: 0.003}
train: {max_steps: 20, log_every: 10}
YAML
"$GRAFT" train ft.yaml >rft.out 2>&1 || { bad "resnet fine-tune"; tail -n 5 rft.out; }
grep -q "model.init $pre: 120 matched, 0 missing, 0 unexpected, 2 replaced (head 'fc'" rft.out &&
  ok "resnet18: 120 tensors loaded, fc replaced" || { bad "resnet init report"; grep model.init rft.out; }
same $pre runs/rft/model.safetensors 'layer*' && same $pre runs/rft/model.safetensors 'bn1.*' &&
  ok "fc only, freeze.bn eval: trunk weights and batchnorm statistics bit-identical" ||
  bad "frozen resnet trunk changed"
"$GRAFT" train ft.yaml experiment=rbn freeze.bn=train >rbn.out 2>&1
if same $pre runs/rbn/model.safetensors 'layer*.conv*' &&
  ! same $pre runs/rbn/model.safetensors 'bn1.running_mean'; then
  ok "freeze.bn train: frozen weights kept, batch statistics updated"
else bad "freeze.bn train"; tail -n 3 rbn.out; fi
mpi -np 2 "$GRAFT" train ft.yaml experiment=rgu 'freeze.schedule=[{at_step: 10, trainable: ["layer4.*"]}]' \
  >rgu.out 2>&1 && grep -q "replicas are bit-identical" rgu.out &&
  same $pre runs/rgu/model.safetensors 'layer3.*' && ! same $pre runs/rgu/model.safetensors 'layer4.1.conv2.weight' &&
  ok "two ranks: layer4 unfrozen at step 10, layer3 untouched, replicas identical" ||
  { bad "resnet gradual unfreezing"; tail -n 5 rgu.out; }
"$GRAFT" eval ft.yaml --weights runs/rft/model.safetensors >reval.out 2>&1 &&
  grep -q "accuracy" reval.out && ok "graft eval: $(head -n 1 reval.out)" || { bad "resnet eval"; cat reval.out; }
"$GRAFT" bench model resnet18 model.width=8 --image 3x32x32 --batch 4 --steps 1 --rounds 1 >bench.out 2>&1 &&
  grep -Eq "^full +\* +[0-9]+ .* [0-9.]+$" bench.out && grep -Eq "^frozen +fc\.\* +[0-9]+ .* [0-9.]+$" bench.out &&
  ok "graft bench model: full and fc-only rows (their ratio is a benchmark figure, not a test)" ||
  { bad "bench model"; cat bench.out; }

# ---- GPT-2 ---------------------------------------------------------------------------
"$GRAFT" data text --out t --tokenizer bytes $fortunes/science $fortunes/computers >/dev/null || bad "text data"
cat >g.yaml <<YAML
experiment: gpre
model: {arch: gpt2, n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64}
data: {train: t, val: t, batch_size: 16, seq_len: 64}
optim: {lr: 0.003}
train: {max_steps: 40, log_every: 10}
YAML
"$GRAFT" train g.yaml >gpre.out 2>&1 || { bad "gpt2 pretraining"; tail -n 5 gpre.out; }
python3 - runs/gpre/metrics.jsonl <<'PY' && ok "gpt2 pretraining: loss falls" || bad "gpt2 loss did not fall"
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1])]
assert loss[-1] < 0.8 * loss[0], loss
PY
g=runs/gpre/model.safetensors
"$GRAFT" inspect $g | grep -q "lm_head.weight" && same $g $g 'lm_head.weight' &&
  ok "saved GPT-2 lists the tied lm_head.weight (PyTorch strict loading finds it)" || bad "lm_head.weight"
"$GRAFT" train g.yaml experiment=gft model.init=$g \
  'freeze.trainable=["transformer.h.1.*", "transformer.ln_f.*"]' train.max_steps=10 >gft.out 2>&1 &&
  same $g runs/gft/model.safetensors 'transformer.h.0.*' && same $g runs/gft/model.safetensors 'transformer.wte.weight' &&
  ! same $g runs/gft/model.safetensors 'transformer.h.1.mlp.c_fc.weight' &&
  ok "gpt2: block 0 and the tied embedding frozen, block 1 fine-tuned" || { bad "gpt2 fine-tune"; tail -n 5 gft.out; }
python3 "$tools/st_rewrite.py" $g hub.safetensors gpt2-hub
"$GRAFT" train g.yaml experiment=ghub model.init=hub.safetensors model.init_strict=true train.max_steps=1 >ghub.out 2>&1 &&
  grep -q "hub.safetensors: 28 matched, 0 missing, 0 unexpected, 0 replaced, 2 skipped" ghub.out &&
  ok "hub layout (bare names, attn.bias masks, no lm_head) loads strictly" || { bad "hub layout"; grep -i 'init\|error' ghub.out; }
e1=$("$GRAFT" eval g.yaml --weights $g 2>/dev/null | head -n 1 | sed 's/.*: //')
e2=$("$GRAFT" eval g.yaml --weights hub.safetensors 2>/dev/null | head -n 1 | sed 's/.*: //')
[ -n "$e1" ] && [ "$e1" = "$e2" ] && ok "same evaluation from both layouts ($e1)" || bad "eval '$e1' vs '$e2'"

# ---- BERT: masked-LM pretraining on a token stream, then a sequence classifier ----------
"$GRAFT" data text --out t3 --tokenizer bytes $fortunes/science $fortunes/computers $fortunes/food >/dev/null &&
  "$GRAFT" data text --out s3 --tokenizer bytes --classify --seq-len 64 \
    $fortunes/science $fortunes/computers $fortunes/food >/dev/null || bad "bert data"
cat >mlm.yaml <<YAML
experiment: bmlm
model: {arch: bert, n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64, mask_token_id: 0}
data: {train: t3, batch_size: 32, seq_len: 64}
optim: {lr: 0.002}
train: {max_steps: 60, log_every: 20}
YAML
"$GRAFT" train mlm.yaml >bmlm.out 2>&1 || { bad "bert mlm"; tail -n 5 bmlm.out; }
python3 - runs/bmlm/metrics.jsonl <<'PY' && ok "bert masked-LM pretraining: loss falls" || bad "bert mlm loss"
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1])]
assert loss[-1] < 0.9 * loss[0], loss
PY
"$GRAFT" inspect runs/bmlm/model.safetensors | grep -q "cls.predictions.decoder.weight" &&
  ok "saved masked LM lists the tied cls.predictions.decoder.weight" || bad "mlm decoder alias"
cat >cls.yaml <<YAML
experiment: bcls
model: {arch: bert, n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64,
        init: runs/bmlm/model.safetensors, head: {num_classes: 3}}
freeze: {frozen: ["bert.embeddings.*"]}
data: {train: s3, val: s3, batch_size: 32}
optim: {lr: 0.0005}
train: {max_steps: 60, log_every: 20}
YAML
"$GRAFT" train cls.yaml >bcls.out 2>&1 || { bad "bert classifier"; tail -n 5 bcls.out; }
grep -q "37 matched, 2 missing, 7 unexpected, 0 replaced (head 'classifier'" bcls.out &&
  grep -q "missing from the file (2): bert.pooler.dense.weight, bert.pooler.dense.bias" bcls.out &&
  ok "classifier from the masked LM: encoder loaded, pooler and classifier fresh, cls.* ignored" ||
  { bad "bert init report"; grep -i 'init\|WARN' bcls.out; }
same runs/bmlm/model.safetensors runs/bcls/model.safetensors 'bert.embeddings.*' &&
  grep -q "per_class" runs/bcls/eval.json && ok "bert classifier: frozen embeddings kept, per-class eval written" ||
  bad "bert classifier run"
mpi -np 2 "$GRAFT" train cls.yaml experiment=bcls2 train.max_steps=10 >bcls2.out 2>&1 &&
  grep -q "replicas are bit-identical" bcls2.out && ok "bert classifier on two ranks" ||
  { bad "bert on two ranks"; tail -n 5 bcls2.out; }
expect_bad_input "sequences longer than the model" "the dataset's sequences have 64 tokens, longer than model.n_positions 32" \
  -- "$GRAFT" train cls.yaml experiment=x7 model.n_positions=32 model.init=null
expect_bad_input "language model on labelled rows" "model.arch gpt2 is a language model" \
  -- "$GRAFT" train g.yaml experiment=x6 data.train=s3 data.val=null

# ---- ViT: 7x7 patches of the same Fashion-MNIST classes, then a new head on the others ---
cat >v.yaml <<YAML
experiment: vpre
model: {arch: vit, patch_size: 7, n_layer: 2, n_head: 2, n_embd: 32, dropout: 0.1}
data: {train: a, batch_size: 32}
optim: {lr: 0.003}
train: {max_steps: 40, log_every: 10}
YAML
"$GRAFT" train v.yaml >vpre.out 2>&1 || { bad "vit pretraining"; tail -n 5 vpre.out; }
python3 - runs/vpre/metrics.jsonl <<'PY' && ok "vit pretraining: loss falls" || bad "vit loss did not fall"
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1])]
assert loss[-1] < 0.8 * loss[0], loss
PY
v=runs/vpre/model.safetensors
"$GRAFT" train v.yaml experiment=vft model.init=$v model.head.num_classes=5 data.train=b data.val=bt \
  'freeze.trainable=["encoder.layers.encoder_layer_1.mlp.*", "encoder.ln.*", "heads.*"]' \
  train.max_steps=10 >vft.out 2>&1 &&
  grep -q "30 matched, 0 missing, 0 unexpected, 2 replaced (head 'heads.head'" vft.out &&
  same $v runs/vft/model.safetensors 'encoder.layers.encoder_layer_0.*' &&
  same $v runs/vft/model.safetensors 'conv_proj.*' &&
  ! same $v runs/vft/model.safetensors 'encoder.layers.encoder_layer_1.mlp.0.weight' &&
  ok "vit: heads.head replaced, lower layers and patch embedding untouched, top MLP tuned" ||
  { bad "vit fine-tune"; grep -i 'init\|error' vft.out; }
expect_bad_input "vit patch size" "model.patch_size 16 does not divide the 28x28 images" \
  -- "$GRAFT" train v.yaml experiment=x8 model.patch_size=16
expect_bad_input "vit on tokens" "model.arch vit needs an image dataset \(got a token dataset\)" \
  -- "$GRAFT" train v.yaml experiment=x9 data.train=t data.seq_len=64

# ---- bad input: exit 2, one line ----------------------------------------------------------
"$GRAFT" train pre.yaml experiment=mlp model.arch=mlp train.max_steps=2 >/dev/null 2>&1 || bad "mlp"
expect_bad_input "vocab too small" "model.vocab_size 200 is smaller than the dataset's vocabulary of 256" \
  -- "$GRAFT" train g.yaml experiment=x1 model.vocab_size=200
expect_bad_input "sequence too long" "data.seq_len 128 is longer than model.n_positions 64" \
  -- "$GRAFT" train g.yaml experiment=x2 data.seq_len=128
expect_bad_input "no classifier" "model.head.num_classes: gpt2 has no classifier to replace" \
  -- "$GRAFT" train g.yaml experiment=x3 model.head.num_classes=4
# (120 tensors less resnet18's 20 num_batches_tracked, which a file may leave out)
expect_bad_input "strict: other architecture" \
  "model.safetensors: tensors of the model missing from the file \(100\): conv1.weight, bn1.weight, .* and 80 more; tensors in the file but not in the model \(6\): head.bias, .* \(strict loading\)" \
  -- "$GRAFT" train ft.yaml experiment=x4 model.init=runs/mlp/model.safetensors model.init_strict=true
python3 "$tools/st_rewrite.py" $g int.safetensors as-i32 transformer.wpe.weight
expect_bad_input "integer weight" "int.safetensors: tensors that do not fit the model \(1\): transformer.wpe.weight \(dtype I32, not a floating type\)" \
  -- "$GRAFT" train g.yaml experiment=x5 model.init=int.safetensors
finish
