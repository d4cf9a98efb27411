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
 * The permutation of epoch e is Fisher-Yates over the identity: with
 * graft_rng seeded graft_rng_mix(seed, e), for i = N-1 down to 1 swap positions i and
 * graft_rng_below(i + 1). A rank whose slice of a batch is empty gets n == 0 (only when
 * the batch is smaller than W); it still takes part in the step.
 *
 * Samples: images -> inputs [n, C*H*W] floats (normalised, optionally augmented
 * with a random crop after zero padding and a horizontal flip, seeded by
 * (seed, epoch, sample index) so augmentation does not depend on W), labels [n].
 * Augmentation of sample i in epoch e: graft_rng seeded
 * graft_rng_mix(graft_rng_mix(seed ^ GRAFT_LOADER_AUG_SALT, e), i); with padding p it
 * draws dy = below(2p+1), dx = below(2p+1), then (with hflip) flip = u64 & 1; output
 * pixel (y, x) is input pixel (y + dy - p, x' + dx - p), x' = flip ? W-1-x : x, or 0
 * (before normalisation, as torchvision pads) outside the image.
 * Tokens -> sample i is the window tokens[i*L, i*L + L] (L+1 tokens): tokens
 * [n, L] and labels [n, L] (next-token targets); N = (num_tokens - 1) / L.
 * Sequences -> sample i's T ids: tokens [n, T] and labels [n] (one class per row);
 * N = num_samples, T is the dataset's (seq_len is not used).
 *
 * With prefetch > 0 a thread prepares up to `prefetch` batches ahead while the step
 * runs (prefetch + 1 batch buffers: the one the caller holds plus the ring); batches
 * are the same with or without it. */
#ifndef GRAFT_LOADER_H
#define GRAFT_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/data/dataset.h"

#define GRAFT_LOADER_AUG_SALT 0xA5A5F00DC0FFEE11ull
#define GRAFT_LOADER_MAX_PREFETCH 64

typedef struct graft_loader_config {
    long batch_size; /* global batch G */
    int rank, world;
    uint64_t seed;
    int shuffle;
    int prefetch;     /* batches ahead, 0..GRAFT_LOADER_MAX_PREFETCH; 0 = synchronous */
    int seq_len;      /* tokens only (sequences have the dataset's T) */
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
    int32_t *tokens;       /* tokens: [n, seq_len]; sequences: [n, T] */
    int32_t *labels;       /* images, sequences: [n]; tokens: [n, seq_len] */
    uint64_t *indices;     /* [n] dataset sample (images, sequences) / window (tokens) */
} graft_batch;

typedef struct graft_loader graft_loader; /* opaque */

/* The dataset must outlive the loader. Starts at `cursor` (0 for a new run).
 * Bad configuration (batch_size < 1, rank outside [0, world), seq_len < 1 or a token
 * dataset shorter than seq_len + 1 tokens, ...) is one logged line and
 * GRAFT_ERR_CONFIG; GRAFT_ERR_NOMEM when the batch buffers cannot be allocated. */
graft_status graft_loader_new(graft_loader **out, const graft_dataset *d,
                              const graft_loader_config *cfg, uint64_t cursor);
/* Next batch; blocks only when prefetch has not kept up. *wait_s (may be NULL)
 * receives the seconds spent waiting for data (without prefetch: the time spent
 * preparing the batch). The previous batch is released by this call. */
graft_status graft_loader_next(graft_loader *l, graft_batch **batch, double *wait_s);
/* The cursor to save in a checkpoint: samples consumed once the last batch returned by
 * graft_loader_next is done (the starting cursor before the first call). */
uint64_t graft_loader_cursor(const graft_loader *l);
/* Samples per epoch (N) and steps per epoch (ceil(N / G)). */
size_t graft_loader_epoch_samples(const graft_loader *l);
long graft_loader_steps_per_epoch(const graft_loader *l);
void graft_loader_free(graft_loader *l);

/* Sequential, unshuffled, unaugmented pass for evaluation: rank r takes the contiguous
 * share [floor(r*N/W), floor((r+1)*N/W)) of [0, N) in batches of at most `batch`
 * samples (`batch` is per rank). Steps are global: step k gives every rank the k-th
 * piece of its share (n may be 0 on a rank whose share is used up) and global_n, the
 * sum of n over all ranks, so every rank runs the same number of steps; after the last
 * one graft_loader_next gives a batch with global_n == 0 (and n == 0), and keeps doing
 * so. epoch is 0; cursor_after counts the samples evaluated by all ranks. No thread. */
graft_status graft_loader_new_eval(graft_loader **out, const graft_dataset *d, int batch, int rank,
                                   int world, int seq_len);

#endif
