/* The MPI backend over MPI_COMM_WORLD. MPI counts are ints, so large buffers go in
 * chunks of at most 1 GiB. */
#include <limits.h>
#include <mpi.h>

#include "comm.h"
#include "runtime/core/check.h"

#define MPI_CHUNK_BYTES ((size_t)1 << 30)

static graft_status mpi_allreduce_sum(void *ctx, float *buf, size_t n) {
    size_t chunk = MPI_CHUNK_BYTES / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        int count = (int)(n - off < chunk ? n - off : chunk);
        GRAFT_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf + off, count, MPI_FLOAT, MPI_SUM,
                                      MPI_COMM_WORLD));
    }
    return GRAFT_OK;
}

static graft_status mpi_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    for (size_t off = 0; off < bytes; off += MPI_CHUNK_BYTES) {
        int count = (int)(bytes - off < MPI_CHUNK_BYTES ? bytes - off : MPI_CHUNK_BYTES);
        GRAFT_CHECK_MPI(MPI_Bcast((char *)buf + off, count, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return GRAFT_OK;
}

static graft_status mpi_allgather(void *ctx, const void *send, void *recv, size_t bytes) {
    if (bytes > INT_MAX) {
        GRAFT_ERROR("allgather of %zu bytes per rank is larger than MPI allows", bytes);
        return GRAFT_ERR_INVALID_ARG;
    }
    GRAFT_CHECK_MPI(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE,
                                  MPI_COMM_WORLD));
    return GRAFT_OK;
}

static graft_status mpi_barrier(void *ctx) {
    GRAFT_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    return GRAFT_OK;
}

graft_status graft_comm_init_mpi(graft_comm *c) {
    static const graft_comm_i mpi_iface = {"mpi", mpi_allreduce_sum, mpi_broadcast,
                                           mpi_allgather, mpi_barrier, NULL};
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        GRAFT_ERROR("the mpi backend needs MPI to be initialised first");
        return GRAFT_ERR_INVALID_ARG;
    }
    c->iface = mpi_iface;
    c->ctx = NULL;
    c->watchdog = NULL;
    GRAFT_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    GRAFT_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &c->size));
    return GRAFT_OK;
}
