#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "comm/reducer.h"
#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/data/loader.h"
#include "runtime/io/fs.h"
#include "runtime/nn/params_io.h"
#include "runtime/optim/optim.h"
#include "train_internal.h"

/* Optimizer groups from optim.groups; a glob that matches nothing is an error. */
static graft_status setup_optimizer(trainer *t) {
    const graft_config *cfg = t->cfg;
    graft_optim_config oc;
    graft_optim_kind kind;
    GRAFT_TRY(graft_optim_kind_parse(cfg->optim.name, &kind));
    graft_optim_config_default(&oc, kind);
    if (cfg->optim.weight_decay >= 0) oc.weight_decay = cfg->optim.weight_decay;
    if (kind == GRAFT_OPTIM_SGD) {
        oc.momentum = cfg->optim.momentum;
        oc.nesterov = cfg->optim.nesterov;
    } else {
        oc.beta1 = cfg->optim.beta1;
        oc.beta2 = cfg->optim.beta2;
        oc.eps = cfg->optim.eps;
    }
    for (int g = 0; g < cfg->optim.n_groups; g++) {
        const graft_cfg_group *cg = &cfg->optim.groups[g];
        double wd = cg->weight_decay >= 0 ? cg->weight_decay : oc.weight_decay;
        int index = graft_optim_config_add_group(&oc, cg->lr_scale, wd);
        if (index < 0) return GRAFT_ERR_CONFIG;
        int matched = 0;
        GRAFT_TRY(graft_optim_assign_group(t->model.params, cg->params, index, &matched));
        if (matched == 0) {
            GRAFT_ERROR("optim.groups[%d].params: '%s' matches no parameter of the model", g,
                        cg->params);
            return GRAFT_ERR_CONFIG;
        }
    }
    GRAFT_TRY(graft_optim_init(&t->opt, &oc, t->model.params));
    graft_lr_kind lr_kind;
    GRAFT_TRY(graft_lr_kind_parse(cfg->schedule.name, &lr_kind));
    graft_lr_schedule s = {lr_kind, cfg->optim.lr, cfg->schedule.warmup_steps, t->total_steps,
                           cfg->schedule.min_lr};
    t->sched = s;
    return graft_lr_schedule_check(&t->sched);
}

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

static graft_status setup_data_parallel(trainer *t) {
    graft_comm *comm = t->comm;
    graft_params *p = t->model.params;
    GRAFT_TRY(graft_comm_set_watchdog(comm, t->cfg->comm.timeout_s));
    static const char *const what[] = {"parameter names", "parameter shapes", "trainable mask",
                                       "world size",      "config digest",    "training set size"};
    uint64_t values[6];
    model_digests(p, &values[0], &values[1], &values[2]);
    values[3] = (uint64_t)comm->size;
    values[4] = graft_config_digest(t->cfg);
    values[5] = graft_loader_epoch_samples(t->loader);
    GRAFT_TRY(graft_comm_check_agreement(comm, what, values, 6));
    GRAFT_TRY(graft_comm_broadcast(comm, p->values, p->n_values * sizeof(float), 0));
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) t->buffer_floats += p->items[i].numel;
    if (t->buffer_floats && !(t->buffer_stage = malloc(t->buffer_floats * sizeof(float))))
        return GRAFT_ERR_NOMEM;
    GRAFT_TRY(make_reducer(t));
    if (t->rank0)
        GRAFT_INFO("data parallel over %d ranks (%s): %zu trainable floats in reducer buckets",
                   comm->size, comm->iface.name, p->n_grads);
    return GRAFT_OK;
}

graft_status make_reducer(trainer *t) {
    graft_params *p = t->model.params;
    /* parameter boundaries in the gradient buffer, ascending (= backward order) */
    size_t *starts = malloc(((size_t)p->count + 1) * sizeof *starts);
    if (!starts) return GRAFT_ERR_NOMEM;
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

/* Buffers (batchnorm running statistics) are updated from each rank's own share of
 * the batch: after every step rank 0's are broadcast, as DDP's broadcast_buffers does,
 * so the replicas stay identical. One small collective; none for models without
 * buffers. */
static graft_status sync_buffers(trainer *t) {
    const graft_params *p = t->model.params;
    if (t->comm->size == 1 || t->buffer_floats == 0) return GRAFT_OK;
    float *at = t->buffer_stage;
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) {
            memcpy(at, graft_params_value(p, i), p->items[i].numel * sizeof(float));
            at += p->items[i].numel;
        }
    GRAFT_TRY(graft_comm_broadcast(t->comm, t->buffer_stage, t->buffer_floats * sizeof(float), 0));
    at = t->buffer_stage;
    for (int i = 0; i < p->count; i++)
        if (p->items[i].kind == GRAFT_KIND_BUFFER) {
            memcpy(graft_params_value(p, i), at, p->items[i].numel * sizeof(float));
            at += p->items[i].numel;
        }
    return GRAFT_OK;
}

/* At the end of training every replica must hold the same bits: check it. */
static graft_status check_replicas_identical(trainer *t) {
    if (t->comm->size == 1) return GRAFT_OK;
    const graft_params *p = t->model.params;
    static const char *const what[] = {"final parameter values"};
    uint64_t digest = XXH64(p->values, p->n_values * sizeof(float), 0);
    GRAFT_TRY(graft_comm_check_agreement(t->comm, what, &digest, 1));
    if (t->rank0)
        GRAFT_INFO("all %d replicas are bit-identical (xxh64 %016llx)", t->comm->size,
                   (unsigned long long)digest);
    return GRAFT_OK;
}

/* Everything that can fail on bad input, before the run directory is created. */
static graft_status setup(trainer *t) {
    const graft_config *cfg = t->cfg;
    int world = t->comm->size;
    GRAFT_TRY(graft_dataset_open(&t->train_set, cfg->data.train, cfg->data.verify));
    if (cfg->data.val) {
        GRAFT_TRY(graft_dataset_open(&t->val_set, cfg->data.val, cfg->data.verify));
        t->have_val = 1;
        const graft_dataset *tr = &t->train_set, *va = &t->val_set;
        graft_data_kind kind = tr->kind;
        if (va->kind != kind ||
            (kind == GRAFT_DATA_IMAGES && (va->channels != tr->channels ||
                                           va->height != tr->height || va->width != tr->width)) ||
            (kind != GRAFT_DATA_IMAGES && va->vocab_size != tr->vocab_size) ||
            (kind == GRAFT_DATA_SEQUENCES && va->seq_len != tr->seq_len) ||
            (kind != GRAFT_DATA_TOKENS && va->num_classes != tr->num_classes)) {
            GRAFT_ERROR("data.val %s does not match data.train %s (kind, sample shape, "
                        "vocabulary or classes)",
                        cfg->data.val, cfg->data.train);
            return GRAFT_ERR_CONFIG;
        }
    }
    if (cfg->data.batch_size < world) {
        GRAFT_ERROR("data.batch_size %ld is smaller than the number of ranks %d",
                    cfg->data.batch_size, world);
        return GRAFT_ERR_CONFIG;
    }
    long per_rank = (cfg->data.batch_size + world - 1) / world;
    t->micro_batch =
        (int)(cfg->data.micro_batch > 0 && cfg->data.micro_batch < per_rank ? cfg->data.micro_batch
                                                                            : per_rank);
    graft_loader_config lc = {.batch_size = cfg->data.batch_size,
                              .rank = t->comm->rank,
                              .world = world,
                              .seed = (uint64_t)cfg->seed,
                              .shuffle = cfg->data.shuffle,
                              .prefetch = cfg->data.prefetch,
                              .seq_len = cfg->data.seq_len,
                              .crop_padding = cfg->data.augment_crop_padding,
                              .hflip = cfg->data.augment_hflip};
    GRAFT_TRY(graft_loader_new(&t->loader, &t->train_set, &lc, 0));
    t->steps_per_epoch = graft_loader_steps_per_epoch(t->loader);
    t->total_steps =
        cfg->train.max_steps > 0 ? cfg->train.max_steps : cfg->train.epochs * t->steps_per_epoch;
    GRAFT_TRY(model_setup(&t->model, cfg, &t->train_set, t->micro_batch));
    GRAFT_TRY(unfreeze_check(t));
    GRAFT_TRY(setup_optimizer(t));
    GRAFT_TRY(resume_from_checkpoint(t));
    if (t->start_cursor != 0) { /* continue the sample stream where the checkpoint left it */
        graft_loader_free(t->loader);
        t->loader = NULL;
        GRAFT_TRY(graft_loader_new(&t->loader, &t->train_set, &lc, t->start_cursor));
    }
    return world > 1 ? setup_data_parallel(t) : GRAFT_OK;
}

/* A resumed run continues metrics.jsonl: lines of steps after the checkpoint (work that
 * is being redone) are dropped, so no step is counted twice. step 0 empties it. */
static graft_status keep_metrics_until(const char *path, long step) {
    FILE *in = step > 0 ? fopen(path, "r") : NULL;
    char *kept = NULL, line[8192];
    size_t len = 0;
    FILE *out = open_memstream(&kept, &len);
    if (!out) {
        if (in) fclose(in);
        return GRAFT_ERR_NOMEM;
    }
    while (in && fgets(line, sizeof line, in)) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *s = o ? json_object_get(o, "step") : NULL;
        if (json_is_integer(s) && json_integer_value(s) <= step) fputs(line, out);
        json_decref(o);
    }
    if (in) fclose(in);
    fclose(out);
    graft_status st = graft_fs_write_atomic(path, kept, len);
    free(kept);
    return st;
}

/* runs/<experiment>/ with the resolved config, metrics.jsonl and train.log (rank 0). */
static graft_status open_run_dir(trainer *t) {
    char path[PATH_BYTES];
    if ((size_t)snprintf(t->run_dir, sizeof t->run_dir, "runs/%s", t->cfg->experiment) >=
        sizeof t->run_dir)
        return GRAFT_ERR_CONFIG;
    if (!t->rank0) return GRAFT_OK;
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "eval"));
    int err = graft_fs_mkdirs(path);
    if (err != 0) {
        GRAFT_ERROR("%s: cannot create directory: %s", path, strerror(err));
        return GRAFT_ERR_IO;
    }
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "config.yaml"));
    char *text = config_to_text(t->cfg);
    graft_status st = text ? graft_fs_write_atomic(path, text, strlen(text)) : GRAFT_ERR_NOMEM;
    free(text);
    GRAFT_TRY(st);
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "metrics.jsonl"));
    GRAFT_TRY(keep_metrics_until(path, t->start_step));
    t->metrics = fopen(path, "a");
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, t->run_dir, "train.log"));
    t->log = fopen(path, t->start_step > 0 ? "a" : "w");
    if (!t->metrics || !t->log) {
        GRAFT_ERROR("%s: cannot create run files: %s", t->run_dir, strerror(errno));
        return GRAFT_ERR_IO;
    }
    graft_log_set_file(t->log);
    return GRAFT_OK;
}

/* Evaluate on the val set (or skip when there is none); rank 0 writes the JSON. */
static graft_status evaluate_and_record(trainer *t, long step, int final) {
    if (!t->have_val) return GRAFT_OK;
    eval_result r;
    GRAFT_TRY(eval_run(&t->model, &t->val_set, t->micro_batch, t->cfg->data.seq_len, t->comm, &r));
    graft_status st = GRAFT_OK;
    if (t->rank0) {
        if (r.task == GRAFT_TASK_CLASSIFY)
            GRAFT_INFO("eval step %ld: loss %.4f accuracy %.4f (%.0f samples)", step, r.loss,
                       r.accuracy, r.count);
        else
            GRAFT_INFO("eval step %ld: loss %.4f perplexity %.2f", step, r.loss, exp(r.loss));
        json_t *j = eval_to_json(&r, &t->val_set, step);
        char name[64], path[PATH_BYTES];
        snprintf(name, sizeof name, "eval/step-%08ld.json", step);
        st = graft_fs_path_join(path, sizeof path, t->run_dir, name);
        if (st == GRAFT_OK) st = write_json_atomic(path, j);
        if (st == GRAFT_OK) st = graft_fs_path_join(path, sizeof path, t->run_dir, "eval.json");
        if (st == GRAFT_OK) st = write_json_atomic(path, j);
        json_decref(j);
        if (final) {
            if (r.task == GRAFT_TASK_CLASSIFY) {
                printf("test accuracy: %.4f\n", r.accuracy);
                eval_print_per_class(&r, &t->val_set);
            } else {
                printf("test perplexity: %.3f\n", exp(r.loss));
            }
        }
    }
    eval_result_free(&r);
    return st;
}

static void write_metrics(trainer *t, long step, long epoch, double loss, float lr, float grad_norm,
                          double samples_per_s, const step_times *tm, int steps,
                          double comm_bytes) {
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "epoch", json_integer(epoch));
    json_object_set_new(o, "loss", json_real(loss));
    json_object_set_new(o, "lr", json_real(lr));
    json_object_set_new(o, "grad_norm", json_real(grad_norm));
    json_object_set_new(o, "samples_per_s", json_real(samples_per_s));
    json_object_set_new(o, "time_data", json_real(tm->data / steps));
    json_object_set_new(o, "time_forward", json_real(tm->forward / steps));
    json_object_set_new(o, "time_backward", json_real(tm->backward / steps));
    json_object_set_new(o, "time_comm", json_real(tm->comm / steps));
    json_object_set_new(o, "time_optim", json_real(tm->optim / steps));
    json_object_set_new(o, "comm_bytes", json_integer((json_int_t)comm_bytes));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
        fprintf(t->metrics, "%s\n", line);
        fflush(t->metrics);
        free(line);
    }
    json_decref(o);
}

/* One updating line on a terminal, plain lines otherwise. */
static void show_progress(long step, long first, long total, double loss, double samples_per_s,
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

/* One optimizer step: micro-batches over this rank's share, gradient sum across ranks
 * (the reducer overlaps it with the last micro-batch's backward), clipping, update. The
 * loss of each micro-batch is scaled by its share of the global batch, so the summed
 * gradient is the gradient of the global mean loss, however the batch was split. */
static graft_status train_step(trainer *t, long step, graft_batch *b, float lr, double *loss_out,
                               float *norm_out, double *comm_bytes, step_times *tm) {
    graft_params *p = t->model.params;
    graft_params_zero_grad(p);
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
        float loss = t->model.iface.forward(
            t->model.self, is_tokens ? NULL : b->inputs + (size_t)start * sample_floats,
            is_tokens ? b->tokens + (size_t)start * seq : NULL,
            b->labels + (size_t)start * label_stride, n, 1, NULL);
        double t1 = graft_now_s();
        float share = (float)n / (float)b->global_n;
        t->model.iface.backward(t->model.self, share);
        tm->forward += t1 - t0;
        tm->backward += graft_now_s() - t1;
        loss_sum += (double)loss * share;
    }
    double t2 = graft_now_s();
    float global_loss = (float)loss_sum;
    *comm_bytes = 0;
    if (t->reducer) {
        GRAFT_TRY(graft_reducer_wait(t->reducer, NULL));
        *comm_bytes = (double)graft_reducer_step_bytes(t->reducer);
        GRAFT_TRY(graft_comm_allreduce_sum(t->comm, &global_loss, 1));
    }
    double t3 = graft_now_s();
    *norm_out = graft_grad_clip_norm(p->grads, p->n_grads, (float)t->cfg->optim.grad_clip);
    graft_status st = GRAFT_OK;
    if (isfinite(*norm_out))
        st = graft_optim_step(&t->opt, p, lr);
    else if (t->rank0)
        GRAFT_WARN("step %ld: non-finite gradient norm: update skipped", step);
    tm->comm += t3 - t2;
    tm->optim += graft_now_s() - t3;
    *loss_out = global_loss;
    return st;
}

volatile sig_atomic_t graft_train_stop_signal = 0;

/* At every step boundary: save when checkpoint.every_steps / every_minutes say so, or
 * when a stop signal arrived on any rank (the ranks agree through one small allreduce,
 * so all of them save the same step). *stop = 1 after a signal's checkpoint. */
static graft_status checkpoint_boundary(trainer *t, long done, int *stop) {
    const graft_config *cfg = t->cfg;
    float flags[2] = {graft_train_stop_signal != 0, t->rank0 && cfg->checkpoint.every_minutes > 0 &&
                                                        graft_now_s() - t->last_save_time >=
                                                            60.0 * cfg->checkpoint.every_minutes};
    if (t->comm->size > 1) GRAFT_TRY(graft_comm_allreduce_sum(t->comm, flags, 2));
    int due = flags[1] > 0 ||
              (cfg->checkpoint.every_steps > 0 && done % cfg->checkpoint.every_steps == 0);
    *stop = flags[0] > 0;
    if ((due || *stop) && done < t->total_steps && t->last_saved_step != done)
        GRAFT_TRY(save_checkpoint(t, done));
    return GRAFT_OK;
}

static graft_status run_loop(trainer *t) {
    const graft_config *cfg = t->cfg;
    int tty = t->rank0 && isatty(fileno(stdout));
    long log_every = cfg->train.log_every > 0 ? cfg->train.log_every : 10;
    if (t->rank0) log_freeze_table(t->model.params);
    if (t->rank0)
        GRAFT_INFO("training %s: %ld steps (%ld per epoch), global batch %ld, micro-batch %d, "
                   "%d rank(s)",
                   cfg->experiment, t->total_steps, t->steps_per_epoch, cfg->data.batch_size,
                   t->micro_batch, t->comm->size);
    step_times tm = {0};
    double window_loss = 0, window_samples = 0, window_start = graft_now_s();
    double run_start = window_start;
    int window_steps = 0;
    double window_bytes = 0;
    graft_status st = GRAFT_OK;
    for (long step = t->start_step; step < t->total_steps && st == GRAFT_OK; step++) {
        st = unfreeze_apply(t, step, 0);
        if (st != GRAFT_OK) break;
        t->model.iface.seed_step(t->model.self,
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
        if (st == GRAFT_OK) st = sync_buffers(t);
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
                write_metrics(t, done, b->epoch, window_loss / window_steps, lr, norm, rate, &tm,
                              window_steps, window_bytes / window_steps);
                show_progress(done, t->start_step, t->total_steps, window_loss / window_steps, rate,
                              now - run_start, tty);
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
        int stop = 0;
        if (st == GRAFT_OK) st = checkpoint_boundary(t, done, &stop);
        if (st == GRAFT_OK && stop) {
            if (tty) printf("\n");
            if (t->rank0)
                GRAFT_INFO("stopped by a signal at step %ld: checkpoint saved, exiting with 75",
                           done);
            return GRAFT_STOPPED;
        }
    }
    if (tty) printf("\n");
    if (st == GRAFT_OK) st = check_replicas_identical(t);
    if (st == GRAFT_OK && t->last_saved_step != t->total_steps)
        st = save_checkpoint(t, t->total_steps);
    if (st == GRAFT_OK) st = evaluate_and_record(t, t->total_steps, 1);
    if (st == GRAFT_OK && t->rank0) {
        char path[PATH_BYTES];
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
}

graft_status graft_train(const graft_config *cfg, graft_comm *comm) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.comm = comm;
    t.rank0 = comm->rank == 0;
    graft_status st = setup(&t);
    if (st == GRAFT_OK) st = open_run_dir(&t);
    if (st == GRAFT_OK) st = run_loop(&t);
    trainer_free(&t);
    return st;
}

graft_status graft_evaluate(const graft_config *cfg, const char *weights, const char *json_path,
                            graft_comm *comm) {
    const char *dir = cfg->data.val ? cfg->data.val : cfg->data.train;
    graft_dataset d;
    memset(&d, 0, sizeof d);
    graft_model m;
    memset(&m, 0, sizeof m);
    eval_result r;
    memset(&r, 0, sizeof r);
    int batch = (int)(cfg->data.micro_batch > 0 ? cfg->data.micro_batch : cfg->data.batch_size);
    graft_status st = graft_dataset_open(&d, dir, cfg->data.verify);
    if (st == GRAFT_OK) st = model_setup(&m, cfg, &d, batch);
    if (st == GRAFT_OK) {
        graft_load_options opt = {.strict = 1, .map_name = m.iface.map_name};
        st = graft_params_load(m.params, weights, &opt, NULL);
    }
    if (st == GRAFT_OK) st = eval_run(&m, &d, batch, cfg->data.seq_len, comm, &r);
    if (st == GRAFT_OK && comm->rank == 0) {
        if (r.task == GRAFT_TASK_CLASSIFY) {
            printf("%s on %s: loss %.4f, accuracy %.4f (%.0f samples)\n", weights, dir, r.loss,
                   r.accuracy, r.count);
            eval_print_per_class(&r, &d);
        } else {
            printf("%s on %s: loss %.4f, perplexity %.3f\n", weights, dir, r.loss, exp(r.loss));
        }
        if (json_path) {
            json_t *j = eval_to_json(&r, &d, 0);
            st = write_json_atomic(json_path, j);
            json_decref(j);
        }
    }
    eval_result_free(&r);
    graft_model_free(&m);
    graft_dataset_close(&d);
    return st;
}
