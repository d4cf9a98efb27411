/* Text generation with GPT-2: a prompt processed once through the key/value cache, then
 * any number of continuations of it, each drawn token by token with a sampler from its
 * own random stream.
 *
 * Beyond n_positions the context is a sliding window, as nanoGPT's generate() does: each
 * further token is predicted from the last n_positions tokens (a prompt longer than
 * n_positions is cut the same way). Positions are absolute (learned wpe), so a window
 * that moves invalidates the cache: it is recomputed over the window, one pass of
 * n_positions rows per token from then on. Within n_positions every token costs one
 * position, and the result is Hugging Face's (which refuses to go further). */
#ifndef GRAFT_GPT2_GENERATE_H
#define GRAFT_GPT2_GENERATE_H

#include <stdint.h>

#include "models/gpt2/gpt2.h"
#include "models/gpt2/gpt2_kv_cache.h"
#include "models/gpt2/sampling.h"

typedef struct graft_gpt2_generation {
    int max_new_tokens; /* >= 1 */
    int stop_id;        /* drawing this id ends a continuation (it is not emitted); -1: none */
    int n_allowed;      /* ids [0, n_allowed) may be drawn (the tokenizer's vocabulary);
                           0: the model's whole vocabulary */
    graft_sampling sampling;
} graft_gpt2_generation;

/* Receives each token of a continuation as it is drawn. */
typedef void (*graft_gpt2_token_fn)(void *ctx, int32_t id);

typedef struct graft_gpt2_generator {
    const graft_gpt2 *m;
    graft_gpt2_generation opt;
    graft_gpt2_kv_cache prompt; /* the prompt's cache (its last window), filled once */
    graft_gpt2_kv_cache work;   /* a continuation's */
    graft_sampler sampler;
    int32_t *tokens; /* the prompt, then the continuation being drawn */
    int n_prompt;
} graft_gpt2_generator;

/* Check the options, allocate, and run the prompt (n_prompt >= 1 ids below the model's
 * vocabulary) through the cache. GRAFT_ERR_INVALID_ARG (logged) for bad options. */
graft_status graft_gpt2_generator_init(graft_gpt2_generator *g, const graft_gpt2 *m,
                                       const int32_t *prompt, int n_prompt,
                                       const graft_gpt2_generation *opt);
void graft_gpt2_generator_free(graft_gpt2_generator *g);

/* One continuation of the prompt, drawn with rng (untouched when greedy): each token is
 * passed to emit (may be NULL) as it is drawn, and the whole continuation is left in
 * g->tokens[g->n_prompt ..). Returns how many tokens were drawn (<= max_new_tokens;
 * fewer when stop_id came, which is neither counted nor emitted). */
int graft_gpt2_generate(graft_gpt2_generator *g, graft_rng *rng, graft_gpt2_token_fn emit,
                        void *ctx);

#endif
