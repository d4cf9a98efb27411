#!/usr/bin/env bash
# Check before starting: every bad combination of config, datasets, weights and flags
# is refused with exit 2 and one line before anything is created (no runs/<experiment>/,
# no checkpoint directory, no dataset directory); values that a 32-bit float cannot hold
# are refused with the key's name; converters never write a dataset the reader would
# reject; a file header that promises more than the file holds fails at once; no list
# is cut on its way to mpirun.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
fortunes=/usr/share/games/fortunes

"$GRAFT" data fmnist --out img --classes 0-2 --per-class 20 >/dev/null || bad "data fmnist"
"$GRAFT" data fmnist --out img5 --classes 0-4 --per-class 4 >/dev/null || bad "data fmnist 5"
"$GRAFT" data text --out tok --tokenizer bytes "$fortunes/art" >/dev/null || bad "data text"
printf 'short\n' >short.txt
"$GRAFT" data text --out tiny --tokenizer bytes short.txt >/dev/null || bad "data text tiny"
printf 'a b c\n%%\nd e\n' >c1
printf 'x y\n%%\nz\n' >c2
"$GRAFT" data text --out seq --tokenizer bytes --classify --seq-len 16 c1 c2 >/dev/null ||
  bad "data text --classify"
cat >base.yaml <<YAML
experiment: v
model: {arch: mlp, hidden: [8]}
data: {train: img, batch_size: 8}
optim: {lr: 0.001}
train: {max_steps: 2}
checkpoint: {dir: ck, every_steps: 1}
YAML
gpt2="model.arch=gpt2 model.n_layer=1 model.n_embd=8 model.n_head=2 data.train=tok data.seq_len=16"

# refused NAME PATTERN OVERRIDES...: graft train base.yaml exits 2 with one line and
# leaves neither runs/ nor the checkpoint directory behind.
refused() {
  local name=$1 pattern=$2
  shift 2
  rm -rf runs ck
  expect_bad_input "$name" "$pattern" -- "$GRAFT" train base.yaml "$@"
  if [ -e runs ] || [ -e ck ]; then bad "$name: left $(ls -d runs ck 2>/dev/null | tr '\n' ' ')"; fi
}

# -- datasets against the settings that constrain them
refused "batch larger than the data" "data.batch_size 100 is more than the 60 samples of data.train img" \
  data.batch_size=100
refused "token windows" "fewer than seq_len \\+ 1" $gpt2 data.train=tiny
refused "evaluation set too short" "tiny: 6 tokens are fewer than seq_len \\+ 1 = 17" $gpt2 data.val=tiny
refused "augmentation of tokens" "data.augment.hflip applies to images; data.train tok holds tokens" \
  $gpt2 data.augment.hflip=true
refused "val vs train" "data.val img5 does not match data.train img" data.val=img5
refused "head vs classes" "model.head.num_classes is 5 but img has 3 classes" model.head.num_classes=5
refused "language model on images" "gpt2 needs a token dataset" model.arch=gpt2
refused "language model on sequences" "gpt2 is a language model; seq holds labelled sequences" \
  $gpt2 data.train=seq data.batch_size=4
refused "model vocabulary" "model.vocab_size 100 is smaller than the dataset's vocabulary of 256" \
  $gpt2 model.vocab_size=100
refused "positions vs seq_len" "data.seq_len 16 is longer than model.n_positions 8" \
  $gpt2 model.n_positions=8
refused "mask token" "model.mask_token_id 500 is outside the vocabulary" \
  model.arch=bert model.n_layer=1 model.n_embd=8 model.n_head=2 data.train=tok data.seq_len=8 \
  model.mask_token_id=500
refused "no [MASK] in the tokenizer" "model.mask_token_id: the dataset's tokenizer has no \[MASK\] token" \
  model.arch=bert model.n_layer=1 model.n_embd=8 model.n_head=2 data.train=tok data.seq_len=8
refused "patch size vs image" "model.patch_size 5 does not divide the 28x28 images" \
  model.arch=vit model.n_layer=1 model.n_embd=8 model.n_head=2 model.patch_size=5
# -- freezing, groups and the schedule against the model and the run
refused "freeze glob" "freeze.frozen: 'nope' matches no parameter" 'freeze.frozen=[nope]'
refused "group glob" "optim.groups\\[0\\].params: 'nope\\*' matches no parameter" \
  'optim.groups=[{params: "nope*"}]'
refused "unfreeze never reached" "freeze.schedule\\[0\\].at_step 2 is not before the end of the run \\(2 steps\\)" \
  'freeze.schedule=[{at_step: 2, trainable: ["*"]}]'
# -- model.init shapes, and a header that promises more than the file holds
"$GRAFT" train base.yaml experiment=w checkpoint.dir=null >/dev/null 2>&1 || bad "train w"
cp runs/w/model.safetensors w8.safetensors
refused "init shapes" "tensors that do not fit the model \\(3\\): hidden.0.weight \\(file \\[8, 784\\], model \\[16, 784\\]\\)" \
  'model.hidden=[16]' model.init=w8.safetensors
python3 - <<'PY'
import json, struct
h = json.dumps({"hidden.0.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                    "data_offsets": [0, 16]}}).encode()
open("huge.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + bytes(16))
PY
refused "init tensor beyond the file" "data_offsets \\[0, 16\\] but shape \\[1048576, 1048576\\] F32 needs 4398046511104 bytes" \
  model.init=huge.safetensors
# -- products of sizes: computed in 64 bits and held against the machine
refused "parameters beyond memory" "model.arch mlp as configured has at least [0-9]+ parameters: with their gradients more than this machine's" \
  'model.hidden=[2000000000, 2000000000]'
refused "activations beyond memory" "activation memory of [0-9.]+ GiB is more than this machine's" \
  model.arch=gpt2 model.n_layer=1 model.n_embd=64 model.n_head=64 data.train=tok \
  data.seq_len=40000 model.n_positions=40000 data.batch_size=2
# -- names that become paths
refused "experiment too long" "experiment: must be at most 255 characters" experiment="$(printf 'e%.0s' $(seq 300))"
refused "checkpoint.dir too long" "checkpoint.dir: must be at most 3840 characters" \
  checkpoint.dir="$(printf 'd/%.0s' $(seq 2000))"
refused "checkpoint.resume too long" "checkpoint.resume: must be at most 3840 characters" \
  checkpoint.resume="$(printf 'r/%.0s' $(seq 2000))"

# -- numbers: range, no silent narrowing, no junk
refused "lr underflows a float" "optim.lr: 1e-50 underflows to 0 as a 32-bit float" optim.lr=1e-50
refused "momentum overflows a float" "optim.momentum: 1e39 overflows a 32-bit float" optim.momentum=1e39
refused "eps underflows a float" "optim.eps: 1e-46 underflows" optim.eps=1e-46
refused "dropout rounds to 1" "model.dropout: must be in \\[0, 1\\) as a 32-bit float .* which rounds to 1" \
  model.dropout=0.99999999999
refused "beta underflows" "optim.betas\\[1\\]: 1e-50 underflows" 'optim.betas=[0.9, 1e-50]'
refused "bucket overflows size_t" "comm.bucket_mb: must be in \\(0, 1048576\\], found 1e300" comm.bucket_mb=1e300
refused "bucket smaller than a gradient" "comm.first_bucket_mb: must hold at least one 4-byte gradient" \
  comm.first_bucket_mb=1e-9
refused "lr nan" "optim.lr: expected a number, found 'nan'" optim.lr=nan
refused "lr -0" "optim.lr: must be > 0, found -0" optim.lr=-0
refused "int beyond long" "seed: must be <= 9223372036854775807" seed=99999999999999999999
refused "int beyond int" "data.seq_len: must be <= 2147483647" data.seq_len=99999999999
refused "int with junk" "data.prefetch: expected an integer, found '2x'" data.prefetch=2x
for v in 1e99 -0 nan inf 99999999999 5x ' 5' 0x10; do
  expect_bad_input "data bench --steps '$v'" "--steps: expected an integer in \\[1, 1000000000\\]" \
    -- "$GRAFT" data bench img --steps "$v"
done
for v in 1e99 1e-50 nan inf -1 2ms 0x1p3; do
  expect_bad_input "data bench --step-ms '$v'" "--step-ms: expected a number >= 0 that a 32-bit float holds" \
    -- "$GRAFT" data bench img --step-ms "$v"
done
expect_bad_input "data bench batch beyond the data" "img: --batch 100 is more than the 60 samples of the dataset" \
  -- "$GRAFT" data bench img --batch 100 --steps 1
expect_bad_input "fmnist --per-class junk" "--per-class: expected an integer" \
  -- "$GRAFT" data fmnist --out never --per-class 10k
expect_bad_input "bench model --image" "--image: expected CxHxW with each in \\[1, 65536\\], got '3x99999999999x1'" \
  -- "$GRAFT" bench model mlp --image 3x99999999999x1
[ -e never ] && bad "fmnist --per-class left 'never'"

# -- converters refuse what the reader would reject, before writing anything
expect_bad_input "classify seq_len beyond the reader's limit" "need 1 <= seq_len <= 1048576" \
  -- "$GRAFT" data text --out big --tokenizer bytes --classify --seq-len 2000000 c1 c2
cp c1 "$(printf 'bad\377name')"
expect_bad_input "class name not UTF-8" "the name of class 1 is not valid UTF-8" \
  -- "$GRAFT" data text --out badname --tokenizer bytes --classify --seq-len 8 c1 "$(printf 'bad\377name')"
ls -d big* badname* 2>/dev/null | grep -q . && bad "a refused conversion left $(ls -d big* badname*)"

# -- an idx header that promises more than its file holds: refused before allocating
mkdir -p fm
python3 - <<'PY'
import gzip, shutil, struct
with gzip.open("fm/train-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 4000, 1000, 1000) + bytes(64))
shutil.copy("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", "fm/")
PY
start=$(date +%s%N)
expect_bad_input "idx header beyond the file" "header promises 4000000000 data bytes, more than a gzip file of [0-9]+ bytes can hold" \
  -- "$GRAFT" data fmnist --out fromidx --source fm
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 2000 ] && ok "refused in $ms ms" || bad "idx refusal took $ms ms"
[ -e fromidx ] && bad "idx refusal left fromidx"

# -- no list is cut on its way to mpirun
hosts=$(python3 -c "print('[' + ', '.join(['localhost:1'] * 600) + ']')")
"$GRAFT" launch base.yaml "launch.hosts=$hosts" --dry-run >dry.out 2>dry.err
h=$(awk '{for (i = 1; i < NF; i++) if ($i == "-H") print $(i + 1)}' dry.out | tr ',' '\n' | grep -c '^localhost:1$')
[ "$h" = 600 ] && ok "600 hosts all reach mpirun -H ($(wc -c <dry.out) bytes of command)" ||
  { bad "hosts cut: $h of 600 in -H"; head -c 300 dry.out; }
expect_bad_input "host slots beyond the limit" "launch.hosts\\[0\\]: 'localhost:99999999999': expected host:slots with slots in \\[1, 1000000\\]" \
  -- "$GRAFT" launch base.yaml 'launch.hosts=[localhost:99999999999]' --dry-run
expect_bad_input "host name beyond the limit" "launch.hosts\\[0\\]: host name of 300 characters \\(expected 1 to 253\\)" \
  -- "$GRAFT" launch base.yaml "launch.hosts=[$(printf 'h%.0s' $(seq 300)):1]" --dry-run
finish
