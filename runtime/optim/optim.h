/* Optimizers (SGD, AdamW), parameter groups, global grad-norm clipping and
 * learning-rate schedules, all over the flat buffers of the parameter table.
 *
 * Optimizer state lives in flat float buffers parallel to params->grads: the same
 * length (n_grads) and the same offsets (param->grad_offset), so a bucket range of
 * the gradient buffer is the same range of every state buffer. All state buffers
 * are one allocation (buffer k starts at state + k*n), so a checkpoint can save
 * or restore them as one array.
 *
 * The update formulas follow torch.optim.SGD and torch.optim.AdamW (default,
 * single-tensor path, no amsgrad/maximize), in the same order of operations:
 *   SGD:   d = g + wd*w;  buf = d on the first step, else buf = momentum*buf + (1-dampening)*d;
 *          d = nesterov ? d + momentum*buf : buf  (when momentum != 0);  w -= lr*d
 *   AdamW: w *= 1 - lr*wd;  m += (1-beta1)*(g - m);  v = beta2*v + (1-beta2)*g*g;
 *          w -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * where lr = (scheduled lr) * group.lr_scale and wd = group.weight_decay.
 * Gradients are read, never modified. Only trainable parameters are updated:
 * frozen parameters and buffers are left bit-for-bit unchanged. */
#ifndef GRAFT_OPTIM_H
#define GRAFT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"
#include "runtime/nn/params.h"

#define GRAFT_OPTIM_MAX_GROUPS 16

typedef enum { GRAFT_OPTIM_SGD = 0, GRAFT_OPTIM_ADAMW = 1 } graft_optim_kind;

/* One parameter group: parameters with param->group == its index use it. */
typedef struct graft_optim_group {
    double lr_scale;     /* multiplier on the scheduled lr (1 = unchanged) */
    double weight_decay; /* SGD: coupled (g += wd*w); AdamW: decoupled (w *= 1 - lr*wd) */
} graft_optim_group;

/* The learning rate itself is not here: it is passed to every step (from
 * graft_lr_at), so the schedule is its one source. Hyper-parameters are doubles,
 * like torch's Python floats: 1 - beta2 is formed in double before it meets the
 * float tensors (1 - 0.999f would be off by 1.3e-5 relative). */
typedef struct graft_optim_config {
    graft_optim_kind kind;
    /* SGD */
    double momentum;  /* 0 = plain SGD (no state buffer) */
    double dampening; /* torch's dampening; must be 0 with nesterov */
    int nesterov;     /* needs momentum > 0 */
    /* AdamW */
    double beta1, beta2, eps;
    /* Weight decay of the default group (group 0) when n_groups == 0. */
    double weight_decay;
    /* n_groups == 0: one group {lr_scale 1, weight_decay}. Otherwise groups[0..n_groups)
     * are used as given (graft_optim_config_add_group fills them). */
    int n_groups;
    graft_optim_group groups[GRAFT_OPTIM_MAX_GROUPS];
} graft_optim_config;

typedef struct graft_optim {
    graft_optim_config cfg; /* copy, with groups resolved (cfg.n_groups >= 1) */
    int64_t step;           /* steps taken; AdamW bias correction uses it (after ++) */
    size_t n;               /* floats per state buffer (params->n_grads at init) */
    int n_bufs;             /* 0 plain SGD, 1 SGD with momentum, 2 AdamW */
    float *state;           /* n_bufs * n floats, owned, zeroed at init; NULL if n_bufs*n == 0 */
    /* Per parameter (table index): the value of `step` when it became trainable. Its own
     * step count, as torch keeps one per parameter, is step - start[i]: a parameter
     * unfrozen mid-run starts with fresh AdamW bias corrections / SGD momentum. */
    int64_t *start;
    int n_params;
} graft_optim;

/* torch defaults for `kind`: SGD momentum 0, dampening 0, no nesterov, wd 0;
 * AdamW betas (0.9, 0.999), eps 1e-8, wd 0.01; no explicit groups. */
void graft_optim_config_default(graft_optim_config *cfg, graft_optim_kind kind);
/* Append a group and return its index, or -1 (logged) when the table is full. If
 * no group exists yet, group 0 is first made from cfg->weight_decay and lr_scale 1,
 * so the first call returns 1. */
int graft_optim_config_add_group(graft_optim_config *cfg, double lr_scale, double weight_decay);
/* Check hyper-parameters (ranges as torch checks them, plus group values); logs
 * the first problem and returns GRAFT_ERR_CONFIG. */
graft_status graft_optim_config_check(const graft_optim_config *cfg);

/* Set up an optimizer for the finalized table `p`: validates cfg and every
 * trainable parameter's group index, allocates zeroed state. `p` is not kept. */
graft_status graft_optim_init(graft_optim *o, const graft_optim_config *cfg, const graft_params *p);
/* One update of every trainable parameter of `p` from p->grads with learning rate
 * `lr` (>= 0; scaled per group). Checks everything before touching anything:
 * on error nothing changed. `p` must be the table (layout) given to init. */
graft_status graft_optim_step(graft_optim *o, graft_params *p, float lr);
/* After graft_params_unfreeze (gradual unfreezing): lay the state out for the new
 * trainable set. old_offsets is what graft_params_unfreeze reported: parameters that
 * were trainable keep their state, the newly trainable ones start from zero state with
 * start = step. On error nothing changed. */
graft_status graft_optim_relayout(graft_optim *o, const graft_params *p, const size_t *old_offsets);
/* Zero the state and the step counter (e.g. after re-freezing). */
void graft_optim_reset(graft_optim *o);
/* Releases the state; safe on NULL and on a zeroed or already-freed optimizer. */
void graft_optim_free(graft_optim *o);

/* State buffer `which` (0 .. n_bufs-1) as a whole (n floats), or NULL. */
float *graft_optim_state_buf(const graft_optim *o, int which);
/* torch name of state buffer `which`: "momentum_buffer", "exp_avg", "exp_avg_sq"; NULL if none. */
const char *graft_optim_state_name(const graft_optim *o, int which);
/* The slice of state buffer `which` belonging to parameter `index` (numel floats),
 * or NULL for frozen parameters, buffers, or a missing state buffer. */
float *graft_optim_param_state(const graft_optim *o, const graft_params *p, int index, int which);

/* Put every parameter (kind PARAM) whose name matches the glob (fnmatch syntax) into
 * group `group_index` (>= 0). *matched (may be NULL) receives how many matched;
 * matching nothing is not an error here (the caller decides). Works before or after
 * finalize; an optimizer checks group indices again at each step. */
graft_status graft_optim_assign_group(graft_params *p, const char *glob, int group_index,
                                      int *matched);
/* Put every 1-D parameter (biases, norm weights) into group `group_index`, usually
 * a group with weight_decay 0 (the common "no decay on biases and norms" rule). */
graft_status graft_optim_assign_no_decay(graft_params *p, int group_index, int *matched);

/* "sgd" / "adamw" (case-insensitive) to a kind; GRAFT_ERR_CONFIG (logged) otherwise. */
graft_status graft_optim_kind_parse(const char *name, graft_optim_kind *out);
const char *graft_optim_kind_name(graft_optim_kind kind);

/* ---- gradient clipping ---------------------------------------------------------- */

/* Sum of squares of n floats, accumulated in double (for a norm over shards: add
 * the per-rank sums, then sqrt). */
double graft_grad_sq_sum(const float *grads, size_t n);
/* Global L2-norm clipping with torch.nn.utils.clip_grad_norm_ semantics: returns the
 * total norm before clipping; when max_norm > 0 and coef = max_norm/(norm + 1e-6) < 1
 * the vector is scaled by coef. max_norm <= 0 only measures. A non-finite norm is
 * returned without scaling (the caller should skip the step). */
float graft_grad_clip_norm(float *grads, size_t n, float max_norm);

/* ---- learning-rate schedules ---------------------------------------------------- */

typedef enum { GRAFT_LR_CONSTANT = 0, GRAFT_LR_COSINE = 1, GRAFT_LR_LINEAR = 2 } graft_lr_kind;

/* Hugging Face semantics (get_*_schedule_with_warmup, with a floor min_lr):
 *   step < warmup_steps:  lr = base_lr * step / warmup_steps   (so step 0 gives 0)
 *   then, with p = (step - warmup) / (total - warmup) clamped to [0, 1]:
 *     CONSTANT  base_lr                                 (total_steps, min_lr unused)
 *     COSINE    min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * p))
 *     LINEAR    min_lr + (base_lr - min_lr) * (1 - p)
 *   so step >= total_steps gives min_lr. A warmup as long as the run or longer never
 *   finishes (the rate stays below base_lr), as in PyTorch and Hugging Face. */
typedef struct graft_lr_schedule {
    graft_lr_kind kind;
    double base_lr;
    long warmup_steps;
    long total_steps;
    double min_lr;
} graft_lr_schedule;

/* Learning rate for optimizer step `step` (0-based; negative counts as 0). */
float graft_lr_at(const graft_lr_schedule *s, long step);
/* Rejects base_lr <= 0 or non-finite, min_lr < 0 or > base_lr, negative steps,
 * total_steps <= 0 for decaying schedules; the logged message names the field and its
 * value. Returns GRAFT_ERR_CONFIG then. */
graft_status graft_lr_schedule_check(const graft_lr_schedule *s);
/* "constant" / "cosine" / "linear" (case-insensitive) to a kind; GRAFT_ERR_CONFIG otherwise. */
graft_status graft_lr_kind_parse(const char *name, graft_lr_kind *out);
const char *graft_lr_kind_name(graft_lr_kind kind);

#endif
