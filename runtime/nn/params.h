/* The parameter table: every parameter and buffer of a model, by canonical name.
 *
 * All values live in one flat buffer (registration = forward order). Trainable
 * parameters also get a slice of one flat gradient buffer laid out in BACKWARD
 * order (the last registered parameter first), so gradients that become final
 * together during backward are contiguous and reducer buckets are plain ranges.
 * Frozen parameters and buffers (batchnorm running stats) have no gradient storage.
 *
 * Life cycle: init -> add ... -> set_trainable ... -> finalize -> use -> free. */
#ifndef GRAFT_PARAMS_H
#define GRAFT_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

#define GRAFT_NAME_MAX 128
#define GRAFT_MAX_DIMS 4

typedef enum { GRAFT_KIND_PARAM = 0, GRAFT_KIND_BUFFER = 1 } graft_param_kind;

typedef struct graft_param {
    char name[GRAFT_NAME_MAX]; /* e.g. "layer4.1.conv2.weight", "fc.bias" */
    graft_param_kind kind;
    int ndim;
    int64_t shape[GRAFT_MAX_DIMS];
    size_t numel;
    int trainable;      /* always 0 for buffers */
    size_t offset;      /* start in values */
    size_t grad_offset; /* start in grads; meaningful only when trainable */
    int group;          /* optimizer parameter group (0 unless set) */
    /* A buffer a weights file may lack: loading sets it to 0 instead of counting it
     * missing, as PyTorch's strict load does for BatchNorm's num_batches_tracked (the
     * torchvision and timm files leave it out). */
    int zero_when_absent;
    /* A LoRA adapter matrix (runtime/nn/lora.h): GRAFT_ADAPTER_A or _B, 0 otherwise.
     * A weights file without it leaves its initial value (B = 0: the base model's
     * output), so base weights load into a model with adapters. */
    int adapter;
    int fan_in_fan_out;  /* adapters: the base weight is [in, out] (GPT-2's Conv1D) */
    float adapter_scale; /* adapters: alpha / rank, what B·A is scaled by */
} graft_param;

enum { GRAFT_ADAPTER_NONE = 0, GRAFT_ADAPTER_A = 1, GRAFT_ADAPTER_B = 2 };

/* Called during backward when the gradient slice [offset, offset+count) of the flat
 * gradient buffer is final (the reducer starts all-reducing full buckets). */
typedef void (*graft_grad_ready_fn)(void *ctx, size_t offset, size_t count);

/* A second name for a parameter (tied weights: GPT-2's lm_head.weight is
 * transformer.wte.weight). */
typedef struct graft_param_alias {
    char name[GRAFT_NAME_MAX];
    int target;
} graft_param_alias;

typedef struct graft_params {
    graft_param *items;
    int count, cap;
    graft_param_alias *aliases;
    int n_aliases;
    float *values; /* n_values floats, owned */
    size_t n_values;
    float *grads; /* n_grads floats (trainable only, backward order), owned; NULL if none */
    size_t n_grads;
    int finalized;
    graft_grad_ready_fn on_grad_ready; /* optional hook, NULL by default */
    void *on_grad_ready_ctx;
} graft_params;

void graft_params_init(graft_params *p);
/* Register a parameter or buffer (trainable by default if a parameter). Returns its
 * index, or -1 with an error logged (duplicate name, bad shape, already finalized). */
int graft_params_add(graft_params *p, const char *name, graft_param_kind kind, int ndim,
                     const int64_t *shape);
/* Another name for parameter `target` (tied weights). Saved as a copy under the alias
 * too, so PyTorch's load_state_dict(strict=True) finds it; when loading, a file tensor
 * under the alias is accepted and used only if the target's own name is absent.
 * graft_params_find does not return aliases. Returns 0, or -1 with an error logged. */
int graft_params_add_alias(graft_params *p, const char *alias, int target);
/* The parameter an alias names, or -1. */
int graft_params_find_alias(const graft_params *p, const char *alias);
/* Set trainable on every parameter whose name matches the glob (fnmatch syntax;
 * buffers are never trainable). *matched (may be NULL) receives how many matched.
 * Only before finalize. */
graft_status graft_params_set_trainable(graft_params *p, const char *glob, int trainable,
                                        int *matched);
/* Allocate the value buffer (zeroed) and the gradient buffer for trainable parameters. */
graft_status graft_params_finalize(graft_params *p);
/* After finalize (gradual unfreezing): make the parameters matching the glob trainable
 * and lay the gradient buffer out again (zeroed) for the new trainable set. If
 * old_offsets is given (count entries) it receives each parameter's previous
 * grad_offset, or SIZE_MAX where it was not trainable, so optimizer state can follow.
 * On error nothing changed. */
graft_status graft_params_unfreeze(graft_params *p, const char *glob, int *matched,
                                   size_t *old_offsets);
void graft_params_free(graft_params *p);

int graft_params_find(const graft_params *p, const char *name);
float *graft_params_value(const graft_params *p, int index);
/* NULL for frozen parameters and buffers: kernels then skip that gradient. */
float *graft_params_grad(const graft_params *p, int index);
void graft_params_zero_grad(graft_params *p);
/* Layers call this after writing a parameter's gradient for the step: tells the hook
 * (if any) that the parameter's gradient slice is final. No-op for frozen ones. */
void graft_params_grad_ready(const graft_params *p, int index);
/* Elements in trainable parameters / all parameters (buffers excluded). */
size_t graft_params_numel(const graft_params *p, int trainable_only);

#endif
