/* Arena for activations, planned once at start-up so the training step never mallocs.
 *
 * Use it in two passes over the same allocation code:
 *   graft_arena_init_plan(&a);            // measuring: alloc returns NULL, counts bytes
 *   model_alloc(&a, ...);
 *   graft_arena_commit(&a);               // one malloc of the measured size
 *   model_alloc(&a, ...);                 // same calls, now real pointers
 * Every block is 64-byte aligned. */
#ifndef GRAFT_ARENA_H
#define GRAFT_ARENA_H

#include <stddef.h>

#include "status.h"

typedef struct graft_arena {
    unsigned char *base; /* NULL while planning */
    size_t capacity;     /* bytes available once committed */
    size_t used;         /* bytes handed out (or counted while planning) */
    size_t peak;         /* most bytes ever used */
} graft_arena;

void graft_arena_init_plan(graft_arena *a);
/* Allocate the planned size and rewind; GRAFT_ERR_NOMEM on failure. A plan larger than
 * the machine's physical memory, or whose sizes overflowed while planning, is refused
 * with GRAFT_ERR_CONFIG: the sizes asked for cannot run here. */
graft_status graft_arena_commit(graft_arena *a);
/* Bytes rounded to 64. Returns NULL while planning, and NULL (with an error logged)
 * if a committed arena runs out, which means allocation code differs between passes. */
void *graft_arena_alloc(graft_arena *a, size_t bytes);
float *graft_arena_floats(graft_arena *a, size_t count);
/* Rewind to a mark taken with a->used (for scratch that is reused). */
void graft_arena_reset_to(graft_arena *a, size_t mark);
void graft_arena_free(graft_arena *a);

#endif
