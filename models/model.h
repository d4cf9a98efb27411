/* A model as the training loop sees it: an interface (ggml-backend style) over one
 * architecture's explicit forward/backward code, plus its parameter table, and the
 * registry of architectures (one descriptor each, in models/model.c).
 * Callers use the graft_model_* functions below, never the raw interface.
 * Adding an architecture touches models/ only: a new folder and one descriptor in
 * models/model.c's registry (and the name in model.arch's choices, which a test keeps
 * equal to the registry). */
#ifndef GRAFT_MODEL_H
#define GRAFT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/config/config.h"
#include "runtime/core/status.h"
#include "runtime/nn/lora.h"
#include "runtime/nn/lora_io.h"
#include "runtime/nn/params.h"
#include "runtime/nn/params_io.h"

/* What a model is trained on (decides the evaluation metrics). */
typedef enum { GRAFT_TASK_CLASSIFY = 0, GRAFT_TASK_LANGUAGE = 1 } graft_task;

/* The shape of the data a model is built for (from the dataset's index). */
typedef struct graft_model_input {
    int channels, height, width; /* images */
    int num_classes;             /* classifiers */
    int vocab_size, seq_len;     /* token models */
    int pad_id; /* token models: the padding id of a sequence dataset, -1 when none */
    int mask_id; /* token models: the dataset tokenizer's [MASK], -1 when none */
    /* model.lora's adapters, set by graft_model_create for architectures that take them
     * (their blocks attach adapters to the layers it targets); NULL: none. */
    graft_lora_spec *lora;
} graft_model_input;

/* Where a model can be cut in two for the feature cache (runtime/train/feature_cache.c):
 * below the boundary, a frozen prefix whose output is a pure function of the sample;
 * from it up, the part that trains. For the current build (the trainable set). */
typedef struct graft_model_split {
    size_t floats;     /* per sample at the boundary; 0: the model cannot start there (why) */
    int boundary;      /* the model's number for the boundary (its lowest trainable stage) */
    int prefix_params; /* items [0, prefix_params) of the parameter table are the prefix */
    char where[64];    /* the boundary in words: "the input of fc" */
    char why[160];     /* when floats == 0: why not, in words */
} graft_model_split;

typedef struct graft_model_i {
    const char *name;
    /* Name prefix of the replaceable classifier ("fc", "classifier", "head"): what
     * model.head.num_classes replaces. NULL when the model has none. */
    const char *head;
    /* Plan and allocate activations for micro-batches of up to max_batch samples, for
     * the CURRENT trainable set (layers below the lowest trainable one keep nothing for
     * backward). The caller has finalized the parameter table. Called again when more
     * parameters become trainable (gradual unfreezing); parameter values are kept. */
    graft_status (*build)(void *self, int max_batch);
    /* Fresh initialisation from a seed (the architecture's usual scheme). */
    void (*init_weights)(void *self, uint64_t seed);
    /* Reseed the randomness of training (dropout). The loop reseeds every step from
     * (seed, step, rank), so a resumed run draws exactly what the uninterrupted one did. */
    void (*seed_step)(void *self, uint64_t seed);
    /* Forward over B samples: images [B, C*H*W] or tokens [B, T]; labels [B] or
     * [B, T]. Returns the mean loss over counted targets (*counted receives how many;
     * labels may be NULL for prediction only). training=1 enables dropout etc. */
    float (*forward)(void *self, const float *inputs, const int32_t *tokens, const int32_t *labels,
                     int B, int training, int *counted);
    /* Backward of the last forward's mean loss times loss_scale; ADDS into the
     * trainable parameters' gradients. */
    void (*backward)(void *self, float loss_scale);
    /* Logits of the last forward: [B, num_classes] (classifiers). */
    const float *(*logits)(void *self);
    /* Optional (NULL = names as they are): the model's name for a tensor of a weights
     * file (written to buf, or file_name itself returned), or NULL to skip it silently
     * (e.g. the causal-mask buffers stored in GPT-2 hub files). */
    const char *(*map_name)(const char *file_name, char *buf, size_t size);
    /* Optional feature extraction (all three, or none; NULL = the model cannot split).
     * split: the boundary of the current build (see graft_model_split). prefix_forward:
     * the frozen prefix over B samples (inputs or tokens as in forward), one row of
     * split.floats per sample into features [B, floats]; it changes no state the rest of
     * the model reads. forward_features: forward from such rows, the same as forward
     * after its prefix (backward then works as after forward). */
    void (*split)(void *self, graft_model_split *out);
    void (*prefix_forward)(void *self, const float *inputs, const int32_t *tokens, int B,
                           float *features);
    float (*forward_features)(void *self, const float *features, const int32_t *labels, int B,
                              int training, int *counted);
    void (*free)(void *self);
} graft_model_i;

typedef struct graft_model {
    graft_model_i iface;
    void *self;
    graft_params *params; /* the model's table, owned by self */
    graft_task task;
    int num_outputs; /* classes (classifiers) or vocabulary size */
} graft_model;

/* What an architecture is built from. */
typedef enum { GRAFT_INPUT_IMAGES = 0, GRAFT_INPUT_TOKENS = 1 } graft_input_kind;

/* Sizes an architecture takes when the config leaves them 0 (model.n_layer, ...). */
typedef struct graft_model_dims {
    int n_layer, n_head, n_embd, n_positions;
} graft_model_dims;

/* One architecture of the registry. */
typedef struct graft_model_desc {
    const char *arch;       /* model.arch */
    graft_input_kind input; /* images [B, C*H*W] or tokens [B, T] */
    /* Prefix of the classifier model.head.num_classes replaces when the model classifies
     * ("fc", "classifier"); NULL when it never has one. */
    const char *head;
    graft_model_dims defaults;
    int lora;                 /* 1: its transformer blocks take LoRA adapters (model.lora) */
    const char *lora_example; /* a glob over its linear layers, for messages */
    /* PEFT's task_type for its adapters when it models language / classifies; NULL:
     * PEFT has none (a masked LM, an image classifier). */
    const char *peft_task_lm, *peft_task_classify;
    graft_status (*create)(graft_model *, const graft_config *, const graft_model_input *);
} graft_model_desc;

/* The descriptor of model.arch `arch`, or NULL. */
const graft_model_desc *graft_model_find(const char *arch);
/* The i-th descriptor of the registry (0 <= i < graft_model_count()). */
int graft_model_count(void);
const graft_model_desc *graft_model_desc_at(int i);

/* Create the architecture named by cfg->model.arch for data of the given shape and
 * register its parameters (not yet allocated: apply freezing, finalize the table,
 * then build), with model.lora's adapters when it is set (a glob matching no linear
 * layer, or an architecture without adapters, is a config error). Each architecture provides
 * graft_<arch>_create with this signature. */
graft_status graft_model_create(graft_model *m, const graft_config *cfg,
                                const graft_model_input *input);
/* Names of the architectures graft knows, for messages ("mlp, resnet18, ..."). */
const char *graft_model_arch_names(void);
void graft_model_free(graft_model *m);

/* The interface, for callers (optional members have their default here). */
graft_status graft_model_build(graft_model *m, int max_batch);
/* The architecture's initialisation, then the adapters' (A as PEFT, B = 0). */
void graft_model_init_weights(graft_model *m, uint64_t seed);
void graft_model_seed_step(graft_model *m, uint64_t seed);
float graft_model_forward(graft_model *m, const float *inputs, const int32_t *tokens,
                          const int32_t *labels, int B, int training, int *counted);
void graft_model_backward(graft_model *m, float loss_scale);
const float *graft_model_logits(graft_model *m);
/* The model's split for the feature cache; a model without one says so in out->why. */
void graft_model_split_at(graft_model *m, graft_model_split *out);
void graft_model_prefix_forward(graft_model *m, const float *inputs, const int32_t *tokens, int B,
                                float *features);
float graft_model_forward_features(graft_model *m, const float *features, const int32_t *labels,
                                   int B, int training, int *counted);
/* Prefix of the replaceable classifier of this instance, or NULL. */
const char *graft_model_head(const graft_model *m);
/* Options to load a weights file into this model: strict or not, and whether the file's
 * classifier is being replaced (model.head.num_classes). */
graft_load_options graft_model_load_options(const graft_model *m, int strict, int replace_head);
/* model.lora.init's adapter directory into the model (after its other weights), when
 * the config names one. */
graft_status graft_model_load_lora_init(const graft_model *m, const graft_config *cfg);
/* model.lora's settings for the model's adapter directory (PEFT's task_type by task). */
graft_lora_dir_config graft_model_lora_dir_config(const graft_model *m, const graft_config *cfg);

#endif
