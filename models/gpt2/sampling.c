#include "sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/log.h"

graft_status graft_sampler_init(graft_sampler *s, int n, const graft_sampling *opt) {
    memset(s, 0, sizeof *s);
    if (n < 1 || !(opt->temperature >= 0) || !isfinite(opt->temperature) || opt->top_k < 0 ||
        !(opt->top_p > 0 && opt->top_p <= 1)) {
        GRAFT_ERROR("bad sampling options: temperature %g (>= 0), top-k %d (>= 0), top-p %g "
                    "(in (0, 1]) over %d tokens",
                    (double)opt->temperature, opt->top_k, (double)opt->top_p, n);
        return GRAFT_ERR_INVALID_ARG;
    }
    s->opt = *opt;
    s->n = n;
    s->cands = malloc((size_t)n * sizeof *s->cands);
    s->probs = malloc((size_t)n * sizeof *s->probs);
    if (opt->top_k > 0 && opt->top_k < n) s->heap = malloc((size_t)opt->top_k * sizeof *s->heap);
    if (!s->cands || !s->probs || (opt->top_k > 0 && opt->top_k < n && !s->heap)) {
        GRAFT_ERROR("out of memory for a sampler over %d tokens", n);
        graft_sampler_free(s);
        return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

void graft_sampler_free(graft_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s->probs);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* The first maximum, as torch.argmax. */
static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void sift_down(float *heap, int k, int i) {
    for (;;) {
        int least = i, l = 2 * i + 1, r = l + 1;
        if (l < k && heap[l] < heap[least]) least = l;
        if (r < k && heap[r] < heap[least]) least = r;
        if (least == i) return;
        float t = heap[i];
        heap[i] = heap[least];
        heap[least] = t;
        i = least;
    }
}

/* The k-th largest of x[0..n) (0 < k < n): a min-heap of the k largest seen so far, so a
 * 50257-token vocabulary costs one pass, not a sort. */
static float kth_largest(float *heap, const float *x, int n, int k) {
    memcpy(heap, x, (size_t)k * sizeof *heap);
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(heap, k, i);
    for (int i = k; i < n; i++)
        if (x[i] > heap[0]) {
            heap[0] = x[i];
            sift_down(heap, k, 0);
        }
    return heap[0];
}

/* Most probable first; equal logits by id, so the order never depends on qsort's. */
static int compare_candidates(const void *pa, const void *pb) {
    const graft_sampler_candidate *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

int32_t graft_sampler_draw(graft_sampler *s, const float *logits, graft_rng *rng) {
    const graft_sampling *o = &s->opt;
    if (o->temperature == 0) return argmax(logits, s->n);
    const int k = o->top_k > 0 && o->top_k < s->n ? o->top_k : 0;
    const float floor = k ? kth_largest(s->heap, logits, s->n, k) : -INFINITY;
    int m = 0;
    float maxval = -INFINITY;
    for (int i = 0; i < s->n; i++)
        if (logits[i] >= floor) {
            s->cands[m++] = (graft_sampler_candidate){.logit = logits[i], .id = i};
            if (logits[i] > maxval) maxval = logits[i];
        }
    const int nucleus = o->top_p < 1;
    if (nucleus) qsort(s->cands, (size_t)m, sizeof *s->cands, compare_candidates);
    /* softmax(logits / temperature) up to its normaliser, with the maximum subtracted
     * before the division so a tiny temperature gives 0s and a 1, never inf / inf */
    const double inv_t = 1.0 / o->temperature;
    double total = 0;
    for (int j = 0; j < m; j++) {
        s->probs[j] = exp((double)(s->cands[j].logit - maxval) * inv_t);
        total += s->probs[j];
    }
    if (nucleus) { /* the smallest most-probable prefix holding top_p of the mass */
        double kept = 0;
        int j = 0;
        while (j < m) {
            kept += s->probs[j++];
            if (kept >= o->top_p * total) break;
        }
        m = j;
        total = kept;
    }
    const double u = (double)(graft_rng_u64(rng) >> 11) * 0x1.0p-53 * total; /* [0, total) */
    double acc = 0;
    for (int j = 0; j < m; j++) {
        acc += s->probs[j];
        if (u < acc) return s->cands[j].id;
    }
    return s->cands[m - 1].id; /* u rounded up to the total */
}
