/* The text files of a checkpoint: state.json (written and parsed) and MANIFEST
 * (checked), and the full integrity check of one checkpoint directory. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_internal.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"

#define MANIFEST_MAX_BYTES 65536
#define MANIFEST_MAX_ENTRIES 16

/* A plain file name: [A-Za-z0-9._-], not starting with '.', shorter than CKPT_NAME_MAX. */
static int safe_file_name(const char *s, size_t len) {
    if (len == 0 || len >= CKPT_NAME_MAX || s[0] == '.') return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

char *ckpt_state_json(const graft_ckpt_state *s, const graft_optim *o,
                      const ckpt_frozen_ref *frozen) {
    /* json_object_set_new / json_array_append_new take ownership even when they fail
     * (and fail on a NULL value), so every object is attached before it is filled. */
    json_t *root = json_object();
    if (!root) return NULL;
    char hex[17];
    json_t *rng = json_array();
    int ok = json_object_set_new(root, "rng_states", rng) == 0;
    for (int r = 0; ok && s->rng_states && r < s->world_size; r++) {
        graft_json_hex64_text(hex, s->rng_states[r]);
        ok = json_array_append_new(rng, json_string(hex)) == 0;
    }
    ok = ok && json_object_set_new(root, "step", json_integer((json_int_t)s->step)) == 0;
    ok = ok && json_object_set_new(root, "epoch", json_integer((json_int_t)s->epoch)) == 0;
    ok = ok && json_object_set_new(root, "cursor", json_integer((json_int_t)s->cursor)) == 0;
    ok = ok && json_object_set_new(root, "world_size", json_integer(s->world_size)) == 0;
    ok = ok && json_object_set_new(root, "lr", graft_json_real_or_null(s->lr)) == 0;
    graft_json_hex64_text(hex, s->config_digest);
    ok = ok && json_object_set_new(root, "config_digest", json_string(hex)) == 0;
    if (s->nonfinite_in_a_row > 0)
        ok = ok && json_object_set_new(root, "nonfinite_in_a_row",
                                       json_integer((json_int_t)s->nonfinite_in_a_row)) == 0;
    ok = ok && json_object_set_new(root, "version", json_string(GRAFT_VERSION)) == 0;
    if (o) {
        json_t *opt = json_object();
        ok = ok && json_object_set_new(root, "optimizer", opt) == 0;
        ok = ok &&
             json_object_set_new(opt, "kind", json_string(graft_optim_kind_name(o->cfg.kind))) == 0;
        ok = ok && json_object_set_new(opt, "step", json_integer((json_int_t)o->step)) == 0;
    } else {
        ok = ok && json_object_set_new(root, "optimizer", json_null()) == 0;
    }
    if (frozen && frozen->present) {
        json_t *fz = json_object();
        ok = ok && json_object_set_new(root, "frozen", fz) == 0;
        graft_json_hex64_text(hex, frozen->xxh64);
        ok = ok && json_object_set_new(fz, "file", json_string(frozen->file)) == 0;
        ok = ok && json_object_set_new(fz, "bytes", json_integer((json_int_t)frozen->bytes)) == 0;
        ok = ok && json_object_set_new(fz, "xxh64", json_string(hex)) == 0;
    } else {
        ok = ok && json_object_set_new(root, "frozen", json_null()) == 0;
    }
    char *text = ok ? graft_json_dumps_line(root, JSON_SORT_KEYS | JSON_INDENT(2), NULL) : NULL;
    json_decref(root);
    return text;
}

void ckpt_info_free(ckpt_info *info) {
    if (!info) return;
    graft_ckpt_state_free(&info->state);
}

graft_status ckpt_parse_state(const char *ckpt_dir, const char *text, ckpt_info *info,
                              graft_log_level level) {
    memset(info, 0, sizeof *info);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        graft_log(level, __func__, "%s: state.json: not valid JSON (line %d: %s)", ckpt_dir,
                  jerr.line, jerr.text);
        return GRAFT_ERR_FORMAT;
    }
    const char *bad = NULL;
    long long v;
    graft_ckpt_state *s = &info->state;
    if (!json_is_object(root))
        bad = "expected a JSON object";
    else if (!graft_json_get_int(root, "step", 0, LLONG_MAX, &v))
        bad = "'step' is missing or not an integer >= 0";
    if (!bad) s->step = (long)v;
    if (!bad && !graft_json_get_int(root, "epoch", 0, LLONG_MAX, &v))
        bad = "'epoch' is missing or not an integer >= 0";
    if (!bad) s->epoch = (long)v;
    if (!bad && !graft_json_get_int(root, "cursor", 0, LLONG_MAX, &v))
        bad = "'cursor' is missing or not an integer >= 0";
    if (!bad) s->cursor = (uint64_t)v;
    if (!bad && !graft_json_get_int(root, "world_size", 1, 1000000, &v))
        bad = "'world_size' is missing or not an integer >= 1";
    if (!bad) s->world_size = (int)v;
    json_t *lr = bad ? NULL : json_object_get(root, "lr");
    if (!bad && !json_is_number(lr) && !json_is_null(lr)) bad = "'lr' is missing or not a number";
    if (!bad) s->lr = json_is_null(lr) ? NAN : json_number_value(lr);
    if (!bad && !graft_json_get_hex64(json_object_get(root, "config_digest"), &s->config_digest))
        bad = "'config_digest' is missing or not 16 hex digits";
    s->nonfinite_in_a_row = 0;
    if (!bad && json_object_get(root, "nonfinite_in_a_row")) {
        if (!graft_json_get_int(root, "nonfinite_in_a_row", 1, LONG_MAX, &v))
            bad = "'nonfinite_in_a_row' is not an integer >= 1";
        else
            s->nonfinite_in_a_row = (long)v;
    }
    const char *version = bad ? NULL : json_string_value(json_object_get(root, "version"));
    if (!bad && (!version || strlen(version) >= sizeof s->version))
        bad = "'version' is missing or not a short string";
    if (!bad) snprintf(s->version, sizeof s->version, "%s", version);

    json_t *rng = bad ? NULL : json_object_get(root, "rng_states");
    if (!bad && !json_is_array(rng)) bad = "'rng_states' is missing or not an array";
    size_t n_rng = bad ? 0 : json_array_size(rng);
    if (!bad && n_rng != 0 && n_rng != (size_t)s->world_size)
        bad = "'rng_states' must hold world_size entries";
    if (!bad && n_rng > 0) {
        s->rng_states = malloc(n_rng * sizeof *s->rng_states);
        if (!s->rng_states) bad = "out of memory";
        for (size_t i = 0; !bad && i < n_rng; i++)
            if (!graft_json_get_hex64(json_array_get(rng, i), &s->rng_states[i]))
                bad = "'rng_states' entries must be 16 hex digits";
    }

    json_t *opt = bad ? NULL : json_object_get(root, "optimizer");
    if (!bad && json_is_object(opt)) {
        const char *kind = json_string_value(json_object_get(opt, "kind"));
        if (kind && strcmp(kind, graft_optim_kind_name(GRAFT_OPTIM_SGD)) == 0)
            info->optim_kind = GRAFT_OPTIM_SGD;
        else if (kind && strcmp(kind, graft_optim_kind_name(GRAFT_OPTIM_ADAMW)) == 0)
            info->optim_kind = GRAFT_OPTIM_ADAMW;
        else
            bad = "'optimizer.kind' is missing or not sgd/adamw";
        if (!bad && !graft_json_get_int(opt, "step", 0, LLONG_MAX, &v))
            bad = "'optimizer.step' is missing or not an integer >= 0";
        if (!bad) {
            info->has_optim = 1;
            info->optim_step = (int64_t)v;
        }
    } else if (!bad && !json_is_null(opt)) {
        bad = "'optimizer' is missing or neither an object nor null";
    }

    json_t *fz = bad ? NULL : json_object_get(root, "frozen");
    if (!bad && json_is_object(fz)) {
        const char *file = json_string_value(json_object_get(fz, "file"));
        size_t len = file ? strlen(file) : 0;
        if (!file || !safe_file_name(file, len) || strncmp(file, "frozen-", 7) != 0)
            bad = "'frozen.file' is missing or not a frozen-*.safetensors name";
        else if (!graft_json_get_int(fz, "bytes", 0, LLONG_MAX, &v))
            bad = "'frozen.bytes' is missing or not an integer >= 0";
        else if (!graft_json_get_hex64(json_object_get(fz, "xxh64"), &info->frozen.xxh64))
            bad = "'frozen.xxh64' is missing or not 16 hex digits";
        if (!bad) {
            info->frozen.present = 1;
            info->frozen.bytes = (uint64_t)v;
            snprintf(info->frozen.file, sizeof info->frozen.file, "%s", file);
        }
    } else if (!bad && !json_is_null(fz)) {
        bad = "'frozen' is missing or neither an object nor null";
    }
    json_decref(root);
    if (bad) {
        graft_log(level, __func__, "%s: state.json: %s", ckpt_dir, bad);
        ckpt_info_free(info);
        memset(info, 0, sizeof *info);
        return GRAFT_ERR_FORMAT;
    }
    return GRAFT_OK;
}

graft_status ckpt_read_state(const char *ckpt_dir, ckpt_info *info, graft_log_level level) {
    memset(info, 0, sizeof *info);
    char path[CKPT_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, ckpt_dir, "state.json") != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    char *text;
    size_t len;
    graft_status rs = graft_fs_read(path, 1 << 24, &text, &len, level);
    if (rs != GRAFT_OK) return rs == GRAFT_ERR_IO && !graft_fs_exists(path) ? GRAFT_ERR_FORMAT : rs;
    graft_status st = GRAFT_ERR_FORMAT;
    if (strlen(text) != len)
        graft_log(level, __func__, "%s: state.json: holds a NUL byte", ckpt_dir);
    else
        st = ckpt_parse_state(ckpt_dir, text, info, level);
    free(text);
    return st;
}

typedef struct manifest_entry {
    char name[CKPT_NAME_MAX];
    uint64_t bytes;
    uint64_t xxh64;
} manifest_entry;

/* Parse the MANIFEST text of ckpt_dir: lines "<16 hex> <bytes> <name>\n". */
static graft_status parse_manifest(const char *ckpt_dir, const char *text, manifest_entry *entries,
                                   int *n, graft_log_level level) {
    *n = 0;
    int line_no = 0;
    const char *p = text;
    while (*p) {
        line_no++;
        const char *end = strchr(p, '\n');
        if (!end) {
            graft_log(level, __func__, "%s: MANIFEST line %d is cut short", ckpt_dir, line_no);
            return GRAFT_ERR_FORMAT;
        }
        const char *sp1 = p + 16, *digits = sp1 + 1, *sp2 = digits;
        while (sp2 < end && *sp2 >= '0' && *sp2 <= '9')
            sp2++;
        char hex[17];
        int ok = end - p > 19 && *sp1 == ' ' && sp2 > digits && sp2 - digits <= 20 && *sp2 == ' ';
        if (ok) {
            memcpy(hex, p, 16);
            hex[16] = '\0';
            ok = graft_json_parse_hex64(hex, &entries[*n].xxh64);
        }
        const char *name = sp2 + 1;
        if (ok) ok = safe_file_name(name, (size_t)(end - name));
        if (ok && *n == MANIFEST_MAX_ENTRIES) {
            graft_log(level, __func__, "%s: MANIFEST lists more than %d files", ckpt_dir,
                      MANIFEST_MAX_ENTRIES);
            return GRAFT_ERR_FORMAT;
        }
        if (ok) {
            errno = 0;
            unsigned long long bytes = strtoull(digits, NULL, 10);
            ok = errno == 0;
            entries[*n].bytes = bytes;
            memcpy(entries[*n].name, name, (size_t)(end - name));
            entries[*n].name[end - name] = '\0';
        }
        if (!ok) {
            graft_log(level, __func__, "%s: MANIFEST line %d is malformed", ckpt_dir, line_no);
            return GRAFT_ERR_FORMAT;
        }
        for (int k = 0; k < *n; k++)
            if (strcmp(entries[k].name, entries[*n].name) == 0) {
                graft_log(level, __func__, "%s: MANIFEST lists %s twice", ckpt_dir,
                          entries[k].name);
                return GRAFT_ERR_FORMAT;
            }
        (*n)++;
        p = end + 1;
    }
    return GRAFT_OK;
}

/* Compare a file of ckpt_dir (at path) with the size, then the xxh64, that source
 * records for it; label names it in the message. */
static graft_status check_size(const char *ckpt_dir, const char *path, const char *label,
                               uint64_t bytes, const char *source, graft_log_level level) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) {
            graft_log(level, __func__, "%s: %s is missing", ckpt_dir, label);
            return GRAFT_ERR_FORMAT;
        }
        graft_log(level, __func__, "%s: cannot stat %s: %s", ckpt_dir, label, strerror(errno));
        return GRAFT_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        graft_log(level, __func__, "%s: %s is not a regular file", ckpt_dir, label);
        return GRAFT_ERR_FORMAT;
    }
    if ((uint64_t)st.st_size != bytes) {
        graft_log(level, __func__, "%s: %s has %llu bytes, %s says %llu", ckpt_dir, label,
                  (unsigned long long)st.st_size, source, (unsigned long long)bytes);
        return GRAFT_ERR_FORMAT;
    }
    return GRAFT_OK;
}

static graft_status check_hash(const char *ckpt_dir, const char *path, const char *label,
                               uint64_t xxh64, graft_log_level level) {
    uint64_t h = 0, bytes = 0;
    GRAFT_TRY(graft_fs_xxh64(path, &h, &bytes, level));
    if (h != xxh64) {
        graft_log(level, __func__, "%s: %s checksum mismatch", ckpt_dir, label);
        return GRAFT_ERR_FORMAT;
    }
    return GRAFT_OK;
}

/* The last path component of dir (trailing slashes dropped) into out. */
static void base_name(char *out, size_t size, const char *dir) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    snprintf(out, size, "%.*s", (int)(len - start), dir + start);
}

/* The reason of the thread's last error, a line of runtime/io/fs ("PATH: cannot read:
 * REASON"): the text after its last ": ". */
static const char *last_reason(void) {
    const char *msg = graft_log_last_error(), *reason = msg;
    for (const char *p = msg; (p = strstr(p, ": ")) != NULL; p += 2)
        reason = p + 2;
    return reason;
}

graft_status ckpt_check(const char *ckpt_dir, ckpt_info *info_out, graft_log_level level) {
    if (info_out) memset(info_out, 0, sizeof *info_out);
    struct stat dst;
    if (stat(ckpt_dir, &dst) != 0) {
        graft_log(level, __func__, "%s: no such checkpoint directory", ckpt_dir);
        return GRAFT_ERR_NOT_FOUND;
    }
    if (!S_ISDIR(dst.st_mode)) {
        graft_log(level, __func__, "%s: not a checkpoint directory", ckpt_dir);
        return GRAFT_ERR_FORMAT;
    }
    char path[CKPT_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, ckpt_dir, "MANIFEST") != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    char *text;
    size_t len;
    graft_status rs = graft_fs_read(path, MANIFEST_MAX_BYTES, &text, &len, GRAFT_LOG_QUIET);
    if (rs != GRAFT_OK && !graft_fs_exists(path)) {
        graft_log(level, __func__, "%s: no MANIFEST (the save did not finish)", ckpt_dir);
        return GRAFT_ERR_FORMAT;
    }
    if (rs != GRAFT_OK) {
        graft_log(level, __func__, "%s: cannot read MANIFEST: %s", ckpt_dir, last_reason());
        return rs;
    }
    manifest_entry entries[MANIFEST_MAX_ENTRIES];
    int n = 0;
    graft_status st = GRAFT_ERR_FORMAT;
    if (strlen(text) != len)
        graft_log(level, __func__, "%s: MANIFEST holds a NUL byte", ckpt_dir);
    else
        st = parse_manifest(ckpt_dir, text, entries, &n, level);
    free(text);
    if (st != GRAFT_OK) return st;
    for (int f = 0; f < CKPT_N_FILES; f++) {
        int listed = 0;
        for (int k = 0; k < n; k++)
            listed |= strcmp(entries[k].name, ckpt_files[f]) == 0;
        if (!listed) {
            graft_log(level, __func__, "%s: MANIFEST does not list %s", ckpt_dir, ckpt_files[f]);
            return GRAFT_ERR_FORMAT;
        }
    }
    /* Sizes first (cheap, and a truncated file says so), then checksums. */
    for (int k = 0; k < n && st == GRAFT_OK; k++) {
        if (graft_fs_path_join(path, sizeof path, ckpt_dir, entries[k].name) != GRAFT_OK)
            return GRAFT_ERR_INVALID_ARG;
        st = check_size(ckpt_dir, path, entries[k].name, entries[k].bytes, "MANIFEST", level);
    }
    for (int k = 0; k < n && st == GRAFT_OK; k++) {
        graft_fs_path_join(path, sizeof path, ckpt_dir, entries[k].name);
        st = check_hash(ckpt_dir, path, entries[k].name, entries[k].xxh64, level);
    }
    if (st != GRAFT_OK) return st;

    ckpt_info info;
    GRAFT_TRY(ckpt_read_state(ckpt_dir, &info, level));
    char base[CKPT_PATH_MAX];
    long dir_step;
    base_name(base, sizeof base, ckpt_dir);
    if (ckpt_parse_step_name(base, &dir_step) && dir_step != info.state.step) {
        graft_log(level, __func__, "%s: state.json says step %ld, the directory name says %ld",
                  ckpt_dir, info.state.step, dir_step);
        st = GRAFT_ERR_FORMAT;
    }
    if (st == GRAFT_OK && info.frozen.present) {
        char root[CKPT_PATH_MAX];
        if (!graft_fs_parent(root, sizeof root, ckpt_dir)) {
            graft_log(level, __func__, "%s: path too long", ckpt_dir);
            st = GRAFT_ERR_INVALID_ARG;
        } else if (graft_fs_path_join(path, sizeof path, root, info.frozen.file) != GRAFT_OK) {
            st = GRAFT_ERR_INVALID_ARG;
        }
        if (st == GRAFT_OK) {
            char label[CKPT_PATH_MAX + 16];
            snprintf(label, sizeof label, "frozen file %s", path);
            st = check_size(ckpt_dir, path, label, info.frozen.bytes, "state.json", level);
            if (st == GRAFT_OK) st = check_hash(ckpt_dir, path, label, info.frozen.xxh64, level);
        }
    }
    if (st == GRAFT_OK && info_out)
        *info_out = info;
    else
        ckpt_info_free(&info);
    return st;
}

const char *ckpt_problem(const char *ckpt_dir) {
    const char *msg = graft_log_last_error();
    size_t n = strlen(ckpt_dir);
    return strncmp(msg, ckpt_dir, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}
