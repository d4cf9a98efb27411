#include "comm.h"

#include <inttypes.h>
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "runtime/core/log.h"

/* ---- watchdog --------------------------------------------------------------------------- */

#define WATCHDOG_CONTEXT_BYTES 96
#define WATCHDOG_MESSAGE_BYTES 320

struct graft_comm_watchdog {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC; signalled to stop or to re-read the timeout */
    pthread_t thread;
    int thread_running, stop;
    double timeout_s;
    int rank, size;
    /* the collective in flight, if any */
    int in_flight, fired;
    const char *what;
    double start_s;
    char running_context[WATCHDOG_CONTEXT_BYTES];
    /* set by graft_comm_set_context for the next collectives */
    char context[WATCHDOG_CONTEXT_BYTES];
    char last_message[WATCHDOG_MESSAGE_BYTES];
};

static pthread_mutex_t abort_hook_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*abort_hook_fn)(void *) = NULL;
static void *abort_hook_arg = NULL;

/* What a stuck collective does when no hook was set: end the whole job. */
static void default_abort_hook(void *arg) {
    (void)arg;
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 3);
    abort();
}

void graft_comm_set_abort_hook(void (*fn)(void *arg), void *arg) {
    pthread_mutex_lock(&abort_hook_lock);
    abort_hook_fn = fn;
    abort_hook_arg = arg;
    pthread_mutex_unlock(&abort_hook_lock);
}

static void call_abort_hook(void) {
    pthread_mutex_lock(&abort_hook_lock);
    void (*fn)(void *) = abort_hook_fn ? abort_hook_fn : default_abort_hook;
    void *arg = abort_hook_arg;
    pthread_mutex_unlock(&abort_hook_lock);
    fn(arg);
}

/* How long the watchdog sleeps between looks: about a second, shorter for short timeouts
 * so that a 1 s timeout fires within ~1.5 s. */
static double watchdog_interval_s(double timeout_s) {
    if (timeout_s >= 2.0) return 1.0;
    double half = timeout_s / 2;
    return half > 0.05 ? half : 0.05;
}

/* The watchdog thread: wakes periodically, fires once per collective that has run longer
 * than the timeout. */
static void *watchdog_main(void *arg) {
    struct graft_comm_watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec deadline = comm_deadline_after(watchdog_interval_s(w->timeout_s));
        pthread_cond_timedwait(&w->wake, &w->lock, &deadline);
        if (w->stop) break;
        if (!w->in_flight || w->fired || w->timeout_s <= 0) continue;
        double elapsed = comm_now_s() - w->start_s;
        if (elapsed <= w->timeout_s) continue;
        w->fired = 1;
        char context[WATCHDOG_CONTEXT_BYTES + 3] = "";
        if (w->running_context[0]) snprintf(context, sizeof context, "(%s)", w->running_context);
        /* whole seconds for real timeouts, tenths for the short ones of tests */
        snprintf(w->last_message, sizeof w->last_message,
                 "collective %s stuck for %.*f s %s%son rank %d of %d: aborting the job", w->what,
                 elapsed < 10 ? 1 : 0, elapsed, context, context[0] ? " " : "", w->rank, w->size);
        char message[WATCHDOG_MESSAGE_BYTES];
        memcpy(message, w->last_message, sizeof message);
        pthread_mutex_unlock(&w->lock);
        GRAFT_ERROR("%s", message);
        call_abort_hook();
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Creates the watchdog state (no thread yet); NULL when out of memory. */
static struct graft_comm_watchdog *watchdog_new(const graft_comm *c) {
    struct graft_comm_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->lock, NULL);
    w->rank = c->rank;
    w->size = c->size;
    return w;
}

/* Stops and joins the watchdog thread if it runs. */
static void watchdog_stop_thread(struct graft_comm_watchdog *w) {
    pthread_mutex_lock(&w->lock);
    int running = w->thread_running;
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    if (running) pthread_join(w->thread, NULL);
    w->stop = 0;
    w->thread_running = 0;
}

static void watchdog_free(struct graft_comm_watchdog *w) {
    if (!w) return;
    watchdog_stop_thread(w);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

graft_status graft_comm_set_watchdog(graft_comm *c, double timeout_s) {
    if (!c || !(timeout_s >= 0) || !isfinite(timeout_s)) {
        GRAFT_ERROR("watchdog timeout must be a finite number of seconds >= 0 (0: off)");
        return GRAFT_ERR_INVALID_ARG;
    }
    if (timeout_s == 0 && !c->watchdog) return GRAFT_OK;
    if (!c->watchdog) {
        c->watchdog = watchdog_new(c);
        if (!c->watchdog) return GRAFT_ERR_NOMEM;
    }
    struct graft_comm_watchdog *w = c->watchdog;
    if (timeout_s == 0) {
        watchdog_stop_thread(w);
        w->timeout_s = 0;
        return GRAFT_OK;
    }
    pthread_mutex_lock(&w->lock);
    w->timeout_s = timeout_s;
    w->rank = c->rank;
    w->size = c->size;
    pthread_cond_signal(&w->wake); /* re-read the interval */
    int running = w->thread_running;
    pthread_mutex_unlock(&w->lock);
    if (!running) {
        if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
            GRAFT_ERROR("could not start the comm watchdog thread");
            return GRAFT_ERR_INTERNAL;
        }
        w->thread_running = 1;
    }
    return GRAFT_OK;
}

void graft_comm_set_context(graft_comm *c, const char *context) {
    struct graft_comm_watchdog *w = c ? c->watchdog : NULL;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    if (context)
        snprintf(w->context, sizeof w->context, "%s", context);
    else
        w->context[0] = '\0';
    pthread_mutex_unlock(&w->lock);
}

const char *graft_comm_watchdog_last_message(const graft_comm *c) {
    return c && c->watchdog ? c->watchdog->last_message : "";
}

/* Records that collective `what` starts now (for the watchdog). */
static void watch_begin(graft_comm *c, const char *what) {
    struct graft_comm_watchdog *w = c->watchdog;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->in_flight = 1;
    w->fired = 0;
    w->what = what;
    w->start_s = comm_now_s();
    memcpy(w->running_context, w->context, sizeof w->running_context);
    pthread_mutex_unlock(&w->lock);
}

static void watch_end(graft_comm *c) {
    struct graft_comm_watchdog *w = c->watchdog;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->in_flight = 0;
    pthread_mutex_unlock(&w->lock);
}

/* ---- wrappers ------------------------------------------------------------------ */

graft_status graft_comm_allreduce_sum(graft_comm *c, float *buf, size_t n) {
    if (!n) return GRAFT_OK;
    watch_begin(c, "allreduce_sum");
    graft_status st = c->iface.allreduce_sum(c->ctx, buf, n);
    watch_end(c);
    return st;
}

graft_status graft_comm_broadcast(graft_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size) return GRAFT_ERR_INVALID_ARG;
    if (!bytes) return GRAFT_OK;
    watch_begin(c, "broadcast");
    graft_status st = c->iface.broadcast(c->ctx, buf, bytes, root);
    watch_end(c);
    return st;
}

graft_status graft_comm_allgather(graft_comm *c, const void *send, void *recv, size_t bytes) {
    if (!bytes) return GRAFT_OK;
    watch_begin(c, "allgather");
    graft_status st = c->iface.allgather(c->ctx, send, recv, bytes);
    watch_end(c);
    return st;
}

graft_status graft_comm_barrier(graft_comm *c) {
    watch_begin(c, "barrier");
    graft_status st = c->iface.barrier(c->ctx);
    watch_end(c);
    return st;
}

void graft_comm_free(graft_comm *c) {
    if (!c) return;
    watchdog_free(c->watchdog);
    c->watchdog = NULL;
    if (c->iface.free) c->iface.free(c->ctx);
    memset(c, 0, sizeof *c);
}

/* ---- start-up handshake ----------------------------------------------------------------- */

/* "12 vs 10" for small values, "digest <hex> vs <hex>" for digests. */
static void format_value_pair(char *buf, size_t size, uint64_t mine, uint64_t reference) {
    if (mine <= UINT32_MAX && reference <= UINT32_MAX)
        snprintf(buf, size, "%" PRIu64 " vs %" PRIu64 " on rank 0", mine, reference);
    else
        snprintf(buf, size, "digest %016" PRIx64 " vs %016" PRIx64 " on rank 0", mine, reference);
}

/* printf onto the end of line (size bytes, *used taken); stops quietly when full. */
__attribute__((format(printf, 4, 5))) static void append(char *line, size_t size, size_t *used,
                                                         const char *fmt, ...) {
    if (*used >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + *used, size - *used, fmt, ap);
    va_end(ap);
    *used += n > 0 ? (size_t)n : 0;
}

graft_status graft_comm_check_agreement(graft_comm *c, const char *const *what,
                                        const uint64_t *values, int n) {
    if (n < 0 || (n > 0 && (!what || !values))) {
        GRAFT_ERROR("bad arguments: n=%d values=%p what=%p", n, (const void *)values,
                    (const void *)what);
        return GRAFT_ERR_INVALID_ARG;
    }
    int R = c->size, me = c->rank;
    /* First the count, so that a rank with a different list is a message, not a hang. */
    int64_t my_n = n;
    int64_t *all_n = malloc((size_t)R * sizeof *all_n);
    if (!all_n) return GRAFT_ERR_NOMEM;
    graft_status st = graft_comm_allgather(c, &my_n, all_n, sizeof my_n);
    if (st != GRAFT_OK) {
        free(all_n);
        return st;
    }
    int counts_differ = 0;
    for (int q = 1; q < R; q++) {
        if (all_n[q] == all_n[0]) continue;
        counts_differ = 1;
        if (me == 0 || me == q)
            GRAFT_ERROR("rank %d differs from rank 0 in the number of values it checks "
                        "(%" PRId64 " vs %" PRId64 " on rank 0)",
                        q, all_n[q], all_n[0]);
    }
    free(all_n);
    if (counts_differ) return GRAFT_ERR_MISMATCH;
    if (n == 0) return GRAFT_OK;

    uint64_t *all = malloc((size_t)R * (size_t)n * sizeof *all);
    if (!all) return GRAFT_ERR_NOMEM;
    st = graft_comm_allgather(c, values, all, (size_t)n * sizeof *values);
    if (st != GRAFT_OK) {
        free(all);
        return st;
    }
    /* One line, on rank 0, naming every rank that differs and in what (the other ranks
     * keep it as their last error): "rank 1 differs from rank 0 in training data (digest
     * .. vs .. on rank 0); rank 3 differs from rank 0 in ...". */
    enum { RANKS_NAMED = 8 };
    char line[2048] = "";
    size_t used = 0;
    int ranks_differing = 0;
    for (int q = 1; q < R; q++) {
        int items = 0;
        for (int i = 0; i < n; i++) {
            uint64_t theirs = all[(size_t)q * (size_t)n + (size_t)i], reference = all[i];
            if (theirs == reference) continue;
            if (items++ == 0) ranks_differing++;
            if (ranks_differing > RANKS_NAMED) continue;
            char pair[96];
            format_value_pair(pair, sizeof pair, theirs, reference);
            if (items == 1)
                append(line, sizeof line, &used, "%srank %d differs from rank 0 in ",
                       ranks_differing > 1 ? "; " : "", q);
            else
                append(line, sizeof line, &used, ", ");
            append(line, sizeof line, &used, "%s (%s)", what[i], pair);
        }
    }
    if (ranks_differing > RANKS_NAMED)
        append(line, sizeof line, &used, "; and %d more ranks", ranks_differing - RANKS_NAMED);
    free(all);
    if (ranks_differing == 0) return GRAFT_OK;
    graft_log(me == 0 ? GRAFT_LOG_ERROR : GRAFT_LOG_QUIET, __func__, "%s", line);
    /* no rank leaves (and takes the job down) before rank 0's line is out */
    graft_comm_barrier(c);
    return GRAFT_ERR_MISMATCH;
}

/* ---- local backend: one process ---------------------------------------------------- */

static graft_status local_allreduce_sum(void *ctx, float *buf, size_t n) { return GRAFT_OK; }
static graft_status local_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    return GRAFT_OK;
}
static graft_status local_allgather(void *ctx, const void *send, void *recv, size_t bytes) {
    if (send != recv) memmove(recv, send, bytes);
    return GRAFT_OK;
}
static graft_status local_barrier(void *ctx) { return GRAFT_OK; }

void graft_comm_init_local(graft_comm *c) {
    static const graft_comm_i local_iface = {"local", local_allreduce_sum, local_broadcast,
                                             local_allgather, local_barrier, NULL};
    c->iface = local_iface;
    c->ctx = NULL;
    c->rank = 0;
    c->size = 1;
    c->watchdog = NULL;
}

#ifndef GRAFT_HAVE_NCCL
/* Built without NCCL (no CUDA/NCCL found at configure time). */
int graft_comm_nccl_available(const char **why) {
    if (why) *why = "graft was built without NCCL (configure with CUDA and NCCL present)";
    return 0;
}

graft_status graft_comm_init_nccl(graft_comm *c) {
    const char *why;
    graft_comm_nccl_available(&why);
    GRAFT_ERROR("comm.backend nccl: %s", why);
    return GRAFT_ERR_UNSUPPORTED;
}
#endif
