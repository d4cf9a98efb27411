#include "gpt2_generate.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"

graft_status graft_gpt2_generator_init(graft_gpt2_generator *g, const graft_gpt2 *m,
                                       const int32_t *prompt, int n_prompt,
                                       const graft_gpt2_generation *opt) {
    memset(g, 0, sizeof *g);
    const int V = m->cfg.vocab_size, P = m->cfg.n_positions;
    if (n_prompt < 1 || opt->max_new_tokens < 1 || opt->max_new_tokens > INT32_MAX - n_prompt ||
        opt->n_allowed < 0 || opt->n_allowed > V || opt->stop_id < -1 || opt->stop_id >= V) {
        GRAFT_ERROR("bad generation options: a prompt of %d tokens, %d new tokens, ids below %d, "
                    "stop id %d, for a vocabulary of %d",
                    n_prompt, opt->max_new_tokens, opt->n_allowed, opt->stop_id, V);
        return GRAFT_ERR_INVALID_ARG;
    }
    for (int i = 0; i < n_prompt; i++)
        GRAFT_ASSERT(prompt[i] >= 0 && prompt[i] < V);
    g->m = m;
    g->opt = *opt;
    g->n_prompt = n_prompt;
    /* the whole text when it fits in n_positions, else one window */
    const long total = (long)n_prompt + opt->max_new_tokens;
    const int capacity = total < P ? (int)total : P;
    graft_status st = graft_sampler_init(&g->sampler, opt->n_allowed ? opt->n_allowed : V,
                                         &opt->sampling);
    if (st == GRAFT_OK) st = graft_gpt2_kv_cache_init(&g->prompt, m, capacity);
    if (st == GRAFT_OK) st = graft_gpt2_kv_cache_init(&g->work, m, capacity);
    if (st == GRAFT_OK && !(g->tokens = malloc((size_t)total * sizeof *g->tokens))) {
        GRAFT_ERROR("out of memory for %ld tokens", total);
        st = GRAFT_ERR_NOMEM;
    }
    if (st != GRAFT_OK) {
        graft_gpt2_generator_free(g);
        return st;
    }
    memcpy(g->tokens, prompt, (size_t)n_prompt * sizeof *g->tokens);
    const int window = n_prompt < P ? n_prompt : P;
    graft_gpt2_kv_forward(m, &g->prompt, prompt + n_prompt - window, window);
    return GRAFT_OK;
}

void graft_gpt2_generator_free(graft_gpt2_generator *g) {
    if (!g) return;
    graft_sampler_free(&g->sampler);
    graft_gpt2_kv_cache_free(&g->prompt);
    graft_gpt2_kv_cache_free(&g->work);
    free(g->tokens);
    memset(g, 0, sizeof *g);
}

/* The logits after tokens[0..n) in the cache: one more position while the cache has
 * room, else the cache recomputed over the last n_positions tokens. */
static void advance(graft_gpt2_generator *g, int n) {
    graft_gpt2_kv_cache *c = &g->work;
    if (c->len < c->capacity) {
        graft_gpt2_kv_forward(g->m, c, g->tokens + n - 1, 1);
        return;
    }
    c->len = 0;
    graft_gpt2_kv_forward(g->m, c, g->tokens + n - c->capacity, c->capacity);
}

int graft_gpt2_generate(graft_gpt2_generator *g, graft_rng *rng, graft_gpt2_token_fn emit,
                        void *ctx) {
    graft_gpt2_kv_cache_copy(&g->work, &g->prompt, g->m);
    int drawn = 0;
    for (;;) {
        const int32_t id = graft_sampler_draw(&g->sampler, g->work.logits, rng);
        if (id == g->opt.stop_id) break;
        g->tokens[g->n_prompt + drawn++] = id;
        if (emit) emit(ctx, id);
        if (drawn == g->opt.max_new_tokens) break;
        advance(g, g->n_prompt + drawn);
    }
    return drawn;
}
