/* The training loop's side of checkpoints: what goes into one, when resuming is
 * allowed, and restarting the data stream where the checkpoint left it, so that a
 * resumed run writes the bytes the uninterrupted one would (docs/DESIGN.md,
 * Note [Exact resume]). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/ckpt/ckpt.h"
#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"
#include "train_internal.h"

/* Refuse to continue a checkpoint under changed training keys unless allowed. */
static graft_status check_config_change(trainer *t, const char *ckpt, const char *saved_text) {
    char name[TRAIN_PATH_MAX];
    graft_config saved;
    graft_config_defaults(&saved);
    graft_status st = graft_fs_path_join(name, sizeof name, ckpt, "config.yaml");
    if (st == GRAFT_OK) st = graft_config_load_text(&saved, name, saved_text); /* logs */
    if (st != GRAFT_OK) {
        graft_config_free(&saved);
        return GRAFT_ERR_FORMAT;
    }
    char keys[1024];
    int n = graft_config_resume_diff(&saved, t->cfg, keys, sizeof keys);
    graft_config_free(&saved);
    if (n == 0) return GRAFT_OK;
    if (!t->cfg->checkpoint.allow_config_change) {
        GRAFT_ERROR("%s: written with different values of %s; set "
                    "checkpoint.allow_config_change: true to resume anyway",
                    ckpt, keys);
        return GRAFT_ERR_MISMATCH;
    }
    if (t->rank0)
        GRAFT_WARN("%s: resuming with changed %s (checkpoint.allow_config_change)", ckpt, keys);
    return GRAFT_OK;
}

/* The checkpoint that checkpoint.resume names, or "" for a fresh start. */
static graft_status choose_checkpoint(const trainer *t, char *out, size_t size) {
    const char *resume = t->cfg->checkpoint.resume;
    out[0] = '\0';
    if (strcmp(resume, "never") == 0) return GRAFT_OK;
    const char *root = strcmp(resume, "auto") == 0 ? t->ckpt_dir : resume;
    char manifest[TRAIN_PATH_MAX];
    struct stat sb;
    if (strcmp(resume, "auto") != 0 &&
        graft_fs_path_join(manifest, sizeof manifest, resume, "MANIFEST") == GRAFT_OK &&
        stat(manifest, &sb) == 0) {
        snprintf(out, size, "%s", resume); /* a checkpoint itself */
        return GRAFT_OK;
    }
    graft_status st = graft_ckpt_find_resume(root, out, size);
    if (st == GRAFT_ERR_NOT_FOUND && strcmp(resume, "auto") == 0) {
        out[0] = '\0';
        return GRAFT_OK; /* nothing saved yet: a fresh run */
    }
    if (st == GRAFT_ERR_NOT_FOUND) GRAFT_ERROR("checkpoint.resume: %s holds no checkpoint", resume);
    return st;
}

/* The step a checkpoint was saved at, from its state.json (before loading anything:
 * the parameters unfrozen by then decide the optimizer state's layout). */
static graft_status checkpoint_step(const char *ckpt, long *step) {
    char path[TRAIN_PATH_MAX];
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, ckpt, "state.json"));
    json_t *j = graft_json_try_load_file(path, 0);
    long long v;
    graft_status st =
        graft_json_get_int(j, "step", LLONG_MIN, LLONG_MAX, &v) ? GRAFT_OK : GRAFT_ERR_FORMAT;
    if (st == GRAFT_OK)
        *step = (long)v;
    else
        GRAFT_ERROR("%s: state.json has no step", ckpt);
    json_decref(j);
    return st;
}

graft_status train_resume(trainer *t) {
    const graft_config *cfg = t->cfg;
    if (cfg->checkpoint.dir)
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", cfg->checkpoint.dir);
    else
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "runs/%s/checkpoints", cfg->experiment);
    t->last_saved_step = -1;
    t->last_save_time = graft_now_s();
    char ckpt[TRAIN_PATH_MAX];
    GRAFT_TRY(choose_checkpoint(t, ckpt, sizeof ckpt));
    if (!ckpt[0]) return GRAFT_OK;
    graft_ckpt_state state;
    memset(&state, 0, sizeof state);
    char *config_text = NULL;
    double t0 = graft_now_s();
    long saved_step = 0;
    GRAFT_TRY(checkpoint_step(ckpt, &saved_step));
    GRAFT_TRY(train_unfreeze_apply(t, saved_step, 1));
    graft_status st = graft_ckpt_load(ckpt, t->model.params, &t->opt, &state, &config_text);
    if (st == GRAFT_OK) train_unfreeze_restore_starts(t, state.step);
    double load_s = graft_now_s() - t0;
    if (st == GRAFT_OK && config_text) st = check_config_change(t, ckpt, config_text);
    if (st == GRAFT_OK && state.step > t->total_steps) {
        GRAFT_ERROR("%s: step %ld is past the %ld steps this run trains", ckpt, state.step,
                    t->total_steps);
        st = GRAFT_ERR_MISMATCH;
    }
    if (st == GRAFT_OK) {
        t->start_step = state.step;
        t->start_cursor = state.cursor;
        t->last_saved_step = state.step;
        t->nonfinite_in_a_row = state.nonfinite_in_a_row;
        if (t->rank0)
            GRAFT_INFO("resuming from %s: step %ld, epoch %ld, %llu samples consumed%s "
                       "(loaded in %.2f s)",
                       ckpt, state.step, state.epoch, (unsigned long long)state.cursor,
                       state.world_size != t->comm->size ? ", elastic: world size changed" : "",
                       load_s);
        if (t->rank0 && state.world_size != t->comm->size)
            GRAFT_INFO("saved by %d ranks, continuing on %d with the same global batch",
                       state.world_size, t->comm->size);
    }
    free(config_text);
    graft_ckpt_state_free(&state);
    return st;
}

char *train_config_text(const graft_config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    graft_status st = graft_config_print(cfg, f);
    fclose(f);
    if (st != GRAFT_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

graft_status train_save_checkpoint(trainer *t, long step) {
    graft_comm *comm = t->comm;
    /* the seed every rank will use for the next step's dropout: the per-rank RNG state */
    uint64_t mine =
        graft_rng_mix(graft_rng_mix((uint64_t)t->cfg->seed, (uint64_t)step), (uint64_t)comm->rank);
    uint64_t *states = calloc((size_t)comm->size, sizeof *states);
    if (!states) return GRAFT_ERR_NOMEM;
    graft_status st = graft_comm_allgather(comm, &mine, states, sizeof mine);
    if (st == GRAFT_OK && t->rank0) {
        double t0 = graft_now_s();
        graft_ckpt_state state = {
            .step = step,
            .epoch = (long)(graft_loader_cursor(t->loader) / graft_loader_epoch_samples(t->loader)),
            .cursor = graft_loader_cursor(t->loader),
            .world_size = comm->size,
            .rng_states = states,
            .lr = graft_lr_at(&t->sched, step > 0 ? step - 1 : 0),
            .config_digest = graft_config_digest(t->cfg),
            .nonfinite_in_a_row = t->nonfinite_in_a_row};
        snprintf(state.version, sizeof state.version, "%s", GRAFT_VERSION);
        char *text = train_config_text(t->cfg);
        graft_ckpt_save_args args = {.dir = t->ckpt_dir,
                                     .params = t->model.params,
                                     .optim = &t->opt,
                                     .state = &state,
                                     .config_yaml = text ? text : "",
                                     .save_frozen_once =
                                         strcmp(t->cfg->checkpoint.save_frozen, "once") == 0,
                                     .keep_last = t->cfg->checkpoint.keep_last};
        uint64_t bytes = 0;
        st = text ? graft_ckpt_save(&args, &bytes) : GRAFT_ERR_NOMEM;
        free(text);
        if (st == GRAFT_OK)
            GRAFT_INFO("checkpoint step-%08ld saved to %s (%.1f MB in %.2f s)", step, t->ckpt_dir,
                       (double)bytes / 1e6, graft_now_s() - t0);
    }
    free(states);
    /* every rank learns whether rank 0 saved (on_error decides what a failure means) */
    float failed = st != GRAFT_OK;
    if (comm->size > 1 && graft_comm_allreduce_sum(comm, &failed, 1) != GRAFT_OK)
        return GRAFT_ERR_MPI;
    t->last_save_time = graft_now_s();
    if (failed == 0) {
        t->last_saved_step = step;
        return GRAFT_OK;
    }
    if (strcmp(t->cfg->checkpoint.on_error, "stop") == 0) {
        if (t->rank0)
            GRAFT_ERROR("checkpoint at step %ld failed: stopping (checkpoint.on_error: stop)",
                        step);
        return GRAFT_ERR_IO;
    }
    if (t->rank0)
        GRAFT_WARN(
            "checkpoint at step %ld failed: training goes on (checkpoint.on_error: continue)",
            step);
    return GRAFT_OK;
}
