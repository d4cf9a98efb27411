/* JSON Lines and CSV (RFC 4180) readers for labelled text (text_records.h). */
#include "text_records.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

#define RECORDS_MAX_FILE_BYTES ((size_t)4 << 30)
/* Malformed records listed one by one before the rest are only counted. */
#define RECORDS_MAX_LISTED 20

static char *copy_bytes(const char *s, size_t len) {
    char *p = malloc(len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static graft_status add_record(graft_text_records *r, const char *text, size_t text_len,
                               const char *label, size_t label_len, size_t line) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        graft_text_record *p = realloc(r->items, cap * sizeof *p);
        if (!p) return GRAFT_ERR_NOMEM;
        r->items = p;
        r->cap = cap;
    }
    graft_text_record *rec = &r->items[r->n];
    rec->text = copy_bytes(text, text_len);
    rec->label = label ? copy_bytes(label, label_len) : NULL;
    rec->text_len = text_len;
    rec->line = line;
    if (!rec->text || (label && !rec->label)) {
        free(rec->text);
        free(rec->label);
        return GRAFT_ERR_NOMEM;
    }
    r->n++;
    return GRAFT_OK;
}

/* A malformed record: the error with strict, else a warning (the first few) and a count. */
static graft_status malformed(graft_text_records *r, int strict, const char *path, size_t line,
                              const char *what) {
    if (strict) {
        GRAFT_ERROR("%s:%zu: %s (--strict)", path, line, what);
        return GRAFT_ERR_FORMAT;
    }
    if (r->skipped < RECORDS_MAX_LISTED) GRAFT_WARN("%s:%zu: %s: skipped", path, line, what);
    r->skipped++;
    return GRAFT_OK;
}

/* ---- JSON Lines ----------------------------------------------------------------------- */

static graft_status jsonl_record(graft_text_records *r, const char *path, size_t line_no,
                                 const char *line, size_t len, const char *text_field,
                                 const char *label_field, int strict) {
    json_error_t err;
    json_t *obj = json_loadb(line, len, 0, &err);
    char what[256];
    graft_status st = GRAFT_OK;
    if (!obj || !json_is_object(obj)) {
        snprintf(what, sizeof what, "not a JSON object%s%s", obj ? "" : ": ", obj ? "" : err.text);
        json_decref(obj);
        return malformed(r, strict, path, line_no, what);
    }
    const json_t *text = json_object_get(obj, text_field),
                 *label = label_field ? json_object_get(obj, label_field) : NULL;
    char number[32];
    const char *label_text = NULL;
    size_t label_len = 0;
    if (json_is_string(label)) {
        label_text = json_string_value(label);
        label_len = json_string_length(label);
    } else if (json_is_integer(label)) {
        snprintf(number, sizeof number, "%lld", (long long)json_integer_value(label));
        label_text = number;
        label_len = strlen(number);
    }
    if (!text || (label_field && !label)) {
        snprintf(what, sizeof what, "no \"%.100s\" field", !text ? text_field : label_field);
        st = malformed(r, strict, path, line_no, what);
    } else if (!json_is_string(text)) {
        snprintf(what, sizeof what, "\"%.100s\" is not a string", text_field);
        st = malformed(r, strict, path, line_no, what);
    } else if (label_field && !label_text) {
        snprintf(what, sizeof what, "\"%.100s\" is not a string or an integer", label_field);
        st = malformed(r, strict, path, line_no, what);
    } else if (label_field && label_len == 0) {
        st = malformed(r, strict, path, line_no, "the label is empty");
    } else {
        st = add_record(r, json_string_value(text), json_string_length(text), label_text,
                        label_len, line_no);
    }
    json_decref(obj);
    return st;
}

static graft_status read_jsonl(graft_text_records *r, const char *path, const char *data,
                               size_t len, const char *text_field, const char *label_field,
                               int strict) {
    size_t pos = 0, line_no = 0;
    while (pos < len) {
        line_no++;
        const char *eol = memchr(data + pos, '\n', len - pos);
        size_t end = eol ? (size_t)(eol - data) : len, start = pos;
        pos = end + 1;
        while (start < end && (data[start] == ' ' || data[start] == '\t' || data[start] == '\r'))
            start++;
        if (start == end) continue;
        GRAFT_TRY(jsonl_record(r, path, line_no, data + start, end - start, text_field,
                               label_field, strict));
    }
    return GRAFT_OK;
}

/* ---- CSV ------------------------------------------------------------------------------ */

typedef struct {
    char *buf; /* the fields of one row, each NUL-terminated, back to back */
    size_t len, cap;
    size_t *off; /* field starts in buf */
    size_t *flen;
    size_t n, fcap;
} csv_row;

static int row_put(csv_row *row, char c) {
    if (row->len == row->cap) {
        size_t cap = row->cap ? 2 * row->cap : 256;
        char *p = realloc(row->buf, cap);
        if (!p) return -1;
        row->buf = p;
        row->cap = cap;
    }
    row->buf[row->len++] = c;
    return 0;
}

static int row_start_field(csv_row *row) {
    if (row->n == row->fcap) {
        size_t cap = row->fcap ? 2 * row->fcap : 16;
        size_t *o = realloc(row->off, cap * sizeof *o);
        if (!o) return -1;
        row->off = o;
        size_t *l = realloc(row->flen, cap * sizeof *l);
        if (!l) return -1;
        row->flen = l;
        row->fcap = cap;
    }
    row->off[row->n++] = row->len;
    return 0;
}

static int row_end_field(csv_row *row) {
    row->flen[row->n - 1] = row->len - row->off[row->n - 1];
    return row_put(row, '\0');
}

/* Parse one row at data[*pos] into row (advancing *pos past its line end and *line by
 * the newlines it spans). Returns 0, -1 out of memory, or 1 malformed with *why set
 * (the rest of the row is skipped). */
static int csv_row_parse(const char *data, size_t len, size_t *pos, size_t *line, csv_row *row,
                         const char **why) {
    row->len = row->n = 0;
    size_t i = *pos;
    int bad = 0;
    if (row_start_field(row)) return -1;
    for (;;) {
        if (i < len && data[i] == '"') { /* quoted field */
            i++;
            for (;;) {
                if (i >= len) {
                    *why = "a quoted field is not closed before the end of the file";
                    *pos = len;
                    return 1;
                }
                if (data[i] == '"') {
                    if (i + 1 < len && data[i + 1] == '"') {
                        if (row_put(row, '"')) return -1;
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (data[i] == '\n') (*line)++;
                if (row_put(row, data[i++])) return -1;
            }
            if (i < len && data[i] != ',' && data[i] != '\n' &&
                !(data[i] == '\r' && (i + 1 == len || data[i + 1] == '\n'))) {
                *why = "characters after a closing quote (quote the whole field)";
                bad = 1;
            }
        }
        while (i < len && data[i] != ',' && data[i] != '\n') {
            if (data[i] == '\r' && (i + 1 == len || data[i + 1] == '\n')) {
                i++;
                continue;
            }
            if (row_put(row, data[i++])) return -1;
        }
        if (row_end_field(row)) return -1;
        if (i < len && data[i] == ',') {
            i++;
            if (row_start_field(row)) return -1;
            continue;
        }
        break;
    }
    if (i < len) { /* the newline */
        i++;
        (*line)++;
    }
    *pos = i;
    return bad;
}

static graft_status read_csv(graft_text_records *r, const char *path, const char *data,
                             size_t len, const char *text_field, const char *label_field,
                             int strict) {
    csv_row row = {0};
    graft_status st = GRAFT_OK;
    size_t pos = 0, line = 1;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) pos = 3;
    const char *why = NULL;
    long text_col = -1, label_col = -1;
    size_t n_cols = 0;
    int rc = pos < len ? csv_row_parse(data, len, &pos, &line, &row, &why) : 1;
    if (rc < 0) st = GRAFT_ERR_NOMEM;
    if (rc > 0) {
        GRAFT_ERROR("%s:1: %s", path, why ? why : "no header row naming the fields");
        st = GRAFT_ERR_FORMAT;
    }
    for (size_t c = 0; st == GRAFT_OK && c < row.n; c++) {
        if (strcmp(row.buf + row.off[c], text_field) == 0 && text_col < 0) text_col = (long)c;
        if (label_field && strcmp(row.buf + row.off[c], label_field) == 0 && label_col < 0)
            label_col = (long)c;
    }
    n_cols = row.n;
    if (st == GRAFT_OK && (text_col < 0 || (label_field && label_col < 0))) {
        GRAFT_ERROR("%s:1: the header row has no field \"%s\"", path,
                    text_col < 0 ? text_field : label_field);
        st = GRAFT_ERR_FORMAT;
    }
    while (st == GRAFT_OK && pos < len) {
        size_t first = line;
        rc = csv_row_parse(data, len, &pos, &line, &row, &why);
        if (rc < 0) {
            st = GRAFT_ERR_NOMEM;
        } else if (rc > 0) {
            st = malformed(r, strict, path, first, why);
        } else if (row.n == 1 && row.flen[0] == 0) {
            continue; /* a blank line */
        } else if (row.n != n_cols) {
            char what[96];
            snprintf(what, sizeof what, "%zu fields where the header has %zu", row.n, n_cols);
            st = malformed(r, strict, path, first, what);
        } else if (label_col >= 0 && row.flen[label_col] == 0) {
            st = malformed(r, strict, path, first, "the label is empty");
        } else {
            st = add_record(r, row.buf + row.off[text_col], row.flen[text_col],
                            label_col >= 0 ? row.buf + row.off[label_col] : NULL,
                            label_col >= 0 ? row.flen[label_col] : 0, first);
        }
    }
    free(row.buf);
    free(row.off);
    free(row.flen);
    return st;
}

graft_status graft_text_records_read(graft_text_records *out, const char *path,
                                     graft_records_format format, const char *text_field,
                                     const char *label_field, int strict) {
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    GRAFT_TRY(graft_fs_read(path, RECORDS_MAX_FILE_BYTES, &data, &len, GRAFT_LOG_ERROR));
    graft_status st = format == GRAFT_RECORDS_CSV
                          ? read_csv(out, path, data, len, text_field, label_field, strict)
                          : read_jsonl(out, path, data, len, text_field, label_field, strict);
    free(data);
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory reading the records", path);
    if (st == GRAFT_OK && out->skipped > RECORDS_MAX_LISTED)
        GRAFT_WARN("%s: %zu more malformed records skipped", path,
                   out->skipped - RECORDS_MAX_LISTED);
    return st;
}

void graft_text_records_free(graft_text_records *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].text);
        free(r->items[i].label);
    }
    free(r->items);
    memset(r, 0, sizeof *r);
}
