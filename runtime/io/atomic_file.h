/* Writing small files so that readers see the old content or the new, never half:
 * "<path>.tmp" is written and fsynced, renamed over path, and the directory fsynced. */
#ifndef GRAFT_ATOMIC_FILE_H
#define GRAFT_ATOMIC_FILE_H

#include <stddef.h>

#include "runtime/core/status.h"

/* Replace path with len bytes of data. On failure one line naming the path, the step
 * that failed and the errno text is logged, the tmp file is removed, any existing file
 * at path is untouched, and GRAFT_ERR_IO is returned. */
graft_status graft_write_file_atomic(const char *path, const void *data, size_t len);

/* fsync a directory so that renames inside it survive a crash. Returns 0 or an errno
 * (filesystems that cannot fsync directories count as success). */
int graft_fsync_dir(const char *dir);

#endif
