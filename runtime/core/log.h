/* Logging: lines are "[rank r] LEVEL func: message" on stderr.
 * By default only rank 0 prints INFO/DEBUG; warnings and errors print on every rank. */
#ifndef GRAFT_LOG_H
#define GRAFT_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* GRAFT_LOG_QUIET is an error that is not printed, only kept as the thread's last error
 * (graft_log_last_error): for a caller that reports the problem in its own words (a
 * listing, a warning before falling back to something else). */
typedef enum {
    GRAFT_LOG_DEBUG,
    GRAFT_LOG_INFO,
    GRAFT_LOG_WARN,
    GRAFT_LOG_ERROR,
    GRAFT_LOG_QUIET
} graft_log_level;

/* Set the rank shown in the prefix (default 0) and whether non-zero ranks print INFO. */
void graft_log_set_rank(int rank);
void graft_log_set_all_ranks(int enabled);
/* Lowest level printed (default INFO; GRAFT_LOG=debug in the environment lowers it,
 * GRAFT_LOG_ALL_RANKS=1 lets every rank print INFO). */
void graft_log_set_level(graft_log_level level);

/* Also append every printed line to f (e.g. runs/<experiment>/train.log); NULL stops. */
void graft_log_set_file(FILE *f);

void graft_log(graft_log_level level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message of the last ERROR (or QUIET) line of the calling thread, without the
 * "[rank r] LEVEL func: " prefix; "" when there was none since the last clear. Each
 * thread has its own. */
const char *graft_log_last_error(void);
void graft_log_clear_last_error(void);
/* The last error's reason about `subject`: the message without its "subject: " start
 * (the whole message when it does not start so), for a caller listing reasons by path. */
const char *graft_log_last_reason(const char *subject);

/* Hold this thread's ERROR lines instead of printing them (each is still kept as the
 * last error; the last one held is kept whole), until released: release_errors(1)
 * prints the last one held, release_errors(0) drops it. For ranks that find the same
 * problem as rank 0 at once: only one of them should say it. */
void graft_log_hold_errors(void);
void graft_log_release_errors(int print);
/* Format a shape as "[d0, d1, ...]" into buf (always NUL-terminated); returns buf. */
const char *graft_format_shape(char *buf, size_t size, int ndim, const int64_t *shape);

#define GRAFT_DEBUG(...) graft_log(GRAFT_LOG_DEBUG, __func__, __VA_ARGS__)
#define GRAFT_INFO(...) graft_log(GRAFT_LOG_INFO, __func__, __VA_ARGS__)
#define GRAFT_WARN(...) graft_log(GRAFT_LOG_WARN, __func__, __VA_ARGS__)
#define GRAFT_ERROR(...) graft_log(GRAFT_LOG_ERROR, __func__, __VA_ARGS__)

#endif
