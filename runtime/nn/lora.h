/* Low-rank adapters (LoRA, with Hugging Face PEFT's semantics) on linear layers:
 *   y = x·Wᵀ + b + (alpha / rank) · dropout(x)·Aᵀ·Bᵀ
 * with A [rank, in] and B [out, rank] whatever the base weight's layout (GPT-2's Conv1D
 * stores W as [in, out]: PEFT's fan_in_fan_out). An adapter is registered right after
 * its layer's weight and bias as "<layer>.lora_A.weight" and "<layer>.lora_B.weight", so
 * it lies inside the block's (and sub-layer's) parameter range: the lowest-trainable
 * search and stop-backward see it like any trainable parameter of that layer. A starts
 * as PEFT's kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), B as 0, so a
 * fresh adapter leaves the base model's output unchanged. See docs/DESIGN.md, "LoRA". */
#ifndef GRAFT_NN_LORA_H
#define GRAFT_NN_LORA_H

#include "runtime/core/rng.h"
#include "runtime/nn/layers.h"

/* What model.lora asks for; matched[i] counts the layers targets[i] matched so far. */
typedef struct graft_lora_spec {
    int rank;
    float alpha, dropout;
    char *const *targets; /* fnmatch globs over layer names ("transformer.h.*.attn.c_attn") */
    int n_targets;
    int *matched;
} graft_lora_spec;

/* Register an adapter on linear layer l, named `layer` (its weight's name without
 * ".weight"), when spec (may be NULL) has a glob matching that name. */
graft_status graft_lora_attach(graft_linear_layer *l, graft_params *p, const char *layer,
                               graft_lora_spec *spec);

/* Initialise every adapter of the table from seed: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0. */
void graft_lora_init_all(const graft_params *p, uint64_t seed);

/* What an adapter's backward reads from its forward over N rows: u = dropout(x)·Aᵀ
 * [N, rank] and the dropout's mask [N, in] (NULL without dropout). Either NULL in a
 * forward-only pass: the scratch then holds them. */
typedef struct graft_lora_acts {
    float *u, *mask;
} graft_lora_acts;

/* Scratch floats an adapter's forward and backward over N rows of `in` inputs need. */
size_t graft_lora_scratch_floats(size_t N, int in, int rank, float dropout);

/* The layer's forward (base, then its adapter if it has one). rng: the pass's dropout
 * draws (NULL: no dropout). */
void graft_linear_lora_forward(const graft_linear_layer *l, const graft_params *p, float *out,
                               const float *x, int N, const graft_lora_acts *a, float *scratch,
                               graft_rng *rng);
/* Its backward: adds into dx (NULL: not needed) and the trainable gradients, reporting
 * them ready. dropped: the forward drew dropout (its rng was not NULL). */
void graft_linear_lora_backward(const graft_linear_layer *l, const graft_params *p, float *dx,
                                const float *dout, const float *x, int N, const graft_lora_acts *a,
                                float *scratch, int dropped);

/* w += scale · B·A for one adapter: w [out, in], or [in, out] when fan_in_fan_out (the
 * product transposed), a [r, in], b [out, r]. */
void graft_lora_merge_weight(float *w, const float *a, const float *b, int out, int in, int r,
                             float scale, int fan_in_fan_out);
/* The same for every adapter of the table (each with its alpha / rank), in `values`:
 * the table's own or a copy laid out alike. The base weight of "<layer>.lora_A.weight"
 * is "<layer>.weight". */
void graft_lora_merge(const graft_params *p, float *values);

#endif
