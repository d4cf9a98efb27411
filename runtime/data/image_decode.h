/* Decoding JPEG (libjpeg-turbo) and PNG (libpng) files into 8-bit pixels, converted
 * the way torchvision's ImageFolder loader (PIL's Image.convert) converts them:
 *  - 3 channels: grayscale is repeated into R, G and B; an alpha channel (RGBA, gray +
 *    alpha, palette with tRNS) is dropped, keeping the colour under it as PIL's
 *    convert("RGB") does (no compositing on a background);
 *  - 1 channel: colour becomes luma L = (19595 R + 38470 G + 7471 B + 32768) >> 16, PIL's
 *    ITU-R 601-2 formula; alpha is dropped likewise;
 *  - palette PNGs are expanded, 1/2/4-bit grayscale scaled to 8 bits, 16-bit samples keep
 *    their high byte (PIL does the same for 16-bit RGB; for 16-bit grayscale PIL's mode
 *    "I" clips to 255 instead, which we do not copy), interlaced PNGs are read whole;
 *  - baseline and progressive JPEGs are decoded; CMYK and YCCK JPEGs are refused by name.
 * Nothing here logs or exits: a bad file gives a status and a reason in `why`. */
#ifndef GRAFT_IMAGE_DECODE_H
#define GRAFT_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

/* The most pixels a decoded image may have (PIL refuses twice its 89478485 warning
 * limit as a decompression bomb; so do we). */
#define GRAFT_IMAGE_MAX_PIXELS ((size_t)2 * 89478485)

/* Pixels in HWC order, `channels` bytes per pixel. */
typedef struct graft_image {
    int width, height, channels;
    uint8_t *pixels;
} graft_image;

/* Decode the JPEG or PNG in data[0..len) (told apart by their signatures, not the file
 * name) into *img with `channels` (1 or 3) channels. On failure *img is zeroed, a short
 * reason is written to why[why_size] ("truncated JPEG", "CMYK JPEG is not supported", ...)
 * and the result is GRAFT_ERR_FORMAT (not a readable image), GRAFT_ERR_UNSUPPORTED (a kind
 * of image we refuse) or GRAFT_ERR_NOMEM. */
graft_status graft_image_decode(const uint8_t *data, size_t len, int channels, graft_image *img,
                                char *why, size_t why_size);

/* Free the pixels; safe on a zeroed image. */
void graft_image_free(graft_image *img);

#endif
