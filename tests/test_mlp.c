/* models/mlp: whole-model gradients against finite differences of a double-precision
 * reference, stop-backward with frozen layers, and a few real optimizer steps. */
#include "tests/testutil_model.h"

#include "models/mlp/mlp.h"
#include "runtime/optim/optim.h"

enum { IN = 5, H0 = 7, H1 = 3, K = 4, B = 3 };

static void build(graft_mlp *m, const char *frozen_glob, float dropout) {
    graft_mlp_config cfg = {.in_dim = IN, .n_hidden = 2, .hidden = {H0, H1}, .num_classes = K,
                            .dropout = dropout};
    assert_int_equal(graft_mlp_init(m, &cfg), GRAFT_OK);
    if (frozen_glob) {
        int matched = 0;
        assert_int_equal(graft_params_set_trainable(&m->params, frozen_glob, 0, &matched), GRAFT_OK);
        assert_true(matched > 0);
    }
    assert_int_equal(graft_mlp_build(m, 8), GRAFT_OK);
    graft_mlp_init_weights(m, 7);
}

/* Mean cross-entropy of the MLP in double, straight from the parameter values. */
static double reference_loss(const graft_mlp *m, const double *values, const float *x,
                             const int32_t *y) {
    const int widths[] = {IN, H0, H1, K};
    double act[B][H0 > IN ? H0 : IN], next[B][H0 > IN ? H0 : IN];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < IN; i++) act[b][i] = x[b * IN + i];
    for (int l = 0; l < 3; l++) {
        const double *w = values + m->params.items[m->layers[l].weight].offset;
        const double *bias = values + m->params.items[m->layers[l].bias].offset;
        int in = widths[l], out = widths[l + 1];
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out; o++) {
                double s = bias[o];
                for (int i = 0; i < in; i++) s += w[o * in + i] * act[b][i];
                next[b][o] = (l < 2 && s < 0) ? 0 : s;
            }
        memcpy(act, next, sizeof act);
    }
    double loss = 0;
    for (int b = 0; b < B; b++) {
        double mx = act[b][0], z = 0;
        for (int k = 1; k < K; k++) mx = fmax(mx, act[b][k]);
        for (int k = 0; k < K; k++) z += exp(act[b][k] - mx);
        loss += log(z) + mx - act[b][y[b]];
    }
    return loss / B;
}

static void make_batch(float *x, int32_t *y) {
    tu_fill_uniform(x, B * IN, -2, 2, 11);
    for (int b = 0; b < B; b++) y[b] = (b * 3 + 1) % K;
}

static void test_gradients_match_finite_differences(void **state) {
    (void)state;
    graft_mlp m;
    build(&m, NULL, 0);
    float x[B * IN];
    int32_t y[B];
    make_batch(x, y);
    graft_params_zero_grad(&m.params);
    float loss = graft_mlp_forward(&m, x, y, B, 1);
    graft_mlp_backward(&m, 1.0f);

    size_t n = m.params.n_values;
    double *v = tu_doubles(n), *fd = tu_doubles(n);
    for (size_t i = 0; i < n; i++) v[i] = m.params.values[i];
    double ref = reference_loss(&m, v, x, y);
    printf("  loss graft %.7f reference %.7f\n", (double)loss, ref);
    assert_true(fabs(loss - ref) < 1e-5);
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + h;
        double lp = reference_loss(&m, v, x, y);
        v[i] = keep - h;
        double lm = reference_loss(&m, v, x, y);
        v[i] = keep;
        fd[i] = (lp - lm) / (2 * h);
    }
    /* graft's gradients are in backward order: gather them in value order. */
    float *g = tu_floats(n);
    for (int p = 0; p < m.params.count; p++)
        memcpy(g + m.params.items[p].offset, graft_params_grad(&m.params, p),
               m.params.items[p].numel * sizeof(float));
    TU_CHECK_REL("mlp parameter gradients vs FD", tu_rel_err_fd(g, fd, n, 1e-3), 1e-4);
    free(v);
    free(fd);
    free(g);
    graft_mlp_free(&m);
}

/* Freezing the first layer: no gradient storage for it, identical gradients for the
 * rest (backward simply stops earlier), and its values never change. */
static void test_frozen_first_layer(void **state) {
    (void)state;
    graft_mlp full, part;
    build(&full, NULL, 0);
    build(&part, "hidden.0.*", 0);
    assert_null(graft_params_grad(&part.params, part.layers[0].weight));
    assert_null(graft_params_grad(&part.params, part.layers[0].bias));
    assert_int_equal(part.params.n_grads, (size_t)(H0 * H1 + H1 + H1 * K + K));
    float x[B * IN];
    int32_t y[B];
    make_batch(x, y);
    for (graft_mlp *m = &full; m; m = m == &full ? &part : NULL) {
        graft_params_zero_grad(&m->params);
        graft_mlp_forward(m, x, y, B, 1);
        graft_mlp_backward(m, 1.0f);
    }
    for (int l = 1; l < 3; l++) {
        int w = full.layers[l].weight;
        assert_memory_equal(graft_params_grad(&full.params, w), graft_params_grad(&part.params, w),
                            full.params.items[w].numel * sizeof(float));
    }
    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    graft_optim opt;
    assert_int_equal(graft_optim_init(&opt, &ocfg, &part.params), GRAFT_OK);
    size_t n0 = part.params.items[part.layers[0].weight].numel;
    float *before = tu_floats(n0);
    memcpy(before, graft_params_value(&part.params, part.layers[0].weight), n0 * sizeof(float));
    float first = 0, last = 0;
    for (int step = 0; step < 50; step++) {
        graft_params_zero_grad(&part.params);
        last = graft_mlp_forward(&part, x, y, B, 1);
        if (step == 0) first = last;
        graft_mlp_backward(&part, 1.0f);
        assert_int_equal(graft_optim_step(&opt, &part.params, 0.05f), GRAFT_OK);
    }
    printf("  loss %.4f -> %.4f after 50 steps with hidden.0 frozen\n", (double)first, (double)last);
    assert_true(last < 0.5f * first);
    assert_memory_equal(before, graft_params_value(&part.params, part.layers[0].weight),
                        n0 * sizeof(float));
    free(before);
    graft_optim_free(&opt);
    graft_mlp_free(&full);
    graft_mlp_free(&part);
}

/* Dropout is seeded (same seed, same result) and only active in training. */
static void test_dropout_seeded(void **state) {
    (void)state;
    graft_mlp a, b;
    build(&a, NULL, 0.5f);
    build(&b, NULL, 0.5f);
    float x[B * IN];
    int32_t y[B];
    make_batch(x, y);
    float la = graft_mlp_forward(&a, x, y, B, 1), lb = graft_mlp_forward(&b, x, y, B, 1);
    assert_true(la == lb);
    float eval1 = graft_mlp_forward(&a, x, y, B, 0), eval2 = graft_mlp_forward(&a, x, y, B, 0);
    assert_true(eval1 == eval2);
    assert_true(la != eval1);
    graft_mlp_free(&a);
    graft_mlp_free(&b);
}

/* The backward tells the grad-ready hook about every trainable parameter once, and
 * in backward order the announced ranges tile the gradient buffer from 0 upward. */

static void test_grad_ready_hook(void **state) {
    (void)state;
    graft_mlp m;
    build(&m, "hidden.0.weight", 0);
    tu_hook_log h = {0, 0};
    m.params.on_grad_ready = tu_record_ready;
    m.params.on_grad_ready_ctx = &h;
    float x[B * IN];
    int32_t y[B];
    make_batch(x, y);
    graft_mlp_forward(&m, x, y, B, 1);
    graft_mlp_backward(&m, 1.0f);
    assert_int_equal(h.calls, 5); /* all but the frozen hidden.0.weight */
    assert_int_equal(h.next, m.params.n_grads);
    graft_mlp_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_frozen_first_layer),
        cmocka_unit_test(test_dropout_seeded),
        cmocka_unit_test(test_grad_ready_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
