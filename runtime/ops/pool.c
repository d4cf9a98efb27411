/* Pooling over [N, C, H, W] planes: max and average pooling with a square window
 * (torch's MaxPool2d / AvgPool2d, ceil_mode=False), and AdaptiveAvgPool2d. */
#include "ops.h"

#include <math.h>

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

/* Max over each window; padding never wins (it counts as -inf). As in torch, ties
 * keep the first position in row-major window order and a NaN wins (the last one).
 * argmax holds the offset within the H*W plane, or -1 for a window lying wholly in
 * the padding (its output is -inf). */
void graft_maxpool2d_forward(float *out, int32_t *argmax, const float *inp,
                             const graft_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const size_t planes = (size_t)s->N * s->C;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *y = out + pl * OH * OW;
        int32_t *am = argmax + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * s->stride - s->pad;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * s->stride - s->pad;
                float best = -INFINITY;
                int32_t best_at = -1;
                for (int kh = 0; kh < s->K; kh++) {
                    int ih = h0 + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < s->K; kw++) {
                        int iw = w0 + kw;
                        if (iw < 0 || iw >= W) continue;
                        float v = x[(size_t)ih * W + iw];
                        if (best_at < 0 || v > best || isnan(v)) {
                            best = v;
                            best_at = (int32_t)(ih * W + iw);
                        }
                    }
                }
                y[oh * OW + ow] = best;
                am[oh * OW + ow] = best_at;
            }
        }
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
