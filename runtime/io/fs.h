/* File-system plumbing, in one place: joining paths, mkdir -p, reading a whole regular
 * file (never blocking on a FIFO or device), durable writes, atomic replacement of a
 * file, and directory fsync.
 *
 * Two kinds of function: the int ones return 0 or an error code (an errno value, or
 * GRAFT_FS_ENOTREG) and log nothing, so that callers word their own message; the
 * graft_status ones log one line naming the path on failure. */
#ifndef GRAFT_FS_H
#define GRAFT_FS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

/* Room for any path these helpers build. */
#define GRAFT_FS_PATH_MAX 4096

/* Error code for a path that exists but is neither a regular file nor a directory
 * (a FIFO, a device, a socket). Not an errno value: print it with graft_fs_strerror. */
#define GRAFT_FS_ENOTREG (-1)

/* Text of an error code of this module: strerror, or "not a regular file". */
const char *graft_fs_strerror(int err);

/* "dir/name" into out (size bytes), without doubling a slash that ends dir. When it
 * does not fit: logs "dir/name: path too long" and returns GRAFT_ERR_IO. */
graft_status graft_fs_path_join(char *out, size_t size, const char *dir, const char *name);

/* The directory holding path into out: "." when path has no slash, "/" for a top-level
 * entry; slashes that end path are ignored. 0 when it does not fit in size bytes. */
int graft_fs_parent(char *out, size_t size, const char *path);

/* 1 when path names an existing directory (following links), else 0. */
int graft_fs_is_dir(const char *path);

/* mkdir -p: create path and its missing parents (mode 0755). 0 when path is a
 * directory afterwards; ENOTDIR when something that is not a directory is in the way;
 * ENAMETOOLONG over GRAFT_FS_PATH_MAX; else the errno of the mkdir that failed. */
int graft_fs_mkdirs(const char *path);

/* Read the whole file at path into a NUL-terminated malloc'd buffer (*data, *len bytes
 * before the NUL; the caller frees *data). Only a regular file is read: the path is
 * opened without blocking and checked first, so a FIFO or device is refused at once
 * (GRAFT_FS_ENOTREG) and a directory gives EISDIR. max_bytes > 0 bounds the size
 * (EFBIG beyond it, with the size seen in *len). Returns 0 or an error code; *step (may
 * be NULL) says "open" or "read" for the part that failed. */
int graft_fs_read(const char *path, size_t max_bytes, char **data, size_t *len, const char **step);

/* graft_fs_read, logging one line on failure: "path: cannot open: <reason>",
 * "path: cannot read: <reason>", "path: larger than N bytes" (GRAFT_ERR_FORMAT) or
 * "path: out of memory" (GRAFT_ERR_NOMEM); other failures are GRAFT_ERR_IO. */
graft_status graft_fs_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* xxh64 (seed 0) and size of the bytes of the file at path, read in 1 MiB chunks.
 * 0 or errno, with *step (may be NULL) "open" or "read" for the part that failed. */
int graft_fs_xxh64(const char *path, uint64_t *xxh64, uint64_t *bytes, const char **step);

/* Create or truncate path, write len bytes, fsync, close. 0 or errno, with *step
 * ("create", "write", "fsync", "close") saying what failed. */
int graft_fs_write(const char *path, const void *data, size_t len, const char **step);

/* graft_fs_write, logging one line on failure: "path: cannot <step>: <reason>"
 * (GRAFT_ERR_IO). */
graft_status graft_fs_write_file(const char *path, const void *data, size_t len);

/* Replace path with len bytes so that readers see the old content or the new, never
 * half: "<path>.tmp" in the same directory is written and fsynced, renamed over path,
 * and the directory fsynced. On failure one line naming the path, the step that failed
 * and the errno text is logged, the tmp file is removed, any existing file at path is
 * untouched, and GRAFT_ERR_IO (GRAFT_ERR_NOMEM) is returned. */
graft_status graft_fs_write_atomic(const char *path, const void *data, size_t len);

/* fsync a directory so that renames inside it survive a crash. Returns 0 or an errno
 * (filesystems that cannot fsync directories count as success). */
int graft_fs_fsync_dir(const char *dir);
/* graft_fs_fsync_dir of the directory holding path. */
int graft_fs_fsync_parent(const char *path);

#endif
