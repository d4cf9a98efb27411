/* graft inspect FILE.safetensors: list a weights file's metadata and tensors. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"

int cmd_inspect(int argc, char **argv) {
    if (argc != 3 || strncmp(argv[2], "--", 2) == 0) {
        if (argc == 3 && strcmp(argv[2], "--help") == 0) {
            printf("usage: graft inspect FILE.safetensors\n"
                   "List the metadata and the tensors (dtype, shape, bytes) of a file.\n");
            return GRAFT_EXIT_OK;
        }
        fprintf(stderr, "graft inspect: expected one safetensors file (graft inspect FILE)\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    graft_st_file f;
    graft_status st = graft_st_open(&f, argv[2]);
    if (st != GRAFT_OK) return cli_exit_status(st);
    printf("%s: %zu tensors, %zu data bytes\n", argv[2], f.n_tensors, f.data_bytes);
    for (size_t i = 0; i < f.n_meta; i++)
        printf("  metadata %s = %s\n", f.meta_keys[i], f.meta_values[i]);
    size_t numel = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const graft_st_tensor *t = &f.tensors[i];
        char shape[160];
        printf("  %-48s %-5s %-24s %zu bytes\n", t->name, graft_dtype_name(t->dtype),
               graft_format_shape(shape, sizeof shape, t->ndim, t->shape), t->nbytes);
        numel += t->numel;
    }
    printf("  total elements: %zu\n", numel);
    graft_st_close(&f);
    return GRAFT_EXIT_OK;
}
