/* The training loop users drive with `graft train cfg.yaml`: set-up, the run
 * directory, the steps with logging, non-finite steps (train.on_nonfinite), evaluation
 * and checkpoints at step boundaries (a stop signal agreed across ranks), and the end
 * of the run. */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/data/loader.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"
#include "runtime/nn/lora_io.h"
#include "runtime/nn/params_io.h"
#include "train_internal.h"

/* Evaluate on the val set (or skip when there is none); rank 0 records the result. */
static graft_status evaluate_and_record(trainer *t, long step, int final) {
    if (!t->have_val) return GRAFT_OK;
    train_eval_result r;
    GRAFT_TRY(
        train_eval_run(&t->model, &t->val_set, t->micro_batch, t->cfg->data.seq_len, t->comm, &r));
    graft_status st = t->rank0 ? train_record_eval(t, &r, step, final) : GRAFT_OK;
    train_eval_result_free(&r);
    return st;
}

volatile sig_atomic_t graft_train_stop_signal = 0;

/* At every step boundary but the last: save when checkpoint.every_steps / every_minutes
 * say so, or when a stop signal arrived on any rank (the ranks agree through one small
 * allreduce, so all of them save the same step: docs/DESIGN.md, Note [The stop
 * agreement]). The last boundary is the end of the run, which saves, evaluates and
 * writes the weights: a signal that arrives during the final step (or during that end)
 * lets the run finish, since a finished result is never thrown away. Returns
 * GRAFT_STOPPED after a signal's verified checkpoint. */
static graft_status checkpoint_boundary(trainer *t, long done) {
    const graft_config *cfg = t->cfg;
    if (done == t->total_steps) return GRAFT_OK;
    float flags[2] = {(float)(graft_train_stop_signal != 0),
                      (float)(t->rank0 && cfg->checkpoint.every_minutes > 0 &&
                              graft_now_s() - t->last_save_time >=
                                  60.0 * cfg->checkpoint.every_minutes)};
    char context[80];
    snprintf(context, sizeof context, "step %ld: agreeing on a stop signal or a timed checkpoint",
             done);
    graft_comm_set_context(t->comm, context);
    if (t->comm->size > 1) GRAFT_TRY(graft_comm_allreduce_sum(t->comm, flags, 2));
    if (flags[0] > 0) {
        if (t->rank0 && isatty(fileno(stdout))) printf("\n"); /* end the progress line */
        return train_save_stop_checkpoint(t, done);
    }
    int due = flags[1] > 0 ||
              (cfg->checkpoint.every_steps > 0 && done % cfg->checkpoint.every_steps == 0);
    return due && t->last_saved_step != done ? train_save_checkpoint(t, done) : GRAFT_OK;
}

/* "nan", "inf" or "-inf" (printf's text for NaN carries a sign bit: "-nan"). */
static const char *nonfinite_text(double x) { return isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"; }

/* "loss nan", "gradient norm inf" or both, for the lines about a non-finite step. */
static void describe_nonfinite(char *out, size_t size, double loss, float norm) {
    if (!isfinite(loss) && !isfinite(norm))
        snprintf(out, size, "loss %s and gradient norm %s", nonfinite_text(loss),
                 nonfinite_text(norm));
    else if (!isfinite(loss))
        snprintf(out, size, "loss %s", nonfinite_text(loss));
    else
        snprintf(out, size, "gradient norm %s", nonfinite_text(norm));
}

graft_status graft_train_nonfinite_path(const graft_config *cfg, char *out, size_t size) {
    char run_dir[TRAIN_PATH_MAX];
    if ((size_t)snprintf(run_dir, sizeof run_dir, "runs/%s", cfg->experiment) >= sizeof run_dir)
        return GRAFT_ERR_CONFIG;
    return graft_fs_path_join(out, size, run_dir, "nonfinite.json");
}

/* Rank 0: nonfinite.json, the record `graft launch` reads (train.h). */
static graft_status record_nonfinite_stop(const trainer *t, long done, double loss, float norm) {
    char path[TRAIN_PATH_MAX];
    GRAFT_TRY(graft_train_nonfinite_path(t->cfg, path, sizeof path));
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(done));
    json_object_set_new(o, "loss", graft_json_real_or_null(loss));
    json_object_set_new(o, "grad_norm", graft_json_real_or_null(norm));
    graft_status st = graft_json_write_atomic(path, o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return st;
}

/* A step (the done-th) whose loss or gradient norm went NaN or infinite; every rank
 * comes here at the same step (step.c decides from shared values). train.on_nonfinite
 * stop: one line, GRAFT_ERR_NONFINITE (exit 1). skip: the update was not made; more
 * than train.max_nonfinite_steps of them in a row stop as well. */
static graft_status on_nonfinite_step(trainer *t, long done, double loss, float norm) {
    const graft_config *cfg = t->cfg;
    char what[96];
    describe_nonfinite(what, sizeof what, loss, norm);
    int skip = strcmp(cfg->train.on_nonfinite, "skip") == 0;
    t->nonfinite_in_a_row++;
    if (skip && t->nonfinite_in_a_row <= cfg->train.max_nonfinite_steps) {
        if (t->rank0)
            GRAFT_WARN("step %ld: non-finite %s: update skipped (%ld in a row; "
                       "train.max_nonfinite_steps: %ld)",
                       done, what, t->nonfinite_in_a_row, cfg->train.max_nonfinite_steps);
        return GRAFT_OK;
    }
    /* every rank stops here alike: rank 0 prints the line, the others keep it quietly */
    graft_log_level level = t->rank0 ? GRAFT_LOG_ERROR : GRAFT_LOG_QUIET;
    if (skip)
        graft_log(level, __func__,
                  "step %ld: non-finite %s, %ld non-finite steps in a row: stopping "
                  "(train.max_nonfinite_steps: %ld)",
                  done, what, t->nonfinite_in_a_row, cfg->train.max_nonfinite_steps);
    else
        graft_log(level, __func__, "step %ld: non-finite %s: stopping (train.on_nonfinite: stop)",
                  done, what);
    /* a record that cannot be written is logged; the stop stands, as on other ranks */
    if (t->rank0) (void)record_nonfinite_stop(t, done, loss, norm);
    t->outcome_agreed = 1;
    return GRAFT_ERR_NONFINITE;
}

static graft_status run_loop(trainer *t) {
    const graft_config *cfg = t->cfg;
    int tty = t->rank0 && isatty(fileno(stdout));
    long log_every = cfg->train.log_every > 0 ? cfg->train.log_every : 10;
    if (t->rank0) {
        char stale[TRAIN_PATH_MAX];
        if (graft_train_nonfinite_path(cfg, stale, sizeof stale) == GRAFT_OK) unlink(stale);
        train_log_freeze_table(t->model.params);
    }
    if (t->rank0)
        GRAFT_INFO("training %s: %ld steps (%ld per epoch), global batch %ld, micro-batch %d, "
                   "%d rank(s)",
                   cfg->experiment, t->total_steps, t->steps_per_epoch, cfg->data.batch_size,
                   t->micro_batch, t->comm->size);
    train_step_times tm = {0};
    double window_loss = 0, window_samples = 0, window_start = graft_now_s();
    double run_start = window_start;
    int window_steps = 0, window_skipped = 0;
    double window_bytes = 0;
    graft_status st = GRAFT_OK;
    for (long step = t->start_step; step < t->total_steps && st == GRAFT_OK; step++) {
        st = train_unfreeze_apply(t, step, 0);
        if (st == GRAFT_OK) st = train_feature_cache_update(t, step);
        if (st != GRAFT_OK) break;
        graft_model_seed_step(&t->model,
                              graft_rng_mix(graft_rng_mix((uint64_t)cfg->seed, (uint64_t)step),
                                            (uint64_t)t->comm->rank));
        graft_batch *b;
        double wait = 0;
        st = graft_loader_next(t->loader, &b, &wait);
        if (st != GRAFT_OK) break;
        tm.data += wait;
        double loss, bytes;
        float norm;
        int nonfinite;
        float lr = graft_lr_at(&t->sched, step);
        st = train_step(t, step, b, lr, &loss, &norm, &nonfinite, &bytes, &tm);
        if (st == GRAFT_OK) st = train_sync_buffers(t);
        if (st != GRAFT_OK) break;
        window_bytes += bytes;
        window_samples += b->global_n;
        window_steps++;
        long done = step + 1;
        if (nonfinite) {
            window_skipped++;
            st = on_nonfinite_step(t, done, loss, norm);
        } else {
            window_loss += loss;
            t->nonfinite_in_a_row = 0;
        }
        /* a stop at a non-finite step writes its window too: the record shows it */
        if (done % log_every == 0 || done == t->total_steps || st != GRAFT_OK) {
            double now = graft_now_s();
            double rate = window_samples / (now - window_start);
            /* NaN (null in metrics.jsonl) when every step of the window was skipped */
            double mean_loss = window_loss / (window_steps - window_skipped);
            if (t->rank0) {
                train_write_metrics(t, done, b->epoch, mean_loss, lr, norm, rate, &tm, window_steps,
                                    window_skipped, window_bytes / window_steps);
                if (st == GRAFT_OK)
                    train_show_progress(done, t->start_step, t->total_steps, mean_loss, rate,
                                        now - run_start, tty);
            }
            memset(&tm, 0, sizeof tm);
            window_loss = window_samples = window_bytes = 0;
            window_steps = window_skipped = 0;
            window_start = graft_now_s();
        }
        if (st != GRAFT_OK) break;
        if (cfg->train.eval_every > 0 && done % cfg->train.eval_every == 0 &&
            done < t->total_steps) {
            if (tty) printf("\n");
            st = evaluate_and_record(t, done, 0);
        }
        if (st == GRAFT_OK) st = checkpoint_boundary(t, done);
    }
    if (st == GRAFT_STOPPED) return st;
    if (tty) printf("\n");
    if (st == GRAFT_OK) st = train_check_replicas(t);
    if (st == GRAFT_OK && t->last_saved_step != t->total_steps)
        st = train_save_checkpoint(t, t->total_steps);
    if (st == GRAFT_OK) st = evaluate_and_record(t, t->total_steps, 1);
    if (st == GRAFT_OK && t->rank0) {
        char path[TRAIN_PATH_MAX];
        st = graft_fs_path_join(path, sizeof path, t->run_dir, "model.safetensors");
        /* a LoRA run: the merged model under plain names, and the adapters beside it */
        const int lora = graft_lora_present(t->model.params);
        if (st == GRAFT_OK)
            st = lora ? graft_lora_save_merged(t->model.params, path)
                      : graft_params_save(t->model.params, path);
        char adapter[TRAIN_PATH_MAX];
        if (st == GRAFT_OK && lora) {
            graft_lora_dir_config dc = graft_model_lora_dir_config(&t->model, cfg);
            st = graft_fs_path_join(adapter, sizeof adapter, t->run_dir, "adapter");
            if (st == GRAFT_OK) st = graft_lora_save_dir(t->model.params, &dc, adapter);
        }
        if (st == GRAFT_OK)
            GRAFT_INFO("done in %.1f s; weights in %s%s%s", graft_now_s() - run_start, path,
                       lora ? ", adapters in " : "", lora ? adapter : "");
    }
    return st;
}

static void trainer_free(trainer *t) {
    free(t->unfrozen_at);
    train_feature_cache_free(t->features);
    free(t->buffer_stage);
    free(t->skip_stage);
    graft_reducer_free(t->reducer);
    graft_loader_free(t->loader);
    graft_optim_free(&t->opt);
    graft_model_free(&t->model);
    graft_dataset_close(&t->train_set);
    graft_dataset_close(&t->val_set);
    (void)train_close_run_dir(t); /* already closed unless set-up failed */
    train_unlock_dirs(t, 0);
}

graft_status graft_train(const graft_config *cfg, graft_comm *comm, int *agreed) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.comm = comm;
    t.rank0 = comm->rank == 0;
    t.lock_fds[0] = t.lock_fds[1] = -1;
    /* another run holding the directories, or directories that cannot be created, are
     * bad input (exit 2: a restart cannot fix them) */
    graft_status st = train_lock_dirs(&t);
    if (st == GRAFT_OK) {
        st = train_setup(&t);
        if (st != GRAFT_OK) train_unlock_dirs(&t, 1); /* bad input leaves nothing behind */
    }
    if (st == GRAFT_OK) {
        st = train_open_run_dir(&t);
        if (st == GRAFT_OK) st = run_loop(&t);
        graft_status closed = train_close_run_dir(&t); /* lines lost to a full disk fail it */
        if (st == GRAFT_OK || st == GRAFT_STOPPED) st = closed == GRAFT_OK ? st : closed;
        /* everything the user gave was checked by train_setup: a failure from here on (a
         * full disk, EIO, a checkpoint or metrics write refused) is the run's, not the
         * input's (exit 1, which graft launch may restart) */
        if (graft_status_is_bad_input(st)) st = GRAFT_ERR_RUN;
    }
    *agreed = t.outcome_agreed;
    trainer_free(&t);
    return st;
}
