/* graft inspect FILE.safetensors: list a weights file's metadata and tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runtime/core/escape.h"
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
    /* names, keys and values come from the file: escaped */
    graft_fputs_escaped(argv[2], stdout);
    printf(": %zu tensors, %zu data bytes\n", f.n_tensors, f.data_bytes);
    for (size_t i = 0; i < f.n_meta; i++) {
        fputs("  metadata ", stdout);
        graft_fputs_escaped(f.meta_keys[i], stdout);
        fputs(" = ", stdout);
        graft_fputs_escaped(f.meta_values[i], stdout);
        putchar('\n');
    }
    size_t numel = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const graft_st_tensor *t = &f.tensors[i];
        char shape[160];
        size_t size = GRAFT_ESCAPED_SIZE(strlen(t->name));
        char *name = malloc(size);
        if (!name) {
            fprintf(stderr, "graft inspect: out of memory\n");
            graft_st_close(&f);
            return GRAFT_EXIT_FAILURE;
        }
        printf("  %-48s %-5s %-24s %zu bytes\n", graft_escape(name, size, t->name),
               graft_dtype_name(t->dtype),
               graft_format_shape(shape, sizeof shape, t->ndim, t->shape), t->nbytes);
        free(name);
        numel += t->numel;
    }
    printf("  total elements: %zu\n", numel);
    graft_st_close(&f);
    return GRAFT_EXIT_OK;
}
