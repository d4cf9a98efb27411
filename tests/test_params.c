/* Tests for the parameter table (runtime/nn/params.h): value and gradient layout,
 * name and shape validation, trainable globs, finalize sizes, zero_grad. */
#include "tests/testutil.h"

#include "runtime/nn/params.h"

static int add1(graft_params *p, const char *name, graft_param_kind kind, int64_t d0) {
    int64_t shape[1] = {d0};
    return graft_params_add(p, name, kind, 1, shape);
}

static int add2(graft_params *p, const char *name, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return graft_params_add(p, name, GRAFT_KIND_PARAM, 2, shape);
}

/* Values in registration order; grads in backward order (last trainable first),
 * contiguous, buffers without gradient. */
static void test_layout_backward_order(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    assert_int_equal(add2(&p, "a.weight", 2, 3), 0);
    assert_int_equal(add1(&p, "a.bias", GRAFT_KIND_PARAM, 3), 1);
    assert_int_equal(add1(&p, "bn.running_mean", GRAFT_KIND_BUFFER, 3), 2);
    assert_int_equal(add2(&p, "b.weight", 4, 2), 3);
    assert_int_equal(add1(&p, "b.bias", GRAFT_KIND_PARAM, 4), 4);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);

    size_t expect_offset[5] = {0, 6, 9, 12, 20};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p.items[i].offset, expect_offset[i]);
        assert_ptr_equal(graft_params_value(&p, i), p.values + expect_offset[i]);
    }
    assert_int_equal(p.n_values, 24);
    assert_int_equal(p.n_grads, 6 + 3 + 8 + 4);
    /* Last registered trainable parameter first. */
    assert_int_equal(p.items[4].grad_offset, 0);
    assert_int_equal(p.items[3].grad_offset, 4);
    assert_int_equal(p.items[1].grad_offset, 12);
    assert_int_equal(p.items[0].grad_offset, 15);
    /* Contiguous, no gaps, in reverse registration order. */
    size_t next = 0;
    for (int i = p.count - 1; i >= 0; i--) {
        if (!p.items[i].trainable) continue;
        assert_int_equal(p.items[i].grad_offset, next);
        assert_ptr_equal(graft_params_grad(&p, i), p.grads + next);
        next += p.items[i].numel;
    }
    assert_int_equal(next, p.n_grads);
    assert_int_equal(p.items[2].trainable, 0);
    assert_null(graft_params_grad(&p, 2));
    assert_int_equal(graft_params_find(&p, "b.weight"), 3);
    assert_int_equal(graft_params_find(&p, "nope"), -1);
    assert_int_equal(p.items[3].ndim, 2);
    assert_int_equal(p.items[3].shape[0], 4);
    assert_int_equal(p.items[3].shape[1], 2);
    graft_params_free(&p);
}

/* Duplicates, bad shapes, long names and late additions are refused with -1 and
 * leave the table as it was. */
static void test_add_rejects(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    assert_int_equal(add2(&p, "fc.weight", 3, 4), 0);
    assert_int_equal(add2(&p, "fc.weight", 3, 4), -1);
    assert_int_equal(add1(&p, "fc.weight", GRAFT_KIND_BUFFER, 2), -1);
    int64_t shape5[5] = {1, 1, 1, 1, 1};
    assert_int_equal(graft_params_add(&p, "x5", GRAFT_KIND_PARAM, 5, shape5), -1);
    assert_int_equal(graft_params_add(&p, "x-1", GRAFT_KIND_PARAM, -1, shape5), -1);
    assert_int_equal(add2(&p, "zero", 3, 0), -1);
    assert_int_equal(add2(&p, "negative", -2, 3), -1);
    char long_name[GRAFT_NAME_MAX + 8];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(add1(&p, long_name, GRAFT_KIND_PARAM, 2), -1);
    assert_int_equal(p.count, 1);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_int_equal(add1(&p, "late", GRAFT_KIND_PARAM, 2), -1);
    assert_int_equal(p.count, 1);
    graft_params_free(&p);
    graft_params_free(NULL);
}

/* A resnet-like name list for the glob tests. */
static void add_resnet_like(graft_params *p) {
    assert_true(add2(p, "conv1.weight", 8, 27) >= 0);
    assert_true(add1(p, "bn1.weight", GRAFT_KIND_PARAM, 8) >= 0);
    assert_true(add1(p, "bn1.bias", GRAFT_KIND_PARAM, 8) >= 0);
    assert_true(add1(p, "bn1.running_mean", GRAFT_KIND_BUFFER, 8) >= 0);
    assert_true(add1(p, "bn1.running_var", GRAFT_KIND_BUFFER, 8) >= 0);
    assert_true(add2(p, "layer1.0.conv1.weight", 8, 72) >= 0);
    assert_true(add1(p, "layer1.0.bn1.weight", GRAFT_KIND_PARAM, 8) >= 0);
    assert_true(add2(p, "layer4.0.conv1.weight", 16, 72) >= 0);
    assert_true(add1(p, "layer4.0.bn1.weight", GRAFT_KIND_PARAM, 16) >= 0);
    assert_true(add2(p, "fc.weight", 10, 16) >= 0);
    assert_true(add1(p, "fc.bias", GRAFT_KIND_PARAM, 10) >= 0);
}

/* set_trainable counts parameters only, never makes a buffer trainable, and is
 * refused after finalize. */
static void test_set_trainable_globs(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    add_resnet_like(&p);
    int matched = -1;
    assert_int_equal(graft_params_set_trainable(&p, "*", 0, &matched), GRAFT_OK);
    assert_int_equal(matched, 9); /* 11 entries, 2 buffers */
    assert_int_equal(graft_params_numel(&p, 1), 0);
    assert_int_equal(graft_params_set_trainable(&p, "layer4.*", 1, &matched), GRAFT_OK);
    assert_int_equal(matched, 2);
    assert_int_equal(graft_params_set_trainable(&p, "fc.*", 1, &matched), GRAFT_OK);
    assert_int_equal(matched, 2);
    assert_int_equal(graft_params_set_trainable(&p, "*.running_*", 1, &matched), GRAFT_OK);
    assert_int_equal(matched, 0);
    assert_int_equal(graft_params_set_trainable(&p, "no.such.*", 1, NULL), GRAFT_OK);
    assert_int_equal(graft_params_set_trainable(&p, "*bn1.weight", 1, &matched), GRAFT_OK);
    assert_int_equal(matched, 3);
    assert_int_equal(p.items[graft_params_find(&p, "bn1.running_mean")].trainable, 0);
    assert_int_equal(p.items[graft_params_find(&p, "conv1.weight")].trainable, 0);

    size_t trainable = 16 * 72 + 16 + 10 * 16 + 10 + 8 + 8;
    size_t all = 8 * 27 + 8 + 8 + 8 * 72 + 8 + 16 * 72 + 16 + 10 * 16 + 10;
    assert_int_equal(graft_params_numel(&p, 1), trainable);
    assert_int_equal(graft_params_numel(&p, 0), all);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_int_equal(p.n_grads, trainable);
    assert_int_equal(p.n_values, all + 16);
    assert_int_equal(graft_params_set_trainable(&p, "*", 1, &matched), GRAFT_ERR_INVALID_ARG);
    assert_null(graft_params_grad(&p, graft_params_find(&p, "conv1.weight")));
    assert_non_null(graft_params_grad(&p, graft_params_find(&p, "fc.bias")));
    assert_int_equal(p.items[graft_params_find(&p, "fc.bias")].grad_offset, 0);
    graft_params_free(&p);
}

/* finalize allocates zeroed buffers of the right sizes, is idempotent, and leaves
 * grads NULL when nothing is trainable. */
static void test_finalize_sizes(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    add_resnet_like(&p);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_int_equal(p.finalized, 1);
    assert_int_equal(p.n_grads, graft_params_numel(&p, 1));
    assert_int_equal(p.n_grads, graft_params_numel(&p, 0));
    for (size_t i = 0; i < p.n_values; i++)
        assert_true(p.values[i] == 0.0f);
    for (size_t i = 0; i < p.n_grads; i++)
        assert_true(p.grads[i] == 0.0f);
    float *values = p.values;
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_ptr_equal(p.values, values);
    graft_params_free(&p);

    graft_params_init(&p);
    add_resnet_like(&p);
    assert_int_equal(graft_params_set_trainable(&p, "*", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_int_equal(p.n_grads, 0);
    assert_null(p.grads);
    graft_params_zero_grad(&p); /* no gradient buffer: a no-op */
    for (int i = 0; i < p.count; i++)
        assert_null(graft_params_grad(&p, i));
    graft_params_free(&p);
}

/* zero_grad clears every gradient and touches no value. */
static void test_zero_grad(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    add_resnet_like(&p);
    assert_int_equal(graft_params_set_trainable(&p, "conv1.*", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    tu_fill_uniform(p.values, p.n_values, -1.0f, 1.0f, 11);
    tu_fill_uniform(p.grads, p.n_grads, 0.5f, 1.0f, 12);
    float *copy = tu_floats(p.n_values);
    memcpy(copy, p.values, p.n_values * sizeof(float));
    graft_params_zero_grad(&p);
    for (size_t i = 0; i < p.n_grads; i++)
        assert_true(p.grads[i] == 0.0f);
    assert_memory_equal(copy, p.values, p.n_values * sizeof(float));
    free(copy);
    graft_params_free(&p);
}

/* Tied weights: an alias is not a parameter of its own, cannot clash with names. */
static void test_aliases(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    assert_int_equal(add2(&p, "wte.weight", 5, 3), 0);
    assert_int_equal(graft_params_add_alias(&p, "lm_head.weight", 0), 0);
    assert_int_equal(graft_params_add_alias(&p, "lm_head.weight", 0), -1);
    assert_int_equal(graft_params_add_alias(&p, "wte.weight", 0), -1);
    assert_int_equal(graft_params_add_alias(&p, "x", 7), -1);
    assert_int_equal(add2(&p, "lm_head.weight", 5, 3), -1);
    assert_int_equal(graft_params_find(&p, "lm_head.weight"), -1);
    assert_int_equal(graft_params_find_alias(&p, "lm_head.weight"), 0);
    assert_int_equal(graft_params_find_alias(&p, "wte.weight"), -1);
    graft_params_free(&p);
}

/* Unfreezing after finalize: values kept, gradients laid out again in backward order,
 * previous offsets reported for the optimizer. */
static void test_unfreeze(void **state) {
    (void)state;
    graft_params p;
    graft_params_init(&p);
    add2(&p, "a.weight", 2, 3);
    add1(&p, "a.bias", GRAFT_KIND_PARAM, 3);
    add1(&p, "bn.running_mean", GRAFT_KIND_BUFFER, 3);
    add2(&p, "b.weight", 4, 2);
    assert_int_equal(graft_params_set_trainable(&p, "a.*", 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&p), GRAFT_OK);
    assert_int_equal(p.n_grads, 8);
    p.values[0] = 42.0f;
    size_t old[4];
    int matched = 0;
    assert_int_equal(graft_params_unfreeze(&p, "a.w*", &matched, old), GRAFT_OK);
    assert_int_equal(matched, 1);
    assert_true(old[0] == SIZE_MAX && old[1] == SIZE_MAX && old[2] == SIZE_MAX);
    assert_int_equal(old[3], 0);
    assert_int_equal(p.n_grads, 14);
    assert_true(p.items[0].trainable && !p.items[1].trainable);
    assert_int_equal(p.items[3].grad_offset, 0); /* still backward order */
    assert_int_equal(p.items[0].grad_offset, 8);
    assert_float_equal(p.values[0], 42.0f, 0);
    for (size_t i = 0; i < p.n_grads; i++) assert_float_equal(p.grads[i], 0.0f, 0);
    /* buffers never become trainable; an already trainable match changes nothing */
    assert_int_equal(graft_params_unfreeze(&p, "bn.*", &matched, NULL), GRAFT_OK);
    assert_int_equal(matched, 0);
    assert_int_equal(graft_params_unfreeze(&p, "b.*", &matched, NULL), GRAFT_OK);
    assert_int_equal(matched, 1);
    assert_int_equal(p.n_grads, 14);
    graft_params_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_backward_order),
        cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_set_trainable_globs),
        cmocka_unit_test(test_finalize_sizes),
        cmocka_unit_test(test_zero_grad),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_unfreeze),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
