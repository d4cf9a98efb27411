#!/usr/bin/env bash
# graft plot: the PNGs of a run, whatever its directory is called. A run directory whose
# path holds a single and a double quote, spaces, ';', a backtick and $(...) is drawn,
# and nothing in the path is executed (the marker files the injected commands would
# create do not exist). Null values (non-finite losses) are gaps; lines that are not
# metrics are refused with exit 2.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
export OPENBLAS_NUM_THREADS=1
"$GRAFT" data fmnist --out img --classes 0-4 --per-class 64 >/dev/null || bad "data"
cat >cfg.yaml <<YAML
experiment: p
model: {arch: mlp, hidden: [32]}
data: {train: img, val: img, batch_size: 16}
optim: {lr: 0.003}
train: {max_steps: 8, log_every: 2, eval_every: 4}
YAML
"$GRAFT" train cfg.yaml >train.out 2>&1 || { bad "train"; cat train.out; }

# Every way out of a quoted gnuplot string or into a shell: each would create a marker.
mkdir -p "$tmp/w"
hostile="$tmp/w/it's \"q\" dir; system 'touch $tmp/w/M1'; \`touch $tmp/w/M2\` \$(touch $tmp/w/M3) ' ; touch $tmp/w/M4 ; '"
mkdir -p "$hostile" && cp -r runs/p/. "$hostile/"
(cd "$tmp/w" && "$GRAFT" plot "$hostile") >plot.out 2>&1
rc=$?
[ "$rc" -eq 0 ] && [ -s "$hostile/plots/loss.png" ] && [ -s "$hostile/plots/lr.png" ] &&
  [ -s "$hostile/plots/accuracy.png" ] && ok "graft plot on a hostile path wrote the PNGs" ||
  { bad "graft plot on a hostile path: exit $rc"; cat plot.out; }
markers=$(find "$tmp" -name 'M[1-4]' | wc -l)
[ "$markers" -eq 0 ] && ok "nothing in the path was executed" || bad "$markers injected commands ran"
grep -qF "$tmp" "$hostile/plots/plot.gp" && bad "the path reached the gnuplot script" ||
  ok "the gnuplot script holds no path"

# null values: a gap, not an error (and a run whose losses are all null still plots lr)
mkdir -p gaps
printf '%s\n' '{"step":1,"loss":2.5,"lr":0.1}' '{"step":2,"loss":null,"lr":0.1}' \
  '{"step":3,"loss":null,"lr":0.1}' '{"step":4,"loss":2.0,"lr":0.1}' '{"step":5,"loss":1.5,"lr":0.1}' \
  >gaps/metrics.jsonl
"$GRAFT" plot gaps >gaps.out 2>&1 && [ -s gaps/plots/loss.png ] &&
  [ "$(cat gaps/plots/loss.dat)" = "$(printf '1 2.5\n\n4 2\n5 1.5')" ] &&
  ok "null losses are a gap in the curve" || { bad "null losses"; cat gaps.out gaps/plots/loss.dat; }
mkdir -p allnull
printf '%s\n' '{"step":1,"loss":null,"lr":0.1}' >allnull/metrics.jsonl
"$GRAFT" plot allnull >allnull.out 2>&1 && [ -s allnull/plots/lr.png ] && [ ! -e allnull/plots/loss.png ] &&
  grep -q "no finite loss to draw" allnull.out && ok "no finite loss at all: lr is drawn, and it says so" ||
  { bad "all losses null"; cat allnull.out; }
mkdir -p notmetrics
printf '%s\n' '{"step":1,"loss":"high","lr":0.1}' >notmetrics/metrics.jsonl
expect_bad_input "a line that is not metrics" "metrics.jsonl:1: not a metrics line" -- "$GRAFT" plot notmetrics
finish
