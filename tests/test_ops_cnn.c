/* Kernels of the CNN path (linear, conv2d, batchnorm2d, pooling, relu, dropout,
 * residual) against naive double-precision references written here, independently
 * of the kernels:
 *   - float forward vs the double reference forward;
 *   - float backward vs central finite differences of the DOUBLE reference forward of
 *     L = sum(out * G), G a fixed random tensor (dout = G);
 *   - backward accumulates (+=) and skips NULL gradient outputs. */
#include "tests/testutil.h"

#include "runtime/ops/ops.h"

#define FD_STEP 1e-6
#define FWD_BOUND 1e-5   /* float kernel vs double reference forward */
#define GRAD_BOUND 2e-5  /* float backward vs finite differences */
#define ACCUM_BOUND 1e-5 /* base + 2 * once vs two accumulating calls (float adds) */
#define NULL_BOUND 0.0   /* a gradient must not change when others are skipped */
#define REL_FLOOR 1e-3   /* tu_rel_err_fd floor: errors relative to max(|ref|, this) */

/* ---- shared helpers ----------------------------------------------------------- */

/* A double reference forward of one op: fills out from the inputs held in ctx. */
typedef void (*ref_forward_fn)(const void *ctx, double *out);

static float *rand_floats(size_t n, float lo, float hi, uint64_t seed) {
    float *p = tu_floats(n);
    tu_fill_uniform(p, n, lo, hi, seed);
    return p;
}

static double *doubles_of(const float *f, size_t n) {
    double *d = tu_doubles(n);
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    return d;
}

static float *floats_copy(const float *f, size_t n) {
    float *p = tu_floats(n);
    memcpy(p, f, n * sizeof(float));
    return p;
}

static double rel(const float *got, const double *want, size_t n) {
    return tu_rel_err_fd(got, want, n, REL_FLOOR);
}

/* L = sum(out * G) of the reference forward. */
static double ref_loss(ref_forward_fn f, const void *ctx, double *out, size_t nout,
                       const double *G) {
    f(ctx, out);
    double loss = 0.0;
    for (size_t i = 0; i < nout; i++)
        loss += out[i] * G[i];
    return loss;
}

/* grad[i] = dL/dx[i] by central differences, x being one of the arrays ctx reads. */
static void fd_gradient(double *grad, double *x, size_t nx, ref_forward_fn f, const void *ctx,
                        double *out, size_t nout, const double *G) {
    for (size_t i = 0; i < nx; i++) {
        double saved = x[i];
        x[i] = saved + FD_STEP;
        double plus = ref_loss(f, ctx, out, nout, G);
        x[i] = saved - FD_STEP;
        double minus = ref_loss(f, ctx, out, nout, G);
        x[i] = saved;
        grad[i] = (plus - minus) / (2.0 * FD_STEP);
    }
}

/* Relative error of the kernel's gradient `got` vs central differences w.r.t. x. */
static double fd_err(const float *got, double *x, size_t nx, ref_forward_fn f, const void *ctx,
                     double *out, size_t nout, const double *G) {
    double *grad = tu_doubles(nx);
    fd_gradient(grad, x, nx, f, ctx, out, nout, G);
    double err = rel(got, grad, nx);
    free(grad);
    return err;
}

/* got (after `times` accumulating calls onto base) vs base + times * once. */
static double accum_err(const float *got, const float *base, const float *once, int times,
                        size_t n) {
    double *want = tu_doubles(n);
    for (size_t i = 0; i < n; i++)
        want[i] = (double)base[i] + times * (double)once[i];
    double err = rel(got, want, n);
    free(want);
    return err;
}

/* Plain relative error between two float arrays (exact copies give 0). */
static double same_err(const float *got, const float *want, size_t n) {
    double *w = doubles_of(want, n);
    double err = rel(got, w, n);
    free(w);
    return err;
}

/* Bounds one case's error without printing (the worst case is printed at the end). */
static void check_quiet(const char *case_name, const char *what, double err, double bound,
                        double *worst) {
    if (err > *worst) *worst = err;
    if (!(err <= bound)) {
        printf("  FAIL %s %s: rel err %.3e (bound %.1e)\n", case_name, what, err, bound);
        fail();
    }
}

/* ---- linear ---------------------------------------------------------------------- */

typedef struct {
    int B, IC, OC;
    graft_wlayout layout;
    double *inp, *weight, *bias; /* bias may be NULL */
} linear_ref;

static void linear_ref_forward(const void *vctx, double *out) {
    const linear_ref *r = vctx;
    for (int b = 0; b < r->B; b++) {
        for (int o = 0; o < r->OC; o++) {
            double acc = r->bias ? r->bias[o] : 0.0;
            for (int i = 0; i < r->IC; i++) {
                double w = r->layout == GRAFT_W_OUT_IN ? r->weight[o * r->IC + i]
                                                       : r->weight[i * r->OC + o];
                acc += r->inp[b * r->IC + i] * w;
            }
            out[b * r->OC + o] = acc;
        }
    }
}

typedef struct {
    double fwd, dinp, dweight, dbias, accum, null;
} worst_errs;

static void linear_case(int B, int IC, int OC, graft_wlayout layout, int has_bias, uint64_t seed,
                        worst_errs *worst) {
    char name[128];
    snprintf(name, sizeof name, "linear B=%d IC=%d OC=%d %s%s", B, IC, OC,
             layout == GRAFT_W_OUT_IN ? "[OC,IC]" : "[IC,OC]", has_bias ? " bias" : "");
    const size_t nin = (size_t)B * IC, nw = (size_t)IC * OC, nout = (size_t)B * OC;
    float *inp = rand_floats(nin, -1, 1, seed);
    float *weight = rand_floats(nw, -1, 1, seed + 1);
    float *bias = has_bias ? rand_floats(OC, -1, 1, seed + 2) : NULL;
    float *G = rand_floats(nout, -1, 1, seed + 3);
    double *inp_d = doubles_of(inp, nin), *weight_d = doubles_of(weight, nw);
    double *bias_d = has_bias ? doubles_of(bias, OC) : NULL;
    double *G_d = doubles_of(G, nout), *out_d = tu_doubles(nout);
    linear_ref ref = {B, IC, OC, layout, inp_d, weight_d, bias_d};

    float *out = tu_floats(nout);
    graft_linear_forward(out, inp, weight, bias, B, IC, OC, layout);
    linear_ref_forward(&ref, out_d);
    check_quiet(name, "forward", rel(out, out_d, nout), FWD_BOUND, &worst->fwd);

    float *dinp = tu_floats(nin), *dweight = tu_floats(nw), *dbias = tu_floats(OC);
    graft_linear_backward(dinp, dweight, has_bias ? dbias : NULL, G, inp, weight, B, IC, OC,
                          layout);
    check_quiet(name, "dinp", fd_err(dinp, inp_d, nin, linear_ref_forward, &ref, out_d, nout, G_d),
                GRAD_BOUND, &worst->dinp);
    check_quiet(name, "dweight",
                fd_err(dweight, weight_d, nw, linear_ref_forward, &ref, out_d, nout, G_d),
                GRAD_BOUND, &worst->dweight);
    if (has_bias) {
        check_quiet(name, "dbias",
                    fd_err(dbias, bias_d, OC, linear_ref_forward, &ref, out_d, nout, G_d),
                    GRAD_BOUND, &worst->dbias);
    }

    /* accumulation: two calls onto random contents add twice the gradient */
    float *base_in = rand_floats(nin, -1, 1, seed + 4), *base_w = rand_floats(nw, -1, 1, seed + 5);
    float *base_b = rand_floats(OC, -1, 1, seed + 6);
    float *acc_in = floats_copy(base_in, nin), *acc_w = floats_copy(base_w, nw);
    float *acc_b = floats_copy(base_b, OC);
    for (int t = 0; t < 2; t++) {
        graft_linear_backward(acc_in, acc_w, acc_b, G, inp, weight, B, IC, OC, layout);
    }
    float *full_b = tu_floats(OC); /* dbias of a single call, also when has_bias = 0 */
    graft_linear_backward(NULL, NULL, full_b, G, inp, weight, B, IC, OC, layout);
    double acc = accum_err(acc_in, base_in, dinp, 2, nin);
    double e = accum_err(acc_w, base_w, dweight, 2, nw);
    if (e > acc) acc = e;
    e = accum_err(acc_b, base_b, full_b, 2, OC);
    if (e > acc) acc = e;
    check_quiet(name, "accumulate", acc, ACCUM_BOUND, &worst->accum);

    /* NULL outputs: each gradient alone equals the one from the full call */
    float *only_in = tu_floats(nin), *only_w = tu_floats(nw), *only_b = tu_floats(OC);
    graft_linear_backward(only_in, NULL, NULL, G, inp, weight, B, IC, OC, layout);
    graft_linear_backward(NULL, only_w, NULL, G, inp, weight, B, IC, OC, layout);
    graft_linear_backward(NULL, NULL, only_b, G, inp, weight, B, IC, OC, layout);
    graft_linear_backward(NULL, NULL, NULL, G, inp, weight, B, IC, OC, layout);
    double nul = same_err(only_in, dinp, nin);
    e = same_err(only_w, dweight, nw);
    if (e > nul) nul = e;
    if (has_bias) {
        e = same_err(only_b, dbias, OC);
        if (e > nul) nul = e;
    }
    check_quiet(name, "NULL outputs", nul, NULL_BOUND, &worst->null);

    free(inp), free(weight), free(bias), free(G), free(inp_d), free(weight_d), free(bias_d);
    free(G_d), free(out_d), free(out), free(dinp), free(dweight), free(dbias);
    free(base_in), free(base_w), free(base_b), free(acc_in), free(acc_w), free(acc_b);
    free(full_b), free(only_in), free(only_w), free(only_b);
}

/* Every B in {1,3,7} x IC, OC in {1,3,7,13} x both layouts x with/without bias. */
static void test_linear_fd(void **state) {
    (void)state;
    static const int Bs[] = {1, 3, 7};
    static const int dims[] = {1, 3, 7, 13};
    worst_errs worst = {0};
    uint64_t seed = 100;
    int cases = 0;
    for (int bi = 0; bi < 3; bi++)
        for (int ii = 0; ii < 4; ii++)
            for (int oi = 0; oi < 4; oi++)
                for (int layout = 0; layout < 2; layout++)
                    for (int has_bias = 0; has_bias < 2; has_bias++) {
                        linear_case(Bs[bi], dims[ii], dims[oi], (graft_wlayout)layout, has_bias,
                                    seed, &worst);
                        seed += 10;
                        cases++;
                    }
    printf("  %d linear cases, worst over all:\n", cases);
    TU_CHECK_REL("linear forward vs double", worst.fwd, FWD_BOUND);
    TU_CHECK_REL("linear dinp vs FD", worst.dinp, GRAD_BOUND);
    TU_CHECK_REL("linear dweight vs FD", worst.dweight, GRAD_BOUND);
    TU_CHECK_REL("linear dbias vs FD", worst.dbias, GRAD_BOUND);
    TU_CHECK_REL("linear accumulate (2 calls)", worst.accum, ACCUM_BOUND);
    TU_CHECK_REL("linear NULL outputs", worst.null, NULL_BOUND);
}

/* A larger product (blocked GEMM paths) against the exact double formulas. */
static void test_linear_large(void **state) {
    (void)state;
    const int B = 64, IC = 257, OC = 129;
    const size_t nin = (size_t)B * IC, nw = (size_t)IC * OC, nout = (size_t)B * OC;
    for (int layout = 0; layout < 2; layout++) {
        float *inp = rand_floats(nin, -1, 1, 1), *weight = rand_floats(nw, -1, 1, 2);
        float *bias = rand_floats(OC, -1, 1, 3), *G = rand_floats(nout, -1, 1, 4);
        double *inp_d = doubles_of(inp, nin), *weight_d = doubles_of(weight, nw);
        double *bias_d = doubles_of(bias, OC), *out_d = tu_doubles(nout);
        linear_ref ref = {B, IC, OC, (graft_wlayout)layout, inp_d, weight_d, bias_d};
        float *out = tu_floats(nout);
        graft_linear_forward(out, inp, weight, bias, B, IC, OC, (graft_wlayout)layout);
        linear_ref_forward(&ref, out_d);

        float *dinp = tu_floats(nin), *dweight = tu_floats(nw), *dbias = tu_floats(OC);
        graft_linear_backward(dinp, dweight, dbias, G, inp, weight, B, IC, OC,
                              (graft_wlayout)layout);
        double *dinp_d = tu_doubles(nin), *dweight_d = tu_doubles(nw), *dbias_d = tu_doubles(OC);
        for (int b = 0; b < B; b++) {
            for (int o = 0; o < OC; o++) {
                double g = G[b * OC + o];
                dbias_d[o] += g;
                for (int i = 0; i < IC; i++) {
                    size_t wi = layout == GRAFT_W_OUT_IN ? (size_t)o * IC + i : (size_t)i * OC + o;
                    dinp_d[b * IC + i] += g * weight_d[wi];
                    dweight_d[wi] += g * inp_d[b * IC + i];
                }
            }
        }
        const char *tag = layout == GRAFT_W_OUT_IN ? "[OC,IC]" : "[IC,OC]";
        char name[96];
        snprintf(name, sizeof name, "linear 64x257->129 %s forward", tag);
        TU_CHECK_REL(name, rel(out, out_d, nout), FWD_BOUND);
        snprintf(name, sizeof name, "linear 64x257->129 %s dinp", tag);
        TU_CHECK_REL(name, rel(dinp, dinp_d, nin), FWD_BOUND);
        snprintf(name, sizeof name, "linear 64x257->129 %s dweight", tag);
        TU_CHECK_REL(name, rel(dweight, dweight_d, nw), FWD_BOUND);
        snprintf(name, sizeof name, "linear 64x257->129 %s dbias", tag);
        TU_CHECK_REL(name, rel(dbias, dbias_d, OC), FWD_BOUND);
        free(inp), free(weight), free(bias), free(G), free(inp_d), free(weight_d), free(bias_d);
        free(out_d), free(out), free(dinp), free(dweight), free(dbias), free(dinp_d);
        free(dweight_d), free(dbias_d);
    }
}

/* ---- conv2d ------------------------------------------------------------------------- */

typedef struct {
    graft_conv2d_shape s;
    double *inp, *weight, *bias; /* bias may be NULL */
} conv_ref;

/* Index of input pixel (n, c, h, w): channel-major [C, N, H, W], or [N, C, H, W] when the
 * shape says nchw_input. Outputs are always channel-major [OC, N, OH, OW]. */
static size_t conv_in_at(const graft_conv2d_shape *s, int n, int c, int h, int w) {
    size_t plane = s->nchw_input ? (size_t)n * s->C + c : (size_t)c * s->N + n;
    return (plane * s->H + h) * s->W + w;
}

static size_t conv_out_at(const graft_conv2d_shape *s, int n, int oc, int oh, int ow) {
    return (((size_t)oc * s->N + n) * s->OH + oh) * s->OW + ow;
}

/* Direct convolution: out[oc,n,oh,ow] = b[oc] + sum w[oc,c,kh,kw] * x[c,n,oh*s-p+kh,ow*s-p+kw]. */
static void conv_ref_forward(const void *vctx, double *out) {
    const conv_ref *r = vctx;
    const graft_conv2d_shape *s = &r->s;
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = r->bias ? r->bias[oc] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride + kh - s->pad;
                                int iw = ow * s->stride + kw - s->pad;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += r->weight[((oc * s->C + c) * s->KH + kh) * s->KW + kw] *
                                       r->inp[conv_in_at(s, n, c, ih, iw)];
                            }
                    out[conv_out_at(s, n, oc, oh, ow)] = acc;
                }
}

typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad, has_bias, nchw_input;
} conv_case_spec;

static void conv_case(const conv_case_spec *c, uint64_t seed) {
    graft_conv2d_shape s =
        graft_conv2d_shape_make(c->N, c->C, c->H, c->W, c->OC, c->KH, c->KW, c->stride, c->pad);
    s.nchw_input = c->nchw_input;
    /* torch's formula, written out here */
    assert_int_equal(s.OH, (c->H + 2 * c->pad - c->KH) / c->stride + 1);
    assert_int_equal(s.OW, (c->W + 2 * c->pad - c->KW) / c->stride + 1);
    char name[128];
    snprintf(name, sizeof name, "conv N%d C%d %dx%d OC%d k%dx%d s%d p%d%s%s", c->N, c->C, c->H,
             c->W, c->OC, c->KH, c->KW, c->stride, c->pad, c->has_bias ? " bias" : "",
             c->nchw_input ? " nchw" : "");
    const size_t nin = (size_t)s.N * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.KH * s.KW;
    const size_t nout = (size_t)s.N * s.OC * s.OH * s.OW, nb = (size_t)s.OC;
    float *inp = rand_floats(nin, -1, 1, seed), *weight = rand_floats(nw, -1, 1, seed + 1);
    float *bias = c->has_bias ? rand_floats(nb, -1, 1, seed + 2) : NULL;
    float *G = rand_floats(nout, -1, 1, seed + 3);
    float *scratch = tu_floats(graft_conv2d_scratch_floats(&s));
    double *inp_d = doubles_of(inp, nin), *weight_d = doubles_of(weight, nw);
    double *bias_d = bias ? doubles_of(bias, nb) : NULL;
    double *G_d = doubles_of(G, nout), *out_d = tu_doubles(nout);
    conv_ref ref = {s, inp_d, weight_d, bias_d};
    char what[192];

    float *out = tu_floats(nout);
    graft_conv2d_forward(out, inp, weight, bias, scratch, &s);
    conv_ref_forward(&ref, out_d);
    snprintf(what, sizeof what, "%s forward", name);
    TU_CHECK_REL(what, rel(out, out_d, nout), FWD_BOUND);

    float *dinp = tu_floats(nin), *dweight = tu_floats(nw), *dbias = tu_floats(nb);
    graft_conv2d_backward(dinp, dweight, bias ? dbias : NULL, G, inp, weight, scratch, &s);
    snprintf(what, sizeof what, "%s dinp", name);
    TU_CHECK_REL(what, fd_err(dinp, inp_d, nin, conv_ref_forward, &ref, out_d, nout, G_d),
                 GRAD_BOUND);
    snprintf(what, sizeof what, "%s dweight", name);
    TU_CHECK_REL(what, fd_err(dweight, weight_d, nw, conv_ref_forward, &ref, out_d, nout, G_d),
                 GRAD_BOUND);
    if (bias) {
        snprintf(what, sizeof what, "%s dbias", name);
        TU_CHECK_REL(what, fd_err(dbias, bias_d, nb, conv_ref_forward, &ref, out_d, nout, G_d),
                     GRAD_BOUND);
    }

    /* accumulation: two calls onto random contents add twice the gradient */
    float *base_in = rand_floats(nin, -1, 1, seed + 4), *base_w = rand_floats(nw, -1, 1, seed + 5);
    float *base_b = rand_floats(nb, -1, 1, seed + 6);
    float *acc_in = floats_copy(base_in, nin), *acc_w = floats_copy(base_w, nw);
    float *acc_b = floats_copy(base_b, nb), *full_b = tu_floats(nb);
    for (int t = 0; t < 2; t++) {
        graft_conv2d_backward(acc_in, acc_w, acc_b, G, inp, weight, scratch, &s);
    }
    graft_conv2d_backward(NULL, NULL, full_b, G, inp, weight, scratch, &s);
    double acc = accum_err(acc_in, base_in, dinp, 2, nin);
    double e = accum_err(acc_w, base_w, dweight, 2, nw);
    if (e > acc) acc = e;
    e = accum_err(acc_b, base_b, full_b, 2, nb);
    if (e > acc) acc = e;
    snprintf(what, sizeof what, "%s accumulate", name);
    TU_CHECK_REL(what, acc, ACCUM_BOUND);

    /* NULL outputs: each gradient alone equals the one from the full call */
    float *only_in = tu_floats(nin), *only_w = tu_floats(nw), *only_b = tu_floats(nb);
    graft_conv2d_backward(only_in, NULL, NULL, G, inp, weight, scratch, &s);
    graft_conv2d_backward(NULL, only_w, NULL, G, inp, weight, scratch, &s);
    graft_conv2d_backward(NULL, NULL, only_b, G, inp, weight, scratch, &s);
    graft_conv2d_backward(NULL, NULL, NULL, G, inp, weight, scratch, &s);
    double nul = same_err(only_in, dinp, nin);
    e = same_err(only_w, dweight, nw);
    if (e > nul) nul = e;
    e = same_err(only_b, full_b, nb);
    if (e > nul) nul = e;
    snprintf(what, sizeof what, "%s NULL outputs", name);
    TU_CHECK_REL(what, nul, NULL_BOUND);

    free(inp), free(weight), free(bias), free(G), free(scratch), free(inp_d), free(weight_d);
    free(bias_d), free(G_d), free(out_d), free(out), free(dinp), free(dweight), free(dbias);
    free(base_in), free(base_w), free(base_b), free(acc_in), free(acc_w), free(acc_b);
    free(full_b), free(only_in), free(only_w), free(only_b);
}

static void test_conv2d_fd(void **state) {
    (void)state;
    static const conv_case_spec cases[] = {
        /* N, C, H, W, OC, KH, KW, stride, pad, has_bias, nchw_input */
        {1, 1, 7, 7, 1, 1, 1, 1, 0, 1, 0},   /* pointwise: a plain GEMM */
        {3, 13, 5, 7, 7, 1, 1, 1, 0, 0, 0},  /* pointwise, no bias */
        {3, 7, 7, 7, 3, 1, 1, 2, 0, 0, 0},   /* ResNet downsample: 1x1 stride 2 */
        {3, 3, 7, 5, 13, 3, 3, 1, 1, 1, 0},  /* 3x3 same padding: shifted copies */
        {2, 2, 3, 2, 3, 5, 5, 1, 2, 0, 0},   /* 5x5 same padding, wider than the image */
        {7, 1, 3, 3, 3, 3, 3, 1, 0, 1, 0},   /* output 1x1 */
        {1, 3, 13, 13, 3, 7, 7, 2, 3, 0, 1}, /* ResNet stem, batch-major images */
        {3, 2, 9, 9, 3, 7, 7, 2, 3, 1, 1},   /* stem, several images */
        {2, 3, 5, 5, 2, 1, 1, 1, 0, 0, 1},   /* pointwise on batch-major images */
        {2, 13, 5, 7, 7, 1, 3, 2, 0, 1, 0},  /* KH != KW */
        {1, 3, 7, 13, 1, 3, 7, 2, 1, 1, 0},  /* KH != KW, padding */
        {3, 3, 7, 7, 7, 3, 3, 2, 1, 0, 0},   /* 3x3 stride 2 */
        {11, 2, 6, 6, 3, 3, 3, 1, 1, 0, 0},  /* shifted copies across many images */
        {9, 2, 9, 9, 2, 3, 3, 2, 1, 1, 0},   /* 3x3 stride 2, many images */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_case(&cases[i], 1000 + 10 * i);
}

/* Mid-size convolutions, large enough that the batch is cut into several im2col
 * chunks (a last one smaller), against the direct double forward and a direct double
 * backward (plain loops, no im2col). */
static void conv_medium_case(const conv_case_spec *c, int chunked, uint64_t seed) {
    graft_conv2d_shape s =
        graft_conv2d_shape_make(c->N, c->C, c->H, c->W, c->OC, c->KH, c->KW, c->stride, c->pad);
    s.nchw_input = c->nchw_input;
    char name[128], what[192];
    snprintf(name, sizeof name, "conv N%d C%d %dx%d OC%d k%d s%d p%d%s", c->N, c->C, c->H, c->W,
             c->OC, c->KH, c->stride, c->pad, c->nchw_input ? " nchw" : "");
    const size_t nin = (size_t)s.N * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.KH * s.KW;
    const size_t nout = (size_t)s.N * s.OC * s.OH * s.OW;
    const size_t whole_col = (size_t)s.C * s.KH * s.KW * s.N * s.OH * s.OW;
    assert_int_equal(graft_conv2d_scratch_floats(&s) < whole_col, chunked);
    float *inp = rand_floats(nin, -1, 1, seed), *weight = rand_floats(nw, -1, 1, seed + 1);
    float *bias = rand_floats(s.OC, -1, 1, seed + 2), *G = rand_floats(nout, -1, 1, seed + 3);
    float *scratch = tu_floats(graft_conv2d_scratch_floats(&s));
    double *inp_d = doubles_of(inp, nin), *weight_d = doubles_of(weight, nw);
    double *bias_d = doubles_of(bias, s.OC), *out_d = tu_doubles(nout);
    conv_ref ref = {s, inp_d, weight_d, bias_d};
    float *out = tu_floats(nout);
    graft_conv2d_forward(out, inp, weight, bias, scratch, &s);
    conv_ref_forward(&ref, out_d);
    snprintf(what, sizeof what, "%s forward", name);
    TU_CHECK_REL(what, rel(out, out_d, nout), FWD_BOUND);

    float *dinp = tu_floats(nin), *dweight = tu_floats(nw), *dbias = tu_floats(s.OC);
    graft_conv2d_backward(dinp, dweight, dbias, G, inp, weight, scratch, &s);
    double *dinp_d = tu_doubles(nin), *dweight_d = tu_doubles(nw), *dbias_d = tu_doubles(s.OC);
    for (int n = 0; n < s.N; n++)
        for (int oc = 0; oc < s.OC; oc++)
            for (int oh = 0; oh < s.OH; oh++)
                for (int ow = 0; ow < s.OW; ow++) {
                    double g = G[conv_out_at(&s, n, oc, oh, ow)];
                    dbias_d[oc] += g;
                    for (int ci = 0; ci < s.C; ci++)
                        for (int kh = 0; kh < s.KH; kh++)
                            for (int kw = 0; kw < s.KW; kw++) {
                                int ih = oh * s.stride + kh - s.pad;
                                int iw = ow * s.stride + kw - s.pad;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                size_t xi = conv_in_at(&s, n, ci, ih, iw);
                                size_t wi = ((size_t)(oc * s.C + ci) * s.KH + kh) * s.KW + kw;
                                dinp_d[xi] += g * weight_d[wi];
                                dweight_d[wi] += g * inp_d[xi];
                            }
                }
    snprintf(what, sizeof what, "%s dinp vs direct", name);
    TU_CHECK_REL(what, rel(dinp, dinp_d, nin), FWD_BOUND);
    snprintf(what, sizeof what, "%s dweight vs direct", name);
    TU_CHECK_REL(what, rel(dweight, dweight_d, nw), FWD_BOUND);
    snprintf(what, sizeof what, "%s dbias vs direct", name);
    TU_CHECK_REL(what, rel(dbias, dbias_d, s.OC), FWD_BOUND);
    free(inp), free(weight), free(bias), free(G), free(scratch), free(inp_d), free(weight_d);
    free(bias_d), free(out_d), free(out), free(dinp), free(dweight), free(dbias), free(dinp_d);
    free(dweight_d), free(dbias_d);
}

static void test_conv2d_medium(void **state) {
    (void)state;
    static const struct {
        conv_case_spec c;
        int chunked;
    } cases[] = {
        /* N, C, H, W, OC, KH, KW, stride, pad, has_bias, nchw_input */
        {{3, 32, 16, 16, 16, 3, 3, 1, 1, 1, 0}, 1}, /* shifted copies, an image per chunk */
        {{3, 32, 32, 32, 8, 3, 3, 2, 1, 1, 0}, 1},  /* row gathers, an image per chunk */
        {{5, 3, 32, 32, 8, 7, 7, 2, 3, 1, 1}, 1},   /* stem: chunks of 3 and 2 images */
        {{2, 16, 14, 14, 32, 3, 3, 1, 1, 1, 0}, 0}, /* one chunk */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_medium_case(&cases[i].c, cases[i].chunked, 7 + 10 * i);
}

static void test_conv2d_shape(void **state) {
    (void)state;
    graft_conv2d_shape s = graft_conv2d_shape_make(2, 3, 224, 224, 64, 7, 7, 2, 3);
    assert_int_equal(s.OH, 112);
    assert_int_equal(s.OW, 112);
    assert_int_equal(graft_conv2d_scratch_floats(&s), (size_t)3 * 49 * 112 * 112); /* 1 image */
    s = graft_conv2d_shape_make(32, 512, 2, 2, 512, 3, 3, 1, 1); /* layer4: the whole batch */
    assert_int_equal(graft_conv2d_scratch_floats(&s), (size_t)(512 + 1) * 9 * 32 * 4); /* +masks */
    s = graft_conv2d_shape_make(4, 64, 8, 8, 128, 1, 1, 1, 0); /* a plain GEMM */
    assert_int_equal(graft_conv2d_scratch_floats(&s), 0);
    s.nchw_input = 1; /* batch-major images still need a gather */
    assert_int_equal(graft_conv2d_scratch_floats(&s), (size_t)64 * 4 * 64);
    s = graft_conv2d_shape_make(1, 64, 56, 56, 128, 3, 3, 2, 1);
    assert_int_equal(s.OH, 28);
    s = graft_conv2d_shape_make(1, 1, 8, 6, 1, 3, 2, 3, 0); /* floor: (8-3)/3+1, (6-2)/3+1 */
    assert_int_equal(s.OH, 2);
    assert_int_equal(s.OW, 2);
    s = graft_conv2d_shape_make(1, 1, 2, 2, 1, 5, 5, 1, 0); /* window never fits */
    assert_int_equal(s.OH, 0);
    assert_int_equal(s.OW, 0);
}

/* ---- batchnorm2d -------------------------------------------------------------------- */

typedef struct {
    int N, C, HW, training;
    double eps;
    double *inp, *weight, *bias, *running_mean, *running_var;
} bn_ref;

/* Batch mean and biased variance of channel c. */
static void bn_ref_stats(const bn_ref *r, int c, double *mean, double *var) {
    double sum = 0.0, count = (double)r->N * r->HW;
    for (int n = 0; n < r->N; n++)
        for (int i = 0; i < r->HW; i++)
            sum += r->inp[(c * r->N + n) * r->HW + i];
    *mean = sum / count;
    double sq = 0.0;
    for (int n = 0; n < r->N; n++)
        for (int i = 0; i < r->HW; i++) {
            double d = r->inp[(c * r->N + n) * r->HW + i] - *mean;
            sq += d * d;
        }
    *var = sq / count;
}

static void bn_ref_forward(const void *vctx, double *out) {
    const bn_ref *r = vctx;
    for (int c = 0; c < r->C; c++) {
        double mean, var;
        if (r->training) {
            bn_ref_stats(r, c, &mean, &var);
        } else {
            mean = r->running_mean[c];
            var = r->running_var[c];
        }
        for (int n = 0; n < r->N; n++)
            for (int i = 0; i < r->HW; i++) {
                int at = (c * r->N + n) * r->HW + i; /* channel-major */
                out[at] = (r->inp[at] - mean) / sqrt(var + r->eps) * r->weight[c] + r->bias[c];
            }
    }
}

static void bn_case(int N, int C, int HW, int training, uint64_t seed) {
    const float momentum = 0.1f, eps = 1e-5f;
    char name[96], what[160];
    snprintf(name, sizeof name, "batchnorm %s N%d C%d HW%d", training ? "train" : "eval", N, C, HW);
    const size_t n = (size_t)N * C * HW;
    float *inp = rand_floats(n, -1, 1, seed);
    for (size_t i = 0; i < n; i++)
        inp[i] = 0.5f + 2.0f * inp[i]; /* nonzero mean */
    float *weight = rand_floats(C, 0.5f, 1.5f, seed + 1), *bias = rand_floats(C, -1, 1, seed + 2);
    float *rm0 = rand_floats(C, -1, 1, seed + 3), *rv0 = rand_floats(C, 0.5f, 2.0f, seed + 4);
    float *G = rand_floats(n, -1, 1, seed + 5);
    double *inp_d = doubles_of(inp, n), *weight_d = doubles_of(weight, C);
    double *bias_d = doubles_of(bias, C), *rm_d = doubles_of(rm0, C), *rv_d = doubles_of(rv0, C);
    double *G_d = doubles_of(G, n), *out_d = tu_doubles(n);
    bn_ref ref = {N, C, HW, training, eps, inp_d, weight_d, bias_d, rm_d, rv_d};

    float *out = tu_floats(n), *save_mean = tu_floats(C), *save_invstd = tu_floats(C);
    float *rm = floats_copy(rm0, C), *rv = floats_copy(rv0, C);
    const size_t M = (size_t)N * HW;
    graft_batchnorm2d_forward(out, save_mean, save_invstd, rm, rv, inp, weight, bias, NULL, 0, C, M,
                              momentum, eps, training);
    bn_ref_forward(&ref, out_d);
    snprintf(what, sizeof what, "%s forward", name);
    TU_CHECK_REL(what, rel(out, out_d, n), FWD_BOUND);

    /* saved statistics and running statistics */
    double *mean_d = tu_doubles(C), *invstd_d = tu_doubles(C);
    double *rm_want = tu_doubles(C), *rv_want = tu_doubles(C);
    for (int c = 0; c < C; c++) {
        double mean, var;
        bn_ref_stats(&ref, c, &mean, &var);
        double count = (double)N * HW;
        if (training) {
            mean_d[c] = mean;
            invstd_d[c] = 1.0 / sqrt(var + eps);
            rm_want[c] = (1.0 - momentum) * rm0[c] + momentum * mean;
            rv_want[c] = (1.0 - momentum) * rv0[c] + momentum * var * count / (count - 1.0);
        } else {
            mean_d[c] = rm0[c];
            invstd_d[c] = 1.0 / sqrt(rv0[c] + eps);
            rm_want[c] = rm0[c];
            rv_want[c] = rv0[c];
        }
    }
    snprintf(what, sizeof what, "%s save_mean", name);
    TU_CHECK_REL(what, rel(save_mean, mean_d, C), FWD_BOUND);
    snprintf(what, sizeof what, "%s save_invstd", name);
    TU_CHECK_REL(what, rel(save_invstd, invstd_d, C), FWD_BOUND);
    snprintf(what, sizeof what, "%s running_mean", name);
    TU_CHECK_REL(what, rel(rm, rm_want, C), FWD_BOUND);
    snprintf(what, sizeof what, "%s running_var", name);
    TU_CHECK_REL(what, rel(rv, rv_want, C), FWD_BOUND);

    float *dinp = tu_floats(n), *dweight = tu_floats(C), *dbias = tu_floats(C);
    graft_batchnorm2d_backward(dinp, dweight, dbias, G, inp, weight, save_mean, save_invstd, C, M,
                               training);
    snprintf(what, sizeof what, "%s dinp", name);
    TU_CHECK_REL(what, fd_err(dinp, inp_d, n, bn_ref_forward, &ref, out_d, n, G_d), GRAD_BOUND);
    snprintf(what, sizeof what, "%s dweight", name);
    TU_CHECK_REL(what, fd_err(dweight, weight_d, C, bn_ref_forward, &ref, out_d, n, G_d),
                 GRAD_BOUND);
    snprintf(what, sizeof what, "%s dbias", name);
    TU_CHECK_REL(what, fd_err(dbias, bias_d, C, bn_ref_forward, &ref, out_d, n, G_d), GRAD_BOUND);

    /* accumulation and NULL outputs */
    float *base_in = rand_floats(n, -1, 1, seed + 6), *base_w = rand_floats(C, -1, 1, seed + 7);
    float *base_b = rand_floats(C, -1, 1, seed + 8);
    float *acc_in = floats_copy(base_in, n), *acc_w = floats_copy(base_w, C);
    float *acc_b = floats_copy(base_b, C);
    for (int t = 0; t < 2; t++) {
        graft_batchnorm2d_backward(acc_in, acc_w, acc_b, G, inp, weight, save_mean, save_invstd, C,
                                   M, training);
    }
    double acc = accum_err(acc_in, base_in, dinp, 2, n);
    double e = accum_err(acc_w, base_w, dweight, 2, C);
    if (e > acc) acc = e;
    e = accum_err(acc_b, base_b, dbias, 2, C);
    if (e > acc) acc = e;
    snprintf(what, sizeof what, "%s accumulate", name);
    TU_CHECK_REL(what, acc, ACCUM_BOUND);
    float *only_in = tu_floats(n), *only_w = tu_floats(C), *only_b = tu_floats(C);
    graft_batchnorm2d_backward(only_in, NULL, NULL, G, inp, weight, save_mean, save_invstd, C, M,
                               training);
    graft_batchnorm2d_backward(NULL, only_w, NULL, G, inp, weight, save_mean, save_invstd, C, M,
                               training);
    graft_batchnorm2d_backward(NULL, NULL, only_b, G, inp, weight, save_mean, save_invstd, C, M,
                               training);
    graft_batchnorm2d_backward(NULL, NULL, NULL, G, inp, weight, save_mean, save_invstd, C, M,
                               training);
    double nul = same_err(only_in, dinp, n);
    e = same_err(only_w, dweight, C);
    if (e > nul) nul = e;
    e = same_err(only_b, dbias, C);
    if (e > nul) nul = e;
    snprintf(what, sizeof what, "%s NULL outputs", name);
    TU_CHECK_REL(what, nul, NULL_BOUND);

    free(inp), free(weight), free(bias), free(rm0), free(rv0), free(G), free(inp_d);
    free(weight_d), free(bias_d), free(rm_d), free(rv_d), free(G_d), free(out_d), free(out);
    free(save_mean), free(save_invstd), free(rm), free(rv), free(mean_d), free(invstd_d);
    free(rm_want), free(rv_want), free(dinp), free(dweight), free(dbias), free(base_in);
    free(base_w), free(base_b), free(acc_in), free(acc_w), free(acc_b), free(only_in);
    free(only_w), free(only_b);
}

static void test_batchnorm_train(void **state) {
    (void)state;
    bn_case(3, 3, 7, 1, 2000);
    bn_case(1, 13, 13, 1, 2010);
    bn_case(7, 1, 1, 1, 2020);
    bn_case(2, 3, 49, 1, 2030);
}

static void test_batchnorm_eval(void **state) {
    (void)state;
    bn_case(3, 3, 7, 0, 2100);
    bn_case(1, 13, 13, 0, 2110);
    bn_case(7, 1, 1, 0, 2120);
}

/* Repeated training steps move the running stats toward the batch statistics as
 * torch's exponential average does (checked against a double recurrence). */
static void test_batchnorm_running_steps(void **state) {
    (void)state;
    const int N = 3, C = 3, HW = 5, steps = 5;
    const float momentum = 0.25f;
    const size_t n = (size_t)N * C * HW;
    float rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1}, save_mean[3], save_invstd[3];
    double rm_d[3] = {0, 0, 0}, rv_d[3] = {1, 1, 1};
    float *weight = rand_floats(C, 0.5f, 1.5f, 1), *bias = rand_floats(C, -1, 1, 2);
    float *inp = tu_floats(n), *out = tu_floats(n);
    for (int step = 0; step < steps; step++) {
        tu_fill_uniform(inp, n, -3, 5, 50 + step);
        graft_batchnorm2d_forward(out, save_mean, save_invstd, rm, rv, inp, weight, bias, NULL, 0,
                                  C, (size_t)N * HW, momentum, 1e-5f, 1);
        for (int c = 0; c < C; c++) {
            double sum = 0, sq = 0, cnt = (double)N * HW;
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++)
                    sum += inp[(c * N + b) * HW + i];
            double mean = sum / cnt;
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) {
                    double d = inp[(c * N + b) * HW + i] - mean;
                    sq += d * d;
                }
            rm_d[c] = (1 - momentum) * rm_d[c] + momentum * mean;
            rv_d[c] = (1 - momentum) * rv_d[c] + momentum * sq / (cnt - 1);
        }
    }
    TU_CHECK_REL("batchnorm running_mean after 5 steps", rel(rm, rm_d, C), FWD_BOUND);
    TU_CHECK_REL("batchnorm running_var after 5 steps", rel(rv, rv_d, C), FWD_BOUND);
    free(weight), free(bias), free(inp), free(out);
}

/* The fused epilogue: [relu](bn(x) [+ residual]), also in place, against the plain
 * forward followed by the add and the ReLU; and graft_batchnorm2d_apply (the folded
 * form) against its formula. Lengths that are no multiple of the vector blocks. */
static void test_batchnorm_fused(void **state) {
    (void)state;
    const int C = 3;
    const size_t M = 37, n = (size_t)C * M;
    float *inp = rand_floats(n, -2, 3, 90), *res = rand_floats(n, -2, 2, 91);
    float *weight = rand_floats(C, 0.5f, 1.5f, 92), *bias = rand_floats(C, -1, 1, 93);
    float rm[3] = {0.1f, -0.2f, 0.3f}, rv[3] = {1.5f, 0.7f, 1.1f}, mean[3], invstd[3];
    float *plain = tu_floats(n), *want = tu_floats(n), *got = tu_floats(n);
    for (int training = 0; training < 2; training++)
        for (int variant = 0; variant < 4; variant++) {
            const int with_res = variant & 1, relu = variant >> 1;
            graft_batchnorm2d_forward(plain, mean, invstd, rm, rv, inp, weight, bias, NULL, 0, C, M,
                                      0.0f, 1e-5f, training);
            for (size_t i = 0; i < n; i++) {
                float v = plain[i] + (with_res ? res[i] : 0.0f);
                want[i] = relu && v < 0.0f ? 0.0f : v;
            }
            graft_batchnorm2d_forward(got, mean, invstd, rm, rv, inp, weight, bias,
                                      with_res ? res : NULL, relu, C, M, 0.0f, 1e-5f, training);
            char what[96];
            snprintf(what, sizeof what, "batchnorm %s%s%s", training ? "train" : "eval",
                     with_res ? " + residual" : "", relu ? " + relu" : "");
            TU_CHECK_REL(what, same_err(got, want, n), 1e-6);
            memcpy(got, inp, n * sizeof(float));
            graft_batchnorm2d_forward(got, mean, invstd, rm, rv, got, weight, bias,
                                      with_res ? res : NULL, relu, C, M, 0.0f, 1e-5f, training);
            snprintf(what + strlen(what), sizeof what - strlen(what), " in place");
            TU_CHECK_REL(what, same_err(got, want, n), 1e-6);
        }
    float scale[3] = {0.5f, -1.5f, 2.0f}, shift[3] = {0.25f, 0.0f, -1.0f};
    for (int variant = 0; variant < 4; variant++) {
        const int with_res = variant & 1, relu = variant >> 1;
        for (int c = 0; c < C; c++)
            for (size_t i = 0; i < M; i++) {
                size_t at = (size_t)c * M + i;
                float v = inp[at] * scale[c] + shift[c] + (with_res ? res[at] : 0.0f);
                want[at] = relu && v < 0.0f ? 0.0f : v;
            }
        memcpy(got, inp, n * sizeof(float));
        graft_batchnorm2d_apply(got, got, scale, shift, with_res ? res : NULL, relu, C, M);
        char what[96];
        snprintf(what, sizeof what, "batchnorm apply%s%s", with_res ? " + residual" : "",
                 relu ? " + relu" : "");
        TU_CHECK_REL(what, same_err(got, want, n), 1e-6);
    }
    free(inp), free(res), free(weight), free(bias), free(plain), free(want), free(got);
}

/* ---- pooling --------------------------------------------------------------------- */

typedef struct {
    graft_pool2d_shape s;
    double *inp;
} pool_ref;

/* Max over the in-image cells of each window; also returns the winner's plane offset. */
static void maxpool_ref(const pool_ref *r, double *out, int32_t *argmax) {
    const graft_pool2d_shape *s = &r->s;
    for (int p = 0; p < s->N * s->C; p++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                double best = -INFINITY;
                int32_t at = -1;
                for (int ih = oh * s->stride - s->pad; ih < oh * s->stride - s->pad + s->K; ih++)
                    for (int iw = ow * s->stride - s->pad; iw < ow * s->stride - s->pad + s->K;
                         iw++) {
                        if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                        double v = r->inp[(size_t)p * s->H * s->W + ih * s->W + iw];
                        if (v > best) best = v, at = ih * s->W + iw;
                    }
                out[(p * s->OH + oh) * s->OW + ow] = best;
                if (argmax) argmax[(p * s->OH + oh) * s->OW + ow] = at;
            }
}

static void maxpool_ref_forward(const void *vctx, double *out) { maxpool_ref(vctx, out, NULL); }

/* Sum over in-image cells divided by K*K (padding counts as zeros). */
static void avgpool_ref_forward(const void *vctx, double *out) {
    const pool_ref *r = vctx;
    const graft_pool2d_shape *s = &r->s;
    for (int p = 0; p < s->N * s->C; p++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                double sum = 0.0;
                for (int kh = 0; kh < s->K; kh++)
                    for (int kw = 0; kw < s->K; kw++) {
                        int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                        if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                        sum += r->inp[(size_t)p * s->H * s->W + ih * s->W + iw];
                    }
                out[(p * s->OH + oh) * s->OW + ow] = sum / (s->K * s->K);
            }
}

/* Distinct values (a shuffled ramp with steps of 0.05), so that no window has a tie. */
static void fill_distinct(float *x, size_t n, float offset, uint64_t seed) {
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = offset + 0.05f * (float)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)graft_rng_below(&r, i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

typedef struct {
    int N, C, H, W, K, stride, pad;
} pool_case_spec;

static const pool_case_spec pool_cases[] = {
    /* N, C, H, W, K, stride, pad */
    {1, 1, 7, 7, 3, 2, 1},   /* ResNet maxpool */
    {3, 3, 13, 7, 2, 2, 0},  /* odd size, last row/col dropped by floor */
    {2, 13, 7, 13, 3, 1, 1}, /* overlapping windows */
    {1, 3, 3, 3, 1, 1, 0},   /* identity */
    {3, 1, 7, 7, 7, 1, 3},   /* large window, large padding */
    {7, 1, 13, 13, 3, 3, 1}, /* stride 3 */
};

static void test_maxpool(void **state) {
    (void)state;
    for (size_t ci = 0; ci < sizeof pool_cases / sizeof pool_cases[0]; ci++) {
        const pool_case_spec *c = &pool_cases[ci];
        graft_pool2d_shape s =
            graft_pool2d_shape_make(c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        assert_int_equal(s.OH, (c->H + 2 * c->pad - c->K) / c->stride + 1);
        assert_int_equal(s.OW, (c->W + 2 * c->pad - c->K) / c->stride + 1);
        const size_t nin = (size_t)s.N * s.C * s.H * s.W, nout = (size_t)s.N * s.C * s.OH * s.OW;
        float *inp = tu_floats(nin);
        fill_distinct(inp, nin, -0.025f * (float)nin, 3000 + ci); /* half negative */
        float *G = rand_floats(nout, -1, 1, 3100 + ci);
        double *inp_d = doubles_of(inp, nin), *G_d = doubles_of(G, nout);
        double *out_d = tu_doubles(nout);
        int32_t *argmax = calloc(nout, sizeof(int32_t)), *argmax_d = calloc(nout, sizeof(int32_t));
        assert_non_null(argmax);
        assert_non_null(argmax_d);
        pool_ref ref = {s, inp_d};
        float *out = tu_floats(nout);
        graft_maxpool2d_forward(out, argmax, inp, &s);
        maxpool_ref(&ref, out_d, argmax_d);
        char name[96], what[160];
        snprintf(name, sizeof name, "maxpool N%d C%d %dx%d k%d s%d p%d", c->N, c->C, c->H, c->W,
                 c->K, c->stride, c->pad);
        snprintf(what, sizeof what, "%s forward", name);
        TU_CHECK_REL(what, rel(out, out_d, nout), 0.0);
        assert_memory_equal(argmax, argmax_d, nout * sizeof(int32_t));

        float *dinp = tu_floats(nin);
        graft_maxpool2d_backward(dinp, G, argmax, &s);
        snprintf(what, sizeof what, "%s dinp", name);
        TU_CHECK_REL(what, fd_err(dinp, inp_d, nin, maxpool_ref_forward, &ref, out_d, nout, G_d),
                     GRAD_BOUND);
        float *base = rand_floats(nin, -1, 1, 3200 + ci), *acc = floats_copy(base, nin);
        graft_maxpool2d_backward(acc, G, argmax, &s);
        graft_maxpool2d_backward(acc, G, argmax, &s);
        snprintf(what, sizeof what, "%s accumulate", name);
        TU_CHECK_REL(what, accum_err(acc, base, dinp, 2, nin), ACCUM_BOUND);
        free(inp), free(G), free(inp_d), free(G_d), free(out_d), free(argmax), free(argmax_d);
        free(out), free(dinp), free(base), free(acc);
    }
}

/* All-negative input: a padded border must not win with 0. */
static void test_maxpool_padding_is_minus_inf(void **state) {
    (void)state;
    graft_pool2d_shape s = graft_pool2d_shape_make(1, 2, 5, 5, 3, 2, 1);
    const size_t nin = 2 * 25, nout = 2 * (size_t)s.OH * s.OW;
    float *inp = rand_floats(nin, -2, -1, 7), *out = tu_floats(nout);
    int32_t *argmax = calloc(nout, sizeof(int32_t));
    assert_non_null(argmax);
    graft_maxpool2d_forward(out, argmax, inp, &s);
    for (size_t o = 0; o < nout; o++) {
        assert_true(out[o] < -0.5f);
        assert_true(argmax[o] >= 0 && argmax[o] < 25);
        assert_true(out[o] == inp[(o / (s.OH * s.OW)) * 25 + (size_t)argmax[o]]);
    }
    free(inp), free(out), free(argmax);
}

/* Ties (common after a ReLU) go to the first cell of the window in row-major order,
 * as in torch, and a NaN in a window wins. */
static void test_maxpool_ties_and_nan(void **state) {
    (void)state;
    graft_pool2d_shape s = graft_pool2d_shape_make(1, 1, 5, 5, 3, 2, 1);
    float inp[25] = {0}, out[9];
    int32_t argmax[9];
    graft_maxpool2d_forward(out, argmax, inp, &s);
    for (int oh = 0; oh < s.OH; oh++)
        for (int ow = 0; ow < s.OW; ow++) {
            int first_h = oh * 2 - 1 < 0 ? 0 : oh * 2 - 1,
                first_w = ow * 2 - 1 < 0 ? 0 : ow * 2 - 1;
            assert_int_equal(argmax[oh * s.OW + ow], first_h * 5 + first_w);
            assert_true(out[oh * s.OW + ow] == 0.0f);
        }
    inp[12] = NAN; /* centre: inside the windows (1,1) and its neighbours */
    inp[13] = 5.0f;
    graft_maxpool2d_forward(out, argmax, inp, &s);
    assert_true(isnan(out[1 * 3 + 1]));
    assert_int_equal(argmax[1 * 3 + 1], 12);
    assert_true(out[0] == 0.0f); /* window (0,0) covers rows/cols 0..1 only */
}

/* torch's max-pool rule stated directly: a window holding a NaN yields its last NaN (in
 * row-major order), any other its first maximum; a window wholly in the padding -inf
 * and -1. Returns the winner's plane offset. */
static int32_t maxpool_window_ref(const float *x, const graft_pool2d_shape *s, int oh, int ow) {
    int32_t at = -1;
    for (int ih = oh * s->stride - s->pad; ih < oh * s->stride - s->pad + s->K; ih++)
        for (int iw = ow * s->stride - s->pad; iw < ow * s->stride - s->pad + s->K; iw++)
            if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W && isnan(x[ih * s->W + iw]))
                at = ih * s->W + iw;
    if (at >= 0) return at;
    for (int ih = oh * s->stride - s->pad; ih < oh * s->stride - s->pad + s->K; ih++)
        for (int iw = ow * s->stride - s->pad; iw < ow * s->stride - s->pad + s->K; iw++)
            if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W &&
                (at < 0 || x[ih * s->W + iw] > x[at]))
                at = ih * s->W + iw;
    return at;
}

/* The vectorised interior blocks against the plain rule on planes wide enough for them
 * (the stem pool and the generic gather, odd sizes, a last block overlapping the one
 * before), with ties, -inf and NaNs (several per window at times); backward routes each
 * gradient to the winner. */
static void test_maxpool_blocks(void **state) {
    (void)state;
    static const pool_case_spec cases[] = {
        /* N, C, H, W, K, stride, pad */
        {2, 3, 32, 32, 3, 2, 1}, /* ResNet's stem pool on 64x64 images */
        {1, 2, 21, 37, 3, 2, 1}, /* odd sizes: the last block overlaps */
        {1, 1, 9, 50, 3, 2, 0},  /* no padding */
        {2, 1, 17, 33, 3, 1, 1}, /* stride 1: gathered lanes */
        {1, 2, 19, 41, 5, 3, 2}, /* larger window, stride 3 */
        {1, 1, 8, 16, 2, 2, 0},  /* the interior is one block */
        {1, 1, 3, 40, 3, 2, 1},  /* one interior row */
    };
    graft_rng r;
    graft_rng_seed(&r, 4000);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const pool_case_spec *c = &cases[ci];
        graft_pool2d_shape s =
            graft_pool2d_shape_make(c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        const size_t HW = (size_t)s.H * s.W, OHW = (size_t)s.OH * s.OW;
        const size_t nin = (size_t)s.N * s.C * HW, nout = (size_t)s.N * s.C * OHW;
        float *inp = tu_floats(nin), *out = tu_floats(nout), *dy = tu_floats(nout);
        float *dinp = tu_floats(nin), *want = tu_floats(nin);
        int32_t *argmax = calloc(nout, sizeof(int32_t));
        assert_non_null(argmax);
        /* Few distinct values for many ties; the first plane has no NaN. */
        for (size_t i = 0; i < nin; i++) {
            const uint64_t u = graft_rng_below(&r, 100);
            inp[i] = u < 5 && i >= HW ? NAN : u < 10 ? -INFINITY : (float)(u % 4) - 2.0f;
        }
        for (size_t i = 0; i < nout; i++)
            dy[i] = (float)graft_rng_below(&r, 8) - 3.5f;
        memset(want, 0, nin * sizeof(float));
        graft_maxpool2d_forward(out, argmax, inp, &s);
        for (size_t p = 0; p < (size_t)s.N * s.C; p++)
            for (int oh = 0; oh < s.OH; oh++)
                for (int ow = 0; ow < s.OW; ow++) {
                    const size_t o = p * OHW + (size_t)oh * s.OW + ow;
                    const int32_t at = maxpool_window_ref(inp + p * HW, &s, oh, ow);
                    if (argmax[o] != at || memcmp(&out[o], &inp[p * HW + at], sizeof(float)) != 0)
                        fail_msg("case %zu plane %zu output (%d,%d): argmax %d want %d", ci, p, oh,
                                 ow, argmax[o], at);
                    want[p * HW + at] += dy[o];
                }
        memset(dinp, 0, nin * sizeof(float));
        graft_maxpool2d_backward(dinp, dy, argmax, &s);
        assert_memory_equal(dinp, want, nin * sizeof(float));
        free(inp), free(out), free(dy), free(dinp), free(want), free(argmax);
    }
}

static void test_avgpool(void **state) {
    (void)state;
    for (size_t ci = 0; ci < sizeof pool_cases / sizeof pool_cases[0]; ci++) {
        const pool_case_spec *c = &pool_cases[ci];
        graft_pool2d_shape s =
            graft_pool2d_shape_make(c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        const size_t nin = (size_t)s.N * s.C * s.H * s.W, nout = (size_t)s.N * s.C * s.OH * s.OW;
        float *inp = rand_floats(nin, -1, 1, 4000 + ci), *G = rand_floats(nout, -1, 1, 4100 + ci);
        double *inp_d = doubles_of(inp, nin), *G_d = doubles_of(G, nout);
        double *out_d = tu_doubles(nout);
        pool_ref ref = {s, inp_d};
        float *out = tu_floats(nout);
        graft_avgpool2d_forward(out, inp, &s);
        avgpool_ref_forward(&ref, out_d);
        char name[96], what[160];
        snprintf(name, sizeof name, "avgpool N%d C%d %dx%d k%d s%d p%d", c->N, c->C, c->H, c->W,
                 c->K, c->stride, c->pad);
        snprintf(what, sizeof what, "%s forward", name);
        TU_CHECK_REL(what, rel(out, out_d, nout), FWD_BOUND);
        float *dinp = tu_floats(nin);
        graft_avgpool2d_backward(dinp, G, &s);
        snprintf(what, sizeof what, "%s dinp", name);
        TU_CHECK_REL(what, fd_err(dinp, inp_d, nin, avgpool_ref_forward, &ref, out_d, nout, G_d),
                     GRAD_BOUND);
        float *base = rand_floats(nin, -1, 1, 4200 + ci), *acc = floats_copy(base, nin);
        graft_avgpool2d_backward(acc, G, &s);
        graft_avgpool2d_backward(acc, G, &s);
        snprintf(what, sizeof what, "%s accumulate", name);
        TU_CHECK_REL(what, accum_err(acc, base, dinp, 2, nin), ACCUM_BOUND);
        free(inp), free(G), free(inp_d), free(G_d), free(out_d), free(out), free(dinp);
        free(base), free(acc);
    }
}

typedef struct {
    int N, C, H, W, OH, OW;
    double *inp;
} adaptive_ref;

/* torch: window i covers [floor(i*H/OH), ceil((i+1)*H/OH)). */
static void adaptive_ref_forward(const void *vctx, double *out) {
    const adaptive_ref *r = vctx;
    for (int p = 0; p < r->N * r->C; p++)
        for (int oh = 0; oh < r->OH; oh++)
            for (int ow = 0; ow < r->OW; ow++) {
                int h0 = (int)floor((double)oh * r->H / r->OH);
                int h1 = (int)ceil((double)(oh + 1) * r->H / r->OH);
                int w0 = (int)floor((double)ow * r->W / r->OW);
                int w1 = (int)ceil((double)(ow + 1) * r->W / r->OW);
                double sum = 0.0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        sum += r->inp[((size_t)p * r->H + ih) * r->W + iw];
                out[(p * r->OH + oh) * r->OW + ow] = sum / ((h1 - h0) * (w1 - w0));
            }
}

static void test_adaptive_avgpool(void **state) {
    (void)state;
    static const int cases[][6] = {
        /* N, C, H, W, OH, OW */
        {3, 3, 7, 7, 1, 1},   /* ResNet global pool */
        {1, 13, 7, 13, 3, 5}, /* non-dividing: overlapping windows */
        {2, 1, 5, 5, 7, 7},   /* output larger than input */
        {1, 3, 13, 7, 13, 7}, /* identity */
        {7, 1, 3, 3, 2, 2},   /* overlapping 2x2 windows */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int *c = cases[ci];
        const int N = c[0], C = c[1], H = c[2], W = c[3], OH = c[4], OW = c[5];
        const size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C * OH * OW;
        float *inp = rand_floats(nin, -1, 1, 5000 + ci), *G = rand_floats(nout, -1, 1, 5100 + ci);
        double *inp_d = doubles_of(inp, nin), *G_d = doubles_of(G, nout);
        double *out_d = tu_doubles(nout);
        adaptive_ref ref = {N, C, H, W, OH, OW, inp_d};
        float *out = tu_floats(nout);
        graft_adaptive_avgpool2d_forward(out, inp, N, C, H, W, OH, OW);
        adaptive_ref_forward(&ref, out_d);
        char name[96], what[160];
        snprintf(name, sizeof name, "adaptive avgpool N%d C%d %dx%d -> %dx%d", N, C, H, W, OH, OW);
        snprintf(what, sizeof what, "%s forward", name);
        TU_CHECK_REL(what, rel(out, out_d, nout), FWD_BOUND);
        float *dinp = tu_floats(nin);
        graft_adaptive_avgpool2d_backward(dinp, G, N, C, H, W, OH, OW);
        snprintf(what, sizeof what, "%s dinp", name);
        TU_CHECK_REL(what, fd_err(dinp, inp_d, nin, adaptive_ref_forward, &ref, out_d, nout, G_d),
                     GRAD_BOUND);
        float *base = rand_floats(nin, -1, 1, 5200 + ci), *acc = floats_copy(base, nin);
        graft_adaptive_avgpool2d_backward(acc, G, N, C, H, W, OH, OW);
        graft_adaptive_avgpool2d_backward(acc, G, N, C, H, W, OH, OW);
        snprintf(what, sizeof what, "%s accumulate", name);
        TU_CHECK_REL(what, accum_err(acc, base, dinp, 2, nin), ACCUM_BOUND);
        free(inp), free(G), free(inp_d), free(G_d), free(out_d), free(out), free(dinp);
        free(base), free(acc);
    }
}

static void test_pool_shape(void **state) {
    (void)state;
    graft_pool2d_shape s = graft_pool2d_shape_make(2, 64, 112, 112, 3, 2, 1);
    assert_int_equal(s.OH, 56);
    assert_int_equal(s.OW, 56);
    s = graft_pool2d_shape_make(1, 1, 7, 6, 2, 2, 0); /* floor, not ceil */
    assert_int_equal(s.OH, 3);
    assert_int_equal(s.OW, 3);
    s = graft_pool2d_shape_make(1, 1, 2, 2, 3, 1, 0);
    assert_int_equal(s.OH, 0);
}

/* ---- relu, dropout, residual ---------------------------------------------------- */

typedef struct {
    size_t n;
    double *inp, *other; /* other: dropout mask or the residual's second input */
} eltwise_ref;

static void relu_ref_forward(const void *vctx, double *out) {
    const eltwise_ref *r = vctx;
    for (size_t i = 0; i < r->n; i++)
        out[i] = r->inp[i] > 0 ? r->inp[i] : 0.0;
}

static void mul_ref_forward(const void *vctx, double *out) {
    const eltwise_ref *r = vctx;
    for (size_t i = 0; i < r->n; i++)
        out[i] = r->inp[i] * r->other[i];
}

static void add_ref_forward(const void *vctx, double *out) {
    const eltwise_ref *r = vctx;
    for (size_t i = 0; i < r->n; i++)
        out[i] = r->inp[i] + r->other[i];
}

static void test_relu(void **state) {
    (void)state;
    const size_t n = 1013;
    float *inp = rand_floats(n, -1, 1, 60);
    for (size_t i = 0; i < n; i++) /* keep clear of the kink for finite differences */
        if (fabsf(inp[i]) < 1e-3f) inp[i] = 0.5f;
    float *G = rand_floats(n, -1, 1, 61), *out = tu_floats(n), *dinp = tu_floats(n);
    double *inp_d = doubles_of(inp, n), *G_d = doubles_of(G, n), *out_d = tu_doubles(n);
    eltwise_ref ref = {n, inp_d, NULL};
    graft_relu_forward(out, inp, n);
    relu_ref_forward(&ref, out_d);
    TU_CHECK_REL("relu forward", rel(out, out_d, n), 0.0);
    graft_relu_backward(dinp, G, out, n);
    TU_CHECK_REL("relu dinp vs FD", fd_err(dinp, inp_d, n, relu_ref_forward, &ref, out_d, n, G_d),
                 GRAD_BOUND);
    float *base = rand_floats(n, -1, 1, 62), *acc = floats_copy(base, n);
    graft_relu_backward(acc, G, out, n);
    graft_relu_backward(acc, G, out, n);
    graft_relu_backward(NULL, G, out, n);
    TU_CHECK_REL("relu accumulate", accum_err(acc, base, dinp, 2, n), ACCUM_BOUND);
    float *inplace = floats_copy(inp, n);
    graft_relu_forward(inplace, inplace, n);
    TU_CHECK_REL("relu in place", same_err(inplace, out, n), 0.0);
    free(inp), free(G), free(out), free(dinp), free(inp_d), free(G_d), free(out_d), free(base);
    free(acc), free(inplace);
}

static void test_dropout(void **state) {
    (void)state;
    const size_t n = 200000;
    const float p = 0.3f;
    float *inp = rand_floats(n, -1, 1, 70), *out = tu_floats(n), *mask = tu_floats(n);
    graft_rng rng;

    /* p = 0: identity, mask of ones, rng untouched */
    graft_rng_seed(&rng, 5);
    graft_dropout_forward(out, mask, inp, n, 0.0f, &rng);
    assert_memory_equal(out, inp, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        assert_true(mask[i] == 1.0f);
    assert_true(rng.state == 5);

    /* p = 0.3: mask in {0, 1/(1-p)}, about 1-p kept, out = inp * mask */
    graft_rng_seed(&rng, 42);
    graft_dropout_forward(out, mask, inp, n, p, &rng);
    const float keep_scale = 1.0f / (1.0f - p);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(mask[i] == 0.0f || mask[i] == keep_scale);
        assert_true(out[i] == inp[i] * mask[i]);
        kept += mask[i] != 0.0f;
    }
    double kept_fraction = (double)kept / (double)n;
    printf("  dropout p=0.3 kept fraction %.4f (want 0.7 +- 0.01)\n", kept_fraction);
    assert_true(fabs(kept_fraction - 0.7) < 0.01);

    /* the same seed gives the same mask, another seed a different one */
    float *mask2 = tu_floats(n), *out2 = tu_floats(n);
    graft_rng_seed(&rng, 42);
    graft_dropout_forward(out2, mask2, inp, n, p, &rng);
    assert_memory_equal(mask2, mask, n * sizeof(float));
    graft_dropout_forward(out2, mask2, inp, n, p, &rng); /* rng has moved on */
    assert_memory_not_equal(mask2, mask, n * sizeof(float));
    graft_rng_seed(&rng, 43);
    graft_dropout_forward(out2, mask2, inp, n, p, &rng);
    assert_memory_not_equal(mask2, mask, n * sizeof(float));

    /* backward uses the mask: FD of out = inp * mask on a slice, and accumulation */
    const size_t m = 997;
    float *G = rand_floats(m, -1, 1, 71), *dinp = tu_floats(m);
    double *inp_d = doubles_of(inp, m), *mask_d = doubles_of(mask, m), *G_d = doubles_of(G, m);
    double *out_d = tu_doubles(m);
    eltwise_ref ref = {m, inp_d, mask_d};
    graft_dropout_backward(dinp, G, mask, m);
    TU_CHECK_REL("dropout dinp vs FD", fd_err(dinp, inp_d, m, mul_ref_forward, &ref, out_d, m, G_d),
                 GRAD_BOUND);
    float *base = rand_floats(m, -1, 1, 72), *acc = floats_copy(base, m);
    graft_dropout_backward(acc, G, mask, m);
    graft_dropout_backward(acc, G, mask, m);
    graft_dropout_backward(NULL, G, mask, m);
    TU_CHECK_REL("dropout accumulate", accum_err(acc, base, dinp, 2, m), ACCUM_BOUND);
    free(inp), free(out), free(mask), free(mask2), free(out2), free(G), free(dinp), free(inp_d);
    free(mask_d), free(G_d), free(out_d), free(base), free(acc);
}

static void test_residual(void **state) {
    (void)state;
    const size_t n = 777;
    float *a = rand_floats(n, -1, 1, 80), *b = rand_floats(n, -1, 1, 81);
    float *G = rand_floats(n, -1, 1, 82), *out = tu_floats(n);
    double *a_d = doubles_of(a, n), *b_d = doubles_of(b, n), *G_d = doubles_of(G, n);
    double *out_d = tu_doubles(n);
    eltwise_ref ref = {n, a_d, b_d};
    graft_residual_forward(out, a, b, n);
    add_ref_forward(&ref, out_d);
    TU_CHECK_REL("residual forward", rel(out, out_d, n), FWD_BOUND);
    float *da = tu_floats(n), *db = tu_floats(n);
    graft_residual_backward(da, db, G, n);
    TU_CHECK_REL("residual da vs FD", fd_err(da, a_d, n, add_ref_forward, &ref, out_d, n, G_d),
                 GRAD_BOUND);
    TU_CHECK_REL("residual db vs FD", fd_err(db, b_d, n, add_ref_forward, &ref, out_d, n, G_d),
                 GRAD_BOUND);
    float *base = rand_floats(n, -1, 1, 83), *acc_a = floats_copy(base, n);
    float *acc_b = floats_copy(base, n);
    graft_residual_backward(acc_a, acc_b, G, n);
    graft_residual_backward(acc_a, NULL, G, n);
    graft_residual_backward(NULL, acc_b, G, n);
    graft_residual_backward(NULL, NULL, G, n);
    TU_CHECK_REL("residual da accumulate / NULL db", accum_err(acc_a, base, da, 2, n), ACCUM_BOUND);
    TU_CHECK_REL("residual db accumulate / NULL da", accum_err(acc_b, base, db, 2, n), ACCUM_BOUND);
    free(a), free(b), free(G), free(out), free(a_d), free(b_d), free(G_d), free(out_d);
    free(da), free(db), free(base), free(acc_a), free(acc_b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_fd),
        cmocka_unit_test(test_linear_large),
        cmocka_unit_test(test_conv2d_shape),
        cmocka_unit_test(test_conv2d_fd),
        cmocka_unit_test(test_conv2d_medium),
        cmocka_unit_test(test_batchnorm_train),
        cmocka_unit_test(test_batchnorm_eval),
        cmocka_unit_test(test_batchnorm_running_steps),
        cmocka_unit_test(test_batchnorm_fused),
        cmocka_unit_test(test_pool_shape),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_maxpool_padding_is_minus_inf),
        cmocka_unit_test(test_maxpool_ties_and_nan),
        cmocka_unit_test(test_maxpool_blocks),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_adaptive_avgpool),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_residual),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
