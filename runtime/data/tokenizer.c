/* Tokenizers: "bytes" (one token per byte), GPT-2's byte-level BPE, and BERT's
 * WordPiece (tokenizer_wordpiece.c; this file only dispatches to it).
 *
 * GPT-2 follows OpenAI's encoder.py (and its npm port gpt-3-encoder) step by step:
 *   1. pre-tokenisation with the regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      written out by hand below (pretoken_end); the classes \p{L}, \p{N} and \s come
 *      from tokenizer_unicode_internal.h, generated from node's regex engine;
 *   2. each piece's UTF-8 bytes become one symbol per byte (bytes_to_unicode is only a
 *      printable spelling of bytes: we undo it when loading the files and work on ids);
 *   3. BPE: repeatedly take the adjacent pair with the lowest rank in vocab.bpe and
 *      merge all its non-overlapping occurrences left to right (bpe_word);
 *   4. the pieces' ids are cached by their bytes, as encoder.py caches them.
 * Text that is not valid UTF-8 is still tokenised, byte for byte: each invalid byte
 * counts as one character that is neither a letter, a number nor white space, so
 * decode(encode(x)) == x for any bytes. "<|endoftext|>" inside text is ordinary text,
 * as in encoder.py; callers place graft_tokenizer_eot() between documents.
 * A tokenizer is not thread-safe (the cache and the BPE work arrays are inside it). */
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "tokenizer_unicode_internal.h"
#include "tokenizer_wordpiece_internal.h"

enum { TOK_KIND_BYTES, TOK_KIND_GPT2, TOK_KIND_WORDPIECE };
enum { CLS_OTHER, CLS_LETTER, CLS_NUMBER, CLS_SPACE };

#define TOK_INVALID_CP 0xFFFFFFFFu
/* Pieces longer than this are not cached (they rarely repeat). */
#define CACHE_MAX_WORD_BYTES 128
/* Cache limits: at either one the cache is emptied and starts again. */
#define CACHE_MAX_SLOTS ((size_t)1 << 20)
#define CACHE_MAX_BLOB_BYTES ((size_t)64 << 20)

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; /* key_len 0: empty slot */
    uint32_t ids_off, n_ids;
} word_cache_slot;

typedef struct {
    int32_t rank, pos;
} bpe_heap_entry;

struct graft_tokenizer {
    int kind;
    int vocab_size;
    int eot;
    graft_wordpiece *wp; /* TOK_KIND_WORDPIECE */
    /* gpt2: id -> raw bytes of the token */
    unsigned char *token_blob;
    size_t *token_off; /* vocab_size + 1 offsets into token_blob */
    int32_t byte_to_id[256];
    /* merges by rank, and a hash (left, right) -> rank */
    int32_t n_merges;
    int32_t *merge_left, *merge_right, *merge_result;
    uint64_t *merge_keys;
    int32_t *merge_ranks; /* -1: empty slot */
    size_t merge_mask;
    /* piece -> ids cache */
    word_cache_slot *cache;
    size_t cache_slots, cache_used;
    char *cache_keys;
    size_t cache_keys_len, cache_keys_cap;
    int32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
    /* BPE work arrays, grown to the longest piece seen */
    int32_t *w_tok, *w_next, *w_prev;
    unsigned char *w_alive;
    size_t w_cap;
    bpe_heap_entry *w_heap, *w_batch;
    size_t w_heap_cap;
};

/* ---- Unicode classes and UTF-8 ------------------------------------------------------ */

/* Decode one UTF-8 character at s[p] (p < len), strictly (no overlongs, surrogates or
 * values past U+10FFFF). Returns its length; an invalid byte is one character of length
 * 1 with *cp = TOK_INVALID_CP. */
static size_t utf8_next(const unsigned char *s, size_t len, size_t p, uint32_t *cp) {
    unsigned c = s[p];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *cp = TOK_INVALID_CP;
        return 1;
    }
    if (len - p - 1 < need) {
        *cp = TOK_INVALID_CP;
        return 1;
    }
    for (size_t k = 1; k <= need; k++) {
        unsigned b = s[p + k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
            *cp = TOK_INVALID_CP;
            return 1;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need + 1;
}

/* Whether cp lies in one of n sorted, disjoint ranges. */
static int in_ranges(const tok_cp_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The regex class of a code point: letter (\p{L}), number (\p{N}), space (\s) or other. */
static int char_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CLS_LETTER;
        if (cp >= '0' && cp <= '9') return CLS_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CLS_SPACE;
        return CLS_OTHER;
    }
    if (cp == TOK_INVALID_CP) return CLS_OTHER;
    if (in_ranges(tok_letter_ranges, COUNT_OF(tok_letter_ranges), cp)) return CLS_LETTER;
    if (in_ranges(tok_number_ranges, COUNT_OF(tok_number_ranges), cp)) return CLS_NUMBER;
    if (in_ranges(tok_space_ranges, COUNT_OF(tok_space_ranges), cp)) return CLS_SPACE;
    return CLS_OTHER;
}

/* End of the run of characters of class cls that starts at s[p]. */
static size_t class_run_end(const unsigned char *s, size_t len, size_t p, int cls) {
    while (p < len) {
        uint32_t cp;
        size_t n = utf8_next(s, len, p, &cp);
        if (char_class(cp) != cls) break;
        p += n;
    }
    return p;
}

/* End of the pre-token that starts at s[p] (p < len): the match GPT-2's regex
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * finds there, alternatives tried in order as a backtracking engine does. */
static size_t pretoken_end(const unsigned char *s, size_t len, size_t p) {
    if (s[p] == '\'' && p + 1 < len) {
        unsigned char c1 = s[p + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return p + 2;
        if (p + 2 < len) {
            unsigned char c2 = s[p + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return p + 3;
        }
    }
    uint32_t cp;
    size_t n = utf8_next(s, len, p, &cp);
    int cls = char_class(cp);
    if (s[p] == ' ' && p + 1 < len) { /* " ?X+" with the optional space present */
        uint32_t cp1;
        size_t n1 = utf8_next(s, len, p + 1, &cp1);
        int cls1 = char_class(cp1);
        if (cls1 != CLS_SPACE) return class_run_end(s, len, p + 1 + n1, cls1);
    }
    if (cls != CLS_SPACE) return class_run_end(s, len, p + n, cls);
    /* White space: \s+(?!\S) keeps the last space for the next piece when a
     * non-space follows a run of two or more; a single one is taken by \s+. */
    size_t last_start = p, end = p + n;
    while (end < len) {
        size_t m = utf8_next(s, len, end, &cp);
        if (char_class(cp) != CLS_SPACE) break;
        last_start = end;
        end += m;
    }
    if (end == len || last_start == p) return end;
    return last_start;
}

/* ---- loading encoder.json and vocab.bpe --------------------------------------------- */

/* GPT-2's bytes_to_unicode(): printable bytes stand for themselves, the other 68 are
 * moved to U+0100.. in byte order. Fills byte -> code point and code point -> byte. */
static void bytes_to_unicode(uint32_t byte_to_cp[256], int cp_to_byte[512]) {
    for (int i = 0; i < 512; i++)
        cp_to_byte[i] = -1;
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + next++);
        cp_to_byte[byte_to_cp[b]] = b;
    }
}

/* Turn a token as spelled in the files (UTF-8 of bytes_to_unicode characters) back into
 * raw bytes; out needs len bytes. Returns the byte count, or -1 when a character is not
 * one of the 256. */
static long unspell_token(const char *spelled, size_t len, const int cp_to_byte[512],
                          unsigned char *out) {
    const unsigned char *s = (const unsigned char *)spelled;
    size_t p = 0, n = 0;
    while (p < len) {
        uint32_t cp;
        p += utf8_next(s, len, p, &cp);
        if (cp >= 512 || cp_to_byte[cp] < 0) return -1;
        out[n++] = (unsigned char)cp_to_byte[cp];
    }
    return (long)n;
}

static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static size_t pair_slot(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* Rank of merging (left, right), or -1 when vocab.bpe has no such merge. */
static int32_t merge_rank(const graft_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    for (size_t i = pair_slot(key, t->merge_mask);; i = (i + 1) & t->merge_mask) {
        if (t->merge_ranks[i] < 0) return -1;
        if (t->merge_keys[i] == key) return t->merge_ranks[i];
    }
}

/* encoder.json: {"spelled token": id, ...} with ids 0..n-1, each once, every single
 * byte present and "<|endoftext|>" for the end-of-text id. Returns the parsed object
 * (for vocab.bpe's lookups) in *root. */
static graft_status load_encoder(graft_tokenizer *t, const char *path, const int cp_to_byte[512],
                                 const uint32_t byte_to_cp[256], json_t **root) {
    char *text;
    size_t len;
    GRAFT_TRY(graft_fs_read(path, 0, &text, &len, GRAFT_LOG_ERROR));
    json_error_t err;
    *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!*root) {
        GRAFT_ERROR("%s:%d:%d: not valid JSON: %s", path, err.line, err.column, err.text);
        return GRAFT_ERR_FORMAT;
    }
    if (!json_is_object(*root) || json_object_size(*root) < 257 ||
        json_object_size(*root) > INT32_MAX / 2) {
        GRAFT_ERROR("%s: expected an object of at least 257 tokens -> ids", path);
        return GRAFT_ERR_FORMAT;
    }
    size_t n = json_object_size(*root);
    size_t blob_bytes = 0;
    const char *key;
    json_t *value;
    json_object_foreach(*root, key, value) {
        json_int_t id = json_is_integer(value) ? json_integer_value(value) : -1;
        if (id < 0 || (size_t)id >= n) {
            GRAFT_ERROR("%s: token \"%s\" has id outside [0, %zu)", path, key, n);
            return GRAFT_ERR_FORMAT;
        }
        blob_bytes += strlen(key);
    }
    t->vocab_size = (int)n;
    t->token_off = calloc(n + 1, sizeof *t->token_off);
    size_t *lengths = calloc(n, sizeof *lengths);
    t->token_blob = malloc(blob_bytes + 1);
    unsigned char *raw = malloc(blob_bytes + 1);
    if (!t->token_off || !lengths || !t->token_blob || !raw) {
        free(lengths);
        free(raw);
        GRAFT_ERROR("%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    /* Ids in order: first the lengths (each id seen once), then offsets, then bytes. */
    graft_status st = GRAFT_OK;
    for (size_t i = 0; i < n; i++)
        lengths[i] = SIZE_MAX;
    json_object_foreach(*root, key, value) {
        size_t id = (size_t)json_integer_value(value);
        long nb = unspell_token(key, strlen(key), cp_to_byte, raw);
        if (nb <= 0) {
            GRAFT_ERROR("%s: token \"%s\" is not spelled with GPT-2's byte characters", path, key);
            st = GRAFT_ERR_FORMAT;
            goto done;
        }
        if (lengths[id] != SIZE_MAX) {
            GRAFT_ERROR("%s: id %zu is given to more than one token (\"%s\" is one)", path, id,
                        key);
            st = GRAFT_ERR_FORMAT;
            goto done;
        }
        lengths[id] = (size_t)nb;
    }
    t->token_off[0] = 0;
    for (size_t i = 0; i < n; i++)
        t->token_off[i + 1] = t->token_off[i] + lengths[i];
    json_object_foreach(*root, key, value) {
        size_t id = (size_t)json_integer_value(value);
        unspell_token(key, strlen(key), cp_to_byte, t->token_blob + t->token_off[id]);
    }
    for (int b = 0; b < 256; b++) {
        char spelled[4] = {0};
        uint32_t cp = byte_to_cp[b];
        if (cp < 0x80)
            spelled[0] = (char)cp;
        else {
            spelled[0] = (char)(0xC0 | (cp >> 6));
            spelled[1] = (char)(0x80 | (cp & 0x3F));
        }
        json_t *v = json_object_get(*root, spelled);
        if (!v) {
            GRAFT_ERROR("%s: the single-byte token for byte 0x%02x (\"%s\") is missing", path, b,
                        spelled);
            st = GRAFT_ERR_FORMAT;
            goto done;
        }
        t->byte_to_id[b] = (int32_t)json_integer_value(v);
    }
    json_t *eot = json_object_get(*root, "<|endoftext|>");
    if (!eot) {
        GRAFT_ERROR("%s: has no \"<|endoftext|>\" token", path);
        st = GRAFT_ERR_FORMAT;
        goto done;
    }
    t->eot = (int)json_integer_value(eot);
done:
    free(lengths);
    free(raw);
    return st;
}

/* vocab.bpe: "#version..." then one merge "left right" per line (spelled as in
 * encoder.json), rank = line number - 2. A pair listed twice keeps its later rank, as
 * encoder.py's dict does. */
static graft_status load_merges(graft_tokenizer *t, const char *path, json_t *encoder) {
    char *text;
    size_t len;
    GRAFT_TRY(graft_fs_read(path, 0, &text, &len, GRAFT_LOG_ERROR));
    graft_status st = GRAFT_ERR_FORMAT;
    if (len < 8 || strncmp(text, "#version", 8) != 0) {
        GRAFT_ERROR("%s: does not start with a \"#version\" line", path);
        goto done;
    }
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    size_t slots = 1024;
    while (slots < 2 * lines)
        slots *= 2;
    t->merge_left = malloc((lines + 1) * sizeof(int32_t));
    t->merge_right = malloc((lines + 1) * sizeof(int32_t));
    t->merge_result = malloc((lines + 1) * sizeof(int32_t));
    t->merge_keys = malloc(slots * sizeof(uint64_t));
    t->merge_ranks = malloc(slots * sizeof(int32_t));
    char *joined = malloc(len + 1);
    if (!t->merge_left || !t->merge_right || !t->merge_result || !t->merge_keys ||
        !t->merge_ranks || !joined) {
        free(joined);
        GRAFT_ERROR("%s: out of memory", path);
        st = GRAFT_ERR_NOMEM;
        goto done;
    }
    t->merge_mask = slots - 1;
    for (size_t i = 0; i < slots; i++)
        t->merge_ranks[i] = -1;
    char *line = memchr(text, '\n', len);
    line = line ? line + 1 : text + len;
    size_t line_no = 1;
    int32_t rank = 0;
    while (line < text + len) {
        line_no++;
        char *eol = memchr(line, '\n', (size_t)(text + len - line));
        if (!eol) eol = text + len;
        *eol = '\0';
        char *space = strchr(line, ' ');
        if (!space || space == line || space[1] == '\0' || strchr(space + 1, ' ')) {
            GRAFT_ERROR("%s:%zu: expected \"left right\", got \"%.40s\"", path, line_no, line);
            free(joined);
            goto done;
        }
        *space = '\0';
        const char *right = space + 1;
        json_t *lv = json_object_get(encoder, line), *rv = json_object_get(encoder, right);
        size_t left_len = (size_t)(space - line), right_len = strlen(right);
        memcpy(joined, line, left_len);
        memcpy(joined + left_len, right, right_len + 1);
        json_t *mv = json_object_get(encoder, joined);
        if (!lv || !rv || !mv) {
            const char *unknown = !lv ? line : (!rv ? right : joined);
            GRAFT_ERROR("%s:%zu: token \"%s\" is not in encoder.json", path, line_no, unknown);
            free(joined);
            goto done;
        }
        int32_t l = (int32_t)json_integer_value(lv), r = (int32_t)json_integer_value(rv);
        t->merge_left[rank] = l;
        t->merge_right[rank] = r;
        t->merge_result[rank] = (int32_t)json_integer_value(mv);
        uint64_t key = pair_key(l, r);
        size_t i = pair_slot(key, t->merge_mask);
        while (t->merge_ranks[i] >= 0 && t->merge_keys[i] != key)
            i = (i + 1) & t->merge_mask;
        t->merge_keys[i] = key;
        t->merge_ranks[i] = rank;
        rank++;
        line = eol + 1;
    }
    free(joined);
    t->n_merges = rank;
    st = GRAFT_OK;
done:
    free(text);
    return st;
}

static graft_status load_gpt2(graft_tokenizer *t, const char *dir) {
    uint32_t byte_to_cp[256];
    int cp_to_byte[512];
    bytes_to_unicode(byte_to_cp, cp_to_byte);
    size_t dlen = strlen(dir);
    char *path = malloc(dlen + 32);
    if (!path) return GRAFT_ERR_NOMEM;
    snprintf(path, dlen + 32, "%s/encoder.json", dir);
    json_t *encoder = NULL;
    graft_status st = load_encoder(t, path, cp_to_byte, byte_to_cp, &encoder);
    if (st == GRAFT_OK) {
        snprintf(path, dlen + 32, "%s/vocab.bpe", dir);
        st = load_merges(t, path, encoder);
    }
    json_decref(encoder);
    free(path);
    return st;
}

/* A WordPiece tokenizer around a loaded vocabulary (freed on failure). */
static graft_status wordpiece_tokenizer(graft_tokenizer **out, graft_wordpiece *wp) {
    graft_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        graft_wordpiece_free(wp);
        return GRAFT_ERR_NOMEM;
    }
    t->kind = TOK_KIND_WORDPIECE;
    t->wp = wp;
    t->vocab_size = graft_wordpiece_vocab_size(wp);
    t->eot = graft_wordpiece_id(wp, "[SEP]");
    *out = t;
    return GRAFT_OK;
}

graft_status graft_tokenizer_new_vocab(graft_tokenizer **out, const char *vocab_txt) {
    if (!out || !vocab_txt) return GRAFT_ERR_INVALID_ARG;
    *out = NULL;
    graft_wordpiece *wp;
    GRAFT_TRY(graft_wordpiece_load_txt(&wp, vocab_txt));
    return wordpiece_tokenizer(out, wp);
}

graft_status graft_tokenizer_new(graft_tokenizer **out, const char *name, const char *dir) {
    if (!out) return GRAFT_ERR_INVALID_ARG;
    *out = NULL;
    if (name && strcmp(name, "bert-base-uncased") == 0) {
        if (!dir) dir = getenv("GRAFT_BERT_DIR");
        if (!dir || !*dir) dir = GRAFT_BERT_DIR_DEFAULT;
        char *path = graft_fs_path_join_alloc(dir, "assets/vocab.json");
        if (!path) return GRAFT_ERR_NOMEM;
        graft_wordpiece *wp;
        graft_status st = graft_wordpiece_load_npm_json(&wp, path);
        free(path);
        return st == GRAFT_OK ? wordpiece_tokenizer(out, wp) : st;
    }
    if (!name || (strcmp(name, "bytes") != 0 && strcmp(name, "gpt2") != 0)) {
        GRAFT_ERROR("unknown tokenizer \"%s\" (known: bytes, gpt2, bert-base-uncased)",
                    name ? name : "(null)");
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return GRAFT_ERR_NOMEM;
    if (strcmp(name, "bytes") == 0) {
        t->kind = TOK_KIND_BYTES;
        t->vocab_size = 256;
        t->eot = -1;
        t->token_blob = malloc(256);
        t->token_off = malloc(257 * sizeof *t->token_off);
        if (!t->token_blob || !t->token_off) {
            graft_tokenizer_free(t);
            return GRAFT_ERR_NOMEM;
        }
        for (int b = 0; b <= 256; b++)
            t->token_off[b] = (size_t)b;
        for (int b = 0; b < 256; b++)
            t->token_blob[b] = (unsigned char)b;
        *out = t;
        return GRAFT_OK;
    }
    t->kind = TOK_KIND_GPT2;
    if (!dir) dir = getenv("GRAFT_GPT2_DIR");
    if (!dir || !*dir) dir = GRAFT_GPT2_DIR_DEFAULT;
    graft_status st = load_gpt2(t, dir);
    if (st != GRAFT_OK) {
        graft_tokenizer_free(t);
        return st;
    }
    GRAFT_DEBUG("gpt2 from %s: %d tokens, %d merges, eot %d", dir, t->vocab_size, t->n_merges,
                t->eot);
    *out = t;
    return GRAFT_OK;
}

int graft_tokenizer_vocab_size(const graft_tokenizer *t) { return t->vocab_size; }

int graft_tokenizer_eot(const graft_tokenizer *t) { return t->eot; }

int graft_tokenizer_special(const graft_tokenizer *t, graft_special_token which) {
    static const char *const names[] = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"};
    if (t->kind != TOK_KIND_WORDPIECE || (unsigned)which >= COUNT_OF(names)) return -1;
    return graft_wordpiece_id(t->wp, names[which]);
}

void graft_tokenizer_free(graft_tokenizer *t) {
    if (!t) return;
    graft_wordpiece_free(t->wp);
    free(t->token_blob);
    free(t->token_off);
    free(t->merge_left);
    free(t->merge_right);
    free(t->merge_result);
    free(t->merge_keys);
    free(t->merge_ranks);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    free(t->w_tok);
    free(t->w_next);
    free(t->w_prev);
    free(t->w_alive);
    free(t->w_heap);
    free(t->w_batch);
    free(t);
}

/* ---- BPE ------------------------------------------------------------------------------ */

/* Grow *p (elements of size elem) to hold at least need; 0 on success. */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void heap_push(bpe_heap_entry *h, size_t *n, bpe_heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].rank <= e.rank) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static bpe_heap_entry heap_pop(bpe_heap_entry *h, size_t *n) {
    bpe_heap_entry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].rank < h[c].rank) c++;
        if (last.rank <= h[c].rank) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* Push the pair starting at node i (if it has a right neighbour and a merge). */
static void push_pair(const graft_tokenizer *t, size_t *heap_n, int32_t i) {
    if (i < 0) return;
    int32_t j = t->w_next[i];
    if (j < 0) return;
    int32_t r = merge_rank(t, t->w_tok[i], t->w_tok[j]);
    if (r >= 0) heap_push(t->w_heap, heap_n, (bpe_heap_entry){r, i});
}

static int cmp_pos(const void *a, const void *b) {
    int32_t x = ((const bpe_heap_entry *)a)->pos, y = ((const bpe_heap_entry *)b)->pos;
    return (x > y) - (x < y);
}

/* BPE of one piece of n bytes into ids (n entries at most); returns the id count, or
 * -1 when out of memory. Same result as encoder.py's bpe(): each round takes the
 * lowest-ranked adjacent pair and merges all its occurrences left to right; the
 * doubly linked list and the heap make a round cost O(k log n) instead of O(n). */
static long bpe_word(graft_tokenizer *t, const unsigned char *w, size_t n, int32_t *ids) {
    if (n == 1) {
        ids[0] = t->byte_to_id[w[0]];
        return 1;
    }
    if (n > INT32_MAX / 4) return -1;
    size_t cap = t->w_cap;
    if (grow((void **)&t->w_tok, &cap, n, sizeof(int32_t))) return -1;
    cap = t->w_cap;
    if (grow((void **)&t->w_next, &cap, n, sizeof(int32_t))) return -1;
    cap = t->w_cap;
    if (grow((void **)&t->w_prev, &cap, n, sizeof(int32_t))) return -1;
    cap = t->w_cap;
    if (grow((void **)&t->w_alive, &cap, n, 1)) return -1;
    t->w_cap = cap;
    /* Each merge pushes at most two pairs: 3n entries bound the heap. */
    cap = t->w_heap_cap;
    if (grow((void **)&t->w_heap, &cap, 3 * n, sizeof(bpe_heap_entry))) return -1;
    cap = t->w_heap_cap;
    if (grow((void **)&t->w_batch, &cap, 3 * n, sizeof(bpe_heap_entry))) return -1;
    t->w_heap_cap = cap;

    int32_t *tok = t->w_tok, *next = t->w_next, *prev = t->w_prev;
    unsigned char *alive = t->w_alive;
    for (size_t i = 0; i < n; i++) {
        tok[i] = t->byte_to_id[w[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        alive[i] = 1;
    }
    size_t heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(t, &heap_n, (int32_t)i);
    while (heap_n > 0) {
        /* One round: every queued occurrence of the lowest-ranked pair, left to right. */
        int32_t rank = t->w_heap[0].rank;
        size_t batch_n = 0;
        while (heap_n > 0 && t->w_heap[0].rank == rank)
            t->w_batch[batch_n++] = heap_pop(t->w_heap, &heap_n);
        if (batch_n > 1) qsort(t->w_batch, batch_n, sizeof *t->w_batch, cmp_pos);
        int32_t left = t->merge_left[rank], right = t->merge_right[rank];
        for (size_t k = 0; k < batch_n; k++) {
            int32_t i = t->w_batch[k].pos, j = next[i];
            if (!alive[i] || j < 0 || tok[i] != left || tok[j] != right) continue; /* stale */
            tok[i] = t->merge_result[rank];
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            alive[j] = 0;
            /* New pairs contain the merged token, so their ranks differ from this
             * round's: they wait in the heap for later rounds. */
            push_pair(t, &heap_n, prev[i]);
            push_pair(t, &heap_n, i);
        }
    }
    long count = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        ids[count++] = tok[i];
    return count;
}

/* ---- the piece cache ------------------------------------------------------------------ */

static void cache_clear(graft_tokenizer *t) {
    if (t->cache) memset(t->cache, 0, t->cache_slots * sizeof *t->cache);
    t->cache_used = 0;
    t->cache_keys_len = 0;
    t->cache_ids_len = 0;
}

/* The cached ids of a piece, or NULL. */
static const word_cache_slot *cache_find(const graft_tokenizer *t, const unsigned char *w, size_t n,
                                         uint64_t hash) {
    if (!t->cache) return NULL;
    size_t mask = t->cache_slots - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const word_cache_slot *s = &t->cache[i];
        if (s->key_len == 0) return NULL;
        if (s->hash == hash && s->key_len == n && memcmp(t->cache_keys + s->key_off, w, n) == 0)
            return s;
    }
}

static void cache_put_slot(word_cache_slot *table, size_t slots, word_cache_slot s) {
    size_t mask = slots - 1;
    size_t i = (size_t)s.hash & mask;
    while (table[i].key_len != 0)
        i = (i + 1) & mask;
    table[i] = s;
}

/* Remember a piece's ids (best effort: a failed allocation only skips caching). */
static void cache_insert(graft_tokenizer *t, const unsigned char *w, size_t n, uint64_t hash,
                         const int32_t *ids, size_t n_ids) {
    if (t->cache_keys_len + n > CACHE_MAX_BLOB_BYTES ||
        (t->cache_slots >= CACHE_MAX_SLOTS && 2 * (t->cache_used + 1) > t->cache_slots))
        cache_clear(t);
    if (2 * (t->cache_used + 1) > t->cache_slots) {
        size_t slots = t->cache_slots ? 2 * t->cache_slots : 4096;
        word_cache_slot *table = calloc(slots, sizeof *table);
        if (!table) return;
        for (size_t i = 0; i < t->cache_slots; i++)
            if (t->cache[i].key_len) cache_put_slot(table, slots, t->cache[i]);
        free(t->cache);
        t->cache = table;
        t->cache_slots = slots;
    }
    if (grow((void **)&t->cache_keys, &t->cache_keys_cap, t->cache_keys_len + n, 1)) return;
    if (grow((void **)&t->cache_ids, &t->cache_ids_cap, t->cache_ids_len + n_ids, sizeof(int32_t)))
        return;
    word_cache_slot s = {hash, (uint32_t)t->cache_keys_len, (uint32_t)n, (uint32_t)t->cache_ids_len,
                         (uint32_t)n_ids};
    memcpy(t->cache_keys + t->cache_keys_len, w, n);
    memcpy(t->cache_ids + t->cache_ids_len, ids, n_ids * sizeof(int32_t));
    t->cache_keys_len += n;
    t->cache_ids_len += n_ids;
    cache_put_slot(t->cache, t->cache_slots, s);
    t->cache_used++;
}

/* ---- encode / decode ------------------------------------------------------------------ */

/* Make room for `more` ids after *n. */
static graft_status reserve_ids(int32_t **ids, const size_t *n, size_t *cap, size_t more) {
    if (*n + more <= *cap) return GRAFT_OK;
    size_t c = *cap ? *cap : 256;
    while (c < *n + more)
        c *= 2;
    int32_t *p = realloc(*ids, c * sizeof(int32_t));
    if (!p) {
        GRAFT_ERROR("out of memory for %zu token ids", c);
        return GRAFT_ERR_NOMEM;
    }
    *ids = p;
    *cap = c;
    return GRAFT_OK;
}

graft_status graft_tokenizer_encode(graft_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n, size_t *cap) {
    if (!t || !ids || !n || !cap || (!text && len > 0)) return GRAFT_ERR_INVALID_ARG;
    const unsigned char *s = (const unsigned char *)text;
    if (t->kind == TOK_KIND_WORDPIECE) return graft_wordpiece_encode(t->wp, text, len, ids, n, cap);
    if (t->kind == TOK_KIND_BYTES) {
        GRAFT_TRY(reserve_ids(ids, n, cap, len));
        for (size_t i = 0; i < len; i++)
            (*ids)[*n + i] = s[i];
        *n += len;
        return GRAFT_OK;
    }
    /* cppcheck-suppress unreadVariable ; piece is read at the out-of-memory label below */
    size_t p = 0, piece = 0;
    while (p < len) {
        size_t end = pretoken_end(s, len, p);
        piece = end - p;
        /* A piece never yields more ids than it has bytes. */
        GRAFT_TRY(reserve_ids(ids, n, cap, piece));
        int32_t *out = *ids + *n;
        if (piece <= CACHE_MAX_WORD_BYTES) {
            uint64_t hash = XXH3_64bits(s + p, piece);
            const word_cache_slot *hit = cache_find(t, s + p, piece, hash);
            if (hit) {
                memcpy(out, t->cache_ids + hit->ids_off, hit->n_ids * sizeof(int32_t));
                *n += hit->n_ids;
            } else {
                long count = bpe_word(t, s + p, piece, out);
                if (count < 0) goto nomem;
                cache_insert(t, s + p, piece, hash, out, (size_t)count);
                *n += (size_t)count;
            }
        } else {
            long count = bpe_word(t, s + p, piece, out);
            if (count < 0) goto nomem;
            *n += (size_t)count;
        }
        p = end;
    }
    return GRAFT_OK;
nomem:
    GRAFT_ERROR("out of memory encoding a piece of %zu bytes", piece);
    return GRAFT_ERR_NOMEM;
}

const unsigned char *graft_tokenizer_token_bytes(const graft_tokenizer *t, int32_t id,
                                                 size_t *len) {
    if (t->kind == TOK_KIND_WORDPIECE) return graft_wordpiece_token(t->wp, id, len);
    if (id < 0 || id >= t->vocab_size) {
        *len = 0;
        return NULL;
    }
    *len = t->token_off[id + 1] - t->token_off[id];
    return t->token_blob + t->token_off[id];
}

/* WordPiece spells "##x" for an x glued to the piece before it; other tokens are
 * separated by a space (Hugging Face's convert_tokens_to_string). */
static int glued_piece(const graft_tokenizer *t, const unsigned char *b, size_t l) {
    return t->kind == TOK_KIND_WORDPIECE && l > 2 && b[0] == '#' && b[1] == '#';
}

char *graft_tokenizer_decode(const graft_tokenizer *t, const int32_t *ids, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!graft_tokenizer_token_bytes(t, ids[i], &l)) {
            GRAFT_ERROR("token id %d at position %zu is outside [0, %d)", (int)ids[i], i,
                        t->vocab_size);
            return NULL;
        }
        total += l + 1;
    }
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const unsigned char *b = graft_tokenizer_token_bytes(t, ids[i], &l);
        if (glued_piece(t, b, l)) {
            b += 2;
            l -= 2;
        } else if (t->kind == TOK_KIND_WORDPIECE && i > 0) {
            out[pos++] = ' ';
        }
        memcpy(out + pos, b, l);
        pos += l;
    }
    out[pos] = '\0';
    return out;
}

graft_status graft_tokenizer_encode_sample(graft_tokenizer *t, const char *text, size_t len,
                                           int seq_len, int32_t **ids, size_t *n, size_t *cap,
                                           int *truncated) {
    if (!t || !ids || !n || !cap || !truncated || seq_len < 1) return GRAFT_ERR_INVALID_ARG;
    *n = 0;
    int cls = graft_tokenizer_special(t, GRAFT_TOKEN_CLS);
    int sep = graft_tokenizer_special(t, GRAFT_TOKEN_SEP);
    if (cls < 0 || sep < 0) { /* no markers: the first seq_len ids */
        GRAFT_TRY(graft_tokenizer_encode(t, text, len, ids, n, cap));
        *truncated = *n > (size_t)seq_len;
        if (*truncated) *n = (size_t)seq_len;
        return GRAFT_OK;
    }
    if (seq_len < 2) {
        GRAFT_ERROR("a sequence of %d token(s) cannot hold [CLS] and [SEP]", seq_len);
        return GRAFT_ERR_INVALID_ARG;
    }
    GRAFT_TRY(reserve_ids(ids, n, cap, 1));
    (*ids)[(*n)++] = cls;
    GRAFT_TRY(graft_tokenizer_encode(t, text, len, ids, n, cap));
    /* truncation keeps the first seq_len - 2 pieces, then [SEP], as Hugging Face does */
    *truncated = *n + 1 > (size_t)seq_len;
    if (*truncated) *n = (size_t)seq_len - 1;
    GRAFT_TRY(reserve_ids(ids, n, cap, 1));
    (*ids)[(*n)++] = sep;
    return GRAFT_OK;
}
