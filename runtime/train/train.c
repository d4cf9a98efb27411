/* The training loop users drive with `graft train cfg.yaml`: set-up, the run
 * directory, the steps with logging, evaluation and checkpoints at step boundaries
 * (a stop signal agreed across ranks), and the end of the run. */
#include "train.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/data/loader.h"
#include "runtime/io/fs.h"
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
    float flags[2] = {graft_train_stop_signal != 0, t->rank0 && cfg->checkpoint.every_minutes > 0 &&
                                                        graft_now_s() - t->last_save_time >=
                                                            60.0 * cfg->checkpoint.every_minutes};
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

static graft_status run_loop(trainer *t) {
    const graft_config *cfg = t->cfg;
    int tty = t->rank0 && isatty(fileno(stdout));
    long log_every = cfg->train.log_every > 0 ? cfg->train.log_every : 10;
    if (t->rank0) train_log_freeze_table(t->model.params);
    if (t->rank0)
        GRAFT_INFO("training %s: %ld steps (%ld per epoch), global batch %ld, micro-batch %d, "
                   "%d rank(s)",
                   cfg->experiment, t->total_steps, t->steps_per_epoch, cfg->data.batch_size,
                   t->micro_batch, t->comm->size);
    train_step_times tm = {0};
    double window_loss = 0, window_samples = 0, window_start = graft_now_s();
    double run_start = window_start;
    int window_steps = 0;
    double window_bytes = 0;
    graft_status st = GRAFT_OK;
    for (long step = t->start_step; step < t->total_steps && st == GRAFT_OK; step++) {
        st = train_unfreeze_apply(t, step, 0);
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
        float lr = graft_lr_at(&t->sched, step);
        st = train_step(t, step, b, lr, &loss, &norm, &bytes, &tm);
        if (st == GRAFT_OK) st = train_sync_buffers(t);
        if (st != GRAFT_OK) break;
        window_bytes += bytes;
        window_loss += loss;
        window_samples += b->global_n;
        window_steps++;
        long done = step + 1;
        if (done % log_every == 0 || done == t->total_steps) {
            double now = graft_now_s();
            double rate = window_samples / (now - window_start);
            if (t->rank0) {
                train_write_metrics(t, done, b->epoch, window_loss / window_steps, lr, norm, rate,
                                    &tm, window_steps, window_bytes / window_steps);
                train_show_progress(done, t->start_step, t->total_steps, window_loss / window_steps,
                                    rate, now - run_start, tty);
            }
            memset(&tm, 0, sizeof tm);
            window_loss = window_samples = window_bytes = 0;
            window_steps = 0;
            window_start = graft_now_s();
        }
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
        if (st == GRAFT_OK) st = graft_params_save(t->model.params, path);
        if (st == GRAFT_OK)
            GRAFT_INFO("done in %.1f s; weights in %s", graft_now_s() - run_start, path);
    }
    return st;
}

static void trainer_free(trainer *t) {
    free(t->unfrozen_at);
    free(t->buffer_stage);
    graft_reducer_free(t->reducer);
    graft_loader_free(t->loader);
    graft_optim_free(&t->opt);
    graft_model_free(&t->model);
    graft_dataset_close(&t->train_set);
    graft_dataset_close(&t->val_set);
    if (t->metrics) fclose(t->metrics);
    if (t->log) {
        graft_log_set_file(NULL);
        fclose(t->log);
    }
    train_unlock_dirs(t, 0);
}

graft_status graft_train(const graft_config *cfg, graft_comm *comm) {
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
        /* everything the user gave was checked by train_setup: a failure from here on (a
         * full disk, EIO, a checkpoint or metrics write refused) is the run's, not the
         * input's (exit 1, which graft launch may restart) */
        if (graft_status_is_bad_input(st)) st = GRAFT_ERR_RUN;
    }
    trainer_free(&t);
    return st;
}
