#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"

/* The comm, loader and watchdog threads log while the main thread may change the
 * settings: the numbers are atomics, and the file is swapped and written under one
 * mutex, so a line never goes to a file that is being closed. */
static atomic_int log_rank = 0;
static atomic_int log_all_ranks = 0;
static atomic_int log_level = GRAFT_LOG_INFO;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file = NULL; /* guarded by file_lock */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "ERROR"};

/* The message of this thread's last ERROR (or QUIET) line. */
static _Thread_local char last_error[2048];
/* graft_log_hold_errors: whether this thread holds its errors, and the last one held. */
static _Thread_local int holding;
static _Thread_local char held_line[2048 + 128];

const char *graft_log_last_error(void) { return last_error; }

void graft_log_clear_last_error(void) { last_error[0] = '\0'; }

const char *graft_log_last_reason(const char *subject) {
    const char *msg = graft_log_last_error();
    size_t len = strlen(subject);
    if (strncmp(msg, subject, len) == 0 && strncmp(msg + len, ": ", 2) == 0) msg += len + 2;
    return msg;
}

/* GRAFT_LOG=debug and GRAFT_LOG_ALL_RANKS=1, read once before the first setting or line
 * (so an explicit setter call always wins over the environment). */
static void read_env(void) {
    const char *env = getenv("GRAFT_LOG");
    if (env && strcmp(env, "debug") == 0) atomic_store(&log_level, GRAFT_LOG_DEBUG);
    const char *all = getenv("GRAFT_LOG_ALL_RANKS");
    if (all && strcmp(all, "1") == 0) atomic_store(&log_all_ranks, 1);
}

void graft_log_set_rank(int rank) { atomic_store(&log_rank, rank); }

void graft_log_set_all_ranks(int enabled) {
    pthread_once(&env_once, read_env);
    atomic_store(&log_all_ranks, enabled);
}

void graft_log_set_level(graft_log_level level) {
    pthread_once(&env_once, read_env);
    atomic_store(&log_level, (int)level);
}

void graft_log_set_file(FILE *f) {
    pthread_mutex_lock(&file_lock);
    log_file = f;
    pthread_mutex_unlock(&file_lock);
}

/* One whole line to stderr and the log file. */
static void write_line(const char *line) {
    pthread_mutex_lock(&file_lock);
    fprintf(stderr, "%s\n", line);
    if (log_file) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
    pthread_mutex_unlock(&file_lock);
}

void graft_log(graft_log_level level, const char *func, const char *fmt, ...) {
    pthread_once(&env_once, read_env);
    const int rank = atomic_load(&log_rank);
    int printed = level != GRAFT_LOG_QUIET && (int)level >= atomic_load(&log_level) &&
                  (level >= GRAFT_LOG_WARN || rank == 0 || atomic_load(&log_all_ranks));
    if (level < GRAFT_LOG_ERROR && !printed) return;
    /* Messages carry names and paths read from files: escaped (escape.h), so that each
     * is one line that cannot forge another or drive the terminal. */
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started on the line above */
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    char escaped[2048];
    graft_escape(escaped, sizeof escaped, message);
    /* errors are always kept; QUIET ones only kept */
    if (level >= GRAFT_LOG_ERROR) memcpy(last_error, escaped, sizeof last_error);
    if (!printed) return;
    /* Build the whole line first so lines from several ranks do not interleave. */
    char line[2048 + 128];
    snprintf(line, sizeof line, "[rank %d] %s %s: %s", rank, level_names[level], func, escaped);
    if (level == GRAFT_LOG_ERROR && holding) {
        memcpy(held_line, line, sizeof held_line);
        return;
    }
    write_line(line);
}

void graft_log_hold_errors(void) {
    holding = 1;
    held_line[0] = '\0';
}

void graft_log_release_errors(int print) {
    holding = 0;
    if (print && held_line[0]) write_line(held_line);
    held_line[0] = '\0';
}

const char *graft_format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}
