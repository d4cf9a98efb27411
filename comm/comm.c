#include "comm.h"

#include <string.h>

/* ---- wrappers ------------------------------------------------------------------ */

graft_status graft_comm_allreduce_sum(graft_comm *c, float *buf, size_t n) {
    return n ? c->iface.allreduce_sum(c->ctx, buf, n) : GRAFT_OK;
}

graft_status graft_comm_broadcast(graft_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size) return GRAFT_ERR_INVALID_ARG;
    return bytes ? c->iface.broadcast(c->ctx, buf, bytes, root) : GRAFT_OK;
}

graft_status graft_comm_allgather(graft_comm *c, const void *send, void *recv, size_t bytes) {
    return bytes ? c->iface.allgather(c->ctx, send, recv, bytes) : GRAFT_OK;
}

graft_status graft_comm_barrier(graft_comm *c) { return c->iface.barrier(c->ctx); }

void graft_comm_free(graft_comm *c) {
    if (!c) return;
    if (c->iface.free) c->iface.free(c->ctx);
    memset(c, 0, sizeof *c);
}

/* ---- local backend: one process ---------------------------------------------------- */

static graft_status local_allreduce_sum(void *ctx, float *buf, size_t n) { return GRAFT_OK; }
static graft_status local_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    return GRAFT_OK;
}
static graft_status local_allgather(void *ctx, const void *send, void *recv, size_t bytes) {
    if (send != recv) memmove(recv, send, bytes);
    return GRAFT_OK;
}
static graft_status local_barrier(void *ctx) { return GRAFT_OK; }

void graft_comm_init_local(graft_comm *c) {
    static const graft_comm_i local_iface = {"local", local_allreduce_sum, local_broadcast,
                                             local_allgather, local_barrier, NULL};
    c->iface = local_iface;
    c->ctx = NULL;
    c->rank = 0;
    c->size = 1;
}

#ifndef GRAFT_HAVE_NCCL
/* Built without NCCL (no CUDA/NCCL found at configure time). */
#include "runtime/core/log.h"

int graft_comm_nccl_available(const char **why) {
    if (why) *why = "graft was built without NCCL (configure with CUDA and NCCL present)";
    return 0;
}

graft_status graft_comm_init_nccl(graft_comm *c) {
    const char *why;
    graft_comm_nccl_available(&why);
    GRAFT_ERROR("comm.backend nccl: %s", why);
    return GRAFT_ERR_UNSUPPORTED;
}
#endif
