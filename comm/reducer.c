/* The gradient reducer: bucket layout, ready marks, the comm thread (see reducer.h). */
#include "reducer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "runtime/core/log.h"

struct graft_reducer {
    graft_comm *comm;
    float *grads;
    size_t n;
    int n_buckets;
    size_t *bucket_start;  /* n_buckets + 1 entries; bucket b is [start[b], start[b+1]) */
    size_t *bucket_marked; /* elements marked ready this step, per bucket */
    uint64_t *marked_bits; /* one bit per element marked this step: catches double marks */
    size_t marked_words;

    pthread_mutex_t lock;
    pthread_cond_t work_ready; /* the comm thread waits here for launched buckets */
    pthread_cond_t work_done;  /* wait() waits here for the comm thread */
    pthread_t thread;
    int has_thread, shutdown;

    /* the current step, all under lock */
    int sync;        /* this step communicates */
    int open;        /* begun and not yet waited for */
    int any_marks;   /* ready() was called in this step */
    int launched;    /* buckets [0, launched) handed to the comm thread */
    int done;        /* buckets [0, done) finished by the comm thread */
    int comm_failed; /* a collective failed: the thread issues no more this step */
    graft_status status;
    long step;
    uint64_t step_bytes;
    double comm_s;
    int launched_before_wait, finished_before_wait;
    double wait_s;
    uint64_t sync_steps;
};

static size_t bucket_size(const graft_reducer *r, int b) {
    return r->bucket_start[b + 1] - r->bucket_start[b];
}

/* Elements per bucket for a byte size (0: the default), at least one. */
static size_t elements_for(size_t bytes, size_t default_bytes) {
    size_t count = (bytes ? bytes : default_bytes) / sizeof(float);
    return count ? count : 1;
}

/* Computes the bucket boundaries: returns the number of buckets and, when starts is not
 * NULL, writes starts[0..count] (count + 1 entries). With param_starts, a bucket closes at
 * the first parameter end at which it holds at least its size. */
static int layout_buckets(size_t *starts, size_t n, const size_t *param_starts, int n_params,
                          size_t first_count, size_t other_count) {
    int count = 0;
    size_t bucket_begin = 0;
    if (n == 0) {
        if (starts) starts[0] = 0;
        return 0;
    }
    if (!param_starts || n_params == 0) {
        while (bucket_begin < n) {
            size_t limit = count == 0 ? first_count : other_count;
            size_t end = n - bucket_begin > limit ? bucket_begin + limit : n;
            if (starts) starts[count] = bucket_begin;
            count++;
            bucket_begin = end;
        }
    } else {
        for (int i = 0; i < n_params; i++) {
            size_t param_end = i + 1 < n_params ? param_starts[i + 1] : n;
            size_t limit = count == 0 ? first_count : other_count;
            if (param_end - bucket_begin >= limit || param_end == n) {
                if (param_end == bucket_begin) continue; /* empty tail parameters */
                if (starts) starts[count] = bucket_begin;
                count++;
                bucket_begin = param_end;
            }
        }
    }
    if (starts) starts[count] = n;
    return count;
}

/* The comm thread: sums launched buckets in index order until shutdown. */
static void *reducer_thread_main(void *arg) {
    graft_reducer *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->shutdown && r->done == r->launched)
            pthread_cond_wait(&r->work_ready, &r->lock);
        if (r->shutdown) break;
        int b = r->done;
        long step = r->step;
        int skip = r->comm_failed;
        pthread_mutex_unlock(&r->lock);

        graft_status st = GRAFT_OK;
        double seconds = 0;
        size_t offset = r->bucket_start[b], count = bucket_size(r, b);
        if (!skip) {
            char context[64];
            snprintf(context, sizeof context, "step %ld bucket %d", step, b);
            graft_comm_set_context(r->comm, context);
            double t0 = comm_now_s();
            st = graft_comm_allreduce_sum(r->comm, r->grads + offset, count);
            seconds = comm_now_s() - t0;
        }

        pthread_mutex_lock(&r->lock);
        r->comm_s += seconds;
        if (!skip && st == GRAFT_OK) r->step_bytes += (uint64_t)count * sizeof(float);
        if (!skip && st != GRAFT_OK) {
            GRAFT_ERROR("all-reduce of gradient bucket %d (%zu floats at %zu) in step %ld "
                        "failed: %s; later buckets are not sent",
                        b, count, offset, step, graft_status_str(st));
            r->comm_failed = 1;
            if (r->status == GRAFT_OK) r->status = st;
        }
        r->done++;
        pthread_cond_broadcast(&r->work_done);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

graft_status graft_reducer_new_with_boundaries(graft_reducer **out, graft_comm *comm, float *grads,
                                               size_t n, const size_t *param_starts, int n_params,
                                               size_t bucket_bytes, size_t first_bucket_bytes) {
    if (!out || !comm || (n > 0 && !grads) || n_params < 0 || (n_params > 0 && !param_starts)) {
        GRAFT_ERROR("bad arguments (out, comm, grads or parameter starts missing)");
        return GRAFT_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (n_params > 0) {
        if (param_starts[0] != 0) {
            GRAFT_ERROR("the first parameter starts at %zu, not 0", param_starts[0]);
            return GRAFT_ERR_INVALID_ARG;
        }
        for (int i = 1; i < n_params; i++) {
            if (param_starts[i] < param_starts[i - 1] || param_starts[i] > n) {
                GRAFT_ERROR("parameter %d starts at %zu: starts must be non-decreasing and "
                            "within the %zu gradients",
                            i, param_starts[i], n);
                return GRAFT_ERR_INVALID_ARG;
            }
        }
    }
    size_t first_count = elements_for(first_bucket_bytes, GRAFT_REDUCER_DEFAULT_FIRST_BUCKET_BYTES);
    size_t other_count = elements_for(bucket_bytes, GRAFT_REDUCER_DEFAULT_BUCKET_BYTES);

    graft_reducer *r = calloc(1, sizeof *r);
    if (!r) return GRAFT_ERR_NOMEM;
    r->comm = comm;
    r->grads = grads;
    r->n = n;
    r->n_buckets = layout_buckets(NULL, n, param_starts, n_params, first_count, other_count);
    r->bucket_start = calloc((size_t)r->n_buckets + 1, sizeof *r->bucket_start);
    r->bucket_marked = calloc((size_t)r->n_buckets + 1, sizeof *r->bucket_marked);
    r->marked_words = (n + 63) / 64;
    r->marked_bits = calloc(r->marked_words ? r->marked_words : 1, sizeof *r->marked_bits);
    if (!r->bucket_start || !r->bucket_marked || !r->marked_bits) {
        free(r->bucket_start);
        free(r->bucket_marked);
        free(r->marked_bits);
        free(r);
        return GRAFT_ERR_NOMEM;
    }
    layout_buckets(r->bucket_start, n, param_starts, n_params, first_count, other_count);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work_ready, NULL);
    pthread_cond_init(&r->work_done, NULL);
    r->sync = 1;
    r->open = 1;
    r->status = GRAFT_OK;
    if (r->n_buckets > 0) {
        if (pthread_create(&r->thread, NULL, reducer_thread_main, r) != 0) {
            GRAFT_ERROR("could not start the reducer's comm thread");
            graft_reducer_free(r);
            return GRAFT_ERR_INTERNAL;
        }
        r->has_thread = 1;
    }
    *out = r;
    return GRAFT_OK;
}

graft_status graft_reducer_new(graft_reducer **out, graft_comm *comm, float *grads, size_t n,
                               size_t bucket_bytes, size_t first_bucket_bytes) {
    return graft_reducer_new_with_boundaries(out, comm, grads, n, NULL, 0, bucket_bytes,
                                             first_bucket_bytes);
}

void graft_reducer_free(graft_reducer *r) {
    if (!r) return;
    if (r->has_thread) {
        pthread_mutex_lock(&r->lock);
        r->shutdown = 1;
        pthread_cond_signal(&r->work_ready);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->work_done);
    pthread_cond_destroy(&r->work_ready);
    pthread_mutex_destroy(&r->lock);
    free(r->bucket_start);
    free(r->bucket_marked);
    free(r->marked_bits);
    free(r);
}

void graft_reducer_begin_step(graft_reducer *r, int sync) {
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    int unfinished = r->open && r->sync && r->any_marks;
    pthread_mutex_unlock(&r->lock);
    if (unfinished) {
        GRAFT_WARN("the previous step was marked but not waited for: finishing it first");
        graft_reducer_wait(r, NULL);
    }
    /* The comm thread is idle now: every launched bucket is done. */
    pthread_mutex_lock(&r->lock);
    for (int b = 0; b < r->n_buckets; b++)
        r->bucket_marked[b] = 0;
    if (r->any_marks) memset(r->marked_bits, 0, r->marked_words * sizeof *r->marked_bits);
    r->sync = sync ? 1 : 0;
    r->open = 1;
    r->any_marks = 0;
    r->launched = 0;
    r->done = 0;
    r->comm_failed = 0;
    r->status = GRAFT_OK;
    r->step_bytes = 0;
    r->comm_s = 0;
    pthread_mutex_unlock(&r->lock);
}

void graft_reducer_set_step(graft_reducer *r, long step) {
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    r->step = step;
    pthread_mutex_unlock(&r->lock);
}

/* Index of the bucket holding element offset (offset < n). */
static int find_bucket(const graft_reducer *r, size_t offset) {
    int lo = 0, hi = r->n_buckets - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (r->bucket_start[mid] <= offset)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Sets the bits of elements [begin, end) and returns how many were not set before;
 * *twice becomes 1 when some already were. Called with the lock held. */
static size_t mark_elements(graft_reducer *r, size_t begin, size_t end, int *twice) {
    size_t newly = 0;
    while (begin < end) {
        size_t word = begin / 64, bit = begin % 64;
        size_t bits = 64 - bit < end - begin ? 64 - bit : end - begin;
        uint64_t mask = (bits == 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1)) << bit;
        uint64_t already = r->marked_bits[word] & mask;
        if (already) *twice = 1;
        newly += (size_t)__builtin_popcountll(mask & ~already);
        r->marked_bits[word] |= mask;
        begin += bits;
    }
    return newly;
}

/* Hands every complete bucket after the launched ones to the comm thread, in order.
 * Called with the lock held. */
static void launch_complete_buckets(graft_reducer *r) {
    int before = r->launched;
    while (r->launched < r->n_buckets &&
           r->bucket_marked[r->launched] == bucket_size(r, r->launched))
        r->launched++;
    if (r->launched != before) pthread_cond_signal(&r->work_ready);
}

void graft_reducer_ready(graft_reducer *r, size_t offset, size_t count) {
    if (!r || count == 0) return;
    pthread_mutex_lock(&r->lock);
    if (!r->sync) {
        pthread_mutex_unlock(&r->lock);
        return;
    }
    if (!r->open) {
        GRAFT_ERROR("gradients [%zu, +%zu) marked ready after wait and before the next "
                    "begin_step: ignored",
                    offset, count);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    if (offset > r->n || count > r->n - offset) {
        GRAFT_ERROR("gradients [%zu, +%zu) marked ready are outside the %zu gradients", offset,
                    count, r->n);
        if (r->status == GRAFT_OK) r->status = GRAFT_ERR_INVALID_ARG;
        pthread_mutex_unlock(&r->lock);
        return;
    }
    r->any_marks = 1;
    size_t pos = offset, end = offset + count;
    for (int b = find_bucket(r, offset); pos < end; b++) {
        size_t bucket_end = r->bucket_start[b + 1];
        size_t segment_end = end < bucket_end ? end : bucket_end;
        int twice = 0;
        r->bucket_marked[b] += mark_elements(r, pos, segment_end, &twice);
        if (twice) {
            GRAFT_ERROR("gradients [%zu, +%zu) were partly marked ready before in this step "
                        "(bucket %d)",
                        offset, count, b);
            if (r->status == GRAFT_OK) r->status = GRAFT_ERR_INVALID_ARG;
        }
        pos = segment_end;
    }
    launch_complete_buckets(r);
    pthread_mutex_unlock(&r->lock);
}

graft_status graft_reducer_wait(graft_reducer *r, double *wait_s) {
    if (!r) return GRAFT_ERR_INVALID_ARG;
    double t0 = comm_now_s();
    pthread_mutex_lock(&r->lock);
    if (!r->open) { /* already waited for */
        graft_status st = r->status;
        pthread_mutex_unlock(&r->lock);
        if (wait_s) *wait_s = comm_now_s() - t0;
        return st;
    }
    r->launched_before_wait = r->launched;
    r->finished_before_wait = r->done;
    if (r->sync) {
        for (int b = r->launched; b < r->n_buckets; b++)
            r->bucket_marked[b] = bucket_size(r, b);
        launch_complete_buckets(r);
        while (r->done < r->n_buckets)
            pthread_cond_wait(&r->work_done, &r->lock);
        r->sync_steps++;
    }
    r->open = 0;
    graft_status st = r->status;
    r->wait_s = comm_now_s() - t0;
    if (wait_s) *wait_s = r->wait_s;
    pthread_mutex_unlock(&r->lock);
    return st;
}

uint64_t graft_reducer_step_bytes(const graft_reducer *r) {
    if (!r) return 0;
    graft_reducer *mut = (graft_reducer *)r; /* the lock only */
    pthread_mutex_lock(&mut->lock);
    uint64_t bytes = r->step_bytes;
    pthread_mutex_unlock(&mut->lock);
    return bytes;
}

void graft_reducer_get_stats(const graft_reducer *r, graft_reducer_stats *out) {
    memset(out, 0, sizeof *out);
    if (!r) return;
    graft_reducer *mut = (graft_reducer *)r; /* the lock only */
    pthread_mutex_lock(&mut->lock);
    out->n_buckets = r->n_buckets;
    out->launched_before_wait = r->launched_before_wait;
    out->finished_before_wait = r->finished_before_wait;
    out->wait_s = r->wait_s;
    out->comm_s = r->comm_s;
    out->step_bytes = r->step_bytes;
    out->sync_steps = r->sync_steps;
    pthread_mutex_unlock(&mut->lock);
}

int graft_reducer_num_buckets(const graft_reducer *r) { return r ? r->n_buckets : 0; }

void graft_reducer_bucket_range(const graft_reducer *r, int b, size_t *offset, size_t *count) {
    if (!r || b < 0 || b >= r->n_buckets) {
        *offset = 0;
        *count = 0;
        return;
    }
    *offset = r->bucket_start[b];
    *count = bucket_size(r, b);
}
