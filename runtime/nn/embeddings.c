#include "embeddings.h"

#include <string.h>

#include "runtime/core/check.h"

static int add_table(graft_params *p, const char *name, int rows, int C) {
    const int64_t shape[2] = {rows, C};
    return graft_params_add(p, name, GRAFT_KIND_PARAM, 2, shape);
}

graft_status graft_embeddings_add(graft_embeddings *e, graft_params *p,
                                  const graft_embeddings_config *cfg,
                                  const graft_embeddings_names *names) {
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    e->range = graft_param_range_begin(p);
    e->word = add_table(p, names->word, cfg->vocab, cfg->C);
    e->position = add_table(p, names->position, cfg->positions, cfg->C);
    e->token_type = cfg->types > 0 ? add_table(p, names->token_type, cfg->types, cfg->C) : -1;
    if (e->word < 0 || e->position < 0 || (cfg->types > 0 && e->token_type < 0))
        return GRAFT_ERR_INVALID_ARG;
    e->has_layernorm = names->layernorm != NULL;
    if (e->has_layernorm)
        GRAFT_TRY(graft_layernorm_layer_add(&e->ln, p, names->layernorm, cfg->C, cfg->ln_eps));
    graft_param_range_end(&e->range, p);
    return GRAFT_OK;
}

void graft_embeddings_plan(graft_embeddings *e, graft_arena *a, size_t rows, int keep,
                           float *spare) {
    const size_t n = rows * (size_t)e->cfg.C;
    const int ln = e->has_layernorm, dropout = e->cfg.dropout > 0;
    if (keep) {
        e->sum = ln ? graft_arena_floats(a, n) : NULL;
        e->mask = dropout ? graft_arena_floats(a, n) : NULL;
    } else {
        e->sum = ln ? spare : NULL;
        e->mask = dropout ? spare : NULL;
    }
    e->mean = ln ? graft_arena_floats(a, rows) : NULL;
    e->rstd = ln ? graft_arena_floats(a, rows) : NULL;
}

void graft_embeddings_forward(const graft_embeddings *e, const graft_params *p, float *out,
                              const int32_t *ids, const int32_t *type_ids, int B, int T,
                              graft_rng *rng) {
    const int C = e->cfg.C;
    const size_t BT = (size_t)B * T;
    const float *word = graft_params_value(p, e->word), *pos = graft_params_value(p, e->position);
    const float *type = e->token_type >= 0 ? graft_params_value(p, e->token_type) : NULL;
    float *sum = e->has_layernorm ? e->sum : out;
    for (size_t r = 0; r < BT; r++) {
        float *x = sum + r * C;
        const float *w = word + (size_t)ids[r] * C, *ps = pos + (r % (size_t)T) * C;
        if (type) {
            const float *ty = type + (size_t)(type_ids ? type_ids[r] : 0) * C;
            for (int c = 0; c < C; c++)
                x[c] = (w[c] + ty[c]) + ps[c]; /* Hugging Face's order */
        } else {
            for (int c = 0; c < C; c++)
                x[c] = w[c] + ps[c];
        }
    }
    if (e->has_layernorm)
        graft_layernorm_layer_forward(&e->ln, p, out, e->mean, e->rstd, sum, (int)BT);
    if (rng && e->cfg.dropout > 0)
        graft_dropout_forward(out, e->mask, out, BT * C, e->cfg.dropout, rng);
}

void graft_embeddings_backward(const graft_embeddings *e, const graft_params *p, const float *dout,
                               const int32_t *ids, const int32_t *type_ids, int B, int T,
                               int dropout, float *scratch_a, float *scratch_b) {
    const int C = e->cfg.C;
    const size_t BT = (size_t)B * T, n = BT * C;
    const float *d = dout;
    if (dropout && e->cfg.dropout > 0) {
        memset(scratch_a, 0, n * sizeof(float));
        graft_dropout_backward(scratch_a, dout, e->mask, n);
        d = scratch_a;
    }
    float *dword = graft_params_grad(p, e->word), *dpos = graft_params_grad(p, e->position);
    float *dtype = e->token_type >= 0 ? graft_params_grad(p, e->token_type) : NULL;
    const float *dsum = d;
    if (e->has_layernorm) {
        float *dln = NULL;
        if (dword || dpos || dtype) {
            dln = scratch_b;
            memset(dln, 0, n * sizeof(float));
        }
        graft_layernorm_layer_backward(&e->ln, p, dln, d, e->sum, e->mean, e->rstd, (int)BT);
        if (!dln) return;
        dsum = dln;
    }
    if (e->token_type >= 0) {
        for (size_t r = 0; dtype && r < BT; r++) {
            float *row = dtype + (size_t)(type_ids ? type_ids[r] : 0) * C;
            const float *g = dsum + r * C;
            for (int c = 0; c < C; c++)
                row[c] += g[c];
        }
        graft_params_grad_ready(p, e->token_type);
    }
    if (dpos)
        for (int b = 0; b < B; b++)
            graft_residual_backward(dpos, NULL, dsum + (size_t)b * T * C, (size_t)T * C);
    graft_params_grad_ready(p, e->position);
    for (size_t r = 0; dword && r < BT; r++) {
        if (ids[r] == e->cfg.padding_idx) continue; /* nn.Embedding(padding_idx): no gradient */
        float *row = dword + (size_t)ids[r] * C;
        const float *g = dsum + r * C;
        for (int c = 0; c < C; c++)
            row[c] += g[c];
    }
    graft_params_grad_ready(p, e->word);
}
