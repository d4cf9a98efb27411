/* File-system plumbing, in one place: joining paths, mkdir -p, reading a whole regular
 * file (never blocking on a FIFO or device), durable writes, atomic replacement of a
 * file, and directory fsync.
 *
 * A function that can fail returns a graft_status and logs one line naming the path,
 * "PATH: cannot <step>: <reason>"; those that take a graft_log_level log it at that
 * level (GRAFT_LOG_QUIET: only kept as the thread's last error, for a caller that words
 * the problem itself; GRAFT_LOG_DEBUG: best-effort work that goes on without it). */
#ifndef GRAFT_FS_H
#define GRAFT_FS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/core/log.h"
#include "runtime/core/status.h"

/* Room for any path these helpers build. */
#define GRAFT_FS_PATH_MAX 4096

/* "dir/name" into out (size bytes), the slashes that end dir replaced by one ("a//" and
 * "b" give "a/b", "/" and "b" give "/b"). When it does not fit: logs "dir/name: path too
 * long" and returns GRAFT_ERR_IO. */
graft_status graft_fs_path_join(char *out, size_t size, const char *dir, const char *name);
/* The same, malloc'd (the caller frees it): no bound on the length; NULL, logging
 * nothing, when out of memory (like strdup). */
char *graft_fs_path_join_alloc(const char *dir, const char *name);

/* The directory holding path into out: "." when path has no slash, "/" for a top-level
 * entry; slashes that end path are ignored. 0 when it does not fit in size bytes. */
int graft_fs_parent(char *out, size_t size, const char *path);

/* 1 when path names an existing directory (following links), else 0. */
int graft_fs_is_dir(const char *path);

/* 1 when something (anything, even a dangling link) exists at path; 0 when nothing
 * does (ENOENT). Other errors count as existing. */
int graft_fs_exists(const char *path);

/* mkdir -p: create path and its missing parents (mode 0755). GRAFT_OK when path is a
 * directory afterwards; else "path: cannot create: <reason>" (Not a directory when
 * something else is in the way, File name too long over GRAFT_FS_PATH_MAX) is logged at
 * level and GRAFT_ERR_IO returned. */
graft_status graft_fs_mkdirs(const char *path, graft_log_level level);

/* Open path for reading when it is a regular file, the one way every reader of graft
 * opens an input: the open itself does not block (O_NONBLOCK, so a FIFO without a
 * writer cannot hang it), fstat refuses a FIFO, device, socket or directory at once,
 * and the descriptor (O_CLOEXEC, O_NOCTTY) is then switched back to blocking reads.
 * *bytes (may be NULL) receives the file size. On failure "path: cannot open: <reason>"
 * or "path: cannot read: <reason>" (reason "not a regular file" or "Is a directory") is
 * logged at level and GRAFT_ERR_IO returned; the caller closes *fd otherwise. */
graft_status graft_fs_open_regular(const char *path, int *fd, uint64_t *bytes,
                                   graft_log_level level);

/* Read the whole file at path into a NUL-terminated malloc'd buffer (*data, *len bytes
 * before the NUL; the caller frees *data). Only a regular file is read: the path is
 * opened without blocking and checked first, so a FIFO or device is refused at once and
 * a directory gives "Is a directory". max_bytes > 0 bounds the size. On failure *data
 * is NULL and one line is logged at level: "path: cannot open: <reason>" or "path:
 * cannot read: <reason>" (reason "not a regular file" for a FIFO or device;
 * GRAFT_ERR_IO), "path: larger than N bytes" (GRAFT_ERR_FORMAT) or "path: out of
 * memory" (GRAFT_ERR_NOMEM). */
graft_status graft_fs_read(const char *path, size_t max_bytes, char **data, size_t *len,
                           graft_log_level level);

/* xxh64 (seed 0) and size of the bytes of the regular file at path (opened with
 * graft_fs_open_regular), read in 1 MiB chunks. On failure "path: cannot open:
 * <reason>" or "path: cannot read: <reason>" (GRAFT_ERR_IO)
 * or "path: out of memory" (GRAFT_ERR_NOMEM) is logged at level. */
graft_status graft_fs_xxh64(const char *path, uint64_t *xxh64, uint64_t *bytes,
                            graft_log_level level);

/* Create or truncate path, write len bytes, fsync, close. On failure "path: cannot
 * <step>: <reason>" (step "create", "write", "fsync" or "close") is logged at level and
 * GRAFT_ERR_IO returned. */
graft_status graft_fs_write(const char *path, const void *data, size_t len, graft_log_level level);

/* Open path for writing a log (train.log, metrics.jsonl) as a stdio stream: appended
 * to, or created / truncated. Only a regular file: a FIFO or device there is refused at
 * once instead of blocking the open. On failure "path: cannot create: <reason>" is
 * logged at level and NULL returned. */
FILE *graft_fs_open_log(const char *path, int append, graft_log_level level);

/* Replace path with len bytes so that readers see the old content or the new, never
 * half: "<path>.tmp" in the same directory is written and fsynced, renamed over path,
 * and the directory fsynced. On failure one ERROR line naming the path, the step that
 * failed and the errno text is logged, the tmp file is removed, any existing file at
 * path is untouched, and GRAFT_ERR_IO (GRAFT_ERR_NOMEM) is returned. */
graft_status graft_fs_write_atomic(const char *path, const void *data, size_t len);

/* fsync a directory so that renames inside it survive a crash (filesystems that cannot
 * fsync directories count as success). On failure "dir: cannot fsync: <reason>" is
 * logged at level and GRAFT_ERR_IO returned. */
graft_status graft_fs_fsync_dir(const char *dir, graft_log_level level);
/* graft_fs_fsync_dir of the directory holding path. */
graft_status graft_fs_fsync_parent(const char *path, graft_log_level level);

#endif
