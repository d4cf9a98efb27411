/* The comm watchdog under mpirun: rank 1 is late to an all-reduce; on every other rank the
 * watchdog (timeout 1 s) logs one line naming the collective, the caller's context and
 * the rank, then calls the abort hook. The test's hook does not abort: it records the call
 * and tells rank 1 (on its own communicator, hence MPI_THREAD_MULTIPLE) to go ahead, so
 * the job finishes and the test can check what was said. Rank 1 never waits more than
 * 10 s for that, so nothing hangs when the watchdog stays silent. A second case: an
 * untimed wait (the other ranks waiting for rank 0's checkpoint write) is never fired on. */
#include <mpi.h>
#include <pthread.h>
#include <time.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "runtime/core/log.h"

static graft_comm comm;
static MPI_Comm notify_comm; /* hook -> rank 1 "you may go" messages */

static struct {
    pthread_mutex_t lock;
    int fired;
    char message[400];
} hook = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The abort hook of this test: remember the line, release rank 1. Runs on the watchdog
 * thread while the main thread is blocked in the collective. */
static void release_hook(void *arg) {
    graft_comm *c = arg;
    pthread_mutex_lock(&hook.lock);
    hook.fired++;
    snprintf(hook.message, sizeof hook.message, "%s", graft_comm_watchdog_last_message(c));
    pthread_mutex_unlock(&hook.lock);
    int token = c->rank;
    MPI_Send(&token, 1, MPI_INT, 1, 7, notify_comm);
}

static int hook_fired(void) {
    pthread_mutex_lock(&hook.lock);
    int n = hook.fired;
    pthread_mutex_unlock(&hook.lock);
    return n;
}

static void test_late_rank_is_reported(void **state) {
    (void)state;
    int R = comm.size, me = comm.rank;
    graft_comm_set_abort_hook(release_hook, &comm);
    assert_int_equal(graft_comm_set_watchdog(&comm, 1.0), GRAFT_OK);

    /* quick collectives with the watchdog on: silent */
    for (int i = 0; i < 20; i++)
        assert_int_equal(graft_comm_barrier(&comm), GRAFT_OK);

    graft_comm_set_context(&comm, "step 12 bucket 3");
    float buf[5];
    for (int i = 0; i < 5; i++)
        buf[i] = (float)(me + i);
    int released = 0;
    double late_s = 0;
    if (me == 1) { /* wait for every other rank's hook, at most 10 s */
        int tokens[4];
        MPI_Request req[4];
        for (int q = 0; q < R - 1; q++)
            MPI_Irecv(&tokens[q], 1, MPI_INT, MPI_ANY_SOURCE, 7, notify_comm, &req[q]);
        double t0 = MPI_Wtime();
        while (!released && MPI_Wtime() - t0 < 10) {
            MPI_Testall(R - 1, req, &released, MPI_STATUSES_IGNORE);
            if (!released) sleep_ms(10);
        }
        late_s = MPI_Wtime() - t0;
        if (!released) {
            for (int q = 0; q < R - 1; q++) {
                MPI_Cancel(&req[q]);
                MPI_Wait(&req[q], MPI_STATUS_IGNORE);
            }
        }
    }
    graft_status st = graft_comm_allreduce_sum(&comm, buf, 5);
    graft_comm_set_context(&comm, NULL);
    for (int i = 0; i < 20; i++)
        assert_int_equal(graft_comm_barrier(&comm), GRAFT_OK);
    assert_int_equal(graft_comm_set_watchdog(&comm, 0), GRAFT_OK);
    graft_comm_set_abort_hook(NULL, NULL);

    assert_int_equal(st, GRAFT_OK);
    for (int i = 0; i < 5; i++)
        assert_true(buf[i] == (float)(R * (R - 1) / 2 + R * i));
    if (me == 1) {
        printf("  rank 1 was released after %.2f s (%s)\n", late_s,
               released ? "by every hook" : "by its 10 s limit");
        assert_true(released);
        assert_int_equal(hook_fired(), 0);
    } else {
        char want[128];
        snprintf(want, sizeof want, " s (step 12 bucket 3) on rank %d of %d: aborting the job", me,
                 R);
        printf("  rank %d watchdog: %s\n", me, hook.message);
        assert_int_equal(hook_fired(), 1);
        assert_non_null(strstr(hook.message, "collective allreduce_sum stuck for "));
        assert_non_null(strstr(hook.message, want));
    }
}

/* Waiting on purpose for rank 0's long work (writing a checkpoint) is not a stuck
 * collective: with an untimed context rank 0 may be 2 s late under a 0.5 s timeout and
 * no watchdog fires; the next timed context is timed again and named. */
static void test_untimed_wait_is_not_timed(void **state) {
    (void)state;
    int me = comm.rank;
    pthread_mutex_lock(&hook.lock);
    hook.fired = 0;
    pthread_mutex_unlock(&hook.lock);
    graft_comm_set_abort_hook(release_hook, &comm);
    assert_int_equal(graft_comm_set_watchdog(&comm, 0.5), GRAFT_OK);
    graft_comm_set_untimed_context(&comm, "step 7: waiting for rank 0 to write checkpoint step-7");
    if (me == 0) sleep_ms(2000);
    float x = 1;
    assert_int_equal(graft_comm_allreduce_sum(&comm, &x, 1), GRAFT_OK);
    assert_true(x == (float)comm.size);
    assert_int_equal(hook_fired(), 0);
    graft_comm_set_context(&comm, "step 8: summing the loss");
    for (int i = 0; i < 5; i++)
        assert_int_equal(graft_comm_barrier(&comm), GRAFT_OK);
    assert_int_equal(hook_fired(), 0);
    assert_int_equal(graft_comm_set_watchdog(&comm, 0), GRAFT_OK);
    graft_comm_set_abort_hook(NULL, NULL);
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    if (provided < MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "MPI provides thread level %d, this test needs MPI_THREAD_MULTIPLE\n",
                provided);
        MPI_Finalize();
        return 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &notify_comm);
    if (graft_comm_init_mpi(&comm) != GRAFT_OK) {
        MPI_Finalize();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_late_rank_is_reported),
        cmocka_unit_test(test_untimed_wait_is_not_timed),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    graft_comm_free(&comm);
    MPI_Comm_free(&notify_comm);
    MPI_Finalize();
    return failed ? 1 : 0;
}
