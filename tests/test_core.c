/* runtime/core: status strings, arena planning, seeded RNG, escaping of file-derived
 * text and the logger that applies it. */
#include "tests/testutil.h"

#include "runtime/core/arena.h"
#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/core/status.h"

static void test_status_strings(void **state) {
    (void)state;
    assert_string_equal(graft_status_str(GRAFT_OK), "ok");
    assert_string_equal(graft_status_str(GRAFT_ERR_FORMAT), "malformed input file");
    assert_string_equal(graft_status_str((graft_status)999), "unknown status");
    for (int s = 0; s < GRAFT_STATUS_COUNT; s++) assert_non_null(graft_status_str((graft_status)s));
    assert_true(graft_status_is_bad_input(GRAFT_ERR_FORMAT));
    assert_true(graft_status_is_bad_input(GRAFT_ERR_IO));
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

static void expect_escaped(const char *text, const char *want) {
    char out[256];
    assert_string_equal(graft_escape(out, sizeof out, text), want);
    /* escaping escaped text changes nothing */
    char again[256];
    assert_string_equal(graft_escape(again, sizeof again, out), want);
}

static void test_escape(void **state) {
    (void)state;
    expect_escaped("fc1.weight", "fc1.weight");
    expect_escaped("caf\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x90\x88",
                   "caf\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x90\x88");
    expect_escaped("a\nb\rc\td", "a\\nb\\rc\\td");
    expect_escaped("\x1b[2J\x1b]0;t\x07\x7f", "\\x1b[2J\\x1b]0;t\\x07\\x7f");
    /* C1 CSI, a right-to-left override, an isolate */
    expect_escaped("\xc2\x9b"
                   "31m \xe2\x80\xae"
                   "abc \xe2\x81\xa6",
                   "\\u009b31m \\u202eabc \\u2066");
    /* not UTF-8: a lone continuation, a raw CSI byte, an overlong '/', a surrogate, a cut sequence
     */
    expect_escaped("\x80 \x9b \xc0\xaf \xed\xa0\x80 \xe7\x8c",
                   "\\x80 \\x9b \\xc0\\xaf \\xed\\xa0\\x80 \\xe7\\x8c");
    /* cut before a whole escape or character, never inside one */
    char small[5];
    assert_string_equal(graft_escape(small, sizeof small, "ab\ncd"), "ab\\n");
    assert_string_equal(graft_escape(small, sizeof small, "abcd\xe7\x8c\xab"), "abcd");
    assert_string_equal(graft_escape(small, sizeof small, "abc\x1b"), "abc");
}

/* A message carrying a forged log line and terminal escapes prints as one line with
 * them escaped, in the log file and in the last error alike. */
static void test_log_escapes_messages(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    graft_log_set_file(f);
    const char *name = "cat\n[rank 0] ERROR forged: all good\x1b[8m";
    graft_log(GRAFT_LOG_ERROR, "test", "class '%s' is unknown", name);
    graft_log(GRAFT_LOG_WARN, "test", "tensor '%s' \xe7\x8c\xab", name);
    graft_log_set_file(NULL);
    char text[1024];
    rewind(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    printf("%s", text);
    assert_string_equal(
        text, "[rank 0] ERROR test: class 'cat\\n[rank 0] ERROR forged: all good\\x1b[8m' "
              "is unknown\n"
              "[rank 0] WARN test: tensor 'cat\\n[rank 0] ERROR forged: all good\\x1b[8m' "
              "\xe7\x8c\xab\n");
    assert_string_equal(graft_log_last_error(),
                        "class 'cat\\n[rank 0] ERROR forged: all good\\x1b[8m' is unknown");
    graft_log(GRAFT_LOG_QUIET, "test", "quiet \r%s", "x");
    assert_string_equal(graft_log_last_error(), "quiet \\rx");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_arena_plan_commit),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_log_escapes_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
