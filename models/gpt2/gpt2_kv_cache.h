/* GPT-2 inference one position at a time, for generation: a cache of the keys and values
 * of every position seen so far, per layer, so that each new token costs one position
 * (its q/k/v, one query's attention over the cache, its MLP) instead of a forward over
 * the whole sequence. The layers are the model's own (graft_gpt2's blocks and their
 * parameters); the attention of new rows over the cache is the op
 * graft_attention_cached_forward. A run of tokens (a prompt) goes through in chunks of
 * rows, each row attending to the cache up to its own position. Inference only: no
 * dropout, nothing kept for a backward. See docs/DESIGN.md, Note [The KV cache]. */
#ifndef GRAFT_GPT2_KV_CACHE_H
#define GRAFT_GPT2_KV_CACHE_H

#include "models/gpt2/gpt2.h"

typedef struct graft_gpt2_kv_cache {
    int capacity; /* positions it holds, <= the model's n_positions */
    int len;      /* positions filled: the next token goes to position len */
    int chunk;    /* rows one pass computes at once */
    float *k, *v; /* [n_layer, n_head, capacity, head_dim] */
    /* scratch for `chunk` rows */
    float *x;           /* the residual stream [chunk, C] */
    float *ln;          /* a LayerNorm's output [chunk, C] */
    float *mean, *rstd; /* its statistics [chunk] */
    float *qkv;         /* c_attn's output [chunk, 3C] */
    float *att, *proj;  /* the attention's output and a projection [chunk, C] */
    float *fc;          /* the MLP's hidden activation [chunk, 4C] */
    float *scores;      /* the attention's scratch (one head's scores [chunk, capacity]) */
    float *lora;        /* the LoRA adapters' scratch (runtime/nn/lora.h); NULL without */
    float *logits;      /* [vocab_size]: after the last token passed in */
} graft_gpt2_kv_cache;

/* An empty cache for up to `capacity` positions (1 <= capacity <= n_positions) of model m
 * (whose parameters need not be loaded yet). GRAFT_ERR_NOMEM (logged) when it does not
 * fit in memory. */
graft_status graft_gpt2_kv_cache_init(graft_gpt2_kv_cache *c, const graft_gpt2 *m, int capacity);
void graft_gpt2_kv_cache_free(graft_gpt2_kv_cache *c);

/* dst takes src's filled positions and logits (both made for the same model, dst's
 * capacity >= src->len): a prompt processed once, then continued several ways. */
void graft_gpt2_kv_cache_copy(graft_gpt2_kv_cache *dst, const graft_gpt2_kv_cache *src,
                              const graft_gpt2 *m);

/* Run tokens[0..n) (ids < vocab_size) at positions len .. len+n-1 (len + n <= capacity):
 * their keys and values join the cache, and c->logits receives the logits that follow
 * the last of them. */
void graft_gpt2_kv_forward(const graft_gpt2 *m, graft_gpt2_kv_cache *c, const int32_t *tokens,
                           int n);

#endif
