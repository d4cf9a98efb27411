#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/core/log.h"

int graft_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = (fsync(fd) != 0 && errno != EINVAL) ? errno : 0;
    close(fd);
    return err;
}

graft_status graft_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5), *dir = malloc(plen + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return GRAFT_ERR_NOMEM;
    }
    snprintf(tmp, plen + 5, "%s.tmp", path);
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, plen + 2, ".");
    else if (slash == path) snprintf(dir, plen + 2, "/");
    else snprintf(dir, plen + 2, "%.*s", (int)(slash - path), path);
    const char *step = "create";
    int err = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno;
    } else {
        const char *p = data;
        size_t done = 0;
        step = "write";
        while (done < len && err == 0) {
            ssize_t n = write(fd, p + done, len - done);
            if (n < 0 && errno != EINTR) err = errno;
            if (n > 0) done += (size_t)n;
        }
        if (err == 0 && fsync(fd) != 0) step = "fsync", err = errno;
        if (close(fd) != 0 && err == 0) step = "close", err = errno;
        if (err == 0 && rename(tmp, path) != 0) step = "rename", err = errno;
        if (err != 0) unlink(tmp);
        if (err == 0 && (err = graft_fsync_dir(dir)) != 0) step = "fsync the directory of";
    }
    if (err != 0) GRAFT_ERROR("%s: cannot %s %s: %s", path, step, tmp, strerror(err));
    free(tmp);
    free(dir);
    return err == 0 ? GRAFT_OK : GRAFT_ERR_IO;
}
