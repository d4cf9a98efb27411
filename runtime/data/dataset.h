/* Datasets as directories of shards (see DESIGN.md, Data):
 *
 *   DIR/index.json   {"format": "graft-dataset", "version": 1,
 *                     "kind": "images" | "tokens",
 *                     "sample_shape": [1, 28, 28],          (images: C, H, W)
 *                     "num_samples": 60000,                  (images) / "num_tokens": N (tokens)
 *                     "num_classes": 10, "class_names": [...],
 *                     "normalize": {"mean": [0.2860], "std": [0.3530]},
 *                     "tokenizer": "gpt2" | "bytes", "vocab_size": 50257, (tokens)
 *                     "shards": [{"file": "shard-00000.safetensors", "samples": 8192,
 *                                 "bytes": ..., "xxh64": "16 hex digits"}, ...]}
 *   DIR/shard-NNNNN.safetensors   images: "inputs" U8 [n, C, H, W] + "labels" I64 [n]
 *                                 tokens: "tokens" U16 or I32 [n]
 *
 * Opening validates index.json against the shards (counts, shapes, dtypes, labels in
 * range, checksums when asked) and memory-maps the shards; bad data is reported as
 * one line naming the file and the problem (GRAFT_ERR_FORMAT / GRAFT_ERR_IO). */
#ifndef GRAFT_DATASET_H
#define GRAFT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"
#include "runtime/io/safetensors.h"

typedef enum { GRAFT_DATA_IMAGES = 0, GRAFT_DATA_TOKENS = 1 } graft_data_kind;

typedef struct graft_dataset {
    char *dir;
    graft_data_kind kind;
    /* images */
    int channels, height, width; /* sample_shape */
    size_t num_samples;
    int num_classes;
    char **class_names; /* num_classes entries, or NULL */
    float mean[4], std[4]; /* per channel; mean 0 / std 1 when absent */
    /* tokens */
    size_t num_tokens;
    int vocab_size;
    char *tokenizer;
    /* shards, mapped */
    int n_shards;
    graft_st_file *shards;
    size_t *shard_first; /* first sample (images) or token (tokens) of each shard */
} graft_dataset;

/* verify_checksums: recompute every shard's xxh64 (reads all bytes). */
graft_status graft_dataset_open(graft_dataset *d, const char *dir, int verify_checksums);
void graft_dataset_close(graft_dataset *d);

/* Images: copy sample i as floats normalised per channel ((x/255 - mean)/std) into
 * dst [C*H*W], and return its label. */
int graft_dataset_image(const graft_dataset *d, size_t i, float *dst);
/* Tokens: copy tokens [start, start+count) as int32 into dst; count within bounds. */
void graft_dataset_tokens(const graft_dataset *d, size_t start, size_t count, int32_t *dst);

#endif
