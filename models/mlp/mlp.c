#include "mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

graft_status graft_mlp_init(graft_mlp *m, const graft_mlp_config *cfg) {
    memset(m, 0, sizeof *m);
    if (cfg->in_dim <= 0 || cfg->num_classes <= 0 || cfg->n_hidden < 0 ||
        cfg->n_hidden > GRAFT_MLP_MAX_HIDDEN || cfg->dropout < 0 || cfg->dropout >= 1) {
        GRAFT_ERROR("bad MLP config: in_dim %d, %d hidden layers (max %d), %d classes, dropout %g",
                    cfg->in_dim, cfg->n_hidden, GRAFT_MLP_MAX_HIDDEN, cfg->num_classes,
                    (double)cfg->dropout);
        return GRAFT_ERR_CONFIG;
    }
    m->cfg = *cfg;
    graft_params_init(&m->params);
    int in = cfg->in_dim;
    char prefix[32];
    for (int l = 0; l <= cfg->n_hidden; l++) {
        int is_head = l == cfg->n_hidden;
        int out = is_head ? cfg->num_classes : cfg->hidden[l];
        if (out <= 0) {
            GRAFT_ERROR("bad MLP config: hidden layer %d has size %d", l, out);
            return GRAFT_ERR_CONFIG;
        }
        if (is_head)
            snprintf(prefix, sizeof prefix, "head");
        else
            snprintf(prefix, sizeof prefix, "hidden.%d", l);
        m->ranges[l] = graft_param_range_begin(&m->params);
        graft_status st =
            graft_linear_layer_add(&m->layers[l], &m->params, prefix, in, out, 1, GRAFT_W_OUT_IN);
        if (st != GRAFT_OK) return st;
        graft_param_range_end(&m->ranges[l], &m->params);
        in = out;
    }
    m->n_layers = cfg->n_hidden + 1;
    return GRAFT_OK;
}

/* Activation layout, identical in the planning and the real pass of the arena. */
static void plan_activations(graft_mlp *m) {
    size_t B = (size_t)m->max_batch;
    for (int l = 0; l < m->n_layers; l++) {
        size_t width = (size_t)m->layers[l].out;
        m->act[l] = graft_arena_floats(&m->arena, B * width);
        m->dact[l] = graft_arena_floats(&m->arena, B * width);
        if (l < m->cfg.n_hidden) m->mask[l] = graft_arena_floats(&m->arena, B * width);
    }
    m->logits = m->act[m->n_layers - 1];
    m->probs = graft_arena_floats(&m->arena, B * (size_t)m->cfg.num_classes);
}

graft_status graft_mlp_build(graft_mlp *m, int max_batch) {
    if (max_batch <= 0) return GRAFT_ERR_INVALID_ARG;
    m->max_batch = max_batch;
    graft_status st = m->params.finalized ? GRAFT_OK : graft_params_finalize(&m->params);
    if (st != GRAFT_OK) return st;
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    st = graft_arena_commit(&m->arena);
    if (st != GRAFT_OK) return st;
    plan_activations(m);
    return GRAFT_OK;
}

void graft_mlp_init_weights(graft_mlp *m, uint64_t seed) {
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (int l = 0; l < m->n_layers; l++)
        graft_linear_layer_init(&m->layers[l], &m->params, &rng);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_mlp_free(graft_mlp *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    memset(m, 0, sizeof *m);
}

float graft_mlp_forward(graft_mlp *m, const float *x, const int32_t *targets, int B, int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    m->input = x;
    m->targets = targets;
    m->batch = B;
    m->dropout_applied = training && m->cfg.dropout > 0;
    const float *in = x;
    for (int l = 0; l < m->n_layers; l++) {
        float *out = m->act[l];
        graft_linear_layer_forward(&m->layers[l], &m->params, out, in, B);
        if (l < m->cfg.n_hidden) {
            size_t n = (size_t)B * m->layers[l].out;
            graft_relu_forward(out, out, n);
            if (m->dropout_applied)
                graft_dropout_forward(out, m->mask[l], out, n, m->cfg.dropout, &m->dropout_rng);
        }
        in = out;
    }
    if (!targets) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, targets, B, m->cfg.num_classes, -1,
                                       &m->counted);
}

void graft_mlp_backward(graft_mlp *m, float loss_scale) {
    int B = m->batch;
    /* Lowest trainable layer: layers below it need no input gradient. */
    const int lowest = graft_nn_lowest_trainable(&m->params, m->ranges, m->n_layers);
    if (lowest == m->n_layers || m->counted == 0) return;
    int top = m->n_layers - 1;
    memset(m->dact[top], 0, (size_t)B * m->cfg.num_classes * sizeof(float));
    graft_cross_entropy_backward(m->dact[top], m->probs, m->targets, B, m->cfg.num_classes, -1,
                                 loss_scale / (float)m->counted);
    for (int l = top; l >= lowest; l--) {
        const float *in = l > 0 ? m->act[l - 1] : m->input;
        float *din = NULL;
        if (l > lowest) {
            din = m->dact[l - 1];
            memset(din, 0, (size_t)B * m->layers[l - 1].out * sizeof(float));
        }
        graft_linear_layer_backward(&m->layers[l], &m->params, din, m->dact[l], in, B);
        if (din) {
            /* Through layer l-1's dropout and ReLU, in place. act > 0 exactly where the
             * ReLU passed and dropout kept the unit; elsewhere the gradient is 0. */
            size_t n = (size_t)B * m->layers[l - 1].out;
            const float *act = m->act[l - 1], *mask = m->mask[l - 1];
            if (m->dropout_applied)
                for (size_t i = 0; i < n; i++)
                    din[i] = act[i] > 0 ? din[i] * mask[i] : 0.0f;
            else
                for (size_t i = 0; i < n; i++)
                    din[i] = act[i] > 0 ? din[i] : 0.0f;
        }
    }
}

/* ---- the model interface ------------------------------------------------------------ */

static graft_status mlp_build(void *self, int max_batch) {
    return graft_mlp_build(self, max_batch);
}
static void mlp_init_weights(void *self, uint64_t seed) { graft_mlp_init_weights(self, seed); }
static void mlp_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_mlp *)self)->dropout_rng, seed);
}
static float mlp_forward(void *self, const float *inputs, const int32_t *tokens,
                         const int32_t *labels, int B, int training, int *counted) {
    (void)tokens;
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

graft_status graft_mlp_create(graft_model *out, const graft_config *cfg,
                              const graft_model_input *input) {
    static const graft_model_i iface = {.name = "mlp",
                                        .head = "head",
                                        .build = mlp_build,
                                        .init_weights = mlp_init_weights,
                                        .seed_step = mlp_seed_step,
                                        .forward = mlp_forward,
                                        .backward = mlp_backward,
                                        .logits = mlp_logits,
                                        .free = mlp_free};
    if (input->channels <= 0) {
        GRAFT_ERROR("model.arch mlp needs an image dataset (got a token dataset)");
        return GRAFT_ERR_CONFIG;
    }
    int classes =
        cfg->model.head_num_classes > 0 ? cfg->model.head_num_classes : input->num_classes;
    graft_mlp_config mc = {.in_dim = input->channels * input->height * input->width,
                           .n_hidden = cfg->model.n_hidden,
                           .num_classes = classes,
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
