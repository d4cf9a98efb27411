/* Gradual unfreezing (freeze.schedule): at the scheduled step, more parameters become
 * trainable. Every rank applies the same entries at the same step (the schedule is in
 * the config, whose digest the ranks agree on), so gradient layouts, optimizer state
 * and reducer buckets stay identical across ranks. */
#include <fnmatch.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/reducer.h"
#include "runtime/core/check.h"
#include "train_internal.h"

/* (train_model_setup has checked that every glob of the schedule matches a parameter.) */
graft_status train_unfreeze_check(trainer *t) {
    const graft_params *p = t->model.params;
    t->unfrozen_at = malloc(((size_t)p->count + 1) * sizeof *t->unfrozen_at);
    if (!t->unfrozen_at) {
        GRAFT_ERROR("out of memory for the unfreezing table of %d parameters", p->count);
        return GRAFT_ERR_NOMEM;
    }
    for (int i = 0; i < p->count; i++)
        t->unfrozen_at[i] = -1;
    return GRAFT_OK;
}

graft_status train_unfreeze_apply(trainer *t, long step, int before) {
    const graft_config *cfg = t->cfg;
    graft_params *p = t->model.params;
    size_t *old = NULL;
    size_t floats_before = p->n_grads;
    graft_status st = GRAFT_OK;
    for (int e = 0; e < cfg->freeze.n_schedule && st == GRAFT_OK; e++) {
        const graft_cfg_unfreeze *u = &cfg->freeze.schedule[e];
        if (before ? u->at_step >= step : u->at_step != step) continue;
        if (!old) { /* the layout the optimizer state is in now */
            old = malloc(((size_t)p->count + 1) * sizeof *old);
            if (!old) {
                GRAFT_ERROR("step %ld: out of memory unfreezing freeze.schedule[%d]", step, e);
                return GRAFT_ERR_NOMEM;
            }
            for (int i = 0; i < p->count; i++)
                old[i] = p->items[i].trainable ? p->items[i].grad_offset : SIZE_MAX;
        }
        for (int g = 0; g < u->trainable.count && st == GRAFT_OK; g++) {
            for (int i = 0; i < p->count; i++)
                if (!p->items[i].trainable && p->items[i].kind == GRAFT_KIND_PARAM &&
                    fnmatch(u->trainable.items[g], p->items[i].name, 0) == 0)
                    t->unfrozen_at[i] = u->at_step;
            st = graft_params_unfreeze(p, u->trainable.items[g], NULL, NULL);
        }
        if (st == GRAFT_OK && t->rank0)
            GRAFT_INFO("step %ld: freeze.schedule[%d] makes %d glob(s) trainable (%s%s)",
                       u->at_step, e, u->trainable.count, u->trainable.items[0],
                       u->trainable.count > 1 ? ", ..." : "");
    }
    if (!old || st != GRAFT_OK || p->n_grads == floats_before) {
        free(old);
        return st;
    }
    st = graft_optim_relayout(&t->opt, p, old);
    free(old);
    GRAFT_TRY(st);
    /* more layers now need activations kept for backward */
    GRAFT_TRY(graft_model_build(&t->model, t->micro_batch));
    if (t->reducer) {
        graft_reducer_free(t->reducer);
        t->reducer = NULL;
        GRAFT_TRY(train_make_reducer(t));
    }
    if (t->rank0) {
        GRAFT_INFO("trainable floats: %zu -> %zu", floats_before, p->n_grads);
        train_log_freeze_table(p);
    }
    return GRAFT_OK;
}

void train_unfreeze_restore_starts(trainer *t, long resume_step) {
    const graft_params *p = t->model.params;
    for (int i = 0; i < p->count; i++) {
        if (t->unfrozen_at[i] < 0) continue;
        /* optimizer steps taken since the unfreeze (non-finite steps skipped since then,
         * train.on_nonfinite: skip, are not told apart here) */
        int64_t start = t->opt.step - (resume_step - t->unfrozen_at[i]);
        t->opt.start[i] = start > 0 ? start : 0;
    }
}
