/* Tests for runtime/io/json: loading a file (valid, invalid with line and column, a
 * FIFO refused without hanging, duplicate keys), the typed members and their one-line
 * errors naming file and key, 16-hex-digit digests, writing a value as a file,
 * and non-finite numbers written as null. */
#include "tests/testutil.h"

#include <float.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"

static char root[256];
static char capture_path[GRAFT_FS_PATH_MAX];
static FILE *capture;

static int group_setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/graft_test_json_XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(capture_path, sizeof capture_path, "%s/log.txt", root);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    char cmd[GRAFT_FS_PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Log lines go to a file between capture_begin and capture_end. */
static void capture_begin(void) {
    capture = fopen(capture_path, "w");
    assert_non_null(capture);
    graft_log_set_file(capture);
}

/* The one captured line's message (after "ERROR func: "), in buf. */
static const char *capture_end(char *buf, size_t size) {
    graft_log_set_file(NULL);
    fclose(capture);
    char *text;
    size_t len;
    assert_int_equal(graft_fs_read(capture_path, 0, &text, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 1);
    const char *msg = strstr(text, "ERROR ");
    assert_non_null(msg);
    msg = strstr(msg, ": ");
    assert_non_null(msg);
    snprintf(buf, size, "%s", msg + 2);
    buf[strcspn(buf, "\n")] = '\0';
    free(text);
    return buf;
}

static void write_file(char *path, const char *name, const char *text) {
    assert_int_equal(graft_fs_path_join(path, GRAFT_FS_PATH_MAX, root, name), GRAFT_OK);
    assert_int_equal(graft_fs_write_atomic(path, text, strlen(text)), GRAFT_OK);
}

static void test_load_file(void **state) {
    (void)state;
    char path[GRAFT_FS_PATH_MAX], got[512], want[GRAFT_FS_PATH_MAX + 128];
    write_file(path, "good.json", "{\"a\": 1, \"b\": \"x\"}\n");
    graft_status st = GRAFT_ERR_INTERNAL;
    json_t *j = graft_json_load_file(path, 0, &st);
    assert_non_null(j);
    assert_int_equal(st, GRAFT_OK);
    json_decref(j);

    write_file(path, "bad.json", "{\n  \"a\": }\n");
    capture_begin();
    assert_null(graft_json_load_file(path, 0, &st));
    capture_end(got, sizeof got);
    assert_int_equal(st, GRAFT_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: invalid JSON at line 2, column 8: unexpected token near '}'",
             path);
    assert_string_equal(got, want);
    assert_null(graft_json_try_load_file(path, 0));

    /* duplicate keys: refused when loading, allowed when probing */
    write_file(path, "dup.json", "{\"a\": 1, \"a\": 2}");
    capture_begin();
    assert_null(graft_json_load_file(path, 0, &st));
    capture_end(got, sizeof got);
    j = graft_json_try_load_file(path, 0);
    assert_non_null(j);
    json_decref(j);

    /* a FIFO: one line, no hang */
    assert_int_equal(graft_fs_path_join(path, sizeof path, root, "fifo.json"), GRAFT_OK);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    capture_begin();
    assert_null(graft_json_load_file(path, 0, &st));
    capture_end(got, sizeof got);
    assert_null(graft_json_try_load_file(path, 0));
    alarm(0);
    assert_int_equal(st, GRAFT_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot read: not a regular file", path);
    assert_string_equal(got, want);

    /* missing, and too large */
    assert_int_equal(graft_fs_path_join(path, sizeof path, root, "none.json"), GRAFT_OK);
    capture_begin();
    assert_null(graft_json_load_file(path, 0, NULL));
    capture_end(got, sizeof got);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(got, want);
    write_file(path, "big.json", "[1, 2, 3]");
    capture_begin();
    assert_null(graft_json_load_file(path, 4, &st));
    capture_end(got, sizeof got);
    assert_int_equal(st, GRAFT_ERR_FORMAT);
}

static void test_members(void **state) {
    (void)state;
    char got[512];
    json_t *o = json_pack("{sIsssfsss[i]}", "n", (json_int_t)7, "s", "text", "f", 1.5, "h",
                          "00000000DEADbeef", "list", 1);
    assert_non_null(o);
    long long v = 0;
    assert_int_equal(graft_json_int("f.json", o, "n", NULL, 0, 10, &v), GRAFT_OK);
    assert_int_equal(v, 7);
    assert_true(graft_json_get_int(o, "n", 7, 7, &v));
    assert_false(graft_json_get_int(o, "n", 8, 10, &v));
    assert_false(graft_json_get_int(o, "f", 0, 10, &v));
    assert_false(graft_json_get_int(NULL, "n", 0, 10, &v));

    capture_begin();
    assert_int_equal(graft_json_int("f.json", o, "n", "shards[2].n", 8, 9, &v), GRAFT_ERR_FORMAT);
    assert_string_equal(capture_end(got, sizeof got),
                        "f.json: \"shards[2].n\" must be an integer in [8, 9], got 7");
    capture_begin();
    assert_int_equal(graft_json_int("f.json", o, "missing", NULL, 0, 1, &v), GRAFT_ERR_FORMAT);
    assert_string_equal(capture_end(got, sizeof got), "f.json: missing \"missing\"");

    const char *s = NULL;
    assert_int_equal(graft_json_string("f.json", o, "s", NULL, &s), GRAFT_OK);
    assert_string_equal(s, "text");
    capture_begin();
    assert_int_equal(graft_json_string("f.json", o, "list", NULL, &s), GRAFT_ERR_FORMAT);
    assert_string_equal(capture_end(got, sizeof got), "f.json: \"list\" must be a string, got [1]");

    uint64_t h = 0;
    int present = -1;
    assert_int_equal(graft_json_hex64("f.json", o, "h", NULL, &present, &h), GRAFT_OK);
    assert_int_equal(present, 1);
    assert_true(h == 0xdeadbeefull);
    assert_int_equal(graft_json_hex64("f.json", o, "absent", NULL, &present, &h), GRAFT_OK);
    assert_int_equal(present, 0);
    capture_begin();
    assert_int_equal(graft_json_hex64("f.json", o, "s", "x.xxh64", &present, &h), GRAFT_ERR_FORMAT);
    assert_string_equal(capture_end(got, sizeof got),
                        "f.json: \"x.xxh64\" must be 16 hex digits, got \"text\"");
    json_decref(o);

    char hex[17];
    graft_json_hex64_text(hex, 0x0123456789abcdefull);
    assert_string_equal(hex, "0123456789abcdef");
    assert_true(graft_json_parse_hex64(hex, &h) && h == 0x0123456789abcdefull);
    assert_false(graft_json_parse_hex64("0123456789abcdeg", &h));
    assert_false(graft_json_parse_hex64("0123", &h));
    assert_false(graft_json_parse_hex64(NULL, &h));

    char buf[64];
    assert_string_equal(graft_json_text(NULL, buf, sizeof buf), "nothing");
    json_t *long_string = json_string("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
    assert_string_equal(graft_json_text(long_string, buf, sizeof buf),
                        "\"abcdefghijklmnopqrstuvwxyz0123456789...");
    json_decref(long_string);
}

static void test_write(void **state) {
    (void)state;
    json_t *o = json_pack("{sisi}", "b", 2, "a", 1);
    size_t len = 0;
    char *line = graft_json_dumps_line(o, JSON_COMPACT | JSON_SORT_KEYS, &len);
    assert_string_equal(line, "{\"a\":1,\"b\":2}\n");
    assert_int_equal(len, strlen(line));
    free(line);
    char path[GRAFT_FS_PATH_MAX];
    assert_int_equal(graft_fs_path_join(path, sizeof path, root, "out.json"), GRAFT_OK);
    assert_int_equal(graft_json_write_atomic(path, o, JSON_INDENT(1) | JSON_SORT_KEYS), GRAFT_OK);
    char *text;
    assert_int_equal(graft_fs_read(path, 0, &text, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_string_equal(text, "{\n \"a\": 1,\n \"b\": 2\n}\n");
    free(text);
    json_decref(o);
}

/* Non-finite numbers keep their key, as null; finite ones round-trip exactly. */
static void test_real_or_null(void **state) {
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "nan", graft_json_real_or_null(NAN));
    json_object_set_new(o, "inf", graft_json_real_or_null(INFINITY));
    json_object_set_new(o, "ninf", graft_json_real_or_null(-INFINITY));
    json_object_set_new(o, "x", graft_json_real_or_null(0.25));
    json_object_set_new(o, "max", graft_json_real_or_null(DBL_MAX));
    char *line = graft_json_dumps_line(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
    assert_string_equal(line, "{\"inf\":null,\"max\":1.7976931348623157e308,\"nan\":null,"
                              "\"ninf\":null,\"x\":0.25}\n");
    free(line);
    json_decref(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_real_or_null),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
