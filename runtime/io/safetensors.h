/* safetensors read (memory-mapped, fully validated) and write (deterministic, atomic).
 *
 * File layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
 * then the data region; offsets are relative to its start (byte 8 + N). Tensor data is
 * little-endian, row-major, contiguous. As in the reference implementation, the data
 * region must be covered exactly: no overlap, no gap between tensors, no trailing bytes.
 *
 * Reading:  graft_st_file f; if (graft_st_open(&f, path) != GRAFT_OK) return ...;
 *           const graft_st_tensor *t = graft_st_find(&f, "fc.weight");
 *           graft_st_read_f32(t, dst, numel);  ...  graft_st_close(&f);
 * Writing:  graft_st_writer w; graft_st_writer_init(&w);
 *           graft_st_writer_add(&w, "fc.weight", GRAFT_DTYPE_F32, 2, shape, values);
 *           graft_st_writer_set_metadata(&w, "format", "pt");
 *           graft_st_writer_save(&w, path); graft_st_writer_free(&w);
 * Errors are logged as one line naming the file and the problem. */
#ifndef GRAFT_SAFETENSORS_H
#define GRAFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

/* Element types graft reads and writes (safetensors names in graft_dtype_name). */
typedef enum graft_dtype {
    GRAFT_DTYPE_F32 = 0,
    GRAFT_DTYPE_F16,
    GRAFT_DTYPE_BF16,
    GRAFT_DTYPE_I64,
    GRAFT_DTYPE_I32,
    GRAFT_DTYPE_U8,
    GRAFT_DTYPE_U16,
    GRAFT_DTYPE_COUNT
} graft_dtype;

/* Bytes per element; 0 for an invalid dtype. */
size_t graft_dtype_size(graft_dtype dtype);
/* The safetensors spelling ("F32", "BF16", ...); "?" for an invalid dtype. */
const char *graft_dtype_name(graft_dtype dtype);
/* Parse a safetensors dtype string; returns 1 and sets *out if known, else 0. */
int graft_dtype_from_name(const char *name, graft_dtype *out);

/* Scalar conversions. Round to nearest, ties to even; overflow gives +-inf; NaN stays
 * NaN (quiet, sign kept); fp16 subnormals are produced and decoded exactly. */
float graft_f16_to_f32(uint16_t h);
uint16_t graft_f32_to_f16(float x);
float graft_bf16_to_f32(uint16_t h);
uint16_t graft_f32_to_bf16(float x);

#define GRAFT_ST_MAX_DIMS 8
/* Headers larger than this are rejected as corrupt (the reference uses the same limit). */
#define GRAFT_ST_MAX_HEADER_BYTES 100000000ull

/* One tensor of an open file. All pointers are owned by the graft_st_file and stay
 * valid until graft_st_close. `data` points into the read-only map and may be
 * UNALIGNED for files written by other tools: read it with memcpy or graft_st_read_f32,
 * never by casting to float* (files written by graft_st_writer_save are aligned). */
typedef struct graft_st_tensor {
    const char *name;
    graft_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[GRAFT_ST_MAX_DIMS];
    size_t numel;     /* product of shape (1 for a scalar) */
    const void *data; /* nbytes bytes in the map */
    size_t nbytes;    /* numel * graft_dtype_size(dtype) */
    uint64_t offset;  /* begin of data_offsets (relative to the data region) */
} graft_st_tensor;

/* An open, validated safetensors file. Every field is owned by the struct and released
 * by graft_st_close; a zeroed struct is a valid closed file. */
typedef struct graft_st_file {
    char *path; /* copy of the path given to graft_st_open */
    void *map;  /* read-only mapping of the whole file */
    size_t map_bytes;
    uint64_t header_bytes;            /* N */
    const unsigned char *data_region; /* map + 8 + N */
    size_t data_bytes;
    graft_st_tensor *tensors; /* n_tensors entries, ordered by data offset */
    size_t n_tensors;
    char **meta_keys; /* n_meta entries each, in file order */
    char **meta_values;
    size_t n_meta;
} graft_st_file;

/* Map `path` read-only and validate the whole header before returning. On success *f
 * owns the map and the tensor table (release with graft_st_close). On failure one error
 * line is logged, *f is left zeroed (nothing allocated or mapped) and the result is
 * GRAFT_ERR_IO (cannot open/stat/map), GRAFT_ERR_FORMAT (malformed file) or
 * GRAFT_ERR_NOMEM. */
graft_status graft_st_open(graft_st_file *f, const char *path);
/* Unmap and free everything; safe on a zeroed or failed struct and safe to call twice. */
void graft_st_close(graft_st_file *f);
/* The tensor called `name`, or NULL. The pointer is owned by f. */
const graft_st_tensor *graft_st_find(const graft_st_file *f, const char *name);
/* The __metadata__ value for `key`, or NULL. The string is owned by f. */
const char *graft_st_metadata_get(const graft_st_file *f, const char *key);

/* Convert a tensor of any supported dtype to fp32 into dst (n floats, caller-owned).
 * Floats convert exactly; integers exactly where representable in fp32, else rounded to
 * nearest. GRAFT_ERR_MISMATCH (logged) if n != t->numel. */
graft_status graft_st_read_f32(const graft_st_tensor *t, float *dst, size_t n);

/* One tensor queued for writing. Internal to the writer; shown for stack allocation. */
typedef struct graft_st_write_entry {
    char *name;        /* owned copy */
    graft_dtype dtype; /* dtype stored in the file */
    int from_f32;      /* 1: data holds floats converted to dtype on save */
    int ndim;
    int64_t shape[GRAFT_ST_MAX_DIMS];
    size_t numel;
    const void *data; /* caller-owned; must stay valid until save returns */
} graft_st_write_entry;

/* Accumulates tensors and metadata, then writes them in one atomic save. */
typedef struct graft_st_writer {
    graft_st_write_entry *entries;
    size_t n_entries, cap_entries;
    char **meta_keys; /* owned copies */
    char **meta_values;
    size_t n_meta, cap_meta;
} graft_st_writer;

void graft_st_writer_init(graft_st_writer *w);
/* Free the writer's copies (names, shapes, metadata); never the callers' data.
 * Safe on a zeroed writer and safe to call twice. */
void graft_st_writer_free(graft_st_writer *w);
/* Queue a tensor whose bytes (numel * graft_dtype_size(dtype), little-endian, any
 * alignment) are already in `dtype`. The name is copied; `data` is NOT: it is borrowed
 * and must stay valid and unchanged until graft_st_writer_save returns. data may be NULL
 * only for an empty tensor. GRAFT_ERR_INVALID_ARG (logged) for an empty, non-UTF-8 or
 * duplicate name, "__metadata__", ndim outside 0..8, negative dims or size overflow. */
graft_status graft_st_writer_add(graft_st_writer *w, const char *name, graft_dtype dtype, int ndim,
                                 const int64_t *shape, const void *data);
/* Like graft_st_writer_add for fp32 data (borrowed) that is stored as `save_as`
 * (F32, F16 or BF16; converted with round-to-nearest-even during save). */
graft_status graft_st_writer_add_f32(graft_st_writer *w, const char *name, graft_dtype save_as,
                                     int ndim, const int64_t *shape, const float *data);
/* Set a __metadata__ entry (both strings copied, must be UTF-8); a repeated key
 * replaces the previous value. */
graft_status graft_st_writer_set_metadata(graft_st_writer *w, const char *key, const char *value);
/* Write everything to `path` atomically: "<path>.tmp" is written, flushed and fsynced,
 * renamed over `path`, then the directory is fsynced. Output is deterministic: tensors
 * are laid out by element size (largest first, so every tensor is aligned) then by
 * name, header keys are sorted, the header is space-padded to a multiple of 8 bytes.
 * On failure one line naming the path and the errno text is logged, the tmp file is
 * removed, any existing file at `path` is left untouched, and GRAFT_ERR_IO is returned
 * (GRAFT_ERR_NOMEM if memory ran out). The writer is not modified. */
graft_status graft_st_writer_save(const graft_st_writer *w, const char *path);

#endif
