/* Shared by the fuzz targets: a per-process temp directory for the functions that
 * read files, writing one input file into it, and splitting an input into the files
 * of a multi-file format. A target aborts when the library breaks a promise it makes
 * (a round trip that differs, a success that left things unset): libFuzzer and the
 * replay driver both report an abort as a failure. */
#ifndef GRAFT_FUZZ_UTIL_H
#define GRAFT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"
#include "runtime/data/tokenizer.h"

/* The line that separates the files of one input ("index.json\n--8<--\nshard ..."). */
#define FUZZ_SEPARATOR "\n--8<--\n"

/* The process's temp directory (created on first use, removed at exit). */
const char *fuzz_tmpdir(void);
/* Quiet the library's log (errors are still kept as the thread's last error). */
void fuzz_quiet_log(void);
/* Write bytes to dir/name, replacing it; aborts when that fails (not the library's fault). */
void fuzz_write(const char *dir, const char *name, const void *data, size_t len);
/* Remove dir/name when present. */
void fuzz_remove(const char *dir, const char *name);
/* Split data at each FUZZ_SEPARATOR into at most max parts (the last takes the rest);
 * returns how many parts there are. */
int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max);
/* A NUL-terminated copy of len bytes (malloc'd; aborts when out of memory). */
char *fuzz_strndup(const uint8_t *data, size_t len);
/* Abort when s is GRAFT_ERR_NOMEM: inputs are at most 64 KiB, and memory must follow
 * what a file holds, not what its header claims (the replay driver caps the process's
 * memory; libFuzzer caps each allocation). */
void fuzz_check_memory(graft_status s, const char *what);
/* Abort with a message on stderr: a broken promise of the library. */
void fuzz_fail(const char *what) __attribute__((noreturn));

/* Encode len bytes of text with a loaded tokenizer into *ids (*n of them; realloc'd as
 * graft_tokenizer_encode does); aborts when encoding fails or an id is outside the
 * vocabulary. */
void fuzz_encode_in_vocab(graft_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n, size_t *cap);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
