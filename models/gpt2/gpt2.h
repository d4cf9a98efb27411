/* GPT-2 language model, Hugging Face's GPT2LMHeadModel exactly: learned positions,
 * pre-LN blocks (ln_1 -> causal self-attention -> residual, ln_2 -> MLP with gelu_new ->
 * residual), ln_f, and an lm_head tied to the token embedding. Parameter names and
 * layouts are Hugging Face's (Conv1D weights stored [in, out]):
 *   transformer.wte.weight [V, C], transformer.wpe.weight [n_positions, C],
 *   transformer.h.N.ln_1.{weight,bias}, transformer.h.N.attn.c_attn.{weight [C, 3C],bias},
 *   transformer.h.N.attn.c_proj.*, transformer.h.N.ln_2.*, transformer.h.N.mlp.c_fc.*
 *   [C, 4C], transformer.h.N.mlp.c_proj.* [4C, C], transformer.ln_f.*,
 *   and lm_head.weight, an alias of transformer.wte.weight.
 * The forward/backward is llm.c's, with stop-backward: nothing below the lowest
 * trainable parameter is differentiated, and frozen blocks below it run forward in
 * shared scratch memory. */
#ifndef GRAFT_GPT2_H
#define GRAFT_GPT2_H

#include <stddef.h>

#include "models/model.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/embeddings.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/params.h"
#include "runtime/nn/transformer.h"

typedef struct graft_gpt2_config {
    int n_layer, n_head, n_embd, n_positions;
    int vocab_size;
    int seq_len; /* T of every sample; at most n_positions */
    /* Hugging Face's embd_pdrop, resid_pdrop and attn_pdrop (after wte+wpe, attn.c_proj and
     * mlp.c_proj, and on the attention probabilities) while training. */
    float dropout;
    graft_lora_spec *lora; /* adapters to attach (read by init only); NULL: none */
} graft_gpt2_config;

typedef struct graft_gpt2 {
    graft_gpt2_config cfg;
    graft_params params;
    graft_embeddings emb;      /* wte, wpe */
    int wte;                   /* emb.word: also the tied lm_head's weight */
    graft_transformer *blocks; /* n_layer, transformer.h.N */
    graft_layernorm_layer ln_f;
    graft_param_range ln_f_range;
    /* set by build from the trainable set */
    int max_batch;
    int lowest_unit; /* the lowest block with a trainable parameter: 0 the embeddings,
                        1 + l block l, n_layer + 1 ln_f; n_layer + 2 none */
    int first_kept;  /* blocks from here up keep activations for backward; the frozen ones
                        below share one set and update the stream in place in hidden[0] */
    graft_arena arena;
    graft_transformer_acts *acts; /* n_layer */
    graft_transformer_work work;
    float **hidden; /* n_layer + 1 [BT, C]: the embeddings, then each block's output */
    float *ln_f_out, *ln_f_mean, *ln_f_rstd;
    float *logits, *probs; /* [BT, V]; logits turns into dlogits in backward */
    float *dres, *dln;     /* backward: the residual stream's gradient, scratch [BT, C] */
    graft_rng dropout_rng;
    /* the last forward */
    graft_transformer_pass pass;
    const int32_t *tokens, *targets;
    int batch, counted, dropout_applied;
} graft_gpt2;

/* model.arch gpt2 for a token dataset, made by the registry (graft_model_create): sizes
 * from model.n_layer/n_head/n_embd/n_positions, 0 taking the registry's GPT-2 small
 * defaults (12/12/768/1024), vocabulary from model.vocab_size or the dataset, T =
 * data.seq_len. Bad combinations are GRAFT_ERR_CONFIG with one line. */
graft_status graft_gpt2_create(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input);
/* The registry's create function: the same with every size given. */
graft_status graft_gpt2_create_sized(graft_model *out, const graft_config *cfg,
                                     const graft_model_input *input);

/* Check cfg and register the parameters (not allocated). */
graft_status graft_gpt2_init(graft_gpt2 *m, const graft_gpt2_config *cfg);
/* Plan activations for the current trainable set and micro-batches of up to max_batch
 * sequences (finalizes the table if the caller has not). Callable again after more
 * parameters became trainable; parameter values are kept. */
graft_status graft_gpt2_build(graft_gpt2 *m, int max_batch);
/* Hugging Face's init: N(0, 0.02) for embeddings and Conv1D weights, N(0, 0.02 /
 * sqrt(2 n_layer)) for the c_proj weights, zero biases, LayerNorm 1 and 0. */
void graft_gpt2_init_weights(graft_gpt2 *m, uint64_t seed);
void graft_gpt2_free(graft_gpt2 *m);

/* Forward over tokens [B, T] (ids < vocab_size). With targets [B, T] (-1 = ignored)
 * returns the mean cross-entropy over counted targets, else 0. Logits [B*T, V] stay in
 * m->logits until the next backward. training=1 applies dropout. */
float graft_gpt2_forward(graft_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                         int training);
/* Backward of the last forward's mean loss times loss_scale; adds into the trainable
 * parameters' gradients, announcing each as it becomes final. */
void graft_gpt2_backward(graft_gpt2 *m, float loss_scale);

/* Names of a Hugging Face hub file (bare GPT2Model: "h.0.attn.c_attn.weight") mapped to
 * ours; NULL for the causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias. */
const char *graft_gpt2_map_name(const char *file_name, char *buf, size_t size);

/* Feature extraction (models/model.h, graft_model_split): the boundary is the residual
 * stream entering the lowest trainable unit (a block's input, or ln_f's when only ln_f
 * trains), seq_len x n_embd floats a window; none when the embeddings (and so the tied
 * lm_head) train, or with dropout. */
void graft_gpt2_split(const graft_gpt2 *m, graft_model_split *out);
void graft_gpt2_prefix_forward(graft_gpt2 *m, const int32_t *tokens, int B, float *features);
float graft_gpt2_forward_features(graft_gpt2 *m, const float *features, const int32_t *targets,
                                  int B, int training);

#endif
