/* Transformer kernels (layernorm, gelu, embedding, attention, cross-entropy)
 * against naive double-precision references written here from the definitions:
 * the float forward against the double forward, and the float backward against
 * central finite differences of the double forward of L = sum(out * G). */
#include "tests/testutil.h"

#include "runtime/ops/ops.h"

#define FD_STEP 1e-6
#define FWD_BOUND 1e-5
#define BWD_BOUND 5e-5
#define REL_FLOOR 1e-3

/* ---- helpers ------------------------------------------------------------------ */

static void to_doubles(double *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (double)src[i];
}

static double *doubles_from(const float *src, size_t n) {
    double *d = tu_doubles(n);
    to_doubles(d, src, n);
    return d;
}

static float *random_floats(size_t n, float lo, float hi, uint64_t seed) {
    float *p = tu_floats(n);
    tu_fill_uniform(p, n, lo, hi, seed);
    return p;
}

static double dot_doubles(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* A scalar function of some double inputs (the reference loss); ctx holds them. */
typedef double (*loss_fn)(void *ctx);

/* grad[i] = (L(x + h e_i) - L(x - h e_i)) / 2h for i < n; x is restored. */
static void finite_diff(double *grad, double *x, size_t n, loss_fn loss, void *ctx) {
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + FD_STEP;
        double lp = loss(ctx);
        x[i] = saved - FD_STEP;
        double lm = loss(ctx);
        x[i] = saved;
        grad[i] = (lp - lm) / (2.0 * FD_STEP);
    }
}

/* Float gradient against the finite differences of `loss` in x. */
static double fd_rel_err(const float *grad, double *x, size_t n, loss_fn loss, void *ctx) {
    double *fd = tu_doubles(n);
    finite_diff(fd, x, n, loss, ctx);
    double err = tu_rel_err_fd(grad, fd, n, REL_FLOOR);
    free(fd);
    return err;
}

/* rel error of `twice` against 2 * `once`: a backward called twice accumulates twice. */
static double doubled_rel_err(const float *once, const float *twice, size_t n) {
    double *expect = tu_doubles(n);
    for (size_t i = 0; i < n; i++)
        expect[i] = 2.0 * (double)once[i];
    double err = tu_rel_err_fd(twice, expect, n, REL_FLOOR);
    free(expect);
    return err;
}

static int all_zero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (x[i] != 0.0f) return 0;
    }
    return 1;
}

/* Keeps the worst error of a sweep of shapes and the shape that produced it. */
typedef struct worst_err {
    double err;
    char where[96];
} worst_err;

static void worst_update(worst_err *w, double err, const char *where) {
    if (err > w->err || w->where[0] == '\0') {
        w->err = err;
        snprintf(w->where, sizeof w->where, "%s", where);
    }
}

static void worst_check(const char *what, const worst_err *w, double bound) {
    char name[256];
    snprintf(name, sizeof name, "%s [worst %s]", what, w->where);
    TU_CHECK_REL(name, w->err, bound);
}

/* ---- layernorm ---------------------------------------------------------------- */

typedef struct ln_ref {
    double *inp, *weight, *bias, *G;
    int N, C;
    double eps;
} ln_ref;

/* y = (x - mean) / sqrt(var + eps) * w + b, biased variance, per row. */
static void ln_ref_forward(double *out, const ln_ref *r) {
    for (int n = 0; n < r->N; n++) {
        const double *x = r->inp + (size_t)n * r->C;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < r->C; c++)
            mean += x[c];
        mean /= r->C;
        for (int c = 0; c < r->C; c++)
            var += (x[c] - mean) * (x[c] - mean);
        var /= r->C;
        for (int c = 0; c < r->C; c++) {
            out[(size_t)n * r->C + c] =
                (x[c] - mean) / sqrt(var + r->eps) * r->weight[c] + r->bias[c];
        }
    }
}

static double ln_ref_loss(void *ctx) {
    ln_ref *r = ctx;
    size_t n = (size_t)r->N * r->C;
    double *out = tu_doubles(n);
    ln_ref_forward(out, r);
    double l = dot_doubles(out, r->G, n);
    free(out);
    return l;
}

static void test_layernorm(void **state) {
    (void)state;
    const int sizes[] = {1, 3, 7, 13, 64};
    const float eps = 1e-5f;
    worst_err fwd = {0}, dx = {0}, dw = {0}, db = {0};
    uint64_t seed = 100;
    for (size_t in = 0; in < 4; in++) {
        for (size_t ic = 0; ic < sizeof sizes / sizeof sizes[0]; ic++) {
            int N = sizes[in], C = sizes[ic];
            size_t NC = (size_t)N * C;
            char where[64];
            snprintf(where, sizeof where, "N=%d C=%d", N, C);
            float *inp = random_floats(NC, -1.0f, 3.0f, seed++);
            float *weight = random_floats(C, 0.5f, 1.5f, seed++);
            float *bias = random_floats(C, -0.5f, 0.5f, seed++);
            float *G = random_floats(NC, -1.0f, 1.0f, seed++);
            float *out = tu_floats(NC), *mean = tu_floats(N), *rstd = tu_floats(N);
            graft_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
            for (size_t i = 0; i < NC; i++)
                assert_false(isnan(out[i]) || isinf(out[i]));

            ln_ref r = {doubles_from(inp, NC),
                        doubles_from(weight, C),
                        doubles_from(bias, C),
                        doubles_from(G, NC),
                        N,
                        C,
                        (double)eps};
            double *ref = tu_doubles(NC);
            ln_ref_forward(ref, &r);
            worst_update(&fwd, tu_rel_err_fd(out, ref, NC, REL_FLOOR), where);

            float *dinp = tu_floats(NC), *dweight = tu_floats(C), *dbias = tu_floats(C);
            graft_layernorm_backward(dinp, dweight, dbias, G, inp, weight, mean, rstd, N, C);
            for (size_t i = 0; i < NC; i++)
                assert_false(isnan(dinp[i]));
            worst_update(&dx, fd_rel_err(dinp, r.inp, NC, ln_ref_loss, &r), where);
            worst_update(&dw, fd_rel_err(dweight, r.weight, C, ln_ref_loss, &r), where);
            worst_update(&db, fd_rel_err(dbias, r.bias, C, ln_ref_loss, &r), where);

            free(r.inp), free(r.weight), free(r.bias), free(r.G), free(ref);
            free(inp), free(weight), free(bias), free(G), free(out), free(mean), free(rstd);
            free(dinp), free(dweight), free(dbias);
        }
    }
    worst_check("layernorm forward", &fwd, FWD_BOUND);
    worst_check("layernorm dinp vs fd", &dx, BWD_BOUND);
    worst_check("layernorm dweight vs fd", &dw, BWD_BOUND);
    worst_check("layernorm dbias vs fd", &db, BWD_BOUND);
}

/* Backward twice doubles every gradient; NULL outputs are skipped and leave the
 * others unchanged. */
static void test_layernorm_accumulate_and_null(void **state) {
    (void)state;
    const int N = 7, C = 13;
    const size_t NC = (size_t)N * C;
    float *inp = random_floats(NC, -2.0f, 2.0f, 1);
    float *weight = random_floats(C, 0.5f, 1.5f, 2);
    float *bias = random_floats(C, -0.5f, 0.5f, 3);
    float *G = random_floats(NC, -1.0f, 1.0f, 4);
    float *out = tu_floats(NC), *mean = tu_floats(N), *rstd = tu_floats(N);
    graft_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, 1e-5f);

    float *dx1 = tu_floats(NC), *dw1 = tu_floats(C), *db1 = tu_floats(C);
    float *dx2 = tu_floats(NC), *dw2 = tu_floats(C), *db2 = tu_floats(C);
    graft_layernorm_backward(dx1, dw1, db1, G, inp, weight, mean, rstd, N, C);
    for (int rep = 0; rep < 2; rep++) {
        graft_layernorm_backward(dx2, dw2, db2, G, inp, weight, mean, rstd, N, C);
    }
    TU_CHECK_REL("layernorm dinp twice = 2x", doubled_rel_err(dx1, dx2, NC), 1e-6);
    TU_CHECK_REL("layernorm dweight twice = 2x", doubled_rel_err(dw1, dw2, C), 1e-6);
    TU_CHECK_REL("layernorm dbias twice = 2x", doubled_rel_err(db1, db2, C), 1e-6);

    /* frozen weight/bias: only dinp */
    float *dx3 = tu_floats(NC);
    graft_layernorm_backward(dx3, NULL, NULL, G, inp, weight, mean, rstd, N, C);
    assert_memory_equal(dx3, dx1, NC * sizeof(float));
    /* stop-backward: only the parameter gradients */
    float *dw3 = tu_floats(C), *db3 = tu_floats(C);
    graft_layernorm_backward(NULL, dw3, db3, G, inp, weight, mean, rstd, N, C);
    assert_memory_equal(dw3, dw1, C * sizeof(float));
    assert_memory_equal(db3, db1, C * sizeof(float));
    graft_layernorm_backward(NULL, NULL, NULL, G, inp, weight, mean, rstd, N, C);

    free(inp), free(weight), free(bias), free(G), free(out), free(mean), free(rstd);
    free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2);
    free(dx3), free(dw3), free(db3);
}

/* C = 1: the normalised value is 0, so out = bias, no NaN, and zero gradient to inp. */
static void test_layernorm_single_channel(void **state) {
    (void)state;
    const int N = 5;
    float inp[5] = {0.0f, 1.0f, -3.0f, 1e4f, -7.5f};
    float weight[1] = {1.3f}, bias[1] = {0.25f};
    float out[5], mean[5], rstd[5];
    graft_layernorm_forward(out, mean, rstd, inp, weight, bias, N, 1, 1e-5f);
    float dout[5] = {1.0f, -2.0f, 0.5f, 3.0f, 1.0f};
    float dinp[5] = {0}, dweight[1] = {0}, dbias[1] = {0};
    graft_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, 1);
    for (int n = 0; n < N; n++) {
        assert_false(isnan(out[n]) || isnan(rstd[n]) || isnan(dinp[n]));
        assert_true(fabsf(out[n] - 0.25f) < 1e-6f);
        assert_true(dinp[n] == 0.0f);
    }
    assert_true(dweight[0] == 0.0f);
    assert_true(fabsf(dbias[0] - 3.5f) < 1e-6f);
}

/* ---- gelu ------------------------------------------------------------------------- */

typedef struct gelu_ref {
    double *inp, *G;
    size_t n;
    graft_gelu_kind kind;
} gelu_ref;

static double gelu_ref_one(double x, graft_gelu_kind kind) {
    if (kind == GRAFT_GELU_TANH) {
        const double pi = 3.14159265358979323846;
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
    }
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static double gelu_ref_loss(void *ctx) {
    gelu_ref *r = ctx;
    double l = 0.0;
    for (size_t i = 0; i < r->n; i++)
        l += gelu_ref_one(r->inp[i], r->kind) * r->G[i];
    return l;
}

static void test_gelu(void **state) {
    (void)state;
    const size_t sizes[] = {1, 3, 7, 13, 1000};
    const graft_gelu_kind kinds[] = {GRAFT_GELU_ERF, GRAFT_GELU_TANH};
    const char *kind_names[] = {"erf", "tanh"};
    uint64_t seed = 200;
    for (int ik = 0; ik < 2; ik++) {
        worst_err fwd = {0}, bwd = {0};
        for (size_t is = 0; is < sizeof sizes / sizeof sizes[0]; is++) {
            size_t n = sizes[is];
            char where[32];
            snprintf(where, sizeof where, "n=%zu", n);
            float *inp = random_floats(n, -6.0f, 6.0f, seed++);
            float *G = random_floats(n, -1.0f, 1.0f, seed++);
            float *out = tu_floats(n), *dinp = tu_floats(n);
            graft_gelu_forward(out, inp, n, kinds[ik]);
            gelu_ref r = {doubles_from(inp, n), doubles_from(G, n), n, kinds[ik]};
            double *ref = tu_doubles(n);
            for (size_t i = 0; i < n; i++)
                ref[i] = gelu_ref_one(r.inp[i], kinds[ik]);
            worst_update(&fwd, tu_rel_err_fd(out, ref, n, REL_FLOOR), where);
            graft_gelu_backward(dinp, G, inp, n, kinds[ik]);
            worst_update(&bwd, fd_rel_err(dinp, r.inp, n, gelu_ref_loss, &r), where);

            /* accumulation and NULL */
            float *dinp2 = tu_floats(n);
            graft_gelu_backward(dinp2, G, inp, n, kinds[ik]);
            graft_gelu_backward(dinp2, G, inp, n, kinds[ik]);
            assert_true(doubled_rel_err(dinp, dinp2, n) <= 1e-6);
            graft_gelu_backward(NULL, G, inp, n, kinds[ik]);

            free(r.inp), free(r.G), free(ref), free(inp), free(G), free(out), free(dinp);
            free(dinp2);
        }
        char name[64];
        snprintf(name, sizeof name, "gelu %s forward", kind_names[ik]);
        worst_check(name, &fwd, FWD_BOUND);
        snprintf(name, sizeof name, "gelu %s dinp vs fd", kind_names[ik]);
        worst_check(name, &bwd, BWD_BOUND);
    }
    /* negative tail, elementwise: gelu is tiny there, so 1 + erf / 1 + tanh would
     * cancel; the double reference uses the same identities (erfc, logistic) */
    const size_t n_tail = 200;
    float *x_tail = random_floats(n_tail, -6.0f, -1.0f, 250);
    float *y_tail = tu_floats(n_tail);
    for (int ik = 0; ik < 2; ik++) {
        graft_gelu_forward(y_tail, x_tail, n_tail, kinds[ik]);
        double worst = 0.0;
        for (size_t i = 0; i < n_tail; i++) {
            double x = x_tail[i], ref;
            if (kinds[ik] == GRAFT_GELU_TANH) {
                double u = sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
                ref = x / (1.0 + exp(-2.0 * u));
            } else {
                ref = 0.5 * x * erfc(-x / sqrt(2.0));
            }
            worst = fmax(worst, fabs(y_tail[i] - ref) / fabs(ref));
        }
        char name[64];
        snprintf(name, sizeof name, "gelu %s tail x in [-6,-1], elementwise", kind_names[ik]);
        TU_CHECK_REL(name, worst, FWD_BOUND);
    }
    free(x_tail), free(y_tail);

    /* the two forms differ, and agree to the known ~1e-3 at the worst point */
    float x[1] = {-2.0f}, y_erf[1], y_tanh[1];
    graft_gelu_forward(y_erf, x, 1, GRAFT_GELU_ERF);
    graft_gelu_forward(y_tanh, x, 1, GRAFT_GELU_TANH);
    assert_true(y_erf[0] != y_tanh[0]);
    assert_true(fabsf(y_erf[0] - y_tanh[0]) < 2e-3f);
}

/* Size of one unit in the last place of the float nearest to v. */
static double float_ulp(double v) {
    float f = fabsf((float)v);
    return f < 1.17549435e-38f ? 1.40129846e-45 : (double)(nextafterf(f, INFINITY) - f);
}

/* graft_erf (the erf GELU's vectorised erf) against double erf on a dense grid, with
 * libm's erff on the same grid for comparison; special values. */
static void test_erf(void **state) {
    (void)state;
    const size_t n = 2400001; /* [-12, 12] in steps of 1e-5 */
    float *x = tu_floats(n), *y = tu_floats(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(-12.0 + 24.0 * (double)i / (double)(n - 1));
    graft_erf(y, x, n);
    double worst = 0, worst_ulp = 0, worst_at = 0, libm = 0;
    for (size_t i = 0; i < n; i++) {
        double ref = erf((double)x[i]), err = fabs(y[i] - ref);
        if (err > worst) worst = err, worst_at = x[i];
        worst_ulp = fmax(worst_ulp, err / float_ulp(ref));
        libm = fmax(libm, fabs(erff(x[i]) - ref));
    }
    printf("  erf on [-12, 12]: max |err| %.3g at %g (%.2f ulp); erff: %.3g\n", worst, worst_at,
           worst_ulp, libm);
    TU_CHECK_REL("erf max abs error vs double erf", worst, 1e-7);
    assert_true(worst_ulp <= 2.0);

    float special[6] = {INFINITY, -INFINITY, NAN, -0.0f, 1e-30f, -1e30f}, out[6];
    graft_erf(out, special, 6);
    assert_true(out[0] == 1.0f && out[1] == -1.0f && isnan(out[2]));
    assert_true(out[3] == 0.0f && signbit(out[3]));
    assert_true(fabsf(out[4] - 1.1283791671e-30f) <= 1e-37f);
    assert_true(out[5] == -1.0f);
    free(x), free(y);
}

/* The erf GELU on a dense grid against double precision: the value to a relative error
 * (both tails: it is ~1e-49 at the grid's end), the gradient to an absolute one (it
 * crosses 0); special values as torch has them. */
static void test_gelu_erf_dense(void **state) {
    (void)state;
    const size_t n = 2800001; /* [-14, 14] in steps of 1e-5 */
    float *x = tu_floats(n), *y = tu_floats(n), *ones = tu_floats(n), *dx = tu_floats(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(-14.0 + 28.0 * (double)i / (double)(n - 1));
        ones[i] = 1.0f;
    }
    graft_gelu_forward(y, x, n, GRAFT_GELU_ERF);
    graft_gelu_backward(dx, ones, x, n, GRAFT_GELU_ERF);
    double fwd = 0, bwd = 0;
    for (size_t i = 0; i < n; i++) {
        double xd = x[i], cdf = 0.5 * erfc(-xd / sqrt(2.0));
        double ref = xd * cdf, dref = cdf + xd * exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI);
        if (fabs(ref) > 1e-30) fwd = fmax(fwd, fabs(y[i] - ref) / fabs(ref));
        bwd = fmax(bwd, fabs(dx[i] - dref));
    }
    TU_CHECK_REL("gelu erf on [-14, 14], elementwise", fwd, 2e-6);
    TU_CHECK_REL("gelu erf grad on [-14, 14], absolute", bwd, 5e-7);

    float special[5] = {INFINITY, -INFINITY, NAN, -30.0f, 1e30f}, out[5], g[5] = {0};
    float one[5] = {1, 1, 1, 1, 1};
    graft_gelu_forward(out, special, 5, GRAFT_GELU_ERF);
    graft_gelu_backward(g, one, special, 5, GRAFT_GELU_ERF);
    assert_true(out[0] == INFINITY && isnan(out[1]) && isnan(out[2]));
    assert_true(out[3] == 0.0f && out[4] == 1e30f);
    assert_true(isnan(g[2]) && g[3] == 0.0f && g[4] == 1.0f);
    free(x), free(y), free(ones), free(dx);
}

/* ---- embedding -------------------------------------------------------------------- */

typedef struct emb_ref {
    double *table, *G;
    const int32_t *ids;
    size_t count;
    int C;
} emb_ref;

static double emb_ref_loss(void *ctx) {
    emb_ref *r = ctx;
    double l = 0.0;
    for (size_t n = 0; n < r->count; n++) {
        for (int c = 0; c < r->C; c++) {
            l += r->table[(size_t)r->ids[n] * r->C + c] * r->G[n * r->C + c];
        }
    }
    return l;
}

static void test_embedding(void **state) {
    (void)state;
    const int V = 5;
    const size_t counts[] = {1, 3, 7, 13};
    const int channels[] = {1, 3, 7, 13};
    worst_err bwd = {0};
    uint64_t seed = 300;
    for (size_t in = 0; in < 4; in++) {
        for (size_t ic = 0; ic < 4; ic++) {
            size_t count = counts[in];
            int C = channels[ic];
            char where[32];
            snprintf(where, sizeof where, "count=%zu C=%d", count, C);
            size_t VC = (size_t)V * C, NC = count * C;
            float *table = random_floats(VC, -1.0f, 1.0f, seed++);
            float *G = random_floats(NC, -1.0f, 1.0f, seed++);
            int32_t *ids = malloc(count * sizeof(int32_t));
            assert_non_null(ids);
            /* V = 5 < 7, 13: ids repeat */
            for (size_t n = 0; n < count; n++)
                ids[n] = (int32_t)((n * 3 + 1) % V);
            float *out = tu_floats(NC);
            graft_embedding_forward(out, ids, table, count, C);
            for (size_t n = 0; n < count; n++) {
                assert_memory_equal(out + n * C, table + (size_t)ids[n] * C,
                                    (size_t)C * sizeof(float));
            }
            float *dtable = tu_floats(VC);
            graft_embedding_backward(dtable, G, ids, count, C);
            emb_ref r = {doubles_from(table, VC), doubles_from(G, NC), ids, count, C};
            worst_update(&bwd, fd_rel_err(dtable, r.table, VC, emb_ref_loss, &r), where);

            float *dtable2 = tu_floats(VC);
            graft_embedding_backward(dtable2, G, ids, count, C);
            graft_embedding_backward(dtable2, G, ids, count, C);
            assert_true(doubled_rel_err(dtable, dtable2, VC) <= 1e-6);
            graft_embedding_backward(NULL, G, ids, count, C);

            free(r.table), free(r.G), free(table), free(G), free(ids), free(out);
            free(dtable), free(dtable2);
        }
    }
    worst_check("embedding dtable vs fd", &bwd, BWD_BOUND);

    /* repeated ids accumulate exactly; untouched rows stay zero */
    int32_t ids[4] = {2, 0, 2, 2};
    float dout[8] = {1, 2, 10, 20, 100, 200, 1000, 2000};
    float dtable[8] = {0};
    graft_embedding_backward(dtable, dout, ids, 4, 2);
    float expect[8] = {10, 20, 0, 0, 1101, 2202, 0, 0};
    assert_memory_equal(dtable, expect, sizeof expect);
}

/* ---- attention -------------------------------------------------------------------- */

typedef struct attn_ref {
    double *q, *k, *v; /* may point into one fused buffer */
    double *G;         /* [B, T, C] */
    const uint8_t *mask;
    int stride, B, T, NH, HS, causal;
    int only_b, only_h;   /* >= 0: compute just this batch row / head (others output 0) */
    const uint64_t *keep; /* dropout keep bits as the op records them, or NULL */
    double keep_scale;    /* 1 / (1 - p) */
} attn_ref;

static int keep_bit(const uint64_t *keep, int T, size_t row, int j) {
    return (int)((keep[row * graft_attention_keep_words(T) + (size_t)j / 64] >> (j % 64)) & 1);
}

/* out[b,t,h*HS+d] = sum_j softmax_j(q.k_j / sqrt(HS)) v_j[d] over visible keys j
 * (each probability times keep bit / (1 - p) with dropout); 0 when no key is visible. */
static void attn_ref_forward(double *out, const attn_ref *r) {
    int C = r->NH * r->HS;
    double *w = tu_doubles((size_t)r->T);
    for (int b = 0; b < r->B; b++) {
        if (r->only_b >= 0 && b != r->only_b) continue;
        for (int h = 0; h < r->NH; h++) {
            if (r->only_h >= 0 && h != r->only_h) continue;
            for (int t = 0; t < r->T; t++) {
                const double *qt = r->q + ((size_t)b * r->T + t) * r->stride + h * r->HS;
                double maxs = -INFINITY;
                int any = 0;
                for (int j = 0; j < r->T; j++) {
                    int visible = (!r->causal || j <= t) && (!r->mask || r->mask[b * r->T + j]);
                    w[j] = NAN;
                    if (!visible) continue;
                    const double *kj = r->k + ((size_t)b * r->T + j) * r->stride + h * r->HS;
                    double s = 0.0;
                    for (int d = 0; d < r->HS; d++)
                        s += qt[d] * kj[d];
                    w[j] = s / sqrt((double)r->HS);
                    if (w[j] > maxs) maxs = w[j];
                    any = 1;
                }
                double denom = 0.0;
                for (int j = 0; j < r->T; j++) {
                    if (!isnan(w[j])) denom += exp(w[j] - maxs);
                }
                double *o = out + ((size_t)b * r->T + t) * C + h * r->HS;
                for (int d = 0; d < r->HS; d++)
                    o[d] = 0.0;
                if (!any) continue;
                for (int j = 0; j < r->T; j++) {
                    if (isnan(w[j])) continue;
                    double p = exp(w[j] - maxs) / denom;
                    if (r->keep) {
                        size_t row = ((size_t)b * r->NH + h) * r->T + t;
                        p *= keep_bit(r->keep, r->T, row, j) ? r->keep_scale : 0.0;
                    }
                    const double *vj = r->v + ((size_t)b * r->T + j) * r->stride + h * r->HS;
                    for (int d = 0; d < r->HS; d++)
                        o[d] += p * vj[d];
                }
            }
        }
    }
    free(w);
}

static double attn_ref_loss(void *ctx) {
    attn_ref *r = ctx;
    size_t n = (size_t)r->B * r->T * r->NH * r->HS;
    double *out = tu_doubles(n);
    attn_ref_forward(out, r);
    double l = dot_doubles(out, r->G, n);
    free(out);
    return l;
}

/* finite_diff for x = one of q/k/v (or the fused buffer, row stride r->stride):
 * an element of batch row b, head h only moves outputs of (b, h), so only those
 * are recomputed. */
static void attn_finite_diff(double *grad, double *x, size_t n, attn_ref *r) {
    int C = r->NH * r->HS;
    for (size_t i = 0; i < n; i++) {
        r->only_b = (int)(i / ((size_t)r->T * r->stride));
        r->only_h = (int)(i % (size_t)r->stride) % C / r->HS;
        finite_diff(grad + i, x + i, 1, attn_ref_loss, r);
    }
    r->only_b = r->only_h = -1;
}

static double attn_fd_rel_err(const float *grad, double *x, size_t n, attn_ref *r) {
    double *fd = tu_doubles(n);
    attn_finite_diff(fd, x, n, r);
    double err = tu_rel_err_fd(grad, fd, n, REL_FLOOR);
    free(fd);
    return err;
}

/* Batch 0 sees every key, batch 1 loses the even keys (so with causal=1 query 0
 * sees nothing), batch 2 loses every key, batch 3 is right-padded to half. */
static uint8_t attn_mask_value(int b, int t, int T) {
    if (b == 0) return 1;
    if (b == 1) return (uint8_t)(t % 2 == 1);
    if (b == 2) return 0;
    return (uint8_t)(t < (T + 1) / 2);
}

typedef struct attn_errs {
    worst_err fwd, dq, dk, dv;
} attn_errs;

/* One configuration: forward and backward against the reference, plus the
 * exact-zero guarantees for hidden keys and queries that see nothing. p > 0: with
 * attention dropout, the reference using the keep bits the forward recorded. */
static void attention_case(attn_errs *e, int T, int NH, int HS, int causal, int masked, int fused,
                           float p, uint64_t seed) {
    const int B = masked ? 4 : 2;
    const int C = NH * HS;
    const int stride = fused ? 3 * C : C;
    const size_t BT = (size_t)B * T, BTC = BT * C;
    char where[96];
    snprintf(where, sizeof where, "T=%d NH=%d HS=%d causal=%d mask=%d %s p=%g", T, NH, HS, causal,
             masked, fused ? "fused" : "separate", (double)p);

    /* inputs: one [B,T,3C] buffer, or three [B,T,C] buffers */
    size_t in_floats = fused ? 3 * BTC : BTC;
    float *qf = random_floats(in_floats, -1.5f, 1.5f, seed);
    float *kf = fused ? qf + C : random_floats(BTC, -1.5f, 1.5f, seed + 1);
    float *vf = fused ? qf + 2 * C : random_floats(BTC, -1.5f, 1.5f, seed + 2);
    float *G = random_floats(BTC, -1.0f, 1.0f, seed + 3);
    uint8_t *mask = NULL;
    if (masked) {
        mask = malloc(BT);
        assert_non_null(mask);
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++)
                mask[b * T + t] = attn_mask_value(b, t, T);
        }
    }

    float *out = tu_floats(BTC);
    float *probs = tu_floats((size_t)B * NH * T * T);
    float *scratch = tu_floats(graft_attention_scratch_floats(T));
    uint64_t *keep = calloc((size_t)B * NH * T * graft_attention_keep_words(T), sizeof *keep);
    assert_non_null(keep);
    graft_rng rng;
    graft_rng_seed(&rng, seed + 4);
    graft_attention_dropout drop = {.p = p, .rng = &rng, .keep = keep, .scratch = scratch};
    graft_attention_forward(out, probs, qf, kf, vf, stride, mask, B, T, NH, HS, causal,
                            p > 0 ? &drop : NULL);

    double *qd = doubles_from(qf, in_floats);
    double *kd = fused ? qd + C : doubles_from(kf, BTC);
    double *vd = fused ? qd + 2 * C : doubles_from(vf, BTC);
    attn_ref r = {qd,
                  kd,
                  vd,
                  doubles_from(G, BTC),
                  mask,
                  stride,
                  B,
                  T,
                  NH,
                  HS,
                  causal,
                  -1,
                  -1,
                  p > 0 ? keep : NULL,
                  1.0 / (1.0 - (double)p)};
    double *ref = tu_doubles(BTC);
    attn_ref_forward(ref, &r);
    worst_update(&e->fwd, tu_rel_err_fd(out, ref, BTC, REL_FLOOR), where);

    /* probabilities of each query row sum to 1 (or 0 when it sees nothing) */
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        double s = 0.0;
        for (int j = 0; j < T; j++)
            s += probs[row * T + j];
        assert_true(fabs(s - 1.0) < 1e-5 || s == 0.0);
    }

    float *dqf = tu_floats(in_floats);
    float *dkf = fused ? dqf + C : tu_floats(BTC);
    float *dvf = fused ? dqf + 2 * C : tu_floats(BTC);
    graft_attention_backward(dqf, dkf, dvf, G, qf, kf, vf, probs, scratch, stride, B, T, NH, HS,
                             p > 0 ? &drop : NULL);

    if (fused) {
        /* the gradient buffer is [B,T,3C] like the input: split it by columns */
        double *fd = tu_doubles(in_floats);
        attn_finite_diff(fd, qd, in_floats, &r);
        float *part = tu_floats(BTC);
        double *part_fd = tu_doubles(BTC);
        worst_err *dst[3] = {&e->dq, &e->dk, &e->dv};
        for (int which = 0; which < 3; which++) {
            for (size_t bt = 0; bt < BT; bt++) {
                for (int c = 0; c < C; c++) {
                    part[bt * C + c] = dqf[bt * stride + which * C + c];
                    part_fd[bt * C + c] = fd[bt * stride + which * C + c];
                }
            }
            worst_update(dst[which], tu_rel_err_fd(part, part_fd, BTC, REL_FLOOR), where);
        }
        free(fd), free(part), free(part_fd);
    } else {
        worst_update(&e->dq, attn_fd_rel_err(dqf, qd, BTC, &r), where);
        worst_update(&e->dk, attn_fd_rel_err(dkf, kd, BTC, &r), where);
        worst_update(&e->dv, attn_fd_rel_err(dvf, vd, BTC, &r), where);
    }

    /* exact zeros: hidden keys get no k/v gradient; a query that sees no key
     * outputs 0 and gets no q gradient */
    if (masked) {
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                size_t off = ((size_t)b * T + t) * stride;
                if (!mask[b * T + t]) {
                    assert_true(all_zero(dkf + off, C));
                    assert_true(all_zero(dvf + off, C));
                }
                int sees_nothing = b == 2 || (b == 1 && (causal ? t == 0 : T == 1));
                if (sees_nothing) {
                    assert_true(all_zero(out + ((size_t)b * T + t) * C, C));
                    assert_true(all_zero(dqf + off, C));
                }
            }
        }
    }

    free(r.G), free(ref), free(qd);
    if (!fused) {
        free(kd), free(vd), free(kf), free(vf), free(dkf), free(dvf);
    }
    free(qf), free(G), free(mask), free(out), free(probs), free(scratch), free(dqf), free(keep);
}

static void test_attention(void **state) {
    (void)state;
    const int Ts[] = {1, 3, 7}, NHs[] = {1, 3}, HSs[] = {1, 3, 7};
    uint64_t seed = 400;
    for (int causal = 0; causal <= 1; causal++) {
        for (int masked = 0; masked <= 1; masked++) {
            attn_errs e = {0};
            for (int fused = 0; fused <= 1; fused++) {
                for (int it = 0; it < 3; it++) {
                    for (int ih = 0; ih < 2; ih++) {
                        for (int is = 0; is < 3; is++) {
                            attention_case(&e, Ts[it], NHs[ih], HSs[is], causal, masked, fused,
                                           0.0f, seed);
                            seed += 10;
                        }
                    }
                }
            }
            char name[64];
            const char *mode = causal ? "causal" : "bidir";
            const char *m = masked ? "+mask" : "";
            snprintf(name, sizeof name, "attention %s%s forward", mode, m);
            worst_check(name, &e.fwd, FWD_BOUND);
            snprintf(name, sizeof name, "attention %s%s dq vs fd", mode, m);
            worst_check(name, &e.dq, BWD_BOUND);
            snprintf(name, sizeof name, "attention %s%s dk vs fd", mode, m);
            worst_check(name, &e.dk, BWD_BOUND);
            snprintf(name, sizeof name, "attention %s%s dv vs fd", mode, m);
            worst_check(name, &e.dv, BWD_BOUND);
        }
    }
}

/* Longer sequences: T=33 with a wider head, and T=70, which spans two of the
 * kernel's 64-row blocks (causal key ranges, right padding, fully hidden blocks). */
static void test_attention_larger(void **state) {
    (void)state;
    attn_errs e = {0};
    attention_case(&e, 33, 2, 16, 1, 0, 1, 0.0f, 7);
    attention_case(&e, 33, 2, 16, 0, 1, 0, 0.0f, 8);
    attention_case(&e, 70, 1, 3, 1, 0, 1, 0.0f, 9);
    attention_case(&e, 70, 1, 3, 1, 1, 0, 0.0f, 10);
    attention_case(&e, 70, 1, 3, 0, 1, 1, 0.0f, 11);
    worst_check("attention T=33,70 forward", &e.fwd, FWD_BOUND);
    worst_check("attention T=33,70 dq vs fd", &e.dq, BWD_BOUND);
    worst_check("attention T=33,70 dk vs fd", &e.dk, BWD_BOUND);
    worst_check("attention T=33,70 dv vs fd", &e.dv, BWD_BOUND);
}

/* Attention dropout: forward and backward against the reference applying the keep bits
 * the forward recorded, the backward against its finite differences (the same masks).
 * T = 70 spans two row blocks and two keep words per row. */
static void test_attention_dropout(void **state) {
    (void)state;
    attn_errs e = {0};
    uint64_t seed = 900;
    for (int causal = 0; causal <= 1; causal++) {
        for (int masked = 0; masked <= 1; masked++) {
            attention_case(&e, 7, 3, 3, causal, masked, causal, 0.3f, seed);
            attention_case(&e, 1, 1, 2, causal, masked, !causal, 0.5f, seed + 10);
            seed += 20;
        }
    }
    attention_case(&e, 70, 1, 3, 1, 1, 1, 0.3f, seed);
    attention_case(&e, 70, 2, 2, 0, 1, 0, 0.6f, seed + 10);
    worst_check("attention dropout forward", &e.fwd, FWD_BOUND);
    worst_check("attention dropout dq vs fd", &e.dq, BWD_BOUND);
    worst_check("attention dropout dk vs fd", &e.dk, BWD_BOUND);
    worst_check("attention dropout dv vs fd", &e.dv, BWD_BOUND);
}

/* Keep bits with p = 0.2: among the probabilities a query may see, the dropped fraction
 * is p to within 5 binomial sigmas; every bit beyond them is 0. Causal rows, and
 * bidirectional rows that stop at their sequence's last unpadded key. */
static void test_attention_dropout_keep_fraction(void **state) {
    (void)state;
    const int B = 2, T = 150, NH = 3, HS = 4, C = NH * HS;
    const float p = 0.2f;
    const size_t words = graft_attention_keep_words(T), BTC = (size_t)B * T * C;
    assert_int_equal(words, 3);
    float *qkv = random_floats(3 * BTC, -1.0f, 1.0f, 31);
    float *out = tu_floats(BTC), *probs = tu_floats((size_t)B * NH * T * T);
    float *scratch = tu_floats(graft_attention_scratch_floats(T));
    uint64_t *keep = calloc((size_t)B * NH * T * words, sizeof *keep);
    assert_non_null(keep);
    uint8_t mask[2 * 150];
    for (int i = 0; i < B * T; i++)
        mask[i] = i / T == 0 || i % T < 100; /* sequence 1 is padded after 100 tokens */
    for (int causal = 0; causal <= 1; causal++) {
        graft_rng rng;
        graft_rng_seed(&rng, 32 + causal);
        graft_attention_dropout drop = {.p = p, .rng = &rng, .keep = keep, .scratch = scratch};
        memset(keep, 0, (size_t)B * NH * T * words * sizeof *keep);
        graft_attention_forward(out, probs, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS,
                                causal, &drop);
        size_t drawn = 0, kept = 0;
        for (int b = 0; b < B; b++) {
            int key_end = b == 0 ? T : 100;
            for (int h = 0; h < NH; h++) {
                for (int t = 0; t < T; t++) {
                    size_t row = ((size_t)b * NH + h) * T + t;
                    int n = causal && t + 1 < key_end ? t + 1 : key_end;
                    drawn += (size_t)n;
                    for (int j = 0; j < T; j++) {
                        int bit = keep_bit(keep, T, row, j);
                        if (j >= n) assert_int_equal(bit, 0);
                        kept += (size_t)bit;
                    }
                }
            }
        }
        double dropped = 1.0 - (double)kept / (double)drawn;
        double sigma = sqrt((double)p * (1.0 - p) / (double)drawn);
        printf("  causal=%d: %zu of %zu dropped (%.4f, p %.2f, sigma %.4f)\n", causal, drawn - kept,
               drawn, dropped, (double)p, sigma);
        assert_true(fabs(dropped - p) <= 5.0 * sigma);
    }

    /* the row helper: nothing kept at or beyond n, and keep_row rebuilds the dropped row */
    graft_rng rng;
    graft_rng_seed(&rng, 34);
    float row[70], dropped[70], rebuilt[70];
    uint64_t row_keep[2] = {~0ull, ~0ull};
    for (int j = 0; j < 70; j++)
        row[j] = 1.0f + (float)j;
    graft_attention_dropout_row(dropped, row, row_keep, 66, 70, 0.5f, &rng);
    graft_attention_keep_row(rebuilt, row, row_keep, 70);
    assert_memory_equal(rebuilt, dropped, sizeof dropped);
    assert_int_equal(row_keep[1] >> 2, 0);
    for (int j = 0; j < 70; j++)
        assert_true(dropped[j] == (j < 66 && ((row_keep[j / 64] >> (j % 64)) & 1) ? row[j] : 0));
    free(qkv), free(out), free(probs), free(scratch), free(keep);
}

/* p = 0 gives the same bits as no dropout and draws nothing; with p > 0 a forward that
 * keeps no bits (keep NULL) computes the same output and draws the same numbers. */
static void test_attention_dropout_zero_and_unrecorded(void **state) {
    (void)state;
    const int B = 3, T = 70, NH = 2, HS = 5, C = NH * HS, stride = 3 * C;
    const size_t BTC = (size_t)B * T * C, n3 = (size_t)B * T * stride;
    const size_t n_probs = (size_t)B * NH * T * T, n_keep = (size_t)B * NH * T * 2;
    float *qkv = random_floats(n3, -1.0f, 1.0f, 41);
    float *G = random_floats(BTC, -1.0f, 1.0f, 42);
    uint8_t mask[3 * 70];
    for (int i = 0; i < B * T; i++)
        mask[i] = i % T < T - 7 * (i / T);
    float *scratch = tu_floats(graft_attention_scratch_floats(T));
    uint64_t *keep = calloc(n_keep, sizeof *keep);
    assert_non_null(keep);
    for (int causal = 0; causal <= 1; causal++) {
        float *out0 = tu_floats(BTC), *out1 = tu_floats(BTC);
        float *probs0 = tu_floats(n_probs), *probs1 = tu_floats(n_probs);
        float *d0 = tu_floats(n3), *d1 = tu_floats(n3);
        graft_attention_forward(out0, probs0, qkv, qkv + C, qkv + 2 * C, stride, mask, B, T, NH, HS,
                                causal, NULL);
        graft_rng rng;
        graft_rng_seed(&rng, 43);
        graft_attention_dropout none = {.p = 0.0f, .rng = &rng, .keep = keep, .scratch = scratch};
        graft_attention_forward(out1, probs1, qkv, qkv + C, qkv + 2 * C, stride, mask, B, T, NH, HS,
                                causal, &none);
        assert_memory_equal(out0, out1, BTC * sizeof(float));
        assert_memory_equal(probs0, probs1, n_probs * sizeof(float));
        assert_true(rng.state == 43);
        graft_attention_backward(d0, d0 + C, d0 + 2 * C, G, qkv, qkv + C, qkv + 2 * C, probs0,
                                 scratch, stride, B, T, NH, HS, NULL);
        graft_attention_backward(d1, d1 + C, d1 + 2 * C, G, qkv, qkv + C, qkv + 2 * C, probs1,
                                 scratch, stride, B, T, NH, HS, &none);
        assert_memory_equal(d0, d1, n3 * sizeof(float));

        graft_rng_seed(&rng, 44);
        graft_attention_dropout kept = {.p = 0.1f, .rng = &rng, .keep = keep, .scratch = scratch};
        graft_attention_forward(out0, probs0, qkv, qkv + C, qkv + 2 * C, stride, mask, B, T, NH, HS,
                                causal, &kept);
        uint64_t after = rng.state;
        graft_rng_seed(&rng, 44);
        graft_attention_dropout unkept = {.p = 0.1f, .rng = &rng, .scratch = scratch};
        graft_attention_forward(out1, probs1, qkv, qkv + C, qkv + 2 * C, stride, mask, B, T, NH, HS,
                                causal, &unkept);
        assert_memory_equal(out0, out1, BTC * sizeof(float));
        assert_true(rng.state == after);
        free(out0), free(out1), free(probs0), free(probs1), free(d0), free(d1);
    }
    free(qkv), free(G), free(scratch), free(keep);
}

/* Backward twice doubles; NULL dq/dk/dv are skipped without touching the others. */
static void test_attention_accumulate_and_null(void **state) {
    (void)state;
    const int B = 2, T = 7, NH = 3, HS = 3, C = NH * HS, stride = 3 * C;
    const size_t n3 = (size_t)B * T * stride, BTC = (size_t)B * T * C;
    float *qkv = random_floats(n3, -1.0f, 1.0f, 11);
    float *G = random_floats(BTC, -1.0f, 1.0f, 12);
    float *out = tu_floats(BTC), *probs = tu_floats((size_t)B * NH * T * T);
    float *scratch = tu_floats(graft_attention_scratch_floats(T));
    graft_attention_forward(out, probs, qkv, qkv + C, qkv + 2 * C, stride, NULL, B, T, NH, HS, 1,
                            NULL);
    float *once = tu_floats(n3), *twice = tu_floats(n3);
    graft_attention_backward(once, once + C, once + 2 * C, G, qkv, qkv + C, qkv + 2 * C, probs,
                             scratch, stride, B, T, NH, HS, NULL);
    for (int rep = 0; rep < 2; rep++) {
        graft_attention_backward(twice, twice + C, twice + 2 * C, G, qkv, qkv + C, qkv + 2 * C,
                                 probs, scratch, stride, B, T, NH, HS, NULL);
    }
    TU_CHECK_REL("attention dqkv twice = 2x", doubled_rel_err(once, twice, n3), 1e-6);

    /* each single-output call reproduces its columns and leaves the others at 0 */
    for (int which = 0; which < 3; which++) {
        float *g = tu_floats(n3);
        graft_attention_backward(which == 0 ? g : NULL, which == 1 ? g + C : NULL,
                                 which == 2 ? g + 2 * C : NULL, G, qkv, qkv + C, qkv + 2 * C, probs,
                                 scratch, stride, B, T, NH, HS, NULL);
        double maxdiff = 0.0;
        for (size_t bt = 0; bt < (size_t)B * T; bt++) {
            for (int part = 0; part < 3; part++) {
                for (int c = 0; c < C; c++) {
                    size_t i = bt * stride + part * C + c;
                    if (part == which) {
                        maxdiff = fmax(maxdiff, fabs((double)g[i] - once[i]));
                    } else {
                        assert_true(g[i] == 0.0f);
                    }
                }
            }
        }
        assert_true(maxdiff <= 1e-6);
        free(g);
    }
    graft_attention_backward(NULL, NULL, NULL, G, qkv, qkv + C, qkv + 2 * C, probs, scratch, stride,
                             B, T, NH, HS, NULL);
    free(qkv), free(G), free(out), free(probs), free(scratch), free(once), free(twice);
}

/* ---- cross-entropy ---------------------------------------------------------------- */

typedef struct ce_ref {
    double *logits;
    const int32_t *targets;
    int N, V, ignore_index;
} ce_ref;

/* Mean over rows with a real target of logsumexp(row) - row[target]. */
static double ce_ref_loss(void *ctx) {
    ce_ref *r = ctx;
    double total = 0.0;
    int counted = 0;
    for (int n = 0; n < r->N; n++) {
        if (r->targets[n] == r->ignore_index) continue;
        const double *x = r->logits + (size_t)n * r->V;
        double maxv = -INFINITY, s = 0.0;
        for (int i = 0; i < r->V; i++)
            maxv = fmax(maxv, x[i]);
        for (int i = 0; i < r->V; i++)
            s += exp(x[i] - maxv);
        /* cppcheck-suppress invalidFunctionArg ; s >= 1: the max term adds exp(0) */
        total += maxv + log(s) - x[r->targets[n]];
        counted++;
    }
    return counted ? total / counted : 0.0;
}

static void test_cross_entropy(void **state) {
    (void)state;
    const int Ns[] = {1, 3, 7, 13}, Vs[] = {1, 3, 7, 13, 50};
    const float offsets[] = {0.0f, 1000.0f};
    const int ignore_index = -100;
    worst_err fwd = {0}, bwd = {0}, fwd_big = {0}, bwd_big = {0};
    uint64_t seed = 500;
    for (int io = 0; io < 2; io++) {
        for (int in = 0; in < 4; in++) {
            for (int iv = 0; iv < 5; iv++) {
                int N = Ns[in], V = Vs[iv];
                size_t NV = (size_t)N * V;
                char where[48];
                snprintf(where, sizeof where, "N=%d V=%d offset=%g", N, V, offsets[io]);
                float *logits = random_floats(NV, offsets[io] - 4.0f, offsets[io] + 4.0f, seed++);
                int32_t *targets = malloc((size_t)N * sizeof(int32_t));
                assert_non_null(targets);
                int expect_counted = 0;
                for (int n = 0; n < N; n++) {
                    /* every third row (from the second on) is ignored */
                    targets[n] = (n % 3 == 1) ? ignore_index : (n * 5 + 2) % V;
                    expect_counted += targets[n] != ignore_index;
                }
                float *probs = tu_floats(NV), *dlogits = tu_floats(NV);
                int counted = -1;
                float loss = graft_cross_entropy_forward(probs, logits, targets, N, V, ignore_index,
                                                         &counted);
                assert_int_equal(counted, expect_counted);
                assert_false(isnan(loss) || isinf(loss));
                ce_ref r = {doubles_from(logits, NV), targets, N, V, ignore_index};
                double ref = ce_ref_loss(&r);
                float lossf[1] = {loss};
                double refd[1] = {ref};
                worst_update(io ? &fwd_big : &fwd, tu_rel_err_fd(lossf, refd, 1, REL_FLOOR), where);

                graft_cross_entropy_backward(dlogits, probs, targets, N, V, ignore_index,
                                             1.0f / (float)counted);
                worst_update(io ? &bwd_big : &bwd,
                             fd_rel_err(dlogits, r.logits, NV, ce_ref_loss, &r), where);
                for (int n = 0; n < N; n++) {
                    if (targets[n] == ignore_index) {
                        assert_true(all_zero(dlogits + (size_t)n * V, V));
                    }
                }
                free(r.logits), free(logits), free(targets), free(probs), free(dlogits);
            }
        }
    }
    worst_check("cross-entropy loss", &fwd, FWD_BOUND);
    worst_check("cross-entropy dlogits vs fd", &bwd, BWD_BOUND);
    worst_check("cross-entropy loss, logits ~1000", &fwd_big, FWD_BOUND);
    worst_check("cross-entropy dlogits vs fd, logits ~1000", &bwd_big, BWD_BOUND);
}

/* All rows ignored, extreme logits, accumulation and a NULL gradient. */
static void test_cross_entropy_edges(void **state) {
    (void)state;
    const int N = 3, V = 4, ignore_index = -1;
    float logits[12] = {1000, -1000, 0, 999, 1, 2, 3, 4, -3000, 3000, 0, 0};
    float probs[12], dlogits[12] = {0};
    int32_t none[3] = {-1, -1, -1};
    int counted = -1;
    float loss = graft_cross_entropy_forward(probs, logits, none, N, V, ignore_index, &counted);
    assert_true(loss == 0.0f);
    assert_int_equal(counted, 0);
    graft_cross_entropy_backward(dlogits, probs, none, N, V, ignore_index, 1.0f);
    assert_true(all_zero(dlogits, 12));

    /* row 0: loss of target 3 is log(1 + e^-1 + ...) - (999 - 1000) */
    int32_t targets[3] = {3, -1, 1};
    loss = graft_cross_entropy_forward(probs, logits, targets, N, V, ignore_index, NULL);
    double row0 = log(1.0 + exp(-1.0) + exp(-1000.0) + exp(-2000.0)) + 1.0;
    double row2 = 0.0; /* target holds the 3000 logit: probability 1 */
    double expect = (row0 + row2) / 2.0;
    TU_CHECK_REL("cross-entropy extreme logits", fabs(loss - expect) / expect, 1e-6);
    for (int i = 0; i < 12; i++)
        assert_false(isnan(probs[i]));

    float once[12] = {0}, twice[12] = {0};
    graft_cross_entropy_backward(once, probs, targets, N, V, ignore_index, 0.5f);
    graft_cross_entropy_backward(twice, probs, targets, N, V, ignore_index, 0.5f);
    graft_cross_entropy_backward(twice, probs, targets, N, V, ignore_index, 0.5f);
    TU_CHECK_REL("cross-entropy dlogits twice = 2x", doubled_rel_err(once, twice, 12), 1e-6);
    assert_true(all_zero(once + 4, 4));
    graft_cross_entropy_backward(NULL, probs, targets, N, V, ignore_index, 0.5f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_accumulate_and_null),
        cmocka_unit_test(test_layernorm_single_channel),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_erf),
        cmocka_unit_test(test_gelu_erf_dense),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_larger),
        cmocka_unit_test(test_attention_dropout),
        cmocka_unit_test(test_attention_dropout_keep_fraction),
        cmocka_unit_test(test_attention_dropout_zero_and_unrecorded),
        cmocka_unit_test(test_attention_accumulate_and_null),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
