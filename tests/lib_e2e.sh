# Helpers for the end-to-end shell tests (sourced, not run).
set -u
fails=0
passes=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

# expect_bad_input NAME PATTERN -- CMD...: CMD must exit 2 and print exactly one
# line on stderr matching PATTERN (an extended regex).
expect_bad_input() {
  local name=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -Eq -- "$pattern" "$tmp/err"; then
    ok "$name: $(cat "$tmp/err")"
  else
    bad "$name: exit $rc, $lines stderr lines (want 2 and one line matching '$pattern'):"
    cat "$tmp/err"
  fi
}

finish() {
  echo "$passes passed, $fails failed"
  [ "$fails" -eq 0 ]
}
