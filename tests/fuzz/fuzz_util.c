/* See fuzz_util.h. */
#include "fuzz_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/core/log.h"

static char tmpdir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tmpdir(void) {
    if (tmpdir[0]) nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void) {
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%.40s/graft-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

void fuzz_quiet_log(void) { graft_log_set_level(GRAFT_LOG_QUIET); }

void fuzz_write(const char *dir, const char *name, const void *data, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || (len && fwrite(data, 1, len, fp) != len) || fclose(fp) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_remove(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max) {
    const size_t sep_len = strlen(FUZZ_SEPARATOR);
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max - 1 && i + sep_len <= size; i++) {
        if (memcmp(data + i, FUZZ_SEPARATOR, sep_len) != 0) continue;
        parts[n] = data + start;
        lens[n++] = i - start;
        start = i + sep_len;
        i = start - 1;
    }
    parts[n] = data + start;
    lens[n++] = size - start;
    return n;
}

char *fuzz_strndup(const uint8_t *data, size_t len) {
    char *s = malloc(len + 1);
    if (!s) abort();
    if (len) memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

void fuzz_check_memory(graft_status s, const char *what) {
    if (s != GRAFT_ERR_NOMEM) return;
    fprintf(stderr, "fuzz: %s ran out of memory on a small input\n", what);
    abort();
}

void fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz: broken promise: %s\n", what);
    abort();
}

void fuzz_encode_in_vocab(graft_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n, size_t *cap) {
    if (graft_tokenizer_encode(t, text, len, ids, n, cap) != GRAFT_OK)
        fuzz_fail("encode failed with a loaded tokenizer");
    int vocab = graft_tokenizer_vocab_size(t);
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= vocab) fuzz_fail("id outside the vocabulary");
}
