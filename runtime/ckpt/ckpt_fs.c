/* File-system helpers of the checkpoint module: checkpoint directory names, listing a
 * root, reading "latest", recursive removal (plain file work is runtime/io/fs). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_internal.h"

const char *const ckpt_files[CKPT_N_FILES] = {"config.yaml", "model.safetensors",
                                              "optim.safetensors", "state.json"};

int ckpt_parse_step_name(const char *name, long *step) {
    if (strncmp(name, "step-", 5) != 0) return 0;
    const char *digits = name + 5;
    size_t n = strlen(digits);
    if (n < 8 || n > 18) return 0;
    long value = 0;
    for (size_t i = 0; i < n; i++) {
        if (digits[i] < '0' || digits[i] > '9') return 0;
        value = value * 10 + (digits[i] - '0');
    }
    char canonical[CKPT_NAME_MAX];
    snprintf(canonical, sizeof canonical, "step-%08ld", value);
    if (strcmp(canonical, name) != 0) return 0;
    *step = value;
    return 1;
}

static int compare_entries(const void *a, const void *b) {
    long x = ((const ckpt_dir_entry *)a)->step, y = ((const ckpt_dir_entry *)b)->step;
    return (x > y) - (x < y);
}

graft_status ckpt_scan(const char *root, ckpt_dir_entry **out, size_t *n, graft_log_level level) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d) {
        int err = errno;
        if (err == ENOENT) return GRAFT_ERR_NOT_FOUND;
        graft_log(level, __func__, "%s: cannot list the directory: %s", root, strerror(err));
        return err == ENOTDIR ? GRAFT_ERR_FORMAT : GRAFT_ERR_IO;
    }
    size_t cap = 0;
    ckpt_dir_entry *list = NULL;
    graft_status st = GRAFT_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long step;
        if (!ckpt_parse_step_name(e->d_name, &step)) continue;
        char path[CKPT_PATH_MAX];
        if (graft_fs_path_join(path, sizeof path, root, e->d_name) != GRAFT_OK ||
            !graft_fs_is_dir(path))
            continue;
        if (ckpt_leads_out(root, e->d_name)) {
            GRAFT_WARN("%s is a link that leads out of %s; not a checkpoint of it", path, root);
            continue;
        }
        if (*n == cap) {
            size_t new_cap = cap ? 2 * cap : 16;
            ckpt_dir_entry *grown = realloc(list, new_cap * sizeof *grown);
            if (!grown) {
                graft_log(level, __func__, "%s: out of memory listing the directory", root);
                st = GRAFT_ERR_NOMEM;
                break;
            }
            list = grown;
            cap = new_cap;
        }
        list[*n].step = step;
        snprintf(list[*n].name, sizeof list[*n].name, "%.*s", CKPT_NAME_MAX - 1, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (st != GRAFT_OK) {
        free(list);
        *n = 0;
        return st;
    }
    if (*n > 1) qsort(list, *n, sizeof *list, compare_entries);
    *out = list;
    return GRAFT_OK;
}

/* 1 when the resolved path real lies strictly below the resolved directory real_root
 * (realpath gives neither a trailing slash nor "." or ".." components). */
static int is_below(const char *real, const char *real_root) {
    if (strcmp(real_root, "/") == 0) return strcmp(real, "/") != 0;
    size_t n = strlen(real_root);
    return strncmp(real, real_root, n) == 0 && real[n] == '/';
}

int ckpt_leads_out(const char *root, const char *name) {
    char path[CKPT_PATH_MAX];
    struct stat st;
    if (graft_fs_path_join(path, sizeof path, root, name) != GRAFT_OK) return 1;
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) return 0; /* one plain entry of root */
    char *real_root = realpath(root, NULL), *real = realpath(path, NULL);
    /* a dangling link leads nowhere inside root either */
    int out = !real_root || !real || !is_below(real, real_root);
    free(real_root);
    free(real);
    return out;
}

int ckpt_read_latest(const char *root, char *name, size_t size) {
    char path[CKPT_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, root, "latest") != GRAFT_OK) return 0;
    if (!graft_fs_exists(path)) return 0;
    /* The content is never quoted back: it may hold anything (escape sequences, a
     * path to somewhere else); only what is wrong with it is said. */
    if (ckpt_leads_out(root, "latest")) {
        snprintf(name, size, "%s is a link that leads out of %s", path, root);
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    if (graft_fs_read(path, 256, &text, &len, GRAFT_LOG_QUIET) != GRAFT_OK) {
        snprintf(name, size, "%s", graft_log_last_error());
        return -1;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    long step;
    int result = -1;
    if (strlen(text) != len || !ckpt_parse_step_name(text, &step))
        snprintf(name, size, "%s does not hold a checkpoint name (step-NNNNNNNN)", path);
    else if (ckpt_leads_out(root, text))
        snprintf(name, size, "%s names %s, a link that leads out of %s", path, text, root);
    else {
        snprintf(name, size, "%s", text);
        result = 1;
    }
    free(text);
    return result;
}

/* Remove path and everything under it; 0 or the first errno met. */
static int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : errno;
    if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 || errno == ENOENT ? 0 : errno;
    DIR *d = opendir(path);
    if (!d) return errno;
    int err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char child[CKPT_PATH_MAX];
        if (graft_fs_path_join(child, sizeof child, path, e->d_name) != GRAFT_OK) {
            err = ENAMETOOLONG;
            continue;
        }
        int child_err = remove_tree(child);
        if (child_err != 0 && err == 0) err = child_err;
    }
    closedir(d);
    if (err == 0 && rmdir(path) != 0 && errno != ENOENT) err = errno;
    return err;
}

graft_status ckpt_remove_tree(const char *path, graft_log_level level, const char *what) {
    int err = remove_tree(path);
    if (err == 0) return GRAFT_OK;
    graft_log(level, __func__, "%s: cannot remove %s: %s", path, what, strerror(err));
    return GRAFT_ERR_IO;
}
