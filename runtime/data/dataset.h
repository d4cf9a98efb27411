/* Datasets as directories of shards (see DESIGN.md, Data):
 *
 *   DIR/index.json   {"format": "graft-dataset", "version": 1,
 *                     "kind": "images" | "tokens" | "sequences",
 *                     "description": "...",                  (optional, free text)
 *                     "sample_shape": [1, 28, 28],          (images: C, H, W; sequences: [T])
 *                     "num_samples": 60000,        (images, sequences) / "num_tokens": N (tokens)
 *                     "num_classes": 10, "class_names": [...],   (images, sequences;
 *                                                                 class_names optional)
 *                     "normalize": {"mean": [0.2860], "std": [0.3530]},  (images, optional)
 *                     "resize": "shorter" | "stretch",   (images, optional: how files of
 *                                                         other sizes were fitted)
 *                     "tokenizer": "gpt2" | "bytes", "vocab_size": 50257, (tokens, sequences)
 *                     "mask_id": 103,     (tokens, sequences: optional, the tokenizer's [MASK])
 *                     "vocab_file": "vocab.txt", (tokens, sequences, optional: the
 *                                                 WordPiece vocabulary, stored in DIR)
 *                     "pad_id": 50256,                       (sequences: fills short rows)
 *                     "shards": [{"file": "shard-00000.safetensors",
 *                                 "samples": 8192,   (images, sequences; tokens: "tokens": n)
 *                                 "bytes": ..., "xxh64": "16 hex digits"}, ...]}
 *                                                        ("xxh64" optional: xxh64, seed 0,
 *                                                         of the whole shard file)
 *   DIR/shard-NNNNN.safetensors   images: "inputs" U8 [n, C, H, W] + "labels" I64 [n]
 *                                 tokens: "tokens" U16 (vocab_size <= 65536) or I32 [n]
 *                                 sequences: "tokens" U16 or I32 [n, T] + "labels" I64 [n]
 * A sequences dataset is labelled text for classification: each sample is one document
 * of T token ids (truncated, or padded at the end with pad_id) and one class label.
 *
 * Opening validates index.json against the shards (counts, shapes, dtypes, file sizes,
 * labels and token ids in range, checksums when asked) and memory-maps the shards; bad
 * data is reported as ONE error line naming the file and the problem, and the result is
 * GRAFT_ERR_FORMAT (bad contents) or GRAFT_ERR_IO (cannot read). Unknown keys in
 * index.json are ignored (room for later versions). */
#ifndef GRAFT_DATASET_H
#define GRAFT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"
#include "runtime/io/safetensors.h"

typedef enum {
    GRAFT_DATA_IMAGES = 0,
    GRAFT_DATA_TOKENS = 1,
    GRAFT_DATA_SEQUENCES = 2
} graft_data_kind;

#define GRAFT_DATASET_MAX_CHANNELS 4
/* The name of a dataset's stored vocabulary, and its largest size. */
#define GRAFT_DATASET_VOCAB_FILE "vocab.txt"
#define GRAFT_DATASET_VOCAB_MAX_BYTES ((size_t)64 << 20)

/* Per-shard views into the maps; private to dataset.c / the loader. */
typedef struct graft_dataset_shard graft_dataset_shard;

/* An open dataset. Every field is owned by the struct and released by
 * graft_dataset_close; a zeroed struct is a valid closed dataset. */
typedef struct graft_dataset {
    char *dir;
    graft_data_kind kind;
    char *description; /* or NULL */
    /* images */
    int channels, height, width; /* sample_shape */
    /* images and sequences */
    size_t num_samples;
    int num_classes;
    char **class_names;   /* num_classes entries, or NULL */
    size_t *class_counts; /* num_classes entries: samples per label */
    /* per channel, as stored in "normalize"; mean 0 / std 1 when absent */
    float mean[GRAFT_DATASET_MAX_CHANNELS], std[GRAFT_DATASET_MAX_CHANNELS];
    char *resize; /* "shorter" or "stretch" as stored in "resize", or NULL */
    /* tokens and sequences */
    size_t num_tokens; /* tokens only */
    int vocab_size;
    char *tokenizer;
    int mask_id; /* the tokenizer's [MASK] ("mask_id"), -1 when it has none */
    char *vocab_path; /* DIR/vocab.txt when "vocab_file" is set, else NULL */
    graft_dtype token_dtype; /* U16 or I32 */
    /* sequences */
    int seq_len; /* T, sample_shape[0] */
    int pad_id;  /* in [0, vocab_size) */
    /* shards, mapped */
    int n_shards;
    graft_st_file *shards;
    size_t *shard_first;     /* n_shards + 1 entries: first sample (images, sequences) or token
                                (tokens) of each shard; shard_first[n_shards] is the total */
    char **shard_files;      /* n_shards file names as in index.json */
    uint64_t *shard_bytes;   /* n_shards file sizes */
    char (*shard_xxh64)[17]; /* n_shards checksums as in index.json ("" when absent) */
    uint64_t total_bytes;    /* sum of shard_bytes */
    int n_verified;          /* shards whose checksum was recomputed and matched at open */
    graft_dataset_shard *views;
} graft_dataset;

/* "images", "tokens" or "sequences". */
const char *graft_dataset_kind_name(graft_data_kind kind);

/* Open DIR (reads DIR/index.json, maps every shard). verify_checksums: recompute every
 * shard's xxh64 (reads all bytes); shards without "xxh64" in the index are not counted
 * in d->n_verified. On failure one line is logged and *d is left zeroed. */
graft_status graft_dataset_open(graft_dataset *d, const char *dir, int verify_checksums);
/* Unmap and free everything; safe on a zeroed struct and safe to call twice. */
void graft_dataset_close(graft_dataset *d);

/* xxh64 of what d holds, for ranks to compare: kind, shapes, counts, classes,
 * normalisation, vocabulary, and per shard its name, count, size and the xxh64 that
 * index.json records (shards without one are compared by size only). Equal datasets give
 * equal digests on every machine; a zeroed (closed) struct has a digest too. */
uint64_t graft_dataset_digest(const graft_dataset *d);

/* Images: copy sample i as floats normalised per channel ((x/255 - mean)/std) into
 * dst [C*H*W], and return its label. i < num_samples (programmer error otherwise). */
int graft_dataset_image(const graft_dataset *d, size_t i, float *dst);
/* Images: sample i's raw bytes [C, H, W] inside the map (valid until close); its
 * label goes to *label when label is not NULL. */
const uint8_t *graft_dataset_image_raw(const graft_dataset *d, size_t i, int *label);
/* Tokens: copy tokens [start, start+count) as int32 into dst; count within bounds. */
void graft_dataset_tokens(const graft_dataset *d, size_t start, size_t count, int32_t *dst);
/* Sequences: copy sample i's seq_len token ids into dst and return its label.
 * i < num_samples (programmer error otherwise). */
int graft_dataset_sequence(const graft_dataset *d, size_t i, int32_t *dst);

/* ---- writing ------------------------------------------------------------------------
 * w = new_images / new_tokens / new_sequences(DIR, ...); add_image / add_tokens /
 * add_sequence ...; finish(w); free(w).
 * Shards are cut every shard_size samples (images, sequences) or tokens (tokens), written with
 * graft_st_writer_save and checksummed; index.json is written last (tmp + fsync +
 * rename). Everything goes to "DIR.tmp" first and is renamed to DIR by finish, so an
 * interrupted run never leaves a half-written DIR. DIR may be absent, empty, or a
 * previous graft dataset (replaced: see graft_dataset_writer_finish); anything else is
 * refused with one line and GRAFT_ERR_IO. Images also get per-channel mean/std of x/255
 * over the written samples in "normalize" unless set_normalize overrides them. */
typedef struct graft_dataset_writer graft_dataset_writer; /* opaque */

/* class_names: num_classes strings (copied) or NULL. shard_size > 0. */
graft_status graft_dataset_writer_new_images(graft_dataset_writer **out, const char *dir,
                                             int channels, int height, int width, int num_classes,
                                             const char *const *class_names, size_t shard_size);
/* vocab_size > 0; token ids must lie in [0, vocab_size). */
graft_status graft_dataset_writer_new_tokens(graft_dataset_writer **out, const char *dir,
                                             const char *tokenizer, int vocab_size,
                                             size_t shard_size);
/* tokenizer names the ids; vocab_size > 0; seq_len T >= 1; pad_id in [0, vocab_size);
 * num_classes >= 1; class_names: num_classes strings (copied) or NULL. */
graft_status graft_dataset_writer_new_sequences(graft_dataset_writer **out, const char *dir,
                                                const char *tokenizer, int vocab_size, int seq_len,
                                                int pad_id, int num_classes,
                                                const char *const *class_names, size_t shard_size);
/* Record the tokenizer's [MASK] id (tokens, sequences; in [0, vocab_size)) in index.json,
 * for masked-LM training to use. */
graft_status graft_dataset_writer_set_mask_id(graft_dataset_writer *w, int mask_id);
/* Append one image of C*H*W bytes (CHW order) with its label in [0, num_classes). */
graft_status graft_dataset_writer_add_image(graft_dataset_writer *w, const uint8_t *chw, int label);
/* Append n token ids. */
graft_status graft_dataset_writer_add_tokens(graft_dataset_writer *w, const int32_t *ids, size_t n);
/* Append one sequence sample: the first seq_len of the n ids (all must lie in
 * [0, vocab_size)), padded at the end with pad_id when n < seq_len, and its label in
 * [0, num_classes). */
graft_status graft_dataset_writer_add_sequence(graft_dataset_writer *w, const int32_t *ids,
                                               size_t n, int label);
/* Store these per-channel values instead of the computed ones (channels entries). */
void graft_dataset_writer_set_normalize(graft_dataset_writer *w, const float *mean,
                                        const float *std);
/* Images: record how the files were fitted to the sample size ("shorter" or "stretch"),
 * for predictions to fit theirs alike. */
graft_status graft_dataset_writer_set_resize(graft_dataset_writer *w, const char *mode);
/* Tokens, sequences: store a copy of this vocab.txt (read now) as DIR/vocab.txt. */
graft_status graft_dataset_writer_set_vocab_file(graft_dataset_writer *w, const char *path);
/* Free text stored as "description" (copied). */
graft_status graft_dataset_writer_set_description(graft_dataset_writer *w, const char *text);
/* Samples (images, sequences) or tokens (tokens) added so far. */
size_t graft_dataset_writer_count(const graft_dataset_writer *w);
/* Write the last shard and index.json, then move DIR.tmp to DIR. An empty dataset is
 * refused (GRAFT_ERR_INVALID_ARG). */
graft_status graft_dataset_writer_finish(graft_dataset_writer *w);
/* Free the writer; if finish did not succeed, DIR.tmp is removed and DIR untouched. */
void graft_dataset_writer_free(graft_dataset_writer *w);

#endif
