#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define ARENA_ALIGN 64

void graft_arena_init_plan(graft_arena *a) { memset(a, 0, sizeof *a); }

/* Physical memory in bytes, or SIZE_MAX when unknown. */
static size_t physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0 || (size_t)pages > SIZE_MAX / (size_t)page) return SIZE_MAX;
    return (size_t)pages * (size_t)page;
}

graft_status graft_arena_commit(graft_arena *a) {
    size_t bytes = a->used ? a->used : ARENA_ALIGN;
    void *p = NULL;
    /* a plan larger than the machine (or one whose sizes overflowed: saturated) comes from
     * the sizes asked for, not from a passing shortage: say so as bad input */
    if (a->peak == SIZE_MAX || bytes > physical_memory()) {
        if (a->peak == SIZE_MAX)
            GRAFT_ERROR("activation memory needed overflows 64 bits (lower data.batch_size, "
                        "data.micro_batch, data.seq_len or the model's sizes)");
        else
            GRAFT_ERROR("activation memory of %.1f GiB is more than this machine's %.1f GiB "
                        "(lower data.batch_size, data.micro_batch, data.seq_len or the model's "
                        "sizes)",
                        (double)bytes / 1073741824.0, (double)physical_memory() / 1073741824.0);
        return GRAFT_ERR_CONFIG;
    }
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
    if (a->base == NULL &&
        (bytes > SIZE_MAX - ARENA_ALIGN ||
         (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN > SIZE_MAX - a->used)) {
        a->used = a->peak = SIZE_MAX; /* planning overflowed: commit refuses it */
        return NULL;
    }
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
    if (count > SIZE_MAX / sizeof(float)) return graft_arena_alloc(a, SIZE_MAX);
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
