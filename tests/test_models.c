/* Tests for the model registry (models/model.h): every architecture has one descriptor,
 * model.arch's choices in the config table are exactly the registry's names, default
 * sizes are applied from the registry, and callers reach models only through the
 * graft_model_* functions. */
#include "tests/testutil.h"

#include <string.h>

#include "models/model.h"
#include "runtime/config/config_internal.h"

/* model.arch's "a|b|c" choices, as the config table declares them. */
static const char *arch_choices(void) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strcmp(cfg_keys[i].key, "model.arch") == 0) return cfg_keys[i].choices;
    return NULL;
}

static void test_registry_matches_config(void **state) {
    (void)state;
    const char *choices = arch_choices();
    assert_non_null(choices);
    char names[512] = "";
    for (int i = 0; i < graft_model_count(); i++) {
        const graft_model_desc *d = graft_model_desc_at(i);
        assert_non_null(d->create);
        assert_ptr_equal(graft_model_find(d->arch), d);
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", i ? "|" : "", d->arch);
    }
    /* same set; the order is the config's to choose */
    for (const char *c = choices; *c;) {
        size_t n = strcspn(c, "|");
        char arch[64];
        snprintf(arch, sizeof arch, "%.*s", (int)n, c);
        if (!graft_model_find(arch))
            fail_msg("model.arch choice '%s' is not in the registry", arch);
        c += n + (c[n] == '|');
    }
    for (int i = 0; i < graft_model_count(); i++) {
        const char *arch = graft_model_desc_at(i)->arch;
        const char *at = strstr(choices, arch);
        size_t n = strlen(arch);
        int listed = 0;
        for (; at && !listed; at = strstr(at + 1, arch))
            listed = (at == choices || at[-1] == '|') && (at[n] == '|' || at[n] == '\0');
        if (!listed) fail_msg("registry architecture '%s' is not a model.arch choice", arch);
    }
    assert_null(graft_model_find("nope"));
    assert_null(graft_model_find(NULL));
    assert_null(graft_model_desc_at(graft_model_count()));
}

/* A size left 0 takes the registry's default: GPT-2 small's 12 layers of width 768. */
static void test_defaults_from_registry(void **state) {
    (void)state;
    graft_config cfg;
    graft_config_defaults(&cfg);
    assert_int_equal(graft_config_override(&cfg, "model.arch=gpt2"), GRAFT_OK);
    assert_int_equal(graft_config_override(&cfg, "model.n_positions=16"), GRAFT_OK);
    graft_model_input in = {.vocab_size = 32, .seq_len = 8, .pad_id = -1};
    graft_model m;
    assert_int_equal(graft_model_create(&m, &cfg, &in), GRAFT_OK);
    const graft_model_desc *d = graft_model_find("gpt2");
    char name[64];
    snprintf(name, sizeof name, "transformer.h.%d.ln_1.weight", d->defaults.n_layer - 1);
    assert_true(graft_params_find(m.params, name) >= 0);
    snprintf(name, sizeof name, "transformer.h.%d.ln_1.weight", d->defaults.n_layer);
    assert_int_equal(graft_params_find(m.params, name), -1);
    int wte = graft_params_find(m.params, "transformer.wte.weight");
    assert_int_equal(m.params->items[wte].shape[1], d->defaults.n_embd);
    assert_null(graft_model_head(&m));
    graft_model_free(&m);
    graft_config_free(&cfg);
}

/* The wrappers drive a model end to end: build, init, a training step, logits. */
static void test_wrappers(void **state) {
    (void)state;
    graft_config cfg;
    graft_config_defaults(&cfg);
    assert_int_equal(graft_config_override(&cfg, "model.arch=mlp"), GRAFT_OK);
    assert_int_equal(graft_config_override(&cfg, "model.hidden=[4]"), GRAFT_OK);
    graft_model_input in = {.channels = 1, .height = 2, .width = 2, .num_classes = 3, .pad_id = -1};
    graft_model m;
    assert_int_equal(graft_model_create(&m, &cfg, &in), GRAFT_OK);
    assert_string_equal(graft_model_head(&m), "head");
    assert_int_equal(graft_params_finalize(m.params), GRAFT_OK);
    assert_int_equal(graft_model_build(&m, 2), GRAFT_OK);
    graft_model_init_weights(&m, 1);
    graft_model_seed_step(&m, 5);
    const float x[8] = {1, 2, 3, 4, -1, 0, 1, 0};
    const int32_t y[2] = {0, 2};
    int counted = 0;
    float loss = graft_model_forward(&m, x, NULL, y, 2, 1, &counted);
    assert_int_equal(counted, 2);
    assert_true(loss > 0);
    graft_params_zero_grad(m.params);
    graft_model_backward(&m, 1.0f);
    float norm = 0;
    for (size_t i = 0; i < m.params->n_grads; i++)
        norm += m.params->grads[i] * m.params->grads[i];
    assert_true(norm > 0);
    assert_non_null(graft_model_logits(&m));
    graft_load_options opt = graft_model_load_options(&m, 1, 1);
    assert_int_equal(opt.strict, 1);
    assert_string_equal(opt.replaced, "head");
    graft_model_free(&m);
    graft_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_matches_config),
        cmocka_unit_test(test_defaults_from_registry),
        cmocka_unit_test(test_wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
