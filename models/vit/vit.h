/* torchvision's VisionTransformer (ViT-B/16 by default), parameter names exactly as its
 * state_dict():
 *   class_token [1, 1, C], conv_proj.{weight [C, in_ch, P, P], bias [C]},
 *   encoder.pos_embedding [1, S, C] (S = 1 + patches),
 *   encoder.layers.encoder_layer_N.ln_1.{weight,bias},
 *   encoder.layers.encoder_layer_N.self_attention.{in_proj_weight [3C, C], in_proj_bias,
 *   out_proj.weight, out_proj.bias}, encoder.layers.encoder_layer_N.ln_2.*,
 *   encoder.layers.encoder_layer_N.mlp.{0,3}.{weight,bias} ([mlp_dim, C], [C, mlp_dim]),
 *   encoder.ln.{weight,bias}, heads.head.{weight,bias}.
 * The network: a strided patch convolution (kernel = stride = P, with bias) over NCHW
 * images, the class token prepended, + pos_embedding, dropout, pre-LN encoder layers
 * (LayerNorm eps 1e-6, bidirectional multi-head attention with dropout on its
 * probabilities, dropout, residual; LayerNorm, Linear, exact erf GELU, dropout, Linear,
 * dropout, residual), encoder.ln and the head on the class token. Beyond torchvision:
 * any input channel count and non-square images (H and W multiples of P).
 *
 * The encoder layers are the nn pre-LN transformer block (runtime/nn/transformer.h).
 * Stop-backward as in models/gpt2: nothing below the lowest trainable parameter is
 * differentiated, and the frozen encoder layers below it run forward in shared memory. */
#ifndef GRAFT_VIT_H
#define GRAFT_VIT_H

#include <stddef.h>

#include "models/model.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/block.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/params.h"
#include "runtime/nn/transformer.h"

typedef struct graft_vit_config {
    int n_layer, n_head, n_embd, mlp_dim;
    int patch_size;
    int channels, height, width; /* input images [channels, height, width] */
    int num_classes;
    /* torchvision's dropout and attention_dropout (one value) while training */
    float dropout;
    graft_lora_spec *lora; /* adapters to attach (read by init only); NULL: none */
} graft_vit_config;

/* An encoder layer's activations: the block's, and its output, the next layer's input.
 * The frozen layers below the lowest trainable one share one forward-only set whose
 * residual stream is updated in place (res3 is then embd for all of them). */
typedef struct graft_vit_acts {
    graft_transformer_acts block;
    float *res3; /* the layer output [BS, C] */
} graft_vit_acts;

typedef struct graft_vit {
    graft_vit_config cfg;
    int seq_len;      /* S = 1 + (H / P) * (W / P) */
    int patch_floats; /* in_ch * P * P: one patch, a row of the patch GEMM */
    graft_params params;
    int class_token, pos_embedding, ln_w, ln_b;
    graft_linear_layer conv_proj, head; /* conv_proj as a GEMM over patches */
    graft_transformer *blocks;          /* n_layer encoder layers */
    /* parameter ranges in forward order: the embedding (class_token, conv_proj,
     * encoder.pos_embedding), each block's sub-layers, encoder.ln, heads.head */
    graft_param_range *units;
    int n_units;
    /* set by build from the trainable set */
    int max_batch;
    int lowest_unit; /* lowest unit with a trainable parameter; n_units: none */
    int first_kept;  /* layers from here up keep activations for backward */
    graft_arena arena;
    graft_vit_acts *acts;        /* n_layer */
    graft_transformer_work work; /* the blocks' scratch */
    float *patches;              /* [B * patches, patch_floats] */
    float *embd, *embd_mask;     /* the embedding output [BS, C] and its dropout mask */
    float *cls, *cls_ln, *cls_mean, *cls_rstd; /* the class token rows [B, C] at the top */
    float *logits, *probs, *dlogits;           /* [B, K] */
    float *dcls, *dcls_ln, *dres;              /* backward: [B, C], [B, C], [BS, C] */
    graft_rng dropout_rng;
    /* the last forward */
    graft_transformer_pass pass;
    const int32_t *targets;
    int batch, counted, dropout_applied;
} graft_vit;

/* model.arch vit for an image dataset: sizes from model.n_layer/n_head/n_embd (the
 * registry resolves 0 to ViT-B/16's 12/12/768), model.mlp_dim (0 = 4 n_embd),
 * model.patch_size; classes from
 * model.head.num_classes or the dataset. Bad combinations are GRAFT_ERR_CONFIG with one
 * line. */
graft_status graft_vit_create(graft_model *out, const graft_config *cfg,
                              const graft_model_input *input);

/* Check cfg and register the parameters (not allocated). */
graft_status graft_vit_init(graft_vit *m, const graft_vit_config *cfg);
/* Plan activations for the current trainable set and up to max_batch images (finalizes
 * the table if the caller has not). Callable again after more parameters became
 * trainable; parameter values are kept. */
graft_status graft_vit_build(graft_vit *m, int max_batch);
/* torchvision's init: conv_proj trunc-normal (std sqrt(1 / fan_in), cut at +-2) with zero
 * bias, class token 0, pos_embedding N(0, 0.02), attention in_proj xavier-uniform and
 * out_proj U(+-1/sqrt(C)) with zero biases, MLP xavier-uniform with N(0, 1e-6) biases,
 * LayerNorm 1 and 0, head all zeros. */
void graft_vit_init_weights(graft_vit *m, uint64_t seed);
void graft_vit_free(graft_vit *m);

/* Forward over images x [B, in_ch*H*W]; with targets [B] (< 0 ignored) returns the mean
 * cross-entropy, else 0. Logits [B, K] in m->logits. training=1 applies dropout. */
float graft_vit_forward(graft_vit *m, const float *x, const int32_t *targets, int B, int training);
/* Backward of the last forward's mean loss times loss_scale; adds into the trainable
 * parameters' gradients, announcing each as it becomes final. */
void graft_vit_backward(graft_vit *m, float loss_scale);

/* Names of older torchvision files (encoder_layer_N.mlp.linear_1/linear_2, before its
 * MLPBlock version 2) mapped to mlp.0/mlp.3; other names as they are. */
const char *graft_vit_map_name(const char *file_name, char *buf, size_t size);

#endif
