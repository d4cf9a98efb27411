/* The experiment config: YAML (libyaml) -> typed struct, validated, with dotted
 * command-line overrides. Every key, its type, default, limits and documentation
 * live in ONE table in config.c; the parser, the validator, `--print-config`, the
 * digest and the README's key reference are all driven by that table.
 *
 *   graft_config cfg;
 *   graft_config_defaults(&cfg);
 *   if (graft_config_load(&cfg, "cfg.yaml") != GRAFT_OK) ...        // errors logged
 *   if (graft_config_override(&cfg, "optim.lr=3e-4") != GRAFT_OK) ...
 *   if (graft_config_validate(&cfg) != GRAFT_OK) ...
 *   ...
 *   graft_config_free(&cfg);
 *
 * Strings and lists are owned by the struct (graft_config_free releases them). */
#ifndef GRAFT_CONFIG_H
#define GRAFT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/core/status.h"

/* A list of strings (globs, hosts, args). */
typedef struct graft_strlist {
    char **items;
    int count;
} graft_strlist;

/* Optimizer parameter group from optim.groups: [{params: GLOB, lr_scale: X, weight_decay: Y}] */
typedef struct graft_cfg_group {
    char *params;
    double lr_scale;     /* default 1 */
    double weight_decay; /* default: optim.weight_decay (negative here = "not given") */
} graft_cfg_group;

/* One entry of freeze.schedule: [{at_step: N, trainable: [GLOB, ...]}] */
typedef struct graft_cfg_unfreeze {
    long at_step;
    graft_strlist trainable;
} graft_cfg_unfreeze;

typedef struct graft_config {
    char *source; /* file the config came from ("" when built from defaults only) */

    /* experiment: the run directory is runs/<experiment>/ */
    char *experiment; /* required; [A-Za-z0-9._-]+ */
    long seed;        /* default 0 */

    struct {
        char *arch;       /* required: mlp|resnet18|resnet34|resnet50|gpt2|bert|vit */
        char *init;       /* weights to start from (safetensors file or checkpoint dir); NULL */
        int init_strict;  /* default 0: missing names are warnings */
        int hidden[8];    /* model.hidden: MLP hidden sizes, default [512, 256] */
        int n_hidden;
        double dropout;   /* default 0, in [0, 1) */
        int small_stem;   /* resnet: 3x3 stride-1 conv1, no max-pool; default 0 */
        int width;        /* resnet: first-stage channels, default 64 */
        int n_layer, n_head, n_embd, n_positions; /* gpt2/bert; 0 = the arch's default */
        int vocab_size;   /* 0 = the dataset's */
        int type_vocab_size; /* bert, default 2 */
        int mask_token_id;   /* bert MLM; -1: the dataset tokenizer's [MASK] */
        int patch_size;      /* vit, default 16 */
        int mlp_dim;         /* vit; 0 = 4 * n_embd */
        int head_num_classes;/* model.head.num_classes: > 0 = replace the classifier */
        struct {           /* model.lora: adapters on when targets is non-empty */
            int rank;          /* default 8 */
            double alpha;      /* default 8; the adapters are scaled by alpha / rank */
            double dropout;    /* default 0, in [0, 1) */
            graft_strlist targets; /* globs over linear-layer names */
            char *init;        /* PEFT adapter directory; NULL */
        } lora;
    } model;

    struct {
        graft_strlist trainable; /* globs; everything else frozen */
        graft_strlist frozen;    /* globs; everything else trainable */
        char *bn;                /* eval|train, default eval */
        graft_cfg_unfreeze *schedule;
        int n_schedule;
    } freeze;

    struct {
        char *train;     /* dataset directory, required */
        char *val;       /* dataset directory, optional */
        long batch_size; /* GLOBAL batch, default 128 */
        long micro_batch;/* per rank per forward; 0 = batch_size / world (no accumulation) */
        int shuffle;     /* default 1 */
        int prefetch;    /* batches prepared ahead by the loader thread, default 2; 0 = none */
        int seq_len;     /* token datasets: window length, default 128 */
        int augment_crop_padding; /* data.augment.crop_padding: random crop after zero padding, 0 = off */
        int augment_hflip;        /* data.augment.hflip: random horizontal flip, default 0 */
        int verify;      /* data.verify: check shard checksums at start, default 1 */
        char *cache_features; /* data.cache_features: auto|on|off, default auto */
        double cache_max_gb;  /* data.cache_max_gb: in memory up to this, default 4 */
    } data;

    struct {
        char *name;          /* adamw|sgd, default adamw */
        double lr;           /* required, > 0 */
        double weight_decay; /* negative = not given (YAML null, the default): 0.01 for adamw,
                                0 for sgd; graft_config_weight_decay resolves it */
        double momentum;     /* sgd, default 0.9 */
        int nesterov;        /* sgd, default 0 */
        double beta1, beta2; /* optim.betas: [0.9, 0.999] */
        double eps;          /* default 1e-8 */
        double grad_clip;    /* max global grad norm, 0 = off (default 1.0) */
        graft_cfg_group *groups;
        int n_groups;
    } optim;

    struct {
        char *name;        /* constant|cosine|linear, default cosine */
        long warmup_steps; /* default 0 */
        double min_lr;     /* default 0 */
    } schedule;

    struct {
        long epochs;     /* one of epochs / max_steps; max_steps wins when both are given;
                            default 0 (validate requires one of the two > 0) */
        long max_steps;  /* 0 = from epochs */
        long eval_every; /* steps; 0 = only at the end */
        long log_every;  /* steps, default 10 */
        char *on_nonfinite;       /* stop|skip, default stop */
        long max_nonfinite_steps; /* skip: most non-finite steps in a row, default 10 */
    } train;

    struct {
        char *dir;            /* NULL (default) = runs/<experiment>/checkpoints */
        long every_steps;     /* 0 = off */
        double every_minutes; /* 0 = off */
        int keep_last;        /* default 3, >= 1 */
        char *save_frozen;    /* always|once, default once */
        char *on_error;       /* continue|stop, default continue */
        char *resume;         /* auto|never|PATH, default auto */
        int allow_config_change; /* resume despite changed training keys, default 0 */
    } checkpoint;

    struct {
        char *backend;     /* auto|local|mpi|nccl, default auto */
        double bucket_mb;  /* default 25 */
        double first_bucket_mb; /* default 1 */
        int overlap;       /* reduce buckets during backward, default 1 */
        double timeout_s;  /* default 300 */
    } comm;

    struct {
        int np;              /* default 1 */
        graft_strlist hosts; /* "host:slots" */
        char *hostfile;
        int threads_per_rank;/* 0 = auto (cores per node / local ranks) */
        graft_strlist env;   /* "NAME=value" exported to every rank */
        graft_strlist mpirun_args;
        int max_restarts;    /* default 0 */
        int requeue_exit;    /* on exit 75 stop (for the scheduler to requeue), default 0 */
    } launch;
} graft_config;

/* Fill every key with its default (strings are owned copies). Overwrites *cfg without
 * freeing it: call graft_config_free first on a config that was in use. */
void graft_config_defaults(graft_config *cfg);
/* Read a YAML file on top of the current values. Errors are logged as one line:
 * "FILE:LINE:COL: KEY.PATH: problem (expected ..., found ...)" and return
 * GRAFT_ERR_CONFIG (GRAFT_ERR_IO when the file cannot be read). Unknown keys are
 * errors with a did-you-mean suggestion; duplicate keys are errors. */
graft_status graft_config_load(graft_config *cfg, const char *path);
/* The same for YAML text held in memory (a checkpoint's config.yaml); errors name it
 * as `name` ("runs/x/checkpoints/step-00000100/config.yaml:3:1: ..."). */
graft_status graft_config_load_text(graft_config *cfg, const char *name, const char *text);
/* Apply "dotted.key=value" (value parsed as YAML: 3e-4, true, [a, b], {x: 1}); a section
 * takes a mapping ("data={batch_size: 64}"). Errors name "override 'ASSIGNMENT'" instead
 * of a file position; GRAFT_ERR_CONFIG. Lists are replaced, not appended to. On error the
 * key keeps its old value. */
graft_status graft_config_override(graft_config *cfg, const char *assignment);
/* Cross-key checks after loading and overriding: required keys present, ranges,
 * enum names, micro_batch vs batch_size, etc. Logs the first problem as "SOURCE: KEY:
 * problem" (SOURCE = cfg->source, or "config" when empty) and returns GRAFT_ERR_CONFIG. */
graft_status graft_config_validate(const graft_config *cfg);
/* What only training needs on top of graft_config_validate: optim.lr and a length
 * (train.epochs or train.max_steps). Evaluating weights asks for neither. Reports as
 * validate does. */
graft_status graft_config_validate_training(const graft_config *cfg);
/* Write the resolved config as YAML that graft_config_load accepts (sections in struct
 * order, lists in flow style, null for keys not given); loading it gives back an equal
 * config (graft_config_equal). */
graft_status graft_config_print(const graft_config *cfg, FILE *out);
/* xxh64 over the keys that must agree across ranks (everything except launch.* and
 * checkpoint.resume), in a canonical form ("key=value\n" per key, values as printed).
 * Returns 0 only if memory ran out. */
uint64_t graft_config_digest(const graft_config *cfg);
/* Markdown table of every key: name, type, default, meaning (for the README). */
void graft_config_write_reference(FILE *out);
/* Release everything the config owns and zero it; safe on NULL and on a freed config. */
void graft_config_free(graft_config *cfg);

/* The text of the last error reported by load/override/validate/print on this thread,
 * without the log prefix ("cfg.yaml:3:7: optim.lr: expected a number, found 'fast'");
 * "" when the last of those calls succeeded. Valid until the next such call. */
const char *graft_config_last_error(void);
/* 1 when every key of a and b holds the same value (doubles bit for bit; `source` is
 * not compared), else 0 with *first_diff (may be NULL) naming the first differing key. */
int graft_config_equal(const graft_config *a, const graft_config *b, const char **first_diff);
/* Keys that differ between a checkpoint's config and the resuming run's, ignoring
 * those that do not change what is trained (checkpoint.*, comm.*, launch.*, logging,
 * prefetch, model.init, non-finite handling): how many, with their names ("optim.lr, seed") in out. */
int graft_config_resume_diff(const graft_config *saved, const graft_config *now, char *out,
                             size_t size);
/* optim.weight_decay, or the optimizer's default when not given (0.01 adamw, 0 sgd). */
double graft_config_weight_decay(const graft_config *cfg);

#endif
