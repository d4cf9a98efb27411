/* BatchNorm2d over [N, C, HW] with torch's semantics: batch statistics (biased
 * variance) in training, running statistics in eval, running_var updated with the
 * unbiased variance. Per-channel reductions are summed in double. */
#include "ops.h"

#include <math.h>

/* Normalises every channel and saves (mean, 1/sqrt(var+eps)) for the backward.
 * training=1 also updates running_mean/running_var when they are non-NULL
 * (a channel with a single value updates running_var with variance 0, where torch
 * would refuse). training=0 reads running_mean/running_var, which must be given. */
void graft_batchnorm2d_forward(float *out, float *save_mean, float *save_invstd,
                               float *running_mean, float *running_var, const float *inp,
                               const float *weight, const float *bias, int N, int C, int HW,
                               float momentum, float eps, int training) {
    const size_t count = (size_t)N * HW;
    const size_t image = (size_t)C * HW;
    for (int c = 0; c < C; c++) {
        double mean, invstd;
        if (training) {
            double sum = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + n * image + (size_t)c * HW;
                for (int i = 0; i < HW; i++)
                    sum += x[i];
            }
            mean = count > 0 ? sum / (double)count : 0.0;
            double sq = 0.0;
            for (int n = 0; n < N; n++) {
                const float *x = inp + n * image + (size_t)c * HW;
                for (int i = 0; i < HW; i++) {
                    double d = x[i] - mean;
                    sq += d * d;
                }
            }
            double var = count > 0 ? sq / (double)count : 0.0;
            invstd = 1.0 / sqrt(var + eps);
            if (running_mean != NULL && running_var != NULL) {
                double unbiased = count > 1 ? sq / (double)(count - 1) : var;
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
            }
        } else {
            mean = running_mean[c];
            invstd = 1.0 / sqrt((double)running_var[c] + eps);
        }
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        const float mean_f = (float)mean;
        const float scale = (float)(weight[c] * invstd);
        const float shift = bias[c];
        for (int n = 0; n < N; n++) {
            const float *x = inp + n * image + (size_t)c * HW;
            float *y = out + n * image + (size_t)c * HW;
            for (int i = 0; i < HW; i++)
                y[i] = (x[i] - mean_f) * scale + shift;
        }
    }
}

/* Accumulates dinp, dweight [C], dbias [C] (NULL ones skipped). In training the batch
 * statistics depend on the input: dx = w*invstd * (dy - mean(dy) - xhat*mean(dy*xhat));
 * in eval they are constants and dx = w*invstd * dy. */
void graft_batchnorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *save_mean,
                                const float *save_invstd, int N, int C, int HW, int training) {
    const size_t count = (size_t)N * HW;
    const size_t image = (size_t)C * HW;
    if (count == 0) return;
    for (int c = 0; c < C; c++) {
        const float mean = save_mean[c];
        const float invstd = save_invstd[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + n * image + (size_t)c * HW;
            const float *dy = dout + n * image + (size_t)c * HW;
            for (int i = 0; i < HW; i++) {
                sum_dy += dy[i];
                sum_dy_xhat += (double)dy[i] * ((x[i] - mean) * invstd);
            }
        }
        if (dweight != NULL) dweight[c] += (float)sum_dy_xhat;
        if (dbias != NULL) dbias[c] += (float)sum_dy;
        if (dinp == NULL) continue;
        const float scale = weight[c] * invstd;
        /* training: dx = scale * (dy - mean_dy - xhat * mean_dy_xhat) */
        const float mean_dy = training ? (float)(sum_dy / (double)count) : 0.0f;
        const float mean_dy_xhat = training ? (float)(sum_dy_xhat / (double)count) : 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = inp + n * image + (size_t)c * HW;
            const float *dy = dout + n * image + (size_t)c * HW;
            float *dx = dinp + n * image + (size_t)c * HW;
            for (int i = 0; i < HW; i++) {
                float xhat = (x[i] - mean) * invstd;
                dx[i] += scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}
