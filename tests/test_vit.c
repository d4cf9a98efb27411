/* models/vit against PyTorch fixtures (tools/fixtures/vit.py: torchvision's
 * VisionTransformer itself): logits, loss and every trainable gradient for full
 * fine-tuning and partly frozen cases (backward stopping inside the top layer, passing
 * through frozen layers to the class token, head only); stop-backward memory; rebuilding
 * after unfreezing; dropout against finite differences on non-square two-channel images;
 * torchvision's names, order and counts at ViT-B/16; config errors; and a save that the
 * fixture script loads with load_state_dict(strict=True).
 * Tolerance: max |graft - torch| / max |torch| per tensor <= 1e-4 (float32 both sides). */
#include "tests/testutil_model.h"

#include <errno.h>
#include <sys/stat.h>

#include "models/vit/vit.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define WEIGHTS FIXTURES "vit.weights.safetensors"
#define SAVED GRAFT_BUILD_DIR "/tests/saved/"
#define TOL 1e-4

typedef struct {
    graft_st_file file;
    graft_vit_config cfg;
    int batch;
    float *inputs;
    int32_t labels[8];
} fixture;

static int meta_int(const graft_st_file *f, const char *key) {
    const char *v = graft_st_metadata_get(f, key);
    if (!v) fail_msg("fixture metadata %s missing", key);
    return (int)strtol(v, NULL, 10);
}

static void fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    assert_int_equal(graft_st_open(&f->file, FIXTURES "vit.expect.safetensors"), GRAFT_OK);
    const graft_st_file *e = &f->file;
    f->cfg = (graft_vit_config){.n_layer = meta_int(e, "layers"),
                                .n_head = meta_int(e, "heads"),
                                .n_embd = meta_int(e, "hidden"),
                                .mlp_dim = meta_int(e, "mlp_dim"),
                                .patch_size = meta_int(e, "patch"),
                                .channels = meta_int(e, "channels"),
                                .height = meta_int(e, "image"),
                                .width = meta_int(e, "image"),
                                .num_classes = meta_int(e, "classes")};
    f->batch = meta_int(e, "batch");
    assert_true(f->batch <= 8);
    size_t n;
    f->inputs = tu_read_tensor(e, "inputs", &n);
    assert_int_equal(n, (size_t)f->batch * f->cfg.channels * f->cfg.height * f->cfg.width);
    float *labels = tu_read_tensor(e, "labels", &n);
    assert_int_equal(n, (size_t)f->batch);
    for (int b = 0; b < f->batch; b++)
        f->labels[b] = (int32_t)labels[b];
    free(labels);
}

static void fixture_close(fixture *f) {
    graft_st_close(&f->file);
    free(f->inputs);
}

static double rel_err(const fixture *f, const char *name, const float *a, size_t n) {
    return tu_rel_err_tensor(&f->file, name, a, n);
}

/* A model of cfg with the comma-separated globs frozen (NULL: none), built for `batch`
 * images, from the fixture weights (loaded strictly: exactly torchvision's names) or
 * from graft's init. */
static void build(graft_vit *m, const graft_vit_config *cfg, const char *frozen_globs, int batch,
                  const char *weights) {
    assert_int_equal(graft_vit_init(m, cfg), GRAFT_OK);
    tu_freeze(&m->params, frozen_globs);
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_vit_build(m, batch), GRAFT_OK);
    graft_vit_init_weights(m, 5);
    if (weights) {
        graft_load_report r;
        assert_int_equal(
            graft_params_load(&m->params, weights, &(graft_load_options){.strict = 1}, &r),
            GRAFT_OK);
        assert_int_equal(r.matched, m->params.count);
        assert_int_equal(r.missing + r.unexpected, 0);
    }
}

/* One forward/backward on the fixture batch: the logits and loss, the grad-ready hook
 * (every trainable parameter once, in gradient-buffer order), NULL gradients of frozen
 * parameters and every trainable gradient. Returns the worst gradient error. */
static double check_step(graft_vit *m, const fixture *f, const char *label) {
    tu_hook_log h = {0, 0};
    m->params.on_grad_ready = tu_record_ready;
    m->params.on_grad_ready_ctx = &h;
    graft_params_zero_grad(&m->params);
    float loss = graft_vit_forward(m, f->inputs, f->labels, f->batch, 1);
    char what[GRAFT_NAME_MAX + 64];
    snprintf(what, sizeof what, "%s: logits", label);
    TU_CHECK_REL(what, rel_err(f, "logits", m->logits, (size_t)f->batch * f->cfg.num_classes), TOL);
    snprintf(what, sizeof what, "%s: loss", label);
    TU_CHECK_REL(what, rel_err(f, "loss", &loss, 1), TOL);
    assert_int_equal(m->counted, f->batch);
    graft_vit_backward(m, 1.0f);
    assert_int_equal(h.calls, (size_t)tu_count_trainable(&m->params));
    assert_int_equal(h.next, m->params.n_grads);
    const char *worst_name;
    double worst = tu_worst_grad_err(&m->params, &f->file, 0, &worst_name);
    snprintf(what, sizeof what, "%s: worst grad (%s)", label, worst_name);
    TU_CHECK_REL(what, worst, TOL);
    m->params.on_grad_ready = NULL;
    return worst;
}

static void test_full_fine_tune(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_vit m;
    build(&m, &f.cfg, NULL, f.batch, WEIGHTS);
    assert_int_equal(m.seq_len, 17);
    assert_int_equal(m.lowest_unit, 0);
    assert_int_equal(m.first_kept, 0);
    check_step(&m, &f, "full");
    /* eval mode is the same network without dropout */
    float loss = graft_vit_forward(&m, f.inputs, f.labels, f.batch, 0);
    TU_CHECK_REL("eval loss", rel_err(&f, "loss", &loss, 1), TOL);
    graft_vit_free(&m);
    fixture_close(&f);
}

/* Each frozen case of the fixture, then one AdamW step: frozen values must not move. */
static void test_partly_frozen(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    const struct {
        const char *name;
        int lowest_unit, first_kept;
    } cases[] = {{"upper", 1 + 6 + 4, 1}, {"midfrozen", 0, 0}, {"head", 1 + 12 + 1, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char key[64];
        snprintf(key, sizeof key, "%s.frozen", cases[c].name);
        const char *globs = graft_st_metadata_get(&f.file, key);
        assert_non_null(globs);
        printf(" case %s (frozen: %s)\n", cases[c].name, globs);
        graft_vit m;
        build(&m, &f.cfg, globs, f.batch, WEIGHTS);
        assert_int_equal(m.lowest_unit, cases[c].lowest_unit);
        assert_int_equal(m.first_kept, cases[c].first_kept);
        check_step(&m, &f, cases[c].name);
        tu_adamw_moves_trainable_only(&m.params);
        graft_vit_free(&m);
    }
    fixture_close(&f);
}

/* Frozen layers below the lowest trainable one run forward only in one shared set of
 * buffers, so activation memory drops with each frozen layer; after unfreezing and
 * building again the values stay and the gradients are the full fine-tune's. */
static void test_stop_backward_memory(void **state) {
    (void)state;
    graft_vit_config cfg = {.n_layer = 6,
                            .n_head = 4,
                            .n_embd = 64,
                            .mlp_dim = 256,
                            .patch_size = 4,
                            .channels = 3,
                            .height = 32,
                            .width = 32,
                            .num_classes = 10,
                            .dropout = 0.1f};
    const char *frozen[3] = {NULL,
                             "class_token,conv_proj.*,encoder.pos_embedding,"
                             "encoder.layers.encoder_layer_[0-4].*",
                             "class_token,conv_proj.*,encoder.*"};
    size_t arena[3];
    for (int i = 0; i < 3; i++) {
        graft_vit m;
        build(&m, &cfg, frozen[i], 16, NULL);
        arena[i] = m.arena.capacity;
        graft_vit_free(&m);
    }
    printf("  activations, ViT 6x64 on 3x32x32 (65 tokens), batch 16: full %.1f MB, top layer "
           "%.1f MB, head only %.1f MB\n",
           arena[0] / 1e6, arena[1] / 1e6, arena[2] / 1e6);
    assert_true(arena[1] * 2 < arena[0]);
    assert_true(arena[2] < arena[1]);

    fixture f;
    fixture_open(&f);
    graft_vit m;
    build(&m, &f.cfg, graft_st_metadata_get(&f.file, "head.frozen"), f.batch, WEIGHTS);
    for (int l = 0; l < f.cfg.n_layer; l++)
        assert_ptr_equal(m.acts[l].res3, m.embd); /* in place, nothing kept */
    assert_null(m.dres);
    size_t small = m.arena.capacity;
    check_step(&m, &f, "head only");
    assert_int_equal(graft_params_unfreeze(&m.params, "*", NULL, NULL), GRAFT_OK);
    assert_int_equal(graft_vit_build(&m, f.batch), GRAFT_OK);
    printf("  fixture model: activation memory %zu -> %zu bytes after unfreezing\n", small,
           m.arena.capacity);
    assert_true(m.arena.capacity > small);
    check_step(&m, &f, "unfrozen");
    graft_vit_free(&m);
    fixture_close(&f);
}

/* The training loss with dropout_rng reseeded to 77: the same masks every time. */
static double seeded_loss(graft_vit *m, const float *x, const int32_t *y, int B) {
    graft_rng_seed(&m->dropout_rng, 77);
    return graft_vit_forward(m, x, y, B, 1);
}

/* Worst relative error of the gradients at a few entries of each parameter against
 * central differences of the training loss with the same dropout masks. */
static double dropout_fd(graft_vit *m, const float *x, const int32_t *y, int B) {
    double worst = 0;
    for (int idx = 0; idx < m->params.count; idx++) {
        float *v = graft_params_value(&m->params, idx);
        const float *g = graft_params_grad(&m->params, idx);
        if (!g) continue;
        size_t numel = m->params.items[idx].numel;
        for (size_t j = 0; j < numel; j += numel / 3 + 1) {
            const float h = 1e-2f;
            float keep = v[j];
            v[j] = keep + h;
            double lp = seeded_loss(m, x, y, B);
            v[j] = keep - h;
            double lm = seeded_loss(m, x, y, B);
            v[j] = keep;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    return worst;
}

/* Dropout (embedding, attention probabilities, attention output, MLP hidden and output)
 * is seeded, active only in training, and its backward matches finite differences when
 * the same masks are drawn again: on 2x8x12 images (non-square, two channels: 2x3
 * patches), everything trainable and then only the top layer's attention up. */
static void test_dropout_finite_differences(void **state) {
    (void)state;
    enum { B = 3 };
    graft_vit_config cfg = {.n_layer = 2,
                            .n_head = 2,
                            .n_embd = 8,
                            .mlp_dim = 12,
                            .patch_size = 4,
                            .channels = 2,
                            .height = 8,
                            .width = 12,
                            .num_classes = 3,
                            .dropout = 0.1f};
    float x[B * 2 * 8 * 12];
    tu_fill_uniform(x, sizeof x / sizeof x[0], -1, 1, 3);
    const int32_t y[B] = {0, 2, 1};
    const char *frozen[2] = {NULL, "class_token,conv_proj.*,encoder.pos_embedding,"
                                   "encoder.layers.encoder_layer_0.*,"
                                   "encoder.layers.encoder_layer_1.ln_1.*"};
    for (int i = 0; i < 2; i++) {
        graft_vit m;
        build(&m, &cfg, frozen[i], B, NULL);
        assert_int_equal(m.seq_len, 7);
        /* larger weights than the init (zero head, zero class token) so every path matters */
        tu_fill_uniform(m.params.values, m.params.n_values, -0.5f, 0.5f, 9);
        float train1 = (float)seeded_loss(&m, x, y, B);
        float eval1 = graft_vit_forward(&m, x, y, B, 0);
        float eval2 = graft_vit_forward(&m, x, y, B, 0);
        assert_true(eval1 == eval2);
        assert_true(train1 != eval1);
        graft_params_zero_grad(&m.params);
        assert_true((float)seeded_loss(&m, x, y, B) == train1);
        graft_vit_backward(&m, 1.0f);
        TU_CHECK_REL(i ? "dropout, top layer: gradients vs FD" : "dropout: gradients vs FD",
                     dropout_fd(&m, x, y, B), 2e-2);
        graft_vit_free(&m);
    }
}

/* torchvision's vit_b_16 state_dict: 152 tensors, 86,567,656 values, in this order. */
static void test_names_and_counts(void **state) {
    (void)state;
    graft_vit m;
    graft_vit_config b16 = {.n_layer = 12,
                            .n_head = 12,
                            .n_embd = 768,
                            .mlp_dim = 3072,
                            .patch_size = 16,
                            .channels = 3,
                            .height = 224,
                            .width = 224,
                            .num_classes = 1000};
    assert_int_equal(graft_vit_init(&m, &b16), GRAFT_OK);
    assert_int_equal(m.params.count, 152);
    assert_int_equal(graft_params_numel(&m.params, 0), 86567656);
    const char *order[] = {"class_token",
                           "conv_proj.weight",
                           "conv_proj.bias",
                           "encoder.pos_embedding",
                           "encoder.layers.encoder_layer_0.ln_1.weight",
                           "encoder.layers.encoder_layer_0.ln_1.bias",
                           "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                           "encoder.layers.encoder_layer_0.self_attention.in_proj_bias",
                           "encoder.layers.encoder_layer_0.self_attention.out_proj.weight",
                           "encoder.layers.encoder_layer_0.self_attention.out_proj.bias",
                           "encoder.layers.encoder_layer_0.ln_2.weight",
                           "encoder.layers.encoder_layer_0.ln_2.bias",
                           "encoder.layers.encoder_layer_0.mlp.0.weight",
                           "encoder.layers.encoder_layer_0.mlp.0.bias",
                           "encoder.layers.encoder_layer_0.mlp.3.weight",
                           "encoder.layers.encoder_layer_0.mlp.3.bias"};
    for (int i = 0; i < (int)(sizeof order / sizeof order[0]); i++)
        assert_string_equal(m.params.items[i].name, order[i]);
    assert_string_equal(m.params.items[148].name, "encoder.ln.weight");
    assert_string_equal(m.params.items[150].name, "heads.head.weight");
    const graft_param *conv = &m.params.items[1], *pos = &m.params.items[3];
    assert_int_equal(conv->ndim, 4);
    assert_int_equal(conv->shape[1], 3);
    assert_int_equal(conv->shape[3], 16);
    assert_int_equal(pos->shape[1], 197);
    graft_vit_free(&m);

    char buf[GRAFT_NAME_MAX];
    assert_string_equal(
        graft_vit_map_name("encoder.layers.encoder_layer_3.mlp.linear_1.weight", buf, sizeof buf),
        "encoder.layers.encoder_layer_3.mlp.0.weight");
    assert_string_equal(
        graft_vit_map_name("encoder.layers.encoder_layer_0.mlp.linear_2.bias", buf, sizeof buf),
        "encoder.layers.encoder_layer_0.mlp.3.bias");
    assert_string_equal(graft_vit_map_name("heads.head.bias", buf, sizeof buf), "heads.head.bias");
}

/* torchvision's init: zero head and class token, LayerNorm 1/0, conv_proj within +-2 and
 * of std sqrt(1 / fan_in), pos_embedding of std 0.02. */
static void test_init(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_vit m;
    build(&m, &f.cfg, NULL, 1, NULL);
    const graft_params *p = &m.params;
    for (size_t i = 0; i < p->items[m.head.weight].numel; i++)
        assert_true(graft_params_value(p, m.head.weight)[i] == 0.0f);
    assert_true(graft_params_value(p, m.class_token)[3] == 0.0f);
    assert_true(graft_params_value(p, m.ln_w)[0] == 1.0f && graft_params_value(p, m.ln_b)[0] == 0);
    const int idx[2] = {m.conv_proj.weight, m.pos_embedding};
    const double want[2] = {sqrt(1.0 / 48), 0.02};
    for (int k = 0; k < 2; k++) {
        const float *w = graft_params_value(p, idx[k]);
        const size_t n = p->items[idx[k]].numel;
        double sq = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(fabsf(w[i]) <= 2.0f);
            sq += (double)w[i] * w[i];
        }
        printf("  %s: std %.4f (want %.4f)\n", p->items[idx[k]].name, sqrt(sq / n), want[k]);
        assert_true(fabs(sqrt(sq / n) / want[k] - 1) < 0.1);
    }
    graft_vit_free(&m);
    fixture_close(&f);
}

static graft_status create(const graft_model_input *in, int patch, int n_head, graft_model *m) {
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup("vit");
    cfg.model.patch_size = patch;
    cfg.model.n_layer = 2;
    cfg.model.n_head = n_head;
    cfg.model.n_embd = 32;
    graft_status st = graft_model_create(m, &cfg, in);
    graft_config_free(&cfg);
    return st;
}

/* Through graft_model_create: the interface, the defaults, one error per bad input. */
static void test_create_and_errors(void **state) {
    (void)state;
    graft_model m;
    const graft_model_input fmnist = {.channels = 1, .height = 28, .width = 28, .num_classes = 10};
    assert_int_equal(create(&fmnist, 7, 2, &m), GRAFT_OK);
    assert_string_equal(m.iface.name, "vit");
    assert_string_equal(m.iface.head, "heads.head");
    assert_int_equal(m.task, GRAFT_TASK_CLASSIFY);
    assert_int_equal(m.num_outputs, 10);
    const graft_vit *v = m.self;
    assert_int_equal(v->seq_len, 17);
    assert_int_equal(v->cfg.mlp_dim, 128); /* 0 = 4 x n_embd */
    graft_model_free(&m);

    assert_int_equal(create(&fmnist, 16, 2, &m), GRAFT_ERR_CONFIG); /* 28 % 16 */
    assert_int_equal(create(&fmnist, 4, 5, &m), GRAFT_ERR_CONFIG);  /* 32 % 5 heads */
    const graft_model_input tokens = {.vocab_size = 100, .seq_len = 16, .num_classes = 2};
    assert_int_equal(create(&tokens, 4, 2, &m), GRAFT_ERR_CONFIG);
    const graft_model_input unlabeled = {.channels = 3, .height = 32, .width = 32};
    assert_int_equal(create(&unlabeled, 4, 2, &m), GRAFT_ERR_CONFIG);
    const graft_model_input wide = {.channels = 3, .height = 8, .width = 24, .num_classes = 2};
    assert_int_equal(create(&wide, 8, 2, &m), GRAFT_OK);
    assert_int_equal(((const graft_vit *)m.self)->seq_len, 4);
    graft_model_free(&m);

    /* the defaults are ViT-B/16 */
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup("vit");
    const graft_model_input imagenet = {
        .channels = 3, .height = 224, .width = 224, .num_classes = 1000};
    assert_int_equal(graft_model_create(&m, &cfg, &imagenet), GRAFT_OK);
    assert_int_equal(graft_params_numel(m.params, 0), 86567656);
    graft_model_free(&m);
    graft_config_free(&cfg);
}

/* A few AdamW steps with the lower layer frozen, then the weights and graft's eval
 * logits on the fixture inputs for `tools/make_fixtures.py --check-saved`. */
static void test_save_for_pytorch(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    graft_vit m;
    build(&m, &f.cfg, "encoder.layers.encoder_layer_0.*", f.batch, WEIGHTS);
    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    graft_optim opt;
    assert_int_equal(graft_optim_init(&opt, &ocfg, &m.params), GRAFT_OK);
    float first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        graft_params_zero_grad(&m.params);
        last = graft_vit_forward(&m, f.inputs, f.labels, f.batch, 1);
        if (step == 0) first = last;
        graft_vit_backward(&m, 1.0f);
        assert_int_equal(graft_optim_step(&opt, &m.params, 1e-2f), GRAFT_OK);
    }
    printf("  loss %.4f -> %.4f after 20 AdamW steps\n", (double)first, (double)last);
    assert_true(last < 0.5f * first);
    graft_optim_free(&opt);

    if (mkdir(GRAFT_BUILD_DIR "/tests", 0755) != 0) assert_int_equal(errno, EEXIST);
    if (mkdir(SAVED, 0755) != 0) assert_int_equal(errno, EEXIST);
    assert_int_equal(graft_params_save(&m.params, SAVED "vit_trained.safetensors"), GRAFT_OK);
    graft_vit_forward(&m, f.inputs, NULL, f.batch, 0);
    graft_st_writer w;
    graft_st_writer_init(&w);
    const int64_t in_shape[2] = {f.batch, f.cfg.channels * f.cfg.height * f.cfg.width};
    const int64_t out_shape[2] = {f.batch, f.cfg.num_classes}, one[1] = {1};
    const int32_t n_head = f.cfg.n_head;
    assert_int_equal(graft_st_writer_add(&w, "inputs", GRAFT_DTYPE_F32, 2, in_shape, f.inputs),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "n_head", GRAFT_DTYPE_I32, 1, one, &n_head), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "logits", GRAFT_DTYPE_F32, 2, out_shape, m.logits),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&w, SAVED "vit_trained.check.safetensors"), GRAFT_OK);
    graft_st_writer_free(&w);
    graft_vit_free(&m);
    fixture_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_fine_tune),
        cmocka_unit_test(test_partly_frozen),
        cmocka_unit_test(test_stop_backward_memory),
        cmocka_unit_test(test_dropout_finite_differences),
        cmocka_unit_test(test_names_and_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_create_and_errors),
        cmocka_unit_test(test_save_for_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
