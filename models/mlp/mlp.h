/* MLP classifier: [Linear -> ReLU -> Dropout] x hidden layers -> Linear head.
 * Parameter names follow torch modules named hidden.<i> and head:
 *   hidden.0.weight [h0, in], hidden.0.bias [h0], ..., head.weight [classes, h_last]. */
#ifndef GRAFT_MLP_H
#define GRAFT_MLP_H

#include "models/model.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/params.h"

#define GRAFT_MLP_MAX_HIDDEN 8

typedef struct graft_mlp_config {
    int in_dim;
    int n_hidden;
    int hidden[GRAFT_MLP_MAX_HIDDEN];
    int num_classes;
    float dropout; /* probability, applied after each hidden ReLU while training */
} graft_mlp_config;

typedef struct graft_mlp {
    graft_mlp_config cfg;
    graft_params params;
    graft_linear_layer layers[GRAFT_MLP_MAX_HIDDEN + 1]; /* hidden..., head */
    graft_param_range ranges[GRAFT_MLP_MAX_HIDDEN + 1];  /* each layer's parameters */
    int n_layers;
    int max_batch;
    graft_rng dropout_rng;
    /* activations, planned once in the arena for max_batch rows */
    graft_arena arena;
    float *act[GRAFT_MLP_MAX_HIDDEN + 1]; /* output of layer l after ReLU+dropout (hidden) */
    float *mask[GRAFT_MLP_MAX_HIDDEN];    /* dropout masks */
    float *logits, *probs;
    float *dact[GRAFT_MLP_MAX_HIDDEN + 1]; /* gradient w.r.t. act[l] / logits */
    const float *input;                    /* last forward's input (borrowed) */
    const int32_t *targets;                /* last forward's targets (borrowed) */
    int batch, counted;
    int dropout_applied; /* whether the last forward used dropout */
} graft_mlp;

/* model.arch mlp, for an image dataset (graft_model_create's table). */
graft_status graft_mlp_create(graft_model *out, const graft_config *cfg,
                              const graft_model_input *input);

/* Register parameters. Set trainable flags on m->params afterwards if needed, then
 * call graft_mlp_build to allocate parameters (if not yet done) and activations. */
graft_status graft_mlp_init(graft_mlp *m, const graft_mlp_config *cfg);
graft_status graft_mlp_build(graft_mlp *m, int max_batch);
/* torch's default initialisation from a seed. */
void graft_mlp_init_weights(graft_mlp *m, uint64_t seed);
void graft_mlp_free(graft_mlp *m);

/* Forward over B <= max_batch rows of x [B, in_dim]. With targets, returns the mean
 * cross-entropy loss (ignoring targets < 0); without, returns 0. Logits stay in m->logits.
 * training=1 applies dropout. */
float graft_mlp_forward(graft_mlp *m, const float *x, const int32_t *targets, int B, int training);
/* Backward of the last forward's mean loss, scaled by loss_scale (1/accumulation
 * steps); accumulates into the trainable parameters' gradients. Input gradients are
 * computed only down to the lowest trainable layer (stop-backward). */
void graft_mlp_backward(graft_mlp *m, float loss_scale);

#endif
