/* The logger's per-thread last error: what graft_log_last_error keeps (ERROR and
 * QUIET lines, without the prefix), clearing, one copy per thread, and
 * graft_config_last_error as a view of it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/config/config.h"
#include "runtime/core/log.h"

/* Lines also go to a temporary file between capture_start and capture_stop. */
static FILE *capture;
static void capture_start(void) {
    capture = tmpfile();
    assert_non_null(capture);
    graft_log_set_file(capture);
}
static void capture_stop(char *buf, size_t size) {
    graft_log_set_file(NULL);
    long n = ftell(capture);
    rewind(capture);
    size_t got = fread(buf, 1, n < (long)size - 1 ? (size_t)n : size - 1, capture);
    buf[got] = '\0';
    fclose(capture);
}

static void test_kept_and_cleared(void **state) {
    (void)state;
    graft_log_clear_last_error();
    assert_string_equal(graft_log_last_error(), "");
    char text[4096];
    capture_start();
    GRAFT_ERROR("%s: bad %d", "f.json", 3);
    capture_stop(text, sizeof text);
    assert_string_equal(graft_log_last_error(), "f.json: bad 3");
    assert_non_null(strstr(text, "ERROR test_kept_and_cleared: f.json: bad 3\n"));
    /* warnings and info lines leave it alone */
    GRAFT_WARN("only a warning");
    GRAFT_INFO("some news");
    assert_string_equal(graft_log_last_error(), "f.json: bad 3");
    graft_log_clear_last_error();
    assert_string_equal(graft_log_last_error(), "");
}

static void test_quiet(void **state) {
    (void)state;
    char text[4096];
    capture_start();
    graft_log(GRAFT_LOG_QUIET, __func__, "%s: kept, not printed", "dir");
    capture_stop(text, sizeof text);
    assert_string_equal(text, "");
    assert_string_equal(graft_log_last_error(), "dir: kept, not printed");
}

static void test_long_message_cut(void **state) {
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    graft_log(GRAFT_LOG_QUIET, __func__, "%s", big);
    size_t n = strlen(graft_log_last_error());
    assert_true(n > 1000 && n < sizeof big - 1);
}

/* Another thread's errors do not show in this thread's copy. */
static void *other_thread(void *arg) {
    char *seen = arg;
    snprintf(seen, 64, "%s", graft_log_last_error());
    graft_log(GRAFT_LOG_QUIET, "other_thread", "the other thread's problem");
    snprintf(seen + 64, 64, "%s", graft_log_last_error());
    return NULL;
}

static void test_per_thread(void **state) {
    (void)state;
    graft_log(GRAFT_LOG_QUIET, __func__, "the main thread's problem");
    char seen[128] = "";
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, seen), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(seen, "");
    assert_string_equal(seen + 64, "the other thread's problem");
    assert_string_equal(graft_log_last_error(), "the main thread's problem");
}

/* The config's last error is the logger's: set by a failing override, "" after a
 * successful one. */
static void test_config_view(void **state) {
    (void)state;
    graft_config cfg;
    graft_config_defaults(&cfg);
    char text[4096];
    capture_start();
    assert_int_equal(graft_config_override(&cfg, "optim.lr=fast"), GRAFT_ERR_CONFIG);
    capture_stop(text, sizeof text);
    assert_true(graft_config_last_error()[0] != '\0');
    assert_string_equal(graft_config_last_error(), graft_log_last_error());
    assert_non_null(strstr(text, graft_config_last_error()));
    assert_int_equal(graft_config_override(&cfg, "optim.lr=0.5"), GRAFT_OK);
    assert_string_equal(graft_config_last_error(), "");
    graft_config_free(&cfg);
}

/* Config text held in memory: the error names the name given, in one line. */
static void test_config_text_named(void **state) {
    (void)state;
    graft_config cfg;
    graft_config_defaults(&cfg);
    char text[4096];
    capture_start();
    assert_int_equal(graft_config_load_text(&cfg, "ckpt/config.yaml", "optim:\n  lr: fast\n"),
                     GRAFT_ERR_CONFIG);
    capture_stop(text, sizeof text);
    printf("  %s", text);
    assert_non_null(strstr(text, "ckpt/config.yaml:2:"));
    assert_non_null(strstr(text, "optim.lr"));
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1);
    text[strcspn(text, "\n")] = '\0';
    assert_string_equal(graft_config_last_error(), strstr(text, "ckpt/config.yaml"));
    graft_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_and_cleared), cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_long_message_cut), cmocka_unit_test(test_per_thread),
        cmocka_unit_test(test_config_view),      cmocka_unit_test(test_config_text_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
