#include "resblock.h"

#include <stdio.h>
#include <string.h>

#include "runtime/core/check.h"

/* Both kinds: units of kernel K[k] and stride unit_stride[k], then the downsample. */
static graft_status resblock_add(graft_resblock *blk, graft_params *p, const char *prefix,
                                 int bottleneck, int inplanes, int H, int W, int planes, int stride,
                                 int frozen_bn_eval) {
    memset(blk, 0, sizeof *blk);
    blk->frozen_bn_eval = frozen_bn_eval;
    blk->range = graft_param_range_begin(p);
    char conv[GRAFT_NAME_MAX], bn[GRAFT_NAME_MAX];
    const int K[3] = {bottleneck ? 1 : 3, 3, 1};
    const int unit_stride[3] = {bottleneck ? 1 : stride, bottleneck ? stride : 1, 1};
    const int expansion = bottleneck ? 4 : 1;
    const int n_units = bottleneck ? 3 : 2; /* at most the 3 entries of K */
    blk->n_units = n_units;
    int C = inplanes, h = H, w = W;
    for (int k = 0; k < n_units; k++) {
        int OC = k == n_units - 1 ? planes * expansion : planes;
        snprintf(conv, sizeof conv, "%s.conv%d", prefix, k + 1);
        snprintf(bn, sizeof bn, "%s.bn%d", prefix, k + 1);
        GRAFT_TRY(graft_conv_bn_add(&blk->unit[k], p, conv, bn, C, h, w, OC, K[k], unit_stride[k],
                                    K[k] / 2));
        C = OC;
        h = blk->unit[k].shape.OH;
        w = blk->unit[k].shape.OW;
    }
    blk->has_down = stride != 1 || inplanes != planes * expansion;
    if (blk->has_down) {
        snprintf(conv, sizeof conv, "%s.downsample.0", prefix);
        snprintf(bn, sizeof bn, "%s.downsample.1", prefix);
        GRAFT_TRY(graft_conv_bn_add(&blk->down, p, conv, bn, inplanes, H, W, planes * expansion, 1,
                                    stride, 0));
    }
    graft_param_range_end(&blk->range, p);
    return GRAFT_OK;
}

graft_status graft_resblock_basic_add(graft_resblock *blk, graft_params *p, const char *prefix,
                                      int C, int H, int W, int planes, int stride,
                                      int frozen_bn_eval) {
    return resblock_add(blk, p, prefix, 0, C, H, W, planes, stride, frozen_bn_eval);
}

graft_status graft_resblock_bottleneck_add(graft_resblock *blk, graft_params *p, const char *prefix,
                                           int C, int H, int W, int planes, int stride,
                                           int frozen_bn_eval) {
    return resblock_add(blk, p, prefix, 1, C, H, W, planes, stride, frozen_bn_eval);
}

void graft_resblock_init(const graft_resblock *blk, const graft_params *p, graft_rng *rng) {
    for (int k = 0; k < blk->n_units; k++)
        graft_conv_bn_init(&blk->unit[k], p, rng);
    if (blk->has_down) graft_conv_bn_init(&blk->down, p, rng);
}

int graft_resblock_trainable(const graft_resblock *blk, const graft_params *p) {
    return graft_param_range_trainable(p, blk->range);
}

const graft_conv_bn *graft_resblock_last(const graft_resblock *blk) {
    return &blk->unit[blk->n_units - 1];
}

/* A frozen BN in eval mode uses its running stats, so its backward needs no conv output. */
static int frozen_eval(const graft_conv_bn *u, const graft_params *p, int frozen_bn_eval) {
    return frozen_bn_eval && graft_conv_bn_bn_frozen(u, p);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* In a kept stage a unit's output goes to gradient-sized buffers in the backward, else
 * it is a candidate for the forward-only buffers. */
void graft_resblock_unit_plan(graft_conv_bn *u, const graft_params *p, graft_arena *a,
                              int max_batch, int keep, int frozen_bn_eval,
                              graft_resblock_sizes *need) {
    graft_conv_bn_plan(u, a, max_batch, keep && !frozen_eval(u, p, frozen_bn_eval));
    size_t n = graft_conv_bn_out_floats(u, max_batch);
    if (keep)
        need->grad = max_size(need->grad, n);
    else
        need->ping = max_size(need->ping, n);
    need->scratch = max_size(need->scratch, graft_conv_bn_scratch_floats(u, max_batch));
}

void graft_resblock_plan(graft_resblock *blk, const graft_params *p, graft_arena *a, int max_batch,
                         int keep, graft_resblock_sizes *need) {
    for (int k = 0; k < blk->n_units; k++)
        graft_resblock_unit_plan(&blk->unit[k], p, a, max_batch, keep, blk->frozen_bn_eval, need);
    if (blk->has_down)
        graft_resblock_unit_plan(&blk->down, p, a, max_batch, keep, blk->frozen_bn_eval, need);
    blk->act[0] = blk->act[1] = blk->down_out = blk->out = NULL;
    if (!keep) return;
    for (int k = 0; k < blk->n_units - 1; k++)
        blk->act[k] = graft_arena_floats(a, graft_conv_bn_out_floats(&blk->unit[k], max_batch));
    if (blk->has_down)
        blk->down_out = graft_arena_floats(a, graft_conv_bn_out_floats(&blk->down, max_batch));
    blk->out = graft_arena_floats(a, graft_conv_bn_out_floats(graft_resblock_last(blk), max_batch));
}

/* ---- forward ------------------------------------------------------------------------ */

void graft_resblock_unit_forward(graft_conv_bn *u, const graft_params *p, float *out,
                                 const float *inp, const float *residual, int relu, int N,
                                 int training, int frozen_bn_eval, float *scratch) {
    graft_conv_bn_forward(u, p, out, inp, residual, relu, N,
                          training && !frozen_eval(u, p, frozen_bn_eval), scratch);
}

static void unit_forward(graft_resblock *blk, graft_conv_bn *u, const graft_params *p, float *out,
                         const float *inp, const float *residual, int relu, int N, int training,
                         float *scratch) {
    graft_resblock_unit_forward(u, p, out, inp, residual, relu, N, training, blk->frozen_bn_eval,
                                scratch);
}

/* out = relu(units(in) + identity or downsample(in)). The buffers may alias as the
 * forward-only plan needs: unit 0 and the downsample read `in` before the last unit
 * writes `out`, and the downsample runs after unit 1 (bottleneck) so ds may be t0. */
static void block_forward(graft_resblock *blk, const graft_params *p, const float *in, float *t0,
                          float *t1, float *ds, float *out, int N, int training, float *scratch) {
    const int last = blk->n_units - 1;
    unit_forward(blk, &blk->unit[0], p, t0, in, NULL, 1, N, training, scratch);
    if (last == 2) unit_forward(blk, &blk->unit[1], p, t1, t0, NULL, 1, N, training, scratch);
    const float *residual = in;
    if (blk->has_down) {
        unit_forward(blk, &blk->down, p, ds, in, NULL, 0, N, training, scratch);
        residual = ds;
    }
    unit_forward(blk, &blk->unit[last], p, out, last == 2 ? t1 : t0, residual, 1, N, training,
                 scratch);
}

const float *graft_resblock_forward(graft_resblock *blk, const graft_params *p, const float *in,
                                    float *const ping[3], int *at, int N, int training,
                                    float *scratch) {
    blk->in = in;
    if (blk->out) {
        block_forward(blk, p, in, blk->act[0], blk->act[1], blk->down_out, blk->out, N, training,
                      scratch);
        return blk->out;
    }
    GRAFT_ASSERT(in == ping[*at]);
    /* Three buffers: X (input), A, C. Basic: t0 = A, ds = C, out = C (identity) or X
     * (X is free once unit 0 and the downsample have read it). Bottleneck: t0 = A,
     * t1 = C, then A is free for ds (downsample) or out (identity). */
    const int X = *at, A = (X + 1) % 3, C = (X + 2) % 3;
    int out;
    if (blk->n_units == 2)
        out = blk->has_down ? X : C;
    else
        out = blk->has_down ? X : A;
    float *ds = blk->n_units == 2 ? ping[C] : ping[A];
    block_forward(blk, p, ping[X], ping[A], ping[C], ds, ping[out], N, training, scratch);
    *at = out;
    return ping[out];
}

/* ---- backward ----------------------------------------------------------------------- */

/* In blocks loaded before they are stored, which the compiler vectorises (no loop of
 * unknown length at -O2). */
void graft_resblock_relu_mask(float *g, const float *out, size_t n) {
    enum { LANES = 8 };
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float v[LANES];
        for (int j = 0; j < LANES; j++)
            v[j] = g[i + j];
        for (int j = 0; j < LANES; j++)
            v[j] = out[i + j] > 0.0f ? v[j] : 0.0f;
        for (int j = 0; j < LANES; j++)
            g[i + j] = v[j];
    }
    for (; i < n; i++)
        g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

float *graft_resblock_backward(const graft_resblock *blk, const graft_params *p, float *g,
                               float *spare, int below, float *dpre, float *inner, int N,
                               float *scratch) {
    const int last = blk->n_units - 1;
    GRAFT_ASSERT(blk->out);
    graft_resblock_relu_mask(g, blk->out, graft_conv_bn_out_floats(graft_resblock_last(blk), N));
    float *dx = below ? (blk->has_down ? spare : g) : NULL;
    if (blk->has_down && (below || graft_conv_bn_trainable(&blk->down, p)))
        graft_conv_bn_backward(&blk->down, p, dx, 0, g, dpre, blk->in, N, scratch);
    /* need_din[k]: something under unit k's input trains */
    int need_din[3], need = below;
    for (int k = 0; k <= last; k++) {
        need_din[k] = need;
        need = need || graft_conv_bn_trainable(&blk->unit[k], p);
    }
    for (int k = last; k >= 0; k--) {
        if (!need_din[k] && !graft_conv_bn_trainable(&blk->unit[k], p)) break;
        const float *dy = k == last ? g : inner;
        float *dinp = need_din[k] ? (k > 0 ? inner : dx) : NULL;
        /* unit 0 adds onto the identity's or the downsample's input gradient */
        graft_conv_bn_backward(&blk->unit[k], p, dinp, k == 0, dy, dpre,
                               k > 0 ? blk->act[k - 1] : blk->in, N, scratch);
        if (k > 0 && dinp)
            graft_resblock_relu_mask(inner, blk->act[k - 1],
                                     graft_conv_bn_out_floats(&blk->unit[k - 1], N));
    }
    return dx;
}
