#!/usr/bin/env bash
# Bad input to the CLI: one clear line on stderr, exit status 2, for bad commands and
# flags and for missing, truncated or corrupt Fashion-MNIST files.
. "$(dirname "$0")/lib_e2e.sh"
fm=/usr/share/datasets/fashion-mnist
conv() { "$GRAFT" data fmnist --out "$tmp/ds" --source "$1"; }

expect_bad_input "no command" "missing command" -- "$GRAFT"
expect_bad_input "unknown command" "unknown command 'frobnicate'" -- "$GRAFT" frobnicate
expect_bad_input "unknown option" "unknown option '--shards'" -- "$GRAFT" data fmnist --out "$tmp/x" --shards 3
expect_bad_input "bad integer" "--per-class: expected an integer" -- "$GRAFT" data fmnist --out "$tmp/x" --per-class three
expect_bad_input "missing value" "--out needs a value" -- "$GRAFT" data fmnist --out
expect_bad_input "missing dataset" "$tmp/none/train-images-idx3-ubyte.gz: cannot open: No such file" -- conv "$tmp/none"

# A copy of the dataset with one file damaged at a time.
mkdir -p "$tmp/fm"
cp "$fm"/*.gz "$tmp/fm/"
cp "$tmp/fm/train-images-idx3-ubyte.gz" "$tmp/good.gz"

head -c 100000 "$tmp/good.gz" >"$tmp/fm/train-images-idx3-ubyte.gz"
expect_bad_input "truncated gzip" "train-images-idx3-ubyte.gz: (truncated|read error)" -- conv "$tmp/fm"

gzip -dc "$tmp/good.gz" | head -c 5000 | gzip >"$tmp/fm/train-images-idx3-ubyte.gz"
expect_bad_input "truncated idx" "train-images-idx3-ubyte.gz: header promises 47040000 data bytes, more than a gzip file of [0-9]+ bytes can hold" -- conv "$tmp/fm"

printf 'this is not an idx file at all' >"$tmp/fm/train-images-idx3-ubyte.gz"
expect_bad_input "not idx" "train-images-idx3-ubyte.gz: not an unsigned-byte idx file" -- conv "$tmp/fm"

cp "$tmp/good.gz" "$tmp/fm/train-images-idx3-ubyte.gz"
gzip -dc "$fm/t10k-labels-idx1-ubyte.gz" | gzip >"$tmp/fm/train-labels-idx1-ubyte.gz"
expect_bad_input "count mismatch" "10000 labels but .* has 60000 images" -- conv "$tmp/fm"

# label 200 in an otherwise valid label file
gzip -dc "$fm/train-labels-idx1-ubyte.gz" >"$tmp/labels"
printf '\310' | dd of="$tmp/labels" bs=1 seek=20 conv=notrunc status=none
gzip -c "$tmp/labels" >"$tmp/fm/train-labels-idx1-ubyte.gz"
expect_bad_input "bad label" "label 200 at item 12" -- conv "$tmp/fm"
[ ! -e "$tmp/ds" ] && ok "no half-written dataset left" || { bad "dataset directory left behind"; ls -laR "$tmp/ds"; }

finish
