#include "conv_bn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/core/check.h"

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

graft_status graft_conv_bn_add(graft_conv_bn *u, graft_params *p, const char *conv_name,
                               const char *bn_name, int C, int H, int W, int OC, int K, int stride,
                               int pad) {
    memset(u, 0, sizeof *u);
    u->shape = graft_conv2d_shape_make(1, C, H, W, OC, K, K, stride, pad);
    char name[GRAFT_NAME_MAX];
    const int64_t wshape[4] = {OC, C, K, K}, cshape[1] = {OC};
    snprintf(name, sizeof name, "%s.weight", conv_name);
    u->conv = graft_params_add(p, name, GRAFT_KIND_PARAM, 4, wshape);
    snprintf(name, sizeof name, "%s.weight", bn_name);
    u->bn_weight = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, cshape);
    snprintf(name, sizeof name, "%s.bias", bn_name);
    u->bn_bias = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, cshape);
    snprintf(name, sizeof name, "%s.running_mean", bn_name);
    u->running_mean = graft_params_add(p, name, GRAFT_KIND_BUFFER, 1, cshape);
    snprintf(name, sizeof name, "%s.running_var", bn_name);
    u->running_var = graft_params_add(p, name, GRAFT_KIND_BUFFER, 1, cshape);
    snprintf(name, sizeof name, "%s.num_batches_tracked", bn_name);
    u->num_batches = graft_params_add(p, name, GRAFT_KIND_BUFFER, 0, cshape); /* a scalar */
    if (u->conv < 0 || u->bn_weight < 0 || u->bn_bias < 0 || u->running_mean < 0 ||
        u->running_var < 0 || u->num_batches < 0)
        return GRAFT_ERR_INVALID_ARG;
    p->items[u->num_batches].zero_when_absent = 1;
    return GRAFT_OK;
}

void graft_conv_bn_init(const graft_conv_bn *u, const graft_params *p, graft_rng *rng) {
    const graft_conv2d_shape *s = &u->shape;
    const size_t n = (size_t)s->OC * s->C * s->KH * s->KW;
    const float std = sqrtf(2.0f / (float)(s->OC * s->KH * s->KW));
    float *w = graft_params_value(p, u->conv);
    for (size_t i = 0; i < n; i++)
        w[i] = std * graft_rng_normal(rng);
    float *gamma = graft_params_value(p, u->bn_weight), *beta = graft_params_value(p, u->bn_bias);
    float *mean = graft_params_value(p, u->running_mean);
    float *var = graft_params_value(p, u->running_var);
    for (int c = 0; c < s->OC; c++) {
        gamma[c] = 1.0f;
        beta[c] = 0.0f;
        mean[c] = 0.0f;
        var[c] = 1.0f;
    }
    *graft_params_value(p, u->num_batches) = 0.0f;
}

int graft_conv_bn_trainable(const graft_conv_bn *u, const graft_params *p) {
    return p->items[u->conv].trainable || !graft_conv_bn_bn_frozen(u, p);
}

int graft_conv_bn_bn_frozen(const graft_conv_bn *u, const graft_params *p) {
    return !p->items[u->bn_weight].trainable && !p->items[u->bn_bias].trainable;
}

size_t graft_conv_bn_out_floats(const graft_conv_bn *u, int N) {
    return (size_t)N * u->shape.OC * u->shape.OH * u->shape.OW;
}

size_t graft_conv_bn_scratch_floats(const graft_conv_bn *u, int N) {
    graft_conv2d_shape s = u->shape;
    s.N = N;
    return graft_conv2d_scratch_floats(&s);
}

void graft_conv_bn_plan(graft_conv_bn *u, graft_arena *a, int max_batch, int keep_pre) {
    const size_t OC = (size_t)u->shape.OC;
    u->pre = keep_pre ? graft_arena_floats(a, graft_conv_bn_out_floats(u, max_batch)) : NULL;
    u->save_mean = graft_arena_floats(a, OC);
    u->save_invstd = graft_arena_floats(a, OC);
    u->scale = graft_arena_floats(a, OC);
    u->shift = graft_arena_floats(a, OC);
}

void graft_conv_bn_forward(graft_conv_bn *u, const graft_params *p, float *out, const float *inp,
                           const float *residual, int relu, int N, int batch_stats,
                           float *scratch) {
    const int OC = u->shape.OC;
    const size_t M = (size_t)N * u->shape.OH * u->shape.OW;
    const float *weight = graft_params_value(p, u->conv);
    const float *gamma = graft_params_value(p, u->bn_weight);
    const float *beta = graft_params_value(p, u->bn_bias);
    float *running_mean = graft_params_value(p, u->running_mean);
    float *running_var = graft_params_value(p, u->running_var);
    graft_conv2d_shape s = u->shape;
    s.N = N;
    u->batch_stats = batch_stats;
    if (u->pre || batch_stats) {
        float *conv_out = u->pre ? u->pre : out;
        graft_conv2d_forward(conv_out, inp, weight, NULL, scratch, &s);
        graft_batchnorm2d_forward(out, u->save_mean, u->save_invstd, running_mean, running_var,
                                  conv_out, gamma, beta, residual, relu, OC, M, BN_MOMENTUM, BN_EPS,
                                  batch_stats);
        if (batch_stats) *graft_params_value(p, u->num_batches) += 1.0f;
        return;
    }
    for (int c = 0; c < OC; c++) {
        const double invstd = 1.0 / sqrt((double)running_var[c] + BN_EPS);
        u->scale[c] = (float)(gamma[c] * invstd);
        u->shift[c] = (float)(beta[c] - running_mean[c] * gamma[c] * invstd);
    }
    graft_conv2d_forward(out, inp, weight, NULL, scratch, &s);
    graft_batchnorm2d_apply(out, out, u->scale, u->shift, residual, relu, OC, M);
}

void graft_conv_bn_backward(const graft_conv_bn *u, const graft_params *p, float *dinp,
                            int accumulate, const float *dy, float *dpre, const float *inp, int N,
                            float *scratch) {
    const int OC = u->shape.OC;
    const size_t M = (size_t)N * u->shape.OH * u->shape.OW;
    float *dweight = graft_params_grad(p, u->conv);
    float *dgamma = graft_params_grad(p, u->bn_weight);
    float *dbeta = graft_params_grad(p, u->bn_bias);
    const int need_dpre = dweight != NULL || dinp != NULL;
    if (u->pre) {
        if (need_dpre) memset(dpre, 0, (size_t)OC * M * sizeof(float));
        graft_batchnorm2d_backward(need_dpre ? dpre : NULL, dgamma, dbeta, dy, u->pre,
                                   graft_params_value(p, u->bn_weight), u->save_mean,
                                   u->save_invstd, OC, M, u->batch_stats);
    } else {
        /* Folded running statistics: a frozen BN is a per-channel scale. */
        GRAFT_ASSERT(!u->batch_stats && !dgamma && !dbeta);
        if (need_dpre) {
            static const float zero = 0.0f; /* dpre = dy * scale, channel by channel */
            for (int c = 0; c < OC; c++)
                graft_batchnorm2d_apply(dpre + (size_t)c * M, dy + (size_t)c * M, &u->scale[c],
                                        &zero, NULL, 0, 1, M);
        }
    }
    /* reverse registration order = increasing gradient offsets */
    graft_params_grad_ready(p, u->bn_bias);
    graft_params_grad_ready(p, u->bn_weight);
    if (!need_dpre) return;
    if (dinp && !accumulate)
        memset(dinp, 0, (size_t)N * u->shape.C * u->shape.H * u->shape.W * sizeof(float));
    graft_conv2d_shape s = u->shape;
    s.N = N;
    graft_conv2d_backward(dinp, dweight, NULL, dpre, inp, graft_params_value(p, u->conv), scratch,
                          &s);
    graft_params_grad_ready(p, u->conv);
}
