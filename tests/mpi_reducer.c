/* comm/reducer under mpirun (2-4 ranks, MPI_THREAD_MULTIPLE: the comm thread calls MPI
 * while the main thread marks): exact sums, identical bits on every rank, marks in any
 * order, accumulation, overlap with a simulated backward, and the bytes sent. */
#include <mpi.h>
#include <time.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "comm/reducer.h"
#include "runtime/core/log.h"

static graft_comm comm;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Integer-valued contribution of rank q at i: every partial sum is exact in float, so the
 * result is known in closed form whatever order MPI adds in. */
static float int_value(int q, size_t i) { return (float)((q + 1) * (int)(i % 997 + 1)); }
static float int_sum(int R, size_t i) { return (float)(R * (R + 1) / 2 * (int)(i % 997 + 1)); }

/* FNV-1a over the bytes of a float buffer. */
static uint64_t checksum(const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* 1 when every rank holds the same bytes in x[0..n). */
static int same_on_every_rank(const float *x, size_t n) {
    uint64_t mine = checksum(x, n), all[4];
    assert_int_equal(graft_comm_allgather(&comm, &mine, all, sizeof mine), GRAFT_OK);
    int same = 1;
    for (int q = 0; q < comm.size; q++)
        same &= all[q] == mine;
    return same;
}

/* Parameter layout in backward order: P parameters of sizes that vary (1 .. ~40000). */
enum { P = 60 };
static size_t layout(size_t *starts) {
    size_t total = 0;
    for (int i = 0; i < P; i++) {
        starts[i] = total;
        total += 1 + (size_t)((i * 7919) % 40000);
    }
    return total;
}

/* Random floats, marks in backward order with sleeps: the sum matches a double-precision
 * reference to float rounding and is bit-identical on every rank; buckets were reduced
 * while "backward" was still running. */
static void test_backward_order_exact_and_identical(void **state) {
    (void)state;
    int R = comm.size, me = comm.rank;
    size_t starts[P], n = layout(starts);
    float *grads = tu_floats(n), *mine = tu_floats(n);
    graft_reducer *r = NULL;
    /* 64 KiB first bucket, 256 KiB others: ~16 buckets */
    assert_int_equal(
        graft_reducer_new_with_boundaries(&r, &comm, grads, n, starts, P, 256 << 10, 64 << 10),
        GRAFT_OK);
    int nb = graft_reducer_num_buckets(r);
    assert_int_equal(graft_comm_set_watchdog(&comm, 60), GRAFT_OK);
    /* Overlap is a matter of timing: on a loaded machine (3 ranks on 2 cores under a
     * sanitizer) a step can find no bucket finished before the wait, so overlap has to
     * show in at least one of several steps, not in each. */
    int overlapped_steps = 0;
    for (int step = 0; step < 4; step++) {
        tu_fill_uniform(grads, n, -1, 1, 1000u * (unsigned)step + (unsigned)me);
        graft_reducer_set_step(r, step);
        graft_reducer_begin_step(r, 1);
        for (int i = 0; i < P; i++) {
            size_t end = i + 1 < P ? starts[i + 1] : n;
            graft_reducer_ready(r, starts[i], end - starts[i]);
            sleep_ms(5); /* the next layer's backward */
        }
        double wait_s = -1;
        graft_status st = graft_reducer_wait(r, &wait_s);
        graft_reducer_stats stats;
        graft_reducer_get_stats(r, &stats);
        int same = same_on_every_rank(grads, n);
        /* reference: regenerate every rank's contribution, sum in double */
        double max_err = 0, max_ref = 1e-30;
        double *ref = tu_doubles(n);
        for (int q = 0; q < R; q++) {
            tu_fill_uniform(mine, n, -1, 1, 1000u * (unsigned)step + (unsigned)q);
            for (size_t i = 0; i < n; i++)
                ref[i] += mine[i];
        }
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)grads[i] - ref[i]);
            if (d > max_err) max_err = d;
            if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
        }
        free(ref);
        if (me == 0)
            printf("  step %d: n=%zu in %d buckets, %d finished before wait, wait %.1f ms, "
                   "comm %.1f ms\n",
                   step, n, nb, stats.finished_before_wait, 1e3 * wait_s, 1e3 * stats.comm_s);
        assert_int_equal(st, GRAFT_OK);
        assert_true(same);
        if (me == 0) TU_CHECK_REL("sum vs double reference", max_err / max_ref, 4e-7 * R);
        assert_true(max_err / max_ref <= 4e-7 * R);
        assert_true(graft_reducer_step_bytes(r) == 4 * (uint64_t)n);
        assert_int_equal(stats.launched_before_wait, nb);
        overlapped_steps += stats.finished_before_wait >= 1;
    }
    assert_true(overlapped_steps >= 1); /* overlap happened */
    assert_int_equal(graft_comm_set_watchdog(&comm, 0), GRAFT_OK);
    graft_reducer_free(r);
    free(grads);
    free(mine);
}

/* Each rank marks the parameters in its own shuffled order (and skips a few, left to wait):
 * collectives still match across ranks and the sums are exact. */
static void test_out_of_order_marks(void **state) {
    (void)state;
    int R = comm.size, me = comm.rank;
    size_t starts[P], n = layout(starts);
    float *grads = tu_floats(n);
    graft_reducer *r = NULL;
    assert_int_equal(
        graft_reducer_new_with_boundaries(&r, &comm, grads, n, starts, P, 128 << 10, 32 << 10),
        GRAFT_OK);
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++)
            grads[i] = int_value(me, i);
        int order[P];
        for (int i = 0; i < P; i++)
            order[i] = i;
        graft_rng rng;
        graft_rng_seed(&rng, 77u + 13u * (unsigned)me + 1000u * (unsigned)step);
        for (int i = P - 1; i > 0; i--) {
            int j = (int)(graft_rng_uniform(&rng) * (i + 1));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        graft_reducer_begin_step(r, 1);
        for (int k = 0; k < P - 3 * me; k++) { /* rank q leaves 3q parameters to wait */
            int i = order[k];
            size_t end = i + 1 < P ? starts[i + 1] : n;
            graft_reducer_ready(r, starts[i], end - starts[i]);
            if (k % 8 == 0) sleep_ms(1);
        }
        graft_status st = graft_reducer_wait(r, NULL);
        int same = same_on_every_rank(grads, n);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++)
            wrong += grads[i] != int_sum(R, i);
        if (me == 0) printf("  step %d: %zu of %zu sums wrong\n", step, wrong, n);
        assert_int_equal(st, GRAFT_OK);
        assert_true(same);
        assert_true(wrong == 0);
    }
    graft_reducer_free(r);
    free(grads);
}

/* Two no_sync micro-steps then a sync step: bytes 0, 0, 4n; the result is the sum over
 * ranks of the accumulated gradients. */
static void test_accumulation(void **state) {
    (void)state;
    int R = comm.size, me = comm.rank;
    size_t starts[P], n = layout(starts);
    float *grads = tu_floats(n);
    graft_reducer *r = NULL;
    assert_int_equal(
        graft_reducer_new_with_boundaries(&r, &comm, grads, n, starts, P, 256 << 10, 64 << 10),
        GRAFT_OK);
    uint64_t bytes[3];
    graft_status st[3];
    for (int micro = 0; micro < 3; micro++) {
        graft_reducer_begin_step(r, micro == 2);
        for (size_t i = 0; i < n; i++)
            grads[i] += int_value(me, i); /* "backward" adds */
        for (int i = P - 1; i >= 0; i--) {
            size_t end = i + 1 < P ? starts[i + 1] : n;
            graft_reducer_ready(r, starts[i], end - starts[i]);
        }
        st[micro] = graft_reducer_wait(r, NULL);
        bytes[micro] = graft_reducer_step_bytes(r);
        if (micro < 2) { /* nothing was sent: still this rank's own accumulation */
            size_t wrong = 0;
            for (size_t i = 0; i < n; i++)
                wrong += grads[i] != (float)(micro + 1) * int_value(me, i);
            assert_true(wrong == 0);
        }
    }
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += grads[i] != 3.0f * int_sum(R, i);
    if (me == 0)
        printf("  bytes per micro-step: %llu %llu %llu (4n = %llu), wrong sums %zu\n",
               (unsigned long long)bytes[0], (unsigned long long)bytes[1],
               (unsigned long long)bytes[2], 4ull * n, wrong);
    for (int micro = 0; micro < 3; micro++)
        assert_int_equal(st[micro], GRAFT_OK);
    assert_true(bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 4 * (uint64_t)n);
    assert_true(wrong == 0);
    graft_reducer_free(r);
    free(grads);
}

/* A model-sized buffer (12 M floats, 48 MB) with the DDP defaults: 1 MiB, then 25 MiB
 * buckets; step_bytes is exactly 4n and the sums are exact. Marks come in as 1000
 * "layers" in backward order. Then the same buffer with 1 MiB buckets (46 of them). */
static void test_model_sized(void **state) {
    (void)state;
    int R = comm.size, me = comm.rank;
    size_t n = 12000007;
    float *grads = tu_floats(n);
    size_t bucket_sizes[2][2] = {{0, 0}, {1 << 20, 256 << 10}};
    for (int v = 0; v < 2; v++) {
        graft_reducer *r = NULL;
        assert_int_equal(
            graft_reducer_new(&r, &comm, grads, n, bucket_sizes[v][0], bucket_sizes[v][1]),
            GRAFT_OK);
        for (size_t i = 0; i < n; i++)
            grads[i] = int_value(me, i);
        graft_reducer_begin_step(r, 1);
        size_t layer = n / 1000 + 1;
        for (size_t off = 0; off < n; off += layer)
            graft_reducer_ready(r, off, off + layer <= n ? layer : n - off);
        double wait_s = 0;
        graft_status st = graft_reducer_wait(r, &wait_s);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++)
            wrong += grads[i] != int_sum(R, i);
        int same = same_on_every_rank(grads, n);
        graft_reducer_stats stats;
        graft_reducer_get_stats(r, &stats);
        if (me == 0)
            printf("  n=%zu: %d buckets, step_bytes %llu (4n = %llu), wait %.0f ms, comm %.0f ms, "
                   "wrong %zu\n",
                   n, stats.n_buckets, (unsigned long long)graft_reducer_step_bytes(r), 4ull * n,
                   1e3 * wait_s, 1e3 * stats.comm_s, wrong);
        assert_int_equal(st, GRAFT_OK);
        assert_true(graft_reducer_step_bytes(r) == 4 * (uint64_t)n);
        size_t first = (bucket_sizes[v][1] ? bucket_sizes[v][1] : (1 << 20)) / 4;
        size_t other = (bucket_sizes[v][0] ? bucket_sizes[v][0] : (25 << 20)) / 4;
        assert_int_equal(stats.n_buckets, 1 + (n - first + other - 1) / other);
        assert_true(wrong == 0);
        assert_true(same);
        graft_reducer_free(r);
    }
    free(grads);
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    if (provided < MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "MPI provides thread level %d, the reducer needs MPI_THREAD_MULTIPLE\n",
                provided);
        MPI_Finalize();
        return 1;
    }
    if (graft_comm_init_mpi(&comm) != GRAFT_OK) {
        MPI_Finalize();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_order_exact_and_identical),
        cmocka_unit_test(test_out_of_order_marks),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_model_sized),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    graft_comm_free(&comm);
    MPI_Finalize();
    return failed ? 1 : 0;
}
