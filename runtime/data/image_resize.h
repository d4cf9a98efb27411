/* Resizing decoded images as torchvision's transforms do on PIL images:
 *   shorter: Resize(S) then CenterCrop(S) -- the shorter side scaled to S, the longer to
 *            int(S * long / short), then the centre S x S kept (offsets rounded half to
 *            even, as Python's round does); for a target H x W that is not square the image
 *            is scaled to cover H x W (the smallest scale that does) and its centre kept;
 *   stretch: Resize((H, W)) -- both sides scaled to the target, the aspect ratio lost.
 * The filter is PIL's bilinear resampling with antialiasing (Image.resize(BILINEAR), what
 * torchvision's Resize uses on PIL images): a triangle filter whose support grows with the
 * downscale factor, coefficients in PIL's 22-bit fixed point, a horizontal then a vertical
 * pass each rounded to 8 bits -- the same arithmetic, so results match PIL to +-1. */
#ifndef GRAFT_IMAGE_RESIZE_H
#define GRAFT_IMAGE_RESIZE_H

#include <stdint.h>

#include "image_decode.h"
#include "runtime/core/status.h"

typedef enum { GRAFT_RESIZE_SHORTER = 0, GRAFT_RESIZE_STRETCH = 1 } graft_resize_mode;

/* PIL's Image.resize((out_w, out_h), BILINEAR): *out gets new pixels (HWC, in's channels).
 * out_w, out_h >= 1 (GRAFT_ERR_INVALID_ARG otherwise); else GRAFT_ERR_NOMEM is the only
 * failure. */
graft_status graft_image_resize(const graft_image *in, int out_w, int out_h, graft_image *out);

/* Resize (and, for shorter, centre-crop) in to height x width, written as planes
 * (CHW, what a dataset stores) into chw[channels * height * width]. GRAFT_ERR_UNSUPPORTED
 * when the resized image before the crop would exceed GRAFT_IMAGE_MAX_PIXELS (a very
 * thin image), GRAFT_ERR_NOMEM when out of memory. */
graft_status graft_image_fit(const graft_image *in, int height, int width, graft_resize_mode mode,
                             uint8_t *chw);

#endif
