/* The data loader: global sampler (see loader.h for the exact rules), batch assembly
 * from the mapped shards (normalisation, augmentation, token windows), and an optional
 * prefetch thread feeding a ring of prepared batches. */
#include "loader.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset_internal.h"
#include "runtime/core/log.h"
#include "runtime/core/rng.h"

struct graft_loader {
    const graft_dataset *d;
    graft_loader_config cfg;
    int eval;                                   /* 1: graft_loader_new_eval */
    size_t N;                                   /* samples per epoch */
    size_t sample_size;                         /* C*H*W floats; tokens: seq_len; sequences: T */
    int max_n;                                  /* rows per batch buffer */
    float lut[GRAFT_DATASET_MAX_CHANNELS][256]; /* byte -> normalised float, per channel */
    int32_t *window;                            /* scratch seq_len + 1 tokens (producer only) */

    /* producer side: the next batch to prepare and the current epoch's order */
    uint64_t produce_cursor;
    long eval_step;
    long perm_epoch;
    size_t *perm;

    /* consumer side */
    uint64_t consumer_cursor;

    /* batch buffers: [0] only without a thread; prefetch + 1 with one */
    int n_slots;
    graft_batch *slots;

    /* prefetch thread */
    int threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t have_batch, have_room;
    int ready;    /* prepared batches not yet handed out */
    int read_idx; /* slot of the next batch to hand out */
    int in_use;   /* 1 while the caller holds the batch before read_idx */
    int stop;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Build the permutation of `epoch` (Fisher-Yates, graft_rng_mix(seed, epoch)). */
static void ensure_perm(graft_loader *l, long epoch) {
    if (l->perm_epoch == epoch) return;
    size_t N = l->N;
    for (size_t i = 0; i < N; i++)
        l->perm[i] = i;
    graft_rng rng;
    graft_rng_seed(&rng, graft_rng_mix(l->cfg.seed, (uint64_t)epoch));
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)graft_rng_below(&rng, (uint64_t)i + 1);
        size_t t = l->perm[i];
        l->perm[i] = l->perm[j];
        l->perm[j] = t;
    }
    l->perm_epoch = epoch;
}

/* Image sample idx of `epoch` into dst [C*H*W], augmented when configured. */
static int fill_image(graft_loader *l, uint64_t idx, long epoch, int augment, float *dst) {
    const graft_dataset *d = l->d;
    int label;
    const uint8_t *src = graft_dataset_image_raw(d, (size_t)idx, &label);
    int C = d->channels, H = d->height, W = d->width;
    size_t plane = (size_t)H * (size_t)W;
    int pad = augment ? l->cfg.crop_padding : 0;
    int flip_on = augment && l->cfg.hflip;
    if (pad == 0 && !flip_on) {
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < plane; p++)
                dst[(size_t)c * plane + p] = l->lut[c][src[(size_t)c * plane + p]];
        return label;
    }
    graft_rng rng;
    graft_rng_seed(
        &rng,
        graft_rng_mix(graft_rng_mix(l->cfg.seed ^ GRAFT_LOADER_AUG_SALT, (uint64_t)epoch), idx));
    int dy = pad, dx = pad, flip = 0;
    if (pad > 0) {
        dy = (int)graft_rng_below(&rng, (uint64_t)(2 * pad + 1));
        dx = (int)graft_rng_below(&rng, (uint64_t)(2 * pad + 1));
    }
    if (flip_on) flip = (int)(graft_rng_u64(&rng) & 1);
    for (int c = 0; c < C; c++) {
        const uint8_t *in = src + (size_t)c * plane;
        float *out = dst + (size_t)c * plane;
        const float *lut = l->lut[c];
        for (int y = 0; y < H; y++) {
            int sy = y + dy - pad;
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + dx - pad;
                uint8_t v = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                                ? in[(size_t)sy * (size_t)W + (size_t)sx]
                                : 0;
                out[(size_t)y * (size_t)W + (size_t)x] = lut[v];
            }
        }
    }
    return label;
}

/* Row `row` of batch b from sample (or token window) idx. */
static void fill_row(graft_loader *l, graft_batch *b, int row, uint64_t idx, long epoch,
                     int augment) {
    b->indices[row] = idx;
    if (l->d->kind == GRAFT_DATA_IMAGES) {
        b->labels[row] =
            fill_image(l, idx, epoch, augment, b->inputs + (size_t)row * l->sample_size);
        return;
    }
    if (l->d->kind == GRAFT_DATA_SEQUENCES) {
        b->labels[row] =
            graft_dataset_sequence(l->d, (size_t)idx, b->tokens + (size_t)row * l->sample_size);
        return;
    }
    size_t L = l->sample_size;
    graft_dataset_tokens(l->d, (size_t)idx * L, L + 1, l->window);
    memcpy(b->tokens + (size_t)row * L, l->window, L * sizeof(int32_t));
    memcpy(b->labels + (size_t)row * L, l->window + 1, L * sizeof(int32_t));
}

/* The training batch that starts at global `cursor`, this rank's slice. */
static void fill_train_batch(graft_loader *l, graft_batch *b, uint64_t cursor) {
    uint64_t N = l->N, G = (uint64_t)l->cfg.batch_size, W = (uint64_t)l->cfg.world,
             r = (uint64_t)l->cfg.rank;
    long epoch = (long)(cursor / N);
    uint64_t off = cursor % N;
    uint64_t gb = G < N - off ? G : N - off;
    uint64_t lo = off + r * gb / W, hi = off + (r + 1) * gb / W;
    if (l->cfg.shuffle) ensure_perm(l, epoch);
    int augment = l->cfg.crop_padding > 0 || l->cfg.hflip;
    for (uint64_t k = lo; k < hi; k++)
        fill_row(l, b, (int)(k - lo), l->cfg.shuffle ? l->perm[k] : k, epoch, augment);
    b->n = (int)(hi - lo);
    b->global_n = (int)gb;
    b->epoch = epoch;
    b->cursor_after = cursor + gb;
}

/* Rank r's share [begin, end) of the eval set. */
static void eval_share(const graft_loader *l, int r, uint64_t *begin, uint64_t *end) {
    uint64_t N = l->N, W = (uint64_t)l->cfg.world;
    *begin = (uint64_t)r * N / W;
    *end = ((uint64_t)r + 1) * N / W;
}

/* Eval step k: the k-th piece of every rank's share. */
static void fill_eval_batch(graft_loader *l, graft_batch *b, long step) {
    uint64_t per = (uint64_t)l->cfg.batch_size, global = 0, mine_lo = 0, mine_hi = 0;
    for (int r = 0; r < l->cfg.world; r++) {
        uint64_t begin, end;
        eval_share(l, r, &begin, &end);
        uint64_t lo = begin + (uint64_t)step * per, hi = lo + per;
        if (lo > end) lo = end;
        if (hi > end) hi = end;
        global += hi - lo;
        if (r == l->cfg.rank) mine_lo = lo, mine_hi = hi;
    }
    for (uint64_t k = mine_lo; k < mine_hi; k++)
        fill_row(l, b, (int)(k - mine_lo), k, 0, 0);
    b->n = (int)(mine_hi - mine_lo);
    b->global_n = (int)global;
    b->epoch = 0;
    b->cursor_after = l->produce_cursor + global;
}

/* Prepare the next batch into b and advance the producer's position. */
static void produce(graft_loader *l, graft_batch *b) {
    if (l->eval) {
        fill_eval_batch(l, b, l->eval_step);
        if (b->global_n > 0) l->eval_step++;
    } else {
        fill_train_batch(l, b, l->produce_cursor);
    }
    l->produce_cursor = b->cursor_after;
}

/* The prefetch thread: fill free slots in ring order until told to stop. */
static void *prefetch_main(void *arg) {
    graft_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->ready + l->in_use >= l->n_slots)
            pthread_cond_wait(&l->have_room, &l->mu);
        if (l->stop) break;
        int slot = (l->read_idx + l->ready) % l->n_slots;
        pthread_mutex_unlock(&l->mu);
        produce(l, &l->slots[slot]);
        pthread_mutex_lock(&l->mu);
        l->ready++;
        pthread_cond_signal(&l->have_batch);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Allocate everything but the thread; shared by the training and eval constructors. */
static graft_status loader_alloc(graft_loader *l, int rows_per_batch, int n_slots) {
    const graft_dataset *d = l->d;
    l->max_n = rows_per_batch > 0 ? rows_per_batch : 1;
    l->n_slots = n_slots;
    l->perm_epoch = -1;
    l->slots = calloc((size_t)n_slots, sizeof(graft_batch));
    if (!l->slots) return GRAFT_ERR_NOMEM;
    size_t rows = (size_t)l->max_n;
    /* rows * (sample_size + 1) values of 4 bytes, checked before it is multiplied */
    if (rows > SIZE_MAX / sizeof(float) / (l->sample_size + 1)) {
        GRAFT_ERROR("%s: a batch of %zu rows of %zu values overflows 64 bits", d->dir, rows,
                    l->sample_size);
        return GRAFT_ERR_CONFIG;
    }
    for (int s = 0; s < n_slots; s++) {
        graft_batch *b = &l->slots[s];
        b->indices = malloc(rows * sizeof(uint64_t));
        if (d->kind == GRAFT_DATA_IMAGES) {
            b->inputs = malloc(rows * l->sample_size * sizeof(float));
            b->labels = malloc(rows * sizeof(int32_t));
            if (!b->indices || !b->inputs || !b->labels) return GRAFT_ERR_NOMEM;
        } else {
            size_t labels_per_row = d->kind == GRAFT_DATA_TOKENS ? l->sample_size : 1;
            b->tokens = malloc(rows * l->sample_size * sizeof(int32_t));
            b->labels = malloc(rows * labels_per_row * sizeof(int32_t));
            if (!b->indices || !b->tokens || !b->labels) return GRAFT_ERR_NOMEM;
        }
    }
    if (d->kind == GRAFT_DATA_IMAGES) {
        for (int c = 0; c < d->channels; c++)
            for (int v = 0; v < 256; v++)
                l->lut[c][v] = graft_data_normalize((uint8_t)v, d->mean[c], d->std[c]);
    } else if (d->kind == GRAFT_DATA_TOKENS) {
        l->window = malloc((l->sample_size + 1) * sizeof(int32_t));
        if (!l->window) return GRAFT_ERR_NOMEM;
    }
    if (!l->eval && l->cfg.shuffle) {
        l->perm = malloc(l->N * sizeof(size_t));
        if (!l->perm) return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

/* Samples per epoch for d and seq_len, or 0 with an error line (under the caller's
 * name) when unusable. */
static size_t epoch_samples(const char *caller, const graft_dataset *d, int seq_len) {
    if (d->kind != GRAFT_DATA_TOKENS) return d->num_samples;
    if (seq_len < 1) {
        graft_log(GRAFT_LOG_ERROR, caller, "%s: seq_len must be >= 1 for a token dataset, got %d",
                  d->dir, seq_len);
        return 0;
    }
    size_t N = (d->num_tokens - 1) / (size_t)seq_len;
    if (N == 0)
        graft_log(GRAFT_LOG_ERROR, caller, "%s: %zu tokens are fewer than seq_len + 1 = %d", d->dir,
                  d->num_tokens, seq_len + 1);
    return N;
}

/* Values per batch row: pixels (images) or token ids (tokens: seq_len; sequences: T). */
static size_t row_size(const graft_dataset *d, int seq_len) {
    if (d->kind == GRAFT_DATA_IMAGES)
        return (size_t)d->channels * (size_t)d->height * (size_t)d->width;
    return d->kind == GRAFT_DATA_SEQUENCES ? (size_t)d->seq_len : (size_t)seq_len;
}

graft_status graft_loader_new(graft_loader **out, const graft_dataset *d,
                              const graft_loader_config *cfg, uint64_t cursor) {
    *out = NULL;
    const char *dir = d->dir ? d->dir : "dataset";
    if (cfg->batch_size < 1 || cfg->batch_size > INT32_MAX) {
        GRAFT_ERROR("%s: batch_size must be in [1, %d], got %ld", dir, INT32_MAX, cfg->batch_size);
        return GRAFT_ERR_CONFIG;
    }
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world) {
        GRAFT_ERROR("%s: rank %d is outside a world of %d", dir, cfg->rank, cfg->world);
        return GRAFT_ERR_CONFIG;
    }
    if (cfg->prefetch < 0 || cfg->prefetch > GRAFT_LOADER_MAX_PREFETCH) {
        GRAFT_ERROR("%s: prefetch must be in [0, %d], got %d", dir, GRAFT_LOADER_MAX_PREFETCH,
                    cfg->prefetch);
        return GRAFT_ERR_CONFIG;
    }
    if (d->kind == GRAFT_DATA_IMAGES &&
        (cfg->crop_padding < 0 || cfg->crop_padding > d->height || cfg->crop_padding > d->width)) {
        GRAFT_ERROR("%s: crop_padding must be in [0, %d], got %d", dir,
                    d->height < d->width ? d->height : d->width, cfg->crop_padding);
        return GRAFT_ERR_CONFIG;
    }
    size_t N = epoch_samples(__func__, d, cfg->seq_len);
    if (N == 0) return GRAFT_ERR_CONFIG;
    graft_loader *l = calloc(1, sizeof *l);
    if (!l) return GRAFT_ERR_NOMEM;
    l->d = d;
    l->cfg = *cfg;
    l->N = N;
    l->sample_size = row_size(d, cfg->seq_len);
    l->produce_cursor = l->consumer_cursor = cursor;
    uint64_t largest = (uint64_t)cfg->batch_size < N ? (uint64_t)cfg->batch_size : N;
    int rows = (int)((largest + (uint64_t)cfg->world - 1) / (uint64_t)cfg->world);
    graft_status st = loader_alloc(l, rows, cfg->prefetch > 0 ? cfg->prefetch + 1 : 1);
    if (st == GRAFT_OK && cfg->prefetch > 0) {
        int err = pthread_mutex_init(&l->mu, NULL);
        if (err == 0 && (err = pthread_cond_init(&l->have_batch, NULL)) == 0 &&
            (err = pthread_cond_init(&l->have_room, NULL)) == 0 &&
            (err = pthread_create(&l->thread, NULL, prefetch_main, l)) == 0)
            l->threaded = 1;
        if (err != 0) {
            GRAFT_ERROR("%s: cannot start the prefetch thread: %s", dir, strerror(err));
            st = GRAFT_ERR_INTERNAL;
        }
    }
    if (st != GRAFT_OK) {
        if (st == GRAFT_ERR_NOMEM)
            GRAFT_ERROR("%s: out of memory for %d batch buffers of %d samples", dir, l->n_slots,
                        l->max_n);
        graft_loader_free(l);
        return st;
    }
    *out = l;
    return GRAFT_OK;
}

graft_status graft_loader_new_eval(graft_loader **out, const graft_dataset *d, int batch, int rank,
                                   int world, int seq_len) {
    *out = NULL;
    const char *dir = d->dir ? d->dir : "dataset";
    if (batch < 1) {
        GRAFT_ERROR("%s: eval batch must be >= 1, got %d", dir, batch);
        return GRAFT_ERR_CONFIG;
    }
    if (world < 1 || rank < 0 || rank >= world) {
        GRAFT_ERROR("%s: rank %d is outside a world of %d", dir, rank, world);
        return GRAFT_ERR_CONFIG;
    }
    size_t N = epoch_samples(__func__, d, seq_len);
    if (N == 0) return GRAFT_ERR_CONFIG;
    graft_loader *l = calloc(1, sizeof *l);
    if (!l) return GRAFT_ERR_NOMEM;
    l->d = d;
    l->eval = 1;
    l->cfg.batch_size = batch;
    l->cfg.rank = rank;
    l->cfg.world = world;
    l->cfg.seq_len = seq_len;
    l->N = N;
    l->sample_size = row_size(d, seq_len);
    uint64_t share = (N + (uint64_t)world - 1) / (uint64_t)world;
    int rows = (uint64_t)batch < share ? batch : (int)share;
    graft_status st = loader_alloc(l, rows, 1);
    if (st != GRAFT_OK) {
        GRAFT_ERROR("%s: out of memory for an eval batch of %d samples", dir, rows);
        graft_loader_free(l);
        return st;
    }
    *out = l;
    return GRAFT_OK;
}

graft_status graft_loader_next(graft_loader *l, graft_batch **batch, double *wait_s) {
    double t0 = now_s();
    graft_batch *b;
    if (!l->threaded) {
        b = &l->slots[0];
        produce(l, b);
    } else {
        pthread_mutex_lock(&l->mu);
        if (l->in_use) {
            l->in_use = 0; /* the caller is done with the previous batch */
            pthread_cond_signal(&l->have_room);
        }
        while (l->ready == 0)
            pthread_cond_wait(&l->have_batch, &l->mu);
        b = &l->slots[l->read_idx];
        l->read_idx = (l->read_idx + 1) % l->n_slots;
        l->ready--;
        l->in_use = 1;
        pthread_mutex_unlock(&l->mu);
    }
    l->consumer_cursor = b->cursor_after;
    if (wait_s) *wait_s = now_s() - t0;
    *batch = b;
    return GRAFT_OK;
}

uint64_t graft_loader_cursor(const graft_loader *l) { return l->consumer_cursor; }

size_t graft_loader_epoch_samples(const graft_loader *l) { return l->N; }

long graft_loader_steps_per_epoch(const graft_loader *l) {
    return (long)((l->N + (uint64_t)l->cfg.batch_size - 1) / (uint64_t)l->cfg.batch_size);
}

void graft_loader_free(graft_loader *l) {
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->have_room);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->have_batch);
        pthread_cond_destroy(&l->have_room);
        pthread_mutex_destroy(&l->mu);
    }
    for (int s = 0; l->slots && s < l->n_slots; s++) {
        free(l->slots[s].inputs);
        free(l->slots[s].tokens);
        free(l->slots[s].labels);
        free(l->slots[s].indices);
    }
    free(l->slots);
    free(l->perm);
    free(l->window);
    free(l);
}
