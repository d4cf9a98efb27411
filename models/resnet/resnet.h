/* torchvision's ResNet-18/34 (BasicBlock) and ResNet-50 (Bottleneck, stride on the 3x3
 * conv: "v1.5"), parameter and buffer names exactly as its state_dict():
 *   conv1.weight, bn1.{weight,bias,running_mean,running_var,num_batches_tracked},
 *   layerL.B.conv1.weight, layerL.B.bn1.*, ..., layerL.0.downsample.{0.weight,1.*},
 *   fc.weight [K, F], fc.bias [K].
 * Options beyond torchvision: input channels, a base width (torchvision: 64; stages get
 * w, 2w, 4w, 8w channels times the block expansion), a small-image stem (3x3 stride-1
 * conv1, no max-pool) and dropout on the pooled features before fc (timm's drop_rate).
 *
 * The blocks are runtime/nn/resblock.h's. Stop-backward: the stages (stem, each block,
 * fc) below the lowest one with a trainable parameter (graft_nn_lowest_trainable over
 * the stages' parameter ranges) run forward only through three shared buffers and keep
 * nothing for the backward; frozen batchnorms in eval mode fold into a per-channel scale
 * and shift. */
#ifndef GRAFT_RESNET_H
#define GRAFT_RESNET_H

#include "models/model.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/conv_bn.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/params.h"
#include "runtime/nn/resblock.h"

#define GRAFT_RESNET_MAX_BLOCKS 16 /* ResNet-34/50: 3 + 4 + 6 + 3 */

typedef struct graft_resnet_config {
    int depth;                   /* 18, 34 or 50 */
    int base_width;              /* channels of the first stage; torchvision: 64 */
    int channels, height, width; /* input images [C, H, W] */
    int num_classes;
    int small_stem;     /* 3x3 stride-1 conv1 and no max-pool */
    float dropout;      /* on the pooled features while training */
    int frozen_bn_eval; /* a BN with weight and bias frozen runs in eval mode (freeze.bn) */
} graft_resnet_config;

typedef struct graft_resnet {
    graft_resnet_config cfg;
    graft_params params;
    graft_conv_bn stem;      /* conv1/bn1 */
    graft_pool2d_shape pool; /* the ImageNet stem's max-pool (N = 1) */
    graft_resblock blocks[GRAFT_RESNET_MAX_BLOCKS];
    int n_blocks;
    graft_linear_layer fc;
    int features; /* fc input width */
    /* the parameters of each stage: stem, blocks, fc (see `lowest`) */
    graft_param_range stages[GRAFT_RESNET_MAX_BLOCKS + 2];
    int max_batch;
    graft_rng dropout_rng;
    /* Activation plan (graft_resnet_build). Stages: 0 stem, 1 + b block b, n_blocks + 1
     * fc; `lowest` is the lowest with a trainable parameter (n_blocks + 2: none). */
    graft_arena arena;
    int lowest;
    float *stem_out, *pool_out; /* kept when the stem trains */
    int32_t *pool_argmax;
    float *ping[3]; /* forward-only stages */
    float *grad[4]; /* backward: block output gradient, BN scratch, inner, input gradient */
    float *scratch; /* im2col */
    float *feat, *mask, *logits, *probs, *dlogits, *dfeat;
    /* the last forward */
    const float *input;     /* borrowed */
    const int32_t *targets; /* borrowed */
    int batch, counted, dropout_applied;
} graft_resnet;

/* Register the parameters (not allocated: set trainable flags, finalize the table, then
 * build). Errors (GRAFT_ERR_CONFIG) are logged naming the bad value. */
graft_status graft_resnet_init(graft_resnet *m, const graft_resnet_config *cfg);
/* Plan and allocate activations for up to max_batch images for the current trainable
 * set; again after trainable flags change (parameter values are kept). */
graft_status graft_resnet_build(graft_resnet *m, int max_batch);
void graft_resnet_init_weights(graft_resnet *m, uint64_t seed);
void graft_resnet_free(graft_resnet *m);

/* Forward over x [B, C*H*W]; with targets returns the mean cross-entropy (targets < 0
 * ignored), else 0. training=1: batch statistics in batchnorms that are not frozen (or
 * all with frozen_bn_eval = 0), running stats updated, dropout. Logits in m->logits. */
float graft_resnet_forward(graft_resnet *m, const float *x, const int32_t *targets, int B,
                           int training);
/* Backward of the last forward's mean loss times loss_scale, down to the lowest
 * trainable stage; accumulates into trainable gradients. */
void graft_resnet_backward(graft_resnet *m, float loss_scale);

/* Feature extraction (models/model.h, graft_model_split): the boundary is the input of
 * the lowest trainable stage, a block's or fc's (the pooled features, before dropout).
 * prefix_forward writes one row per image (a block's input packed per sample, [C*H*W]);
 * forward_features runs the rest from such rows (backward as after forward). */
void graft_resnet_split(const graft_resnet *m, graft_model_split *out);
void graft_resnet_prefix_forward(graft_resnet *m, const float *x, int B, float *features);
float graft_resnet_forward_features(graft_resnet *m, const float *features,
                                    const int32_t *targets, int B, int training);

/* model.arch resnet18|resnet34|resnet50 (see models/model.h). */
graft_status graft_resnet_create(graft_model *out, const graft_config *cfg,
                                 const graft_model_input *input);

#endif
