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

/* Hugging Face's names of block N's parameters, under "transformer.h.N". */
static const graft_transformer_names block_names = {.attn_ln = "ln_1",
                                                    .qkv_weight = "attn.c_attn.weight",
                                                    .qkv_bias = "attn.c_attn.bias",
                                                    .attn_out = "attn.c_proj",
                                                    .out_ln = "ln_2",
                                                    .intermediate = "mlp.c_fc",
                                                    .output = "mlp.c_proj"};

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
    m->cfg.lora = NULL; /* read here only */
    graft_params_init(&m->params);
    m->blocks = calloc((size_t)cfg->n_layer, sizeof *m->blocks);
    m->acts = calloc((size_t)cfg->n_layer, sizeof *m->acts);
    m->hidden = calloc((size_t)cfg->n_layer + 1, sizeof *m->hidden);
    if (!m->blocks || !m->acts || !m->hidden) return GRAFT_ERR_NOMEM;

    const int C = cfg->n_embd;
    graft_params *p = &m->params;
    const graft_embeddings_config ecfg = {.vocab = cfg->vocab_size,
                                          .positions = cfg->n_positions,
                                          .C = C,
                                          .padding_idx = -1,
                                          .dropout = cfg->dropout};
    const graft_embeddings_names enames = {.word = "transformer.wte.weight",
                                           .position = "transformer.wpe.weight"};
    GRAFT_TRY(graft_embeddings_add(&m->emb, p, &ecfg, &enames));
    m->wte = m->emb.word;
    const graft_transformer_config bcfg = {.C = C,
                                           .NH = cfg->n_head,
                                           .mlp = 4 * C,
                                           .norm = GRAFT_PRE_LN,
                                           .causal = 1,
                                           .packed_qkv = 1,
                                           .layout = GRAFT_W_IN_OUT,
                                           .gelu = GRAFT_GELU_TANH,
                                           .ln_eps = GPT2_LN_EPS,
                                           .dropout = cfg->dropout,
                                           .attn_dropout = cfg->dropout,
                                           .lora = cfg->lora};
    for (int l = 0; l < cfg->n_layer; l++) {
        char prefix[GRAFT_NAME_MAX];
        snprintf(prefix, sizeof prefix, "transformer.h.%d", l);
        GRAFT_TRY(graft_transformer_add(&m->blocks[l], p, &bcfg, prefix, &block_names));
    }
    m->ln_f_range = graft_param_range_begin(p);
    GRAFT_TRY(graft_layernorm_layer_add(&m->ln_f, p, "transformer.ln_f", C, GPT2_LN_EPS));
    graft_param_range_end(&m->ln_f_range, p);
    if (graft_params_add_alias(p, "lm_head.weight", m->wte) < 0) return GRAFT_ERR_INVALID_ARG;
    return GRAFT_OK;
}

/* The lowest of the model's blocks (embeddings, h.0 .. h.L-1, ln_f) with a trainable
 * parameter; n_layer + 2 when none has one. */
static graft_status lowest_trainable(const graft_gpt2 *m, int *lowest) {
    const int L = m->cfg.n_layer;
    graft_param_range *ranges = malloc((size_t)(L + 2) * sizeof *ranges);
    if (!ranges) return GRAFT_ERR_NOMEM;
    ranges[0] = m->emb.range;
    for (int l = 0; l < L; l++)
        ranges[1 + l] = m->blocks[l].range;
    ranges[L + 1] = m->ln_f_range;
    *lowest = graft_nn_lowest_trainable(&m->params, ranges, L + 2);
    free(ranges);
    return GRAFT_OK;
}

/* Activation layout for the current trainable set, identical in the planning and the
 * real pass of the arena. */
static void plan_activations(graft_gpt2 *m) {
    graft_arena *a = &m->arena;
    const graft_gpt2_config *c = &m->cfg;
    const int L = c->n_layer, B = m->max_batch, T = c->seq_len;
    const size_t BT = (size_t)B * T, n = BT * c->n_embd;
    const int has_backward = m->lowest_unit <= L + 1, blocks_backward = m->lowest_unit <= L;
    m->hidden[0] = graft_arena_floats(a, n);
    graft_transformer_acts shared = {0};
    if (m->first_kept > 0) /* frozen blocks below the lowest trainable one */
        graft_transformer_plan(&m->blocks[0], &shared, a, B, T, (int)BT, 0);
    float *spare = NULL; /* the forward-only embeddings' dropout mask */
    if (m->lowest_unit > 0 && c->dropout > 0)
        spare = m->first_kept > 0 ? shared.mask_1 : graft_arena_floats(a, n);
    graft_embeddings_plan(&m->emb, a, BT, m->lowest_unit == 0, spare);
    for (int l = 0; l < L; l++) {
        if (l < m->first_kept) {
            m->acts[l] = shared;
            m->hidden[l + 1] = m->hidden[0];
            continue;
        }
        graft_transformer_plan(&m->blocks[l], &m->acts[l], a, B, T, (int)BT, 1);
        m->hidden[l + 1] = graft_arena_floats(a, n);
    }
    m->ln_f_out = graft_arena_floats(a, n);
    m->ln_f_mean = graft_arena_floats(a, BT);
    m->ln_f_rstd = graft_arena_floats(a, BT);
    m->logits = graft_arena_floats(a, BT * c->vocab_size);
    m->probs = graft_arena_floats(a, BT * c->vocab_size);
    graft_transformer_plan_work(&m->blocks[0], &m->work, a, B, T, blocks_backward, 0);
    m->dres = has_backward ? graft_arena_floats(a, n) : NULL;
    m->dln = blocks_backward ? m->work.dln : has_backward ? graft_arena_floats(a, n) : NULL;
}

graft_status graft_gpt2_build(graft_gpt2 *m, int max_batch) {
    if (max_batch <= 0 || (size_t)max_batch * m->cfg.seq_len > INT_MAX / 4) {
        GRAFT_ERROR("GPT-2: micro-batch of %d sequences of %d tokens is out of range", max_batch,
                    m->cfg.seq_len);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (!m->params.finalized) GRAFT_TRY(graft_params_finalize(&m->params));
    const int L = m->cfg.n_layer;
    m->max_batch = max_batch;
    GRAFT_TRY(lowest_trainable(m, &m->lowest_unit));
    m->first_kept = m->lowest_unit > L ? L : m->lowest_unit == 0 ? 0 : m->lowest_unit - 1;
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
    fill_normal(p, m->emb.word, std, &rng);
    fill_normal(p, m->emb.position, std, &rng);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const graft_transformer *blk = &m->blocks[l];
        graft_layernorm_layer_init(&blk->attn_ln, p);
        init_conv1d(p, &blk->qkv, std, &rng);
        init_conv1d(p, &blk->attn_out, proj_std, &rng);
        graft_layernorm_layer_init(&blk->out_ln, p);
        init_conv1d(p, &blk->intermediate, std, &rng);
        init_conv1d(p, &blk->output, proj_std, &rng);
    }
    graft_layernorm_layer_init(&m->ln_f, p);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_gpt2_free(graft_gpt2 *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    free(m->blocks);
    free(m->acts);
    free(m->hidden);
    memset(m, 0, sizeof *m);
}

/* The state a forward over B sequences starts from; dropout draws from the step's rng
 * with model.dropout, and for the adapters' own dropout also without it. */
static void begin_forward(graft_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                          int training) {
    m->tokens = tokens;
    m->targets = targets;
    m->batch = B;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    const int draws = m->dropout_applied || (training && m->blocks[0].lora_dropout > 0);
    const int T = m->cfg.seq_len;
    m->pass = (graft_transformer_pass){
        .B = B, .T = T, .R = B * T, .rng = draws ? &m->dropout_rng : NULL};
}

/* Blocks first.. on hidden[first], then ln_f, lm_head and the loss. */
static float forward_from_block(graft_gpt2 *m, int first) {
    const graft_params *p = &m->params;
    const int L = m->cfg.n_layer, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const int BT = m->batch * m->cfg.seq_len;
    for (int l = first; l < L; l++)
        graft_transformer_forward(&m->blocks[l], p, &m->acts[l], &m->work, &m->pass,
                                  m->hidden[l + 1], m->hidden[l], NULL);
    graft_layernorm_layer_forward(&m->ln_f, p, m->ln_f_out, m->ln_f_mean, m->ln_f_rstd,
                                  m->hidden[L], BT);
    /* lm_head: logits = ln_f · wte^T (wte is [V, C], nn.Linear's layout) */
    graft_linear_forward(m->logits, m->ln_f_out, graft_params_value(p, m->wte), NULL, BT, C, V,
                         GRAFT_W_OUT_IN);
    if (!m->targets) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, m->targets, BT, V, -1, &m->counted);
}

float graft_gpt2_forward(graft_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                         int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const int T = m->cfg.seq_len, V = m->cfg.vocab_size;
    for (int i = 0; i < B * T; i++)
        GRAFT_ASSERT(tokens[i] >= 0 && tokens[i] < V);
    begin_forward(m, tokens, targets, B, training);
    /* drop(wte[tokens] + wpe[0..T)), then the blocks, ln_f and lm_head */
    graft_embeddings_forward(&m->emb, &m->params, m->hidden[0], tokens, NULL, B, T, m->pass.rng);
    return forward_from_block(m, 0);
}

static float *zeroed(float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
    return x;
}

void graft_gpt2_backward(graft_gpt2 *m, float loss_scale) {
    const int L = m->cfg.n_layer;
    if (m->lowest_unit > L + 1 || !m->targets || m->counted == 0) return;
    const graft_params *p = &m->params;
    const int T = m->cfg.seq_len, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const int B = m->batch, BT = B * T;
    const size_t n = (size_t)BT * C;
    /* the logits are dead now: their buffer takes the loss gradient */
    float *dlogits = zeroed(m->logits, (size_t)BT * V);
    graft_cross_entropy_backward(dlogits, m->probs, m->targets, BT, V, -1,
                                 loss_scale / (float)m->counted);
    /* lm_head: wte's first gradient part; ready once the embedding part is added */
    graft_linear_backward(zeroed(m->dln, n), graft_params_grad(p, m->wte), NULL, dlogits,
                          m->ln_f_out, graft_params_value(p, m->wte), BT, C, V, GRAFT_W_OUT_IN);
    const int below_ln_f = m->lowest_unit <= L;
    graft_layernorm_layer_backward(&m->ln_f, p, below_ln_f ? zeroed(m->dres, n) : NULL, m->dln,
                                   m->hidden[L], m->ln_f_mean, m->ln_f_rstd, BT);
    /* the blocks down to the lowest trainable one, in place on the stream's gradient */
    for (int l = L - 1; l >= 0 && 1 + l >= m->lowest_unit; l--)
        graft_transformer_backward(&m->blocks[l], p, &m->acts[l], &m->work, &m->pass,
                                   1 + l > m->lowest_unit ? m->dres : NULL, m->dres, m->hidden[l],
                                   NULL);
    if (m->lowest_unit == 0)
        graft_embeddings_backward(&m->emb, p, m->dres, m->tokens, NULL, B, T, m->dropout_applied,
                                  m->dln, NULL);
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

/* ---- feature extraction (the feature cache) ------------------------------------------- */

/* The boundary is the residual stream entering the lowest trainable unit: a block's input
 * or ln_f's (T x C floats a window). The tied lm_head is the word embedding, at the bottom:
 * training it leaves nothing frozen below. Dropout (after the embeddings and in every
 * block) would make the prefix's output change from step to step. */
void graft_gpt2_split(const graft_gpt2 *m, graft_model_split *out) {
    memset(out, 0, sizeof *out);
    const int L = m->cfg.n_layer, s = m->lowest_unit;
    out->boundary = s;
    if (s == 0)
        snprintf(out->why, sizeof out->why,
                 "the embeddings (wte, also the tied lm_head) train: nothing below is frozen");
    else if (s > L + 1)
        snprintf(out->why, sizeof out->why, "nothing trains");
    else if (m->cfg.dropout > 0)
        snprintf(out->why, sizeof out->why,
                 "model.dropout %g drops out in the frozen layers while training",
                 (double)m->cfg.dropout);
    if (out->why[0]) return;
    out->floats = (size_t)m->cfg.seq_len * m->cfg.n_embd;
    out->prefix_params = s <= L ? m->blocks[s - 1].range.first : m->ln_f_range.first;
    if (s <= L)
        snprintf(out->where, sizeof out->where, "the input of transformer.h.%d", s - 1);
    else
        snprintf(out->where, sizeof out->where, "the input of transformer.ln_f");
}

void graft_gpt2_prefix_forward(graft_gpt2 *m, const int32_t *tokens, int B, float *features) {
    const int s = m->lowest_unit, T = m->cfg.seq_len;
    GRAFT_ASSERT(B > 0 && B <= m->max_batch && s >= 1 && s <= m->cfg.n_layer + 1);
    graft_transformer_pass pass = {.B = B, .T = T, .R = B * T};
    graft_embeddings_forward(&m->emb, &m->params, m->hidden[0], tokens, NULL, B, T, NULL);
    for (int l = 0; l < s - 1; l++)
        graft_transformer_forward(&m->blocks[l], &m->params, &m->acts[l], &m->work, &pass,
                                  m->hidden[l + 1], m->hidden[l], NULL);
    memcpy(features, m->hidden[s - 1], (size_t)B * T * m->cfg.n_embd * sizeof(float));
}

float graft_gpt2_forward_features(graft_gpt2 *m, const float *features, const int32_t *targets,
                                  int B, int training) {
    const int s = m->lowest_unit, BT = B * m->cfg.seq_len;
    GRAFT_ASSERT(B > 0 && B <= m->max_batch && s >= 1 && s <= m->cfg.n_layer + 1);
    begin_forward(m, NULL, targets, B, training); /* no tokens: the embeddings do not train */
    memcpy(m->hidden[s - 1], features, (size_t)BT * m->cfg.n_embd * sizeof(float));
    return forward_from_block(m, s - 1); /* graft_gpt2_forward from the boundary up */
}

static void gpt2_split(void *self, graft_model_split *out) { graft_gpt2_split(self, out); }
static void gpt2_prefix_forward(void *self, const float *inputs, const int32_t *tokens, int B,
                                float *features) {
    (void)inputs;
    graft_gpt2_prefix_forward(self, tokens, B, features);
}
static float gpt2_forward_features(void *self, const float *features, const int32_t *labels,
                                   int B, int training, int *counted) {
    graft_gpt2 *m = self;
    float loss = graft_gpt2_forward_features(m, features, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}

graft_status graft_gpt2_create(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input) {
    graft_config gpt2 = *cfg; /* shallow, read-only: only the architecture differs */
    gpt2.model.arch = "gpt2";
    return graft_model_create(out, &gpt2, input);
}

graft_status graft_gpt2_create_sized(graft_model *out, const graft_config *cfg,
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
                                        .split = gpt2_split,
                                        .prefix_forward = gpt2_prefix_forward,
                                        .forward_features = gpt2_forward_features,
                                        .free = gpt2_free};
    if (input->channels > 0 || input->vocab_size <= 0) {
        GRAFT_ERROR("model.arch gpt2 needs a token dataset (got an image dataset)");
        return GRAFT_ERR_CONFIG;
    }
    const int want_vocab = cfg->model.vocab_size;
    if (want_vocab > 0 && want_vocab < input->vocab_size) { /* larger: ids still fit */
        GRAFT_ERROR("model.vocab_size %d is smaller than the dataset's vocabulary of %d tokens "
                    "(its ids must fit)",
                    want_vocab, input->vocab_size);
        return GRAFT_ERR_CONFIG;
    }
    graft_gpt2_config gc = {.n_layer = cfg->model.n_layer,
                            .n_head = cfg->model.n_head,
                            .n_embd = cfg->model.n_embd,
                            .n_positions = cfg->model.n_positions,
                            .vocab_size = want_vocab > 0 ? want_vocab : input->vocab_size,
                            .seq_len = input->seq_len,
                            .dropout = (float)cfg->model.dropout,
                            .lora = input->lora};
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
