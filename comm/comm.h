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
#include <stdint.h>

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

struct graft_comm_watchdog; /* private to comm.c */

typedef struct graft_comm {
    graft_comm_i iface;
    void *ctx;
    int rank, size;
    struct graft_comm_watchdog *watchdog; /* NULL until graft_comm_set_watchdog */
} graft_comm;

/* One process: collectives are identities (allgather copies). Never fails. */
void graft_comm_init_local(graft_comm *c);
/* MPI_COMM_WORLD; MPI must be initialised by the caller. */
graft_status graft_comm_init_mpi(graft_comm *c);
/* NCCL (one GPU per rank, chosen by local rank); MPI must be initialised.
 * GRAFT_ERR_UNSUPPORTED, with a message saying why, when graft was built without
 * NCCL or this rank sees no GPU. */
graft_status graft_comm_init_nccl(graft_comm *c);
/* 1 when the NCCL backend is built in, a GPU is visible and (with MPI initialised)
 * this node has no more ranks than GPUs; when not, *why (may be NULL) says why in
 * words. */
int graft_comm_nccl_available(const char **why);

/* The collectives. Each call through these wrappers is watched by the watchdog (below)
 * while it runs, when one is set. */
graft_status graft_comm_allreduce_sum(graft_comm *c, float *buf, size_t n);
graft_status graft_comm_broadcast(graft_comm *c, void *buf, size_t bytes, int root);
graft_status graft_comm_allgather(graft_comm *c, const void *send, void *recv, size_t bytes);
graft_status graft_comm_barrier(graft_comm *c);
/* Releases the backend's state (not MPI itself) and stops the watchdog; safe on NULL or
 * a zeroed comm. */
void graft_comm_free(graft_comm *c);

/* ---- watchdog: a stuck collective becomes a logged abort -------------------------------
 * With timeout_s > 0 a thread wakes about once a second (more often for timeouts under
 * 2 s); when a collective issued through the wrappers above has been running longer than
 * timeout_s it logs ONE error line, e.g.
 *   collective allreduce_sum stuck for 301 s (step 12 bucket 3) on rank 2 of 4: aborting the job
 * and calls the abort hook (default: MPI_Abort(MPI_COMM_WORLD, 3) when MPI is initialised,
 * else abort()). Each collective fires at most once. timeout_s == 0 turns it off (the
 * default); negative or non-finite values are GRAFT_ERR_INVALID_ARG. Call from the thread
 * that owns the comm, not concurrently with collectives. */
graft_status graft_comm_set_watchdog(graft_comm *c, double timeout_s);
/* What the watchdog line names in parentheses for the next collectives issued on c, e.g.
 * "step 12 bucket 3" (truncated to 95 bytes; NULL or "" clears it). A cheap copy under a
 * lock; ignored while no watchdog has been set. */
void graft_comm_set_context(graft_comm *c, const char *context);
/* Replaces the process-wide abort hook (fn NULL restores the default). Tests use it to
 * observe a firing without ending the job; a hook that returns lets the collective go on. */
void graft_comm_set_abort_hook(void (*fn)(void *arg), void *arg);
/* The last line the watchdog of c logged ("" when it never fired): owned by c, valid
 * until graft_comm_free; read it after the hook has run. */
const char *graft_comm_watchdog_last_message(const graft_comm *c);

/* ---- start-up handshake --------------------------------------------------------------------
 * Allgathers n values (digests or counts; what[i] names value i) from every rank. When
 * every rank holds rank 0's values: GRAFT_OK. Otherwise every rank returns
 * GRAFT_ERR_MISMATCH and rank 0 logs one line naming each rank that differs and in
 * what (the other ranks keep the line as their last error, unprinted), e.g.
 *   rank 2 differs from rank 0 in parameter shapes (digest 1a2b... vs 3c4d... on rank 0)
 *   rank 1 differs from rank 0 in training set size (900 vs 1000 on rank 0), training
 *     data (digest ...); rank 3 differs from rank 0 in training data (digest ...)
 * so the job stops with a reason instead of hanging later in a collective. A different n
 * on some rank is reported by rank 0 and that rank, one line each. A collective: every
 * rank must call it. */
graft_status graft_comm_check_agreement(graft_comm *c, const char *const *what,
                                        const uint64_t *values, int n);

#endif
