#include "lora_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/lora.h"
#include "runtime/nn/params_io.h"

#define PEFT_PREFIX "base_model.model."
#define CONFIG_MAX_BYTES (1u << 20)

int graft_lora_present(const graft_params *p) {
    for (int i = 0; i < p->count; i++)
        if (p->items[i].adapter) return 1;
    return 0;
}

/* What the adapter file holds: the adapters and the other trainable parameters. */
static int saved(const graft_param *t) { return t->adapter || t->trainable; }

/* name less its last ".component" (a layer's or module's name) into out. */
static void parent_name(char *out, size_t size, const char *name, const char *suffix) {
    size_t len = strlen(name);
    if (suffix && len > strlen(suffix) && strcmp(name + len - strlen(suffix), suffix) == 0)
        len -= strlen(suffix);
    else if (strrchr(name, '.'))
        len = (size_t)(strrchr(name, '.') - name);
    snprintf(out, size, "%.*s", (int)len, name);
}

/* s appended to the array unless it is there already. */
static void append_unique(json_t *array, const char *s) {
    for (size_t i = 0; i < json_array_size(array); i++)
        if (strcmp(json_string_value(json_array_get(array, i)), s) == 0) return;
    json_array_append_new(array, json_string(s));
}

/* lora_alpha as PEFT writes it: an integer when it is one. */
static json_t *number(double x) {
    return x == floor(x) && fabs(x) < 1e15 ? json_integer((json_int_t)x) : json_real(x);
}

static json_t *adapter_config(const graft_params *p, const graft_lora_dir_config *c) {
    json_t *root = json_object(), *targets = json_array(), *modules = json_array();
    int fan_in_fan_out = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        char name[GRAFT_NAME_MAX];
        if (t->adapter == GRAFT_ADAPTER_A) {
            parent_name(name, sizeof name, t->name, ".lora_A.weight");
            append_unique(targets, name);
            fan_in_fan_out |= t->fan_in_fan_out;
        } else if (!t->adapter && t->trainable) {
            parent_name(name, sizeof name, t->name, NULL);
            append_unique(modules, name);
        }
    }
    json_object_set_new(root, "peft_type", json_string("LORA"));
    json_object_set_new(root, "base_model_name_or_path", json_string(""));
    json_object_set_new(root, "task_type", c->task_type ? json_string(c->task_type) : json_null());
    json_object_set_new(root, "r", json_integer(c->rank));
    json_object_set_new(root, "lora_alpha", number(c->alpha));
    json_object_set_new(root, "lora_dropout", json_real(c->dropout));
    json_object_set_new(root, "target_modules", targets);
    json_object_set_new(root, "fan_in_fan_out", json_boolean(fan_in_fan_out));
    json_object_set_new(root, "bias", json_string("none"));
    json_object_set_new(root, "modules_to_save", json_array_size(modules) ? modules : json_null());
    if (!json_array_size(modules)) json_decref(modules);
    json_object_set_new(root, "init_lora_weights", json_true());
    json_object_set_new(root, "inference_mode", json_true());
    return root;
}

graft_status graft_lora_save_dir(const graft_params *p, const graft_lora_dir_config *c,
                                 const char *dir) {
    char path[GRAFT_FS_PATH_MAX];
    GRAFT_TRY(graft_fs_mkdirs(dir, GRAFT_LOG_ERROR));
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st = graft_st_writer_set_metadata(&w, "format", "pt");
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        if (!saved(t)) continue;
        char name[GRAFT_NAME_MAX + sizeof PEFT_PREFIX];
        snprintf(name, sizeof name, PEFT_PREFIX "%s", t->name);
        st = graft_st_writer_add_f32(&w, name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                     graft_params_value(p, i));
    }
    if (st == GRAFT_OK)
        st = graft_fs_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    if (st != GRAFT_OK) return st;
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, dir, "adapter_config.json"));
    json_t *config = adapter_config(p, c);
    if (!config) {
        GRAFT_ERROR("%s: cannot write: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    st = graft_json_write_atomic(path, config, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(config);
    return st;
}

/* adapter_config.json's r and lora_alpha against model.lora's. */
static graft_status check_config(const char *dir, const graft_lora_dir_config *c) {
    char path[GRAFT_FS_PATH_MAX];
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, dir, "adapter_config.json"));
    graft_status st;
    json_t *root = graft_json_load_file(path, CONFIG_MAX_BYTES, &st);
    if (!root) return st;
    long long r = 0;
    const json_t *peft_type = json_object_get(root, "peft_type");
    const json_t *alpha = json_object_get(root, "lora_alpha");
    if (peft_type && (!json_is_string(peft_type) || strcmp(json_string_value(peft_type), "LORA") != 0)) {
        GRAFT_ERROR("%s: peft_type is not \"LORA\"", path);
        st = GRAFT_ERR_MISMATCH;
    } else if ((st = graft_json_int(path, root, "r", NULL, 1, 1 << 20, &r)) != GRAFT_OK) {
    } else if (r != c->rank) {
        GRAFT_ERROR("%s: r is %lld but model.lora.rank is %d (they must agree)", path, r, c->rank);
        st = GRAFT_ERR_MISMATCH;
    } else if (!json_is_number(alpha)) {
        GRAFT_ERROR("%s: missing \"lora_alpha\" (a number)", path);
        st = GRAFT_ERR_MISMATCH;
    } else if (json_number_value(alpha) != c->alpha) {
        GRAFT_ERROR("%s: lora_alpha is %g but model.lora.alpha is %g (they must agree)", path,
                    json_number_value(alpha), c->alpha);
        st = GRAFT_ERR_MISMATCH;
    }
    json_decref(root);
    return st;
}

graft_status graft_lora_load_dir(graft_params *p, const graft_lora_dir_config *c, const char *dir) {
    GRAFT_TRY(check_config(dir, c));
    char path[GRAFT_FS_PATH_MAX];
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, dir, "adapter_model.safetensors"));
    graft_st_file f;
    GRAFT_TRY(graft_st_open(&f, path));
    /* sizeof *source, an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    const graft_st_tensor **source = calloc((size_t)p->count + 1, sizeof *source);
    graft_status st = source ? GRAFT_OK : GRAFT_ERR_NOMEM;
    const size_t plen = strlen(PEFT_PREFIX);
    for (size_t k = 0; k < f.n_tensors && st == GRAFT_OK; k++) {
        const graft_st_tensor *s = &f.tensors[k];
        const int i =
            strncmp(s->name, PEFT_PREFIX, plen) == 0 ? graft_params_find(p, s->name + plen) : -1;
        if (i < 0 || p->items[i].kind != GRAFT_KIND_PARAM) {
            GRAFT_ERROR("%s: tensor %s names no adapter or parameter of the model", path, s->name);
            st = GRAFT_ERR_MISMATCH;
        } else if (!graft_param_shape_matches(&p->items[i], s) ||
                   (s->dtype != GRAFT_DTYPE_F32 && s->dtype != GRAFT_DTYPE_F16 &&
                    s->dtype != GRAFT_DTYPE_BF16)) {
            char want[96], got[96];
            GRAFT_ERROR("%s: tensor %s is %s %s, the model's is F32 %s", path, s->name,
                        graft_dtype_name(s->dtype),
                        graft_format_shape(got, sizeof got, s->ndim, s->shape),
                        graft_format_shape(want, sizeof want, p->items[i].ndim, p->items[i].shape));
            st = GRAFT_ERR_MISMATCH;
        } else {
            source[i] = s;
        }
    }
    for (int i = 0; i < p->count && st == GRAFT_OK; i++)
        if (p->items[i].adapter && !source[i]) {
            GRAFT_ERROR("%s: adapter " PEFT_PREFIX "%s of the model is missing", path,
                        p->items[i].name);
            st = GRAFT_ERR_MISMATCH;
        }
    for (int i = 0; i < p->count && st == GRAFT_OK; i++)
        if (source[i])
            st = graft_st_read_f32(source[i], graft_params_value(p, i), p->items[i].numel);
    free(source);
    graft_st_close(&f);
    return st;
}

graft_status graft_lora_save_merged(const graft_params *p, const char *path) {
    float *values = malloc((p->n_values ? p->n_values : 1) * sizeof(float));
    if (!values) {
        GRAFT_ERROR("%s: cannot merge the adapters: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    memcpy(values, p->values, p->n_values * sizeof(float));
    graft_lora_merge(p, values);
    graft_status st = graft_params_save_values(p, values, 1, path);
    free(values);
    return st;
}
