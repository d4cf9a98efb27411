/* graft data images: an image folder (torchvision's ImageFolder layout, or a CSV of
 * path,label) decoded, resized and written as an images dataset (and, with a validation
 * fraction, a second one), see README "Your own images".
 *
 * Classes: ROOT's sub-directories (links followed) sorted by the bytes of their names, as
 * ImageFolder sorts them (hidden ones included, as there); a class's images are its
 * .jpg/.jpeg/.png files (any case), sub-directories included, in sorted order. With a
 * CSV the classes are its distinct labels, sorted the same way, and the samples its rows
 * in order. Files that cannot be decoded are listed and skipped; everything is decoded
 * once to check it before a dataset is written, then again in chunks while writing (so
 * memory stays bounded by the chunk), each chunk by several threads into fixed slots:
 * the bytes written do not depend on the thread count. */
#ifndef GRAFT_IMAGE_FOLDER_H
#define GRAFT_IMAGE_FOLDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image_resize.h"
#include "runtime/core/status.h"

#define GRAFT_IMAGES_MAX_SIDE 4096

typedef struct graft_images_options {
    const char *root;    /* the class folders; with csv, what relative paths start from
                            (NULL: the CSV's own directory) */
    const char *csv;     /* NULL, or a file of "path,label" rows */
    const char *out;     /* the (training) dataset */
    const char *val_out; /* with val_fraction in (0, 1): the validation dataset */
    double val_fraction; /* 0: no split */
    uint64_t seed;       /* the split's */
    int height, width;   /* 1..GRAFT_IMAGES_MAX_SIDE */
    int channels;        /* 1 or 3 */
    graft_resize_mode mode;
    size_t shard_size;
    int strict;     /* any unreadable file: GRAFT_ERR_FORMAT before anything is written */
    int threads;    /* decoding threads, >= 1 */
    FILE *progress; /* a "\r"-updated progress line goes here (a terminal), or NULL */
} graft_images_options;

/* One file left out, and why. */
typedef struct graft_images_skipped {
    char *path, *reason;
} graft_images_skipped;

typedef struct graft_images_result {
    size_t found;      /* image files listed */
    size_t train, val; /* samples written to out / val_out */
    int num_classes;
    size_t ignored; /* folder files without an image extension */
    graft_images_skipped *skipped;
    size_t n_skipped;
} graft_images_result;

/* Convert (see the top). Bad input (no images, an empty class, a malformed CSV row, a
 * target that is not a dataset, with strict an unreadable file) is one ERROR line and
 * GRAFT_ERR_INVALID_ARG / GRAFT_ERR_FORMAT / GRAFT_ERR_IO, with nothing left behind; the
 * skipped files are in *res either way (graft_images_result_free). */
graft_status graft_images_convert(const graft_images_options *o, graft_images_result *res);
void graft_images_result_free(graft_images_result *res);

/* Read, decode and fit one image file into chw [channels * height * width] (CHW) exactly
 * as the converter does for each file. A file that cannot be read or decoded gives
 * GRAFT_ERR_FORMAT or GRAFT_ERR_UNSUPPORTED with the reason in why (nothing logged);
 * GRAFT_ERR_NOMEM when out of memory. */
graft_status graft_images_load(const char *path, int channels, int height, int width,
                               graft_resize_mode mode, uint8_t *chw, char *why, size_t why_size);

#endif
