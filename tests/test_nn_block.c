/* Tests for the block ranges (runtime/nn/block.h): ranges record what a block
 * registered, and the lowest trainable block is found from the table alone. */
#include "tests/testutil.h"

#include "runtime/nn/block.h"

static void add(graft_params *p, const char *name, graft_param_kind kind) {
    int64_t shape[1] = {2};
    assert_true(graft_params_add(p, name, kind, 1, shape) >= 0);
}

/* Three blocks (a: 2 params, b: a buffer then a param, c: 1 param) and one parameter
 * registered between b and c outside every block. */
static void make(graft_params *p, graft_param_range r[3]) {
    graft_params_init(p);
    r[0] = graft_param_range_begin(p);
    add(p, "a.w", GRAFT_KIND_PARAM);
    add(p, "a.b", GRAFT_KIND_PARAM);
    graft_param_range_end(&r[0], p);
    r[1] = graft_param_range_begin(p);
    add(p, "b.running", GRAFT_KIND_BUFFER);
    add(p, "b.w", GRAFT_KIND_PARAM);
    graft_param_range_end(&r[1], p);
    add(p, "loose", GRAFT_KIND_PARAM);
    r[2] = graft_param_range_begin(p);
    add(p, "c.w", GRAFT_KIND_PARAM);
    graft_param_range_end(&r[2], p);
}

static void freeze_all_but(graft_params *p, const char *glob) {
    assert_int_equal(graft_params_set_trainable(p, "*", 0, NULL), GRAFT_OK);
    if (glob) assert_int_equal(graft_params_set_trainable(p, glob, 1, NULL), GRAFT_OK);
}

static void test_ranges_and_lowest(void **state) {
    (void)state;
    graft_params p;
    graft_param_range r[3];
    make(&p, r);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].end, 2);
    assert_int_equal(r[1].first, 2);
    assert_int_equal(r[1].end, 4);
    assert_int_equal(r[2].first, 5);
    assert_int_equal(r[2].end, 6);
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 3), 0); /* all trainable */
    freeze_all_but(&p, "b.*");
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 3), 1);
    assert_false(graft_param_range_trainable(&p, r[0]));
    assert_true(graft_param_range_trainable(&p, r[1]));
    freeze_all_but(&p, "c.*");
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 3), 2);
    /* a trainable parameter outside every block counts for the block above it */
    freeze_all_but(&p, "loose");
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 3), 2);
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 2), 2); /* none above: n */
    freeze_all_but(&p, NULL);
    assert_int_equal(graft_nn_lowest_trainable(&p, r, 3), 3);
    graft_params_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_ranges_and_lowest)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
