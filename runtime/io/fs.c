/* File-system plumbing: paths, mkdir -p, whole-file reads, durable and atomic writes,
 * directory fsync (see fs.h). */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"

/* Error code for a path that exists but is neither a regular file nor a directory. */
#define FS_ENOTREG (-1)

static const char *fs_strerror(int err) {
    return err == FS_ENOTREG ? "not a regular file" : strerror(err);
}

/* The length of dir without the slashes that end it (a lone "/" stays), and the
 * separator to put between it and a name. */
static size_t join_prefix(const char *dir, const char **sep) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    *sep = (len == 1 && dir[0] == '/') ? "" : "/";
    return len;
}

graft_status graft_fs_path_join(char *out, size_t size, const char *dir, const char *name) {
    const char *sep;
    int len = (int)join_prefix(dir, &sep);
    int n = snprintf(out, size, "%.*s%s%s", len, dir, sep, name);
    if (n < 0 || (size_t)n >= size) {
        GRAFT_ERROR("%.*s%s%s: path too long", len, dir, sep, name);
        return GRAFT_ERR_IO;
    }
    return GRAFT_OK;
}

char *graft_fs_path_join_alloc(const char *dir, const char *name) {
    const char *sep;
    size_t len = join_prefix(dir, &sep);
    size_t total = len + strlen(sep) + strlen(name) + 1;
    char *p = malloc(total);
    if (p) snprintf(p, total, "%.*s%s%s", (int)len, dir, sep, name);
    return p;
}

int graft_fs_parent(char *out, size_t size, const char *path) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t slash = len;
    while (slash > 0 && path[slash - 1] != '/')
        slash--;
    if (slash == 0) return snprintf(out, size, ".") < (int)size;
    size_t keep = slash - 1; /* drop the slash itself, and any run of slashes */
    while (keep > 0 && path[keep - 1] == '/')
        keep--;
    if (keep == 0) return snprintf(out, size, "/") < (int)size;
    if (keep + 1 > size) return 0;
    memcpy(out, path, keep);
    out[keep] = '\0';
    return 1;
}

int graft_fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir one component; an existing directory is fine, anything else in the way is
 * ENOTDIR. */
static int make_one_dir(const char *path) {
    if (mkdir(path, 0755) == 0) return 0;
    int err = errno;
    if (err != EEXIST) return err;
    return graft_fs_is_dir(path) ? 0 : ENOTDIR;
}

int graft_fs_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

graft_status graft_fs_mkdirs(const char *path, graft_log_level level) {
    char buf[GRAFT_FS_PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    int err = (n < 0 || (size_t)n >= sizeof buf) ? ENAMETOOLONG : n == 0 ? ENOENT : 0;
    for (char *p = buf + 1; err == 0 && *p; p++) {
        if (*p != '/' || p[-1] == '/') continue;
        *p = '\0';
        err = make_one_dir(buf);
        *p = '/';
    }
    if (err == 0) err = make_one_dir(buf);
    if (err == 0) return GRAFT_OK;
    graft_log(level, __func__, "%s: cannot create: %s", path, strerror(err));
    return GRAFT_ERR_IO;
}

/* Open path for reading, a regular file only: the open does not block (a FIFO without
 * a writer, a tty), fstat refuses anything else, and then reads block as usual. 0 and
 * *fd, *st, or an error code (an errno value or FS_ENOTREG) with *step "open" or "read"
 * for the part that failed. */
static int open_regular(const char *path, int *fd, struct stat *st, const char **step) {
    *step = "open";
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (*fd < 0) return errno;
    *step = "read";
    int err = 0, flags;
    if (fstat(*fd, st) != 0)
        err = errno;
    else if (S_ISDIR(st->st_mode))
        err = EISDIR;
    else if (!S_ISREG(st->st_mode))
        err = FS_ENOTREG;
    else if ((flags = fcntl(*fd, F_GETFL)) < 0 || fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        err = errno;
    if (err != 0) {
        close(*fd);
        *fd = -1;
    }
    return err;
}

graft_status graft_fs_open_regular(const char *path, int *fd, uint64_t *bytes,
                                   graft_log_level level) {
    struct stat st;
    const char *step;
    int err = open_regular(path, fd, &st, &step);
    if (err != 0) {
        graft_log(level, __func__, "%s: cannot %s: %s", path, step, fs_strerror(err));
        return GRAFT_ERR_IO;
    }
    if (bytes) *bytes = (uint64_t)st.st_size;
    return GRAFT_OK;
}

/* graft_fs_read without the logging: 0 or an error code (an errno value or FS_ENOTREG),
 * with *step "open" or "read" for the part that failed. */
static int read_whole(const char *path, size_t max_bytes, char **data, size_t *len,
                      const char **step) {
    *data = NULL;
    *len = 0;
    int fd;
    struct stat st;
    int err = open_regular(path, &fd, &st, step);
    if (err != 0) return err;
    if (max_bytes > 0 && (uint64_t)st.st_size > (uint64_t)max_bytes)
        err = EFBIG, *len = (size_t)st.st_size;
    /* The size is a hint: read to the end, growing when the file did. */
    size_t cap = err == 0 ? (size_t)st.st_size + 1 : 0, done = 0;
    if (cap < 4096) cap = 4096;
    char *buf = err == 0 ? malloc(cap + 1) : NULL;
    if (err == 0 && !buf) err = ENOMEM;
    while (err == 0) {
        if (done == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                err = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + done, cap - done);
        if (r < 0) {
            if (errno != EINTR) err = errno;
            continue;
        }
        if (r == 0) break;
        done += (size_t)r;
        if (max_bytes > 0 && done > max_bytes) err = EFBIG, *len = done;
    }
    close(fd);
    if (err != 0) {
        free(buf);
        return err;
    }
    buf[done] = '\0';
    *data = buf;
    *len = done;
    return 0;
}

graft_status graft_fs_read(const char *path, size_t max_bytes, char **data, size_t *len,
                           graft_log_level level) {
    const char *step;
    int err = read_whole(path, max_bytes, data, len, &step);
    if (err == 0) return GRAFT_OK;
    if (err == ENOMEM) {
        graft_log(level, __func__, "%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    if (err == EFBIG) {
        graft_log(level, __func__, "%s: larger than %zu bytes", path, max_bytes);
        return GRAFT_ERR_FORMAT;
    }
    graft_log(level, __func__, "%s: cannot %s: %s", path, step, fs_strerror(err));
    return GRAFT_ERR_IO;
}

graft_status graft_fs_xxh64(const char *path, uint64_t *xxh64, uint64_t *bytes,
                            graft_log_level level) {
    int fd;
    GRAFT_TRY(graft_fs_open_regular(path, &fd, NULL, level));
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    XXH64_state_t *h = XXH64_createState();
    int err = 0;
    uint64_t total = 0;
    if (!buf || !h) err = ENOMEM;
    if (err == 0) XXH64_reset(h, 0);
    while (err == 0) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0) {
            if (errno != EINTR) err = errno;
            continue;
        }
        if (r == 0) break;
        XXH64_update(h, buf, (size_t)r);
        total += (uint64_t)r;
    }
    if (err == 0) {
        *xxh64 = (uint64_t)XXH64_digest(h);
        *bytes = total;
    }
    if (h) XXH64_freeState(h);
    free(buf);
    close(fd);
    if (err == 0) return GRAFT_OK;
    if (err == ENOMEM) {
        graft_log(level, __func__, "%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    graft_log(level, __func__, "%s: cannot read: %s", path, strerror(err));
    return GRAFT_ERR_IO;
}

/* graft_fs_write without the logging: 0 or errno, with *step ("create", "write",
 * "fsync", "close") saying what failed. */
static int write_whole(const char *path, const void *data, size_t len, const char **step) {
    *step = "create";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    *step = "write";
    const unsigned char *p = data;
    size_t done = 0;
    int err = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
        }
        if (w == 0) {
            err = EIO;
            break;
        }
        done += (size_t)w;
    }
    if (err == 0 && fsync(fd) != 0) {
        *step = "fsync";
        err = errno;
    }
    if (close(fd) != 0 && err == 0) {
        *step = "close";
        err = errno;
    }
    return err;
}

graft_status graft_fs_write(const char *path, const void *data, size_t len, graft_log_level level) {
    const char *step;
    int err = write_whole(path, data, len, &step);
    if (err == 0) return GRAFT_OK;
    graft_log(level, __func__, "%s: cannot %s: %s", path, step, strerror(err));
    return GRAFT_ERR_IO;
}

FILE *graft_fs_open_log(const char *path, int append, graft_log_level level) {
    /* O_NONBLOCK: opening a FIFO for writing would wait for a reader (ENXIO instead) */
    int fd =
        open(path,
             O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
             0644);
    int err = fd < 0 ? errno : 0, flags;
    struct stat st;
    if (err == 0 && fstat(fd, &st) != 0)
        err = errno;
    else if (err == 0 && !S_ISREG(st.st_mode))
        err = FS_ENOTREG;
    else if (err == 0 &&
             ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0))
        err = errno;
    FILE *f = err == 0 ? fdopen(fd, append ? "a" : "w") : NULL;
    if (err == 0 && !f) err = errno;
    if (f) return f;
    if (fd >= 0) close(fd);
    graft_log(level, __func__, "%s: cannot create: %s", path,
              err == ENXIO ? "not a regular file" : fs_strerror(err));
    return NULL;
}

/* fsync a directory: 0 or errno (filesystems that cannot fsync directories count as
 * success). */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = (fsync(fd) != 0 && errno != EINVAL) ? errno : 0;
    close(fd);
    return err;
}

static int fsync_parent(const char *path) {
    char dir[GRAFT_FS_PATH_MAX];
    if (!graft_fs_parent(dir, sizeof dir, path)) return ENAMETOOLONG;
    return fsync_dir(dir);
}

graft_status graft_fs_write_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        GRAFT_ERROR("%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    snprintf(tmp, plen + 5, "%s.tmp", path);
    const char *step;
    int err = write_whole(tmp, data, len, &step);
    if (err == 0 && rename(tmp, path) != 0) step = "rename", err = errno;
    if (err != 0 && strcmp(step, "create") != 0) unlink(tmp);
    if (err == 0 && (err = fsync_parent(path)) != 0) step = "fsync the directory of";
    if (err != 0) GRAFT_ERROR("%s: cannot %s %s: %s", path, step, tmp, strerror(err));
    free(tmp);
    return err == 0 ? GRAFT_OK : GRAFT_ERR_IO;
}

graft_status graft_fs_fsync_dir(const char *dir, graft_log_level level) {
    int err = fsync_dir(dir);
    if (err == 0) return GRAFT_OK;
    graft_log(level, __func__, "%s: cannot fsync: %s", dir, strerror(err));
    return GRAFT_ERR_IO;
}

graft_status graft_fs_fsync_parent(const char *path, graft_log_level level) {
    char dir[GRAFT_FS_PATH_MAX];
    if (!graft_fs_parent(dir, sizeof dir, path)) {
        graft_log(level, __func__, "%s: path too long", path);
        return GRAFT_ERR_IO;
    }
    return graft_fs_fsync_dir(dir, level);
}
