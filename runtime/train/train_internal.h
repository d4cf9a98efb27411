/* Pieces of runtime/train shared between its files. */
#ifndef GRAFT_TRAIN_INTERNAL_H
#define GRAFT_TRAIN_INTERNAL_H

#include <jansson.h>

#include "comm/comm.h"
#include "models/model.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"

/* Evaluation totals over all ranks. */
typedef struct eval_result {
    graft_task task;
    double loss;      /* mean over counted targets */
    double accuracy;  /* classifiers */
    double count;     /* counted targets (samples or tokens) */
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
 * log_table: log the trainable/frozen table. Everything here is input checking. */
graft_status model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                         int max_batch, int log_table);

/* Write a JSON value to path atomically (tmp + fsync + rename). */
graft_status write_json_atomic(const char *path, json_t *value);

#endif
