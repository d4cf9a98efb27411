/* Elementwise kernels: ReLU, inverted dropout and the residual add. Each may run in
 * place (out == inp). */
#include "ops.h"

#include <string.h>

/* out = max(inp, 0). */
void graft_relu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* dinp += dout where the forward output was positive. */
void graft_relu_backward(float *dinp, const float *dout, const float *out, size_t n) {
    if (dinp == NULL) return;
    for (size_t i = 0; i < n; i++) {
        if (out[i] > 0.0f) dinp[i] += dout[i];
    }
}

/* Keeps each element with probability 1-p (one rng draw per element: kept when the
 * uniform draw u >= p) and scales kept ones by 1/(1-p), so the expectation is
 * unchanged. p <= 0 copies without drawing; p >= 1 drops everything. */
void graft_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p,
                           graft_rng *rng) {
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) {
            mask[i] = 1.0f;
            out[i] = inp[i];
        }
        return;
    }
    if (p >= 1.0f) {
        memset(mask, 0, n * sizeof(float));
        memset(out, 0, n * sizeof(float));
        return;
    }
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = graft_rng_uniform(rng) >= p ? keep_scale : 0.0f;
        out[i] = inp[i] * mask[i];
    }
}

/* dinp += dout * mask. */
void graft_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n) {
    if (dinp == NULL) return;
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * mask[i];
}

/* out = a + b. */
void graft_residual_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

/* da += dout, db += dout (either may be NULL). */
void graft_residual_backward(float *da, float *db, const float *dout, size_t n) {
    if (da != NULL) {
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i];
    }
    if (db != NULL) {
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i];
    }
}
