/* BatchNorm2d over channel-major [C, M] values with torch's semantics: batch statistics
 * (biased variance) in training, running statistics in eval, running_var updated with
 * the unbiased variance. Each channel's M values are contiguous: per-channel sums run
 * in LANES independent double accumulators, a loop the compiler vectorises. */
#include "ops.h"

#include <math.h>

#define LANES 8

/* Sums of d = x - shift and d*d over n values. Shifting by a value of the channel keeps
 * the one-pass variance free of cancellation unless the spread dwarfs the mean. */
static void shifted_sums(const float *x, size_t n, float shift, double *sum, double *sum_sq) {
    double s[LANES] = {0}, q[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            const double d = (double)(x[i + j] - shift);
            s[j] += d;
            q[j] += d * d;
        }
    double ts = 0.0, tq = 0.0;
    for (; i < n; i++) {
        const double d = (double)(x[i] - shift);
        ts += d;
        tq += d * d;
    }
    for (int j = 0; j < LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sum = ts;
    *sum_sq = tq;
}

/* Sums of dy and of dy * (x - mean) over n values. */
static void grad_sums(const float *dy, const float *x, size_t n, float mean, double *sum_dy,
                      double *sum_dy_x) {
    double s[LANES] = {0}, q[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            s[j] += dy[i + j];
            q[j] += (double)(dy[i + j] * (x[i + j] - mean));
        }
    double ts = 0.0, tq = 0.0;
    for (; i < n; i++) {
        ts += dy[i];
        tq += (double)(dy[i] * (x[i] - mean));
    }
    for (int j = 0; j < LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sum_dy = ts;
    *sum_dy_x = tq;
}

/* y = [relu]((x - m) * a + b [+ r]) over n values; y may be x. Blocks of LANES values are
 * loaded before they are stored, so the compiler vectorises them even where y and x
 * alias (it vectorises no loop of unknown length at -O2). */
static void affine_row(float *y, const float *x, float m, float a, float b, const float *r,
                       int relu, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float v[LANES];
        for (int j = 0; j < LANES; j++)
            v[j] = (x[i + j] - m) * a + b;
        if (r)
            for (int j = 0; j < LANES; j++)
                v[j] += r[i + j];
        if (relu)
            for (int j = 0; j < LANES; j++)
                v[j] = v[j] > 0.0f ? v[j] : 0.0f;
        for (int j = 0; j < LANES; j++)
            y[i + j] = v[j];
    }
    for (; i < n; i++) {
        float v = (x[i] - m) * a + b + (r ? r[i] : 0.0f);
        y[i] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

void graft_batchnorm2d_apply(float *out, const float *inp, const float *scale, const float *shift,
                             const float *residual, int relu, int C, size_t M) {
    for (int c = 0; c < C; c++)
        affine_row(out + (size_t)c * M, inp + (size_t)c * M, 0.0f, scale[c], shift[c],
                   residual ? residual + (size_t)c * M : NULL, relu, M);
}

/* Normalises every channel and saves (mean, 1/sqrt(var+eps)) for the backward.
 * training=1 also updates running_mean/running_var when they are non-NULL
 * (a channel with a single value updates running_var with variance 0, where torch
 * would refuse). training=0 reads running_mean/running_var, which must be given. */
void graft_batchnorm2d_forward(float *out, float *save_mean, float *save_invstd,
                               float *running_mean, float *running_var, const float *inp,
                               const float *weight, const float *bias, const float *residual,
                               int relu, int C, size_t M, float momentum, float eps, int training) {
    for (int c = 0; c < C; c++) {
        double mean, invstd;
        if (training) {
            const float *x = inp + (size_t)c * M;
            const float shift = M > 0 ? x[0] : 0.0f;
            double sum, sq;
            shifted_sums(x, M, shift, &sum, &sq);
            const double d_mean = M > 0 ? sum / (double)M : 0.0;
            mean = shift + d_mean;
            /* sum of squared deviations from the mean */
            double dev = sq - d_mean * sum;
            if (dev < 0.0) dev = 0.0;
            const double var = M > 0 ? dev / (double)M : 0.0;
            invstd = 1.0 / sqrt(var + eps);
            if (running_mean != NULL && running_var != NULL) {
                double unbiased = M > 1 ? dev / (double)(M - 1) : var;
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
            }
        } else {
            mean = running_mean[c];
            invstd = 1.0 / sqrt((double)running_var[c] + eps);
        }
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        /* y = (x - mean) * w * invstd + b, centred first: no cancellation when the mean
         * dwarfs the spread (out may be inp: this channel's statistics are done) */
        affine_row(out + (size_t)c * M, inp + (size_t)c * M, (float)mean,
                   (float)(weight[c] * invstd), bias[c], residual ? residual + (size_t)c * M : NULL,
                   relu, M);
    }
}

/* Accumulates dinp, dweight [C], dbias [C] (NULL ones skipped). In training the batch
 * statistics depend on the input: dx = w*invstd * (dy - mean(dy) - xhat*mean(dy*xhat));
 * in eval they are constants and dx = w*invstd * dy. */
void graft_batchnorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *save_mean,
                                const float *save_invstd, int C, size_t M, int training) {
    if (M == 0) return;
    for (int c = 0; c < C; c++) {
        const float mean = save_mean[c];
        const float invstd = save_invstd[c];
        const float *x = inp + (size_t)c * M;
        const float *dy = dout + (size_t)c * M;
        double sum_dy = 0.0, sum_dy_x = 0.0;
        if (dweight != NULL || dbias != NULL || (dinp != NULL && training))
            grad_sums(dy, x, M, mean, &sum_dy, &sum_dy_x);
        const double sum_dy_xhat = sum_dy_x * invstd;
        if (dweight != NULL) dweight[c] += (float)sum_dy_xhat;
        if (dbias != NULL) dbias[c] += (float)sum_dy;
        if (dinp == NULL) continue;
        float *dx = dinp + (size_t)c * M;
        const float scale = weight[c] * invstd;
        /* dx += scale * (dy - mean_dy - (x - mean) * invstd * mean_dy_xhat), where
         * eval mode has constant statistics: mean_dy and the xhat term drop out. */
        const float mean_dy = training ? (float)(sum_dy / (double)M) : 0.0f;
        const float k = training ? (float)(sum_dy_xhat / (double)M * invstd) : 0.0f;
        size_t i = 0;
        for (; i + LANES <= M; i += LANES) {
            float v[LANES];
            for (int j = 0; j < LANES; j++)
                v[j] = dx[i + j] + scale * (dy[i + j] - mean_dy - (x[i + j] - mean) * k);
            for (int j = 0; j < LANES; j++)
                dx[i + j] = v[j];
        }
        for (; i < M; i++)
            dx[i] += scale * (dy[i] - mean_dy - (x[i] - mean) * k);
    }
}
