#include "bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

#define BERT_LN_EPS 1e-12f
#define BERT_INIT_STD 0.02f
#define BERT_MLM_PROB 0.15f
#define BERT_PAD_ID 0 /* Hugging Face's pad_token_id */

/* ---- parameters ---------------------------------------------------------------------- */

/* Hugging Face's names of layer N's parameters, under "bert.encoder.layer.N". */
static const graft_transformer_names layer_names = {.query = "attention.self.query",
                                                    .key = "attention.self.key",
                                                    .value = "attention.self.value",
                                                    .attn_out = "attention.output.dense",
                                                    .attn_ln = "attention.output.LayerNorm",
                                                    .intermediate = "intermediate.dense",
                                                    .output = "output.dense",
                                                    .out_ln = "output.LayerNorm"};

/* The head's two blocks (see head_ranges in bert.h). */
static graft_status add_head(graft_bert *m, graft_params *p) {
    const int C = m->cfg.n_embd;
    const graft_wlayout W = GRAFT_W_OUT_IN;
    graft_param_range *r = m->head_ranges;
    r[0] = graft_param_range_begin(p);
    if (m->cfg.num_classes > 0) {
        GRAFT_TRY(graft_linear_layer_add(&m->pooler, p, "bert.pooler.dense", C, C, 1, W));
        graft_param_range_end(&r[0], p);
        r[1] = graft_param_range_begin(p);
        GRAFT_TRY(
            graft_linear_layer_add(&m->classifier, p, "classifier", C, m->cfg.num_classes, 1, W));
        graft_param_range_end(&r[1], p);
        return GRAFT_OK;
    }
    GRAFT_TRY(
        graft_linear_layer_add(&m->transform, p, "cls.predictions.transform.dense", C, C, 1, W));
    GRAFT_TRY(graft_layernorm_layer_add(&m->transform_ln, p, "cls.predictions.transform.LayerNorm",
                                        C, BERT_LN_EPS));
    graft_param_range_end(&r[0], p);
    r[1] = graft_param_range_begin(p);
    const int64_t shape[1] = {m->cfg.vocab_size};
    m->mlm_bias = graft_params_add(p, "cls.predictions.bias", GRAFT_KIND_PARAM, 1, shape);
    graft_param_range_end(&r[1], p);
    if (m->mlm_bias < 0 ||
        graft_params_add_alias(p, "cls.predictions.decoder.weight", m->word) < 0 ||
        graft_params_add_alias(p, "cls.predictions.decoder.bias", m->mlm_bias) < 0)
        return GRAFT_ERR_INVALID_ARG;
    return GRAFT_OK;
}

graft_status graft_bert_init(graft_bert *m, const graft_bert_config *cfg) {
    memset(m, 0, sizeof *m);
    const graft_bert_config *c = cfg;
    /* as for GPT-2: sizes up to 2^20 keep every derived int (4C, 3C, BT) and shape
     * product in range */
    const int big = 1 << 20;
    if (c->n_layer < 1 || c->n_layer > 1024 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_embd > big / 4 || c->n_embd % c->n_head != 0 || c->vocab_size < 1 ||
        c->vocab_size > 16 * big || c->type_vocab_size < 1 || c->type_vocab_size > big ||
        c->n_positions > big || c->seq_len < 1 || c->seq_len > c->n_positions ||
        c->num_classes < 0 || c->dropout < 0 || c->dropout >= 1 ||
        (c->num_classes == 0 && (c->mask_token_id < 0 || c->mask_token_id >= c->vocab_size))) {
        GRAFT_ERROR("bad BERT config: %d layers, %d heads, width %d, %d positions, vocabulary %d, "
                    "%d token types, seq_len %d, %d classes, mask token %d, dropout %g (layers "
                    "<= 1024, width <= %d, positions and token types <= %d, vocabulary <= %d)",
                    c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size,
                    c->type_vocab_size, c->seq_len, c->num_classes, c->mask_token_id,
                    (double)c->dropout, big / 4, big, 16 * big);
        return GRAFT_ERR_CONFIG;
    }
    m->cfg = *cfg;
    m->cfg.lora = NULL; /* read here only */
    graft_params *p = &m->params;
    graft_params_init(p);
    const int C = c->n_embd;
    const graft_embeddings_config ecfg = {.vocab = c->vocab_size,
                                          .positions = c->n_positions,
                                          .types = c->type_vocab_size,
                                          .C = C,
                                          .padding_idx = BERT_PAD_ID,
                                          .ln_eps = BERT_LN_EPS,
                                          .dropout = c->dropout};
    const graft_embeddings_names enames = {.word = "bert.embeddings.word_embeddings.weight",
                                           .position = "bert.embeddings.position_embeddings.weight",
                                           .token_type =
                                               "bert.embeddings.token_type_embeddings.weight",
                                           .layernorm = "bert.embeddings.LayerNorm"};
    GRAFT_TRY(graft_embeddings_add(&m->emb, p, &ecfg, &enames));
    m->word = m->emb.word;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    m->acts = calloc((size_t)c->n_layer, sizeof *m->acts);
    m->hidden = calloc((size_t)c->n_layer + 1, sizeof *m->hidden);
    if (!m->layers || !m->acts || !m->hidden) return GRAFT_ERR_NOMEM;
    const graft_transformer_config lcfg = {.C = C,
                                           .NH = c->n_head,
                                           .mlp = 4 * C,
                                           .norm = GRAFT_POST_LN,
                                           .layout = GRAFT_W_OUT_IN,
                                           .gelu = GRAFT_GELU_ERF,
                                           .ln_eps = BERT_LN_EPS,
                                           .dropout = c->dropout,
                                           .attn_dropout = c->dropout,
                                           .lora = c->lora};
    for (int l = 0; l < c->n_layer; l++) {
        char prefix[GRAFT_NAME_MAX];
        snprintf(prefix, sizeof prefix, "bert.encoder.layer.%d", l);
        GRAFT_TRY(graft_transformer_add(&m->layers[l], p, &lcfg, prefix, &layer_names));
    }
    return add_head(m, p);
}

/* The lowest of the model's blocks (embeddings, the layers, the head's two) with a
 * trainable parameter; n_layer + 3 when none has one. */
static graft_status lowest_trainable(const graft_bert *m, int *lowest) {
    const int L = m->cfg.n_layer;
    graft_param_range *ranges = malloc((size_t)(L + 3) * sizeof *ranges);
    if (!ranges) return GRAFT_ERR_NOMEM;
    ranges[0] = m->emb.range;
    for (int l = 0; l < L; l++)
        ranges[1 + l] = m->layers[l].range;
    ranges[L + 1] = m->head_ranges[0];
    ranges[L + 2] = m->head_ranges[1];
    *lowest = graft_nn_lowest_trainable(&m->params, ranges, L + 3);
    free(ranges);
    return GRAFT_OK;
}

/* ---- activation memory ---------------------------------------------------------------- */

static int32_t *arena_ints(graft_arena *a, size_t count) {
    return graft_arena_alloc(a, count * sizeof(int32_t));
}

/* Activation layout, identical in the planning and the real pass of the arena. Layer l
 * (block l+1) keeps its own set when it is at or above the lowest trainable block; its
 * input hidden[l] is then kept too. Everything else lives in shared or ping-pong buffers.
 * The last layer and the head work on head_rows rows at most (see select_rows). */
static void plan_activations(graft_bert *m) {
    graft_arena *a = &m->arena;
    const graft_bert_config *c = &m->cfg;
    const int L = c->n_layer, lowest = m->lowest, dropout = c->dropout > 0;
    const int classify = c->num_classes > 0;
    const int Bi = m->max_batch, T = c->seq_len;
    const size_t B = (size_t)Bi, C = (size_t)c->n_embd, BT = B * (size_t)T;
    const size_t head_rows = classify ? B : BT;

    m->ids = arena_ints(a, BT);
    m->type_ids = arena_ints(a, BT);
    m->mlm_labels = arena_ints(a, BT);
    m->pad_mask = arena_ints(a, BT);
    m->rows = arena_ints(a, BT);
    m->row_labels = arena_ints(a, BT);
    m->key_mask = graft_arena_alloc(a, BT);

    memset(&m->shared, 0, sizeof m->shared);
    if (lowest > 1) graft_transformer_plan(&m->layers[0], &m->shared, a, Bi, T, (int)BT, 0);
    for (int l = 0; l < L; l++) {
        if (l + 1 >= lowest)
            graft_transformer_plan(&m->layers[l], &m->acts[l], a, Bi, T,
                                   (int)(l == L - 1 ? head_rows : BT), 1);
        else
            m->acts[l] = m->shared;
    }
    float *ping = NULL, *pong = NULL;
    for (int i = 0; i <= L; i++) {
        if (i < L && i + 1 >= lowest) {
            m->hidden[i] = graft_arena_floats(a, BT * C);
        } else {
            float **spare = i % 2 ? &pong : &ping;
            if (!*spare) *spare = graft_arena_floats(a, BT * C);
            m->hidden[i] = *spare;
        }
    }
    m->last_in = graft_arena_floats(a, head_rows * C);
    /* forward only, the embeddings' sum and dropout mask: layer 0 overwrites hidden[1] */
    graft_embeddings_plan(&m->emb, a, BT, lowest == 0, m->hidden[1]);

    const size_t width = classify ? (size_t)c->num_classes : (size_t)c->vocab_size;
    if (classify) {
        m->pooled = graft_arena_floats(a, B * C);
        m->pool_mask = dropout ? graft_arena_floats(a, B * C) : NULL;
        m->pooled_drop = dropout ? graft_arena_floats(a, B * C) : m->pooled;
    } else {
        m->tr_fc = graft_arena_floats(a, BT * C);
        m->tr_gelu = graft_arena_floats(a, BT * C);
        m->tr_out = graft_arena_floats(a, BT * C);
        m->tr_mean = graft_arena_floats(a, BT);
        m->tr_rstd = graft_arena_floats(a, BT);
    }
    m->logits = graft_arena_floats(a, head_rows * width);
    m->probs = graft_arena_floats(a, head_rows * width);

    graft_transformer_plan_work(&m->layers[0], &m->work, a, Bi, T, lowest <= L, 1);
    m->dq = m->work.wide_b;
    m->dlogits = m->dhead_a = m->dhead_b = m->dh_a = m->dh_b = NULL;
    if (lowest > L + 2) return; /* nothing trainable: forward only */
    m->dlogits = classify ? graft_arena_floats(a, B * width) : m->logits;
    m->dhead_a = graft_arena_floats(a, head_rows * C);
    m->dhead_b = graft_arena_floats(a, head_rows * C);
    if (lowest > L) return;
    m->dh_a = graft_arena_floats(a, BT * C);
    m->dh_b = graft_arena_floats(a, BT * C);
}

graft_status graft_bert_build(graft_bert *m, int max_batch) {
    if (max_batch <= 0) return GRAFT_ERR_INVALID_ARG;
    GRAFT_ASSERT(m->params.finalized);
    m->max_batch = max_batch;
    GRAFT_TRY(lowest_trainable(m, &m->lowest));
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    GRAFT_TRY(graft_arena_commit(&m->arena));
    plan_activations(m);
    return GRAFT_OK;
}

void graft_bert_init_weights(graft_bert *m, uint64_t seed) {
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    graft_params *p = &m->params;
    for (int i = 0; i < p->count; i++) {
        float *v = graft_params_value(p, i);
        size_t n = p->items[i].numel;
        if (p->items[i].ndim == 2) /* every matrix is a linear or embedding weight */
            for (size_t j = 0; j < n; j++)
                v[j] = BERT_INIT_STD * graft_rng_normal(&rng);
        else
            memset(v, 0, n * sizeof(float));
    }
    graft_layernorm_layer_init(&m->emb.ln, p);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        graft_layernorm_layer_init(&m->layers[l].attn_ln, p);
        graft_layernorm_layer_init(&m->layers[l].out_ln, p);
    }
    if (m->cfg.num_classes == 0) graft_layernorm_layer_init(&m->transform_ln, p);
    memset(graft_params_value(p, m->word), 0, (size_t)m->cfg.n_embd * sizeof(float)); /* [PAD] */
    graft_rng_seed(&m->rng, graft_rng_mix(seed, 0xBE27u));
}

void graft_bert_free(graft_bert *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    free(m->layers);
    free(m->acts);
    free(m->hidden);
    memset(m, 0, sizeof *m);
}

/* ---- forward ------------------------------------------------------------------------- */

static const float *value(const graft_bert *m, int index) {
    return graft_params_value(&m->params, index);
}
static float *grad(const graft_bert *m, int index) { return graft_params_grad(&m->params, index); }

/* The rows the head reads, in m->rows[0..R): each sequence's [CLS] token (classification),
 * the labelled positions (masked LM; their labels go to m->row_labels), or every position
 * (masked LM without labels). */
static int select_rows(graft_bert *m, const int32_t *labels, int B) {
    const int T = m->cfg.seq_len, BT = B * T;
    int R = 0;
    for (int r = 0; r < BT; r++) {
        if (m->cfg.num_classes > 0 ? r % T != 0 : labels && labels[r] < 0) continue;
        if (labels && m->cfg.num_classes == 0) m->row_labels[R] = labels[r];
        m->rows[R++] = r;
    }
    return R;
}

static float classifier_forward(graft_bert *m, const int32_t *labels, int B) {
    const int C = m->cfg.n_embd, K = m->cfg.num_classes;
    graft_linear_layer_forward(&m->pooler, &m->params, m->pooled, m->hidden[m->cfg.n_layer], B);
    for (size_t i = 0; i < (size_t)B * C; i++)
        m->pooled[i] = tanhf(m->pooled[i]);
    if (m->dropout_applied)
        graft_dropout_forward(m->pooled_drop, m->pool_mask, m->pooled, (size_t)B * C,
                              m->cfg.dropout, &m->rng);
    const float *x = m->dropout_applied ? m->pooled_drop : m->pooled;
    graft_linear_layer_forward(&m->classifier, &m->params, m->logits, x, B);
    if (!labels) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, labels, B, K, -1, &m->counted);
}

static float mlm_forward(graft_bert *m, int M) {
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    graft_linear_layer_forward(&m->transform, &m->params, m->tr_fc, m->hidden[m->cfg.n_layer], M);
    graft_gelu_forward(m->tr_gelu, m->tr_fc, (size_t)M * C, GRAFT_GELU_ERF);
    graft_layernorm_layer_forward(&m->transform_ln, &m->params, m->tr_out, m->tr_mean, m->tr_rstd,
                                  m->tr_gelu, M);
    graft_linear_forward(m->logits, m->tr_out, value(m, m->word), value(m, m->mlm_bias), M, C, V,
                         GRAFT_W_OUT_IN);
    if (!m->labels) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, m->row_labels, M, V, -1, &m->counted);
}

float graft_bert_forward(graft_bert *m, const int32_t *ids, const int32_t *token_type_ids,
                         const int32_t *attention_mask, const int32_t *labels, int B,
                         int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const graft_params *p = &m->params;
    const int L = m->cfg.n_layer, C = m->cfg.n_embd, T = m->cfg.seq_len;
    const size_t BT = (size_t)B * T;
    m->batch = B;
    m->labels = labels;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    /* the adapters' dropout draws from the same rng, also without model.dropout */
    const int draws = m->dropout_applied || (training && m->layers[0].lora_dropout > 0);
    const int R = m->n_rows = select_rows(m, labels, B);
    if (R == 0) return 0.0f; /* no labelled position: nothing to compute */
    if (ids != m->ids) memcpy(m->ids, ids, BT * sizeof(int32_t));
    if (token_type_ids)
        memcpy(m->type_ids, token_type_ids, BT * sizeof(int32_t));
    else
        memset(m->type_ids, 0, BT * sizeof(int32_t));
    m->has_key_mask = attention_mask != NULL;
    for (size_t r = 0; attention_mask && r < BT; r++)
        m->key_mask[r] = attention_mask[r] != 0;
    m->pass = (graft_transformer_pass){.B = B,
                                       .T = T,
                                       .key_mask = m->has_key_mask ? m->key_mask : NULL,
                                       .R = (int)BT,
                                       .rng = draws ? &m->rng : NULL};
    m->last_pass = m->pass;
    m->last_pass.R = R;
    m->last_pass.rows = m->rows;

    graft_embeddings_forward(&m->emb, p, m->hidden[0], m->ids, m->type_ids, B, T, m->pass.rng);
    for (int l = 0; l < L - 1; l++)
        graft_transformer_forward(&m->layers[l], p, &m->acts[l], &m->work, &m->pass,
                                  m->hidden[l + 1], m->hidden[l], NULL);
    /* the last layer: only the R query rows its head reads */
    const float *x = m->hidden[L - 1];
    if ((size_t)R < BT)
        for (int j = 0; j < R; j++)
            memcpy(m->last_in + (size_t)j * C, x + (size_t)m->rows[j] * C,
                   (size_t)C * sizeof(float));
    graft_transformer_forward(&m->layers[L - 1], p, &m->acts[L - 1], &m->work, &m->last_pass,
                              m->hidden[L], x, (size_t)R < BT ? m->last_in : NULL);
    return m->cfg.num_classes > 0 ? classifier_forward(m, labels, B) : mlm_forward(m, R);
}

/* attention_mask [B, T] for rows padded at the end with pad_id, or NULL without padding. */
static const int32_t *padding_mask(graft_bert *m, const int32_t *tokens, int B) {
    const int T = m->cfg.seq_len, pad = m->cfg.pad_id;
    if (pad < 0) return NULL;
    for (int b = 0; b < B; b++) {
        const int32_t *row = tokens + (size_t)b * T;
        int len = T;
        while (len > 0 && row[len - 1] == pad)
            len--;
        for (int t = 0; t < T; t++)
            m->pad_mask[(size_t)b * T + t] = t < len;
    }
    return m->pad_mask;
}

float graft_bert_forward_tokens(graft_bert *m, const int32_t *tokens, const int32_t *labels, int B,
                                int training) {
    const int32_t *mask = padding_mask(m, tokens, B);
    if (m->cfg.num_classes > 0 || !labels)
        return graft_bert_forward(m, tokens, NULL, mask, labels, B, training);
    const size_t BT = (size_t)B * m->cfg.seq_len;
    graft_rng eval_rng, *rng = &m->rng;
    if (!training) { /* the same masks for the same evaluation batch, whenever it runs */
        uint64_t h = 0x6D6C6Du;
        for (size_t r = 0; r < BT; r++)
            h = graft_rng_mix(h, (uint32_t)tokens[r]);
        graft_rng_seed(&eval_rng, h);
        rng = &eval_rng;
    }
    for (size_t r = 0; r < BT; r++) {
        int32_t token = tokens[r];
        m->ids[r] = token;
        m->mlm_labels[r] = -1;
        if (mask && !mask[r]) continue; /* padding is never predicted */
        if (graft_rng_uniform(rng) >= BERT_MLM_PROB) continue;
        m->mlm_labels[r] = token;
        float u = graft_rng_uniform(rng);
        if (u < 0.8f)
            m->ids[r] = m->cfg.mask_token_id;
        else if (u < 0.9f)
            m->ids[r] = (int32_t)graft_rng_below(rng, (uint64_t)m->cfg.vocab_size);
    }
    return graft_bert_forward(m, m->ids, NULL, mask, m->mlm_labels, B, training);
}

/* ---- backward ------------------------------------------------------------------------ */

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

/* dh [B, C] receives the gradient of the last layer's output rows (the [CLS] tokens) when
 * an encoder stage is trainable, else it is NULL. */
static void classifier_backward(graft_bert *m, float loss_scale, float *dh) {
    const int B = m->batch, C = m->cfg.n_embd, K = m->cfg.num_classes, L = m->cfg.n_layer;
    const size_t n = (size_t)B * C;
    zero(m->dlogits, (size_t)B * K);
    graft_cross_entropy_backward(m->dlogits, m->probs, m->labels, B, K, -1,
                                 loss_scale / (float)m->counted);
    float *dx = NULL;
    if (m->lowest <= L + 1) zero(dx = m->dhead_a, n);
    graft_linear_layer_backward(&m->classifier, &m->params, dx, m->dlogits,
                                m->dropout_applied ? m->pooled_drop : m->pooled, B);
    if (!dx) return;
    float *dpre = m->dhead_b;
    for (size_t i = 0; i < n; i++) { /* dropout, then tanh' = 1 - y^2 */
        float y = m->pooled[i], g = m->dropout_applied ? dx[i] * m->pool_mask[i] : dx[i];
        dpre[i] = g * (1.0f - y * y);
    }
    if (dh) zero(dh, n);
    graft_linear_layer_backward(&m->pooler, &m->params, dh, dpre, m->hidden[L], B);
}

/* dh [M, C]: as for classifier_backward, for the labelled rows. */
static void mlm_backward(graft_bert *m, float loss_scale, float *dh) {
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size, L = m->cfg.n_layer, M = m->n_rows;
    const size_t n = (size_t)M * C;
    float *dlogits = m->dlogits; /* the logits' buffer */
    zero(dlogits, (size_t)M * V);
    graft_cross_entropy_backward(dlogits, m->probs, m->row_labels, M, V, -1,
                                 loss_scale / (float)m->counted);
    float *dout = NULL;
    if (m->lowest <= L + 1) zero(dout = m->dhead_a, n);
    graft_linear_backward(dout, grad(m, m->word), grad(m, m->mlm_bias), dlogits, m->tr_out,
                          value(m, m->word), M, C, V, GRAFT_W_OUT_IN);
    graft_params_grad_ready(&m->params, m->mlm_bias); /* the word embedding: at the bottom */
    if (!dout) return;
    float *dgelu = m->dhead_b, *dfc = m->dhead_a;
    zero(dgelu, n);
    graft_layernorm_layer_backward(&m->transform_ln, &m->params, dgelu, dout, m->tr_gelu,
                                   m->tr_mean, m->tr_rstd, M);
    zero(dfc, n);
    graft_gelu_backward(dfc, dgelu, m->tr_fc, n, GRAFT_GELU_ERF);
    if (dh) zero(dh, n);
    graft_linear_layer_backward(&m->transform, &m->params, dh, dfc, m->hidden[L], M);
}

void graft_bert_backward(graft_bert *m, float loss_scale) {
    const graft_params *p = &m->params;
    const int L = m->cfg.n_layer, R = m->n_rows, BT = m->batch * m->cfg.seq_len;
    if (m->lowest > L + 2 || m->counted == 0) return;
    float *dh = m->lowest <= L ? m->dh_a : NULL, *spare = m->dh_b;
    if (m->cfg.num_classes > 0)
        classifier_backward(m, loss_scale, dh);
    else
        mlm_backward(m, loss_scale, dh);
    for (int l = L - 1; l >= 0 && l + 1 >= m->lowest; l--) {
        const int last = l == L - 1;
        graft_transformer_backward(
            &m->layers[l], p, &m->acts[l], &m->work, last ? &m->last_pass : &m->pass,
            l + 1 > m->lowest ? spare : NULL, dh, m->hidden[l], last && R < BT ? m->last_in : NULL);
        float *t = dh;
        dh = spare;
        spare = t;
    }
    if (m->lowest == 0)
        graft_embeddings_backward(&m->emb, p, dh, m->ids, m->type_ids, m->batch, m->cfg.seq_len,
                                  m->dropout_applied, m->work.dtmp, m->work.dln);
}

/* ---- the model interface --------------------------------------------------------------- */

static graft_status bert_build(void *self, int max_batch) {
    return graft_bert_build(self, max_batch);
}
static void bert_init_weights(void *self, uint64_t seed) { graft_bert_init_weights(self, seed); }
static void bert_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_bert *)self)->rng, seed);
}
static float bert_forward(void *self, const float *inputs, const int32_t *tokens,
                          const int32_t *labels, int B, int training, int *counted) {
    (void)inputs;
    graft_bert *m = self;
    float loss = graft_bert_forward_tokens(m, tokens, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}
static void bert_backward(void *self, float loss_scale) { graft_bert_backward(self, loss_scale); }
static const float *bert_logits(void *self) { return ((graft_bert *)self)->logits; }
static void bert_free(void *self) {
    graft_bert_free(self);
    free(self);
}

/* ---- feature extraction (the feature cache) ------------------------------------------- */

/* Classifiers only. The boundary is the pooler's input (the last layer's [CLS] rows) when
 * the pooler trains, or the classifier's (the pooled rows, before dropout) when only it
 * does. Dropout in the frozen encoder, or masked-LM's random masks, would make the
 * prefix's output change from step to step. */
void graft_bert_split(const graft_bert *m, graft_model_split *out) {
    memset(out, 0, sizeof *out);
    const int L = m->cfg.n_layer, s = m->lowest;
    out->boundary = s;
    if (m->cfg.num_classes == 0)
        snprintf(out->why, sizeof out->why, "masked-LM training masks tokens at random every step");
    else if (s > L + 2)
        snprintf(out->why, sizeof out->why, "nothing trains");
    else if (s == 0)
        snprintf(out->why, sizeof out->why, "the embeddings train: nothing below them is frozen");
    else if (s <= L)
        snprintf(out->why, sizeof out->why,
                 "bert.encoder.layer.%d trains (bert's cache holds the pooler's or the "
                 "classifier's input)",
                 s - 1);
    else if (m->cfg.dropout > 0)
        snprintf(out->why, sizeof out->why,
                 "model.dropout %g drops out in the frozen encoder while training",
                 (double)m->cfg.dropout);
    if (out->why[0]) return;
    out->floats = (size_t)m->cfg.n_embd;
    out->prefix_params = m->head_ranges[s - L - 1].first;
    snprintf(out->where, sizeof out->where, "the input of %s",
             s == L + 1 ? "bert.pooler" : "classifier");
}

void graft_bert_prefix_forward(graft_bert *m, const int32_t *tokens, int B, float *features) {
    const int L = m->cfg.n_layer;
    GRAFT_ASSERT(m->cfg.num_classes > 0 && m->lowest > L && m->lowest <= L + 2);
    (void)graft_bert_forward_tokens(m, tokens, NULL, B, 1);
    memcpy(features, m->lowest == L + 1 ? m->hidden[L] : m->pooled,
           (size_t)B * m->cfg.n_embd * sizeof(float));
}

float graft_bert_forward_features(graft_bert *m, const float *features, const int32_t *labels,
                                  int B, int training) {
    const int L = m->cfg.n_layer, K = m->cfg.num_classes;
    const size_t n = (size_t)B * m->cfg.n_embd;
    GRAFT_ASSERT(B > 0 && B <= m->max_batch && K > 0 && m->lowest > L && m->lowest <= L + 2);
    m->batch = m->n_rows = B;
    m->labels = labels;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
    if (m->lowest == L + 1) {
        memcpy(m->hidden[L], features, n * sizeof(float));
        return classifier_forward(m, labels, B);
    }
    /* classifier_forward from the pooled rows */
    memcpy(m->pooled, features, n * sizeof(float));
    if (m->dropout_applied)
        graft_dropout_forward(m->pooled_drop, m->pool_mask, m->pooled, n, m->cfg.dropout, &m->rng);
    graft_linear_layer_forward(&m->classifier, &m->params, m->logits,
                               m->dropout_applied ? m->pooled_drop : m->pooled, B);
    if (!labels) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, labels, B, K, -1, &m->counted);
}

static void bert_split(void *self, graft_model_split *out) { graft_bert_split(self, out); }
static void bert_prefix_forward(void *self, const float *inputs, const int32_t *tokens, int B,
                                float *features) {
    (void)inputs;
    graft_bert_prefix_forward(self, tokens, B, features);
}
static float bert_forward_features(void *self, const float *features, const int32_t *labels,
                                   int B, int training, int *counted) {
    graft_bert *m = self;
    float loss = graft_bert_forward_features(m, features, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}

/* Older checkpoints carry position_ids / token_type_ids buffers (skipped), TensorFlow-era
 * LayerNorm.gamma/beta names, and bare BertModel files lack the "bert." prefix. */
static const char *bert_map_name(const char *file_name, char *buf, size_t size) {
    if (strcmp(file_name, "bert.embeddings.position_ids") == 0 ||
        strcmp(file_name, "bert.embeddings.token_type_ids") == 0 ||
        strcmp(file_name, "embeddings.position_ids") == 0 ||
        strcmp(file_name, "embeddings.token_type_ids") == 0)
        return NULL;
    int bare = strncmp(file_name, "embeddings.", 11) == 0 ||
               strncmp(file_name, "encoder.", 8) == 0 || strncmp(file_name, "pooler.", 7) == 0;
    size_t len = strlen(file_name);
    const char *suffix = NULL;
    size_t stem = len;
    if (len > 16 && strcmp(file_name + len - 16, ".LayerNorm.gamma") == 0) {
        suffix = "weight";
        stem = len - 5;
    } else if (len > 15 && strcmp(file_name + len - 15, ".LayerNorm.beta") == 0) {
        suffix = "bias";
        stem = len - 4;
    }
    if (!bare && !suffix) return file_name;
    int written = snprintf(buf, size, "%s%.*s%s", bare ? "bert." : "", (int)stem, file_name,
                           suffix ? suffix : "");
    return written >= 0 && (size_t)written < size ? buf : file_name;
}

graft_status graft_bert_create(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input) {
    if (input->channels > 0 || input->seq_len <= 0) {
        GRAFT_ERROR("model.arch bert needs a token dataset (got an image dataset)");
        return GRAFT_ERR_CONFIG;
    }
    graft_bert_config bc = {
        .n_layer = cfg->model.n_layer,
        .n_head = cfg->model.n_head,
        .n_embd = cfg->model.n_embd,
        .n_positions = cfg->model.n_positions,
        .vocab_size = cfg->model.vocab_size ? cfg->model.vocab_size : input->vocab_size,
        .type_vocab_size = cfg->model.type_vocab_size,
        .seq_len = input->seq_len,
        .num_classes =
            cfg->model.head_num_classes > 0 ? cfg->model.head_num_classes : input->num_classes,
        .mask_token_id = cfg->model.mask_token_id >= 0 ? cfg->model.mask_token_id : input->mask_id,
        .pad_id = input->pad_id,
        .dropout = (float)cfg->model.dropout,
        .lora = input->lora};
    if (cfg->model.vocab_size && cfg->model.vocab_size < input->vocab_size) {
        /* larger is fine (a hub model's vocabulary over a smaller tokenizer's ids) */
        GRAFT_ERROR("model.vocab_size %d is smaller than the dataset's vocabulary of %d tokens "
                    "(its ids must fit)",
                    cfg->model.vocab_size, input->vocab_size);
        return GRAFT_ERR_CONFIG;
    }
    if (bc.vocab_size <= 0) {
        GRAFT_ERROR("model.vocab_size: the dataset names no vocabulary size; set model.vocab_size");
        return GRAFT_ERR_CONFIG;
    }
    if (bc.seq_len > bc.n_positions) {
        /* a sequence dataset brings its own length; a token stream is cut at data.seq_len */
        if (input->num_classes > 0)
            GRAFT_ERROR("the dataset's sequences have %d tokens, longer than model.n_positions %d",
                        bc.seq_len, bc.n_positions);
        else
            GRAFT_ERROR("data.seq_len %d is longer than model.n_positions %d", bc.seq_len,
                        bc.n_positions);
        return GRAFT_ERR_CONFIG;
    }
    if (bc.n_head > 0 && bc.n_embd % bc.n_head != 0) { /* n_head < 1: graft_bert_init */
        GRAFT_ERROR("model.n_embd %d is not divisible by model.n_head %d", bc.n_embd, bc.n_head);
        return GRAFT_ERR_CONFIG;
    }
    if (bc.num_classes == 0 && bc.mask_token_id < 0) {
        GRAFT_ERROR("model.mask_token_id: the dataset's tokenizer has no [MASK] token (bytes and "
                    "gpt2 have none): set model.mask_token_id to the id masked tokens become");
        return GRAFT_ERR_CONFIG;
    }
    if (bc.num_classes == 0 && bc.mask_token_id >= bc.vocab_size) {
        GRAFT_ERROR("model.mask_token_id %d is outside the vocabulary of %d tokens",
                    bc.mask_token_id, bc.vocab_size);
        return GRAFT_ERR_CONFIG;
    }
    graft_bert *m = calloc(1, sizeof *m);
    if (!m) return GRAFT_ERR_NOMEM;
    graft_status st = graft_bert_init(m, &bc);
    if (st != GRAFT_OK) {
        bert_free(m);
        return st;
    }
    static const graft_model_i iface = {.name = "bert",
                                        .build = bert_build,
                                        .init_weights = bert_init_weights,
                                        .seed_step = bert_seed_step,
                                        .forward = bert_forward,
                                        .backward = bert_backward,
                                        .logits = bert_logits,
                                        .map_name = bert_map_name,
                                        .split = bert_split,
                                        .prefix_forward = bert_prefix_forward,
                                        .forward_features = bert_forward_features,
                                        .free = bert_free};
    out->iface = iface;
    out->iface.head = bc.num_classes > 0 ? "classifier" : NULL;
    out->self = m;
    out->params = &m->params;
    out->task = bc.num_classes > 0 ? GRAFT_TASK_CLASSIFY : GRAFT_TASK_LANGUAGE;
    out->num_outputs = bc.num_classes > 0 ? bc.num_classes : bc.vocab_size;
    return GRAFT_OK;
}
