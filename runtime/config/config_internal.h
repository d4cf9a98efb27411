/* Private to runtime/config: the key table, the YAML node tree, error reporting
 * and a growable text buffer shared by config.c, config_yaml.c and config_print.c. */
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

/* Report one error: "WHERE[:LINE:COL]: [KEY: ]message", logged and kept for
 * graft_config_last_error. line 0 = no position. Returns GRAFT_ERR_CONFIG. */
graft_status cfg_fail_at(const cfg_where *w, unsigned long line, unsigned long col, const char *key,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Same, at a node's position (node may be NULL). */
graft_status cfg_fail(const cfg_where *w, const cfg_node *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Set the last error text and log it (for errors that do not go through cfg_fail). */
void cfg_set_error(const char *func, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_clear_error(void);

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
