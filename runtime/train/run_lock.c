/* One run per directory: first of all (before a checkpoint is read for resuming, before
 * anything is written), rank 0 takes an flock(2) on graft.lock in the run directory and
 * in the checkpoint directory (checkpoint.dir may be elsewhere, and shared by two
 * experiments), and every rank learns whether it got them. A second `graft train` of
 * the same experiment is refused at once, naming the holder's pid (written into the
 * lock file). The lock dies with its holder, so a run killed with SIGKILL never blocks
 * the next one. The files stay while the directories are in use (removing a lock file
 * races with the next run opening it); a run refused for bad input removes the lock
 * files and the directories it created, leaving nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/core/check.h"
#include "runtime/io/fs.h"
#include "train_internal.h"

#define LOCK_NAME "graft.lock"

/* The holder's pid written into its lock file, or 0 when it has not written it yet. */
static long holder_pid(int fd) {
    char text[32] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) return 0;
    text[n] = '\0';
    long pid = strtol(text, NULL, 10);
    return pid > 0 ? pid : 0;
}

/* The shortest prefix of dir that does not exist yet (what mkdirs will create) into
 * out, or "" when dir exists. */
static void first_missing(const char *dir, char *out, size_t size) {
    out[0] = '\0';
    char prefix[TRAIN_PATH_MAX];
    size_t len = strlen(dir);
    for (size_t i = 1; i <= len && len < sizeof prefix; i++) {
        if (dir[i] != '/' && dir[i] != '\0') continue;
        memcpy(prefix, dir, i);
        prefix[i] = '\0';
        if (!graft_fs_exists(prefix)) {
            snprintf(out, size, "%s", prefix);
            return;
        }
    }
}

/* Lock DIR/graft.lock (creating DIR; *created receives what mkdirs created): GRAFT_OK
 * with *fd open, GRAFT_ERR_LOCKED when another process holds it, GRAFT_ERR_IO; each
 * failure logged as one line. *fd stays -1 when the file is the one already locked as
 * `held` (checkpoint.dir set to the run directory). */
static graft_status lock_dir(const char *dir, const char *key, int held, int *fd, char *created,
                             size_t created_size) {
    char path[TRAIN_PATH_MAX];
    *fd = -1;
    first_missing(dir, created, created_size);
    GRAFT_TRY(graft_fs_mkdirs(dir, GRAFT_LOG_ERROR));
    GRAFT_TRY(graft_fs_path_join(path, sizeof path, dir, LOCK_NAME));
    int f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    struct stat sb, held_sb;
    if (f < 0 || fstat(f, &sb) != 0) {
        GRAFT_ERROR("%s: cannot open the lock file: %s", path, strerror(errno));
        if (f >= 0) close(f);
        return GRAFT_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        GRAFT_ERROR("%s: not a regular file (remove it)", path);
        close(f);
        return GRAFT_ERR_IO;
    }
    if (held >= 0 && fstat(held, &held_sb) == 0 && held_sb.st_dev == sb.st_dev &&
        held_sb.st_ino == sb.st_ino) {
        close(f);
        return GRAFT_OK;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        long pid = err == EWOULDBLOCK ? holder_pid(f) : 0;
        if (err != EWOULDBLOCK)
            GRAFT_ERROR("%s: cannot lock: %s", path, strerror(err));
        else if (pid > 0)
            GRAFT_ERROR("%s: %s is in use by another graft train (pid %ld); wait for it to "
                        "end or use another %s",
                        path, dir, pid, key);
        else
            GRAFT_ERROR("%s: %s is in use by another graft train that is starting; wait for "
                        "it to end or use another %s",
                        path, dir, key);
        close(f);
        return err == EWOULDBLOCK ? GRAFT_ERR_LOCKED : GRAFT_ERR_IO;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, text, (size_t)len, 0) != len) {
        GRAFT_ERROR("%s: cannot write the lock file: %s", path, strerror(errno));
        close(f);
        return GRAFT_ERR_IO;
    }
    *fd = f;
    return GRAFT_OK;
}

/* The files a run writes into its run directory must be regular files where they exist
 * already (a FIFO or device there would block or swallow them): checked before the run
 * starts, so that such a directory is bad input, not a failure of the run. */
static graft_status check_run_files(const char *run_dir) {
    static const char *const names[] = {"config.yaml", "metrics.jsonl", "train.log",
                                        "eval.json",   "model.safetensors", "nonfinite.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[TRAIN_PATH_MAX];
        struct stat sb;
        GRAFT_TRY(graft_fs_path_join(path, sizeof path, run_dir, names[i]));
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            GRAFT_ERROR("%s: cannot write: not a regular file", path);
            return GRAFT_ERR_INVALID_ARG;
        }
    }
    return GRAFT_OK;
}

graft_status train_lock_dirs(trainer *t) {
    const graft_config *cfg = t->cfg;
    if (cfg->checkpoint.dir)
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", cfg->checkpoint.dir);
    else
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "runs/%s/checkpoints", cfg->experiment);
    graft_status st = GRAFT_OK;
    if (t->rank0) {
        char run_dir[TRAIN_PATH_MAX];
        snprintf(run_dir, sizeof run_dir, "runs/%s", cfg->experiment);
        st = lock_dir(run_dir, "experiment name", -1, &t->lock_fds[0], t->lock_created[0],
                      sizeof t->lock_created[0]);
        if (st == GRAFT_OK) st = check_run_files(run_dir);
        if (st == GRAFT_OK)
            st = lock_dir(t->ckpt_dir, "checkpoint.dir", t->lock_fds[0], &t->lock_fds[1],
                          t->lock_created[1], sizeof t->lock_created[1]);
        if (st != GRAFT_OK) train_unlock_dirs(t, 1); /* the run directory it may have made */
    }
    if (t->comm->size == 1) return st;
    /* 1: locked by another run, 2: another failure (rank 0 said which) */
    float outcome = st == GRAFT_OK ? 0.0f : st == GRAFT_ERR_LOCKED ? 1.0f : 2.0f;
    graft_comm_set_context(t->comm, "learning whether rank 0 got the run's locks");
    GRAFT_TRY(graft_comm_broadcast(t->comm, &outcome, sizeof outcome, 0));
    t->outcome_agreed = outcome != 0.0f; /* rank 0 said which */
    return outcome == 0.0f ? GRAFT_OK : outcome == 1.0f ? GRAFT_ERR_LOCKED : GRAFT_ERR_IO;
}

/* Remove DIR/graft.lock, then DIR and its parents up to `created` when empty. */
static void remove_created(const char *dir, const char *created) {
    char path[TRAIN_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, dir, LOCK_NAME) != GRAFT_OK) return;
    unlink(path);
    size_t stop = strlen(created);
    snprintf(path, sizeof path, "%s", dir);
    while (strlen(path) >= stop && rmdir(path) == 0) {
        char *slash = strrchr(path, '/');
        if (!slash) break;
        *slash = '\0';
    }
}

void train_unlock_dirs(trainer *t, int remove) {
    char run_dir[TRAIN_PATH_MAX];
    snprintf(run_dir, sizeof run_dir, "runs/%s", t->cfg->experiment);
    const char *dirs[2] = {run_dir, t->ckpt_dir};
    for (int i = 1; i >= 0; i--) {
        if (t->lock_fds[i] < 0) continue;
        if (remove && t->lock_created[i][0]) remove_created(dirs[i], t->lock_created[i]);
        close(t->lock_fds[i]); /* releases the flock */
        t->lock_fds[i] = -1;
    }
}
