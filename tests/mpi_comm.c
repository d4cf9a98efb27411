/* comm under mpirun: the mpi backend's collectives on 2-4 ranks. */
#include <mpi.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "runtime/core/log.h"

static graft_comm comm;

/* Each rank contributes rank+1+i at i: the sum is known in closed form. Odd sizes
 * and one buffer past a typical eager limit. */
static void check_collectives(graft_comm *c) {
    int R = c->size, r = c->rank;
    size_t sizes[] = {1, 7, 13, 300001};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *buf = tu_floats(n);
        for (size_t i = 0; i < n; i++) buf[i] = (float)(r + 1) + (float)(i % 1000);
        assert_int_equal(graft_comm_allreduce_sum(c, buf, n), GRAFT_OK);
        for (size_t i = 0; i < n; i++)
            assert_true(buf[i] == (float)(R * (R + 1) / 2) + (float)R * (float)(i % 1000));
        free(buf);
    }
    for (int root = 0; root < R; root++) {
        char msg[32] = {0};
        if (r == root) snprintf(msg, sizeof msg, "hello from %d", root);
        assert_int_equal(graft_comm_broadcast(c, msg, sizeof msg, root), GRAFT_OK);
        char want[32] = {0};
        snprintf(want, sizeof want, "hello from %d", root);
        assert_string_equal(msg, want);
    }
    int mine[2] = {r, 100 * r}, all[8];
    assert_int_equal(graft_comm_allgather(c, mine, all, sizeof mine), GRAFT_OK);
    for (int q = 0; q < R; q++) assert_true(all[2 * q] == q && all[2 * q + 1] == 100 * q);
    assert_int_equal(graft_comm_barrier(c), GRAFT_OK);
}

static void test_mpi_backend(void **state) {
    (void)state;
    assert_int_equal(graft_comm_init_mpi(&comm), GRAFT_OK);
    assert_string_equal(comm.iface.name, "mpi");
    assert_true(comm.size >= 2 && comm.size <= 4);
    check_collectives(&comm);
    graft_comm_free(&comm);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpi_backend),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
