#include "optim.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/core/log.h"

#define OPTIM_ALIGN 64

void graft_optim_config_default(graft_optim_config *cfg, graft_optim_kind kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->momentum = 0.0;
    cfg->dampening = 0.0;
    cfg->nesterov = 0;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = kind == GRAFT_OPTIM_ADAMW ? 0.01 : 0.0;
    cfg->n_groups = 0;
}

int graft_optim_config_add_group(graft_optim_config *cfg, double lr_scale, double weight_decay) {
    if (cfg->n_groups < 0 || cfg->n_groups >= GRAFT_OPTIM_MAX_GROUPS) {
        GRAFT_ERROR("too many parameter groups (at most %d)", GRAFT_OPTIM_MAX_GROUPS);
        return -1;
    }
    if (cfg->n_groups == 0) {
        cfg->groups[0].lr_scale = 1.0;
        cfg->groups[0].weight_decay = cfg->weight_decay;
        cfg->n_groups = 1;
    }
    int g = cfg->n_groups++;
    cfg->groups[g].lr_scale = lr_scale;
    cfg->groups[g].weight_decay = weight_decay;
    return g;
}

/* True for a finite value >= 0. */
static int finite_nonneg(double x) { return isfinite(x) && x >= 0.0; }

graft_status graft_optim_config_check(const graft_optim_config *cfg) {
    if (cfg->kind != GRAFT_OPTIM_SGD && cfg->kind != GRAFT_OPTIM_ADAMW) {
        GRAFT_ERROR("unknown optimizer kind %d", (int)cfg->kind);
        return GRAFT_ERR_CONFIG;
    }
    if (cfg->n_groups < 0 || cfg->n_groups > GRAFT_OPTIM_MAX_GROUPS) {
        GRAFT_ERROR("n_groups = %d, expected 0..%d", cfg->n_groups, GRAFT_OPTIM_MAX_GROUPS);
        return GRAFT_ERR_CONFIG;
    }
    if (!finite_nonneg(cfg->weight_decay)) {
        GRAFT_ERROR("weight_decay = %g, expected a finite value >= 0", cfg->weight_decay);
        return GRAFT_ERR_CONFIG;
    }
    for (int g = 0; g < cfg->n_groups; g++) {
        if (!finite_nonneg(cfg->groups[g].lr_scale)) {
            GRAFT_ERROR("group %d: lr_scale = %g, expected a finite value >= 0", g,
                        cfg->groups[g].lr_scale);
            return GRAFT_ERR_CONFIG;
        }
        if (!finite_nonneg(cfg->groups[g].weight_decay)) {
            GRAFT_ERROR("group %d: weight_decay = %g, expected a finite value >= 0", g,
                        cfg->groups[g].weight_decay);
            return GRAFT_ERR_CONFIG;
        }
    }
    if (cfg->kind == GRAFT_OPTIM_SGD) {
        if (!finite_nonneg(cfg->momentum)) {
            GRAFT_ERROR("sgd momentum = %g, expected a finite value >= 0", cfg->momentum);
            return GRAFT_ERR_CONFIG;
        }
        if (!finite_nonneg(cfg->dampening)) {
            GRAFT_ERROR("sgd dampening = %g, expected a finite value >= 0", cfg->dampening);
            return GRAFT_ERR_CONFIG;
        }
        if (cfg->nesterov && (cfg->momentum <= 0.0 || cfg->dampening != 0.0)) {
            GRAFT_ERROR("sgd nesterov needs momentum > 0 and dampening = 0 (got %g, %g)",
                        cfg->momentum, cfg->dampening);
            return GRAFT_ERR_CONFIG;
        }
    } else {
        if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0)) {
            GRAFT_ERROR("adamw beta1 = %g, expected 0 <= beta1 < 1", cfg->beta1);
            return GRAFT_ERR_CONFIG;
        }
        if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0)) {
            GRAFT_ERROR("adamw beta2 = %g, expected 0 <= beta2 < 1", cfg->beta2);
            return GRAFT_ERR_CONFIG;
        }
        if (!finite_nonneg(cfg->eps)) {
            GRAFT_ERROR("adamw eps = %g, expected a finite value >= 0", cfg->eps);
            return GRAFT_ERR_CONFIG;
        }
    }
    return GRAFT_OK;
}

/* Zeroed, aligned floats; NULL on failure. */
static float *alloc_state(size_t n) {
    void *ptr = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + OPTIM_ALIGN - 1) / OPTIM_ALIGN * OPTIM_ALIGN;
    if (posix_memalign(&ptr, OPTIM_ALIGN, bytes) != 0) return NULL;
    memset(ptr, 0, bytes);
    return ptr;
}

/* Every trainable parameter must name an existing group and own a slice inside
 * the gradient buffer the optimizer was sized for. */
static graft_status check_table(const graft_optim *o, const graft_params *p) {
    if (!p->finalized) {
        GRAFT_ERROR("parameter table is not finalized");
        return GRAFT_ERR_INVALID_ARG;
    }
    if (p->n_grads != o->n) {
        GRAFT_ERROR("gradient buffer has %zu floats but the optimizer state was made for %zu "
                    "(table re-finalized? re-init the optimizer)",
                    p->n_grads, o->n);
        return GRAFT_ERR_MISMATCH;
    }
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (!t->trainable) continue;
        if (t->group < 0 || t->group >= o->cfg.n_groups) {
            GRAFT_ERROR("%s: parameter group %d does not exist (%d groups)", t->name, t->group,
                        o->cfg.n_groups);
            return GRAFT_ERR_CONFIG;
        }
        if (t->grad_offset > p->n_grads || t->numel > p->n_grads - t->grad_offset) {
            GRAFT_ERROR("%s: gradient slice [%zu, +%zu) outside %zu floats", t->name,
                        t->grad_offset, t->numel, p->n_grads);
            return GRAFT_ERR_INTERNAL;
        }
    }
    return GRAFT_OK;
}

graft_status graft_optim_init(graft_optim *o, const graft_optim_config *cfg,
                              const graft_params *p) {
    memset(o, 0, sizeof *o);
    graft_status s = graft_optim_config_check(cfg);
    if (s != GRAFT_OK) return s;
    o->cfg = *cfg;
    if (o->cfg.n_groups == 0) {
        o->cfg.groups[0].lr_scale = 1.0;
        o->cfg.groups[0].weight_decay = cfg->weight_decay;
        o->cfg.n_groups = 1;
    }
    o->n = p->n_grads;
    s = check_table(o, p);
    if (s != GRAFT_OK) {
        memset(o, 0, sizeof *o);
        return s;
    }
    if (cfg->kind == GRAFT_OPTIM_ADAMW)
        o->n_bufs = 2;
    else
        o->n_bufs = cfg->momentum != 0.0 ? 1 : 0;
    size_t total = (size_t)o->n_bufs * o->n;
    if (o->n_bufs && o->n > SIZE_MAX / sizeof(float) / (size_t)o->n_bufs) {
        GRAFT_ERROR("optimizer state of %d x %zu floats is too large", o->n_bufs, o->n);
        memset(o, 0, sizeof *o);
        return GRAFT_ERR_NOMEM;
    }
    o->n_params = p->count;
    o->start = calloc((size_t)p->count + 1, sizeof *o->start);
    if (total > 0) o->state = alloc_state(total);
    if (!o->start || (total > 0 && !o->state)) {
        GRAFT_ERROR("cannot allocate %zu floats of optimizer state", total);
        graft_optim_free(o);
        return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

graft_status graft_optim_relayout(graft_optim *o, const graft_params *p, const size_t *old_offsets) {
    if (p->count != o->n_params) return GRAFT_ERR_INVALID_ARG;
    size_t total = (size_t)o->n_bufs * p->n_grads;
    float *state = total > 0 ? alloc_state(total) : NULL;
    if (total > 0 && !state) {
        GRAFT_ERROR("cannot allocate %zu floats of optimizer state", total);
        return GRAFT_ERR_NOMEM;
    }
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (!t->trainable) continue;
        if (old_offsets[i] == SIZE_MAX) {
            o->start[i] = o->step;
            continue;
        }
        /* no state (total 0) means nothing to copy: memcpy must not see a NULL pointer */
        for (int k = 0; state && k < o->n_bufs; k++)
            memcpy(state + (size_t)k * p->n_grads + t->grad_offset,
                   o->state + (size_t)k * o->n + old_offsets[i], t->numel * sizeof(float));
    }
    free(o->state);
    o->state = state;
    o->n = p->n_grads;
    return GRAFT_OK;
}

/* torch.optim.SGD on one parameter: w[numel], g[numel], momentum buffer buf (NULL
 * when momentum == 0). first: buf holds nothing yet (torch's buf = None). The
 * scalars arrive already rounded to float, as torch rounds Python floats. */
static void sgd_update(float *w, const float *g, float *buf, size_t numel, float lr,
                       float weight_decay, float momentum, float one_minus_dampening, int nesterov,
                       int first) {
    for (size_t i = 0; i < numel; i++) {
        float d = g[i];
        if (weight_decay != 0.0f) d = d + weight_decay * w[i];
        if (buf) {
            if (first)
                buf[i] = d;
            else
                buf[i] = buf[i] * momentum + one_minus_dampening * d;
            d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        w[i] = w[i] + (-lr) * d;
    }
}

/* torch.optim.AdamW on one parameter: w, g, exp_avg m, exp_avg_sq v (numel each).
 * decay_factor = 1 - lr*wd, lerp_weight = 1 - beta1, step_size = lr / (1 - beta1^t),
 * bias_correction2_sqrt = sqrt(1 - beta2^t), all formed in double by the caller. */
static void adamw_update(float *w, const float *g, float *m, float *v, size_t numel,
                         float decay_factor, float lerp_weight, float beta2, float one_minus_beta2,
                         float eps, float step_size, float bias_correction2_sqrt) {
    /* torch's lerp picks its formula by the weight; decided once, outside the loop, so
     * the loop stays branch-free and vectorises */
    int lerp_low = lerp_weight < 0.5f;
    float one_minus_lerp = 1.0f - lerp_weight;
    for (size_t i = 0; i < numel; i++) {
        float wi = w[i] * decay_factor; /* decoupled weight decay comes first */
        float gi = g[i];
        float low = m[i] + lerp_weight * (gi - m[i]), high = gi - (gi - m[i]) * one_minus_lerp;
        float mi = lerp_low ? low : high; /* both computed: a select, not a branch */
        m[i] = mi;
        v[i] = v[i] * beta2 + one_minus_beta2 * gi * gi;
        float denom = sqrtf(v[i]) / bias_correction2_sqrt + eps;
        w[i] = wi + (-step_size) * (mi / denom);
    }
}

graft_status graft_optim_step(graft_optim *o, graft_params *p, float lr) {
    if (!(lr >= 0.0f) || !isfinite(lr)) {
        GRAFT_ERROR("learning rate %g, expected a finite value >= 0", (double)lr);
        return GRAFT_ERR_INVALID_ARG;
    }
    graft_status s = check_table(o, p);
    if (s != GRAFT_OK) return s;
    if (o->n_bufs > 0 && o->n > 0 && !o->state) {
        GRAFT_ERROR("optimizer has no state (not initialized or freed)");
        return GRAFT_ERR_INVALID_ARG;
    }
    if (p->count != o->n_params) {
        GRAFT_ERROR("the parameter table has %d entries, the optimizer was made for %d",
                    p->count, o->n_params);
        return GRAFT_ERR_MISMATCH;
    }
    const graft_optim_config *c = &o->cfg;
    o->step++;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (!t->trainable || t->numel == 0) continue;
        /* this parameter's own step count, as torch keeps one per parameter */
        int64_t own = o->step - o->start[i];
        int first = own == 1;
        /* Bias corrections in double, as torch computes them from Python floats. */
        double bias_correction1 = 1.0 - pow(c->beta1, (double)own);
        double bias_correction2 = 1.0 - pow(c->beta2, (double)own);
        const graft_optim_group *grp = &c->groups[t->group];
        double group_lr = (double)lr * grp->lr_scale;
        float *w = p->values + t->offset;
        const float *g = p->grads + t->grad_offset;
        if (c->kind == GRAFT_OPTIM_SGD) {
            float *buf = o->n_bufs ? o->state + t->grad_offset : NULL;
            sgd_update(w, g, buf, t->numel, (float)group_lr, (float)grp->weight_decay,
                       (float)c->momentum, (float)(1.0 - c->dampening), c->nesterov, first);
        } else {
            float *m = o->state + t->grad_offset;
            float *v = o->state + o->n + t->grad_offset;
            adamw_update(w, g, m, v, t->numel, (float)(1.0 - group_lr * grp->weight_decay),
                         (float)(1.0 - c->beta1), (float)c->beta2, (float)(1.0 - c->beta2),
                         (float)c->eps, (float)(group_lr / bias_correction1),
                         (float)sqrt(bias_correction2));
        }
    }
    return GRAFT_OK;
}

void graft_optim_reset(graft_optim *o) {
    if (!o) return;
    o->step = 0;
    if (o->start) memset(o->start, 0, (size_t)o->n_params * sizeof *o->start);
    if (o->state) memset(o->state, 0, (size_t)o->n_bufs * o->n * sizeof(float));
}

void graft_optim_free(graft_optim *o) {
    if (!o) return;
    free(o->state);
    free(o->start);
    memset(o, 0, sizeof *o);
}

float *graft_optim_state_buf(const graft_optim *o, int which) {
    if (!o->state || which < 0 || which >= o->n_bufs) return NULL;
    return o->state + (size_t)which * o->n;
}

const char *graft_optim_state_name(const graft_optim *o, int which) {
    if (which < 0 || which >= o->n_bufs) return NULL;
    if (o->cfg.kind == GRAFT_OPTIM_SGD) return "momentum_buffer";
    return which == 0 ? "exp_avg" : "exp_avg_sq";
}

float *graft_optim_param_state(const graft_optim *o, const graft_params *p, int index, int which) {
    if (index < 0 || index >= p->count) return NULL;
    const graft_param *t = &p->items[index];
    float *buf = graft_optim_state_buf(o, which);
    if (!buf || !t->trainable || t->grad_offset > o->n || t->numel > o->n - t->grad_offset)
        return NULL;
    return buf + t->grad_offset;
}

graft_status graft_optim_assign_group(graft_params *p, const char *glob, int group_index,
                                      int *matched) {
    if (matched) *matched = 0;
    if (group_index < 0 || group_index >= GRAFT_OPTIM_MAX_GROUPS) {
        GRAFT_ERROR("group index %d for '%s', expected 0..%d", group_index, glob,
                    GRAFT_OPTIM_MAX_GROUPS - 1);
        return GRAFT_ERR_INVALID_ARG;
    }
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || fnmatch(glob, t->name, 0) != 0) continue;
        t->group = group_index;
        n++;
    }
    if (matched) *matched = n;
    return GRAFT_OK;
}

graft_status graft_optim_assign_no_decay(graft_params *p, int group_index, int *matched) {
    if (matched) *matched = 0;
    if (group_index < 0 || group_index >= GRAFT_OPTIM_MAX_GROUPS) {
        GRAFT_ERROR("group index %d, expected 0..%d", group_index, GRAFT_OPTIM_MAX_GROUPS - 1);
        return GRAFT_ERR_INVALID_ARG;
    }
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || t->ndim != 1) continue;
        t->group = group_index;
        n++;
    }
    if (matched) *matched = n;
    return GRAFT_OK;
}

graft_status graft_optim_kind_parse(const char *name, graft_optim_kind *out) {
    if (strcasecmp(name, "sgd") == 0)
        *out = GRAFT_OPTIM_SGD;
    else if (strcasecmp(name, "adamw") == 0)
        *out = GRAFT_OPTIM_ADAMW;
    else {
        GRAFT_ERROR("unknown optimizer '%s' (expected sgd or adamw)", name);
        return GRAFT_ERR_CONFIG;
    }
    return GRAFT_OK;
}

const char *graft_optim_kind_name(graft_optim_kind kind) {
    switch (kind) {
    case GRAFT_OPTIM_SGD:
        return "sgd";
    case GRAFT_OPTIM_ADAMW:
        return "adamw";
    }
    return "unknown";
}

/* ---- gradient clipping ---------------------------------------------------------- */

double graft_grad_sq_sum(const float *grads, size_t n) {
    /* eight independent double lanes: the compiler vectorises them (a single running
     * sum cannot be reordered), and each lane still adds in double */
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += (double)grads[i + j] * (double)grads[i + j];
    double sum = 0.0;
    for (; i < n; i++) sum += (double)grads[i] * (double)grads[i];
    for (int j = 0; j < 8; j++) sum += lane[j];
    return sum;
}

float graft_grad_clip_norm(float *grads, size_t n, float max_norm) {
    double norm = sqrt(graft_grad_sq_sum(grads, n));
    if (!(max_norm > 0.0f) || !isfinite(norm)) return (float)norm;
    /* torch: clip_coef = max_norm / (norm + 1e-6), clamped to at most 1. */
    double coef = (double)max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float scale = (float)coef;
        for (size_t i = 0; i < n; i++)
            grads[i] *= scale;
    }
    return (float)norm;
}
