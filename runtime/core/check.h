/* CHECK macros: evaluate a call, and on failure log file:line with the library's
 * error string and return the matching graft_status from the enclosing function. */
#ifndef GRAFT_CHECK_H
#define GRAFT_CHECK_H

#include <stdlib.h>

#include "log.h"
#include "status.h"

/* Propagate a graft_status. */
#define GRAFT_TRY(call)                                       \
    do {                                                      \
        graft_status graft_try_s_ = (call);                   \
        if (graft_try_s_ != GRAFT_OK) return graft_try_s_;    \
    } while (0)

/* Programmer errors only (never input files): log and abort. */
#define GRAFT_ASSERT(cond)                                                               \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            graft_log(GRAFT_LOG_ERROR, __func__, "%s:%d: assertion failed: %s", __FILE__, \
                      __LINE__, #cond);                                                  \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#ifdef GRAFT_HAVE_MPI_H
#include <mpi.h>
#define GRAFT_CHECK_MPI(call)                                                                 \
    do {                                                                                      \
        int graft_mpi_rc_ = (call);                                                           \
        if (graft_mpi_rc_ != MPI_SUCCESS) {                                                   \
            char graft_mpi_msg_[MPI_MAX_ERROR_STRING];                                        \
            int graft_mpi_len_ = 0;                                                           \
            MPI_Error_string(graft_mpi_rc_, graft_mpi_msg_, &graft_mpi_len_);                 \
            graft_log(GRAFT_LOG_ERROR, __func__, "%s:%d: %s failed: %s", __FILE__, __LINE__, \
                      #call, graft_mpi_msg_);                                                 \
            return GRAFT_ERR_MPI;                                                             \
        }                                                                                     \
    } while (0)
#endif

#ifdef GRAFT_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#define GRAFT_CHECK_CUDA(call)                                                                \
    do {                                                                                      \
        cudaError_t graft_cuda_rc_ = (call);                                                  \
        if (graft_cuda_rc_ != cudaSuccess) {                                                  \
            graft_log(GRAFT_LOG_ERROR, __func__, "%s:%d: %s failed: %s", __FILE__, __LINE__, \
                      #call, cudaGetErrorString(graft_cuda_rc_));                             \
            return GRAFT_ERR_CUDA;                                                            \
        }                                                                                     \
    } while (0)
#define GRAFT_CHECK_NCCL(call)                                                                \
    do {                                                                                      \
        ncclResult_t graft_nccl_rc_ = (call);                                                 \
        if (graft_nccl_rc_ != ncclSuccess) {                                                  \
            graft_log(GRAFT_LOG_ERROR, __func__, "%s:%d: %s failed: %s", __FILE__, __LINE__, \
                      #call, ncclGetErrorString(graft_nccl_rc_));                             \
            return GRAFT_ERR_NCCL;                                                            \
        }                                                                                     \
    } while (0)
#endif

#endif
