#!/usr/bin/env bash
# Names and text that come from files, made hostile: class names (text files named
# after their class) holding a newline and a forged log line, terminal escapes, a C1
# control and a right-to-left override; tensor names and metadata of a weights file;
# a config key; directory entries and the "latest" of a checkpoint root. Whatever
# graft prints of them, on stdout, stderr or train.log, stays escaped: no control
# character reaches the terminal and no line looks like one of graft's own, while
# UTF-8 names ("café", "猫") stay readable.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp"
forged=$'cat\n[rank 0] ERROR forged: the run is fine'
escape=$'dog\e[31m\e]0;title\a'
c1=$'c1\xc2\x9b2J'
rtl=$'rtl\xe2\x80\xaeabc'
for name in "$forged" "$escape" "$c1" "$rtl" café 猫; do
  printf 'one document about %s\n\nanother one\n\nand a third\n' "$name" >"$name"
done

# clean OUT NAME: OUT has no control character but newlines (ESC, BEL, CR, ...), no C1
# control, no bidi override, and no line that starts like a forged one
clean() {
  if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$1"; then bad "$2: a control character got through"; return 1; fi
  if grep -q $'\xc2\x9b\|\xe2\x80\xae' "$1"; then bad "$2: a C1 control or bidi override got through"; return 1; fi
  if grep -q '^\[rank 0\] ERROR forged' "$1"; then bad "$2: a forged log line"; return 1; fi
  return 0
}

"$GRAFT" data text --out seq --tokenizer bytes --classify --seq-len 16 \
  "$forged" "$escape" "$c1" "$rtl" café 猫 >text.out 2>&1 || { bad "convert"; cat text.out; }
"$GRAFT" data inspect seq >inspect.out 2>&1
clean inspect.out "data inspect" &&
  grep -qF 'cat\n[rank 0] ERROR forged: the run is fine' inspect.out &&
  grep -qF 'dog\x1b[31m\x1b]0;title\x07' inspect.out && grep -qF 'c1\u009b2J' inspect.out &&
  grep -qF 'rtl\u202eabc' inspect.out && grep -q ' café ' inspect.out && grep -q ' 猫 ' inspect.out &&
  ok "data inspect: class names escaped, UTF-8 kept" || { bad "data inspect"; cat -A inspect.out; }

cat >cfg.yaml <<YAML
experiment: hostile
model: {arch: bert, n_layer: 1, n_head: 2, n_embd: 16, n_positions: 16, head: {num_classes: 6}}
data: {train: seq, val: seq, batch_size: 6}
optim: {lr: 0.001}
train: {max_steps: 2}
YAML
"$GRAFT" train cfg.yaml >train.out 2>&1 || { bad "train"; cat train.out; }
clean train.out "train (per-class table)" && clean runs/hostile/train.log "train.log" &&
  grep -qF 'cat\n[rank 0] ERROR forged' train.out && grep -q '^  café ' train.out &&
  ok "train: per-class table escaped" || { bad "train output"; cat -A train.out; }
"$GRAFT" eval cfg.yaml --weights runs/hostile/model.safetensors >eval.out 2>&1 || { bad "eval"; cat eval.out; }
clean eval.out "eval" && grep -qF 'dog\x1b[31m' eval.out && ok "eval: per-class table escaped" ||
  { bad "eval output"; cat -A eval.out; }

# A weights file whose tensor names and metadata are hostile.
python3 - <<'PY'
import json, struct
names = ["w\n[rank 0] ERROR forged: tensor", "x\x1b[2J", "caf\u00e9"]
header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
header["__metadata__"] = {"k\x1b]0;t\x07": "v\n[rank 0] ERROR forged: meta"}
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
open("hostile.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 12)
PY
"$GRAFT" inspect hostile.safetensors >winspect.out 2>&1 || { bad "inspect"; cat winspect.out; }
clean winspect.out "inspect" && grep -qF 'w\n[rank 0] ERROR forged: tensor' winspect.out &&
  grep -qF 'metadata k\x1b]0;t\x07 = v\n[rank 0]' winspect.out && grep -q '  café ' winspect.out &&
  ok "inspect: tensor names and metadata escaped" || { bad "inspect output"; cat -A winspect.out; }
"$GRAFT" train cfg.yaml experiment=h2 model.init=hostile.safetensors >init.out 2>&1
clean init.out "model.init" && grep -qF 'not in the model (3): w\n[rank 0] ERROR forged: tensor, x\x1b[2J, café' init.out &&
  ok "model.init: the file's tensor names escaped in the log" || { bad "model.init"; cat -A init.out; }

# A config key
printf 'experiment: k\nmodel: {arch: mlp}\ndata: {train: seq}\n"bad\\e[31m\\nkey": 1\n' >key.yaml
"$GRAFT" train key.yaml >key.out 2>&1
rc=$?
clean key.out "config key" && [ $rc -eq 2 ] && [ "$(wc -l <key.out)" -eq 1 ] &&
  ok "hostile config key: exit 2, $(cat key.out)" || { bad "config key: exit $rc"; cat -A key.out; }

# A checkpoint root: a leftover directory with an escape in its name, and "latest"
# holding a forged line; ls and verify say what is wrong without quoting it.
"$GRAFT" train cfg.yaml experiment=ck checkpoint.every_steps=1 >ck.out 2>&1 || { bad "ck run"; cat ck.out; }
root=runs/ck/checkpoints
mkdir "$root/step-"$'\e[2J'".tmp"
printf 'step-00000002\n[rank 0] ERROR forged: latest\n\e[2J' >"$root/latest"
"$GRAFT" ckpt ls "$root" >ls.out 2>&1
clean ls.out "ckpt ls" && grep -qF 'step-\x1b[2J.tmp: ' ls.out &&
  grep -q "latest does not hold a checkpoint name" ls.out && ! grep -q "forged: latest" ls.out &&
  ok "ckpt ls: entry names escaped, latest not quoted" || { bad "ckpt ls"; cat -A ls.out; }
"$GRAFT" ckpt verify "$root" >verify.out 2>&1
rc=$?
clean verify.out "ckpt verify" && [ $rc -eq 2 ] && ! grep -q "forged: latest" verify.out &&
  ok "ckpt verify: exit 2, latest not quoted" || { bad "ckpt verify: exit $rc"; cat -A verify.out; }
"$GRAFT" train cfg.yaml experiment=ck train.max_steps=3 checkpoint.allow_config_change=true >resume.out 2>&1
rc=$?
clean resume.out "resume" && [ $rc -eq 0 ] && ! grep -q "forged: latest" resume.out &&
  grep -q "latest does not hold a checkpoint name (step-NNNNNNNN); resuming from step-00000002 instead" resume.out &&
  ok "resume with a forged latest: falls back, saying why" || { bad "resume: exit $rc"; cat -A resume.out; }
finish
