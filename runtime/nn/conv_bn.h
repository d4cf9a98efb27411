/* Conv2d (no bias) followed by BatchNorm2d, then optionally a residual add and a ReLU:
 * the unit torchvision's ResNet is made of. Parameters "<conv>.weight" [OC, C, K, K],
 * "<bn>.weight" and "<bn>.bias" [OC]; buffers "<bn>.running_mean", "<bn>.running_var"
 * [OC] and "<bn>.num_batches_tracked" [] (torch's int64 count, kept as a float).
 *
 * Activations are channel-major [C, N, H, W] (see conv2d in runtime/ops/ops.h); a unit
 * that reads a network's batch-major input images sets shape.nchw_input.
 *
 * Each forward normalises one of two ways:
 * - batch statistics (torch's train mode): running stats are updated (momentum 0.1,
 *   unbiased variance) and num_batches_tracked counts up;
 * - running statistics (eval mode, or a frozen BN under freeze.bn=eval). When the unit
 *   keeps no conv output (`pre` is NULL) they are folded into a per-channel scale and
 *   shift applied, with the residual and ReLU, in place on the conv output.
 * The backward needs the conv output whenever the BN has a trainable weight or bias or
 * used batch statistics: the owner plans `pre` for such units (keep_pre). */
#ifndef GRAFT_CONV_BN_H
#define GRAFT_CONV_BN_H

#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/params.h"
#include "runtime/ops/ops.h"

typedef struct graft_conv_bn {
    int conv, bn_weight, bn_bias, running_mean, running_var, num_batches; /* table indices */
    graft_conv2d_shape shape; /* for one image (N = 1); nchw_input may be set */
    /* activation memory (graft_conv_bn_plan) */
    float *pre;                     /* conv output [OC, N, OH, OW], or NULL (see above) */
    float *save_mean, *save_invstd; /* [OC] statistics of the last forward */
    float *scale, *shift;           /* [OC] folded running statistics */
    int batch_stats;                /* whether the last forward used batch statistics */
} graft_conv_bn;

/* Register the unit for [N, C, H, W] inputs: a KxK convolution with the given stride
 * and padding to OC channels, then the batchnorm. */
graft_status graft_conv_bn_add(graft_conv_bn *u, graft_params *p, const char *conv_name,
                               const char *bn_name, int C, int H, int W, int OC, int K, int stride,
                               int pad);
/* torchvision's ResNet init: conv kaiming_normal_(mode="fan_out", nonlinearity="relu"),
 * BN weight 1, bias 0, running mean 0, variance 1, count 0. */
void graft_conv_bn_init(const graft_conv_bn *u, const graft_params *p, graft_rng *rng);
/* 1 when the conv weight or a BN parameter is trainable. */
int graft_conv_bn_trainable(const graft_conv_bn *u, const graft_params *p);
/* 1 when the BN weight and bias are both frozen. */
int graft_conv_bn_bn_frozen(const graft_conv_bn *u, const graft_params *p);
/* Floats of the output for N images, and of the im2col scratch the unit needs for N. */
size_t graft_conv_bn_out_floats(const graft_conv_bn *u, int N);
size_t graft_conv_bn_scratch_floats(const graft_conv_bn *u, int N);
/* Plan the unit's activation memory for up to max_batch images (call in both arena
 * passes); keep_pre keeps the conv output for the backward. */
void graft_conv_bn_plan(graft_conv_bn *u, graft_arena *a, int max_batch, int keep_pre);

/* out = [relu](bn(conv(inp)) [+ residual]) over N images; residual may be NULL. out
 * must not alias inp or residual. batch_stats picks the statistics (see above); a
 * unit without `pre` may use batch statistics only when no backward follows. */
void graft_conv_bn_forward(graft_conv_bn *u, const graft_params *p, float *out, const float *inp,
                           const float *residual, int relu, int N, int batch_stats, float *scratch);
/* Backward of the last forward from dy, the gradient w.r.t. the BN output (the caller
 * has already passed it back through the ReLU). Adds the trainable parameters' gradients
 * and reports them ready. dinp (may be NULL: stop-backward) receives the input gradient:
 * added to when accumulate, else overwritten, and then it may be dy itself. dpre is
 * scratch of graft_conv_bn_out_floats(u, N) floats. */
void graft_conv_bn_backward(const graft_conv_bn *u, const graft_params *p, float *dinp,
                            int accumulate, const float *dy, float *dpre, const float *inp, int N,
                            float *scratch);

#endif
