/* Saving a checkpoint: everything into step-N.tmp/ (each file fsynced), MANIFEST last,
 * the directory renamed to step-N, "latest" replaced through latest.tmp, then
 * keep_last pruning and removal of frozen files no kept checkpoint references.
 *
 * Failure handling: any error before "latest" is replaced removes what this save
 * created (the .tmp directory, a frozen file written by it) and puts back a step-N it
 * had moved aside, so earlier checkpoints and "latest" are as they were. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ckpt_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"

/* The name-length margin for "exp_avg_sq." and similar prefixes. */
#define OPTIM_NAME_MAX (GRAFT_NAME_MAX + 32)

static int path_present(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Remove step-*.tmp directories left by a save that crashed. A step-N.old.tmp whose
 * step-N is missing (a crash between moving the old checkpoint aside and renaming the
 * new one in) is put back instead. */
static void remove_stale_tmp(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "step-", 5) != 0 || !ends_with(e->d_name, ".tmp")) continue;
        char path[CKPT_PATH_MAX];
        struct stat st;
        if (graft_fs_path_join(path, sizeof path, root, e->d_name) != GRAFT_OK ||
            lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (ends_with(e->d_name, ".old.tmp")) {
            char name[CKPT_NAME_MAX], original[CKPT_PATH_MAX];
            long step;
            size_t len = strlen(e->d_name) - strlen(".old.tmp");
            snprintf(name, sizeof name, "%.*s", (int)len, e->d_name);
            if (ckpt_parse_step_name(name, &step) &&
                graft_fs_path_join(original, sizeof original, root, name) == GRAFT_OK &&
                !path_present(original) && rename(path, original) == 0) {
                GRAFT_INFO("put %s back from %s, left by a save that did not finish", original,
                           path);
                continue;
            }
        }
        if (ckpt_remove_tree(path, GRAFT_LOG_WARN, "this leftover of an unfinished save") ==
            GRAFT_OK)
            GRAFT_INFO("removed %s, left by a save that did not finish", path);
    }
    closedir(d);
}

/* xxh64 over the frozen parameters (names, shapes, values, in table order); the
 * frozen file is named after it. *n_frozen receives how many there are. */
static graft_status frozen_values_hash(const graft_params *p, uint64_t *hash, int *n_frozen) {
    XXH64_state_t *h = XXH64_createState();
    if (!h) return GRAFT_ERR_NOMEM;
    XXH64_reset(h, 0);
    *n_frozen = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || t->trainable) continue;
        (*n_frozen)++;
        int32_t ndim = t->ndim;
        XXH64_update(h, t->name, strlen(t->name) + 1);
        XXH64_update(h, &ndim, sizeof ndim);
        XXH64_update(h, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        XXH64_update(h, graft_params_value(p, i), t->numel * sizeof(float));
    }
    *hash = (uint64_t)XXH64_digest(h);
    XXH64_freeState(h);
    return GRAFT_OK;
}

/* What the newest checkpoint referencing frozen file `name` recorded about it. */
static int find_frozen_ref(const char *root, const char *name, ckpt_frozen_ref *ref) {
    ckpt_dir_entry *list;
    size_t n;
    if (ckpt_scan(root, &list, &n, GRAFT_LOG_DEBUG) != GRAFT_OK) return 0;
    int found = 0;
    for (size_t k = n; k-- > 0 && !found;) {
        char dir[CKPT_PATH_MAX];
        ckpt_info info;
        if (graft_fs_path_join(dir, sizeof dir, root, list[k].name) != GRAFT_OK ||
            ckpt_read_state(dir, &info, GRAFT_LOG_DEBUG) != GRAFT_OK)
            continue;
        if (info.frozen.present && strcmp(info.frozen.file, name) == 0) {
            *ref = info.frozen;
            found = 1;
        }
        ckpt_info_free(&info);
    }
    free(list);
    return found;
}

/* Make sure root/frozen-<hash>.safetensors holds the frozen parameters: reuse it when
 * a checkpoint already references it and it still hashes as recorded, else write it.
 * Fills ref; *created is 1 when this call made a file that did not exist. */
static graft_status prepare_frozen(const graft_params *p, const char *root, uint64_t values_hash,
                                   ckpt_frozen_ref *ref, char *path, size_t path_size, int *created,
                                   uint64_t *written) {
    memset(ref, 0, sizeof *ref);
    *created = 0;
    snprintf(ref->file, sizeof ref->file, "frozen-%016llx.safetensors",
             (unsigned long long)values_hash);
    if (graft_fs_path_join(path, path_size, root, ref->file) != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG; /* logged */
    struct stat st;
    int existed = stat(path, &st) == 0;
    ckpt_frozen_ref recorded;
    if (existed && find_frozen_ref(root, ref->file, &recorded)) {
        uint64_t h, bytes;
        if (graft_fs_xxh64(path, &h, &bytes, GRAFT_LOG_DEBUG) == GRAFT_OK && h == recorded.xxh64 &&
            bytes == recorded.bytes) {
            *ref = recorded;
            ref->present = 1;
            return GRAFT_OK;
        }
        GRAFT_WARN("%s does not match its checksum: writing it again", path);
    }
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st_ = graft_st_writer_set_metadata(&w, "format", "pt");
    if (st_ == GRAFT_OK) st_ = graft_st_writer_set_metadata(&w, "graft_version", GRAFT_VERSION);
    for (int i = 0; i < p->count && st_ == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || t->trainable) continue;
        st_ = graft_st_writer_add_f32(&w, t->name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                      graft_params_value(p, i));
    }
    if (st_ == GRAFT_OK) st_ = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    if (st_ != GRAFT_OK) return st_;
    *created = !existed;
    GRAFT_TRY(graft_fs_xxh64(path, &ref->xxh64, &ref->bytes, GRAFT_LOG_ERROR));
    ref->present = 1;
    *written += ref->bytes;
    return GRAFT_OK;
}

/* model.safetensors: every parameter and buffer, less the frozen parameters when they
 * live in a frozen file. */
static graft_status write_model(const graft_params *p, int skip_frozen, const char *path) {
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st = graft_st_writer_set_metadata(&w, "format", "pt");
    if (st == GRAFT_OK) st = graft_st_writer_set_metadata(&w, "graft_version", GRAFT_VERSION);
    /* LoRA adapters: what `graft ckpt export --merge-lora` needs besides the tensors */
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        if (t->adapter != GRAFT_ADAPTER_A) continue;
        char scale[32];
        snprintf(scale, sizeof scale, "%.9g", (double)t->adapter_scale);
        st = graft_st_writer_set_metadata(&w, CKPT_META_LORA_SCALE, scale);
        if (st == GRAFT_OK)
            st = graft_st_writer_set_metadata(&w, CKPT_META_LORA_FAN_IN_FAN_OUT,
                                              t->fan_in_fan_out ? "1" : "0");
        break;
    }
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        if (skip_frozen && t->kind == GRAFT_KIND_PARAM && !t->trainable) continue;
        st = graft_st_writer_add_f32(&w, t->name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                     graft_params_value(p, i));
    }
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    return st;
}

/* optim.safetensors: "<state name>.<parameter name>" per trainable parameter and
 * state buffer (no tensors for plain SGD or without an optimizer). */
static graft_status write_optim(const graft_params *p, const graft_optim *o, const char *path) {
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st = graft_st_writer_set_metadata(&w, "format", "pt");
    for (int b = 0; o && b < o->n_bufs && st == GRAFT_OK; b++) {
        const char *state_name = graft_optim_state_name(o, b);
        for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
            const graft_param *t = &p->items[i];
            const float *slice = graft_optim_param_state(o, p, i, b);
            if (!slice) continue;
            char name[OPTIM_NAME_MAX];
            snprintf(name, sizeof name, "%s.%s", state_name, t->name);
            st = graft_st_writer_add_f32(&w, name, GRAFT_DTYPE_F32, t->ndim, t->shape, slice);
        }
    }
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    return st;
}

/* Write a small file durably, logging one line on failure. */
static graft_status write_text(const char *path, const char *text, size_t len, uint64_t *written) {
    GRAFT_TRY(graft_fs_write(path, text, len, GRAFT_LOG_ERROR));
    *written += len;
    return GRAFT_OK;
}

/* Files of tmp_dir, then MANIFEST listing their sizes and xxh64s. */
static graft_status write_checkpoint_files(const graft_ckpt_save_args *a, const char *tmp_dir,
                                           const ckpt_frozen_ref *frozen, uint64_t *written) {
    char path[CKPT_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, tmp_dir, "model.safetensors") != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    graft_status st = write_model(a->params, frozen->present, path);
    if (st == GRAFT_OK) {
        graft_fs_path_join(path, sizeof path, tmp_dir, "optim.safetensors");
        st = write_optim(a->params, a->optim, path);
    }
    if (st == GRAFT_OK) {
        char *json = ckpt_state_json(a->state, a->optim, frozen);
        graft_fs_path_join(path, sizeof path, tmp_dir, "state.json");
        if (!json) {
            GRAFT_ERROR("%s: out of memory", path);
            return GRAFT_ERR_NOMEM;
        }
        st = write_text(path, json, strlen(json), written);
        free(json);
    }
    if (st == GRAFT_OK) {
        const char *cfg = a->config_yaml ? a->config_yaml : "";
        graft_fs_path_join(path, sizeof path, tmp_dir, "config.yaml");
        st = write_text(path, cfg, strlen(cfg), written);
    }
    if (st != GRAFT_OK) return st;

    char manifest[CKPT_N_FILES * (CKPT_NAME_MAX + 48)];
    size_t used = 0;
    for (int f = 0; f < CKPT_N_FILES; f++) {
        uint64_t h, bytes;
        graft_fs_path_join(path, sizeof path, tmp_dir, ckpt_files[f]);
        GRAFT_TRY(graft_fs_xxh64(path, &h, &bytes, GRAFT_LOG_ERROR));
        if (ends_with(ckpt_files[f], ".safetensors")) *written += bytes;
        used += (size_t)snprintf(manifest + used, sizeof manifest - used, "%016llx %llu %s\n",
                                 (unsigned long long)h, (unsigned long long)bytes, ckpt_files[f]);
    }
    graft_fs_path_join(path, sizeof path, tmp_dir, "MANIFEST");
    GRAFT_TRY(write_text(path, manifest, used, written));
    return graft_fs_fsync_dir(tmp_dir, GRAFT_LOG_ERROR);
}

/* Point root/latest at `name` through latest.tmp (write, fsync, rename). On failure
 * "latest" is unchanged and latest.tmp is gone. */
static graft_status replace_latest(const char *root, const char *name, uint64_t *written) {
    char tmp[CKPT_PATH_MAX], latest[CKPT_PATH_MAX], text[CKPT_NAME_MAX + 2];
    if (graft_fs_path_join(tmp, sizeof tmp, root, "latest.tmp") != GRAFT_OK ||
        graft_fs_path_join(latest, sizeof latest, root, "latest") != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    int len = snprintf(text, sizeof text, "%s\n", name);
    graft_status st = graft_fs_write(tmp, text, (size_t)len, GRAFT_LOG_ERROR);
    if (st == GRAFT_OK && rename(tmp, latest) != 0) {
        GRAFT_ERROR("%s: cannot rename it to latest: %s", tmp, strerror(errno));
        st = GRAFT_ERR_IO;
    }
    if (st != GRAFT_OK) {
        unlink(tmp);
        return st;
    }
    *written += (uint64_t)len;
    return GRAFT_OK;
}

/* Remove frozen-*.safetensors files that no remaining checkpoint references (and
 * leftover frozen-*.tmp files). Skipped when some checkpoint's state.json is
 * unreadable, since its reference is then unknown. */
static void prune_frozen(const char *root) {
    ckpt_dir_entry *list;
    size_t n;
    if (ckpt_scan(root, &list, &n, GRAFT_LOG_DEBUG) != GRAFT_OK) return;
    char(*refs)[CKPT_NAME_MAX] = calloc(n ? n : 1, sizeof *refs);
    int ok = refs != NULL;
    for (size_t k = 0; ok && k < n; k++) {
        char dir[CKPT_PATH_MAX];
        ckpt_info info;
        if (graft_fs_path_join(dir, sizeof dir, root, list[k].name) != GRAFT_OK ||
            ckpt_read_state(dir, &info, GRAFT_LOG_DEBUG) != GRAFT_OK) {
            GRAFT_DEBUG("%s: keeping every frozen file", dir);
            ok = 0;
            break;
        }
        if (info.frozen.present) snprintf(refs[k], sizeof refs[k], "%s", info.frozen.file);
        ckpt_info_free(&info);
    }
    DIR *d = ok ? opendir(root) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "frozen-", 7) != 0) continue;
        int stale_tmp = ends_with(e->d_name, ".safetensors.tmp");
        if (!stale_tmp && !ends_with(e->d_name, ".safetensors")) continue;
        int referenced = 0;
        for (size_t k = 0; k < n && !stale_tmp; k++)
            referenced |= strcmp(refs[k], e->d_name) == 0;
        if (referenced) continue;
        char path[CKPT_PATH_MAX];
        if (graft_fs_path_join(path, sizeof path, root, e->d_name) != GRAFT_OK) continue;
        if (unlink(path) != 0)
            GRAFT_WARN("%s: cannot remove this unreferenced frozen file: %s", path,
                       strerror(errno));
        else
            GRAFT_DEBUG("removed %s (no kept checkpoint references it)", path);
    }
    if (d) closedir(d);
    free(refs);
    free(list);
}

/* keep_last: of the checkpoints older than the one just written, keep the newest
 * keep_last - 1. Newer ones (from a run that went back to an earlier checkpoint) are
 * left alone: saving their step again replaces them. */
static void prune(const char *root, long current_step, int keep_last) {
    ckpt_dir_entry *list;
    size_t n;
    if (ckpt_scan(root, &list, &n, GRAFT_LOG_DEBUG) != GRAFT_OK) return;
    size_t older = 0;
    while (older < n && list[older].step < current_step)
        older++;
    size_t keep_older = (size_t)(keep_last - 1);
    size_t removed = 0;
    for (size_t k = 0; older > keep_older && k < older - keep_older; k++) {
        char dir[CKPT_PATH_MAX];
        if (graft_fs_path_join(dir, sizeof dir, root, list[k].name) != GRAFT_OK) continue;
        char what[64];
        snprintf(what, sizeof what, "this old checkpoint (keep_last %d)", keep_last);
        if (ckpt_remove_tree(dir, GRAFT_LOG_WARN, what) == GRAFT_OK) removed++;
    }
    free(list);
    if (removed) graft_fs_fsync_dir(root, GRAFT_LOG_DEBUG);
    prune_frozen(root);
}

/* The arguments make sense (programmer errors, logged). */
static graft_status check_args(const graft_ckpt_save_args *a) {
    if (!a || !a->dir || !*a->dir || !a->params || !a->state) {
        GRAFT_ERROR("missing dir, params or state");
        return GRAFT_ERR_INVALID_ARG;
    }
    const graft_ckpt_state *s = a->state;
    if (!a->params->finalized) {
        GRAFT_ERROR("%s: the parameter table is not finalized", a->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (a->keep_last < 1 || s->step < 0 || s->epoch < 0 || s->world_size < 1 ||
        s->cursor > (uint64_t)INT64_MAX) {
        GRAFT_ERROR("%s: bad arguments (keep_last %d, step %ld, epoch %ld, world_size %d)", a->dir,
                    a->keep_last, s->step, s->epoch, s->world_size);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (a->optim && a->optim->n != a->params->n_grads) {
        GRAFT_ERROR("%s: the optimizer was set up for another parameter table", a->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (strlen(a->dir) > CKPT_PATH_MAX - 2 * CKPT_NAME_MAX) {
        GRAFT_ERROR("%s: path too long", a->dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    return GRAFT_OK;
}

graft_status graft_ckpt_save(const graft_ckpt_save_args *a, uint64_t *bytes_written) {
    if (bytes_written) *bytes_written = 0;
    GRAFT_TRY(check_args(a));
    const char *root = a->dir;
    GRAFT_TRY(graft_fs_mkdirs(root, GRAFT_LOG_ERROR));
    remove_stale_tmp(root);

    char name[CKPT_NAME_MAX], tmp_name[CKPT_NAME_MAX], aside_name[CKPT_NAME_MAX];
    snprintf(name, sizeof name, "step-%08ld", a->state->step);
    snprintf(tmp_name, sizeof tmp_name, "step-%08ld.tmp", a->state->step);
    snprintf(aside_name, sizeof aside_name, "step-%08ld.old.tmp", a->state->step);
    char final_dir[CKPT_PATH_MAX], tmp_dir[CKPT_PATH_MAX], aside_dir[CKPT_PATH_MAX];
    graft_fs_path_join(final_dir, sizeof final_dir, root, name);
    graft_fs_path_join(tmp_dir, sizeof tmp_dir, root, tmp_name);
    graft_fs_path_join(aside_dir, sizeof aside_dir, root, aside_name);

    uint64_t written = 0;
    ckpt_frozen_ref frozen = {0};
    char frozen_path[CKPT_PATH_MAX] = "";
    int frozen_created = 0, made_tmp = 0, moved_aside = 0, renamed = 0;
    graft_status st = GRAFT_OK;
    if (a->save_frozen_once) {
        uint64_t values_hash;
        int n_frozen;
        st = frozen_values_hash(a->params, &values_hash, &n_frozen);
        if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory", root);
        if (st == GRAFT_OK && n_frozen > 0)
            st = prepare_frozen(a->params, root, values_hash, &frozen, frozen_path,
                                sizeof frozen_path, &frozen_created, &written);
    }
    if (st == GRAFT_OK) {
        if (mkdir(tmp_dir, 0755) != 0) {
            GRAFT_ERROR("%s: cannot create the directory: %s", tmp_dir, strerror(errno));
            st = GRAFT_ERR_IO;
        } else {
            made_tmp = 1;
        }
    }
    if (st == GRAFT_OK) st = write_checkpoint_files(a, tmp_dir, &frozen, &written);
    struct stat old;
    if (st == GRAFT_OK && lstat(final_dir, &old) == 0) {
        if (rename(final_dir, aside_dir) != 0) {
            GRAFT_ERROR("%s: cannot move the previous checkpoint of this step aside to %s: %s",
                        final_dir, aside_dir, strerror(errno));
            st = GRAFT_ERR_IO;
        } else {
            moved_aside = 1;
        }
    }
    if (st == GRAFT_OK) {
        if (rename(tmp_dir, final_dir) != 0) {
            GRAFT_ERROR("%s: cannot rename it to %s: %s", tmp_dir, final_dir, strerror(errno));
            st = GRAFT_ERR_IO;
        } else {
            renamed = 1;
            made_tmp = 0;
        }
    }
    if (st == GRAFT_OK) st = graft_fs_fsync_dir(root, GRAFT_LOG_ERROR);
    if (st == GRAFT_OK) st = replace_latest(root, name, &written);

    if (st != GRAFT_OK) {
        /* Undo: the new checkpoint goes, the one it replaced comes back. */
        if (renamed && rename(final_dir, tmp_dir) == 0) made_tmp = 1;
        if (made_tmp) ckpt_remove_tree(tmp_dir, GRAFT_LOG_DEBUG, "the unfinished save");
        if (moved_aside && rename(aside_dir, final_dir) != 0)
            GRAFT_WARN("%s: cannot put the previous checkpoint of this step back from %s: %s",
                       final_dir, aside_dir, strerror(errno));
        if (frozen_created) unlink(frozen_path);
        graft_fs_fsync_dir(root, GRAFT_LOG_DEBUG);
        return st;
    }
    /* latest already names the new checkpoint: consistent, but maybe not durable */
    GRAFT_TRY(graft_fs_fsync_dir(root, GRAFT_LOG_ERROR));
    if (moved_aside) ckpt_remove_tree(aside_dir, GRAFT_LOG_WARN, "the replaced checkpoint");
    prune(root, a->state->step, a->keep_last);
    if (bytes_written) *bytes_written = written;
    return GRAFT_OK;
}
