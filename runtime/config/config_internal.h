/* Private to runtime/config: the key table and its lookups (config_keys.c), the YAML
 * node tree (config_yaml.c), applying nodes to a config (config_apply.c), error
 * reporting (config.c) and a growable text buffer (config_print.c), shared with
 * config_validate.c and config_override.c. */
#ifndef GRAFT_CONFIG_INTERNAL_H
#define GRAFT_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"
#include "runtime/core/check.h"

/* ---- the key table ------------------------------------------------------------------ */

typedef enum {
    KEY_INT,         /* int */
    KEY_LONG,        /* long */
    KEY_DOUBLE,      /* double */
    KEY_BOOL,        /* int 0/1; YAML true/false only */
    KEY_STRING,      /* char * (owned) */
    KEY_ENUM,        /* char * (owned), one of `choices` */
    KEY_STRLIST,     /* graft_strlist */
    KEY_INTLIST,     /* int[max_items] with the count (int) at aux_offset */
    KEY_DOUBLE_PAIR, /* two doubles: offset and aux_offset; YAML [a, b] */
    KEY_ENVMAP,      /* graft_strlist of "NAME=value"; YAML {NAME: value} */
    KEY_MAPLIST,     /* array of elem_size structs (owned) with the count (int) at aux_offset;
                        YAML [{field: value, ...}], fields described by `fields` */
} key_type;

enum {
    KEY_REQUIRED = 1u << 0,  /* must be given (sub-tables: in every list entry) */
    KEY_NO_DIGEST = 1u << 1, /* may differ between ranks (not hashed) */
    KEY_NULLABLE = 1u << 2,  /* YAML null means "not given": NULL string, -1 number */
    KEY_MIN = 1u << 3,       /* value >= min (KEY_MIN_EXCL: > min) */
    KEY_MIN_EXCL = 1u << 4,
    KEY_MAX = 1u << 5, /* value <= max (KEY_MAX_EXCL: < max) */
    KEY_MAX_EXCL = 1u << 6,
    KEY_DIRNAME = 1u << 7, /* [A-Za-z0-9._-]+ and not "." or ".." (names a directory) */
    KEY_F32 = 1u << 8,     /* numbers graft computes with as 32-bit floats: a value must not
                              overflow there, nor underflow to 0 from non-zero */
    KEY_TRAINING = 1u << 9, /* with KEY_REQUIRED: only training needs it (graft eval does not),
                               checked by graft_config_validate_training */
};

typedef struct key_spec {
    const char *key; /* dotted path ("optim.lr"); in a sub-table the field name ("lr_scale") */
    key_type type;
    size_t offset;     /* offsetof the value in graft_config (sub-table: in the element) */
    size_t aux_offset; /* INTLIST/MAPLIST: offset of the int count; DOUBLE_PAIR: second double */
    unsigned flags;
    double min, max;         /* numbers, INTLIST items, DOUBLE_PAIR items (with KEY_MIN/KEY_MAX) */
    int min_items;           /* lists: fewest entries */
    int max_items;           /* lists: most entries (INTLIST: the array's capacity); 0 = no limit */
    const char *def;         /* default as YAML text ("128", "[512, 256]", "null"); NULL = none */
    const char *default_doc; /* reference's default column when the literal would mislead */
    const char *choices;     /* ENUM: "adamw|sgd" */
    const char *what;        /* ENUM: noun for errors ("optimizer") */
    const struct key_spec *fields; /* MAPLIST: the entries' keys */
    int n_fields;
    size_t elem_size; /* MAPLIST: sizeof one entry */
    const char *doc;  /* one line for the README */
} key_spec;

extern const key_spec cfg_keys[];
extern const int cfg_n_keys;

/* Longest dotted key path handled (longer ones are unknown keys anyway). */
#define CFG_MAX_PATH 256

/* The table entry for a full dotted key (or its first len characters), or NULL. */
const key_spec *cfg_find_key(const char *path);
const key_spec *cfg_find_key_n(const char *path, size_t len);
/* A section is a proper prefix of some key, ending at a dot ("" is the top level). */
int cfg_is_section_n(const char *path, size_t len);
/* A name that is a slice of a longer string (a key's component). */
typedef struct cfg_name_ref {
    const char *s;
    size_t len;
} cfg_name_ref;
/* The candidate closest to `typed` (edit distance <= 2, else the closest prefix match);
 * -1 when none qualifies. */
int cfg_best_match(const cfg_name_ref *cands, int n, const char *typed, size_t tlen);
/* An enum key's choices as "adamw, sgd" (from "adamw|sgd"). */
void cfg_enum_list(const key_spec *k, char *out, size_t size);
/* "'experiment', 'model', 'data' and 'optim'": the sections holding required keys. */
void cfg_required_sections(char *out, size_t size);

/* ---- YAML nodes --------------------------------------------------------------------- */

typedef enum { CFG_SCALAR, CFG_SEQ, CFG_MAP } cfg_node_kind;

typedef struct cfg_node {
    cfg_node_kind kind;
    char *text; /* scalars: the value, NUL-terminated (NULs inside are rejected) */
    int plain;  /* scalars: 1 when unquoted (only plain scalars can be numbers/bools/null) */
    struct cfg_node **kids; /* SEQ: items; MAP: key0, value0, key1, value1, ... */
    size_t n_kids, cap_kids;
    unsigned long line, col; /* 1-based start of the node */
} cfg_node;

/* Where a value came from, for error messages: a file (marks give line:col) or a
 * command-line override (named instead of a position). `func` names the log line. */
typedef struct cfg_where {
    const char *func;
    const char *file;     /* NULL for overrides */
    const char *override; /* the whole assignment, for overrides */
} cfg_where;

/* Parse YAML text into a node tree (*root NULL when there is no document). Rejects
 * syntax errors, anchors/aliases, tags and multiple documents with a logged one-line
 * error. The caller frees *root with cfg_node_free. */
graft_status cfg_parse_yaml(const cfg_where *w, const char *text, size_t len, cfg_node **root);
void cfg_node_free(cfg_node *n);

/* Longest error message (longer ones are cut). */
#define CFG_ERROR_MAX 1024

/* Report one error: "WHERE[:LINE:COL]: [KEY: ]message", logged (the logger keeps it for
 * graft_config_last_error). line 0 = no position. Returns GRAFT_ERR_CONFIG. */
graft_status cfg_fail_at(const cfg_where *w, unsigned long line, unsigned long col, const char *key,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Same, at a node's position (node may be NULL). */
graft_status cfg_fail(const cfg_where *w, const cfg_node *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Log an error that does not go through cfg_fail (it names its file itself). Public
 * entry points clear the last error first (graft_log_clear_last_error). */
void cfg_set_error(const char *func, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "out of memory" through cfg_fail; returns GRAFT_ERR_NOMEM (not the user's fault). */
graft_status cfg_fail_nomem(const cfg_where *w);
/* "KEY: unknown key (did you mean '...'?)". */
graft_status cfg_fail_unknown_key(const cfg_where *w, const cfg_node *at, const char *full);

/* ---- applying values (config_apply.c) ------------------------------------------------ */

/* YAML's null: an empty plain value, ~ or null. */
int cfg_is_null(const cfg_node *v);
/* Check node v against key k and store it at base (the config, or a list entry). */
graft_status cfg_apply_value(const cfg_where *w, const key_spec *k, const char *path, void *base,
                             const cfg_node *v);
/* Apply a mapping node under `section` ("" = top level) key by key. */
graft_status cfg_apply_mapping(const cfg_where *w, graft_config *cfg, const char *section,
                               const cfg_node *map);
/* Store key k's default (its `def` YAML text) at base. */
void cfg_apply_default(const key_spec *k, void *base);
/* Release what key k owns at base. */
void cfg_free_value(const key_spec *k, void *base);

/* Checks shared with validation (config_validate.c) of values already stored. */
/* A limit or value as text: integers without a fraction, others in shortest form. */
void cfg_number_text(double x, char *out, size_t size);
/* Whether x is within the key's limits (NaN never is). */
int cfg_in_range(const key_spec *k, double x);
/* For a KEY_F32 key: x (already within the key's limits, shown as `found`) must survive
 * narrowing to a 32-bit float -- finite there, non-zero if x is, and still within the
 * limits once rounded (0.99999999999 is 1 as a float). Reports through cfg_fail. */
graft_status cfg_check_f32(const cfg_where *w, const cfg_node *at, const key_spec *k,
                           const char *path, double x, const char *found);
/* "KEY: must be >= 1, found -4". */
graft_status cfg_fail_range(const cfg_where *w, const cfg_node *at, const key_spec *k,
                            const char *path, const char *found);
/* [A-Za-z_][A-Za-z0-9_]*: a name a shell can export. */
int cfg_is_env_name(const char *s, size_t len);
/* Problems of a string value that do not depend on where it came from (empty, not one
 * of an enum's names, not a directory name), reported through cfg_fail at node `at`
 * (may be NULL). */
graft_status cfg_check_string(const cfg_where *w, const cfg_node *at, const key_spec *k,
                              const char *path, const char *s);

/* ---- text ----------------------------------------------------------------------------- */

typedef struct cfg_buf {
    char *text; /* NUL-terminated once anything was appended */
    size_t len, cap;
    int oom; /* an allocation failed: the text is incomplete */
} cfg_buf;

void cfg_buf_put(cfg_buf *b, const char *s, size_t n);
void cfg_buf_printf(cfg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_buf_free(cfg_buf *b);

/* Append a key's value (at `base`: the config, or a list entry for sub-table keys) in
 * canonical flow YAML: what --print-config writes and what the digest hashes. */
void cfg_value_text(const key_spec *k, const void *base, cfg_buf *b);
/* A key's limits as ">= 1", "> 0", "in [0, 1)" ("" when it has none). */
void cfg_range_text(const key_spec *k, char *out, size_t size);
/* Shortest "%.*g" text that reads back as exactly x, with ".0" added to integral values. */
void cfg_double_text(double x, char *out, size_t size);

#endif
