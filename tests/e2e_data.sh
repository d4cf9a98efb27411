#!/usr/bin/env bash
# graft data: convert a small Fashion-MNIST subset and a text file, inspect and verify
# them, and get one clear line with exit status 2 for damaged datasets.
. "$(dirname "$0")/lib_e2e.sh"
fm=/usr/share/datasets/fashion-mnist
[ -f "$fm/train-images-idx3-ubyte.gz" ] || { echo "skip: no Fashion-MNIST in $fm"; exit 77; }
d="$tmp/fm3"

if "$GRAFT" data fmnist --out "$d" --classes 0-2 --per-class 100 --shard-size 128 >"$tmp/out" 2>&1 &&
  grep -q "wrote 300 samples of 3 classes in 3 shard(s)" "$tmp/out" && [ ! -e "$d.tmp" ]; then
  ok "fmnist subset: $(cat "$tmp/out")"
else
  bad "fmnist subset:"; cat "$tmp/out"
fi

"$GRAFT" data inspect "$d" >"$tmp/inspect" 2>&1
if grep -q "samples: *300" "$tmp/inspect" && grep -Eq "0 T-shirt/top +100" "$tmp/inspect" &&
  grep -Eq "2 Pullover +100" "$tmp/inspect" && grep -q "shape: *\[1, 28, 28\]" "$tmp/inspect" &&
  grep -q "shards: *3," "$tmp/inspect" && ! grep -q "Dress" "$tmp/inspect"; then
  ok "inspect: 300 samples, classes relabelled 0-2 with their names"
else
  bad "inspect output:"; cat "$tmp/inspect"
fi

out=$("$GRAFT" data verify "$d" 2>&1)
[ $? -eq 0 ] && [ "$out" = "ok: 3 shards verified" ] && ok "verify: $out" || bad "verify: $out"

# Writing again over a previous dataset replaces it; over anything else is refused.
"$GRAFT" data fmnist --out "$d" --classes 0,5 --per-class 10 --split test >"$tmp/out" 2>&1 &&
  grep -q "wrote 20 samples of 2 classes" "$tmp/out" && ok "rewrite replaces the dataset" ||
  { bad "rewrite:"; cat "$tmp/out"; }
"$GRAFT" data fmnist --out "$d" --classes 0-2 --per-class 100 --shard-size 128 >/dev/null 2>&1
mkdir -p "$tmp/notdata" && echo hi >"$tmp/notdata/notes.txt"
expect_bad_input "refuse foreign directory" "notdata: exists and holds 'notes.txt'" \
  -- "$GRAFT" data fmnist --out "$tmp/notdata" --per-class 1
expect_bad_input "bad --classes" "--classes: expected class ids" \
  -- "$GRAFT" data fmnist --out "$tmp/x" --classes 0-12
expect_bad_input "missing source" "$tmp/none/train-images-idx3-ubyte.gz: cannot open" \
  -- "$GRAFT" data fmnist --out "$tmp/x" --source "$tmp/none"

# Damaged copies: each verify fails with one line naming the shard.
cp -r "$d" "$tmp/flip"
printf '\377' | dd of="$tmp/flip/shard-00001.safetensors" bs=1 seek=5000 conv=notrunc status=none
expect_bad_input "corrupt shard" "flip/shard-00001.safetensors: checksum mismatch \(index.json says [0-9a-f]{16}, file has [0-9a-f]{16}\)" \
  -- "$GRAFT" data verify "$tmp/flip"
cp -r "$d" "$tmp/trunc"
head -c 20000 "$d/shard-00002.safetensors" >"$tmp/trunc/shard-00002.safetensors"
expect_bad_input "truncated shard" "trunc/shard-00002.safetensors: file is 20000 bytes, index.json says [0-9]+ \(truncated\)" \
  -- "$GRAFT" data verify "$tmp/trunc"
cp -r "$d" "$tmp/gone"
rm "$tmp/gone/shard-00000.safetensors"
expect_bad_input "missing shard" "gone/index.json: shard 'shard-00000.safetensors' is missing: No such file or directory" \
  -- "$GRAFT" data verify "$tmp/gone"
expect_bad_input "missing shard (inspect)" "shard 'shard-00000.safetensors' is missing" \
  -- "$GRAFT" data inspect "$tmp/gone"
cp -r "$d" "$tmp/json"
printf '{"format": "graft-dataset", "version": 1, "kind": ' >"$tmp/json/index.json"
expect_bad_input "malformed index.json" "json/index.json: invalid JSON at line 1" \
  -- "$GRAFT" data verify "$tmp/json"
expect_bad_input "not a dataset" "$tmp/none/index.json: cannot open: No such file" \
  -- "$GRAFT" data verify "$tmp/none"

# Text: fortune-style documents with the byte tokenizer.
printf 'one\n%%\ntwo two\n%%\n' >"$tmp/fortunes"
printf 'plain\n' >"$tmp/plain.txt"
if "$GRAFT" data text --out "$tmp/text" --tokenizer bytes "$tmp/fortunes" "$tmp/plain.txt" >"$tmp/out" 2>&1 &&
  grep -q "^3 document(s)" "$tmp/out" && grep -q "wrote 18 tokens (bytes, vocab 256)" "$tmp/out"; then
  ok "text: $(tr '\n' ' ' <"$tmp/out")"
else
  bad "text:"; cat "$tmp/out"
fi
expect_bad_input "text: missing file" "$tmp/nope.txt: cannot open" \
  -- "$GRAFT" data text --out "$tmp/text2" --tokenizer bytes "$tmp/nope.txt"
[ ! -e "$tmp/text2" ] && [ ! -e "$tmp/text2.tmp" ] && ok "failed text run leaves nothing behind" ||
  bad "failed text run left $tmp/text2 or $tmp/text2.tmp"

# The loader benchmark runs and reports both prefetch settings.
"$GRAFT" data bench "$d" --batch 32 --steps 5 --step-ms 1 >"$tmp/bench" 2>&1
grep -q "prefetch 0: .* samples/s" "$tmp/bench" && grep -q "prefetch 2: .* samples/s" "$tmp/bench" &&
  ok "bench: $(tail -2 "$tmp/bench" | tr -s ' ' | tr '\n' ';')" || { bad "bench:"; cat "$tmp/bench"; }
finish
