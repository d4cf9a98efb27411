#!/usr/bin/env bash
# ctest-labels: mpi
# graft data images on a folder of Fashion-MNIST pictures written as JPEGs and PNGs of
# every colour type (tests/tools/write_test_images.c), with broken files among them:
# the broken ones listed and skipped (--strict: exit 2, nothing written), the output the
# same bytes for every thread count, the split seeded and stratified, a CSV giving the
# same dataset, bad flags refused with one line, a small ResNet trained on the result
# on two ranks and fine-tuned, and graft predict on the files themselves.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
writer="$GRAFT_BUILD_DIR/tests/write_test_images"
[ -x "$writer" ] || { echo "no $writer"; exit 77; }
"$writer" root 40 >written.txt || bad "writing the image folder"
# a folder file without an image extension is ignored, not skipped
echo notes >root/Bag/README.txt

# ---- conversion, skipped files -----------------------------------------------------------
"$GRAFT" data images --out ds --size 24 --threads 1 root >conv.out 2>conv.err
rc=$?
[ $rc -eq 0 ] && ok "converted: $(head -n 1 conv.out)" || { bad "convert exit $rc"; cat conv.err; }
grep -q "^127 image file(s) in 3 classes: 121 for training, 0 for validation, 6 skipped (listed on stderr); 1 other" conv.out &&
  ok "127 files found, 121 written (a PNG named .jpg decodes, as in PIL), 6 skipped, 1 ignored" ||
  { bad "counts"; cat conv.out; }
for f in broken-truncated.jpg broken-header.jpg broken-truncated.png broken-empty.png broken-random.jpg broken-cmyk.jpg; do
  grep -q "^skipped root/Trouser/$f: " conv.err || bad "$f not listed"
done
grep -q "broken-cmyk.jpg: CMYK JPEG is not supported" conv.err && grep -q "broken-empty.png: empty file" conv.err &&
  grep -q "broken-truncated.jpg: truncated JPEG" conv.err && ok "reasons: $(tr '\n' '|' <conv.err)" ||
  { bad "skip reasons"; cat conv.err; }
"$GRAFT" data verify ds >/dev/null && ok "dataset verifies" || bad "verify"
"$GRAFT" data inspect ds >inspect.out
grep -q "shape:       \[3, 24, 24\] U8" inspect.out && grep -Eq "0 Bag +41" inspect.out &&
  grep -Eq "1 Sneaker +40" inspect.out && grep -Eq "2 Trouser +40" inspect.out &&
  ok "classes sorted by name, counts per class" || { bad "inspect"; cat inspect.out; }

# ---- determinism across thread counts ----------------------------------------------------
"$GRAFT" data images --out ds4 --size 24 --threads 4 root >/dev/null 2>&1
"$GRAFT" data images --out ds3 --size 24 --threads 3 --shard-size 50 root >/dev/null 2>&1
cmp -s ds/shard-00000.safetensors ds4/shard-00000.safetensors && cmp -s ds/index.json ds4/index.json &&
  ok "1 and 4 threads: identical shard and index" || bad "thread count changes the output"
python3 - ds ds3 <<'PY' && ok "shards of 50: the same samples in the same order" || bad "shard-size changes samples"
import json, struct, sys
def samples(d):
    idx = json.load(open(d + "/index.json")); out = b""
    for s in idx["shards"]:
        raw = open(d + "/" + s["file"], "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
        h = json.loads(raw[8:8 + n]); a, b = h["inputs"]["data_offsets"]; out += raw[8 + n + a:8 + n + b]
    return out, idx["normalize"]
sys.exit(0 if samples(sys.argv[1]) == samples(sys.argv[2]) else 1)
PY

# ---- --strict ------------------------------------------------------------------------------
"$GRAFT" data images --out strict --size 24 --strict root >strict.out 2>strict.err
rc=$?
[ $rc -eq 2 ] && [ ! -e strict ] && [ ! -e strict.tmp ] && grep -q "^unreadable root/Trouser/broken-empty.png: empty file" strict.err &&
  grep -q "6 of 127 image file(s) cannot be read; --strict: nothing written" strict.err &&
  ok "--strict: exit 2, the 6 files listed, nothing left behind" || { bad "--strict: exit $rc"; cat strict.err; ls; }

# ---- split: seeded, stratified ------------------------------------------------------------
"$GRAFT" data images --out tr --val-out va --val-fraction 0.25 --seed 5 --size 16 --channels 1 root >split.out 2>/dev/null
grep -q "91 for training, 30 for validation" split.out &&
  ok "split: $(head -n 1 split.out)" || { bad "split counts"; cat split.out; }
"$GRAFT" data inspect va >va.out
grep -Eq "0 Bag +10" va.out && grep -Eq "1 Sneaker +10" va.out && grep -Eq "2 Trouser +10" va.out &&
  ok "validation: a quarter of every class" || { bad "stratified"; cat va.out; }
grep -A0 "normalize" va.out >va.norm; "$GRAFT" data inspect tr | grep -A0 normalize >tr.norm
cmp -s va.norm tr.norm && ok "validation normalised with the training statistics" || bad "val normalize"
"$GRAFT" data images --out tr2 --val-out va2 --val-fraction 0.25 --seed 5 --size 16 --channels 1 root >/dev/null 2>&1
"$GRAFT" data images --out tr3 --val-out va3 --val-fraction 0.25 --seed 6 --size 16 --channels 1 root >/dev/null 2>&1
cmp -s va/shard-00000.safetensors va2/shard-00000.safetensors && ok "same seed: same split" || bad "seeded split"
cmp -s va/shard-00000.safetensors va3/shard-00000.safetensors && bad "seed 6 gave seed 5's split" || ok "another seed: another split"

# ---- CSV ------------------------------------------------------------------------------------
(echo "path,label"; cd root && for c in Bag Sneaker Trouser; do for f in "$c"/*; do
  case "$f" in *.txt) ;; *) echo "$f,$c" ;; esac; done; done) >list.csv
cp list.csv root/list.csv
"$GRAFT" data images --out dcsv --size 24 --threads 2 --csv root/list.csv >csv.out 2>/dev/null
cmp -s ds/shard-00000.safetensors dcsv/shard-00000.safetensors &&
  ok "--csv (paths relative to the CSV): the same samples as the folder" || { bad "csv"; cat csv.out; }
printf 'path,label\nTrouser/00000.jpg\n' >bad.csv
expect_bad_input "csv row without a label" "bad.csv: line 2: expected two fields" -- \
  "$GRAFT" data images --out x --csv bad.csv root

# a path holding a comma, quoted; absolute paths too
mkdir -p "odd/x,y"
cp root/Bag/00003.PNG "odd/x,y/a.png"
printf 'path,label\n"x,y/a.png",first\n%s,"sec""ond"\n' "$PWD/root/Bag/00000.jpg" >odd/list.csv
"$GRAFT" data images --out dodd --size 8 --csv odd/list.csv >/dev/null 2>&1 &&
  "$GRAFT" data inspect dodd | grep -Eq '0 first +1' && "$GRAFT" data inspect dodd | grep -Eq '1 sec"ond +1' &&
  ok "CSV: quoted path with a comma, a quoted label with a quote, an absolute path" || bad "csv quoting"

# ---- sizes, resize modes, channels --------------------------------------------------------
"$GRAFT" data images --out dstretch --size 20x12 --resize stretch --channels 1 root >/dev/null 2>&1 &&
  "$GRAFT" data inspect dstretch | grep -q "shape:       \[1, 20, 12\] U8" &&
  ok "--size 20x12 --resize stretch --channels 1: [1, 20, 12]" || bad "stretch"
"$GRAFT" data images --out dwide --size 12x30 root >/dev/null 2>&1 &&
  "$GRAFT" data inspect dwide | grep -q "shape:       \[3, 12, 30\] U8" &&
  ok "--size 12x30 (shorter, covering, centre crop): [3, 12, 30]" || bad "HxW shorter"

# ---- bad input: one line, exit 2, nothing left ----------------------------------------------
mkdir -p emptyroot noimg/cls
touch noimg/cls/readme.txt
expect_bad_input "size 0" "--size: expected S or HxW" -- "$GRAFT" data images --out x --size 0 root
expect_bad_input "huge size" "--size: expected S or HxW with sides 1..4096" -- "$GRAFT" data images --out x --size 5000x10 root
expect_bad_input "val fraction 1" "--val-fraction: expected a number in \(0, 1\)" -- \
  "$GRAFT" data images --out x --val-out y --val-fraction 1 root
expect_bad_input "val fraction without val-out" "--val-fraction F and --val-out DIR go together" -- \
  "$GRAFT" data images --out x --val-fraction 0.2 root
expect_bad_input "channels 2" "--channels: expected 1 or 3" -- "$GRAFT" data images --out x --channels 2 root
expect_bad_input "resize" "--resize: expected 'shorter' or 'stretch'" -- "$GRAFT" data images --out x --resize crop root
expect_bad_input "no class folders" "emptyroot: no class folders" -- "$GRAFT" data images --out x emptyroot
expect_bad_input "empty class folder" "noimg/cls: class folder without any .jpg" -- "$GRAFT" data images --out x noimg
expect_bad_input "missing root" "nosuch: not a directory" -- "$GRAFT" data images --out x nosuch
expect_bad_input "out is a file" "written.txt: exists and is not a directory" -- \
  "$GRAFT" data images --out written.txt root
[ ! -e x ] && [ ! -e x.tmp ] && [ ! -e y ] && ok "nothing left behind" || bad "left behind: $(ls)"
"$GRAFT" data images --out ds --size 24 root >/dev/null 2>&1 && ok "an existing dataset is replaced (as data fmnist does)" || bad "replace"

# ---- train a small ResNet on it, two ranks -----------------------------------------------
cat >train.yaml <<YAML
experiment: img
model: {arch: resnet18, small_stem: true, width: 8}
data: {train: tr3, val: va3, batch_size: 16}
optim: {lr: 0.003}
train: {max_steps: 12, log_every: 4}
YAML
"$GRAFT" data images --out tr3 --val-out va3 --val-fraction 0.25 --seed 6 --size 24 root >/dev/null 2>&1
# (Open MPI keeps start-up allocations until exit: no leak check inside mpirun, as for
# the MPI tests of the sanitizer build)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout 300 mpirun -np 2 --oversubscribe \
  --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 -x ASAN_OPTIONS \
  "$GRAFT" train train.yaml >train.out 2>&1 && grep -q "accuracy" train.out &&
  ok "resnet18 trained on 2 ranks on the converted images" || { bad "train"; tail -n 8 train.out; }

# ---- fine-tune it on every picture, then graft predict on the files themselves -------------
# Fine-tuned from that model on the whole folder (ds, 24x24) with only layer4 and fc
# trainable; graft predict on every file of the folder must then give exactly graft eval's
# confusion matrix on ds: the same decoding, resizing and normalisation as the converter.
cat >tune.yaml <<YAML
experiment: tune
model: {arch: resnet18, small_stem: true, width: 8, init: runs/img/model.safetensors}
data: {train: ds, val: ds, batch_size: 16}
freeze: {trainable: ["layer4.*", "fc.*"]}
optim: {lr: 0.003}
train: {max_steps: 8, log_every: 4}
YAML
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout 300 mpirun -np 2 --oversubscribe \
  --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 -x ASAN_OPTIONS \
  "$GRAFT" train tune.yaml >tune.out 2>&1 && [ -f runs/tune/model.safetensors ] &&
  ok "fine-tuned from it on 2 ranks, layer4 and fc trainable" || { bad "fine-tune"; tail -n 8 tune.out; }
w=runs/tune/model.safetensors
"$GRAFT" eval tune.yaml --weights $w --json eval.json >/dev/null 2>&1 || bad "eval"
inputs=(root/Bag/* root/Sneaker/* root/Trouser/*)
"$GRAFT" predict tune.yaml --weights $w --top-k 3 --json pred.json "${inputs[@]}" >pred.out 2>pred.err
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <pred.out)" -eq 121 ] && [ "$(grep -c ERROR pred.err)" -eq 7 ] &&
  grep -q "^graft predict: 7 of 128 inputs could not be predicted$" pred.err &&
  grep -q "broken-cmyk.jpg: CMYK JPEG is not supported" pred.err &&
  grep -q "README.txt: not a JPEG or PNG" pred.err &&
  ok "predict: 121 lines, the 6 broken files and the README one line each, exit 2" ||
  { bad "predict: exit $rc"; head -n 3 pred.out; cat pred.err; }
grep -Eq "^root/Bag/00000.jpg: (Bag|Sneaker|Trouser) 0\.[0-9]{4}, (Bag|Sneaker|Trouser) 0\.[0-9]{4}, (Bag|Sneaker|Trouser) 0\.[0-9]{4}$" pred.out &&
  ok "line: $(head -n 1 pred.out)" || { bad "line format"; head -n 2 pred.out; }
python3 - eval.json pred.json <<'PY' && ok "predictions of every file = graft eval's confusion matrix on the dataset, probabilities sum to 1" || bad "predict disagrees with eval"
import json, sys
ev, pr = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
names = [c["class"] for c in ev["per_class"]]
conf = [[0] * len(names) for _ in names]
for p in pr["predictions"]:
    if "error" in p:
        continue
    top = p["top"]
    assert len(top) == 3 and abs(sum(t["probability"] for t in top) - 1) < 1e-6, p
    assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"], p
    conf[names.index(p["input"].split("/")[1])][top[0]["index"]] += 1
assert pr["predicted"] == 121 and pr["failed"] == 7, (pr["predicted"], pr["failed"])
assert conf == ev["confusion"], (conf, ev["confusion"])
PY
# the same files once more as a PNG of another size and colour type: resized as the
# converter resizes (the dataset's "resize": shorter), so the same picture at 2x keeps its class
"$GRAFT" predict tune.yaml --weights $w --top-k 1 root/Trouser/00000.jpg >one.out 2>one.err &&
  [ "$(wc -l <one.out)" -eq 1 ] && [ ! -s one.err ] && ok "--top-k 1: $(cat one.out)" || { bad "top-k 1"; cat one.err; }
"$GRAFT" predict tune.yaml --weights $w --top-k 50 root/Trouser/00000.jpg | grep -Eq "^[^,]*, [^,]*, [^,]*$" &&
  ok "--top-k beyond the classes: all 3" || bad "top-k 50"
mkfifo pipe.png
mkdir -p "we=ird"; cp root/Bag/00000.jpg "we=ird/a b.jpg"; cp root/Bag/00000.jpg "$(printf 'ctl\033[31m.jpg')"
timeout 20 "$GRAFT" predict tune.yaml --weights $w pipe.png -- "we=ird/a b.jpg" "$(printf 'ctl\033[31m.jpg')" \
  >odd.out 2>odd.err
rc=$?
[ $rc -eq 2 ] && grep -q "pipe.png: .*not a regular file" odd.err && grep -q "^we=ird/a b.jpg: " odd.out &&
  grep -q '^ctl\\x1b\[31m.jpg: ' odd.out && ! grep -q $'\033' odd.out &&
  ok "a FIFO refused without blocking; after --, a name with '=' and a space; control characters escaped" ||
  { bad "odd names: exit $rc"; cat odd.out odd.err; }
expect_bad_input "predict without --weights" "--weights FILE is required" -- "$GRAFT" predict tune.yaml root/Bag/00000.jpg
expect_bad_input "predict without inputs" "no inputs" -- "$GRAFT" predict tune.yaml --weights $w
expect_bad_input "predict --top-k 0" "--top-k: expected an integer" -- "$GRAFT" predict tune.yaml --weights $w --top-k 0 x.jpg
expect_bad_input "predict --json into a directory" "--json root: exists and is not a regular file" -- \
  "$GRAFT" predict tune.yaml --weights $w --json root root/Bag/00000.jpg
expect_bad_input "predict with another model's weights" "model.safetensors: tensors that do not fit the model" -- \
  "$GRAFT" predict tune.yaml --weights $w model.width=16 root/Bag/00000.jpg
expect_bad_input "predict with missing weights" "nosuch.safetensors" -- \
  "$GRAFT" predict tune.yaml --weights nosuch.safetensors root/Bag/00000.jpg
finish
