/* CPU fp32 kernels, each a forward/backward pair on raw pointers (llm.c style).
 *
 * Conventions for every kernel here:
 * - Tensors are row-major and contiguous; shapes are spelled out in the arguments.
 * - No hidden allocation: scratch memory, when needed, is passed in and its size
 *   comes from a *_scratch_floats() helper.
 * - Backward ACCUMULATES (+=) into every gradient output, so callers zero gradient
 *   buffers once per step and residual branches simply add up.
 * - A gradient output that is NULL is skipped: NULL weight/bias gradients mean the
 *   parameter is frozen, a NULL input gradient means nothing below needs it
 *   ("stop-backward").
 */
#ifndef GRAFT_OPS_H
#define GRAFT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/rng.h"

/* ---- linear ------------------------------------------------------------- */

/* Weight layouts: torch nn.Linear stores [OC, IC]; GPT-2's Conv1D stores [IC, OC]. */
typedef enum { GRAFT_W_OUT_IN = 0, GRAFT_W_IN_OUT = 1 } graft_wlayout;

/* out[B,OC] = inp[B,IC] · W + bias[OC] (bias may be NULL). */
void graft_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int IC, int OC, graft_wlayout layout);
/* dinp[B,IC] += dout · W;  dweight += (layout-shaped) dout^T · inp;  dbias += sum_b dout. */
void graft_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int IC, int OC,
                           graft_wlayout layout);

/* ---- conv2d (im2col + GEMM over the batch; groups = 1) ------------------------
 *
 * Activations are channel-major, [C, N, H, W]: all N images of a convolution are one
 * GEMM out [OC, N*OH*OW] = weight · col, a 1x1 stride-1 convolution is a plain GEMM
 * with no copy, and batchnorm finds each channel's values contiguous. A network's
 * input images are batch-major [N, C, H, W]: nchw_input reads inp (and writes dinp)
 * in that layout instead. */

typedef struct graft_conv2d_shape {
    int N, C, H, W;     /* input [C, N, H, W] ([N, C, H, W] when nchw_input) */
    int OC, KH, KW;     /* weight [OC, C, KH, KW] (torch layout) */
    int stride, pad;    /* same in both directions */
    int OH, OW;         /* output [OC, N, OH, OW], filled by graft_conv2d_shape_make */
    int nchw_input;     /* 0 from graft_conv2d_shape_make */
} graft_conv2d_shape;

graft_conv2d_shape graft_conv2d_shape_make(int N, int C, int H, int W, int OC, int KH, int KW,
                                           int stride, int pad);
/* Floats of scratch the forward and backward need for s->N images (im2col of a chunk
 * of images; 0 for a 1x1 stride-1 convolution of a channel-major input). */
size_t graft_conv2d_scratch_floats(const graft_conv2d_shape *s);
void graft_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                          float *scratch, const graft_conv2d_shape *s);
void graft_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, float *scratch,
                           const graft_conv2d_shape *s);

/* ---- batchnorm2d ---------------------------------------------------------- */

/* inp/out [C, M]: channel-major as for conv2d, M = N*H*W values per channel.
 * training=1: normalise with batch statistics, save mean and 1/sqrt(var+eps) per
 * channel into save_mean/save_invstd [C], and update running stats as torch does
 * (running = (1-momentum)*running + momentum*stat, with the unbiased variance).
 * training=0: normalise with the running stats (and still fill save_mean/save_invstd
 * from them, so backward works in both modes). In training, NULL running stats skip
 * their update. The output is then [relu](bn(inp) [+ residual]) (residual may be
 * NULL); out may be inp. */
void graft_batchnorm2d_forward(float *out, float *save_mean, float *save_invstd,
                               float *running_mean, float *running_var, const float *inp,
                               const float *weight, const float *bias, const float *residual,
                               int relu, int C, size_t M, float momentum, float eps, int training);
/* training selects which statistics the forward used (batch stats carry gradient).
 * dout is the gradient w.r.t. the normalised values (before any residual and ReLU). */
void graft_batchnorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *save_mean,
                                const float *save_invstd, int C, size_t M, int training);
/* out [C, M] = [relu](inp * scale[c] + shift[c] [+ residual]): a batchnorm with fixed
 * statistics folded into one scale and shift per channel; out may be inp. */
void graft_batchnorm2d_apply(float *out, const float *inp, const float *scale, const float *shift,
                             const float *residual, int relu, int C, size_t M);

/* ---- layernorm -------------------------------------------------------------- */

/* inp/out [N, C], normalised over C; mean/rstd [N] saved for backward.
 * A NULL weight counts as all ones, a NULL bias as all zeros. */
void graft_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int N, int C, float eps);
void graft_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C);

/* Low-rank adapter beside a linear layer (LoRA): A [r, IC] and B [OC, r] in torch's
 * layout whatever the base weight's. Forward: u[N,r] = x·Aᵀ (kept for the backward),
 * out[N,OC] += scale · u·Bᵀ. Backward, from dout [N,OC]: du[N,r] = scale · dout·B
 * (scratch), dB += scale · doutᵀ·u, dA += duᵀ·x, dx += du·A; NULL outputs are
 * skipped. Four thin GEMMs, no element loops. */
void graft_lora_forward(float *out, float *u, const float *x, const float *A, const float *B,
                        int N, int IC, int OC, int r, float scale);
void graft_lora_backward(float *dx, float *dA, float *dB, float *du, const float *dout,
                         const float *x, const float *u, const float *A, const float *B, int N,
                         int IC, int OC, int r, float scale);

/* ---- activations, dropout, residual ---------------------------------------- */

void graft_relu_forward(float *out, const float *inp, size_t n);
/* Uses the forward output (out > 0 exactly where inp > 0), so inp need not be kept. */
void graft_relu_backward(float *dinp, const float *dout, const float *out, size_t n);

/* out may be inp. Vectorised code, not libm: the erf form's values are within a few
 * ulp of 0.5 * x * erfc(-x / sqrt2) (relative, also in the negative tail). */
typedef enum { GRAFT_GELU_ERF = 0, GRAFT_GELU_TANH = 1 } graft_gelu_kind;
void graft_gelu_forward(float *out, const float *inp, size_t n, graft_gelu_kind kind);
void graft_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                         graft_gelu_kind kind);
/* out[i] = erf(inp[i]) (out may be inp), within ~1e-7 of erff: the erf GELU's own. */
void graft_erf(float *out, const float *inp, size_t n);

/* Inverted dropout: mask[i] = 0 or 1/(1-p), drawn from rng; out = inp * mask.
 * p <= 0 copies, fills mask with 1 and draws nothing. Relu, dropout and residual
 * forwards may run in place (out == inp). */
void graft_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p,
                           graft_rng *rng);
void graft_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* out = a + b. */
void graft_residual_forward(float *out, const float *a, const float *b, size_t n);
void graft_residual_backward(float *da, float *db, const float *dout, size_t n);

/* ---- pooling ------------------------------------------------------------------ */

typedef struct graft_pool2d_shape {
    int N, C, H, W;      /* input */
    int K, stride, pad;  /* square window */
    int OH, OW;          /* output, filled by graft_pool2d_shape_make (floor mode) */
} graft_pool2d_shape;

graft_pool2d_shape graft_pool2d_shape_make(int N, int C, int H, int W, int K, int stride,
                                           int pad);
/* argmax [N, C, OH, OW] records the input offset (within its H*W plane) of each max;
 * ties go to the first cell in row-major order and NaN wins, as in torch. */
void graft_maxpool2d_forward(float *out, int32_t *argmax, const float *inp,
                             const graft_pool2d_shape *s);
void graft_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax,
                              const graft_pool2d_shape *s);
/* Average over the window including padding (torch's count_include_pad=True). */
void graft_avgpool2d_forward(float *out, const float *inp, const graft_pool2d_shape *s);
void graft_avgpool2d_backward(float *dinp, const float *dout, const graft_pool2d_shape *s);

/* torch AdaptiveAvgPool2d: inp [N, C, H, W] -> out [N, C, OH, OW]. */
void graft_adaptive_avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W,
                                      int OH, int OW);
void graft_adaptive_avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H,
                                       int W, int OH, int OW);

/* ---- embedding ---------------------------------------------------------------- */

/* out[n, :] = table[ids[n], :] for n < count; table [V, C]. ids are checked by the
 * caller (data loader) to be in [0, V). */
void graft_embedding_forward(float *out, const int32_t *ids, const float *table, size_t count,
                             int C);
void graft_embedding_backward(float *dtable, const float *dout, const int32_t *ids,
                              size_t count, int C);

/* ---- multi-head attention ------------------------------------------------------ */

/* Dropout on the attention probabilities (Hugging Face's attn_pdrop and
 * attention_probs_dropout_prob, with torch's semantics): keep bits m ~ Bernoulli(1 - p)
 * and out = (P * m / (1 - p)) v. probs still receives P itself (the softmax backward
 * needs it): the keep bits are stored one per probability and the dropped rows rebuilt
 * in scratch. A NULL dropout, or p = 0, draws nothing and changes no result bit. */
typedef struct graft_attention_dropout {
    float p;        /* in [0, 1) */
    graft_rng *rng; /* forward: one graft_rng_u64 per two probabilities a query may see */
    uint64_t *keep; /* [B, NH, T] rows of graft_attention_keep_words(T) words, bit j of a
                       row keeping key j: the forward writes them, the backward reads them;
                       NULL in a forward that no backward follows */
    float *scratch; /* forward: graft_attention_scratch_floats(T) floats */
} graft_attention_dropout;
size_t graft_attention_keep_words(int T);

/* Scaled dot-product attention over NH heads of size HS (C = NH*HS).
 * q, k, v point at [B, T, *] rows whose consecutive tokens are `stride` floats apart
 * (stride = C for separate projections, 3C for GPT-2's fused c_attn output with
 * k = q + C, v = q + 2C). Head h uses columns [h*HS, (h+1)*HS).
 * out [B, T, C] (contiguous); probs [B, NH, T, T] saved for backward.
 * key_mask [B, T] (may be NULL): 0 marks a padding key that no query attends to.
 * causal=1: query t attends to keys <= t. A query with no visible key outputs 0. */
void graft_attention_forward(float *out, float *probs, const float *q, const float *k,
                             const float *v, int stride, const uint8_t *key_mask, int B, int T,
                             int NH, int HS, int causal, const graft_attention_dropout *dropout);
/* dq/dk/dv use the same stride as q/k/v (they may alias one fused [B,T,3C] buffer).
 * scratch: graft_attention_scratch_floats(T) floats. dropout: the forward's (its p and
 * keep bits), or NULL. */
size_t graft_attention_scratch_floats(int T);
void graft_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              const float *probs, float *scratch, int stride, int B, int T,
                              int NH, int HS, const graft_attention_dropout *dropout);

/* The dropout of one query row, for kernels that compute attention rows themselves
 * (BERT's last layer): draws keep bits for keys [0, n) and writes bits [0, width) of
 * keep (NULL: not kept; bits from n on are 0) and dropped[j] = kept ? probs[j] : 0 for
 * j < width. The 1 / (1 - p) is the caller's (e.g. a GEMM's alpha). */
void graft_attention_dropout_row(float *dropped, const float *probs, uint64_t *keep, int n,
                                 int width, float p, graft_rng *rng);
/* dst[j] = bit j of keep ? src[j] : 0 for j < n (dst may be src). */
void graft_attention_keep_row(float *dst, const float *src, const uint64_t *keep, int n);

/* Bidirectional attention for a subset of query rows, as graft_attention_forward/backward
 * with causal = 0 would give on those rows (BERT's last layer computes only the rows its
 * head reads): rows[0..R) are ascending rows of [B*T] (hence grouped by sequence), q,
 * out, dq, dout [R, C] hold those rows, k, v, dk, dv [B*T, C] every row (stride C =
 * NH*HS for all), probs [R, NH, T]. key_mask [B, T] may be NULL; a padding key gets
 * probability exactly 0, a query with no visible key outputs 0. dropout as for
 * graft_attention_forward, with keep bits [R, NH] rows of graft_attention_keep_words(T)
 * words and a scratch of graft_attention_rows_scratch_floats(T) floats. The backward
 * accumulates into dq, dk, dv (each skipped when NULL); scratch: as many floats. */
size_t graft_attention_rows_scratch_floats(int T);
void graft_attention_rows_forward(float *out, float *probs, const float *q, const float *k,
                                  const float *v, const int32_t *rows, int R,
                                  const uint8_t *key_mask, int T, int NH, int HS,
                                  const graft_attention_dropout *dropout);
void graft_attention_rows_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *probs, float *scratch, const int32_t *rows, int R,
                                   const uint8_t *key_mask, int T, int NH, int HS,
                                   const graft_attention_dropout *dropout);

/* Causal attention of R new query rows, at positions first .. first+R-1, over a
 * key/value cache (generation): head h's keys and values are [n, HS] rows at
 * k + h*head_stride and v + h*head_stride, n = first + R (the new rows' own included);
 * query row r attends to positions 0 .. first+r with graft_attention_forward's softmax.
 * q rows are q_stride floats apart (head h at columns [h*HS, (h+1)*HS)); out [R, NH*HS].
 * scratch: graft_attention_cached_scratch_floats(R, n) floats. No dropout, no backward. */
size_t graft_attention_cached_scratch_floats(int R, int n);
void graft_attention_cached_forward(float *out, const float *q, int q_stride, const float *k,
                                    const float *v, size_t head_stride, int first, int R, int NH,
                                    int HS, float *scratch);

/* ---- softmax cross-entropy ---------------------------------------------------- */

/* logits [N, V], targets [N]. Rows whose target == ignore_index are skipped; a target
 * outside [0, V) that is not ignore_index is logged and skipped too (never read).
 * Fills probs [N, V] (softmax, for backward) and returns the mean loss over counted
 * rows (0 if none); *counted receives how many rows counted (may be NULL). */
float graft_cross_entropy_forward(float *probs, const float *logits, const int32_t *targets,
                                  int N, int V, int ignore_index, int *counted);
/* dlogits += scale * (probs - onehot(target)) for counted rows; pass
 * scale = dloss / counted for the gradient of the mean. */
void graft_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                                  int N, int V, int ignore_index, float scale);

#endif
