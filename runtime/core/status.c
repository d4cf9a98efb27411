#include "status.h"

const char *graft_status_str(graft_status s) {
    static const char *const names[] = {
#define GRAFT_STATUS_STR(name, str) str,
        GRAFT_STATUS_LIST(GRAFT_STATUS_STR)
#undef GRAFT_STATUS_STR
    };
    if ((int)s < 0 || s >= GRAFT_STATUS_COUNT) return "unknown status";
    return names[s];
}

int graft_status_is_bad_input(graft_status s) {
    return s == GRAFT_ERR_INVALID_ARG || s == GRAFT_ERR_IO || s == GRAFT_ERR_FORMAT ||
           s == GRAFT_ERR_CONFIG || s == GRAFT_ERR_NOT_FOUND || s == GRAFT_ERR_MISMATCH ||
           s == GRAFT_ERR_UNSUPPORTED || s == GRAFT_ERR_LOCKED;
}
