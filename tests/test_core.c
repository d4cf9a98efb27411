/* runtime/core: status strings, arena planning, seeded RNG. */
#include "tests/testutil.h"

#include "runtime/core/arena.h"
#include "runtime/core/status.h"

static void test_status_strings(void **state) {
    (void)state;
    assert_string_equal(graft_status_str(GRAFT_OK), "ok");
    assert_string_equal(graft_status_str(GRAFT_ERR_FORMAT), "malformed input file");
    assert_string_equal(graft_status_str((graft_status)999), "unknown status");
    for (int s = 0; s < GRAFT_STATUS_COUNT; s++) assert_non_null(graft_status_str((graft_status)s));
    assert_true(graft_status_is_bad_input(GRAFT_ERR_FORMAT));
    assert_true(graft_status_is_bad_input(GRAFT_ERR_IO));
    assert_true(graft_status_is_bad_input(GRAFT_ERR_LOCKED));
    assert_false(graft_status_is_bad_input(GRAFT_ERR_RUN));
    assert_false(graft_status_is_bad_input(GRAFT_ERR_NOMEM));
    assert_false(graft_status_is_bad_input(GRAFT_OK));
}

/* Plan, commit, allocate the same sequence: same offsets, aligned, no overflow. */
static void alloc_sequence(graft_arena *a, float **p) {
    p[0] = graft_arena_floats(a, 3);
    p[1] = graft_arena_floats(a, 100);
    p[2] = graft_arena_alloc(a, 1);
}

static void test_arena_plan_commit(void **state) {
    (void)state;
    graft_arena a;
    float *p[3];
    graft_arena_init_plan(&a);
    alloc_sequence(&a, p);
    assert_null(p[0]);
    assert_int_equal(a.used, 64 + 448 + 64);
    assert_int_equal(graft_arena_commit(&a), GRAFT_OK);
    assert_int_equal(a.capacity, 576);
    alloc_sequence(&a, p);
    for (int i = 0; i < 3; i++) {
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 64, 0);
    }
    assert_ptr_equal((char *)p[1], (char *)p[0] + 64);
    /* a committed arena refuses more than it planned */
    assert_null(graft_arena_alloc(&a, 1));
    size_t mark = 64;
    graft_arena_reset_to(&a, mark);
    assert_ptr_equal(graft_arena_floats(&a, 1), p[1]);
    graft_arena_free(&a);
    graft_arena_free(NULL);
}

static void test_rng(void **state) {
    (void)state;
    graft_rng a, b;
    graft_rng_seed(&a, 42);
    graft_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_true(graft_rng_u64(&a) == graft_rng_u64(&b));
    /* uniform: in range, mean ~0.5; below: in range and every value reachable */
    double sum = 0;
    int hits[7] = {0};
    for (int i = 0; i < 70000; i++) {
        float u = graft_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        sum += u;
        uint64_t k = graft_rng_below(&a, 7);
        assert_true(k < 7);
        hits[k]++;
    }
    assert_true(fabs(sum / 70000 - 0.5) < 0.01);
    for (int k = 0; k < 7; k++) assert_true(abs(hits[k] - 10000) < 600);
    /* normal: mean ~0, variance ~1 */
    double m = 0, v = 0;
    for (int i = 0; i < 50000; i++) {
        double x = graft_rng_normal(&a);
        m += x;
        v += x * x;
    }
    m /= 50000;
    v = v / 50000 - m * m;
    printf("  normal: mean %.4f var %.4f\n", m, v);
    assert_true(fabs(m) < 0.02 && fabs(v - 1) < 0.03);
    assert_true(graft_rng_mix(1, 2) != graft_rng_mix(2, 1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_arena_plan_commit),
        cmocka_unit_test(test_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
