/* BERT's WordPiece tokenizer, following Hugging Face's BertTokenizer (uncased) step by
 * step:
 *   1. the text is split around the special tokens written in it ("[CLS]", "[SEP]",
 *      "[PAD]", "[UNK]", "[MASK]" become their ids, as PreTrainedTokenizer.tokenize does);
 *   2. BasicTokenizer on the rest: NUL, U+FFFD and control characters (Cc, Cf) are
 *      dropped, white space separates words, CJK ideographs are words of their own,
 *      each character is lower-cased and decomposed (NFD) with its Mn marks dropped,
 *      and punctuation (BERT's ASCII ranges and every P* category) is a word of its own;
 *   3. WordPiece on each word: longer than 100 characters is [UNK]; otherwise greedy
 *      longest match from the left, pieces after the first spelled "##x"; a word with
 *      a part no piece matches is one [UNK].
 * The Unicode data of step 2 is tokenizer_wordpiece_unicode_internal.h, generated from
 * Python's unicodedata (what BasicTokenizer uses) by tools/gen_wordpiece_unicode.py.
 * Known limits (outside ordinary text): lower() is applied per character, so a final
 * capital sigma becomes σ where Python's str.lower() writes ς; NFD's canonical
 * reordering of the marks that are kept (not Mn) is not done. */
#include "tokenizer_wordpiece_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "tokenizer_wordpiece_unicode_internal.h"

#define WP_MAX_WORD_CHARS 100
#define WP_MAX_VOCAB (1 << 24)
#define WP_MAX_FILE_BYTES ((size_t)256 << 20)

/* A hash slot: token `id` whose text is blob[off, off + len); id -1 = empty. */
typedef struct {
    int32_t id;
    uint32_t len;
    size_t off;
} wp_slot;

struct graft_wordpiece {
    int vocab_size;
    char *blob;        /* every token's vocab.txt spelling, back to back */
    size_t *token_off; /* vocab_size + 1 offsets into blob */
    /* word-start pieces by their text, continuation pieces by their text after "##" */
    wp_slot *starts, *conts;
    size_t mask; /* both tables have mask + 1 slots */
    int unk;
    int special_ids[5];
};

static const char *const wp_special_names[5] = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"};

/* ---- the vocabulary ------------------------------------------------------------------- */

static int is_continuation(const char *s, size_t len) {
    return len > 2 && s[0] == '#' && s[1] == '#';
}

static wp_slot *find_slot(wp_slot *table, size_t mask, const char *blob, const char *key,
                          size_t len) {
    for (size_t i = (size_t)XXH3_64bits(key, len) & mask;; i = (i + 1) & mask) {
        wp_slot *s = &table[i];
        if (s->id < 0 || (s->len == len && memcmp(blob + s->off, key, len) == 0)) return s;
    }
}

static int lookup(const graft_wordpiece *w, int continuation, const char *key, size_t len) {
    const wp_slot *s = find_slot(continuation ? w->conts : w->starts, w->mask, w->blob, key, len);
    return s->id;
}

int graft_wordpiece_id(const graft_wordpiece *w, const char *token) {
    size_t len = strlen(token);
    if (is_continuation(token, len)) return lookup(w, 1, token + 2, len - 2);
    return lookup(w, 0, token, len);
}

/* Index the tokens in blob/token_off (a later duplicate wins, as in load_vocab) and
 * find the special tokens; errors name path. */
static graft_status build_index(graft_wordpiece *w, const char *path) {
    size_t slots = 16;
    while (slots < 2 * (size_t)w->vocab_size)
        slots *= 2;
    w->mask = slots - 1;
    w->starts = malloc(slots * sizeof *w->starts);
    w->conts = malloc(slots * sizeof *w->conts);
    if (!w->starts || !w->conts) return GRAFT_ERR_NOMEM;
    for (size_t i = 0; i < slots; i++)
        w->starts[i].id = w->conts[i].id = -1;
    for (int id = 0; id < w->vocab_size; id++) {
        size_t off = w->token_off[id], len = w->token_off[id + 1] - off;
        int cont = is_continuation(w->blob + off, len);
        if (cont) off += 2, len -= 2;
        wp_slot *s = find_slot(cont ? w->conts : w->starts, w->mask, w->blob, w->blob + off, len);
        *s = (wp_slot){id, (uint32_t)len, off};
    }
    for (int k = 0; k < 5; k++)
        w->special_ids[k] = graft_wordpiece_id(w, wp_special_names[k]);
    w->unk = w->special_ids[3];
    for (int k = 0; k < 4; k++)
        if (w->special_ids[k] < 0) {
            GRAFT_ERROR("%s: the vocabulary has no %s token", path, wp_special_names[k]);
            return GRAFT_ERR_FORMAT;
        }
    return GRAFT_OK;
}

static graft_wordpiece *alloc_vocab(size_t n_tokens, size_t blob_bytes) {
    graft_wordpiece *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->blob = malloc(blob_bytes ? blob_bytes : 1);
    w->token_off = malloc((n_tokens + 1) * sizeof *w->token_off);
    if (!w->blob || !w->token_off) {
        graft_wordpiece_free(w);
        return NULL;
    }
    w->token_off[0] = 0;
    return w;
}

static graft_status finish_load(graft_wordpiece *w, const char *path, graft_wordpiece **out) {
    graft_status st = build_index(w, path);
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory indexing the vocabulary", path);
    if (st != GRAFT_OK) {
        graft_wordpiece_free(w);
        return st;
    }
    *out = w;
    return GRAFT_OK;
}

graft_status graft_wordpiece_load_txt(graft_wordpiece **out, const char *path) {
    *out = NULL;
    char *text;
    size_t len;
    GRAFT_TRY(graft_fs_read(path, WP_MAX_FILE_BYTES, &text, &len, GRAFT_LOG_ERROR));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (len > 0 && text[len - 1] != '\n') lines++;
    if (lines == 0 || lines > WP_MAX_VOCAB) {
        GRAFT_ERROR("%s: expected 1 to %d tokens, one per line; found %zu", path, WP_MAX_VOCAB,
                    lines);
        free(text);
        return GRAFT_ERR_FORMAT;
    }
    graft_wordpiece *w = alloc_vocab(lines, len);
    if (!w) {
        free(text);
        GRAFT_ERROR("%s: out of memory for the vocabulary", path);
        return GRAFT_ERR_NOMEM;
    }
    size_t pos = 0, line = 0;
    while (pos < len) {
        const char *eol = memchr(text + pos, '\n', len - pos);
        size_t end = eol ? (size_t)(eol - text) : len, tok_len = end - pos;
        if (tok_len > 0 && text[end - 1] == '\r') tok_len--;
        /* load_vocab strips each line: surrounding white space is not part of a token */
        while (tok_len > 0 && (text[pos] == ' ' || text[pos] == '\t'))
            pos++, tok_len--;
        while (tok_len > 0 && (text[pos + tok_len - 1] == ' ' || text[pos + tok_len - 1] == '\t'))
            tok_len--;
        memcpy(w->blob + w->token_off[line], text + pos, tok_len);
        w->token_off[line + 1] = w->token_off[line] + tok_len;
        line++;
        pos = end + 1;
    }
    w->vocab_size = (int)line;
    free(text);
    return finish_load(w, path, out);
}

/* "▁" (U+2581) in UTF-8: the npm vocabulary's word-start mark. */
static const char wp_word_start[] = "\xE2\x96\x81";

graft_status graft_wordpiece_load_npm_json(graft_wordpiece **out, const char *path) {
    *out = NULL;
    char *text;
    size_t len;
    GRAFT_TRY(graft_fs_read(path, WP_MAX_FILE_BYTES, &text, &len, GRAFT_LOG_ERROR));
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root) {
        GRAFT_ERROR("%s:%d: cannot parse: %s", path, jerr.line, jerr.text);
        return GRAFT_ERR_FORMAT;
    }
    size_t n = json_is_array(root) ? json_array_size(root) : 0, bytes = 0;
    graft_status st = GRAFT_OK;
    for (size_t i = 0; st == GRAFT_OK && i < n; i++) {
        const json_t *v = json_array_get(root, i);
        if (!json_is_string(v)) {
            GRAFT_ERROR("%s: entry %zu is not a string", path, i);
            st = GRAFT_ERR_FORMAT;
        }
        bytes += json_string_length(v) + sizeof "[unused0]";
    }
    if (st == GRAFT_OK && (n == 0 || n > WP_MAX_VOCAB)) {
        GRAFT_ERROR("%s: expected a JSON array of 1 to %d token strings", path, WP_MAX_VOCAB);
        st = GRAFT_ERR_FORMAT;
    }
    graft_wordpiece *w = st == GRAFT_OK ? alloc_vocab(n, bytes) : NULL;
    if (st == GRAFT_OK && !w) {
        GRAFT_ERROR("%s: out of memory for the vocabulary", path);
        st = GRAFT_ERR_NOMEM;
    }
    for (size_t i = 0; st == GRAFT_OK && i < n; i++) {
        const json_t *v = json_array_get(root, i);
        const char *s = json_string_value(v);
        size_t l = json_string_length(v), mark = sizeof wp_word_start - 1;
        char *dst = w->blob + w->token_off[i];
        size_t out_len;
        if (l == mark && memcmp(s, wp_word_start, mark) == 0) {
            out_len = sizeof "[unused0]" - 1;
            memcpy(dst, "[unused0]", out_len);
        } else if (l > mark && memcmp(s, wp_word_start, mark) == 0) {
            out_len = l - mark;
            memcpy(dst, s + mark, out_len);
        } else if (l >= 3 && s[0] == '[' && s[l - 1] == ']') {
            out_len = l;
            memcpy(dst, s, l);
        } else {
            out_len = l + 2;
            dst[0] = dst[1] = '#';
            memcpy(dst + 2, s, l);
        }
        w->token_off[i + 1] = w->token_off[i] + out_len;
    }
    json_decref(root);
    if (st != GRAFT_OK) {
        graft_wordpiece_free(w);
        return st;
    }
    w->vocab_size = (int)n;
    GRAFT_TRY(finish_load(w, path, out));
    static const int expected[5] = {101, 102, 0, 100, 103};
    for (int k = 0; k < 5; k++)
        if ((*out)->special_ids[k] != expected[k]) {
            GRAFT_ERROR("%s: %s has id %d, not bert-base-uncased's %d: not that vocabulary", path,
                        wp_special_names[k], (*out)->special_ids[k], expected[k]);
            graft_wordpiece_free(*out);
            *out = NULL;
            return GRAFT_ERR_FORMAT;
        }
    return GRAFT_OK;
}

void graft_wordpiece_free(graft_wordpiece *w) {
    if (!w) return;
    free(w->blob);
    free(w->token_off);
    free(w->starts);
    free(w->conts);
    free(w);
}

int graft_wordpiece_vocab_size(const graft_wordpiece *w) { return w->vocab_size; }

const unsigned char *graft_wordpiece_token(const graft_wordpiece *w, int32_t id, size_t *len) {
    if (id < 0 || id >= w->vocab_size) {
        *len = 0;
        return NULL;
    }
    *len = w->token_off[id + 1] - w->token_off[id];
    return (const unsigned char *)w->blob + w->token_off[id];
}

/* ---- Unicode -------------------------------------------------------------------------- */

static int in_ranges(const wp_cp_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp > r[mid].hi)
            lo = mid + 1;
        else if (cp < r[mid].lo)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

#define IN_TABLE(table, cp) in_ranges((table), sizeof(table) / sizeof((table)[0]), (cp))

/* BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks. */
static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Decode one UTF-8 character at s[*i] (advancing *i); a byte that does not start a
 * valid, shortest-form character is one U+FFFD, as Python's errors="replace" sees it. */
static uint32_t next_cp(const unsigned char *s, size_t len, size_t *i) {
    unsigned char b = s[*i];
    size_t need;
    uint32_t cp, min;
    if (b < 0x80) {
        (*i)++;
        return b;
    } else if ((b & 0xE0) == 0xC0) {
        need = 1, cp = b & 0x1Fu, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        need = 2, cp = b & 0x0Fu, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        need = 3, cp = b & 0x07u, min = 0x10000;
    } else {
        (*i)++;
        return 0xFFFD;
    }
    if (*i + need >= len) { /* truncated */
        (*i)++;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= need; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) {
            (*i)++;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[*i + k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        (*i)++;
        return 0xFFFD;
    }
    *i += need + 1;
    return cp;
}

static size_t put_utf8(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* lower() + NFD + dropping Mn of one character: its code points in out[0..3]; returns
 * how many (0 for a mark). */
static int fold(uint32_t cp, uint32_t out[4]) {
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: its jamo (Unicode ch. 3.12) */
        uint32_t s = cp - 0xAC00, t = s % 28;
        out[0] = 0x1100 + s / (21 * 28);
        out[1] = 0x1161 + (s % (21 * 28)) / 28;
        if (t == 0) return 2;
        out[2] = 0x11A7 + t;
        return 3;
    }
    if (IN_TABLE(wp_mark_ranges, cp)) return 0;
    size_t lo = 0, hi = sizeof wp_fold_table / sizeof wp_fold_table[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (wp_fold_table[mid].cp < cp) {
            lo = mid + 1;
        } else if (wp_fold_table[mid].cp > cp) {
            hi = mid;
        } else {
            int n = wp_fold_table[mid].len < 4 ? wp_fold_table[mid].len : 4;
            for (int k = 0; k < n; k++)
                out[k] = wp_fold_pool[wp_fold_table[mid].off + k];
            return n;
        }
    }
    out[0] = cp;
    return 1;
}

/* ---- encoding ------------------------------------------------------------------------- */

typedef struct {
    const graft_wordpiece *w;
    int32_t **ids;
    size_t *n, *cap;
    char word[WP_MAX_WORD_CHARS * 4 + 16]; /* the word being built, UTF-8 */
    size_t word_len, word_chars;           /* word_chars may exceed the buffer's room */
} wp_encoder;

static graft_status push_ids(wp_encoder *e, const int32_t *src, size_t count) {
    if (*e->n + count > *e->cap) {
        size_t c = *e->cap ? *e->cap : 256;
        while (c < *e->n + count)
            c *= 2;
        int32_t *p = realloc(*e->ids, c * sizeof(int32_t));
        if (!p) {
            GRAFT_ERROR("out of memory for %zu token ids", c);
            return GRAFT_ERR_NOMEM;
        }
        *e->ids = p;
        *e->cap = c;
    }
    memcpy(*e->ids + *e->n, src, count * sizeof(int32_t));
    *e->n += count;
    return GRAFT_OK;
}

/* WordPiece of the word built so far; empties it. */
static graft_status flush_word(wp_encoder *e) {
    if (e->word_chars == 0) return GRAFT_OK;
    const graft_wordpiece *w = e->w;
    size_t len = e->word_len, chars = e->word_chars;
    e->word_len = e->word_chars = 0;
    int32_t unk = w->unk;
    if (chars > WP_MAX_WORD_CHARS) return push_ids(e, &unk, 1);
    int32_t pieces[WP_MAX_WORD_CHARS];
    size_t n_pieces = 0, start = 0;
    while (start < len) {
        size_t end = len;
        int id = -1;
        while (end > start) {
            id = lookup(w, start > 0, e->word + start, end - start);
            if (id >= 0) break;
            do /* back to the previous character boundary */
                end--;
            while (end > start && ((unsigned char)e->word[end] & 0xC0) == 0x80);
        }
        if (id < 0) return push_ids(e, &unk, 1);
        pieces[n_pieces++] = id;
        start = end;
    }
    return push_ids(e, pieces, n_pieces);
}

/* Add one (folded) character to the current word. */
static void append_char(wp_encoder *e, uint32_t cp) {
    e->word_chars++;
    if (e->word_chars <= WP_MAX_WORD_CHARS) e->word_len += put_utf8(e->word + e->word_len, cp);
}

/* A character that is a word on its own (punctuation, CJK). */
static graft_status lone_char(wp_encoder *e, uint32_t cp) {
    GRAFT_TRY(flush_word(e));
    append_char(e, cp);
    return flush_word(e);
}

static graft_status basic_encode(wp_encoder *e, const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint32_t cp = next_cp(s, len, &i);
        if (cp == '\t' || cp == '\n' || cp == '\r' || IN_TABLE(wp_space_ranges, cp)) {
            GRAFT_TRY(flush_word(e));
        } else if (cp == 0 || cp == 0xFFFD || IN_TABLE(wp_control_ranges, cp)) {
            continue; /* _clean_text drops them without separating words */
        } else if (is_cjk(cp)) {
            GRAFT_TRY(lone_char(e, cp));
        } else {
            uint32_t f[4];
            int nf = fold(cp, f);
            for (int k = 0; k < nf; k++) {
                if (IN_TABLE(wp_punct_ranges, f[k]))
                    GRAFT_TRY(lone_char(e, f[k]));
                else
                    append_char(e, f[k]);
            }
        }
    }
    return flush_word(e);
}

/* The next special token written in s[from, len): its start (len if none) and kind. */
static size_t next_special(const char *s, size_t len, size_t from, int *kind) {
    for (size_t i = from; i < len; i++) {
        if (s[i] != '[') continue;
        for (int k = 0; k < 5; k++) {
            size_t l = strlen(wp_special_names[k]);
            if (l <= len - i && memcmp(s + i, wp_special_names[k], l) == 0) {
                *kind = k;
                return i;
            }
        }
    }
    return len;
}

graft_status graft_wordpiece_encode(const graft_wordpiece *w, const char *text, size_t len,
                                    int32_t **ids, size_t *n, size_t *cap) {
    if (!w || !ids || !n || !cap || (!text && len > 0)) return GRAFT_ERR_INVALID_ARG;
    wp_encoder e = {.w = w, .ids = ids, .n = n, .cap = cap};
    size_t pos = 0;
    while (pos < len) {
        int kind = -1;
        size_t at = next_special(text, len, pos, &kind);
        GRAFT_TRY(basic_encode(&e, (const unsigned char *)text + pos, at - pos));
        if (at == len) break;
        /* [MASK] missing from a vocabulary is [UNK], as convert_tokens_to_ids has it */
        int32_t id = w->special_ids[kind] >= 0 ? w->special_ids[kind] : w->unk;
        GRAFT_TRY(push_ids(&e, &id, 1));
        pos = at + strlen(wp_special_names[kind]);
    }
    return GRAFT_OK;
}
