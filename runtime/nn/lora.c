#include "lora.h"

#include <cblas.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"

static int add_matrix(graft_params *p, const char *layer, const char *which, int64_t rows,
                      int64_t cols, int kind, const graft_linear_layer *l) {
    char name[GRAFT_NAME_MAX + 32]; /* a longer name is refused by graft_params_add */
    snprintf(name, sizeof name, "%s.%s.weight", layer, which);
    const int64_t shape[2] = {rows, cols};
    int i = graft_params_add(p, name, GRAFT_KIND_PARAM, 2, shape);
    if (i >= 0) {
        p->items[i].adapter = kind;
        p->items[i].fan_in_fan_out = l->layout == GRAFT_W_IN_OUT;
        p->items[i].adapter_scale = l->lora.scale;
    }
    return i;
}

graft_status graft_lora_attach(graft_linear_layer *l, graft_params *p, const char *layer,
                               graft_lora_spec *spec) {
    int hit = 0;
    for (int g = 0; spec && g < spec->n_targets; g++)
        if (fnmatch(spec->targets[g], layer, 0) == 0) {
            spec->matched[g]++;
            hit = 1;
        }
    if (!hit) return GRAFT_OK;
    l->lora.rank = spec->rank;
    l->lora.scale = spec->alpha / (float)spec->rank;
    l->lora.dropout = spec->dropout;
    l->lora.a = add_matrix(p, layer, "lora_A", spec->rank, l->in, GRAFT_ADAPTER_A, l);
    l->lora.b = add_matrix(p, layer, "lora_B", l->out, spec->rank, GRAFT_ADAPTER_B, l);
    return l->lora.a < 0 || l->lora.b < 0 ? GRAFT_ERR_INVALID_ARG : GRAFT_OK;
}

void graft_lora_init_all(const graft_params *p, uint64_t seed) {
    graft_rng rng;
    graft_rng_seed(&rng, graft_rng_mix(seed, 0x10EAu));
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        float *v = graft_params_value(p, i);
        if (t->adapter == GRAFT_ADAPTER_B) memset(v, 0, t->numel * sizeof(float));
        if (t->adapter != GRAFT_ADAPTER_A) continue;
        const float bound = 1.0f / sqrtf((float)t->shape[1]); /* fan_in = in */
        for (size_t k = 0; k < t->numel; k++)
            v[k] = bound * (2.0f * graft_rng_uniform(&rng) - 1.0f);
    }
}

/* Scratch layout over N rows: a forward-only u [N, rank], du [N, rank], then with
 * dropout: dropout(x) [N, in] and a forward-only mask (the backward: dropout(x)'s
 * gradient) [N, in]. */
size_t graft_lora_scratch_floats(size_t N, int in, int rank, float dropout) {
    return N * (2 * (size_t)rank + (dropout > 0 ? 2 * (size_t)in : 0));
}

void graft_linear_lora_forward(const graft_linear_layer *l, const graft_params *p, float *out,
                               const float *x, int N, const graft_lora_acts *a, float *scratch,
                               graft_rng *rng) {
    graft_linear_layer_forward(l, p, out, x, N);
    if (l->lora.a < 0) return;
    const size_t nx = (size_t)N * l->in, nu = (size_t)N * l->lora.rank;
    const float *xd = x;
    float *u = a && a->u ? a->u : scratch;
    if (rng && l->lora.dropout > 0) {
        float *dropped = scratch + 2 * nu, *mask = a && a->mask ? a->mask : dropped + nx;
        graft_dropout_forward(dropped, mask, x, nx, l->lora.dropout, rng);
        xd = dropped;
    }
    graft_lora_forward(out, u, xd, graft_params_value(p, l->lora.a),
                       graft_params_value(p, l->lora.b), N, l->in, l->out, l->lora.rank,
                       l->lora.scale);
}

void graft_linear_lora_backward(const graft_linear_layer *l, const graft_params *p, float *dx,
                                const float *dout, const float *x, int N, const graft_lora_acts *a,
                                float *scratch, int dropped) {
    dropped = dropped && l->lora.dropout > 0;
    if (l->lora.a >= 0) {
        GRAFT_ASSERT(a && a->u && (!dropped || a->mask));
        const size_t nx = (size_t)N * l->in, nu = (size_t)N * l->lora.rank;
        const float *xd = x;
        float *dxd = dx, *du = scratch + nu;
        if (dropped) { /* dropout(x) again from the mask; its gradient goes through it */
            xd = memset(scratch + 2 * nu, 0, nx * sizeof(float));
            graft_dropout_backward(scratch + 2 * nu, x, a->mask, nx);
            if (dx) dxd = memset(scratch + 2 * nu + nx, 0, nx * sizeof(float));
        }
        graft_lora_backward(dxd, graft_params_grad(p, l->lora.a), graft_params_grad(p, l->lora.b),
                            du, dout, xd, a->u, graft_params_value(p, l->lora.a),
                            graft_params_value(p, l->lora.b), N, l->in, l->out, l->lora.rank,
                            l->lora.scale);
        if (dx && dropped) graft_dropout_backward(dx, dxd, a->mask, nx);
        /* reverse registration order = increasing gradient offsets */
        graft_params_grad_ready(p, l->lora.b);
        graft_params_grad_ready(p, l->lora.a);
    }
    graft_linear_layer_backward(l, p, dx, dout, x, N);
}

void graft_lora_merge_weight(float *w, const float *a, const float *b, int out, int in, int r,
                             float scale, int fan_in_fan_out) {
    /* W [out, in] += scale · B·A; Conv1D's W [in, out] += scale · (B·A)^T = Aᵀ·Bᵀ */
    if (fan_in_fan_out)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, in, out, r, scale, a, in, b, r, 1.0f, w,
                    out);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, scale, b, r, a, in, 1.0f,
                    w, in);
}

void graft_lora_merge(const graft_params *p, float *values) {
    for (int ia = 0; ia < p->count; ia++) {
        const graft_param *A = &p->items[ia];
        if (A->adapter != GRAFT_ADAPTER_A) continue;
        char layer[GRAFT_NAME_MAX], name[GRAFT_NAME_MAX + 16];
        const size_t len = strlen(A->name) - strlen(".lora_A.weight");
        snprintf(layer, sizeof layer, "%.*s", (int)len, A->name);
        snprintf(name, sizeof name, "%s.lora_B.weight", layer);
        const int ib = graft_params_find(p, name);
        snprintf(name, sizeof name, "%s.weight", layer);
        const int iw = graft_params_find(p, name);
        GRAFT_ASSERT(ib >= 0 && iw >= 0);
        const graft_param *B = &p->items[ib];
        const int r = (int)A->shape[0], in = (int)A->shape[1], out = (int)B->shape[0];
        graft_lora_merge_weight(values + p->items[iw].offset, values + A->offset,
                                values + B->offset, out, in, r, A->adapter_scale,
                                A->fan_in_fan_out);
    }
}
