/* The logger under ThreadSanitizer: threads log while the main thread swaps the log
 * file and the level, as the comm, loader and watchdog threads do during a run. Built
 * with -fsanitize=thread (tests/CMakeLists.txt); a data race makes the sanitizer report
 * it and exit non-zero. */
#include <pthread.h>
#include <stdio.h>

#include "runtime/core/log.h"

enum { LINES = 2000 };

static void *log_lines(void *arg) {
    (void)arg;
    for (int i = 0; i < LINES; i++)
        GRAFT_WARN("line %d", i);
    return NULL;
}

int main(void) {
    FILE *files[2] = {tmpfile(), tmpfile()};
    if (!files[0] || !files[1] || !freopen("/dev/null", "w", stderr)) return 1;
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        if (pthread_create(&threads[t], NULL, log_lines, NULL) != 0) return 1;
    for (int i = 0; i < LINES; i++) {
        graft_log_set_file(files[i % 2]);
        graft_log_set_level(i % 2 ? GRAFT_LOG_INFO : GRAFT_LOG_DEBUG);
        graft_log_set_all_ranks(i % 2);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    graft_log_set_file(NULL);
    return 0;
}
