#include "layers.h"

#include <math.h>
#include <stdio.h>

#include "runtime/core/log.h"

graft_status graft_linear_layer_add(graft_linear_layer *l, graft_params *p, const char *prefix,
                                    int in, int out, int has_bias, graft_wlayout layout) {
    char weight[GRAFT_NAME_MAX], bias[GRAFT_NAME_MAX];
    snprintf(weight, sizeof weight, "%s.weight", prefix);
    snprintf(bias, sizeof bias, "%s.bias", prefix);
    return graft_linear_layer_add_named(l, p, weight, has_bias ? bias : NULL, in, out, layout);
}

graft_status graft_linear_layer_add_named(graft_linear_layer *l, graft_params *p,
                                          const char *weight_name, const char *bias_name, int in,
                                          int out, graft_wlayout layout) {
    int64_t wshape[2] = {layout == GRAFT_W_OUT_IN ? out : in, layout == GRAFT_W_OUT_IN ? in : out};
    int64_t bshape[1] = {out};
    l->in = in;
    l->out = out;
    l->layout = layout;
    l->bias = -1;
    l->lora.a = l->lora.b = -1;
    l->weight = graft_params_add(p, weight_name, GRAFT_KIND_PARAM, 2, wshape);
    if (l->weight < 0) return GRAFT_ERR_INVALID_ARG;
    if (bias_name) {
        l->bias = graft_params_add(p, bias_name, GRAFT_KIND_PARAM, 1, bshape);
        if (l->bias < 0) return GRAFT_ERR_INVALID_ARG;
    }
    return GRAFT_OK;
}

void graft_linear_layer_init(const graft_linear_layer *l, const graft_params *p, graft_rng *rng) {
    float bound = 1.0f / sqrtf((float)l->in);
    float *w = graft_params_value(p, l->weight);
    for (size_t i = 0; i < (size_t)l->in * l->out; i++)
        w[i] = bound * (2.0f * graft_rng_uniform(rng) - 1.0f);
    if (l->bias >= 0) {
        float *b = graft_params_value(p, l->bias);
        for (int i = 0; i < l->out; i++)
            b[i] = bound * (2.0f * graft_rng_uniform(rng) - 1.0f);
    }
}

void graft_linear_layer_forward(const graft_linear_layer *l, const graft_params *p, float *out,
                                const float *inp, int B) {
    graft_linear_forward(out, inp, graft_params_value(p, l->weight),
                         l->bias >= 0 ? graft_params_value(p, l->bias) : NULL, B, l->in, l->out,
                         l->layout);
}

void graft_linear_layer_backward(const graft_linear_layer *l, const graft_params *p, float *din,
                                 const float *dout, const float *inp, int B) {
    graft_linear_backward(din, graft_params_grad(p, l->weight),
                          l->bias >= 0 ? graft_params_grad(p, l->bias) : NULL, dout, inp,
                          graft_params_value(p, l->weight), B, l->in, l->out, l->layout);
    /* reverse registration order = increasing gradient offsets */
    if (l->bias >= 0) graft_params_grad_ready(p, l->bias);
    graft_params_grad_ready(p, l->weight);
}

int graft_linear_layer_trainable(const graft_linear_layer *l, const graft_params *p) {
    return p->items[l->weight].trainable || (l->bias >= 0 && p->items[l->bias].trainable) ||
           (l->lora.a >= 0 && (p->items[l->lora.a].trainable || p->items[l->lora.b].trainable));
}

graft_status graft_layernorm_layer_add(graft_layernorm_layer *l, graft_params *p,
                                       const char *prefix, int C, float eps) {
    char name[GRAFT_NAME_MAX + 8]; /* a longer name is refused by graft_params_add */
    const int64_t shape[1] = {C};
    l->C = C;
    l->eps = eps;
    snprintf(name, sizeof name, "%s.weight", prefix);
    l->weight = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, shape);
    snprintf(name, sizeof name, "%s.bias", prefix);
    l->bias = graft_params_add(p, name, GRAFT_KIND_PARAM, 1, shape);
    return l->weight < 0 || l->bias < 0 ? GRAFT_ERR_INVALID_ARG : GRAFT_OK;
}

void graft_layernorm_layer_init(const graft_layernorm_layer *l, const graft_params *p) {
    float *w = graft_params_value(p, l->weight), *b = graft_params_value(p, l->bias);
    for (int c = 0; c < l->C; c++) {
        w[c] = 1.0f;
        b[c] = 0.0f;
    }
}

void graft_layernorm_layer_forward(const graft_layernorm_layer *l, const graft_params *p,
                                   float *out, float *mean, float *rstd, const float *inp,
                                   int rows) {
    graft_layernorm_forward(out, mean, rstd, inp, graft_params_value(p, l->weight),
                            graft_params_value(p, l->bias), rows, l->C, l->eps);
}

void graft_layernorm_layer_backward(const graft_layernorm_layer *l, const graft_params *p,
                                    float *dinp, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, int rows) {
    graft_layernorm_backward(dinp, graft_params_grad(p, l->weight), graft_params_grad(p, l->bias),
                             dout, inp, graft_params_value(p, l->weight), mean, rstd, rows, l->C);
    graft_params_grad_ready(p, l->bias);
    graft_params_grad_ready(p, l->weight);
}
