/* One training step and what keeps the replicas in step: the start-up agreement and
 * broadcast, the gradient reducer, the step itself (micro-batches, gradient sum,
 * clipping, update), the buffer broadcast after it and the final replica check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "comm/reducer.h"
#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/optim/optim.h"
#include "train_internal.h"

/* xxh64 of the model's structure as seen by this rank: names, shapes, trainable mask. */
static void model_digests(const graft_params *p, uint64_t *names, uint64_t *shapes,
                          uint64_t *mask) {
    XXH64_state_t *hn = XXH64_createState(), *hs = XXH64_createState(), *hm = XXH64_createState();
    XXH64_reset(hn, 0);
    XXH64_reset(hs, 0);
    XXH64_reset(hm, 0);
    for (int i = 0; i < p->count; i++) {
        const graft_param *q = &p->items[i];
        XXH64_update(hn, q->name, strlen(q->name) + 1);
        XXH64_update(hs, &q->ndim, sizeof q->ndim);
        XXH64_update(hs, q->shape, (size_t)q->ndim * sizeof q->shape[0]);
        unsigned char flag = (unsigned char)q->trainable;
        XXH64_update(hm, &flag, 1);
    }
    *names = XXH64_digest(hn);
    *shapes = XXH64_digest(hs);
    *mask = XXH64_digest(hm);
    XXH64_freeState(hn);
    XXH64_freeState(hs);
    XXH64_freeState(hm);
}

/* Several ranks: check they agree on what they are about to train (instead of hanging
 * later in a collective), start from rank 0's parameters, arm the watchdog, and set up
 * the reducer with the layers' grad-ready hook. */
static void on_grad_ready(void *ctx, size_t offset, size_t count) {
    graft_reducer_ready(ctx, offset, count);
}

graft_status train_setup_data_parallel(trainer *t) {
    graft_comm *comm = t->comm;
    graft_params *p = t->model.params;
    GRAFT_TRY(graft_comm_set_watchdog(comm, t->cfg->comm.timeout_s));
    /* The data by content, not only by size: the same relative path can be another
     * directory on each node. */
    static const char *const what[] = {"parameter names", "parameter shapes", "trainable mask",
                                       "world size",      "config digest",    "training set size",
                                       "training data",   "validation data"};
    uint64_t values[8];
    model_digests(p, &values[0], &values[1], &values[2]);
    values[3] = (uint64_t)comm->size;
    values[4] = graft_config_digest(t->cfg);
    values[5] = graft_loader_epoch_samples(t->loader);
    values[6] = graft_dataset_digest(&t->train_set);
    values[7] = t->have_val ? graft_dataset_digest(&t->val_set) : 0;
    graft_comm_set_context(comm, "the start-up agreement on what every rank trains");
    GRAFT_TRY(graft_comm_check_agreement(comm, what, values, 8));
    graft_comm_set_context(comm, "broadcasting rank 0's initial parameters");
    GRAFT_TRY(graft_comm_broadcast(comm, p->values, p->n_values * sizeof(float), 0));
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) t->buffer_floats += p->items[i].numel;
    if (t->buffer_floats && !(t->buffer_stage = malloc(t->buffer_floats * sizeof(float)))) {
        GRAFT_ERROR("out of memory for %zu buffer floats to broadcast", t->buffer_floats);
        return GRAFT_ERR_NOMEM;
    }
    GRAFT_TRY(train_make_reducer(t));
    if (t->rank0)
        GRAFT_INFO("data parallel over %d ranks (%s): %zu trainable floats in reducer buckets",
                   comm->size, comm->iface.name, p->n_grads);
    return GRAFT_OK;
}

graft_status train_make_reducer(trainer *t) {
    graft_params *p = t->model.params;
    /* parameter boundaries in the gradient buffer, ascending (= backward order) */
    size_t *starts = malloc(((size_t)p->count + 1) * sizeof *starts);
    if (!starts) {
        GRAFT_ERROR("out of memory for the reducer's %d parameter boundaries", p->count);
        return GRAFT_ERR_NOMEM;
    }
    int n = 0;
    for (int i = p->count - 1; i >= 0; i--)
        if (p->items[i].trainable) starts[n++] = p->items[i].grad_offset;
    graft_status st =
        graft_reducer_new_with_boundaries(&t->reducer, t->comm, p->grads, p->n_grads, starts, n,
                                          (size_t)(t->cfg->comm.bucket_mb * 1048576.0),
                                          (size_t)(t->cfg->comm.first_bucket_mb * 1048576.0));
    free(starts);
    if (st != GRAFT_OK) return st;
    if (t->cfg->comm.overlap) { /* else every bucket is marked ready in reducer_wait */
        p->on_grad_ready = on_grad_ready;
        p->on_grad_ready_ctx = t->reducer;
    }
    return GRAFT_OK;
}

/* The model's buffers (batchnorm running statistics) packed into `to` in table order,
 * and back. */
static void pack_buffers(const graft_params *p, float *to) {
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) {
            memcpy(to, graft_params_value(p, i), p->items[i].numel * sizeof(float));
            to += p->items[i].numel;
        }
}

static void unpack_buffers(graft_params *p, const float *from) {
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) {
            memcpy(graft_params_value(p, i), from, p->items[i].numel * sizeof(float));
            from += p->items[i].numel;
        }
}

/* train.on_nonfinite skip: the buffers as they were before the step (the forward pass
 * updates running statistics), so that a skipped step changes nothing. NULL stage and
 * nothing kept for models without buffers. */
static graft_status keep_buffers(trainer *t) {
    const graft_params *p = t->model.params;
    if (!t->skip_stage) {
        size_t n = 0;
        for (int i = 0; i < p->count; i++)
            if (p->items[i].kind == GRAFT_KIND_BUFFER) n += p->items[i].numel;
        if (n == 0) return GRAFT_OK;
        if (!(t->skip_stage = malloc(n * sizeof(float)))) return GRAFT_ERR_NOMEM;
    }
    pack_buffers(p, t->skip_stage);
    return GRAFT_OK;
}

/* One optimizer step: micro-batches over this rank's share, gradient sum across ranks
 * (the reducer overlaps it with the last micro-batch's backward), clipping, update. The
 * loss of each micro-batch is scaled by its share of the global batch, so the summed
 * gradient is the gradient of the global mean loss, however the batch was split. A loss
 * or gradient norm that is NaN or infinite on any rank makes no update (*nonfinite = 1;
 * the optimizer's step count does not advance; with skip, buffers are restored too). */
graft_status train_step(trainer *t, long step, graft_batch *b, float lr, double *loss_out,
                        float *norm_out, int *nonfinite, double *comm_bytes, train_step_times *tm) {
    graft_params *p = t->model.params;
    graft_params_zero_grad(p);
    int skip_mode = strcmp(t->cfg->train.on_nonfinite, "skip") == 0;
    if (skip_mode) GRAFT_TRY(keep_buffers(t));
    size_t sample_floats = (size_t)t->train_set.channels * t->train_set.height * t->train_set.width;
    /* token rows: T ids (sequences) or data.seq_len (token windows, one label per id) */
    size_t seq = t->train_set.kind == GRAFT_DATA_SEQUENCES ? (size_t)t->train_set.seq_len
                                                           : (size_t)t->cfg->data.seq_len;
    size_t label_stride = t->train_set.kind == GRAFT_DATA_TOKENS ? seq : 1;
    int is_tokens = b->tokens != NULL;
    int micro_steps = (b->n + t->micro_batch - 1) / t->micro_batch;
    if (t->reducer) {
        graft_reducer_set_step(t->reducer, step);
        graft_reducer_begin_step(t->reducer, micro_steps <= 1);
    }
    double loss_sum = 0;
    for (int k = 0; k < micro_steps; k++) {
        int start = k * t->micro_batch;
        int n = b->n - start < t->micro_batch ? b->n - start : t->micro_batch;
        if (t->reducer && k > 0) graft_reducer_begin_step(t->reducer, k == micro_steps - 1);
        double t0 = graft_now_s();
        const int32_t *labels = b->labels + (size_t)start * label_stride;
        float loss = train_feature_cache_active(t)
                         ? train_feature_cache_forward(t, b->indices + start, labels, n)
                         : graft_model_forward(
                               &t->model,
                               is_tokens ? NULL : b->inputs + (size_t)start * sample_floats,
                               is_tokens ? b->tokens + (size_t)start * seq : NULL, labels, n, 1,
                               NULL);
        double t1 = graft_now_s();
        float share = (float)n / (float)b->global_n;
        graft_model_backward(&t->model, share);
        tm->forward += t1 - t0;
        tm->backward += graft_now_s() - t1;
        loss_sum += (double)loss * share;
    }
    double t2 = graft_now_s();
    /* the loss, and how many ranks' own loss was non-finite: summed in one allreduce */
    float shared[2] = {(float)loss_sum, 0};
    shared[1] = (float)!isfinite(shared[0]);
    *comm_bytes = 0;
    if (t->reducer) {
        GRAFT_TRY(graft_reducer_wait(t->reducer, NULL));
        *comm_bytes = (double)graft_reducer_step_bytes(t->reducer);
        char context[64];
        snprintf(context, sizeof context, "step %ld: summing the loss", step);
        graft_comm_set_context(t->comm, context);
        GRAFT_TRY(graft_comm_allreduce_sum(t->comm, shared, 2));
    }
    double t3 = graft_now_s();
    *norm_out = graft_grad_clip_norm(p->grads, p->n_grads, (float)t->cfg->optim.grad_clip);
    /* Decided from values every rank holds alike (a count, and the norm of the summed
     * gradients), so every replica skips the same updates and they stay bit-identical. */
    *nonfinite = shared[1] > 0 || !isfinite(*norm_out);
    graft_status st = *nonfinite ? GRAFT_OK : graft_optim_step(&t->opt, p, lr);
    if (*nonfinite && skip_mode && t->skip_stage) unpack_buffers(p, t->skip_stage);
    tm->comm += t3 - t2;
    tm->optim += graft_now_s() - t3;
    *loss_out = shared[0];
    return st;
}

/* Buffers (batchnorm running statistics) are updated from each rank's own share of
 * the batch: after every step rank 0's are broadcast, as DDP's broadcast_buffers does,
 * so the replicas stay identical. One small collective; none for models without
 * buffers. */
graft_status train_sync_buffers(trainer *t) {
    const graft_params *p = t->model.params;
    if (t->comm->size == 1 || t->buffer_floats == 0) return GRAFT_OK;
    pack_buffers(p, t->buffer_stage);
    graft_comm_set_context(t->comm, "broadcasting rank 0's buffers after a step");
    GRAFT_TRY(graft_comm_broadcast(t->comm, t->buffer_stage, t->buffer_floats * sizeof(float), 0));
    unpack_buffers(t->model.params, t->buffer_stage);
    return GRAFT_OK;
}

/* At the end of training every replica must hold the same bits: check it. */
graft_status train_check_replicas(trainer *t) {
    if (t->comm->size == 1) return GRAFT_OK;
    const graft_params *p = t->model.params;
    static const char *const what[] = {"final parameter values"};
    uint64_t digest = XXH64(p->values, p->n_values * sizeof(float), 0);
    graft_comm_set_context(t->comm, "comparing the final parameters of every replica");
    GRAFT_TRY(graft_comm_check_agreement(t->comm, what, &digest, 1));
    if (t->rank0)
        GRAFT_INFO("all %d replicas are bit-identical (xxh64 %016llx)", t->comm->size,
                   (unsigned long long)digest);
    return GRAFT_OK;
}
