/* Table-driven output: the resolved config as YAML (--print-config), the cross-rank
 * digest over the same canonical text, and the README's Markdown key reference. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "config_internal.h"
#include "runtime/core/escape.h"

/* ---- text buffer --------------------------------------------------------------------- */

/* Append n bytes, growing the buffer; remembers a failed allocation. */
void cfg_buf_put(cfg_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *text = realloc(b->text, cap);
        if (!text) {
            b->oom = 1;
            return;
        }
        b->text = text;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';
}

/* Append formatted text. */
void cfg_buf_printf(cfg_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        cfg_buf_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cfg_buf_put(b, big, (size_t)n);
    free(big);
}

/* Release the text. */
void cfg_buf_free(cfg_buf *b) {
    free(b->text);
    memset(b, 0, sizeof *b);
}

/* ---- values ---------------------------------------------------------------------------- */

void cfg_double_text(double x, char *out, size_t size) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, x);
        if (strtod(out, NULL) == x) break;
    }
    /* Fixed notation when %g chose an exponent for a moderate number (300, not 3e+02). */
    double ax = x < 0 ? -x : x;
    if (strchr(out, 'e') && ax >= 1e-4 && ax < 1e15) {
        char fixed[64];
        for (int decimals = 0; decimals <= 17; decimals++) {
            snprintf(fixed, sizeof fixed, "%.*f", decimals, x);
            if (strtod(fixed, NULL) == x) break;
        }
        if (strlen(fixed) < size) memcpy(out, fixed, strlen(fixed) + 1);
    }
    /* Always a '.' ("1.0", "1.0e-08"), so other YAML readers see a float too. */
    if (!strchr(out, '.') && !strpbrk(out, "ni")) {
        char *e = strpbrk(out, "eE");
        size_t len = strlen(out);
        if (len + 3 <= size) {
            size_t at = e ? (size_t)(e - out) : len;
            memmove(out + at + 2, out + at, len - at + 1);
            out[at] = '.';
            out[at + 1] = '0';
        }
    }
}

/* Strings that can stay unquoted in block and flow YAML and read back as the same
 * string: [A-Za-z0-9._/-]+, not starting with '-', and not a YAML null or bool word. */
static int plain_safe(const char *s) {
    static const char *const words[] = {"null",  "Null",  "NULL", "true", "True", "TRUE", "false",
                                        "False", "FALSE", "yes",  "no",   "on",   "off"};
    if (!s[0] || s[0] == '-') return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '/' || c == '-'))
            return 0;
    }
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(s, words[i])) return 0;
    return 1;
}

/* A string as a YAML scalar: plain when safe, else double-quoted with escapes. */
static void put_string(cfg_buf *b, const char *s) {
    if (!s) {
        cfg_buf_put(b, "null", 4);
        return;
    }
    if (plain_safe(s)) {
        cfg_buf_put(b, s, strlen(s));
        return;
    }
    cfg_buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            cfg_buf_put(b, esc, 2);
        } else if (*p == '\n') {
            cfg_buf_put(b, "\\n", 2);
        } else if (*p == '\t') {
            cfg_buf_put(b, "\\t", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            cfg_buf_printf(b, "\\x%02x", *p);
        } else if (*p < 0x80) {
            cfg_buf_put(b, (const char *)p, 1);
        } else if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF)) {
            /* U+FFFE and U+FFFF: YAML refuses them as they are */
            cfg_buf_printf(b, "\\u%s", p[2] == 0xBE ? "fffe" : "ffff");
            p += 2;
        } else { /* UTF-8 as it is; C1 and bidi controls as \u, stray bytes as \x */
            char piece[8];
            int len = graft_escape_char((const char *)p, piece);
            cfg_buf_put(b, piece, strlen(piece));
            p += len - 1;
        }
    }
    cfg_buf_put(b, "\"", 1);
}

/* A double in its shortest exact form. */
static void put_double(cfg_buf *b, double x) {
    char text[40];
    cfg_double_text(x, text, sizeof text);
    cfg_buf_put(b, text, strlen(text));
}

/* One key's value in flow YAML; list-of-mapping entries recurse into their fields. */
void cfg_value_text(const key_spec *k, const void *base, cfg_buf *b) {
    const char *field = (const char *)base + k->offset;
    switch (k->type) {
    case KEY_INT:
        cfg_buf_printf(b, "%d", *(const int *)field);
        break;
    case KEY_LONG:
        cfg_buf_printf(b, "%ld", *(const long *)field);
        break;
    case KEY_DOUBLE: {
        double x = *(const double *)field;
        /* null: not given (nullable keys) or still missing (required keys) */
        if (((k->flags & KEY_NULLABLE) && x < 0) || ((k->flags & KEY_REQUIRED) && x == 0))
            cfg_buf_put(b, "null", 4);
        else
            put_double(b, x);
        break;
    }
    case KEY_BOOL:
        cfg_buf_printf(b, "%s", *(const int *)field ? "true" : "false");
        break;
    case KEY_STRING:
    case KEY_ENUM:
        put_string(b, *(char *const *)field);
        break;
    case KEY_STRLIST: {
        const graft_strlist *l = (const graft_strlist *)field;
        cfg_buf_put(b, "[", 1);
        for (int i = 0; i < l->count; i++) {
            if (i) cfg_buf_put(b, ", ", 2);
            put_string(b, l->items[i]);
        }
        cfg_buf_put(b, "]", 1);
        break;
    }
    case KEY_INTLIST: {
        int n = *(const int *)((const char *)base + k->aux_offset);
        cfg_buf_put(b, "[", 1);
        for (int i = 0; i < n; i++)
            cfg_buf_printf(b, i ? ", %d" : "%d", ((const int *)field)[i]);
        cfg_buf_put(b, "]", 1);
        break;
    }
    case KEY_DOUBLE_PAIR:
        cfg_buf_put(b, "[", 1);
        put_double(b, *(const double *)field);
        cfg_buf_put(b, ", ", 2);
        put_double(b, *(const double *)((const char *)base + k->aux_offset));
        cfg_buf_put(b, "]", 1);
        break;
    case KEY_ENVMAP: {
        const graft_strlist *l = (const graft_strlist *)field;
        cfg_buf_put(b, "{", 1);
        for (int i = 0; i < l->count; i++) {
            const char *item = l->items[i], *eq = strchr(item, '=');
            size_t name_len = eq ? (size_t)(eq - item) : strlen(item);
            if (i) cfg_buf_put(b, ", ", 2);
            cfg_buf_put(b, item, name_len);
            cfg_buf_put(b, ": ", 2);
            put_string(b, eq ? eq + 1 : "");
        }
        cfg_buf_put(b, "}", 1);
        break;
    }
    case KEY_MAPLIST: {
        const char *items = *(char *const *)field;
        int n = *(const int *)((const char *)base + k->aux_offset);
        cfg_buf_put(b, "[", 1);
        for (int i = 0; i < n; i++) {
            cfg_buf_put(b, i ? ", {" : "{", i ? 3 : 1);
            for (int f = 0; f < k->n_fields; f++) {
                if (f) cfg_buf_put(b, ", ", 2);
                cfg_buf_printf(b, "%s: ", k->fields[f].key);
                cfg_value_text(&k->fields[f], items + (size_t)i * k->elem_size, b);
            }
            cfg_buf_put(b, "}", 1);
        }
        cfg_buf_put(b, "]", 1);
        break;
    }
    }
}

/* ---- print ----------------------------------------------------------------------------- */

/* Split the section part of a dotted key ("data.augment" of "data.augment.hflip") into
 * its components; returns how many (at most max). */
static int section_parts(const char *key, const char **part, size_t *part_len, int max) {
    int n = 0;
    const char *p = key;
    for (const char *dot = strchr(p, '.'); dot && n < max; dot = strchr(p, '.')) {
        part[n] = p;
        part_len[n++] = (size_t)(dot - p);
        p = dot + 1;
    }
    return n;
}

/* Build the whole text first, so a failure writes nothing half-way. */
graft_status graft_config_print(const graft_config *cfg, FILE *out) {
    graft_log_clear_last_error();
    cfg_buf b = {0};
    if (cfg->source && cfg->source[0] && !strpbrk(cfg->source, "\r\n"))
        cfg_buf_printf(&b, "# resolved config (from %s)\n", cfg->source);
    const char *prev[8];
    size_t prev_len[8];
    int n_prev = 0;
    for (int i = 0; i < cfg_n_keys; i++) {
        const char *key = cfg_keys[i].key;
        const char *part[8];
        size_t part_len[8];
        int n = section_parts(key, part, part_len, 8);
        /* Sections shared with the previous key stay open; open the others. */
        int common = 0;
        while (common < n && common < n_prev && part_len[common] == prev_len[common] &&
               !strncmp(part[common], prev[common], part_len[common]))
            common++;
        for (int j = common; j < n; j++)
            cfg_buf_printf(&b, "%*s%.*s:\n", 2 * j, "", (int)part_len[j], part[j]);
        const char *leaf = strrchr(key, '.');
        cfg_buf_printf(&b, "%*s%s: ", 2 * n, "", leaf ? leaf + 1 : key);
        cfg_value_text(&cfg_keys[i], cfg, &b);
        cfg_buf_put(&b, "\n", 1);
        memcpy(prev, part, sizeof part);
        memcpy(prev_len, part_len, sizeof part_len);
        n_prev = n;
    }
    graft_status s = GRAFT_OK;
    if (b.oom) {
        cfg_set_error(__func__, "out of memory");
        s = GRAFT_ERR_NOMEM;
    } else if (fwrite(b.text, 1, b.len, out) != b.len || fflush(out) != 0) {
        cfg_set_error(__func__, "cannot write the config");
        s = GRAFT_ERR_IO;
    }
    cfg_buf_free(&b);
    return s;
}

/* ---- digest ---------------------------------------------------------------------------- */

uint64_t graft_config_digest(const graft_config *cfg) {
    cfg_buf b = {0};
    for (int i = 0; i < cfg_n_keys; i++) {
        if (cfg_keys[i].flags & KEY_NO_DIGEST) continue;
        cfg_buf_printf(&b, "%s=", cfg_keys[i].key);
        cfg_value_text(&cfg_keys[i], cfg, &b);
        cfg_buf_put(&b, "\n", 1);
    }
    uint64_t digest = b.oom ? 0 : XXH64(b.text, b.len, 0);
    cfg_buf_free(&b);
    return digest;
}

/* ---- reference ------------------------------------------------------------------------- */

/* Type column: "int, >= 1", "one of: adamw, sgd", "list of strings", ... */
static void type_text(const key_spec *k, char *out, size_t size) {
    char range[96];
    cfg_range_text(k, range, sizeof range);
    int has_range = range[0] != '\0';
    switch (k->type) {
    case KEY_INT:
    case KEY_LONG:
        snprintf(out, size, "int%s%s", has_range ? ", " : "", range);
        break;
    case KEY_DOUBLE:
        snprintf(out, size, "float%s%s", has_range ? ", " : "", range);
        break;
    case KEY_BOOL:
        snprintf(out, size, "bool");
        break;
    case KEY_STRING:
        snprintf(out, size, "%s", (k->flags & KEY_DIRNAME) ? "name of [A-Za-z0-9._-]" : "string");
        break;
    case KEY_ENUM: {
        size_t j = (size_t)snprintf(out, size, "one of: ");
        cfg_enum_list(k, out + j, size - j);
        break;
    }
    case KEY_STRLIST:
        if (k->min_items > 0)
            snprintf(out, size, "list of strings, at least %d", k->min_items);
        else
            snprintf(out, size, "list of strings");
        break;
    case KEY_INTLIST:
        snprintf(out, size, "list of ints%s%s, at most %d", has_range ? ", each " : "", range,
                 k->max_items);
        break;
    case KEY_DOUBLE_PAIR:
        snprintf(out, size, "[float, float]%s%s", has_range ? ", each " : "", range);
        break;
    case KEY_ENVMAP:
        snprintf(out, size, "mapping NAME: value");
        break;
    case KEY_MAPLIST:
        if (k->max_items)
            snprintf(out, size, "list of mappings, at most %d", k->max_items);
        else
            snprintf(out, size, "list of mappings");
        break;
    }
}

/* A table cell: '|' escaped, newlines flattened. */
static void put_cell(FILE *out, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            fputs("\\|", out);
        else if (*p == '\n')
            fputc(' ', out);
        else
            fputc(*p, out);
    }
}

/* One "| `key` | type | default | meaning |" row. */
static void write_row(FILE *out, const char *name, const key_spec *k) {
    char type[160];
    type_text(k, type, sizeof type);
    fputs("| `", out);
    put_cell(out, name);
    fputs("` | ", out);
    put_cell(out, type);
    fputs(" | ", out);
    if (k->default_doc) {
        put_cell(out, k->default_doc);
    } else if (k->flags & KEY_REQUIRED) {
        fputs(k->flags & KEY_TRAINING ? "required to train" : "required", out);
    } else if (k->def) {
        fputc('`', out);
        put_cell(out, k->def);
        fputc('`', out);
    }
    fputs(" | ", out);
    put_cell(out, k->doc);
    fputs(" |\n", out);
}

/* Header, then every key in table order, list-entry fields after their list. */
void graft_config_write_reference(FILE *out) {
    fputs("| key | type | default | meaning |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (int i = 0; i < cfg_n_keys; i++) {
        const key_spec *k = &cfg_keys[i];
        write_row(out, k->key, k);
        for (int f = 0; f < k->n_fields; f++) {
            char name[160];
            snprintf(name, sizeof name, "%s[].%s", k->key, k->fields[f].key);
            write_row(out, name, &k->fields[f]);
        }
    }
}
