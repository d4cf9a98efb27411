#!/usr/bin/env bash
# ctest-labels: slow
# The user's path end to end: Fashion-MNIST -> shards -> graft train (short version
# of configs/fmnist_mlp.yaml) -> run directory -> graft eval -> graft plot.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
cfg="$GRAFT_SOURCE_DIR/configs/fmnist_mlp.yaml"

"$GRAFT" data fmnist --out data/fmnist/train --split train >"$tmp/conv" 2>&1 &&
  "$GRAFT" data fmnist --out data/fmnist/test --split test >>"$tmp/conv" 2>&1 &&
  ok "converted Fashion-MNIST to shards" || { bad "data fmnist"; cat "$tmp/conv"; }

# --print-config gives YAML that graft accepts and that prints the same again.
"$GRAFT" train "$cfg" train.max_steps=300 --print-config >"$tmp/printed.yaml" 2>"$tmp/err"
"$GRAFT" train "$tmp/printed.yaml" --print-config >"$tmp/printed2.yaml" 2>>"$tmp/err"
# (the first line is a comment naming the source file)
if diff <(grep -v '^#' "$tmp/printed.yaml") <(grep -v '^#' "$tmp/printed2.yaml") &&
  grep -q "max_steps: 300" "$tmp/printed.yaml"; then
  ok "--print-config round-trips"
else
  bad "--print-config"; cat "$tmp/err"; diff "$tmp/printed.yaml" "$tmp/printed2.yaml"
fi

start=$(date +%s)
"$GRAFT" train "$cfg" train.max_steps=300 train.log_every=20 >"$tmp/train" 2>&1
rc=$?
acc=$(sed -n 's/^test accuracy: //p' "$tmp/train")
echo "training took $(($(date +%s) - start)) s"
if [ "$rc" -eq 0 ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.83) }'; then
  ok "300 steps: test accuracy $acc >= 0.83"
else
  bad "train exit $rc, accuracy '$acc'"; cat "$tmp/train"
fi

run=runs/fmnist_mlp
for f in config.yaml metrics.jsonl train.log eval.json eval/step-00000300.json model.safetensors; do
  [ -s "$run/$f" ] || bad "missing $run/$f"
done
lines=$(wc -l <"$run/metrics.jsonl")
[ "$lines" -eq 15 ] && ok "metrics.jsonl has 15 lines" || bad "metrics.jsonl has $lines lines, expected 15"
python3 - "$run" <<'PY' && ok "metrics and eval JSON have every field" || bad "metrics/eval JSON"
import json, sys
run = sys.argv[1]
keys = {"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "time_data", "time_forward",
        "time_backward", "time_comm", "time_optim", "comm_bytes"}
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
assert all(keys <= set(r) for r in rows), rows[0]
assert [r["step"] for r in rows] == list(range(20, 301, 20))
ev = json.load(open(run + "/eval.json"))
assert len(ev["per_class"]) == 10 and ev["per_class"][0]["class"] == "T-shirt/top"
assert len(ev["confusion"]) == 10 and sum(map(sum, ev["confusion"])) == 10000
assert abs(sum(r[i] for i, r in enumerate(ev["confusion"])) / 10000 - ev["accuracy"]) < 1e-9
PY

"$GRAFT" eval "$cfg" --weights "$run/model.safetensors" --json "$tmp/ev.json" >"$tmp/eval" 2>&1
acc2=$(python3 -c "import json; print('%.4f' % json.load(open('$tmp/ev.json'))['accuracy'])" 2>/dev/null)
[ "$acc2" = "$acc" ] && ok "graft eval reproduces accuracy $acc2" || { bad "graft eval: '$acc2' vs '$acc'"; cat "$tmp/eval"; }

"$GRAFT" plot "$run" >"$tmp/plot" 2>&1 && [ -s "$run/plots/loss.png" ] && [ -s "$run/plots/accuracy.png" ] &&
  ok "graft plot wrote PNGs" || { bad "graft plot"; cat "$tmp/plot"; }

# A table that cannot be written (a full disk: /dev/full) fails the plot, never half-drawn.
ln -sf /dev/full "$run/plots/loss.dat"
"$GRAFT" plot "$run" >"$tmp/plot" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "cannot write plot files: No space left on device" "$tmp/plot" &&
  ok "graft plot with a full disk: $(cat "$tmp/plot")" || { bad "graft plot on /dev/full: exit $rc"; cat "$tmp/plot"; }
rm -f "$run/plots/loss.dat"
finish
