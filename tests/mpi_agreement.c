/* The start-up handshake under mpirun: all ranks agree -> OK everywhere; rank 1 differs
 * in one value, or one rank checks a different number of values -> GRAFT_ERR_MISMATCH on
 * every rank, and the log names the rank and the item (read back from a log file). */
#include <mpi.h>

#include "tests/testutil.h"

#include "comm/comm.h"
#include "runtime/core/log.h"

static graft_comm comm;

static const char *const what[] = {"parameter names", "parameter shapes", "trainable mask",
                                   "config digest", "world size"};
enum { N_VALUES = 5 };

static void agreed_values(uint64_t *v) {
    v[0] = 0x9e3779b97f4a7c15ull;
    v[1] = 0x1a2b3c4d5e6f7788ull;
    v[2] = 0x00ff00ff00ff00ffull;
    v[3] = 0xdeadbeefcafef00dull;
    v[4] = (uint64_t)comm.size;
}

/* Runs the check with the log captured; returns the status, fills log_text. */
static graft_status check_captured(const uint64_t *values, int n, char *log_text, size_t size) {
    FILE *f = tmpfile();
    assert_non_null(f);
    graft_log_set_file(f);
    graft_status st = graft_comm_check_agreement(&comm, what, values, n);
    graft_log_set_file(NULL);
    rewind(f);
    size_t got = fread(log_text, 1, size - 1, f);
    log_text[got] = '\0';
    fclose(f);
    return st;
}

/* Every rank's status, gathered: 1 when all equal `want`. */
static int everyone_returned(graft_status st, graft_status want) {
    int mine = (int)st, all[4];
    assert_int_equal(graft_comm_allgather(&comm, &mine, all, sizeof mine), GRAFT_OK);
    int ok = 1;
    for (int q = 0; q < comm.size; q++)
        ok &= all[q] == (int)want;
    return ok;
}

static void test_all_agree(void **state) {
    (void)state;
    uint64_t v[N_VALUES];
    agreed_values(v);
    char log_text[4096];
    graft_status st = check_captured(v, N_VALUES, log_text, sizeof log_text);
    assert_true(everyone_returned(st, GRAFT_OK));
    assert_string_equal(log_text, "");
}

/* Rank 1 has other parameter shapes: everyone stops; rank 0 says why in one line (rank 1
 * keeps it as its last error). */
static void test_rank1_differs(void **state) {
    (void)state;
    uint64_t v[N_VALUES];
    agreed_values(v);
    if (comm.rank == 1) v[1] ^= 0x10;
    char log_text[4096];
    graft_status st = check_captured(v, N_VALUES, log_text, sizeof log_text);
    assert_true(everyone_returned(st, GRAFT_ERR_MISMATCH));
    const char *want = "rank 1 differs from rank 0 in parameter shapes "
                       "(digest 1a2b3c4d5e6f7798 vs 1a2b3c4d5e6f7788 on rank 0)";
    if (comm.rank == 0) {
        printf("  rank 0 logged: %s", log_text);
        assert_non_null(strstr(log_text, want));
        assert_null(strstr(log_text, "world size"));
        assert_null(strstr(log_text, "rank 2"));
    } else {
        assert_string_equal(log_text, "");
    }
    assert_string_equal(graft_log_last_error(), want);
}

/* Every rank but 0 differs, rank 1 in two values: one line on rank 0 names them all. */
static void test_many_differ_one_line(void **state) {
    (void)state;
    uint64_t v[N_VALUES];
    agreed_values(v);
    if (comm.rank > 0) v[3] += (uint64_t)comm.rank;
    if (comm.rank == 1) v[4] = 99;
    char log_text[4096];
    graft_status st = check_captured(v, N_VALUES, log_text, sizeof log_text);
    assert_true(everyone_returned(st, GRAFT_ERR_MISMATCH));
    if (comm.rank != 0) {
        assert_string_equal(log_text, "");
        return;
    }
    printf("  rank 0 logged: %s", log_text);
    assert_int_equal(strchr(log_text, '\n') - log_text + 1, (long)strlen(log_text));
    char want[512];
    snprintf(want, sizeof want,
             "rank 1 differs from rank 0 in config digest (digest deadbeefcafef00e vs "
             "deadbeefcafef00d on rank 0), world size (99 vs %d on rank 0)",
             comm.size);
    assert_non_null(strstr(log_text, want));
    for (int q = 2; q < comm.size; q++) {
        snprintf(want, sizeof want, "; rank %d differs from rank 0 in config digest", q);
        assert_non_null(strstr(log_text, want));
    }
}

/* The last rank thinks the world is bigger: small values print as numbers. */
static void test_small_value_differs(void **state) {
    (void)state;
    uint64_t v[N_VALUES];
    agreed_values(v);
    int last = comm.size - 1;
    if (comm.rank == last) v[4] = 64;
    char log_text[4096], want[128];
    graft_status st = check_captured(v, N_VALUES, log_text, sizeof log_text);
    assert_true(everyone_returned(st, GRAFT_ERR_MISMATCH));
    snprintf(want, sizeof want, "rank %d differs from rank 0 in world size (64 vs %d on rank 0)",
             last, comm.size);
    if (comm.rank == 0) {
        printf("  rank 0 logged: %s", log_text);
        assert_non_null(strstr(log_text, want));
    }
}

/* Rank 1 checks one value fewer: a message, not a hang. */
static void test_count_differs(void **state) {
    (void)state;
    uint64_t v[N_VALUES];
    agreed_values(v);
    char log_text[4096];
    graft_status st =
        check_captured(v, comm.rank == 1 ? N_VALUES - 1 : N_VALUES, log_text, sizeof log_text);
    assert_true(everyone_returned(st, GRAFT_ERR_MISMATCH));
    if (comm.rank <= 1) {
        printf("  rank %d logged: %s", comm.rank, log_text);
        assert_non_null(strstr(log_text, "rank 1 differs from rank 0 in the number of values it "
                                         "checks (4 vs 5 on rank 0)"));
    }
    /* and afterwards everything still works */
    graft_status again = graft_comm_check_agreement(&comm, what, v, N_VALUES);
    assert_true(everyone_returned(again, GRAFT_OK));
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    if (graft_comm_init_mpi(&comm) != GRAFT_OK) {
        MPI_Finalize();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_agree),
        cmocka_unit_test(test_rank1_differs),
        cmocka_unit_test(test_small_value_differs),
        cmocka_unit_test(test_many_differ_one_line),
        cmocka_unit_test(test_count_differs),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    graft_comm_free(&comm);
    MPI_Finalize();
    return failed ? 1 : 0;
}
