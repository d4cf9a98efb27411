/* Multi-head scaled dot-product attention (GPT-2 causal, BERT with a key padding
 * mask), with optional dropout on the probabilities. Each (batch, head) pair is a few
 * OpenBLAS GEMMs on strided matrices: head h of q/k/v is a [T, HS] matrix with leading
 * dimension `stride`. */
#include <cblas.h>
#include <math.h>
#include <string.h>

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
#define KEEP_WORD_BITS 64

size_t graft_attention_keep_words(int T) {
    return T > 0 ? ((size_t)T + KEEP_WORD_BITS - 1) / KEEP_WORD_BITS : 0;
}

/* dst[j] = bit j of bits ? src[j] : 0 for j < 32 (dst may be src): the select is a
 * mask of the float's bits, all computed before the stores, so the compiler vectorises
 * it (a loop over the bits with shifts and branches costs ~10x more). */
static void keep_32(float *dst, const float *src, uint32_t bits) {
    static const uint32_t bit[32] = {
        1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
        1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
        1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
        1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};
    uint32_t v[32];
    memcpy(v, src, sizeof v);
    for (int j = 0; j < 32; j++)
        v[j] &= (bits & bit[j]) ? ~0u : 0u;
    memcpy(dst, v, sizeof v);
}

/* keep_32 over one keep word's n <= 64 values. */
static void keep_word(float *dst, const float *src, uint64_t word, int n) {
    int j = 0;
    for (; j + 32 <= n; j += 32)
        keep_32(dst + j, src + j, (uint32_t)(word >> j));
    for (; j < n; j++)
        dst[j] = (word >> j) & 1 ? src[j] : 0.0f;
}

void graft_attention_keep_row(float *dst, const float *src, const uint64_t *keep, int n) {
    for (int j0 = 0; j0 < n; j0 += KEEP_WORD_BITS)
        keep_word(dst + j0, src + j0, keep[j0 / KEEP_WORD_BITS],
                  n - j0 < KEEP_WORD_BITS ? n - j0 : KEEP_WORD_BITS);
}

/* Each key is dropped when a 32-bit half of a graft_rng_u64 draw is below
 * p * 2^32, so the keep probability is 1 - p to within 2^-32. */
void graft_attention_dropout_row(float *dropped, const float *probs, uint64_t *keep, int n,
                                 int width, float p, graft_rng *rng) {
    const uint32_t drop_below = (uint32_t)((double)p * 4294967296.0);
    for (int j0 = 0; j0 < width; j0 += KEEP_WORD_BITS) {
        int count = width - j0 < KEEP_WORD_BITS ? width - j0 : KEEP_WORD_BITS;
        int drawn = n - j0 < count ? n - j0 : count; /* may be <= 0 */
        uint64_t word = 0;
        for (int j = 0; j < drawn; j += 2) {
            uint64_t r = graft_rng_u64(rng);
            word |= (uint64_t)((uint32_t)r >= drop_below) << j;
            if (j + 1 < drawn) word |= (uint64_t)((uint32_t)(r >> 32) >= drop_below) << (j + 1);
        }
        if (keep) keep[j0 / KEEP_WORD_BITS] = word;
        keep_word(dropped + j0, probs + j0, word, count);
    }
}

/* out = dropout(softmax(q k^T / sqrt(HS), masked)) v per head; probs [B,NH,T,T] are
 * saved before the dropout, with exact zeros at every hidden key. Query row t draws keep
 * bits for the keys it may see up to its last unpadded one. */
void graft_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, int stride, const uint8_t *key_mask, int B, int T,
                             int NH, int HS, int causal, const graft_attention_dropout *dropout) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const graft_attention_dropout *drop = dropout && dropout->p > 0.0f ? dropout : NULL;
    const float keep_scale = drop ? 1.0f / (1.0f - drop->p) : 1.0f;
    const size_t words = graft_attention_keep_words(T);
    /* with dropout, blocks of rows also bound the scratch for the dropped rows */
    const int row_block = causal || drop ? ATTENTION_ROW_BLOCK : T;
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
                /* out [rows, HS] = probs[:, :keys] v[:keys], or the dropped probabilities
                 * [rows, keys] / (1 - p) */
                const float *pv = prow;
                int pv_ld = T;
                if (drop) {
                    for (int t = 0; t < rows; t++) {
                        int n = causal && t0 + t + 1 < keys ? t0 + t + 1 : keys;
                        uint64_t *keep_t =
                            drop->keep ? drop->keep + (((size_t)b * NH + h) * T + t0 + t) * words
                                       : NULL;
                        graft_attention_dropout_row(drop->scratch + (size_t)t * keys,
                                                    prow + (size_t)t * T, keep_t, n, keys, drop->p,
                                                    drop->rng);
                    }
                    pv = drop->scratch;
                    pv_ld = keys;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, keys, keep_scale,
                            pv, pv_ld, vh, stride, 0.0f, orow, C);
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
 * probability (the causal triangle, right padding). With dropout, P' = P * m / (1 - p):
 * dv = P'^T dout, and the softmax backward takes dP = (dout v^T) * m / (1 - p), whose
 * 1 / (1 - p) is folded into the dq/dk GEMMs' alpha. */
void graft_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *probs, float *scratch,
                              int stride, int B, int T, int NH, int HS,
                              const graft_attention_dropout *dropout) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    if (!dq && !dk && !dv) return;
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const graft_attention_dropout *drop = dropout && dropout->p > 0.0f ? dropout : NULL;
    const float keep_scale = drop ? 1.0f / (1.0f - drop->p) : 1.0f;
    const size_t words = graft_attention_keep_words(T);
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
                const uint64_t *keep =
                    drop ? drop->keep + (((size_t)b * NH + h) * T + t0) * words : NULL;
                /* dv[:keys] += probs[:, :keys]^T dout (dropped probabilities from scratch) */
                if (dv) {
                    const float *pv = prow;
                    int pv_ld = T;
                    if (drop) {
                        for (int t = 0; t < rows; t++)
                            graft_attention_keep_row(scratch + (size_t)t * keys,
                                                     prow + (size_t)t * T, keep + t * words, keys);
                        pv = scratch;
                        pv_ld = keys;
                    }
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, rows, keep_scale,
                                pv, pv_ld, drow, C, 1.0f, dv + head_off, stride);
                }
                if (!dq && !dk) continue;
                /* dp [rows, keys] = dout v[:keys]^T (times the keep bits), then the softmax
                 * backward in place: dscore[t,j] = p[t,j] * (dp[t,j] - sum_i p[t,i] dp[t,i]) */
                float *ds = scratch;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, HS, 1.0f, drow, C,
                            v + head_off, stride, 0.0f, ds, keys);
                for (int t = 0; t < rows; t++) {
                    const float *pt = prow + (size_t)t * T;
                    float *dst = ds + (size_t)t * keys;
                    if (drop) graft_attention_keep_row(dst, dst, keep + t * words, keys);
                    float dot = 0.0f;
                    for (int j = 0; j < keys; j++)
                        dot += pt[j] * dst[j];
                    for (int j = 0; j < keys; j++)
                        dst[j] = pt[j] * (dst[j] - dot);
                }
                /* scores = scale * q k^T: dq += scale * ds k, dk += scale * ds^T q */
                const float alpha = scale * keep_scale;
                if (dq) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, keys, alpha,
                                ds, keys, k + head_off, stride, 1.0f, dq + row_off, stride);
                }
                if (dk) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, rows, alpha, ds,
                                keys, q + row_off, stride, 1.0f, dk + head_off, stride);
                }
            }
        }
    }
}
