/* The data loader: the global sampler plus a prefetch thread.
 *
 * Global sampler (DESIGN.md, Data): in epoch e the N samples are visited in a
 * permutation seeded by (seed, e) (identity when shuffle is off). The run is one
 * stream of positions; the cursor is the number of samples consumed since the start
 * of training, so epoch = cursor / N and the offset in the epoch = cursor % N. A step
 * takes the next global batch: G = batch_size positions, or fewer at the end of an
 * epoch (a batch never spans two epochs). Rank r of W takes positions
 * [start + floor(r*b/W), start + floor((r+1)*b/W)) of a batch of b positions, so
 * every sample of an epoch is seen exactly once whatever W is, and a cursor saved
 * at world size W resumes exactly at world size W'.
 *
 * Samples: images -> inputs [n, C*H*W] floats (normalised, optionally augmented
 * with a random crop after zero padding and a horizontal flip, seeded by
 * (seed, epoch, sample index) so augmentation does not depend on W), labels [n].
 * Tokens -> sample i is the window tokens[i*L, i*L + L] (L+1 tokens): inputs_tokens
 * [n, L] and labels [n, L] (next-token targets); N = (num_tokens - 1) / L.
 *
 * With prefetch > 0 a thread prepares the next batches while the step runs. */
#ifndef GRAFT_LOADER_H
#define GRAFT_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/data/dataset.h"

typedef struct graft_loader_config {
    long batch_size; /* global batch G */
    int rank, world;
    uint64_t seed;
    int shuffle;
    int prefetch;   /* batches ahead; 0 = synchronous */
    int seq_len;    /* tokens only */
    int crop_padding; /* images: 0 = no random crop */
    int hflip;        /* images: random horizontal flip */
} graft_loader_config;

/* One rank's part of one global step. Owned by the loader; valid until the next
 * graft_loader_next call. */
typedef struct graft_batch {
    int n;                 /* samples for this rank (may be 0 at an epoch's ragged end) */
    int global_n;          /* samples in the whole global batch */
    long epoch;            /* epoch the batch belongs to */
    uint64_t cursor_after; /* global cursor after this batch */
    float *inputs;         /* images: [n, sample_floats] */
    int32_t *tokens;       /* tokens: [n, seq_len] */
    int32_t *labels;       /* images: [n]; tokens: [n, seq_len] */
} graft_batch;

typedef struct graft_loader graft_loader; /* opaque */

/* The dataset must outlive the loader. Starts at `cursor` (0 for a new run). */
graft_status graft_loader_new(graft_loader **out, const graft_dataset *d,
                              const graft_loader_config *cfg, uint64_t cursor);
/* Next batch; blocks only when prefetch has not kept up. *wait_s (may be NULL)
 * receives the seconds spent waiting for data. */
graft_status graft_loader_next(graft_loader *l, graft_batch **batch, double *wait_s);
/* Samples per epoch (N) and steps per epoch (ceil(N / G)). */
size_t graft_loader_epoch_samples(const graft_loader *l);
long graft_loader_steps_per_epoch(const graft_loader *l);
void graft_loader_free(graft_loader *l);

/* Sequential, unshuffled, unaugmented pass for evaluation: rank r takes a contiguous
 * share of [0, N) in batches of at most `batch` samples; graft_loader_next then gives
 * a batch with global_n == 0 after the last one. */
graft_status graft_loader_new_eval(graft_loader **out, const graft_dataset *d, int batch,
                                   int rank, int world, int seq_len);

#endif
