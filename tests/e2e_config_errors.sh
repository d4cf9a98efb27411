#!/usr/bin/env bash
# Bad configs and bad data through graft train: one line naming file:line:column and
# key (or the damaged file), exit 2 before training starts, and no run directory
# created. (The full table of malformed configs is in test_config.c.)
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
mkdir -p d
good() {
  cat <<YAML
experiment: e2e_bad
model: {arch: mlp}
data: {train: d/train}
optim: {lr: 0.001}
train: {epochs: 1}
YAML
}
good | sed 's/lr: 0.001/lrr: 0.001/' >typo.yaml
expect_bad_input "unknown key" "typo.yaml:4:[0-9]+: optim.lrr: unknown key \(did you mean 'optim.lr'\?\)" -- "$GRAFT" train typo.yaml
good | sed 's/lr: 0.001/lr: fast/' >type.yaml
expect_bad_input "wrong type" "type.yaml:4:[0-9]+: optim.lr: expected a number, found 'fast'" -- "$GRAFT" train type.yaml
printf 'experiment: x\n\tmodel: {arch: mlp}\n' >tab.yaml
expect_bad_input "tab" "tab.yaml:2:1: .*tab" -- "$GRAFT" train tab.yaml
expect_bad_input "missing file" "nothere.yaml: cannot open: No such file" -- "$GRAFT" train nothere.yaml
good >ok.yaml
expect_bad_input "bad override" "override 'optim.lrr=1'.*did you mean 'optim.lr'" -- "$GRAFT" train ok.yaml optim.lrr=1
expect_bad_input "missing dataset" "d/train/index.json: .*No such file" -- "$GRAFT" train ok.yaml
# Damaged datasets are caught when the run opens them (data.verify checks checksums).
"$GRAFT" data fmnist --out d/train --classes 0-1 --per-class 50 --shard-size 40 >/dev/null || bad "data"
shard=d/train/shard-00001.safetensors
cp "$shard" shard.bak
printf '\xff' | dd of="$shard" bs=1 seek=200 conv=notrunc status=none
expect_bad_input "bit flip" "shard-00001.safetensors: checksum mismatch" -- "$GRAFT" train ok.yaml
head -c 300 shard.bak >"$shard"
expect_bad_input "truncated shard" "shard-00001.safetensors: " -- "$GRAFT" train ok.yaml
rm "$shard"
expect_bad_input "missing shard" "shard 'shard-00001.safetensors' is missing" -- "$GRAFT" train ok.yaml
[ ! -e runs ] && ok "no run directory was created" || bad "a run directory was left behind: $(ls -R runs)"
finish
