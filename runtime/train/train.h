/* The training loop users drive with `graft train cfg.yaml`, and evaluation.
 *
 * A run lives in runs/<experiment>/ (relative to the working directory):
 *   config.yaml     the resolved config (graft accepts it as input)
 *   metrics.jsonl   one JSON object per log step
 *   eval/step-NNNNNNNN.json, eval.json   evaluation results (eval.json = latest)
 *   model.safetensors                     the final weights
 *   train.log       the log lines
 *   checkpoints/    step-NNNNNNNN/ checkpoints and "latest" (unless checkpoint.dir)
 *   nonfinite.json  only after a run stopped at a non-finite step: {"step", "loss",
 *                   "grad_norm"} (removed when a run starts)
 * Everything that can be checked (config, datasets, init weights, freezing globs) is
 * checked before the run directory is touched. */
#ifndef GRAFT_TRAIN_H
#define GRAFT_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "comm/comm.h"
#include "runtime/config/config.h"

/* Set (by the CLI's signal handler) to ask training to checkpoint at the next step
 * boundary and return GRAFT_STOPPED. */
extern volatile sig_atomic_t graft_train_stop_signal;

/* Train as configured; rank and world come from comm. Resumes from a checkpoint as
 * checkpoint.resume says and checkpoints as checkpoint.* says. *agreed: 1 when a
 * failure is one every rank reached together and only one rank printed (a set-up
 * failure of some rank, the run's locks, a non-finite stop), so that no rank needs to
 * abort the job; 0 otherwise. */
graft_status graft_train(const graft_config *cfg, graft_comm *comm, int *agreed);

/* runs/<experiment>/nonfinite.json into out. A run that stopped at a non-finite step
 * (exit 1) leaves it: `graft launch` does not restart such a job, since resuming replays
 * the same steps bit for bit and would stop at the same step again. */
graft_status graft_train_nonfinite_path(const graft_config *cfg, char *out, size_t size);

/* Evaluate `weights` (a safetensors file) on data.val (or data.train when no val set
 * is configured). Prints the summary; writes the JSON result to json_path if given.
 * Several ranks first check that they agree on the config, the data (by content) and
 * the weights they loaded (GRAFT_ERR_MISMATCH, one line on rank 0, when not). */
graft_status graft_evaluate(const graft_config *cfg, const char *weights, const char *json_path,
                            graft_comm *comm);

/* What graft predict is asked for. */
typedef struct graft_predict_options {
    const char *weights;       /* a safetensors file */
    const char *const *inputs; /* image files, or text files ("-": standard input) */
    int n_inputs;
    int top_k;              /* classes per input (0: 5); at most the number of classes */
    const char *json_path;  /* also write every prediction here (NULL: no) */
    const char *text_field; /* of .jsonl and .csv inputs */
} graft_predict_options;

/* A classifier's top classes for each input, one line each on stdout, as the config's
 * data.train (or data.val) set was prepared: images decoded, fitted ("resize" of its
 * index) and normalised with its stored values; texts (one per non-empty line, or per
 * .jsonl / .csv record's text field) tokenized with its tokenizer, cut and padded to its
 * sequence length. Inputs predicted are counted in *predicted; one that cannot be gets one
 * ERROR line, is counted in *failed, and the others go on. Errors before the first input (data, model, weights)
 * are the result. */
graft_status graft_predict(const graft_config *cfg, const graft_predict_options *o,
                           size_t *predicted, size_t *failed);

#endif
