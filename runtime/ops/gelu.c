/* GELU activation: the exact erf form (BERT, torch default) and the tanh
 * approximation (GPT-2, torch approximate="tanh").
 * Both are evaluated in forms that avoid the cancellation in 1 + erf / 1 + tanh
 * for negative inputs: 0.5 * (1 + erf(x / sqrt2)) = 0.5 * erfc(-x / sqrt2) and
 * 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)). */
#include <math.h>

#include "ops.h"

#define GELU_SQRT_2_OVER_PI 0.79788456080286535588f /* sqrt(2/pi) */
#define GELU_INV_SQRT_2 0.70710678118654752440f     /* 1/sqrt(2) */
#define GELU_INV_SQRT_2PI 0.39894228040143267794f   /* 1/sqrt(2*pi) */
#define GELU_TANH_CUBIC 0.044715f

/* out[i] = gelu(inp[i]) for i < n. */
void graft_gelu_forward(float *out, const float *inp, size_t n, graft_gelu_kind kind) {
    if (kind == GRAFT_GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float u = GELU_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
            out[i] = x / (1.0f + expf(-2.0f * u)); /* 0.5 * x * (1 + tanh(u)) */
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * erfcf(-x * GELU_INV_SQRT_2); /* 0.5 * x * (1 + erf(x/sqrt2)) */
        }
    }
}

/* dinp[i] += gelu'(inp[i]) * dout[i]; nothing to do when dinp is NULL. */
void graft_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                         graft_gelu_kind kind) {
    if (!dinp) return;
    if (kind == GRAFT_GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float u = GELU_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
            float du = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_CUBIC * x * x);
            /* s = 0.5 * (1 + tanh(u)); d/du of 0.5 * (1 + tanh(u)) = 2 * s * (1 - s) */
            float s = 1.0f / (1.0f + expf(-2.0f * u));
            float grad = s + x * 2.0f * s * (1.0f - s) * du;
            dinp[i] += grad * dout[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float cdf = 0.5f * erfcf(-x * GELU_INV_SQRT_2);
            float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
            dinp[i] += (cdf + x * pdf) * dout[i];
        }
    }
}
