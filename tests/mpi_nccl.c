/* The nccl backend under mpirun: the same collectives as the mpi backend, checked
 * on GPUs. Without a GPU (or without NCCL built in) every rank exits 77 and ctest
 * reports the test skipped, with the reason printed. */
#include <mpi.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "runtime/core/log.h"

/* Sums with a closed form, a broadcast from the last rank, an allgather. */
static void test_nccl_collectives(void **state) {
    (void)state;
    graft_comm c;
    assert_int_equal(graft_comm_init_nccl(&c), GRAFT_OK);
    int R = c.size, r = c.rank;
    size_t n = 20000001; /* 80 MB: more than one 64 MiB staging chunk */
    float *buf = tu_floats(n);
    for (size_t i = 0; i < n; i++) buf[i] = (float)(r + 1) + (float)(i % 1000);
    assert_int_equal(graft_comm_allreduce_sum(&c, buf, n), GRAFT_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(buf[i] == (float)(R * (R + 1) / 2) + (float)R * (float)(i % 1000));
    free(buf);
    char msg[32] = {0};
    if (r == R - 1) snprintf(msg, sizeof msg, "from %d", R - 1);
    assert_int_equal(graft_comm_broadcast(&c, msg, sizeof msg, R - 1), GRAFT_OK);
    char want[32];
    snprintf(want, sizeof want, "from %d", R - 1);
    assert_string_equal(msg, want);
    int mine = 7 * r, all[8];
    assert_int_equal(graft_comm_allgather(&c, &mine, all, sizeof mine), GRAFT_OK);
    for (int q = 0; q < R; q++) assert_int_equal(all[q], 7 * q);
    assert_int_equal(graft_comm_barrier(&c), GRAFT_OK);
    graft_comm_free(&c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, available;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    const char *why = NULL;
    int mine = graft_comm_nccl_available(&why);
    /* all ranks must agree, or some would wait in NCCL set-up forever */
    MPI_Allreduce(&mine, &available, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!available) {
        if (rank == 0) printf("SKIPPED: nccl backend not usable here: %s\n", mine ? "another rank has no GPU" : why);
        MPI_Finalize();
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nccl_collectives)};
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
