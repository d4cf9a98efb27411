/* BERT, Hugging Face's BertForSequenceClassification or BertForMaskedLM exactly: word +
 * learned position + token-type embeddings -> LayerNorm; post-LN encoder layers
 * (self-attention with a key padding mask -> dense -> residual -> LayerNorm, dense ->
 * erf gelu -> dense -> residual -> LayerNorm), LayerNorm eps 1e-12; then either
 *   classification: pooler (tanh(dense(h[:, 0]))) -> dropout -> classifier [K, H], or
 *   masked LM:      dense -> gelu -> LayerNorm -> decoder tied to the word embeddings
 *                   + cls.predictions.bias.
 * Parameter names are Hugging Face's:
 *   bert.embeddings.{word,position,token_type}_embeddings.weight, bert.embeddings.LayerNorm.*,
 *   bert.encoder.layer.N.attention.self.{query,key,value}.*, ...attention.output.dense.*,
 *   ...attention.output.LayerNorm.*, ...intermediate.dense.*, ...output.dense.*,
 *   ...output.LayerNorm.*, then bert.pooler.dense.* and classifier.*, or
 *   cls.predictions.transform.dense.*, cls.predictions.transform.LayerNorm.*,
 *   cls.predictions.bias and the aliases cls.predictions.decoder.{weight,bias}.
 * The word embedding's row 0 (pad_token_id, nn.Embedding's padding_idx) gets no gradient
 * from the lookup, only from the tied decoder.
 * Stop-backward: nothing below the lowest stage (embeddings, a layer, the head's two
 * halves) with a trainable parameter is differentiated, and the frozen layers below it
 * run forward in one shared set of scratch buffers.
 * The last layer computes only the R rows its head reads: each [CLS] token, or the
 * labelled positions of the masked LM (every position without labels); its keys and
 * values still come from every position, so the results are Hugging Face's. */
#ifndef GRAFT_BERT_H
#define GRAFT_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "models/model.h"
#include "runtime/core/arena.h"
#include "runtime/core/rng.h"
#include "runtime/nn/embeddings.h"
#include "runtime/nn/layers.h"
#include "runtime/nn/params.h"
#include "runtime/nn/transformer.h"

typedef struct graft_bert_config {
    int n_layer, n_head, n_embd, n_positions; /* intermediate size is 4 * n_embd */
    int vocab_size, type_vocab_size;
    int seq_len;       /* T of every sample; at most n_positions */
    int num_classes;   /* > 0: sequence classification; 0: masked LM */
    int mask_token_id; /* masked LM through graft_bert_forward_tokens */
    int pad_id;        /* graft_bert_forward_tokens: a row's trailing run of this id is
                          padding (attention mask 0); -1: no padding */
    /* Hugging Face's hidden_dropout_prob and attention_probs_dropout_prob while training
     * (after the embeddings, both dense outputs of each layer and the pooler, and on the
     * attention probabilities). */
    float dropout;
    graft_lora_spec *lora; /* adapters to attach (read by init only); NULL: none */
} graft_bert_config;

typedef struct graft_bert {
    graft_bert_config cfg;
    graft_params params;
    graft_embeddings emb;                  /* bert.embeddings.* */
    int word;                              /* emb.word: also the MLM decoder's weight */
    graft_transformer *layers;             /* n_layer, bert.encoder.layer.N */
    graft_linear_layer pooler, classifier; /* classification */
    graft_linear_layer transform;          /* masked LM */
    graft_layernorm_layer transform_ln;
    int mlm_bias;
    /* the head's two blocks: the pooler (MLM: transform and its LayerNorm), then the
     * classifier (MLM: cls.predictions.bias, the decoder's weight being the word table) */
    graft_param_range head_ranges[2];
    /* set by build from the trainable set */
    int max_batch;
    int lowest; /* the lowest block with a trainable parameter: 0 the embeddings, 1..L the
                   layers, L+1 pooler/transform, L+2 classifier/decoder; L+3 when none */
    graft_arena arena;
    graft_transformer_acts *acts;  /* n_layer */
    graft_transformer_acts shared; /* the frozen layers' below the lowest trainable one */
    graft_transformer_work work;
    float **hidden; /* n_layer + 1: embeddings output, then each layer's output */
    float *last_in; /* the last layer's input rows [R, C] when it computes R < BT rows */
    int32_t *ids, *type_ids, *mlm_labels, *pad_mask; /* [BT] */
    int32_t *rows, *row_labels; /* the R rows the head reads (and their MLM labels) */
    uint8_t *key_mask;          /* [BT] */
    /* classification head, rows [B] */
    float *pooled, *pool_mask, *pooled_drop;
    /* masked-LM head, rows [R] */
    float *tr_fc, *tr_gelu, *tr_out, *tr_mean, *tr_rstd;
    float *logits, *probs; /* [B, K] or [R, V]; the MLM logits turn into dlogits in backward */
    /* backward scratch */
    float *dlogits;           /* [B, K] (classification) */
    float *dhead_a, *dhead_b; /* [R, C] */
    float *dh_a, *dh_b;       /* the residual stream's gradient [BT, C], ping-pong */
    float *dq;                /* work.wide_b, the layers' q/k/v gradients: NULL when no
                                 layer runs a backward */
    graft_rng rng;            /* dropout and MLM masking, reseeded every step */
    /* the last forward */
    graft_transformer_pass pass, last_pass; /* every layer's but the last, the last's */
    int batch, n_rows /* R */, counted, dropout_applied, has_key_mask;
    const int32_t *labels;
} graft_bert;

/* Register the parameters (not allocated: set trainable flags, finalize the table,
 * then graft_bert_build). Bad sizes are GRAFT_ERR_CONFIG with one logged line. */
graft_status graft_bert_init(graft_bert *m, const graft_bert_config *cfg);
/* Plan activations for max_batch samples of seq_len tokens for the table's current
 * trainable set (the table must be finalized); may be called again after unfreezing. */
graft_status graft_bert_build(graft_bert *m, int max_batch);
/* BertPreTrainedModel._init_weights: linear and embedding weights ~ N(0, 0.02), biases
 * 0, LayerNorm 1/0, the padding row (id 0) of the word embeddings 0. */
void graft_bert_init_weights(graft_bert *m, uint64_t seed);
void graft_bert_free(graft_bert *m);

/* Forward over B <= max_batch rows of ids [B, T] with token_type_ids [B, T] (NULL =
 * zeros) and attention_mask [B, T] (1 = real token, 0 = padding; NULL = all real);
 * ids and types must be in range. labels: classification [B] (-1 = ignored), masked LM
 * [B, T] (negative = ignored), or NULL. Returns the mean cross-entropy over counted
 * labels (0 without labels). m->logits then holds [B, K], or for the masked LM [R, V]:
 * the R = m->n_rows labelled positions in row-major order (every position when labels
 * is NULL; none, and nothing computed, when no label counts); the MLM logits are valid
 * until the next backward. training=1 applies dropout. */
float graft_bert_forward(graft_bert *m, const int32_t *ids, const int32_t *token_type_ids,
                         const int32_t *attention_mask, const int32_t *labels, int B, int training);
/* The generic-interface forward on tokens [B, T], each row padded at its end with pad_id
 * (when >= 0) as sequence datasets are. Classification: labels [B]. Masked LM (labels
 * not NULL): BERT's masking drawn from m->rng when training (from a hash of
 * the tokens when not, so evaluation is repeatable): 15 % of positions are chosen, of
 * those 80 % become mask_token_id, 10 % a random token, 10 % stay; the loss is on the
 * chosen positions and `labels` (the loader's next tokens) are not used. */
float graft_bert_forward_tokens(graft_bert *m, const int32_t *tokens, const int32_t *labels, int B,
                                int training);
/* Backward of the last forward's mean loss times loss_scale; accumulates into the
 * trainable parameters' gradients, down to the lowest trainable stage only. */
void graft_bert_backward(graft_bert *m, float loss_scale);

/* model.arch bert for a token dataset: sizes from model.n_layer/n_head/n_embd/n_positions
 * (the registry resolves 0 to BERT-base's 12/12/768/512), vocabulary from model.vocab_size
 * or the dataset, sequence classification when the dataset has classes or
 * model.head.num_classes > 0, otherwise masked LM. */
graft_status graft_bert_create(graft_model *out, const graft_config *cfg,
                               const graft_model_input *input);

/* Feature extraction (models/model.h, graft_model_split), classifiers only: the
 * boundary is the pooler's input (the last layer's [CLS] rows) or, when only the
 * classifier trains, its input (the pooled rows, before dropout); n_embd floats a sample. */
void graft_bert_split(const graft_bert *m, graft_model_split *out);
void graft_bert_prefix_forward(graft_bert *m, const int32_t *tokens, int B, float *features);
float graft_bert_forward_features(graft_bert *m, const float *features, const int32_t *labels,
                                  int B, int training);

#endif
