/* Validation of a loaded config: required keys, every stored value against the table
 * (values from overrides or code bypass the loader's checks), then rules across keys. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

/* A directory name (NAME_MAX), and a checkpoint directory that leaves room in a path
 * (GRAFT_FS_PATH_MAX) for "/step-NNNNNNNN/<file>.tmp". */
#define EXPERIMENT_MAX_LEN 255
#define CKPT_DIR_MAX_LEN (GRAFT_FS_PATH_MAX - 256)

static graft_status check_stored(const cfg_where *w, const key_spec *k, const char *path,
                                 const void *base);

/* Range error for a value already in the struct (no position to name). */
static graft_status fail_stored_range(const cfg_where *w, const key_spec *k, const char *path,
                                      double x) {
    char found[40];
    cfg_number_text(x, found, sizeof found);
    return cfg_fail_range(w, NULL, k, path, found);
}

/* A stored number of a KEY_F32 key that a 32-bit float cannot hold. */
static graft_status check_stored_f32(const cfg_where *w, const key_spec *k, const char *path,
                                     double x) {
    char found[40];
    cfg_number_text(x, found, sizeof found);
    return cfg_check_f32(w, NULL, k, path, x, found);
}

/* A stored string: set unless nullable, non-empty, a known enum name, a valid dir name. */
static graft_status check_stored_string(const cfg_where *w, const key_spec *k, const char *path,
                                        const char *s) {
    if (!s) {
        if (k->flags & (KEY_NULLABLE | KEY_REQUIRED)) return GRAFT_OK; /* required: see caller */
        return cfg_fail(w, NULL, path, "must be set");
    }
    return cfg_check_string(w, NULL, k, path, s);
}

/* A stored list of strings (or NAME=value entries): counts and items. */
static graft_status check_stored_list(const cfg_where *w, const key_spec *k, const char *path,
                                      const graft_strlist *l) {
    if (l->count < k->min_items)
        return cfg_fail(w, NULL, path, "must have at least %d entr%s, found %d", k->min_items,
                        k->min_items == 1 ? "y" : "ies", l->count);
    if (k->max_items && l->count > k->max_items)
        return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                        l->count);
    key_spec item = *k;
    item.type = KEY_STRING;
    item.flags &= ~(unsigned)(KEY_NULLABLE | KEY_REQUIRED);
    for (int i = 0; i < l->count; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
        if (k->type == KEY_ENVMAP) {
            const char *s = l->items[i], *eq = s ? strchr(s, '=') : NULL;
            if (!eq || !cfg_is_env_name(s, (size_t)(eq - s)))
                return cfg_fail(w, NULL, item_path, "expected NAME=value, found '%.64s'",
                                s ? s : "(null)");
        } else {
            GRAFT_TRY(check_stored_string(w, &item, item_path, l->items[i]));
        }
    }
    return GRAFT_OK;
}

/* Re-check a stored value against the table (the struct may have been edited in code). */
static graft_status check_stored(const cfg_where *w, const key_spec *k, const char *path,
                                 const void *base) {
    const char *field = (const char *)base + k->offset;
    switch (k->type) {
    case KEY_INT: {
        int x = *(const int *)field;
        return cfg_in_range(k, x) ? GRAFT_OK : fail_stored_range(w, k, path, x);
    }
    case KEY_LONG: {
        long x = *(const long *)field;
        return cfg_in_range(k, (double)x) ? GRAFT_OK : fail_stored_range(w, k, path, (double)x);
    }
    case KEY_DOUBLE: {
        double x = *(const double *)field;
        if ((k->flags & KEY_NULLABLE) && x < 0) return GRAFT_OK; /* not given */
        if (!isfinite(x)) return cfg_fail(w, NULL, path, "must be a finite number");
        if (!cfg_in_range(k, x)) return fail_stored_range(w, k, path, x);
        return check_stored_f32(w, k, path, x);
    }
    case KEY_BOOL: {
        int x = *(const int *)field;
        if (x != 0 && x != 1) return cfg_fail(w, NULL, path, "must be true or false, found %d", x);
        return GRAFT_OK;
    }
    case KEY_STRING:
    case KEY_ENUM:
        return check_stored_string(w, k, path, *(char *const *)field);
    case KEY_STRLIST:
    case KEY_ENVMAP:
        return check_stored_list(w, k, path, (const graft_strlist *)field);
    case KEY_INTLIST: {
        int n = *(const int *)((const char *)base + k->aux_offset);
        if (n < 0 || n > k->max_items)
            return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                            n);
        for (int i = 0; i < n; i++) {
            int x = ((const int *)field)[i];
            if (!cfg_in_range(k, x)) {
                char item_path[CFG_MAX_PATH + 32];
                snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
                return fail_stored_range(w, k, item_path, x);
            }
        }
        return GRAFT_OK;
    }
    case KEY_DOUBLE_PAIR: {
        double x[2] = {*(const double *)field,
                       *(const double *)((const char *)base + k->aux_offset)};
        for (int i = 0; i < 2; i++) {
            char item_path[CFG_MAX_PATH + 32];
            snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
            if (!cfg_in_range(k, x[i])) return fail_stored_range(w, k, item_path, x[i]);
            GRAFT_TRY(check_stored_f32(w, k, item_path, x[i]));
        }
        return GRAFT_OK;
    }
    case KEY_MAPLIST: {
        const char *items = *(char *const *)field;
        int n = *(const int *)((const char *)base + k->aux_offset);
        if (n < 0 || (n > 0 && !items) || (k->max_items && n > k->max_items))
            return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                            n);
        for (int i = 0; i < n; i++) {
            const char *entry = items + (size_t)i * k->elem_size;
            for (int f = 0; f < k->n_fields; f++) {
                const key_spec *fk = &k->fields[f];
                char field_path[CFG_MAX_PATH + 64];
                snprintf(field_path, sizeof field_path, "%s[%d].%s", path, i, fk->key);
                if (fk->type == KEY_STRING && (fk->flags & KEY_REQUIRED) &&
                    !*(char *const *)(entry + fk->offset)) {
                    snprintf(field_path, sizeof field_path, "%s[%d]", path, i);
                    return cfg_fail(w, NULL, field_path, "missing required key '%s'", fk->key);
                }
                GRAFT_TRY(check_stored(w, fk, field_path, entry));
            }
        }
        return GRAFT_OK;
    }
    }
    return GRAFT_ERR_INTERNAL;
}

/* Whether a required key has a value (numbers: non-zero, since 0 is out of range). */
static int is_given(const key_spec *k, const void *base) {
    const char *field = (const char *)base + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_ENUM:
        return *(char *const *)field != NULL;
    case KEY_DOUBLE:
        return *(const double *)field != 0.0;
    case KEY_INT:
    case KEY_BOOL:
        return *(const int *)field != 0;
    case KEY_LONG:
        return *(const long *)field != 0;
    default:
        return 1;
    }
}

/* Whether a product of settings survives narrowing to a 32-bit float (finite, and
 * non-zero when it is). */
static int product_fits_f32(double x) {
    double m = fabs(x);
    return x == 0 || (m >= FLT_TRUE_MIN && m <= FLT_MAX);
}

/* The optimizer forms these in double and hands them to the float kernels: each group's
 * peak learning rate optim.lr * lr_scale and, for adamw, 1 - lr * weight_decay. */
static graft_status check_optim_products(const cfg_where *w, const graft_config *cfg) {
    int adamw = strcmp(cfg->optim.name, "adamw") == 0;
    double wd_default = graft_config_weight_decay(cfg);
    for (int g = -1; g < cfg->optim.n_groups; g++) {
        const graft_cfg_group *cg = g >= 0 ? &cfg->optim.groups[g] : NULL;
        double scale = cg ? cg->lr_scale : 1.0;
        double wd = cg && cg->weight_decay >= 0 ? cg->weight_decay : wd_default;
        double lr = cfg->optim.lr * scale, decay = 1.0 - lr * wd;
        char path[64], a[40];
        if (cg)
            snprintf(path, sizeof path, "optim.groups[%d].lr_scale", g);
        else
            snprintf(path, sizeof path, "optim.lr");
        if (!product_fits_f32(lr)) {
            cfg_number_text(lr, a, sizeof a);
            return cfg_fail(w, NULL, path,
                            "the learning rate optim.lr * lr_scale = %s is not representable "
                            "as a non-zero 32-bit float, which graft computes with",
                            a);
        }
        if (adamw && !product_fits_f32(decay)) {
            cfg_number_text(decay, a, sizeof a);
            return cfg_fail(w, NULL, cg ? path : "optim.weight_decay",
                            "1 - learning rate * weight_decay = %s overflows a 32-bit float, "
                            "which graft computes with",
                            a);
        }
    }
    return GRAFT_OK;
}

/* A bucket size in MB becomes a byte count: it must hold one 4-byte gradient (the
 * table's limit keeps it within a size_t). */
static graft_status check_bucket_mb(const cfg_where *w, const char *key, double mb) {
    char found[40];
    cfg_number_text(mb, found, sizeof found);
    if (mb * 1048576.0 < (double)sizeof(float))
        return cfg_fail(w, NULL, key, "must hold at least one 4-byte gradient (>= %g MB), found %s",
                        (double)sizeof(float) / 1048576.0, found);
    return GRAFT_OK;
}

/* Required keys first, then every key against the table, then rules across keys. */
graft_status graft_config_validate(const graft_config *cfg) {
    graft_log_clear_last_error();
    cfg_where w = {__func__, cfg->source && cfg->source[0] ? cfg->source : "config", NULL};
    for (int i = 0; i < cfg_n_keys; i++)
        if ((cfg_keys[i].flags & KEY_REQUIRED) && !(cfg_keys[i].flags & KEY_TRAINING) &&
            !is_given(&cfg_keys[i], cfg))
            return cfg_fail(&w, NULL, NULL, "missing required key '%s'", cfg_keys[i].key);
    for (int i = 0; i < cfg_n_keys; i++) {
        /* a training key left out is graft_config_validate_training's to report */
        if ((cfg_keys[i].flags & KEY_TRAINING) && !is_given(&cfg_keys[i], cfg)) continue;
        GRAFT_TRY(check_stored(&w, &cfg_keys[i], cfg_keys[i].key, cfg));
    }

    char a[40], b[40];
    if (cfg->data.micro_batch > cfg->data.batch_size)
        return cfg_fail(&w, NULL, "data.micro_batch", "must be <= data.batch_size (%ld), found %ld",
                        cfg->data.batch_size, cfg->data.micro_batch);
    if (cfg->freeze.trainable.count > 0 && cfg->freeze.frozen.count > 0)
        return cfg_fail(&w, NULL, "freeze", "give freeze.trainable or freeze.frozen, not both");
    for (int i = 1; i < cfg->freeze.n_schedule; i++) {
        long prev = cfg->freeze.schedule[i - 1].at_step, at = cfg->freeze.schedule[i].at_step;
        if (at <= prev) {
            char path[64];
            snprintf(path, sizeof path, "freeze.schedule[%d].at_step", i);
            return cfg_fail(&w, NULL, path,
                            "must be > freeze.schedule[%d].at_step (%ld), found %ld", i - 1, prev,
                            at);
        }
    }
    /* model.lora is on by its targets: its other keys alone would silently do nothing */
    const int lora_keys_given = cfg->model.lora.rank != 8 || cfg->model.lora.alpha != 8.0 ||
                                cfg->model.lora.dropout != 0.0 || cfg->model.lora.init != NULL;
    if (cfg->model.lora.targets.count == 0 && lora_keys_given)
        return cfg_fail(&w, NULL, "model.lora.targets",
                        "must list at least one glob over linear-layer names when model.lora "
                        "is set");
    if (cfg->optim.lr > 0 && cfg->schedule.min_lr > cfg->optim.lr) {
        cfg_number_text(cfg->optim.lr, a, sizeof a);
        cfg_number_text(cfg->schedule.min_lr, b, sizeof b);
        return cfg_fail(&w, NULL, "schedule.min_lr", "must be <= optim.lr (%s), found %s", a, b);
    }
    if (cfg->optim.nesterov && strcmp(cfg->optim.name, "sgd") != 0)
        return cfg_fail(&w, NULL, "optim.nesterov", "only applies to optim.name: sgd");
    if (cfg->optim.nesterov && !(cfg->optim.momentum > 0))
        return cfg_fail(&w, NULL, "optim.nesterov", "needs optim.momentum > 0");
    /* paths built from these must fit the run's path buffers (runtime/io/fs.h) */
    if (strlen(cfg->experiment) > EXPERIMENT_MAX_LEN)
        return cfg_fail(&w, NULL, "experiment",
                        "must be at most %d characters (it names a directory), found %zu",
                        EXPERIMENT_MAX_LEN, strlen(cfg->experiment));
    const char *ckpt_paths[2] = {cfg->checkpoint.dir, cfg->checkpoint.resume};
    const char *ckpt_keys[2] = {"checkpoint.dir", "checkpoint.resume"};
    for (int i = 0; i < 2; i++)
        if (ckpt_paths[i] && strlen(ckpt_paths[i]) > CKPT_DIR_MAX_LEN)
            return cfg_fail(&w, NULL, ckpt_keys[i],
                            "must be at most %d characters (the files inside need the rest of "
                            "the %d a path may have), found %zu",
                            CKPT_DIR_MAX_LEN, GRAFT_FS_PATH_MAX, strlen(ckpt_paths[i]));
    GRAFT_TRY(check_optim_products(&w, cfg));
    GRAFT_TRY(check_bucket_mb(&w, "comm.bucket_mb", cfg->comm.bucket_mb));
    GRAFT_TRY(check_bucket_mb(&w, "comm.first_bucket_mb", cfg->comm.first_bucket_mb));
    if (cfg->launch.hosts.count > 0 && cfg->launch.hostfile)
        return cfg_fail(&w, NULL, "launch", "give launch.hosts or launch.hostfile, not both");
    return GRAFT_OK;
}

graft_status graft_config_validate_training(const graft_config *cfg) {
    cfg_where w = {__func__, cfg->source && cfg->source[0] ? cfg->source : "config", NULL};
    for (int i = 0; i < cfg_n_keys; i++)
        if ((cfg_keys[i].flags & KEY_TRAINING) && !is_given(&cfg_keys[i], cfg))
            return cfg_fail(&w, NULL, NULL, "missing required key '%s'", cfg_keys[i].key);
    if (cfg->train.epochs == 0 && cfg->train.max_steps == 0)
        return cfg_fail(&w, NULL, "train", "set train.epochs or train.max_steps");
    return GRAFT_OK;
}
