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

static int add_tensor(graft_params *p, const char *name, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    return graft_params_add(p, name, GRAFT_KIND_PARAM, cols > 0 ? 2 : 1, shape);
}

static graft_status add_ln(graft_params *p, const char *prefix, int C, graft_bert_ln *ln) {
    char name[GRAFT_NAME_MAX + 8]; /* a longer name is refused by graft_params_add */
    snprintf(name, sizeof name, "%s.weight", prefix);
    ln->weight = add_tensor(p, name, C, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    ln->bias = add_tensor(p, name, C, 0);
    return ln->weight < 0 || ln->bias < 0 ? GRAFT_ERR_INVALID_ARG : GRAFT_OK;
}

static const char *layer_name(char *buf, int index, const char *suffix) {
    snprintf(buf, GRAFT_NAME_MAX, "bert.encoder.layer.%d.%s", index, suffix);
    return buf;
}

static graft_status add_linear(graft_linear_layer *l, graft_params *p, int index,
                               const char *suffix, int in, int out) {
    char name[GRAFT_NAME_MAX];
    return graft_linear_layer_add(l, p, layer_name(name, index, suffix), in, out, 1,
                                  GRAFT_W_OUT_IN);
}

static graft_status add_layer(graft_bert_layer *l, graft_params *p, int i, int C) {
    char name[GRAFT_NAME_MAX];
    GRAFT_TRY(add_linear(&l->query, p, i, "attention.self.query", C, C));
    GRAFT_TRY(add_linear(&l->key, p, i, "attention.self.key", C, C));
    GRAFT_TRY(add_linear(&l->value, p, i, "attention.self.value", C, C));
    GRAFT_TRY(add_linear(&l->attn_dense, p, i, "attention.output.dense", C, C));
    GRAFT_TRY(add_ln(p, layer_name(name, i, "attention.output.LayerNorm"), C, &l->attn_ln));
    GRAFT_TRY(add_linear(&l->intermediate, p, i, "intermediate.dense", C, 4 * C));
    GRAFT_TRY(add_linear(&l->output, p, i, "output.dense", 4 * C, C));
    return add_ln(p, layer_name(name, i, "output.LayerNorm"), C, &l->out_ln);
}

graft_status graft_bert_init(graft_bert *m, const graft_bert_config *cfg) {
    memset(m, 0, sizeof *m);
    const graft_bert_config *c = cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head != 0 ||
        c->vocab_size < 1 || c->type_vocab_size < 1 || c->seq_len < 1 ||
        c->seq_len > c->n_positions || c->num_classes < 0 || c->dropout < 0 || c->dropout >= 1 ||
        (c->num_classes == 0 && (c->mask_token_id < 0 || c->mask_token_id >= c->vocab_size))) {
        GRAFT_ERROR("bad BERT config: %d layers, %d heads, width %d, %d positions, vocabulary %d, "
                    "%d token types, seq_len %d, %d classes, mask token %d, dropout %g",
                    c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size,
                    c->type_vocab_size, c->seq_len, c->num_classes, c->mask_token_id,
                    (double)c->dropout);
        return GRAFT_ERR_CONFIG;
    }
    m->cfg = *cfg;
    graft_params *p = &m->params;
    graft_params_init(p);
    const int C = c->n_embd;
    m->word = add_tensor(p, "bert.embeddings.word_embeddings.weight", c->vocab_size, C);
    m->position = add_tensor(p, "bert.embeddings.position_embeddings.weight", c->n_positions, C);
    m->token_type =
        add_tensor(p, "bert.embeddings.token_type_embeddings.weight", c->type_vocab_size, C);
    if (m->word < 0 || m->position < 0 || m->token_type < 0) return GRAFT_ERR_INVALID_ARG;
    GRAFT_TRY(add_ln(p, "bert.embeddings.LayerNorm", C, &m->emb_ln));
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    m->acts = calloc((size_t)c->n_layer, sizeof *m->acts);
    m->hidden = calloc((size_t)c->n_layer + 1, sizeof *m->hidden);
    if (!m->layers || !m->acts || !m->hidden) return GRAFT_ERR_NOMEM;
    for (int l = 0; l < c->n_layer; l++)
        GRAFT_TRY(add_layer(&m->layers[l], p, l, C));
    const graft_wlayout W = GRAFT_W_OUT_IN;
    if (c->num_classes > 0) {
        GRAFT_TRY(graft_linear_layer_add(&m->pooler, p, "bert.pooler.dense", C, C, 1, W));
        GRAFT_TRY(graft_linear_layer_add(&m->classifier, p, "classifier", C, c->num_classes, 1, W));
        return GRAFT_OK;
    }
    GRAFT_TRY(
        graft_linear_layer_add(&m->transform, p, "cls.predictions.transform.dense", C, C, 1, W));
    GRAFT_TRY(add_ln(p, "cls.predictions.transform.LayerNorm", C, &m->transform_ln));
    m->mlm_bias = add_tensor(p, "cls.predictions.bias", c->vocab_size, 0);
    if (m->mlm_bias < 0 ||
        graft_params_add_alias(p, "cls.predictions.decoder.weight", m->word) < 0 ||
        graft_params_add_alias(p, "cls.predictions.decoder.bias", m->mlm_bias) < 0)
        return GRAFT_ERR_INVALID_ARG;
    return GRAFT_OK;
}

static int trainable(const graft_params *p, int index) { return p->items[index].trainable; }

static int ln_trainable(const graft_params *p, graft_bert_ln ln) {
    return trainable(p, ln.weight) || trainable(p, ln.bias);
}

/* Stages, bottom up: 0 embeddings, 1..L the layers, L+1 the pooler (MLM: transform),
 * L+2 the classifier (MLM: decoder, whose weight is the word embedding). */
static int stage_trainable(const graft_bert *m, int stage) {
    const graft_params *p = &m->params;
    const int L = m->cfg.n_layer;
    if (stage == 0)
        return trainable(p, m->word) || trainable(p, m->position) || trainable(p, m->token_type) ||
               ln_trainable(p, m->emb_ln);
    if (stage <= L) {
        const graft_bert_layer *l = &m->layers[stage - 1];
        return graft_linear_layer_trainable(&l->query, p) ||
               graft_linear_layer_trainable(&l->key, p) ||
               graft_linear_layer_trainable(&l->value, p) ||
               graft_linear_layer_trainable(&l->attn_dense, p) || ln_trainable(p, l->attn_ln) ||
               graft_linear_layer_trainable(&l->intermediate, p) ||
               graft_linear_layer_trainable(&l->output, p) || ln_trainable(p, l->out_ln);
    }
    if (m->cfg.num_classes > 0)
        return graft_linear_layer_trainable(stage == L + 1 ? &m->pooler : &m->classifier, p);
    if (stage == L + 1)
        return graft_linear_layer_trainable(&m->transform, p) || ln_trainable(p, m->transform_ln);
    return trainable(p, m->mlm_bias) || trainable(p, m->word);
}

/* ---- activation memory ---------------------------------------------------------------- */

/* One layer's activations for `rows` query rows (keys and values cover all BT rows).
 * keep_words: of attention dropout keep bits per query row (0: none kept). */
static void plan_layer_acts(graft_arena *a, graft_bert_acts *s, size_t rows, size_t BT, size_t C,
                            size_t heads_keys, int dropout, size_t keep_words) {
    s->q = graft_arena_floats(a, rows * C);
    s->k = graft_arena_floats(a, BT * C);
    s->v = graft_arena_floats(a, BT * C);
    s->probs = graft_arena_floats(a, rows * heads_keys);
    s->keep = keep_words ? graft_arena_alloc(a, rows * keep_words * sizeof(uint64_t)) : NULL;
    s->att = graft_arena_floats(a, rows * C);
    s->res1 = graft_arena_floats(a, rows * C);
    s->mask1 = dropout ? graft_arena_floats(a, rows * C) : NULL;
    s->mean1 = graft_arena_floats(a, rows);
    s->rstd1 = graft_arena_floats(a, rows);
    s->h1 = graft_arena_floats(a, rows * C);
    s->fc = graft_arena_floats(a, rows * 4 * C);
    s->fc_gelu = graft_arena_floats(a, rows * 4 * C);
    s->res2 = graft_arena_floats(a, rows * C);
    s->mask2 = dropout ? graft_arena_floats(a, rows * C) : NULL;
    s->mean2 = graft_arena_floats(a, rows);
    s->rstd2 = graft_arena_floats(a, rows);
}

static int32_t *arena_ints(graft_arena *a, size_t count) {
    return graft_arena_alloc(a, count * sizeof(int32_t));
}

/* Activation layout, identical in the planning and the real pass of the arena. Layer l
 * (stage l+1) keeps its own set when it is at or above the lowest trainable stage; its
 * input hidden[l] is then kept too. Everything else lives in shared or ping-pong buffers.
 * The last layer and the head work on head_rows rows at most (see select_rows). */
static void plan_activations(graft_bert *m) {
    graft_arena *a = &m->arena;
    const graft_bert_config *c = &m->cfg;
    const int L = c->n_layer, lowest = m->lowest, dropout = c->dropout > 0;
    const int classify = c->num_classes > 0;
    const size_t B = (size_t)m->max_batch, C = (size_t)c->n_embd, BT = B * (size_t)c->seq_len;
    const size_t heads_keys = (size_t)c->n_head * (size_t)c->seq_len;
    const size_t head_rows = classify ? B : BT;
    /* the attention dropout's keep bits, for the layers backward passes through */
    const size_t keep_words =
        dropout ? (size_t)c->n_head * graft_attention_keep_words(c->seq_len) : 0;

    m->ids = arena_ints(a, BT);
    m->type_ids = arena_ints(a, BT);
    m->pos_ids = arena_ints(a, BT);
    m->mlm_labels = arena_ints(a, BT);
    m->pad_mask = arena_ints(a, BT);
    m->rows = arena_ints(a, BT);
    m->row_labels = arena_ints(a, BT);
    m->key_mask = graft_arena_alloc(a, BT);

    memset(&m->shared, 0, sizeof m->shared);
    if (lowest > 1) plan_layer_acts(a, &m->shared, BT, BT, C, heads_keys, dropout, 0);
    for (int l = 0; l < L; l++) {
        if (l + 1 >= lowest)
            plan_layer_acts(a, &m->acts[l], l == L - 1 ? head_rows : BT, BT, C, heads_keys, dropout,
                            keep_words);
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
    if (lowest == 0) {
        m->emb_sum = graft_arena_floats(a, BT * C);
        m->emb_mean = graft_arena_floats(a, BT);
        m->emb_rstd = graft_arena_floats(a, BT);
        m->emb_mask = dropout ? graft_arena_floats(a, BT * C) : NULL;
    } else { /* forward only: layer 0 overwrites hidden[1] and its dropout masks later */
        m->emb_sum = m->hidden[1];
        m->emb_mean = graft_arena_floats(a, BT);
        m->emb_rstd = graft_arena_floats(a, BT);
        m->emb_mask = !dropout ? NULL : L > 1 ? m->acts[0].mask1 : graft_arena_floats(a, BT * C);
    }

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

    /* the attention ops' scratch (the rows op's is the larger) */
    m->att_scratch = dropout || lowest <= L
                         ? graft_arena_floats(a, graft_attention_rows_scratch_floats(c->seq_len))
                         : NULL;
    m->dlogits = m->dhead_a = m->dhead_b = m->dh_a = m->dh_b = m->dh1 = m->dtmp = NULL;
    m->datt = m->dq = m->dk = m->dv = m->dfc_gelu = m->dfc = NULL;
    if (lowest > L + 2) return; /* nothing trainable: forward only */
    m->dlogits = classify ? graft_arena_floats(a, B * width) : m->logits;
    m->dhead_a = graft_arena_floats(a, head_rows * C);
    m->dhead_b = graft_arena_floats(a, head_rows * C);
    if (lowest > L) return;
    m->dh_a = graft_arena_floats(a, BT * C);
    m->dh_b = graft_arena_floats(a, BT * C);
    m->dh1 = graft_arena_floats(a, BT * C);
    m->dtmp = dropout ? graft_arena_floats(a, BT * C) : NULL;
    m->datt = graft_arena_floats(a, BT * C);
    m->dq = graft_arena_floats(a, BT * C);
    m->dk = graft_arena_floats(a, BT * C);
    m->dv = graft_arena_floats(a, BT * C);
    m->dfc_gelu = graft_arena_floats(a, BT * 4 * C);
    m->dfc = graft_arena_floats(a, BT * 4 * C);
}

graft_status graft_bert_build(graft_bert *m, int max_batch) {
    if (max_batch <= 0) return GRAFT_ERR_INVALID_ARG;
    GRAFT_ASSERT(m->params.finalized);
    const int L = m->cfg.n_layer;
    m->max_batch = max_batch;
    m->lowest = L + 3;
    for (int s = 0; s <= L + 2; s++)
        if (stage_trainable(m, s)) {
            m->lowest = s;
            break;
        }
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    GRAFT_TRY(graft_arena_commit(&m->arena));
    plan_activations(m);
    const int T = m->cfg.seq_len;
    for (size_t r = 0; r < (size_t)max_batch * T; r++)
        m->pos_ids[r] = (int32_t)(r % (size_t)T);
    return GRAFT_OK;
}

static void set_ones(graft_bert *m, graft_bert_ln ln) {
    float *w = graft_params_value(&m->params, ln.weight);
    for (int c = 0; c < m->cfg.n_embd; c++)
        w[c] = 1.0f;
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
    set_ones(m, m->emb_ln);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        set_ones(m, m->layers[l].attn_ln);
        set_ones(m, m->layers[l].out_ln);
    }
    if (m->cfg.num_classes == 0) set_ones(m, m->transform_ln);
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

static void layernorm_forward(const graft_bert *m, graft_bert_ln ln, float *out, float *mean,
                              float *rstd, const float *inp, int rows) {
    graft_layernorm_forward(out, mean, rstd, inp, value(m, ln.weight), value(m, ln.bias), rows,
                            m->cfg.n_embd, BERT_LN_EPS);
}

static void embeddings_forward(graft_bert *m, int B) {
    const int T = m->cfg.seq_len, C = m->cfg.n_embd;
    const size_t BT = (size_t)B * T;
    const float *word = value(m, m->word), *pos = value(m, m->position);
    const float *type = value(m, m->token_type);
    for (size_t r = 0; r < BT; r++) {
        float *x = m->emb_sum + r * C;
        const float *w = word + (size_t)m->ids[r] * C, *ty = type + (size_t)m->type_ids[r] * C;
        const float *ps = pos + (size_t)m->pos_ids[r] * C;
        for (int c = 0; c < C; c++)
            x[c] = (w[c] + ty[c]) + ps[c]; /* Hugging Face's order */
    }
    layernorm_forward(m, m->emb_ln, m->hidden[0], m->emb_mean, m->emb_rstd, m->emb_sum, (int)BT);
    if (m->dropout_applied)
        graft_dropout_forward(m->hidden[0], m->emb_mask, m->hidden[0], BT * C, m->cfg.dropout,
                              &m->rng);
}

/* The attention dropout of the last forward for a layer's activations, or NULL. */
static const graft_attention_dropout *attention_dropout(graft_bert *m, const graft_bert_acts *a,
                                                        graft_attention_dropout *d) {
    if (!m->dropout_applied) return NULL;
    *d = (graft_attention_dropout){
        .p = m->cfg.dropout, .rng = &m->rng, .keep = a->keep, .scratch = m->att_scratch};
    return d;
}

/* res = dropout(res) + skip, in place. */
static void dropout_residual(graft_bert *m, float *res, float *mask, const float *skip, size_t n) {
    if (m->dropout_applied) graft_dropout_forward(res, mask, res, n, m->cfg.dropout, &m->rng);
    graft_residual_forward(res, res, skip, n);
}

/* Layer l for R query rows: x [R, C] holds those rows of its input hidden[l] (x is
 * hidden[l] itself when R is every row), keys and values come from all of hidden[l]. */
static void layer_forward(graft_bert *m, int l, int B, const float *x, int R, float *out) {
    const graft_bert_layer *ly = &m->layers[l];
    const graft_params *p = &m->params;
    graft_bert_acts *a = &m->acts[l];
    const int T = m->cfg.seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head;
    const int BT = B * T;
    const size_t n = (size_t)R * C;
    const float *in = m->hidden[l];
    graft_linear_layer_forward(&ly->query, p, a->q, x, R);
    graft_linear_layer_forward(&ly->key, p, a->k, in, BT);
    graft_linear_layer_forward(&ly->value, p, a->v, in, BT);
    graft_attention_dropout drop_buf;
    const graft_attention_dropout *drop = attention_dropout(m, a, &drop_buf);
    if (R == BT)
        graft_attention_forward(a->att, a->probs, a->q, a->k, a->v, C,
                                m->has_key_mask ? m->key_mask : NULL, B, T, NH, C / NH, 0, drop);
    else
        graft_attention_rows_forward(a->att, a->probs, a->q, a->k, a->v, m->rows, R,
                                     m->has_key_mask ? m->key_mask : NULL, T, NH, C / NH, drop);
    graft_linear_layer_forward(&ly->attn_dense, p, a->res1, a->att, R);
    dropout_residual(m, a->res1, a->mask1, x, n);
    layernorm_forward(m, ly->attn_ln, a->h1, a->mean1, a->rstd1, a->res1, R);
    graft_linear_layer_forward(&ly->intermediate, p, a->fc, a->h1, R);
    graft_gelu_forward(a->fc_gelu, a->fc, 4 * n, GRAFT_GELU_ERF);
    graft_linear_layer_forward(&ly->output, p, a->res2, a->fc_gelu, R);
    dropout_residual(m, a->res2, a->mask2, a->h1, n);
    layernorm_forward(m, ly->out_ln, out, a->mean2, a->rstd2, a->res2, R);
}

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
    layernorm_forward(m, m->transform_ln, m->tr_out, m->tr_mean, m->tr_rstd, m->tr_gelu, M);
    graft_linear_forward(m->logits, m->tr_out, value(m, m->word), value(m, m->mlm_bias), M, C, V,
                         GRAFT_W_OUT_IN);
    if (!m->labels) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, m->row_labels, M, V, -1, &m->counted);
}

float graft_bert_forward(graft_bert *m, const int32_t *ids, const int32_t *token_type_ids,
                         const int32_t *attention_mask, const int32_t *labels, int B,
                         int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    const int L = m->cfg.n_layer, C = m->cfg.n_embd;
    const size_t BT = (size_t)B * m->cfg.seq_len;
    m->batch = B;
    m->labels = labels;
    m->counted = 0;
    m->dropout_applied = training && m->cfg.dropout > 0;
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

    embeddings_forward(m, B);
    for (int l = 0; l < L - 1; l++)
        layer_forward(m, l, B, m->hidden[l], (int)BT, m->hidden[l + 1]);
    const float *x = m->hidden[L - 1];
    if ((size_t)R < BT) {
        for (int j = 0; j < R; j++)
            memcpy(m->last_in + (size_t)j * C, x + (size_t)m->rows[j] * C,
                   (size_t)C * sizeof(float));
        x = m->last_in;
    }
    layer_forward(m, L - 1, B, x, R, m->hidden[L]);
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

static void layernorm_backward(const graft_bert *m, graft_bert_ln ln, float *dinp,
                               const float *dout, const float *inp, const float *mean,
                               const float *rstd, int rows) {
    graft_layernorm_backward(dinp, grad(m, ln.weight), grad(m, ln.bias), dout, inp,
                             value(m, ln.weight), mean, rstd, rows, m->cfg.n_embd);
    graft_params_grad_ready(&m->params, ln.bias);
    graft_params_grad_ready(&m->params, ln.weight);
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

/* The gradient through a dropout of the last forward: dout itself without dropout. */
static const float *dropout_backward(const graft_bert *m, float *scratch, const float *dout,
                                     const float *mask, size_t n) {
    if (!m->dropout_applied) return dout;
    zero(scratch, n);
    graft_dropout_backward(scratch, dout, mask, n);
    return scratch;
}

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
    layernorm_backward(m, m->transform_ln, dgelu, dout, m->tr_gelu, m->tr_mean, m->tr_rstd, M);
    zero(dfc, n);
    graft_gelu_backward(dfc, dgelu, m->tr_fc, n, GRAFT_GELU_ERF);
    if (dh) zero(dh, n);
    graft_linear_layer_backward(&m->transform, &m->params, dh, dfc, m->hidden[L], M);
}

/* Layer l over the R query rows of its forward (x: their inputs). dout [R, C]: gradient of
 * its output (consumed); din [BT, C] (zeroed here) receives the gradient of its input
 * hidden[l] when need_din. */
static void layer_backward(graft_bert *m, int l, float *dout, float *din, int need_din,
                           const float *x, int R) {
    const graft_bert_layer *ly = &m->layers[l];
    const graft_params *p = &m->params;
    const graft_bert_acts *a = &m->acts[l];
    const int B = m->batch, T = m->cfg.seq_len, C = m->cfg.n_embd, NH = m->cfg.n_head;
    const int BT = B * T, all_rows = R == BT;
    const size_t n = (size_t)R * C;
    /* output.LayerNorm; its input gradient is also the residual's into h1 */
    zero(m->dh1, n);
    layernorm_backward(m, ly->out_ln, m->dh1, dout, a->res2, a->mean2, a->rstd2, R);
    const float *dres = dropout_backward(m, m->dtmp, m->dh1, a->mask2, n);
    zero(m->dfc_gelu, 4 * n);
    graft_linear_layer_backward(&ly->output, p, m->dfc_gelu, dres, a->fc_gelu, R);
    zero(m->dfc, 4 * n);
    graft_gelu_backward(m->dfc, m->dfc_gelu, a->fc, 4 * n, GRAFT_GELU_ERF);
    graft_linear_layer_backward(&ly->intermediate, p, m->dh1, m->dfc, a->h1, R);
    /* attention.output.LayerNorm: the residual's gradient goes straight into din when the
     * layer covers every row; otherwise into dout's buffer (free now), scattered below */
    float *dres1 = all_rows && need_din ? din : dout;
    zero(dres1, n);
    layernorm_backward(m, ly->attn_ln, dres1, m->dh1, a->res1, a->mean1, a->rstd1, R);
    dres = dropout_backward(m, m->dtmp, dres1, a->mask1, n);
    int need_q = need_din || graft_linear_layer_trainable(&ly->query, p);
    int need_k = need_din || graft_linear_layer_trainable(&ly->key, p);
    int need_v = need_din || graft_linear_layer_trainable(&ly->value, p);
    float *datt = NULL;
    if (need_q || need_k || need_v) zero(datt = m->datt, n);
    graft_linear_layer_backward(&ly->attn_dense, p, datt, dres, a->att, R);
    if (!datt) return;
    float *dq = need_q ? m->dq : NULL, *dk = need_k ? m->dk : NULL, *dv = need_v ? m->dv : NULL;
    if (dq) zero(dq, n);
    if (dk) zero(dk, (size_t)BT * C);
    if (dv) zero(dv, (size_t)BT * C);
    graft_attention_dropout drop_buf;
    const graft_attention_dropout *drop = attention_dropout(m, a, &drop_buf);
    if (all_rows)
        graft_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->probs, m->att_scratch, C, B,
                                 T, NH, C / NH, drop);
    else
        graft_attention_rows_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->probs, m->att_scratch,
                                      m->rows, R, m->has_key_mask ? m->key_mask : NULL, T, NH,
                                      C / NH, drop);
    float *dx = need_din ? din : NULL;
    const float *in = m->hidden[l];
    if (dx && !all_rows) zero(dx, (size_t)BT * C);
    if (dv) graft_linear_layer_backward(&ly->value, p, dx, dv, in, BT);
    if (dk) graft_linear_layer_backward(&ly->key, p, dx, dk, in, BT);
    if (dq) graft_linear_layer_backward(&ly->query, p, all_rows ? dx : dx ? dres1 : NULL, dq, x, R);
    for (int j = 0; dx && !all_rows && j < R; j++) { /* the query rows' residual + query part */
        float *dst = dx + (size_t)m->rows[j] * C;
        const float *src = dres1 + (size_t)j * C;
        for (int c = 0; c < C; c++)
            dst[c] += src[c];
    }
}

static void embeddings_backward(graft_bert *m, const float *dout) {
    const graft_params *p = &m->params;
    const size_t BT = (size_t)m->batch * m->cfg.seq_len, n = BT * m->cfg.n_embd;
    const int C = m->cfg.n_embd;
    const float *d = dropout_backward(m, m->dtmp, dout, m->emb_mask, n);
    float *dsum = NULL;
    if (trainable(p, m->word) || trainable(p, m->position) || trainable(p, m->token_type))
        zero(dsum = m->dh1, n);
    layernorm_backward(m, m->emb_ln, dsum, d, m->emb_sum, m->emb_mean, m->emb_rstd, (int)BT);
    if (!dsum) return;
    graft_embedding_backward(grad(m, m->token_type), dsum, m->type_ids, BT, C);
    graft_params_grad_ready(p, m->token_type);
    graft_embedding_backward(grad(m, m->position), dsum, m->pos_ids, BT, C);
    graft_params_grad_ready(p, m->position);
    float *dword = grad(m, m->word);
    for (size_t r = 0; dword && r < BT; r++) {
        if (m->ids[r] == BERT_PAD_ID) continue; /* nn.Embedding(padding_idx=0): no gradient */
        float *row = dword + (size_t)m->ids[r] * C;
        const float *g = dsum + r * C;
        for (int c = 0; c < C; c++)
            row[c] += g[c];
    }
    graft_params_grad_ready(p, m->word);
}

void graft_bert_backward(graft_bert *m, float loss_scale) {
    const int L = m->cfg.n_layer, R = m->n_rows, BT = m->batch * m->cfg.seq_len;
    if (m->lowest > L + 2 || m->counted == 0) return;
    float *dh = m->lowest <= L ? m->dh_a : NULL, *spare = m->dh_b;
    if (m->cfg.num_classes > 0)
        classifier_backward(m, loss_scale, dh);
    else
        mlm_backward(m, loss_scale, dh);
    for (int l = L - 1; l >= 0 && l + 1 >= m->lowest; l--) {
        int last = l == L - 1;
        layer_backward(m, l, dh, spare, l + 1 > m->lowest,
                       last && R < BT ? m->last_in : m->hidden[l], last ? R : BT);
        float *t = dh;
        dh = spare;
        spare = t;
    }
    if (m->lowest == 0) embeddings_backward(m, dh);
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
        .n_layer = cfg->model.n_layer ? cfg->model.n_layer : 12,
        .n_head = cfg->model.n_head ? cfg->model.n_head : 12,
        .n_embd = cfg->model.n_embd ? cfg->model.n_embd : 768,
        .n_positions = cfg->model.n_positions ? cfg->model.n_positions : 512,
        .vocab_size = cfg->model.vocab_size ? cfg->model.vocab_size : input->vocab_size,
        .type_vocab_size = cfg->model.type_vocab_size,
        .seq_len = input->seq_len,
        .num_classes =
            cfg->model.head_num_classes > 0 ? cfg->model.head_num_classes : input->num_classes,
        .mask_token_id = cfg->model.mask_token_id,
        .pad_id = input->pad_id,
        .dropout = (float)cfg->model.dropout};
    if (cfg->model.vocab_size && input->vocab_size && cfg->model.vocab_size != input->vocab_size) {
        GRAFT_ERROR("model.vocab_size %d does not match the dataset's vocabulary of %d tokens",
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
    if (bc.n_embd % bc.n_head != 0) {
        GRAFT_ERROR("model.n_embd %d is not divisible by model.n_head %d", bc.n_embd, bc.n_head);
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
                                        .free = bert_free};
    out->iface = iface;
    out->iface.head = bc.num_classes > 0 ? "classifier" : NULL;
    out->self = m;
    out->params = &m->params;
    out->task = bc.num_classes > 0 ? GRAFT_TASK_CLASSIFY : GRAFT_TASK_LANGUAGE;
    out->num_outputs = bc.num_classes > 0 ? bc.num_classes : bc.vocab_size;
    return GRAFT_OK;
}
