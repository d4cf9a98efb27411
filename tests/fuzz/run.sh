#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD (a -DGRAFT_FUZZ=ON build) for SECONDS each:
#   tests/fuzz/run.sh BUILD SECONDS [TARGET...]
# Each target starts from its committed seeds (corpus/<t>/) and regressions, plus what
# earlier runs found (BUILD/fuzz-corpus/<t>/, kept between runs), with its dictionary.
# A crash, a sanitizer report, a leak, an input slower than FUZZ_TIMEOUT seconds
# (default 10) or more memory than FUZZ_RSS_MB (default 2048) fails the run: the input
# is saved as BUILD/fuzz-artifacts/<t>/..., to be fixed and then added to
# tests/fuzz/regressions/<t>/. Prints the executions per target at the end.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run.sh BUILD SECONDS [TARGET...]}"
seconds="${2:?usage: run.sh BUILD SECONDS [TARGET...]}"
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$here"/fuzz_*.c; do
    name="$(basename "$src" .c)"
    [ "$name" = fuzz_util ] || targets+=("${name#fuzz_}")
  done
fi

# The targets write each input to files: in memory (/dev/shm) that is 20x faster than
# on disk. One folder for the run, removed at the end (a crash skips a target's cleanup).
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm="${TMPDIR:-/tmp}"
TMPDIR="$(mktemp -d "$shm/graft-fuzz.XXXXXX")" || exit 2
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

failed=()
summary=""
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "run.sh: $bin is not built (make fuzz builds it)" >&2; exit 2; }
  work="$build/fuzz-corpus/$t" artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$work" "$artifacts"
  dirs=("$work" "$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && dirs+=("$here/regressions/$t")
  dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
  log="$build/fuzz-$t.log"
  echo "fuzz_$t: ${seconds} s"
  "$bin" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
    "${dirs[@]}" >"$log" 2>&1
  rc=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  corpus="$(ls "$work" | wc -l)"
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    grep -E "^(==[0-9]+==ERROR|SUMMARY|fuzz: broken|.*runtime error)|Test unit written to" "$log" | head -5
    summary+="$(printf '%-16s %10s runs  FAILED (exit %d, log %s)' "$t" "${runs:-?}" "$rc" "$log")"$'\n'
  else
    summary+="$(printf '%-16s %10s runs  ok (%d inputs found)' "$t" "${runs:-?}" "$corpus")"$'\n'
  fi
done
printf '\nfuzz results (%s s per target):\n%s' "$seconds" "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
