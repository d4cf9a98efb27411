/* Softmax cross-entropy over a vocabulary (language-model heads, classifiers),
 * with an ignore_index for padding / unlabelled positions. */
#include <math.h>

#include "ops.h"
#include "runtime/core/log.h"

/* A row takes part in the loss when its target is a real class. A target outside
 * [0, V) that is not ignore_index is a caller bug: it is reported and skipped
 * rather than read out of bounds. */
static int cross_entropy_row_counts(int32_t target, int V, int ignore_index) {
    return target != ignore_index && target >= 0 && target < V;
}

/* probs[n,:] = softmax(logits[n,:]) for every row; returns the mean over counted
 * rows of -log probs[n, targets[n]], computed as logsumexp - logit so that large
 * logits neither overflow nor lose the loss to rounding. */
float graft_cross_entropy_forward(float *probs, const float *logits, const int32_t *targets, int N,
                                  int V, int ignore_index, int *counted) {
    double loss_sum = 0.0;
    int rows_counted = 0;
    int rows_bad = 0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) {
            if (x[i] > maxval) maxval = x[i];
        }
        double sum = 0.0;
        for (int i = 0; i < V; i++) {
            float e = expf(x[i] - maxval);
            p[i] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++)
            p[i] *= inv;
        int32_t target = targets[n];
        if (cross_entropy_row_counts(target, V, ignore_index)) {
            loss_sum += (double)maxval + log(sum) - (double)x[target];
            rows_counted++;
        } else if (target != ignore_index) {
            rows_bad++;
        }
    }
    if (rows_bad) {
        GRAFT_ERROR("%d of %d targets outside [0, %d) and not ignore_index %d; skipped", rows_bad,
                    N, V, ignore_index);
    }
    if (counted) *counted = rows_counted;
    return rows_counted ? (float)(loss_sum / rows_counted) : 0.0f;
}

/* dlogits[n,:] += scale * (probs[n,:] - onehot(targets[n])) for counted rows;
 * nothing to do when dlogits is NULL. */
void graft_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N,
                                  int V, int ignore_index, float scale) {
    if (!dlogits) return;
    for (int n = 0; n < N; n++) {
        int32_t target = targets[n];
        if (!cross_entropy_row_counts(target, V, ignore_index)) continue;
        const float *p = probs + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        for (int i = 0; i < V; i++)
            d[i] += scale * p[i];
        d[target] -= scale;
    }
}
