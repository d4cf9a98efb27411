/* Writing a dataset directory: samples are buffered into shards, each shard saved
 * with graft_st_writer (itself atomic) into DIR.tmp and checksummed, index.json
 * written last (tmp + fsync + rename), then DIR.tmp moved to DIR.
 *
 * Replacing an existing dataset: the new one is complete in DIR.tmp before DIR is
 * touched. On Linux renameat2(RENAME_EXCHANGE) swaps DIR.tmp and DIR in one atomic
 * step; where the file system refuses that, DIR is renamed to DIR.old and DIR.tmp to
 * DIR (a crash between those two renames leaves no DIR, but both complete datasets in
 * DIR.old and DIR.tmp). The old dataset is then deleted — only files named like
 * dataset files, so a directory holding anything else is never replaced.
 * (renameat2 needs _GNU_SOURCE, which the build defines for every file.) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "dataset_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"

typedef struct written_shard {
    char file[32];
    size_t count;
    uint64_t bytes;
    uint64_t xxh64;
} written_shard;

struct graft_dataset_writer {
    graft_data_kind kind;
    char *dir, *tmp_dir;
    int finished;
    int created_tmp; /* DIR.tmp is ours to remove if we do not finish */
    size_t shard_size;
    char *description;
    /* images */
    int channels, height, width;
    /* images, sequences */
    int num_classes;
    char **class_names;
    uint64_t pixel_sum[GRAFT_DATASET_MAX_CHANNELS], pixel_sumsq[GRAFT_DATASET_MAX_CHANNELS];
    int have_normalize;
    float mean[GRAFT_DATASET_MAX_CHANNELS], std[GRAFT_DATASET_MAX_CHANNELS];
    const char *resize; /* "shorter", "stretch" or NULL (a static string) */
    /* tokens, sequences */
    char *tokenizer;
    int vocab_size;
    int mask_id, has_mask_id;
    char *vocab;       /* a copy of the tokenizer's vocab.txt to store beside the shards, or NULL */
    size_t vocab_len;
    /* sequences */
    int seq_len, pad_id;
    /* the shard being filled: items (images, sequences: samples; tokens: tokens) */
    uint8_t *inputs;
    int64_t *labels;
    int32_t *tokens; /* tokens: [items]; sequences: [items, seq_len] */
    size_t in_shard, buf_cap;
    /* totals */
    size_t count;
    written_shard *shards;
    int n_shards, cap_shards;
};

/* Names the writer itself creates: index.json, vocab.txt, shard-*.safetensors and their
 * .tmp. */
static int is_dataset_file_name(const char *name) {
    if (strcmp(name, "index.json") == 0 || strcmp(name, "index.json.tmp") == 0) return 1;
    if (strcmp(name, GRAFT_DATASET_VOCAB_FILE) == 0 ||
        strcmp(name, GRAFT_DATASET_VOCAB_FILE ".tmp") == 0)
        return 1;
    size_t n = strlen(name);
    if (strncmp(name, "shard-", 6) != 0) return 0;
    if (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) return 1;
    return n > 16 && strcmp(name + n - 16, ".safetensors.tmp") == 0;
}

typedef enum { TARGET_ABSENT, TARGET_EMPTY, TARGET_DATASET, TARGET_REFUSED } target_state;

/* What is at `path` now: nothing, an empty directory, a previous graft dataset (only
 * dataset files, and — unless allow_no_index — an index.json with the right format),
 * or something we must not touch (logged). */
static target_state inspect_target(const char *path, int allow_no_index) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return TARGET_ABSENT;
        GRAFT_ERROR("%s: cannot stat: %s", path, strerror(errno));
        return TARGET_REFUSED;
    }
    if (!S_ISDIR(sb.st_mode)) {
        GRAFT_ERROR("%s: exists and is not a directory; refusing to write a dataset there", path);
        return TARGET_REFUSED;
    }
    DIR *dp = opendir(path);
    if (!dp) {
        GRAFT_ERROR("%s: cannot open directory: %s", path, strerror(errno));
        return TARGET_REFUSED;
    }
    int entries = 0, has_index = 0;
    char foreign[256] = "";
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        entries++;
        if (strcmp(e->d_name, "index.json") == 0) has_index = 1;
        if (!is_dataset_file_name(e->d_name) && !foreign[0])
            snprintf(foreign, sizeof foreign, "%s", e->d_name);
    }
    closedir(dp);
    if (entries == 0) return TARGET_EMPTY;
    if (foreign[0]) {
        GRAFT_ERROR("%s: exists and holds '%s', which is not part of a graft dataset; refusing to "
                    "replace it",
                    path, foreign);
        return TARGET_REFUSED;
    }
    if (allow_no_index) return TARGET_DATASET;
    char *ipath = graft_fs_path_join_alloc(path, "index.json");
    json_t *root = (has_index && ipath) ? graft_json_try_load_file(ipath, 0) : NULL;
    json_t *format = root ? json_object_get(root, "format") : NULL;
    int ours = json_is_string(format) && strcmp(json_string_value(format), "graft-dataset") == 0;
    json_decref(root);
    free(ipath);
    if (!ours) {
        GRAFT_ERROR("%s: exists, is not empty and is not a graft dataset (no valid index.json); "
                    "refusing to replace it",
                    path);
        return TARGET_REFUSED;
    }
    return TARGET_DATASET;
}

/* Delete the dataset files in `path`, then the directory itself. */
static void remove_dataset_dir(const char *path) {
    DIR *dp = opendir(path);
    if (!dp) return;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (!is_dataset_file_name(e->d_name)) continue;
        char *file = graft_fs_path_join_alloc(path, e->d_name);
        if (file) unlink(file);
        free(file);
    }
    closedir(dp);
    if (rmdir(path) != 0) GRAFT_WARN("%s: could not remove: %s", path, strerror(errno));
}

/* Shared start of new_images / new_tokens / new_sequences: check DIR, prepare DIR.tmp. */
static graft_status writer_begin(graft_dataset_writer *w, const char *dir, size_t shard_size) {
    if (!dir || !*dir || shard_size == 0) {
        GRAFT_ERROR("%s: need a directory and a shard size > 0", dir ? dir : "(null)");
        return GRAFT_ERR_INVALID_ARG;
    }
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    w->dir = strndup(dir, len);
    w->tmp_dir = malloc(len + 5);
    if (!w->dir || !w->tmp_dir) return GRAFT_ERR_NOMEM;
    snprintf(w->tmp_dir, len + 5, "%s.tmp", w->dir);
    w->shard_size = shard_size;
    if (inspect_target(w->dir, 0) == TARGET_REFUSED) return GRAFT_ERR_IO;
    /* A DIR.tmp left by an interrupted run is ours to clear, if it holds only our files. */
    target_state t = inspect_target(w->tmp_dir, 1);
    if (t == TARGET_REFUSED) return GRAFT_ERR_IO;
    if (t != TARGET_ABSENT) remove_dataset_dir(w->tmp_dir);
    char parent[GRAFT_FS_PATH_MAX];
    if (!graft_fs_parent(parent, sizeof parent, w->tmp_dir)) {
        GRAFT_ERROR("%s: path too long", w->tmp_dir);
        return GRAFT_ERR_IO;
    }
    GRAFT_TRY(graft_fs_mkdirs(parent, GRAFT_LOG_ERROR));
    if (mkdir(w->tmp_dir, 0755) != 0) {
        GRAFT_ERROR("%s: cannot create: %s", w->tmp_dir, strerror(errno));
        return GRAFT_ERR_IO;
    }
    w->created_tmp = 1;
    return GRAFT_OK;
}

/* index.json holds text as JSON strings, which must be UTF-8 (jansson refuses the rest). */
static int is_utf8(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* Copy num_classes class names into w (none when names is NULL). */
static graft_status copy_class_names(graft_dataset_writer *w, const char *dir,
                                     const char *const *names) {
    if (!names) return GRAFT_OK;
    for (int c = 0; c < w->num_classes; c++)
        if (!is_utf8(names[c])) {
            GRAFT_ERROR("%s: the name of class %d is not valid UTF-8 (index.json cannot hold it)",
                        dir ? dir : "(null)", c);
            return GRAFT_ERR_INVALID_ARG;
        }
    w->class_names = calloc((size_t)w->num_classes, sizeof(char *));
    if (!w->class_names) return GRAFT_ERR_NOMEM;
    for (int c = 0; c < w->num_classes; c++)
        if (!(w->class_names[c] = strdup(names[c]))) return GRAFT_ERR_NOMEM;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_new_images(graft_dataset_writer **out, const char *dir,
                                             int channels, int height, int width, int num_classes,
                                             const char *const *class_names, size_t shard_size) {
    *out = NULL;
    if (channels < 1 || channels > GRAFT_DATASET_MAX_CHANNELS || height < 1 || width < 1 ||
        height > GRAFT_DATA_MAX_SIDE || width > GRAFT_DATA_MAX_SIDE || num_classes < 1 ||
        num_classes > GRAFT_DATA_MAX_CLASSES) {
        GRAFT_ERROR("%s: bad image dataset shape [%d, %d, %d] or num_classes %d (need 1 <= C <= "
                    "%d, 1 <= H, W <= %d, 1 <= num_classes <= %d)",
                    dir ? dir : "", channels, height, width, num_classes,
                    GRAFT_DATASET_MAX_CHANNELS, GRAFT_DATA_MAX_SIDE, GRAFT_DATA_MAX_CLASSES);
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_dataset_writer *w = calloc(1, sizeof *w);
    if (!w) return GRAFT_ERR_NOMEM;
    w->kind = GRAFT_DATA_IMAGES;
    w->channels = channels;
    w->height = height;
    w->width = width;
    w->num_classes = num_classes;
    graft_status st = copy_class_names(w, dir, class_names);
    if (st == GRAFT_OK) st = writer_begin(w, dir, shard_size);
    if (st != GRAFT_OK) {
        if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory", dir ? dir : "(null)");
        graft_dataset_writer_free(w);
        return st;
    }
    *out = w;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_new_tokens(graft_dataset_writer **out, const char *dir,
                                             const char *tokenizer, int vocab_size,
                                             size_t shard_size) {
    *out = NULL;
    if (vocab_size < 1 || !tokenizer) {
        GRAFT_ERROR("%s: bad vocab_size %d or no tokenizer name", dir ? dir : "", vocab_size);
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_dataset_writer *w = calloc(1, sizeof *w);
    if (!w) return GRAFT_ERR_NOMEM;
    w->kind = GRAFT_DATA_TOKENS;
    w->vocab_size = vocab_size;
    w->tokenizer = strdup(tokenizer);
    graft_status st = w->tokenizer ? writer_begin(w, dir, shard_size) : GRAFT_ERR_NOMEM;
    if (st != GRAFT_OK) {
        if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory", dir ? dir : "(null)");
        graft_dataset_writer_free(w);
        return st;
    }
    *out = w;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_new_sequences(graft_dataset_writer **out, const char *dir,
                                                const char *tokenizer, int vocab_size, int seq_len,
                                                int pad_id, int num_classes,
                                                const char *const *class_names, size_t shard_size) {
    *out = NULL;
    if (!tokenizer || vocab_size < 1 || seq_len < 1 || seq_len > GRAFT_DATA_MAX_SEQ_LEN ||
        pad_id < 0 || pad_id >= vocab_size || num_classes < 1 ||
        num_classes > GRAFT_DATA_MAX_CLASSES) {
        GRAFT_ERROR("%s: bad sequence dataset: tokenizer %s, vocab_size %d, seq_len %d, pad_id "
                    "%d, num_classes %d (need 1 <= seq_len <= %d, 0 <= pad_id < vocab_size, "
                    "1 <= num_classes <= %d)",
                    dir ? dir : "", tokenizer ? tokenizer : "(none)", vocab_size, seq_len, pad_id,
                    num_classes, GRAFT_DATA_MAX_SEQ_LEN, GRAFT_DATA_MAX_CLASSES);
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_dataset_writer *w = calloc(1, sizeof *w);
    if (!w) return GRAFT_ERR_NOMEM;
    w->kind = GRAFT_DATA_SEQUENCES;
    w->vocab_size = vocab_size;
    w->seq_len = seq_len;
    w->pad_id = pad_id;
    w->num_classes = num_classes;
    w->tokenizer = strdup(tokenizer);
    graft_status st = w->tokenizer ? copy_class_names(w, dir, class_names) : GRAFT_ERR_NOMEM;
    if (st == GRAFT_OK) st = writer_begin(w, dir, shard_size);
    if (st != GRAFT_OK) {
        if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory", dir ? dir : "(null)");
        graft_dataset_writer_free(w);
        return st;
    }
    *out = w;
    return GRAFT_OK;
}

void graft_dataset_writer_set_normalize(graft_dataset_writer *w, const float *mean,
                                        const float *std) {
    for (int c = 0; c < w->channels; c++) {
        w->mean[c] = mean[c];
        w->std[c] = std[c];
    }
    w->have_normalize = 1;
}

graft_status graft_dataset_writer_set_description(graft_dataset_writer *w, const char *text) {
    if (!is_utf8(text)) {
        GRAFT_ERROR("%s: the description is not valid UTF-8 (index.json cannot hold it)", w->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    char *copy = strdup(text);
    if (!copy) return GRAFT_ERR_NOMEM;
    free(w->description);
    w->description = copy;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_set_mask_id(graft_dataset_writer *w, int mask_id) {
    if (w->kind == GRAFT_DATA_IMAGES || mask_id < 0 || mask_id >= w->vocab_size) {
        GRAFT_ERROR("%s: mask id %d is outside the vocabulary of %d tokens", w->dir, mask_id,
                    w->vocab_size);
        return GRAFT_ERR_INVALID_ARG;
    }
    w->mask_id = mask_id;
    w->has_mask_id = 1;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_set_resize(graft_dataset_writer *w, const char *mode) {
    if (w->kind != GRAFT_DATA_IMAGES || !mode ||
        (strcmp(mode, "shorter") != 0 && strcmp(mode, "stretch") != 0)) {
        GRAFT_ERROR("%s: resize mode must be \"shorter\" or \"stretch\" (images only)", w->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    w->resize = strcmp(mode, "shorter") == 0 ? "shorter" : "stretch";
    return GRAFT_OK;
}

graft_status graft_dataset_writer_set_vocab_file(graft_dataset_writer *w, const char *path) {
    if (w->kind == GRAFT_DATA_IMAGES) {
        GRAFT_ERROR("%s: an images dataset has no vocabulary", w->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    free(w->vocab);
    w->vocab = NULL;
    return graft_fs_read(path, GRAFT_DATASET_VOCAB_MAX_BYTES, &w->vocab, &w->vocab_len,
                         GRAFT_LOG_ERROR);
}

size_t graft_dataset_writer_count(const graft_dataset_writer *w) { return w->count; }

/* Write the buffered samples as shard number n_shards, then checksum the file. */
static graft_status flush_shard(graft_dataset_writer *w) {
    if (w->in_shard == 0) return GRAFT_OK;
    if (w->n_shards >= GRAFT_DATA_MAX_SHARDS) {
        GRAFT_ERROR("%s: more than %d shards, the most a dataset may have (give a larger shard "
                    "size)",
                    w->dir, GRAFT_DATA_MAX_SHARDS);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (w->count > (size_t)GRAFT_DATA_MAX_COUNT) {
        GRAFT_ERROR("%s: more than %lld %s, the most a dataset may hold", w->dir,
                    GRAFT_DATA_MAX_COUNT, w->kind == GRAFT_DATA_TOKENS ? "tokens" : "samples");
        return GRAFT_ERR_INVALID_ARG;
    }
    if (w->n_shards == w->cap_shards) {
        int cap = w->cap_shards ? 2 * w->cap_shards : 16;
        written_shard *grown = realloc(w->shards, (size_t)cap * sizeof *grown);
        if (!grown) return GRAFT_ERR_NOMEM;
        w->shards = grown;
        w->cap_shards = cap;
    }
    written_shard *s = &w->shards[w->n_shards];
    memset(s, 0, sizeof *s);
    snprintf(s->file, sizeof s->file, "shard-%05d.safetensors", w->n_shards);
    s->count = w->in_shard;
    char *path = graft_fs_path_join_alloc(w->tmp_dir, s->file);
    if (!path) return GRAFT_ERR_NOMEM;
    graft_st_writer sw;
    graft_st_writer_init(&sw);
    uint16_t *narrow = NULL;
    graft_status st = GRAFT_OK;
    if (w->kind == GRAFT_DATA_IMAGES) {
        int64_t shape[4] = {(int64_t)w->in_shard, w->channels, w->height, w->width};
        st = graft_st_writer_add(&sw, "inputs", GRAFT_DTYPE_U8, 4, shape, w->inputs);
    } else {
        /* tokens: [n]; sequences: [n, T] */
        int seq = w->kind == GRAFT_DATA_SEQUENCES;
        int64_t shape[2] = {(int64_t)w->in_shard, w->seq_len};
        size_t ids = w->in_shard * (seq ? (size_t)w->seq_len : 1);
        if (w->vocab_size <= 65536) {
            narrow = malloc(ids * sizeof(uint16_t));
            if (!narrow) {
                st = GRAFT_ERR_NOMEM;
                goto done;
            }
            for (size_t i = 0; i < ids; i++)
                narrow[i] = (uint16_t)w->tokens[i];
            st = graft_st_writer_add(&sw, "tokens", GRAFT_DTYPE_U16, 1 + seq, shape, narrow);
        } else {
            st = graft_st_writer_add(&sw, "tokens", GRAFT_DTYPE_I32, 1 + seq, shape, w->tokens);
        }
    }
    if (st == GRAFT_OK && w->kind != GRAFT_DATA_TOKENS) {
        int64_t shape[1] = {(int64_t)w->in_shard};
        st = graft_st_writer_add(&sw, "labels", GRAFT_DTYPE_I64, 1, shape, w->labels);
    }
    if (st == GRAFT_OK) st = graft_st_writer_save(&sw, path);
    if (st != GRAFT_OK) goto done;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        GRAFT_ERROR("%s: cannot stat after writing: %s", path, strerror(errno));
        st = GRAFT_ERR_IO;
        goto done;
    }
    s->bytes = (uint64_t)sb.st_size;
    if ((st = graft_data_file_xxh64(path, &s->xxh64)) != GRAFT_OK) goto done;
    w->n_shards++;
    w->in_shard = 0;
done:
    graft_st_writer_free(&sw);
    free(narrow);
    free(path);
    return st;
}

/* Make room for `need` items in the shard buffer (grows by doubling up to shard_size). */
static graft_status reserve(graft_dataset_writer *w, size_t need) {
    if (need <= w->buf_cap) return GRAFT_OK;
    size_t cap = w->buf_cap ? w->buf_cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > w->shard_size) cap = w->shard_size;
    if (w->kind == GRAFT_DATA_IMAGES) {
        size_t sample = (size_t)w->channels * (size_t)w->height * (size_t)w->width;
        uint8_t *in = realloc(w->inputs, cap * sample);
        if (!in) return GRAFT_ERR_NOMEM;
        w->inputs = in;
    } else {
        size_t per_item = w->kind == GRAFT_DATA_SEQUENCES ? (size_t)w->seq_len : 1;
        int32_t *tok = realloc(w->tokens, cap * per_item * sizeof(int32_t));
        if (!tok) return GRAFT_ERR_NOMEM;
        w->tokens = tok;
    }
    if (w->kind != GRAFT_DATA_TOKENS) {
        int64_t *lab = realloc(w->labels, cap * sizeof(int64_t));
        if (!lab) return GRAFT_ERR_NOMEM;
        w->labels = lab;
    }
    w->buf_cap = cap;
    return GRAFT_OK;
}

graft_status graft_dataset_writer_add_image(graft_dataset_writer *w, const uint8_t *chw,
                                            int label) {
    if (w->kind != GRAFT_DATA_IMAGES || w->finished) return GRAFT_ERR_INVALID_ARG;
    if (label < 0 || label >= w->num_classes) {
        GRAFT_ERROR("%s: label %d of sample %zu is outside [0, %d)", w->dir, label, w->count,
                    w->num_classes);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (reserve(w, w->in_shard + 1) != GRAFT_OK) {
        GRAFT_ERROR("%s: out of memory buffering a shard", w->dir);
        return GRAFT_ERR_NOMEM;
    }
    size_t plane = (size_t)w->height * (size_t)w->width;
    memcpy(w->inputs + w->in_shard * plane * (size_t)w->channels, chw, plane * (size_t)w->channels);
    for (int c = 0; c < w->channels; c++) {
        uint64_t sum = 0, sumsq = 0;
        for (size_t p = 0; p < plane; p++) {
            uint64_t x = chw[(size_t)c * plane + p];
            sum += x;
            sumsq += x * x;
        }
        w->pixel_sum[c] += sum;
        w->pixel_sumsq[c] += sumsq;
    }
    w->labels[w->in_shard] = label;
    w->in_shard++;
    w->count++;
    return w->in_shard == w->shard_size ? flush_shard(w) : GRAFT_OK;
}

graft_status graft_dataset_writer_add_tokens(graft_dataset_writer *w, const int32_t *ids,
                                             size_t n) {
    if (w->kind != GRAFT_DATA_TOKENS || w->finished) return GRAFT_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= w->vocab_size) {
            GRAFT_ERROR("%s: token id %d at position %zu is outside [0, %d)", w->dir, ids[i],
                        w->count + i, w->vocab_size);
            return GRAFT_ERR_INVALID_ARG;
        }
    }
    size_t done = 0;
    while (done < n) {
        size_t take = w->shard_size - w->in_shard;
        if (take > n - done) take = n - done;
        if (reserve(w, w->in_shard + take) != GRAFT_OK) {
            GRAFT_ERROR("%s: out of memory buffering a shard", w->dir);
            return GRAFT_ERR_NOMEM;
        }
        memcpy(w->tokens + w->in_shard, ids + done, take * sizeof(int32_t));
        w->in_shard += take;
        w->count += take;
        done += take;
        if (w->in_shard == w->shard_size) {
            graft_status st = flush_shard(w);
            if (st != GRAFT_OK) return st;
        }
    }
    return GRAFT_OK;
}

graft_status graft_dataset_writer_add_sequence(graft_dataset_writer *w, const int32_t *ids,
                                               size_t n, int label) {
    if (w->kind != GRAFT_DATA_SEQUENCES || w->finished) return GRAFT_ERR_INVALID_ARG;
    if (label < 0 || label >= w->num_classes) {
        GRAFT_ERROR("%s: label %d of sample %zu is outside [0, %d)", w->dir, label, w->count,
                    w->num_classes);
        return GRAFT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= w->vocab_size) {
            GRAFT_ERROR("%s: token id %d at position %zu of sample %zu is outside [0, %d)", w->dir,
                        ids[i], i, w->count, w->vocab_size);
            return GRAFT_ERR_INVALID_ARG;
        }
    }
    if (reserve(w, w->in_shard + 1) != GRAFT_OK) {
        GRAFT_ERROR("%s: out of memory buffering a shard", w->dir);
        return GRAFT_ERR_NOMEM;
    }
    size_t T = (size_t)w->seq_len, keep = n < T ? n : T;
    int32_t *row = w->tokens + w->in_shard * T;
    memcpy(row, ids, keep * sizeof(int32_t));
    for (size_t t = keep; t < T; t++)
        row[t] = w->pad_id;
    w->labels[w->in_shard] = label;
    w->in_shard++;
    w->count++;
    return w->in_shard == w->shard_size ? flush_shard(w) : GRAFT_OK;
}

/* Per-channel mean and std of x/255 over every written pixel (exact integer sums). */
static void computed_normalize(const graft_dataset_writer *w, float *mean, float *std) {
    double pixels = (double)w->count * (double)w->height * (double)w->width;
    for (int c = 0; c < w->channels; c++) {
        double m = (double)w->pixel_sum[c] / pixels;
        double var = (double)w->pixel_sumsq[c] / pixels - m * m;
        double s = var > 0 ? sqrt(var) : 0.0;
        mean[c] = (float)(m / 255.0);
        std[c] = s > 0 ? (float)(s / 255.0) : 1.0f; /* constant images: no scaling */
    }
}

static json_t *class_names_json(const graft_dataset_writer *w) {
    json_t *names = json_array();
    for (int c = 0; c < w->num_classes; c++)
        json_array_append_new(names, json_string(w->class_names[c]));
    return names;
}

/* The index as a JSON object (keys in a fixed, readable order). */
static json_t *build_index(const graft_dataset_writer *w) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("graft-dataset"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "kind", json_string(graft_dataset_kind_name(w->kind)));
    if (w->description) json_object_set_new(root, "description", json_string(w->description));
    if (w->kind == GRAFT_DATA_IMAGES) {
        json_object_set_new(root, "sample_shape",
                            json_pack("[iii]", w->channels, w->height, w->width));
        json_object_set_new(root, "num_samples", json_integer((json_int_t)w->count));
        json_object_set_new(root, "num_classes", json_integer(w->num_classes));
        if (w->class_names) json_object_set_new(root, "class_names", class_names_json(w));
        float mean[GRAFT_DATASET_MAX_CHANNELS], std[GRAFT_DATASET_MAX_CHANNELS];
        if (w->have_normalize) {
            memcpy(mean, w->mean, sizeof mean);
            memcpy(std, w->std, sizeof std);
        } else {
            computed_normalize(w, mean, std);
        }
        json_t *jm = json_array(), *js = json_array();
        for (int c = 0; c < w->channels; c++) {
            json_array_append_new(jm, graft_json_real_or_null(mean[c]));
            json_array_append_new(js, graft_json_real_or_null(std[c]));
        }
        json_object_set_new(root, "normalize", json_pack("{soso}", "mean", jm, "std", js));
        if (w->resize) json_object_set_new(root, "resize", json_string(w->resize));
    } else if (w->kind == GRAFT_DATA_TOKENS) {
        json_object_set_new(root, "num_tokens", json_integer((json_int_t)w->count));
        json_object_set_new(root, "tokenizer", json_string(w->tokenizer));
        json_object_set_new(root, "vocab_size", json_integer(w->vocab_size));
        if (w->has_mask_id) json_object_set_new(root, "mask_id", json_integer(w->mask_id));
        if (w->vocab) json_object_set_new(root, "vocab_file", json_string(GRAFT_DATASET_VOCAB_FILE));
    } else {
        json_object_set_new(root, "sample_shape", json_pack("[i]", w->seq_len));
        json_object_set_new(root, "num_samples", json_integer((json_int_t)w->count));
        json_object_set_new(root, "num_classes", json_integer(w->num_classes));
        if (w->class_names) json_object_set_new(root, "class_names", class_names_json(w));
        json_object_set_new(root, "tokenizer", json_string(w->tokenizer));
        json_object_set_new(root, "vocab_size", json_integer(w->vocab_size));
        if (w->has_mask_id) json_object_set_new(root, "mask_id", json_integer(w->mask_id));
        if (w->vocab) json_object_set_new(root, "vocab_file", json_string(GRAFT_DATASET_VOCAB_FILE));
        json_object_set_new(root, "pad_id", json_integer(w->pad_id));
    }
    json_t *shards = json_array();
    for (int i = 0; i < w->n_shards; i++) {
        char hex[17];
        graft_json_hex64_text(hex, w->shards[i].xxh64);
        json_array_append_new(shards, json_pack("{sssIsIss}", "file", w->shards[i].file,
                                                w->kind == GRAFT_DATA_TOKENS ? "tokens" : "samples",
                                                (json_int_t)w->shards[i].count, "bytes",
                                                (json_int_t)w->shards[i].bytes, "xxh64", hex));
    }
    json_object_set_new(root, "shards", shards);
    return root;
}

/* Put the finished DIR.tmp in DIR's place (see the comment at the top). */
static graft_status move_into_place(graft_dataset_writer *w) {
    target_state t = inspect_target(w->dir, 0);
    if (t == TARGET_REFUSED) return GRAFT_ERR_IO;
    int err = 0;
    if (t == TARGET_ABSENT || t == TARGET_EMPTY) {
        if (rename(w->tmp_dir, w->dir) != 0) err = errno; /* replaces an empty directory */
    } else if (renameat2(AT_FDCWD, w->tmp_dir, AT_FDCWD, w->dir, RENAME_EXCHANGE) == 0) {
        remove_dataset_dir(w->tmp_dir); /* now holds the old dataset */
    } else {
        size_t len = strlen(w->dir) + 5;
        char *old = malloc(len);
        if (!old) return GRAFT_ERR_NOMEM;
        snprintf(old, len, "%s.old", w->dir);
        if (inspect_target(old, 1) == TARGET_REFUSED) {
            free(old);
            return GRAFT_ERR_IO;
        }
        remove_dataset_dir(old);
        if (rename(w->dir, old) != 0) {
            err = errno;
        } else if (rename(w->tmp_dir, w->dir) != 0) {
            err = errno;
            if (rename(old, w->dir) != 0) { /* put the old dataset back */
                GRAFT_ERROR("%s: cannot move %s into place: %s; the previous dataset is left in %s",
                            w->dir, w->tmp_dir, strerror(err), old);
                free(old);
                return GRAFT_ERR_IO;
            }
        } else {
            remove_dataset_dir(old);
        }
        free(old);
    }
    if (err != 0) {
        GRAFT_ERROR("%s: cannot move %s into place: %s", w->dir, w->tmp_dir, strerror(err));
        return GRAFT_ERR_IO;
    }
    graft_fs_fsync_parent(w->dir, GRAFT_LOG_DEBUG);
    return GRAFT_OK;
}

/* Values given with set_normalize must be what the reader accepts: finite, std > 0. */
static graft_status check_normalize(const graft_dataset_writer *w) {
    if (w->kind != GRAFT_DATA_IMAGES || !w->have_normalize) return GRAFT_OK;
    for (int c = 0; c < w->channels; c++)
        if (!isfinite(w->mean[c]) || !isfinite(w->std[c]) || !(w->std[c] > 0)) {
            GRAFT_ERROR("%s: normalize of channel %d is mean %g, std %g (need finite values, "
                        "std > 0)",
                        w->dir, c, (double)w->mean[c], (double)w->std[c]);
            return GRAFT_ERR_INVALID_ARG;
        }
    return GRAFT_OK;
}

/* index.json must stay within the size the reader loads. */
static graft_status check_index_size(const graft_dataset_writer *w, const json_t *root,
                                     size_t flags) {
    char *text = json_dumps(root, flags);
    if (!text) return GRAFT_ERR_NOMEM;
    size_t len = strlen(text);
    free(text);
    if (len <= GRAFT_DATA_INDEX_MAX_BYTES) return GRAFT_OK;
    GRAFT_ERROR("%s: index.json would be %zu bytes, more than the %zu a dataset's index may have "
                "(fewer shards: give a larger shard size; or shorter class names)",
                w->dir, len, GRAFT_DATA_INDEX_MAX_BYTES);
    return GRAFT_ERR_INVALID_ARG;
}

/* The tokenizer's vocabulary beside the shards, so that what reads the dataset later
 * (graft predict) tokenizes as it was written. */
static graft_status write_vocab(const graft_dataset_writer *w) {
    char *path = graft_fs_path_join_alloc(w->tmp_dir, GRAFT_DATASET_VOCAB_FILE);
    if (!path) return GRAFT_ERR_NOMEM;
    graft_status st = graft_fs_write_atomic(path, w->vocab, w->vocab_len);
    free(path);
    return st;
}

graft_status graft_dataset_writer_finish(graft_dataset_writer *w) {
    if (w->finished) return GRAFT_ERR_INVALID_ARG;
    if (w->count == 0) {
        GRAFT_ERROR("%s: no %s to write; refusing to create an empty dataset", w->dir,
                    w->kind == GRAFT_DATA_TOKENS ? "tokens" : "samples");
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_status st = flush_shard(w);
    if (st != GRAFT_OK) return st;
    st = check_normalize(w);
    if (st == GRAFT_OK && w->vocab) st = write_vocab(w);
    if (st != GRAFT_OK) return st;
    json_t *root = build_index(w);
    char *path = graft_fs_path_join_alloc(w->tmp_dir, "index.json");
    const size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9);
    st = root && path ? check_index_size(w, root, flags) : GRAFT_ERR_NOMEM;
    if (st == GRAFT_OK) st = graft_json_write_atomic(path, root, flags);
    json_decref(root);
    free(path);
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory building index.json", w->dir);
    if (st != GRAFT_OK) return st;
    st = move_into_place(w);
    if (st == GRAFT_OK) w->finished = 1;
    return st;
}

void graft_dataset_writer_free(graft_dataset_writer *w) {
    if (!w) return;
    if (!w->finished && w->created_tmp) {
        struct stat sb;
        if (lstat(w->tmp_dir, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_dataset_dir(w->tmp_dir);
    }
    if (w->class_names)
        for (int c = 0; c < w->num_classes; c++)
            free(w->class_names[c]);
    free(w->class_names);
    free(w->description);
    free(w->tokenizer);
    free(w->vocab);
    free(w->inputs);
    free(w->labels);
    free(w->tokens);
    free(w->shards);
    free(w->dir);
    free(w->tmp_dir);
    free(w);
}
