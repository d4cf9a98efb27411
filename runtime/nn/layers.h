/* Reusable layers: each registers its parameters in the table under a name prefix
 * and offers a forward/backward pair over its slice of the table. Gradients of
 * frozen parameters are NULL in the table, so backward skips them for free. */
#ifndef GRAFT_LAYERS_H
#define GRAFT_LAYERS_H

#include "runtime/core/rng.h"
#include "runtime/nn/params.h"
#include "runtime/ops/ops.h"

/* Linear layer "<prefix>.weight" [out, in] (or [in, out] for GPT-2 Conv1D) and
 * optional "<prefix>.bias" [out]. */
typedef struct graft_linear_layer {
    int weight, bias; /* indices in the table; bias = -1 when absent */
    int in, out;
    graft_wlayout layout;
    /* Its LoRA adapter (runtime/nn/lora.h): A and B's indices, -1 when it has none. */
    struct {
        int a, b, rank;
        float scale, dropout; /* alpha / rank; dropout on the adapter's input */
    } lora;
} graft_linear_layer;

graft_status graft_linear_layer_add(graft_linear_layer *l, graft_params *p, const char *prefix,
                                    int in, int out, int has_bias, graft_wlayout layout);
/* The same with whole names (torch's MultiheadAttention.in_proj_weight / in_proj_bias);
 * bias_name NULL: no bias. */
graft_status graft_linear_layer_add_named(graft_linear_layer *l, graft_params *p,
                                          const char *weight_name, const char *bias_name, int in,
                                          int out, graft_wlayout layout);
/* torch.nn.Linear's default init: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
void graft_linear_layer_init(const graft_linear_layer *l, const graft_params *p, graft_rng *rng);
void graft_linear_layer_forward(const graft_linear_layer *l, const graft_params *p, float *out,
                                const float *inp, int B);
/* din may be NULL (nothing below needs it). */
void graft_linear_layer_backward(const graft_linear_layer *l, const graft_params *p, float *din,
                                 const float *dout, const float *inp, int B);
/* 1 when the weight, the bias or an adapter matrix is trainable. */
int graft_linear_layer_trainable(const graft_linear_layer *l, const graft_params *p);

/* LayerNorm over rows of C: "<prefix>.weight" and "<prefix>.bias" [C]. */
typedef struct graft_layernorm_layer {
    int weight, bias; /* indices in the table */
    int C;
    float eps;
} graft_layernorm_layer;

graft_status graft_layernorm_layer_add(graft_layernorm_layer *l, graft_params *p,
                                       const char *prefix, int C, float eps);
/* weight 1, bias 0 (torch's init). */
void graft_layernorm_layer_init(const graft_layernorm_layer *l, const graft_params *p);
/* out [rows, C]; mean and rstd [rows] are saved for the backward. */
void graft_layernorm_layer_forward(const graft_layernorm_layer *l, const graft_params *p,
                                   float *out, float *mean, float *rstd, const float *inp,
                                   int rows);
/* Accumulates into dinp (NULL: not needed) and the trainable weight and bias, then
 * reports them ready. */
void graft_layernorm_layer_backward(const graft_layernorm_layer *l, const graft_params *p,
                                    float *dinp, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, int rows);

#endif
