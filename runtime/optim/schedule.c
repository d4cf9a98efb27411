/* Learning-rate schedules: linear warmup, then constant, cosine or linear decay. */
#include <math.h>
#include <strings.h>

#include "optim.h"
#include "runtime/core/log.h"

#define LR_PI 3.14159265358979323846

float graft_lr_at(const graft_lr_schedule *s, long step) {
    double base = s->base_lr, min = s->min_lr;
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return (float)(base * (double)step / (double)s->warmup_steps);
    if (s->kind == GRAFT_LR_CONSTANT) return (float)base;
    double progress = 1.0;
    long decay_steps = s->total_steps - s->warmup_steps;
    if (decay_steps > 0) progress = (double)(step - s->warmup_steps) / (double)decay_steps;
    if (progress > 1.0) progress = 1.0;
    double factor;
    if (s->kind == GRAFT_LR_COSINE)
        factor = 0.5 * (1.0 + cos(LR_PI * progress));
    else
        factor = 1.0 - progress; /* GRAFT_LR_LINEAR */
    return (float)(min + (base - min) * factor);
}

graft_status graft_lr_schedule_check(const graft_lr_schedule *s) {
    const char *kind = graft_lr_kind_name(s->kind);
    if (s->kind != GRAFT_LR_CONSTANT && s->kind != GRAFT_LR_COSINE && s->kind != GRAFT_LR_LINEAR) {
        GRAFT_ERROR("unknown lr schedule kind %d", (int)s->kind);
        return GRAFT_ERR_CONFIG;
    }
    if (!(s->base_lr > 0.0) || !isfinite(s->base_lr)) {
        GRAFT_ERROR("%s schedule: lr = %g, expected a finite value > 0", kind, s->base_lr);
        return GRAFT_ERR_CONFIG;
    }
    if (!(s->min_lr >= 0.0) || s->min_lr > s->base_lr) {
        GRAFT_ERROR("%s schedule: min_lr = %g, expected 0 <= min_lr <= lr (%g)", kind, s->min_lr,
                    s->base_lr);
        return GRAFT_ERR_CONFIG;
    }
    if (s->warmup_steps < 0) {
        GRAFT_ERROR("%s schedule: warmup_steps = %ld, expected >= 0", kind, s->warmup_steps);
        return GRAFT_ERR_CONFIG;
    }
    if (s->total_steps < 0) {
        GRAFT_ERROR("%s schedule: total_steps = %ld, expected >= 0", kind, s->total_steps);
        return GRAFT_ERR_CONFIG;
    }
    if (s->kind != GRAFT_LR_CONSTANT && s->total_steps == 0) {
        GRAFT_ERROR("%s schedule: total_steps = 0, a decaying schedule needs total_steps > 0",
                    kind);
        return GRAFT_ERR_CONFIG;
    }
    return GRAFT_OK;
}

graft_status graft_lr_kind_parse(const char *name, graft_lr_kind *out) {
    if (strcasecmp(name, "constant") == 0)
        *out = GRAFT_LR_CONSTANT;
    else if (strcasecmp(name, "cosine") == 0)
        *out = GRAFT_LR_COSINE;
    else if (strcasecmp(name, "linear") == 0)
        *out = GRAFT_LR_LINEAR;
    else {
        GRAFT_ERROR("unknown lr schedule '%s' (expected constant, cosine or linear)", name);
        return GRAFT_ERR_CONFIG;
    }
    return GRAFT_OK;
}

const char *graft_lr_kind_name(graft_lr_kind kind) {
    switch (kind) {
    case GRAFT_LR_CONSTANT:
        return "constant";
    case GRAFT_LR_COSINE:
        return "cosine";
    case GRAFT_LR_LINEAR:
        return "linear";
    }
    return "unknown";
}
