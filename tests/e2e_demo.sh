#!/usr/bin/env bash
# ctest-labels: slow
# The first real training run: the MLP demo on Fashion-MNIST reaches >= 85 % test
# accuracy (two epochs here to keep the suite short; `make run` trains longer).
. "$(dirname "$0")/lib_e2e.sh"
start=$(date +%s)
"$GRAFT" demo --epochs 2 >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
acc=$(sed -n 's/^test accuracy: //p' "$tmp/out")
echo "took $(( $(date +%s) - start )) s"
if [ "$rc" -eq 0 ] && [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.85) }'; then
  ok "demo test accuracy $acc >= 0.85"
else
  bad "demo exit $rc, test accuracy '${acc}'"
fi
finish
