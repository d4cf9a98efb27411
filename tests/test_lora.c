/* runtime/nn/lora with models/gpt2 and models/bert against PyTorch fixtures
 * (tools/fixtures/lora.py: PEFT's LoRA written out around the reference models): logits,
 * loss and the gradients of the adapters (and of a trainable head) with the base frozen;
 * gradient storage only for what trains; stop-backward below the lowest adapter; PEFT's
 * initialisation; base weights alone loading as B = 0; merging B·A into the base weights
 * giving the same logits; the adapters' dropout against finite differences; the PEFT
 * adapter directory and the merged file written and read back; generation's key/value
 * cache with adapters.
 * Tolerance: max |graft - torch| / max |torch| per tensor <= 1e-4 (gradients of BERT
 * relative to max(max |torch|, 1e-3), as in test_bert). */
#include "tests/testutil_model.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include "models/bert/bert.h"
#include "models/gpt2/gpt2.h"
#include "models/gpt2/gpt2_kv_cache.h"
#include "models/vit/vit.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/lora.h"
#include "runtime/nn/lora_io.h"
#include "runtime/nn/params_io.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define TOL 1e-4

enum { GL = 2, GNH = 4, GC = 32, GNPOS = 32, GV = 64, GB = 2, GT = 16 };
enum { BV = 100, BK = 3, BB = 3, BT = 16 };

/* A spec from a fixture's comma-separated targets (the strings live in buf). */
typedef struct spec_buf {
    char text[512];
    char *globs[16];
    int matched[16];
    graft_lora_spec spec;
} spec_buf;

static graft_lora_spec *spec_from(spec_buf *s, const char *targets, int rank, float alpha) {
    memset(s, 0, sizeof *s);
    snprintf(s->text, sizeof s->text, "%s", targets);
    int n = 0;
    for (char *save = NULL, *g = strtok_r(s->text, ",", &save); g && n < 16;
         g = strtok_r(NULL, ",", &save))
        s->globs[n++] = g;
    s->spec = (graft_lora_spec){
        .rank = rank, .alpha = alpha, .targets = s->globs, .n_targets = n, .matched = s->matched};
    return &s->spec;
}

/* train.c's freezing with model.lora: everything frozen but the adapters, then the
 * comma-separated extra globs trainable. */
static void lora_freeze(graft_params *p, const char *trainable) {
    assert_int_equal(graft_params_set_trainable(p, "*", 0, NULL), GRAFT_OK);
    for (int i = 0; i < p->count; i++)
        if (p->items[i].adapter) p->items[i].trainable = 1;
    char globs[256];
    snprintf(globs, sizeof globs, "%s", trainable ? trainable : "");
    for (char *save = NULL, *g = strtok_r(globs, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        int matched = 0;
        assert_int_equal(graft_params_set_trainable(p, g, 1, &matched), GRAFT_OK);
        assert_true(matched > 0);
    }
}

static void load_strict(graft_params *p, const char *path,
                        const char *(*map)(const char *, char *, size_t)) {
    graft_load_options opt = {.strict = 1, .map_name = map};
    graft_load_report r;
    assert_int_equal(graft_params_load(p, path, &opt, &r), GRAFT_OK);
    assert_int_equal(r.missing + r.unexpected, 0);
}

/* Gradient storage is exactly the trainable parameters', and only adapters (and the
 * extra globs) are trainable. */
static void check_storage(const graft_params *p, const char *trainable) {
    size_t floats = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (t->adapter) assert_true(t->trainable);
        if (!t->trainable) {
            assert_null(graft_params_grad(p, i));
            continue;
        }
        floats += t->numel;
        if (!t->adapter) {
            int extra = 0;
            char globs[256];
            snprintf(globs, sizeof globs, "%s", trainable);
            for (char *save = NULL, *g = strtok_r(globs, ",", &save); g;
                 g = strtok_r(NULL, ",", &save))
                extra |= fnmatch(g, t->name, 0) == 0;
            assert_true(extra);
        }
    }
    assert_int_equal(p->n_grads, floats);
}

/* ---- GPT-2 -------------------------------------------------------------------------- */

static void gpt2_model(graft_gpt2 *m, graft_lora_spec *spec, const char *trainable) {
    graft_gpt2_config c = {.n_layer = GL,
                           .n_head = GNH,
                           .n_embd = GC,
                           .n_positions = GNPOS,
                           .vocab_size = GV,
                           .seq_len = GT,
                           .lora = spec};
    assert_int_equal(graft_gpt2_init(m, &c), GRAFT_OK);
    lora_freeze(&m->params, trainable);
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(m, GB), GRAFT_OK);
    graft_gpt2_init_weights(m, 3);
    graft_lora_init_all(&m->params, 3);
}

/* A number the fixture stores as metadata text. */
static double meta_number(const graft_st_file *f, const char *key) {
    const char *text = graft_st_metadata_get(f, key);
    assert_non_null(text);
    char *end = NULL;
    double v = strtod(text, &end);
    assert_true(end != text && *end == '\0');
    return v;
}
static int meta_int(const graft_st_file *f, const char *key) { return (int)meta_number(f, key); }
static float meta_float(const graft_st_file *f, const char *key) {
    return (float)meta_number(f, key);
}

static void read_ints(const graft_st_file *f, const char *name, int32_t *out, size_t n) {
    size_t numel;
    float *x = tu_read_tensor(f, name, &numel);
    assert_int_equal(numel, n);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)x[i];
    free(x);
}

static void run_gpt2_case(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.expect.safetensors", name);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    int32_t tokens[GB * GT], labels[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    read_ints(&f, "labels", labels, GB * GT);
    spec_buf sb;
    const char *trainable = graft_st_metadata_get(&f, "trainable");
    graft_lora_spec *spec = spec_from(&sb, graft_st_metadata_get(&f, "targets"),
                                      meta_int(&f, "rank"), meta_float(&f, "alpha"));
    graft_gpt2 m;
    gpt2_model(&m, spec, trainable);
    for (int g = 0; g < spec->n_targets; g++)
        assert_true(sb.matched[g] > 0);
    check_storage(&m.params, trainable);
    snprintf(path, sizeof path, FIXTURES "%s.weights.safetensors", name);
    load_strict(&m.params, path, graft_gpt2_map_name);

    tu_hook_log h = {0, 0};
    m.params.on_grad_ready = tu_record_ready;
    m.params.on_grad_ready_ctx = &h;
    graft_params_zero_grad(&m.params);
    float loss = graft_gpt2_forward(&m, tokens, labels, GB, 1);
    char what[GRAFT_NAME_MAX + 64];
    snprintf(what, sizeof what, "%s logits", name);
    TU_CHECK_REL(what, tu_rel_err_tensor(&f, "logits", m.logits, (size_t)GB * GT * GV), TOL);
    snprintf(what, sizeof what, "%s loss", name);
    TU_CHECK_REL(what, tu_rel_err_tensor(&f, "loss", &loss, 1), TOL);
    graft_gpt2_backward(&m, 1.0f);
    assert_int_equal(h.calls, (size_t)tu_count_trainable(&m.params));
    assert_int_equal(h.next, m.params.n_grads);
    const char *worst_name;
    double worst = tu_worst_grad_err(&m.params, &f, 0, &worst_name);
    snprintf(what, sizeof what, "%s worst grad (%s)", name, worst_name);
    TU_CHECK_REL(what, worst, TOL);
    m.params.on_grad_ready = NULL;
    tu_adamw_moves_trainable_only(&m.params);
    graft_gpt2_free(&m);
    graft_st_close(&f);
}

static void test_gpt2_fixtures(void **state) {
    (void)state;
    run_gpt2_case("gpt2_lora");
    run_gpt2_case("gpt2_lora_head");
    run_gpt2_case("gpt2_lora_top");
}

/* Only block 1's c_fc has an adapter: the embeddings and block 0 run forward only (no
 * kept activations), and the backward stops inside block 1. */
static void test_gpt2_stop_backward(void **state) {
    (void)state;
    spec_buf sb;
    graft_gpt2 m;
    gpt2_model(&m, spec_from(&sb, "transformer.h.1.mlp.c_fc", 4, 8), "");
    assert_int_equal(m.lowest_unit, 2); /* embeddings 0, h.0 1, h.1 2 */
    assert_int_equal(m.first_kept, 1);
    graft_gpt2_free(&m);
    gpt2_model(&m, spec_from(&sb, "transformer.h.0.attn.c_attn", 4, 8), "");
    assert_int_equal(m.lowest_unit, 1);
    graft_gpt2_free(&m);
}

/* PEFT's initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a =
 * sqrt(5)), B = 0; and a weights file without adapters loads as the base model: the
 * logits are the base's. */
static void test_init_and_base_weights(void **state) {
    (void)state;
    spec_buf sb;
    graft_gpt2 m;
    gpt2_model(&m, spec_from(&sb, "transformer.h.*.mlp.c_fc", 4, 8), "");
    int n_a = 0;
    for (int i = 0; i < m.params.count; i++) {
        const graft_param *t = &m.params.items[i];
        const float *v = graft_params_value(&m.params, i);
        float lo = 0, hi = 0;
        for (size_t k = 0; k < t->numel; k++) {
            lo = fminf(lo, v[k]);
            hi = fmaxf(hi, v[k]);
        }
        if (t->adapter == GRAFT_ADAPTER_A) {
            n_a++;
            assert_int_equal(t->shape[0], 4);
            assert_int_equal(t->shape[1], GC);
            const float bound = 1.0f / sqrtf((float)GC);
            assert_true(hi <= bound && lo >= -bound && hi > 0.8f * bound && lo < -0.8f * bound);
        } else if (t->adapter == GRAFT_ADAPTER_B) {
            assert_int_equal(t->shape[0], 4 * GC);
            assert_true(lo == 0 && hi == 0);
        }
    }
    assert_int_equal(n_a, GL);
    graft_load_options opt = {.strict = 1, .map_name = graft_gpt2_map_name};
    assert_int_equal(graft_params_load(&m.params, FIXTURES "gpt2.weights.safetensors", &opt, NULL),
                     GRAFT_OK);
    graft_gpt2 base;
    gpt2_model(&base, NULL, "*");
    load_strict(&base.params, FIXTURES "gpt2.weights.safetensors", graft_gpt2_map_name);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2.expect.safetensors"), GRAFT_OK);
    int32_t tokens[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    graft_gpt2_forward(&base, tokens, NULL, GB, 0);
    assert_memory_equal(m.logits, base.logits, (size_t)GB * GT * GV * sizeof(float));
    graft_st_close(&f);
    graft_gpt2_free(&base);
    graft_gpt2_free(&m);
}

/* Merging scale·B·A into the base weights (Conv1D's transposed) gives the adapted
 * model's logits from the base alone. */
static void test_merge(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2_lora.expect.safetensors"), GRAFT_OK);
    int32_t tokens[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    spec_buf sb;
    graft_gpt2 m;
    gpt2_model(&m, spec_from(&sb, graft_st_metadata_get(&f, "targets"), 4, 8), "");
    load_strict(&m.params, FIXTURES "gpt2_lora.weights.safetensors", graft_gpt2_map_name);
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    float *adapted = tu_floats((size_t)GB * GT * GV);
    memcpy(adapted, m.logits, (size_t)GB * GT * GV * sizeof(float));
    graft_lora_merge(&m.params, m.params.values);
    for (int i = 0; i < m.params.count; i++)
        if (m.params.items[i].adapter == GRAFT_ADAPTER_B)
            memset(graft_params_value(&m.params, i), 0, m.params.items[i].numel * sizeof(float));
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    TU_CHECK_REL("merged logits", tu_rel_err_floor(m.logits, adapted, (size_t)GB * GT * GV, 0),
                 1e-5);
    free(adapted);
    graft_gpt2_free(&m);
    graft_st_close(&f);
}

/* The adapters' dropout: drawn only in training, and its backward matches central
 * differences of the training loss when the same masks are drawn again (the rng
 * reseeded), for adapters whose gradient flows through the dropped adapters above. */
static void test_dropout(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2_lora.expect.safetensors"), GRAFT_OK);
    int32_t tokens[GB * GT], labels[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    read_ints(&f, "labels", labels, GB * GT);
    spec_buf sb;
    graft_lora_spec *spec =
        spec_from(&sb, "transformer.h.*.attn.c_attn,transformer.h.*.mlp.c_fc", 4, 8);
    spec->dropout = 0.3f;
    graft_gpt2 m;
    gpt2_model(&m, spec, "");
    tu_fill_uniform(m.params.values, m.params.n_values, -0.3f, 0.3f, 11);
    for (int i = 0; i < m.params.count; i++) /* LayerNorm weights near 1 */
        if (strstr(m.params.items[i].name, "ln_") && strstr(m.params.items[i].name, ".weight"))
            for (size_t k = 0; k < m.params.items[i].numel; k++)
                graft_params_value(&m.params, i)[k] += 1.0f;
    const float eval1 = graft_gpt2_forward(&m, tokens, labels, GB, 0);
    graft_rng_seed(&m.dropout_rng, 77);
    const float train1 = graft_gpt2_forward(&m, tokens, labels, GB, 1);
    assert_true(train1 != eval1);
    graft_params_zero_grad(&m.params);
    graft_rng_seed(&m.dropout_rng, 77);
    assert_true(graft_gpt2_forward(&m, tokens, labels, GB, 1) == train1);
    graft_gpt2_backward(&m, 1.0f);
    const char *const names[] = {
        "transformer.h.0.mlp.c_fc.lora_A.weight", "transformer.h.0.attn.c_attn.lora_A.weight",
        "transformer.h.1.attn.c_attn.lora_B.weight", "transformer.h.1.mlp.c_fc.lora_A.weight"};
    double worst = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const int idx = graft_params_find(&m.params, names[k]);
        assert_true(idx >= 0);
        float *v = graft_params_value(&m.params, idx);
        const float *g = graft_params_grad(&m.params, idx);
        const size_t numel = m.params.items[idx].numel;
        for (size_t j = 0; j < numel; j += numel / 6 + 1) {
            const float h = 1e-2f, keep = v[j];
            v[j] = keep + h;
            graft_rng_seed(&m.dropout_rng, 77);
            const double lp = graft_gpt2_forward(&m, tokens, labels, GB, 1);
            v[j] = keep - h;
            graft_rng_seed(&m.dropout_rng, 77);
            const double lm = graft_gpt2_forward(&m, tokens, labels, GB, 1);
            v[j] = keep;
            const double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    TU_CHECK_REL("adapter dropout: gradients vs finite differences", worst, 2e-2);
    graft_gpt2_free(&m);
    graft_st_close(&f);
}

/* The adapter directory and the merged file: written, read back into a model whose
 * adapters and head were changed (the logits come back), r checked; left in
 * build/tests/saved for `tools/make_fixtures.py --check-saved`, which loads them into the
 * PyTorch reference by PEFT's rules. */
static void test_adapter_files(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2_lora_head.expect.safetensors"), GRAFT_OK);
    int32_t tokens[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    const char *targets = graft_st_metadata_get(&f, "targets");
    const char *trainable = graft_st_metadata_get(&f, "trainable");
    spec_buf sb;
    graft_gpt2 m;
    gpt2_model(&m, spec_from(&sb, targets, 4, 8), trainable);
    load_strict(&m.params, FIXTURES "gpt2_lora_head.weights.safetensors", graft_gpt2_map_name);
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    TU_CHECK_REL("fixture logits", tu_rel_err_tensor(&f, "logits", m.logits, (size_t)GB * GT * GV),
                 TOL);
    float *want = tu_floats((size_t)GB * GT * GV);
    memcpy(want, m.logits, (size_t)GB * GT * GV * sizeof(float));
    mkdir(GRAFT_BUILD_DIR "/tests", 0777);
    mkdir(GRAFT_BUILD_DIR "/tests/saved", 0777);
    const char *dir = GRAFT_BUILD_DIR "/tests/saved/lora_gpt2_adapter";
    const graft_lora_dir_config dc = {.rank = 4, .alpha = 8, .task_type = "CAUSAL_LM"};
    assert_int_equal(graft_lora_save_dir(&m.params, &dc, dir), GRAFT_OK);
    assert_int_equal(graft_lora_save_merged(&m.params, GRAFT_BUILD_DIR
                                            "/tests/saved/lora_gpt2_merged.safetensors"),
                     GRAFT_OK);

    for (int i = 0; i < m.params.count; i++) /* adapters and head changed ... */
        if (m.params.items[i].trainable)
            memset(graft_params_value(&m.params, i), 0, m.params.items[i].numel * sizeof(float));
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    assert_true(tu_rel_err_floor(m.logits, want, (size_t)GB * GT * GV, 0) > 1e-2);
    const graft_lora_dir_config other = {.rank = 8, .alpha = 8};
    assert_int_equal(graft_lora_load_dir(&m.params, &other, dir), GRAFT_ERR_MISMATCH);
    assert_int_equal(graft_lora_load_dir(&m.params, &dc, dir), GRAFT_OK); /* ... and back */
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    assert_memory_equal(m.logits, want, (size_t)GB * GT * GV * sizeof(float));
    free(want);
    graft_gpt2_free(&m);
    graft_st_close(&f);
}

/* Generation's key/value cache runs the adapters too: the logits after each prefix of
 * a sequence equal the full forward's at that position. */
static void test_kv_cache(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2_lora.expect.safetensors"), GRAFT_OK);
    int32_t tokens[GB * GT];
    read_ints(&f, "tokens", tokens, GB * GT);
    spec_buf sb;
    graft_gpt2 m;
    gpt2_model(&m, spec_from(&sb, graft_st_metadata_get(&f, "targets"), 4, 8), "");
    load_strict(&m.params, FIXTURES "gpt2_lora.weights.safetensors", graft_gpt2_map_name);
    graft_gpt2_forward(&m, tokens, NULL, GB, 0);
    graft_gpt2_kv_cache c;
    assert_int_equal(graft_gpt2_kv_cache_init(&c, &m, GT), GRAFT_OK);
    double worst = 0;
    for (int t = 0; t < GT; t++) { /* the prompt's first half at once, then token by token */
        if (t > 0 && t < GT / 2) continue;
        const int n = t == 0 ? GT / 2 : 1, at = t == 0 ? GT / 2 - 1 : t;
        graft_gpt2_kv_forward(&m, &c, tokens + (t == 0 ? 0 : t), n);
        worst = fmax(worst, tu_rel_err_floor(c.logits, m.logits + (size_t)at * GV, GV, 0));
    }
    TU_CHECK_REL("kv cache with adapters vs full forward", worst, 1e-5);
    graft_gpt2_kv_cache_free(&c);
    graft_gpt2_free(&m);
    graft_st_close(&f);
}

/* ---- ViT ---------------------------------------------------------------------------- */

/* ViT (no reference: torchvision's packed in_proj_weight takes no adapter, as PEFT's
 * Linear-only targets): adapters on the MLPs and one out_proj, with the head trainable,
 * against central differences of the loss; the packed projection matches no target. */
static void test_vit(void **state) {
    (void)state;
    spec_buf sb;
    graft_vit_config c = {.n_layer = 2,
                          .n_head = 2,
                          .n_embd = 16,
                          .mlp_dim = 32,
                          .patch_size = 4,
                          .channels = 1,
                          .height = 8,
                          .width = 8,
                          .num_classes = 3,
                          .lora =
                              spec_from(&sb,
                                        "encoder.layers.encoder_layer_*.mlp.0,"
                                        "encoder.layers.encoder_layer_1.self_attention.out_proj,"
                                        "encoder.layers.*.self_attention",
                                        2, 4)};
    graft_vit m;
    assert_int_equal(graft_vit_init(&m, &c), GRAFT_OK);
    assert_true(sb.matched[0] == 2 && sb.matched[1] == 1 && sb.matched[2] == 0);
    lora_freeze(&m.params, "heads.*");
    assert_int_equal(graft_params_finalize(&m.params), GRAFT_OK);
    assert_int_equal(graft_vit_build(&m, 2), GRAFT_OK);
    check_storage(&m.params, "heads.*");
    tu_fill_uniform(m.params.values, m.params.n_values, -0.4f, 0.4f, 5);
    float x[2 * 64];
    tu_fill_uniform(x, 2 * 64, -1, 1, 6);
    const int32_t y[2] = {2, 0};
    graft_params_zero_grad(&m.params);
    graft_vit_forward(&m, x, y, 2, 1);
    graft_vit_backward(&m, 1.0f);
    double worst = 0;
    for (int i = 0; i < m.params.count; i++) {
        if (!m.params.items[i].trainable) continue;
        float *v = graft_params_value(&m.params, i);
        const float *g = graft_params_grad(&m.params, i);
        const size_t numel = m.params.items[i].numel;
        for (size_t j = 0; j < numel; j += numel / 4 + 1) {
            const float h = 1e-2f, keep = v[j];
            v[j] = keep + h;
            const double lp = graft_vit_forward(&m, x, y, 2, 1);
            v[j] = keep - h;
            const double lm = graft_vit_forward(&m, x, y, 2, 1);
            v[j] = keep;
            const double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - g[j]) / fmax(fabs(fd), 1e-2));
        }
    }
    TU_CHECK_REL("vit adapters and head: gradients vs finite differences", worst, 2e-2);
    graft_vit_free(&m);
}

/* ---- BERT --------------------------------------------------------------------------- */

static void run_bert_case(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.expect.safetensors", name);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    int32_t ids[BB * BT], types[BB * BT], mask[BB * BT], labels[BB];
    read_ints(&f, "input_ids", ids, BB * BT);
    read_ints(&f, "token_type_ids", types, BB * BT);
    read_ints(&f, "attention_mask", mask, BB * BT);
    read_ints(&f, "labels", labels, BB);
    spec_buf sb;
    const char *trainable = graft_st_metadata_get(&f, "trainable");
    graft_bert_config c = {.n_layer = 2,
                           .n_head = 4,
                           .n_embd = 32,
                           .n_positions = 32,
                           .vocab_size = BV,
                           .type_vocab_size = 2,
                           .seq_len = BT,
                           .num_classes = BK,
                           .mask_token_id = 4,
                           .pad_id = -1,
                           .lora = spec_from(&sb, graft_st_metadata_get(&f, "targets"),
                                             meta_int(&f, "rank"), meta_float(&f, "alpha"))};
    graft_bert m;
    assert_int_equal(graft_bert_init(&m, &c), GRAFT_OK);
    lora_freeze(&m.params, trainable);
    assert_int_equal(graft_params_finalize(&m.params), GRAFT_OK);
    assert_int_equal(graft_bert_build(&m, 4), GRAFT_OK);
    check_storage(&m.params, trainable);
    snprintf(path, sizeof path, FIXTURES "%s.weights.safetensors", name);
    load_strict(&m.params, path, NULL);
    tu_hook_log h = {0, 0};
    m.params.on_grad_ready = tu_record_ready;
    m.params.on_grad_ready_ctx = &h;
    graft_params_zero_grad(&m.params);
    float loss = graft_bert_forward(&m, ids, types, mask, labels, BB, 1);
    graft_bert_backward(&m, 1.0f);
    assert_int_equal(h.calls, (size_t)tu_count_trainable(&m.params));
    assert_int_equal(h.next, m.params.n_grads);
    char what[GRAFT_NAME_MAX + 64];
    snprintf(what, sizeof what, "%s logits", name);
    TU_CHECK_REL(what, tu_rel_err_tensor(&f, "logits", m.logits, (size_t)BB * BK), TOL);
    snprintf(what, sizeof what, "%s loss", name);
    TU_CHECK_REL(what, tu_rel_err_tensor(&f, "loss", &loss, 1), TOL);
    const char *worst_name;
    double worst = tu_worst_grad_err(&m.params, &f, 1e-3, &worst_name);
    snprintf(what, sizeof what, "%s worst grad (%s)", name, worst_name);
    TU_CHECK_REL(what, worst, TOL);
    m.params.on_grad_ready = NULL;
    graft_bert_free(&m);
    graft_st_close(&f);
}

static void test_bert_fixtures(void **state) {
    (void)state;
    run_bert_case("bert_lora");
    run_bert_case("bert_lora_head");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_fixtures),
        cmocka_unit_test(test_gpt2_stop_backward),
        cmocka_unit_test(test_init_and_base_weights),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_adapter_files),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_vit),
        cmocka_unit_test(test_bert_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
