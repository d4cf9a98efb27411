/* Communicators: one interface, several backends (ggml-backend style).
 *
 * A backend fills `iface` with its functions and `ctx` with its state; callers only
 * use the graft_comm_* wrappers and never test which backend they hold.
 *   local  one process, no MPI at all (the default for a plain `graft train`)
 *   mpi    MPI_COMM_WORLD of an initialised MPI (mpirun, srun)
 *   nccl   NCCL over the ranks of MPI_COMM_WORLD, one GPU per rank; the ncclUniqueId
 *          is broadcast with MPI. Host buffers are staged through the GPU.
 * All collectives are blocking and must be called by every rank in the same order. */
#ifndef GRAFT_COMM_H
#define GRAFT_COMM_H

#include <stddef.h>

#include "runtime/core/status.h"

typedef struct graft_comm_i {
    const char *name;
    /* buf[0..n) = sum over ranks of buf[0..n), in place */
    graft_status (*allreduce_sum)(void *ctx, float *buf, size_t n);
    /* bytes of buf on `root` copied to every rank */
    graft_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root);
    /* recv = concatenation over ranks of each rank's `bytes` of send */
    graft_status (*allgather)(void *ctx, const void *send, void *recv, size_t bytes);
    graft_status (*barrier)(void *ctx);
    void (*free)(void *ctx);
} graft_comm_i;

typedef struct graft_comm {
    graft_comm_i iface;
    void *ctx;
    int rank, size;
} graft_comm;

/* One process: collectives are identities (allgather copies). Never fails. */
void graft_comm_init_local(graft_comm *c);
/* MPI_COMM_WORLD; MPI must be initialised by the caller. */
graft_status graft_comm_init_mpi(graft_comm *c);
/* NCCL (one GPU per rank, chosen by local rank); MPI must be initialised.
 * GRAFT_ERR_UNSUPPORTED, with a message saying why, when graft was built without
 * NCCL or this rank sees no GPU. */
graft_status graft_comm_init_nccl(graft_comm *c);
/* 1 when the NCCL backend is built in and at least one GPU is visible; when not,
 * *why (may be NULL) says why in words. */
int graft_comm_nccl_available(const char **why);

graft_status graft_comm_allreduce_sum(graft_comm *c, float *buf, size_t n);
graft_status graft_comm_broadcast(graft_comm *c, void *buf, size_t bytes, int root);
graft_status graft_comm_allgather(graft_comm *c, const void *send, void *recv, size_t bytes);
graft_status graft_comm_barrier(graft_comm *c);
/* Releases the backend's state (not MPI itself); safe on NULL or a zeroed comm. */
void graft_comm_free(graft_comm *c);

#endif
