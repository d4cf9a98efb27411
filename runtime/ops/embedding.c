/* Embedding lookup (token, position, token-type tables) and its scatter-add backward. */
#include <string.h>

#include "ops.h"

/* out[n,:] = table[ids[n],:]; ids are already validated against the table size. */
void graft_embedding_forward(float *out, const int32_t *ids, const float *table, size_t count,
                             int C) {
    for (size_t n = 0; n < count; n++) {
        memcpy(out + n * (size_t)C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
    }
}

/* dtable[ids[n],:] += dout[n,:]; repeated ids accumulate. NULL dtable (frozen) is skipped. */
void graft_embedding_backward(float *dtable, const float *dout, const int32_t *ids, size_t count,
                              int C) {
    if (!dtable) return;
    for (size_t n = 0; n < count; n++) {
        float *row = dtable + (size_t)ids[n] * C;
        const float *g = dout + n * (size_t)C;
        for (int c = 0; c < C; c++)
            row[c] += g[c];
    }
}
