/* The feature cache (data.cache_features; docs/DESIGN.md, Note [The feature cache]):
 * when the model trains only above a frozen prefix whose output is a pure function of
 * the sample, the prefix runs once per sample, in a separate first pass, and the steps
 * start from the stored rows instead.
 *
 * The first pass: global sample rows are cut into chunks of up to the micro-batch;
 * chunk k is computed by rank k % W, and after every round of W chunks one allgather
 * hands every rank the whole round, which is the next W chunks of rows in order. Every
 * rank then holds all N rows: in memory up to data.cache_max_gb, else in the file
 * (memory-mapped), which needs the run directory to be shared by the ranks as resuming
 * from a checkpoint does. Rank 0 always writes the file, runs/<experiment>/
 * feature-cache.bin, keyed by a digest of what the rows depend on, so that a resumed run
 * reuses it and a stale one is rebuilt. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "train_internal.h"

#define CACHE_FILE "feature-cache.bin"
#define CACHE_MAGIC "GRAFTFC1"
/* One allgather moves at most this much per rank (the NCCL backend stages 64 MiB). */
#define CACHE_CHUNK_BYTES ((size_t)16 << 20)

/* The file: this header (40 bytes: the rows stay aligned), then n rows of `floats` floats (host byte order). */
typedef struct cache_header {
    char magic[8];
    uint64_t key;        /* cache_key */
    uint64_t n, floats;  /* rows and floats per row */
    uint64_t rows_xxh64; /* of the rows' bytes */
} cache_header;

struct train_feature_cache {
    int wanted;        /* train_feature_cache_check said yes */
    int active;        /* rows hold the features at `boundary` */
    int boundary;      /* the model's split the rows are for */
    size_t n, floats;  /* rows, floats per row */
    float *rows;       /* [n, floats]: malloc'd, or inside the mapping */
    void *map;         /* the mapped file, or NULL */
    size_t map_bytes;
    float *stage;      /* [micro_batch, floats]: one micro-batch's rows, gathered */
};

/* Why the cache cannot be used with this config and model ("" when it can). */
static void why_not(const trainer *t, const graft_model_split *s, char *out, size_t size) {
    const graft_config *cfg = t->cfg;
    out[0] = '\0';
    if (s->floats == 0)
        snprintf(out, size, "%s", s->why);
    else if (cfg->data.augment_crop_padding > 0 || cfg->data.augment_hflip)
        snprintf(out, size, "data.augment.%s changes the samples every epoch",
                 cfg->data.augment_crop_padding > 0 ? "crop_padding" : "hflip");
}

graft_status train_feature_cache_check(trainer *t) {
    const graft_config *cfg = t->cfg;
    if (strcmp(cfg->data.cache_features, "off") == 0) return GRAFT_OK;
    graft_model_split s;
    graft_model_split_at(&t->model, &s);
    char why[256];
    why_not(t, &s, why, sizeof why);
    int on = strcmp(cfg->data.cache_features, "on") == 0;
    /* a run resumed after a freeze.schedule step moved the boundary where no cache can
     * be stopped using it there, as the uninterrupted run did */
    int unfrozen = 0;
    for (int e = 0; e < cfg->freeze.n_schedule; e++)
        unfrozen |= cfg->freeze.schedule[e].at_step < t->start_step;
    if (why[0] && on && !(unfrozen && s.floats == 0)) {
        GRAFT_ERROR("data.cache_features: on, but the frozen layers' output cannot be cached: %s",
                    why);
        return GRAFT_ERR_CONFIG;
    }
    if (!why[0] && !on && t->total_steps <= t->steps_per_epoch)
        snprintf(why, sizeof why,
                 "the run is not longer than one epoch (%ld steps), so computing every "
                 "sample's features first would cost more than it saves",
                 t->steps_per_epoch);
    if (why[0]) {
        if (t->rank0)
            GRAFT_INFO("feature cache not used (data.cache_features: %s): %s",
                       cfg->data.cache_features, why);
        return GRAFT_OK;
    }
    t->features = calloc(1, sizeof *t->features);
    if (!t->features) return GRAFT_ERR_NOMEM;
    t->features->wanted = 1;
    return GRAFT_OK;
}

/* What the rows depend on: the prefix's parameters and buffers (names, shapes, values),
 * the training data, the boundary, the model's config keys, the batchnorm mode. */
static uint64_t cache_key(const trainer *t, const graft_model_split *s, size_t n) {
    const graft_config *cfg = t->cfg;
    const graft_params *p = t->model.params;
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    XXH64_update(h, CACHE_MAGIC, sizeof CACHE_MAGIC);
    for (int i = 0; i < s->prefix_params; i++) {
        const graft_param *q = &p->items[i];
        XXH64_update(h, q->name, strlen(q->name) + 1);
        XXH64_update(h, q->shape, (size_t)q->ndim * sizeof q->shape[0]);
        XXH64_update(h, graft_params_value(p, i), q->numel * sizeof(float));
    }
    const uint64_t numbers[] = {graft_dataset_digest(&t->train_set),
                                (uint64_t)s->boundary,
                                s->floats,
                                n,
                                (uint64_t)cfg->data.seq_len,
                                (uint64_t)cfg->model.small_stem,
                                (uint64_t)cfg->model.width,
                                (uint64_t)cfg->model.n_layer,
                                (uint64_t)cfg->model.n_head,
                                (uint64_t)cfg->model.n_embd,
                                (uint64_t)cfg->model.n_positions,
                                (uint64_t)cfg->model.vocab_size,
                                (uint64_t)cfg->model.patch_size,
                                (uint64_t)cfg->model.mlp_dim};
    XXH64_update(h, numbers, sizeof numbers);
    XXH64_update(h, cfg->model.arch, strlen(cfg->model.arch) + 1);
    XXH64_update(h, cfg->freeze.bn, strlen(cfg->freeze.bn) + 1);
    uint64_t key = XXH64_digest(h);
    XXH64_freeState(h);
    return key;
}

static void release_rows(train_feature_cache *c) {
    if (c->map)
        munmap(c->map, c->map_bytes);
    else
        free(c->rows);
    c->map = NULL;
    c->rows = NULL;
    c->active = 0;
}

void train_feature_cache_free(train_feature_cache *c) {
    if (!c) return;
    release_rows(c);
    free(c->stage);
    free(c);
}

/* Every rank's verdict on a question, summed: 1 when all said yes. */
static graft_status all_ranks(trainer *t, int yes, int *all) {
    float v = (float)(yes != 0);
    if (t->comm->size > 1) GRAFT_TRY(graft_comm_allreduce_sum(t->comm, &v, 1));
    *all = v == (float)t->comm->size;
    return GRAFT_OK;
}

/* Samples [lo, hi) of the training set as the model takes them (images, token windows
 * or sequences), unaugmented: exactly what the loader gives without augmentation. */
static void fill_inputs(const trainer *t, size_t lo, size_t hi, float *inputs, int32_t *tokens) {
    const graft_dataset *d = &t->train_set;
    size_t L = (size_t)t->cfg->data.seq_len;
    for (size_t i = lo; i < hi; i++) {
        size_t row = i - lo;
        if (d->kind == GRAFT_DATA_IMAGES)
            (void)graft_dataset_image(d, i, inputs + row * d->channels * d->height * d->width);
        else if (d->kind == GRAFT_DATA_SEQUENCES)
            (void)graft_dataset_sequence(d, i, tokens + row * (size_t)d->seq_len);
        else
            graft_dataset_tokens(d, i * L, L, tokens + row * L);
    }
}

/* Rank 0's copy of the rows being written: FILE.tmp, renamed when complete. */
typedef struct cache_writer {
    char path[TRAIN_PATH_MAX], tmp[TRAIN_PATH_MAX];
    FILE *f;
    XXH64_state_t *h;
    cache_header head;
} cache_writer;

static graft_status writer_open(cache_writer *w, const trainer *t, uint64_t key, size_t n,
                                size_t floats) {
    memset(w, 0, sizeof *w);
    GRAFT_TRY(graft_fs_path_join(w->path, sizeof w->path, t->run_dir, CACHE_FILE));
    GRAFT_TRY(graft_fs_path_join(w->tmp, sizeof w->tmp, t->run_dir, CACHE_FILE ".tmp"));
    memcpy(w->head.magic, CACHE_MAGIC, sizeof w->head.magic);
    w->head.key = key;
    w->head.n = n;
    w->head.floats = floats;
    w->h = XXH64_createState();
    w->f = fopen(w->tmp, "wb");
    if (!w->f || !w->h) {
        GRAFT_ERROR("%s: cannot create the feature cache file: %s", w->tmp,
                    w->f ? "out of memory" : strerror(errno));
        return GRAFT_ERR_IO;
    }
    XXH64_reset(w->h, 0);
    /* the header is written again, complete, once the rows are */
    if (fwrite(&w->head, sizeof w->head, 1, w->f) != 1) {
        GRAFT_ERROR("%s: cannot write the feature cache: %s", w->tmp, strerror(errno));
        return GRAFT_ERR_IO;
    }
    return GRAFT_OK;
}

static graft_status writer_rows(cache_writer *w, const float *rows, size_t count) {
    XXH64_update(w->h, rows, count * sizeof(float));
    if (fwrite(rows, sizeof(float), count, w->f) != count) {
        GRAFT_ERROR("%s: cannot write the feature cache: %s", w->tmp, strerror(errno));
        return GRAFT_ERR_IO;
    }
    return GRAFT_OK;
}

/* Finish (when st is GRAFT_OK: header, fsync, rename) or abandon the file. */
static graft_status writer_close(cache_writer *w, graft_status st) {
    if (st == GRAFT_OK && w->f) {
        w->head.rows_xxh64 = XXH64_digest(w->h);
        if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(&w->head, sizeof w->head, 1, w->f) != 1 ||
            fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
            GRAFT_ERROR("%s: cannot write the feature cache: %s", w->tmp, strerror(errno));
            st = GRAFT_ERR_IO;
        }
    }
    if (w->f && fclose(w->f) != 0 && st == GRAFT_OK) {
        GRAFT_ERROR("%s: cannot write the feature cache: %s", w->tmp, strerror(errno));
        st = GRAFT_ERR_IO;
    }
    w->f = NULL;
    if (st == GRAFT_OK && rename(w->tmp, w->path) != 0) {
        GRAFT_ERROR("%s: cannot rename the feature cache into place: %s", w->path,
                    strerror(errno));
        st = GRAFT_ERR_IO;
    }
    if (st != GRAFT_OK) unlink(w->tmp);
    XXH64_freeState(w->h);
    w->h = NULL;
    return st;
}

/* Map (in_memory = 0) or read (1) the file's rows when its header says they are these;
 * they must match their checksum. Quiet: a file that does not fit is rebuilt. */
static int load_file(train_feature_cache *c, const char *path, uint64_t key, int in_memory) {
    int fd = -1;
    uint64_t bytes = 0;
    if (graft_fs_open_regular(path, &fd, &bytes, GRAFT_LOG_QUIET) != GRAFT_OK) return 0;
    cache_header head;
    size_t want = sizeof head + c->n * c->floats * sizeof(float);
    int ok = pread(fd, &head, sizeof head, 0) == (ssize_t)sizeof head && bytes == want &&
             memcmp(head.magic, CACHE_MAGIC, sizeof head.magic) == 0 && head.key == key &&
             head.n == c->n && head.floats == c->floats;
    if (ok && in_memory) {
        c->rows = malloc(want - sizeof head);
        size_t got = 0;
        while (c->rows && got < want - sizeof head) {
            ssize_t r = pread(fd, (char *)c->rows + got, want - sizeof head - got,
                              (off_t)(sizeof head + got));
            if (r <= 0) break;
            got += (size_t)r;
        }
        ok = c->rows && got == want - sizeof head;
    } else if (ok) {
        void *map = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
        ok = map != MAP_FAILED;
        if (ok) {
            c->map = map;
            c->map_bytes = want;
            c->rows = (float *)map + sizeof head / sizeof(float); /* the rows follow it */
        }
    }
    close(fd);
    ok = ok && XXH64(c->rows, want - sizeof head, 0) == head.rows_xxh64;
    if (!ok) release_rows(c);
    return ok;
}

/* The first pass (see the top of the file). Rows go to c->rows when in memory; rank 0
 * writes them to the file as well (in memory, a file that cannot be written only costs
 * the next resume a rebuild). */
static graft_status build(trainer *t, train_feature_cache *c, uint64_t key, int in_memory) {
    const graft_dataset *d = &t->train_set;
    const size_t N = c->n, F = c->floats, W = (size_t)t->comm->size, r = (size_t)t->comm->rank;
    size_t chunk = CACHE_CHUNK_BYTES / (F * sizeof(float));
    if (chunk > (size_t)t->micro_batch) chunk = (size_t)t->micro_batch;
    if (chunk == 0) chunk = 1;
    const size_t row_in = d->kind == GRAFT_DATA_IMAGES ? (size_t)d->channels * d->height * d->width
                          : d->kind == GRAFT_DATA_SEQUENCES ? (size_t)d->seq_len
                                                            : (size_t)t->cfg->data.seq_len;
    float *inputs = d->kind == GRAFT_DATA_IMAGES ? malloc(chunk * row_in * sizeof(float)) : NULL;
    int32_t *tokens = d->kind != GRAFT_DATA_IMAGES ? malloc(chunk * row_in * sizeof(int32_t)) : NULL;
    float *send = calloc(chunk * F, sizeof(float));
    float *recv = malloc(W * chunk * F * sizeof(float));
    int allocated = (inputs || tokens) && send && recv &&
                    (!in_memory || (c->rows = malloc(N * F * sizeof(float))));
    if (!allocated)
        GRAFT_ERROR("out of memory for the feature cache (%zu rows of %zu floats)", N, F);
    int all = 0; /* every rank goes on to the allgathers, or none */
    graft_status st = all_ranks(t, allocated, &all);
    if (st == GRAFT_OK && !all) st = GRAFT_ERR_NOMEM;
    float *rows = in_memory ? c->rows : NULL; /* NULL: the rows go to the file only */
    cache_writer w;
    memset(&w, 0, sizeof w);
    graft_status written = t->rank0 && st == GRAFT_OK ? writer_open(&w, t, key, N, F) : GRAFT_OK;
    graft_comm_set_context(t->comm, "building the feature cache");
    for (size_t first = 0; first < N && st == GRAFT_OK; first += W * chunk) {
        size_t lo = first + r * chunk, hi = lo + chunk;
        if (hi > N) hi = N;
        if (lo < hi) {
            fill_inputs(t, lo, hi, inputs, tokens);
            graft_model_prefix_forward(&t->model, inputs, tokens, (int)(hi - lo), send);
        }
        st = graft_comm_allgather(t->comm, send, recv, chunk * F * sizeof(float));
        size_t valid = N - first < W * chunk ? N - first : W * chunk;
        if (st == GRAFT_OK && rows) memcpy(rows + first * F, recv, valid * F * sizeof(float));
        if (st == GRAFT_OK && t->rank0 && written == GRAFT_OK && !in_memory)
            written = writer_rows(&w, recv, valid * F);
    }
    if (st == GRAFT_OK && t->rank0 && written == GRAFT_OK && rows)
        written = writer_rows(&w, rows, N * F);
    if (t->rank0) written = writer_close(&w, st == GRAFT_OK ? written : st);
    free(inputs);
    free(tokens);
    free(send);
    free(recv);
    GRAFT_TRY(st);
    if (in_memory) {
        if (t->rank0 && written != GRAFT_OK)
            GRAFT_WARN("the feature cache stays in memory only: a resumed run will rebuild it");
        return GRAFT_OK;
    }
    GRAFT_TRY(all_ranks(t, written == GRAFT_OK, &all));
    if (!all) return GRAFT_ERR_IO; /* rank 0 said why */
    char path[TRAIN_PATH_MAX];
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, CACHE_FILE));
    int mapped = load_file(c, path, key, 0);
    GRAFT_TRY(all_ranks(t, mapped, &all));
    if (!all) {
        if (!mapped)
            GRAFT_ERROR("%s: cannot map the feature cache rank 0 wrote (a cache larger than "
                        "data.cache_max_gb needs the run directory shared by every rank)",
                        path);
        release_rows(c);
        return GRAFT_ERR_IO;
    }
    return GRAFT_OK;
}

/* Reuse the file when every rank finds it matching, else build it; then log one line. */
static graft_status make_rows(trainer *t, train_feature_cache *c, const graft_model_split *s,
                              long step) {
    c->n = graft_loader_epoch_samples(t->loader);
    c->floats = s->floats;
    c->boundary = s->boundary;
    const double bytes = (double)c->n * (double)c->floats * sizeof(float);
    const int in_memory = bytes <= t->cfg->data.cache_max_gb * 1073741824.0;
    const uint64_t key = cache_key(t, s, c->n);
    char path[TRAIN_PATH_MAX];
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, CACHE_FILE));
    double t0 = graft_now_s();
    int reused = 0;
    graft_comm_set_context(t->comm, "checking the feature cache file");
    GRAFT_TRY(all_ranks(t, load_file(c, path, key, in_memory), &reused));
    if (!reused) {
        release_rows(c);
        GRAFT_TRY(build(t, c, key, in_memory));
    }
    free(c->stage);
    c->stage = malloc((size_t)t->micro_batch * c->floats * sizeof(float));
    if (!c->stage) {
        GRAFT_ERROR("out of memory for a micro-batch of %d feature rows", t->micro_batch);
        return GRAFT_ERR_NOMEM;
    }
    c->active = 1;
    if (t->rank0)
        GRAFT_INFO("step %ld: feature cache at %s: %zu samples x %zu floats = %.1f MiB %s%s "
                   "(%s in %.2f s; key %016llx)",
                   step, s->where, c->n, c->floats, bytes / 1048576.0,
                   in_memory ? "in memory per rank, file " : "memory-mapped from ", path,
                   reused ? "reused" : "built", graft_now_s() - t0, (unsigned long long)key);
    return GRAFT_OK;
}

graft_status train_feature_cache_update(trainer *t, long step) {
    train_feature_cache *c = t->features;
    if (!c || !c->wanted) return GRAFT_OK;
    graft_model_split s;
    graft_model_split_at(&t->model, &s);
    if (c->active && s.floats == c->floats && s.boundary == c->boundary) return GRAFT_OK;
    release_rows(c);
    char why[256];
    why_not(t, &s, why, sizeof why);
    if (why[0]) { /* freeze.schedule unfroze the layers down to where no split is possible */
        c->wanted = 0;
        if (t->rank0) GRAFT_INFO("step %ld: feature cache no longer used: %s", step, why);
        return GRAFT_OK;
    }
    return make_rows(t, c, &s, step);
}

int train_feature_cache_active(const trainer *t) { return t->features && t->features->active; }

float train_feature_cache_forward(trainer *t, const uint64_t *indices, const int32_t *labels,
                                  int n) {
    train_feature_cache *c = t->features;
    for (int i = 0; i < n; i++)
        memcpy(c->stage + (size_t)i * c->floats, c->rows + indices[i] * c->floats,
               c->floats * sizeof(float));
    return graft_model_forward_features(&t->model, c->stage, labels, n, 1, NULL);
}
