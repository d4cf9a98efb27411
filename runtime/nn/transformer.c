#include "transformer.h"

#include <stdio.h>
#include <string.h>

#include "runtime/core/check.h"

/* ---- parameters -------------------------------------------------------------------- */

typedef struct names_ctx {
    const char *prefix;
    char buf[2][GRAFT_NAME_MAX + 8]; /* a longer name is refused by graft_params_add */
} names_ctx;

static const char *full_name(names_ctx *n, int which, const char *name) {
    snprintf(n->buf[which], sizeof n->buf[which], "%s.%s", n->prefix, name);
    return n->buf[which];
}

static graft_status add_linear(const graft_transformer *t, graft_linear_layer *l, graft_params *p,
                               names_ctx *n, const char *name, int in, int out) {
    const char *layer = full_name(n, 0, name);
    GRAFT_TRY(graft_linear_layer_add(l, p, layer, in, out, 1, t->cfg.layout));
    return graft_lora_attach(l, p, layer, t->cfg.lora);
}

static graft_status add_qkv(graft_transformer *t, graft_params *p, names_ctx *n,
                            const graft_transformer_names *names) {
    const int C = t->cfg.C;
    const graft_wlayout W = t->cfg.layout;
    graft_param_range *r = &t->sub[GRAFT_TF_QKV];
    *r = graft_param_range_begin(p);
    if (t->cfg.packed_qkv) {
        const char *weight = full_name(n, 0, names->qkv_weight);
        GRAFT_TRY(graft_linear_layer_add_named(&t->qkv, p, weight, full_name(n, 1, names->qkv_bias),
                                               C, 3 * C, W));
        /* an adapter's layer is named by its weight's name less ".weight" (GPT-2's
         * c_attn); a packed in_proj_weight has no such name and takes none */
        const size_t len = strlen(weight), suffix = strlen(".weight");
        if (len > suffix && strcmp(weight + len - suffix, ".weight") == 0) {
            char layer[GRAFT_NAME_MAX + 8];
            snprintf(layer, sizeof layer, "%.*s", (int)(len - suffix), weight);
            GRAFT_TRY(graft_lora_attach(&t->qkv, p, layer, t->cfg.lora));
        }
    } else {
        GRAFT_TRY(add_linear(t, &t->query, p, n, names->query, C, C));
        GRAFT_TRY(add_linear(t, &t->key, p, n, names->key, C, C));
        GRAFT_TRY(add_linear(t, &t->value, p, n, names->value, C, C));
    }
    graft_param_range_end(r, p);
    return GRAFT_OK;
}

static graft_status add_ln(graft_transformer *t, int role, graft_layernorm_layer *ln,
                           graft_params *p, names_ctx *n, const char *name) {
    t->sub[role] = graft_param_range_begin(p);
    GRAFT_TRY(graft_layernorm_layer_add(ln, p, full_name(n, 0, name), t->cfg.C, t->cfg.ln_eps));
    graft_param_range_end(&t->sub[role], p);
    return GRAFT_OK;
}

static graft_status add_dense(graft_transformer *t, int role, graft_linear_layer *l,
                              graft_params *p, names_ctx *n, const char *name, int in, int out) {
    t->sub[role] = graft_param_range_begin(p);
    GRAFT_TRY(add_linear(t, l, p, n, name, in, out));
    graft_param_range_end(&t->sub[role], p);
    return GRAFT_OK;
}

graft_status graft_transformer_add(graft_transformer *t, graft_params *p,
                                   const graft_transformer_config *cfg, const char *prefix,
                                   const graft_transformer_names *names) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->lora_rank = cfg->lora ? cfg->lora->rank : 0;
    t->lora_dropout = cfg->lora ? cfg->lora->dropout : 0;
    GRAFT_ASSERT(cfg->C > 0 && cfg->NH > 0 && cfg->C % cfg->NH == 0 && cfg->mlp > 0);
    names_ctx n = {.prefix = prefix};
    const int C = cfg->C, M = cfg->mlp;
    t->range = graft_param_range_begin(p);
    if (cfg->norm == GRAFT_PRE_LN) { /* ln_1, attn, ln_2, mlp */
        GRAFT_TRY(add_ln(t, GRAFT_TF_ATTN_LN, &t->attn_ln, p, &n, names->attn_ln));
        GRAFT_TRY(add_qkv(t, p, &n, names));
        GRAFT_TRY(add_dense(t, GRAFT_TF_ATTN_OUT, &t->attn_out, p, &n, names->attn_out, C, C));
        GRAFT_TRY(add_ln(t, GRAFT_TF_OUT_LN, &t->out_ln, p, &n, names->out_ln));
    } else { /* attention, its LayerNorm, intermediate, output, its LayerNorm */
        GRAFT_TRY(add_qkv(t, p, &n, names));
        GRAFT_TRY(add_dense(t, GRAFT_TF_ATTN_OUT, &t->attn_out, p, &n, names->attn_out, C, C));
        GRAFT_TRY(add_ln(t, GRAFT_TF_ATTN_LN, &t->attn_ln, p, &n, names->attn_ln));
    }
    GRAFT_TRY(
        add_dense(t, GRAFT_TF_INTERMEDIATE, &t->intermediate, p, &n, names->intermediate, C, M));
    GRAFT_TRY(add_dense(t, GRAFT_TF_OUTPUT, &t->output, p, &n, names->output, M, C));
    if (cfg->norm == GRAFT_POST_LN)
        GRAFT_TRY(add_ln(t, GRAFT_TF_OUT_LN, &t->out_ln, p, &n, names->out_ln));
    graft_param_range_end(&t->range, p);
    t->cfg.lora = NULL; /* the spec is read while registering only */
    return GRAFT_OK;
}

int graft_transformer_trainable(const graft_transformer *t, const graft_params *p) {
    return graft_param_range_trainable(p, t->range);
}

/* 1 when the backward must go on below sub-layer `role`: the caller needs the input
 * gradient, or a parameter the block registered before that sub-layer is trainable. */
static int below(const graft_transformer *t, const graft_params *p, int role, int need_dinp) {
    return need_dinp ||
           graft_param_range_trainable(p, (graft_param_range){t->range.first, t->sub[role].first});
}

/* The linear layer of a role (GRAFT_TF_LIN_*). */
static const graft_linear_layer *linear_of(const graft_transformer *t, int role) {
    switch (role) {
    case GRAFT_TF_LIN_QKV:
        return t->cfg.packed_qkv ? &t->qkv : &t->query;
    case GRAFT_TF_LIN_KEY:
        return &t->key;
    case GRAFT_TF_LIN_VALUE:
        return &t->value;
    case GRAFT_TF_LIN_ATTN_OUT:
        return &t->attn_out;
    case GRAFT_TF_LIN_INTERMEDIATE:
        return &t->intermediate;
    default:
        return &t->output;
    }
}

/* ---- activation memory ------------------------------------------------------------- */

/* What each adapter keeps for its backward: u [rows, rank] and its dropout mask. Keys
 * and values (and a packed projection) see every row, the rest the query rows. */
static void plan_adapters(const graft_transformer *t, graft_transformer_acts *a, graft_arena *arena,
                          size_t BT, size_t rows) {
    for (int role = 0; role < GRAFT_TF_LINEARS; role++) {
        const graft_linear_layer *l = linear_of(t, role);
        if (t->cfg.packed_qkv && (role == GRAFT_TF_LIN_KEY || role == GRAFT_TF_LIN_VALUE)) continue;
        if (l->lora.a < 0) continue;
        const int all_rows = role == GRAFT_TF_LIN_KEY || role == GRAFT_TF_LIN_VALUE ||
                             (role == GRAFT_TF_LIN_QKV && t->cfg.packed_qkv);
        const size_t n = all_rows ? BT : rows;
        a->lora[role].u = graft_arena_floats(arena, n * (size_t)l->lora.rank);
        a->lora[role].mask =
            l->lora.dropout > 0 ? graft_arena_floats(arena, n * (size_t)l->in) : NULL;
    }
}

void graft_transformer_plan(const graft_transformer *t, graft_transformer_acts *a,
                            graft_arena *arena, int B, int T, int R, int keep) {
    const graft_transformer_config *c = &t->cfg;
    const size_t BT = (size_t)B * T, C = (size_t)c->C, M = (size_t)c->mlp;
    const size_t rows = c->norm == GRAFT_PRE_LN ? BT : (size_t)R, n = rows * C;
    const size_t probs = rows * (size_t)c->NH * T;
    const int dropout = c->dropout > 0;
    GRAFT_ASSERT(R > 0 && (size_t)R <= BT && (c->norm == GRAFT_POST_LN || (size_t)R == BT) &&
                 (!c->packed_qkv || (size_t)R == BT));
    memset(a, 0, sizeof *a);
    if (c->packed_qkv) {
        a->q = graft_arena_floats(arena, 3 * BT * C);
        a->k = a->q + C;
        a->v = a->q + 2 * C;
    } else {
        a->q = graft_arena_floats(arena, n);
        a->k = graft_arena_floats(arena, BT * C);
        a->v = graft_arena_floats(arena, BT * C);
    }
    a->probs = graft_arena_floats(arena, probs);
    a->keep = keep && c->attn_dropout > 0
                  ? graft_arena_alloc(arena, (size_t)probs / T * graft_attention_keep_words(T) *
                                                 sizeof(uint64_t))
                  : NULL;
    a->att = graft_arena_floats(arena, n);
    a->attn_ln_mean = graft_arena_floats(arena, rows);
    a->attn_ln_rstd = graft_arena_floats(arena, rows);
    if (c->norm == GRAFT_PRE_LN && !keep) {
        /* forward only: the stream updates in place in the output, the two LayerNorms,
         * the two dropout masks and the MLP's activations share their buffers */
        a->attn_ln = a->out_ln = graft_arena_floats(arena, n);
        a->out_ln_mean = a->attn_ln_mean;
        a->out_ln_rstd = a->attn_ln_rstd;
        a->fc = a->fc_act = graft_arena_floats(arena, rows * M);
        a->mask_h = c->mlp_dropout > 0 ? graft_arena_floats(arena, rows * M) : NULL;
        a->mask_1 = a->mask_2 = dropout ? graft_arena_floats(arena, n) : NULL;
        return;
    }
    a->out_ln_mean = graft_arena_floats(arena, rows);
    a->out_ln_rstd = graft_arena_floats(arena, rows);
    a->attn_ln = graft_arena_floats(arena, n);
    a->res_1 = graft_arena_floats(arena, n);
    a->mask_1 = dropout ? graft_arena_floats(arena, n) : NULL;
    a->out_ln = c->norm == GRAFT_PRE_LN ? graft_arena_floats(arena, n) : NULL;
    a->fc = graft_arena_floats(arena, rows * M);
    a->fc_act = graft_arena_floats(arena, rows * M);
    a->mask_h = c->mlp_dropout > 0 ? graft_arena_floats(arena, rows * M) : NULL;
    a->mask_2 = dropout ? graft_arena_floats(arena, n) : NULL;
    a->res_2 = c->norm == GRAFT_POST_LN ? graft_arena_floats(arena, n) : NULL;
    plan_adapters(t, a, arena, BT, rows);
}

void graft_transformer_plan_work(const graft_transformer *t, graft_transformer_work *w,
                                 graft_arena *arena, int B, int T, int backward, int row_subset) {
    const graft_transformer_config *c = &t->cfg;
    const size_t BT = (size_t)B * T, n = BT * (size_t)c->C;
    const size_t wide = BT * (size_t)(c->mlp > 3 * c->C ? c->mlp : 3 * c->C);
    memset(w, 0, sizeof *w);
    w->proj = c->norm == GRAFT_PRE_LN ? graft_arena_floats(arena, n) : NULL;
    w->lora =
        t->lora_rank > 0
            ? graft_arena_floats(arena, graft_lora_scratch_floats(BT, c->mlp > c->C ? c->mlp : c->C,
                                                                  t->lora_rank, t->lora_dropout))
            : NULL;
    if (backward || c->attn_dropout > 0)
        w->att_scratch =
            graft_arena_floats(arena, row_subset ? graft_attention_rows_scratch_floats(T)
                                                 : graft_attention_scratch_floats(T));
    if (!backward) return;
    w->dln = graft_arena_floats(arena, n);
    w->dtmp = c->dropout > 0 ? graft_arena_floats(arena, n) : NULL;
    w->wide_a = graft_arena_floats(arena, wide);
    w->wide_b = graft_arena_floats(arena, wide);
}

/* ---- forward ----------------------------------------------------------------------- */

static int dropout_on(const graft_transformer *t, const graft_transformer_pass *pass) {
    return pass->rng && t->cfg.dropout > 0;
}

/* The attention dropout of the pass for these activations, or NULL without. */
static const graft_attention_dropout *attention_dropout(const graft_transformer *t,
                                                        const graft_transformer_acts *a,
                                                        const graft_transformer_work *w,
                                                        const graft_transformer_pass *pass,
                                                        graft_attention_dropout *d) {
    if (!pass->rng || !(t->cfg.attn_dropout > 0)) return NULL;
    *d = (graft_attention_dropout){
        .p = t->cfg.attn_dropout, .rng = pass->rng, .keep = a->keep, .scratch = w->att_scratch};
    return d;
}

/* In place dropout of a branch, when this pass uses it. */
static void maybe_dropout(const graft_transformer *t, const graft_transformer_pass *pass, float *x,
                          float *mask, size_t n) {
    if (dropout_on(t, pass)) graft_dropout_forward(x, mask, x, n, t->cfg.dropout, pass->rng);
}

/* The MLP's hidden activation: fc_act = mlp_drop(gelu(fc)) over `wide` values. */
static void mlp_act_forward(const graft_transformer *t, const graft_transformer_pass *pass,
                            const graft_transformer_acts *a, size_t wide) {
    graft_gelu_forward(a->fc_act, a->fc, wide, t->cfg.gelu);
    if (pass->rng && t->cfg.mlp_dropout > 0)
        graft_dropout_forward(a->fc_act, a->mask_h, a->fc_act, wide, t->cfg.mlp_dropout, pass->rng);
}

/* The linear layer of a role over N rows, with its adapter if it has one. */
static void linear_forward(const graft_transformer *t, const graft_params *p, int role,
                           const graft_transformer_acts *a, const graft_transformer_work *w,
                           const graft_transformer_pass *pass, float *out, const float *x, int N) {
    graft_linear_lora_forward(linear_of(t, role), p, out, x, N, &a->lora[role], w->lora, pass->rng);
}

static void linear_backward(const graft_transformer *t, const graft_params *p, int role,
                            const graft_transformer_acts *a, const graft_transformer_work *w,
                            const graft_transformer_pass *pass, float *dx, const float *dout,
                            const float *x, int N) {
    graft_linear_lora_backward(linear_of(t, role), p, dx, dout, x, N, &a->lora[role], w->lora,
                               pass->rng != NULL);
}

/* q, k, v of every row (a subset of query rows reads xq). */
static void qkv_forward(const graft_transformer *t, const graft_params *p,
                        const graft_transformer_acts *a, const graft_transformer_work *w,
                        const graft_transformer_pass *pass, const float *x, const float *xq, int BT,
                        int R) {
    if (t->cfg.packed_qkv) {
        linear_forward(t, p, GRAFT_TF_LIN_QKV, a, w, pass, a->q, x, BT);
        return;
    }
    linear_forward(t, p, GRAFT_TF_LIN_QKV, a, w, pass, a->q, xq, R);
    linear_forward(t, p, GRAFT_TF_LIN_KEY, a, w, pass, a->k, x, BT);
    linear_forward(t, p, GRAFT_TF_LIN_VALUE, a, w, pass, a->v, x, BT);
}

static void attention_forward(const graft_transformer *t, const graft_transformer_acts *a,
                              const graft_transformer_work *w, const graft_transformer_pass *pass) {
    const int C = t->cfg.C, NH = t->cfg.NH, BT = pass->B * pass->T;
    graft_attention_dropout buf;
    const graft_attention_dropout *drop = attention_dropout(t, a, w, pass, &buf);
    if (pass->R == BT)
        graft_attention_forward(a->att, a->probs, a->q, a->k, a->v, t->cfg.packed_qkv ? 3 * C : C,
                                pass->key_mask, pass->B, pass->T, NH, C / NH, t->cfg.causal, drop);
    else
        graft_attention_rows_forward(a->att, a->probs, a->q, a->k, a->v, pass->rows, pass->R,
                                     pass->key_mask, pass->T, NH, C / NH, drop);
}

static void pre_ln_forward(const graft_transformer *t, const graft_params *p,
                           const graft_transformer_acts *a, const graft_transformer_work *w,
                           const graft_transformer_pass *pass, float *out, const float *x) {
    const int BT = pass->B * pass->T;
    const size_t n = (size_t)BT * t->cfg.C;
    float *res_1 = a->res_1 ? a->res_1 : out;
    graft_layernorm_layer_forward(&t->attn_ln, p, a->attn_ln, a->attn_ln_mean, a->attn_ln_rstd, x,
                                  BT);
    qkv_forward(t, p, a, w, pass, a->attn_ln, a->attn_ln, BT, BT);
    attention_forward(t, a, w, pass);
    linear_forward(t, p, GRAFT_TF_LIN_ATTN_OUT, a, w, pass, w->proj, a->att, BT);
    maybe_dropout(t, pass, w->proj, a->mask_1, n);
    graft_residual_forward(res_1, x, w->proj, n);
    graft_layernorm_layer_forward(&t->out_ln, p, a->out_ln, a->out_ln_mean, a->out_ln_rstd, res_1,
                                  BT);
    linear_forward(t, p, GRAFT_TF_LIN_INTERMEDIATE, a, w, pass, a->fc, a->out_ln, BT);
    mlp_act_forward(t, pass, a, (size_t)BT * t->cfg.mlp);
    linear_forward(t, p, GRAFT_TF_LIN_OUTPUT, a, w, pass, w->proj, a->fc_act, BT);
    maybe_dropout(t, pass, w->proj, a->mask_2, n);
    graft_residual_forward(out, res_1, w->proj, n);
}

/* res = dropout(res) + skip, in place. */
static void dropout_residual(const graft_transformer *t, const graft_transformer_pass *pass,
                             float *res, float *mask, const float *skip, size_t n) {
    maybe_dropout(t, pass, res, mask, n);
    graft_residual_forward(res, res, skip, n);
}

static void post_ln_forward(const graft_transformer *t, const graft_params *p,
                            const graft_transformer_acts *a, const graft_transformer_work *w,
                            const graft_transformer_pass *pass, float *out, const float *x,
                            const float *xq) {
    const int BT = pass->B * pass->T, R = pass->R;
    const size_t n = (size_t)R * t->cfg.C;
    qkv_forward(t, p, a, w, pass, x, xq, BT, R);
    attention_forward(t, a, w, pass);
    linear_forward(t, p, GRAFT_TF_LIN_ATTN_OUT, a, w, pass, a->res_1, a->att, R);
    dropout_residual(t, pass, a->res_1, a->mask_1, xq, n);
    graft_layernorm_layer_forward(&t->attn_ln, p, a->attn_ln, a->attn_ln_mean, a->attn_ln_rstd,
                                  a->res_1, R);
    linear_forward(t, p, GRAFT_TF_LIN_INTERMEDIATE, a, w, pass, a->fc, a->attn_ln, R);
    mlp_act_forward(t, pass, a, (size_t)R * t->cfg.mlp);
    linear_forward(t, p, GRAFT_TF_LIN_OUTPUT, a, w, pass, a->res_2, a->fc_act, R);
    dropout_residual(t, pass, a->res_2, a->mask_2, a->attn_ln, n);
    graft_layernorm_layer_forward(&t->out_ln, p, out, a->out_ln_mean, a->out_ln_rstd, a->res_2, R);
}

void graft_transformer_forward(const graft_transformer *t, const graft_params *p,
                               const graft_transformer_acts *a, const graft_transformer_work *w,
                               const graft_transformer_pass *pass, float *out, const float *x,
                               const float *x_rows) {
    const int BT = pass->B * pass->T;
    GRAFT_ASSERT(pass->R == BT || (t->cfg.norm == GRAFT_POST_LN && !t->cfg.packed_qkv &&
                                   pass->rows && x_rows && pass->R > 0 && pass->R < BT));
    if (t->cfg.norm == GRAFT_PRE_LN)
        pre_ln_forward(t, p, a, w, pass, out, x);
    else
        post_ln_forward(t, p, a, w, pass, out, x, pass->R < BT ? x_rows : x);
}

/* ---- backward ---------------------------------------------------------------------- */

static float *zeroed(float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
    return x;
}

/* The gradient of a branch before its dropout: dout itself without dropout. */
static const float *undropped(const graft_transformer *t, const graft_transformer_pass *pass,
                              const graft_transformer_work *w, const float *dout, const float *mask,
                              size_t n) {
    if (!dropout_on(t, pass)) return dout;
    graft_dropout_backward(zeroed(w->dtmp, n), dout, mask, n);
    return w->dtmp;
}

/* The MLP activation's backward from the gradient of fc_act in w->wide_a: returns the
 * gradient of fc (in wide_b, or in wide_a after the MLP dropout's). */
static float *mlp_act_backward(const graft_transformer *t, const graft_transformer_acts *a,
                               const graft_transformer_work *w, const graft_transformer_pass *pass,
                               size_t wide) {
    const float *dact = w->wide_a;
    float *dfc = zeroed(w->wide_b, wide);
    if (pass->rng && t->cfg.mlp_dropout > 0) {
        graft_dropout_backward(dfc, dact, a->mask_h, wide);
        dact = dfc;
        dfc = zeroed(w->wide_a, wide);
    }
    graft_gelu_backward(dfc, dact, a->fc, wide, t->cfg.gelu);
    return dfc;
}

/* The attention's backward into dq, dk, dv (each NULL when not needed; zeroed here). */
static void attention_backward(const graft_transformer *t, const graft_transformer_acts *a,
                               const graft_transformer_work *w, const graft_transformer_pass *pass,
                               float *dq, float *dk, float *dv, const float *datt) {
    const int C = t->cfg.C, NH = t->cfg.NH, BT = pass->B * pass->T, R = pass->R;
    graft_attention_dropout buf;
    const graft_attention_dropout *drop = attention_dropout(t, a, w, pass, &buf);
    if (t->cfg.packed_qkv) {
        zeroed(dq, 3 * (size_t)BT * C);
        graft_attention_backward(dq, dq + C, dq + 2 * C, datt, a->q, a->k, a->v, a->probs,
                                 w->att_scratch, 3 * C, pass->B, pass->T, NH, C / NH, drop);
        return;
    }
    if (dq) zeroed(dq, (size_t)R * C);
    if (dk) zeroed(dk, (size_t)BT * C);
    if (dv) zeroed(dv, (size_t)BT * C);
    if (R == BT)
        graft_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->probs, w->att_scratch, C,
                                 pass->B, pass->T, NH, C / NH, drop);
    else
        graft_attention_rows_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->probs, w->att_scratch,
                                      pass->rows, R, pass->key_mask, pass->T, NH, C / NH, drop);
}

/* The q/k/v projections' backward (value, key, query: reverse registration order), adding
 * the input gradient into dx and the query rows' into dxq (either may be NULL). */
static void qkv_backward(const graft_transformer *t, const graft_params *p,
                         const graft_transformer_acts *a, const graft_transformer_work *w,
                         const graft_transformer_pass *pass, float *dx, float *dxq, const float *dq,
                         const float *dk, const float *dv, const float *x, const float *xq, int BT,
                         int R) {
    if (t->cfg.packed_qkv) {
        linear_backward(t, p, GRAFT_TF_LIN_QKV, a, w, pass, dx, dq, x, BT);
        return;
    }
    if (dv) linear_backward(t, p, GRAFT_TF_LIN_VALUE, a, w, pass, dx, dv, x, BT);
    if (dk) linear_backward(t, p, GRAFT_TF_LIN_KEY, a, w, pass, dx, dk, x, BT);
    if (dq) linear_backward(t, p, GRAFT_TF_LIN_QKV, a, w, pass, dxq, dq, xq, R);
}

/* Pre-LN, every row: d is the stream's gradient (the output's, then h's, then x's). */
static void pre_ln_backward(const graft_transformer *t, const graft_params *p,
                            const graft_transformer_acts *a, const graft_transformer_work *w,
                            const graft_transformer_pass *pass, float *dinp, float *dout,
                            const float *x) {
    const int BT = pass->B * pass->T, C = t->cfg.C, all = dinp != NULL;
    const size_t n = (size_t)BT * C, wide = (size_t)BT * t->cfg.mlp;
    float *d = dout;
    if (dinp && dinp != dout) d = memcpy(dinp, dout, n * sizeof(float));
    /* output, gelu, intermediate */
    float *dgelu = below(t, p, GRAFT_TF_OUTPUT, all) ? zeroed(w->wide_a, wide) : NULL;
    linear_backward(t, p, GRAFT_TF_LIN_OUTPUT, a, w, pass, dgelu,
                    undropped(t, pass, w, d, a->mask_2, n), a->fc_act, BT);
    if (!dgelu) return;
    const float *dfc = mlp_act_backward(t, a, w, pass, wide);
    float *dln_2 = below(t, p, GRAFT_TF_INTERMEDIATE, all) ? zeroed(w->dln, n) : NULL;
    linear_backward(t, p, GRAFT_TF_LIN_INTERMEDIATE, a, w, pass, dln_2, dfc, a->out_ln, BT);
    if (!dln_2) return;
    /* out_ln: its input gradient adds to the stream's */
    const int on = below(t, p, GRAFT_TF_OUT_LN, all);
    graft_layernorm_layer_backward(&t->out_ln, p, on ? d : NULL, dln_2, a->res_1, a->out_ln_mean,
                                   a->out_ln_rstd, BT);
    if (!on) return;
    /* attn_out, attention, qkv */
    float *datt = below(t, p, GRAFT_TF_ATTN_OUT, all) ? zeroed(w->wide_a, n) : NULL;
    linear_backward(t, p, GRAFT_TF_LIN_ATTN_OUT, a, w, pass, datt,
                    undropped(t, pass, w, d, a->mask_1, n), a->att, BT);
    if (!datt) return;
    float *dq = w->wide_b, *dk = t->cfg.packed_qkv ? NULL : dq + n, *dv = dk ? dk + n : NULL;
    attention_backward(t, a, w, pass, dq, dk, dv, datt);
    float *dln_1 = below(t, p, GRAFT_TF_QKV, all) ? zeroed(w->dln, n) : NULL;
    qkv_backward(t, p, a, w, pass, dln_1, dln_1, dq, dk, dv, a->attn_ln, a->attn_ln, BT, BT);
    if (!dln_1) return;
    graft_layernorm_layer_backward(&t->attn_ln, p, all ? d : NULL, dln_1, x, a->attn_ln_mean,
                                   a->attn_ln_rstd, BT);
}

static void post_ln_backward(const graft_transformer *t, const graft_params *p,
                             const graft_transformer_acts *a, const graft_transformer_work *w,
                             const graft_transformer_pass *pass, float *dinp, float *dout,
                             const float *x, const float *xq) {
    const int BT = pass->B * pass->T, R = pass->R, C = t->cfg.C, all = dinp != NULL;
    const int all_rows = R == BT;
    const size_t n = (size_t)R * C, wide = (size_t)R * t->cfg.mlp;
    /* out_ln; its input gradient is also the residual's into h */
    float *dh = below(t, p, GRAFT_TF_OUT_LN, all) ? zeroed(w->dln, n) : NULL;
    graft_layernorm_layer_backward(&t->out_ln, p, dh, dout, a->res_2, a->out_ln_mean,
                                   a->out_ln_rstd, R);
    if (!dh) return;
    float *dact = below(t, p, GRAFT_TF_OUTPUT, all) ? zeroed(w->wide_a, wide) : NULL;
    linear_backward(t, p, GRAFT_TF_LIN_OUTPUT, a, w, pass, dact,
                    undropped(t, pass, w, dh, a->mask_2, n), a->fc_act, R);
    if (!dact) return;
    const float *dfc = mlp_act_backward(t, a, w, pass, wide);
    const int on = below(t, p, GRAFT_TF_INTERMEDIATE, all);
    linear_backward(t, p, GRAFT_TF_LIN_INTERMEDIATE, a, w, pass, on ? dh : NULL, dfc, a->attn_ln,
                    R);
    if (!on) return;
    /* attn_ln: the residual's gradient goes straight into dinp when the block covers every
     * row; otherwise into dout's buffer (free now), scattered below */
    float *dres_1 = NULL;
    if (below(t, p, GRAFT_TF_ATTN_LN, all)) dres_1 = zeroed(all_rows && dinp ? dinp : dout, n);
    graft_layernorm_layer_backward(&t->attn_ln, p, dres_1, dh, a->res_1, a->attn_ln_mean,
                                   a->attn_ln_rstd, R);
    if (!dres_1) return;
    const float *dres = undropped(t, pass, w, dres_1, a->mask_1, n);
    int need_q, need_k, need_v;
    if (t->cfg.packed_qkv) {
        need_q = need_k = need_v = all || graft_linear_layer_trainable(&t->qkv, p);
    } else {
        need_q = all || graft_linear_layer_trainable(&t->query, p);
        need_k = all || graft_linear_layer_trainable(&t->key, p);
        need_v = all || graft_linear_layer_trainable(&t->value, p);
    }
    float *datt = need_q || need_k || need_v ? zeroed(w->wide_a, n) : NULL;
    linear_backward(t, p, GRAFT_TF_LIN_ATTN_OUT, a, w, pass, datt, dres, a->att, R);
    if (!datt) return;
    float *dq = need_q ? w->wide_b : NULL;
    float *dk = need_k ? w->wide_b + (size_t)BT * C : NULL;
    float *dv = need_v ? w->wide_b + 2 * (size_t)BT * C : NULL;
    if (t->cfg.packed_qkv) dq = w->wide_b;
    attention_backward(t, a, w, pass, dq, dk, dv, datt);
    float *dx = dinp;
    if (dx && !all_rows) zeroed(dx, (size_t)BT * C);
    qkv_backward(t, p, a, w, pass, dx,
                 all_rows ? dx
                 : dx     ? dres_1
                          : NULL,
                 dq, dk, dv, x, xq, BT, R);
    for (int j = 0; dx && !all_rows && j < R; j++) { /* the query rows' residual + query part */
        float *dst = dx + (size_t)pass->rows[j] * C;
        const float *src = dres_1 + (size_t)j * C;
        for (int c = 0; c < C; c++)
            dst[c] += src[c];
    }
}

void graft_transformer_backward(const graft_transformer *t, const graft_params *p,
                                const graft_transformer_acts *a, const graft_transformer_work *w,
                                const graft_transformer_pass *pass, float *dinp, float *dout,
                                const float *x, const float *x_rows) {
    const int BT = pass->B * pass->T;
    GRAFT_ASSERT(a->res_1 && w->wide_a && (pass->R == BT || dinp != dout));
    if (t->cfg.norm == GRAFT_PRE_LN)
        pre_ln_backward(t, p, a, w, pass, dinp, dout, x);
    else
        post_ln_backward(t, p, a, w, pass, dinp, dout, x, pass->R < BT ? x_rows : x);
}
