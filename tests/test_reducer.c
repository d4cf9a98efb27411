/* comm/reducer in one process: bucket layout, ready marks in any order, launch order,
 * no_sync, n == 0, failures, free mid-use, and the comm watchdog naming the reducer's
 * step and bucket. A fake backend stands in for a world of two identical ranks: its
 * "sum" doubles the bucket, so every element must come out doubled exactly once. */
#include <pthread.h>
#include <time.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "comm/reducer.h"

/* ---- the fake backend ---------------------------------------------------------------- */

#define FAKE_MAX_CALLS 256

static struct {
    pthread_mutex_t lock;
    float *base; /* the reducer's gradient buffer, to turn pointers into offsets */
    int calls;
    size_t offsets[FAKE_MAX_CALLS], counts[FAKE_MAX_CALLS];
    int fail_at_call; /* this call returns GRAFT_ERR_MPI (-1: never) */
    int slow_call;    /* this call sleeps slow_ms first (-1: none) */
    int slow_ms;
    int every_call_ms; /* every call sleeps this long */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static graft_status fake_allreduce_sum(void *ctx, float *buf, size_t n) {
    pthread_mutex_lock(&fake.lock);
    int call = fake.calls;
    int delay = fake.every_call_ms + (call == fake.slow_call ? fake.slow_ms : 0);
    int fail = call == fake.fail_at_call;
    pthread_mutex_unlock(&fake.lock);
    if (delay) sleep_ms(delay);
    if (!fail)
        for (size_t i = 0; i < n; i++)
            buf[i] *= 2.0f;
    pthread_mutex_lock(&fake.lock);
    if (call < FAKE_MAX_CALLS) {
        fake.offsets[call] = (size_t)(buf - fake.base);
        fake.counts[call] = n;
    }
    fake.calls++;
    pthread_mutex_unlock(&fake.lock);
    return fail ? GRAFT_ERR_MPI : GRAFT_OK;
}
static graft_status fake_broadcast(void *ctx, void *buf, size_t bytes, int root) {
    return GRAFT_OK;
}
static graft_status fake_allgather(void *ctx, const void *send, void *recv, size_t bytes) {
    memmove(recv, send, bytes);
    return GRAFT_OK;
}
static graft_status fake_barrier(void *ctx) { return GRAFT_OK; }

static void fake_init(graft_comm *c, float *base) {
    static const graft_comm_i iface = {"fake",         fake_allreduce_sum, fake_broadcast,
                                       fake_allgather, fake_barrier,       NULL};
    memset(c, 0, sizeof *c);
    c->iface = iface;
    c->size = 1;
    pthread_mutex_lock(&fake.lock);
    fake.base = base;
    fake.calls = 0;
    fake.fail_at_call = -1;
    fake.slow_call = -1;
    fake.slow_ms = 0;
    fake.every_call_ms = 0;
    pthread_mutex_unlock(&fake.lock);
}

static int fake_calls(void) {
    pthread_mutex_lock(&fake.lock);
    int calls = fake.calls;
    pthread_mutex_unlock(&fake.lock);
    return calls;
}

/* Waits (at most 5 s) until the fake backend has been called `calls` times. */
static int fake_wait_calls(int calls) {
    for (int i = 0; i < 5000 && fake_calls() < calls; i++)
        sleep_ms(1);
    return fake_calls();
}

/* grads[i] = i % 1000 + 1; after one reduction each must be doubled exactly once. */
static void fill_pattern(float *g, size_t n) {
    for (size_t i = 0; i < n; i++)
        g[i] = (float)(i % 1000 + 1);
}
static size_t count_not_doubled(const float *g, size_t n, float factor) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += g[i] != factor * (float)(i % 1000 + 1);
    return bad;
}

/* ---- layout ------------------------------------------------------------------------------ */

/* Defaults: 1 MiB first, then 25 MiB, the last bucket what is left. The buffer is never
 * touched by the checks, only by the final wait through the local backend (identity). */
static void test_layout_defaults(void **state) {
    (void)state;
    size_t n = (size_t)16 << 20; /* 64 MiB of floats */
    float *grads = tu_floats(n);
    graft_comm comm;
    graft_comm_init_local(&comm);
    graft_reducer *r = NULL;
    assert_int_equal(graft_reducer_new(&r, &comm, grads, n, 0, 0), GRAFT_OK);
    size_t first = GRAFT_REDUCER_DEFAULT_FIRST_BUCKET_BYTES / 4;
    size_t other = GRAFT_REDUCER_DEFAULT_BUCKET_BYTES / 4;
    const size_t want_off[] = {0, first, first + other, first + 2 * other};
    const size_t want_cnt[] = {first, other, other, n - first - 2 * other};
    assert_int_equal(graft_reducer_num_buckets(r), 4);
    for (int b = 0; b < 4; b++) {
        size_t off, cnt;
        graft_reducer_bucket_range(r, b, &off, &cnt);
        printf("  bucket %d: [%zu, +%zu) = %.2f MiB\n", b, off, cnt, cnt * 4.0 / (1 << 20));
        assert_true(off == want_off[b] && cnt == want_cnt[b]);
    }
    assert_true(want_cnt[3] < other);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_true(graft_reducer_step_bytes(r) == 4 * (uint64_t)n);
    graft_reducer_free(r);
    graft_comm_free(&comm);
    free(grads);
}

/* Explicit sizes, with and without parameter boundaries. */
static void test_layout_sizes_and_boundaries(void **state) {
    (void)state;
    graft_comm comm;
    graft_comm_init_local(&comm);
    float grads[1000];
    graft_reducer *r = NULL;
    /* 10 floats first, then 100: 1 + 9 full + a last one of 90 */
    assert_int_equal(graft_reducer_new(&r, &comm, grads, 1000, 400, 40), GRAFT_OK);
    assert_int_equal(graft_reducer_num_buckets(r), 11);
    size_t off, cnt;
    graft_reducer_bucket_range(r, 0, &off, &cnt);
    assert_true(off == 0 && cnt == 10);
    graft_reducer_bucket_range(r, 1, &off, &cnt);
    assert_true(off == 10 && cnt == 100);
    graft_reducer_bucket_range(r, 10, &off, &cnt);
    assert_true(off == 910 && cnt == 90);
    graft_reducer_free(r);

    /* random parameter sizes 1..300: buckets start and end at boundaries, reach their
     * size, and the last parameter is what made them reach it */
    enum { P = 200 };
    size_t starts[P], total = 0;
    graft_rng rng;
    graft_rng_seed(&rng, 42);
    for (int i = 0; i < P; i++) {
        starts[i] = total;
        total += 1 + (size_t)(graft_rng_uniform(&rng) * 300);
    }
    float *g = tu_floats(total);
    size_t first = 64, other = 1000;
    assert_int_equal(
        graft_reducer_new_with_boundaries(&r, &comm, g, total, starts, P, other * 4, first * 4),
        GRAFT_OK);
    int nb = graft_reducer_num_buckets(r);
    printf("  %d parameters, %zu floats -> %d buckets\n", P, total, nb);
    assert_true(nb > 10);
    size_t expect_off = 0;
    for (int b = 0; b < nb; b++) {
        graft_reducer_bucket_range(r, b, &off, &cnt);
        assert_true(off == expect_off);
        expect_off += cnt;
        int start_is_boundary = 0, end_param = -1;
        for (int i = 0; i < P; i++) {
            if (starts[i] == off) start_is_boundary = 1;
            if (starts[i] < off + cnt) end_param = i; /* the last parameter in the bucket */
        }
        assert_true(start_is_boundary);
        assert_true(end_param + 1 == P || starts[end_param + 1] == off + cnt);
        size_t limit = b == 0 ? first : other;
        if (b + 1 < nb) {
            assert_true(cnt >= limit);
            assert_true(starts[end_param] - off < limit); /* closed as soon as it could */
        } else {
            assert_true(off + cnt == total);
        }
    }
    assert_true(expect_off == total);
    graft_reducer_free(r);

    /* a parameter larger than a bucket makes a bucket of its own */
    size_t big[3] = {0, 5, 505};
    assert_int_equal(graft_reducer_new_with_boundaries(&r, &comm, grads, 600, big, 3, 400, 40),
                     GRAFT_OK);
    assert_int_equal(graft_reducer_num_buckets(r), 2);
    graft_reducer_bucket_range(r, 0, &off, &cnt);
    assert_true(off == 0 && cnt == 505); /* 5 < 10, 505 >= 10 */
    graft_reducer_bucket_range(r, 1, &off, &cnt);
    assert_true(off == 505 && cnt == 95);
    graft_reducer_free(r);

    /* bad boundaries and arguments */
    size_t not_zero[2] = {1, 5}, decreasing[3] = {0, 50, 20}, beyond[2] = {0, 2000};
    assert_int_equal(graft_reducer_new_with_boundaries(&r, &comm, grads, 100, not_zero, 2, 0, 0),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_reducer_new_with_boundaries(&r, &comm, grads, 100, decreasing, 3, 0, 0),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_reducer_new_with_boundaries(&r, &comm, grads, 1000, beyond, 2, 0, 0),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_reducer_new(&r, &comm, NULL, 10, 0, 0), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_reducer_new(&r, NULL, grads, 10, 0, 0), GRAFT_ERR_INVALID_ARG);
    free(g);
    graft_comm_free(&comm);
}

/* ---- steps ----------------------------------------------------------------------------- */

enum { N_SMALL = 1000 };

/* A reducer over 1000 floats in 11 buckets (10, then 100s, last 90) on the fake backend. */
static graft_reducer *small_reducer(graft_comm *comm, float *grads) {
    fake_init(comm, grads);
    graft_reducer *r = NULL;
    assert_int_equal(graft_reducer_new(&r, comm, grads, N_SMALL, 400, 40), GRAFT_OK);
    return r;
}

/* Ranges marked in a shuffled order, crossing bucket edges: buckets go out in index order,
 * every element is reduced exactly once. */
static void test_out_of_order_marks(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    fill_pattern(grads, N_SMALL);
    /* ranges of 37 (the last shorter), shuffled */
    enum { RANGES = (N_SMALL + 36) / 37 };
    int order[RANGES];
    for (int i = 0; i < RANGES; i++)
        order[i] = i;
    graft_rng rng;
    graft_rng_seed(&rng, 7);
    for (int i = RANGES - 1; i > 0; i--) {
        int j = (int)(graft_rng_uniform(&rng) * (i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < RANGES; k++) {
        size_t off = (size_t)order[k] * 37;
        size_t cnt = off + 37 <= N_SMALL ? 37 : N_SMALL - off;
        graft_reducer_ready(r, off, cnt);
    }
    double wait_s = -1;
    assert_int_equal(graft_reducer_wait(r, &wait_s), GRAFT_OK);
    assert_true(wait_s >= 0 && wait_s < 5);
    assert_int_equal(fake_calls(), 11);
    for (int b = 0; b < 11; b++) {
        size_t off, cnt;
        graft_reducer_bucket_range(r, b, &off, &cnt);
        assert_true(fake.offsets[b] == off && fake.counts[b] == cnt);
    }
    size_t bad = count_not_doubled(grads, N_SMALL, 2.0f);
    printf("  elements not reduced exactly once: %zu of %d\n", bad, N_SMALL);
    assert_true(bad == 0);
    assert_true(graft_reducer_step_bytes(r) == 4 * N_SMALL);
    graft_reducer_stats st;
    graft_reducer_get_stats(r, &st);
    assert_int_equal(st.launched_before_wait, 11); /* everything was marked before wait */
    graft_reducer_free(r);
}

/* Bucket k is launched only after buckets < k: marking bucket 2 first launches nothing,
 * then bucket 0 launches bucket 0 alone, then bucket 1 launches 1 and 2. */
static void test_launch_order(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    fill_pattern(grads, N_SMALL);
    graft_reducer_ready(r, 110, 100); /* bucket 2 */
    sleep_ms(50);
    assert_int_equal(fake_calls(), 0);
    graft_reducer_ready(r, 0, 10); /* bucket 0 */
    assert_int_equal(fake_wait_calls(1), 1);
    sleep_ms(50);
    assert_int_equal(fake_calls(), 1);
    graft_reducer_ready(r, 10, 100); /* bucket 1: 1 and 2 go */
    assert_int_equal(fake_wait_calls(3), 3);
    assert_true(fake.offsets[0] == 0 && fake.offsets[1] == 10 && fake.offsets[2] == 110);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    graft_reducer_stats st;
    graft_reducer_get_stats(r, &st);
    printf("  launched before wait %d, finished before wait %d, of %d\n", st.launched_before_wait,
           st.finished_before_wait, st.n_buckets);
    assert_int_equal(st.launched_before_wait, 3);
    assert_int_equal(st.finished_before_wait, 3);
    assert_int_equal(fake_calls(), 11);
    assert_true(count_not_doubled(grads, N_SMALL, 2.0f) == 0);
    graft_reducer_free(r);
}

/* wait with no ready marks reduces everything; no_sync steps send nothing. */
static void test_wait_without_marks_and_no_sync(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    fill_pattern(grads, N_SMALL);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK); /* a new reducer is in a sync step */
    assert_int_equal(fake_calls(), 11);
    assert_true(graft_reducer_step_bytes(r) == 4 * N_SMALL);
    assert_true(count_not_doubled(grads, N_SMALL, 2.0f) == 0);
    graft_reducer_stats st;
    graft_reducer_get_stats(r, &st);
    assert_int_equal(st.launched_before_wait, 0);
    /* waiting again before the next begin_step changes nothing */
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_int_equal(fake_calls(), 11);

    for (int micro = 0; micro < 2; micro++) {
        graft_reducer_begin_step(r, 0);
        graft_reducer_ready(r, 0, N_SMALL);
        assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
        assert_true(graft_reducer_step_bytes(r) == 0);
    }
    assert_int_equal(fake_calls(), 11);
    assert_true(count_not_doubled(grads, N_SMALL, 2.0f) == 0);
    graft_reducer_begin_step(r, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_true(graft_reducer_step_bytes(r) == 4 * N_SMALL);
    assert_true(count_not_doubled(grads, N_SMALL, 4.0f) == 0);
    graft_reducer_get_stats(r, &st);
    assert_true(st.sync_steps == 2);
    graft_reducer_free(r);
}

/* Everything frozen: no buckets, no thread, no bytes; a mark is a reported error. */
static void test_empty(void **state) {
    (void)state;
    graft_comm comm;
    fake_init(&comm, NULL);
    graft_reducer *r = NULL;
    assert_int_equal(graft_reducer_new(&r, &comm, NULL, 0, 0, 0), GRAFT_OK);
    assert_int_equal(graft_reducer_num_buckets(r), 0);
    for (int step = 0; step < 3; step++) {
        graft_reducer_begin_step(r, step != 1);
        graft_reducer_ready(r, 0, 0);
        double wait_s = -1;
        assert_int_equal(graft_reducer_wait(r, &wait_s), GRAFT_OK);
        assert_true(wait_s >= 0);
        assert_true(graft_reducer_step_bytes(r) == 0);
    }
    graft_reducer_begin_step(r, 1);
    graft_reducer_ready(r, 0, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(fake_calls(), 0);
    graft_reducer_free(r);
    graft_reducer_free(NULL);
}

/* Many steps in a row, marks in different orders and granularities each time. */
static void test_repeated_steps(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    for (int step = 0; step < 20; step++) {
        fill_pattern(grads, N_SMALL);
        graft_reducer_set_step(r, step);
        graft_reducer_begin_step(r, 1);
        size_t chunk = 1 + (size_t)step * 13;
        if (step % 2 == 0) {
            for (size_t off = 0; off < N_SMALL; off += chunk)
                graft_reducer_ready(r, off, off + chunk <= N_SMALL ? chunk : N_SMALL - off);
        } else { /* backwards, and leave the last range for wait to mark */
            size_t top = N_SMALL;
            while (top > chunk) {
                graft_reducer_ready(r, top - chunk, chunk);
                top -= chunk;
            }
        }
        assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
        assert_true(graft_reducer_step_bytes(r) == 4 * N_SMALL);
        assert_true(count_not_doubled(grads, N_SMALL, 2.0f) == 0);
        assert_int_equal(fake_calls(), 11 * (step + 1));
    }
    graft_reducer_free(r);
}

/* A failing collective is reported by wait and stops the buckets after it; the next
 * step works again. Double marks and ranges out of bounds are reported too. */
static void test_errors(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    fake.fail_at_call = 1;
    fill_pattern(grads, N_SMALL);
    graft_reducer_ready(r, 0, N_SMALL);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_ERR_MPI);
    assert_int_equal(fake_calls(), 2);
    assert_true(graft_reducer_step_bytes(r) == 4 * 10); /* bucket 0 only */
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_ERR_MPI);

    graft_reducer_begin_step(r, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_int_equal(fake_calls(), 13);

    graft_reducer_begin_step(r, 1);
    graft_reducer_ready(r, 0, 50);
    graft_reducer_ready(r, 40, 20); /* 40..49 twice */
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_ERR_INVALID_ARG);
    graft_reducer_begin_step(r, 1);
    graft_reducer_ready(r, 990, 20);
    graft_reducer_ready(r, (size_t)-1, 2);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_ERR_INVALID_ARG);
    graft_reducer_begin_step(r, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    graft_reducer_ready(r, 0, 10); /* after wait, before begin_step: ignored */
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    graft_reducer_free(r);
}

/* A step marked but never waited for is finished by the next begin_step. */
static void test_begin_without_wait(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    fill_pattern(grads, N_SMALL);
    graft_reducer_ready(r, 0, 200);
    graft_reducer_begin_step(r, 0);
    assert_int_equal(fake_calls(), 11);
    assert_true(count_not_doubled(grads, N_SMALL, 2.0f) == 0);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_true(graft_reducer_step_bytes(r) == 0);
    graft_reducer_free(r);
}

/* free while buckets are in flight or queued: joins cleanly (ASan checks the rest). */
static void test_free_mid_use(void **state) {
    (void)state;
    float grads[N_SMALL];
    for (int variant = 0; variant < 3; variant++) {
        graft_comm comm;
        graft_reducer *r = small_reducer(&comm, grads);
        fake.every_call_ms = 20;
        fill_pattern(grads, N_SMALL);
        if (variant >= 1) graft_reducer_ready(r, 0, 510); /* 6 buckets queued */
        if (variant == 2) assert_int_equal(fake_wait_calls(1), 1);
        graft_reducer_free(r);
        int calls = fake_calls();
        printf("  variant %d: %d collectives before free returned\n", variant, calls);
        assert_true(calls <= 6);
        sleep_ms(30);
        assert_int_equal(fake_calls(), calls); /* nothing runs after free */
    }
}

/* ---- watchdog ---------------------------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    int fired;
} hook = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record_hook(void *arg) {
    pthread_mutex_lock(&hook.lock);
    hook.fired++;
    pthread_mutex_unlock(&hook.lock);
}
static int hook_fired(void) {
    pthread_mutex_lock(&hook.lock);
    int n = hook.fired;
    pthread_mutex_unlock(&hook.lock);
    return n;
}

/* A collective stuck past the timeout fires the hook once, with the reducer's
 * "step S bucket B" in the line; quick collectives never fire it. */
static void test_watchdog_names_step_and_bucket(void **state) {
    (void)state;
    float grads[N_SMALL];
    graft_comm comm;
    graft_reducer *r = small_reducer(&comm, grads);
    hook.fired = 0;
    graft_comm_set_abort_hook(record_hook, NULL);
    assert_string_equal(graft_comm_watchdog_last_message(&comm), "");
    assert_int_equal(graft_comm_set_watchdog(&comm, -1), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_comm_set_watchdog(&comm, 0.4), GRAFT_OK);

    /* quick steps: nothing fires */
    for (int step = 0; step < 3; step++) {
        graft_reducer_begin_step(r, 1);
        assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    }
    sleep_ms(500);
    assert_int_equal(hook_fired(), 0);

    /* bucket 3 of step 12 takes 1.2 s */
    pthread_mutex_lock(&fake.lock);
    fake.slow_call = fake.calls + 3;
    fake.slow_ms = 1200;
    pthread_mutex_unlock(&fake.lock);
    graft_reducer_set_step(r, 12);
    graft_reducer_begin_step(r, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_int_equal(hook_fired(), 1); /* (this lock also orders the read below) */
    const char *msg = graft_comm_watchdog_last_message(&comm);
    printf("  watchdog said: %s\n", msg);
    assert_non_null(strstr(msg, "collective allreduce_sum stuck for "));
    assert_non_null(strstr(msg, " s (step 12 bucket 3) on rank 0 of 1: aborting the job"));

    /* off again: a slow collective does not fire */
    assert_int_equal(graft_comm_set_watchdog(&comm, 0), GRAFT_OK);
    pthread_mutex_lock(&fake.lock);
    fake.slow_call = fake.calls;
    fake.slow_ms = 700;
    pthread_mutex_unlock(&fake.lock);
    graft_reducer_begin_step(r, 1);
    assert_int_equal(graft_reducer_wait(r, NULL), GRAFT_OK);
    assert_int_equal(hook_fired(), 1);

    /* on again, then freed while idle: the thread stops */
    assert_int_equal(graft_comm_set_watchdog(&comm, 100), GRAFT_OK);
    graft_comm_set_context(&comm, NULL);
    graft_reducer_free(r);
    graft_comm_free(&comm);
    assert_null(comm.watchdog);
    graft_comm_set_abort_hook(NULL, NULL);
}

/* A direct collective with a caller's context, and without one. */
static void test_watchdog_context(void **state) {
    (void)state;
    float grads[4] = {1, 2, 3, 4};
    graft_comm comm;
    fake_init(&comm, grads);
    hook.fired = 0;
    graft_comm_set_abort_hook(record_hook, NULL);
    graft_comm_set_context(&comm, "ignored: no watchdog yet");
    assert_int_equal(graft_comm_set_watchdog(&comm, 0.2), GRAFT_OK);
    fake.slow_call = 0;
    fake.slow_ms = 600;
    assert_int_equal(graft_comm_allreduce_sum(&comm, grads, 4), GRAFT_OK);
    assert_int_equal(hook_fired(), 1);
    printf("  watchdog said: %s\n", graft_comm_watchdog_last_message(&comm));
    assert_non_null(
        strstr(graft_comm_watchdog_last_message(&comm), " s on rank 0 of 1: aborting the job"));
    graft_comm_set_context(&comm, "eval batch 3");
    fake.slow_call = 1;
    assert_int_equal(graft_comm_allreduce_sum(&comm, grads, 4), GRAFT_OK);
    assert_int_equal(hook_fired(), 2);
    assert_non_null(strstr(graft_comm_watchdog_last_message(&comm), "(eval batch 3)"));
    graft_comm_free(&comm);
    graft_comm_set_abort_hook(NULL, NULL);
}

/* The handshake with one process always agrees; bad arguments are refused. */
static void test_agreement_local(void **state) {
    (void)state;
    graft_comm comm;
    graft_comm_init_local(&comm);
    const char *what[2] = {"parameter shapes", "world size"};
    uint64_t values[2] = {0x1a2b3c4d5e6f7788ull, 1};
    assert_int_equal(graft_comm_check_agreement(&comm, what, values, 2), GRAFT_OK);
    assert_int_equal(graft_comm_check_agreement(&comm, NULL, NULL, 0), GRAFT_OK);
    assert_int_equal(graft_comm_check_agreement(&comm, what, NULL, 2), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_comm_check_agreement(&comm, what, values, -1), GRAFT_ERR_INVALID_ARG);
    graft_comm_free(&comm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_defaults),
        cmocka_unit_test(test_layout_sizes_and_boundaries),
        cmocka_unit_test(test_out_of_order_marks),
        cmocka_unit_test(test_launch_order),
        cmocka_unit_test(test_wait_without_marks_and_no_sync),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_repeated_steps),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_begin_without_wait),
        cmocka_unit_test(test_free_mid_use),
        cmocka_unit_test(test_watchdog_names_step_and_bucket),
        cmocka_unit_test(test_watchdog_context),
        cmocka_unit_test(test_agreement_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
