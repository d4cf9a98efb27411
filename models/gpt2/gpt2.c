#include "gpt2.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

#define GPT2_LN_EPS 1e-5f

/* Backward walks "units", the parameter groups in forward order: 0 = the embeddings
 * (wte, wpe), then six per block (ln_1, c_attn, attn.c_proj, ln_2, mlp.c_fc,
 * mlp.c_proj), then ln_f. The tied lm_head trains with wte, which sits in unit 0, so a
 * trainable head always means a backward down to the embeddings. */
enum { UNITS_PER_BLOCK = 6, U_LN_1 = 0, U_C_ATTN, U_ATTN_PROJ, U_LN_2, U_C_FC, U_MLP_PROJ };
static int block_unit(int l) { return 1 + UNITS_PER_BLOCK * l; }
static int ln_f_unit(const graft_gpt2 *m) { return block_unit(m->cfg.n_layer); }
static int no_unit(const graft_gpt2 *m) { return ln_f_unit(m) + 1; }

graft_status graft_gpt2_init(graft_gpt2 *m, const graft_gpt2_config *cfg) {
    memset(m, 0, sizeof *m);
    /* sizes up to 2^20 keep every derived int (4C, 3C, BT) and shape product in range */
    const int big = 1 << 20;
    if (cfg->n_layer < 1 || cfg->n_layer > 1024 || cfg->n_head < 1 || cfg->n_embd < 1 ||
        cfg->n_embd > big / 4 || cfg->n_positions < 1 || cfg->n_positions > big ||
        cfg->vocab_size < 1 || cfg->vocab_size > 16 * big || cfg->seq_len < 1) {
        GRAFT_ERROR("bad GPT-2 config: model.n_layer %d, model.n_head %d, model.n_embd %d, "
                    "model.n_positions %d, vocabulary %d, data.seq_len %d",
                    cfg->n_layer, cfg->n_head, cfg->n_embd, cfg->n_positions, cfg->vocab_size,
                    cfg->seq_len);
        return GRAFT_ERR_CONFIG;
    }
    if (cfg->n_embd % cfg->n_head != 0) {
        GRAFT_ERROR("model.n_embd %d is not divisible by model.n_head %d", cfg->n_embd,
                    cfg->n_head);
        return GRAFT_ERR_CONFIG;
    }
    if (cfg->seq_len > cfg->n_positions) {
        GRAFT_ERROR("data.seq_len %d is longer than model.n_positions %d", cfg->seq_len,
                    cfg->n_positions);
        return GRAFT_ERR_CONFIG;
    }
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) {
        GRAFT_ERROR("model.dropout %g is not in [0, 1)", (double)cfg->dropout);
        return GRAFT_ERR_CONFIG;
    }
    m->cfg = *cfg;
    graft_params_init(&m->params);
    m->blocks = calloc((size_t)cfg->n_layer, sizeof *m->blocks);
    m->acts = calloc((size_t)cfg->n_layer, sizeof *m->acts);
    if (!m->blocks || !m->acts) return GRAFT_ERR_NOMEM;

    const int C = cfg->n_embd;
    graft_params *p = &m->params;
    char name[GRAFT_NAME_MAX];
    int64_t wte_shape[2] = {cfg->vocab_size, C}, wpe_shape[2] = {cfg->n_positions, C};
    int64_t c_shape[1] = {C};
    m->wte = graft_params_add(p, "transformer.wte.weight", GRAFT_KIND_PARAM, 2, wte_shape);
    m->wpe = graft_params_add(p, "transformer.wpe.weight", GRAFT_KIND_PARAM, 2, wpe_shape);
    if (m->wte < 0 || m->wpe < 0) return GRAFT_ERR_INVALID_ARG;
    for (int l = 0; l < cfg->n_layer; l++) {
        graft_gpt2_block *blk = &m->blocks[l];
        int *ln[4] = {&blk->ln_1_w, &blk->ln_1_b, &blk->ln_2_w, &blk->ln_2_b};
        /* state_dict order: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj */
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "transformer.h.%d.ln_1.%s", l, i ? "bias" : "weight");
            if ((*ln[i] = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, c_shape)) < 0)
                return GRAFT_ERR_INVALID_ARG;
        }
        snprintf(name, sizeof name, "transformer.h.%d.attn.c_attn", l);
        GRAFT_TRY(graft_linear_layer_add(&blk->c_attn, p, name, C, 3 * C, 1, GRAFT_W_IN_OUT));
        snprintf(name, sizeof name, "transformer.h.%d.attn.c_proj", l);
        GRAFT_TRY(graft_linear_layer_add(&blk->attn_proj, p, name, C, C, 1, GRAFT_W_IN_OUT));
        for (int i = 2; i < 4; i++) {
            snprintf(name, sizeof name, "transformer.h.%d.ln_2.%s", l, i == 3 ? "bias" : "weight");
            if ((*ln[i] = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, c_shape)) < 0)
                return GRAFT_ERR_INVALID_ARG;
        }
        snprintf(name, sizeof name, "transformer.h.%d.mlp.c_fc", l);
        GRAFT_TRY(graft_linear_layer_add(&blk->c_fc, p, name, C, 4 * C, 1, GRAFT_W_IN_OUT));
        snprintf(name, sizeof name, "transformer.h.%d.mlp.c_proj", l);
        GRAFT_TRY(graft_linear_layer_add(&blk->mlp_proj, p, name, 4 * C, C, 1, GRAFT_W_IN_OUT));
    }
    m->ln_f_w = graft_params_add(p, "transformer.ln_f.weight", GRAFT_KIND_PARAM, 1, c_shape);
    m->ln_f_b = graft_params_add(p, "transformer.ln_f.bias", GRAFT_KIND_PARAM, 1, c_shape);
    if (m->ln_f_w < 0 || m->ln_f_b < 0 || graft_params_add_alias(p, "lm_head.weight", m->wte) < 0)
        return GRAFT_ERR_INVALID_ARG;
    return GRAFT_OK;
}

static int trainable(const graft_gpt2 *m, int index) { return m->params.items[index].trainable; }

/* The lowest unit holding a trainable parameter, or no_unit(m). */
static int lowest_trainable_unit(const graft_gpt2 *m) {
    const graft_params *p = &m->params;
    if (trainable(m, m->wte) || trainable(m, m->wpe)) return 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const graft_gpt2_block *blk = &m->blocks[l];
        int unit[UNITS_PER_BLOCK] = {
            [U_LN_1] = trainable(m, blk->ln_1_w) || trainable(m, blk->ln_1_b),
            [U_C_ATTN] = graft_linear_layer_trainable(&blk->c_attn, p),
            [U_ATTN_PROJ] = graft_linear_layer_trainable(&blk->attn_proj, p),
            [U_LN_2] = trainable(m, blk->ln_2_w) || trainable(m, blk->ln_2_b),
            [U_C_FC] = graft_linear_layer_trainable(&blk->c_fc, p),
            [U_MLP_PROJ] = graft_linear_layer_trainable(&blk->mlp_proj, p)};
        for (int u = 0; u < UNITS_PER_BLOCK; u++)
            if (unit[u]) return block_unit(l) + u;
    }
    if (trainable(m, m->ln_f_w) || trainable(m, m->ln_f_b)) return ln_f_unit(m);
    return no_unit(m);
}

/* Activation layout for the current trainable set, identical in the planning and the
 * real pass of the arena. */
static void plan_activations(graft_gpt2 *m) {
    graft_arena *a = &m->arena;
    const graft_gpt2_config *c = &m->cfg;
    const size_t BT = (size_t)m->max_batch * c->seq_len, n = BT * c->n_embd;
    const size_t probs = (size_t)m->max_batch * c->n_head * c->seq_len * c->seq_len;
    const size_t keep_bytes = (size_t)m->max_batch * c->n_head * c->seq_len *
                              graft_attention_keep_words(c->seq_len) * sizeof(uint64_t);
    const int dropout = c->dropout > 0, has_backward = m->lowest_unit < no_unit(m);
    m->embd = graft_arena_floats(a, n);
    /* masks that backward never reads are drawn into one scratch buffer */
    float *scratch_mask = dropout && m->lowest_unit > 0 ? graft_arena_floats(a, n) : NULL;
    m->embd_mask = !dropout ? NULL : m->lowest_unit == 0 ? graft_arena_floats(a, n) : scratch_mask;
    if (m->first_kept > 0) {
        /* frozen blocks below the lowest trainable one: the residual stream is updated
         * in place in embd, everything else is overwritten block after block */
        graft_gpt2_acts f;
        f.ln_1 = f.ln_2 = graft_arena_floats(a, n);
        f.ln_1_mean = f.ln_2_mean = graft_arena_floats(a, BT);
        f.ln_1_rstd = f.ln_2_rstd = graft_arena_floats(a, BT);
        f.qkv = graft_arena_floats(a, 3 * n);
        f.att = graft_arena_floats(a, n);
        f.probs = graft_arena_floats(a, probs);
        f.att_keep = NULL; /* no backward reads them */
        f.mask_1 = f.mask_2 = scratch_mask;
        f.res2 = f.res3 = m->embd;
        f.fch = f.fch_gelu = graft_arena_floats(a, 4 * n);
        for (int l = 0; l < m->first_kept; l++)
            m->acts[l] = f;
    }
    for (int l = m->first_kept; l < c->n_layer; l++) {
        graft_gpt2_acts *k = &m->acts[l];
        k->ln_1 = graft_arena_floats(a, n);
        k->ln_1_mean = graft_arena_floats(a, BT);
        k->ln_1_rstd = graft_arena_floats(a, BT);
        k->qkv = graft_arena_floats(a, 3 * n);
        k->att = graft_arena_floats(a, n);
        k->probs = graft_arena_floats(a, probs);
        k->att_keep = dropout ? graft_arena_alloc(a, keep_bytes) : NULL;
        k->mask_1 = dropout ? graft_arena_floats(a, n) : NULL;
        k->res2 = graft_arena_floats(a, n);
        k->ln_2 = graft_arena_floats(a, n);
        k->ln_2_mean = graft_arena_floats(a, BT);
        k->ln_2_rstd = graft_arena_floats(a, BT);
        k->fch = graft_arena_floats(a, 4 * n);
        k->fch_gelu = graft_arena_floats(a, 4 * n);
        k->mask_2 = dropout ? graft_arena_floats(a, n) : NULL;
        k->res3 = graft_arena_floats(a, n);
    }
    m->proj = graft_arena_floats(a, n);
    m->ln_f = graft_arena_floats(a, n);
    m->ln_f_mean = graft_arena_floats(a, BT);
    m->ln_f_rstd = graft_arena_floats(a, BT);
    m->logits = graft_arena_floats(a, BT * c->vocab_size);
    m->probs = graft_arena_floats(a, BT * c->vocab_size);
    int blocks_backward = m->lowest_unit < ln_f_unit(m);
    m->dres = has_backward ? graft_arena_floats(a, n) : NULL;
    m->dln = has_backward ? graft_arena_floats(a, n) : NULL;
    m->dtmp = blocks_backward && dropout ? graft_arena_floats(a, n) : NULL;
    m->dwide_a = blocks_backward ? graft_arena_floats(a, 4 * n) : NULL;
    m->dwide_b = blocks_backward ? graft_arena_floats(a, 4 * n) : NULL;
    m->att_scratch = blocks_backward || dropout
                         ? graft_arena_floats(a, graft_attention_scratch_floats(c->seq_len))
                         : NULL;
}

graft_status graft_gpt2_build(graft_gpt2 *m, int max_batch) {
    if (max_batch <= 0 || (size_t)max_batch * m->cfg.seq_len > INT_MAX / 4) {
        GRAFT_ERROR("GPT-2: micro-batch of %d sequences of %d tokens is out of range", max_batch,
                    m->cfg.seq_len);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (!m->params.finalized) GRAFT_TRY(graft_params_finalize(&m->params));
    m->max_batch = max_batch;
    m->lowest_unit = lowest_trainable_unit(m);
    m->first_kept = m->lowest_unit >= ln_f_unit(m) ? m->cfg.n_layer
                    : m->lowest_unit == 0          ? 0
                                                   : (m->lowest_unit - 1) / UNITS_PER_BLOCK;
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    GRAFT_TRY(graft_arena_commit(&m->arena));
    plan_activations(m);
    m->targets = NULL; /* no backward of a forward planned differently */
    return GRAFT_OK;
}

static void fill_normal(const graft_params *p, int index, float std, graft_rng *rng) {
    float *x = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        x[i] = std * graft_rng_normal(rng);
}

static void fill_layernorm(const graft_params *p, int weight, int bias) {
    float *w = graft_params_value(p, weight);
    for (size_t i = 0; i < p->items[weight].numel; i++)
        w[i] = 1.0f;
    memset(graft_params_value(p, bias), 0, p->items[bias].numel * sizeof(float));
}

/* A Conv1D: weight ~ N(0, std), bias 0. */
static void init_conv1d(const graft_params *p, const graft_linear_layer *l, float std,
                        graft_rng *rng) {
    fill_normal(p, l->weight, std, rng);
    memset(graft_params_value(p, l->bias), 0, (size_t)l->out * sizeof(float));
}

void graft_gpt2_init_weights(graft_gpt2 *m, uint64_t seed) {
    const graft_params *p = &m->params;
    const float std = 0.02f, proj_std = std / sqrtf(2.0f * (float)m->cfg.n_layer);
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    fill_normal(p, m->wte, std, &rng);
    fill_normal(p, m->wpe, std, &rng);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const graft_gpt2_block *blk = &m->blocks[l];
        fill_layernorm(p, blk->ln_1_w, blk->ln_1_b);
        init_conv1d(p, &blk->c_attn, std, &rng);
        init_conv1d(p, &blk->attn_proj, proj_std, &rng);
        fill_layernorm(p, blk->ln_2_w, blk->ln_2_b);
        init_conv1d(p, &blk->c_fc, std, &rng);
        init_conv1d(p, &blk->mlp_proj, proj_std, &rng);
    }
    fill_layernorm(p, m->ln_f_w, m->ln_f_b);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_gpt2_free(graft_gpt2 *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    free(m->blocks);
    free(m->acts);
    memset(m, 0, sizeof *m);
}

/* In place dropout of a projection, when this forward uses it. */
static void maybe_dropout(graft_gpt2 *m, float *x, float *mask, size_t n) {
    if (m->dropout_applied) graft_dropout_forward(x, mask, x, n, m->cfg.dropout, &m->dropout_rng);
}

/* Block l's attention dropout in the last forward, or NULL without. */
static const graft_attention_dropout *attention_dropout(graft_gpt2 *m, int l,
                                                        graft_attention_dropout *d) {
    if (!m->dropout_applied) return NULL;
    *d = (graft_attention_dropout){.p = m->cfg.dropout,
                                   .rng = &m->dropout_rng,
                                   .keep = m->acts[l].att_keep,
                                   .scratch = m->att_scratch};
    return d;
}

static const float *block_input(const graft_gpt2 *m, int l) {
    return l > 0 ? m->acts[l - 1].res3 : m->embd;
}

static void block_forward(graft_gpt2 *m, int l, int B) {
    const graft_params *p = &m->params;
    const graft_gpt2_block *blk = &m->blocks[l];
    const graft_gpt2_acts *a = &m->acts[l];
    const int T = m->cfg.seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head, BT = B * T;
    const size_t n = (size_t)BT * C;
    const float *x = block_input(m, l);
    graft_layernorm_forward(a->ln_1, a->ln_1_mean, a->ln_1_rstd, x,
                            graft_params_value(p, blk->ln_1_w), graft_params_value(p, blk->ln_1_b),
                            BT, C, GPT2_LN_EPS);
    graft_linear_layer_forward(&blk->c_attn, p, a->qkv, a->ln_1, BT);
    graft_attention_dropout drop;
    graft_attention_forward(a->att, a->probs, a->qkv, a->qkv + C, a->qkv + 2 * C, 3 * C, NULL, B, T,
                            NH, C / NH, 1, attention_dropout(m, l, &drop));
    graft_linear_layer_forward(&blk->attn_proj, p, m->proj, a->att, BT);
    maybe_dropout(m, m->proj, a->mask_1, n);
    graft_residual_forward(a->res2, x, m->proj, n);
    graft_layernorm_forward(a->ln_2, a->ln_2_mean, a->ln_2_rstd, a->res2,
                            graft_params_value(p, blk->ln_2_w), graft_params_value(p, blk->ln_2_b),
                            BT, C, GPT2_LN_EPS);
    graft_linear_layer_forward(&blk->c_fc, p, a->fch, a->ln_2, BT);
    graft_gelu_forward(a->fch_gelu, a->fch, 4 * n, GRAFT_GELU_TANH);
    graft_linear_layer_forward(&blk->mlp_proj, p, m->proj, a->fch_gelu, BT);
    maybe_dropout(m, m->proj, a->mask_2, n);
    graft_residual_forward(a->res3, a->res2, m->proj, n);
}

float graft_gpt2_forward(graft_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                         int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const graft_params *p = &m->params;
    const int T = m->cfg.seq_len, C = m->cfg.n_embd, V = m->cfg.vocab_size, BT = B * T;
    for (int i = 0; i < BT; i++)
        GRAFT_ASSERT(tokens[i] >= 0 && tokens[i] < V);
    m->tokens = tokens;
    m->targets = targets;
    m->batch = B;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    /* embd = drop(wte[tokens] + wpe[0..T)) */
    graft_embedding_forward(m->embd, tokens, graft_params_value(p, m->wte), (size_t)BT, C);
    for (int b = 0; b < B; b++) {
        float *row = m->embd + (size_t)b * T * C;
        graft_residual_forward(row, row, graft_params_value(p, m->wpe), (size_t)T * C);
    }
    maybe_dropout(m, m->embd, m->embd_mask, (size_t)BT * C);
    for (int l = 0; l < m->cfg.n_layer; l++)
        block_forward(m, l, B);
    graft_layernorm_forward(m->ln_f, m->ln_f_mean, m->ln_f_rstd, block_input(m, m->cfg.n_layer),
                            graft_params_value(p, m->ln_f_w), graft_params_value(p, m->ln_f_b), BT,
                            C, GPT2_LN_EPS);
    /* lm_head: logits = ln_f · wte^T (wte is [V, C], nn.Linear's layout) */
    graft_linear_forward(m->logits, m->ln_f, graft_params_value(p, m->wte), NULL, BT, C, V,
                         GRAFT_W_OUT_IN);
    if (!targets) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, targets, BT, V, -1, &m->counted);
}

/* The gradient of a projection's output before its dropout (dres itself without). */
static const float *undropped(graft_gpt2 *m, const float *mask, size_t n) {
    if (!m->dropout_applied) return m->dres;
    memset(m->dtmp, 0, n * sizeof(float));
    graft_dropout_backward(m->dtmp, m->dres, mask, n);
    return m->dtmp;
}

static float *zeroed(float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
    return x;
}

/* Backward through block l with the gradient of its output in m->dres, which on return
 * holds the gradient of its input. Returns 0 when backward stops inside this block
 * (nothing below is trainable). */
static int block_backward(graft_gpt2 *m, int l) {
    const graft_params *p = &m->params;
    const graft_gpt2_block *blk = &m->blocks[l];
    const graft_gpt2_acts *a = &m->acts[l];
    const int B = m->batch, T = m->cfg.seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head;
    const int BT = B * T, u = block_unit(l), lowest = m->lowest_unit;
    const size_t n = (size_t)BT * C;
    /* mlp.c_proj, gelu, mlp.c_fc */
    float *dgelu = lowest < u + U_MLP_PROJ ? zeroed(m->dwide_a, 4 * n) : NULL;
    graft_linear_layer_backward(&blk->mlp_proj, p, dgelu, undropped(m, a->mask_2, n), a->fch_gelu,
                                BT);
    if (lowest == u + U_MLP_PROJ) return 0;
    graft_gelu_backward(zeroed(m->dwide_b, 4 * n), dgelu, a->fch, 4 * n, GRAFT_GELU_TANH);
    float *dln_2 = lowest < u + U_C_FC ? zeroed(m->dln, n) : NULL;
    graft_linear_layer_backward(&blk->c_fc, p, dln_2, m->dwide_b, a->ln_2, BT);
    if (lowest == u + U_C_FC) return 0;
    /* ln_2: its input gradient adds to the residual stream's */
    graft_layernorm_backward(lowest < u + U_LN_2 ? m->dres : NULL,
                             graft_params_grad(p, blk->ln_2_w), graft_params_grad(p, blk->ln_2_b),
                             dln_2, a->res2, graft_params_value(p, blk->ln_2_w), a->ln_2_mean,
                             a->ln_2_rstd, BT, C);
    graft_params_grad_ready(p, blk->ln_2_b);
    graft_params_grad_ready(p, blk->ln_2_w);
    if (lowest == u + U_LN_2) return 0;
    /* attn.c_proj, attention, attn.c_attn */
    float *datt = lowest < u + U_ATTN_PROJ ? zeroed(m->dwide_a, n) : NULL;
    graft_linear_layer_backward(&blk->attn_proj, p, datt, undropped(m, a->mask_1, n), a->att, BT);
    if (lowest == u + U_ATTN_PROJ) return 0;
    float *dqkv = zeroed(m->dwide_b, 3 * n);
    graft_attention_dropout drop;
    graft_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, datt, a->qkv, a->qkv + C, a->qkv + 2 * C,
                             a->probs, m->att_scratch, 3 * C, B, T, NH, C / NH,
                             attention_dropout(m, l, &drop));
    float *dln_1 = lowest < u + U_C_ATTN ? zeroed(m->dln, n) : NULL;
    graft_linear_layer_backward(&blk->c_attn, p, dln_1, dqkv, a->ln_1, BT);
    if (lowest == u + U_C_ATTN) return 0;
    graft_layernorm_backward(lowest < u + U_LN_1 ? m->dres : NULL,
                             graft_params_grad(p, blk->ln_1_w), graft_params_grad(p, blk->ln_1_b),
                             dln_1, block_input(m, l), graft_params_value(p, blk->ln_1_w),
                             a->ln_1_mean, a->ln_1_rstd, BT, C);
    graft_params_grad_ready(p, blk->ln_1_b);
    graft_params_grad_ready(p, blk->ln_1_w);
    return lowest < u;
}

void graft_gpt2_backward(graft_gpt2 *m, float loss_scale) {
    if (m->lowest_unit == no_unit(m) || !m->targets || m->counted == 0) return;
    const graft_params *p = &m->params;
    const int T = m->cfg.seq_len, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const int B = m->batch, BT = B * T;
    const size_t n = (size_t)BT * C;
    /* the logits are dead now: their buffer takes the loss gradient */
    float *dlogits = zeroed(m->logits, (size_t)BT * V);
    graft_cross_entropy_backward(dlogits, m->probs, m->targets, BT, V, -1,
                                 loss_scale / (float)m->counted);
    /* lm_head: wte's first gradient part; ready once the embedding part is added */
    graft_linear_backward(zeroed(m->dln, n), graft_params_grad(p, m->wte), NULL, dlogits, m->ln_f,
                          graft_params_value(p, m->wte), BT, C, V, GRAFT_W_OUT_IN);
    int below_ln_f = m->lowest_unit < ln_f_unit(m);
    graft_layernorm_backward(below_ln_f ? zeroed(m->dres, n) : NULL,
                             graft_params_grad(p, m->ln_f_w), graft_params_grad(p, m->ln_f_b),
                             m->dln, block_input(m, m->cfg.n_layer),
                             graft_params_value(p, m->ln_f_w), m->ln_f_mean, m->ln_f_rstd, BT, C);
    graft_params_grad_ready(p, m->ln_f_b);
    graft_params_grad_ready(p, m->ln_f_w);
    if (!below_ln_f) return;
    for (int l = m->cfg.n_layer - 1; l >= 0; l--)
        if (!block_backward(m, l)) return;
    /* the embeddings: through their dropout, then wpe rows 0..T-1 and wte's rows */
    const float *demb = m->dres;
    if (m->dropout_applied) {
        graft_dropout_backward(zeroed(m->dln, n), m->dres, m->embd_mask, n);
        demb = m->dln;
    }
    float *dwpe = graft_params_grad(p, m->wpe);
    if (dwpe)
        for (int b = 0; b < B; b++)
            graft_residual_backward(dwpe, NULL, demb + (size_t)b * T * C, (size_t)T * C);
    graft_params_grad_ready(p, m->wpe);
    graft_embedding_backward(graft_params_grad(p, m->wte), demb, m->tokens, (size_t)BT, C);
    graft_params_grad_ready(p, m->wte);
}

const char *graft_gpt2_map_name(const char *file_name, char *buf, size_t size) {
    static const char prefix[] = "transformer.";
    const size_t plen = sizeof prefix - 1;
    const char *bare = strncmp(file_name, prefix, plen) == 0 ? file_name + plen : file_name;
    /* the causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias are not weights */
    if (strncmp(bare, "h.", 2) == 0) {
        const char *rest = bare + 2;
        while (isdigit((unsigned char)*rest))
            rest++;
        if (rest > bare + 2 &&
            (strcmp(rest, ".attn.bias") == 0 || strcmp(rest, ".attn.masked_bias") == 0))
            return NULL;
    }
    /* a bare GPT2Model name (the hub's files) gets the GPT2LMHeadModel prefix */
    if (bare == file_name && (strncmp(bare, "h.", 2) == 0 || strncmp(bare, "wte.", 4) == 0 ||
                              strncmp(bare, "wpe.", 4) == 0 || strncmp(bare, "ln_f.", 5) == 0)) {
        int len = snprintf(buf, size, "%s%s", prefix, bare);
        if (len > 0 && (size_t)len < size) return buf;
    }
    return file_name;
}

/* ---- the model interface ------------------------------------------------------------ */

static graft_status gpt2_build(void *self, int max_batch) {
    return graft_gpt2_build(self, max_batch);
}
static void gpt2_init_weights(void *self, uint64_t seed) { graft_gpt2_init_weights(self, seed); }
static void gpt2_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_gpt2 *)self)->dropout_rng, seed);
}
static float gpt2_forward(void *self, const float *inputs, const int32_t *tokens,
                          const int32_t *labels, int B, int training, int *counted) {
    (void)inputs;
    graft_gpt2 *m = self;
    float loss = graft_gpt2_forward(m, tokens, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}
static void gpt2_backward(void *self, float loss_scale) { graft_gpt2_backward(self, loss_scale); }
static const float *gpt2_logits(void *self) { return ((graft_gpt2 *)self)->logits; }
static void gpt2_free(void *self) {
    graft_gpt2_free(self);
    free(self);
}

graft_status graft_gpt2_create(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input) {
    static const graft_model_i iface = {.name = "gpt2",
                                        .head = NULL,
                                        .build = gpt2_build,
                                        .init_weights = gpt2_init_weights,
                                        .seed_step = gpt2_seed_step,
                                        .forward = gpt2_forward,
                                        .backward = gpt2_backward,
                                        .logits = gpt2_logits,
                                        .map_name = graft_gpt2_map_name,
                                        .free = gpt2_free};
    if (input->channels > 0 || input->vocab_size <= 0) {
        GRAFT_ERROR("model.arch gpt2 needs a token dataset (got an image dataset)");
        return GRAFT_ERR_CONFIG;
    }
    const int want_vocab = cfg->model.vocab_size;
    if (want_vocab > 0 && want_vocab != input->vocab_size) {
        GRAFT_ERROR("model.vocab_size %d does not match the dataset's vocabulary of %d tokens",
                    want_vocab, input->vocab_size);
        return GRAFT_ERR_CONFIG;
    }
    graft_gpt2_config gc = {.n_layer = cfg->model.n_layer > 0 ? cfg->model.n_layer : 12,
                            .n_head = cfg->model.n_head > 0 ? cfg->model.n_head : 12,
                            .n_embd = cfg->model.n_embd > 0 ? cfg->model.n_embd : 768,
                            .n_positions =
                                cfg->model.n_positions > 0 ? cfg->model.n_positions : 1024,
                            .vocab_size = input->vocab_size,
                            .seq_len = input->seq_len,
                            .dropout = (float)cfg->model.dropout};
    graft_gpt2 *m = calloc(1, sizeof *m);
    if (!m) return GRAFT_ERR_NOMEM;
    graft_status st = graft_gpt2_init(m, &gc);
    if (st != GRAFT_OK) {
        gpt2_free(m);
        return st;
    }
    out->iface = iface;
    out->self = m;
    out->params = &m->params;
    out->task = GRAFT_TASK_LANGUAGE;
    out->num_outputs = gc.vocab_size;
    return GRAFT_OK;
}
