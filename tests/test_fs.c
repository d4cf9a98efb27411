/* Tests for runtime/io/fs: path joining (trailing slashes, the overflow check, the allocating
 * variant), parents, mkdir -p (nested, over an existing file), whole-file reads of a regular file
 * and refusals of a FIFO (without hanging), a directory and a missing file, the size bound, atomic
 * writes (content replaced, no temp file left), file digests, and paths with spaces and
 * quotes. */
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/core/log.h"
#include "runtime/io/fs.h"

#define PATH_LEN GRAFT_FS_PATH_MAX

static char root[PATH_LEN];

static int group_setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/graft_test_fs_XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    char cmd[PATH_LEN + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* root/name into out. */
static void under_root(char *out, const char *name) {
    assert_int_equal(graft_fs_path_join(out, PATH_LEN, root, name), GRAFT_OK);
}

static void write_plain(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Entries of dir other than "." and "..". */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static void test_path_join(void **state) {
    (void)state;
    char out[32];
    assert_int_equal(graft_fs_path_join(out, sizeof out, "runs/x", "eval"), GRAFT_OK);
    assert_string_equal(out, "runs/x/eval");
    assert_int_equal(graft_fs_path_join(out, sizeof out, "runs/x/", "eval"), GRAFT_OK);
    assert_string_equal(out, "runs/x/eval");
    assert_int_equal(graft_fs_path_join(out, sizeof out, "/", "etc"), GRAFT_OK);
    assert_string_equal(out, "/etc");
    /* a run of slashes that ends dir becomes one; a dir of slashes only is "/" */
    assert_int_equal(graft_fs_path_join(out, sizeof out, "runs/x///", "eval"), GRAFT_OK);
    assert_string_equal(out, "runs/x/eval");
    assert_int_equal(graft_fs_path_join(out, sizeof out, "//", "etc"), GRAFT_OK);
    assert_string_equal(out, "/etc");
    assert_int_equal(graft_fs_path_join(out, sizeof out, "a//b/", "c"), GRAFT_OK);
    assert_string_equal(out, "a//b/c");
    /* the allocating variant gives the same, at any length */
    static const char *const alloc_cases[][3] = {{"runs/x", "eval", "runs/x/eval"},
                                                 {"runs/x//", "eval", "runs/x/eval"},
                                                 {"/", "etc", "/etc"},
                                                 {"///", "etc", "/etc"},
                                                 {"", "f", "/f"}};
    for (size_t i = 0; i < sizeof alloc_cases / sizeof alloc_cases[0]; i++) {
        char *p = graft_fs_path_join_alloc(alloc_cases[i][0], alloc_cases[i][1]);
        assert_non_null(p);
        assert_string_equal(p, alloc_cases[i][2]);
        free(p);
    }
    char long_dir[PATH_LEN + 16];
    memset(long_dir, 'd', sizeof long_dir - 1);
    long_dir[sizeof long_dir - 1] = '\0';
    char *p = graft_fs_path_join_alloc(long_dir, "n");
    assert_non_null(p);
    assert_int_equal(strlen(p), strlen(long_dir) + 2);
    assert_string_equal(p + strlen(long_dir), "/n");
    free(p);
    /* exactly full (31 characters and the NUL) fits, one more does not */
    assert_int_equal(graft_fs_path_join(out, sizeof out, "0123456789abcdef", "0123456789abcd"),
                     GRAFT_OK);
    assert_int_equal(strlen(out), 31);
    assert_int_equal(graft_fs_path_join(out, sizeof out, "0123456789abcdef", "0123456789abcde"),
                     GRAFT_ERR_IO);
}

static void test_parent(void **state) {
    (void)state;
    char out[64];
    static const char *const cases[][2] = {{"a/b/c", "a/b"}, {"a/b/", "a"}, {"file", "."},
                                           {"/top", "/"},    {"a//b", "a"}, {"/a/b", "/a"},
                                           {"./x", "."},     {"dir/", "."}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(graft_fs_parent(out, sizeof out, cases[i][0]));
        assert_string_equal(out, cases[i][1]);
    }
    char tiny[3];
    assert_false(graft_fs_parent(tiny, sizeof tiny, "abcdef/x"));
}

/* The line the last failing call kept (it was called with GRAFT_LOG_QUIET): "PATH" then
 * the rest. */
static void expect_last(const char *path, const char *rest) {
    char want[2 * PATH_LEN];
    snprintf(want, sizeof want, "%s%s", path, rest);
    assert_string_equal(graft_log_last_error(), want);
}

static void test_mkdirs_nested(void **state) {
    (void)state;
    char path[PATH_LEN];
    under_root(path, "m/one/two//three/");
    assert_int_equal(graft_fs_mkdirs(path, GRAFT_LOG_ERROR), GRAFT_OK);
    under_root(path, "m/one/two/three");
    assert_true(graft_fs_is_dir(path));
    /* again: everything exists, still fine */
    assert_int_equal(graft_fs_mkdirs(path, GRAFT_LOG_ERROR), GRAFT_OK);
    /* relative paths work too */
    char cwd[PATH_LEN];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(root), 0);
    assert_int_equal(graft_fs_mkdirs("rel/a/b", GRAFT_LOG_ERROR), GRAFT_OK);
    assert_true(graft_fs_is_dir("rel/a/b"));
    assert_int_equal(chdir(cwd), 0);
}

static void test_mkdirs_over_file(void **state) {
    (void)state;
    char file[PATH_LEN], path[PATH_LEN];
    under_root(file, "plain-file");
    write_plain(file, "x");
    /* the file itself, and a directory below it */
    assert_int_equal(graft_fs_mkdirs(file, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(file, ": cannot create: Not a directory");
    assert_int_equal(graft_fs_path_join(path, sizeof path, file, "sub/dir"), GRAFT_OK);
    assert_int_equal(graft_fs_mkdirs(path, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(path, ": cannot create: Not a directory");
    assert_false(graft_fs_is_dir(file));
    char long_path[PATH_LEN + 16];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(graft_fs_mkdirs(long_path, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    /* (the kept line is cut before its end: the path alone is longer) */
    assert_int_equal(strncmp(graft_log_last_error(), long_path, 64), 0);
}

static void test_read_regular(void **state) {
    (void)state;
    char path[PATH_LEN];
    under_root(path, "regular.txt");
    write_plain(path, "hello\nworld\n");
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, 12);
    assert_string_equal(data, "hello\nworld\n");
    free(data);
    assert_int_equal(graft_fs_read(path, 12, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, 12);
    free(data);
    /* the bound: one byte over is refused, with the size */
    assert_int_equal(graft_fs_read(path, 11, &data, &len, GRAFT_LOG_QUIET), GRAFT_ERR_FORMAT);
    assert_null(data);
    assert_int_equal(len, 12);
    expect_last(path, ": larger than 11 bytes");
    /* an empty file is an empty, NUL-terminated buffer */
    under_root(path, "empty");
    write_plain(path, "");
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);
    /* a file larger than the first guess of the buffer */
    under_root(path, "big");
    char *big = malloc(100001);
    assert_non_null(big);
    memset(big, 'z', 100000);
    big[100000] = '\0';
    write_plain(path, big);
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, 100000);
    assert_memory_equal(data, big, 100000);
    free(data);
    free(big);
}

static void on_alarm(int sig) {
    (void)sig;
    fprintf(stderr, "graft_fs_read blocked on a FIFO\n");
    _exit(1);
}

static void test_read_fifo(void **state) {
    (void)state;
    char path[PATH_LEN];
    under_root(path, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(10); /* a blocking open or read would hang here: fail instead */
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(path, ": cannot read: not a regular file");
    assert_null(data);
    alarm(0);
}

static void test_read_directory_and_missing(void **state) {
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(root, 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(root, ": cannot read: Is a directory");
    char path[PATH_LEN];
    under_root(path, "no-such-file");
    assert_false(graft_fs_exists(path));
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(path, ": cannot open: No such file or directory");
    assert_null(data);
    assert_int_equal(graft_fs_read("/dev/null", 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last("/dev/null", ": cannot read: not a regular file");
    assert_true(graft_fs_exists("/dev/null"));
    assert_true(graft_fs_exists(root));
}

/* The one open of every reader: a regular file opens (size known, reads block as
 * usual); a FIFO, a device and a directory are refused at once; xxh64 of a device is
 * refused instead of reading forever. */
static void test_open_regular(void **state) {
    (void)state;
    char path[PATH_LEN], fifo[PATH_LEN];
    under_root(path, "regular");
    assert_int_equal(graft_fs_write(path, "12345", 5, GRAFT_LOG_ERROR), GRAFT_OK);
    int fd = -1;
    uint64_t bytes = 0;
    assert_int_equal(graft_fs_open_regular(path, &fd, &bytes, GRAFT_LOG_QUIET), GRAFT_OK);
    assert_true(fd >= 0);
    assert_int_equal(bytes, 5);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    assert_int_not_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    char buf[8];
    assert_int_equal(read(fd, buf, sizeof buf), 5);
    close(fd);

    under_root(fifo, "fifo-open");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    assert_int_equal(graft_fs_open_regular(fifo, &fd, NULL, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(fifo, ": cannot read: not a regular file");
    assert_int_equal(graft_fs_open_regular("/dev/zero", &fd, NULL, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last("/dev/zero", ": cannot read: not a regular file");
    uint64_t h;
    assert_int_equal(graft_fs_xxh64("/dev/zero", &h, &bytes, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last("/dev/zero", ": cannot read: not a regular file");
    assert_int_equal(graft_fs_xxh64(fifo, &h, &bytes, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    assert_int_equal(graft_fs_open_regular(root, &fd, NULL, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(root, ": cannot read: Is a directory");

    /* a log file: a FIFO in its place is refused instead of waiting for a reader */
    assert_null(graft_fs_open_log(fifo, 1, GRAFT_LOG_QUIET));
    expect_last(fifo, ": cannot create: not a regular file");
    alarm(0);
    FILE *f = graft_fs_open_log(path, 1, GRAFT_LOG_QUIET);
    assert_non_null(f);
    fputs("6\n", f);
    fclose(f);
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_OK);
    assert_string_equal(data, "123456\n");
    free(data);
    f = graft_fs_open_log(path, 0, GRAFT_LOG_QUIET);
    assert_non_null(f);
    fclose(f);
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_QUIET), GRAFT_OK);
    assert_int_equal(len, 0);
    free(data);
}

static void test_xxh64(void **state) {
    (void)state;
    char path[PATH_LEN];
    under_root(path, "hashed");
    size_t n = (1 << 20) + 12345; /* more than one chunk */
    char *data = malloc(n + 1);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    data[n] = '\0';
    write_plain(path, data);
    uint64_t h = 0, bytes = 0;
    assert_int_equal(graft_fs_xxh64(path, &h, &bytes, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(bytes, n);
    assert_true(h == (uint64_t)XXH64(data, n, 0));
    free(data);
    under_root(path, "no-such-file");
    assert_int_equal(graft_fs_xxh64(path, &h, &bytes, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(path, ": cannot open: No such file or directory");
}

static void test_write_atomic(void **state) {
    (void)state;
    char dir[PATH_LEN], path[PATH_LEN];
    under_root(dir, "atomic");
    assert_int_equal(graft_fs_mkdirs(dir, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(graft_fs_path_join(path, sizeof path, dir, "state.json"), GRAFT_OK);
    assert_int_equal(graft_fs_write_atomic(path, "first version\n", 14), GRAFT_OK);
    assert_int_equal(graft_fs_write_atomic(path, "second", 6), GRAFT_OK);
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, 6);
    assert_string_equal(data, "second");
    free(data);
    assert_int_equal(count_entries(dir), 1); /* no state.json.tmp left */
    /* a failing write leaves the old content and no temp file */
    char missing[PATH_LEN];
    assert_int_equal(graft_fs_path_join(missing, sizeof missing, dir, "no-dir/file"), GRAFT_OK);
    assert_int_equal(graft_fs_write_atomic(missing, "x", 1), GRAFT_ERR_IO);
    assert_int_equal(count_entries(dir), 1);
    /* the durable write and the directory fsync */
    char other[PATH_LEN];
    assert_int_equal(graft_fs_path_join(other, sizeof other, dir, "other"), GRAFT_OK);
    assert_int_equal(graft_fs_write(other, "abc", 3, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(graft_fs_fsync_dir(dir, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(graft_fs_fsync_parent(other, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(graft_fs_write(missing, "abc", 3, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(missing, ": cannot create: No such file or directory");
    char no_dir[PATH_LEN];
    assert_int_equal(graft_fs_path_join(no_dir, sizeof no_dir, dir, "no-dir"), GRAFT_OK);
    assert_int_equal(graft_fs_fsync_dir(no_dir, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(no_dir, ": cannot fsync: No such file or directory");
    assert_int_equal(graft_fs_fsync_parent(missing, GRAFT_LOG_QUIET), GRAFT_ERR_IO);
    expect_last(no_dir, ": cannot fsync: No such file or directory");
}

static void test_odd_names(void **state) {
    (void)state;
    char dir[PATH_LEN], path[PATH_LEN];
    under_root(dir, "with space/it's \"quoted\"/$HOME `x`");
    assert_int_equal(graft_fs_mkdirs(dir, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_true(graft_fs_is_dir(dir));
    assert_int_equal(graft_fs_path_join(path, sizeof path, dir, "a file's name.txt"), GRAFT_OK);
    assert_int_equal(graft_fs_write_atomic(path, "spaces", 6), GRAFT_OK);
    char *data;
    size_t len;
    assert_int_equal(graft_fs_read(path, 0, &data, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_string_equal(data, "spaces");
    free(data);
    assert_int_equal(count_entries(dir), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_parent),
        cmocka_unit_test(test_mkdirs_nested),
        cmocka_unit_test(test_mkdirs_over_file),
        cmocka_unit_test(test_read_regular),
        cmocka_unit_test(test_read_fifo),
        cmocka_unit_test(test_read_directory_and_missing),
        cmocka_unit_test(test_open_regular),
        cmocka_unit_test(test_xxh64),
        cmocka_unit_test(test_write_atomic),
        cmocka_unit_test(test_odd_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
