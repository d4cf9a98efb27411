/* Choosing the next token from a language model's logits, as Hugging Face's generate()
 * does: greedy (the first maximum, torch.argmax) when the temperature is 0, else the
 * logits divided by the temperature, then top-k (TopKLogitsWarper: every token whose
 * logit is below the k-th largest is dropped, so ties with it stay), then top-p
 * (TopPLogitsWarper, "nucleus": the smallest set of the most probable tokens whose
 * probabilities sum to at least p, never empty), and one draw from what is left. The
 * draw comes from a graft_rng, so a seed gives the same choices on every machine.
 * Nothing here knows the model: it lives beside GPT-2, its only user so far. */
#ifndef GRAFT_SAMPLING_H
#define GRAFT_SAMPLING_H

#include <stdint.h>

#include "runtime/core/rng.h"
#include "runtime/core/status.h"

typedef struct graft_sampling {
    float temperature; /* >= 0; 0: greedy (top_k and top_p then play no part) */
    int top_k;         /* >= 0; 0: no top-k */
    float top_p;       /* in (0, 1]; 1: no top-p */
} graft_sampling;

typedef struct graft_sampler_candidate {
    float logit;
    int32_t id;
} graft_sampler_candidate;

typedef struct graft_sampler {
    graft_sampling opt;
    int n;                          /* tokens to choose from: ids [0, n) */
    graft_sampler_candidate *cands; /* [n] the tokens still in the running */
    double *probs;                  /* [n] their probabilities, unnormalised */
    float *heap;                    /* [top_k] finding the k-th largest logit */
} graft_sampler;

/* A sampler over ids [0, n) (n >= 1) with checked options (GRAFT_ERR_INVALID_ARG,
 * logged, for a temperature below 0, a negative top_k or top_p outside (0, 1]). */
graft_status graft_sampler_init(graft_sampler *s, int n, const graft_sampling *opt);
void graft_sampler_free(graft_sampler *s);

/* The next token from logits[0..n) (finite), drawing from rng unless greedy. */
int32_t graft_sampler_draw(graft_sampler *s, const float *logits, graft_rng *rng);

#endif
