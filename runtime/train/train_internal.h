/* Pieces of runtime/train shared between its files. */
#ifndef GRAFT_TRAIN_INTERNAL_H
#define GRAFT_TRAIN_INTERNAL_H

#include <jansson.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "models/model.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/data/loader.h"
#include "runtime/optim/optim.h"

/* Evaluation totals over all ranks. */
typedef struct eval_result {
    graft_task task;
    double loss;     /* mean over counted targets */
    double accuracy; /* classifiers */
    double count;    /* counted targets (samples or tokens) */
    int num_classes;
    double *confusion; /* [K, K], row = true class, column = predicted (classifiers) */
} eval_result;

/* Run the model over the whole dataset (each rank its share) in batches of `batch`. */
graft_status eval_run(graft_model *m, const graft_dataset *d, int batch, int seq_len,
                      graft_comm *comm, eval_result *r);
/* {"step", "loss", "accuracy", "per_class": [...], "confusion": [[...]]} or, for
 * language models, {"step", "loss", "perplexity"}. */
json_t *eval_to_json(const eval_result *r, const graft_dataset *d, long step);
/* The per-class table, for the log at the end of a run and for `graft eval`. */
void eval_print_per_class(const eval_result *r, const graft_dataset *d);
void eval_result_free(eval_result *r);

/* Build the model for a dataset, apply freezing and the init weights of cfg.
 * Everything here is input checking. */
graft_status model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                         int max_batch);
/* Log trainable vs frozen parameter counts per top-level module. */
void log_freeze_table(const graft_params *p);

#define PATH_BYTES 4096

/* Seconds spent in each part of a step, summed over a log window. */
typedef struct step_times {
    double data, forward, backward, comm, optim;
} step_times;

typedef struct trainer {
    const graft_config *cfg;
    graft_comm *comm;
    int rank0;
    graft_dataset train_set, val_set;
    int have_val;
    graft_model model;
    graft_optim opt;
    graft_lr_schedule sched;
    graft_loader *loader;
    graft_reducer *reducer; /* NULL with one rank */
    float *buffer_stage;    /* several ranks: the model's buffers packed for broadcast */
    size_t buffer_floats;
    int micro_batch;
    long total_steps, steps_per_epoch;
    char run_dir[PATH_BYTES];
    FILE *metrics, *log;
    /* checkpoints */
    char ckpt_dir[PATH_BYTES];
    long start_step;       /* 0, or the step a checkpoint was resumed at */
    uint64_t start_cursor; /* the loader cursor at start_step */
    long last_saved_step;  /* -1 before any save */
    double last_save_time; /* graft_now_s() of the last save (or of the start) */
    /* gradual unfreezing: per parameter, the freeze.schedule step that unfroze it, or -1 */
    long *unfrozen_at;
} trainer;

/* checkpointing.c: resume (every rank, before the loader starts) and save (every rank
 * calls it at the same step boundary; rank 0 writes). */
graft_status resume_from_checkpoint(trainer *t);
graft_status save_checkpoint(trainer *t, long step);

/* unfreeze.c: freeze.schedule. Check that every glob matches a parameter (setup). */
graft_status unfreeze_check(trainer *t);
/* Apply the schedule's entries with at_step == step (before = 0, at the top of the
 * step), or with at_step < step (before = 1, when resuming at `step`): parameters
 * become trainable, and gradients, optimizer state, activations and reducer buckets
 * grow to match, identically on every rank. */
graft_status unfreeze_apply(trainer *t, long step, int before);
/* After a checkpoint restored the optimizer's step: the per-parameter step counts of
 * the parameters unfrozen before `resume_step`. */
void unfreeze_restore_starts(trainer *t, long resume_step);
/* setup_data_parallel's reducer over the current gradient buffer (rebuilt on unfreeze). */
graft_status make_reducer(trainer *t);

/* The resolved config as YAML text (malloc'd), for run directories and checkpoints. */
char *config_to_text(const graft_config *cfg);

/* Write a JSON value to path atomically (tmp + fsync + rename). */
graft_status write_json_atomic(const char *path, json_t *value);

#endif
