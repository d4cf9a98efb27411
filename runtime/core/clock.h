/* Monotonic wall-clock seconds, for step timings and benchmarks. */
#ifndef GRAFT_CLOCK_H
#define GRAFT_CLOCK_H

#include <time.h>

static inline double graft_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
