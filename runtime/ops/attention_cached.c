/* Causal multi-head attention of new query rows over a key/value cache (generation:
 * each new token attends to every earlier position without recomputing their keys and
 * values). Per head two OpenBLAS GEMMs over the cached positions, as attention.c does
 * per (sequence, head), with its softmax; one new row makes them GEMVs. */
#include <cblas.h>
#include <math.h>

#include "ops.h"

size_t graft_attention_cached_scratch_floats(int R, int n) {
    return R > 0 && n > 0 ? (size_t)R * (size_t)n : 0;
}

/* One row of n scores into softmax probabilities over its first `visible` (the maximum
 * subtracted, expf, one division, as attention.c); the positions after them get 0. */
static void softmax_row(float *row, int visible, int n) {
    float maxval = -INFINITY;
    for (int j = 0; j < visible; j++)
        if (row[j] > maxval) maxval = row[j];
    float sum = 0.0f;
    for (int j = 0; j < visible; j++) {
        row[j] = expf(row[j] - maxval);
        sum += row[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < visible; j++)
        row[j] *= inv;
    for (int j = visible; j < n; j++)
        row[j] = 0.0f;
}

void graft_attention_cached_forward(float *out, const float *q, int q_stride, const float *k,
                                    const float *v, size_t head_stride, int first, int R, int NH,
                                    int HS, float *scratch) {
    if (R <= 0 || NH <= 0 || HS <= 0) return;
    const int n = first + R, C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    for (int h = 0; h < NH; h++) {
        const float *kh = k + (size_t)h * head_stride, *vh = v + (size_t)h * head_stride;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, n, HS, scale,
                    q + (size_t)h * HS, q_stride, kh, HS, 0.0f, scratch, n);
        for (int r = 0; r < R; r++)
            softmax_row(scratch + (size_t)r * n, first + r + 1, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, HS, n, 1.0f, scratch, n, vh,
                    HS, 0.0f, out + (size_t)h * HS, C);
    }
}
