/* The input embeddings of a transformer: word + learned position (GPT-2), or word +
 * token type + position -> LayerNorm (BERT), then dropout. Row r of a [B, T] batch has
 * position r % T. Parameters under the caller's names, registered in this order: the
 * word table [V, C], the position table [P, C], the token-type table [TV, C] (when
 * types > 0), then "<layernorm>.weight" and ".bias" [C] (when layernorm is given).
 *
 * A padding id (padding_idx >= 0, nn.Embedding's padding_idx) gets no gradient from the
 * lookup; a weight tied to the word table (an lm_head) still adds its own. */
#ifndef GRAFT_NN_EMBEDDINGS_H
#define GRAFT_NN_EMBEDDINGS_H

#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/layers.h"

typedef struct graft_embeddings_config {
    int vocab, positions, types; /* types 0: no token-type table */
    int C;
    int padding_idx; /* -1: none */
    float ln_eps;    /* with a LayerNorm */
    float dropout;   /* while training */
} graft_embeddings_config;

typedef struct graft_embeddings_names {
    const char *word, *position, *token_type; /* whole names; token_type only with types */
    const char *layernorm;                    /* a prefix, or NULL: no LayerNorm */
} graft_embeddings_names;

typedef struct graft_embeddings {
    graft_embeddings_config cfg;
    graft_param_range range;
    int word, position, token_type; /* table indices; token_type -1 when absent */
    int has_layernorm;
    graft_layernorm_layer ln;
    /* activations (graft_embeddings_plan) */
    float *sum;         /* the summed tables [rows, C], the LayerNorm's input */
    float *mean, *rstd; /* [rows] */
    float *mask;        /* the dropout mask [rows, C] */
} graft_embeddings;

graft_status graft_embeddings_add(graft_embeddings *e, graft_params *p,
                                  const graft_embeddings_config *cfg,
                                  const graft_embeddings_names *names);
/* Activations for up to `rows` = B*T tokens. keep: for a backward. Without, the sum and
 * the dropout mask are never read again and both go into `spare`, rows*C floats the
 * caller lends until the next block writes them (unused without LayerNorm and dropout). */
void graft_embeddings_plan(graft_embeddings *e, graft_arena *a, size_t rows, int keep,
                           float *spare);
/* out [B*T, C] from ids (and type_ids [B*T] with token types; NULL: all 0), all in
 * range. rng: dropout draws while training, NULL: no dropout. */
void graft_embeddings_forward(const graft_embeddings *e, const graft_params *p, float *out,
                              const int32_t *ids, const int32_t *type_ids, int B, int T,
                              graft_rng *rng);
/* Backward from dout [B*T, C] (the gradient of out) for the last forward (dropout: whether
 * it used dropout); adds into the trainable tables and LayerNorm, reporting each ready.
 * scratch_a and scratch_b: B*T*C floats each (scratch_b only with a LayerNorm). */
void graft_embeddings_backward(const graft_embeddings *e, const graft_params *p, const float *dout,
                               const int32_t *ids, const int32_t *type_ids, int B, int T,
                               int dropout, float *scratch_a, float *scratch_b);

#endif
