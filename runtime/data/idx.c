#include "idx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

/* Largest file we accept: keeps a corrupt header from asking for terabytes. */
#define IDX_MAX_BYTES ((size_t)1 << 32)

/* Read exactly n bytes; 0 on success, -1 on read error, -2 on early end. */
static int read_exact(gzFile gz, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(gz, p, chunk);
        if (got < 0) return -1;
        if (got == 0) return -2;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Deflate expands at most about 1032:1, so a gzip file of n bytes holds at most this many. */
#define GZIP_MAX_RATIO 1032u

/* Whether the file (of `size` bytes) can hold the `total` data bytes its header
 * promises after `header` bytes: checked before anything is allocated, so a small file
 * claiming gigabytes fails at once. An uncompressed idx file (gzread reads those too)
 * must hold them exactly; a gzip file within deflate's best ratio. */
static int file_can_hold(const char *path, uint64_t size, gzFile gz, size_t total, size_t header) {
    int plain = gzdirect(gz);
    uint64_t most = plain
                        ? (size > header ? size - header : 0)
                        : (size > UINT64_MAX / GZIP_MAX_RATIO ? UINT64_MAX : size * GZIP_MAX_RATIO);
    if ((uint64_t)total <= most) return 1;
    GRAFT_ERROR("%s: header promises %zu data bytes, more than a %s file of %llu bytes can hold",
                path, total, plain ? "raw idx" : "gzip", (unsigned long long)size);
    return 0;
}

graft_status graft_idx_read(graft_idx *out, const char *path) {
    memset(out, 0, sizeof *out);
    int fd;
    uint64_t file_bytes;
    GRAFT_TRY(graft_fs_open_regular(path, &fd, &file_bytes, GRAFT_LOG_ERROR));
    gzFile gz = gzdopen(fd, "rb"); /* owns fd from here */
    if (!gz) {
        close(fd);
        GRAFT_ERROR("%s: cannot open: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    graft_status st = GRAFT_ERR_FORMAT;
    unsigned char head[4];
    int rc = read_exact(gz, head, 4);
    if (rc != 0) {
        GRAFT_ERROR("%s: %s", path, rc == -2 ? "file too short for an idx header" : "read error (corrupt gzip data?)");
        goto done;
    }
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 || head[3] > 4) {
        GRAFT_ERROR("%s: not an unsigned-byte idx file (magic %02x%02x%02x%02x)", path, head[0],
                    head[1], head[2], head[3]);
        goto done;
    }
    out->ndim = head[3];
    unsigned char dims[16];
    rc = read_exact(gz, dims, 4 * (size_t)out->ndim);
    if (rc != 0) {
        GRAFT_ERROR("%s: truncated idx header", path);
        goto done;
    }
    size_t total = 1;
    for (int d = 0; d < out->ndim; d++) {
        out->dims[d] = be32(dims + 4 * d);
        if (out->dims[d] == 0 || out->dims[d] > IDX_MAX_BYTES / total) {
            GRAFT_ERROR("%s: dimension %d = %u is zero or too large", path, d, out->dims[d]);
            goto done;
        }
        total *= out->dims[d];
    }
    out->count = out->dims[0];
    out->item_size = total / out->count;
    if (!file_can_hold(path, file_bytes, gz, total, 4 + 4 * (size_t)out->ndim)) goto done;
    out->data = malloc(total);
    if (!out->data) {
        GRAFT_ERROR("%s: cannot allocate %zu bytes", path, total);
        st = GRAFT_ERR_NOMEM;
        goto done;
    }
    rc = read_exact(gz, out->data, total);
    if (rc != 0) {
        GRAFT_ERROR("%s: %s (header promises %zu data bytes)", path,
                    rc == -2 ? "truncated" : "read error (corrupt gzip data?)", total);
        goto done;
    }
    st = GRAFT_OK;
done:
    gzclose(gz);
    if (st != GRAFT_OK) graft_idx_free(out);
    return st;
}

void graft_idx_free(graft_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

graft_status graft_fmnist_load(graft_fmnist *out, const char *dir, const char *split) {
    memset(out, 0, sizeof *out);
    char img_path[4096], lab_path[4096];
    snprintf(img_path, sizeof img_path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lab_path, sizeof lab_path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    graft_idx img, lab;
    graft_status st = graft_idx_read(&img, img_path);
    if (st != GRAFT_OK) return st;
    st = graft_idx_read(&lab, lab_path);
    if (st != GRAFT_OK) {
        graft_idx_free(&img);
        return st;
    }
    st = GRAFT_ERR_FORMAT;
    if (img.ndim != 3) {
        GRAFT_ERROR("%s: expected 3 dimensions (count, rows, cols), found %d", img_path, img.ndim);
    } else if (lab.ndim != 1) {
        GRAFT_ERROR("%s: expected 1 dimension (count), found %d", lab_path, lab.ndim);
    } else if (img.count != lab.count) {
        GRAFT_ERROR("%s: %zu labels but %s has %zu images", lab_path, lab.count, img_path,
                    img.count);
    } else {
        size_t n = img.count, pix = img.item_size;
        out->images = malloc(n * pix * sizeof(float));
        out->labels = malloc(n * sizeof(int32_t));
        if (!out->images || !out->labels) {
            st = GRAFT_ERR_NOMEM;
        } else {
            st = GRAFT_OK;
            for (size_t i = 0; i < n && st == GRAFT_OK; i++) {
                if (lab.data[i] >= 10) {
                    GRAFT_ERROR("%s: label %u at item %zu is not a class in [0, 10)", lab_path,
                                lab.data[i], i);
                    st = GRAFT_ERR_FORMAT;
                }
                out->labels[i] = lab.data[i];
            }
            for (size_t i = 0; i < n * pix; i++)
                out->images[i] =
                    ((float)img.data[i] / 255.0f - GRAFT_FMNIST_MEAN) / GRAFT_FMNIST_STD;
            out->count = n;
            out->height = (int)img.dims[1];
            out->width = (int)img.dims[2];
        }
    }
    graft_idx_free(&img);
    graft_idx_free(&lab);
    if (st != GRAFT_OK) graft_fmnist_free(out);
    return st;
}

void graft_fmnist_free(graft_fmnist *f) {
    if (!f) return;
    free(f->images);
    free(f->labels);
    memset(f, 0, sizeof *f);
}
