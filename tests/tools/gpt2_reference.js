#!/usr/bin/env node
// GPT-2 token ids from the npm package gpt-3-encoder (the reference for
// runtime/data/tokenizer.c). scripts/deps.sh installs the package.
//
//   node tests/tools/gpt2_reference.js [--c] STRING...      ids of each string
//   node tests/tools/gpt2_reference.js [--c] --json FILE    strings from a JSON array
//   node tests/tools/gpt2_reference.js [--c] --files FILE...  each file's text (UTF-8)
//   node tests/tools/gpt2_reference.js [--c] --random N SEED  N random strings mixing
//        ASCII, contractions, white space of every kind, Latin-1, other scripts, marks,
//        emoji and arbitrary code points (seeded: the same N and SEED give the same strings)
//   node tests/tools/gpt2_reference.js [--c] --random-common N SEED  the same without
//        arbitrary code points: only blocks complete long before Unicode 15, for a node
//        whose Unicode version differs from runtime/data/tokenizer_unicode_internal.h's
//
// Prints a JSON array of {"text": ..., "ids": [...]} (what tests/e2e_tokenizer.sh hands
// to tests/test_tokenizer via GRAFT_TOKENIZER_REF), or with --c the C initializers
// of the reference table in tests/test_tokenizer.c.
// The package is looked up in $GRAFT_GPT3_ENCODER, else /usr/local/share/graft/gpt-3-encoder.
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = process.env.GRAFT_GPT3_ENCODER || '/usr/local/share/graft/gpt-3-encoder';
const { encode } = require(path.resolve(pkg));

// The package's pre-tokenisation regex. Its encode() appends ids with Array.concat,
// which is quadratic in the text length, so long texts are cut and encoded piece by
// piece. A cut goes after a match of this same regex that ends in a non-space: there
// the matches (hence the ids) of the pieces are those of the whole text. (After white
// space they are not: "a\n\nB" is "a" "\n" "\n" "B", but "a\n\n" alone is "a" "\n\n".)
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const source = fs.readFileSync(path.join(pkg, 'Encoder.js'), 'utf-8');
if (!source.includes(pat.toString())) {
  console.error(`gpt2_reference.js: ${pkg}/Encoder.js no longer uses the regex ${pat}`);
  process.exit(1);
}

function encodeLong(text) {
  if (text.length <= 20000) return encode(text);
  const ids = [];
  let chunk = '';
  for (const m of text.matchAll(pat)) {
    chunk += m[0];
    if (chunk.length >= 4000 && !/\s$/u.test(m[0])) {
      for (const id of encode(chunk)) ids.push(id);
      chunk = '';
    }
  }
  for (const id of encode(chunk)) ids.push(id);
  return ids;
}

let args = process.argv.slice(2);
let asC = false;
if (args[0] === '--c') { asC = true; args = args.slice(1); }
// N seeded random strings built from pieces that exercise every branch of the regex.
function randomTexts(count, seed, common) {
  let state = seed >>> 0;
  const rand = () => { // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (a) => a[Math.floor(rand() * a.length)];
  const cp = (lo, hi) => {
    let c;
    do { c = lo + Math.floor(rand() * (hi - lo + 1)); } while (c >= 0xd800 && c <= 0xdfff);
    return String.fromCodePoint(c);
  };
  const pieces = [
    () => pick(['the', ' cat', 'Hello', ' WORLD', 'x', ' a', 'ing', 'Zebra']),
    () => pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'", "''", " '", "'x"]),
    () => pick(['0', '42', ' 7', '3.14', ' 1,000', '2024', '٣', '½', '²', 'Ⅻ']),
    () => pick(['.', ',', '!?', ' --', '...', ' (', ')', '"', ' "', '#$%', '\\', '{}', '@']),
    () => pick([' ', '  ', '   ', '\n', '\n\n', '\t', ' \n', '\r\n', '\v', '\f', '\t\t ']),
    () => pick(['\u00a0', '\u1680', '\u2003', '\u2009', '\u2028', '\u2029', '\u202f',
                '\u205f', '\u3000', '\ufeff', '\u0085', '\u001c', '\u001f', '\u200b']),
    () => cp(0xa0, 0xff),
    () => cp(0x370, 0x3ff) + cp(0x400, 0x4ff),
    () => cp(0x300, 0x36f), // combining marks
    () => cp(0x900, 0x97f) + cp(0x600, 0x6ff),
    () => cp(0x4e00, 0x9fff) + cp(0x3040, 0x30ff) + cp(0xac00, 0xd7a3),
    () => cp(0x1f300, 0x1faff) + pick(['', '\u200d', '\ufe0f']),
  ];
  if (!common) pieces.push(() => cp(0x80, 0xffff), () => cp(0x10000, 0x10ffff));
  const out = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    const n = 1 + Math.floor(rand() * 40);
    for (let k = 0; k < n; k++) s += pick(pieces)();
    out.push(s);
  }
  return out;
}

let texts;
if (args[0] === '--random' || args[0] === '--random-common')
  texts = randomTexts(parseInt(args[1], 10), parseInt(args[2], 10), args[0] === '--random-common');
else if (args[0] === '--json') texts = JSON.parse(fs.readFileSync(args[1], 'utf-8'));
else if (args[0] === '--files') texts = args.slice(1).map((f) => fs.readFileSync(f, 'utf-8'));
else texts = args;

const results = texts.map((text) => ({ text, ids: encodeLong(text) }));
if (asC) {
  // A C string literal: escape everything outside printable ASCII byte by byte (UTF-8),
  // splitting the literal after a \x escape so that a following hex digit stays a char.
  const cString = (s) => {
    let out = '"';
    let afterHex = false;
    for (const b of Buffer.from(s, 'utf-8')) {
      const ch = String.fromCharCode(b);
      let piece;
      if (b === 0x22) piece = '\\"';
      else if (b === 0x5c) piece = '\\\\';
      else if (b === 0x0a) piece = '\\n';
      else if (b === 0x09) piece = '\\t';
      else if (b === 0x0d) piece = '\\r';
      else if (b >= 0x20 && b < 0x7f) piece = ch;
      else piece = '\\x' + b.toString(16).padStart(2, '0');
      if (afterHex && /^[0-9a-fA-F]/.test(piece)) out += '" "';
      out += piece;
      afterHex = piece.startsWith('\\x');
    }
    return out + '"';
  };
  for (const r of results) {
    const ids = r.ids.length ? `(const int32_t[]){${r.ids.join(", ")}}` : "NULL";
    process.stdout.write(`    {${cString(r.text)},\n     ${ids}, ${r.ids.length}},\n`);
  }
} else {
  process.stdout.write(JSON.stringify(results) + '\n');
}
