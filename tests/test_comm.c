/* comm: the local backend and the wrappers' argument checks (one process). */
#include "tests/testutil.h"

#include "comm/comm.h"

static void test_local_backend(void **state) {
    (void)state;
    graft_comm c;
    graft_comm_init_local(&c);
    assert_string_equal(c.iface.name, "local");
    assert_int_equal(c.rank, 0);
    assert_int_equal(c.size, 1);
    float buf[3] = {1, 2, 3};
    assert_int_equal(graft_comm_allreduce_sum(&c, buf, 3), GRAFT_OK);
    assert_true(buf[0] == 1 && buf[1] == 2 && buf[2] == 3);
    assert_int_equal(graft_comm_broadcast(&c, buf, sizeof buf, 0), GRAFT_OK);
    assert_int_equal(graft_comm_broadcast(&c, buf, sizeof buf, 1), GRAFT_ERR_INVALID_ARG);
    float out[3] = {0};
    assert_int_equal(graft_comm_allgather(&c, buf, out, sizeof buf), GRAFT_OK);
    assert_memory_equal(buf, out, sizeof buf);
    assert_int_equal(graft_comm_barrier(&c), GRAFT_OK);
    graft_comm_free(&c);
    graft_comm_free(NULL);
}

/* Without MPI initialised, the mpi and nccl backends refuse with a status, no crash. */
static void test_backends_need_mpi(void **state) {
    (void)state;
    graft_comm c = {0};
    assert_int_not_equal(graft_comm_init_mpi(&c), GRAFT_OK);
    const char *why = NULL;
    if (!graft_comm_nccl_available(&why)) {
        printf("  nccl unavailable: %s\n", why);
        assert_int_equal(graft_comm_init_nccl(&c), GRAFT_ERR_UNSUPPORTED);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_backend),
        cmocka_unit_test(test_backends_need_mpi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
