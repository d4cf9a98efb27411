/* LayerNorm over the last dimension (GPT-2 / BERT), forward and backward. */
#include <math.h>

#include "ops.h"

/* out[n,:] = (inp[n,:] - mean) * rstd * weight + bias with the biased variance;
 * mean[n] and rstd[n] = 1/sqrt(var + eps) are kept for the backward pass.
 * weight NULL means 1, bias NULL means 0. */
void graft_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += x[c];
        float m = (float)(sum / C);
        double sumsq = 0.0;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            sumsq += (double)d * d;
        }
        float s = (float)(1.0 / sqrt(sumsq / C + (double)eps));
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float w = weight ? weight[c] : 1.0f;
            float b = bias ? bias[c] : 0.0f;
            y[c] = norm * w + b;
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

/* Accumulates dinp, dweight, dbias (each skipped when NULL) from dout, using the
 * mean/rstd the forward saved. weight NULL means 1. */
void graft_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float m = mean[n];
        float s = rstd[n];
        if (dweight || dbias) {
            for (int c = 0; c < C; c++) {
                if (dbias) dbias[c] += dy[c];
                if (dweight) dweight[c] += (x[c] - m) * s * dy[c];
            }
        }
        if (!dinp) continue;
        /* dnorm = dy * w; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) */
        float dnorm_mean = 0.0f;
        float dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = dy[c] * (weight ? weight[c] : 1.0f);
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        float *dx = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = dy[c] * (weight ? weight[c] : 1.0f);
            dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}
