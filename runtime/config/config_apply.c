/* Applying YAML nodes to a graft_config through the key table: type checks, numbers,
 * strings and enums, lists and maps, duplicate and unknown keys, defaults, and the
 * release of owned values. Used by the file loader and by command-line overrides. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
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

/* ---- node helpers ------------------------------------------------------------------- */

/* YAML's null: an empty plain value, ~ or null. */
int cfg_is_null(const cfg_node *v) {
    if (v->kind != CFG_SCALAR || !v->plain) return 0;
    const char *t = v->text;
    return !t[0] || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
           !strcmp(t, "NULL");
}

/* What a node is, for "found ..." in messages. */
static const char *describe(const cfg_node *v, char *out, size_t size) {
    if (v->kind == CFG_MAP) return "a mapping";
    if (v->kind == CFG_SEQ) return "a list";
    if (v->plain && !v->text[0]) return "an empty value";
    if (cfg_is_null(v)) return "null";
    size_t len = strlen(v->text);
    const char *more = len > 48 ? "..." : "";
    if (v->plain)
        snprintf(out, size, "'%.48s%s'", v->text, more);
    else
        snprintf(out, size, "a quoted string '%.48s%s'", v->text, more);
    return out;
}

/* "KEY: expected X, found Y" for a value of the wrong type. */
static graft_status fail_expected(const cfg_where *w, const char *path, const cfg_node *v,
                                  const char *expected) {
    char buf[96];
    return cfg_fail(w, v, path, "expected %s, found %s", expected, describe(v, buf, sizeof buf));
}

/* ---- numbers -------------------------------------------------------------------------- */

/* Decimal integer with an optional sign: 1 ok, 0 not an integer, -1 out of range. */
static int parse_integer_text(const char *t, long long *out) {
    const char *p = t;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p) return 0;
    errno = 0;
    long long x = strtoll(t, NULL, 10);
    if (errno == ERANGE) return -1;
    *out = x;
    return 1;
}

/* A decimal number: [+-] digits [. digits] [e [+-] digits], or .5, or 5.; 1 ok, 0 not
 * a number, -1 not finite in a double (1e999). No inf, nan, hex or underscores. */
static int parse_number_text(const char *t, double *out) {
    const char *p = t;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p) return 0;
    double x = strtod(t, NULL);
    if (!isfinite(x)) return -1;
    *out = x;
    return 1;
}

/* A limit or value as text: integers without a fraction, others in shortest form. */
void cfg_number_text(double x, char *out, size_t size) {
    if (x == floor(x) && fabs(x) < 1e15)
        snprintf(out, size, "%.0f", x);
    else
        cfg_double_text(x, out, size);
}

/* A key's limits as text, for messages and the reference. */
void cfg_range_text(const key_spec *k, char *out, size_t size) {
    char lo[40], hi[40];
    cfg_number_text(k->min, lo, sizeof lo);
    cfg_number_text(k->max, hi, sizeof hi);
    int has_min = (k->flags & KEY_MIN) != 0, has_max = (k->flags & KEY_MAX) != 0;
    if (has_min && has_max)
        snprintf(out, size, "in %c%s, %s%c", (k->flags & KEY_MIN_EXCL) ? '(' : '[', lo, hi,
                 (k->flags & KEY_MAX_EXCL) ? ')' : ']');
    else if (has_min)
        snprintf(out, size, "%s %s", (k->flags & KEY_MIN_EXCL) ? ">" : ">=", lo);
    else if (has_max)
        snprintf(out, size, "%s %s", (k->flags & KEY_MAX_EXCL) ? "<" : "<=", hi);
    else
        out[0] = '\0';
}

/* Whether x is within the key's limits (NaN never is). */
int cfg_in_range(const key_spec *k, double x) {
    if (isnan(x)) return 0;
    if (k->flags & KEY_MIN) {
        if ((k->flags & KEY_MIN_EXCL) ? !(x > k->min) : !(x >= k->min)) return 0;
    }
    if (k->flags & KEY_MAX) {
        if ((k->flags & KEY_MAX_EXCL) ? !(x < k->max) : !(x <= k->max)) return 0;
    }
    return 1;
}

graft_status cfg_check_f32(const cfg_where *w, const cfg_node *at, const key_spec *k,
                           const char *path, double x, const char *found) {
    if (!(k->flags & KEY_F32)) return GRAFT_OK;
    /* comparisons before the cast: converting a double beyond float's range is undefined */
    double m = fabs(x);
    if (m > FLT_MAX)
        return cfg_fail(w, at, path,
                        "%s overflows a 32-bit float, which graft computes with (magnitudes up "
                        "to %g)",
                        found, (double)FLT_MAX);
    if (x != 0 && m < FLT_TRUE_MIN)
        return cfg_fail(w, at, path,
                        "%s underflows to 0 as a 32-bit float, which graft computes with "
                        "(non-zero magnitudes from %g)",
                        found, (double)FLT_TRUE_MIN);
    double rounded = (double)(float)x;
    if (!cfg_in_range(k, rounded)) {
        char range[96], as_float[40];
        cfg_range_text(k, range, sizeof range);
        cfg_number_text(rounded, as_float, sizeof as_float);
        return cfg_fail(w, at, path,
                        "must be %s as a 32-bit float (graft computes with it as one), found %s, "
                        "which rounds to %s",
                        range, found, as_float);
    }
    return GRAFT_OK;
}

/* "KEY: must be >= 1, found -4". */
graft_status cfg_fail_range(const cfg_where *w, const cfg_node *at, const key_spec *k,
                            const char *path, const char *found) {
    char range[96];
    cfg_range_text(k, range, sizeof range);
    return cfg_fail(w, at, path, "must be %s, found %s", range, found);
}

/* Integer value of node v for key k (its limits; `is_int`: must fit an int). */
static graft_status read_integer(const cfg_where *w, const key_spec *k, const char *path,
                                 const cfg_node *v, int is_int, long long *out) {
    if (v->kind != CFG_SCALAR || !v->plain || cfg_is_null(v))
        return fail_expected(w, path, v, "an integer");
    long long x = 0;
    int r = parse_integer_text(v->text, &x);
    if (r == 0) return fail_expected(w, path, v, "an integer");
    long long lo = is_int ? INT_MIN : LONG_MIN, hi = is_int ? INT_MAX : LONG_MAX;
    if (r < 0 || x < lo || x > hi) { /* beyond the C type: name the limit that was crossed */
        int negative = v->text[0] == '-';
        if ((negative && (k->flags & KEY_MIN)) || (!negative && (k->flags & KEY_MAX)))
            return cfg_fail_range(w, v, k, path, v->text);
        if (negative) return cfg_fail(w, v, path, "must be >= %lld, found %.40s", lo, v->text);
        return cfg_fail(w, v, path, "must be <= %lld, found %.40s", hi, v->text);
    }
    if (!cfg_in_range(k, (double)x)) return cfg_fail_range(w, v, k, path, v->text);
    *out = x;
    return GRAFT_OK;
}

/* Number (integer or decimal) value of node v for key k. */
static graft_status read_number(const cfg_where *w, const key_spec *k, const char *path,
                                const cfg_node *v, double *out) {
    if (v->kind != CFG_SCALAR || !v->plain || cfg_is_null(v))
        return fail_expected(w, path, v, "a number");
    double x = 0;
    int r = parse_number_text(v->text, &x);
    if (r == 0) return fail_expected(w, path, v, "a number");
    if (r < 0) return cfg_fail(w, v, path, "number out of range, found %.40s", v->text);
    if (!cfg_in_range(k, x)) return cfg_fail_range(w, v, k, path, v->text);
    GRAFT_TRY(cfg_check_f32(w, v, k, path, x, v->text));
    *out = x;
    return GRAFT_OK;
}

/* ---- strings ------------------------------------------------------------------------ */

static int is_dirname(const char *s) {
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return 0;
    return 1;
}

/* [A-Za-z_][A-Za-z0-9_]*: a name a shell can export. */
int cfg_is_env_name(const char *s, size_t len) {
    if (!len || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* Whether s is one of the enum's names (exact, case-sensitive). */
static int enum_has(const key_spec *k, const char *s) {
    size_t len = strlen(s);
    for (const char *c = k->choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == len && !strncmp(c, s, n)) return 1;
        c += n + (bar ? 1 : 0);
    }
    return 0;
}

/* Problems of a string value that do not depend on where it came from, reported at
 * node `at` (may be NULL). */
graft_status cfg_check_string(const cfg_where *w, const cfg_node *at, const key_spec *k,
                              const char *path, const char *s) {
    if (!s[0]) return cfg_fail(w, at, path, "must not be empty");
    if (k->type == KEY_ENUM && !enum_has(k, s)) {
        char list[128];
        cfg_enum_list(k, list, sizeof list);
        return cfg_fail(w, at, path, "unknown %s '%.48s%s' (expected one of: %s)", k->what, s,
                        strlen(s) > 48 ? "..." : "", list);
    }
    if ((k->flags & KEY_DIRNAME) && !is_dirname(s)) {
        if (!strcmp(s, ".") || !strcmp(s, ".."))
            return cfg_fail(w, at, path, "must not be '%s' (it names a directory)", s);
        return cfg_fail(w, at, path,
                        "must match [A-Za-z0-9._-]+ (it names a directory), found '%.48s'", s);
    }
    return GRAFT_OK;
}

/* Owned copy of the string in node v for key k; NULL for null on a nullable key. */
static graft_status read_string(const cfg_where *w, const key_spec *k, const char *path,
                                const cfg_node *v, char **out) {
    *out = NULL;
    if ((k->flags & KEY_NULLABLE) && cfg_is_null(v)) return GRAFT_OK;
    if (v->kind != CFG_SCALAR || cfg_is_null(v)) return fail_expected(w, path, v, "a string");
    GRAFT_TRY(cfg_check_string(w, v, k, path, v->text));
    *out = strdup(v->text);
    if (!*out) return cfg_fail_nomem(w);
    return GRAFT_OK;
}

/* Release a list of strings and leave it empty. */
static void strlist_free(graft_strlist *l) {
    for (int i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* The first key of a mapping (in file order) that repeats an earlier one: `at` is its
 * kid index and `first` the earlier one's; at == n_kids when no key repeats. */
typedef struct map_dup {
    size_t at, first;
} map_dup;

typedef struct key_ref {
    const char *text;
    size_t index;
} key_ref;

static int compare_key_refs(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Find the first repeated key by sorting the keys (with their positions): n log n, so
 * a mapping of a hundred thousand keys is checked as fast as it is parsed. */
static graft_status find_duplicate(const cfg_where *w, const cfg_node *map, map_dup *dup) {
    dup->at = dup->first = map->n_kids;
    key_ref *keys = malloc((map->n_kids / 2 + 1) * sizeof *keys);
    if (!keys) return cfg_fail_nomem(w);
    size_t n = 0;
    for (size_t i = 0; i < map->n_kids; i += 2)
        if (map->kids[i]->kind == CFG_SCALAR) keys[n++] = (key_ref){map->kids[i]->text, i};
    qsort(keys, n, sizeof *keys, compare_key_refs);
    /* Within a run of equal keys, sorted by position, the second repeats the first. */
    for (size_t j = 1; j < n; j++) {
        if (strcmp(keys[j].text, keys[j - 1].text) == 0 && keys[j].index < dup->at) {
            dup->at = keys[j].index;
            dup->first = keys[j - 1].index;
        }
    }
    free(keys);
    return GRAFT_OK;
}

/* Mapping keys must be scalars; a key repeated in the same mapping is an error. */
static graft_status check_map_key(const cfg_where *w, const cfg_node *map, size_t i,
                                  const map_dup *dup, const char *path_for_dup) {
    const cfg_node *kn = map->kids[i];
    char buf[96];
    if (kn->kind != CFG_SCALAR || !kn->text[0])
        return cfg_fail(w, kn, NULL, "expected a key name, found %s",
                        describe(kn, buf, sizeof buf));
    if (i == dup->at) {
        if (w->file)
            return cfg_fail(w, kn, path_for_dup, "duplicate key (first at line %lu)",
                            map->kids[dup->first]->line);
        return cfg_fail(w, kn, path_for_dup, "duplicate key");
    }
    return GRAFT_OK;
}

/* ---- applying values ------------------------------------------------------------------ */

/* Release n entries of a list of mappings and the array itself. */
static void free_entries(const key_spec *k, char *items, int n) {
    for (int i = 0; i < n; i++)
        for (int f = 0; f < k->n_fields; f++)
            cfg_free_value(&k->fields[f], items + (size_t)i * k->elem_size);
    free(items);
}

/* Release what a key owns at `base` and reset it to empty. */
void cfg_free_value(const key_spec *k, void *base) {
    char *field = (char *)base + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_ENUM:
        free(*(char **)field);
        *(char **)field = NULL;
        break;
    case KEY_STRLIST:
    case KEY_ENVMAP:
        strlist_free((graft_strlist *)field);
        break;
    case KEY_MAPLIST: {
        int *count = (int *)((char *)base + k->aux_offset);
        free_entries(k, *(char **)field, *count);
        *(char **)field = NULL;
        *count = 0;
        break;
    }
    default:
        break;
    }
}

/* Set a key to its default from the table (a YAML literal parsed like any value). */
void cfg_apply_default(const key_spec *k, void *base) {
    cfg_where w = {"graft_config_defaults", NULL, k->key};
    cfg_node *v = NULL;
    graft_status s = cfg_parse_yaml(&w, k->def, strlen(k->def), &v);
    if (s == GRAFT_OK) s = cfg_apply_value(&w, k, k->key, base, v);
    cfg_node_free(v);
    GRAFT_ASSERT(s == GRAFT_OK); /* the table's defaults are checked by the tests */
}

/* A list of non-empty strings; replaces the old list only when every item is valid. */
static graft_status apply_strlist(const cfg_where *w, const key_spec *k, const char *path,
                                  graft_strlist *dst, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of strings");
    if (v->n_kids < (size_t)k->min_items)
        return cfg_fail(w, v, path, "must have at least %d entr%s, found %zu", k->min_items,
                        k->min_items == 1 ? "y" : "ies", v->n_kids);
    if (k->max_items && v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    graft_strlist list = {NULL, 0};
    if (v->n_kids) {
        list.items = calloc(v->n_kids, sizeof *list.items);
        if (!list.items) return cfg_fail_nomem(w);
    }
    for (size_t i = 0; i < v->n_kids; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%zu]", path, i);
        key_spec item = *k;
        item.type = KEY_STRING;
        item.flags &= ~KEY_NULLABLE;
        graft_status s = read_string(w, &item, item_path, v->kids[i], &list.items[i]);
        if (s != GRAFT_OK) {
            strlist_free(&list);
            return s;
        }
        list.count++;
    }
    strlist_free(dst);
    *dst = list;
    return GRAFT_OK;
}

/* A list of integers within the key's limits, at most max_items of them. */
static graft_status apply_intlist(const cfg_where *w, const key_spec *k, const char *path,
                                  void *base, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of integers");
    if (v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    int values[64];
    for (size_t i = 0; i < v->n_kids; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%zu]", path, i);
        long long x = 0; /* set unless read_integer fails (the analyzer cannot see cfg_fail) */
        GRAFT_TRY(read_integer(w, k, item_path, v->kids[i], 1, &x));
        values[i] = (int)x;
    }
    int *dst = (int *)((char *)base + k->offset);
    for (size_t i = 0; i < v->n_kids; i++)
        dst[i] = values[i];
    *(int *)((char *)base + k->aux_offset) = (int)v->n_kids;
    return GRAFT_OK;
}

/* Exactly two numbers ([beta1, beta2]), each within the key's limits. */
static graft_status apply_pair(const cfg_where *w, const key_spec *k, const char *path, void *base,
                               const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of 2 numbers");
    if (v->n_kids != 2)
        return cfg_fail(w, v, path, "expected a list of 2 numbers, found %zu entr%s", v->n_kids,
                        v->n_kids == 1 ? "y" : "ies");
    double x[2];
    for (int i = 0; i < 2; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
        GRAFT_TRY(read_number(w, k, item_path, v->kids[i], &x[i]));
    }
    *(double *)((char *)base + k->offset) = x[0];
    *(double *)((char *)base + k->aux_offset) = x[1];
    return GRAFT_OK;
}

/* {NAME: value, ...} stored as "NAME=value" strings, in file order. */
static graft_status apply_envmap(const cfg_where *w, const key_spec *k, const char *path,
                                 graft_strlist *dst, const cfg_node *v) {
    if (v->kind != CFG_MAP) return fail_expected(w, path, v, "a mapping of NAME: value");
    size_t n = v->n_kids / 2;
    graft_strlist list = {NULL, 0};
    if (n) {
        list.items = calloc(n, sizeof *list.items);
        if (!list.items) return cfg_fail_nomem(w);
    }
    map_dup dup;
    graft_status s = find_duplicate(w, v, &dup);
    for (size_t i = 0; i < v->n_kids && s == GRAFT_OK; i += 2) {
        const cfg_node *kn = v->kids[i], *vn = v->kids[i + 1];
        char key_path[CFG_MAX_PATH + 128] = "";
        if (kn->kind == CFG_SCALAR) snprintf(key_path, sizeof key_path, "%s.%.64s", path, kn->text);
        s = check_map_key(w, v, i, &dup, key_path);
        if (s != GRAFT_OK) break;
        if (!cfg_is_env_name(kn->text, strlen(kn->text))) {
            s = cfg_fail(w, kn, path, "'%.64s' is not a valid environment variable name", kn->text);
            break;
        }
        if (vn->kind != CFG_SCALAR || (vn->plain && !vn->text[0])) {
            s = fail_expected(w, key_path, vn, "a string");
            break;
        }
        size_t len = strlen(kn->text) + 1 + strlen(vn->text) + 1;
        char *item = malloc(len);
        if (!item) {
            s = cfg_fail_nomem(w);
            break;
        }
        snprintf(item, len, "%s=%s", kn->text, vn->text);
        /* a mapping's kids are key, value pairs: the loop runs only when n >= 1 and items
         * was allocated. NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
        list.items[list.count++] = item;
    }
    (void)k;
    if (s != GRAFT_OK) {
        strlist_free(&list);
        return s;
    }
    strlist_free(dst);
    *dst = list;
    return GRAFT_OK;
}

/* One entry of a list of mappings: defaults, then the given keys, then required ones. */
static graft_status apply_entry(const cfg_where *w, const key_spec *k, const char *entry_path,
                                void *entry, const cfg_node *v) {
    if (v->kind != CFG_MAP) return fail_expected(w, entry_path, v, "a mapping");
    for (int f = 0; f < k->n_fields; f++)
        if (k->fields[f].def) cfg_apply_default(&k->fields[f], entry);
    int given[16] = {0};
    map_dup dup;
    GRAFT_TRY(find_duplicate(w, v, &dup));
    for (size_t i = 0; i < v->n_kids; i += 2) {
        const cfg_node *kn = v->kids[i];
        char key_path[CFG_MAX_PATH + 128] = "";
        if (kn->kind == CFG_SCALAR)
            snprintf(key_path, sizeof key_path, "%s.%.64s", entry_path, kn->text);
        GRAFT_TRY(check_map_key(w, v, i, &dup, key_path));
        int found = -1;
        cfg_name_ref names[16];
        for (int f = 0; f < k->n_fields; f++) {
            names[f] = (cfg_name_ref){k->fields[f].key, strlen(k->fields[f].key)};
            if (!strcmp(k->fields[f].key, kn->text)) found = f;
        }
        if (found < 0) {
            int best = cfg_best_match(names, k->n_fields, kn->text, strlen(kn->text));
            if (best >= 0)
                return cfg_fail(w, kn, key_path, "unknown key (did you mean '%s.%s'?)", entry_path,
                                k->fields[best].key);
            return cfg_fail(w, kn, key_path, "unknown key");
        }
        GRAFT_TRY(cfg_apply_value(w, &k->fields[found], key_path, entry, v->kids[i + 1]));
        given[found] = 1;
    }
    for (int f = 0; f < k->n_fields; f++)
        if ((k->fields[f].flags & KEY_REQUIRED) && !given[f])
            return cfg_fail(w, v, entry_path, "missing required key '%s'", k->fields[f].key);
    return GRAFT_OK;
}

/* A list of mappings (optim.groups, freeze.schedule): built aside, swapped in when
 * every entry is valid. */
static graft_status apply_maplist(const cfg_where *w, const key_spec *k, const char *path,
                                  void *base, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of mappings");
    if (k->max_items && v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    size_t n = v->n_kids;
    char *items = NULL;
    if (n) {
        items = calloc(n, k->elem_size);
        if (!items) return cfg_fail_nomem(w);
    }
    graft_status s = GRAFT_OK;
    for (size_t i = 0; i < n && s == GRAFT_OK; i++) {
        char entry_path[CFG_MAX_PATH + 32];
        snprintf(entry_path, sizeof entry_path, "%s[%zu]", path, i);
        s = apply_entry(w, k, entry_path, items + i * k->elem_size, v->kids[i]);
    }
    if (s != GRAFT_OK) { /* entries not reached are still zeroed: safe to release */
        free_entries(k, items, (int)n);
        return s;
    }
    cfg_free_value(k, base);
    *(char **)((char *)base + k->offset) = items;
    *(int *)((char *)base + k->aux_offset) = (int)n;
    return GRAFT_OK;
}

/* Set key k (at `base`) from node v; `path` names it in errors. On error the old
 * value is kept. */
graft_status cfg_apply_value(const cfg_where *w, const key_spec *k, const char *path, void *base,
                             const cfg_node *v) {
    char *field = (char *)base + k->offset;
    long long x = 0; /* both set unless the read fails (the analyzer cannot see cfg_fail) */
    double d = 0;
    switch (k->type) {
    case KEY_INT:
        GRAFT_TRY(read_integer(w, k, path, v, 1, &x));
        *(int *)field = (int)x;
        return GRAFT_OK;
    case KEY_LONG:
        GRAFT_TRY(read_integer(w, k, path, v, 0, &x));
        *(long *)field = (long)x;
        return GRAFT_OK;
    case KEY_DOUBLE:
        /* null: not given (nullable keys), or still missing (a required key: what the
         * config printer writes for one left out, e.g. optim.lr in an eval-only config) */
        if ((k->flags & (KEY_NULLABLE | KEY_REQUIRED)) && cfg_is_null(v)) {
            *(double *)field = (k->flags & KEY_NULLABLE) ? -1.0 : 0.0;
            return GRAFT_OK;
        }
        GRAFT_TRY(read_number(w, k, path, v, &d));
        *(double *)field = d;
        return GRAFT_OK;
    case KEY_BOOL:
        if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->text, "true"))
            *(int *)field = 1;
        else if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->text, "false"))
            *(int *)field = 0;
        else
            return fail_expected(w, path, v, "true or false");
        return GRAFT_OK;
    case KEY_STRING:
    case KEY_ENUM: {
        char *s = NULL;
        GRAFT_TRY(read_string(w, k, path, v, &s));
        free(*(char **)field);
        *(char **)field = s;
        return GRAFT_OK;
    }
    case KEY_STRLIST:
        return apply_strlist(w, k, path, (graft_strlist *)field, v);
    case KEY_INTLIST:
        return apply_intlist(w, k, path, base, v);
    case KEY_DOUBLE_PAIR:
        return apply_pair(w, k, path, base, v);
    case KEY_ENVMAP:
        return apply_envmap(w, k, path, (graft_strlist *)field, v);
    case KEY_MAPLIST:
        return apply_maplist(w, k, path, base, v);
    }
    return GRAFT_ERR_INTERNAL;
}

/* Apply a mapping of keys under `section` ("" = the top level). */
graft_status cfg_apply_mapping(const cfg_where *w, graft_config *cfg, const char *section,
                               const cfg_node *map) {
    char buf[96];
    if (section[0] && cfg_is_null(map)) return GRAFT_OK; /* "data:" with nothing under it */
    if (map->kind != CFG_MAP) {
        if (!section[0])
            return cfg_fail(w, map, NULL,
                            "expected a mapping of settings at the top level, found %s",
                            describe(map, buf, sizeof buf));
        return fail_expected(w, section, map, "a mapping");
    }
    map_dup dup;
    GRAFT_TRY(find_duplicate(w, map, &dup));
    for (size_t i = 0; i < map->n_kids; i += 2) {
        const cfg_node *kn = map->kids[i], *vn = map->kids[i + 1];
        char full[CFG_MAX_PATH] = "";
        if (kn->kind == CFG_SCALAR)
            snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", kn->text);
        GRAFT_TRY(check_map_key(w, map, i, &dup, full));
        const key_spec *k = cfg_find_key(full);
        if (k)
            GRAFT_TRY(cfg_apply_value(w, k, full, cfg, vn));
        else if (cfg_is_section_n(full, strlen(full)))
            GRAFT_TRY(cfg_apply_mapping(w, cfg, full, vn));
        else
            return cfg_fail_unknown_key(w, kn, full);
    }
    return GRAFT_OK;
}
