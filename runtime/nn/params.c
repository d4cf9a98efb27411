#include "params.h"

#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/log.h"

#define PARAMS_ALIGN 64

void graft_params_init(graft_params *p) { memset(p, 0, sizeof *p); }

int graft_params_add(graft_params *p, const char *name, graft_param_kind kind, int ndim,
                     const int64_t *shape) {
    if (p->finalized) {
        GRAFT_ERROR("%s: parameter table already finalized", name);
        return -1;
    }
    if (strlen(name) >= GRAFT_NAME_MAX || ndim < 0 || ndim > GRAFT_MAX_DIMS) {
        GRAFT_ERROR("%s: bad name length or ndim %d", name, ndim);
        return -1;
    }
    if (graft_params_find(p, name) >= 0 || graft_params_find_alias(p, name) >= 0) {
        GRAFT_ERROR("%s: duplicate parameter name", name);
        return -1;
    }
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || (size_t)shape[d] > SIZE_MAX / numel) {
            GRAFT_ERROR("%s: bad dimension %d = %lld", name, d, (long long)shape[d]);
            return -1;
        }
        numel *= (size_t)shape[d];
    }
    if (p->count == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        graft_param *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) {
            GRAFT_ERROR("%s: out of memory growing the parameter table", name);
            return -1;
        }
        p->items = items;
        p->cap = cap;
    }
    graft_param *t = &p->items[p->count];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name); /* length checked above */
    t->kind = kind;
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->trainable = kind == GRAFT_KIND_PARAM;
    return p->count++;
}

int graft_params_add_alias(graft_params *p, const char *alias, int target) {
    if (target < 0 || target >= p->count || strlen(alias) >= GRAFT_NAME_MAX ||
        graft_params_find(p, alias) >= 0 || graft_params_find_alias(p, alias) >= 0) {
        GRAFT_ERROR("%s: bad or duplicate alias", alias);
        return -1;
    }
    graft_param_alias *a = realloc(p->aliases, (size_t)(p->n_aliases + 1) * sizeof *a);
    if (!a) {
        GRAFT_ERROR("%s: out of memory", alias);
        return -1;
    }
    p->aliases = a;
    snprintf(a[p->n_aliases].name, GRAFT_NAME_MAX, "%s", alias);
    a[p->n_aliases++].target = target;
    return 0;
}

int graft_params_find_alias(const graft_params *p, const char *alias) {
    for (int i = 0; i < p->n_aliases; i++)
        if (strcmp(p->aliases[i].name, alias) == 0) return p->aliases[i].target;
    return -1;
}

graft_status graft_params_set_trainable(graft_params *p, const char *glob, int trainable,
                                        int *matched) {
    if (p->finalized) {
        GRAFT_ERROR("cannot change trainable flags after finalize");
        return GRAFT_ERR_INVALID_ARG;
    }
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || fnmatch(glob, t->name, 0) != 0) continue;
        t->trainable = trainable;
        n++;
    }
    if (matched) *matched = n;
    return GRAFT_OK;
}

static float *alloc_floats(size_t n) {
    void *ptr = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + PARAMS_ALIGN - 1) / PARAMS_ALIGN * PARAMS_ALIGN;
    if (posix_memalign(&ptr, PARAMS_ALIGN, bytes) != 0) return NULL;
    memset(ptr, 0, bytes);
    return ptr;
}

/* Gradient offsets in backward order (the last registered parameter first). */
static size_t layout_grads(graft_params *p) {
    size_t goff = 0;
    for (int i = p->count - 1; i >= 0; i--) {
        if (!p->items[i].trainable) continue;
        p->items[i].grad_offset = goff;
        goff += p->items[i].numel;
    }
    return goff;
}

graft_status graft_params_finalize(graft_params *p) {
    if (p->finalized) return GRAFT_OK;
    size_t off = 0;
    for (int i = 0; i < p->count; i++) {
        p->items[i].offset = off;
        off += p->items[i].numel;
    }
    p->n_values = off;
    size_t goff = layout_grads(p);
    p->n_grads = goff;
    p->values = alloc_floats(p->n_values);
    p->grads = goff ? alloc_floats(goff) : NULL;
    if (!p->values || (goff && !p->grads)) {
        GRAFT_ERROR("cannot allocate %zu parameter floats", p->n_values + goff);
        return GRAFT_ERR_NOMEM;
    }
    p->finalized = 1;
    return GRAFT_OK;
}

graft_status graft_params_unfreeze(graft_params *p, const char *glob, int *matched,
                                   size_t *old_offsets) {
    size_t extra = 0;
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (t->kind != GRAFT_KIND_PARAM || fnmatch(glob, t->name, 0) != 0) continue;
        n++;
        if (!t->trainable) extra += t->numel;
    }
    if (matched) *matched = n;
    if (old_offsets)
        for (int i = 0; i < p->count; i++)
            old_offsets[i] = p->items[i].trainable ? p->items[i].grad_offset : SIZE_MAX;
    if (extra == 0) return GRAFT_OK;
    float *grads = alloc_floats(p->n_grads + extra);
    if (!grads) {
        GRAFT_ERROR("cannot allocate %zu gradient floats", p->n_grads + extra);
        return GRAFT_ERR_NOMEM;
    }
    for (int i = 0; i < p->count; i++) {
        graft_param *t = &p->items[i];
        if (t->kind == GRAFT_KIND_PARAM && fnmatch(glob, t->name, 0) == 0) t->trainable = 1;
    }
    free(p->grads);
    p->grads = grads;
    p->n_grads = layout_grads(p);
    return GRAFT_OK;
}

void graft_params_free(graft_params *p) {
    if (!p) return;
    free(p->items);
    free(p->aliases);
    free(p->values);
    free(p->grads);
    memset(p, 0, sizeof *p);
}

int graft_params_find(const graft_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0) return i;
    return -1;
}

float *graft_params_value(const graft_params *p, int index) {
    return p->values + p->items[index].offset;
}

float *graft_params_grad(const graft_params *p, int index) {
    const graft_param *t = &p->items[index];
    return t->trainable && p->grads ? p->grads + t->grad_offset : NULL;
}

void graft_params_zero_grad(graft_params *p) {
    if (p->grads) memset(p->grads, 0, p->n_grads * sizeof(float));
}

void graft_params_grad_ready(const graft_params *p, int index) {
    const graft_param *t = &p->items[index];
    if (p->on_grad_ready && t->trainable) p->on_grad_ready(p->on_grad_ready_ctx, t->grad_offset, t->numel);
}

size_t graft_params_numel(const graft_params *p, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        if (t->kind == GRAFT_KIND_PARAM && (!trainable_only || t->trainable)) n += t->numel;
    }
    return n;
}
