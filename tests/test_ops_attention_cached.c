/* The attention of new rows over a key/value cache (graft_attention_cached_forward)
 * against the full causal attention op over the whole sequence: the same outputs when
 * the sequence arrives in pieces of several rows or one row at a time, with q/k/v taken
 * from a packed [T, 3C] projection as GPT-2's c_attn writes it. */
#include "tests/testutil.h"

#include "runtime/ops/ops.h"

#define T 70
#define NH 3
#define HS 8
#define C (NH * HS)
#define BOUND 1e-5

static double rel_err(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

/* Rows [first, first+R) of the packed projection: their keys and values into the cache
 * (head h at h * T rows), then their attention into out. */
static void run_piece(float *out, const float *qkv, float *k, float *v, float *scratch, int first,
                      int R) {
    for (int r = first; r < first + R; r++)
        for (int h = 0; h < NH; h++) {
            memcpy(k + ((size_t)h * T + r) * HS, qkv + (size_t)r * 3 * C + C + h * HS,
                   HS * sizeof(float));
            memcpy(v + ((size_t)h * T + r) * HS, qkv + (size_t)r * 3 * C + 2 * C + h * HS,
                   HS * sizeof(float));
        }
    graft_attention_cached_forward(out + (size_t)first * C, qkv + (size_t)first * 3 * C, 3 * C, k,
                                   v, (size_t)T * HS, first, R, NH, HS, scratch);
}

static void test_pieces_match_full(void **state) {
    (void)state;
    float *qkv = tu_floats((size_t)T * 3 * C), *want = tu_floats((size_t)T * C);
    float *probs = tu_floats((size_t)NH * T * T), *got = tu_floats((size_t)T * C);
    float *k = tu_floats((size_t)NH * T * HS), *v = tu_floats((size_t)NH * T * HS);
    float *scratch = tu_floats(graft_attention_cached_scratch_floats(T, T));
    tu_fill_uniform(qkv, (size_t)T * 3 * C, -2.0f, 2.0f, 7);
    graft_attention_forward(want, probs, qkv, qkv + C, qkv + 2 * C, 3 * C, NULL, 1, T, NH, HS, 1,
                            NULL);
    /* a prompt of 30 rows, one row, 39 rows: the pieces of a generation */
    const int pieces[][2] = {{0, 30}, {30, 1}, {31, 39}};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        run_piece(got, qkv, k, v, scratch, pieces[i][0], pieces[i][1]);
    double e = rel_err(got, want, (size_t)T * C);
    printf("  pieces of 30, 1, 39 rows: rel err %.3e\n", e);
    assert_true(e <= BOUND);
    /* every row alone, as each generated token */
    memset(got, 0, (size_t)T * C * sizeof(float));
    for (int t = 0; t < T; t++)
        run_piece(got, qkv, k, v, scratch, t, 1);
    e = rel_err(got, want, (size_t)T * C);
    printf("  one row at a time: rel err %.3e\n", e);
    assert_true(e <= BOUND);
    assert_int_equal(graft_attention_cached_scratch_floats(4, 9), 36);
    assert_int_equal(graft_attention_cached_scratch_floats(0, 9), 0);
    free(qkv);
    free(want);
    free(probs);
    free(got);
    free(k);
    free(v);
    free(scratch);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pieces_match_full)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
