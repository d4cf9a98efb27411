/* Helpers shared by the files of comm/ (private to the folder). */
#ifndef GRAFT_COMM_INTERNAL_H
#define GRAFT_COMM_INTERNAL_H

#include <time.h>

/* Monotonic seconds, for the watchdog and the reducer's timings. */
static inline double comm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The absolute CLOCK_MONOTONIC time `seconds` from now, for pthread_cond_timedwait on a
 * condition variable created with that clock. */
static inline struct timespec comm_deadline_after(double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long whole = (long)seconds;
    long nanos = (long)((seconds - (double)whole) * 1e9);
    ts.tv_sec += whole;
    ts.tv_nsec += nanos;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
