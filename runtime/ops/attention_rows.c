/* Bidirectional multi-head attention for a subset of query rows: the keys and values
 * cover every row of each sequence, the queries only the rows listed (BERT's last layer
 * computes just the rows its head reads). Per sequence and head a few OpenBLAS GEMMs,
 * as in attention.c; the same masking (a padding key gets probability exactly 0). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops.h"

/* Keys visible to some query of sequence b: trailing padding is skipped entirely. */
static int visible_keys(const uint8_t *key_mask, int b, int T) {
    int keys = T;
    while (key_mask && keys > 0 && !key_mask[(size_t)b * T + keys - 1])
        keys--;
    return keys;
}

/* The rows rows[j0..*j1) of the sequence that rows[j0] belongs to. */
static int sequence_rows(const int32_t *rows, int j0, int R, int T, int *j1) {
    const int b = rows[j0] / T;
    int j = j0;
    while (j < R && rows[j] / T == b)
        j++;
    *j1 = j;
    return b;
}

size_t graft_attention_rows_scratch_floats(int T) { return T > 0 ? (size_t)T * T : 0; }

void graft_attention_rows_forward(float *out, float *probs, const float *q, const float *k,
                                  const float *v, const int32_t *rows, int R,
                                  const uint8_t *key_mask, int T, int NH, int HS,
                                  const graft_attention_dropout *drop) {
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const float keep_scale = drop ? 1.0f / (1.0f - drop->p) : 1.0f;
    const size_t words = graft_attention_keep_words(T);
    for (int j0 = 0, j1; j0 < R; j0 = j1) {
        const int b = sequence_rows(rows, j0, R, T, &j1), n = j1 - j0;
        const int keys = visible_keys(key_mask, b, T);
        const uint8_t *mask = key_mask ? key_mask + (size_t)b * T : NULL;
        for (int h = 0; h < NH; h++) {
            float *p = probs + ((size_t)j0 * NH + h) * T, *o = out + (size_t)j0 * C + h * HS;
            const size_t kv = (size_t)b * T * C + (size_t)h * HS;
            if (keys > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, HS, scale,
                            q + (size_t)j0 * C + h * HS, C, k + kv, C, 0.0f, p, NH * T);
            for (int i = 0; i < n; i++) {
                float *row = p + (size_t)i * NH * T, maxval = -INFINITY, sum = 0.0f;
                for (int t = 0; t < keys; t++)
                    if ((!mask || mask[t]) && row[t] > maxval) maxval = row[t];
                for (int t = 0; t < T; t++) {
                    row[t] = t < keys && (!mask || mask[t]) ? expf(row[t] - maxval) : 0.0f;
                    sum += row[t];
                }
                for (int t = 0; sum > 0 && t < keys; t++)
                    row[t] /= sum;
            }
            if (keys == 0) {
                for (int i = 0; i < n; i++)
                    memset(o + (size_t)i * C, 0, HS * sizeof(float));
                continue;
            }
            /* the probabilities, or the dropped ones [n, keys] / (1 - p), times v */
            const float *pv = p;
            int pv_ld = NH * T;
            if (drop) {
                for (int i = 0; i < n; i++) {
                    uint64_t *keep =
                        drop->keep ? drop->keep + ((size_t)(j0 + i) * NH + h) * words : NULL;
                    graft_attention_dropout_row(drop->scratch + (size_t)i * keys,
                                                p + (size_t)i * NH * T, keep, keys, keys, drop->p,
                                                drop->rng);
                }
                pv = drop->scratch;
                pv_ld = keys;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, keys, keep_scale, pv,
                        pv_ld, v + kv, C, 0.0f, o, C);
        }
    }
}

void graft_attention_rows_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *probs, float *scratch, const int32_t *rows, int R,
                                   const uint8_t *key_mask, int T, int NH, int HS,
                                   const graft_attention_dropout *drop) {
    const int C = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const float keep_scale = drop ? 1.0f / (1.0f - drop->p) : 1.0f;
    const size_t words = graft_attention_keep_words(T);
    for (int j0 = 0, j1; j0 < R; j0 = j1) {
        const int b = sequence_rows(rows, j0, R, T, &j1), n = j1 - j0;
        const int keys = visible_keys(key_mask, b, T);
        if (keys == 0) continue;
        for (int h = 0; h < NH; h++) {
            const float *p = probs + ((size_t)j0 * NH + h) * T;
            const float *d = dout + (size_t)j0 * C + h * HS, *qh = q + (size_t)j0 * C + h * HS;
            const size_t kv = (size_t)b * T * C + (size_t)h * HS;
            const uint64_t *keep = drop ? drop->keep + ((size_t)j0 * NH + h) * words : NULL;
            const size_t keep_stride = (size_t)NH * words; /* between query rows */
            if (dv) {
                const float *pv = p;
                int pv_ld = NH * T;
                if (drop) {
                    for (int i = 0; i < n; i++)
                        graft_attention_keep_row(scratch + (size_t)i * keys, p + (size_t)i * NH * T,
                                                 keep + i * keep_stride, keys);
                    pv = scratch;
                    pv_ld = keys;
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, n, keep_scale, pv,
                            pv_ld, d, C, 1.0f, dv + kv, C);
            }
            if (!dq && !dk) continue;
            /* dp = dout v^T (times the keep bits), then the softmax backward in place */
            float *ds = scratch;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, HS, 1.0f, d, C, v + kv, C,
                        0.0f, ds, keys);
            for (int i = 0; i < n; i++) {
                const float *pi = p + (size_t)i * NH * T;
                float *dsi = ds + (size_t)i * keys, dot = 0.0f;
                if (drop) graft_attention_keep_row(dsi, dsi, keep + i * keep_stride, keys);
                for (int t = 0; t < keys; t++)
                    dot += pi[t] * dsi[t];
                for (int t = 0; t < keys; t++)
                    dsi[t] = pi[t] * (dsi[t] - dot);
            }
            const float alpha = scale * keep_scale;
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, keys, alpha, ds, keys,
                            k + kv, C, 1.0f, dq + (size_t)j0 * C + h * HS, C);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, n, alpha, ds, keys,
                            qh, C, 1.0f, dk + kv, C);
        }
    }
}
