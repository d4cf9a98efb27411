#include "params_io.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"

/* How many names of one kind of problem are listed before "... and N more". */
#define LIST_MAX 20

graft_status graft_params_save_values(const graft_params *p, const float *values,
                                      int without_adapters, const char *path) {
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st = graft_st_writer_set_metadata(&w, "format", "pt");
    if (st == GRAFT_OK) st = graft_st_writer_set_metadata(&w, "graft_version", GRAFT_VERSION);
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        if (without_adapters && t->adapter) continue;
        st = graft_st_writer_add_f32(&w, t->name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                     values + t->offset);
    }
    for (int a = 0; a < p->n_aliases && st == GRAFT_OK; a++) {
        const graft_param *t = &p->items[p->aliases[a].target];
        st = graft_st_writer_add_f32(&w, p->aliases[a].name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                     values + t->offset);
    }
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    return st;
}

graft_status graft_params_save(const graft_params *p, const char *path) {
    return graft_params_save_values(p, p->values, 0, path);
}

int graft_param_shape_matches(const graft_param *t, const graft_st_tensor *s) {
    if (t->ndim != s->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != s->shape[d]) return 0;
    return 1;
}

static int under_prefix(const char *name, const char *prefix) {
    size_t n = prefix ? strlen(prefix) : 0;
    return n && strncmp(name, prefix, n) == 0 && (name[n] == '.' || name[n] == '\0');
}

/* One kind of problem, reported as ONE log line naming the first LIST_MAX tensors:
 * "FILE: 3 tensors missing from the file (strict): a, b, c". */
typedef struct problem_list {
    int count;
    size_t len;
    char text[LIST_MAX * (GRAFT_NAME_MAX + 64)];
} problem_list;

static void list_add(problem_list *l, const char *name, const char *detail) {
    if (l->count++ >= LIST_MAX || l->len >= sizeof l->text) return;
    int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s%s", l->count > 1 ? ", " : "",
                     name, detail);
    if (n > 0) l->len += (size_t)n;
}

/* Values of a floating tensor, as stored in the file, that are NaN or infinite (all
 * exponent bits set); integer tensors have none. */
static size_t count_nonfinite(const graft_st_tensor *s) {
    const unsigned char *src = s->data;
    size_t n = 0;
    for (size_t i = 0; i < s->numel; i++) {
        if (s->dtype == GRAFT_DTYPE_F32) {
            uint32_t bits;
            memcpy(&bits, src + 4 * i, sizeof bits);
            n += (bits & 0x7f800000u) == 0x7f800000u;
        } else if (s->dtype == GRAFT_DTYPE_F16 || s->dtype == GRAFT_DTYPE_BF16) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            uint16_t exponent = s->dtype == GRAFT_DTYPE_F16 ? 0x7c00u : 0x7f80u;
            n += (h & exponent) == exponent;
        } else {
            break;
        }
    }
    return n;
}

/* "tensors <what> (8): a, b, c and 5 more" appended to out (size bytes), after "; " when
 * out is not empty. */
static void list_text(const problem_list *l, const char *what, char *out, size_t size) {
    if (l->count == 0) return;
    size_t len = strlen(out);
    char more[48] = "";
    if (l->count > LIST_MAX) snprintf(more, sizeof more, " and %d more", l->count - LIST_MAX);
    snprintf(out + len, size - len, "%stensors %s (%d): %s%s", len ? "; " : "", what, l->count,
             l->text, more);
}

graft_status graft_params_load(graft_params *p, const char *path,
                               const graft_load_options *options, graft_load_report *report) {
    static const graft_load_options plain = {0};
    const graft_load_options *o = options ? options : &plain;
    const char *shown = o->shown_path ? o->shown_path : path;
    graft_load_report r = {0};
    graft_st_file f;
    graft_status st = graft_st_open(&f, path);
    if (st != GRAFT_OK) return st;
    /* source[i]: the file tensor each parameter loads from (an exact name wins over an
     * alias). Everything is checked before anything is read, so a failed load changes
     * nothing. */
    /* sizeof *p, p an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    const graft_st_tensor **source = calloc((size_t)p->count + 1, sizeof *source);
    char *by_alias = calloc((size_t)p->count + 1, 1);
    if (!source || !by_alias) {
        st = GRAFT_ERR_NOMEM;
        goto done;
    }
    problem_list unexpected = {0}, missing = {0}, wrong = {0};
    for (size_t k = 0; k < f.n_tensors; k++) {
        char buf[GRAFT_NAME_MAX + 64];
        const char *name = f.tensors[k].name;
        if (o->map_name && !(name = o->map_name(name, buf, sizeof buf))) {
            r.skipped++;
            continue;
        }
        if (under_prefix(name, o->replaced)) {
            r.replaced++;
            continue;
        }
        int i = graft_params_find(p, name), alias = 0;
        if (i < 0 && (i = graft_params_find_alias(p, name)) >= 0) alias = 1;
        if (i < 0) {
            list_add(&unexpected, f.tensors[k].name, "");
            continue;
        }
        if (!source[i] || (by_alias[i] && !alias)) {
            source[i] = &f.tensors[k];
            by_alias[i] = (char)alias;
        }
    }
    r.unexpected = unexpected.count;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        const graft_st_tensor *s = source[i];
        if (under_prefix(t->name, o->replaced)) continue;
        if (!s) {
            if (t->adapter) continue; /* keeps its initial value: no adapter yet */
            if (t->zero_when_absent)
                r.zeroed++;
            else
                list_add(&missing, t->name, "");
            continue;
        }
        char detail[256] = "";
        if (!graft_param_shape_matches(t, s)) {
            char want[96], got[96];
            snprintf(detail, sizeof detail, " (file %s, model %s)",
                     graft_format_shape(got, sizeof got, s->ndim, s->shape),
                     graft_format_shape(want, sizeof want, t->ndim, t->shape));
        } else if (s->dtype != GRAFT_DTYPE_F32 && s->dtype != GRAFT_DTYPE_F16 &&
                   s->dtype != GRAFT_DTYPE_BF16 && t->kind == GRAFT_KIND_PARAM) {
            /* integer buffers (torch's int64 num_batches_tracked) are converted */
            snprintf(detail, sizeof detail, " (dtype %s, not a floating type)",
                     graft_dtype_name(s->dtype));
        } else {
            /* NaN or infinite weights would make every step non-finite */
            size_t bad = count_nonfinite(s);
            if (bad)
                snprintf(detail, sizeof detail, " (%zu of %zu values NaN or infinite)", bad,
                         s->numel);
        }
        if (detail[0]) list_add(&wrong, t->name, detail);
    }
    r.missing = missing.count;
    /* A failed load is ONE error line naming what is wrong, tensor by tensor; a
     * non-strict load warns about missing and unexpected names. */
    int fatal = wrong.count || (o->strict && (missing.count || unexpected.count));
    static const char *const missing_what = "of the model missing from the file";
    static const char *const unexpected_what = "in the file but not in the model";
    if (fatal) {
        char *line = calloc(1, 3 * sizeof wrong.text + 256);
        if (line) {
            list_text(&wrong, "that do not fit the model", line, 3 * sizeof wrong.text + 256);
            if (o->strict) {
                list_text(&missing, missing_what, line, 3 * sizeof wrong.text + 256);
                list_text(&unexpected, unexpected_what, line, 3 * sizeof wrong.text + 256);
            }
            GRAFT_ERROR("%s: %s%s", shown, line, wrong.count ? "" : " (strict loading)");
        }
        free(line);
        st = line ? GRAFT_ERR_MISMATCH : GRAFT_ERR_NOMEM;
        goto done;
    }
    char line[sizeof wrong.text + 128];
    line[0] = '\0';
    list_text(&missing, missing_what, line, sizeof line);
    if (line[0]) GRAFT_WARN("%s: %s (they keep their initial values)", shown, line);
    line[0] = '\0';
    list_text(&unexpected, unexpected_what, line, sizeof line);
    if (line[0]) GRAFT_WARN("%s: %s (ignored)", shown, line);
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        if (under_prefix(p->items[i].name, o->replaced)) continue;
        if (!source[i]) {
            if (p->items[i].zero_when_absent)
                memset(graft_params_value(p, i), 0, p->items[i].numel * sizeof(float));
            continue;
        }
        st = graft_st_read_f32(source[i], graft_params_value(p, i), p->items[i].numel);
        r.matched++;
    }
done:
    free(source);
    free(by_alias);
    graft_st_close(&f);
    if (report) *report = r;
    return st;
}
