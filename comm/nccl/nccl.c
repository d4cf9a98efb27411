/* The NCCL backend: one GPU per rank, rendezvous through MPI (rank 0 creates the
 * ncclUniqueId and broadcasts it). Until graft computes on GPUs, buffers live on the
 * host and are staged host -> device -> host through one device buffer, in chunks. */
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "runtime/core/check.h"

#define NCCL_STAGE_BYTES ((size_t)64 << 20)

typedef struct nccl_ctx {
    ncclComm_t comm;
    cudaStream_t stream;
    void *stage; /* (size + 1) slots of NCCL_STAGE_BYTES on the device (allgather output) */
    int size;
    int device; /* the current CUDA device is per thread: every op selects this one, since
                   the reducer's comm thread calls the collectives too */
} nccl_ctx;

/* Rank among the processes on this node (to pick a GPU), and how many there are. */
static graft_status local_rank(int *rank, int *size) {
    MPI_Comm node;
    GRAFT_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
                                        &node));
    int rc = MPI_Comm_rank(node, rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, size);
    MPI_Comm_free(&node);
    GRAFT_CHECK_MPI(rc);
    return GRAFT_OK;
}

int graft_comm_nccl_available(const char **why) {
    static char reason[96];
    int n = 0, initialized = 0, lrank = 0, lsize = 1;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess || n == 0) {
        if (why) *why = rc != cudaSuccess ? cudaGetErrorString(rc) : "no GPU is visible";
        return 0;
    }
    /* NCCL refuses two ranks of one communicator on the same GPU */
    MPI_Initialized(&initialized);
    if (initialized && local_rank(&lrank, &lsize) == GRAFT_OK && lsize > n) {
        snprintf(reason, sizeof reason, "%d ranks on this node share %d GPU(s) (NCCL needs one "
                 "GPU per rank)", lsize, n);
        if (why) *why = reason;
        return 0;
    }
    if (why) *why = "";
    return 1;
}

static graft_status nccl_allreduce_sum(void *ctx, float *buf, size_t n) {
    nccl_ctx *c = ctx;
    GRAFT_CHECK_CUDA(cudaSetDevice(c->device));
    size_t chunk = NCCL_STAGE_BYTES / sizeof(float);
    for (size_t off = 0; off < n; off += chunk) {
        size_t count = n - off < chunk ? n - off : chunk;
        GRAFT_CHECK_CUDA(cudaMemcpyAsync(c->stage, buf + off, count * sizeof(float),
                                         cudaMemcpyHostToDevice, c->stream));
        GRAFT_CHECK_NCCL(ncclAllReduce(c->stage, c->stage, count, ncclFloat, ncclSum, c->comm,
                                       c->stream));
        GRAFT_CHECK_CUDA(cudaMemcpyAsync(buf + off, c->stage, count * sizeof(float),
                                         cudaMemcpyDeviceToHost, c->stream));
        GRAFT_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    }
    return GRAFT_OK;
}

static graft_status nccl_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    nccl_ctx *c = ctx;
    GRAFT_CHECK_CUDA(cudaSetDevice(c->device));
    for (size_t off = 0; off < bytes; off += NCCL_STAGE_BYTES) {
        size_t count = bytes - off < NCCL_STAGE_BYTES ? bytes - off : NCCL_STAGE_BYTES;
        GRAFT_CHECK_CUDA(cudaMemcpyAsync(c->stage, (char *)buf + off, count,
                                         cudaMemcpyHostToDevice, c->stream));
        GRAFT_CHECK_NCCL(ncclBroadcast(c->stage, c->stage, count, ncclChar, root, c->comm,
                                       c->stream));
        GRAFT_CHECK_CUDA(cudaMemcpyAsync((char *)buf + off, c->stage, count,
                                         cudaMemcpyDeviceToHost, c->stream));
        GRAFT_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    }
    return GRAFT_OK;
}

static graft_status nccl_allgather(void *ctx, const void *send, void *recv, size_t bytes) {
    nccl_ctx *c = ctx;
    GRAFT_CHECK_CUDA(cudaSetDevice(c->device));
    if (bytes > NCCL_STAGE_BYTES) {
        GRAFT_ERROR("allgather of %zu bytes per rank exceeds the %zu-byte staging buffer", bytes,
                    NCCL_STAGE_BYTES);
        return GRAFT_ERR_INVALID_ARG;
    }
    char *dev = c->stage;
    GRAFT_CHECK_CUDA(cudaMemcpyAsync(dev, send, bytes, cudaMemcpyHostToDevice, c->stream));
    GRAFT_CHECK_NCCL(ncclAllGather(dev, dev + NCCL_STAGE_BYTES, bytes, ncclChar, c->comm,
                                   c->stream));
    GRAFT_CHECK_CUDA(cudaMemcpyAsync(recv, dev + NCCL_STAGE_BYTES, bytes * (size_t)c->size,
                                     cudaMemcpyDeviceToHost, c->stream));
    GRAFT_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    return GRAFT_OK;
}

static graft_status nccl_barrier(void *ctx) {
    nccl_ctx *c = ctx;
    GRAFT_CHECK_CUDA(cudaSetDevice(c->device));
    GRAFT_CHECK_NCCL(ncclAllReduce(c->stage, c->stage, 1, ncclFloat, ncclSum, c->comm, c->stream));
    GRAFT_CHECK_CUDA(cudaStreamSynchronize(c->stream));
    return GRAFT_OK;
}

static void nccl_free(void *ctx) {
    nccl_ctx *c = ctx;
    if (!c) return;
    if (c->comm) ncclCommDestroy(c->comm);
    if (c->stage) cudaFree(c->stage);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static graft_status nccl_setup(nccl_ctx *c, int rank, int size) {
    int devices = 0, lrank = 0, lsize = 1;
    GRAFT_CHECK_CUDA(cudaGetDeviceCount(&devices));
    GRAFT_TRY(local_rank(&lrank, &lsize));
    c->device = lrank % devices;
    GRAFT_CHECK_CUDA(cudaSetDevice(c->device));
    GRAFT_CHECK_CUDA(cudaStreamCreate(&c->stream));
    /* slot 0: this rank's data; slots 1..size: allgather output */
    GRAFT_CHECK_CUDA(cudaMalloc(&c->stage, NCCL_STAGE_BYTES * (size_t)(size + 1)));
    ncclUniqueId id;
    if (rank == 0) GRAFT_CHECK_NCCL(ncclGetUniqueId(&id));
    GRAFT_CHECK_MPI(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    GRAFT_CHECK_NCCL(ncclCommInitRank(&c->comm, size, id, rank));
    return GRAFT_OK;
}

graft_status graft_comm_init_nccl(graft_comm *out) {
    static const graft_comm_i nccl_iface = {"nccl", nccl_allreduce_sum, nccl_broadcast,
                                            nccl_allgather, nccl_barrier, nccl_free};
    const char *why;
    if (!graft_comm_nccl_available(&why)) {
        GRAFT_ERROR("comm.backend nccl: %s", why);
        return GRAFT_ERR_UNSUPPORTED;
    }
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        GRAFT_ERROR("the nccl backend needs MPI to be initialised first");
        return GRAFT_ERR_INVALID_ARG;
    }
    int rank, size;
    GRAFT_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    GRAFT_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
    nccl_ctx *c = calloc(1, sizeof *c);
    if (!c) return GRAFT_ERR_NOMEM;
    c->size = size;
    graft_status st = nccl_setup(c, rank, size);
    if (st != GRAFT_OK) {
        nccl_free(c);
        return st;
    }
    out->iface = nccl_iface;
    out->ctx = c;
    out->rank = rank;
    out->size = size;
    out->watchdog = NULL;
    return GRAFT_OK;
}
