#!/usr/bin/env bash
# graft sample end to end: a tiny GPT-2 trained briefly on the science fortunes (byte
# tokens; and GPT-2 BPE tokens), then text from its weights: a seed gives the same text,
# another seed other text, greedy is deterministic, sample 1 of M is the single sample,
# a run's weights, its checkpoints (the frozen file too), their export and a copy with
# the hub's names give the same text, generation goes past n_positions (a sliding
# window), and bad inputs exit 2 with one line.
. "$(dirname "$0")/lib_e2e.sh"
cd "$tmp" || exit 1
export OPENBLAS_NUM_THREADS=1
src=/usr/share/games/fortunes/science
if [ ! -f "$src" ]; then
  bad "no $src (scripts/deps.sh installs package fortunes)"
  finish
  exit
fi

"$GRAFT" data text --out data/bytes --tokenizer bytes "$src" >conv 2>&1 &&
  "$GRAFT" data text --out data/bpe --tokenizer gpt2 "$src" >>conv 2>&1 &&
  ok "converted the science fortunes (bytes, gpt2)" || { bad "graft data text"; cat conv; }

# n_positions 64: 200 new tokens go past it; the position embedding frozen, so that
# checkpoints keep it in their frozen file
cat >bytes.yaml <<'EOF'
experiment: tiny_bytes
model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: 32, n_positions: 64}
freeze: {frozen: [transformer.wpe.weight]}
data: {train: data/bytes, batch_size: 8, seq_len: 64}
optim: {lr: 3.0e-3}
schedule: {name: constant}
train: {max_steps: 40, log_every: 20}
checkpoint: {every_steps: 20}
EOF
"$GRAFT" train bytes.yaml >train 2>&1 && ok "trained a tiny GPT-2 on bytes" || { bad "train"; cat train; }
w=runs/tiny_bytes/model.safetensors

# sample OUT ARGS...: graft sample bytes.yaml ARGS into OUT, stderr into OUT.err
sample() {
  local out=$1
  shift
  "$GRAFT" sample bytes.yaml "$@" >"$out" 2>"$out.err" || { bad "graft sample $* (exit $?)"; cat "$out.err"; }
}

sample s7a --weights $w --prompt "The " --seed 7 --max-new-tokens 60
sample s7b --weights $w --prompt "The " --seed 7 --max-new-tokens 60
sample s8 --weights $w --prompt "The " --seed 8 --max-new-tokens 60
# 60 byte tokens after "The ", and a newline
[ "$(head -c 4 s7a)" = "The " ] && [ "$(wc -c <s7a)" -eq 65 ] &&
  ok "the prompt, then 60 tokens: $(head -c 40 s7a | tr '\n\t' '  ')..." || { bad "sample text"; cat s7a; }
cmp -s s7a s7b && ok "--seed 7 twice: the same text" || bad "--seed 7 gave two texts"
cmp -s s7a s8 && bad "--seed 7 and --seed 8 gave the same text" || ok "--seed 8: other text"
grep -Eq "60 tokens in .* tokens/s" s7a.err && ok "speed on stderr: $(grep -o '60 tokens.*' s7a.err)" ||
  { bad "no speed line"; cat s7a.err; }

sample g1 --weights $w --prompt "The " --temperature 0 --seed 1 --max-new-tokens 60
sample g2 --weights $w --prompt "The " --temperature 0 --seed 2 --max-new-tokens 60
cmp -s g1 g2 && ok "greedy: the same text whatever the seed" || bad "greedy depends on the seed"

# sample m of M draws from (seed, m): sample 1 of 3 is the single sample of that seed
sample m3 --weights $w --prompt "The " --seed 7 --max-new-tokens 60 --num-samples 3
{ echo "=== sample 1 of 3 ==="; cat s7a; echo; echo "=== sample 2 of 3 ==="; cat s7a; } >m3.want
[ "$(grep -c '^=== sample [123] of 3 ===$' m3)" -eq 3 ] &&
  cmp -s <(head -c $(($(wc -c <s7a) + 44)) m3) <(head -c $(($(wc -c <s7a) + 44)) m3.want) &&
  ! cmp -s m3 m3.want && ok "--num-samples 3: three blocks, the first the single sample's" || { bad "--num-samples 3"; cat m3; }

# the weights of a checkpoint, a checkpoint root and an export are the run's
ck=runs/tiny_bytes/checkpoints
"$GRAFT" ckpt export $ck --out exported.safetensors >export 2>&1 || { bad "ckpt export"; cat export; }
sample c1 --weights $ck/step-00000040 --prompt "The " --seed 7 --max-new-tokens 60
sample c2 --weights $ck --prompt "The " --seed 7 --max-new-tokens 60
sample c3 --weights exported.safetensors --prompt "The " --seed 7 --max-new-tokens 60
ls $ck/frozen-*.safetensors >/dev/null 2>&1 || bad "no frozen file in $ck"
cmp -s s7a c1 && cmp -s s7a c2 && cmp -s s7a c3 &&
  ok "a checkpoint, a checkpoint root and an export give the run's text" ||
  bad "checkpoint weights gave other text"
# the hub's layout: bare GPT2Model names (h.0.attn.c_attn.weight), no lm_head.weight
python3 - $w hub.safetensors <<'PY' || bad "writing a hub-layout file"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
out, blobs, off = {}, [], 0
for name, t in header.items():
    if name in ("__metadata__", "lm_head.weight"):
        continue
    a, b = t["data_offsets"]
    blobs.append(data[a:b])
    out[name.replace("transformer.", "", 1)] = dict(t, data_offsets=[off, off + b - a])
    off += b - a
text = json.dumps(out).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
sample hub --weights hub.safetensors --prompt "The " --seed 7 --max-new-tokens 60
cmp -s s7a hub && ok "a file with the hub's names gives the run's text" || bad "hub-layout weights"
sample c4 --weights $ck/step-00000020 --prompt "The " --seed 7 --max-new-tokens 60
cmp -s s7a c4 && bad "step 20 gave step 40's text" || ok "an earlier checkpoint: other text"

printf 'The ' >prompt.txt
sample f1 --weights $w --prompt-file prompt.txt --seed 7 --max-new-tokens 60
cmp -s s7a f1 && ok "--prompt-file: as --prompt" || bad "--prompt-file differs from --prompt"

# past n_positions (64): the window slides; 4 + 200 bytes and a newline
sample long --weights $w --prompt "The " --seed 7 --max-new-tokens 200
[ "$(wc -c <long)" -eq 205 ] && [ "$(head -c 64 long)" = "$(head -c 64 s7a)" ] &&
  ok "200 new tokens past n_positions 64, the first 60 as before" || { bad "long sample"; cat long; }

mkfifo fifo
mkdir adir
expect_bad_input "missing weights file" "nope.safetensors: cannot open" -- \
  "$GRAFT" sample bytes.yaml --weights nope.safetensors --prompt x
expect_bad_input "no --weights" "--weights W is required" -- "$GRAFT" sample bytes.yaml --prompt x
expect_bad_input "a directory without checkpoints" "adir: a directory that holds no checkpoint" -- \
  "$GRAFT" sample bytes.yaml --weights adir --prompt x
expect_bad_input "another model's weights" "tensors that do not fit the model" -- \
  "$GRAFT" sample bytes.yaml model.n_embd=64 --weights $w --prompt x
expect_bad_input "prompt file a FIFO" "fifo: cannot read: not a regular file" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt-file fifo
expect_bad_input "prompt file a directory" "adir: cannot read: Is a directory" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt-file adir
expect_bad_input "missing prompt file" "nope.txt: cannot open" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt-file nope.txt
expect_bad_input "--prompt and --prompt-file" "not both" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --prompt-file prompt.txt
expect_bad_input "empty prompt, bytes tokenizer" "prompt is empty" -- \
  "$GRAFT" sample bytes.yaml --weights $w
expect_bad_input "--top-p 0" "--top-p must be in \(0, 1\]" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --top-p 0
expect_bad_input "--top-p 1.5" "--top-p must be in \(0, 1\]" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --top-p 1.5
expect_bad_input "--temperature -0.5" "--temperature: expected a number >= 0" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --temperature -0.5
expect_bad_input "--top-k -1" "--top-k: expected an integer" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --top-k -1
expect_bad_input "--max-new-tokens 0" "--max-new-tokens: expected an integer" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --max-new-tokens 0
expect_bad_input "--max-new-tokens 2000000" "--max-new-tokens is at most 1000000" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --max-new-tokens 2000000
expect_bad_input "--num-samples 0" "--num-samples: expected an integer" -- \
  "$GRAFT" sample bytes.yaml --weights $w --prompt x --num-samples 0
expect_bad_input "model.arch mlp" "graft sample generates with gpt2" -- \
  "$GRAFT" sample bytes.yaml model.arch=mlp --weights $w --prompt x
"$GRAFT" data text --out data/seq --tokenizer bytes --classify --seq-len 16 "$src" \
  /usr/share/games/fortunes/computers >>conv 2>&1 || bad "graft data text --classify"
expect_bad_input "a dataset of labelled sequences" "data/seq: a sequences dataset .*needs a token stream" -- \
  "$GRAFT" sample bytes.yaml data.train=data/seq --weights $w --prompt x
[ -z "$(ls -A adir)" ] && ok "nothing written by the failures" || bad "files left in adir"

# GPT-2 BPE tokens: an empty prompt starts from <|endoftext|>; UTF-8 text round-trips
sed -e 's/tiny_bytes/tiny_bpe/' -e 's|data/bytes|data/bpe|' -e 's/seq_len: 64/seq_len: 32/' \
  -e 's/max_steps: 40/max_steps: 5/' -e 's/batch_size: 8/batch_size: 4/' -e '/^freeze:/d' bytes.yaml >bpe.yaml
"$GRAFT" train bpe.yaml >train_bpe 2>&1 && ok "trained a tiny GPT-2 on GPT-2 tokens" ||
  { bad "train (gpt2 tokens)"; cat train_bpe; }
wb=runs/tiny_bpe/model.safetensors
"$GRAFT" sample bpe.yaml --weights $wb --seed 3 --max-new-tokens 30 >b1 2>b1.err &&
  "$GRAFT" sample bpe.yaml --weights $wb --seed 3 --max-new-tokens 30 >b2 2>>b1.err && cmp -s b1 b2 &&
  grep -q "prompt of 1 tokens" b1.err && ok "gpt2 tokens, empty prompt: <|endoftext|> starts it, same text twice" ||
  { bad "gpt2 tokens, empty prompt"; cat b1 b1.err; }
text='Héllo wörld 🌍 and 日本語'
"$GRAFT" sample bpe.yaml --weights $wb --prompt "$text" --temperature 0 --max-new-tokens 5 >b3 2>b3.err &&
  [[ "$(head -1 b3)" == "$text"* ]] && ok "gpt2 tokens: UTF-8 prompt printed as given" ||
  { bad "gpt2 tokens, UTF-8 prompt"; cat b3 b3.err; }
finish
