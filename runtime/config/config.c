/* The experiment config's entry points: defaults, loading a file, error reporting,
 * comparison (equality, what may change on resume) and release. The key table is in
 * config_keys.c, applying YAML values in config_apply.c, validation in
 * config_validate.c, overrides in config_override.c, printing and the digest in
 * config_print.c, YAML parsing in config_yaml.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

/* A config file larger than this is certainly not a config file. */
#define CFG_MAX_FILE_BYTES ((size_t)16 << 20)

/* ---- errors ---------------------------------------------------------------------------- */

/* The logger keeps each thread's last error: a config error is the last one. */
const char *graft_config_last_error(void) { return graft_log_last_error(); }

/* A message with no "where" prefix of its own (I/O errors name the file themselves). */
void cfg_set_error(const char *func, const char *fmt, ...) {
    char msg[CFG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    graft_log(GRAFT_LOG_ERROR, func, "%s", msg);
}

/* The message body after the location: "[KEY: ]message". */
__attribute__((format(printf, 5, 0))) static graft_status vfail(const cfg_where *w, unsigned long line, unsigned long col,
                          const char *key, const char *fmt, va_list ap) {
    char where[320], msg[CFG_ERROR_MAX];
    if (w->file && line)
        snprintf(where, sizeof where, "%.280s:%lu:%lu", w->file, line, col);
    else if (w->file)
        snprintf(where, sizeof where, "%.280s", w->file);
    else if (w->override)
        snprintf(where, sizeof where, "override '%.200s'", w->override);
    else
        snprintf(where, sizeof where, "config");
    int n;
    if (key)
        n = snprintf(msg, sizeof msg, "%s: %.300s: ", where, key);
    else
        n = snprintf(msg, sizeof msg, "%s: ", where);
    if (n > 0 && (size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    graft_log(GRAFT_LOG_ERROR, w->func, "%s", msg);
    return GRAFT_ERR_CONFIG;
}

/* Report at an explicit line:column (0 = none). */
graft_status cfg_fail_at(const cfg_where *w, unsigned long line, unsigned long col, const char *key,
                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    graft_status s = vfail(w, line, col, key, fmt, ap);
    va_end(ap);
    return s;
}

/* Report at a node's line:column. */
graft_status cfg_fail(const cfg_where *w, const cfg_node *at, const char *key, const char *fmt,
                      ...) {
    va_list ap;
    va_start(ap, fmt);
    graft_status s = vfail(w, at ? at->line : 0, at ? at->col : 0, key, fmt, ap);
    va_end(ap);
    return s;
}

/* Out of memory is not the user's fault: its own status. */
graft_status cfg_fail_nomem(const cfg_where *w) {
    cfg_fail(w, NULL, NULL, "out of memory");
    return GRAFT_ERR_NOMEM;
}

/* ---- defaults and load ------------------------------------------------------------ */

void graft_config_defaults(graft_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->source = strdup("");
    GRAFT_ASSERT(cfg->source != NULL);
    for (int i = 0; i < cfg_n_keys; i++)
        if (cfg_keys[i].def) cfg_apply_default(&cfg_keys[i], cfg);
}

/* Whole file into a NUL-terminated buffer; errors name the file (GRAFT_ERR_IO). A file
 * of CFG_MAX_FILE_BYTES or more is refused. */
static graft_status read_file(const cfg_where *w, char **text, size_t *len) {
    graft_status st = graft_fs_read(w->file, CFG_MAX_FILE_BYTES - 1, text, len, GRAFT_LOG_QUIET);
    if (st == GRAFT_OK) return GRAFT_OK;
    if (st == GRAFT_ERR_FORMAT) {
        cfg_set_error(w->func, "%s: file too large (a config file is at most %zu MiB)", w->file,
                      CFG_MAX_FILE_BYTES >> 20);
        return GRAFT_ERR_CONFIG;
    }
    cfg_set_error(w->func, "%s", graft_log_last_error()); /* "FILE: cannot open: ..." */
    return st;
}

/* Parse text (named w->file) and apply its top-level mapping on top of the current
 * values; the config's source becomes w->file. */
static graft_status load_text(const cfg_where *w, graft_config *cfg, const char *text, size_t len) {
    cfg_node *root = NULL;
    graft_status s = cfg_parse_yaml(w, text, len, &root);
    if (s == GRAFT_OK && (!root || (root->kind == CFG_SCALAR && cfg_is_null(root)))) {
        int only_space = 1;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)text[i])) only_space = 0;
        char sections[160];
        cfg_required_sections(sections, sizeof sections);
        s = cfg_fail(w, NULL, NULL, "%s (expected a mapping with at least %s)",
                     only_space ? "empty file" : "no settings, only comments", sections);
    }
    if (s == GRAFT_OK) s = cfg_apply_mapping(w, cfg, "", root);
    if (s == GRAFT_OK) {
        char *source = strdup(w->file);
        if (!source) {
            s = cfg_fail_nomem(w);
        } else {
            free(cfg->source);
            cfg->source = source;
        }
    }
    cfg_node_free(root);
    return s;
}

graft_status graft_config_load(graft_config *cfg, const char *path) {
    graft_log_clear_last_error();
    cfg_where w = {__func__, path, NULL};
    char *text = NULL;
    size_t len = 0;
    GRAFT_TRY(read_file(&w, &text, &len));
    graft_status s = load_text(&w, cfg, text, len);
    free(text);
    return s;
}

graft_status graft_config_load_text(graft_config *cfg, const char *name, const char *text) {
    graft_log_clear_last_error();
    cfg_where w = {__func__, name, NULL};
    return load_text(&w, cfg, text, strlen(text));
}

/* ---- equality, release -------------------------------------------------------------- */

static int strs_equal(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Same strings in the same order. */
static int lists_equal(const graft_strlist *a, const graft_strlist *b) {
    if (a->count != b->count) return 0;
    for (int i = 0; i < a->count; i++)
        if (!strs_equal(a->items[i], b->items[i])) return 0;
    return 1;
}

/* Typed comparison of one key (doubles bit for bit). */
static int value_equal(const key_spec *k, const void *a_base, const void *b_base) {
    const char *a = (const char *)a_base + k->offset, *b = (const char *)b_base + k->offset;
    switch (k->type) {
    case KEY_INT:
    case KEY_BOOL:
        return *(const int *)a == *(const int *)b;
    case KEY_LONG:
        return *(const long *)a == *(const long *)b;
    case KEY_DOUBLE:
        return memcmp(a, b, sizeof(double)) == 0;
    case KEY_DOUBLE_PAIR:
        return memcmp(a, b, sizeof(double)) == 0 &&
               memcmp((const char *)a_base + k->aux_offset, (const char *)b_base + k->aux_offset,
                      sizeof(double)) == 0;
    case KEY_STRING:
    case KEY_ENUM:
        return strs_equal(*(char *const *)a, *(char *const *)b);
    case KEY_STRLIST:
    case KEY_ENVMAP:
        return lists_equal((const graft_strlist *)a, (const graft_strlist *)b);
    case KEY_INTLIST: {
        int na = *(const int *)((const char *)a_base + k->aux_offset);
        int nb = *(const int *)((const char *)b_base + k->aux_offset);
        return na == nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0;
    }
    case KEY_MAPLIST: {
        int na = *(const int *)((const char *)a_base + k->aux_offset);
        int nb = *(const int *)((const char *)b_base + k->aux_offset);
        if (na != nb) return 0;
        const char *ia = *(char *const *)a, *ib = *(char *const *)b;
        for (int i = 0; i < na; i++)
            for (int f = 0; f < k->n_fields; f++)
                if (!value_equal(&k->fields[f], ia + (size_t)i * k->elem_size,
                                 ib + (size_t)i * k->elem_size))
                    return 0;
        return 1;
    }
    }
    return 0;
}

/* Compare key by key in table order. */
int graft_config_equal(const graft_config *a, const graft_config *b, const char **first_diff) {
    if (first_diff) *first_diff = NULL;
    for (int i = 0; i < cfg_n_keys; i++) {
        if (!value_equal(&cfg_keys[i], a, b)) {
            if (first_diff) *first_diff = cfg_keys[i].key;
            return 0;
        }
    }
    return 1;
}

/* Keys that may change between a checkpoint and its resume without changing what is
 * trained: bookkeeping, communication and checkpointing itself, and what happens at a
 * non-finite step (a run stopped by one may be resumed with skip). */
static int resume_may_change(const char *key) {
    static const char *const prefixes[] = {"experiment",
                                           "checkpoint.",
                                           "comm.",
                                           "launch.",
                                           "model.init",
                                           "train.log_every",
                                           "train.eval_every",
                                           "data.prefetch",
                                           "data.verify",
                                           "data.cache_max_gb",
                                           "train.on_nonfinite",
                                           "train.max_nonfinite_steps"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

int graft_config_resume_diff(const graft_config *saved, const graft_config *now, char *out,
                             size_t size) {
    int n = 0;
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < cfg_n_keys; i++) {
        if (resume_may_change(cfg_keys[i].key) || value_equal(&cfg_keys[i], saved, now)) continue;
        if (used < size)
            used +=
                (size_t)snprintf(out + used, size - used, "%s%s", n ? ", " : "", cfg_keys[i].key);
        n++;
    }
    return n;
}

/* Resolve "not given" to torch's default for the chosen optimizer. */
double graft_config_weight_decay(const graft_config *cfg) {
    if (cfg->optim.weight_decay >= 0) return cfg->optim.weight_decay;
    return cfg->optim.name && !strcmp(cfg->optim.name, "sgd") ? 0.0 : 0.01;
}

/* Release every owned value through the table, then the source name. */
void graft_config_free(graft_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg_n_keys; i++)
        cfg_free_value(&cfg_keys[i], cfg);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}
