/* Replays fuzz inputs through a target without libFuzzer, so that the normal build's
 * test suite (gcc, and the ASan/UBSan build) runs every committed seed and regression
 * through the same library entry points as the fuzzer:
 *   fuzz_<target>_replay DIR_OR_FILE...
 * Each file is one input; directories are read in name order. Fails when an argument
 * cannot be read or holds no input; a broken promise aborts in the target. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, size = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + size, 1, cap - size, fp)) > 0) {
        size += got;
        if (size == cap) {
            unsigned char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    int failed = !buf || ferror(fp);
    fclose(fp);
    if (failed) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        return -1;
    }
    /* libFuzzer hands the target a buffer of exactly `size` bytes: so does the copy. */
    unsigned char *exact = malloc(size ? size : 1);
    if (!exact) abort();
    memcpy(exact, buf, size);
    free(buf);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 1;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Inputs replayed from path (a file or a directory of files), or -1. */
static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown || !(grown[n] = strdup(e->d_name))) abort(); /* a test: out of memory ends it */
        names = grown;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, compare_names);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        int r = run_file(file);
        if (r < 0) count = -1;
        if (count >= 0) count += r;
        free(names[i]);
    }
    free(names);
    return count;
}

/* Memory for the whole process, like libFuzzer's limit: an input that makes the library
 * allocate what a header claims instead of what the file holds fails as out of memory.
 * Under ASan (which reserves far more address space) ctest sets max_allocation_size_mb. */
static void limit_memory(void) {
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit rl = {(rlim_t)2 << 30, (rlim_t)2 << 30};
    if (setrlimit(RLIMIT_AS, &rl) != 0) perror("setrlimit");
#endif
}

int main(int argc, char **argv) {
    limit_memory();
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int r = run_path(argv[i]);
        if (r < 0) return 1;
        total += r;
    }
    if (total == 0) {
        fprintf(stderr, "no inputs to replay\n");
        return 1;
    }
    printf("replayed %d inputs\n", total);
    return 0;
}
