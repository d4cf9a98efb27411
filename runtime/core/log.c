#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_rank = 0;
static int log_all_ranks = 0;
static int log_level = -1; /* -1: not yet read from the environment */
static FILE *log_file = NULL;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void graft_log_set_rank(int rank) { log_rank = rank; }
void graft_log_set_all_ranks(int enabled) { log_all_ranks = enabled; }
void graft_log_set_level(graft_log_level level) { log_level = (int)level; }
void graft_log_set_file(FILE *f) { log_file = f; }

static int current_level(void) {
    if (log_level < 0) {
        const char *env = getenv("GRAFT_LOG");
        log_level = (env && strcmp(env, "debug") == 0) ? GRAFT_LOG_DEBUG : GRAFT_LOG_INFO;
        const char *all = getenv("GRAFT_LOG_ALL_RANKS");
        if (all && strcmp(all, "1") == 0) log_all_ranks = 1;
    }
    return log_level;
}

void graft_log(graft_log_level level, const char *func, const char *fmt, ...) {
    if ((int)level < current_level()) return;
    if (level < GRAFT_LOG_WARN && log_rank != 0 && !log_all_ranks) return;
    /* Build the whole line first so lines from several ranks do not interleave. */
    char line[2048];
    int n = snprintf(line, sizeof line, "[rank %d] %s %s: ", log_rank, level_names[level], func);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    if (log_file) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
}

const char *graft_format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}
