/* models/gpt2 against PyTorch fixtures (tools/fixtures/gpt2.py: a copy of Hugging Face's
 * GPT2LMHeadModel): logits, loss and every trainable gradient for full fine-tuning and
 * partly frozen cases, the tied lm_head gradient, the hub file layout, stop-backward,
 * rebuilding after unfreezing, dropout, config errors, and a save that the fixture
 * script loads with load_state_dict(strict=True).
 * Tolerance: max |graft - torch| / max |torch| per tensor <= 1e-4 (float32 both sides). */
#include "tests/testutil_model.h"

#include <sys/stat.h>

#include "models/gpt2/gpt2.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"
#include "runtime/optim/optim.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define WEIGHTS FIXTURES "gpt2.weights.safetensors"
#define TOL 1e-4

enum { L = 2, NH = 4, C = 32, NPOS = 32, V = 64, B = 2, T = 16 };

static const graft_gpt2_config fixture_cfg = {
    .n_layer = L, .n_head = NH, .n_embd = C, .n_positions = NPOS, .vocab_size = V, .seq_len = T};

typedef struct {
    graft_st_file file;
    int32_t tokens[B * T], labels[B * T];
} fixture;

static void fixture_open(fixture *f) {
    assert_int_equal(graft_st_open(&f->file, FIXTURES "gpt2.expect.safetensors"), GRAFT_OK);
    float buf[B * T];
    const char *names[2] = {"tokens", "labels"};
    int32_t *dst[2] = {f->tokens, f->labels};
    for (int i = 0; i < 2; i++) {
        const graft_st_tensor *t = graft_st_find(&f->file, names[i]);
        assert_non_null(t);
        assert_int_equal(graft_st_read_f32(t, buf, B * T), GRAFT_OK);
        for (int j = 0; j < B * T; j++)
            dst[i][j] = (int32_t)buf[j];
    }
}

/* max |a - b| / max |b| against the fixture tensor `name`. */
static double rel_err(const fixture *f, const char *name, const float *a, size_t n) {
    size_t numel;
    float *b = tu_read_tensor(&f->file, name, &numel);
    assert_int_equal(numel, n);
    double e = tu_rel_err_floor(a, b, n, 0);
    free(b);
    return e;
}

/* The fixture model with the comma-separated globs frozen (NULL: none). */
static void build(graft_gpt2 *m, const graft_gpt2_config *cfg, const char *frozen_globs,
                  const char *weights) {
    assert_int_equal(graft_gpt2_init(m, cfg), GRAFT_OK);
    tu_freeze(&m->params, frozen_globs);
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(m, B), GRAFT_OK);
    graft_gpt2_init_weights(m, 5);
    if (weights) {
        graft_load_options opt = {.strict = 1, .map_name = graft_gpt2_map_name};
        graft_load_report r;
        assert_int_equal(graft_params_load(&m->params, weights, &opt, &r), GRAFT_OK);
        assert_int_equal(r.matched, m->params.count);
    }
}

/* The grad-ready hook must see every trainable parameter once, in gradient-buffer order. */

static int count_trainable(const graft_params *p) {
    int n = 0;
    for (int i = 0; i < p->count; i++)
        n += p->items[i].trainable;
    return n;
}

/* One forward/backward on the fixture batch; checks the loss, the hook, NULL grads of
 * frozen parameters and every trainable gradient. Returns the worst gradient error. */
static double check_step(graft_gpt2 *m, const fixture *f, const char *label) {
    tu_hook_log h = {0, 0};
    m->params.on_grad_ready = tu_record_ready;
    m->params.on_grad_ready_ctx = &h;
    graft_params_zero_grad(&m->params);
    float loss = graft_gpt2_forward(m, f->tokens, f->labels, B, 1);
    TU_CHECK_REL("loss", rel_err(f, "loss", &loss, 1), TOL);
    assert_int_equal(m->counted, B * (T - 1) - 1);
    graft_gpt2_backward(m, 1.0f);
    assert_int_equal(h.calls, (size_t)count_trainable(&m->params));
    assert_int_equal(h.next, m->params.n_grads);
    const char *worst_name;
    double worst = tu_worst_grad_err(&m->params, &f->file, 0, &worst_name);
    char what[GRAFT_NAME_MAX + 64];
    snprintf(what, sizeof what, "%s: worst grad (%s)", label, worst_name);
    TU_CHECK_REL(what, worst, TOL);
    m->params.on_grad_ready = NULL;
    return worst;
}

static void test_full_fine_tune(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2 m;
    build(&m, &fixture_cfg, NULL, WEIGHTS);
    assert_int_equal(m.lowest_unit, 0);
    assert_int_equal(m.first_kept, 0);
    graft_gpt2_forward(&m, f.tokens, f.labels, B, 1);
    TU_CHECK_REL("logits", rel_err(&f, "logits", m.logits, (size_t)B * T * V), TOL);
    check_step(&m, &f, "full");
    /* the tied weight: embedding part + lm_head part */
    TU_CHECK_REL("tied wte/lm_head grad",
                 rel_err(&f, "grad.transformer.wte.weight", graft_params_grad(&m.params, m.wte),
                         (size_t)V * C),
                 TOL);
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

/* Each fixture case, then one AdamW step: frozen values must not move. */
static void test_partly_frozen(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    const char *cases[] = {"frozen", "midfrozen", "mlponly"};
    for (int c = 0; c < 3; c++) {
        char key[64];
        snprintf(key, sizeof key, "%s.frozen", cases[c]);
        const char *globs = graft_st_metadata_get(&f.file, key);
        assert_non_null(globs);
        printf(" case %s (frozen: %s)\n", cases[c], globs);
        graft_gpt2 m;
        build(&m, &fixture_cfg, globs, WEIGHTS);
        check_step(&m, &f, cases[c]);
        float *before = tu_floats(m.params.n_values);
        memcpy(before, m.params.values, m.params.n_values * sizeof(float));
        graft_optim_config ocfg;
        graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
        graft_optim opt;
        assert_int_equal(graft_optim_init(&opt, &ocfg, &m.params), GRAFT_OK);
        assert_int_equal(graft_optim_step(&opt, &m.params, 1e-2f), GRAFT_OK);
        for (int i = 0; i < m.params.count; i++) {
            const graft_param *t = &m.params.items[i];
            int same = memcmp(before + t->offset, m.params.values + t->offset,
                              t->numel * sizeof(float)) == 0;
            assert_int_equal(same, !t->trainable);
        }
        graft_optim_free(&opt);
        free(before);
        graft_gpt2_free(&m);
    }
    graft_st_close(&f.file);
}

/* Only the tied weight trainable: backward runs through every frozen block to reach the
 * embedding, and wte's gradient still sums both parts. */
static void test_tied_weight_alone(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2 m;
    assert_int_equal(graft_gpt2_init(&m, &fixture_cfg), GRAFT_OK);
    assert_int_equal(graft_params_set_trainable(&m.params, "*", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_set_trainable(&m.params, "transformer.wte.weight", 1, NULL),
                     GRAFT_OK);
    assert_int_equal(graft_params_finalize(&m.params), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(&m, B), GRAFT_OK);
    graft_load_options opt = {.strict = 1};
    assert_int_equal(graft_params_load(&m.params, WEIGHTS, &opt, NULL), GRAFT_OK);
    check_step(&m, &f, "wte only");
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

/* The hub's layout: bare names, no lm_head.weight, causal-mask buffers skipped. */
static void test_hub_layout(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2 m;
    build(&m, &fixture_cfg, NULL, NULL);
    graft_load_options opt = {.strict = 1, .map_name = graft_gpt2_map_name};
    graft_load_report r;
    assert_int_equal(
        graft_params_load(&m.params, FIXTURES "gpt2_hub.weights.safetensors", &opt, &r), GRAFT_OK);
    assert_int_equal(r.matched, m.params.count);
    assert_int_equal(r.skipped, 2 * L);
    assert_int_equal(r.missing + r.unexpected, 0);
    graft_gpt2_forward(&m, f.tokens, f.labels, B, 0);
    TU_CHECK_REL("hub layout logits", rel_err(&f, "logits", m.logits, (size_t)B * T * V), TOL);

    char buf[GRAFT_NAME_MAX];
    assert_string_equal(graft_gpt2_map_name("wte.weight", buf, sizeof buf),
                        "transformer.wte.weight");
    assert_string_equal(graft_gpt2_map_name("h.11.mlp.c_fc.bias", buf, sizeof buf),
                        "transformer.h.11.mlp.c_fc.bias");
    assert_string_equal(graft_gpt2_map_name("h.0.attn.c_attn.bias", buf, sizeof buf),
                        "transformer.h.0.attn.c_attn.bias");
    assert_null(graft_gpt2_map_name("h.3.attn.bias", buf, sizeof buf));
    assert_null(graft_gpt2_map_name("transformer.h.3.attn.masked_bias", buf, sizeof buf));
    assert_string_equal(graft_gpt2_map_name("lm_head.weight", buf, sizeof buf), "lm_head.weight");
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

/* Gradual unfreezing: build frozen, then unfreeze everything and build again; values
 * stay and the gradients are the full fine-tune's. */
static void test_rebuild_after_unfreeze(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2 m;
    build(&m, &fixture_cfg, "transformer.wte.weight,transformer.wpe.weight,transformer.h.*",
          WEIGHTS);
    assert_int_equal(m.first_kept, L);
    size_t small = m.arena.capacity;
    check_step(&m, &f, "ln_f only");
    assert_int_equal(graft_params_unfreeze(&m.params, "*", NULL, NULL), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(&m, B), GRAFT_OK);
    printf("  activation memory %zu -> %zu bytes\n", small, m.arena.capacity);
    assert_true(m.arena.capacity > small);
    check_step(&m, &f, "unfrozen");
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

/* Finite differences of the float loss on a few entries per kind of parameter, with a
 * longer sequence than the fixtures (T 80 crosses the attention op's 64-row blocks). */
static void test_finite_differences(void **state) {
    (void)state;
    graft_gpt2_config cfg = {
        .n_layer = 2, .n_head = 2, .n_embd = 8, .n_positions = 96, .vocab_size = 11, .seq_len = 80};
    graft_gpt2 m;
    assert_int_equal(graft_gpt2_init(&m, &cfg), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&m.params), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(&m, 2), GRAFT_OK);
    graft_gpt2_init_weights(&m, 3);
    /* larger weights than the 0.02 init so every path matters */
    tu_fill_uniform(m.params.values, m.params.n_values, -0.5f, 0.5f, 9);
    int32_t tokens[2 * 80], labels[2 * 80];
    graft_rng rng;
    graft_rng_seed(&rng, 4);
    for (int i = 0; i < 2 * 80; i++)
        tokens[i] = (int32_t)graft_rng_below(&rng, 11);
    for (int i = 0; i < 2 * 80; i++)
        labels[i] = i % 80 == 79 ? -1 : tokens[i + 1];
    graft_params_zero_grad(&m.params);
    graft_gpt2_forward(&m, tokens, labels, 2, 1);
    graft_gpt2_backward(&m, 1.0f);
    const char *names[] = {"transformer.wte.weight",
                           "transformer.wpe.weight",
                           "transformer.h.0.ln_1.weight",
                           "transformer.h.0.attn.c_attn.weight",
                           "transformer.h.1.attn.c_proj.bias",
                           "transformer.h.1.mlp.c_fc.weight",
                           "transformer.ln_f.bias"};
    double worst = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int idx = graft_params_find(&m.params, names[k]);
        assert_true(idx >= 0);
        float *v = graft_params_value(&m.params, idx);
        const float *g = graft_params_grad(&m.params, idx);
        size_t numel = m.params.items[idx].numel;
        for (size_t j = 0; j < numel; j += numel / 5 + 1) {
            const float h = 1e-2f;
            float keep = v[j];
            v[j] = keep + h;
            double lp = graft_gpt2_forward(&m, tokens, labels, 2, 0);
            v[j] = keep - h;
            double lm = graft_gpt2_forward(&m, tokens, labels, 2, 0);
            v[j] = keep;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    TU_CHECK_REL("gradients vs finite differences (T 80)", worst, 2e-2);
    graft_gpt2_free(&m);
}

/* The fraction of block l's attention probabilities that the last training forward
 * dropped, among those a query could see (causal: keys <= t). */
static double attention_dropped(const graft_gpt2 *m, int l) {
    const uint64_t *keep = m->acts[l].att_keep;
    assert_non_null(keep);
    const size_t words = graft_attention_keep_words(T);
    size_t drawn = 0, kept = 0;
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        int t = (int)(row % T);
        for (int j = 0; j <= t; j++)
            kept += (keep[row * words + (size_t)j / 64] >> (j % 64)) & 1;
        drawn += (size_t)t + 1;
    }
    return 1.0 - (double)kept / (double)drawn;
}

/* Worst relative error of the gradients at a few entries of each named parameter
 * against central differences of the training loss with the same dropout masks
 * (dropout_rng reseeded with 77 for every forward, as before m's last backward). */
static double dropout_fd(graft_gpt2 *m, const fixture *f, const char *const *names, size_t count) {
    double worst = 0;
    for (size_t k = 0; k < count; k++) {
        int idx = graft_params_find(&m->params, names[k]);
        assert_true(idx >= 0);
        float *v = graft_params_value(&m->params, idx);
        const float *g = graft_params_grad(&m->params, idx);
        assert_non_null(g);
        size_t numel = m->params.items[idx].numel;
        for (size_t j = 0; j < numel; j += numel / 6 + 1) {
            const float h = 1e-2f;
            float keep = v[j];
            v[j] = keep + h;
            graft_rng_seed(&m->dropout_rng, 77);
            double lp = graft_gpt2_forward(m, f->tokens, f->labels, B, 1);
            v[j] = keep - h;
            graft_rng_seed(&m->dropout_rng, 77);
            double lm = graft_gpt2_forward(m, f->tokens, f->labels, B, 1);
            v[j] = keep;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    return worst;
}

/* Dropout (embeddings, residual branches and attention probabilities) is seeded, active
 * only in training, and its backward matches finite differences when the same masks are
 * drawn again (same seed), at entries below, at and above the attention dropouts; also
 * with block 0 frozen, whose attention dropout then keeps no bits. */
static void test_dropout(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2_config cfg = fixture_cfg;
    cfg.dropout = 0.1f;
    graft_gpt2 m;
    build(&m, &cfg, NULL, WEIGHTS);
    graft_rng_seed(&m.dropout_rng, 77);
    float train1 = graft_gpt2_forward(&m, f.tokens, f.labels, B, 1);
    float eval1 = graft_gpt2_forward(&m, f.tokens, f.labels, B, 0);
    float eval2 = graft_gpt2_forward(&m, f.tokens, f.labels, B, 0);
    assert_true(eval1 == eval2);
    assert_true(train1 != eval1);
    TU_CHECK_REL("eval loss with dropout configured", rel_err(&f, "loss", &eval1, 1), TOL);
    graft_params_zero_grad(&m.params);
    graft_rng_seed(&m.dropout_rng, 77);
    float train2 = graft_gpt2_forward(&m, f.tokens, f.labels, B, 1);
    assert_true(train1 == train2);
    for (int l = 0; l < L; l++) { /* B*NH*T(T+1)/2 = 1088 draws: p = 0.1 +- 0.009 */
        double dropped = attention_dropped(&m, l);
        printf("  block %d: %.3f of the attention probabilities dropped\n", l, dropped);
        assert_true(dropped > 0.05 && dropped < 0.15);
    }
    graft_gpt2_backward(&m, 1.0f);
    const char *const names[] = {"transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
                                 "transformer.h.0.attn.c_attn.bias",
                                 "transformer.h.0.mlp.c_fc.bias",
                                 "transformer.h.1.attn.c_attn.weight"};
    TU_CHECK_REL("dropout gradients vs finite differences", dropout_fd(&m, &f, names, 5), 2e-2);
    graft_gpt2_free(&m);

    build(&m, &cfg, "transformer.wte.weight,transformer.wpe.weight,transformer.h.0.*", WEIGHTS);
    assert_null(m.acts[0].att_keep);
    graft_params_zero_grad(&m.params);
    graft_rng_seed(&m.dropout_rng, 77);
    float train3 = graft_gpt2_forward(&m, f.tokens, f.labels, B, 1);
    assert_true(train3 == train1); /* the same masks, whether kept or not */
    graft_gpt2_backward(&m, 1.0f);
    const char *const upper[] = {"transformer.h.1.attn.c_attn.weight",
                                 "transformer.h.1.attn.c_attn.bias", "transformer.ln_f.weight"};
    TU_CHECK_REL("dropout, block 0 frozen: gradients vs FD", dropout_fd(&m, &f, upper, 3), 2e-2);
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

static graft_status create(const graft_config *cfg, const graft_model_input *in) {
    graft_model model;
    memset(&model, 0, sizeof model);
    graft_status st = graft_gpt2_create(&model, cfg, in);
    graft_model_free(&model);
    return st;
}

static void test_config_errors(void **state) {
    (void)state;
    graft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.model.arch = "gpt2";
    cfg.model.n_layer = 2;
    cfg.model.n_head = 4;
    cfg.model.n_embd = 32;
    cfg.model.n_positions = 32;
    graft_model_input in = {.vocab_size = 64, .seq_len = 16};
    graft_model model;
    assert_int_equal(graft_model_create(&model, &cfg, &in), GRAFT_OK);
    assert_string_equal(model.iface.name, "gpt2");
    assert_null(model.iface.head);
    assert_int_equal(model.task, GRAFT_TASK_LANGUAGE);
    assert_int_equal(model.num_outputs, 64);
    assert_int_equal(graft_params_find_alias(model.params, "lm_head.weight"),
                     graft_params_find(model.params, "transformer.wte.weight"));
    graft_model_free(&model);

    in.seq_len = 33; /* longer than n_positions */
    assert_int_equal(create(&cfg, &in), GRAFT_ERR_CONFIG);
    in.seq_len = 16;
    cfg.model.n_head = 5; /* 32 % 5 */
    assert_int_equal(create(&cfg, &in), GRAFT_ERR_CONFIG);
    cfg.model.n_head = 4;
    cfg.model.vocab_size = 63; /* the dataset has 64: its ids would not fit */
    assert_int_equal(create(&cfg, &in), GRAFT_ERR_CONFIG);
    cfg.model.vocab_size = 65; /* a larger vocabulary holds them */
    assert_int_equal(create(&cfg, &in), GRAFT_OK);
    cfg.model.vocab_size = 64;
    assert_int_equal(create(&cfg, &in), GRAFT_OK);
    graft_model_input image = {.channels = 3, .height = 8, .width = 8, .num_classes = 10};
    assert_int_equal(create(&cfg, &image), GRAFT_ERR_CONFIG);
    cfg.model.head_num_classes = 3; /* gpt2 has no replaceable classifier */
    assert_int_equal(graft_model_create(&model, &cfg, &in), GRAFT_ERR_CONFIG);
    cfg.model.head_num_classes = 0;
    cfg.model.n_layer = cfg.model.n_head = cfg.model.n_embd = cfg.model.n_positions = 0;
    in.seq_len = 1025; /* the GPT-2 small default has 1024 positions */
    assert_int_equal(create(&cfg, &in), GRAFT_ERR_CONFIG);
}

/* A few AdamW steps, then save for `tools/make_fixtures.py --check-saved`: the weights
 * (lm_head.weight included as a copy) and graft's logits on the fixture tokens. */
static void test_save_for_pytorch(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_gpt2 m;
    build(&m, &fixture_cfg, "transformer.h.0.*", WEIGHTS);
    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    graft_optim opt;
    assert_int_equal(graft_optim_init(&opt, &ocfg, &m.params), GRAFT_OK);
    float first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        graft_params_zero_grad(&m.params);
        last = graft_gpt2_forward(&m, f.tokens, f.labels, B, 1);
        if (step == 0) first = last;
        graft_gpt2_backward(&m, 1.0f);
        assert_int_equal(graft_optim_step(&opt, &m.params, 1e-2f), GRAFT_OK);
    }
    printf("  loss %.4f -> %.4f after 20 AdamW steps\n", (double)first, (double)last);
    assert_true(last < 0.5f * first);
    graft_optim_free(&opt);

    mkdir(GRAFT_BUILD_DIR "/tests", 0777);
    mkdir(GRAFT_BUILD_DIR "/tests/saved", 0777);
    const char *path = GRAFT_BUILD_DIR "/tests/saved/gpt2_trained.safetensors";
    assert_int_equal(graft_params_save(&m.params, path), GRAFT_OK);
    graft_st_file saved;
    assert_int_equal(graft_st_open(&saved, path), GRAFT_OK);
    const graft_st_tensor *head = graft_st_find(&saved, "lm_head.weight");
    assert_non_null(head);
    assert_memory_equal(head->data, graft_params_value(&m.params, m.wte), (size_t)V * C * 4);
    graft_st_close(&saved);

    graft_gpt2_forward(&m, f.tokens, NULL, B, 0);
    graft_st_writer w;
    graft_st_writer_init(&w);
    int64_t tok_shape[2] = {B, T}, logit_shape[2] = {B * T, V}, one[1] = {1};
    int32_t n_head = NH;
    assert_int_equal(graft_st_writer_add(&w, "tokens", GRAFT_DTYPE_I32, 2, tok_shape, f.tokens),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "n_head", GRAFT_DTYPE_I32, 1, one, &n_head), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "logits", GRAFT_DTYPE_F32, 2, logit_shape, m.logits),
                     GRAFT_OK);
    assert_int_equal(
        graft_st_writer_save(&w, GRAFT_BUILD_DIR "/tests/saved/gpt2_trained.check.safetensors"),
        GRAFT_OK);
    graft_st_writer_free(&w);
    graft_gpt2_free(&m);
    graft_st_close(&f.file);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_fine_tune),
        cmocka_unit_test(test_partly_frozen),
        cmocka_unit_test(test_tied_weight_alone),
        cmocka_unit_test(test_hub_layout),
        cmocka_unit_test(test_rebuild_after_unfreeze),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_save_for_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
