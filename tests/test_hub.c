/* Weights as they are downloaded (the tests/fixtures files with _nobt, _bare, _gamma,
 * _f16 and _bf16 in their names, written by tools/fixtures/hub.py from the resnet and bert
 * fixtures) load through the model registry without conversion: torchvision/timm ResNet
 * files without num_batches_tracked, BertModel files without the "bert." prefix, old
 * LayerNorm.gamma / beta names, F16 and BF16 files. Renamed files give the very same table
 * and logits as the originals; half-precision files give the originals' values rounded to
 * nearest even, and logits within that rounding. Strict loading still names real
 * omissions. */
#include "tests/testutil_model.h"

#include <unistd.h>

#include "models/model.h"
#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"

/* A model of the registry, finalized, built and initialised from seed 1. */
static void make(graft_model *m, const graft_config *cfg, const graft_model_input *in, int batch) {
    assert_int_equal(graft_model_create(m, cfg, in), GRAFT_OK);
    assert_int_equal(graft_params_finalize(m->params), GRAFT_OK);
    assert_int_equal(graft_model_build(m, batch), GRAFT_OK);
    graft_model_init_weights(m, 1);
}

static graft_status load(graft_model *m, const char *file, int strict, int replace_head,
                         graft_load_report *r) {
    graft_load_options opt = graft_model_load_options(m, strict, replace_head);
    return graft_params_load(m->params, file, &opt, r);
}

/* Values of b that differ from a's, a's rounded to `dtype` first (F32: as they are). */
static size_t count_differ(const graft_params *a, const graft_params *b, graft_dtype dtype) {
    assert_int_equal(a->n_values, b->n_values);
    size_t differ = 0;
    for (size_t i = 0; i < a->n_values; i++) {
        float want = a->values[i];
        if (dtype == GRAFT_DTYPE_F16) want = graft_f16_to_f32(graft_f32_to_f16(want));
        if (dtype == GRAFT_DTYPE_BF16) want = graft_bf16_to_f32(graft_f32_to_bf16(want));
        differ += memcmp(&want, &b->values[i], sizeof want) != 0;
    }
    return differ;
}

/* Evaluation-mode logits of B samples (caller frees). */
static float *logits_of(graft_model *m, const float *inputs, const int32_t *tokens, int B) {
    graft_model_forward(m, inputs, tokens, NULL, B, 0, NULL);
    size_t n = (size_t)B * (size_t)m->num_outputs;
    float *out = tu_floats(n);
    memcpy(out, graft_model_logits(m), n * sizeof *out);
    return out;
}

/* ---- ResNet-18 (torchvision names, which are timm's for its classic resnets) ---------- */

enum { RB = 2, RC = 3, RH = 36, RK = 10 };

static graft_config resnet_config(void) {
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup("resnet18");
    cfg.model.width = 3;
    return cfg;
}

static const graft_model_input resnet_input = {
    .channels = RC, .height = RH, .width = RH, .num_classes = RK, .pad_id = -1};

/* Strict loads of the file without num_batches_tracked: the 20 counts are set to 0 (from
 * the 5 the test puts there first), everything else and the logits equal the full
 * file's; the F16 copy gives the values rounded and logits within that rounding. */
static void test_resnet_without_num_batches_tracked(void **state) {
    (void)state;
    graft_config cfg = resnet_config();
    graft_st_file fx;
    assert_int_equal(graft_st_open(&fx, FIXTURES "resnet18_w3.expect.safetensors"), GRAFT_OK);
    float *inputs = tu_read_tensor(&fx, "inputs", NULL);

    graft_model full, nobt, half;
    make(&full, &cfg, &resnet_input, RB);
    make(&nobt, &cfg, &resnet_input, RB);
    make(&half, &cfg, &resnet_input, RB);
    graft_load_report r;
    assert_int_equal(load(&full, FIXTURES "resnet18_w3.weights.safetensors", 1, 0, &r), GRAFT_OK);
    assert_int_equal(r.zeroed, 0);
    /* the fixture's counts are 3: compare them as 0, as PyTorch's load leaves them */
    int counts = 0;
    for (int i = 0; i < full.params->count; i++)
        if (full.params->items[i].zero_when_absent) {
            assert_true(*graft_params_value(full.params, i) == 3.0f);
            *graft_params_value(full.params, i) = 0.0f;
            *graft_params_value(nobt.params, i) = 5.0f;
            counts++;
        }
    assert_int_equal(counts, 20);

    assert_int_equal(load(&nobt, FIXTURES "resnet18_w3_nobt.weights.safetensors", 1, 0, &r),
                     GRAFT_OK);
    printf("  no num_batches_tracked: %d matched, %d missing, %d set to 0\n", r.matched, r.missing,
           r.zeroed);
    assert_int_equal(r.zeroed, 20);
    assert_int_equal(r.missing, 0);
    assert_int_equal(count_differ(full.params, nobt.params, GRAFT_DTYPE_F32), 0);
    float *want = logits_of(&full, inputs, NULL, RB), *got = logits_of(&nobt, inputs, NULL, RB);
    assert_memory_equal(want, got, RB * RK * sizeof(float));
    free(got);

    assert_int_equal(load(&half, FIXTURES "resnet18_w3_nobt_f16.weights.safetensors", 1, 0, &r),
                     GRAFT_OK);
    assert_int_equal(r.zeroed, 20);
    size_t differ = count_differ(full.params, half.params, GRAFT_DTYPE_F16);
    got = logits_of(&half, inputs, NULL, RB);
    double err = tu_rel_err_floor(got, want, RB * RK, 1e-3);
    printf("  F16 file: %zu values off round-to-nearest-even, logits rel err %.2e (bound 1e-2)\n",
           differ, err);
    assert_int_equal(differ, 0);
    assert_true(err < 1e-2 && err > 0);
    free(got);
    free(want);
    free(inputs);
    graft_st_close(&fx);
    graft_model_free(&half);
    graft_model_free(&nobt);
    graft_model_free(&full);
    graft_config_free(&cfg);
}

/* A file that lacks a real buffer (running_mean) is still refused by a strict load, and
 * the message names it, not the counts the file may leave out. */
static void test_resnet_strict_names_real_omissions(void **state) {
    (void)state;
    char path[] = "/tmp/graft_test_hub_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "resnet18_w3_nobt.weights.safetensors"), GRAFT_OK);
    graft_st_writer w;
    graft_st_writer_init(&w);
    for (size_t k = 0; k < f.n_tensors; k++) {
        const graft_st_tensor *t = &f.tensors[k];
        if (strcmp(t->name, "layer1.0.bn1.running_mean") != 0)
            assert_int_equal(
                graft_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data), GRAFT_OK);
    }
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);
    graft_st_close(&f);

    graft_config cfg = resnet_config();
    graft_model m;
    make(&m, &cfg, &resnet_input, RB);
    assert_int_equal(load(&m, path, 1, 0, NULL), GRAFT_ERR_MISMATCH);
    const char *line = graft_log_last_error();
    printf("  %s\n", line);
    assert_non_null(strstr(line, "tensors of the model missing from the file (1): "
                                 "layer1.0.bn1.running_mean (strict loading)"));
    assert_null(strstr(line, "num_batches_tracked"));
    unlink(path);
    graft_model_free(&m);
    graft_config_free(&cfg);
}

/* ---- BERT (Hugging Face names) --------------------------------------------------------- */

enum { BL = 2, BNH = 4, BC = 32, BNPOS = 32, BV = 100, BK = 3, BB = 3, BT = 16 };

static graft_config bert_config(void) {
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup("bert");
    cfg.model.n_layer = BL;
    cfg.model.n_head = BNH;
    cfg.model.n_embd = BC;
    cfg.model.n_positions = BNPOS;
    cfg.model.mask_token_id = 4;
    return cfg;
}

static int32_t *bert_tokens(graft_st_file *fx) {
    assert_int_equal(graft_st_open(fx, FIXTURES "bert_cls.expect.safetensors"), GRAFT_OK);
    size_t n;
    float *ids = tu_read_tensor(fx, "input_ids", &n);
    assert_int_equal(n, BB * BT);
    int32_t *tokens = calloc(n, sizeof *tokens);
    assert_non_null(tokens);
    for (size_t i = 0; i < n; i++)
        tokens[i] = (int32_t)ids[i];
    free(ids);
    return tokens;
}

/* BertModel's file (no "bert." prefix, no classifier) under a fresh classifier: strict,
 * and the same table as BertForSequenceClassification's file with its classifier
 * replaced; without replacing the head, strict loading names the classifier. */
static void test_bert_without_prefix(void **state) {
    (void)state;
    graft_config cfg = bert_config();
    const graft_model_input in = {.vocab_size = BV, .seq_len = BT, .num_classes = BK, .pad_id = 0};
    graft_st_file fx;
    int32_t *tokens = bert_tokens(&fx);
    graft_model prefixed, bare;
    make(&prefixed, &cfg, &in, BB);
    make(&bare, &cfg, &in, BB);
    graft_load_report r;
    assert_int_equal(load(&prefixed, FIXTURES "bert_cls.weights.safetensors", 1, 1, &r), GRAFT_OK);
    assert_int_equal(r.replaced, 2);
    assert_int_equal(load(&bare, FIXTURES "bert_cls_bare.weights.safetensors", 1, 1, &r), GRAFT_OK);
    printf("  BertModel file: %d matched, %d missing, %d unexpected, %d replaced\n", r.matched,
           r.missing, r.unexpected, r.replaced);
    assert_int_equal(r.matched, bare.params->count - 2);
    assert_int_equal(count_differ(prefixed.params, bare.params, GRAFT_DTYPE_F32), 0);
    float *want = logits_of(&prefixed, NULL, tokens, BB), *got = logits_of(&bare, NULL, tokens, BB);
    assert_memory_equal(want, got, BB * BK * sizeof(float));
    free(got);
    free(want);

    assert_int_equal(load(&bare, FIXTURES "bert_cls_bare.weights.safetensors", 1, 0, NULL),
                     GRAFT_ERR_MISMATCH);
    assert_non_null(strstr(graft_log_last_error(), "missing from the file (2): classifier.weight, "
                                                   "classifier.bias"));
    free(tokens);
    graft_st_close(&fx);
    graft_model_free(&bare);
    graft_model_free(&prefixed);
    graft_config_free(&cfg);
}

/* Old checkpoints' LayerNorm.gamma / LayerNorm.beta: strict, the very same table. */
static void test_bert_gamma_beta(void **state) {
    (void)state;
    graft_config cfg = bert_config();
    const graft_model_input in = {.vocab_size = BV, .seq_len = BT, .pad_id = 0};
    graft_model now, old;
    make(&now, &cfg, &in, BB);
    make(&old, &cfg, &in, BB);
    graft_load_report r;
    assert_int_equal(load(&now, FIXTURES "bert_mlm.weights.safetensors", 1, 0, NULL), GRAFT_OK);
    assert_int_equal(load(&old, FIXTURES "bert_mlm_gamma.weights.safetensors", 1, 0, &r),
                     GRAFT_OK);
    printf("  gamma/beta file: %d matched, %d missing, %d unexpected\n", r.matched, r.missing,
           r.unexpected);
    assert_int_equal(r.missing + r.unexpected, 0);
    assert_int_equal(count_differ(now.params, old.params, GRAFT_DTYPE_F32), 0);
    graft_model_free(&old);
    graft_model_free(&now);
    graft_config_free(&cfg);
}

/* A BF16 file: the F32 file's values rounded to nearest even, logits within that. */
static void test_bert_bf16(void **state) {
    (void)state;
    graft_config cfg = bert_config();
    const graft_model_input in = {.vocab_size = BV, .seq_len = BT, .num_classes = BK, .pad_id = 0};
    graft_st_file fx;
    int32_t *tokens = bert_tokens(&fx);
    graft_model full, half;
    make(&full, &cfg, &in, BB);
    make(&half, &cfg, &in, BB);
    assert_int_equal(load(&full, FIXTURES "bert_cls.weights.safetensors", 1, 0, NULL), GRAFT_OK);
    assert_int_equal(load(&half, FIXTURES "bert_cls_bf16.weights.safetensors", 1, 0, NULL),
                     GRAFT_OK);
    size_t differ = count_differ(full.params, half.params, GRAFT_DTYPE_BF16);
    float *want = logits_of(&full, NULL, tokens, BB), *got = logits_of(&half, NULL, tokens, BB);
    double err = tu_rel_err_floor(got, want, BB * BK, 1e-3);
    printf("  BF16 file: %zu values off round-to-nearest-even, logits rel err %.2e (bound 5e-2)\n",
           differ, err);
    assert_int_equal(differ, 0);
    assert_true(err < 5e-2 && err > 0);
    free(got);
    free(want);
    free(tokens);
    graft_st_close(&fx);
    graft_model_free(&half);
    graft_model_free(&full);
    graft_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet_without_num_batches_tracked),
        cmocka_unit_test(test_resnet_strict_names_real_omissions),
        cmocka_unit_test(test_bert_without_prefix),
        cmocka_unit_test(test_bert_gamma_beta),
        cmocka_unit_test(test_bert_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
