/* Set-up, where every check of the user's input happens: the model (shared by training
 * and evaluation: build for the dataset's shape, freeze by globs, allocate,
 * initialise, load init weights), the optimizer and its groups, and the trainer as a
 * whole (datasets, loader, resume, data parallelism). */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/ckpt/ckpt.h"
#include "runtime/core/check.h"
#include "runtime/io/fs.h"
#include "runtime/nn/lora_io.h"
#include "runtime/nn/params_io.h"
#include "train_internal.h"

static int count_matches(const graft_params *p, const char *glob) {
    int n = 0;
    for (int i = 0; i < p->count; i++)
        n += p->items[i].kind == GRAFT_KIND_PARAM && fnmatch(glob, p->items[i].name, 0) == 0;
    return n;
}

/* Apply freeze.trainable (everything else frozen) or freeze.frozen globs; check the
 * globs of freeze.schedule too (applied later, by the training loop). */
static graft_status apply_freezing(graft_params *p, const graft_config *cfg) {
    for (int e = 0; e < cfg->freeze.n_schedule; e++) {
        const graft_strlist *globs = &cfg->freeze.schedule[e].trainable;
        for (int g = 0; g < globs->count; g++)
            if (count_matches(p, globs->items[g]) == 0) {
                GRAFT_ERROR("freeze.schedule[%d].trainable: '%s' matches no parameter of the model",
                            e, globs->items[g]);
                return GRAFT_ERR_CONFIG;
            }
    }
    const graft_strlist *globs =
        cfg->freeze.trainable.count ? &cfg->freeze.trainable : &cfg->freeze.frozen;
    int make_trainable = cfg->freeze.trainable.count > 0;
    const char *key = make_trainable ? "freeze.trainable" : "freeze.frozen";
    if (make_trainable || cfg->model.lora.targets.count)
        graft_params_set_trainable(p, "*", 0, NULL);
    /* LoRA: the base is frozen and the adapters train (as in PEFT); freeze.trainable adds
     * to them (PEFT's modules_to_save), freeze.frozen takes from them */
    for (int i = 0; i < p->count; i++)
        if (p->items[i].adapter) p->items[i].trainable = 1;
    for (int i = 0; i < globs->count; i++) {
        int matched = 0;
        GRAFT_TRY(graft_params_set_trainable(p, globs->items[i], make_trainable, &matched));
        if (matched == 0) {
            GRAFT_ERROR("%s: '%s' matches no parameter of the model", key, globs->items[i]);
            return GRAFT_ERR_CONFIG;
        }
    }
    return GRAFT_OK;
}

/* Log trainable vs frozen parameter counts per top-level module ("hidden", "head"). */
void train_log_freeze_table(const graft_params *p) {
    char module[GRAFT_NAME_MAX] = "";
    size_t trainable = 0, frozen = 0;
    GRAFT_INFO("%-24s %12s %12s", "module", "trainable", "frozen");
    for (int i = 0; i <= p->count; i++) {
        char name[GRAFT_NAME_MAX] = "";
        if (i < p->count) {
            if (p->items[i].kind != GRAFT_KIND_PARAM) continue;
            snprintf(name, sizeof name, "%s", p->items[i].name);
            char *dot = strchr(name, '.');
            if (dot) *dot = '\0';
        }
        if (i == p->count || (module[0] && strcmp(name, module) != 0)) {
            if (module[0]) GRAFT_INFO("%-24s %12zu %12zu", module, trainable, frozen);
            trainable = frozen = 0;
        }
        if (i == p->count) break;
        snprintf(module, sizeof module, "%s", name);
        if (p->items[i].trainable)
            trainable += p->items[i].numel;
        else
            frozen += p->items[i].numel;
    }
    GRAFT_INFO("%-24s %12zu %12zu", "total", graft_params_numel(p, 1),
               graft_params_numel(p, 0) - graft_params_numel(p, 1));
}

/* model.init: a safetensors file, or a checkpoint directory (its weights are exported
 * to a temporary file first, so frozen parameters stored apart come along). */
static graft_status load_init_weights(const graft_model *m, const graft_config *cfg) {
    const char *path = cfg->model.init;
    char tmp[] = "/tmp/graft-init-XXXXXX";
    int from_ckpt = graft_ckpt_is_checkpoint(path);
    if (from_ckpt) {
        int fd = mkstemp(tmp);
        if (fd < 0) {
            GRAFT_ERROR("%s: cannot create a temporary file to export %s's weights: %s", tmp, path,
                        strerror(errno));
            return GRAFT_ERR_IO;
        }
        close(fd);
        graft_status st = graft_ckpt_export(path, tmp, GRAFT_DTYPE_F32);
        if (st != GRAFT_OK) {
            unlink(tmp);
            return st;
        }
    }
    graft_load_options opt =
        graft_model_load_options(m, cfg->model.init_strict, cfg->model.head_num_classes > 0);
    opt.shown_path = path;
    graft_load_report r;
    graft_status st = graft_params_load(m->params, from_ckpt ? tmp : path, &opt, &r);
    if (from_ckpt) unlink(tmp);
    if (st == GRAFT_OK)
        GRAFT_INFO("model.init %s: %d matched, %d missing, %d unexpected, %d replaced%s%s%s, "
                   "%d skipped, %d set to 0",
                   path, r.matched, r.missing, r.unexpected, r.replaced,
                   opt.replaced ? " (head '" : "", opt.replaced ? opt.replaced : "",
                   opt.replaced ? "', freshly initialised)" : "", r.skipped, r.zeroed);
    return st;
}

/* A model whose parameters alone (values and gradients, before optimizer state and
 * activations) exceed this machine's memory is a config that cannot run here: refused
 * as such, not left to fail allocating (which a restart would only repeat). Sums in
 * 64 bits, with the parameter counts the blocks computed with overflow checks. */
static graft_status check_params_fit_memory(const graft_params *p, const graft_config *cfg) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return GRAFT_OK; /* unknown: let the allocation decide */
    uint64_t memory = (uint64_t)pages * (uint64_t)page;
    uint64_t numel = 0, floats = 0, limit = memory / sizeof(float); /* values + gradients */
    for (int i = 0; i < p->count && floats <= limit; i++) {
        uint64_t n = p->items[i].numel, copies = p->items[i].trainable ? 2 : 1;
        numel += n > limit ? limit + 1 : n; /* stays far from wrapping: each term is capped */
        floats += (n > limit ? limit + 1 : n) * copies;
    }
    if (floats > limit) {
        GRAFT_ERROR("model.arch %s as configured has at least %llu parameters: with their "
                    "gradients more than this machine's %.1f GiB of memory",
                    cfg->model.arch, (unsigned long long)numel, (double)memory / 1073741824.0);
        return GRAFT_ERR_CONFIG;
    }
    return GRAFT_OK;
}

/* train_model_setup, and with load_init = 0 the same without loading model.init. */
static graft_status model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                                int max_batch, int load_init) {
    graft_model_input input = {.pad_id = -1, .mask_id = -1};
    if (d->kind == GRAFT_DATA_IMAGES) {
        input.channels = d->channels;
        input.height = d->height;
        input.width = d->width;
    } else {
        input.vocab_size = d->vocab_size;
        input.seq_len = cfg->data.seq_len;
        input.mask_id = d->mask_id;
    }
    if (d->kind == GRAFT_DATA_SEQUENCES) { /* labelled rows of the dataset's own length */
        input.seq_len = d->seq_len;
        input.pad_id = d->pad_id;
    }
    if (d->kind != GRAFT_DATA_TOKENS) {
        input.num_classes = d->num_classes;
        if (cfg->model.head_num_classes && cfg->model.head_num_classes != d->num_classes) {
            GRAFT_ERROR("model.head.num_classes is %d but %s has %d classes",
                        cfg->model.head_num_classes, d->dir, d->num_classes);
            return GRAFT_ERR_CONFIG;
        }
    }
    GRAFT_TRY(graft_model_create(m, cfg, &input));
    if (d->kind == GRAFT_DATA_SEQUENCES && m->task != GRAFT_TASK_CLASSIFY) {
        GRAFT_ERROR("model.arch %s is a language model; %s holds labelled sequences, which "
                    "need a classifier (e.g. bert)",
                    cfg->model.arch, d->dir);
        graft_model_free(m);
        return GRAFT_ERR_CONFIG;
    }
    GRAFT_TRY(apply_freezing(m->params, cfg));
    GRAFT_TRY(check_params_fit_memory(m->params, cfg));
    GRAFT_TRY(graft_params_finalize(m->params));
    GRAFT_TRY(graft_model_build(m, max_batch));
    graft_model_init_weights(m, (uint64_t)cfg->seed);
    if (load_init && cfg->model.init) GRAFT_TRY(load_init_weights(m, cfg));
    return GRAFT_OK;
}

graft_status train_model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                               int max_batch) {
    return model_setup(m, cfg, d, max_batch, 1);
}

graft_status train_model_load(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                              int max_batch, const char *weights) {
    GRAFT_TRY(model_setup(m, cfg, d, max_batch, 0));
    graft_load_options opt = graft_model_load_options(m, 1, 0);
    GRAFT_TRY(graft_params_load(m->params, weights, &opt, NULL));
    return graft_model_load_lora_init(m, cfg); /* on top of the weights */
}

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
    /* a short trial run of a long config: train on the unfinished warmup, as PyTorch and
     * Hugging Face schedules do, and say so once */
    if (t->rank0 && s.warmup_steps > 0 && s.warmup_steps >= s.total_steps)
        GRAFT_WARN("schedule.warmup_steps %ld is not shorter than the run's %ld steps: the "
                   "warmup never finishes (the learning rate stays below optim.lr %g)",
                   s.warmup_steps, s.total_steps, cfg->optim.lr);
    return graft_lr_schedule_check(&t->sched);
}

/* What the datasets and the length of the run must satisfy, checked before anything is
 * trained or written: augmentation only for images, a batch no larger than the training
 * set (it would repeat samples within one step), an evaluation set that holds at least
 * one sample (one window of data.seq_len + 1 tokens), and freeze.schedule steps that the
 * run reaches. */
static graft_status check_data_fits_run(trainer *t) {
    const graft_config *cfg = t->cfg;
    if (t->train_set.kind != GRAFT_DATA_IMAGES &&
        (cfg->data.augment_crop_padding > 0 || cfg->data.augment_hflip)) {
        GRAFT_ERROR("data.augment.%s applies to images; data.train %s holds %s",
                    cfg->data.augment_crop_padding > 0 ? "crop_padding" : "hflip", cfg->data.train,
                    graft_dataset_kind_name(t->train_set.kind));
        return GRAFT_ERR_CONFIG;
    }
    size_t samples = graft_loader_epoch_samples(t->loader);
    if ((size_t)cfg->data.batch_size > samples) {
        GRAFT_ERROR("data.batch_size %ld is more than the %zu %s of data.train %s (a batch would "
                    "repeat samples)",
                    cfg->data.batch_size, samples,
                    t->train_set.kind == GRAFT_DATA_TOKENS ? "windows of data.seq_len + 1 tokens"
                                                           : "samples",
                    cfg->data.train);
        return GRAFT_ERR_CONFIG;
    }
    if (t->have_val) { /* the evaluation's loader refuses a set too small, in its own words */
        graft_loader *eval = NULL;
        GRAFT_TRY(graft_loader_new_eval(&eval, &t->val_set, t->micro_batch, t->comm->rank,
                                        t->comm->size, cfg->data.seq_len));
        graft_loader_free(eval);
    }
    for (int e = 0; e < cfg->freeze.n_schedule; e++) {
        long at = cfg->freeze.schedule[e].at_step;
        if (at >= t->total_steps) {
            GRAFT_ERROR("freeze.schedule[%d].at_step %ld is not before the end of the run (%ld "
                        "steps): its parameters would never train",
                        e, at, t->total_steps);
            return GRAFT_ERR_CONFIG;
        }
    }
    return GRAFT_OK;
}

/* The set-up each rank does alone: datasets, loader, model, optimizer and schedule, a
 * checkpoint to resume from. No collective: a rank may fail anywhere in it. */
static graft_status setup_local(trainer *t) {
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
    GRAFT_TRY(check_data_fits_run(t));
    GRAFT_TRY(train_model_setup(&t->model, cfg, &t->train_set, t->micro_batch));
    GRAFT_TRY(graft_model_load_lora_init(&t->model, cfg));
    GRAFT_TRY(train_unfreeze_check(t));
    GRAFT_TRY(setup_optimizer(t));
    GRAFT_TRY(train_resume(t));
    GRAFT_TRY(train_feature_cache_check(t));
    if (t->start_cursor != 0) { /* continue the sample stream where the checkpoint left it */
        graft_loader_free(t->loader);
        t->loader = NULL;
        GRAFT_TRY(graft_loader_new(&t->loader, &t->train_set, &lc, t->start_cursor));
    }
    return GRAFT_OK;
}

/* Every rank learns how every other's local set-up ended, so that a rank that failed
 * does not leave the others waiting in the first collective, and the job ends without
 * an abort. The lowest failing rank's status becomes every rank's. Ranks other than 0
 * held their error lines: usually each rank finds the same problem (the same config
 * and files), so only the lowest failing rank prints its line. */
static graft_status agree_on_setup(trainer *t, graft_status mine) {
    graft_comm *comm = t->comm;
    int *all = malloc((size_t)comm->size * sizeof *all);
    if (!all) {
        graft_log_release_errors(1);
        GRAFT_ERROR("out of memory for %d ranks' set-up outcomes", comm->size);
        return GRAFT_ERR_NOMEM;
    }
    int code = (int)mine;
    graft_comm_set_untimed_context(comm, "learning whether every rank finished its set-up");
    graft_status st = graft_comm_allgather(comm, &code, all, sizeof code);
    int first = -1;
    for (int r = 0; st == GRAFT_OK && r < comm->size && first < 0; r++)
        if (all[r] != GRAFT_OK) first = r;
    graft_log_release_errors(st != GRAFT_OK || first == comm->rank);
    graft_status agreed = st != GRAFT_OK ? st : first >= 0 ? (graft_status)all[first] : GRAFT_OK;
    free(all);
    if (st == GRAFT_OK && first >= 0) t->outcome_agreed = 1;
    return agreed;
}

/* The trainer: the local set-up, and with several ranks the agreement on it and the
 * data-parallel set-up. Everything that can fail on bad input happens here, before
 * the run directory is created. */
graft_status train_setup(trainer *t) {
    if (t->comm->size == 1) return setup_local(t);
    if (!t->rank0) graft_log_hold_errors();
    GRAFT_TRY(agree_on_setup(t, setup_local(t)));
    return train_setup_data_parallel(t);
}
