#include "params_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"

graft_status graft_params_save(const graft_params *p, const char *path) {
    graft_st_writer w;
    graft_st_writer_init(&w);
    graft_status st = graft_st_writer_set_metadata(&w, "format", "pt");
    if (st == GRAFT_OK) st = graft_st_writer_set_metadata(&w, "graft_version", GRAFT_VERSION);
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_param *t = &p->items[i];
        st = graft_st_writer_add_f32(&w, t->name, GRAFT_DTYPE_F32, t->ndim, t->shape,
                                     graft_params_value(p, i));
    }
    if (st == GRAFT_OK) st = graft_st_writer_save(&w, path);
    graft_st_writer_free(&w);
    return st;
}

static int same_shape(const graft_param *t, const graft_st_tensor *s) {
    if (t->ndim != s->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != s->shape[d]) return 0;
    return 1;
}

graft_status graft_params_load(graft_params *p, const char *path, int strict,
                               graft_load_report *report) {
    graft_load_report r = {0, 0, 0};
    graft_st_file f;
    graft_status st = graft_st_open(&f, path);
    if (st != GRAFT_OK) return st;
    /* Check everything first so a failed load changes nothing. */
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        const graft_st_tensor *s = graft_st_find(&f, t->name);
        if (!s) {
            r.missing++;
            if (strict) {
                GRAFT_ERROR("%s: no tensor '%s' (strict loading)", path, t->name);
                st = GRAFT_ERR_MISMATCH;
                goto done;
            }
            GRAFT_WARN("%s: no tensor '%s': keeping its initial value", path, t->name);
        } else if (!same_shape(t, s)) {
            char want[96], got[96];
            GRAFT_ERROR("%s: tensor '%s' has shape %s, the model expects %s", path, t->name,
                        graft_format_shape(got, sizeof got, s->ndim, s->shape),
                        graft_format_shape(want, sizeof want, t->ndim, t->shape));
            st = GRAFT_ERR_MISMATCH;
            goto done;
        } else if (s->dtype != GRAFT_DTYPE_F32 && s->dtype != GRAFT_DTYPE_F16 &&
                   s->dtype != GRAFT_DTYPE_BF16) {
            GRAFT_ERROR("%s: tensor '%s' has dtype %s, expected a floating type", path, t->name,
                        graft_dtype_name(s->dtype));
            st = GRAFT_ERR_MISMATCH;
            goto done;
        }
    }
    for (size_t k = 0; k < f.n_tensors; k++)
        if (graft_params_find(p, f.tensors[k].name) < 0) {
            r.unexpected++;
            GRAFT_WARN("%s: tensor '%s' is not in the model: ignored", path, f.tensors[k].name);
        }
    for (int i = 0; i < p->count && st == GRAFT_OK; i++) {
        const graft_st_tensor *s = graft_st_find(&f, p->items[i].name);
        if (!s) continue;
        st = graft_st_read_f32(s, graft_params_value(p, i), p->items[i].numel);
        r.matched++;
    }
done:
    graft_st_close(&f);
    if (report) *report = r;
    return st;
}
