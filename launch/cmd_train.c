/* graft train / graft eval: run an experiment described by a YAML config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include "cli.h"
#include "comm/comm.h"
#include "runtime/core/check.h"
#include "runtime/config/config.h"
#include "runtime/train/train.h"

/* The world size announced by mpirun or srun in the environment ("?" when unknown), or
 * NULL when this process was not started by one. */
static const char *mpi_launcher_size(void) {
    if (getenv("OMPI_COMM_WORLD_SIZE")) return getenv("OMPI_COMM_WORLD_SIZE"); /* mpirun */
    if (getenv("PMI_SIZE")) return getenv("PMI_SIZE");                         /* PMI-1/2 */
    if (getenv("PMIX_RANK")) return getenv("SLURM_NTASKS") ? getenv("SLURM_NTASKS") : "?";
    return NULL;
}

/* Start MPI with the thread level the reducer's comm thread needs. */
static graft_status start_mpi(int *started) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        GRAFT_ERROR("MPI_Init_thread failed");
        return GRAFT_ERR_MPI;
    }
    *started = 1;
    if (provided < MPI_THREAD_MULTIPLE) {
        GRAFT_ERROR("this MPI does not support MPI_THREAD_MULTIPLE (the gradient reducer "
                    "all-reduces on its own thread)");
        return GRAFT_ERR_MPI;
    }
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    graft_log_set_rank(rank);
    return GRAFT_OK;
}

/* comm.backend: auto picks nccl when built with it and every rank has a GPU, else
 * mpi when started by mpirun/srun, else local; the choice and the reason are logged. */
static graft_status open_comm(const char *backend, graft_comm *comm, int *mpi_started) {
    const char *launched = mpi_launcher_size();
    if (strcmp(backend, "local") == 0) {
        if (launched && strcmp(launched, "1") != 0) {
            GRAFT_ERROR("comm.backend is local but this process was started as one of %s "
                        "MPI ranks (use comm.backend: auto or mpi)", launched);
            return GRAFT_ERR_CONFIG;
        }
        graft_comm_init_local(comm);
        return GRAFT_OK;
    }
    if (strcmp(backend, "auto") == 0 && !launched) {
        graft_comm_init_local(comm);
        GRAFT_DEBUG("comm.backend auto: local (not started by mpirun or srun)");
        return GRAFT_OK;
    }
    GRAFT_TRY(start_mpi(mpi_started));
    if (strcmp(backend, "mpi") == 0) return graft_comm_init_mpi(comm);
    if (strcmp(backend, "nccl") == 0) return graft_comm_init_nccl(comm);
    /* auto under MPI: nccl only if every rank can use it */
    const char *why = NULL;
    int mine = graft_comm_nccl_available(&why), all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all) {
        GRAFT_INFO("comm.backend auto: nccl (built with NCCL and every rank sees a GPU)");
        return graft_comm_init_nccl(comm);
    }
    GRAFT_TRY(graft_comm_init_mpi(comm));
    GRAFT_INFO("comm.backend auto: mpi over %d ranks (nccl not used: %s)", comm->size,
               mine ? "another rank has no GPU" : why);
    return GRAFT_OK;
}

/* Run fn with the configured communicator. A failing rank of a multi-rank job takes the
 * whole job down with MPI_Abort (its error is already logged), so no rank is left
 * waiting in a collective -- unless fn sets *agreed: every rank then has the same
 * outcome and the one that found the problem has said it. */
static int with_comm(const graft_config *cfg,
                     graft_status (*fn)(const graft_config *, graft_comm *, void *, int *),
                     void *arg) {
    graft_comm comm = {0};
    int mpi_started = 0, agreed = 0;
    graft_log_clear_last_error();
    graft_status st = open_comm(cfg->comm.backend, &comm, &mpi_started);
    if (st == GRAFT_OK) st = fn(cfg, &comm, arg, &agreed);
    /* every failure exits with its line: a path that failed without logging gets this one */
    if (st != GRAFT_OK && st != GRAFT_STOPPED && !agreed && !graft_log_last_error()[0])
        GRAFT_ERROR("failed: %s", graft_status_str(st));
    int rc = cli_exit_status(st), size = comm.size;
    graft_comm_free(&comm);
    if (mpi_started) {
        /* a stop every rank agreed on (exit 75) ends normally; an error may be one rank's */
        if (rc != GRAFT_EXIT_OK && rc != GRAFT_EXIT_PREEMPTED && !agreed && size > 1)
            MPI_Abort(MPI_COMM_WORLD, rc);
        MPI_Finalize();
    }
    return rc;
}

/* SIGTERM, SIGINT, SIGUSR1, SIGHUP: checkpoint at the next step boundary and exit 75.
 * A second SIGINT (Ctrl-C twice) stops at once. */
static void on_stop_signal(int sig) {
    if (sig == SIGINT && graft_train_stop_signal) {
        static const char msg[] = "graft: second interrupt: stopping now\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(130);
    }
    graft_train_stop_signal = 1;
}

static graft_status run_train(const graft_config *cfg, graft_comm *comm, void *arg,
                              int *agreed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
    (void)arg;
    return graft_train(cfg, comm, agreed);
}

static graft_status run_eval(const graft_config *cfg, graft_comm *comm, void *arg,
                             int *agreed) {
    (void)agreed; /* a failing rank takes the job down */
    const char **values = arg;
    return graft_evaluate(cfg, values[0], values[1], comm);
}

int cmd_train(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
        printf("usage: graft train CONFIG.yaml [key=value ...] [--print-config]\n"
               "Train as the config says; key=value overrides any config key\n"
               "(e.g. optim.lr=3e-4 train.max_steps=100). --print-config prints the\n"
               "resolved config as YAML and exits.\n");
        return GRAFT_EXIT_OK;
    }
    graft_config cfg;
    int print_only = 0;
    cli_option opts[] = {
        {"print-config", CLI_FLAG, &print_only, "print the resolved config and exit", 0}};
    const cli_config_args args = {opts, 1, 1, NULL};
    int rc = cli_load_config("train", &cfg, argc, argv, &args);
    if (rc == GRAFT_EXIT_OK && print_only) {
        rc = cli_exit_status(graft_config_print(&cfg, stdout));
    } else if (rc == GRAFT_EXIT_OK) {
        rc = with_comm(&cfg, run_train, NULL);
    }
    graft_config_free(&cfg);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
        printf("usage: graft eval CONFIG.yaml --weights FILE.safetensors [--json OUT.json] "
               "[key=value ...]\n"
               "Evaluate weights on the config's data.val (or data.train) set: loss,\n"
               "accuracy and per-class accuracy for classifiers, perplexity for language models.\n");
        return GRAFT_EXIT_OK;
    }
    graft_config cfg;
    const char *values[2] = {NULL, NULL}; /* --weights, --json */
    cli_option opts[] = {{"weights", CLI_STRING, &values[0], "weights to evaluate", 0},
                         {"json", CLI_STRING, &values[1], "write the result here", 0}};
    const cli_config_args args = {opts, 2, 0, NULL}; /* evaluating needs no training length */
    int rc = cli_load_config("eval", &cfg, argc, argv, &args);
    if (rc == GRAFT_EXIT_OK && !values[0]) {
        fprintf(stderr, "graft eval: --weights FILE is required\n");
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK) rc = with_comm(&cfg, run_eval, values);
    graft_config_free(&cfg);
    return rc;
}
