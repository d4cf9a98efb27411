#!/usr/bin/env bash
# GPT-2 tokenizer against the npm package gpt-3-encoder on every fortune file and on
# seeded random strings that mix scripts, marks, emoji and every kind of white space:
# node writes the reference ids (tests/tools/gpt2_reference.js), and test_tokenizer's
# test_gpt2_reference_file compares each text. Skipped (77) without node or the package.
. "$(dirname "$0")/lib_e2e.sh"
pkg=${GRAFT_GPT3_ENCODER:-/usr/local/share/graft/gpt-3-encoder}
ref="$GRAFT_SOURCE_DIR/tests/tools/gpt2_reference.js"
bin="$GRAFT_BUILD_DIR/tests/test_tokenizer"
command -v node >/dev/null || { echo "node not found: skipped"; exit 77; }
[ -f "$pkg/Encoder.js" ] || { echo "$pkg/Encoder.js not found (scripts/deps.sh): skipped"; exit 77; }

files=()
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat | *.u8) ;; *) [ -f "$f" ] && files+=("$f") ;; esac
done

# compare NAME JSON: run the reference test on JSON and expect it to pass with 0 differences.
compare() {
  local name=$1 json=$2
  GRAFT_TOKENIZER_REF="$json" GRAFT_TEST_FILTER=test_gpt2_reference_file "$bin" >"$tmp/out" 2>&1
  local rc=$?
  if [ $rc -eq 0 ] && grep -q " 0 differ" "$tmp/out" && ! grep -q SKIPPED "$tmp/out"; then
    ok "$name: $(grep -o '[0-9]* texts, .*' "$tmp/out")"
  else
    bad "$name (exit $rc):"; cat "$tmp/out"
  fi
}

if [ ${#files[@]} -lt 3 ]; then
  bad "no fortune files in /usr/share/games/fortunes (scripts/deps.sh installs package fortunes)"
elif node "$ref" --files "${files[@]}" >"$tmp/fortunes.json"; then
  compare "${#files[@]} fortune files" "$tmp/fortunes.json"
else
  bad "node $ref --files failed"
fi
# Arbitrary code points only when node's Unicode tables are the ones the C tables were
# generated from (tools/gen_tokenizer_unicode.js): a newer or older Unicode assigns
# letters that the other does not know.
ours=$(sed -n 's/^#define TOK_UNICODE_VERSION "\(.*\)"/\1/p' \
  "$GRAFT_SOURCE_DIR/runtime/data/tokenizer_unicode_internal.h")
theirs=$(node -p process.versions.unicode)
mode=--random
if [ "$ours" != "$theirs" ]; then
  mode=--random-common
  echo "note: node has Unicode $theirs, the C tables $ours: random strings avoid new code points"
fi
if node "$ref" $mode 3000 20240601 >"$tmp/random.json"; then
  compare "3000 random strings ($mode)" "$tmp/random.json"
else
  bad "node $ref $mode failed"
fi
finish
