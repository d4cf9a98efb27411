/* The row-subset attention (graft_attention_rows_*) against the full attention op on
 * the selected rows: forward outputs and probabilities, and the gradients of q, k and v,
 * with and without key padding masks; with dropout, against the full op given the same
 * keep bits (backward) and a double reference built from them (forward). */
#include "tests/testutil.h"

#include "runtime/ops/ops.h"

#define B 3
#define T 7
#define NH 2
#define HS 3
#define C (NH * HS)
#define BOUND 1e-5

static const int32_t rows[] = {0, 3, 4, 8, 13, 14, 20}; /* sequence 0, 1, 2 */
#define R ((int)(sizeof rows / sizeof rows[0]))

/* Sequence 1 ends in two padding keys and has one in the middle; sequence 2 is all
 * padding (its queries see no key). */
static void make_mask(uint8_t *mask) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            mask[b * T + t] = b == 0 ? 1 : b == 1 ? (t != 2 && t < T - 2) : 0;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

static int keep_bit(const uint64_t *keep, size_t row, int j) {
    const size_t words = graft_attention_keep_words(T);
    return (int)((keep[row * words + (size_t)j / 64] >> (j % 64)) & 1);
}

/* One case: masked (key padding mask or none), p (dropout probability, 0: none). */
static void rows_case(int masked, float p) {
    const size_t BT = (size_t)B * T, words = graft_attention_keep_words(T);
    uint8_t mask_buf[B * T];
    make_mask(mask_buf);
    const uint8_t *mask = masked ? mask_buf : NULL;
    float *q = tu_floats(BT * C), *k = tu_floats(BT * C), *v = tu_floats(BT * C);
    tu_fill_uniform(q, BT * C, -1, 1, 1);
    tu_fill_uniform(k, BT * C, -1, 1, 2);
    tu_fill_uniform(v, BT * C, -1, 1, 3);
    float *q_rows = tu_floats((size_t)R * C), *dout_rows = tu_floats((size_t)R * C);
    float *dout = tu_floats(BT * C); /* zero outside the selected rows */
    tu_fill_uniform(dout_rows, (size_t)R * C, -1, 1, 4);
    for (int j = 0; j < R; j++) {
        memcpy(q_rows + (size_t)j * C, q + (size_t)rows[j] * C, C * sizeof(float));
        memcpy(dout + (size_t)rows[j] * C, dout_rows + (size_t)j * C, C * sizeof(float));
    }

    /* the full op, without dropout: probabilities and outputs of every row */
    float *out = tu_floats(BT * C), *probs = tu_floats(BT * NH * T);
    float *scratch = tu_floats(graft_attention_rows_scratch_floats(T));
    assert_true(graft_attention_rows_scratch_floats(T) >= graft_attention_scratch_floats(T));
    graft_attention_forward(out, probs, q, k, v, C, mask, B, T, NH, HS, 0, NULL);

    /* the rows op, with dropout when p > 0 */
    graft_rng rng;
    graft_rng_seed(&rng, 5);
    uint64_t *keep_rows = calloc((size_t)R * NH * words, sizeof(uint64_t));
    assert_non_null(keep_rows);
    graft_attention_dropout drop = {.p = p, .rng = &rng, .keep = keep_rows, .scratch = scratch};
    const graft_attention_dropout *d = p > 0 ? &drop : NULL;
    float *out_rows = tu_floats((size_t)R * C), *probs_rows = tu_floats((size_t)R * NH * T);
    graft_attention_rows_forward(out_rows, probs_rows, q_rows, k, v, rows, R, mask, T, NH, HS, d);

    /* forward: the probabilities are the full op's rows; the outputs its rows, or with
     * dropout (P * keep / (1 - p)) v in double */
    double worst_probs = 0, worst_out = 0;
    for (int j = 0; j < R; j++) {
        const int b = rows[j] / T, t = rows[j] % T;
        for (int h = 0; h < NH; h++) {
            const float *full = probs + (((size_t)b * NH + h) * T + t) * T;
            const float *mine = probs_rows + ((size_t)j * NH + h) * T;
            worst_probs = fmax(worst_probs, rel_err(mine, full, T));
            float want[HS];
            for (int c = 0; c < HS; c++) {
                double s = 0;
                for (int key = 0; key < T; key++) {
                    double w = full[key];
                    if (d) w = keep_bit(keep_rows, (size_t)j * NH + h, key) ? w / (1.0 - p) : 0.0;
                    s += w * v[((size_t)b * T + key) * C + h * HS + c];
                }
                want[c] = (float)s;
            }
            worst_out = fmax(worst_out, rel_err(out_rows + (size_t)j * C + h * HS, want, HS));
        }
    }

    if (d && !masked) { /* some probabilities dropped, not all */
        int dropped = 0;
        for (int j = 0; j < R * NH; j++)
            for (int key = 0; key < T; key++)
                dropped += !keep_bit(keep_rows, (size_t)j, key);
        assert_true(dropped > 0 && dropped < R * NH * T);
    }

    /* backward: the full op's, with the rows' keep bits in their places */
    uint64_t *keep = calloc(BT * NH * words, sizeof(uint64_t));
    assert_non_null(keep);
    for (int j = 0; j < R; j++)
        for (int h = 0; h < NH; h++)
            memcpy(keep + (((size_t)(rows[j] / T) * NH + h) * T + rows[j] % T) * words,
                   keep_rows + ((size_t)j * NH + h) * words, words * sizeof(uint64_t));
    graft_attention_dropout full_drop = {.p = p, .keep = keep};
    float *dq = tu_floats(BT * C), *dk = tu_floats(BT * C), *dv = tu_floats(BT * C);
    float *full_scratch = tu_floats(graft_attention_scratch_floats(T));
    graft_attention_backward(dq, dk, dv, dout, q, k, v, probs, full_scratch, C, B, T, NH, HS,
                             d ? &full_drop : NULL);
    float *dq_rows = tu_floats((size_t)R * C), *dk_rows = tu_floats(BT * C);
    float *dv_rows = tu_floats(BT * C), *dq_want = tu_floats((size_t)R * C);
    graft_attention_rows_backward(dq_rows, dk_rows, dv_rows, dout_rows, q_rows, k, v, probs_rows,
                                  scratch, rows, R, mask, T, NH, HS, d);
    for (int j = 0; j < R; j++)
        memcpy(dq_want + (size_t)j * C, dq + (size_t)rows[j] * C, C * sizeof(float));
    char name[96];
    snprintf(name, sizeof name, "%s, p %.1f: probs", masked ? "masked" : "unmasked", (double)p);
    TU_CHECK_REL(name, worst_probs, BOUND);
    snprintf(name, sizeof name, "%s, p %.1f: out", masked ? "masked" : "unmasked", (double)p);
    TU_CHECK_REL(name, worst_out, BOUND);
    snprintf(name, sizeof name, "%s, p %.1f: dq dk dv", masked ? "masked" : "unmasked", (double)p);
    TU_CHECK_REL(name,
                 fmax(rel_err(dq_rows, dq_want, (size_t)R * C),
                      fmax(rel_err(dk_rows, dk, BT * C), rel_err(dv_rows, dv, BT * C))),
                 BOUND);
    if (masked) /* sequence 2 sees no key: outputs exactly 0, nothing flows back */
        for (int j = 0; j < R; j++)
            for (int c = 0; rows[j] / T == 2 && c < C; c++)
                assert_true(out_rows[(size_t)j * C + c] == 0.0f &&
                            dq_rows[(size_t)j * C + c] == 0.0f);

    /* NULL gradients are skipped; the others do not change */
    float *dk_only = tu_floats(BT * C);
    graft_attention_rows_backward(NULL, dk_only, NULL, dout_rows, q_rows, k, v, probs_rows, scratch,
                                  rows, R, mask, T, NH, HS, d);
    assert_memory_equal(dk_only, dk_rows, BT * C * sizeof(float));

    free(q), free(k), free(v), free(q_rows), free(dout_rows), free(dout), free(out), free(probs);
    free(scratch), free(keep_rows), free(out_rows), free(probs_rows), free(keep), free(dq);
    free(dk), free(dv), free(full_scratch), free(dq_rows), free(dk_rows), free(dv_rows);
    free(dq_want), free(dk_only);
}

static void test_rows_no_mask(void **state) {
    (void)state;
    rows_case(0, 0.0f);
}

static void test_rows_masked(void **state) {
    (void)state;
    rows_case(1, 0.0f);
}

static void test_rows_dropout(void **state) {
    (void)state;
    rows_case(0, 0.3f);
    rows_case(1, 0.3f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_no_mask),
        cmocka_unit_test(test_rows_masked),
        cmocka_unit_test(test_rows_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
