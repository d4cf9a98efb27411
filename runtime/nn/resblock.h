/* Residual blocks of torchvision's ResNet, made of conv-bn units (runtime/nn/conv_bn.h):
 * - basic: 3x3 conv-bn-relu, 3x3 conv-bn, + shortcut, relu (stride on the first conv);
 * - bottleneck: 1x1, 3x3, 1x1 to 4x the width, + shortcut, relu (stride on the 3x3:
 *   torchvision's "v1.5").
 * The shortcut is the identity, or a 1x1 conv-bn downsample when the stride or the width
 * changes. Names are torchvision's under the prefix the owner passes, registered in this
 * order, which is the range of the table the block records:
 *   <prefix>.conv1.weight, <prefix>.bn1.*, ..., <prefix>.downsample.{0.weight,1.*}
 *
 * Activations are channel-major [C, N, H, W]. A block planned with keep holds what its
 * backward needs; one planned without runs forward only, through three buffers its owner
 * shares among all such blocks, and keeps nothing (docs/DESIGN.md, Note [Activation sharing
 * under frozen layers]).
 *
 * With frozen_bn_eval (freeze.bn=eval) a unit whose BN weight and bias are both frozen
 * uses its running statistics even while training, folded into a per-channel scale and
 * shift (its backward then needs no conv output). */
#ifndef GRAFT_NN_RESBLOCK_H
#define GRAFT_NN_RESBLOCK_H

#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/conv_bn.h"
#include "runtime/nn/params.h"

typedef struct graft_resblock {
    graft_conv_bn unit[3]; /* conv1/bn1, conv2/bn2[, conv3/bn3] */
    graft_conv_bn down;    /* downsample.0/downsample.1, when has_down */
    int n_units, has_down;
    int frozen_bn_eval;
    graft_param_range range; /* what the block registered */
    const float *in;         /* the last forward's input */
    /* kept for the backward (NULL when the block runs forward only) */
    float *act[2];   /* ReLU outputs of the units before the last */
    float *down_out; /* downsample branch */
    float *out;      /* block output */
} graft_resblock;

/* Floats the owner's shared buffers must hold, raised by each plan: forward-only
 * activations (ping), backward buffers (grad) and im2col scratch. */
typedef struct graft_resblock_sizes {
    size_t ping, grad, scratch;
} graft_resblock_sizes;

/* Register a block for [N, C, H, W] inputs with `planes` inner channels (output: planes,
 * or 4 * planes for the bottleneck) and the given stride. */
graft_status graft_resblock_basic_add(graft_resblock *blk, graft_params *p, const char *prefix,
                                      int C, int H, int W, int planes, int stride,
                                      int frozen_bn_eval);
graft_status graft_resblock_bottleneck_add(graft_resblock *blk, graft_params *p, const char *prefix,
                                           int C, int H, int W, int planes, int stride,
                                           int frozen_bn_eval);
/* torchvision's init of every unit (graft_conv_bn_init), in registration order. */
void graft_resblock_init(const graft_resblock *blk, const graft_params *p, graft_rng *rng);
/* 1 when some parameter of the block is trainable. */
int graft_resblock_trainable(const graft_resblock *blk, const graft_params *p);
/* The unit that produces the block's output (its shape is the output's). */
const graft_conv_bn *graft_resblock_last(const graft_resblock *blk);
/* Plan the block's activation memory for up to max_batch images (call in both arena
 * passes, after the trainable flags are final) and raise *need. */
void graft_resblock_plan(graft_resblock *blk, const graft_params *p, graft_arena *a, int max_batch,
                         int keep, graft_resblock_sizes *need);

/* out = relu(units(in) + identity or downsample(in)) over N images, training: batch
 * statistics (see above). A kept block writes its own buffers and returns blk->out; a
 * forward-only one reads ping[*at] (which must be `in`), writes another of the three
 * ping buffers (each of graft_resblock_sizes's ping floats) or ping[*at] itself, sets *at
 * to it and returns it. */
const float *graft_resblock_forward(graft_resblock *blk, const graft_params *p, const float *in,
                                    float *const ping[3], int *at, int N, int training,
                                    float *scratch);
/* Backward of the last forward of a kept block from g, the gradient w.r.t. its output
 * (overwritten). Adds the trainable parameters' gradients and reports them ready. below:
 * something under the block trains, so the input gradient is needed: it is returned (in
 * g itself for an identity block, else in spare, which then holds the input's floats),
 * else NULL is returned and the backward stops at the lowest trainable unit inside the
 * block. dpre and inner hold floats of the largest unit output (graft_resblock_sizes's
 * grad). */
float *graft_resblock_backward(const graft_resblock *blk, const graft_params *p, float *g,
                               float *spare, int below, float *dpre, float *inner, int N,
                               float *scratch);

/* The same for a single unit outside a block (a stem): plan and forward honour
 * frozen_bn_eval as a block's units do. */
void graft_resblock_unit_plan(graft_conv_bn *u, const graft_params *p, graft_arena *a,
                              int max_batch, int keep, int frozen_bn_eval,
                              graft_resblock_sizes *need);
void graft_resblock_unit_forward(graft_conv_bn *u, const graft_params *p, float *out,
                                 const float *inp, const float *residual, int relu, int N,
                                 int training, int frozen_bn_eval, float *scratch);
/* The ReLU's backward in place: g = g where the forward output was positive, else 0. */
void graft_resblock_relu_mask(float *g, const float *out, size_t n);

#endif
