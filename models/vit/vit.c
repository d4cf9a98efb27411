#include "vit.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

#define VIT_LN_EPS 1e-6f

/* Backward walks "units", the parameter ranges in forward order: 0 = the embedding
 * (class_token, conv_proj, encoder.pos_embedding), then six per encoder layer (ln_1,
 * self_attention's in_proj, its out_proj, ln_2, mlp.0, mlp.3), then encoder.ln and
 * heads.head. The lowest unit with a trainable parameter is where backward stops. */
enum { UNITS_PER_LAYER = 6, U_LN_1 = 0, U_IN_PROJ, U_OUT_PROJ, U_LN_2, U_MLP_0, U_MLP_3 };
static int layer_unit(int l) { return 1 + UNITS_PER_LAYER * l; }
static int ln_unit(const graft_vit *m) { return layer_unit(m->cfg.n_layer); }
static int head_unit(const graft_vit *m) { return ln_unit(m) + 1; }

/* ---- parameters --------------------------------------------------------------------- */

/* Opens unit u's parameter range, closing the one before it. */
static void next_unit(graft_vit *m, int u) {
    if (u > 0) graft_param_range_end(&m->units[u - 1], &m->params);
    m->units[u] = graft_param_range_begin(&m->params);
}

static graft_status add_layernorm(graft_params *p, const char *prefix, int C, int *w, int *b) {
    char name[GRAFT_NAME_MAX];
    int64_t shape[1] = {C};
    snprintf(name, sizeof name, "%s.weight", prefix);
    *w = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, shape);
    snprintf(name, sizeof name, "%s.bias", prefix);
    *b = *w < 0 ? -1 : graft_params_add(p, name, GRAFT_KIND_PARAM, 1, shape);
    return *b < 0 ? GRAFT_ERR_INVALID_ARG : GRAFT_OK;
}

/* A linear layer (nn.Linear's [out, in] layout) whose parameters torch names otherwise:
 * weight `wname` of shape wshape (out * in values) and bias `bname` [out]. */
static graft_status add_linear(graft_linear_layer *l, graft_params *p, const char *wname,
                               const char *bname, int in, int out, int ndim,
                               const int64_t *wshape) {
    int64_t bshape[1] = {out};
    *l = (graft_linear_layer){.in = in, .out = out, .layout = GRAFT_W_OUT_IN};
    l->weight = graft_params_add(p, wname, GRAFT_KIND_PARAM, ndim, wshape);
    l->bias = l->weight < 0 ? -1 : graft_params_add(p, bname, GRAFT_KIND_PARAM, 1, bshape);
    return l->bias < 0 ? GRAFT_ERR_INVALID_ARG : GRAFT_OK;
}

/* encoder.layers.encoder_layer_<l>.*, in state_dict order, one unit per part. */
static graft_status add_layer(graft_vit *m, int l) {
    graft_params *p = &m->params;
    graft_vit_layer *ly = &m->layers[l];
    const int C = m->cfg.n_embd, M = m->cfg.mlp_dim, u = layer_unit(l);
    char prefix[64], name[GRAFT_NAME_MAX];
    snprintf(prefix, sizeof prefix, "encoder.layers.encoder_layer_%d", l);
    next_unit(m, u + U_LN_1);
    snprintf(name, sizeof name, "%s.ln_1", prefix);
    GRAFT_TRY(add_layernorm(p, name, C, &ly->ln_1_w, &ly->ln_1_b));
    next_unit(m, u + U_IN_PROJ);
    /* nn.MultiheadAttention's packed q, k, v projection */
    char bias[GRAFT_NAME_MAX];
    const int64_t in_proj_shape[2] = {3 * C, C};
    snprintf(name, sizeof name, "%s.self_attention.in_proj_weight", prefix);
    snprintf(bias, sizeof bias, "%s.self_attention.in_proj_bias", prefix);
    GRAFT_TRY(add_linear(&ly->in_proj, p, name, bias, C, 3 * C, 2, in_proj_shape));
    next_unit(m, u + U_OUT_PROJ);
    snprintf(name, sizeof name, "%s.self_attention.out_proj", prefix);
    GRAFT_TRY(graft_linear_layer_add(&ly->out_proj, p, name, C, C, 1, GRAFT_W_OUT_IN));
    next_unit(m, u + U_LN_2);
    snprintf(name, sizeof name, "%s.ln_2", prefix);
    GRAFT_TRY(add_layernorm(p, name, C, &ly->ln_2_w, &ly->ln_2_b));
    next_unit(m, u + U_MLP_0);
    snprintf(name, sizeof name, "%s.mlp.0", prefix);
    GRAFT_TRY(graft_linear_layer_add(&ly->mlp_0, p, name, C, M, 1, GRAFT_W_OUT_IN));
    next_unit(m, u + U_MLP_3);
    snprintf(name, sizeof name, "%s.mlp.3", prefix);
    return graft_linear_layer_add(&ly->mlp_3, p, name, M, C, 1, GRAFT_W_OUT_IN);
}

static graft_status check_config(const graft_vit_config *c) {
    const int big = 1 << 20, P = c->patch_size;
    /* the limits keep every derived int (3C, BS, a patch) and size product in range */
    if (c->n_layer < 1 || c->n_layer > 1024 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_embd > big / 4 || c->mlp_dim < 1 || c->mlp_dim > big || c->channels < 1 ||
        c->height < 1 || c->width < 1 || c->height > 8192 || c->width > 8192 ||
        (size_t)c->channels * c->height * c->width > (size_t)1 << 28 || c->num_classes < 1 ||
        c->num_classes > 16 * big) {
        GRAFT_ERROR("bad ViT config: model.n_layer %d, model.n_head %d, model.n_embd %d, "
                    "model.mlp_dim %d, images %dx%dx%d, %d classes",
                    c->n_layer, c->n_head, c->n_embd, c->mlp_dim, c->channels, c->height, c->width,
                    c->num_classes);
        return GRAFT_ERR_CONFIG;
    }
    if (P < 1 || c->height % P != 0 || c->width % P != 0) {
        GRAFT_ERROR("model.patch_size %d does not divide the %dx%d images", P, c->height, c->width);
        return GRAFT_ERR_CONFIG;
    }
    if ((size_t)(c->height / P) * (c->width / P) >= 65536) {
        GRAFT_ERROR("model.patch_size %d cuts the %dx%d images into %d patches (at most 65535)", P,
                    c->height, c->width, (c->height / P) * (c->width / P));
        return GRAFT_ERR_CONFIG;
    }
    if (c->n_embd % c->n_head != 0) {
        GRAFT_ERROR("model.n_embd %d is not divisible by model.n_head %d", c->n_embd, c->n_head);
        return GRAFT_ERR_CONFIG;
    }
    if (!(c->dropout >= 0 && c->dropout < 1)) {
        GRAFT_ERROR("model.dropout %g is not in [0, 1)", (double)c->dropout);
        return GRAFT_ERR_CONFIG;
    }
    return GRAFT_OK;
}

graft_status graft_vit_init(graft_vit *m, const graft_vit_config *cfg) {
    memset(m, 0, sizeof *m);
    GRAFT_TRY(check_config(cfg));
    m->cfg = *cfg;
    const int P = cfg->patch_size, C = cfg->n_embd;
    m->seq_len = 1 + (cfg->height / P) * (cfg->width / P);
    m->patch_floats = cfg->channels * P * P;
    m->n_units = layer_unit(cfg->n_layer) + 2;
    graft_params_init(&m->params);
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    m->acts = calloc((size_t)cfg->n_layer, sizeof *m->acts);
    m->units = calloc((size_t)m->n_units, sizeof *m->units);
    if (!m->layers || !m->acts || !m->units) return GRAFT_ERR_NOMEM;

    graft_params *p = &m->params;
    int64_t token_shape[3] = {1, 1, C}, pos_shape[3] = {1, m->seq_len, C};
    next_unit(m, 0);
    m->class_token = graft_params_add(p, "class_token", GRAFT_KIND_PARAM, 3, token_shape);
    if (m->class_token < 0) return GRAFT_ERR_INVALID_ARG;
    /* conv_proj [C, in_ch, P, P]: a linear map of flattened patches */
    const int64_t conv_shape[4] = {C, cfg->channels, P, P};
    GRAFT_TRY(add_linear(&m->conv_proj, p, "conv_proj.weight", "conv_proj.bias", m->patch_floats, C,
                         4, conv_shape));
    m->pos_embedding = graft_params_add(p, "encoder.pos_embedding", GRAFT_KIND_PARAM, 3, pos_shape);
    if (m->pos_embedding < 0) return GRAFT_ERR_INVALID_ARG;
    for (int l = 0; l < cfg->n_layer; l++)
        GRAFT_TRY(add_layer(m, l));
    next_unit(m, ln_unit(m));
    GRAFT_TRY(add_layernorm(p, "encoder.ln", C, &m->ln_w, &m->ln_b));
    next_unit(m, head_unit(m));
    GRAFT_TRY(
        graft_linear_layer_add(&m->head, p, "heads.head", C, cfg->num_classes, 1, GRAFT_W_OUT_IN));
    graft_param_range_end(&m->units[head_unit(m)], p);
    return GRAFT_OK;
}

/* ---- activations -------------------------------------------------------------------- */

/* Activation layout for the current trainable set, identical in the planning and the
 * real pass of the arena. */
static void plan_activations(graft_vit *m) {
    graft_arena *a = &m->arena;
    const graft_vit_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, S = (size_t)m->seq_len, C = (size_t)c->n_embd;
    const size_t BS = B * S, n = BS * C, wide = BS * (size_t)c->mlp_dim;
    const size_t probs = B * (size_t)c->n_head * S * S;
    const size_t keep_bytes =
        B * (size_t)c->n_head * S * graft_attention_keep_words((int)S) * sizeof(uint64_t);
    const int dropout = c->dropout > 0, lowest = m->lowest_unit;
    m->patches = graft_arena_floats(a, B * (S - 1) * (size_t)m->patch_floats);
    m->embd = graft_arena_floats(a, n);
    /* masks that backward never reads are drawn into one scratch buffer */
    float *scratch_mask = dropout && lowest > 0 ? graft_arena_floats(a, n) : NULL;
    m->embd_mask = !dropout ? NULL : lowest == 0 ? graft_arena_floats(a, n) : scratch_mask;
    if (m->first_kept > 0) {
        /* frozen layers below the lowest trainable one: the residual stream is updated
         * in place in embd, everything else is overwritten layer after layer */
        graft_vit_acts f;
        f.ln_1 = f.ln_2 = graft_arena_floats(a, n);
        f.ln_1_mean = f.ln_2_mean = graft_arena_floats(a, BS);
        f.ln_1_rstd = f.ln_2_rstd = graft_arena_floats(a, BS);
        f.qkv = graft_arena_floats(a, 3 * n);
        f.att = graft_arena_floats(a, n);
        f.probs = graft_arena_floats(a, probs);
        f.att_keep = NULL; /* no backward reads them */
        f.mask_1 = f.mask_2 = scratch_mask;
        f.res2 = f.res3 = m->embd;
        f.fc = f.hidden = graft_arena_floats(a, wide);
        f.mask_h = dropout ? graft_arena_floats(a, wide) : NULL;
        for (int l = 0; l < m->first_kept; l++)
            m->acts[l] = f;
    }
    for (int l = m->first_kept; l < c->n_layer; l++) {
        graft_vit_acts *k = &m->acts[l];
        k->ln_1 = graft_arena_floats(a, n);
        k->ln_1_mean = graft_arena_floats(a, BS);
        k->ln_1_rstd = graft_arena_floats(a, BS);
        k->qkv = graft_arena_floats(a, 3 * n);
        k->att = graft_arena_floats(a, n);
        k->probs = graft_arena_floats(a, probs);
        k->att_keep = dropout ? graft_arena_alloc(a, keep_bytes) : NULL;
        k->mask_1 = dropout ? graft_arena_floats(a, n) : NULL;
        k->res2 = graft_arena_floats(a, n);
        k->ln_2 = graft_arena_floats(a, n);
        k->ln_2_mean = graft_arena_floats(a, BS);
        k->ln_2_rstd = graft_arena_floats(a, BS);
        k->fc = graft_arena_floats(a, wide);
        k->hidden = graft_arena_floats(a, wide);
        k->mask_h = dropout ? graft_arena_floats(a, wide) : NULL;
        k->mask_2 = dropout ? graft_arena_floats(a, n) : NULL;
        k->res3 = graft_arena_floats(a, n);
    }
    m->proj = graft_arena_floats(a, n);
    m->cls = graft_arena_floats(a, B * C);
    m->cls_ln = graft_arena_floats(a, B * C);
    m->cls_mean = graft_arena_floats(a, B);
    m->cls_rstd = graft_arena_floats(a, B);
    const size_t K = (size_t)c->num_classes;
    m->logits = graft_arena_floats(a, B * K);
    m->probs = graft_arena_floats(a, B * K);
    m->dlogits = graft_arena_floats(a, B * K);
    const int below_head = lowest < head_unit(m), layers_backward = lowest < ln_unit(m);
    const size_t dwide = BS * (size_t)(3 * c->n_embd > c->mlp_dim ? 3 * c->n_embd : c->mlp_dim);
    m->dcls_ln = below_head ? graft_arena_floats(a, B * C) : NULL;
    m->dcls = layers_backward ? graft_arena_floats(a, B * C) : NULL;
    m->dres = layers_backward ? graft_arena_floats(a, n) : NULL;
    m->dln = layers_backward ? graft_arena_floats(a, n) : NULL;
    m->dtmp = layers_backward && dropout ? graft_arena_floats(a, n) : NULL;
    m->dwide_a = layers_backward ? graft_arena_floats(a, dwide) : NULL;
    m->dwide_b = layers_backward ? graft_arena_floats(a, dwide) : NULL;
    m->att_scratch = layers_backward || dropout
                         ? graft_arena_floats(a, graft_attention_scratch_floats((int)S))
                         : NULL;
}

graft_status graft_vit_build(graft_vit *m, int max_batch) {
    if (max_batch <= 0 || (size_t)max_batch * m->seq_len > INT_MAX / 4) {
        GRAFT_ERROR("ViT: micro-batch of %d images of %d tokens is out of range", max_batch,
                    m->seq_len);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (!m->params.finalized) GRAFT_TRY(graft_params_finalize(&m->params));
    m->max_batch = max_batch;
    m->lowest_unit = graft_nn_lowest_trainable(&m->params, m->units, m->n_units);
    m->first_kept = m->lowest_unit >= ln_unit(m) ? m->cfg.n_layer
                    : m->lowest_unit == 0        ? 0
                                                 : (m->lowest_unit - 1) / UNITS_PER_LAYER;
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    GRAFT_TRY(graft_arena_commit(&m->arena));
    plan_activations(m);
    m->targets = NULL; /* no backward of a forward planned differently */
    return GRAFT_OK;
}

/* ---- initialisation ----------------------------------------------------------------- */

static void fill(const graft_params *p, int index, float value) {
    float *x = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        x[i] = value;
}

static void fill_normal(const graft_params *p, int index, float std, graft_rng *rng) {
    float *x = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        x[i] = std * graft_rng_normal(rng);
}

/* torch.nn.init.trunc_normal_(std=std): N(0, std) redrawn outside [-2, 2]. */
static void fill_trunc_normal(const graft_params *p, int index, float std, graft_rng *rng) {
    float *x = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        do
            x[i] = std * graft_rng_normal(rng);
        while (fabsf(x[i]) > 2.0f);
}

/* A linear layer's weight ~ U(-bound, bound). */
static void fill_uniform(const graft_params *p, int index, float bound, graft_rng *rng) {
    float *x = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        x[i] = bound * (2.0f * graft_rng_uniform(rng) - 1.0f);
}

static float xavier_bound(const graft_linear_layer *l) {
    return sqrtf(6.0f / (float)(l->in + l->out));
}

static void init_layernorm(const graft_params *p, int weight, int bias) {
    fill(p, weight, 1.0f);
    fill(p, bias, 0.0f);
}

void graft_vit_init_weights(graft_vit *m, uint64_t seed) {
    const graft_params *p = &m->params;
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    fill(p, m->class_token, 0.0f);
    fill_trunc_normal(p, m->conv_proj.weight, sqrtf(1.0f / (float)m->patch_floats), &rng);
    fill(p, m->conv_proj.bias, 0.0f);
    fill_normal(p, m->pos_embedding, 0.02f, &rng);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const graft_vit_layer *ly = &m->layers[l];
        init_layernorm(p, ly->ln_1_w, ly->ln_1_b);
        fill_uniform(p, ly->in_proj.weight, xavier_bound(&ly->in_proj), &rng);
        fill(p, ly->in_proj.bias, 0.0f);
        /* out_proj keeps nn.Linear's weight init; MultiheadAttention zeroes its bias */
        fill_uniform(p, ly->out_proj.weight, 1.0f / sqrtf((float)m->cfg.n_embd), &rng);
        fill(p, ly->out_proj.bias, 0.0f);
        init_layernorm(p, ly->ln_2_w, ly->ln_2_b);
        const graft_linear_layer *mlp[2] = {&ly->mlp_0, &ly->mlp_3};
        for (int i = 0; i < 2; i++) {
            fill_uniform(p, mlp[i]->weight, xavier_bound(mlp[i]), &rng);
            fill_normal(p, mlp[i]->bias, 1e-6f, &rng);
        }
    }
    init_layernorm(p, m->ln_w, m->ln_b);
    fill(p, m->head.weight, 0.0f);
    fill(p, m->head.bias, 0.0f);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_vit_free(graft_vit *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    free(m->layers);
    free(m->acts);
    free(m->units);
    memset(m, 0, sizeof *m);
}

/* ---- forward ------------------------------------------------------------------------ */

/* In place dropout of x, when this forward uses dropout. */
static void maybe_dropout(graft_vit *m, float *x, float *mask, size_t n) {
    if (m->dropout_applied) graft_dropout_forward(x, mask, x, n, m->cfg.dropout, &m->dropout_rng);
}

/* Layer l's attention dropout in the last forward, or NULL without. */
static const graft_attention_dropout *attention_dropout(graft_vit *m, int l,
                                                        graft_attention_dropout *d) {
    if (!m->dropout_applied) return NULL;
    *d = (graft_attention_dropout){.p = m->cfg.dropout,
                                   .rng = &m->dropout_rng,
                                   .keep = m->acts[l].att_keep,
                                   .scratch = m->att_scratch};
    return d;
}

static const float *layer_input(const graft_vit *m, int l) {
    return l > 0 ? m->acts[l - 1].res3 : m->embd;
}

/* patches [B * NP, in_ch * P * P]: patch (py, px) of image b is row b * NP + py * (W / P)
 * + px, its values in conv_proj.weight's order (channel, row, column), so the strided
 * convolution is one GEMM with the weight seen as [C, in_ch * P * P]. */
static void patchify(float *patches, const float *x, const graft_vit_config *c, int B) {
    const int P = c->patch_size, H = c->height, W = c->width, NW = W / P;
    const size_t K = (size_t)c->channels * P * P, NP = (size_t)(H / P) * NW;
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < c->channels; ch++)
            for (int y = 0; y < H; y++) {
                const float *row = x + (((size_t)b * c->channels + ch) * H + y) * W;
                float *dst = patches + ((size_t)b * NP + (size_t)(y / P) * NW) * K +
                             ((size_t)ch * P + y % P) * P;
                for (int px = 0; px < NW; px++)
                    memcpy(dst + px * K, row + (size_t)px * P, (size_t)P * sizeof(float));
            }
}

/* embd [B, S, C] = drop([class_token; conv_proj(patches)] + pos_embedding). */
static void embed_forward(graft_vit *m, const float *x, int B) {
    const graft_params *p = &m->params;
    const int S = m->seq_len, C = m->cfg.n_embd;
    patchify(m->patches, x, &m->cfg, B);
    for (int b = 0; b < B; b++) {
        float *row = m->embd + (size_t)b * S * C;
        memcpy(row, graft_params_value(p, m->class_token), (size_t)C * sizeof(float));
        graft_linear_layer_forward(&m->conv_proj, p, row + C,
                                   m->patches + (size_t)b * (S - 1) * m->patch_floats, S - 1);
        graft_residual_forward(row, row, graft_params_value(p, m->pos_embedding), (size_t)S * C);
    }
    maybe_dropout(m, m->embd, m->embd_mask, (size_t)B * S * C);
}

/* torchvision's EncoderBlock: x + drop(attention(ln_1(x))), then
 * + drop(mlp.3(drop(gelu(mlp.0(ln_2(.)))))). */
static void encoder_layer_forward(graft_vit *m, int l, int B) {
    const graft_params *p = &m->params;
    const graft_vit_layer *ly = &m->layers[l];
    const graft_vit_acts *a = &m->acts[l];
    const int S = m->seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head, BS = B * S;
    const size_t n = (size_t)BS * C, wide = (size_t)BS * m->cfg.mlp_dim;
    const float *x = layer_input(m, l);
    graft_layernorm_forward(a->ln_1, a->ln_1_mean, a->ln_1_rstd, x,
                            graft_params_value(p, ly->ln_1_w), graft_params_value(p, ly->ln_1_b),
                            BS, C, VIT_LN_EPS);
    graft_linear_layer_forward(&ly->in_proj, p, a->qkv, a->ln_1, BS);
    graft_attention_dropout drop;
    graft_attention_forward(a->att, a->probs, a->qkv, a->qkv + C, a->qkv + 2 * C, 3 * C, NULL, B, S,
                            NH, C / NH, 0, attention_dropout(m, l, &drop));
    graft_linear_layer_forward(&ly->out_proj, p, m->proj, a->att, BS);
    maybe_dropout(m, m->proj, a->mask_1, n);
    graft_residual_forward(a->res2, x, m->proj, n);
    graft_layernorm_forward(a->ln_2, a->ln_2_mean, a->ln_2_rstd, a->res2,
                            graft_params_value(p, ly->ln_2_w), graft_params_value(p, ly->ln_2_b),
                            BS, C, VIT_LN_EPS);
    graft_linear_layer_forward(&ly->mlp_0, p, a->fc, a->ln_2, BS);
    graft_gelu_forward(a->hidden, a->fc, wide, GRAFT_GELU_ERF);
    maybe_dropout(m, a->hidden, a->mask_h, wide);
    graft_linear_layer_forward(&ly->mlp_3, p, m->proj, a->hidden, BS);
    maybe_dropout(m, m->proj, a->mask_2, n);
    graft_residual_forward(a->res3, a->res2, m->proj, n);
}

float graft_vit_forward(graft_vit *m, const float *x, const int32_t *targets, int B, int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const graft_params *p = &m->params;
    const int S = m->seq_len, C = m->cfg.n_embd, K = m->cfg.num_classes;
    m->targets = targets;
    m->batch = B;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    embed_forward(m, x, B);
    for (int l = 0; l < m->cfg.n_layer; l++)
        encoder_layer_forward(m, l, B);
    /* encoder.ln and the head see only the class token rows: no other row reaches the
     * logits */
    const float *top = layer_input(m, m->cfg.n_layer);
    for (int b = 0; b < B; b++)
        memcpy(m->cls + (size_t)b * C, top + (size_t)b * S * C, (size_t)C * sizeof(float));
    graft_layernorm_forward(m->cls_ln, m->cls_mean, m->cls_rstd, m->cls,
                            graft_params_value(p, m->ln_w), graft_params_value(p, m->ln_b), B, C,
                            VIT_LN_EPS);
    graft_linear_layer_forward(&m->head, p, m->logits, m->cls_ln, B);
    if (!targets) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, targets, B, K, -1, &m->counted);
}

/* ---- backward ----------------------------------------------------------------------- */

static float *zeroed(float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
    return x;
}

/* The gradient of a projection's output before its dropout (dres itself without). */
static const float *undropped(graft_vit *m, const float *mask, size_t n) {
    if (!m->dropout_applied) return m->dres;
    graft_dropout_backward(zeroed(m->dtmp, n), m->dres, mask, n);
    return m->dtmp;
}

/* Backward through encoder layer l with the gradient of its output in m->dres, which on
 * return holds the gradient of its input. Returns 0 when backward stops inside this
 * layer (nothing below is trainable). */
static int encoder_layer_backward(graft_vit *m, int l) {
    const graft_params *p = &m->params;
    const graft_vit_layer *ly = &m->layers[l];
    const graft_vit_acts *a = &m->acts[l];
    const int B = m->batch, S = m->seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head;
    const int BS = B * S, u = layer_unit(l), lowest = m->lowest_unit;
    const size_t n = (size_t)BS * C, wide = (size_t)BS * m->cfg.mlp_dim;
    /* mlp.3, the hidden dropout, GELU, mlp.0 */
    float *dhidden = lowest < u + U_MLP_3 ? zeroed(m->dwide_a, wide) : NULL;
    graft_linear_layer_backward(&ly->mlp_3, p, dhidden, undropped(m, a->mask_2, n), a->hidden, BS);
    if (lowest == u + U_MLP_3) return 0;
    float *dfc = zeroed(m->dwide_b, wide);
    if (m->dropout_applied) {
        graft_dropout_backward(dfc, dhidden, a->mask_h, wide);
        dhidden = dfc;
        dfc = zeroed(m->dwide_a, wide);
    }
    graft_gelu_backward(dfc, dhidden, a->fc, wide, GRAFT_GELU_ERF);
    float *dln_2 = lowest < u + U_MLP_0 ? zeroed(m->dln, n) : NULL;
    graft_linear_layer_backward(&ly->mlp_0, p, dln_2, dfc, a->ln_2, BS);
    if (lowest == u + U_MLP_0) return 0;
    /* ln_2: its input gradient adds to the residual stream's */
    graft_layernorm_backward(lowest < u + U_LN_2 ? m->dres : NULL, graft_params_grad(p, ly->ln_2_w),
                             graft_params_grad(p, ly->ln_2_b), dln_2, a->res2,
                             graft_params_value(p, ly->ln_2_w), a->ln_2_mean, a->ln_2_rstd, BS, C);
    graft_params_grad_ready(p, ly->ln_2_b);
    graft_params_grad_ready(p, ly->ln_2_w);
    if (lowest == u + U_LN_2) return 0;
    /* out_proj, attention, in_proj */
    float *datt = lowest < u + U_OUT_PROJ ? zeroed(m->dwide_a, n) : NULL;
    graft_linear_layer_backward(&ly->out_proj, p, datt, undropped(m, a->mask_1, n), a->att, BS);
    if (lowest == u + U_OUT_PROJ) return 0;
    float *dqkv = zeroed(m->dwide_b, 3 * n);
    graft_attention_dropout drop;
    graft_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, datt, a->qkv, a->qkv + C, a->qkv + 2 * C,
                             a->probs, m->att_scratch, 3 * C, B, S, NH, C / NH,
                             attention_dropout(m, l, &drop));
    float *dln_1 = lowest < u + U_IN_PROJ ? zeroed(m->dln, n) : NULL;
    graft_linear_layer_backward(&ly->in_proj, p, dln_1, dqkv, a->ln_1, BS);
    if (lowest == u + U_IN_PROJ) return 0;
    graft_layernorm_backward(lowest < u + U_LN_1 ? m->dres : NULL, graft_params_grad(p, ly->ln_1_w),
                             graft_params_grad(p, ly->ln_1_b), dln_1, layer_input(m, l),
                             graft_params_value(p, ly->ln_1_w), a->ln_1_mean, a->ln_1_rstd, BS, C);
    graft_params_grad_ready(p, ly->ln_1_b);
    graft_params_grad_ready(p, ly->ln_1_w);
    return lowest < u;
}

/* The embedding from the gradient of its output in m->dres: pos_embedding, conv_proj
 * (only when trainable: its input is the images) and the class token. */
static void embed_backward(graft_vit *m) {
    const graft_params *p = &m->params;
    const int B = m->batch, S = m->seq_len, C = m->cfg.n_embd, K = m->patch_floats;
    const size_t n = (size_t)B * S * C;
    const float *demb = m->dres;
    if (m->dropout_applied) {
        graft_dropout_backward(zeroed(m->dln, n), m->dres, m->embd_mask, n);
        demb = m->dln;
    }
    float *dpos = graft_params_grad(p, m->pos_embedding);
    float *dtoken = graft_params_grad(p, m->class_token);
    for (int b = 0; b < B; b++) {
        const float *row = demb + (size_t)b * S * C;
        if (dpos) graft_residual_backward(dpos, NULL, row, (size_t)S * C);
        if (dtoken) graft_residual_backward(dtoken, NULL, row, (size_t)C);
    }
    graft_params_grad_ready(p, m->pos_embedding);
    const graft_linear_layer *conv = &m->conv_proj;
    if (graft_linear_layer_trainable(conv, p))
        for (int b = 0; b < B; b++)
            graft_linear_backward(NULL, graft_params_grad(p, conv->weight),
                                  graft_params_grad(p, conv->bias), demb + ((size_t)b * S + 1) * C,
                                  m->patches + (size_t)b * (S - 1) * K,
                                  graft_params_value(p, conv->weight), S - 1, K, C, GRAFT_W_OUT_IN);
    graft_params_grad_ready(p, conv->bias);
    graft_params_grad_ready(p, conv->weight);
    graft_params_grad_ready(p, m->class_token);
}

void graft_vit_backward(graft_vit *m, float loss_scale) {
    /* the plan covers the trainable set it was built for */
    GRAFT_ASSERT(graft_nn_lowest_trainable(&m->params, m->units, m->n_units) == m->lowest_unit);
    if (m->lowest_unit >= m->n_units || !m->targets || m->counted == 0) return;
    const graft_params *p = &m->params;
    const int B = m->batch, S = m->seq_len, C = m->cfg.n_embd, K = m->cfg.num_classes;
    graft_cross_entropy_backward(zeroed(m->dlogits, (size_t)B * K), m->probs, m->targets, B, K, -1,
                                 loss_scale / (float)m->counted);
    const int below_head = m->lowest_unit < head_unit(m);
    graft_linear_layer_backward(&m->head, p, below_head ? zeroed(m->dcls_ln, (size_t)B * C) : NULL,
                                m->dlogits, m->cls_ln, B);
    if (!below_head) return;
    const int below_ln = m->lowest_unit < ln_unit(m);
    graft_layernorm_backward(below_ln ? zeroed(m->dcls, (size_t)B * C) : NULL,
                             graft_params_grad(p, m->ln_w), graft_params_grad(p, m->ln_b),
                             m->dcls_ln, m->cls, graft_params_value(p, m->ln_w), m->cls_mean,
                             m->cls_rstd, B, C);
    graft_params_grad_ready(p, m->ln_b);
    graft_params_grad_ready(p, m->ln_w);
    if (!below_ln) return;
    /* only the class token rows of the top layer's output have a gradient */
    zeroed(m->dres, (size_t)B * S * C);
    for (int b = 0; b < B; b++)
        memcpy(m->dres + (size_t)b * S * C, m->dcls + (size_t)b * C, (size_t)C * sizeof(float));
    for (int l = m->cfg.n_layer - 1; l >= 0; l--)
        if (!encoder_layer_backward(m, l)) return;
    embed_backward(m);
}

const char *graft_vit_map_name(const char *file_name, char *buf, size_t size) {
    static const char *const old[2] = {".mlp.linear_1.", ".mlp.linear_2."};
    static const char *const now[2] = {".mlp.0.", ".mlp.3."};
    if (strncmp(file_name, "encoder.layers.", 15) != 0) return file_name;
    for (int i = 0; i < 2; i++) {
        const char *at = strstr(file_name, old[i]);
        if (!at) continue;
        int len = snprintf(buf, size, "%.*s%s%s", (int)(at - file_name), file_name, now[i],
                           at + strlen(old[i]));
        if (len > 0 && (size_t)len < size) return buf;
    }
    return file_name;
}

/* ---- the model interface ------------------------------------------------------------ */

static graft_status vit_build(void *self, int max_batch) {
    return graft_vit_build(self, max_batch);
}
static void vit_init_weights(void *self, uint64_t seed) { graft_vit_init_weights(self, seed); }
static void vit_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_vit *)self)->dropout_rng, seed);
}
static float vit_forward(void *self, const float *inputs, const int32_t *tokens,
                         const int32_t *labels, int B, int training, int *counted) {
    (void)tokens;
    graft_vit *m = self;
    float loss = graft_vit_forward(m, inputs, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}
static void vit_backward(void *self, float loss_scale) { graft_vit_backward(self, loss_scale); }
static const float *vit_logits(void *self) { return ((graft_vit *)self)->logits; }
static void vit_free(void *self) {
    graft_vit_free(self);
    free(self);
}

graft_status graft_vit_create(graft_model *out, const graft_config *cfg,
                              const graft_model_input *input) {
    static const graft_model_i iface = {.name = "vit",
                                        .head = "heads.head",
                                        .build = vit_build,
                                        .init_weights = vit_init_weights,
                                        .seed_step = vit_seed_step,
                                        .forward = vit_forward,
                                        .backward = vit_backward,
                                        .logits = vit_logits,
                                        .map_name = graft_vit_map_name,
                                        .free = vit_free};
    if (input->channels <= 0 || input->height <= 0 || input->width <= 0) {
        GRAFT_ERROR("model.arch vit needs an image dataset (got %s)",
                    input->channels <= 0 ? "a token dataset" : "images with no pixels");
        return GRAFT_ERR_CONFIG;
    }
    const int classes =
        cfg->model.head_num_classes > 0 ? cfg->model.head_num_classes : input->num_classes;
    if (classes <= 0) {
        GRAFT_ERROR("model.arch vit: no class count (the dataset has none; set "
                    "model.head.num_classes)");
        return GRAFT_ERR_CONFIG;
    }
    /* 0 = ViT-B/16: 12 layers, 12 heads, width 768, MLP 3072 */
    const int C = cfg->model.n_embd > 0 ? cfg->model.n_embd : 768;
    graft_vit_config vc = {.n_layer = cfg->model.n_layer > 0 ? cfg->model.n_layer : 12,
                           .n_head = cfg->model.n_head > 0 ? cfg->model.n_head : 12,
                           .n_embd = C,
                           .mlp_dim = cfg->model.mlp_dim > 0 ? cfg->model.mlp_dim
                                      : C <= INT_MAX / 4     ? 4 * C
                                                             : INT_MAX,
                           .patch_size = cfg->model.patch_size,
                           .channels = input->channels,
                           .height = input->height,
                           .width = input->width,
                           .num_classes = classes,
                           .dropout = (float)cfg->model.dropout};
    graft_vit *m = calloc(1, sizeof *m);
    if (!m) return GRAFT_ERR_NOMEM;
    graft_status st = graft_vit_init(m, &vc);
    if (st != GRAFT_OK) {
        vit_free(m);
        return st;
    }
    out->iface = iface;
    out->self = m;
    out->params = &m->params;
    out->task = GRAFT_TASK_CLASSIFY;
    out->num_outputs = classes;
    return GRAFT_OK;
}
