/* Opening a dataset directory: index.json validated field by field, every shard
 * checked against it (size, checksum, tensors, counts, label / token ranges) and
 * memory-mapped. Each problem is one error line naming the file. */
#include "dataset.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"

/* The limits, shared with the writer (dataset_internal.h). */
#define INDEX_MAX_BYTES GRAFT_DATA_INDEX_MAX_BYTES
#define MAX_SHARDS GRAFT_DATA_MAX_SHARDS
#define MAX_COUNT GRAFT_DATA_MAX_COUNT
#define MAX_CLASSES GRAFT_DATA_MAX_CLASSES
#define MAX_SIDE GRAFT_DATA_MAX_SIDE
#define MAX_SEQ_LEN GRAFT_DATA_MAX_SEQ_LEN

graft_status graft_data_file_xxh64(const char *path, uint64_t *out) {
    uint64_t bytes;
    return graft_fs_xxh64(path, out, &bytes, GRAFT_LOG_ERROR);
}

/* "normalize": {"mean": [C numbers], "std": [C positive numbers]} (optional). */
static graft_status parse_normalize(const char *ipath, const json_t *root, graft_dataset *d) {
    for (int c = 0; c < GRAFT_DATASET_MAX_CHANNELS; c++) {
        d->mean[c] = 0.0f;
        d->std[c] = 1.0f;
    }
    json_t *norm = json_object_get(root, "normalize");
    if (!norm) return GRAFT_OK;
    char text[64];
    if (!json_is_object(norm)) {
        GRAFT_ERROR("%s: \"normalize\" must be an object {\"mean\": [...], \"std\": [...]}, got %s",
                    ipath, graft_json_text(norm, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    const char *keys[2] = {"mean", "std"};
    float *dst[2] = {d->mean, d->std};
    for (int k = 0; k < 2; k++) {
        json_t *arr = json_object_get(norm, keys[k]);
        if (!json_is_array(arr) || json_array_size(arr) != (size_t)d->channels) {
            GRAFT_ERROR(
                "%s: \"normalize.%s\" must be an array of %d numbers (one per channel), got %s",
                ipath, keys[k], d->channels, graft_json_text(arr, text, sizeof text));
            return GRAFT_ERR_FORMAT;
        }
        for (int c = 0; c < d->channels; c++) {
            json_t *v = json_array_get(arr, (size_t)c);
            double x = json_is_number(v) ? json_number_value(v) : NAN;
            if (!isfinite(x) || (k == 1 && !(x > 0))) {
                GRAFT_ERROR("%s: \"normalize.%s[%d]\" must be a %snumber, got %s", ipath, keys[k],
                            c, k == 1 ? "positive " : "", graft_json_text(v, text, sizeof text));
                return GRAFT_ERR_FORMAT;
            }
            dst[k][c] = (float)x;
        }
    }
    return GRAFT_OK;
}

/* "num_samples", "num_classes" and the optional "class_names" (images, sequences). */
static graft_status parse_samples_and_classes(const char *ipath, const json_t *root,
                                              graft_dataset *d) {
    char text[64];
    long long v;
    GRAFT_TRY(graft_json_int(ipath, root, "num_samples", NULL, 1, MAX_COUNT, &v));
    d->num_samples = (size_t)v;
    GRAFT_TRY(graft_json_int(ipath, root, "num_classes", NULL, 1, MAX_CLASSES, &v));
    d->num_classes = (int)v;
    d->class_counts = calloc((size_t)d->num_classes, sizeof(size_t));
    if (!d->class_counts) return GRAFT_ERR_NOMEM;
    json_t *names = json_object_get(root, "class_names");
    if (!names) return GRAFT_OK;
    if (!json_is_array(names) || json_array_size(names) != (size_t)d->num_classes) {
        GRAFT_ERROR("%s: \"class_names\" must be an array of num_classes = %d strings, got %s",
                    ipath, d->num_classes, graft_json_text(names, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    d->class_names = calloc((size_t)d->num_classes, sizeof(char *));
    if (!d->class_names) return GRAFT_ERR_NOMEM;
    for (int c = 0; c < d->num_classes; c++) {
        json_t *s = json_array_get(names, (size_t)c);
        if (!json_is_string(s)) {
            GRAFT_ERROR("%s: \"class_names[%d]\" must be a string, got %s", ipath, c,
                        graft_json_text(s, text, sizeof text));
            return GRAFT_ERR_FORMAT;
        }
        d->class_names[c] = strdup(json_string_value(s));
        if (!d->class_names[c]) return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

/* The image-specific top-level fields. */
static graft_status parse_images_header(const char *ipath, const json_t *root, graft_dataset *d) {
    json_t *shape = json_object_get(root, "sample_shape");
    char text[64];
    int ok = json_is_array(shape) && json_array_size(shape) == 3;
    long long dims[3] = {0, 0, 0};
    for (int i = 0; ok && i < 3; i++) {
        json_t *v = json_array_get(shape, (size_t)i);
        ok = json_is_integer(v);
        if (ok) dims[i] = json_integer_value(v);
    }
    if (!ok || dims[0] < 1 || dims[0] > GRAFT_DATASET_MAX_CHANNELS || dims[1] < 1 ||
        dims[1] > MAX_SIDE || dims[2] < 1 || dims[2] > MAX_SIDE) {
        GRAFT_ERROR(
            "%s: \"sample_shape\" must be [C, H, W] with 1 <= C <= %d and 1 <= H, W <= %d, got %s",
            ipath, GRAFT_DATASET_MAX_CHANNELS, MAX_SIDE, graft_json_text(shape, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    d->channels = (int)dims[0];
    d->height = (int)dims[1];
    d->width = (int)dims[2];
    GRAFT_TRY(parse_samples_and_classes(ipath, root, d));
    GRAFT_TRY(parse_normalize(ipath, root, d));
    json_t *resize = json_object_get(root, "resize");
    if (!resize) return GRAFT_OK;
    const char *mode = json_string_value(resize);
    if (!mode || (strcmp(mode, "shorter") != 0 && strcmp(mode, "stretch") != 0)) {
        GRAFT_ERROR("%s: \"resize\" must be \"shorter\" or \"stretch\", got %s", ipath,
                    graft_json_text(resize, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    d->resize = strdup(mode);
    return d->resize ? GRAFT_OK : GRAFT_ERR_NOMEM;
}

/* "vocab_size" and "tokenizer" (tokens, sequences). */
static graft_status parse_vocabulary(const char *ipath, const json_t *root, graft_dataset *d) {
    long long v;
    GRAFT_TRY(graft_json_int(ipath, root, "vocab_size", NULL, 1, INT32_MAX, &v));
    d->vocab_size = (int)v;
    const char *tok;
    GRAFT_TRY(graft_json_string(ipath, root, "tokenizer", NULL, &tok));
    d->tokenizer = strdup(tok);
    if (!d->tokenizer) return GRAFT_ERR_NOMEM;
    d->mask_id = -1;
    if (json_object_get(root, "mask_id")) {
        GRAFT_TRY(graft_json_int(ipath, root, "mask_id", NULL, 0, d->vocab_size - 1, &v));
        d->mask_id = (int)v;
    }
    json_t *vocab = json_object_get(root, "vocab_file");
    if (!vocab) return GRAFT_OK;
    /* only the name the writer gives: the file is the dataset's own, never a path elsewhere */
    if (!json_is_string(vocab) || strcmp(json_string_value(vocab), GRAFT_DATASET_VOCAB_FILE) != 0) {
        char text[64];
        GRAFT_ERROR("%s: \"vocab_file\" must be \"%s\" (the vocabulary stored in the dataset), "
                    "got %s",
                    ipath, GRAFT_DATASET_VOCAB_FILE, graft_json_text(vocab, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    d->vocab_path = graft_fs_path_join_alloc(d->dir, GRAFT_DATASET_VOCAB_FILE);
    return d->vocab_path ? GRAFT_OK : GRAFT_ERR_NOMEM;
}

/* The token-specific top-level fields. */
static graft_status parse_tokens_header(const char *ipath, const json_t *root, graft_dataset *d) {
    long long v;
    GRAFT_TRY(graft_json_int(ipath, root, "num_tokens", NULL, 1, MAX_COUNT, &v));
    d->num_tokens = (size_t)v;
    return parse_vocabulary(ipath, root, d);
}

/* The sequence-specific top-level fields. */
static graft_status parse_sequences_header(const char *ipath, const json_t *root,
                                           graft_dataset *d) {
    json_t *shape = json_object_get(root, "sample_shape");
    json_t *len = json_array_size(shape) == 1 ? json_array_get(shape, 0) : NULL;
    char text[64];
    if (!json_is_array(shape) || !json_is_integer(len) || json_integer_value(len) < 1 ||
        json_integer_value(len) > MAX_SEQ_LEN) {
        GRAFT_ERROR("%s: \"sample_shape\" must be [T] with 1 <= T <= %d, got %s", ipath,
                    MAX_SEQ_LEN, graft_json_text(shape, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    d->seq_len = (int)json_integer_value(len);
    GRAFT_TRY(parse_samples_and_classes(ipath, root, d));
    GRAFT_TRY(parse_vocabulary(ipath, root, d));
    long long v;
    GRAFT_TRY(graft_json_int(ipath, root, "pad_id", NULL, 0, d->vocab_size - 1, &v));
    d->pad_id = (int)v;
    return GRAFT_OK;
}

static int is_plain_file_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20) return 0;
    return 1;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The "shards" array: names, counts, sizes, checksums, and that the counts add up. */
static graft_status parse_shard_list(const char *ipath, const json_t *root, graft_dataset *d) {
    json_t *shards = json_object_get(root, "shards");
    char text[64];
    if (!json_is_array(shards) || json_array_size(shards) == 0 ||
        json_array_size(shards) > MAX_SHARDS) {
        GRAFT_ERROR("%s: \"shards\" must be a non-empty array of at most %d entries, got %s", ipath,
                    MAX_SHARDS, graft_json_text(shards, text, sizeof text));
        return GRAFT_ERR_FORMAT;
    }
    int n = (int)json_array_size(shards);
    d->shard_first = calloc((size_t)n + 1, sizeof(size_t));
    d->shard_files = calloc((size_t)n, sizeof(char *));
    d->shard_bytes = calloc((size_t)n, sizeof(uint64_t));
    d->shard_xxh64 = calloc((size_t)n, sizeof *d->shard_xxh64);
    if (!d->shard_first || !d->shard_files || !d->shard_bytes || !d->shard_xxh64)
        return GRAFT_ERR_NOMEM;
    d->n_shards = n;
    int by_token = d->kind == GRAFT_DATA_TOKENS;
    const char *count_key = by_token ? "tokens" : "samples";
    const char *total_key = by_token ? "num_tokens" : "num_samples";
    size_t expected_total = by_token ? d->num_tokens : d->num_samples;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        json_t *s = json_array_get(shards, (size_t)i);
        char key[64];
        if (!json_is_object(s)) {
            GRAFT_ERROR("%s: \"shards[%d]\" must be an object, got %s", ipath, i,
                        graft_json_text(s, text, sizeof text));
            return GRAFT_ERR_FORMAT;
        }
        const char *file;
        snprintf(key, sizeof key, "shards[%d].file", i);
        GRAFT_TRY(graft_json_string(ipath, s, "file", key, &file));
        if (!is_plain_file_name(file)) {
            GRAFT_ERROR("%s: \"%s\" must be a plain file name inside the dataset directory, got %s",
                        ipath, key, graft_json_text(json_object_get(s, "file"), text, sizeof text));
            return GRAFT_ERR_FORMAT;
        }
        d->shard_files[i] = strdup(file);
        if (!d->shard_files[i]) return GRAFT_ERR_NOMEM;
        long long v;
        snprintf(key, sizeof key, "shards[%d].%s", i, count_key);
        GRAFT_TRY(graft_json_int(ipath, s, count_key, key, 1, MAX_COUNT, &v));
        d->shard_first[i] = total;
        total += (size_t)v; /* both below 2^48 and total checked below: no overflow */
        if (total > expected_total) {
            GRAFT_ERROR("%s: the first %d shards already hold %zu %s, more than \"%s\" = %zu",
                        ipath, i + 1, total, count_key, total_key, expected_total);
            return GRAFT_ERR_FORMAT;
        }
        snprintf(key, sizeof key, "shards[%d].bytes", i);
        GRAFT_TRY(graft_json_int(ipath, s, "bytes", key, 8, (long long)1 << 62, &v));
        d->shard_bytes[i] = (uint64_t)v;
        d->total_bytes += (uint64_t)v;
        int has_sum;
        uint64_t sum;
        snprintf(key, sizeof key, "shards[%d].xxh64", i);
        GRAFT_TRY(graft_json_hex64(ipath, s, "xxh64", key, &has_sum, &sum));
        if (has_sum) graft_json_hex64_text(d->shard_xxh64[i], sum);
    }
    d->shard_first[n] = total;
    if (total != expected_total) {
        GRAFT_ERROR("%s: the %d shards hold %zu %s in total, \"%s\" says %zu", ipath, n, total,
                    count_key, total_key, expected_total);
        return GRAFT_ERR_FORMAT;
    }
    char **sorted = malloc((size_t)n * sizeof(char *));
    if (!sorted) return GRAFT_ERR_NOMEM;
    memcpy(sorted, d->shard_files, (size_t)n * sizeof(char *));
    qsort(sorted, (size_t)n, sizeof(char *), compare_strings);
    for (int i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            GRAFT_ERROR("%s: shard '%s' is listed twice", ipath, sorted[i]);
            free(sorted);
            return GRAFT_ERR_FORMAT;
        }
    }
    free(sorted);
    return GRAFT_OK;
}

/* Read and validate index.json into d (everything except the shard files). */
static graft_status parse_index(const char *ipath, graft_dataset *d) {
    graft_status st;
    json_t *root = graft_json_load_file(ipath, INDEX_MAX_BYTES, &st);
    if (!root) return st;
    st = GRAFT_ERR_FORMAT;
    char text[64];
    const char *s;
    long long version;
    if (!json_is_object(root)) {
        GRAFT_ERROR("%s: not a graft dataset index (expected a JSON object, got %s)", ipath,
                    graft_json_text(root, text, sizeof text));
        goto done;
    }
    json_t *format = json_object_get(root, "format");
    if (!json_is_string(format) || strcmp(json_string_value(format), "graft-dataset") != 0) {
        GRAFT_ERROR("%s: not a graft dataset index (\"format\" is %s, expected \"graft-dataset\")",
                    ipath, graft_json_text(format, text, sizeof text));
        goto done;
    }
    json_t *ver = json_object_get(root, "version");
    version = json_is_integer(ver) ? json_integer_value(ver) : -1;
    if (version != 1) {
        GRAFT_ERROR("%s: unsupported version %s (this graft reads version 1)", ipath,
                    graft_json_text(ver, text, sizeof text));
        goto done;
    }
    if ((st = graft_json_string(ipath, root, "kind", NULL, &s)) != GRAFT_OK) goto done;
    if (strcmp(s, "images") == 0) {
        d->kind = GRAFT_DATA_IMAGES;
    } else if (strcmp(s, "tokens") == 0) {
        d->kind = GRAFT_DATA_TOKENS;
    } else if (strcmp(s, "sequences") == 0) {
        d->kind = GRAFT_DATA_SEQUENCES;
    } else {
        GRAFT_ERROR("%s: \"kind\" must be \"images\", \"tokens\" or \"sequences\", got %s", ipath,
                    graft_json_text(json_object_get(root, "kind"), text, sizeof text));
        st = GRAFT_ERR_FORMAT;
        goto done;
    }
    json_t *desc = json_object_get(root, "description");
    if (json_is_string(desc) && !(d->description = strdup(json_string_value(desc)))) {
        st = GRAFT_ERR_NOMEM;
        goto done;
    }
    st = d->kind == GRAFT_DATA_IMAGES   ? parse_images_header(ipath, root, d)
         : d->kind == GRAFT_DATA_TOKENS ? parse_tokens_header(ipath, root, d)
                                        : parse_sequences_header(ipath, root, d);
    if (st == GRAFT_OK) st = parse_shard_list(ipath, root, d);
done:
    json_decref(root);
    return st;
}

static const char *dims_text(char *buf, size_t cap, const graft_st_tensor *t) {
    return graft_format_shape(buf, cap, t->ndim, t->shape);
}

/* Check one tensor's presence, dtype and ndim; logs and returns FORMAT on a problem. */
static const graft_st_tensor *find_tensor(const char *path, const graft_st_file *f,
                                          const char *name, int ndim, graft_dtype want1,
                                          graft_dtype want2) {
    const graft_st_tensor *t = graft_st_find(f, name);
    char shape[160];
    if (!t) {
        GRAFT_ERROR("%s: no tensor '%s'", path, name);
        return NULL;
    }
    if (t->dtype != want1 && t->dtype != want2) {
        if (want1 == want2)
            GRAFT_ERROR("%s: tensor '%s' is %s, expected %s", path, name,
                        graft_dtype_name(t->dtype), graft_dtype_name(want1));
        else
            GRAFT_ERROR("%s: tensor '%s' is %s, expected %s or %s", path, name,
                        graft_dtype_name(t->dtype), graft_dtype_name(want1),
                        graft_dtype_name(want2));
        return NULL;
    }
    if (t->ndim != ndim) {
        GRAFT_ERROR("%s: tensor '%s' has shape %s, expected %d dimensions", path, name,
                    dims_text(shape, sizeof shape, t), ndim);
        return NULL;
    }
    return t;
}

/* A shard's "labels": I64 [expect] (as many as the samples of `samples_tensor`), each in
 * [0, num_classes); counted into class_counts. */
static graft_status check_labels(const char *path, graft_dataset *d, int i, size_t expect,
                                 const char *samples_tensor) {
    const graft_st_tensor *lab =
        find_tensor(path, &d->shards[i], "labels", 1, GRAFT_DTYPE_I64, GRAFT_DTYPE_I64);
    if (!lab) return GRAFT_ERR_FORMAT;
    if ((uint64_t)lab->shape[0] != expect) {
        GRAFT_ERROR("%s: tensor 'labels' has %lld entries, '%s' has %zu samples", path,
                    (long long)lab->shape[0], samples_tensor, expect);
        return GRAFT_ERR_FORMAT;
    }
    const unsigned char *bytes = lab->data;
    for (size_t k = 0; k < expect; k++) {
        int64_t label;
        memcpy(&label, bytes + 8 * k, 8);
        if (label < 0 || label >= d->num_classes) {
            GRAFT_ERROR("%s: label %lld at sample %zu is outside [0, %d)", path, (long long)label,
                        k, d->num_classes);
            return GRAFT_ERR_FORMAT;
        }
        d->class_counts[label]++;
    }
    d->views[i].labels = lab->data;
    return GRAFT_OK;
}

/* The first of the n ids of t (U16 or I32) outside [0, vocab): its position, and its
 * value in *id; n when every id is in range. */
static size_t first_bad_id(const graft_st_tensor *t, size_t n, int vocab, int64_t *id) {
    const unsigned char *bytes = t->data;
    for (size_t k = 0; k < n; k++) {
        if (t->dtype == GRAFT_DTYPE_U16) {
            uint16_t v;
            memcpy(&v, bytes + 2 * k, 2);
            *id = v;
        } else {
            int32_t v;
            memcpy(&v, bytes + 4 * k, 4);
            *id = v;
        }
        if (*id < 0 || *id >= vocab) return k;
    }
    return n;
}

/* Validate an image shard's tensors against the index and scan its labels. */
static graft_status check_image_shard(const char *path, graft_dataset *d, int i) {
    const graft_st_file *f = &d->shards[i];
    size_t expect = d->shard_first[i + 1] - d->shard_first[i];
    char shape[160];
    const graft_st_tensor *in = find_tensor(path, f, "inputs", 4, GRAFT_DTYPE_U8, GRAFT_DTYPE_U8);
    if (!in) return GRAFT_ERR_FORMAT;
    if (in->shape[1] != d->channels || in->shape[2] != d->height || in->shape[3] != d->width) {
        GRAFT_ERROR("%s: tensor 'inputs' has shape %s, index.json says samples are [%d, %d, %d]",
                    path, dims_text(shape, sizeof shape, in), d->channels, d->height, d->width);
        return GRAFT_ERR_FORMAT;
    }
    if ((uint64_t)in->shape[0] != expect) {
        GRAFT_ERROR("%s: holds %lld samples, index.json says %zu", path, (long long)in->shape[0],
                    expect);
        return GRAFT_ERR_FORMAT;
    }
    GRAFT_TRY(check_labels(path, d, i, expect, "inputs"));
    d->views[i].inputs = in->data;
    return GRAFT_OK;
}

/* Validate a token shard's tensor against the index and scan its ids. */
static graft_status check_token_shard(const char *path, graft_dataset *d, int i) {
    const graft_st_file *f = &d->shards[i];
    size_t expect = d->shard_first[i + 1] - d->shard_first[i];
    const graft_st_tensor *t = find_tensor(path, f, "tokens", 1, GRAFT_DTYPE_U16, GRAFT_DTYPE_I32);
    if (!t) return GRAFT_ERR_FORMAT;
    if ((uint64_t)t->shape[0] != expect) {
        GRAFT_ERROR("%s: holds %lld tokens, index.json says %zu", path, (long long)t->shape[0],
                    expect);
        return GRAFT_ERR_FORMAT;
    }
    int64_t id;
    size_t k = first_bad_id(t, expect, d->vocab_size, &id);
    if (k < expect) {
        GRAFT_ERROR("%s: token %lld at position %zu is outside [0, %d)", path, (long long)id, k,
                    d->vocab_size);
        return GRAFT_ERR_FORMAT;
    }
    if (i == 0) d->token_dtype = t->dtype;
    d->views[i].tokens = t->data;
    d->views[i].token_bytes = (int)graft_dtype_size(t->dtype);
    return GRAFT_OK;
}

/* Validate a sequence shard's tensors against the index and scan its ids and labels. */
static graft_status check_sequence_shard(const char *path, graft_dataset *d, int i) {
    const graft_st_file *f = &d->shards[i];
    size_t expect = d->shard_first[i + 1] - d->shard_first[i];
    char shape[160];
    const graft_st_tensor *t = find_tensor(path, f, "tokens", 2, GRAFT_DTYPE_U16, GRAFT_DTYPE_I32);
    if (!t) return GRAFT_ERR_FORMAT;
    if (t->shape[1] != d->seq_len) {
        GRAFT_ERROR("%s: tensor 'tokens' has shape %s, index.json says samples are [%d]", path,
                    dims_text(shape, sizeof shape, t), d->seq_len);
        return GRAFT_ERR_FORMAT;
    }
    if ((uint64_t)t->shape[0] != expect) {
        GRAFT_ERROR("%s: holds %lld samples, index.json says %zu", path, (long long)t->shape[0],
                    expect);
        return GRAFT_ERR_FORMAT;
    }
    int64_t id;
    size_t T = (size_t)d->seq_len, k = first_bad_id(t, expect * T, d->vocab_size, &id);
    if (k < expect * T) {
        GRAFT_ERROR("%s: token %lld at sample %zu, position %zu is outside [0, %d)", path,
                    (long long)id, k / T, k % T, d->vocab_size);
        return GRAFT_ERR_FORMAT;
    }
    GRAFT_TRY(check_labels(path, d, i, expect, "tokens"));
    if (i == 0) d->token_dtype = t->dtype;
    d->views[i].tokens = t->data;
    d->views[i].token_bytes = (int)graft_dtype_size(t->dtype);
    return GRAFT_OK;
}

/* Shard i: present, right size, right checksum (when asked), valid safetensors with
 * the tensors the index promises. */
static graft_status open_shard(graft_dataset *d, const char *ipath, int i, int verify) {
    char *path = graft_fs_path_join_alloc(d->dir, d->shard_files[i]);
    if (!path) return GRAFT_ERR_NOMEM;
    graft_status st = GRAFT_ERR_FORMAT;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        GRAFT_ERROR("%s: shard '%s' is missing: %s", ipath, d->shard_files[i], strerror(errno));
        st = GRAFT_ERR_IO;
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        GRAFT_ERROR("%s: cannot read: not a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size != d->shard_bytes[i]) {
        GRAFT_ERROR("%s: file is %llu bytes, index.json says %llu%s", path,
                    (unsigned long long)sb.st_size, (unsigned long long)d->shard_bytes[i],
                    (uint64_t)sb.st_size < d->shard_bytes[i] ? " (truncated)" : "");
        goto done;
    }
    if (verify && d->shard_xxh64[i][0]) {
        uint64_t sum;
        if ((st = graft_data_file_xxh64(path, &sum)) != GRAFT_OK) goto done;
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sum);
        if (strcmp(hex, d->shard_xxh64[i]) != 0) {
            GRAFT_ERROR("%s: checksum mismatch (index.json says %s, file has %s)", path,
                        d->shard_xxh64[i], hex);
            st = GRAFT_ERR_FORMAT;
            goto done;
        }
        d->n_verified++;
    }
    if ((st = graft_st_open(&d->shards[i], path)) != GRAFT_OK) goto done;
    st = d->kind == GRAFT_DATA_IMAGES   ? check_image_shard(path, d, i)
         : d->kind == GRAFT_DATA_TOKENS ? check_token_shard(path, d, i)
                                        : check_sequence_shard(path, d, i);
done:
    free(path);
    return st;
}

graft_status graft_dataset_open(graft_dataset *d, const char *dir, int verify_checksums) {
    memset(d, 0, sizeof *d);
    if (!dir || !*dir) {
        GRAFT_ERROR("no dataset directory given");
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.dir = strdup(dir);
    char *ipath = graft_fs_path_join_alloc(dir, "index.json");
    graft_status st = GRAFT_ERR_NOMEM;
    if (!ds.dir || !ipath) goto done;
    if ((st = parse_index(ipath, &ds)) != GRAFT_OK) goto done;
    /* parse_index accepted n_shards >= 1; the analyzer cannot see that a failed load (in
     * another file) never returns GRAFT_OK.
     * NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
    ds.shards = calloc((size_t)ds.n_shards, sizeof(graft_st_file));
    ds.views = calloc((size_t)ds.n_shards, sizeof(graft_dataset_shard));
    st = GRAFT_ERR_NOMEM;
    if (!ds.shards || !ds.views) goto done;
    for (int i = 0; i < ds.n_shards; i++)
        if ((st = open_shard(&ds, ipath, i, verify_checksums)) != GRAFT_OK) goto done;
    st = GRAFT_OK;
done:
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory opening the dataset", dir);
    free(ipath);
    if (st != GRAFT_OK) {
        graft_dataset_close(&ds);
        return st;
    }
    *d = ds;
    return GRAFT_OK;
}

void graft_dataset_close(graft_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n_shards; i++) {
        if (d->shards) graft_st_close(&d->shards[i]);
        if (d->shard_files) free(d->shard_files[i]);
    }
    if (d->class_names)
        for (int c = 0; c < d->num_classes; c++)
            free(d->class_names[c]);
    free(d->class_names);
    free(d->class_counts);
    free(d->shards);
    free(d->views);
    free(d->shard_first);
    free(d->shard_files);
    free(d->shard_bytes);
    free(d->shard_xxh64);
    free(d->tokenizer);
    free(d->vocab_path);
    free(d->resize);
    free(d->description);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

int graft_dataset_find_shard(const graft_dataset *d, size_t item) {
    int lo = 0, hi = d->n_shards - 1; /* the last shard whose first item is <= item */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (d->shard_first[mid] <= item)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Label of sample k of shard s (images, sequences). */
static int label_at(const graft_dataset *d, int s, size_t k) {
    int64_t v;
    memcpy(&v, d->views[s].labels + 8 * k, 8);
    return (int)v;
}

const char *graft_dataset_kind_name(graft_data_kind kind) {
    return kind == GRAFT_DATA_IMAGES   ? "images"
           : kind == GRAFT_DATA_TOKENS ? "tokens"
                                       : "sequences";
}

const uint8_t *graft_dataset_image_raw(const graft_dataset *d, size_t i, int *label) {
    GRAFT_ASSERT(d->kind == GRAFT_DATA_IMAGES && i < d->num_samples);
    int s = graft_dataset_find_shard(d, i);
    size_t k = i - d->shard_first[s];
    if (label) *label = label_at(d, s, k);
    size_t sample_bytes = (size_t)d->channels * (size_t)d->height * (size_t)d->width;
    return d->views[s].inputs + k * sample_bytes;
}

int graft_dataset_image(const graft_dataset *d, size_t i, float *dst) {
    int label;
    const uint8_t *src = graft_dataset_image_raw(d, i, &label);
    size_t plane = (size_t)d->height * (size_t)d->width;
    for (int c = 0; c < d->channels; c++)
        for (size_t p = 0; p < plane; p++)
            dst[(size_t)c * plane + p] =
                graft_data_normalize(src[(size_t)c * plane + p], d->mean[c], d->std[c]);
    return label;
}

void graft_dataset_tokens(const graft_dataset *d, size_t start, size_t count, int32_t *dst) {
    GRAFT_ASSERT(d->kind == GRAFT_DATA_TOKENS && start <= d->num_tokens &&
                 count <= d->num_tokens - start);
    size_t done = 0;
    while (done < count) {
        size_t pos = start + done;
        int s = graft_dataset_find_shard(d, pos);
        size_t k = pos - d->shard_first[s];
        size_t take = d->shard_first[s + 1] - pos;
        if (take > count - done) take = count - done;
        const unsigned char *src = d->views[s].tokens;
        if (d->views[s].token_bytes == 2) {
            for (size_t j = 0; j < take; j++) {
                uint16_t v;
                memcpy(&v, src + 2 * (k + j), 2);
                dst[done + j] = v;
            }
        } else {
            memcpy(dst + done, src + 4 * k, 4 * take);
        }
        done += take;
    }
}

int graft_dataset_sequence(const graft_dataset *d, size_t i, int32_t *dst) {
    GRAFT_ASSERT(d->kind == GRAFT_DATA_SEQUENCES && i < d->num_samples);
    int s = graft_dataset_find_shard(d, i);
    size_t k = i - d->shard_first[s], T = (size_t)d->seq_len;
    const unsigned char *src = d->views[s].tokens;
    if (d->views[s].token_bytes == 2) {
        src += 2 * k * T;
        for (size_t j = 0; j < T; j++) {
            uint16_t v;
            memcpy(&v, src + 2 * j, 2);
            dst[j] = v;
        }
    } else {
        memcpy(dst, src + 4 * k * T, 4 * T);
    }
    return label_at(d, s, k);
}
