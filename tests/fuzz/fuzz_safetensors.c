/* A safetensors file (graft_st_open maps a path: the input is written to a temp file),
 * then every tensor read back through the accessors: a file that opens must be safe to
 * read in full, and find/metadata_get must return what the tables hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    const char *dir = fuzz_tmpdir();
    fuzz_write(dir, "input.safetensors", data, size);
    char path[512];
    snprintf(path, sizeof path, "%s/input.safetensors", dir);
    graft_st_file f;
    graft_status s = graft_st_open(&f, path);
    fuzz_check_memory(s, "graft_st_open");
    if (s != GRAFT_OK) return 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const graft_st_tensor *t = &f.tensors[i];
        if (graft_st_find(&f, t->name) != t) fuzz_fail("graft_st_find misses a tensor");
        if (t->nbytes != t->numel * graft_dtype_size(t->dtype))
            fuzz_fail("nbytes is not numel * dtype size");
        const unsigned char *begin = f.map, *p = t->data;
        if (t->nbytes && (p < begin || p + t->nbytes > begin + f.map_bytes))
            fuzz_fail("tensor data outside the file");
        float *dst = malloc(t->numel ? t->numel * sizeof *dst : 1);
        if (!dst) abort();
        if (graft_st_read_f32(t, dst, t->numel) != GRAFT_OK) fuzz_fail("read_f32 of a valid tensor");
        free(dst);
    }
    for (size_t i = 0; i < f.n_meta; i++)
        if (!graft_st_metadata_get(&f, f.meta_keys[i])) fuzz_fail("metadata key not found");
    graft_st_close(&f);
    return 0;
}
