/* 2-D convolution (groups = 1) over the whole batch as im2col + cblas_sgemm.
 *
 * Activations are channel-major [C, N, H, W], so the output of all N images is one
 * matrix out [OC, N*OH*OW] = weight [OC, C*KH*KW] · col [C*KH*KW, N*OH*OW]. The column
 * matrix holds, in row (c*KH + kh)*KW + kw and column (n*OH + oh)*OW + ow, the input
 * pixel under that tap (0 in the padding). It is built for a chunk of whole images at a
 * time (scratch stays small and in cache, the GEMM still wide); each chunk's product is
 * a column block of out (leading dimension N*OH*OW). A 1x1 stride-1 convolution of a
 * channel-major input has col == the input and is a plain GEMM in both directions. */
#include "ops.h"

#include <cblas.h>
#include <stddef.h>
#include <string.h>

/* A chunk has at least this many columns when the batch allows (narrower GEMMs lose
 * speed: layer4's 2x2 maps, one image at a time, ran at a third of the rate), and grows
 * up to this many col floats (about half of a 1 MB L2) when its images are small. */
#define CHUNK_MIN_COLS 256
#define CHUNK_FLOATS (128 * 1024)

/* Output size of one dimension (floor mode); 0 when the window never fits. */
static int conv_out_size(int in, int k, int stride, int pad) {
    int span = in + 2 * pad - k;
    if (stride <= 0 || k <= 0 || span < 0) return 0;
    return span / stride + 1;
}

/* Fills in the output size of a convolution, like torch.nn.Conv2d (dilation 1). */
graft_conv2d_shape graft_conv2d_shape_make(int N, int C, int H, int W, int OC, int KH, int KW,
                                           int stride, int pad) {
    graft_conv2d_shape s = {
        .N = N, .C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .stride = stride, .pad = pad};
    s.OH = conv_out_size(H, KH, stride, pad);
    s.OW = conv_out_size(W, KW, stride, pad);
    return s;
}

/* True when col would be the input itself, so im2col can be skipped. */
static int conv_is_direct(const graft_conv2d_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0 && !s->nchw_input;
}

/* Stride 1 with "same" padding (OH == H, OW == W) on a channel-major input: tap (kh, kw)
 * of output i in a channel's run of N*H*W values reads input i + (kh-pad)*W + (kw-pad).
 * A chunk's whole row of col is then one shifted copy, masked where the tap falls in
 * the padding (and so would read a neighbouring row or image). */
static int conv_is_shift(const graft_conv2d_shape *s) {
    return s->stride == 1 && s->KH == 2 * s->pad + 1 && s->KW == 2 * s->pad + 1 && !s->nchw_input;
}

/* Images per im2col chunk. */
static int chunk_images(const graft_conv2d_shape *s) {
    const size_t P = (size_t)s->OH * s->OW, K = (size_t)s->C * s->KH * s->KW;
    if (P == 0 || K == 0 || s->N <= 0) return 1;
    size_t g = (CHUNK_MIN_COLS + P - 1) / P;
    if (CHUNK_FLOATS / (K * P) > g) g = CHUNK_FLOATS / (K * P);
    return g < (size_t)s->N ? (int)g : s->N;
}

/* Scratch: col for one chunk, then (shift shapes) the padding masks of its taps. */
size_t graft_conv2d_scratch_floats(const graft_conv2d_shape *s) {
    if (conv_is_direct(s)) return 0;
    const size_t chunk = (size_t)chunk_images(s) * s->OH * s->OW;
    return ((size_t)s->C + (conv_is_shift(s) ? 1 : 0)) * s->KH * s->KW * chunk;
}

/* Where channel c of image n starts, in either input layout. */
static size_t plane_offset(const graft_conv2d_shape *s, int n, int c) {
    const size_t plane = (size_t)s->H * s->W;
    return s->nchw_input ? ((size_t)n * s->C + c) * plane : ((size_t)c * s->N + n) * plane;
}

/* The output columns [lo, hi) whose tap kw reads inside the image row. */
static void valid_columns(const graft_conv2d_shape *s, int kw, int *lo, int *hi) {
    const int first = s->pad - kw, last = s->W - 1 + s->pad - kw; /* ow*stride in range */
    int l = first <= 0 ? 0 : (first + s->stride - 1) / s->stride;
    int h = last < 0 ? 0 : last / s->stride + 1;
    if (h > s->OW) h = s->OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Short loops below work in blocks of LANES values, each loaded before it is stored:
 * the compiler vectorises those (and no loop of unknown length at -O2). */
#define LANES 8

/* dst[i] = src[i * stride] for i < n. */
static void gather(float *dst, const float *src, int stride, int n) {
    int i = 0;
    if (stride == 1 && n > 2 * LANES) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    if (stride == 2) /* the stem's and the downsamples' stride: even lanes of a block */
        for (; i + LANES < n; i += LANES) { /* <: the block's last odd lane is still read */
            float pairs[2 * LANES], v[LANES];
            memcpy(pairs, src + 2 * i, sizeof pairs);
            for (int j = 0; j < LANES; j++)
                v[j] = pairs[2 * j];
            for (int j = 0; j < LANES; j++)
                dst[i + j] = v[j];
        }
    for (; i < n; i++)
        dst[i] = src[(size_t)i * stride];
}

/* dst[i * stride] += src[i] for i < n. */
static void scatter_add(float *dst, const float *src, int stride, size_t n) {
    size_t i = 0;
    if (stride == 1)
        for (; i + LANES <= n; i += LANES) {
            float v[LANES];
            for (int j = 0; j < LANES; j++)
                v[j] = dst[i + j] + src[i + j];
            for (int j = 0; j < LANES; j++)
                dst[i + j] = v[j];
        }
    for (; i < n; i++)
        dst[i * stride] += src[i];
}

/* col [C*KH*KW, gn*OH*OW] from images n0 .. n0+gn-1, one output row at a time. */
static void im2col(float *col, const float *inp, const graft_conv2d_shape *s, int n0, int gn) {
    const int W = s->W, OH = s->OH, OW = s->OW, stride = s->stride, pad = s->pad;
    float *dst = col;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                int lo, hi;
                valid_columns(s, kw, &lo, &hi);
                for (int n = n0; n < n0 + gn; n++) {
                    const float *plane = inp + plane_offset(s, n, c);
                    for (int oh = 0; oh < OH; oh++, dst += OW) {
                        const int ih = oh * stride - pad + kh;
                        if (ih < 0 || ih >= s->H || lo == hi) {
                            memset(dst, 0, (size_t)OW * sizeof(float));
                            continue;
                        }
                        const float *row = plane + (size_t)ih * W + (lo * stride - pad + kw);
                        for (int ow = 0; ow < lo; ow++) /* a few columns of padding */
                            dst[ow] = 0.0f;
                        gather(dst + lo, row, stride, hi - lo);
                        for (int ow = hi; ow < OW; ow++)
                            dst[ow] = 0.0f;
                    }
                }
            }
}

/* Adds col [C*KH*KW, gn*OH*OW] back onto the input gradient of images n0 .. n0+gn-1
 * (the adjoint of im2col: taps that read the same pixel sum up, padding is dropped). */
static void col2im_add(float *dinp, const float *col, const graft_conv2d_shape *s, int n0, int gn) {
    const int W = s->W, OH = s->OH, OW = s->OW, stride = s->stride, pad = s->pad;
    const float *src = col;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                int lo, hi;
                valid_columns(s, kw, &lo, &hi);
                for (int n = n0; n < n0 + gn; n++) {
                    float *plane = dinp + plane_offset(s, n, c);
                    for (int oh = 0; oh < OH; oh++, src += OW) {
                        const int ih = oh * stride - pad + kh;
                        if (ih < 0 || ih >= s->H || lo == hi) continue;
                        float *row = plane + (size_t)ih * W + (lo * stride - pad + kw);
                        scatter_add(row, src + lo, stride, (size_t)(hi - lo));
                    }
                }
            }
}

/* masks [KH*KW, gn*H*W]: 1 where the tap reads inside its image, else 0. */
static void shift_masks(float *masks, const graft_conv2d_shape *s, int gn) {
    const int H = s->H, W = s->W;
    float *m = masks;
    for (int kh = 0; kh < s->KH; kh++)
        for (int kw = 0; kw < s->KW; kw++)
            for (int n = 0; n < gn; n++)
                for (int oh = 0; oh < H; oh++)
                    for (int ow = 0; ow < W; ow++) {
                        const int ih = oh + kh - s->pad, iw = ow + kw - s->pad;
                        *m++ = ih >= 0 && ih < H && iw >= 0 && iw < W ? 1.0f : 0.0f;
                    }
}

/* dst[i] = src[i] where mask[i] != 0, else 0 (a select: padding stays 0 next to NaN). */
static void masked_copy(float *dst, const float *src, const float *mask, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float v[LANES];
        for (int j = 0; j < LANES; j++)
            v[j] = src[i + j];
        for (int j = 0; j < LANES; j++)
            v[j] = mask[i + j] != 0.0f ? v[j] : 0.0f;
        for (int j = 0; j < LANES; j++)
            dst[i + j] = v[j];
    }
    for (; i < n; i++)
        dst[i] = mask[i] != 0.0f ? src[i] : 0.0f;
}

/* dst[i] += src[i] where mask[i] != 0. */
static void masked_add(float *dst, const float *src, const float *mask, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float v[LANES];
        for (int j = 0; j < LANES; j++)
            v[j] = src[i + j];
        for (int j = 0; j < LANES; j++)
            v[j] = dst[i + j] + (mask[i + j] != 0.0f ? v[j] : 0.0f);
        for (int j = 0; j < LANES; j++)
            dst[i + j] = v[j];
    }
    for (; i < n; i++)
        if (mask[i] != 0.0f) dst[i] += src[i];
}

/* The part [lo, hi) of a chunk's row whose shifted source lies inside the channel's
 * N*H*W values (start: the chunk's offset in them, d: the tap's shift); outside it every
 * tap is padding. */
static void shift_range(size_t start, ptrdiff_t d, size_t len, size_t total, size_t *lo,
                        size_t *hi) {
    ptrdiff_t l = -((ptrdiff_t)start + d), h = (ptrdiff_t)total - (ptrdiff_t)start - d;
    l = l < 0 ? 0 : l > (ptrdiff_t)len ? (ptrdiff_t)len : l;
    h = h < l ? l : h > (ptrdiff_t)len ? (ptrdiff_t)len : h;
    *lo = (size_t)l;
    *hi = (size_t)h;
}

/* im2col for conv_is_shift shapes (masks from shift_masks for at least gn images). */
static void im2col_shift(float *col, const float *masks, const float *inp,
                         const graft_conv2d_shape *s, int n0, int gn, int g) {
    const size_t P = (size_t)s->H * s->W, total = (size_t)s->N * P, start = (size_t)n0 * P;
    const size_t len = (size_t)gn * P;
    float *dst = col;
    for (int c = 0; c < s->C; c++) {
        const float *chan = inp + (size_t)c * total;
        for (int tap = 0; tap < s->KH * s->KW; tap++, dst += len) {
            const ptrdiff_t d = (ptrdiff_t)(tap / s->KW - s->pad) * s->W + (tap % s->KW - s->pad);
            const float *mask = masks + (size_t)tap * g * P;
            size_t lo, hi;
            shift_range(start, d, len, total, &lo, &hi);
            memset(dst, 0, lo * sizeof(float));
            if (hi > lo)
                masked_copy(dst + lo, chan + (ptrdiff_t)(start + lo) + d, mask + lo, hi - lo);
            memset(dst + hi, 0, (len - hi) * sizeof(float));
        }
    }
}

/* col2im_add for conv_is_shift shapes. */
static void col2im_shift_add(float *dinp, const float *col, const float *masks,
                             const graft_conv2d_shape *s, int n0, int gn, int g) {
    const size_t P = (size_t)s->H * s->W, total = (size_t)s->N * P, start = (size_t)n0 * P;
    const size_t len = (size_t)gn * P;
    const float *src = col;
    for (int c = 0; c < s->C; c++) {
        float *chan = dinp + (size_t)c * total;
        for (int tap = 0; tap < s->KH * s->KW; tap++, src += len) {
            const ptrdiff_t d = (ptrdiff_t)(tap / s->KW - s->pad) * s->W + (tap % s->KW - s->pad);
            const float *mask = masks + (size_t)tap * g * P;
            size_t lo, hi;
            shift_range(start, d, len, total, &lo, &hi);
            if (hi > lo)
                masked_add(chan + (ptrdiff_t)(start + lo) + d, src + lo, mask + lo, hi - lo);
        }
    }
}

/* out [OC, N, OH, OW] = conv(inp, weight [OC, C, KH, KW]) + bias [OC] (bias may be NULL).
 * scratch: graft_conv2d_scratch_floats(s) floats. */
void graft_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                          float *scratch, const graft_conv2d_shape *s) {
    const int OC = s->OC, K = s->C * s->KH * s->KW, P = s->OH * s->OW;
    if (s->N <= 0 || OC <= 0 || P <= 0) return;
    const size_t NP = (size_t)s->N * P;
    if (bias != NULL)
        for (int oc = 0; oc < OC; oc++) {
            float *dst = out + (size_t)oc * NP;
            for (size_t i = 0; i < NP; i++)
                dst[i] = bias[oc];
        }
    else if (K <= 0)
        memset(out, 0, (size_t)OC * NP * sizeof(float));
    if (K <= 0) return;
    const float beta = bias != NULL ? 1.0f : 0.0f;
    if (conv_is_direct(s)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)NP, K, 1.0f, weight, K, inp,
                    (int)NP, beta, out, (int)NP);
        return;
    }
    const int g = chunk_images(s), shift = conv_is_shift(s);
    float *masks = scratch + (size_t)K * g * P;
    if (shift) shift_masks(masks, s, g);
    for (int n0 = 0; n0 < s->N; n0 += g) {
        const int gn = s->N - n0 < g ? s->N - n0 : g, cols = gn * P;
        if (shift)
            im2col_shift(scratch, masks, inp, s, n0, gn, g);
        else
            im2col(scratch, inp, s, n0, gn);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, cols, K, 1.0f, weight, K,
                    scratch, cols, beta, out + (size_t)n0 * P, (int)NP);
    }
}

/* Accumulates dinp (input layout), dweight [OC, C, KH, KW] and dbias [OC] from
 * dout [OC, N, OH, OW]; NULL outputs are skipped. scratch as for the forward. */
void graft_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, float *scratch,
                           const graft_conv2d_shape *s) {
    const int OC = s->OC, K = s->C * s->KH * s->KW, P = s->OH * s->OW;
    if (s->N <= 0 || OC <= 0 || P <= 0) return;
    const size_t NP = (size_t)s->N * P;
    if (dbias != NULL)
        for (int oc = 0; oc < OC; oc++) {
            const float *src = dout + (size_t)oc * NP;
            double sum = 0.0;
            for (size_t i = 0; i < NP; i++)
                sum += src[i];
            dbias[oc] += (float)sum;
        }
    if (K <= 0 || (dweight == NULL && dinp == NULL)) return;
    if (conv_is_direct(s)) {
        /* dW [OC, C] += dout · inp^T;  dinp [C, NP] += W^T · dout */
        if (dweight != NULL)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, (int)NP, 1.0f, dout,
                        (int)NP, inp, (int)NP, 1.0f, dweight, K);
        if (dinp != NULL)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)NP, OC, 1.0f, weight, K,
                        dout, (int)NP, 1.0f, dinp, (int)NP);
        return;
    }
    const int g = chunk_images(s), shift = conv_is_shift(s);
    float *masks = scratch + (size_t)K * g * P;
    if (shift) shift_masks(masks, s, g);
    for (int n0 = 0; n0 < s->N; n0 += g) {
        const int gn = s->N - n0 < g ? s->N - n0 : g, cols = gn * P;
        const float *dout_chunk = dout + (size_t)n0 * P;
        if (dweight != NULL) {
            /* dW [OC, K] += dout_chunk [OC, cols] · col^T */
            if (shift)
                im2col_shift(scratch, masks, inp, s, n0, gn, g);
            else
                im2col(scratch, inp, s, n0, gn);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, cols, 1.0f, dout_chunk,
                        (int)NP, scratch, cols, 1.0f, dweight, K);
        }
        if (dinp != NULL) {
            /* dcol [K, cols] = W^T · dout_chunk, then scattered back onto the images */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, cols, OC, 1.0f, weight, K,
                        dout_chunk, (int)NP, 0.0f, scratch, cols);
            if (shift)
                col2im_shift_add(dinp, scratch, masks, s, n0, gn, g);
            else
                col2im_add(dinp, scratch, s, n0, gn);
        }
    }
}
