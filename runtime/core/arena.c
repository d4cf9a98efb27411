#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define ARENA_ALIGN 64

void graft_arena_init_plan(graft_arena *a) { memset(a, 0, sizeof *a); }

graft_status graft_arena_commit(graft_arena *a) {
    size_t bytes = a->used ? a->used : ARENA_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, ARENA_ALIGN, bytes) != 0) {
        GRAFT_ERROR("cannot allocate %zu bytes of activation memory", bytes);
        return GRAFT_ERR_NOMEM;
    }
    memset(p, 0, bytes);
    a->base = p;
    a->capacity = bytes;
    a->used = 0;
    return GRAFT_OK;
}

void *graft_arena_alloc(graft_arena *a, size_t bytes) {
    if (bytes > SIZE_MAX - ARENA_ALIGN) return NULL;
    size_t rounded = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (a->base == NULL) { /* planning */
        a->used += rounded;
        if (a->used > a->peak) a->peak = a->used;
        return NULL;
    }
    if (rounded > a->capacity - a->used) {
        GRAFT_ERROR("arena exhausted: %zu bytes requested, %zu of %zu used", bytes, a->used,
                    a->capacity);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += rounded;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

float *graft_arena_floats(graft_arena *a, size_t count) {
    if (count > SIZE_MAX / sizeof(float)) return NULL;
    return graft_arena_alloc(a, count * sizeof(float));
}

void graft_arena_reset_to(graft_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}

void graft_arena_free(graft_arena *a) {
    if (!a) return;
    free(a->base);
    memset(a, 0, sizeof *a);
}
