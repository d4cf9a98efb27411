#!/usr/bin/env bash
# ctest-labels: slow
# Weights in and out of safetensors through the CLI: save after training, inspect,
# start a new run from them, and clear exit-2 errors for damaged or mismatched files.
. "$(dirname "$0")/lib_e2e.sh"
w="$tmp/w.safetensors"

"$GRAFT" demo --epochs 1 --save "$w" >"$tmp/train" 2>&1 || { cat "$tmp/train"; bad "demo --save"; }
acc1=$(sed -n 's/^test accuracy: //p' "$tmp/train")
[ -s "$w" ] && [ ! -e "$w.tmp" ] && ok "weights written ($(stat -c %s "$w") bytes), no .tmp left" \
  || bad "weights file missing or .tmp left behind"

"$GRAFT" inspect "$w" >"$tmp/inspect" 2>&1
if grep -q "hidden.0.weight *F32 *\[512, 784\]" "$tmp/inspect" && grep -q "6 tensors" "$tmp/inspect"; then
  ok "inspect lists the tensors"
else
  bad "inspect output:"; cat "$tmp/inspect"
fi

# Continuing from the saved weights with a negligible learning rate keeps the accuracy.
"$GRAFT" demo --epochs 1 --init "$w" --lr 1e-12 >"$tmp/cont" 2>&1 || { cat "$tmp/cont"; bad "demo --init"; }
acc2=$(sed -n 's/^test accuracy: //p' "$tmp/cont")
if grep -q "loaded 6 tensors" "$tmp/cont" && awk -v a="$acc1" -v b="$acc2" 'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }'; then
  ok "init from saved weights: accuracy $acc1 -> $acc2"
else
  bad "init from saved weights: accuracy '$acc1' -> '$acc2'"; cat "$tmp/cont"
fi

expect_bad_input "shape mismatch" "tensor 'hidden.0.weight' has shape \[512, 784\], the model expects \[128, 784\]" \
  -- "$GRAFT" demo --hidden 128,256 --init "$w"
expect_bad_input "missing weights" "$tmp/nope.safetensors: .*No such file" -- "$GRAFT" demo --init "$tmp/nope.safetensors"
head -c 1000 "$w" >"$tmp/trunc.safetensors"
expect_bad_input "truncated weights (inspect)" "trunc.safetensors: " -- "$GRAFT" inspect "$tmp/trunc.safetensors"
expect_bad_input "truncated weights (init)" "trunc.safetensors: " -- "$GRAFT" demo --init "$tmp/trunc.safetensors"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":1,,,,,,,,,}' >"$tmp/json.safetensors"
expect_bad_input "bad header json" "json.safetensors: " -- "$GRAFT" inspect "$tmp/json.safetensors"
finish
