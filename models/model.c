#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "models/mlp/mlp.h"
#include "runtime/core/log.h"

/* ---- mlp --------------------------------------------------------------------------- */

static graft_status mlp_build(void *self, int max_batch) { return graft_mlp_build(self, max_batch); }
static void mlp_init_weights(void *self, uint64_t seed) { graft_mlp_init_weights(self, seed); }
static void mlp_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_mlp *)self)->dropout_rng, seed);
}
static float mlp_forward(void *self, const float *inputs, const int32_t *tokens,
                         const int32_t *labels, int B, int training, int *counted) {
    graft_mlp *m = self;
    float loss = graft_mlp_forward(m, inputs, labels, B, training);
    if (counted) *counted = labels ? m->counted : 0;
    return loss;
}
static void mlp_backward(void *self, float loss_scale) { graft_mlp_backward(self, loss_scale); }
static const float *mlp_logits(void *self) { return ((graft_mlp *)self)->logits; }
static void mlp_free(void *self) {
    graft_mlp_free(self);
    free(self);
}

static graft_status create_mlp(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input) {
    static const graft_model_i iface = {"mlp",       mlp_build,    mlp_init_weights,
                                        mlp_seed_step, mlp_forward, mlp_backward,
                                        mlp_logits,    mlp_free};
    if (input->channels <= 0) {
        GRAFT_ERROR("model.arch mlp needs an image dataset (got a token dataset)");
        return GRAFT_ERR_CONFIG;
    }
    graft_mlp_config mc = {.in_dim = input->channels * input->height * input->width,
                           .n_hidden = cfg->model.n_hidden,
                           .num_classes = input->num_classes,
                           .dropout = (float)cfg->model.dropout};
    memcpy(mc.hidden, cfg->model.hidden, sizeof mc.hidden);
    graft_mlp *m = calloc(1, sizeof *m);
    if (!m) return GRAFT_ERR_NOMEM;
    graft_status st = graft_mlp_init(m, &mc);
    if (st != GRAFT_OK) {
        mlp_free(m);
        return st;
    }
    out->iface = iface;
    out->self = m;
    out->params = &m->params;
    out->task = GRAFT_TASK_CLASSIFY;
    out->num_outputs = mc.num_classes;
    return GRAFT_OK;
}

/* ---- the table of architectures ------------------------------------------------------ */

static const struct {
    const char *arch;
    graft_status (*create)(graft_model *, const graft_config *, const graft_model_input *);
} architectures[] = {
    {"mlp", create_mlp},
};

const char *graft_model_arch_names(void) { return "mlp"; }

graft_status graft_model_create(graft_model *m, const graft_config *cfg,
                                const graft_model_input *input) {
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < sizeof architectures / sizeof architectures[0]; i++)
        if (strcmp(cfg->model.arch, architectures[i].arch) == 0)
            return architectures[i].create(m, cfg, input);
    GRAFT_ERROR("model.arch: unknown architecture '%s' (expected one of: %s)", cfg->model.arch,
                graft_model_arch_names());
    return GRAFT_ERR_CONFIG;
}

void graft_model_free(graft_model *m) {
    if (!m) return;
    if (m->iface.free) m->iface.free(m->self);
    memset(m, 0, sizeof *m);
}
