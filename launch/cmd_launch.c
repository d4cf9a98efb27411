/* graft launch CONFIG.yaml [key=value ...] [--dry-run]: turn the config's launch.*
 * section into an mpirun command that runs `graft train` on every rank, run it, and
 * restart it (resuming from the latest checkpoint) up to launch.max_restarts times. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "runtime/config/config.h"
#include "runtime/core/escape.h"
#include "runtime/io/fs.h"
#include "runtime/train/train.h"

/* A growable argv. */
typedef struct {
    char **v;
    int n, cap;
} argv_builder;

static int push(argv_builder *a, const char *s) {
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? 2 * a->cap : 32;
        char **v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n] = strdup(s);
    if (!a->v[a->n]) return -1;
    a->v[++a->n] = NULL;
    return 0;
}

static void argv_free(argv_builder *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
}

/* Print one argument quoted for a POSIX shell when it needs it. */
static void print_quoted(FILE *out, const char *s) {
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%") ==
                  strlen(s)) {
        fputs(s, out);
        return;
    }
    fputc('\'', out);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", out);
        else fputc(*s, out);
    }
    fputc('\'', out);
}

/* Limits on launch.hosts entries ("name:slots"): a DNS name is at most 253 characters,
 * and slot counts stay far from overflowing their sum. */
#define HOST_NAME_MAX_LEN 253
#define HOST_SLOTS_MAX 1000000

/* The slots of a "name[:slots]" entry (1 without a colon); -1 when they are not a
 * number in [1, HOST_SLOTS_MAX]. */
static long host_slots(const char *entry) {
    const char *colon = strrchr(entry, ':');
    if (!colon) return 1;
    const char *digits = colon + 1;
    if (!*digits || strspn(digits, "0123456789") != strlen(digits)) return -1;
    errno = 0;
    long n = strtol(digits, NULL, 10);
    return errno || n < 1 || n > HOST_SLOTS_MAX ? -1 : n;
}

/* Ranks that will share this node: all of them without a host list, else the most
 * slots any one host offers (entries are checked by check_launch first). */
static int ranks_per_node(const graft_config *cfg) {
    if (cfg->launch.hosts.count == 0) return cfg->launch.np;
    long most = 1;
    for (int i = 0; i < cfg->launch.hosts.count; i++) {
        long slots = host_slots(cfg->launch.hosts.items[i]);
        if (slots > most) most = slots;
    }
    return most < cfg->launch.np ? (int)most : cfg->launch.np;
}

/* launch.hosts joined with commas for -H, sized to fit them all; NULL when out of memory. */
static char *join_hosts(const graft_strlist *hosts) {
    size_t len = 1;
    for (int i = 0; i < hosts->count; i++)
        len += strlen(hosts->items[i]) + 1;
    char *joined = malloc(len), *at = joined;
    if (!joined) return NULL;
    for (int i = 0; i < hosts->count; i++) {
        if (i) *at++ = ',';
        size_t n = strlen(hosts->items[i]);
        memcpy(at, hosts->items[i], n);
        at += n;
    }
    *at = '\0';
    return joined;
}

/* The whole mpirun command line. Returns 0, or -1 when out of memory. */
static int build_command(argv_builder *a, const graft_config *cfg, const char *graft_path,
                         int argc, char **argv) {
    char buf[64];
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = ranks_per_node(cfg);
    int threads = cfg->launch.threads_per_rank > 0
                      ? cfg->launch.threads_per_rank
                      : (int)(cores / (local > 0 ? local : 1) > 0 ? cores / local : 1);
    /* --quiet: the ranks say what went wrong in one line each; mpirun's own notices of
     * a non-zero exit or an abort (a dozen lines, after ours) would bury it. */
    int rc = push(a, "mpirun") | push(a, "--quiet");
    snprintf(buf, sizeof buf, "%d", cfg->launch.np);
    rc |= push(a, "-np") | push(a, buf);
    if (cfg->launch.hostfile) {
        rc |= push(a, "--hostfile") | push(a, cfg->launch.hostfile);
    } else if (cfg->launch.hosts.count) {
        char *hosts = join_hosts(&cfg->launch.hosts);
        rc |= push(a, "-H") | (hosts ? push(a, hosts) : -1);
        free(hosts);
    }
    if (geteuid() == 0) {
        fprintf(stderr, "graft launch: warning: running as root: adding --allow-run-as-root\n");
        rc |= push(a, "--allow-run-as-root");
    }
    snprintf(buf, sizeof buf, "OPENBLAS_NUM_THREADS=%d", threads);
    rc |= push(a, "-x") | push(a, buf);
    /* OpenBLAS threads spin for a long while after each GEMM, starving the loader's
     * prefetch thread on a full node (3-4 % of a step waiting for data on 2 cores);
     * a short spin brings that under 1 % at the same speed. */
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) rc |= push(a, "-x") | push(a, "OPENBLAS_THREAD_TIMEOUT=4");
    for (int i = 0; i < cfg->launch.env.count; i++) rc |= push(a, "-x") | push(a, cfg->launch.env.items[i]);
    for (int i = 0; i < cfg->launch.mpirun_args.count; i++) rc |= push(a, cfg->launch.mpirun_args.items[i]);
    rc |= push(a, graft_path) | push(a, "train");
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--dry-run") != 0) rc |= push(a, argv[i]);
    return rc ? -1 : 0;
}

/* 1 when an executable `name` is on PATH (each directory joined at its full length). */
static int on_path(const char *name) {
    const char *path = getenv("PATH");
    size_t name_len = strlen(name);
    while (path && *path) {
        size_t len = strcspn(path, ":");
        char *candidate = malloc(len + name_len + 2);
        if (candidate) {
            snprintf(candidate, len + name_len + 2, "%.*s/%s", (int)len, path, name);
            int found = access(candidate, X_OK) == 0;
            free(candidate);
            if (found) return 1;
        }
        path += len + (path[len] == ':');
    }
    return 0;
}

static int has_arg(const graft_strlist *list, const char *arg) {
    for (int i = 0; i < list->count; i++)
        if (strcmp(list->items[i], arg) == 0) return 1;
    return 0;
}

/* What mpirun would refuse or fail on, said in one line before anything starts:
 * returns 0 when the launch can go ahead. */
static int check_launch(const graft_config *cfg) {
    if (!on_path("mpirun")) {
        fprintf(stderr, "graft launch: mpirun not found on PATH (install Open MPI: scripts/deps.sh)\n");
        return -1;
    }
    /* mpirun reads it: a FIFO or device there would hang it */
    int fd;
    if (cfg->launch.hostfile) {
        if (graft_fs_open_regular(cfg->launch.hostfile, &fd, NULL, GRAFT_LOG_QUIET) != GRAFT_OK) {
            fprintf(stderr, "graft launch: launch.hostfile: %s\n", graft_log_last_error());
            return -1;
        }
        close(fd);
    }
    long slots = sysconf(_SC_NPROCESSORS_ONLN);
    const char *where = "cores on this machine";
    if (cfg->launch.hosts.count) {
        slots = 0;
        where = "slots in launch.hosts";
        for (int i = 0; i < cfg->launch.hosts.count; i++) {
            const char *entry = cfg->launch.hosts.items[i], *colon = strrchr(entry, ':');
            long n = host_slots(entry);
            char text[1024]; /* the config's text, escaped */
            if (n < 0) {
                fprintf(stderr,
                        "graft launch: launch.hosts[%d]: '%s': expected host:slots with slots in "
                        "[1, %d]\n",
                        i, graft_escape(text, sizeof text, entry), HOST_SLOTS_MAX);
                return -1;
            }
            size_t name_len = colon ? (size_t)(colon - entry) : strlen(entry);
            if (name_len == 0 || name_len > HOST_NAME_MAX_LEN) {
                fprintf(stderr,
                        "graft launch: launch.hosts[%d]: host name of %zu characters (expected 1 "
                        "to %d)\n",
                        i, name_len, HOST_NAME_MAX_LEN);
                return -1;
            }
            char host[HOST_NAME_MAX_LEN + 1];
            snprintf(host, sizeof host, "%.*s", (int)name_len, entry);
            struct addrinfo *info = NULL;
            if (getaddrinfo(host, NULL, NULL, &info) != 0) {
                fprintf(stderr, "graft launch: launch.hosts: unknown host '%s'\n",
                        graft_escape(text, sizeof text, host));
                return -1;
            }
            freeaddrinfo(info);
            slots += n;
        }
    }
    if (!cfg->launch.hostfile && cfg->launch.np > slots &&
        !has_arg(&cfg->launch.mpirun_args, "--oversubscribe")) {
        fprintf(stderr,
                "graft launch: launch.np %d is more than the %ld %s; add --oversubscribe to "
                "launch.mpirun_args to run anyway\n",
                cfg->launch.np, slots, where);
        return -1;
    }
    return 0;
}

static volatile sig_atomic_t child_pid = 0, signalled = 0;
static const int stop_signals[] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

/* SIGTERM / SIGINT / SIGUSR1 / SIGHUP: "checkpoint now and stop". mpirun forwards
 * SIGUSR1 to every rank untouched, whereas on SIGTERM it kills the ranks a second later,
 * before they can save: so every stop signal reaches mpirun as SIGUSR1. A second SIGINT
 * is passed on as SIGTERM (stop now). A signalled launcher does not start the job again. */
static void forward_signal(int sig) {
    int again = signalled;
    signalled = 1;
    if (child_pid > 0) kill((pid_t)child_pid, again && sig == SIGINT ? SIGTERM : SIGUSR1);
}

static void set_stop_signals_blocked(int blocked, sigset_t *old) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) sigaddset(&set, stop_signals[i]);
    sigprocmask(blocked ? SIG_BLOCK : SIG_SETMASK, blocked ? &set : old, blocked ? old : NULL);
}

/* The child before exec: mpirun (and through it the ranks) gets its own process group
 * and no terminal input, so Ctrl-C at a terminal (SIGINT to the foreground group)
 * reaches graft launch alone, which passes it on as SIGUSR1 like any stop signal;
 * otherwise mpirun would get the SIGINT itself and kill the ranks before they save. */
static void become_job(const sigset_t *mask) {
    setpgid(0, 0);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &dfl, NULL);
    sigprocmask(SIG_SETMASK, mask, NULL);
}

/* Run the command unless a stop signal has arrived (*started = 0 then); returns its exit
 * status (128+signal when killed). Stop signals are held back from the check to the
 * moment child_pid is set, so none falls between them unforwarded. */
static int run_once(char **cmd, int *started) {
    sigset_t old;
    set_stop_signals_blocked(1, &old);
    *started = !signalled;
    if (!*started) {
        set_stop_signals_blocked(0, &old);
        return GRAFT_EXIT_FAILURE;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "graft launch: cannot fork: %s\n", strerror(errno));
        set_stop_signals_blocked(0, &old);
        return GRAFT_EXIT_FAILURE;
    }
    if (pid == 0) {
        become_job(&old);
        execvp(cmd[0], cmd);
        fprintf(stderr, "graft launch: cannot run %s: %s (is Open MPI installed?)\n", cmd[0],
                strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* as the child does: whichever runs first */
    child_pid = pid;
    set_stop_signals_blocked(0, &old);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    child_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Whether the job stopped at a non-finite step (graft train left nonfinite.json, see
 * runtime/train/train.h): a restart would replay the same steps and stop there again.
 * forget = 1 removes the record of an earlier job instead. */
static int stopped_nonfinite(const graft_config *cfg, int forget) {
    char path[4096];
    if (graft_train_nonfinite_path(cfg, path, sizeof path) != GRAFT_OK) return 0;
    if (!forget) return access(path, F_OK) == 0;
    unlink(path);
    return 0;
}

/* Sleep between restarts; a stop signal ends the wait early. */
static void wait_before_restart(int seconds) {
    struct timespec left = {seconds, 0};
    while (!signalled && nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

int cmd_launch(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "--help") == 0) {
        FILE *out = argc < 3 ? stderr : stdout;
        fprintf(out, "usage: graft launch CONFIG.yaml [key=value ...] [--dry-run]\n");
        if (argc >= 3)
            printf("Run `graft train` on launch.np MPI ranks (launch.hosts / launch.hostfile,\n"
                   "launch.threads_per_rank, launch.env, launch.mpirun_args); --dry-run prints\n"
                   "the mpirun command instead. Failed jobs restart up to launch.max_restarts\n"
                   "times and resume from the latest checkpoint (not one that stopped at a\n"
                   "non-finite step: it would stop there again).\n");
        return argc < 3 ? GRAFT_EXIT_BAD_INPUT : GRAFT_EXIT_OK;
    }
    int dry_run = 0;
    graft_config cfg;
    cli_option opts[] = {{"dry-run", CLI_FLAG, &dry_run, "print the mpirun command only", 0}};
    const cli_config_args args = {opts, 1, 1, NULL};
    int loaded = cli_load_config("launch", &cfg, argc, argv, &args);
    if (loaded != GRAFT_EXIT_OK) {
        graft_config_free(&cfg);
        return loaded;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) snprintf(self, sizeof self, "%s", argv[0]);
    else self[len] = '\0';
    argv_builder cmd = {0};
    int rc = GRAFT_EXIT_OK;
    if (check_launch(&cfg) != 0) {
        rc = GRAFT_EXIT_BAD_INPUT;
    } else if (build_command(&cmd, &cfg, self, argc, argv) != 0) {
        fprintf(stderr, "graft launch: out of memory\n");
        rc = GRAFT_EXIT_FAILURE;
    } else if (dry_run) {
        for (int i = 0; i < cmd.n; i++) {
            if (i) putchar(' ');
            print_quoted(stdout, cmd.v[i]);
        }
        putchar('\n');
    } else {
        struct sigaction sa = {0};
        sa.sa_handler = forward_signal;
        for (size_t i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &sa, NULL);
        for (int attempt = 0;; attempt++) {
            stopped_nonfinite(&cfg, 1);
            int started = 0, last = rc;
            rc = run_once(cmd.v, &started);
            if (!started && attempt == 0) {
                fprintf(stderr, "graft launch: stop signal received before the job started\n");
                rc = GRAFT_EXIT_FAILURE;
                break;
            }
            if (!started) {
                fprintf(stderr, "graft launch: stop signal received while waiting to restart: "
                                "not restarting (the last job exited with status %d)\n",
                        last);
                rc = last;
                break;
            }
            /* mpirun is quiet: a rank killed by a signal would otherwise go unsaid */
            if (rc > 128 && rc < 128 + NSIG)
                fprintf(stderr, "graft launch: a rank was killed by signal %d (%s)\n", rc - 128,
                        strsignal(rc - 128));
            /* done, bad input or a non-finite step (a restart cannot fix them), or
             * preempted with requeue_exit (the scheduler requeues the job, which then
             * resumes from its checkpoint) */
            if (rc == GRAFT_EXIT_OK || rc == GRAFT_EXIT_BAD_INPUT ||
                (rc == GRAFT_EXIT_FAILURE && stopped_nonfinite(&cfg, 0)) || signalled ||
                (rc == GRAFT_EXIT_PREEMPTED && cfg.launch.requeue_exit) ||
                attempt >= cfg.launch.max_restarts)
                break;
            int backoff = attempt < 5 ? 1 << attempt : 30;
            fprintf(stderr,
                    "graft launch: job exited with status %d; restart %d of %d in %d s, "
                    "resuming from the latest checkpoint\n",
                    rc, attempt + 1, cfg.launch.max_restarts, backoff);
            wait_before_restart(backoff);
        }
    }
    argv_free(&cmd);
    graft_config_free(&cfg);
    return rc;
}
