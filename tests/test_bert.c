/* models/bert: logits, loss and every trainable gradient against PyTorch fixtures (Hugging
 * Face's BertForSequenceClassification and BertForMaskedLM rebuilt in
 * tools/fixtures/bert.py) for full fine-tuning and partly frozen cases, the padding mask,
 * the tied MLM decoder, stop-backward, rebuilding after unfreezing, dropout against finite
 * differences, MLM masking, config errors, and the saves that
 * `tools/make_fixtures.py --check-saved` strict-loads into PyTorch.
 * Tolerance: max |graft - torch| / max |torch| per tensor <= 1e-4. */
#include "tests/testutil_model.h"

#include <sys/stat.h>

#include "models/bert/bert.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"
#include "runtime/optim/optim.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define SAVED GRAFT_BUILD_DIR "/tests/saved"
#define TOL 1e-4

enum { L = 2, NH = 4, C = 32, NPOS = 32, V = 100, K = 3, B = 3, T = 16, MAX_BATCH = 4 };

static graft_bert_config tiny_config(int num_classes) {
    graft_bert_config c = {.n_layer = L,
                           .n_head = NH,
                           .n_embd = C,
                           .n_positions = NPOS,
                           .vocab_size = V,
                           .type_vocab_size = 2,
                           .seq_len = T,
                           .num_classes = num_classes,
                           .mask_token_id = 4,
                           .pad_id = -1};
    return c;
}

/* A model with the globs frozen, built, with the fixture's weights when weights != NULL. */
static void make_model(graft_bert *m, const graft_bert_config *c, const char *frozen,
                       const char *weights) {
    assert_int_equal(graft_bert_init(m, c), GRAFT_OK);
    tu_freeze(&m->params, frozen);
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_bert_build(m, MAX_BATCH), GRAFT_OK);
    graft_bert_init_weights(m, 1);
    if (weights) {
        graft_load_options opt = {.strict = 1};
        assert_int_equal(graft_params_load(&m->params, weights, &opt, NULL), GRAFT_OK);
    }
}

/* One case's expectations (tools/fixtures/bert.py documents the file). */
typedef struct fixture {
    graft_st_file f;
    int32_t ids[B * T], types[B * T], mask[B * T], labels[B * T];
} fixture;


static void read_ints(const graft_st_file *f, const char *name, int32_t *out, size_t n) {
    size_t numel;
    float *x = tu_read_tensor(f, name, &numel);
    assert_int_equal(numel, n);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)x[i];
    free(x);
}

static void open_fixture(fixture *fx, const char *path, int mlm) {
    assert_int_equal(graft_st_open(&fx->f, path), GRAFT_OK);
    read_ints(&fx->f, "input_ids", fx->ids, B * T);
    read_ints(&fx->f, "token_type_ids", fx->types, B * T);
    read_ints(&fx->f, "attention_mask", fx->mask, B * T);
    read_ints(&fx->f, "labels", fx->labels, mlm ? B * T : B);
}

static double rel_err(const float *a, const float *b, size_t n) {
    return tu_rel_err_floor(a, b, n, 0);
}

/* Compares every trainable gradient with grad.<name> (relative to max(max |torch|, 1e-3):
 * key biases have exactly zero gradient, as softmax ignores a constant added to a
 * query's scores, so both sides are rounding noise); frozen ones must be NULL. Returns
 * the worst relative error. */
static double check_grads(const graft_bert *m, const graft_st_file *f, const char *label) {
    const char *worst_name;
    double worst = tu_worst_grad_err(&m->params, f, 1e-3, &worst_name);
    printf("  %-10s worst gradient rel err %.3e (%s)\n", label, worst, worst_name);
    if (worst > TOL) fail_msg("%s: %s rel err %.3e", label, worst_name, worst);
    return worst;
}

/* ---- classification ------------------------------------------------------------------- */

static void run_cls_case(const char *label, const char *frozen) {
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_cls.expect.safetensors", 0);
    graft_bert_config c = tiny_config(K);
    graft_bert m;
    make_model(&m, &c, frozen, FIXTURES "bert_cls.weights.safetensors");
    graft_params_zero_grad(&m.params);
    float loss = graft_bert_forward(&m, fx.ids, fx.types, fx.mask, fx.labels, B, 1);
    graft_bert_backward(&m, 1.0f);
    float *logits = tu_read_tensor(&fx.f, "logits", NULL),
          *want_loss = tu_read_tensor(&fx.f, "loss", NULL);
    char name[64];
    snprintf(name, sizeof name, "cls %s logits", label);
    TU_CHECK_REL(name, rel_err(m.logits, logits, B * K), TOL);
    snprintf(name, sizeof name, "cls %s loss", label);
    TU_CHECK_REL(name, rel_err(&loss, want_loss, 1), TOL);
    assert_int_equal(m.counted, B);
    check_grads(&m, &fx.f, label);
    free(logits);
    free(want_loss);
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

static void test_cls_fixture(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "bert_cls.expect.safetensors"), GRAFT_OK);
    char cases[256];
    snprintf(cases, sizeof cases, "%s", graft_st_metadata_get(&f, "cases"));
    for (char *save = NULL, *cs = strtok_r(cases, ",", &save); cs;
         cs = strtok_r(NULL, ",", &save)) {
        char key[64];
        snprintf(key, sizeof key, "%s.frozen", cs);
        const char *frozen = graft_st_metadata_get(&f, key);
        assert_non_null(frozen);
        run_cls_case(cs, frozen);
    }
    graft_st_close(&f);
}

/* Feature extraction (only the classifier trainable) keeps no encoder activations for
 * backward and no backward scratch; frozen parameters stay untouched by the optimizer. */
static void test_cls_head_only(void **state) {
    (void)state;
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_cls.expect.safetensors", 0);
    graft_bert_config c = tiny_config(K);
    graft_bert full, head;
    make_model(&full, &c, NULL, FIXTURES "bert_cls.weights.safetensors");
    make_model(&head, &c, "bert.*", FIXTURES "bert_cls.weights.safetensors");
    assert_int_equal(full.lowest, 0);
    assert_int_equal(head.lowest, L + 2);
    assert_null(head.dh_a);
    assert_null(head.dq);
    assert_ptr_equal(head.acts[L - 1].q, head.shared.q); /* every layer in shared scratch */
    printf("  activation arena: full %zu bytes, head only %zu bytes\n", full.arena.capacity,
           head.arena.capacity);
    assert_true(head.arena.capacity < full.arena.capacity);
    assert_int_equal(head.params.n_grads, (size_t)(K * C + K));

    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    graft_optim opt;
    assert_int_equal(graft_optim_init(&opt, &ocfg, &head.params), GRAFT_OK);
    size_t frozen_floats = head.params.items[head.classifier.weight].offset;
    float *before = tu_floats(frozen_floats);
    memcpy(before, head.params.values, frozen_floats * sizeof(float));
    float first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        graft_params_zero_grad(&head.params);
        last = graft_bert_forward(&head, fx.ids, fx.types, fx.mask, fx.labels, B, 1);
        if (step == 0) first = last;
        graft_bert_backward(&head, 1.0f);
        assert_int_equal(graft_optim_step(&opt, &head.params, 0.05f), GRAFT_OK);
    }
    printf("  head-only loss %.4f -> %.4f after 30 AdamW steps\n", (double)first, (double)last);
    assert_true(last < 0.5f * first);
    assert_memory_equal(before, head.params.values, frozen_floats * sizeof(float));
    free(before);
    graft_optim_free(&opt);
    graft_bert_free(&full);
    graft_bert_free(&head);
    graft_st_close(&fx.f);
}

/* Gradual unfreezing: build again after graft_params_unfreeze; values are kept and the
 * gradients are then the full fine-tune's. */
static void test_rebuild_after_unfreeze(void **state) {
    (void)state;
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_cls.expect.safetensors", 0);
    graft_bert_config c = tiny_config(K);
    graft_bert m;
    make_model(&m, &c, "bert.*", FIXTURES "bert_cls.weights.safetensors");
    graft_params_zero_grad(&m.params);
    graft_bert_forward(&m, fx.ids, fx.types, fx.mask, fx.labels, B, 1);
    graft_bert_backward(&m, 1.0f);
    int matched = 0;
    assert_int_equal(graft_params_unfreeze(&m.params, "bert.*", &matched, NULL), GRAFT_OK);
    assert_true(matched > 0);
    assert_int_equal(graft_bert_build(&m, MAX_BATCH), GRAFT_OK);
    assert_int_equal(m.lowest, 0);
    graft_params_zero_grad(&m.params);
    graft_bert_forward(&m, fx.ids, fx.types, fx.mask, fx.labels, B, 1);
    graft_bert_backward(&m, 1.0f);
    check_grads(&m, &fx.f, "unfrozen");
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

/* Padding keys get no attention: changing padded tokens (ids and types) leaves the
 * classification unchanged, while dropping the mask changes it; the generic forward
 * derives the mask from pad_id. */
static void test_padding_mask(void **state) {
    (void)state;
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_cls.expect.safetensors", 0);
    graft_bert_config c = tiny_config(K);
    graft_bert m;
    make_model(&m, &c, NULL, FIXTURES "bert_cls.weights.safetensors");
    float ref[B * K], other[B * K];
    graft_bert_forward(&m, fx.ids, fx.types, fx.mask, NULL, B, 0);
    memcpy(ref, m.logits, sizeof ref);
    int32_t ids[B * T], types[B * T];
    int padded = 0;
    for (int i = 0; i < B * T; i++) {
        ids[i] = fx.mask[i] ? fx.ids[i] : 1 + (i * 37) % (V - 1);
        types[i] = fx.mask[i] ? fx.types[i] : 1;
        padded += !fx.mask[i];
    }
    assert_true(padded > 0);
    graft_bert_forward(&m, ids, types, fx.mask, NULL, B, 0);
    memcpy(other, m.logits, sizeof other);
    TU_CHECK_REL("logits with other padding tokens", rel_err(other, ref, B * K), 1e-6);
    graft_bert_forward(&m, fx.ids, fx.types, NULL, NULL, B, 0);
    double unmasked = rel_err(m.logits + K, ref + K, 2 * K); /* the padded rows */
    printf("  padded rows without the mask differ by %.3e\n", unmasked);
    assert_true(unmasked > 1e-3);
    /* the generic forward masks each row's trailing pad_id tokens */
    graft_bert_forward(&m, fx.ids, NULL, fx.mask, NULL, B, 0);
    memcpy(ref, m.logits, sizeof ref);
    m.cfg.pad_id = 0;
    graft_bert_forward_tokens(&m, fx.ids, NULL, B, 0);
    assert_memory_equal(m.logits, ref, sizeof ref);
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

/* ---- masked LM ------------------------------------------------------------------------ */

static void run_mlm_case(const char *label, const char *frozen) {
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_mlm.expect.safetensors", 1);
    graft_bert_config c = tiny_config(0);
    graft_bert m;
    make_model(&m, &c, frozen, FIXTURES "bert_mlm.weights.safetensors");
    graft_params_zero_grad(&m.params);
    float loss = graft_bert_forward(&m, fx.ids, fx.types, fx.mask, fx.labels, B, 1);
    /* graft computes the labelled positions only: gather them from the fixture */
    float *all = tu_read_tensor(&fx.f, "logits", NULL), *want_loss = tu_read_tensor(&fx.f, "loss", NULL);
    float *want = tu_floats((size_t)B * T * V);
    int M = 0;
    for (int r = 0; r < B * T; r++)
        if (fx.labels[r] >= 0)
            memcpy(want + (size_t)M++ * V, all + (size_t)r * V, V * sizeof(float));
    assert_int_equal(m.n_rows, M);
    assert_int_equal(m.counted, M);
    char name[64];
    snprintf(name, sizeof name, "mlm %s labelled logits", label);
    TU_CHECK_REL(name, rel_err(m.logits, want, (size_t)M * V), TOL);
    snprintf(name, sizeof name, "mlm %s loss", label);
    TU_CHECK_REL(name, rel_err(&loss, want_loss, 1), TOL);
    graft_bert_backward(&m, 1.0f);
    check_grads(&m, &fx.f, label);
    if (!frozen || !*frozen) { /* the tied decoder: its gradient lands on the embedding */
        assert_int_equal(graft_params_find(&m.params, "cls.predictions.decoder.weight"), -1);
        assert_int_equal(graft_params_find_alias(&m.params, "cls.predictions.decoder.weight"),
                         m.word);
        assert_int_equal(graft_params_find_alias(&m.params, "cls.predictions.decoder.bias"),
                         m.mlm_bias);
        /* the [PAD] row's gradient comes from the decoder only (padding_idx = 0) */
        const float *pad_grad = graft_params_grad(&m.params, m.word);
        double norm = 0;
        for (int i = 0; i < C; i++)
            norm += fabs(pad_grad[i]);
        assert_true(norm > 0);
    }
    /* without labels: every position's logits */
    assert_true(graft_bert_forward(&m, fx.ids, fx.types, fx.mask, NULL, B, 0) == 0.0f);
    assert_int_equal(m.n_rows, B * T);
    snprintf(name, sizeof name, "mlm %s all logits", label);
    TU_CHECK_REL(name, rel_err(m.logits, all, (size_t)B * T * V), TOL);
    free(all);
    free(want);
    free(want_loss);
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

static void test_mlm_fixture(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "bert_mlm.expect.safetensors"), GRAFT_OK);
    char cases[256];
    snprintf(cases, sizeof cases, "%s", graft_st_metadata_get(&f, "cases"));
    for (char *save = NULL, *cs = strtok_r(cases, ",", &save); cs;
         cs = strtok_r(NULL, ",", &save)) {
        char key[64];
        snprintf(key, sizeof key, "%s.frozen", cs);
        run_mlm_case(cs, graft_st_metadata_get(&f, key));
    }
    graft_st_close(&f);
}

/* The generic forward masks 15 % of the positions (80 % [MASK], 10 % random, 10 % kept),
 * from the step's seed while training and from the tokens while evaluating. */
static void test_mlm_masking(void **state) {
    (void)state;
    enum { BIG = 64 };
    graft_bert_config c = tiny_config(0);
    graft_bert m;
    assert_int_equal(graft_bert_init(&m, &c), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&m.params), GRAFT_OK);
    assert_int_equal(graft_bert_build(&m, BIG), GRAFT_OK);
    graft_bert_init_weights(&m, 3);
    int32_t *tokens = calloc(BIG * T, sizeof *tokens), *next = calloc(BIG * T, sizeof *next);
    for (int i = 0; i < BIG * T; i++)
        tokens[i] = 5 + (i * 7) % (V - 5);
    graft_rng_seed(&m.rng, 42);
    float loss = graft_bert_forward_tokens(&m, tokens, next, BIG, 1);
    int chosen = 0, masked = 0, kept = 0;
    for (int i = 0; i < BIG * T; i++) {
        if (m.mlm_labels[i] < 0) {
            assert_int_equal(m.ids[i], tokens[i]);
            continue;
        }
        assert_int_equal(m.mlm_labels[i], tokens[i]);
        chosen++;
        masked += m.ids[i] == c.mask_token_id;
        kept += m.ids[i] == tokens[i];
    }
    printf("  %d of %d positions chosen: %d masked, %d kept, loss %.3f\n", chosen, BIG * T, masked,
           kept, (double)loss);
    assert_int_equal(m.counted, chosen);
    assert_true(chosen > 0.10 * BIG * T && chosen < 0.20 * BIG * T);
    assert_true(masked > 0.70 * chosen && masked < 0.90 * chosen);
    assert_true(kept > 0.03 * chosen && kept < 0.20 * chosen);
    assert_true(isfinite(loss) && loss > 0);

    graft_rng_seed(&m.rng, 42); /* same seed, same masks */
    float again = graft_bert_forward_tokens(&m, tokens, next, BIG, 1);
    assert_true(again == loss);
    float eval1 = graft_bert_forward_tokens(&m, tokens, next, BIG, 0);
    graft_rng_seed(&m.rng, 7);
    float eval2 = graft_bert_forward_tokens(&m, tokens, next, BIG, 0);
    assert_true(eval1 == eval2 && eval1 != loss);
    free(tokens);
    free(next);
    graft_bert_free(&m);
}

/* ---- dropout against finite differences ------------------------------------------------ */

static float dropout_loss(graft_bert *m, const fixture *fx) {
    graft_rng_seed(&m->rng, 99); /* the same masks every time */
    return graft_bert_forward(m, fx->ids, fx->types, fx->mask, fx->labels, B, 1);
}

/* Checks that the last training forward dropped about p of layer l's attention
 * probabilities (to 5 binomial sigmas) among the keys before each sequence's padding: the
 * op's keep bits, or those of the last layer's own kernel when it computed R < BT rows. */
static void check_attention_dropped(const graft_bert *m, int l, const int32_t *attention_mask) {
    const uint64_t *keep = m->acts[l].keep;
    assert_non_null(keep);
    const size_t words = graft_attention_keep_words(T);
    const int rows_kernel = l == m->cfg.n_layer - 1 && m->n_rows < B * T;
    const int R = rows_kernel ? m->n_rows : B * T;
    size_t drawn = 0, kept = 0;
    for (int r = 0; r < R; r++) {
        int token = rows_kernel ? m->rows[r] : r, b = token / T, keys = T;
        while (keys > 0 && !attention_mask[b * T + keys - 1])
            keys--;
        for (int h = 0; h < NH; h++) {
            size_t row = rows_kernel ? (size_t)r * NH + h : ((size_t)b * NH + h) * T + token % T;
            for (int j = 0; j < keys; j++)
                kept += (keep[row * words + (size_t)j / 64] >> (j % 64)) & 1;
            drawn += (size_t)keys;
        }
    }
    const double p = m->cfg.dropout, dropped = 1.0 - (double)kept / (double)drawn;
    printf("  layer %d: %.3f of %zu attention probabilities dropped\n", l, dropped, drawn);
    assert_true(fabs(dropped - p) <= 5.0 * sqrt(p * (1.0 - p) / (double)drawn));
}

/* Gradients with dropout 0.2 (hidden and attention) against central differences of the
 * loss with the same masks, at a few entries of every trainable parameter kind. */
static void check_dropout_fd(const char *label, int num_classes, int n_layer, const char *frozen) {
    fixture fx;
    const char *base = num_classes ? FIXTURES "bert_cls" : FIXTURES "bert_mlm";
    char path[512];
    snprintf(path, sizeof path, "%s.expect.safetensors", base);
    open_fixture(&fx, path, !num_classes);
    graft_bert_config c = tiny_config(num_classes);
    c.n_layer = n_layer;
    c.dropout = 0.2f;
    graft_bert m;
    make_model(&m, &c, frozen, NULL);
    snprintf(path, sizeof path, "%s.weights.safetensors", base);
    assert_int_equal(graft_params_load(&m.params, path, NULL, NULL), GRAFT_OK); /* not strict */
    graft_params_zero_grad(&m.params);
    float loss = dropout_loss(&m, &fx);
    for (int l = 0; l < n_layer; l++)
        if (m.acts[l].keep) check_attention_dropped(&m, l, fx.mask);
    graft_bert_backward(&m, 1.0f);
    float eval = graft_bert_forward(&m, fx.ids, fx.types, fx.mask, fx.labels, B, 0);
    assert_true(loss != eval);
    enum { PER = 3, MAX = 64 * PER };
    float got[MAX];
    double fd[MAX];
    int count = 0;
    const float h = 1e-2f;
    for (int idx = 0; idx < m.params.count; idx++) {
        const float *g = graft_params_grad(&m.params, idx);
        if (!g) continue;
        float *v = graft_params_value(&m.params, idx);
        size_t n = m.params.items[idx].numel;
        for (int j = 0; j < PER && count < MAX; j++) {
            /* a real token's row of the word embeddings; spread entries otherwise */
            size_t e = idx == m.word ? (size_t)fx.ids[3] * C + (size_t)j : (size_t)j * (n / PER);
            float keep = v[e];
            v[e] = keep + h;
            double lp = dropout_loss(&m, &fx);
            v[e] = keep - h;
            double lm = dropout_loss(&m, &fx);
            v[e] = keep;
            fd[count] = (lp - lm) / (2.0 * h);
            got[count++] = g[e];
        }
    }
    TU_CHECK_REL(label, tu_rel_err_fd(got, fd, (size_t)count, 1e-2), 2e-3);
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

static void test_dropout_finite_differences(void **state) {
    (void)state;
    check_dropout_fd("cls, dropout 0.2: gradients vs FD", K, L, NULL);
    check_dropout_fd("mlm, dropout 0.2: gradients vs FD", 0, L, NULL);
    /* one layer: the last layer is the first; frozen embeddings borrow buffers */
    check_dropout_fd("cls, 1 layer, frozen embeddings", K, 1, "bert.embeddings.*");
    check_dropout_fd("mlm, 1 layer, frozen embeddings", 0, 1, "bert.embeddings.*");
    check_dropout_fd("mlm, 1 layer, head only", 0, 1, "bert.*");
}

/* ---- backward hooks ---------------------------------------------------------------------- */


/* Every trainable parameter is announced once, in backward order, tiling the buffer. */
static void test_grad_ready_order(void **state) {
    (void)state;
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_mlm.expect.safetensors", 1);
    const char *frozen[] = {NULL, "bert.encoder.layer.0.*"};
    for (int heads = 0; heads < 2; heads++)
        for (int f = 0; f < 2; f++) {
            graft_bert_config c = tiny_config(heads ? K : 0);
            graft_bert m;
            make_model(&m, &c, frozen[f], NULL);
            tu_hook_log h = {0, 0};
            m.params.on_grad_ready = tu_record_ready;
            m.params.on_grad_ready_ctx = &h;
            int32_t labels[B * T];
            for (int i = 0; i < B * T; i++)
                labels[i] = heads ? i % K : fx.labels[i];
            graft_bert_forward(&m, fx.ids, fx.types, fx.mask, labels, B, 1);
            graft_bert_backward(&m, 1.0f);
            int trainable = 0;
            for (int i = 0; i < m.params.count; i++)
                trainable += m.params.items[i].trainable;
            assert_int_equal(h.calls, (size_t)trainable);
            assert_int_equal(h.next, m.params.n_grads);
            graft_bert_free(&m);
        }
    graft_st_close(&fx.f);
}

/* ---- the generic interface and config errors ------------------------------------------- */

static graft_config tiny_graft_config(void) {
    graft_config cfg;
    graft_config_defaults(&cfg);
    free(cfg.model.arch);
    cfg.model.arch = strdup("bert");
    cfg.model.n_layer = L;
    cfg.model.n_head = NH;
    cfg.model.n_embd = C;
    cfg.model.n_positions = NPOS;
    cfg.model.mask_token_id = 4;
    return cfg;
}

static graft_status try_create(const graft_config *cfg, const graft_model_input *in) {
    graft_model model;
    graft_status st = graft_model_create(&model, cfg, in);
    graft_model_free(&model);
    return st;
}

static void test_create_and_errors(void **state) {
    (void)state;
    graft_config cfg = tiny_graft_config();
    graft_model_input tokens = {.vocab_size = V, .seq_len = T, .pad_id = -1};
    graft_model model;
    assert_int_equal(graft_model_create(&model, &cfg, &tokens), GRAFT_OK);
    assert_int_equal(model.task, GRAFT_TASK_LANGUAGE);
    assert_int_equal(model.num_outputs, V);
    assert_null(model.iface.head);
    assert_true(graft_params_find_alias(model.params, "cls.predictions.decoder.weight") >= 0);
    graft_model_free(&model);

    cfg.model.head_num_classes = 5;
    assert_int_equal(graft_model_create(&model, &cfg, &tokens), GRAFT_OK);
    assert_int_equal(model.task, GRAFT_TASK_CLASSIFY);
    assert_int_equal(model.num_outputs, 5);
    assert_string_equal(model.iface.head, "classifier");
    assert_true(graft_params_find(model.params, "bert.pooler.dense.weight") >= 0);
    /* the interface end to end: build, init, a step */
    assert_int_equal(graft_params_finalize(model.params), GRAFT_OK);
    assert_int_equal(model.iface.build(model.self, 2), GRAFT_OK);
    model.iface.init_weights(model.self, 5);
    model.iface.seed_step(model.self, 6);
    int32_t ids[2 * T], labels[2] = {1, 4};
    for (int i = 0; i < 2 * T; i++)
        ids[i] = 1 + i % (V - 1);
    int counted = 0;
    float loss = model.iface.forward(model.self, NULL, ids, labels, 2, 1, &counted);
    assert_int_equal(counted, 2);
    printf("  fresh 5-class head: loss %.4f (ln 5 = %.4f)\n", (double)loss, log(5.0));
    assert_true(fabs(loss - log(5.0)) < 0.2);
    model.iface.backward(model.self, 1.0f);
    assert_non_null(model.iface.logits(model.self));
    graft_model_free(&model);
    cfg.model.head_num_classes = 0;

    graft_model_input images = {
        .channels = 3, .height = 8, .width = 8, .num_classes = 10, .pad_id = -1};
    assert_int_equal(try_create(&cfg, &images), GRAFT_ERR_CONFIG);
    graft_model_input long_seq = {.vocab_size = V, .seq_len = NPOS + 1, .pad_id = -1};
    assert_int_equal(try_create(&cfg, &long_seq), GRAFT_ERR_CONFIG);
    cfg.model.vocab_size = V - 1; /* the dataset's ids would not fit */
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_ERR_CONFIG);
    cfg.model.vocab_size = V + 1; /* a larger vocabulary holds them */
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_OK);
    cfg.model.vocab_size = V;
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_OK);
    cfg.model.n_head = 5;
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_ERR_CONFIG);
    cfg.model.n_head = NH;
    cfg.model.mask_token_id = 103; /* BERT's [MASK], outside this vocabulary */
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_ERR_CONFIG);
    cfg.model.head_num_classes = 2; /* a classifier has no use for it */
    assert_int_equal(try_create(&cfg, &tokens), GRAFT_OK);
    graft_config_free(&cfg);
}

static void test_map_name(void **state) {
    (void)state;
    graft_config cfg = tiny_graft_config();
    graft_model_input tokens = {.vocab_size = V, .seq_len = T, .pad_id = -1};
    graft_model model;
    assert_int_equal(graft_model_create(&model, &cfg, &tokens), GRAFT_OK);
    const char *(*map)(const char *, char *, size_t) = model.iface.map_name;
    char buf[GRAFT_NAME_MAX];
    assert_null(map("bert.embeddings.position_ids", buf, sizeof buf));
    assert_null(map("bert.embeddings.token_type_ids", buf, sizeof buf));
    assert_string_equal(map("classifier.weight", buf, sizeof buf), "classifier.weight");
    assert_string_equal(map("bert.embeddings.LayerNorm.gamma", buf, sizeof buf),
                        "bert.embeddings.LayerNorm.weight");
    assert_string_equal(map("cls.predictions.transform.LayerNorm.beta", buf, sizeof buf),
                        "cls.predictions.transform.LayerNorm.bias");
    assert_string_equal(map("encoder.layer.3.output.dense.bias", buf, sizeof buf),
                        "bert.encoder.layer.3.output.dense.bias");
    graft_model_free(&model);
    graft_config_free(&cfg);
}

/* HF's init: N(0, 0.02) matrices, zero biases, LayerNorm 1/0, a zero [PAD] row. */
static void test_init_weights(void **state) {
    (void)state;
    graft_bert_config c = tiny_config(0);
    graft_bert m;
    make_model(&m, &c, NULL, NULL);
    const float *w = graft_params_value(&m.params, m.layers[1].intermediate.weight);
    double sum = 0, sq = 0;
    size_t n = 4 * C * C;
    for (size_t i = 0; i < n; i++) {
        sum += w[i];
        sq += (double)w[i] * w[i];
    }
    double sd = sqrt(sq / n - (sum / n) * (sum / n));
    printf("  intermediate.dense.weight std %.4f\n", sd);
    assert_true(fabs(sd - 0.02) < 0.002);
    const float *word = graft_params_value(&m.params, m.word);
    for (int i = 0; i < C; i++)
        assert_true(word[i] == 0.0f && word[C + i] != 0.0f);
    assert_true(graft_params_value(&m.params, m.layers[0].out_ln.weight)[3] == 1.0f);
    assert_true(graft_params_value(&m.params, m.transform_ln.weight)[0] == 1.0f);
    assert_true(graft_params_value(&m.params, m.transform_ln.bias)[0] == 0.0f);
    assert_true(graft_params_value(&m.params, m.mlm_bias)[7] == 0.0f);
    graft_bert_free(&m);
}

/* graft's own initialisation saved with its logits on the fixture inputs, for
 * `tools/make_fixtures.py --check-saved` (strict load into PyTorch, same logits). */
static void save_for_pytorch(int num_classes, const char *head) {
    fixture fx;
    open_fixture(&fx, FIXTURES "bert_cls.expect.safetensors", 0);
    graft_bert_config c = tiny_config(num_classes);
    graft_bert m;
    make_model(&m, &c, NULL, NULL);
    /* larger weights, and LayerNorms and biases perturbed, so that every part shows */
    for (int i = 0; i < m.params.count; i++) {
        float *v = graft_params_value(&m.params, i);
        size_t n = m.params.items[i].numel;
        if (m.params.items[i].ndim == 1)
            tu_fill_uniform(v, n, 0.9f, 1.1f, (uint64_t)i);
        else
            for (size_t j = 0; j < n; j++)
                v[j] *= 10.0f;
    }
    graft_bert_forward(&m, fx.ids, fx.types, fx.mask, NULL, B, 0);
    char path[512];
    snprintf(path, sizeof path, SAVED "/%s.safetensors", head);
    assert_int_equal(graft_params_save(&m.params, path), GRAFT_OK);
    size_t rows = num_classes ? B : B * T, width = num_classes ? (size_t)num_classes : V;
    graft_st_writer w;
    graft_st_writer_init(&w);
    int64_t bt[2] = {B, T}, lshape[2] = {(int64_t)rows, (int64_t)width};
    assert_int_equal(graft_st_writer_add(&w, "input_ids", GRAFT_DTYPE_I32, 2, bt, fx.ids),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "token_type_ids", GRAFT_DTYPE_I32, 2, bt, fx.types),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "attention_mask", GRAFT_DTYPE_I32, 2, bt, fx.mask),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "logits", GRAFT_DTYPE_F32, 2, lshape, m.logits),
                     GRAFT_OK);
    snprintf(path, sizeof path, SAVED "/%s.check.safetensors", head);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);
    graft_bert_free(&m);
    graft_st_close(&fx.f);
}

static void test_save_for_pytorch(void **state) {
    (void)state;
    mkdir(GRAFT_BUILD_DIR "/tests", 0755);
    mkdir(SAVED, 0755);
    save_for_pytorch(K, "bert_cls");
    save_for_pytorch(0, "bert_mlm");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cls_fixture),
        cmocka_unit_test(test_cls_head_only),
        cmocka_unit_test(test_rebuild_after_unfreeze),
        cmocka_unit_test(test_padding_mask),
        cmocka_unit_test(test_mlm_fixture),
        cmocka_unit_test(test_mlm_masking),
        cmocka_unit_test(test_dropout_finite_differences),
        cmocka_unit_test(test_grad_ready_order),
        cmocka_unit_test(test_create_and_errors),
        cmocka_unit_test(test_map_name),
        cmocka_unit_test(test_init_weights),
        cmocka_unit_test(test_save_for_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
