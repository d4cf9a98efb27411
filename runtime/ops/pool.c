/* Pooling over [N, C, H, W] planes: max and average pooling with a square window
 * (torch's MaxPool2d / AvgPool2d, ceil_mode=False), and AdaptiveAvgPool2d. */
#include "ops.h"

#include <math.h>

#define LANES 8

/* Output size of one dimension in floor mode; 0 when the window never fits. */
static int pool_out_size(int in, int k, int stride, int pad) {
    int span = in + 2 * pad - k;
    if (stride <= 0 || k <= 0 || span < 0) return 0;
    return span / stride + 1;
}

/* Fills in the output size (floor mode, like torch's ceil_mode=False). */
graft_pool2d_shape graft_pool2d_shape_make(int N, int C, int H, int W, int K, int stride, int pad) {
    graft_pool2d_shape s = {.N = N, .C = C, .H = H, .W = W, .K = K, .stride = stride, .pad = pad};
    s.OH = pool_out_size(H, K, stride, pad);
    s.OW = pool_out_size(W, K, stride, pad);
    return s;
}

/* Output positions [lo, hi) of one dimension whose window lies wholly inside the input. */
static void interior_range(int in, int out, int k, int stride, int pad, int *lo, int *hi) {
    *lo = (pad + stride - 1) / stride;
    *hi = in - k + pad < 0 ? 0 : (in - k + pad) / stride + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
}

/* One output of the general path: the window may reach into the padding. */
static void maxpool_window(float *y, int32_t *am, const float *x, const graft_pool2d_shape *s,
                           int h0, int w0) {
    const int ih0 = h0 < 0 ? 0 : h0, ih1 = h0 + s->K < s->H ? h0 + s->K : s->H;
    const int iw0 = w0 < 0 ? 0 : w0, iw1 = w0 + s->K < s->W ? w0 + s->K : s->W;
    float best = -INFINITY;
    int32_t best_at = -1;
    for (int ih = ih0; ih < ih1; ih++)
        for (int iw = iw0; iw < iw1; iw++) {
            float v = x[(size_t)ih * s->W + iw];
            if (best_at < 0 || v > best || isnan(v)) {
                best = v;
                best_at = (int32_t)(ih * s->W + iw);
            }
        }
    *y = best;
    *am = best_at;
}

/* Folds one window cell into a running max: the cell wins if greater, or if NaN (so the
 * last NaN wins, as in maxpool_window). off is its offset from the window's corner. */
static inline void max_cell(float *best, int32_t *at, float v, int32_t off) {
    const int take = v > *best || v != v;
    *best = take ? v : *best;
    *at = take ? off : *at;
}

/* The three cells of window j in one row of ResNet's stem pool (K 3, stride 2), from
 * the row's even and odd columns. */
static inline void max_row_k3s2(float *best, int32_t *at, const float *even, const float *odd,
                                int j, int32_t off) {
    max_cell(best, at, even[j], off);
    max_cell(best, at, odd[j], off + 1);
    max_cell(best, at, even[j + 1], off + 2);
}

/* LANES adjacent outputs whose windows start at row h0, columns w0 + j * stride, all
 * inside the plane. Starting from -inf with the corner as the winner gives the corner to
 * an all -inf window, as best_at < 0 does in maxpool_window. For ResNet's stem pool the
 * rows are split into even and odd columns first, so that the lane loop reads them
 * contiguously and the compiler vectorises it; other windows gather lane by lane. */
static void maxpool_block(float *y, int32_t *am, const float *x, const graft_pool2d_shape *s,
                          int h0, int w0) {
    const int W = s->W, K = s->K, stride = s->stride;
    float best[LANES];
    int32_t at[LANES];
    for (int j = 0; j < LANES; j++) {
        best[j] = -INFINITY;
        at[j] = 0;
    }
    if (K == 3 && stride == 2) {
        float even[3][LANES + 1], odd[3][LANES];
        for (int kh = 0; kh < 3; kh++) {
            const float *r = x + (size_t)(h0 + kh) * W + w0;
            for (int j = 0; j < LANES; j++) {
                even[kh][j] = r[2 * j];
                odd[kh][j] = r[2 * j + 1];
            }
            even[kh][LANES] = r[2 * LANES];
        }
        for (int j = 0; j < LANES; j++) {
            max_row_k3s2(&best[j], &at[j], even[0], odd[0], j, 0);
            max_row_k3s2(&best[j], &at[j], even[1], odd[1], j, W);
            max_row_k3s2(&best[j], &at[j], even[2], odd[2], j, 2 * W);
        }
    } else {
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
                const float *r = x + (size_t)(h0 + kh) * W + w0 + kw;
                for (int j = 0; j < LANES; j++)
                    max_cell(&best[j], &at[j], r[j * stride], kh * W + kw);
            }
    }
    /* Stored after every load: GCC cannot tell that y and am alias no input and would
     * not vectorise the loops above otherwise. */
    const int32_t corner = h0 * W + w0;
    for (int j = 0; j < LANES; j++) {
        y[j] = best[j];
        am[j] = corner + j * stride + at[j];
    }
}

/* One plane. Rows and columns whose windows lie inside the plane run in blocks of LANES
 * outputs, the last block overlapping the one before when LANES does not divide them
 * (it rewrites the same values); the border keeps the bounds-checked path. */
static void maxpool_plane(float *y, int32_t *am, const float *x, const graft_pool2d_shape *s,
                          int oh_lo, int oh_hi, int ow_lo, int ow_hi) {
    const int OW = s->OW, stride = s->stride;
    const int blocks = ow_hi - ow_lo >= LANES;
    for (int oh = 0; oh < s->OH; oh++) {
        const int h0 = oh * stride - s->pad;
        float *yr = y + (size_t)oh * OW;
        int32_t *ar = am + (size_t)oh * OW;
        if (!blocks || oh < oh_lo || oh >= oh_hi) {
            for (int ow = 0; ow < OW; ow++)
                maxpool_window(yr + ow, ar + ow, x, s, h0, ow * stride - s->pad);
            continue;
        }
        for (int ow = 0; ow < ow_lo; ow++)
            maxpool_window(yr + ow, ar + ow, x, s, h0, ow * stride - s->pad);
        for (int ow = ow_lo; ow < ow_hi; ow += LANES) {
            const int o = ow + LANES <= ow_hi ? ow : ow_hi - LANES;
            maxpool_block(yr + o, ar + o, x, s, h0, o * stride - s->pad);
        }
        for (int ow = ow_hi; ow < OW; ow++)
            maxpool_window(yr + ow, ar + ow, x, s, h0, ow * stride - s->pad);
    }
}

/* Max over each window; padding never wins (it counts as -inf). As in torch, ties
 * keep the first position in row-major window order and a NaN wins (the last one).
 * argmax holds the offset within the H*W plane, or -1 for a window lying wholly in
 * the padding (its output is -inf). */
void graft_maxpool2d_forward(float *out, int32_t *argmax, const float *inp,
                             const graft_pool2d_shape *s) {
    const size_t HW = (size_t)s->H * s->W, OHW = (size_t)s->OH * s->OW;
    const size_t planes = (size_t)s->N * s->C;
    if (s->OH <= 0 || s->OW <= 0) return; /* also a stride the shape rejected */
    int oh_lo, oh_hi, ow_lo, ow_hi;
    interior_range(s->H, s->OH, s->K, s->stride, s->pad, &oh_lo, &oh_hi);
    interior_range(s->W, s->OW, s->K, s->stride, s->pad, &ow_lo, &ow_hi);
    for (size_t pl = 0; pl < planes; pl++) {
        float *y = out + pl * OHW;
        int32_t *am = argmax + pl * OHW;
        const float *x = inp + pl * HW;
        maxpool_plane(y, am, x, s, oh_lo, oh_hi, ow_lo, ow_hi);
    }
}

/* Routes each output gradient to the input position that won the max (+=). */
void graft_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax,
                              const graft_pool2d_shape *s) {
    const size_t HW = (size_t)s->H * s->W, OHW = (size_t)s->OH * s->OW;
    const size_t planes = (size_t)s->N * s->C;
    for (size_t pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * HW;
        const float *dy = dout + pl * OHW;
        const int32_t *am = argmax + pl * OHW;
        for (size_t o = 0; o < OHW; o++) {
            if (am[o] >= 0) dx[am[o]] += dy[o];
        }
    }
}

/* Mean over each K*K window, padding counted as zeros in the divisor
 * (count_include_pad=True; in floor mode every window then holds K*K cells). */
void graft_avgpool2d_forward(float *out, const float *inp, const graft_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const size_t planes = (size_t)s->N * s->C;
    const float inv_area = 1.0f / (float)(s->K * s->K);
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *y = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * s->stride - s->pad;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * s->stride - s->pad;
                float sum = 0.0f;
                for (int kh = 0; kh < s->K; kh++) {
                    int ih = h0 + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < s->K; kw++) {
                        int iw = w0 + kw;
                        if (iw >= 0 && iw < W) sum += x[(size_t)ih * W + iw];
                    }
                }
                y[oh * OW + ow] = sum * inv_area;
            }
        }
    }
}

/* Spreads each output gradient evenly over its window's in-image cells (+=). */
void graft_avgpool2d_backward(float *dinp, const float *dout, const graft_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const size_t planes = (size_t)s->N * s->C;
    const float inv_area = 1.0f / (float)(s->K * s->K);
    for (size_t pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * H * W;
        const float *dy = dout + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * s->stride - s->pad;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * s->stride - s->pad;
                float g = dy[oh * OW + ow] * inv_area;
                for (int kh = 0; kh < s->K; kh++) {
                    int ih = h0 + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < s->K; kw++) {
                        int iw = w0 + kw;
                        if (iw >= 0 && iw < W) dx[(size_t)ih * W + iw] += g;
                    }
                }
            }
        }
    }
}

/* torch's adaptive window along one dimension: [floor(i*in/out), ceil((i+1)*in/out)). */
static void adaptive_range(int i, int in, int out, int *start, int *end) {
    *start = (int)(((long long)i * in) / out);
    *end = (int)(((long long)(i + 1) * in + out - 1) / out);
}

/* Mean over torch's adaptive windows (they may overlap when out does not divide in). */
void graft_adaptive_avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W,
                                      int OH, int OW) {
    const size_t planes = (size_t)N * C;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *y = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            adaptive_range(oh, H, OH, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                adaptive_range(ow, W, OW, &w0, &w1);
                float sum = 0.0f;
                for (int ih = h0; ih < h1; ih++) {
                    for (int iw = w0; iw < w1; iw++)
                        sum += x[(size_t)ih * W + iw];
                }
                y[oh * OW + ow] = sum / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

/* Spreads each output gradient evenly over its adaptive window (+=). */
void graft_adaptive_avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W,
                                       int OH, int OW) {
    const size_t planes = (size_t)N * C;
    for (size_t pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * H * W;
        const float *dy = dout + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            adaptive_range(oh, H, OH, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                adaptive_range(ow, W, OW, &w0, &w1);
                float g = dy[oh * OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++) {
                    for (int iw = w0; iw < w1; iw++)
                        dx[(size_t)ih * W + iw] += g;
                }
            }
        }
    }
}
