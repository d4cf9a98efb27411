/* The gradient reducer, PyTorch-DDP style: sums the flat gradient buffer of the trainable
 * parameters over all ranks, bucket by bucket, on a comm thread that overlaps with backward.
 *
 * The buffer is laid out in backward order (runtime/nn/params.h), so the first gradients
 * to become final are at the start: the first bucket is small (1 MiB by default) so the
 * network starts early, the others are 25 MiB. A training step is
 *
 *     graft_reducer_set_step(r, step);            // names the step in watchdog messages
 *     graft_reducer_begin_step(r, last_micro);    // 0: accumulate only (DDP no_sync)
 *     ... backward: graft_reducer_ready(r, off, count) as each layer's gradients are final
 *     graft_reducer_wait(r, &wait_s);             // all buckets summed (or the error)
 *
 * The reduction is a SUM (graft_comm_allreduce_sum in place), not a mean: the training loop
 * scales each micro-batch loss by 1 / (global batch) so that the summed gradient is the
 * gradient of the global mean loss, and accumulation micro-steps add into the same buffer.
 *
 * Buckets are handed to the comm thread strictly in bucket index order, whatever order
 * the ranges are marked in, so every rank issues the same collectives in the same order
 * (docs/DESIGN.md, Note [Bucket order and readiness]).
 * All functions are called from one (the training) thread, which must not issue its own
 * collectives on the same comm between begin_step and wait of a sync step (they would
 * interleave with the buckets differently on different ranks). With the mpi backend MPI
 * must be initialised with MPI_Init_thread(MPI_THREAD_MULTIPLE): the comm thread calls MPI,
 * and the comm watchdog may call MPI_Abort from its own thread. */
#ifndef GRAFT_REDUCER_H
#define GRAFT_REDUCER_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "runtime/core/status.h"

#define GRAFT_REDUCER_DEFAULT_BUCKET_BYTES ((size_t)25 << 20)
#define GRAFT_REDUCER_DEFAULT_FIRST_BUCKET_BYTES ((size_t)1 << 20)

typedef struct graft_reducer graft_reducer;

/* What the last step did, for logs and benchmarks. */
typedef struct graft_reducer_stats {
    int n_buckets;
    int launched_before_wait; /* buckets handed to the comm thread before wait was called */
    int finished_before_wait; /* ... of which already summed by then */
    double wait_s;            /* time the caller blocked in the last wait */
    double comm_s;            /* time the comm thread spent in collectives, last step */
    uint64_t step_bytes;      /* as graft_reducer_step_bytes */
    uint64_t sync_steps;      /* sync steps finished since creation */
} graft_reducer_stats;

/* A reducer over grads[0..n) on comm (both borrowed: they must outlive the reducer).
 * Buckets hold first_bucket_bytes (the first) and bucket_bytes (the others) of floats, the
 * last one what is left; 0 picks the DDP defaults above. Starts the comm thread (none when
 * n == 0). A new reducer is in a sync step, as after graft_reducer_begin_step(r, 1). */
graft_status graft_reducer_new(graft_reducer **out, graft_comm *comm, float *grads, size_t n,
                               size_t bucket_bytes, size_t first_bucket_bytes);
/* The same with parameter boundaries: parameter i covers [param_starts[i],
 * param_starts[i+1]) (the last one up to n); starts are non-decreasing, the first is 0.
 * A bucket never splits a parameter: it closes at the first boundary where it has reached
 * its size, so it can be larger than the size by less than one parameter. */
graft_status graft_reducer_new_with_boundaries(graft_reducer **out, graft_comm *comm, float *grads,
                                               size_t n, const size_t *param_starts, int n_params,
                                               size_t bucket_bytes, size_t first_bucket_bytes);
/* Joins the comm thread (after the collective it may be running) and frees; buckets not
 * yet summed are dropped (every rank must then do the same). Safe on NULL. */
void graft_reducer_free(graft_reducer *r);

/* Starts a step. sync = 0 for gradient-accumulation micro-steps: ready and wait do
 * nothing and no byte is sent (DDP no_sync); sync = 1 for the last micro-step. A sync
 * step that was marked but never waited for is finished first (with a warning). */
void graft_reducer_begin_step(graft_reducer *r, int sync);
/* The step number shown in the watchdog context "step S bucket B". */
void graft_reducer_set_step(graft_reducer *r, long step);
/* During backward: gradients [offset, offset+count) are final. Ranges may come in any
 * order and each element is marked at most once per step; a bucket whose elements are all
 * marked is launched once every bucket before it has been. A range outside [0, n) or an
 * element marked twice is a programmer error: logged and returned by the next wait. */
void graft_reducer_ready(graft_reducer *r, size_t offset, size_t count);
/* After backward: marks every element not yet marked (gradients of parameters that got
 * none this step are reduced as they are, normally zeros), waits until the comm thread has
 * summed every bucket and returns the first failure (GRAFT_OK when all succeeded; a failed
 * collective stops the buckets after it). *wait_s (may be NULL) = seconds blocked here.
 * Calling it again before the next begin_step returns the same status at once. */
graft_status graft_reducer_wait(graft_reducer *r, double *wait_s);

/* Bytes all-reduced in the last step: 4 * n for a sync step, 0 for no_sync steps (less
 * when a collective failed). The training loop logs it as comm_bytes. */
uint64_t graft_reducer_step_bytes(const graft_reducer *r);
void graft_reducer_get_stats(const graft_reducer *r, graft_reducer_stats *out);
/* The bucket layout: how many buckets, and where bucket b lies in the gradient buffer. */
int graft_reducer_num_buckets(const graft_reducer *r);
void graft_reducer_bucket_range(const graft_reducer *r, int b, size_t *offset, size_t *count);

#endif
