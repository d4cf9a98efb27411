/* Multi-head scaled dot-product attention (GPT-2 causal, BERT with a key padding
 * mask). Each (batch, head) pair is a few OpenBLAS GEMMs on strided matrices:
 * head h of q/k/v is a [T, HS] matrix with leading dimension `stride`. */
#include <cblas.h>
#include <math.h>

#include "ops.h"

/* Turns one row of raw scores into softmax probabilities over the keys query t
 * may see among the first `keys` (key_mask_row may be NULL); every other entry
 * up to T gets exactly 0. A row with no visible key becomes all zeros. */
static void attention_softmax_row(float *row, const uint8_t *key_mask_row, int t, int keys, int T,
                                  int causal) {
    int visible_end = causal && t + 1 < keys ? t + 1 : keys; /* [visible_end, T) hidden */
    float maxval = -INFINITY;
    for (int t2 = 0; t2 < visible_end; t2++) {
        if (key_mask_row && !key_mask_row[t2]) continue;
        if (row[t2] > maxval) maxval = row[t2];
    }
    if (maxval == -INFINITY) { /* nothing visible */
        for (int t2 = 0; t2 < T; t2++)
            row[t2] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int t2 = 0; t2 < visible_end; t2++) {
        if (key_mask_row && !key_mask_row[t2]) {
            row[t2] = 0.0f;
            continue;
        }
        float e = expf(row[t2] - maxval);
        row[t2] = e;
        sum += e;
    }
    for (int t2 = visible_end; t2 < T; t2++)
        row[t2] = 0.0f;
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 < visible_end; t2++)
        row[t2] *= inv;
}

/* Query rows are processed in blocks of this many: with causal=1 a block only
 * needs the keys up to its last row, which halves the GEMM work. */
#define ATTENTION_ROW_BLOCK 64

/* out = softmax(q k^T / sqrt(HS), masked) v per head; probs [B,NH,T,T] are saved
 * with exact zeros at every hidden key. */
void graft_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, int stride, const uint8_t *key_mask, int B, int T,
                             int NH, int HS, int causal) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int row_block = causal ? ATTENTION_ROW_BLOCK : T;
    for (int b = 0; b < B; b++) {
        const uint8_t *mask_b = key_mask ? key_mask + (size_t)b * T : NULL;
        /* keys at or after key_end are hidden from every query (right padding) */
        int key_end = T;
        while (mask_b && key_end > 0 && !mask_b[key_end - 1])
            key_end--;
        for (int h = 0; h < NH; h++) {
            size_t head_off = (size_t)b * T * stride + (size_t)h * HS;
            const float *qh = q + head_off;
            const float *kh = k + head_off;
            const float *vh = v + head_off;
            float *p = probs + ((size_t)b * NH + h) * T * T;
            float *outh = out + (size_t)b * T * C + (size_t)h * HS;
            for (int t0 = 0; t0 < T; t0 += row_block) {
                int rows = T - t0 < row_block ? T - t0 : row_block;
                int keys = causal && t0 + rows < key_end ? t0 + rows : key_end;
                float *prow = p + (size_t)t0 * T;
                float *orow = outh + (size_t)t0 * C;
                if (keys == 0) { /* nothing visible: zero probs and outputs */
                    for (int t = 0; t < rows; t++) {
                        for (int t2 = 0; t2 < T; t2++)
                            prow[(size_t)t * T + t2] = 0.0f;
                        for (int d = 0; d < HS; d++)
                            orow[(size_t)t * C + d] = 0.0f;
                    }
                    continue;
                }
                /* scores [rows, keys] = scale * q k^T; softmax fills the rest of each row */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, HS, scale,
                            qh + (size_t)t0 * stride, stride, kh, stride, 0.0f, prow, T);
                for (int t = 0; t < rows; t++) {
                    attention_softmax_row(prow + (size_t)t * T, mask_b, t0 + t, keys, T, causal);
                }
                /* out [rows, HS] = probs[:, :keys] v[:keys] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, keys, 1.0f, prow,
                            T, vh, stride, 0.0f, orow, C);
            }
        }
    }
}

/* Floats of scratch for the backward: the score gradients of one block of rows. */
size_t graft_attention_scratch_floats(int T) {
    if (T <= 0) return 0;
    return (size_t)(T < ATTENTION_ROW_BLOCK ? T : ATTENTION_ROW_BLOCK) * T;
}

/* Accumulates dq, dk, dv (same stride as q/k/v; each skipped when NULL) from dout
 * [B,T,C] and the saved probs. Hidden keys have probs exactly 0, so they get no
 * gradient, and a block of rows only works on the keys up to its last nonzero
 * probability (the causal triangle, right padding). */
void graft_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *probs, float *scratch,
                              int stride, int B, int T, int NH, int HS) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    if (!dq && !dk && !dv) return;
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t head_off = (size_t)b * T * stride + (size_t)h * HS;
            const float *p = probs + ((size_t)b * NH + h) * T * T;
            const float *douth = dout + (size_t)b * T * C + (size_t)h * HS;
            for (int t0 = 0; t0 < T; t0 += ATTENTION_ROW_BLOCK) {
                int rows = T - t0 < ATTENTION_ROW_BLOCK ? T - t0 : ATTENTION_ROW_BLOCK;
                const float *prow = p + (size_t)t0 * T;
                const float *drow = douth + (size_t)t0 * C;
                size_t row_off = head_off + (size_t)t0 * stride;
                /* columns at or after `keys` are zero in every row of the block */
                int keys = 0;
                for (int t = 0; t < rows; t++) {
                    const float *pt = prow + (size_t)t * T;
                    int last = T;
                    while (last > keys && pt[last - 1] == 0.0f)
                        last--;
                    if (last > keys) keys = last;
                }
                if (keys == 0) continue;
                /* dv[:keys] += probs[:, :keys]^T dout */
                if (dv) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, rows, 1.0f, prow,
                                T, drow, C, 1.0f, dv + head_off, stride);
                }
                if (!dq && !dk) continue;
                /* dp [rows, keys] = dout v[:keys]^T, then the softmax backward in place:
                 * dscore[t,j] = p[t,j] * (dp[t,j] - sum_i p[t,i] dp[t,i]) */
                float *ds = scratch;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, HS, 1.0f, drow, C,
                            v + head_off, stride, 0.0f, ds, keys);
                for (int t = 0; t < rows; t++) {
                    const float *pt = prow + (size_t)t * T;
                    float *dst = ds + (size_t)t * keys;
                    float dot = 0.0f;
                    for (int j = 0; j < keys; j++)
                        dot += pt[j] * dst[j];
                    for (int j = 0; j < keys; j++)
                        dst[j] = pt[j] * (dst[j] - dot);
                }
                /* scores = scale * q k^T: dq += scale * ds k, dk += scale * ds^T q */
                if (dq) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, keys, scale,
                                ds, keys, k + head_off, stride, 1.0f, dq + row_off, stride);
                }
                if (dk) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, rows, scale, ds,
                                keys, q + row_off, stride, 1.0f, dk + head_off, stride);
                }
            }
        }
    }
}
