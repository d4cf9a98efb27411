/* One transformer encoder/decoder layer: multi-head self-attention and a GELU MLP, each
 * a sub-layer with a residual connection and a LayerNorm, in one of two arrangements:
 *   pre-LN  (GPT-2, ViT):  h = x + drop(attn_out(attention(qkv(attn_ln(x)))))
 *                          out = h + drop(output(mlp_drop(gelu(intermediate(out_ln(h))))))
 *   post-LN (BERT):        h = attn_ln(x + drop(attn_out(attention(qkv(x)))))
 *                          out = out_ln(h + drop(output(mlp_drop(gelu(intermediate(h))))))
 * attn_ln and out_ln are the LayerNorms of the attention and of the output (MLP)
 * sub-layer: GPT-2's ln_1 and ln_2, BERT's attention.output.LayerNorm and
 * output.LayerNorm. The attention is causal or bidirectional, with an optional key
 * padding mask, and its q/k/v come from one packed projection (GPT-2's c_attn, ViT's
 * in_proj) or from three (BERT's query, key, value). mlp_drop is a dropout on the MLP's
 * hidden activation (ViT's MLPBlock has one; GPT-2 and BERT none).
 *
 * Parameters are registered in the state_dict order of the arrangement, under the
 * caller's names (graft_transformer_names), and the block records the range of each
 * sub-layer: its backward stops inside itself at the lowest trainable sub-layer when
 * nothing below needs its input gradient.
 *
 * Activations: a block that runs a backward owns one graft_transformer_acts; frozen
 * blocks below the lowest trainable one may all share one set planned with keep = 0
 * (pre-LN: the residual stream then updates in place in the caller's output; see
 * docs/DESIGN.md, Note [Activation sharing under frozen layers]). One
 * graft_transformer_work, shared by all blocks of a model, holds the scratch of their
 * forwards and backwards. A post-LN block may compute only some query rows (BERT's last
 * layer: the rows its head reads); keys and values still come from every row. */
#ifndef GRAFT_NN_TRANSFORMER_H
#define GRAFT_NN_TRANSFORMER_H

#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/lora.h"

typedef enum { GRAFT_PRE_LN = 0, GRAFT_POST_LN = 1 } graft_transformer_norm;

typedef struct graft_transformer_config {
    int C, NH; /* width and heads (C % NH == 0) */
    int mlp;   /* the MLP's hidden width (4C for GPT-2 and BERT, ViT's mlp_dim) */
    graft_transformer_norm norm;
    int causal;           /* 1: query t attends to keys <= t */
    int packed_qkv;       /* 1: one projection to [q k v]; 0: query, key, value */
    graft_wlayout layout; /* of every weight: GPT-2's Conv1D [in, out], else torch's */
    graft_gelu_kind gelu;
    float ln_eps;
    float dropout;      /* on the two residual branches while training */
    float attn_dropout; /* on the attention probabilities while training */
    float mlp_dropout;  /* on the MLP's hidden activation (after the GELU) while training */
    /* Adapters for the linear layers whose names it targets (NULL: none); read by
     * graft_transformer_add only. */
    graft_lora_spec *lora;
} graft_transformer_config;

/* Names relative to the block's prefix ("transformer.h.3"); a LayerNorm or linear name
 * gets ".weight" and ".bias" appended, the packed projection's two are whole. */
typedef struct graft_transformer_names {
    const char *attn_ln;               /* "ln_1", "attention.output.LayerNorm" */
    const char *qkv_weight, *qkv_bias; /* packed: "attn.c_attn.weight", ".bias" */
    const char *query, *key, *value;   /* separate: "attention.self.query", ... */
    const char *attn_out;              /* "attn.c_proj", "attention.output.dense" */
    const char *out_ln;                /* "ln_2", "output.LayerNorm" */
    const char *intermediate, *output; /* "mlp.c_fc", "mlp.c_proj" */
} graft_transformer_names;

/* Sub-layers, by role (registration order depends on the arrangement). */
enum {
    GRAFT_TF_ATTN_LN = 0,
    GRAFT_TF_QKV,
    GRAFT_TF_ATTN_OUT,
    GRAFT_TF_OUT_LN,
    GRAFT_TF_INTERMEDIATE,
    GRAFT_TF_OUTPUT,
    GRAFT_TF_SUBLAYERS
};

/* The block's linear layers, by role (an adapter's saved activations are indexed so). */
enum {
    GRAFT_TF_LIN_QKV = 0, /* packed, or the query */
    GRAFT_TF_LIN_KEY,
    GRAFT_TF_LIN_VALUE,
    GRAFT_TF_LIN_ATTN_OUT,
    GRAFT_TF_LIN_INTERMEDIATE,
    GRAFT_TF_LIN_OUTPUT,
    GRAFT_TF_LINEARS
};

typedef struct graft_transformer {
    graft_transformer_config cfg;
    graft_param_range range;                   /* every parameter of the block */
    graft_param_range sub[GRAFT_TF_SUBLAYERS]; /* each sub-layer's, by role */
    graft_layernorm_layer attn_ln, out_ln;
    graft_linear_layer qkv;               /* packed_qkv */
    graft_linear_layer query, key, value; /* !packed_qkv */
    graft_linear_layer attn_out, intermediate, output;
    int lora_rank;      /* the model's adapter rank (0: no adapters), for the shared scratch */
    float lora_dropout; /* and their dropout */
} graft_transformer;

/* One block's activations. Rows: R query rows, B*T = every row (see the pass). */
typedef struct graft_transformer_acts {
    float *attn_ln, *attn_ln_mean, *attn_ln_rstd; /* pre-LN: ln(x) [BT, C]; post-LN: h [R, C] */
    float *q, *k, *v; /* packed: q the projection [BT, 3C], k = q + C, v = q + 2C;
                         separate: q [R, C], k and v [BT, C] */
    float *probs;     /* [B, NH, T, T], or [R, NH, T] for a subset of rows */
    union {           /* the attention dropout's keep bits (see ops.h); NULL unless kept */
        uint64_t *keep;
        uint64_t *att_keep;
    };
    float *att;    /* attention output [R, C] */
    float *mask_1; /* the attention branch's dropout mask [R, C] */
    float *res_1;  /* x + attention branch [R, C]; NULL: in place in the output */
    float *out_ln, *out_ln_mean, *out_ln_rstd; /* pre-LN: ln(h) [BT, C]; post-LN: stats only */
    float *fc, *fc_act; /* intermediate output and its GELU [R, mlp] (fc_act may be fc),
                           after the MLP dropout */
    float *mask_h;      /* the MLP dropout's mask [R, mlp] */
    float *mask_2;      /* the MLP branch's dropout mask [R, C] */
    float *res_2;       /* post-LN: h + MLP branch [R, C], out_ln's input */
    graft_lora_acts lora[GRAFT_TF_LINEARS]; /* kept by the adapters (by linear role) */
} graft_transformer_acts;

/* Scratch shared by every block of a model; a model may use dln, dtmp, wide_a and
 * wide_b between block calls (before the first block's backward, after the last). */
typedef struct graft_transformer_work {
    float *proj;            /* pre-LN: a projection before its dropout [BT, C] */
    float *att_scratch;     /* the attention ops' (backward, and forward with dropout) */
    float *dln, *dtmp;      /* [BT, C]; dtmp only with dropout */
    float *wide_a, *wide_b; /* [BT, max(mlp, 3C)] */
    float *lora;            /* the adapters' scratch; NULL without adapters */
} graft_transformer_work;

/* One forward (and its backward): the batch, its padding, the query rows, dropout. */
typedef struct graft_transformer_pass {
    int B, T;
    const uint8_t *key_mask; /* [B, T], 0 = a padding key; NULL: none */
    int R;                   /* query rows: B*T, or fewer (post-LN only) ... */
    const int32_t *rows;     /* ... listed here, ascending */
    graft_rng *rng;          /* dropout draws while training; NULL: no dropout */
} graft_transformer_pass;

/* Register the block's parameters as "<prefix>.<name>" (see the names). */
graft_status graft_transformer_add(graft_transformer *t, graft_params *p,
                                   const graft_transformer_config *cfg, const char *prefix,
                                   const graft_transformer_names *names);
/* 1 when some parameter of the block is trainable. */
int graft_transformer_trainable(const graft_transformer *t, const graft_params *p);
/* Plan activations for B sequences of T tokens of which R are query rows (R = B*T but
 * for a post-LN block computing a subset). keep: for a backward; keep = 0 plans a set
 * that every forward-only block may share. */
void graft_transformer_plan(const graft_transformer *t, graft_transformer_acts *a,
                            graft_arena *arena, int B, int T, int R, int keep);
/* Plan the shared scratch for B sequences of T tokens. backward: some block runs one;
 * row_subset: some block computes a subset of query rows. */
void graft_transformer_plan_work(const graft_transformer *t, graft_transformer_work *w,
                                 graft_arena *arena, int B, int T, int backward, int row_subset);

/* out [R, C] from the block input x [B*T, C]; x_rows [R, C] holds the query rows' inputs
 * when R < B*T (else NULL). Pre-LN: out may be x (a forward-only set then updates the
 * stream in place); post-LN: out must not alias x or x_rows. */
void graft_transformer_forward(const graft_transformer *t, const graft_params *p,
                               const graft_transformer_acts *a, const graft_transformer_work *w,
                               const graft_transformer_pass *pass, float *out, const float *x,
                               const float *x_rows);
/* Backward of the last forward (same pass, x and x_rows). dout [R, C]: the gradient of
 * the output, clobbered. dinp [B*T, C] receives (is overwritten with) the gradient of x,
 * and may be dout itself when R = B*T; NULL: nothing below needs it, and the backward
 * stops at the block's lowest trainable sub-layer. Adds into the trainable parameters'
 * gradients, reporting each ready. */
void graft_transformer_backward(const graft_transformer *t, const graft_params *p,
                                const graft_transformer_acts *a, const graft_transformer_work *w,
                                const graft_transformer_pass *pass, float *dinp, float *dout,
                                const float *x, const float *x_rows);

#endif
