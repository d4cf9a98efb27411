/* JSON helpers over jansson: loading files, typed members, hex digests, writing (see
 * json.h). */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "runtime/core/log.h"

json_t *graft_json_load_file(const char *path, size_t max_bytes, graft_status *st) {
    char *text;
    size_t len;
    graft_status s = graft_fs_read(path, max_bytes, &text, &len, GRAFT_LOG_ERROR);
    json_t *root = NULL;
    if (s == GRAFT_OK) {
        json_error_t err;
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
        free(text);
        if (!root) {
            GRAFT_ERROR("%s: invalid JSON at line %d, column %d: %s", path, err.line, err.column,
                        err.text);
            s = GRAFT_ERR_FORMAT;
        }
    }
    if (st) *st = s;
    return root;
}

json_t *graft_json_try_load_file(const char *path, size_t max_bytes) {
    char *text;
    size_t len;
    if (graft_fs_read(path, max_bytes, &text, &len, GRAFT_LOG_DEBUG) != GRAFT_OK) return NULL;
    json_t *root = json_loadb(text, len, 0, NULL);
    free(text);
    return root;
}

json_t *graft_json_real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

const char *graft_json_text(const json_t *v, char *buf, size_t size) {
    if (!v) return "nothing";
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) {
        snprintf(buf, size, "?");
        return buf;
    }
    if (strlen(s) > 40)
        snprintf(buf, size, "%.37s...", s);
    else
        snprintf(buf, size, "%s", s);
    free(s);
    return buf;
}

int graft_json_get_int(const json_t *obj, const char *key, long long min, long long max,
                       long long *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) return 0;
    *out = (long long)json_integer_value(v);
    return 1;
}

int graft_json_parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    uint64_t value = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return 0;
        value = (value << 4) | (uint64_t)d;
    }
    *out = value;
    return 1;
}

int graft_json_get_hex64(const json_t *v, uint64_t *out) {
    return graft_json_parse_hex64(json_string_value(v), out);
}

void graft_json_hex64_text(char out[17], uint64_t v) {
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

/* The member, or NULL after "PATH: missing \"KEY\"" (logged as func). */
static json_t *required(const char *func, const char *path, const json_t *obj, const char *member,
                        const char *key) {
    json_t *v = json_object_get(obj, member);
    if (!v) graft_log(GRAFT_LOG_ERROR, func, "%s: missing \"%s\"", path, key);
    return v;
}

graft_status graft_json_int(const char *path, const json_t *obj, const char *member,
                            const char *key, long long min, long long max, long long *out) {
    if (!key) key = member;
    json_t *v = required(__func__, path, obj, member, key);
    if (!v) return GRAFT_ERR_FORMAT;
    if (!graft_json_get_int(obj, member, min, max, out)) {
        char text[64];
        GRAFT_ERROR("%s: \"%s\" must be an integer in [%lld, %lld], got %s", path, key, min, max,
                    graft_json_text(v, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    return GRAFT_OK;
}

graft_status graft_json_string(const char *path, const json_t *obj, const char *member,
                               const char *key, const char **out) {
    if (!key) key = member;
    json_t *v = required(__func__, path, obj, member, key);
    if (!v) return GRAFT_ERR_FORMAT;
    if (!json_is_string(v)) {
        char text[64];
        GRAFT_ERROR("%s: \"%s\" must be a string, got %s", path, key,
                    graft_json_text(v, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    *out = json_string_value(v);
    return GRAFT_OK;
}

graft_status graft_json_hex64(const char *path, const json_t *obj, const char *member,
                              const char *key, int *present, uint64_t *out) {
    if (!key) key = member;
    json_t *v = json_object_get(obj, member);
    *present = v != NULL;
    if (!v || graft_json_get_hex64(v, out)) return GRAFT_OK;
    char text[64];
    GRAFT_ERROR("%s: \"%s\" must be 16 hex digits, got %s", path, key,
                graft_json_text(v, text, sizeof text));
    return GRAFT_ERR_FORMAT;
}

char *graft_json_dumps_line(const json_t *value, size_t flags, size_t *len) {
    char *text = json_dumps(value, flags);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    memcpy(line + n, "\n", 2);
    if (len) *len = n + 1;
    return line;
}

graft_status graft_json_write_atomic(const char *path, const json_t *value, size_t flags) {
    size_t len;
    char *text = graft_json_dumps_line(value, flags, &len);
    if (!text) return GRAFT_ERR_NOMEM;
    graft_status st = graft_fs_write_atomic(path, text, len);
    free(text);
    return st;
}
