/* Pieces of runtime/train shared between its files:
 *   train.c          the loop (graft_train): steps, logging, evaluation, checkpoints
 *   setup.c          the trainer and model set-up (everything checked before a run)
 *   step.c           one step, gradient reduction, buffer and replica agreement
 *   run_dir.c        runs/<experiment>/: config, metrics.jsonl, train.log, eval files
 *   eval.c           evaluation (and graft_evaluate)
 *   predict.c        graft_predict
 *   checkpointing.c  resume and save, the loop's side of runtime/ckpt
 *   unfreeze.c       freeze.schedule
 *   feature_cache.c  data.cache_features: the frozen prefix's output, computed once
 *   run_lock.c       one run per run directory and checkpoint directory */
#ifndef GRAFT_TRAIN_INTERNAL_H
#define GRAFT_TRAIN_INTERNAL_H

#include <jansson.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "models/model.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/data/loader.h"
#include "runtime/io/fs.h"
#include "runtime/nn/lora_io.h"
#include "runtime/optim/optim.h"

/* Evaluation totals over all ranks. */
typedef struct train_eval_result {
    graft_task task;
    double loss;     /* mean over counted targets */
    double accuracy; /* classifiers */
    double count;    /* counted targets (samples or tokens) */
    int num_classes;
    double *confusion; /* [K, K], row = true class, column = predicted (classifiers) */
} train_eval_result;

/* Run the model over the whole dataset (each rank its share) in batches of `batch`. */
graft_status train_eval_run(graft_model *m, const graft_dataset *d, int batch, int seq_len,
                            graft_comm *comm, train_eval_result *r);
/* {"step", "loss", "accuracy", "per_class": [...], "confusion": [[...]]} or, for
 * language models, {"step", "loss", "perplexity"}. */
json_t *train_eval_to_json(const train_eval_result *r, const graft_dataset *d, long step);
/* The per-class table, for the log at the end of a run and for `graft eval`. */
void train_eval_print_per_class(const train_eval_result *r, const graft_dataset *d);
void train_eval_result_free(train_eval_result *r);
/* How evaluation results are written (graft_json_write_atomic): eval/step-N.json,
 * eval.json and graft eval's --json file. */
#define TRAIN_EVAL_JSON_FLAGS (JSON_INDENT(1) | JSON_SORT_KEYS)

/* Build the model for a dataset, apply freezing and the init weights of cfg.
 * Everything here is input checking. */
graft_status train_model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                               int max_batch);
/* The same model with every weight from a file (strictly) instead of model.init, and
 * model.lora.init's adapters on top: what graft eval and graft predict run. */
graft_status train_model_load(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                              int max_batch, const char *weights);
/* Log trainable vs frozen parameter counts per top-level module. */
void train_log_freeze_table(const graft_params *p);

#define TRAIN_PATH_MAX GRAFT_FS_PATH_MAX

/* Seconds spent in each part of a step, summed over a log window. */
typedef struct train_step_times {
    double data, forward, backward, comm, optim;
} train_step_times;

typedef struct train_feature_cache train_feature_cache; /* feature_cache.c */

typedef struct trainer {
    const graft_config *cfg;
    graft_comm *comm;
    int rank0;
    /* the run ended with an outcome every rank reached together (a set-up failure
     * agreed on, a non-finite stop): no rank needs to abort the job */
    int outcome_agreed;
    graft_dataset train_set, val_set;
    int have_val;
    graft_model model;
    graft_optim opt;
    graft_lr_schedule sched;
    graft_loader *loader;
    graft_reducer *reducer; /* NULL with one rank */
    float *buffer_stage;    /* several ranks: the model's buffers packed for broadcast */
    float *skip_stage;      /* train.on_nonfinite skip: the buffers before the step */
    size_t buffer_floats;
    int micro_batch;
    long total_steps, steps_per_epoch;
    char run_dir[TRAIN_PATH_MAX];
    FILE *metrics, *log;
    /* checkpoints */
    char ckpt_dir[TRAIN_PATH_MAX];
    long start_step;       /* 0, or the step a checkpoint was resumed at */
    uint64_t start_cursor; /* the loader cursor at start_step */
    long last_saved_step;  /* -1 before any save */
    double last_save_time; /* graft_now_s() of the last save (or of the start) */
    /* train.on_nonfinite skip: non-finite steps in a row (kept in checkpoints, so a
     * resumed run stops where the uninterrupted one would) */
    long nonfinite_in_a_row;
    /* gradual unfreezing: per parameter, the freeze.schedule step that unfroze it, or -1 */
    long *unfrozen_at;
    train_feature_cache *features; /* data.cache_features; NULL when not used */
    int lock_fds[2]; /* rank 0: graft.lock of the run and checkpoint directories, or -1 */
    char lock_created[2][TRAIN_PATH_MAX]; /* what locking them created ("" when nothing) */
} trainer;

/* setup.c: datasets, loader, model, optimizer, resume, data parallelism. */
graft_status train_setup(trainer *t);

/* step.c: several ranks agree on what they train, start from rank 0's parameters and
 * get a reducer. */
graft_status train_setup_data_parallel(trainer *t);
/* One optimizer step over the global batch b at learning rate lr: the global mean
 * loss, the gradient norm and the bytes the reducer moved; times added into tm.
 * *nonfinite = 1 (the same on every rank) when the loss or the norm is NaN or infinite:
 * then no update was made. */
graft_status train_step(trainer *t, long step, graft_batch *b, float lr, double *loss_out,
                        float *norm_out, int *nonfinite, double *comm_bytes, train_step_times *tm);
/* Broadcast rank 0's buffers (batchnorm running statistics) after a step. */
graft_status train_sync_buffers(trainer *t);
/* Check that every replica holds the same parameter bits (end of training). */
graft_status train_check_replicas(trainer *t);

/* run_dir.c (rank 0 writes; other ranks only learn run_dir). */
graft_status train_open_run_dir(trainer *t);
graft_status train_close_run_dir(trainer *t);
/* One metrics.jsonl line for a log window of `steps` steps, `skipped` of them non-finite
 * (loss: the mean over the others; a non-finite value is written as null). */
void train_write_metrics(trainer *t, long step, long epoch, double loss, float lr, float grad_norm,
                         double samples_per_s, const train_step_times *tm, int steps, int skipped,
                         double comm_bytes);
/* One updating line on a terminal, plain lines otherwise. */
void train_show_progress(long step, long first, long total, double loss, double samples_per_s,
                         double elapsed, int tty);
graft_status train_record_eval(trainer *t, const train_eval_result *r, long step, int final);

/* checkpointing.c: resume (every rank, before the loader starts) and save (every rank
 * calls it at the same step boundary; rank 0 writes). A failed routine save follows
 * checkpoint.on_error. The save of a stop signal is read back and agreed by every rank:
 * GRAFT_STOPPED (exit 75) only when checkpoint step-<step> is on disk and verified, else
 * the failure (exit 1) whatever checkpoint.on_error says. */
graft_status train_resume(trainer *t);
graft_status train_save_checkpoint(trainer *t, long step);
graft_status train_save_stop_checkpoint(trainer *t, long step);

/* run_lock.c: sets ckpt_dir; rank 0 locks the run directory and the checkpoint
 * directory (creating them) before anything is read or written there; every rank
 * returns the same status: GRAFT_ERR_LOCKED (rank 0 has named the holder's pid) when
 * another run holds one. Unlock releases them (safe when never locked, once lock_fds
 * are -1); with `remove` (a run refused for bad input) the lock files and the
 * directories locking created go too. */
graft_status train_lock_dirs(trainer *t);
void train_unlock_dirs(trainer *t, int remove);

/* unfreeze.c: freeze.schedule. Check that every glob matches a parameter (setup). */
graft_status train_unfreeze_check(trainer *t);
/* Apply the schedule's entries with at_step == step (before = 0, at the top of the
 * step), or with at_step < step (before = 1, when resuming at `step`): parameters
 * become trainable, and gradients, optimizer state, activations and reducer buckets
 * grow to match, identically on every rank. */
graft_status train_unfreeze_apply(trainer *t, long step, int before);
/* After a checkpoint restored the optimizer's step: the per-parameter step counts of
 * the parameters unfrozen before `resume_step`. */
void train_unfreeze_restore_starts(trainer *t, long resume_step);
/* train_setup_data_parallel's reducer over the current gradient buffer (rebuilt on unfreeze). */
graft_status train_make_reducer(trainer *t);

/* feature_cache.c (docs/DESIGN.md, Note [The feature cache]). Check (set-up, after
 * resuming) whether the cache can and should be used: data.cache_features on refuses
 * (GRAFT_ERR_CONFIG, one line naming the reason) when not, auto says why not in one
 * INFO line. */
graft_status train_feature_cache_check(trainer *t);
/* At the top of every step (every rank): build or reuse the rows for the model's
 * current boundary when it moved (the first step, a freeze.schedule step), or stop using
 * the cache when the boundary no longer admits one. */
graft_status train_feature_cache_update(trainer *t, long step);
/* 1 while the steps start from cached rows. */
int train_feature_cache_active(const trainer *t);
/* Forward of n samples (dataset rows `indices`) from their cached features. */
float train_feature_cache_forward(trainer *t, const uint64_t *indices, const int32_t *labels,
                                  int n);
void train_feature_cache_free(train_feature_cache *c);

/* The resolved config as YAML text (malloc'd), for run directories and checkpoints. */
char *train_config_text(const graft_config *cfg);

#endif
