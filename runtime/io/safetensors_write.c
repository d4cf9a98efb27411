/* safetensors files: the writer (see safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"
#include "runtime/core/log.h"
#include "safetensors_internal.h"

/* ---- writer ---------------------------------------------------------------------------- */

void graft_st_writer_init(graft_st_writer *w) { memset(w, 0, sizeof *w); }

void graft_st_writer_free(graft_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_entries; i++)
        free(w->entries[i].name);
    free(w->entries);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

/* Shared body of the two add functions. */
static graft_status writer_add(const char *caller, graft_st_writer *w, const char *name,
                               graft_dtype dtype, int from_f32, int ndim, const int64_t *shape,
                               const void *data) {
    char nm[160];
    if (!w || !name) return GRAFT_ERR_INVALID_ARG;
    st_shown(name, nm, sizeof nm);
    size_t name_len = strlen(name);
    const char *bad_name = name_len == 0 ? "is empty"
                           : !st_utf8_valid((const unsigned char *)name, name_len, NULL)
                               ? "is not UTF-8"
                           : strcmp(name, "__metadata__") == 0 ? "is reserved"
                                                               : NULL;
    if (bad_name) {
        graft_log(GRAFT_LOG_ERROR, caller, "tensor name '%s' %s", nm, bad_name);
        return GRAFT_ERR_INVALID_ARG;
    }
    size_t esize = graft_dtype_size(dtype);
    if (esize == 0) {
        graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s': invalid dtype %d", nm, (int)dtype);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (ndim < 0 || ndim > GRAFT_ST_MAX_DIMS || (ndim > 0 && !shape)) {
        graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s': ndim %d outside 0..%d", nm, ndim,
                  GRAFT_ST_MAX_DIMS);
        return GRAFT_ERR_INVALID_ARG;
    }
    size_t numel = 1;
    int has_zero = 0, overflow = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s': dim %d is negative (%lld)", nm, d,
                      (long long)shape[d]);
            return GRAFT_ERR_INVALID_ARG;
        }
        if (shape[d] == 0)
            has_zero = 1;
        else if ((uint64_t)shape[d] > SIZE_MAX / numel)
            overflow = 1;
        else
            numel *= (size_t)shape[d];
    }
    if (has_zero) numel = 0, overflow = 0;
    /* Offsets are stored as JSON integers (int64), so keep every tensor well inside that. */
    if (overflow || numel > (SIZE_MAX >> 2) / esize) {
        graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s': too many elements", nm);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (!data && numel > 0) {
        graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s': data is NULL", nm);
        return GRAFT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < w->n_entries; i++) {
        if (strcmp(w->entries[i].name, name) == 0) {
            graft_log(GRAFT_LOG_ERROR, caller, "tensor '%s' added twice", nm);
            return GRAFT_ERR_INVALID_ARG;
        }
    }
    if (w->n_entries == w->cap_entries) {
        size_t cap = w->cap_entries ? 2 * w->cap_entries : 16;
        graft_st_write_entry *entries = realloc(w->entries, cap * sizeof *entries);
        if (!entries) return GRAFT_ERR_NOMEM;
        w->entries = entries;
        w->cap_entries = cap;
    }
    graft_st_write_entry *e = &w->entries[w->n_entries];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return GRAFT_ERR_NOMEM;
    e->dtype = dtype;
    e->from_f32 = from_f32;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        e->shape[d] = shape[d];
    e->numel = numel;
    e->data = data;
    w->n_entries++;
    return GRAFT_OK;
}

graft_status graft_st_writer_add(graft_st_writer *w, const char *name, graft_dtype dtype, int ndim,
                                 const int64_t *shape, const void *data) {
    return writer_add(__func__, w, name, dtype, 0, ndim, shape, data);
}

graft_status graft_st_writer_add_f32(graft_st_writer *w, const char *name, graft_dtype save_as,
                                     int ndim, const int64_t *shape, const float *data) {
    if (save_as != GRAFT_DTYPE_F32 && save_as != GRAFT_DTYPE_F16 && save_as != GRAFT_DTYPE_BF16) {
        char nm[160];
        GRAFT_ERROR("tensor '%s': fp32 data can be saved as F32, F16 or BF16, not %s",
                    name ? st_shown(name, nm, sizeof nm) : "(null)", graft_dtype_name(save_as));
        return GRAFT_ERR_INVALID_ARG;
    }
    return writer_add(__func__, w, name, save_as, save_as != GRAFT_DTYPE_F32, ndim, shape, data);
}

graft_status graft_st_writer_set_metadata(graft_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return GRAFT_ERR_INVALID_ARG;
    if (!st_utf8_valid((const unsigned char *)key, strlen(key), NULL) ||
        !st_utf8_valid((const unsigned char *)value, strlen(value), NULL)) {
        char nm[160];
        GRAFT_ERROR("metadata key '%s' or its value is not UTF-8", st_shown(key, nm, sizeof nm));
        return GRAFT_ERR_INVALID_ARG;
    }
    char *value_copy = strdup(value);
    if (!value_copy) return GRAFT_ERR_NOMEM;
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = value_copy;
            return GRAFT_OK;
        }
    }
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **keys = realloc(w->meta_keys, cap * sizeof *keys);
        if (keys) w->meta_keys = keys;
        char **values = keys ? realloc(w->meta_values, cap * sizeof *values) : NULL;
        if (values) w->meta_values = values;
        if (!keys || !values) {
            free(value_copy);
            return GRAFT_ERR_NOMEM;
        }
        w->cap_meta = cap;
    }
    char *key_copy = strdup(key);
    if (!key_copy) {
        free(value_copy);
        return GRAFT_ERR_NOMEM;
    }
    w->meta_keys[w->n_meta] = key_copy;
    w->meta_values[w->n_meta] = value_copy;
    w->n_meta++;
    return GRAFT_OK;
}

/* Data layout order: larger elements first (keeps every tensor aligned), then name. */
static int compare_for_layout(const void *a, const void *b) {
    const graft_st_write_entry *x = *(const graft_st_write_entry *const *)a;
    const graft_st_write_entry *y = *(const graft_st_write_entry *const *)b;
    size_t sx = graft_dtype_size(x->dtype), sy = graft_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The header JSON (sorted keys, compact, no padding) for entries in layout order.
 * Returns a malloc'd string or NULL when memory runs out. */
static char *build_header(const graft_st_writer *w, const graft_st_write_entry *const *order) {
    json_t *root = json_object();
    if (!root) return NULL;
    uint64_t pos = 0;
    int ok = 1;
    for (size_t i = 0; i < w->n_entries && ok; i++) {
        const graft_st_write_entry *e = order[i];
        uint64_t nbytes = (uint64_t)e->numel * graft_dtype_size(e->dtype);
        json_t *entry = json_object(), *shape = json_array(), *offsets = json_array();
        ok = entry && shape && offsets;
        for (int d = 0; ok && d < e->ndim; d++)
            ok = json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) == 0;
        ok = ok && json_array_append_new(offsets, json_integer((json_int_t)pos)) == 0 &&
             json_array_append_new(offsets,
                                   json_integer((json_int_t)pos + (json_int_t)nbytes)) == 0;
        ok =
            ok && json_object_set_new(entry, "dtype", json_string(graft_dtype_name(e->dtype))) == 0;
        ok = ok && json_object_set(entry, "shape", shape) == 0 &&
             json_object_set(entry, "data_offsets", offsets) == 0;
        ok = ok && json_object_set(root, e->name, entry) == 0;
        json_decref(shape);
        json_decref(offsets);
        json_decref(entry);
        pos += nbytes;
    }
    if (ok && w->n_meta > 0) {
        json_t *meta = json_object();
        ok = meta != NULL;
        for (size_t i = 0; ok && i < w->n_meta; i++)
            ok = json_object_set_new(meta, w->meta_keys[i], json_string(w->meta_values[i])) == 0;
        ok = ok && json_object_set(root, "__metadata__", meta) == 0;
        json_decref(meta);
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    return text;
}

/* Write one entry's bytes, converting fp32 sources to fp16/bf16 in chunks. */
static int write_entry_data(FILE *fp, const graft_st_write_entry *e) {
    if (e->numel == 0) return 1;
    if (!e->from_f32) {
        size_t nbytes = e->numel * graft_dtype_size(e->dtype);
        return fwrite(e->data, 1, nbytes, fp) == nbytes;
    }
    const float *src = e->data;
    unsigned char chunk[8192];
    size_t per_chunk = sizeof chunk / 2;
    for (size_t start = 0; start < e->numel; start += per_chunk) {
        size_t count = e->numel - start < per_chunk ? e->numel - start : per_chunk;
        for (size_t i = 0; i < count; i++) {
            uint16_t h = e->dtype == GRAFT_DTYPE_F16 ? graft_f32_to_f16(src[start + i])
                                                     : graft_f32_to_bf16(src[start + i]);
            chunk[2 * i] = (unsigned char)(h & 0xffu);
            chunk[2 * i + 1] = (unsigned char)(h >> 8);
        }
        /* cppcheck-suppress uninitvar ; the loop above wrote chunk[0 .. 2 * count) */
        if (fwrite(chunk, 2, count, fp) != count) return 0;
    }
    return 1;
}

graft_status graft_st_writer_save(const graft_st_writer *w, const char *path) {
    if (!w || !path || !*path) return GRAFT_ERR_INVALID_ARG;
    /* sizeof *p, p an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    const graft_st_write_entry **order = malloc((w->n_entries ? w->n_entries : 1) * sizeof *order);
    char *tmp = malloc(strlen(path) + 5);
    if (!order || !tmp) {
        free(order);
        free(tmp);
        GRAFT_ERROR("%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    snprintf(tmp, strlen(path) + 5, "%s.tmp", path);
    for (size_t i = 0; i < w->n_entries; i++)
        order[i] = &w->entries[i];
    /* sizeof *p, p an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    if (w->n_entries > 1) qsort(order, w->n_entries, sizeof *order, compare_for_layout);
    char *header = build_header(w, order);
    if (!header) {
        free(order);
        free(tmp);
        GRAFT_ERROR("%s: out of memory building the header", path);
        return GRAFT_ERR_NOMEM;
    }
    size_t header_len = strlen(header);
    size_t padded_len = (header_len + 7) & ~(size_t)7;

    /* On failure the log line reads "<path>: cannot <step> <target>: <errno text>". */
    const char *step = "create", *target = tmp;
    int err = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!fp) {
        err = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto done;
    }
    step = "write";
    unsigned char length_le[8];
    for (int i = 0; i < 8; i++)
        length_le[i] = (unsigned char)((uint64_t)padded_len >> (8 * i));
    int ok = fwrite(length_le, 1, 8, fp) == 8 && fwrite(header, 1, header_len, fp) == header_len;
    for (size_t i = header_len; ok && i < padded_len; i++)
        ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; ok && i < w->n_entries; i++)
        ok = write_entry_data(fp, order[i]);
    if (ok && fflush(fp) != 0) ok = 0;
    if (ok && fsync(fileno(fp)) != 0) step = "fsync", ok = 0;
    if (!ok) err = errno;
    if (fclose(fp) != 0 && ok) {
        err = errno;
        step = "close";
        ok = 0;
    }
    if (ok && rename(tmp, path) != 0) {
        err = errno;
        step = "rename";
        ok = 0;
    }
    if (!ok) {
        unlink(tmp);
        if (err == 0) err = EIO;
        goto done;
    }
    free(header);
    free(order);
    free(tmp);
    return graft_fs_fsync_parent(path, GRAFT_LOG_ERROR);
done:
    if (err != 0) GRAFT_ERROR("%s: cannot %s %s: %s", path, step, target, strerror(err));
    free(header);
    free(order);
    free(tmp);
    return err == 0 ? GRAFT_OK : GRAFT_ERR_IO;
}
