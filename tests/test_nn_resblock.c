/* Residual blocks (runtime/nn/resblock.h) on their own: basic and bottleneck blocks with
 * identity and downsample shortcuts, against a double-precision reference forward
 * written here (convolution, batchnorm, shortcut and ReLU as torch defines them):
 *   - the float forward vs the reference forward;
 *   - every trainable gradient and the input gradient vs central finite differences of
 *     the reference's L = sum(out * G) (dout = G);
 *   - a frozen first unit: under freeze.bn=eval its BN folds and keeps no conv output,
 *     and the backward stops inside the block (no input gradient, no frozen gradient);
 *   - the forward-only path through three shared buffers equals the kept path byte for
 *     byte, whichever buffer holds the input;
 *   - the range of the table each block records, and what it tells about trainability. */
#include "tests/testutil_model.h"

#include "runtime/core/arena.h"
#include "runtime/nn/block.h"
#include "runtime/nn/resblock.h"

#define FD_STEP 1e-6
#define FWD_BOUND 1e-5  /* float block vs double reference forward */
#define GRAD_BOUND 2e-5 /* float backward vs finite differences (seen: 1.1e-6) */
#define REL_FLOOR 1e-3  /* tu_rel_err_fd floor */
#define BN_EPS 1e-5

enum { N = 3 }; /* images */

typedef struct {
    const char *name;
    int bottleneck, C, H, W, planes, stride;
    int frozen_bn_eval;
    const char *frozen; /* comma-separated globs frozen besides stem and fc, or NULL */
    int below;          /* the input gradient is wanted */
} block_case;

#define CONV1_BN1 "layer2.0.conv1.*,layer2.0.bn1.*" /* not downsample.1 */
static const block_case cases[] = {
    {"basic, downsample", 0, 3, 6, 6, 4, 2, 1, NULL, 1},
    {"basic, identity", 0, 4, 5, 5, 4, 1, 1, NULL, 1},
    {"bottleneck, downsample", 1, 4, 5, 5, 2, 2, 1, NULL, 1},
    {"bottleneck, identity", 1, 8, 4, 4, 2, 1, 1, NULL, 1},
    {"bottleneck, downsample, no input gradient", 1, 4, 5, 5, 2, 2, 1, NULL, 0},
    {"bottleneck, frozen conv1/bn1 (bn eval)", 1, 4, 5, 5, 2, 2, 1, CONV1_BN1, 0},
    {"basic, frozen conv1/bn1 (bn eval)", 0, 3, 6, 6, 4, 2, 1, CONV1_BN1, 0},
    {"basic, frozen conv1/bn1 (bn train)", 0, 3, 6, 6, 4, 2, 0, CONV1_BN1, 0},
    {"basic identity, frozen bn2 (eval)", 0, 4, 5, 5, 4, 1, 1, "layer2.0.bn2.*", 1},
};

/* The block as layer2.0 of a table, between a "stem" and an "fc" parameter (both
 * frozen), with planned activations. */
typedef struct {
    graft_params p;
    graft_resblock blk;
    graft_param_range stem, fc;
    graft_arena arena;
    graft_resblock_sizes need;
    size_t n_in, n_out;
} setup;

static int units_of(const graft_resblock *b, const graft_conv_bn *u[4]) {
    int n = 0;
    for (int k = 0; k < b->n_units; k++)
        u[n++] = &b->unit[k];
    if (b->has_down) u[n++] = &b->down;
    return n;
}

static void fill(const graft_params *p, int index, float lo, float hi, graft_rng *r) {
    float *v = graft_params_value(p, index);
    for (size_t i = 0; i < p->items[index].numel; i++)
        v[i] = lo + (hi - lo) * graft_rng_uniform(r);
}

static void setup_make(setup *s, const block_case *c, int keep) {
    memset(s, 0, sizeof *s);
    graft_params_init(&s->p);
    const int64_t two[1] = {2};
    s->stem = graft_param_range_begin(&s->p);
    assert_true(graft_params_add(&s->p, "stem.weight", GRAFT_KIND_PARAM, 1, two) >= 0);
    graft_param_range_end(&s->stem, &s->p);
    if (c->bottleneck)
        assert_int_equal(graft_resblock_bottleneck_add(&s->blk, &s->p, "layer2.0", c->C, c->H, c->W,
                                                       c->planes, c->stride, c->frozen_bn_eval),
                         GRAFT_OK);
    else
        assert_int_equal(graft_resblock_basic_add(&s->blk, &s->p, "layer2.0", c->C, c->H, c->W,
                                                  c->planes, c->stride, c->frozen_bn_eval),
                         GRAFT_OK);
    s->fc = graft_param_range_begin(&s->p);
    assert_true(graft_params_add(&s->p, "fc.weight", GRAFT_KIND_PARAM, 1, two) >= 0);
    graft_param_range_end(&s->fc, &s->p);
    tu_freeze(&s->p, "stem.*,fc.*");
    tu_freeze(&s->p, c->frozen);
    assert_int_equal(graft_params_finalize(&s->p), GRAFT_OK);

    graft_rng rng;
    graft_rng_seed(&rng, 7);
    graft_resblock_init(&s->blk, &s->p, &rng);
    const graft_conv_bn *u[4];
    for (int k = 0, n = units_of(&s->blk, u); k < n; k++) { /* away from the init's 1 and 0 */
        fill(&s->p, u[k]->conv, -0.5f, 0.5f, &rng);
        fill(&s->p, u[k]->bn_weight, 0.5f, 1.5f, &rng);
        fill(&s->p, u[k]->bn_bias, -0.5f, 0.5f, &rng);
        fill(&s->p, u[k]->running_mean, -0.3f, 0.3f, &rng);
        fill(&s->p, u[k]->running_var, 0.5f, 1.5f, &rng);
    }
    graft_arena_init_plan(&s->arena);
    graft_resblock_plan(&s->blk, &s->p, &s->arena, N, keep, &s->need);
    assert_int_equal(graft_arena_commit(&s->arena), GRAFT_OK);
    s->need = (graft_resblock_sizes){0, 0, 0};
    graft_resblock_plan(&s->blk, &s->p, &s->arena, N, keep, &s->need);
    s->n_in = (size_t)c->C * N * c->H * c->W;
    s->n_out = graft_conv_bn_out_floats(graft_resblock_last(&s->blk), N);
}

static void setup_free(setup *s) {
    graft_params_free(&s->p);
    graft_arena_free(&s->arena);
}

/* ---- the double reference ------------------------------------------------------- */

typedef struct {
    const setup *s;
    double *vals; /* the table's values */
    double *in;   /* [C, N, H, W] */
    double *t0, *t1, *ds;
} ref_ctx;

static const double *ref_value(const ref_ctx *r, int index) {
    return r->vals + r->s->p.items[index].offset;
}

/* out = [relu](bn(conv(in)) [+ res]) over channel-major activations; batch statistics
 * while training unless the BN is frozen under freeze.bn=eval. */
static void ref_unit(const ref_ctx *r, const graft_conv_bn *u, double *out, const double *in,
                     const double *res, int relu) {
    const graft_conv2d_shape *s = &u->shape;
    const double *w = ref_value(r, u->conv), *gamma = ref_value(r, u->bn_weight);
    const double *beta = ref_value(r, u->bn_bias), *rmean = ref_value(r, u->running_mean);
    const double *rvar = ref_value(r, u->running_var);
    const size_t M = (size_t)N * s->OH * s->OW;
    for (int oc = 0; oc < s->OC; oc++)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double sum = 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride + kh - s->pad;
                                int iw = ow * s->stride + kw - s->pad;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                sum += w[((oc * s->C + c) * s->KH + kh) * s->KW + kw] *
                                       in[(((size_t)c * N + n) * s->H + ih) * s->W + iw];
                            }
                    out[(((size_t)oc * N + n) * s->OH + oh) * s->OW + ow] = sum;
                }
    const int batch = !(r->s->blk.frozen_bn_eval && graft_conv_bn_bn_frozen(u, &r->s->p));
    for (int oc = 0; oc < s->OC; oc++) {
        double *x = out + (size_t)oc * M;
        double mean = rmean[oc], var = rvar[oc];
        if (batch) {
            mean = var = 0.0;
            for (size_t i = 0; i < M; i++)
                mean += x[i];
            mean /= (double)M;
            for (size_t i = 0; i < M; i++)
                var += (x[i] - mean) * (x[i] - mean);
            var /= (double)M;
        }
        for (size_t i = 0; i < M; i++) {
            double y = (x[i] - mean) / sqrt(var + BN_EPS) * gamma[oc] + beta[oc];
            if (res) y += res[(size_t)oc * M + i];
            x[i] = relu && y < 0.0 ? 0.0 : y;
        }
    }
}

static void ref_block(const ref_ctx *r, double *out) {
    const graft_resblock *b = &r->s->blk;
    ref_unit(r, &b->unit[0], r->t0, r->in, NULL, 1);
    const double *x = r->t0;
    if (b->n_units == 3) {
        ref_unit(r, &b->unit[1], r->t1, r->t0, NULL, 1);
        x = r->t1;
    }
    const double *res = r->in;
    if (b->has_down) {
        ref_unit(r, &b->down, r->ds, r->in, NULL, 0);
        res = r->ds;
    }
    ref_unit(r, graft_resblock_last(b), out, x, res, 1);
}

static double ref_loss(const ref_ctx *r, double *out, const double *G) {
    ref_block(r, out);
    double loss = 0.0;
    for (size_t i = 0; i < r->s->n_out; i++)
        loss += out[i] * G[i];
    return loss;
}

/* max |got - dL/dx| / max(|dL/dx|, floor), dL/dx by central differences of x[0..n). */
static double fd_err(const float *got, double *x, size_t n, const ref_ctx *r, double *out,
                     const double *G) {
    double *want = tu_doubles(n);
    for (size_t i = 0; i < n; i++) {
        const double keep = x[i];
        x[i] = keep + FD_STEP;
        const double up = ref_loss(r, out, G);
        x[i] = keep - FD_STEP;
        const double down = ref_loss(r, out, G);
        x[i] = keep;
        want[i] = (up - down) / (2 * FD_STEP);
    }
    double err = tu_rel_err_fd(got, want, n, REL_FLOOR);
    free(want);
    return err;
}

static double *doubles_of(const float *f, size_t n) {
    double *d = tu_doubles(n);
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    return d;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* ---- tests ---------------------------------------------------------------------- */

/* One case: the kept forward and the backward against the reference. */
static void block_case_run(const block_case *c, uint64_t seed) {
    setup s;
    setup_make(&s, c, 1);
    char what[192];
    float *x = tu_floats(s.n_in), *G = tu_floats(s.n_out);
    tu_fill_uniform(x, s.n_in, -1, 1, seed);
    tu_fill_uniform(G, s.n_out, -1, 1, seed + 1);
    const size_t big = max_size(s.n_in, s.need.grad);
    float *g = tu_floats(big), *spare = tu_floats(big), *dpre = tu_floats(s.need.grad);
    float *inner = tu_floats(s.need.grad), *scratch = tu_floats(s.need.scratch);
    const size_t wide = s.need.grad; /* the largest unit output */
    ref_ctx r = {&s,
                 doubles_of(s.p.values, s.p.n_values),
                 doubles_of(x, s.n_in),
                 tu_doubles(wide),
                 tu_doubles(wide),
                 tu_doubles(wide)};
    double *out_d = tu_doubles(s.n_out), *G_d = doubles_of(G, s.n_out);

    float *no_ping[3] = {NULL, NULL, NULL};
    int at = 0;
    const float *out = graft_resblock_forward(&s.blk, &s.p, x, no_ping, &at, N, 1, scratch);
    assert_ptr_equal(out, s.blk.out);
    ref_block(&r, out_d);
    snprintf(what, sizeof what, "%s: forward", c->name);
    TU_CHECK_REL(what, tu_rel_err_fd(out, out_d, s.n_out, REL_FLOOR), FWD_BOUND);
    /* a folded BN keeps no conv output: the stop inside the block saves its memory */
    if (c->frozen_bn_eval && graft_conv_bn_bn_frozen(&s.blk.unit[0], &s.p))
        assert_null(s.blk.unit[0].pre);

    tu_hook_log h = {0, 0};
    s.p.on_grad_ready = tu_record_ready;
    s.p.on_grad_ready_ctx = &h;
    graft_params_zero_grad(&s.p);
    memcpy(g, G, s.n_out * sizeof(float));
    float *dx = graft_resblock_backward(&s.blk, &s.p, g, spare, c->below, dpre, inner, N, scratch);
    if (c->below) {
        assert_ptr_equal(dx, s.blk.has_down ? spare : g);
        snprintf(what, sizeof what, "%s: input gradient", c->name);
        TU_CHECK_REL(what, fd_err(dx, r.in, s.n_in, &r, out_d, G_d), GRAD_BOUND);
    } else {
        assert_null(dx);
    }
    size_t trainable = 0;
    double worst = 0.0;
    for (int i = s.blk.range.first; i < s.blk.range.end; i++) {
        const graft_param *t = &s.p.items[i];
        if (t->kind == GRAFT_KIND_BUFFER) continue;
        if (!t->trainable) {
            assert_null(graft_params_grad(&s.p, i));
            continue;
        }
        trainable++;
        double e = fd_err(graft_params_grad(&s.p, i), r.vals + t->offset, t->numel, &r, out_d, G_d);
        if (e > GRAD_BOUND) printf("  %s: %s gradient rel err %.3e\n", c->name, t->name, e);
        worst = e > worst ? e : worst;
    }
    snprintf(what, sizeof what, "%s: %zu parameter gradients", c->name, trainable);
    TU_CHECK_REL(what, worst, GRAD_BOUND);
    /* each trainable parameter reported ready once, tiling the gradient buffer */
    assert_int_equal(h.calls, trainable);
    assert_int_equal(h.next, s.p.n_grads);

    free(x), free(G), free(g), free(spare), free(dpre), free(inner), free(scratch);
    free(r.vals), free(r.in), free(r.t0), free(r.t1), free(r.ds), free(out_d), free(G_d);
    setup_free(&s);
}

static void test_blocks_against_finite_differences(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        block_case_run(&cases[i], 100 + 10 * i);
}

/* A block planned without keep holds nothing for the backward and computes, in the
 * owner's three buffers, the same bytes as a kept one, with the input in any of them. */
static void test_forward_only_shared_buffers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const block_case *c = &cases[i];
        setup kept, shared;
        setup_make(&kept, c, 1);
        setup_make(&shared, c, 0);
        assert_null(shared.blk.out);
        assert_null(shared.blk.act[0]);
        assert_null(shared.blk.down_out);
        for (int k = 0; k < shared.blk.n_units; k++)
            assert_null(shared.blk.unit[k].pre);
        assert_int_equal(shared.need.grad, 0);
        assert_true(shared.arena.capacity < kept.arena.capacity);

        float *x = tu_floats(kept.n_in), *scratch = tu_floats(kept.need.scratch);
        tu_fill_uniform(x, kept.n_in, -1, 1, 50 + i);
        float *no_ping[3] = {NULL, NULL, NULL};
        int at = 0;
        const float *want =
            graft_resblock_forward(&kept.blk, &kept.p, x, no_ping, &at, N, 1, scratch);
        const size_t n_ping = max_size(shared.need.ping, shared.n_in);
        float *ping[3] = {tu_floats(n_ping), tu_floats(n_ping), tu_floats(n_ping)};
        /* where the output lands: the aliasing rules of the forward-only path */
        const int shift = !shared.blk.has_down ? (shared.blk.n_units == 2 ? 2 : 1) : 0;
        for (int start = 0; start < 3; start++) {
            memcpy(ping[start], x, kept.n_in * sizeof(float));
            at = start;
            const float *got = graft_resblock_forward(&shared.blk, &shared.p, ping[start], ping,
                                                      &at, N, 1, scratch);
            assert_int_equal(at, (start + shift) % 3);
            assert_ptr_equal(got, ping[at]);
            assert_ptr_equal(shared.blk.in, ping[start]);
            assert_memory_equal(got, want, kept.n_out * sizeof(float));
        }
        printf("  %-42s output in ping[(at + %d) %% 3], same bytes as kept\n", c->name, shift);
        free(x), free(scratch), free(ping[0]), free(ping[1]), free(ping[2]);
        setup_free(&kept);
        setup_free(&shared);
    }
}

/* The block's range is exactly what it registered, torchvision's names in order, and
 * the lowest trainable stage follows any parameter of it. */
static void test_ranges(void **state) {
    (void)state;
    for (size_t i = 0; i < 4; i++) { /* the four shapes, nothing frozen */
        const block_case *c = &cases[i];
        setup s;
        setup_make(&s, c, 1);
        const graft_resblock *b = &s.blk;
        const int units = b->n_units + b->has_down;
        assert_int_equal(b->n_units, c->bottleneck ? 3 : 2);
        assert_int_equal(b->has_down,
                         c->stride != 1 || c->C != c->planes * (c->bottleneck ? 4 : 1));
        assert_int_equal(b->range.first, s.stem.end);
        assert_int_equal(b->range.end, b->range.first + 6 * units);
        assert_int_equal(b->range.end, s.fc.first);
        assert_string_equal(s.p.items[b->range.first].name, "layer2.0.conv1.weight");
        char last[GRAFT_NAME_MAX];
        if (b->has_down)
            snprintf(last, sizeof last, "layer2.0.downsample.1.num_batches_tracked");
        else
            snprintf(last, sizeof last, "layer2.0.bn%d.num_batches_tracked", b->n_units);
        assert_string_equal(s.p.items[b->range.end - 1].name, last);
        /* the stride sits on the 3x3 conv: unit 0 of a basic block, unit 1 of a bottleneck */
        assert_int_equal(b->unit[c->bottleneck ? 1 : 0].shape.stride, c->stride);
        assert_int_equal(b->unit[0].shape.KH, c->bottleneck ? 1 : 3);
        assert_int_equal(graft_resblock_last(b)->shape.OC, c->planes * (c->bottleneck ? 4 : 1));
        const graft_param_range stages[3] = {s.stem, b->range, s.fc};
        assert_true(graft_resblock_trainable(b, &s.p));
        assert_int_equal(graft_nn_lowest_trainable(&s.p, stages, 3), 1);
        setup_free(&s);
    }
    /* a frozen block: only fc (then one BN bias of the block) trains */
    block_case frozen = cases[0];
    frozen.frozen = "layer2.0.*";
    setup s;
    setup_make(&s, &frozen, 1);
    const graft_param_range stages[3] = {s.stem, s.blk.range, s.fc};
    assert_false(graft_resblock_trainable(&s.blk, &s.p));
    assert_int_equal(graft_nn_lowest_trainable(&s.p, stages, 3), 3);
    assert_int_equal(graft_params_unfreeze(&s.p, "fc.*", NULL, NULL), GRAFT_OK);
    assert_int_equal(graft_nn_lowest_trainable(&s.p, stages, 3), 2);
    assert_int_equal(graft_params_unfreeze(&s.p, "layer2.0.downsample.1.bias", NULL, NULL),
                     GRAFT_OK);
    assert_true(graft_resblock_trainable(&s.blk, &s.p));
    assert_int_equal(graft_nn_lowest_trainable(&s.p, stages, 3), 1);
    setup_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_against_finite_differences),
        cmocka_unit_test(test_forward_only_shared_buffers),
        cmocka_unit_test(test_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
