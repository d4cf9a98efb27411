/* Private to runtime/data: shard views and helpers shared by the dataset reader,
 * the writer and the loader. */
#ifndef GRAFT_DATASET_INTERNAL_H
#define GRAFT_DATASET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* What the reader accepts (dataset.c), which the writer checks before it writes: limits
 * that keep a corrupt index from asking for absurd allocations. */
#define GRAFT_DATA_INDEX_MAX_BYTES ((size_t)64 << 20)
#define GRAFT_DATA_MAX_SHARDS 1000000
#define GRAFT_DATA_MAX_COUNT ((long long)1 << 48)
#define GRAFT_DATA_MAX_CLASSES (1 << 20)
#define GRAFT_DATA_MAX_SIDE 65536
#define GRAFT_DATA_MAX_SEQ_LEN (1 << 20)

/* Where one shard's tensors sit in its map (checked at open). */
struct graft_dataset_shard {
    const uint8_t *inputs;       /* images: [n, C, H, W] bytes */
    const unsigned char *labels; /* images, sequences: n little-endian int64, maybe unaligned */
    const unsigned char *tokens; /* tokens: n ids, sequences: [n, T] ids, of token_bytes each */
    int token_bytes;             /* 2 (U16) or 4 (I32) */
};

/* xxh64 (seed 0) of a whole file, read in 1 MiB chunks; errors logged naming the file. */
graft_status graft_data_file_xxh64(const char *path, uint64_t *out);
/* The shard holding item (sample or token) `item`. */
int graft_dataset_find_shard(const graft_dataset *d, size_t item);

/* The one normalisation formula, shared so the loader's lookup table and
 * graft_dataset_image give bit-identical floats. */
static inline float graft_data_normalize(uint8_t x, float mean, float std) {
    return ((float)x / 255.0f - mean) / std;
}

#endif
