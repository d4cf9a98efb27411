/* Reading checkpoints: verify, choosing the one to resume from, loading into a
 * parameter table and optimizer, exporting weights, and listing a root. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/lora.h"
#include "runtime/nn/params_io.h"

#define CONFIG_MAX_BYTES (64u << 20)
/* A problem line: a logged message, or a path and what is wrong with it. */
#define PROBLEM_MAX (CKPT_PATH_MAX + CKPT_LATEST_MAX + 64)

void graft_ckpt_state_free(graft_ckpt_state *s) {
    if (!s) return;
    free(s->rng_states);
    s->rng_states = NULL;
}

graft_status graft_ckpt_verify(const char *ckpt_dir) {
    if (!ckpt_dir || !*ckpt_dir) return GRAFT_ERR_INVALID_ARG;
    return ckpt_check(ckpt_dir, NULL, GRAFT_LOG_ERROR);
}

int graft_ckpt_is_checkpoint(const char *path) {
    if (!path || !graft_fs_is_dir(path)) return 0;
    char file[CKPT_PATH_MAX];
    struct stat st;
    if (graft_fs_path_join(file, sizeof file, path, "MANIFEST") == GRAFT_OK && stat(file, &st) == 0)
        return 1;
    if (graft_fs_path_join(file, sizeof file, path, "state.json") == GRAFT_OK &&
        stat(file, &st) == 0)
        return 1;
    /* the last component, without trailing slashes */
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    char base[CKPT_NAME_MAX];
    long step;
    if (len - start >= sizeof base) return 0;
    memcpy(base, path + start, len - start);
    base[len - start] = '\0';
    return ckpt_parse_step_name(base, &step);
}

graft_status graft_ckpt_find_resume(const char *dir, char *out, size_t out_size) {
    if (!dir || !*dir || !out || out_size == 0) return GRAFT_ERR_INVALID_ARG;
    ckpt_dir_entry *list;
    size_t n;
    graft_status st = ckpt_scan(dir, &list, &n, GRAFT_LOG_ERROR);
    if (st == GRAFT_ERR_NOT_FOUND) return st; /* no directory yet: a fresh run */
    if (st != GRAFT_OK) return st;
    char latest[CKPT_LATEST_MAX], latest_path[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    int latest_state = ckpt_read_latest(dir, latest, sizeof latest);
    graft_fs_path_join(latest_path, sizeof latest_path, dir, "latest");
    if (n == 0 && latest_state == 0) {
        free(list);
        return GRAFT_ERR_NOT_FOUND;
    }
    char(*problems)[PROBLEM_MAX] = calloc(n + 1, sizeof *problems);
    if (!problems) {
        free(list);
        GRAFT_ERROR("%s: out of memory", dir);
        return GRAFT_ERR_NOMEM;
    }
    size_t n_problems = 0;
    const char *chosen = NULL;
    if (latest_state == 1) {
        graft_fs_path_join(path, sizeof path, dir, latest);
        if (!graft_fs_is_dir(path))
            snprintf(problems[n_problems++], PROBLEM_MAX, "%s names %s, which does not exist",
                     latest_path, latest);
        else if (ckpt_check(path, NULL, GRAFT_LOG_QUIET) == GRAFT_OK)
            chosen = latest;
        else
            snprintf(problems[n_problems++], PROBLEM_MAX, "%s", graft_log_last_error());
    } else if (latest_state == 0) {
        snprintf(problems[n_problems++], PROBLEM_MAX, "%s is missing", latest_path);
    } else {
        snprintf(problems[n_problems++], PROBLEM_MAX, "%s", latest);
    }
    for (size_t k = n; !chosen && k-- > 0;) {
        if (latest_state == 1 && strcmp(list[k].name, latest) == 0) continue;
        graft_fs_path_join(path, sizeof path, dir, list[k].name);
        if (ckpt_check(path, NULL, GRAFT_LOG_QUIET) == GRAFT_OK)
            chosen = list[k].name;
        else
            snprintf(problems[n_problems++], PROBLEM_MAX, "%s", graft_log_last_error());
    }
    if (chosen) {
        for (size_t k = 0; k < n_problems; k++)
            GRAFT_WARN("%s; resuming from %s instead", problems[k], chosen);
        if (graft_fs_path_join(out, out_size, dir, chosen) != GRAFT_OK) st = GRAFT_ERR_INVALID_ARG;
    } else {
        for (size_t k = 0; k < n_problems; k++)
            GRAFT_WARN("%s", problems[k]);
        GRAFT_ERROR("%s: no intact checkpoint to resume from (%zu damaged)", dir, n);
        st = GRAFT_ERR_FORMAT;
    }
    free(problems);
    free(list);
    return st;
}

/* A checkpoint tensor fits parameter t: F32 and the same shape. `what` names it. */
static graft_status check_tensor(const char *ckpt_dir, const char *what, const graft_param *t,
                                 const graft_st_tensor *s) {
    if (s->dtype != GRAFT_DTYPE_F32) {
        GRAFT_ERROR("%s: %s is %s, checkpoints hold F32", ckpt_dir, what,
                    graft_dtype_name(s->dtype));
        return GRAFT_ERR_FORMAT;
    }
    if (!graft_param_shape_matches(t, s)) {
        char want[96], got[96];
        GRAFT_ERROR("%s: %s has shape %s in the checkpoint, the model has %s", ckpt_dir, what,
                    graft_format_shape(got, sizeof got, s->ndim, s->shape),
                    graft_format_shape(want, sizeof want, t->ndim, t->shape));
        return GRAFT_ERR_MISMATCH;
    }
    return GRAFT_OK;
}

/* Every parameter and buffer of the table is in the model or frozen file with its shape,
 * and those files hold nothing else. src[i] receives where parameter i is. */
static graft_status check_weights(const char *ckpt_dir, const graft_params *p,
                                  const graft_st_file *model, const graft_st_file *frozen,
                                  const graft_st_tensor **src) {
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        const graft_st_tensor *s = graft_st_find(model, t->name);
        if (!s && frozen) s = graft_st_find(frozen, t->name);
        char what[GRAFT_NAME_MAX + 16];
        snprintf(what, sizeof what, "tensor '%s'", t->name);
        if (!s) {
            GRAFT_ERROR("%s: no tensor '%s' in the checkpoint (a checkpoint of another model?)",
                        ckpt_dir, t->name);
            return GRAFT_ERR_MISMATCH;
        }
        graft_status st = check_tensor(ckpt_dir, what, t, s);
        if (st != GRAFT_OK) return st;
        src[i] = s;
    }
    const graft_st_file *files[2] = {model, frozen};
    for (int f = 0; f < 2 && files[f]; f++)
        for (size_t k = 0; k < files[f]->n_tensors; k++) {
            const char *name = files[f]->tensors[k].name;
            if (graft_params_find(p, name) < 0) {
                GRAFT_ERROR("%s: tensor '%s' of the checkpoint is not in the model (a checkpoint "
                            "of another model?)",
                            ckpt_dir, name);
                return GRAFT_ERR_MISMATCH;
            }
            if (f == 1 && graft_st_find(model, name)) {
                GRAFT_ERROR("%s: tensor '%s' is both in model.safetensors and in %s", ckpt_dir,
                            name, frozen->path);
                return GRAFT_ERR_FORMAT;
            }
        }
    return GRAFT_OK;
}

/* The optimizer state file matches optimizer o over table p: same kind, one tensor per
 * (state buffer, trainable parameter), nothing else. */
static graft_status check_optim(const char *ckpt_dir, const ckpt_info *info, const graft_params *p,
                                const graft_optim *o, const graft_st_file *f) {
    const char *run_kind = graft_optim_kind_name(o->cfg.kind);
    if (!info->has_optim) {
        GRAFT_ERROR("%s: the checkpoint holds no optimizer state (the run uses %s)", ckpt_dir,
                    run_kind);
        return GRAFT_ERR_MISMATCH;
    }
    if (info->optim_kind != o->cfg.kind) {
        GRAFT_ERROR("%s: the checkpoint's optimizer is %s, the run uses %s", ckpt_dir,
                    graft_optim_kind_name(info->optim_kind), run_kind);
        return GRAFT_ERR_MISMATCH;
    }
    for (int b = 0; b < o->n_bufs; b++)
        for (int i = 0; i < p->count; i++) {
            const graft_param *t = &p->items[i];
            if (t->kind != GRAFT_KIND_PARAM || !t->trainable) continue;
            char name[GRAFT_NAME_MAX + 32], what[GRAFT_NAME_MAX + 64];
            snprintf(name, sizeof name, "%s.%s", graft_optim_state_name(o, b), t->name);
            snprintf(what, sizeof what, "optimizer state '%s'", name);
            const graft_st_tensor *s = graft_st_find(f, name);
            if (!s) {
                GRAFT_ERROR("%s: no %s in the checkpoint (trainable parameters or %s settings "
                            "differ)",
                            ckpt_dir, what, run_kind);
                return GRAFT_ERR_MISMATCH;
            }
            graft_status st = check_tensor(ckpt_dir, what, t, s);
            if (st != GRAFT_OK) return st;
        }
    for (size_t k = 0; k < f->n_tensors; k++) {
        const char *name = f->tensors[k].name, *dot = strchr(name, '.');
        int belongs = 0;
        for (int b = 0; dot && b < o->n_bufs && !belongs; b++) {
            const char *state_name = graft_optim_state_name(o, b);
            if (strlen(state_name) != (size_t)(dot - name) ||
                strncmp(name, state_name, (size_t)(dot - name)) != 0)
                continue;
            int i = graft_params_find(p, dot + 1);
            belongs = i >= 0 && p->items[i].kind == GRAFT_KIND_PARAM && p->items[i].trainable;
        }
        if (!belongs) {
            GRAFT_ERROR("%s: optimizer state '%s' belongs to no trainable parameter of the run's "
                        "%s (trainable parameters or %s settings differ)",
                        ckpt_dir, name, run_kind, run_kind);
            return GRAFT_ERR_MISMATCH;
        }
    }
    return GRAFT_OK;
}

/* Open root/<frozen file> of a checkpoint. */
static graft_status open_frozen(const char *ckpt_dir, const ckpt_info *info, graft_st_file *f) {
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    if (!graft_fs_parent(root, sizeof root, ckpt_dir) ||
        graft_fs_path_join(path, sizeof path, root, info->frozen.file) != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    return graft_st_open(f, path);
}

/* Open ckpt_dir/<file>. */
static graft_status open_in(const char *ckpt_dir, const char *file, graft_st_file *f) {
    char path[CKPT_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, ckpt_dir, file) != GRAFT_OK)
        return GRAFT_ERR_INVALID_ARG;
    return graft_st_open(f, path);
}

graft_status graft_ckpt_load(const char *ckpt_dir, graft_params *params, graft_optim *optim,
                             graft_ckpt_state *state, char **config_yaml) {
    if (config_yaml) *config_yaml = NULL;
    if (!ckpt_dir || !*ckpt_dir || !params || !params->finalized) {
        GRAFT_ERROR("missing checkpoint directory or finalized parameter table");
        return GRAFT_ERR_INVALID_ARG;
    }
    if (optim && optim->n != params->n_grads) {
        GRAFT_ERROR("%s: the optimizer was set up for another parameter table", ckpt_dir);
        return GRAFT_ERR_INVALID_ARG;
    }
    ckpt_info info;
    graft_status st = ckpt_check(ckpt_dir, &info, GRAFT_LOG_ERROR);
    if (st != GRAFT_OK) return st;
    graft_st_file model = {0}, frozen = {0}, opt = {0};
    /* sizeof *p, p an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    const graft_st_tensor **src = calloc(params->count ? (size_t)params->count : 1, sizeof *src);
    char *config_text = NULL;
    if (!src) {
        GRAFT_ERROR("%s: out of memory", ckpt_dir);
        st = GRAFT_ERR_NOMEM;
    }
    if (st == GRAFT_OK) st = open_in(ckpt_dir, "model.safetensors", &model);
    if (st == GRAFT_OK && info.frozen.present) st = open_frozen(ckpt_dir, &info, &frozen);
    if (st == GRAFT_OK)
        st = check_weights(ckpt_dir, params, &model, info.frozen.present ? &frozen : NULL, src);
    if (st == GRAFT_OK && optim) st = open_in(ckpt_dir, "optim.safetensors", &opt);
    if (st == GRAFT_OK && optim) st = check_optim(ckpt_dir, &info, params, optim, &opt);
    if (st == GRAFT_OK && config_yaml) {
        char path[CKPT_PATH_MAX];
        size_t len;
        graft_fs_path_join(path, sizeof path, ckpt_dir, "config.yaml");
        st = graft_fs_read(path, CONFIG_MAX_BYTES, &config_text, &len, GRAFT_LOG_ERROR);
    }

    /* Everything is checked: from here on nothing can fail. */
    for (int i = 0; st == GRAFT_OK && i < params->count; i++)
        st = graft_st_read_f32(src[i], graft_params_value(params, i), params->items[i].numel);
    for (int b = 0; st == GRAFT_OK && optim && b < optim->n_bufs; b++)
        for (int i = 0; st == GRAFT_OK && i < params->count; i++) {
            float *slice = graft_optim_param_state(optim, params, i, b);
            if (!slice) continue;
            char name[GRAFT_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s.%s", graft_optim_state_name(optim, b),
                     params->items[i].name);
            st = graft_st_read_f32(graft_st_find(&opt, name), slice, params->items[i].numel);
        }
    if (st == GRAFT_OK && optim) optim->step = info.optim_step;
    if (st == GRAFT_OK && state) {
        *state = info.state;
        info.state.rng_states = NULL; /* moved */
    }
    if (st == GRAFT_OK && config_yaml) {
        *config_yaml = config_text;
        config_text = NULL;
    }
    free(config_text);
    free(src);
    graft_st_close(&opt);
    graft_st_close(&frozen);
    graft_st_close(&model);
    ckpt_info_free(&info);
    return st;
}

/* BatchNorm's step count: PyTorch's .half() and .bfloat16() leave this int64 buffer
 * alone, and in 16 bits a count above 2048 would lose steps, so it stays F32. */
static int is_step_count(const char *name) {
    static const char suffix[] = ".num_batches_tracked";
    size_t len = strlen(name), n = sizeof suffix - 1;
    return len >= n && strcmp(name + len - n, suffix) == 0;
}

/* Tensor t's values as fp32 in *values (malloc'd), after checking that each finite one
 * stays finite in `dtype`: PyTorch's .half() would turn 70000 into inf silently; an
 * exported file must not hold infinities its checkpoint did not. */
static graft_status export_values(const char *ckpt_dir, const graft_st_tensor *t,
                                  graft_dtype dtype, float **values) {
    float *v = malloc(t->numel ? t->numel * sizeof *v : 1);
    if (!v) return GRAFT_ERR_NOMEM;
    graft_status st = graft_st_read_f32(t, v, t->numel);
    size_t beyond = 0, first = 0;
    for (size_t i = 0; st == GRAFT_OK && i < t->numel; i++) {
        if (!isfinite(v[i])) continue;
        float back = dtype == GRAFT_DTYPE_F16 ? graft_f16_to_f32(graft_f32_to_f16(v[i]))
                                              : graft_bf16_to_f32(graft_f32_to_bf16(v[i]));
        if (isinf(back) && beyond++ == 0) first = i;
    }
    if (st == GRAFT_OK && beyond) {
        GRAFT_ERROR("%s: cannot export as %s: tensor '%s' has %zu value%s beyond %s's range "
                    "(the first, %g, at index %zu); export as f32",
                    ckpt_dir, graft_dtype_name(dtype), t->name, beyond, beyond == 1 ? "" : "s",
                    graft_dtype_name(dtype), (double)v[first], first);
        st = GRAFT_ERR_UNSUPPORTED;
    }
    if (st != GRAFT_OK) {
        free(v);
        return st;
    }
    *values = v;
    return GRAFT_OK;
}

/* "<layer>.lora_A.weight" or "<layer>.lora_B.weight". */
static int is_adapter_name(const char *name) {
    size_t len = strlen(name), suffix = strlen(".lora_A.weight");
    return len > suffix && (strcmp(name + len - suffix, ".lora_A.weight") == 0 ||
                            strcmp(name + len - suffix, ".lora_B.weight") == 0);
}

/* The adapter "<layer>.lora_<which>.weight" of a base weight "<layer>.weight", or NULL. */
static const graft_st_tensor *adapter_of(const graft_st_file *model, const char *weight,
                                         char which) {
    size_t len = strlen(weight), suffix = strlen(".weight");
    if (len <= suffix || strcmp(weight + len - suffix, ".weight") != 0) return NULL;
    char name[GRAFT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%.*s.lora_%c.weight", (int)(len - suffix), weight, which);
    return graft_st_find(model, name);
}

/* W + scale · B·A as floats (malloc'd), for a base weight with an adapter. */
static graft_status merged_values(const char *ckpt_dir, const graft_st_file *model,
                                  const graft_st_tensor *w, const graft_st_tensor *a,
                                  const graft_st_tensor *b, float **values) {
    const char *scale_text = graft_st_metadata_get(model, CKPT_META_LORA_SCALE);
    const char *fan_text = graft_st_metadata_get(model, CKPT_META_LORA_FAN_IN_FAN_OUT);
    char *end = NULL;
    double scale = scale_text ? strtod(scale_text, &end) : NAN;
    const int r = a->ndim == 2 ? (int)a->shape[0] : 0, in = a->ndim == 2 ? (int)a->shape[1] : 0;
    const int out = b->ndim == 2 ? (int)b->shape[0] : 0, fan = fan_text && fan_text[0] == '1';
    if (!scale_text || *end || !isfinite(scale) || !fan_text || r <= 0 || b->shape[1] != r ||
        w->ndim != 2 || w->shape[0] != (fan ? in : out) || w->shape[1] != (fan ? out : in)) {
        GRAFT_ERROR("%s: cannot merge the adapter of '%s': its shapes or the model's lora_scale / "
                    "lora_fan_in_fan_out metadata do not fit",
                    ckpt_dir, w->name);
        return GRAFT_ERR_FORMAT;
    }
    float *v = malloc(w->numel * sizeof *v), *av = malloc(a->numel * sizeof *av),
          *bv = malloc(b->numel * sizeof *bv);
    graft_status st = v && av && bv ? GRAFT_OK : GRAFT_ERR_NOMEM;
    if (st == GRAFT_OK) st = graft_st_read_f32(w, v, w->numel);
    if (st == GRAFT_OK) st = graft_st_read_f32(a, av, a->numel);
    if (st == GRAFT_OK) st = graft_st_read_f32(b, bv, b->numel);
    if (st == GRAFT_OK) graft_lora_merge_weight(v, av, bv, out, in, r, (float)scale, fan);
    free(av);
    free(bv);
    if (st != GRAFT_OK) {
        free(v);
        return st;
    }
    *values = v;
    return GRAFT_OK;
}

static graft_status export_checkpoint(const char *ckpt_dir, const char *out_file, graft_dtype dtype,
                                      int merge_lora) {
    if (!ckpt_dir || !out_file || !*out_file ||
        (dtype != GRAFT_DTYPE_F32 && dtype != GRAFT_DTYPE_F16 && dtype != GRAFT_DTYPE_BF16))
        return GRAFT_ERR_INVALID_ARG;
    ckpt_info info;
    GRAFT_TRY(ckpt_check(ckpt_dir, &info, GRAFT_LOG_ERROR));
    graft_st_file model = {0}, frozen = {0};
    graft_status st = open_in(ckpt_dir, "model.safetensors", &model);
    if (st == GRAFT_OK && info.frozen.present) st = open_frozen(ckpt_dir, &info, &frozen);
    graft_st_writer w;
    graft_st_writer_init(&w);
    if (st == GRAFT_OK) st = graft_st_writer_set_metadata(&w, "format", "pt");
    if (st == GRAFT_OK) st = graft_st_writer_set_metadata(&w, "graft_version", GRAFT_VERSION);
    const graft_st_file *files[2] = {&model, &frozen};
    int adapters = 0;
    for (size_t k = 0; k < model.n_tensors; k++)
        adapters += is_adapter_name(model.tensors[k].name);
    if (st == GRAFT_OK && merge_lora && !adapters) {
        GRAFT_ERROR("%s: no LoRA adapters to merge (the run had no model.lora)", ckpt_dir);
        st = GRAFT_ERR_MISMATCH;
    }
    /* converted values, borrowed by the writer until the save */
    size_t n_converted = 0, n_tensors = model.n_tensors + frozen.n_tensors;
    /* sizeof *converted, an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    float **converted = calloc(n_tensors + 1, sizeof *converted);
    if (!converted && st == GRAFT_OK) st = GRAFT_ERR_NOMEM;
    for (int f = 0; f < 2 && st == GRAFT_OK; f++)
        for (size_t k = 0; k < files[f]->n_tensors && st == GRAFT_OK; k++) {
            const graft_st_tensor *t = &files[f]->tensors[k];
            if (merge_lora && is_adapter_name(t->name)) continue;
            const graft_st_tensor *a = merge_lora ? adapter_of(&model, t->name, 'A') : NULL;
            const graft_st_tensor *b = merge_lora ? adapter_of(&model, t->name, 'B') : NULL;
            if (a && b) {
                st = merged_values(ckpt_dir, &model, t, a, b, &converted[n_converted]);
                if (st == GRAFT_OK)
                    st = graft_st_writer_add_f32(&w, t->name, dtype, t->ndim, t->shape,
                                                 converted[n_converted++]);
                continue;
            }
            if (dtype == GRAFT_DTYPE_F32 || is_step_count(t->name)) {
                st = graft_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
                continue;
            }
            st = export_values(ckpt_dir, t, dtype, &converted[n_converted]);
            if (st == GRAFT_OK)
                st = graft_st_writer_add_f32(&w, t->name, dtype, t->ndim, t->shape,
                                             converted[n_converted++]);
        }
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, out_file);
    graft_st_writer_free(&w);
    for (size_t k = 0; k < n_converted; k++)
        free(converted[k]);
    free(converted);
    graft_st_close(&frozen);
    graft_st_close(&model);
    ckpt_info_free(&info);
    return st;
}

graft_status graft_ckpt_export(const char *ckpt_dir, const char *out_file, graft_dtype dtype) {
    return export_checkpoint(ckpt_dir, out_file, dtype, 0);
}

graft_status graft_ckpt_export_merge_lora(const char *ckpt_dir, const char *out_file,
                                          graft_dtype dtype) {
    return export_checkpoint(ckpt_dir, out_file, dtype, 1);
}

/* Bytes of the regular files directly in dir. */
static uint64_t dir_bytes(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[CKPT_PATH_MAX];
        struct stat st;
        if (graft_fs_path_join(path, sizeof path, dir, e->d_name) == GRAFT_OK &&
            lstat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* Leftovers beside the checkpoints: unfinished saves, and frozen files with how many
 * of the listed checkpoints (refs, n) use each. */
static void list_other_entries(const char *dir, FILE *out, char (*refs)[CKPT_NAME_MAX], size_t n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[CKPT_PATH_MAX];
        struct stat st;
        if (graft_fs_path_join(path, sizeof path, dir, e->d_name) != GRAFT_OK ||
            lstat(path, &st) != 0)
            continue;
        size_t len = strlen(e->d_name);
        char name[GRAFT_ESCAPED_SIZE(sizeof e->d_name)]; /* any name can be in the directory */
        graft_escape(name, sizeof name, e->d_name);
        if (strncmp(e->d_name, "step-", 5) == 0 && len > 4 &&
            strcmp(e->d_name + len - 4, ".tmp") == 0 && S_ISDIR(st.st_mode)) {
            fprintf(out, "%s: %llu bytes, a save that did not finish (the next save removes it)\n",
                    name, (unsigned long long)dir_bytes(path));
        } else if (strncmp(e->d_name, "frozen-", 7) == 0 && S_ISREG(st.st_mode)) {
            size_t users = 0;
            for (size_t k = 0; k < n; k++)
                users += strcmp(refs[k], e->d_name) == 0;
            fprintf(out, "%s: %llu bytes, the frozen parameters of %zu checkpoint%s\n", name,
                    (unsigned long long)st.st_size, users, users == 1 ? "" : "s");
        }
    }
    closedir(d);
}

graft_status graft_ckpt_list(const char *dir, FILE *out) {
    if (!dir || !*dir || !out) return GRAFT_ERR_INVALID_ARG;
    ckpt_dir_entry *list;
    size_t n;
    graft_status st = ckpt_scan(dir, &list, &n, GRAFT_LOG_ERROR);
    if (st == GRAFT_ERR_NOT_FOUND) {
        GRAFT_ERROR("%s: no such checkpoint directory", dir);
        return st;
    }
    if (st != GRAFT_OK) return st;
    char(*refs)[CKPT_NAME_MAX] = calloc(n ? n : 1, sizeof *refs);
    if (!refs) {
        free(list);
        GRAFT_ERROR("%s: out of memory", dir);
        return GRAFT_ERR_NOMEM;
    }
    char latest[CKPT_LATEST_MAX];
    int latest_state = ckpt_read_latest(dir, latest, sizeof latest);
    int latest_listed = 0;
    for (size_t k = 0; k < n; k++) {
        char path[CKPT_PATH_MAX];
        ckpt_info info;
        graft_fs_path_join(path, sizeof path, dir, list[k].name);
        graft_status cst = ckpt_check(path, &info, GRAFT_LOG_QUIET);
        int is_latest = latest_state == 1 && strcmp(latest, list[k].name) == 0;
        latest_listed |= is_latest;
        fprintf(out, "%-13s %12llu bytes  ", list[k].name, (unsigned long long)dir_bytes(path));
        if (cst == GRAFT_OK)
            fprintf(out, "ok: step %ld, epoch %ld, cursor %llu", info.state.step, info.state.epoch,
                    (unsigned long long)info.state.cursor);
        else
            fprintf(out, "DAMAGED: %s", ckpt_problem(path));
        fprintf(out, "%s\n", is_latest ? "  <- latest" : "");
        if (cst == GRAFT_OK && info.frozen.present)
            snprintf(refs[k], sizeof refs[k], "%s", info.frozen.file);
        ckpt_info_free(&info);
    }
    list_other_entries(dir, out, refs, n);
    if (latest_state == 1 && !latest_listed)
        fprintf(out, "latest names %s, which does not exist\n", latest);
    else if (latest_state == 0 && n > 0)
        fprintf(out, "latest is missing\n");
    else if (latest_state < 0)
        fprintf(out, "%s\n", latest);
    free(refs);
    free(list);
    if (n == 0) {
        GRAFT_ERROR("%s: no checkpoints", dir);
        return GRAFT_ERR_NOT_FOUND;
    }
    return GRAFT_OK;
}

graft_status graft_ckpt_verify_root(const char *dir, FILE *out) {
    if (!dir || !*dir) return GRAFT_ERR_INVALID_ARG;
    ckpt_dir_entry *list;
    size_t n;
    graft_status st = ckpt_scan(dir, &list, &n, GRAFT_LOG_ERROR);
    if (st == GRAFT_ERR_NOT_FOUND) {
        GRAFT_ERROR("%s: no such checkpoint directory", dir);
        return st;
    }
    if (st != GRAFT_OK) return st;
    if (n == 0) {
        free(list);
        GRAFT_ERROR("%s: no checkpoints", dir);
        return GRAFT_ERR_NOT_FOUND;
    }
    char summary[PROBLEM_MAX] = "";
    size_t used = 0, damaged = 0;
    graft_status first_bad = GRAFT_OK;
    for (size_t k = 0; k < n; k++) {
        char path[CKPT_PATH_MAX];
        graft_fs_path_join(path, sizeof path, dir, list[k].name);
        graft_status cst = ckpt_check(path, NULL, GRAFT_LOG_QUIET);
        if (out)
            fprintf(out, "%s: %s\n", list[k].name, cst == GRAFT_OK ? "ok" : ckpt_problem(path));
        if (cst == GRAFT_OK) continue;
        if (first_bad == GRAFT_OK) first_bad = cst;
        damaged++;
        if (used < sizeof summary)
            used += (size_t)snprintf(summary + used, sizeof summary - used, "%s%s (%s)",
                                     damaged > 1 ? ", " : "", list[k].name, ckpt_problem(path));
    }
    char latest[CKPT_LATEST_MAX], path[CKPT_PATH_MAX];
    int latest_state = ckpt_read_latest(dir, latest, sizeof latest);
    const char *latest_problem = NULL;
    if (latest_state == 0)
        latest_problem = "latest is missing";
    else if (latest_state < 0)
        latest_problem = latest;
    else if (graft_fs_path_join(path, sizeof path, dir, latest) != GRAFT_OK ||
             !graft_fs_is_dir(path))
        latest_problem = "latest names a checkpoint that does not exist";
    if (latest_problem && out) fprintf(out, "%s\n", latest_problem);
    free(list);
    if (damaged > 0) {
        GRAFT_ERROR("%s: %zu of %zu checkpoints damaged: %s", dir, damaged, n, summary);
        return first_bad;
    }
    if (latest_problem) {
        if (latest_state < 0) /* the line names latest's path already */
            GRAFT_ERROR("%s", latest_problem);
        else
            GRAFT_ERROR("%s: %s", dir, latest_problem);
        return GRAFT_ERR_FORMAT;
    }
    return GRAFT_OK;
}
