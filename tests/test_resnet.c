/* models/resnet against PyTorch fixtures (tools/fixtures/resnet.py: torchvision's ResNet
 * at tiny base widths): logits, loss, every trainable gradient, running stats and
 * num_batches_tracked after a train-mode forward, eval-mode logits, for full fine-tuning
 * and partly frozen models (freeze.bn eval and train); frozen parameters get no gradient
 * and stay untouched; stop-backward memory; rebuilding after unfreezing; the split for
 * the feature cache (prefix rows, then the forward from them); a directional
 * finite-difference check; shapes and parameter counts against torchvision; config
 * errors; and saves that the fixture script loads with load_state_dict(strict=True).
 * Tolerance: max |graft - torch| / max |torch| per tensor <= 1e-4 (float32 both sides),
 * except ResNet-50's gradients: 5e-4. Its 50 narrow layers of train-mode batchnorm lose
 * precision in float32 on both sides: PyTorch's own float32 gradients there are 2.8e-4
 * away from its float64 ones (layer1.0.bn2.bias), ResNet-18's 1.2e-5. */
#include "tests/testutil_model.h"

#include <errno.h>
#include <sys/stat.h>

#include "models/resnet/resnet.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define SAVED GRAFT_BUILD_DIR "/tests/saved/"
#define TOL 1e-4
#define TOL_GRAD_DEEP 5e-4 /* ResNet-50 gradients */

typedef struct {
    const char *name;
    graft_st_file weights, expect;
    graft_resnet_config cfg;
    int batch;
    float *inputs;
    int32_t *labels;
} fixture;

static int meta_int(const graft_st_file *f, const char *key) {
    const char *v = graft_st_metadata_get(f, key);
    if (!v) fail_msg("fixture metadata %s missing", key);
    return (int)strtol(v, NULL, 10);
}

/* A fixture tensor of n floats (caller frees). */
static float *read_tensor(const graft_st_file *f, const char *name, size_t n) {
    size_t numel;
    float *x = tu_read_tensor(f, name, &numel);
    assert_int_equal(numel, n);
    return x;
}

static void fixture_open(fixture *f, const char *name) {
    char path[512];
    memset(f, 0, sizeof *f);
    f->name = name;
    snprintf(path, sizeof path, FIXTURES "%s.weights.safetensors", name);
    assert_int_equal(graft_st_open(&f->weights, path), GRAFT_OK);
    snprintf(path, sizeof path, FIXTURES "%s.expect.safetensors", name);
    assert_int_equal(graft_st_open(&f->expect, path), GRAFT_OK);
    const graft_st_file *e = &f->expect;
    f->cfg = (graft_resnet_config){.depth = meta_int(e, "depth"),
                                   .base_width = meta_int(e, "base_width"),
                                   .channels = meta_int(e, "channels"),
                                   .height = meta_int(e, "height"),
                                   .width = meta_int(e, "width"),
                                   .num_classes = meta_int(e, "classes"),
                                   .small_stem = meta_int(e, "small_stem"),
                                   .frozen_bn_eval = 1};
    f->batch = meta_int(e, "batch");
    const size_t n = (size_t)f->batch * f->cfg.channels * f->cfg.height * f->cfg.width;
    f->inputs = read_tensor(e, "inputs", n);
    float *labels = read_tensor(e, "labels", (size_t)f->batch);
    f->labels = calloc((size_t)f->batch, sizeof *f->labels);
    for (int b = 0; b < f->batch; b++)
        f->labels[b] = (int32_t)labels[b];
    free(labels);
}

static void fixture_close(fixture *f) {
    graft_st_close(&f->weights);
    graft_st_close(&f->expect);
    free(f->inputs);
    free(f->labels);
}

/* The fixture's model with its `frozen` globs frozen (when asked), built for its batch
 * and loaded from its weights file, which must hold exactly the table's names. */
static void build(graft_resnet *m, const fixture *f, int frozen) {
    graft_resnet_config cfg = f->cfg;
    const char *bn = graft_st_metadata_get(&f->expect, "frozen_bn");
    assert_non_null(bn);
    cfg.frozen_bn_eval = strcmp(bn, "eval") == 0;
    assert_int_equal(graft_resnet_init(m, &cfg), GRAFT_OK);
    if (frozen) tu_freeze(&m->params, graft_st_metadata_get(&f->expect, "frozen"));
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_resnet_build(m, f->batch), GRAFT_OK);
    /* the torchvision state_dict as it is (int64 num_batches_tracked included), loaded
     * strictly the way model.init loads weights */
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.weights.safetensors", f->name);
    graft_load_report r;
    assert_int_equal(graft_params_load(&m->params, path, &(graft_load_options){.strict = 1}, &r),
                     GRAFT_OK);
    assert_int_equal(r.matched, m->params.count);
    assert_int_equal(r.missing + r.unexpected, 0);
}

/* Worst max|a-b|/max|b| over a family of tensors, printed once with its name. */
typedef struct {
    const char *family;
    double bound;
    double worst;
    char where[GRAFT_NAME_MAX + 32];
    int count;
} err_report;

static void check(err_report *r, const fixture *f, const char *name, const float *a, size_t n) {
    float *b = read_tensor(&f->expect, name, n);
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        maxdiff = fmax(maxdiff, fabs((double)a[i] - b[i]));
        maxref = fmax(maxref, fabs((double)b[i]));
    }
    free(b);
    double err = maxref > 0 ? maxdiff / maxref : maxdiff;
    double bound = r->bound > 0 ? r->bound : TOL;
    if (err > bound) fail_msg("%s: %s rel err %.3e > %.0e", f->name, name, err, bound);
    if (err >= r->worst) {
        r->worst = err;
        snprintf(r->where, sizeof r->where, "%s", name);
    }
    r->count++;
}

static void report(const err_report *r) {
    printf("  %-34s %3d tensors, worst rel err %.2e (%s)\n", r->family, r->count, r->worst,
           r->where);
}

/* Compares the last forward/backward with the fixture tensors under prefix ("" or
 * "frozen."); the frozen variant also checks NULL gradients and untouched frozen values. */
static void compare_step(const graft_resnet *m, const fixture *f, const char *prefix, float loss) {
    const graft_params *p = &m->params;
    char name[GRAFT_NAME_MAX + 32];
    err_report out = {.family = "logits + loss"},
               grads = {.family = "gradients", .bound = f->cfg.depth == 50 ? TOL_GRAD_DEEP : TOL},
               bufs = {.family = "BN buffers after the forward"};
    snprintf(name, sizeof name, "%slogits", prefix);
    check(&out, f, name, m->logits, (size_t)f->batch * f->cfg.num_classes);
    snprintf(name, sizeof name, "%sloss", prefix);
    check(&out, f, name, &loss, 1);
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (t->kind == GRAFT_KIND_BUFFER) {
            snprintf(name, sizeof name, "%safter.%s", prefix, t->name);
            check(&bufs, f, name, graft_params_value(p, i), t->numel);
        } else if (t->trainable) {
            snprintf(name, sizeof name, "%sgrad.%s", prefix, t->name);
            assert_non_null(graft_params_grad(p, i));
            check(&grads, f, name, graft_params_grad(p, i), t->numel);
        } else {
            assert_null(graft_params_grad(p, i));
            float *before = read_tensor(&f->weights, t->name, t->numel);
            assert_memory_equal(before, graft_params_value(p, i), t->numel * sizeof(float));
            free(before);
        }
    }
    report(&out);
    report(&grads);
    report(&bufs);
}

static float train_step(graft_resnet *m, const fixture *f) {
    graft_params_zero_grad(&m->params);
    float loss = graft_resnet_forward(m, f->inputs, f->labels, f->batch, 1);
    graft_resnet_backward(m, 1.0f);
    return loss;
}

static void make_saved_dir(void) {
    if (mkdir(GRAFT_BUILD_DIR "/tests", 0755) != 0) assert_int_equal(errno, EEXIST);
    if (mkdir(SAVED, 0755) != 0) assert_int_equal(errno, EEXIST);
}

/* The model for `check_saved` in tools/fixtures/resnet.py, with its eval logits. */
static void save_for_pytorch(const graft_resnet *m, const fixture *f) {
    char path[512];
    make_saved_dir();
    snprintf(path, sizeof path, SAVED "%s.safetensors", f->name);
    assert_int_equal(graft_params_save(&m->params, path), GRAFT_OK);
    graft_st_writer w;
    graft_st_writer_init(&w);
    const int64_t in_shape[2] = {f->batch, f->cfg.channels * f->cfg.height * f->cfg.width};
    const int64_t out_shape[2] = {f->batch, f->cfg.num_classes};
    assert_int_equal(graft_st_writer_add(&w, "inputs", GRAFT_DTYPE_F32, 2, in_shape, f->inputs),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "logits", GRAFT_DTYPE_F32, 2, out_shape, m->logits),
                     GRAFT_OK);
    snprintf(path, sizeof path, SAVED "%s.logits.safetensors", f->name);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);
}

/* Everything trainable: train-mode numbers, the running stats the forward left, then
 * eval-mode logits with those stats. */
static void full_case(const char *name) {
    fixture f;
    fixture_open(&f, name);
    graft_resnet m;
    build(&m, &f, 0);
    assert_int_equal(m.lowest, 0);
    float loss = train_step(&m, &f);
    compare_step(&m, &f, "", loss);
    err_report ev = {.family = "eval-mode logits"};
    graft_resnet_forward(&m, f.inputs, NULL, f.batch, 0);
    check(&ev, &f, "eval.logits", m.logits, (size_t)f.batch * f.cfg.num_classes);
    report(&ev);
    save_for_pytorch(&m, &f);
    graft_resnet_free(&m);
    fixture_close(&f);
}

static void test_resnet18_full(void **state) {
    (void)state;
    full_case("resnet18_w3");
}

static void test_resnet50_full(void **state) {
    (void)state;
    full_case("resnet50_w2");
}

/* resnet18_w3 with its stem, layer1, layer2, layer3.1.bn2, layer4.0 and layer4.1's
 * convs frozen, frozen BNs in eval mode: a forward-only trunk, a folded BN under a
 * trainable conv, trainable BNs under frozen convs, gradients through a frozen block. */
static void test_resnet18_frozen(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f, "resnet18_w3");
    graft_resnet m;
    build(&m, &f, 1);
    assert_int_equal(m.lowest, 1 + 4); /* layer3.0 */
    float loss = train_step(&m, &f);
    compare_step(&m, &f, "frozen.", loss);
    graft_resnet_free(&m);
    fixture_close(&f);
}

/* resnet50_w2 with all but layer3.5 and fc frozen under freeze.bn=train: every BN still
 * uses batch statistics, so the numbers are the full fine-tune's (the fixture script
 * checks that in PyTorch) while the stem and layer1-3.4 run forward only. */
static void test_resnet50_frozen_bn_train(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f, "resnet50_w2");
    graft_resnet m;
    build(&m, &f, 1);
    assert_false(m.cfg.frozen_bn_eval);
    assert_int_equal(m.lowest, 1 + 3 + 4 + 5); /* layer3.5 */
    float loss = train_step(&m, &f);
    compare_step(&m, &f, "", loss);
    graft_resnet_free(&m);
    fixture_close(&f);
}

/* A small ResNet-18 for the tests that need no fixture. */
static const graft_resnet_config small_cfg = {.depth = 18,
                                              .base_width = 8,
                                              .channels = 3,
                                              .height = 32,
                                              .width = 32,
                                              .num_classes = 5,
                                              .frozen_bn_eval = 1};
enum { SMALL_B = 4 };

static void build_small(graft_resnet *m, const graft_resnet_config *cfg, const char *trainable) {
    assert_int_equal(graft_resnet_init(m, cfg), GRAFT_OK);
    if (trainable) {
        assert_int_equal(graft_params_set_trainable(&m->params, "*", 0, NULL), GRAFT_OK);
        int matched = 0;
        assert_int_equal(graft_params_set_trainable(&m->params, trainable, 1, &matched), GRAFT_OK);
        assert_true(matched > 0);
    }
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_resnet_build(m, SMALL_B), GRAFT_OK);
    graft_resnet_init_weights(m, 5);
}

static void small_batch(float *x, int32_t *y, const graft_resnet_config *cfg) {
    tu_fill_uniform(x, (size_t)SMALL_B * cfg->channels * cfg->height * cfg->width, -1, 1, 3);
    for (int b = 0; b < SMALL_B; b++)
        y[b] = (b * 2 + 1) % cfg->num_classes;
}


/* Feature extraction (only fc trains): the trunk runs forward only through shared
 * buffers, so activation memory is a small fraction of the full fine-tune's; frozen BNs
 * run in eval mode, so the training forward equals the eval forward; fc's gradient is
 * exact; the grad-ready hook hears of each trainable parameter once, in buffer order. */
static void test_fc_only_stop_backward(void **state) {
    (void)state;
    graft_resnet full, head;
    graft_resnet_config big = small_cfg;
    big.base_width = 16;
    big.height = big.width = 64;
    size_t arena[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(graft_resnet_init(&full, &big), GRAFT_OK);
        if (i) assert_int_equal(graft_params_set_trainable(&full.params, "[cbl]*", 0, NULL), 0);
        assert_int_equal(graft_params_finalize(&full.params), GRAFT_OK);
        assert_int_equal(graft_resnet_build(&full, 32), GRAFT_OK);
        arena[i] = full.arena.capacity;
        graft_resnet_free(&full);
    }
    printf("  activations, ResNet-18 width 16, 3x64x64, batch 32: full %.1f MB, fc only %.1f MB "
           "(%.1f%%)\n",
           arena[0] / 1e6, arena[1] / 1e6, 100.0 * (double)arena[1] / (double)arena[0]);
    assert_true(arena[1] * 5 < arena[0]);

    build_small(&full, &small_cfg, NULL);
    build_small(&head, &small_cfg, "fc.*");
    assert_int_equal(head.lowest, head.n_blocks + 1);
    for (int b = 0; b < head.n_blocks; b++)
        assert_null(head.blocks[b].out);

    float x[SMALL_B * 3 * 32 * 32];
    int32_t y[SMALL_B];
    small_batch(x, y, &small_cfg);
    const size_t K = (size_t)small_cfg.num_classes, F = (size_t)head.features;
    float eval_logits[SMALL_B * 5];
    graft_resnet_forward(&head, x, y, SMALL_B, 0);
    memcpy(eval_logits, head.logits, sizeof eval_logits);

    tu_hook_log h = {0, 0};
    head.params.on_grad_ready = tu_record_ready;
    head.params.on_grad_ready_ctx = &h;
    float nbt = *graft_params_value(&head.params, head.stem.num_batches);
    graft_params_zero_grad(&head.params);
    graft_resnet_forward(&head, x, y, SMALL_B, 1);
    graft_resnet_backward(&head, 1.0f);
    assert_memory_equal(eval_logits, head.logits, sizeof eval_logits);
    assert_true(*graft_params_value(&head.params, head.stem.num_batches) == nbt);
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.next, head.params.n_grads);

    /* dW[k, f] = sum_b (p[b, k] - [y_b = k]) feat[b, f] / B */
    const float *dw = graft_params_grad(&head.params, head.fc.weight);
    double *ref = tu_doubles(K * F);
    for (int b = 0; b < SMALL_B; b++)
        for (size_t k = 0; k < K; k++) {
            double d = (head.probs[b * K + k] - (y[b] == (int32_t)k)) / SMALL_B;
            for (size_t i = 0; i < F; i++)
                ref[k * F + i] += d * head.feat[b * F + i];
        }
    TU_CHECK_REL("fc.weight gradient, fc only", tu_rel_err_fd(dw, ref, K * F, 1e-6), 1e-5);
    free(ref);

    h = (tu_hook_log){0, 0};
    full.params.on_grad_ready = tu_record_ready;
    full.params.on_grad_ready_ctx = &h;
    graft_resnet_forward(&full, x, y, SMALL_B, 1);
    graft_resnet_backward(&full, 1.0f);
    int trainable = 0;
    for (int i = 0; i < full.params.count; i++)
        trainable += full.params.items[i].trainable;
    assert_int_equal(h.calls, (size_t)trainable);
    assert_int_equal(h.next, full.params.n_grads);
    graft_resnet_free(&full);
    graft_resnet_free(&head);
}

/* Gradual unfreezing: after layer4 joins fc the model is built again, keeps its values,
 * and its gradients equal those of a model that had layer4 trainable from the start. */
static void test_rebuild_after_unfreeze(void **state) {
    (void)state;
    graft_resnet grow, ref;
    build_small(&grow, &small_cfg, "fc.*");
    assert_int_equal(graft_resnet_init(&ref, &small_cfg), GRAFT_OK);
    const char *frozen[3] = {"conv1.*", "bn1.*", "layer[123].*"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(graft_params_set_trainable(&ref.params, frozen[i], 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&ref.params), GRAFT_OK);
    assert_int_equal(graft_resnet_build(&ref, SMALL_B), GRAFT_OK);
    graft_resnet_init_weights(&ref, 5);

    int matched = 0;
    float x[SMALL_B * 3 * 32 * 32];
    int32_t y[SMALL_B];
    small_batch(x, y, &small_cfg);
    graft_resnet_forward(&grow, x, y, SMALL_B, 1);
    graft_resnet_backward(&grow, 1.0f);
    size_t before = grow.arena.capacity;
    assert_int_equal(graft_params_unfreeze(&grow.params, "layer4.*", &matched, NULL), GRAFT_OK);
    assert_true(matched > 0);
    assert_int_equal(graft_resnet_build(&grow, SMALL_B), GRAFT_OK);
    assert_int_equal(grow.lowest, 1 + 6);
    assert_true(grow.arena.capacity > before);
    assert_memory_equal(grow.params.values, ref.params.values, ref.params.n_values * sizeof(float));
    assert_int_equal(grow.params.n_grads, ref.params.n_grads);
    graft_params_zero_grad(&grow.params);
    graft_params_zero_grad(&ref.params);
    graft_resnet_forward(&grow, x, y, SMALL_B, 1);
    graft_resnet_backward(&grow, 1.0f);
    graft_resnet_forward(&ref, x, y, SMALL_B, 1);
    graft_resnet_backward(&ref, 1.0f);
    assert_memory_equal(grow.params.grads, ref.params.grads, ref.params.n_grads * sizeof(float));
    graft_resnet_free(&grow);
    graft_resnet_free(&ref);
}

/* Feature extraction for the feature cache: the prefix's rows, computed in two halves
 * of the batch (another batch composition than training's), then forward_features and
 * backward give forward's loss, logits and gradients (within float rounding: the
 * convolutions' GEMMs group the batch differently), dropout included; the boundary is
 * fc's input or a block's; no split when the stem trains or frozen BNs train. */
static void test_split_forward_features(void **state) {
    (void)state;
    graft_resnet_config cfg = small_cfg;
    cfg.dropout = 0.3f;
    static const struct {
        const char *frozen, *where;
        size_t floats;
    } cases[] = {{"conv1.*,bn1.*,layer*", "the input of fc", 64},
                 {"conv1.*,bn1.*,layer[123].*", "the input of layer4.0", 32 * 2 * 2}};
    float x[SMALL_B * 3 * 32 * 32];
    int32_t y[SMALL_B];
    small_batch(x, y, &cfg);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        graft_resnet whole, split;
        graft_resnet *both[2] = {&whole, &split};
        for (int i = 0; i < 2; i++) {
            assert_int_equal(graft_resnet_init(both[i], &cfg), GRAFT_OK);
            tu_freeze(&both[i]->params, cases[c].frozen);
            assert_int_equal(graft_params_finalize(&both[i]->params), GRAFT_OK);
            assert_int_equal(graft_resnet_build(both[i], SMALL_B), GRAFT_OK);
            graft_resnet_init_weights(both[i], 5);
        }
        graft_model_split s;
        graft_resnet_split(&split, &s);
        assert_string_equal(s.where, cases[c].where);
        assert_int_equal(s.floats, cases[c].floats);
        assert_int_equal(s.prefix_params, split.stages[split.lowest].first);
        float *rows = tu_floats((size_t)SMALL_B * s.floats);
        graft_resnet_prefix_forward(&split, x, 1, rows);
        graft_resnet_prefix_forward(&split, x + 3 * 32 * 32, SMALL_B - 1, rows + s.floats);
        graft_rng_seed(&whole.dropout_rng, 11);
        graft_rng_seed(&split.dropout_rng, 11);
        graft_params_zero_grad(&whole.params);
        graft_params_zero_grad(&split.params);
        float lw = graft_resnet_forward(&whole, x, y, SMALL_B, 1);
        graft_resnet_backward(&whole, 1.0f);
        float ls = graft_resnet_forward_features(&split, rows, y, SMALL_B, 1);
        graft_resnet_backward(&split, 1.0f);
        printf("  %s: loss %.7f vs %.7f\n", cases[c].where, (double)ls, (double)lw);
        assert_true(fabsf(ls - lw) <= 1e-5f * fabsf(lw));
        TU_CHECK_REL("logits from features",
                     tu_rel_err_floor(split.logits, whole.logits,
                                      (size_t)SMALL_B * cfg.num_classes, 1e-6),
                     1e-5);
        /* layer4's train-mode batchnorms normalise 4 values a channel (1x1 maps): they
         * magnify the features' rounding (2.8e-5 with OpenBLAS's generic kernels) */
        TU_CHECK_REL("gradients from features",
                     tu_rel_err_floor(split.params.grads, whole.params.grads,
                                      whole.params.n_grads, 1e-6),
                     1e-4);
        free(rows);
        graft_resnet_free(&whole);
        graft_resnet_free(&split);
    }
    graft_resnet m;
    graft_model_split s;
    build_small(&m, &cfg, NULL);
    graft_resnet_split(&m, &s);
    assert_int_equal(s.floats, 0);
    assert_non_null(strstr(s.why, "conv1"));
    graft_resnet_free(&m);
    cfg.frozen_bn_eval = 0;
    build_small(&m, &cfg, "fc.*");
    graft_resnet_split(&m, &s);
    assert_int_equal(s.floats, 0);
    assert_non_null(strstr(s.why, "freeze.bn: train"));
    graft_resnet_free(&m);
}

/* The loss along a random direction v of the trainable parameters, by central
 * differences, against g . v: checks the backward (folded BNs, pass-through blocks,
 * train-mode BNs) independently of PyTorch. */
static void test_directional_finite_difference(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f, "resnet18_w3");
    graft_resnet m;
    build(&m, &f, 1);
    graft_params *p = &m.params;
    train_step(&m, &f);
    size_t n = p->n_values;
    float *v = tu_floats(n), *base = tu_floats(n);
    memcpy(base, p->values, n * sizeof(float));
    graft_rng rng;
    graft_rng_seed(&rng, 9);
    double gv = 0, vnorm = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (!t->trainable) continue;
        const float *g = graft_params_grad(p, i);
        for (size_t j = 0; j < t->numel; j++) {
            float r = graft_rng_normal(&rng);
            v[t->offset + j] = r;
            gv += (double)g[j] * r;
            vnorm += (double)r * r;
        }
    }
    const double h = 1e-3 / sqrt(vnorm);
    double loss[2];
    for (int side = 0; side < 2; side++) {
        for (size_t j = 0; j < n; j++)
            p->values[j] = base[j] + (float)((side ? -h : h) * v[j]);
        loss[side] = graft_resnet_forward(&m, f.inputs, f.labels, f.batch, 1);
    }
    double fd = (loss[0] - loss[1]) / (2 * h);
    printf("  d loss along v: backward %.6e, finite differences %.6e\n", gv, fd);
    assert_true(fabs(fd - gv) <= 1e-2 * fabs(gv));
    free(v);
    free(base);
    graft_resnet_free(&m);
    fixture_close(&f);
}

/* Stage sizes for both stems, and torchvision's tensor and parameter counts at width 64. */
static void test_shapes_and_counts(void **state) {
    (void)state;
    graft_resnet m;
    graft_resnet_config cfg = {.depth = 18,
                               .base_width = 16,
                               .channels = 1,
                               .height = 28,
                               .width = 28,
                               .num_classes = 10,
                               .small_stem = 1};
    assert_int_equal(graft_resnet_init(&m, &cfg), GRAFT_OK);
    const graft_param *conv1 = &m.params.items[m.stem.conv];
    assert_int_equal(conv1->shape[0], 16);
    assert_int_equal(conv1->shape[1], 1);
    assert_int_equal(conv1->shape[2], 3);
    assert_int_equal(m.stem.shape.OH, 28);
    const int small_sizes[4] = {28, 14, 7, 4};
    for (int b = 0; b < 8; b++)
        assert_int_equal(m.blocks[b].unit[1].shape.OH, small_sizes[b / 2]);
    graft_resnet_free(&m);

    cfg = (graft_resnet_config){.depth = 50,
                                .base_width = 64,
                                .channels = 3,
                                .height = 224,
                                .width = 224,
                                .num_classes = 1000};
    assert_int_equal(graft_resnet_init(&m, &cfg), GRAFT_OK);
    assert_int_equal(m.params.items[m.stem.conv].shape[2], 7);
    assert_int_equal(m.stem.shape.OH, 112);
    assert_int_equal(m.pool.OH, 56);
    const int sizes[4] = {56, 28, 14, 7}, per_stage[4] = {3, 4, 6, 3};
    for (int b = 0, s = 0; s < 4; s++)
        for (int i = 0; i < per_stage[s]; i++, b++) {
            assert_int_equal(m.blocks[b].unit[2].shape.OH, sizes[s]);
            assert_int_equal(m.blocks[b].has_down, i == 0);
        }
    assert_int_equal(m.features, 2048);
    graft_resnet_free(&m);

    const struct {
        int depth, tensors;
        size_t numel;
        const char *last_buffer;
    } tv[] = {{18, 122, 11689512, "layer4.1.bn2.num_batches_tracked"},
              {34, 218, 21797672, "layer4.2.bn2.num_batches_tracked"},
              {50, 320, 25557032, "layer4.2.bn3.num_batches_tracked"}};
    for (int i = 0; i < 3; i++) {
        cfg.depth = tv[i].depth;
        assert_int_equal(graft_resnet_init(&m, &cfg), GRAFT_OK);
        assert_int_equal(m.params.count, tv[i].tensors);
        assert_int_equal(graft_params_numel(&m.params, 0), tv[i].numel);
        assert_string_equal(m.params.items[0].name, "conv1.weight");
        assert_string_equal(m.params.items[m.params.count - 3].name, tv[i].last_buffer);
        assert_int_equal(m.params.items[m.params.count - 3].ndim, 0);
        assert_string_equal(m.params.items[m.params.count - 2].name, "fc.weight");
        graft_resnet_free(&m);
    }
}

/* Dropout before fc is seeded and only active in training. */
static void test_dropout(void **state) {
    (void)state;
    graft_resnet_config cfg = small_cfg;
    cfg.dropout = 0.5f;
    graft_resnet a, b;
    build_small(&a, &cfg, NULL);
    build_small(&b, &cfg, NULL);
    float x[SMALL_B * 3 * 32 * 32];
    int32_t y[SMALL_B];
    small_batch(x, y, &cfg);
    float la = graft_resnet_forward(&a, x, y, SMALL_B, 1);
    float lb = graft_resnet_forward(&b, x, y, SMALL_B, 1);
    assert_true(la == lb);
    float e1 = graft_resnet_forward(&a, x, y, SMALL_B, 0);
    float e2 = graft_resnet_forward(&a, x, y, SMALL_B, 0);
    assert_true(e1 == e2 && e1 != la);
    graft_resnet_free(&a);
    graft_resnet_free(&b);
}

static graft_status create(const char *arch, const graft_model_input *input, int head_classes,
                           graft_model *m) {
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup(arch);
    cfg.model.width = 4;
    cfg.model.head_num_classes = head_classes;
    graft_status st = graft_model_create(m, &cfg, input);
    graft_config_free(&cfg);
    return st;
}

/* Through graft_model_create: the interface, and one clear error per bad input. */
static void test_create_and_errors(void **state) {
    (void)state;
    graft_model m;
    const graft_model_input images = {.channels = 3, .height = 32, .width = 32, .num_classes = 10};
    assert_int_equal(create("resnet34", &images, 7, &m), GRAFT_OK);
    assert_string_equal(m.iface.name, "resnet34");
    assert_string_equal(m.iface.head, "fc");
    assert_int_equal(m.num_outputs, 7);
    assert_int_equal(m.params->items[graft_params_find(m.params, "fc.weight")].shape[0], 7);
    graft_model_free(&m);

    const graft_model_input tokens = {.vocab_size = 100, .seq_len = 16};
    assert_int_equal(create("resnet18", &tokens, 0, &m), GRAFT_ERR_CONFIG);
    const graft_model_input empty = {.channels = 3, .height = 0, .width = 32, .num_classes = 10};
    assert_int_equal(create("resnet18", &empty, 0, &m), GRAFT_ERR_CONFIG);
    const graft_model_input unlabeled = {.channels = 3, .height = 32, .width = 32};
    assert_int_equal(create("resnet50", &unlabeled, 0, &m), GRAFT_ERR_CONFIG);
    assert_int_equal(create("resnet101", &images, 0, &m), GRAFT_ERR_CONFIG);
    graft_resnet r;
    graft_resnet_config bad = small_cfg;
    bad.depth = 20;
    assert_int_equal(graft_resnet_init(&r, &bad), GRAFT_ERR_CONFIG);
    bad = small_cfg;
    bad.base_width = 0;
    assert_int_equal(graft_resnet_init(&r, &bad), GRAFT_ERR_CONFIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet18_full),
        cmocka_unit_test(test_resnet18_frozen),
        cmocka_unit_test(test_resnet50_full),
        cmocka_unit_test(test_resnet50_frozen_bn_train),
        cmocka_unit_test(test_fc_only_stop_backward),
        cmocka_unit_test(test_rebuild_after_unfreeze),
        cmocka_unit_test(test_split_forward_features),
        cmocka_unit_test(test_directional_finite_difference),
        cmocka_unit_test(test_shapes_and_counts),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_create_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
