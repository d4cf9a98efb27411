#include "vit.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

#define VIT_LN_EPS 1e-6f

/* torchvision's names of encoder layer N's parameters, under
 * "encoder.layers.encoder_layer_N". */
static const graft_transformer_names block_names = {.attn_ln = "ln_1",
                                                    .qkv_weight = "self_attention.in_proj_weight",
                                                    .qkv_bias = "self_attention.in_proj_bias",
                                                    .attn_out = "self_attention.out_proj",
                                                    .out_ln = "ln_2",
                                                    .intermediate = "mlp.0",
                                                    .output = "mlp.3"};

/* Backward walks "units", the parameter ranges in forward order: 0 = the embedding, then
 * each encoder layer's sub-layers (a pre-LN block registers them in the order of their
 * roles: ln_1, in_proj, out_proj, ln_2, mlp.0, mlp.3), then encoder.ln and heads.head.
 * The lowest unit with a trainable parameter is where backward stops. */
static int layer_unit(int l) { return 1 + GRAFT_TF_SUBLAYERS * l; }
static int ln_unit(const graft_vit *m) { return layer_unit(m->cfg.n_layer); }
static int head_unit(const graft_vit *m) { return ln_unit(m) + 1; }

/* ---- parameters --------------------------------------------------------------------- */

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
    m->cfg.lora = NULL; /* read here only */
    const int P = cfg->patch_size, C = cfg->n_embd, L = cfg->n_layer;
    m->seq_len = 1 + (cfg->height / P) * (cfg->width / P);
    m->patch_floats = cfg->channels * P * P;
    m->n_units = layer_unit(L) + 2;
    graft_params_init(&m->params);
    m->blocks = calloc((size_t)L, sizeof *m->blocks);
    m->acts = calloc((size_t)L, sizeof *m->acts);
    m->units = calloc((size_t)m->n_units, sizeof *m->units);
    if (!m->blocks || !m->acts || !m->units) return GRAFT_ERR_NOMEM;

    graft_params *p = &m->params;
    int64_t token_shape[3] = {1, 1, C}, pos_shape[3] = {1, m->seq_len, C};
    m->units[0] = graft_param_range_begin(p);
    m->class_token = graft_params_add(p, "class_token", GRAFT_KIND_PARAM, 3, token_shape);
    if (m->class_token < 0) return GRAFT_ERR_INVALID_ARG;
    /* conv_proj [C, in_ch, P, P]: a linear map of flattened patches */
    const int64_t conv_shape[4] = {C, cfg->channels, P, P};
    GRAFT_TRY(add_linear(&m->conv_proj, p, "conv_proj.weight", "conv_proj.bias", m->patch_floats, C,
                         4, conv_shape));
    m->pos_embedding = graft_params_add(p, "encoder.pos_embedding", GRAFT_KIND_PARAM, 3, pos_shape);
    if (m->pos_embedding < 0) return GRAFT_ERR_INVALID_ARG;
    graft_param_range_end(&m->units[0], p);
    const graft_transformer_config bcfg = {.C = C,
                                           .NH = cfg->n_head,
                                           .mlp = cfg->mlp_dim,
                                           .norm = GRAFT_PRE_LN,
                                           .packed_qkv = 1,
                                           .layout = GRAFT_W_OUT_IN,
                                           .gelu = GRAFT_GELU_ERF,
                                           .ln_eps = VIT_LN_EPS,
                                           .dropout = cfg->dropout,
                                           .attn_dropout = cfg->dropout,
                                           .mlp_dropout = cfg->dropout,
                                           .lora = cfg->lora};
    for (int l = 0; l < L; l++) {
        char prefix[GRAFT_NAME_MAX];
        snprintf(prefix, sizeof prefix, "encoder.layers.encoder_layer_%d", l);
        GRAFT_TRY(graft_transformer_add(&m->blocks[l], p, &bcfg, prefix, &block_names));
        for (int s = 0; s < GRAFT_TF_SUBLAYERS; s++)
            m->units[layer_unit(l) + s] = m->blocks[l].sub[s];
    }
    graft_layernorm_layer ln;
    m->units[ln_unit(m)] = graft_param_range_begin(p);
    GRAFT_TRY(graft_layernorm_layer_add(&ln, p, "encoder.ln", C, VIT_LN_EPS));
    graft_param_range_end(&m->units[ln_unit(m)], p);
    m->ln_w = ln.weight;
    m->ln_b = ln.bias;
    m->units[head_unit(m)] = graft_param_range_begin(p);
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
    const int B = m->max_batch, S = m->seq_len, lowest = m->lowest_unit;
    const size_t BS = (size_t)B * S, C = (size_t)c->n_embd, n = BS * C, K = (size_t)c->num_classes;
    const int layers_backward = lowest < ln_unit(m);
    m->patches = graft_arena_floats(a, (size_t)B * (S - 1) * (size_t)m->patch_floats);
    m->embd = graft_arena_floats(a, n);
    graft_transformer_acts shared = {0};
    if (m->first_kept > 0) /* frozen layers below the lowest trainable one */
        graft_transformer_plan(&m->blocks[0], &shared, a, B, S, (int)BS, 0);
    /* a dropout mask no backward reads goes into the shared set's */
    m->embd_mask = NULL;
    if (c->dropout > 0)
        m->embd_mask = lowest > 0 && m->first_kept > 0 ? shared.mask_1 : graft_arena_floats(a, n);
    for (int l = 0; l < c->n_layer; l++) {
        if (l < m->first_kept) {
            m->acts[l] = (graft_vit_acts){.block = shared, .res3 = m->embd};
            continue;
        }
        graft_transformer_plan(&m->blocks[l], &m->acts[l].block, a, B, S, (int)BS, 1);
        m->acts[l].res3 = graft_arena_floats(a, n);
    }
    m->cls = graft_arena_floats(a, (size_t)B * C);
    m->cls_ln = graft_arena_floats(a, (size_t)B * C);
    m->cls_mean = graft_arena_floats(a, (size_t)B);
    m->cls_rstd = graft_arena_floats(a, (size_t)B);
    m->logits = graft_arena_floats(a, (size_t)B * K);
    m->probs = graft_arena_floats(a, (size_t)B * K);
    m->dlogits = graft_arena_floats(a, (size_t)B * K);
    graft_transformer_plan_work(&m->blocks[0], &m->work, a, B, S, layers_backward, 0);
    m->dcls_ln = lowest < head_unit(m) ? graft_arena_floats(a, (size_t)B * C) : NULL;
    m->dcls = layers_backward ? graft_arena_floats(a, (size_t)B * C) : NULL;
    m->dres = layers_backward ? graft_arena_floats(a, n) : NULL;
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
                                                 : (m->lowest_unit - 1) / GRAFT_TF_SUBLAYERS;
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

void graft_vit_init_weights(graft_vit *m, uint64_t seed) {
    const graft_params *p = &m->params;
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    fill(p, m->class_token, 0.0f);
    fill_trunc_normal(p, m->conv_proj.weight, sqrtf(1.0f / (float)m->patch_floats), &rng);
    fill(p, m->conv_proj.bias, 0.0f);
    fill_normal(p, m->pos_embedding, 0.02f, &rng);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const graft_transformer *blk = &m->blocks[l];
        graft_layernorm_layer_init(&blk->attn_ln, p);
        fill_uniform(p, blk->qkv.weight, xavier_bound(&blk->qkv), &rng);
        fill(p, blk->qkv.bias, 0.0f);
        /* out_proj keeps nn.Linear's weight init; MultiheadAttention zeroes its bias */
        fill_uniform(p, blk->attn_out.weight, 1.0f / sqrtf((float)m->cfg.n_embd), &rng);
        fill(p, blk->attn_out.bias, 0.0f);
        graft_layernorm_layer_init(&blk->out_ln, p);
        const graft_linear_layer *mlp[2] = {&blk->intermediate, &blk->output};
        for (int i = 0; i < 2; i++) {
            fill_uniform(p, mlp[i]->weight, xavier_bound(mlp[i]), &rng);
            fill_normal(p, mlp[i]->bias, 1e-6f, &rng);
        }
    }
    fill(p, m->ln_w, 1.0f);
    fill(p, m->ln_b, 0.0f);
    fill(p, m->head.weight, 0.0f);
    fill(p, m->head.bias, 0.0f);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_vit_free(graft_vit *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    free(m->blocks);
    free(m->acts);
    free(m->units);
    memset(m, 0, sizeof *m);
}

/* ---- forward ------------------------------------------------------------------------ */

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

float graft_vit_forward(graft_vit *m, const float *x, const int32_t *targets, int B, int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const graft_params *p = &m->params;
    const int L = m->cfg.n_layer, S = m->seq_len, C = m->cfg.n_embd, K = m->cfg.num_classes;
    m->targets = targets;
    m->batch = B;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    /* the adapters' dropout draws from the same rng, also without model.dropout */
    const int draws = m->dropout_applied || (training && m->blocks[0].lora_dropout > 0);
    m->pass =
        (graft_transformer_pass){.B = B, .T = S, .R = B * S, .rng = draws ? &m->dropout_rng : NULL};
    /* embd [B, S, C]: per image the class token, then the patch embedding (conv_proj as
     * one GEMM over the patches), + pos_embedding; then dropout */
    patchify(m->patches, x, &m->cfg, B);
    for (int b = 0; b < B; b++) {
        float *row = m->embd + (size_t)b * S * C;
        memcpy(row, graft_params_value(p, m->class_token), (size_t)C * sizeof(float));
        graft_linear_layer_forward(&m->conv_proj, p, row + C,
                                   m->patches + (size_t)b * (S - 1) * m->patch_floats, S - 1);
        graft_residual_forward(row, row, graft_params_value(p, m->pos_embedding), (size_t)S * C);
    }
    if (m->dropout_applied)
        graft_dropout_forward(m->embd, m->embd_mask, m->embd, (size_t)B * S * C, m->cfg.dropout,
                              &m->dropout_rng);
    /* the encoder blocks */
    for (int l = 0; l < L; l++)
        graft_transformer_forward(&m->blocks[l], p, &m->acts[l].block, &m->work, &m->pass,
                                  m->acts[l].res3, layer_input(m, l), NULL);
    /* encoder.ln and the head, on the class token rows only: no other row reaches the
     * logits */
    const float *top = layer_input(m, L);
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

/* The embedding from the gradient of its output in m->dres: pos_embedding, conv_proj
 * (only when trainable: its input is the images) and the class token. */
static void embed_backward(graft_vit *m) {
    const graft_params *p = &m->params;
    const int B = m->batch, S = m->seq_len, C = m->cfg.n_embd, K = m->patch_floats;
    const size_t n = (size_t)B * S * C;
    const float *demb = m->dres;
    if (m->dropout_applied) {
        graft_dropout_backward(zeroed(m->work.dln, n), m->dres, m->embd_mask, n);
        demb = m->work.dln;
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
    /* the encoder blocks down to the lowest trainable one, in place on the stream's
     * gradient (a block's input gradient only when something below it trains), then the
     * embedding */
    for (int l = m->cfg.n_layer - 1; l >= m->first_kept; l--)
        graft_transformer_backward(&m->blocks[l], p, &m->acts[l].block, &m->work, &m->pass,
                                   m->lowest_unit < layer_unit(l) ? m->dres : NULL, m->dres,
                                   layer_input(m, l), NULL);
    if (m->lowest_unit == 0) embed_backward(m);
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
    const int C = cfg->model.n_embd;
    graft_vit_config vc = {.n_layer = cfg->model.n_layer,
                           .n_head = cfg->model.n_head,
                           .n_embd = C,
                           /* model.mlp_dim 0: 4 n_embd, as in every ViT */
                           .mlp_dim = cfg->model.mlp_dim > 0 ? cfg->model.mlp_dim
                                      : C <= INT_MAX / 4     ? 4 * C
                                                             : INT_MAX,
                           .patch_size = cfg->model.patch_size,
                           .channels = input->channels,
                           .height = input->height,
                           .width = input->width,
                           .num_classes = classes,
                           .dropout = (float)cfg->model.dropout,
                           .lora = input->lora};
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
