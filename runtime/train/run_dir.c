/* The run directory runs/<experiment>/: creating it with the resolved config,
 * metrics.jsonl (kept up to a resumed step, then one line per log step), train.log,
 * the evaluation files, and the progress line on stdout. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"
#include "train_internal.h"

/* A resumed run continues metrics.jsonl: lines of steps after the checkpoint (work that
 * is being redone) are dropped, so no step is counted twice. step 0 empties it. */
static graft_status keep_metrics_until(const char *path, long step) {
    char *text = NULL;
    size_t len = 0;
    /* a missing file keeps nothing; anything else that cannot be read stops the run */
    if (step > 0 && graft_fs_exists(path))
        GRAFT_TRY(graft_fs_read(path, 0, &text, &len, GRAFT_LOG_ERROR));
    char *kept = malloc(len + 1);
    size_t kept_len = 0;
    if (!kept) {
        free(text);
        return GRAFT_ERR_NOMEM;
    }
    for (size_t at = 0; at < len;) {
        const char *end = memchr(text + at, '\n', len - at);
        size_t line_len = end ? (size_t)(end - (text + at)) + 1 : len - at;
        json_t *o = json_loadb(text + at, line_len, 0, NULL);
        long long line_step;
        if (graft_json_get_int(o, "step", LLONG_MIN, step, &line_step)) {
            memcpy(kept + kept_len, text + at, line_len);
            kept_len += line_len;
        }
        json_decref(o);
        at += line_len;
    }
    free(text);
    graft_status st = graft_fs_write_atomic(path, kept, kept_len);
    free(kept);
    return st;
}

/* runs/<experiment>/ with the resolved config, metrics.jsonl and train.log (rank 0). */
graft_status train_open_run_dir(trainer *t) {
    char path[TRAIN_PATH_MAX];
    if ((size_t)snprintf(t->run_dir, sizeof t->run_dir, "runs/%s", t->cfg->experiment) >=
        sizeof t->run_dir) {
        GRAFT_ERROR("runs/%.32s...: cannot create the run directory: path longer than %d bytes",
                    t->cfg->experiment, TRAIN_PATH_MAX - 1);
        return GRAFT_ERR_CONFIG;
    }
    if (!t->rank0) return GRAFT_OK;
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "eval"));
    GRAFT_TRY(graft_fs_mkdirs(path, GRAFT_LOG_ERROR));
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "config.yaml"));
    char *text = train_config_text(t->cfg);
    graft_status st = text ? graft_fs_write_atomic(path, text, strlen(text)) : GRAFT_ERR_NOMEM;
    free(text);
    GRAFT_TRY(st);
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "metrics.jsonl"));
    GRAFT_TRY(keep_metrics_until(path, t->start_step));
    if (!(t->metrics = graft_fs_open_log(path, 1, GRAFT_LOG_ERROR))) return GRAFT_ERR_IO;
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "train.log"));
    if (!(t->log = graft_fs_open_log(path, t->start_step > 0, GRAFT_LOG_ERROR)))
        return GRAFT_ERR_IO;
    graft_log_set_file(t->log);
    return GRAFT_OK;
}

/* Close metrics.jsonl and train.log (and stop copying the log there). */
void train_close_run_dir(trainer *t) {
    if (t->metrics) fclose(t->metrics);
    t->metrics = NULL;
    if (t->log) {
        graft_log_set_file(NULL);
        fclose(t->log);
    }
    t->log = NULL;
}

/* The file side of an evaluation (rank 0): the log line, eval/step-N.json and
 * eval.json, and at the end of the run the summary on stdout. */
graft_status train_record_eval(trainer *t, const train_eval_result *r, long step, int final) {
    graft_status st = GRAFT_OK;
    if (r->task == GRAFT_TASK_CLASSIFY)
        GRAFT_INFO("eval step %ld: loss %.4f accuracy %.4f (%.0f samples)", step, r->loss,
                   r->accuracy, r->count);
    else
        GRAFT_INFO("eval step %ld: loss %.4f perplexity %.2f", step, r->loss, exp(r->loss));
    json_t *j = train_eval_to_json(r, &t->val_set, step);
    char name[64], path[TRAIN_PATH_MAX];
    snprintf(name, sizeof name, "eval/step-%08ld.json", step);
    st = graft_fs_path_join(path, sizeof path, t->run_dir, name);
    if (st == GRAFT_OK) st = graft_json_write_atomic(path, j, TRAIN_EVAL_JSON_FLAGS);
    if (st == GRAFT_OK) st = graft_fs_path_join(path, sizeof path, t->run_dir, "eval.json");
    if (st == GRAFT_OK) st = graft_json_write_atomic(path, j, TRAIN_EVAL_JSON_FLAGS);
    json_decref(j);
    if (final) {
        if (r->task == GRAFT_TASK_CLASSIFY) {
            printf("test accuracy: %.4f\n", r->accuracy);
            train_eval_print_per_class(r, &t->val_set);
        } else {
            printf("test perplexity: %.3f\n", exp(r->loss));
        }
    }
    return st;
}

void train_write_metrics(trainer *t, long step, long epoch, double loss, float lr, float grad_norm,
                         double samples_per_s, const train_step_times *tm, int steps, int skipped,
                         double comm_bytes) {
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "epoch", json_integer(epoch));
    json_object_set_new(o, "loss", graft_json_real_or_null(loss));
    json_object_set_new(o, "lr", graft_json_real_or_null(lr));
    json_object_set_new(o, "grad_norm", graft_json_real_or_null(grad_norm));
    json_object_set_new(o, "samples_per_s", graft_json_real_or_null(samples_per_s));
    json_object_set_new(o, "time_data", graft_json_real_or_null(tm->data / steps));
    json_object_set_new(o, "time_forward", graft_json_real_or_null(tm->forward / steps));
    json_object_set_new(o, "time_backward", graft_json_real_or_null(tm->backward / steps));
    json_object_set_new(o, "time_comm", graft_json_real_or_null(tm->comm / steps));
    json_object_set_new(o, "time_optim", graft_json_real_or_null(tm->optim / steps));
    json_object_set_new(o, "comm_bytes", json_integer((json_int_t)comm_bytes));
    json_object_set_new(o, "skipped_steps", json_integer(skipped));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
        fprintf(t->metrics, "%s\n", line);
        fflush(t->metrics);
        free(line);
    }
    json_decref(o);
}

/* One updating line on a terminal, plain lines otherwise. */
void train_show_progress(long step, long first, long total, double loss, double samples_per_s,
                         double elapsed, int tty) {
    double eta = step > first ? elapsed / (double)(step - first) * (double)(total - step) : 0;
    if (tty)
        printf("\rstep %ld/%ld  loss %.4f  %.0f samples/s  ETA %02d:%02d   ", step, total, loss,
               samples_per_s, (int)(eta / 60), (int)eta % 60);
    else
        printf("step %ld/%ld  loss %.4f  %.0f samples/s  ETA %02d:%02d\n", step, total, loss,
               samples_per_s, (int)(eta / 60), (int)eta % 60);
    fflush(stdout);
}
