/* Reader for the idx format of (Fashion-)MNIST, plain or gzip-compressed
 * (e.g. Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/). */
#ifndef GRAFT_IDX_H
#define GRAFT_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

/* An idx file of unsigned bytes: dims[0] items of item_size bytes each. */
typedef struct graft_idx {
    int ndim;
    uint32_t dims[4];
    size_t count;     /* dims[0] */
    size_t item_size; /* product of dims[1..] (1 for label files) */
    uint8_t *data;    /* count * item_size bytes, owned */
} graft_idx;

/* Read and validate a whole idx file (magic 0x000008NN: unsigned byte data, NN dims).
 * Errors name the file: GRAFT_ERR_IO when it cannot be opened or read,
 * GRAFT_ERR_FORMAT when it is not a valid idx file or is truncated. */
graft_status graft_idx_read(graft_idx *out, const char *path);
void graft_idx_free(graft_idx *idx);

/* Fashion-MNIST in memory: images as floats normalised with the dataset's mean/std. */
typedef struct graft_fmnist {
    size_t count;
    int height, width;
    float *images;   /* count * height * width, owned */
    int32_t *labels; /* count, owned, in [0, 10) */
} graft_fmnist;

#define GRAFT_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define GRAFT_FMNIST_MEAN 0.2860f
#define GRAFT_FMNIST_STD 0.3530f

/* Load the train ("train") or test ("t10k") split from dir; checks that image and
 * label files agree in count and that labels are < 10. */
graft_status graft_fmnist_load(graft_fmnist *out, const char *dir, const char *split);
void graft_fmnist_free(graft_fmnist *f);

#endif
