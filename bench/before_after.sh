#!/usr/bin/env bash
# Two graft builds on the same model steps, side by side in one run: ms per training
# step (forward + loss + backward, `graft bench model`) of a full fine-tune and of a
# model with only its head trainable, for the shapes of bench/model_cases.sh. The two
# binaries take turns, ROUNDS times (default 3), and the best round of each is kept;
# ratio = after / before (< 1: the change made it faster). Use it to show that a change
# left speed alone (a refactor) or to measure what it gained:
#   bench/before_after.sh OLD_BUILD_DIR NEW_BUILD_DIR [THREADS]
# An architecture the old build does not know is left out; ONLY=bert (a case name)
# runs one case.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
before=$(cd "${1:?usage: before_after.sh OLD_BUILD NEW_BUILD [THREADS]}" && pwd)/graft
after=$(cd "${2:?usage: before_after.sh OLD_BUILD NEW_BUILD [THREADS]}" && pwd)/graft
threads=${3:-1}
rounds=${ROUNDS:-3}
steps=${STEPS:-5}
export OPENBLAS_NUM_THREADS=$threads
. "$here/model_cases.sh"
declare -A best
keep() { # keep KEY MS: the smaller time
  local old=${best[$1]:-}
  if [ -z "$old" ] || awk -v a="$2" -v b="$old" 'BEGIN { exit !(a < b) }'; then best[$1]=$2; fi
}
echo "before $before, after $after; $threads thread(s); best of $rounds rounds of $steps steps"
for _ in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name args _ <<<"$c"
    [ -z "${ONLY:-}" ] || [ "$ONLY" = "$name" ] || continue
    for side in before after; do
      bin=$before
      [ "$side" = after ] && bin=$after
      # shellcheck disable=SC2086 # args is a word list
      out=$("$bin" bench model $args --steps "$steps" --rounds 1 2>/dev/null) || continue
      keep "$name/full/$side" "$(awk '$1 == "full" { print $6 }' <<<"$out")"
      keep "$name/frozen/$side" "$(awk '$1 == "frozen" { print $6 }' <<<"$out")"
    done
  done
done
printf '%-9s %-16s %10s %10s %7s\n' model variant before_ms after_ms ratio
for c in "${cases[@]}"; do
  IFS='|' read -r name _ frozen_label <<<"$c"
  [ -n "${best[$name/full/before]:-}" ] || continue
  for v in full frozen; do
    b=${best[$name/$v/before]} a=${best[$name/$v/after]}
    label=$([ "$v" = full ] && echo "full" || echo "$frozen_label")
    printf '%-9s %-16s %10.1f %10.1f %7.3f\n' "$name" "$label" "$b" "$a" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
  done
done
