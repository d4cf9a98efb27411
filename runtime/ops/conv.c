/* 2-D convolution (groups = 1) as im2col + one cblas_sgemm per image.
 *
 * For image n the column matrix col [C*KH*KW, OH*OW] holds, in row (c*KH + kh)*KW + kw
 * and column oh*OW + ow, the input pixel under that tap (0 in the padding), so that
 * out_n [OC, OH*OW] = weight [OC, C*KH*KW] · col. A 1x1 convolution with stride 1 and
 * no padding has col == the input image and skips the copy. */
#include "ops.h"

#include <cblas.h>
#include <string.h>

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

/* Floats of the one im2col buffer (one image) that forward and backward use. */
size_t graft_conv2d_scratch_floats(const graft_conv2d_shape *s) {
    return (size_t)s->C * s->KH * s->KW * (size_t)s->OH * s->OW;
}

/* True when col would be a plain copy of the image, so im2col can be skipped. */
static int conv_is_pointwise(const graft_conv2d_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

/* col [C*KH*KW, OH*OW] from one image img [C, H, W]. */
static void im2col(float *col, const float *img, const graft_conv2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, stride = s->stride, pad = s->pad;
    float *dst = col;
    for (int c = 0; c < s->C; c++) {
        const float *plane = img + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                        dst += OW;
                        continue;
                    }
                    const float *row = plane + (size_t)ih * W;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * stride - pad + kw;
                        *dst++ = (iw >= 0 && iw < W) ? row[iw] : 0.0f;
                    }
                }
            }
        }
    }
}

/* Adds col [C*KH*KW, OH*OW] back onto the image gradient dimg [C, H, W] (the adjoint of
 * im2col: taps that read the same pixel sum up, taps in the padding are dropped). */
static void col2im_add(float *dimg, const float *col, const graft_conv2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, stride = s->stride, pad = s->pad;
    const float *src = col;
    for (int c = 0; c < s->C; c++) {
        float *plane = dimg + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) {
                        src += OW;
                        continue;
                    }
                    float *row = plane + (size_t)ih * W;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * stride - pad + kw;
                        if (iw >= 0 && iw < W) row[iw] += src[ow];
                    }
                    src += OW;
                }
            }
        }
    }
}

/* out [N, OC, OH, OW] = conv(inp [N, C, H, W], weight [OC, C, KH, KW]) + bias [OC]
 * (bias may be NULL). scratch: graft_conv2d_scratch_floats(s) floats. */
void graft_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                          float *scratch, const graft_conv2d_shape *s) {
    const int OC = s->OC;
    const int K = s->C * s->KH * s->KW;
    const int P = s->OH * s->OW;
    if (s->N <= 0 || OC <= 0 || P <= 0) return;
    const size_t in_image = (size_t)s->C * s->H * s->W;
    const size_t out_image = (size_t)OC * P;
    for (int n = 0; n < s->N; n++) {
        float *out_n = out + (size_t)n * out_image;
        const float *inp_n = inp + (size_t)n * in_image;
        if (bias != NULL) {
            for (int oc = 0; oc < OC; oc++) {
                float *dst = out_n + (size_t)oc * P;
                for (int p = 0; p < P; p++)
                    dst[p] = bias[oc];
            }
        } else if (K <= 0) {
            memset(out_n, 0, out_image * sizeof(float));
        }
        if (K <= 0) continue;
        const float *col = inp_n;
        if (!conv_is_pointwise(s)) {
            im2col(scratch, inp_n, s);
            col = scratch;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, P, K, 1.0f, weight, K, col, P,
                    bias != NULL ? 1.0f : 0.0f, out_n, P);
    }
}

/* Accumulates dinp [N, C, H, W], dweight [OC, C, KH, KW] and dbias [OC] from
 * dout [N, OC, OH, OW]; NULL outputs are skipped. scratch as for the forward. */
void graft_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, float *scratch,
                           const graft_conv2d_shape *s) {
    const int OC = s->OC;
    const int K = s->C * s->KH * s->KW;
    const int P = s->OH * s->OW;
    if (s->N <= 0 || OC <= 0 || P <= 0) return;
    const int pointwise = conv_is_pointwise(s);
    const size_t in_image = (size_t)s->C * s->H * s->W;
    const size_t out_image = (size_t)OC * P;
    for (int n = 0; n < s->N; n++) {
        const float *dout_n = dout + (size_t)n * out_image;
        const float *inp_n = inp + (size_t)n * in_image;
        if (dbias != NULL) {
            for (int oc = 0; oc < OC; oc++) {
                const float *src = dout_n + (size_t)oc * P;
                double sum = 0.0;
                for (int p = 0; p < P; p++)
                    sum += src[p];
                dbias[oc] += (float)sum;
            }
        }
        if (K <= 0) continue;
        if (dweight != NULL) {
            /* dW [OC, K] += dout_n [OC, P] · col^T */
            const float *col = inp_n;
            if (!pointwise) {
                im2col(scratch, inp_n, s);
                col = scratch;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, P, 1.0f, dout_n, P, col, P,
                        1.0f, dweight, K);
        }
        if (dinp != NULL) {
            /* dcol [K, P] = W^T · dout_n, then scattered back onto the image */
            float *dinp_n = dinp + (size_t)n * in_image;
            if (pointwise) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, OC, 1.0f, weight, K,
                            dout_n, P, 1.0f, dinp_n, P);
            } else {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, OC, 1.0f, weight, K,
                            dout_n, P, 0.0f, scratch, P);
                col2im_add(dinp_n, scratch, s);
            }
        }
    }
}
