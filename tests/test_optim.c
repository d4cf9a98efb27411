/* Tests for runtime/optim: SGD and AdamW against hand-computed steps (torch
 * semantics), parameter groups, frozen parameters, grad clipping, lr schedules.
 * Expected numbers are literals worked out by hand (derivations in comments) or
 * come from a double-precision textbook reference written here, never from the
 * code under test. */
#include "tests/testutil.h"

#include "runtime/nn/params.h"
#include "runtime/optim/optim.h"

#define STEP_TOL 1e-6

/* A table with one trainable parameter "w" of n elements holding w0. */
static void one_param_table(graft_params *p, const float *w0, int64_t n) {
    graft_params_init(p);
    int64_t shape[1] = {n};
    assert_int_equal(graft_params_add(p, "w", GRAFT_KIND_PARAM, 1, shape), 0);
    assert_int_equal(graft_params_finalize(p), GRAFT_OK);
    memcpy(p->values, w0, (size_t)n * sizeof(float));
}

/* Run len(grads) steps of `cfg` at learning rate lr on one parameter of n
 * elements and compare w after every step with expected[step][i] (doubles). */
static void run_and_check(const char *name, const graft_optim_config *cfg, const float *w0, int n,
                          int steps, const float *grads, const double *expected, float lr,
                          graft_optim *keep) {
    graft_params p;
    one_param_table(&p, w0, n);
    graft_optim o;
    assert_int_equal(graft_optim_init(&o, cfg, &p), GRAFT_OK);
    for (int s = 0; s < steps; s++) {
        memcpy(p.grads, grads + (size_t)s * n, (size_t)n * sizeof(float));
        assert_int_equal(graft_optim_step(&o, &p, lr), GRAFT_OK);
        /* the optimizer reads gradients, never writes them */
        assert_memory_equal(p.grads, grads + (size_t)s * n, (size_t)n * sizeof(float));
        char label[96];
        snprintf(label, sizeof label, "%s step %d", name, s + 1);
        TU_CHECK_REL(label, tu_rel_err_fd(p.values, expected + (size_t)s * n, (size_t)n, 1.0),
                     STEP_TOL);
    }
    assert_int_equal(o.step, steps);
    if (keep)
        *keep = o;
    else
        graft_optim_free(&o);
    graft_params_free(&p);
}

/* w -= lr*g: w0 = (1, -2, 0.5), g = (0.5, 0.25, -1), lr = 0.1, twice. */
static void test_sgd_plain(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    const float w0[3] = {1.0f, -2.0f, 0.5f};
    const float g[2][3] = {{0.5f, 0.25f, -1.0f}, {0.5f, 0.25f, -1.0f}};
    const double expected[2][3] = {{0.95, -2.025, 0.6}, {0.9, -2.05, 0.7}};
    graft_optim o;
    run_and_check("sgd plain", &cfg, w0, 3, 2, &g[0][0], &expected[0][0], 0.1f, &o);
    assert_int_equal(o.n_bufs, 0); /* momentum 0 keeps no state, as torch */
    assert_null(o.state);
    assert_null(graft_optim_state_buf(&o, 0));
    graft_optim_free(&o);
}

/* momentum 0.9, lr 0.1. Element A: g = 0.5, 0.25, -1.0
 *   buf = 0.5 (first step: buf = g)       w = 1 - 0.05 = 0.95
 *   buf = 0.9*0.5 + 0.25 = 0.7            w = 0.95 - 0.07 = 0.88
 *   buf = 0.63 - 1.0 = -0.37              w = 0.88 + 0.037 = 0.917
 * Element B: w0 = -0.5, g = -0.2, 0.4, 0.1 -> buf -0.2, 0.22, 0.298; w -0.48, -0.502, -0.5318 */
static void test_sgd_momentum(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    cfg.momentum = 0.9;
    const float w0[2] = {1.0f, -0.5f};
    const float g[3][2] = {{0.5f, -0.2f}, {0.25f, 0.4f}, {-1.0f, 0.1f}};
    const double expected[3][2] = {{0.95, -0.48}, {0.88, -0.502}, {0.917, -0.5318}};
    graft_optim o;
    run_and_check("sgd momentum", &cfg, w0, 2, 3, &g[0][0], &expected[0][0], 0.1f, &o);
    assert_int_equal(o.n_bufs, 1);
    assert_string_equal(graft_optim_state_name(&o, 0), "momentum_buffer");
    const double buf[2] = {-0.37, 0.298};
    TU_CHECK_REL("sgd momentum buffer", tu_rel_err_fd(graft_optim_state_buf(&o, 0), buf, 2, 1.0),
                 STEP_TOL);
    graft_optim_free(&o);
    graft_optim_free(&o); /* a freed optimizer frees again as a no-op */
}

/* nesterov: d = g + momentum*buf. Element A (w0 1, g 0.5, 0.25, -1.0):
 *   buf 0.5,  d = 0.5 + 0.45 = 0.95,    w = 1 - 0.095 = 0.905
 *   buf 0.7,  d = 0.25 + 0.63 = 0.88,   w = 0.905 - 0.088 = 0.817
 *   buf -0.37, d = -1 - 0.333 = -1.333, w = 0.817 + 0.1333 = 0.9503
 * Element B (w0 -0.5, g -0.2, 0.4, 0.1): d = -0.38, 0.598, 0.3682 -> w -0.462, -0.5218, -0.55862 */
static void test_sgd_nesterov(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    cfg.momentum = 0.9;
    cfg.nesterov = 1;
    const float w0[2] = {1.0f, -0.5f};
    const float g[3][2] = {{0.5f, -0.2f}, {0.25f, 0.4f}, {-1.0f, 0.1f}};
    const double expected[3][2] = {{0.905, -0.462}, {0.817, -0.5218}, {0.9503, -0.55862}};
    run_and_check("sgd nesterov", &cfg, w0, 2, 3, &g[0][0], &expected[0][0], 0.1f, NULL);
}

/* Coupled weight decay wd = 0.1: d = g + 0.1*w.
 * With momentum 0.9, element A (w0 1, g 0.5, 0.25, -1.0):
 *   d = 0.6,                buf 0.6,     w = 0.94
 *   d = 0.25 + 0.094 = 0.344, buf = 0.884, w = 0.8516
 *   d = -1 + 0.08516 = -0.91484, buf = 0.7956 - 0.91484 = -0.11924, w = 0.863524
 * element B (w0 2, g -0.5, 0.75, 0.25): d = -0.3 -> w 2.03; d = 0.953 -> buf 0.683, w 1.9617;
 *   d = 0.44617 -> buf 1.06087, w 1.855613.
 * Without momentum (w0 2, g 0.5 then 0.25): w = 2 - 0.1*0.7 = 1.93, then 1.93 - 0.1*0.443 = 1.8857
 */
static void test_sgd_weight_decay(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    cfg.momentum = 0.9;
    cfg.weight_decay = 0.1;
    const float w0[2] = {1.0f, 2.0f};
    const float g[3][2] = {{0.5f, -0.5f}, {0.25f, 0.75f}, {-1.0f, 0.25f}};
    const double expected[3][2] = {{0.94, 2.03}, {0.8516, 1.9617}, {0.863524, 1.855613}};
    run_and_check("sgd momentum + wd", &cfg, w0, 2, 3, &g[0][0], &expected[0][0], 0.1f, NULL);

    cfg.momentum = 0.0;
    const float w1[1] = {2.0f};
    const float g1[2] = {0.5f, 0.25f};
    const double expected1[2] = {1.93, 1.8857};
    run_and_check("sgd plain + wd", &cfg, w1, 1, 2, g1, expected1, 0.1f, NULL);
}

/* dampening 0.5 (torch: not applied on the first step): buf 0.5, w 0.95;
 * buf = 0.45 + 0.5*0.25 = 0.575, w = 0.8925; buf = 0.5175 - 0.5 = 0.0175, w = 0.89075 */
static void test_sgd_dampening(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    cfg.momentum = 0.9;
    cfg.dampening = 0.5;
    const float w0[1] = {1.0f};
    const float g[3] = {0.5f, 0.25f, -1.0f};
    const double expected[3] = {0.95, 0.8925, 0.89075};
    run_and_check("sgd dampening", &cfg, w0, 1, 3, g, expected, 0.1f, NULL);
}

/* AdamW, lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.1 (decoupled: w *= 1 - 0.01 first).
 * Element A, w0 = 1, g = 0.5, -0.3, 0.2:
 *   step 1: w = 0.99; m = 0.05, v = 0.00025; m/(1-0.9) = 0.5, v/(1-0.999) = 0.25
 *           w = 0.99 - 0.1*0.5/(0.5 + 1e-8) = 0.890000002
 *   step 2: w = 0.8811; m = 0.045 - 0.03 = 0.015, v = 0.00024975 + 0.00009 = 0.00033975
 *           mhat = 0.015/0.19 = 0.0789474, vhat = 0.00033975/0.001999 = 0.169960
 *           w = 0.8811 - 0.1*0.0789474/0.412262 = 0.86195020
 *   step 3: (same recipe) 0.81858793
 * Element B, w0 = -2, g = -0.01, 0.02, 0.03: -1.8800001, -1.8978104, -1.9469682 */
static void test_adamw_steps(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_ADAMW);
    cfg.weight_decay = 0.1;
    assert_true(cfg.beta1 == 0.9 && cfg.beta2 == 0.999 && cfg.eps == 1e-8);
    const float w0[2] = {1.0f, -2.0f};
    const float g[3][2] = {{0.5f, -0.01f}, {-0.3f, 0.02f}, {0.2f, 0.03f}};
    const double expected[3][2] = {{0.890000002, -1.8800000999999},
                                   {0.8619501989217752, -1.8978104285525539},
                                   {0.8185879287816642, -1.9469682086737954}};
    graft_optim o;
    run_and_check("adamw", &cfg, w0, 2, 3, &g[0][0], &expected[0][0], 0.1f, &o);
    assert_int_equal(o.n_bufs, 2);
    assert_string_equal(graft_optim_state_name(&o, 0), "exp_avg");
    assert_string_equal(graft_optim_state_name(&o, 1), "exp_avg_sq");
    assert_null(graft_optim_state_name(&o, 2));
    /* m3 = 0.9*0.015 + 0.1*0.2 = 0.0335; v3 = 0.999*0.00033975 + 0.001*0.04 = 0.00037941025
     * B: m = -0.001, 0.0011, 0.00399; v = 1e-7, 4.999e-7, 1.3994001e-6 */
    const double m[2] = {0.0335, 0.00399}, v[2] = {0.00037941025, 1.3994001e-6};
    /* bound 1e-6: forming 1 - beta2 in float (1 - 0.999f) would give 1.3e-5 here */
    TU_CHECK_REL("adamw exp_avg", tu_rel_err_fd(graft_optim_state_buf(&o, 0), m, 2, 1e-2),
                 STEP_TOL);
    TU_CHECK_REL("adamw exp_avg_sq", tu_rel_err_fd(graft_optim_state_buf(&o, 1), v, 2, 1e-4),
                 STEP_TOL);
    graft_optim_free(&o);
}

/* AdamW where eps matters: betas (0.8, 0.99), eps 1e-3, wd 0, lr 0.1, w0 0.5.
 * g = 1e-3 twice: mhat = 1e-3, sqrt(vhat) = 1e-3 -> step = 0.1*1e-3/(1e-3 + 1e-3) = 0.05
 * each time (eps added after bias correction): w = 0.45, 0.4; then g = -2e-3: 0.40949256 */
static void test_adamw_eps_betas(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_ADAMW);
    cfg.beta1 = 0.8;
    cfg.beta2 = 0.99;
    cfg.eps = 1e-3;
    cfg.weight_decay = 0.0;
    const float w0[1] = {0.5f};
    const float g[3] = {1e-3f, 1e-3f, -2e-3f};
    const double expected[3] = {0.45, 0.4, 0.40949256366267384};
    run_and_check("adamw eps/betas", &cfg, w0, 1, 3, g, expected, 0.1f, NULL);
}

/* backbone.weight [3,2], backbone.bias [2], head.weight [2,3], head.bias [2]:
 * group 0 (lr x1, wd 0.05) head.weight; group 1 (lr x0.1, wd 0.05) backbone.weight;
 * group 2 (lr x1, wd 0) both biases. */
static void grouped_table(graft_params *p, graft_optim_config *cfg, graft_optim_kind kind) {
    graft_params_init(p);
    int64_t s32[2] = {3, 2}, s2[1] = {2}, s23[2] = {2, 3};
    assert_true(graft_params_add(p, "backbone.weight", GRAFT_KIND_PARAM, 2, s32) >= 0);
    assert_true(graft_params_add(p, "backbone.bias", GRAFT_KIND_PARAM, 1, s2) >= 0);
    assert_true(graft_params_add(p, "head.weight", GRAFT_KIND_PARAM, 2, s23) >= 0);
    assert_true(graft_params_add(p, "head.bias", GRAFT_KIND_PARAM, 1, s2) >= 0);
    assert_int_equal(graft_params_finalize(p), GRAFT_OK);
    graft_optim_config_default(cfg, kind);
    cfg->weight_decay = 0.05;
    assert_int_equal(graft_optim_config_add_group(cfg, 0.1, 0.05), 1);
    assert_int_equal(graft_optim_config_add_group(cfg, 1.0, 0.0), 2);
    assert_true(cfg->groups[0].lr_scale == 1.0);
    assert_true(cfg->groups[0].weight_decay == 0.05);
    int matched = -1;
    assert_int_equal(graft_optim_assign_group(p, "backbone.*", 1, &matched), GRAFT_OK);
    assert_int_equal(matched, 2);
    assert_int_equal(graft_optim_assign_no_decay(p, 2, &matched), GRAFT_OK);
    assert_int_equal(matched, 2);
    assert_int_equal(p->items[0].group, 1);
    assert_int_equal(p->items[1].group, 2);
    assert_int_equal(p->items[2].group, 0);
    assert_int_equal(p->items[3].group, 2);
}

/* Double-precision textbook reference of both optimizers, per element, with the
 * group's lr and weight decay (momentum buffer / Adam moments in m, v). */
static void reference_step(graft_optim_kind kind, double *w, double g, double *m, double *v, int t,
                           double lr, double wd) {
    if (kind == GRAFT_OPTIM_SGD) { /* momentum 0.9, nesterov */
        double d = g + wd * *w;
        *m = t == 1 ? d : 0.9 * *m + d;
        *w -= lr * (d + 0.9 * *m);
    } else { /* betas (0.9, 0.999), eps 1e-8 */
        *w *= 1.0 - lr * wd;
        *m = 0.9 * *m + 0.1 * g;
        *v = 0.999 * *v + 0.001 * g * g;
        double mhat = *m / (1.0 - pow(0.9, t)), vhat = *v / (1.0 - pow(0.999, t));
        *w -= lr * mhat / (sqrt(vhat) + 1e-8);
    }
}

/* Each group's lr_scale and weight_decay are honoured: first a literal one-step
 * check with w = g = 1, then three random steps against the double reference. */
static void check_groups(graft_optim_kind kind) {
    graft_params p;
    graft_optim_config cfg;
    grouped_table(&p, &cfg, kind);
    if (kind == GRAFT_OPTIM_SGD) cfg.momentum = 0.0;
    graft_optim o;
    assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_OK);
    for (size_t i = 0; i < p.n_values; i++)
        p.values[i] = 1.0f;
    for (size_t i = 0; i < p.n_grads; i++)
        p.grads[i] = 1.0f;
    assert_int_equal(graft_optim_step(&o, &p, 0.1f), GRAFT_OK);
    /* SGD:   head.weight 1 - 0.1*(1 + 0.05) = 0.895; backbone.weight 1 - 0.01*1.05 = 0.9895;
     *        biases (wd 0) 1 - 0.1 = 0.9.
     * AdamW: first step moves by lr*g/(|g|+eps) ~ lr after w *= 1 - lr*wd:
     *        head.weight 0.995 - 0.1 = 0.895; backbone.weight 0.9995 - 0.01 = 0.9895;
     *        biases 0.9 (to 1e-9). Same numbers by construction. */
    const double expect_by_param[4] = {0.9895, 0.9, 0.895, 0.9};
    for (int i = 0; i < p.count; i++) {
        const graft_param *t = &p.items[i];
        double *expect = tu_doubles(t->numel);
        for (size_t k = 0; k < t->numel; k++)
            expect[k] = expect_by_param[i];
        char label[96 + GRAFT_NAME_MAX];
        snprintf(label, sizeof label, "%s group %d %s", graft_optim_kind_name(kind), t->group,
                 t->name);
        TU_CHECK_REL(label, tu_rel_err_fd(graft_params_value(&p, i), expect, t->numel, 1.0),
                     STEP_TOL);
        free(expect);
    }
    graft_optim_free(&o);

    /* Three random steps, SGD with nesterov momentum this time. */
    if (kind == GRAFT_OPTIM_SGD) {
        cfg.momentum = 0.9;
        cfg.nesterov = 1;
    }
    assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_OK);
    tu_fill_uniform(p.values, p.n_values, -1.0f, 1.0f, 21);
    double *w = tu_doubles(p.n_values), *m = tu_doubles(p.n_values), *v = tu_doubles(p.n_values);
    for (size_t i = 0; i < p.n_values; i++)
        w[i] = p.values[i];
    const float lr = 0.05f;
    for (int t = 1; t <= 3; t++) {
        tu_fill_uniform(p.grads, p.n_grads, -1.0f, 1.0f, 100 + (uint64_t)t);
        for (int i = 0; i < p.count; i++) {
            const graft_param *prm = &p.items[i];
            const graft_optim_group *grp = &cfg.groups[prm->group];
            const float *g = graft_params_grad(&p, i);
            for (size_t k = 0; k < prm->numel; k++) {
                size_t j = prm->offset + k;
                reference_step(kind, &w[j], g[k], &m[j], &v[j], t, (double)lr * grp->lr_scale,
                               grp->weight_decay);
            }
        }
        assert_int_equal(graft_optim_step(&o, &p, lr), GRAFT_OK);
        char label[96];
        snprintf(label, sizeof label, "%s groups random step %d", graft_optim_kind_name(kind), t);
        TU_CHECK_REL(label, tu_rel_err_fd(p.values, w, p.n_values, 1.0), STEP_TOL);
    }
    free(w);
    free(m);
    free(v);
    graft_optim_free(&o);
    graft_params_free(&p);
}

static void test_groups_sgd(void **state) {
    (void)state;
    check_groups(GRAFT_OPTIM_SGD);
}

static void test_groups_adamw(void **state) {
    (void)state;
    check_groups(GRAFT_OPTIM_ADAMW);
}

/* stem.weight [4,3], stem.bias [4] frozen; bn.running_mean [4] buffer;
 * head.weight [2,4], head.bias [2] trainable. */
static void frozen_table(graft_params *p) {
    graft_params_init(p);
    int64_t s43[2] = {4, 3}, s4[1] = {4}, s24[2] = {2, 4}, s2[1] = {2};
    assert_int_equal(graft_params_add(p, "stem.weight", GRAFT_KIND_PARAM, 2, s43), 0);
    assert_int_equal(graft_params_add(p, "stem.bias", GRAFT_KIND_PARAM, 1, s4), 1);
    assert_int_equal(graft_params_add(p, "bn.running_mean", GRAFT_KIND_BUFFER, 1, s4), 2);
    assert_int_equal(graft_params_add(p, "head.weight", GRAFT_KIND_PARAM, 2, s24), 3);
    assert_int_equal(graft_params_add(p, "head.bias", GRAFT_KIND_PARAM, 1, s2), 4);
    int matched = 0;
    assert_int_equal(graft_params_set_trainable(p, "stem.*", 0, &matched), GRAFT_OK);
    assert_int_equal(matched, 2);
    assert_int_equal(graft_params_finalize(p), GRAFT_OK);
}

/* Frozen parameters have no gradient or state and stay bit-for-bit unchanged over
 * several steps of both optimizers (with weight decay on), as do buffers. */
static void test_frozen_untouched(void **state) {
    (void)state;
    for (int kind = GRAFT_OPTIM_SGD; kind <= GRAFT_OPTIM_ADAMW; kind++) {
        graft_params p;
        frozen_table(&p);
        assert_null(graft_params_grad(&p, 0));
        assert_null(graft_params_grad(&p, 1));
        assert_null(graft_params_grad(&p, 2));
        assert_non_null(graft_params_grad(&p, 3));
        assert_int_equal(p.n_grads, 8 + 2);
        assert_int_equal(p.n_grads, graft_params_numel(&p, 1));

        graft_optim_config cfg;
        graft_optim_config_default(&cfg, (graft_optim_kind)kind);
        cfg.weight_decay = 0.1;
        cfg.momentum = 0.9;
        cfg.nesterov = 1;
        graft_optim o;
        assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_OK);
        assert_int_equal(o.n, p.n_grads);
        assert_null(graft_optim_param_state(&o, &p, 0, 0));
        assert_null(graft_optim_param_state(&o, &p, 2, 0));
        assert_ptr_equal(graft_optim_param_state(&o, &p, 4, 0), o.state);
        assert_ptr_equal(graft_optim_param_state(&o, &p, 3, o.n_bufs - 1),
                         o.state + (size_t)(o.n_bufs - 1) * o.n + 2);

        tu_fill_uniform(p.values, p.n_values, -1.0f, 1.0f, 7);
        float *before = tu_floats(p.n_values);
        memcpy(before, p.values, p.n_values * sizeof(float));
        for (int s = 0; s < 5; s++) {
            tu_fill_uniform(p.grads, p.n_grads, -1.0f, 1.0f, 50 + (uint64_t)s);
            assert_int_equal(graft_optim_step(&o, &p, 0.1f), GRAFT_OK);
        }
        /* frozen weights, frozen bias and the buffer: the first 4*3 + 4 + 4 floats */
        size_t frozen_floats = p.items[3].offset;
        assert_int_equal(frozen_floats, 20);
        assert_memory_equal(before, p.values, frozen_floats * sizeof(float));
        size_t changed = 0;
        for (size_t i = frozen_floats; i < p.n_values; i++)
            changed += p.values[i] != before[i];
        printf("  %s: frozen/buffer floats bit-identical after 5 steps; %zu of %zu trainable "
               "changed\n",
               graft_optim_kind_name((graft_optim_kind)kind), changed, p.n_values - frozen_floats);
        assert_int_equal(changed, p.n_values - frozen_floats);
        free(before);
        graft_optim_free(&o);
        graft_params_free(&p);
    }
}

/* Bad hyper-parameters, bad group indices, bad lr and a re-laid table are refused,
 * and a refused step changes nothing. */
static void test_errors(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_SGD);
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_OK);
    cfg.nesterov = 1; /* needs momentum */
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.momentum = 0.9;
    cfg.dampening = 0.1; /* nesterov needs dampening 0 */
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.dampening = 0.0;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_OK);
    cfg.weight_decay = -1.0;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    graft_optim_config_default(&cfg, GRAFT_OPTIM_ADAMW);
    assert_true(cfg.weight_decay == 0.01);
    cfg.beta1 = 1.0;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.beta1 = 0.9;
    cfg.beta2 = -0.1;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.beta2 = 0.999;
    cfg.eps = NAN;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.eps = 1e-8;
    assert_int_equal(graft_optim_config_add_group(&cfg, -1.0, 0.0), 1);
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_ERR_CONFIG);
    cfg.groups[1].lr_scale = 2.0;
    assert_int_equal(graft_optim_config_check(&cfg), GRAFT_OK);
    while (cfg.n_groups < GRAFT_OPTIM_MAX_GROUPS)
        graft_optim_config_add_group(&cfg, 1.0, 0.0);
    assert_int_equal(graft_optim_config_add_group(&cfg, 1.0, 0.0), -1);

    graft_optim_kind ok;
    assert_int_equal(graft_optim_kind_parse("AdamW", &ok), GRAFT_OK);
    assert_int_equal(ok, GRAFT_OPTIM_ADAMW);
    assert_int_equal(graft_optim_kind_parse("sgd", &ok), GRAFT_OK);
    assert_int_equal(ok, GRAFT_OPTIM_SGD);
    assert_int_equal(graft_optim_kind_parse("adam", &ok), GRAFT_ERR_CONFIG);

    /* a trainable parameter in a group that does not exist */
    graft_params p;
    frozen_table(&p);
    graft_optim_config_default(&cfg, GRAFT_OPTIM_ADAMW);
    graft_optim o;
    assert_int_equal(graft_optim_assign_group(&p, "head.bias", 3, NULL), GRAFT_OK);
    assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_ERR_CONFIG);
    assert_null(o.state);
    graft_optim_free(&o);
    assert_int_equal(graft_optim_assign_group(&p, "head.*", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_optim_assign_group(&p, "head.*", -1, NULL), GRAFT_ERR_INVALID_ARG);
    /* a frozen parameter's group does not matter, even one that does not exist */
    assert_int_equal(graft_optim_assign_group(&p, "stem.*", 9, NULL), GRAFT_OK);
    assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_OK);

    tu_fill_uniform(p.values, p.n_values, -1.0f, 1.0f, 3);
    tu_fill_uniform(p.grads, p.n_grads, -1.0f, 1.0f, 4);
    float *before = tu_floats(p.n_values);
    memcpy(before, p.values, p.n_values * sizeof(float));
    assert_int_equal(graft_optim_step(&o, &p, -0.1f), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_optim_step(&o, &p, NAN), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_optim_assign_group(&p, "head.weight", 5, NULL), GRAFT_OK);
    assert_int_equal(graft_optim_step(&o, &p, 0.1f), GRAFT_ERR_CONFIG);
    assert_memory_equal(before, p.values, p.n_values * sizeof(float));
    assert_int_equal(o.step, 0);
    assert_int_equal(graft_optim_assign_group(&p, "head.weight", 0, NULL), GRAFT_OK);

    /* a table with another gradient layout */
    graft_params other;
    const float w0[3] = {1.0f, 2.0f, 3.0f};
    one_param_table(&other, w0, 3);
    assert_int_equal(graft_optim_step(&o, &other, 0.1f), GRAFT_ERR_MISMATCH);
    assert_memory_equal(other.values, w0, sizeof w0);
    graft_params_free(&other);

    assert_int_equal(graft_optim_step(&o, &p, 0.0f), GRAFT_OK); /* lr 0: only moments move */
    assert_memory_equal(before, p.values, p.n_values * sizeof(float));
    assert_int_equal(o.step, 1);
    graft_optim_reset(&o);
    assert_int_equal(o.step, 0);
    for (size_t i = 0; i < 2 * o.n; i++)
        assert_true(o.state[i] == 0.0f);
    free(before);
    graft_optim_free(&o);
    graft_optim_free(NULL);
    graft_params_free(&p);
}

/* clip_grad_norm_: returns the pre-clip norm; scales to max_norm only when above. */
static void test_clip_norm(void **state) {
    (void)state;
    float g[2] = {3.0f, 4.0f};
    float norm = graft_grad_clip_norm(g, 2, 1.0f);
    printf("  clip (3,4) to 1: returned %.7f, now (%.7f, %.7f)\n", (double)norm, (double)g[0],
           (double)g[1]);
    assert_true(fabs(norm - 5.0) < 1e-6);
    /* coef = 1/(5 + 1e-6) */
    const double scaled[2] = {3.0 / (5.0 + 1e-6), 4.0 / (5.0 + 1e-6)};
    TU_CHECK_REL("clip (3,4) scaled", tu_rel_err_fd(g, scaled, 2, 1e-3), 1e-6);

    size_t n = 10007;
    float *v = tu_floats(n), *copy = tu_floats(n);
    tu_fill_uniform(v, n, -2.0f, 2.0f, 9);
    double sq = 0;
    for (size_t i = 0; i < n; i++)
        sq += (double)v[i] * v[i];
    double expect_norm = sqrt(sq);
    memcpy(copy, v, n * sizeof(float));

    /* below max_norm, or max_norm <= 0: untouched, norm still returned */
    norm = graft_grad_clip_norm(v, n, (float)(expect_norm * 1.5));
    TU_CHECK_REL("clip norm (no-op)", fabs(norm - expect_norm) / expect_norm, 1e-6);
    assert_memory_equal(v, copy, n * sizeof(float));
    norm = graft_grad_clip_norm(v, n, 0.0f);
    TU_CHECK_REL("clip norm (max_norm 0)", fabs(norm - expect_norm) / expect_norm, 1e-6);
    assert_memory_equal(v, copy, n * sizeof(float));

    float max_norm = 3.5f;
    norm = graft_grad_clip_norm(v, n, max_norm);
    TU_CHECK_REL("clip norm (returned, pre-clip)", fabs(norm - expect_norm) / expect_norm, 1e-6);
    double after = sqrt(graft_grad_sq_sum(v, n));
    TU_CHECK_REL("clip norm (after == max_norm)", fabs(after - max_norm) / max_norm, 1e-6);
    /* direction kept: v = copy * coef */
    double coef = max_norm / (expect_norm + 1e-6);
    double *ref = tu_doubles(n);
    for (size_t i = 0; i < n; i++)
        ref[i] = copy[i] * coef;
    TU_CHECK_REL("clip direction", tu_rel_err_fd(v, ref, n, 1e-3), 1e-6);

    /* a non-finite norm is reported and nothing is scaled */
    memcpy(v, copy, n * sizeof(float));
    v[17] = INFINITY;
    norm = graft_grad_clip_norm(v, n, 1.0f);
    assert_true(isinf(norm));
    assert_true(v[0] == copy[0] && v[n - 1] == copy[n - 1]);
    assert_true(graft_grad_clip_norm(v, 0, 1.0f) == 0.0f);
    free(ref);
    free(v);
    free(copy);
}

static void check_lr(const graft_lr_schedule *s, long step, double expected) {
    float lr = graft_lr_at(s, step);
    double err = fabs(lr - expected) / (expected > 1e-3 ? expected : 1e-3);
    char label[96];
    snprintf(label, sizeof label, "%s lr at step %ld = %.6f", graft_lr_kind_name(s->kind), step,
             expected);
    TU_CHECK_REL(label, err, 1e-6);
}

/* base 1.0, min 0.1, warmup 10, total 110 (100 decay steps). */
static void test_schedules(void **state) {
    (void)state;
    graft_lr_schedule s = {GRAFT_LR_COSINE, 1.0, 10, 110, 0.1};
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_OK);
    check_lr(&s, -5, 0.0);
    check_lr(&s, 0, 0.0); /* warmup start: HF semantics, lr 0 at step 0 */
    check_lr(&s, 1, 0.1);
    check_lr(&s, 5, 0.5);                 /* warmup middle */
    check_lr(&s, 10, 1.0);                /* warmup end */
    check_lr(&s, 35, 0.8681980515339464); /* 0.1 + 0.9*0.5*(1 + cos(pi/4)) */
    check_lr(&s, 60, 0.55);               /* midpoint: (base + min)/2 */
    check_lr(&s, 110, 0.1);               /* end */
    check_lr(&s, 111, 0.1);               /* past the end */
    check_lr(&s, 100000, 0.1);

    s.kind = GRAFT_LR_LINEAR;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_OK);
    check_lr(&s, 0, 0.0);
    check_lr(&s, 5, 0.5);
    check_lr(&s, 10, 1.0);
    check_lr(&s, 35, 0.775); /* 0.1 + 0.9*0.75 */
    check_lr(&s, 60, 0.55);
    check_lr(&s, 110, 0.1);
    check_lr(&s, 500, 0.1);

    s.kind = GRAFT_LR_CONSTANT;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_OK);
    check_lr(&s, 0, 0.0);
    check_lr(&s, 5, 0.5);
    check_lr(&s, 10, 1.0);
    check_lr(&s, 500, 1.0);

    /* no warmup, min 0: HF linear / cosine exactly */
    graft_lr_schedule h = {GRAFT_LR_LINEAR, 0.3, 0, 40, 0.0};
    assert_int_equal(graft_lr_schedule_check(&h), GRAFT_OK);
    check_lr(&h, 0, 0.3);
    check_lr(&h, 10, 0.225);
    check_lr(&h, 40, 0.0);
    h.kind = GRAFT_LR_COSINE;
    check_lr(&h, 0, 0.3);
    check_lr(&h, 20, 0.15);
    check_lr(&h, 30, 0.3 * 0.5 * (1.0 - 0.7071067811865476)); /* cos(3pi/4) */
    check_lr(&h, 40, 0.0);
    /* warmup == total: ramps up, then straight to min_lr */
    graft_lr_schedule w = {GRAFT_LR_COSINE, 1.0, 4, 4, 0.25};
    assert_int_equal(graft_lr_schedule_check(&w), GRAFT_OK);
    check_lr(&w, 2, 0.5);
    check_lr(&w, 4, 0.25);
    check_lr(&w, 9, 0.25);
    /* warmup longer than the run (a short trial of a long config): accepted, and the
     * rate only ramps, as PyTorch's and Hugging Face's warmup schedules do */
    graft_lr_schedule longer = {GRAFT_LR_COSINE, 1.0, 100, 20, 0.0};
    assert_int_equal(graft_lr_schedule_check(&longer), GRAFT_OK);
    check_lr(&longer, 0, 0.0);
    check_lr(&longer, 19, 0.19);
}

/* Every malformed schedule is refused with GRAFT_ERR_CONFIG. */
static void test_schedule_check(void **state) {
    (void)state;
    const graft_lr_schedule good = {GRAFT_LR_COSINE, 0.1, 10, 100, 0.0};
    assert_int_equal(graft_lr_schedule_check(&good), GRAFT_OK);
    graft_lr_schedule s = good;
    s.base_lr = 0.0;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.base_lr = -1.0;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.base_lr = NAN;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.base_lr = INFINITY;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s = good;
    s.min_lr = 0.2;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.min_lr = -0.01;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s = good;
    s.warmup_steps = -1;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s = good;
    s.total_steps = 0;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.kind = GRAFT_LR_LINEAR;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);
    s.kind = GRAFT_LR_CONSTANT; /* constant needs no total */
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_OK);
    s.kind = (graft_lr_kind)7;
    assert_int_equal(graft_lr_schedule_check(&s), GRAFT_ERR_CONFIG);

    graft_lr_kind k;
    assert_int_equal(graft_lr_kind_parse("Cosine", &k), GRAFT_OK);
    assert_int_equal(k, GRAFT_LR_COSINE);
    assert_int_equal(graft_lr_kind_parse("linear", &k), GRAFT_OK);
    assert_int_equal(k, GRAFT_LR_LINEAR);
    assert_int_equal(graft_lr_kind_parse("constant", &k), GRAFT_OK);
    assert_int_equal(k, GRAFT_LR_CONSTANT);
    assert_int_equal(graft_lr_kind_parse("step", &k), GRAFT_ERR_CONFIG);
}

/* Gradual unfreezing: after relayout, a parameter trainable all along continues exactly
 * as without the unfreeze; the newly trainable one starts with its own step count 1
 * (AdamW's first step is lr * g / (|g| + eps) with bias correction), as in torch where
 * its state is created at its first gradient. */
static void test_relayout_unfreeze(void **state) {
    (void)state;
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, GRAFT_OPTIM_ADAMW);
    cfg.weight_decay = 0;
    graft_params p;
    graft_params_init(&p);
    int64_t one[1] = {1};
    assert_int_equal(graft_params_add(&p, "a", GRAFT_KIND_PARAM, 1, one), 0);
    assert_int_equal(graft_params_add(&p, "b", GRAFT_KIND_PARAM, 1, one), 1);
    assert_int_equal(graft_params_set_trainable(&p, "a", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    p.values[0] = 1.0f;
    p.values[1] = 2.0f;
    const float w0 = 2.0f, gb[3] = {0.5f, -0.25f, 0.75f};
    graft_params ref; /* b alone, never interrupted */
    one_param_table(&ref, &w0, 1);
    graft_optim o, r;
    assert_int_equal(graft_optim_init(&o, &cfg, &p), GRAFT_OK);
    assert_int_equal(graft_optim_init(&r, &cfg, &ref), GRAFT_OK);
    for (int s = 0; s < 3; s++) {
        if (s == 2) {
            size_t old[2];
            assert_int_equal(graft_params_unfreeze(&p, "a", NULL, old), GRAFT_OK);
            assert_int_equal(graft_optim_relayout(&o, &p, old), GRAFT_OK);
            assert_int_equal(o.n, 2);
            assert_int_equal(o.start[0], 2);
            graft_params_grad(&p, 0)[0] = -4.0f;
        }
        graft_params_grad(&p, 1)[0] = gb[s];
        ref.grads[0] = gb[s];
        assert_int_equal(graft_optim_step(&o, &p, 0.1f), GRAFT_OK);
        assert_int_equal(graft_optim_step(&r, &ref, 0.1f), GRAFT_OK);
        assert_float_equal(p.values[1], ref.values[0], 0);
    }
    /* a: 1 + 0.1 * 4 / (4 + 1e-8) */
    assert_float_equal(p.values[0], 1.1f, 1e-6);
    assert_float_equal(graft_optim_param_state(&o, &p, 1, 1)[0], graft_optim_state_buf(&r, 1)[0], 0);
    graft_optim_free(&o);
    graft_optim_free(&r);
    graft_params_free(&p);
    graft_params_free(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),       cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),    cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_sgd_dampening),   cmocka_unit_test(test_adamw_steps),
        cmocka_unit_test(test_adamw_eps_betas), cmocka_unit_test(test_groups_sgd),
        cmocka_unit_test(test_groups_adamw),    cmocka_unit_test(test_frozen_untouched),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_clip_norm),
        cmocka_unit_test(test_schedules),       cmocka_unit_test(test_schedule_check),
        cmocka_unit_test(test_relayout_unfreeze),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
