/* The nn transformer block (runtime/nn/transformer.h) and embeddings: gradients against
 * central finite differences of L = sum(out * G) for a pre-LN block (GPT-2's layout and
 * ViT's, by torchvision's names) and a post-LN block (BERT's, with a padding mask, dropout
 * and a subset of query rows), and the backward stopping inside a block. */
#include "tests/testutil_model.h"

#include "runtime/nn/embeddings.h"
#include "runtime/nn/transformer.h"

#define NB 2 /* sequences */
#define NT 5 /* tokens each */
#define BT (NB * NT)
#define FD_H 1e-2f
#define FD_BOUND 2e-2

typedef struct bench {
    graft_params p;
    graft_transformer t;
    graft_arena arena;
    graft_transformer_acts acts;
    graft_transformer_work work;
    graft_transformer_pass pass;
    graft_rng rng;
    int R, C, dropout;
    int32_t rows[BT];
    uint8_t key_mask[BT];
    float *x, *x_rows, *out, *G, *dout, *dinp;
} bench;

static void plan(bench *b) {
    graft_transformer_plan(&b->t, &b->acts, &b->arena, NB, NT, b->R, 1);
    graft_transformer_plan_work(&b->t, &b->work, &b->arena, NB, NT, 1, b->R < BT);
}

/* A block alone in a table, all values uniform in [-0.5, 0.5); frozen: a glob or NULL. */
static void bench_make(bench *b, const graft_transformer_config *cfg,
                       const graft_transformer_names *names, const char *frozen, int R) {
    memset(b, 0, sizeof *b);
    graft_params_init(&b->p);
    assert_int_equal(graft_transformer_add(&b->t, &b->p, cfg, "blk", names), GRAFT_OK);
    if (frozen) tu_freeze(&b->p, frozen);
    assert_int_equal(graft_params_finalize(&b->p), GRAFT_OK);
    tu_fill_uniform(b->p.values, b->p.n_values, -0.5f, 0.5f, 11);
    b->C = cfg->C;
    b->R = R;
    graft_arena_init_plan(&b->arena);
    plan(b);
    assert_int_equal(graft_arena_commit(&b->arena), GRAFT_OK);
    plan(b);
    for (int j = 0, r = 0; r < BT; r++) /* the subset: rows 0, 3, 4, 8 of 10 */
        if (R == BT || r == 0 || r == 3 || r == 4 || r == 8) b->rows[j++] = r;
    for (int r = 0; r < BT; r++) /* sequence 1 ends in one padding token */
        b->key_mask[r] = r != BT - 1;
    const size_t n = (size_t)BT * b->C;
    b->x = tu_floats(n);
    b->x_rows = tu_floats(n);
    b->out = tu_floats(n);
    b->G = tu_floats(n);
    b->dout = tu_floats(n);
    b->dinp = tu_floats(n);
    tu_fill_uniform(b->x, n, -1, 1, 12);
    tu_fill_uniform(b->G, n, -1, 1, 13);
    b->pass = (graft_transformer_pass){.B = NB, .T = NT, .R = R, .rows = R < BT ? b->rows : NULL};
    if (cfg->norm == GRAFT_POST_LN) b->pass.key_mask = b->key_mask;
    b->dropout = cfg->dropout > 0 || cfg->attn_dropout > 0 || cfg->mlp_dropout > 0;
}

static void bench_free(bench *b) {
    graft_params_free(&b->p);
    graft_arena_free(&b->arena);
    free(b->x), free(b->x_rows), free(b->out), free(b->G), free(b->dout), free(b->dinp);
}

/* sum(out * G) after a forward (dropout reseeded: the same masks every time). */
static double bench_loss(bench *b) {
    for (int j = 0; b->R < BT && j < b->R; j++)
        memcpy(b->x_rows + (size_t)j * b->C, b->x + (size_t)b->rows[j] * b->C,
               (size_t)b->C * sizeof(float));
    graft_rng_seed(&b->rng, 21);
    b->pass.rng = b->dropout ? &b->rng : NULL;
    graft_transformer_forward(&b->t, &b->p, &b->acts, &b->work, &b->pass, b->out, b->x,
                              b->R < BT ? b->x_rows : NULL);
    double s = 0;
    for (size_t i = 0; i < (size_t)b->R * b->C; i++)
        s += (double)b->out[i] * b->G[i];
    return s;
}

/* Forward and backward of sum(out * G): parameter gradients zeroed first; dinp NULL stops
 * the backward inside the block. */
static void bench_step(bench *b, float *dinp) {
    graft_params_zero_grad(&b->p);
    bench_loss(b);
    memcpy(b->dout, b->G, (size_t)b->R * b->C * sizeof(float));
    graft_transformer_backward(&b->t, &b->p, &b->acts, &b->work, &b->pass, dinp, b->dout, b->x,
                               b->R < BT ? b->x_rows : NULL);
}

/* Worst relative error of some entries of a gradient g of the values v against FD. */
static double fd_err(bench *b, float *v, const float *g, size_t numel) {
    double worst = 0;
    for (size_t j = 0; j < numel; j += numel / 7 + 1) {
        float keep = v[j];
        v[j] = keep + FD_H;
        double lp = bench_loss(b);
        v[j] = keep - FD_H;
        double lm = bench_loss(b);
        v[j] = keep;
        double fd = (lp - lm) / (2 * FD_H);
        worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
    }
    return worst;
}

/* Every parameter's gradient and the input's against finite differences. */
static void check_fd(bench *b, const char *what) {
    tu_hook_log h = {0};
    b->p.on_grad_ready = tu_record_ready;
    b->p.on_grad_ready_ctx = &h;
    bench_step(b, b->dinp);
    b->p.on_grad_ready = NULL;
    assert_int_equal(h.next, b->p.n_grads); /* every gradient announced, in order */
    double worst = fd_err(b, b->x, b->dinp, (size_t)BT * b->C);
    for (int i = 0; i < b->p.count; i++)
        worst = fmax(worst, fd_err(b, graft_params_value(&b->p, i), graft_params_grad(&b->p, i),
                                   b->p.items[i].numel));
    TU_CHECK_REL(what, worst, FD_BOUND);
}

static const graft_transformer_config gpt2_cfg = {.C = 8,
                                                  .NH = 2,
                                                  .mlp = 32,
                                                  .norm = GRAFT_PRE_LN,
                                                  .causal = 1,
                                                  .packed_qkv = 1,
                                                  .layout = GRAFT_W_IN_OUT,
                                                  .gelu = GRAFT_GELU_TANH,
                                                  .ln_eps = 1e-5f};
static const graft_transformer_names gpt2_names = {.attn_ln = "ln_1",
                                                   .qkv_weight = "attn.c_attn.weight",
                                                   .qkv_bias = "attn.c_attn.bias",
                                                   .attn_out = "attn.c_proj",
                                                   .out_ln = "ln_2",
                                                   .intermediate = "mlp.c_fc",
                                                   .output = "mlp.c_proj"};

static void test_pre_ln_gpt2(void **state) {
    (void)state;
    bench b;
    bench_make(&b, &gpt2_cfg, &gpt2_names, NULL, BT);
    check_fd(&b, "pre-LN, causal, Conv1D layout");
    bench_free(&b);
}

/* torchvision's EncoderBlock: names, [3C, C] in_proj, erf GELU, eps 1e-6, mlp_dim != 4C. */
static void test_pre_ln_vit(void **state) {
    (void)state;
    const graft_transformer_config cfg = {.C = 8,
                                          .NH = 2,
                                          .mlp = 12,
                                          .norm = GRAFT_PRE_LN,
                                          .packed_qkv = 1,
                                          .layout = GRAFT_W_OUT_IN,
                                          .gelu = GRAFT_GELU_ERF,
                                          .ln_eps = 1e-6f};
    const graft_transformer_names names = {.attn_ln = "ln_1",
                                           .qkv_weight = "self_attention.in_proj_weight",
                                           .qkv_bias = "self_attention.in_proj_bias",
                                           .attn_out = "self_attention.out_proj",
                                           .out_ln = "ln_2",
                                           .intermediate = "mlp.0",
                                           .output = "mlp.3"};
    bench b;
    bench_make(&b, &cfg, &names, NULL, BT);
    const char *want[] = {"blk.ln_1.weight",
                          "blk.ln_1.bias",
                          "blk.self_attention.in_proj_weight",
                          "blk.self_attention.in_proj_bias",
                          "blk.self_attention.out_proj.weight",
                          "blk.self_attention.out_proj.bias",
                          "blk.ln_2.weight",
                          "blk.ln_2.bias",
                          "blk.mlp.0.weight",
                          "blk.mlp.0.bias",
                          "blk.mlp.3.weight",
                          "blk.mlp.3.bias"};
    assert_int_equal(b.p.count, 12);
    for (int i = 0; i < 12; i++)
        assert_string_equal(b.p.items[i].name, want[i]);
    assert_int_equal(b.p.items[2].shape[0], 24); /* [3C, C] */
    assert_int_equal(b.p.items[8].shape[0], 12); /* mlp.0 [mlp, C] */
    check_fd(&b, "pre-LN, bidirectional, torch layout");
    bench_free(&b);
}

/* ViT's three dropouts (residual, attention, and MLPBlock's on the GELU output) against
 * finite differences, the masks redrawn identically for every evaluation. */
static void test_pre_ln_vit_dropout(void **state) {
    (void)state;
    const graft_transformer_config cfg = {.C = 8,
                                          .NH = 2,
                                          .mlp = 12,
                                          .norm = GRAFT_PRE_LN,
                                          .packed_qkv = 1,
                                          .layout = GRAFT_W_OUT_IN,
                                          .gelu = GRAFT_GELU_ERF,
                                          .ln_eps = 1e-6f,
                                          .dropout = 0.2f,
                                          .attn_dropout = 0.2f,
                                          .mlp_dropout = 0.3f};
    bench b;
    bench_make(&b, &cfg, &gpt2_names, NULL, BT);
    check_fd(&b, "pre-LN with residual, attention and MLP dropout");
    bench_free(&b);
}

static const graft_transformer_config bert_cfg = {.C = 8,
                                                  .NH = 2,
                                                  .mlp = 32,
                                                  .norm = GRAFT_POST_LN,
                                                  .layout = GRAFT_W_OUT_IN,
                                                  .gelu = GRAFT_GELU_ERF,
                                                  .ln_eps = 1e-12f,
                                                  .dropout = 0.2f,
                                                  .attn_dropout = 0.2f};
static const graft_transformer_names bert_names = {.query = "attention.self.query",
                                                   .key = "attention.self.key",
                                                   .value = "attention.self.value",
                                                   .attn_out = "attention.output.dense",
                                                   .attn_ln = "attention.output.LayerNorm",
                                                   .intermediate = "intermediate.dense",
                                                   .output = "output.dense",
                                                   .out_ln = "output.LayerNorm"};

static void test_post_ln_bert(void **state) {
    (void)state;
    bench b;
    bench_make(&b, &bert_cfg, &bert_names, NULL, BT);
    assert_string_equal(b.p.items[0].name, "blk.attention.self.query.weight");
    assert_string_equal(b.p.items[b.p.count - 1].name, "blk.output.LayerNorm.bias");
    check_fd(&b, "post-LN, padding mask, dropout");
    bench_free(&b);
}

/* A subset of query rows: outputs are the full block's rows (without dropout), and the
 * gradients match finite differences. */
static void test_post_ln_rows(void **state) {
    (void)state;
    graft_transformer_config cfg = bert_cfg;
    cfg.dropout = cfg.attn_dropout = 0;
    bench full, sub;
    bench_make(&full, &cfg, &bert_names, NULL, BT);
    bench_make(&sub, &cfg, &bert_names, NULL, 4);
    bench_loss(&full);
    bench_loss(&sub);
    for (int j = 0; j < 4; j++)
        TU_CHECK_REL(
            "query rows: the full block's rows",
            tu_rel_err_floor(sub.out + (size_t)j * 8, full.out + (size_t)sub.rows[j] * 8, 8, 1e-3),
            1e-5);
    bench_free(&full);
    bench_free(&sub);
    bench_make(&sub, &bert_cfg, &bert_names, NULL, 4);
    check_fd(&sub, "post-LN, 4 query rows of 10, dropout");
    bench_free(&sub);
}

/* Nothing below the block needs its input gradient: the backward stops at the lowest
 * trainable sub-layer, with the trainable gradients of a full backward, bit for bit. */
static void stop_case(const graft_transformer_config *cfg, const graft_transformer_names *names,
                      const char *frozen, const char *what) {
    bench b;
    bench_make(&b, cfg, names, frozen, BT);
    bench_step(&b, b.dinp);
    float *want = tu_floats(b.p.n_grads);
    memcpy(want, b.p.grads, b.p.n_grads * sizeof(float));
    const size_t scratch = graft_attention_scratch_floats(NT);
    for (size_t i = 0; i < scratch; i++) /* the attention backward must not run */
        b.work.att_scratch[i] = NAN;
    tu_hook_log h = {0};
    b.p.on_grad_ready = tu_record_ready;
    b.p.on_grad_ready_ctx = &h;
    bench_step(&b, NULL);
    assert_int_equal(h.next, b.p.n_grads);
    assert_memory_equal(want, b.p.grads, b.p.n_grads * sizeof(float));
    for (size_t i = 0; i < scratch; i++)
        assert_true(isnan(b.work.att_scratch[i]));
    printf("  %s: %zu trainable floats, attention backward skipped\n", what, b.p.n_grads);
    free(want);
    bench_free(&b);
}

static void test_stop_inside(void **state) {
    (void)state;
    stop_case(&gpt2_cfg, &gpt2_names, "blk.ln_1.*,blk.attn.*", "pre-LN, ln_2 and MLP trainable");
    stop_case(&gpt2_cfg, &gpt2_names, "blk.ln_1.*,blk.attn.*,blk.ln_2.*,blk.mlp.c_fc.*",
              "pre-LN, mlp.c_proj trainable");
    graft_transformer_config cfg = bert_cfg;
    cfg.dropout = cfg.attn_dropout = 0;
    stop_case(&cfg, &bert_names, "blk.attention.*", "post-LN, MLP sub-layer trainable");
    stop_case(&cfg, &bert_names, "blk.attention.*,blk.intermediate.*,blk.output.dense.*",
              "post-LN, output.LayerNorm trainable");
}

/* The embeddings with token types, LayerNorm, a padding id and dropout against finite
 * differences; the padding id's row gets no gradient. */
static void test_embeddings(void **state) {
    (void)state;
    const graft_embeddings_config cfg = {.vocab = 7,
                                         .positions = 6,
                                         .types = 2,
                                         .C = 4,
                                         .padding_idx = 0,
                                         .ln_eps = 1e-12f,
                                         .dropout = 0.2f};
    const graft_embeddings_names names = {
        .word = "w", .position = "p", .token_type = "t", .layernorm = "ln"};
    graft_params p;
    graft_params_init(&p);
    graft_embeddings e;
    assert_int_equal(graft_embeddings_add(&e, &p, &cfg, &names), GRAFT_OK);
    assert_int_equal(e.range.first, 0);
    assert_int_equal(e.range.end, 5);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    tu_fill_uniform(p.values, p.n_values, -0.5f, 0.5f, 3);
    graft_arena a;
    graft_arena_init_plan(&a);
    graft_embeddings_plan(&e, &a, BT, 1, NULL);
    assert_int_equal(graft_arena_commit(&a), GRAFT_OK);
    graft_embeddings_plan(&e, &a, BT, 1, NULL);
    const int32_t ids[BT] = {1, 0, 3, 6, 2, 5, 5, 0, 4, 1},
                  types[BT] = {0, 0, 1, 1, 1, 0, 1, 1, 0, 0};
    float out[BT * 4], G[BT * 4], sa[BT * 4], sb[BT * 4];
    tu_fill_uniform(G, BT * 4, -1, 1, 4);
    graft_rng rng;
    graft_params_zero_grad(&p);
    graft_rng_seed(&rng, 5);
    graft_embeddings_forward(&e, &p, out, ids, types, NB, NT, &rng);
    graft_embeddings_backward(&e, &p, G, ids, types, NB, NT, 1, sa, sb);
    double worst = 0;
    for (int i = 0; i < p.count; i++) {
        float *v = graft_params_value(&p, i);
        const float *g = graft_params_grad(&p, i);
        for (size_t j = 0; j < p.items[i].numel; j++) {
            double l[2];
            float keep = v[j];
            for (int s = 0; s < 2; s++) {
                v[j] = keep + (s ? -FD_H : FD_H);
                graft_rng_seed(&rng, 5);
                graft_embeddings_forward(&e, &p, out, ids, types, NB, NT, &rng);
                l[s] = 0;
                for (int k = 0; k < BT * 4; k++)
                    l[s] += (double)out[k] * G[k];
            }
            v[j] = keep;
            double fd = (l[0] - l[1]) / (2 * FD_H);
            if (i == e.word && j < 4) { /* the padding row */
                assert_true(g[j] == 0.0f);
                continue;
            }
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    TU_CHECK_REL("embeddings vs finite differences", worst, FD_BOUND);
    graft_params_free(&p);
    graft_arena_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_ln_gpt2),        cmocka_unit_test(test_pre_ln_vit),
        cmocka_unit_test(test_pre_ln_vit_dropout), cmocka_unit_test(test_post_ln_bert),
        cmocka_unit_test(test_post_ln_rows),       cmocka_unit_test(test_stop_inside),
        cmocka_unit_test(test_embeddings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
