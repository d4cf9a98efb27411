/* PIL's resampling (Pillow 9, libImaging/Resample.c) for 8-bit images with the bilinear
 * filter, and torchvision's Resize/CenterCrop geometry (see image_resize.h). */
#include "image_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Per output pixel: the first input pixel, how many it reads, and their fixed-point
 * weights (ksize each). Returns ksize, or 0 when out of memory. */
static int coefficients(int in_size, int out_size, int **bounds_out, int **kk_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *k = malloc((size_t)ksize * sizeof *k);
    int *kk = malloc((size_t)out_size * (size_t)ksize * sizeof *kk);
    int *bounds = malloc((size_t)out_size * 2 * sizeof *bounds);
    if (!k || !kk || !bounds) {
        free(k);
        free(kk);
        free(bounds);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bilinear((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        for (x = 0; x < ksize; x++)
            kk[xx * ksize + x] = (int)(k[x] < 0 ? -0.5 + k[x] * (1 << PRECISION_BITS)
                                                : 0.5 + k[x] * (1 << PRECISION_BITS));
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static uint8_t clip8(int64_t v) {
    if (v >= ((int64_t)1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* One pass along rows (horizontal) or columns (vertical) of an HWC image. */
static void pass(const uint8_t *in, int in_w, uint8_t *out, int out_w, int out_h, int ch,
                 int horizontal, int row_offset, int ksize, const int *bounds, const int *kk) {
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < out_w; x++) {
            int o = horizontal ? x : y;
            int start = bounds[2 * o], n = bounds[2 * o + 1];
            const int *k = kk + (size_t)o * (size_t)ksize;
            for (int c = 0; c < ch; c++) {
                int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                for (int i = 0; i < n; i++) {
                    size_t px = horizontal
                                    ? (size_t)(y + row_offset) * (size_t)in_w + (size_t)(start + i)
                                    : (size_t)(start + i) * (size_t)in_w + (size_t)x;
                    ss += (int64_t)in[px * (size_t)ch + (size_t)c] * k[i];
                }
                out[((size_t)y * (size_t)out_w + (size_t)x) * (size_t)ch + (size_t)c] = clip8(ss);
            }
        }
}

graft_status graft_image_resize(const graft_image *in, int out_w, int out_h, graft_image *out) {
    memset(out, 0, sizeof *out);
    if (out_w < 1 || out_h < 1) return GRAFT_ERR_INVALID_ARG;
    int ch = in->channels;
    out->pixels = malloc((size_t)out_w * (size_t)out_h * (size_t)ch);
    if (!out->pixels) return GRAFT_ERR_NOMEM;
    out->width = out_w;
    out->height = out_h;
    out->channels = ch;
    if (out_w == in->width && out_h == in->height) {
        memcpy(out->pixels, in->pixels, (size_t)out_w * (size_t)out_h * (size_t)ch);
        return GRAFT_OK;
    }
    int *hb = NULL, *hk = NULL, *vb = NULL, *vk = NULL;
    int hks = coefficients(in->width, out_w, &hb, &hk);
    int vks = hks ? coefficients(in->height, out_h, &vb, &vk) : 0;
    uint8_t *tmp = NULL;
    graft_status st = GRAFT_ERR_NOMEM;
    if (vks) {
        /* as PIL: the horizontal pass only over the rows the vertical pass reads */
        const uint8_t *src = in->pixels;
        int first = vb[0], last = vb[2 * out_h - 2] + vb[2 * out_h - 1];
        if (out_w != in->width) {
            tmp = calloc((size_t)out_w * (size_t)(last - first), (size_t)ch);
            if (!tmp) goto done;
            for (int i = 0; i < out_h; i++)
                vb[2 * i] -= first;
            pass(in->pixels, in->width, tmp, out_w, last - first, ch, 1, first, hks, hb, hk);
            src = tmp;
        }
        if (out_h != in->height)
            pass(src, out_w, out->pixels, out_w, out_h, ch, 0, 0, vks, vb, vk);
        else
            memcpy(out->pixels, src, (size_t)out_w * (size_t)out_h * (size_t)ch);
        st = GRAFT_OK;
    }
done:
    free(tmp);
    free(hb);
    free(hk);
    free(vb);
    free(vk);
    if (st != GRAFT_OK) graft_image_free(out);
    return st;
}

/* Python's int(round(x / 2.0)) for a whole x >= 0: halves go to the even neighbour. */
static int half_to_even(int x) {
    int k = x / 2;
    return (x % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

graft_status graft_image_fit(const graft_image *in, int height, int width, graft_resize_mode mode,
                             uint8_t *chw) {
    double rw_d = width, rh_d = height;
    if (mode == GRAFT_RESIZE_SHORTER) {
        int w = in->width, h = in->height;
        if (height == width) { /* torchvision Resize(S): the longer side truncated */
            int shorter = w < h ? w : h, longer = w < h ? h : w;
            double new_long = floor((double)height * longer / shorter);
            rw_d = w <= h ? width : new_long;
            rh_d = w <= h ? new_long : height;
        } else {
            double s =
                (double)width / w > (double)height / h ? (double)width / w : (double)height / h;
            rw_d = fmax(floor(w * s), width);
            rh_d = fmax(floor(h * s), height);
        }
    }
    /* a very thin image scaled up to the target's shorter side could be huge */
    if (rw_d * rh_d > (double)GRAFT_IMAGE_MAX_PIXELS) return GRAFT_ERR_UNSUPPORTED;
    int rw = (int)rw_d, rh = (int)rh_d;
    graft_image r;
    graft_status st = graft_image_resize(in, rw, rh, &r);
    if (st != GRAFT_OK) return st;
    int top = half_to_even(rh - height), left = half_to_even(rw - width), ch = in->channels;
    for (int c = 0; c < ch; c++)
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                chw[((size_t)c * (size_t)height + (size_t)y) * (size_t)width + (size_t)x] =
                    r.pixels[(((size_t)(y + top)) * (size_t)rw + (size_t)(x + left)) * (size_t)ch +
                             (size_t)c];
    graft_image_free(&r);
    return GRAFT_OK;
}
