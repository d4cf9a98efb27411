/* Model set-up shared by training and evaluation: build for the dataset's shape,
 * freeze by globs, allocate, initialise, load init weights. */
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
    if (make_trainable) graft_params_set_trainable(p, "*", 0, NULL);
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
void log_freeze_table(const graft_params *p) {
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
        if (fd < 0) return GRAFT_ERR_IO;
        close(fd);
        graft_status st = graft_ckpt_export(path, tmp);
        if (st != GRAFT_OK) {
            unlink(tmp);
            return st;
        }
    }
    graft_load_options opt = {.strict = cfg->model.init_strict,
                              .map_name = m->iface.map_name,
                              .replaced = cfg->model.head_num_classes > 0 ? m->iface.head : NULL};
    graft_load_report r;
    graft_status st = graft_params_load(m->params, from_ckpt ? tmp : path, &opt, &r);
    if (from_ckpt) unlink(tmp);
    if (st == GRAFT_OK)
        GRAFT_INFO("model.init %s: %d matched, %d missing, %d unexpected, %d replaced%s%s%s, "
                   "%d skipped",
                   path, r.matched, r.missing, r.unexpected, r.replaced,
                   opt.replaced ? " (head '" : "", opt.replaced ? opt.replaced : "",
                   opt.replaced ? "', freshly initialised)" : "", r.skipped);
    return st;
}

graft_status model_setup(graft_model *m, const graft_config *cfg, const graft_dataset *d,
                         int max_batch) {
    graft_model_input input = {.pad_id = -1};
    if (d->kind == GRAFT_DATA_IMAGES) {
        input.channels = d->channels;
        input.height = d->height;
        input.width = d->width;
    } else {
        input.vocab_size = d->vocab_size;
        input.seq_len = cfg->data.seq_len;
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
    GRAFT_TRY(graft_params_finalize(m->params));
    GRAFT_TRY(m->iface.build(m->self, max_batch));
    m->iface.init_weights(m->self, (uint64_t)cfg->seed);
    if (cfg->model.init) GRAFT_TRY(load_init_weights(m, cfg));
    return GRAFT_OK;
}

graft_status write_json_atomic(const char *path, json_t *value) {
    char *text = json_dumps(value, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text) return GRAFT_ERR_NOMEM;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2); /* end the file with a newline */
    if (!line) {
        free(text);
        return GRAFT_ERR_NOMEM;
    }
    text = line;
    text[len++] = '\n';
    graft_status st = graft_fs_write_atomic(path, text, len);
    free(text);
    return st;
}
