/* Command-line overrides: KEY=VALUE, with VALUE parsed as YAML and applied like a
 * file's value. */
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

/* A dotted key: names of [A-Za-z0-9_] joined by single dots. */
static int is_key_path(const char *s, size_t len) {
    if (!len || s[0] == '.' || s[len - 1] == '.') return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.' && s[i + 1] == '.') return 0;
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.') return 0;
    }
    return 1;
}

/* Split KEY=VALUE, parse VALUE as YAML, and apply it like a file's value. */
graft_status graft_config_override(graft_config *cfg, const char *assignment) {
    graft_log_clear_last_error();
    cfg_where w = {__func__, NULL, assignment ? assignment : ""};
    if (!assignment) {
        cfg_fail(&w, NULL, NULL, "expected KEY=VALUE (e.g. optim.lr=3e-4)");
        return GRAFT_ERR_INVALID_ARG;
    }
    const char *eq = strchr(assignment, '=');
    if (!eq) return cfg_fail(&w, NULL, NULL, "expected KEY=VALUE (e.g. optim.lr=3e-4)");
    const char *key = assignment, *key_end = eq;
    while (key < key_end && isspace((unsigned char)*key))
        key++;
    while (key_end > key && isspace((unsigned char)key_end[-1]))
        key_end--;
    size_t key_len = (size_t)(key_end - key);
    /* cppcheck-suppress knownConditionTrueFalse ; "=x" gives key_len 0 (cppcheck 2.10 misreads) */
    if (!key_len) return cfg_fail(&w, NULL, NULL, "missing key before '='");
    if (key_len >= CFG_MAX_PATH || !is_key_path(key, key_len))
        return cfg_fail(&w, NULL, NULL,
                        "'%.*s' is not a key (expected names joined by dots, e.g. optim.lr)",
                        /* cppcheck-suppress knownConditionTrueFalse ; a long key reaches here */
                        (int)(key_len > 64 ? 64 : key_len), key);
    char path[CFG_MAX_PATH];
    memcpy(path, key, key_len);
    path[key_len] = '\0';
    const char *value = eq + 1;
    const key_spec *k = cfg_find_key(path);
    if (!k && !cfg_is_section_n(path, key_len)) return cfg_fail_unknown_key(&w, NULL, path);

    cfg_node *v = NULL;
    GRAFT_TRY(cfg_parse_yaml(&w, value, strlen(value), &v));
    if (!v) { /* "key=" or only a comment: an empty value */
        v = calloc(1, sizeof *v);
        if (v) v->text = strdup("");
        if (!v || !v->text) {
            cfg_node_free(v);
            return cfg_fail_nomem(&w);
        }
        v->kind = CFG_SCALAR;
        v->plain = 1;
    }
    graft_status s = k ? cfg_apply_value(&w, k, path, cfg, v) : cfg_apply_mapping(&w, cfg, path, v);
    cfg_node_free(v);
    return s;
}
