/* Status codes returned by every graft function that can fail. */
#ifndef GRAFT_STATUS_H
#define GRAFT_STATUS_H

/* One list; the enum and the strings are generated from it. */
#define GRAFT_STATUS_LIST(X)                                          \
    X(GRAFT_OK, "ok")                                                 \
    X(GRAFT_ERR_INVALID_ARG, "invalid argument")                      \
    X(GRAFT_ERR_NOMEM, "out of memory")                               \
    X(GRAFT_ERR_IO, "input/output error")                             \
    X(GRAFT_ERR_FORMAT, "malformed input file")                       \
    X(GRAFT_ERR_CONFIG, "invalid configuration")                      \
    X(GRAFT_ERR_NOT_FOUND, "not found")                               \
    X(GRAFT_ERR_MISMATCH, "mismatch")                                 \
    X(GRAFT_ERR_UNSUPPORTED, "unsupported")                           \
    X(GRAFT_ERR_MPI, "MPI error")                                     \
    X(GRAFT_ERR_NCCL, "NCCL error")                                   \
    X(GRAFT_ERR_CUDA, "CUDA error")                                   \
    X(GRAFT_ERR_TIMEOUT, "timed out")                                 \
    X(GRAFT_STOPPED, "stopped by a signal after saving a checkpoint") \
    X(GRAFT_ERR_NONFINITE, "training went non-finite")                \
    X(GRAFT_ERR_INTERNAL, "internal error")

typedef enum graft_status {
#define GRAFT_STATUS_ENUM(name, str) name,
    GRAFT_STATUS_LIST(GRAFT_STATUS_ENUM)
#undef GRAFT_STATUS_ENUM
        GRAFT_STATUS_COUNT
} graft_status;

/* Human-readable text for a status; never NULL. */
const char *graft_status_str(graft_status s);

/* True for statuses caused by what the user gave us (files, config, flags):
 * the CLI maps these to exit status 2. */
int graft_status_is_bad_input(graft_status s);

#endif
