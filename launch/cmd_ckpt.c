/* graft ckpt: list the checkpoints of a run (ls), check them (verify) and export the
 * weights of one as a single safetensors file (export). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "runtime/ckpt/ckpt.h"
#include "runtime/core/escape.h"
#include "runtime/io/safetensors.h"

#define SUB_NAMES "ls, verify or export"

/* Parse the options of argv[3..) and expect exactly n_want positionals, returned in
 * pos. Returns -1 after printing help, an exit status on bad input, or GRAFT_EXIT_OK. */
static int parse_sub(const char *command, const char *summary, const char *what, int argc,
                     char **argv, const cli_option *opts, size_t n_opts, const char **pos,
                     int n_want) {
    int n_pos = 0;
    int rc = cli_parse(command, summary, argc, argv, 3, opts, n_opts, &n_pos);
    if (rc == GRAFT_EXIT_OK && n_pos != n_want) {
        fprintf(stderr, "graft %s: expected %s, got %d argument%s (see graft %s --help)\n", command,
                what, n_pos, n_pos == 1 ? "" : "s", command);
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    for (int k = 0; rc == GRAFT_EXIT_OK && k < n_want; k++) pos[k] = argv[3 + k];
    return rc;
}

/* graft ckpt ls DIR */
static int ckpt_ls(int argc, char **argv) {
    const char *dir = NULL;
    int rc = parse_sub("ckpt ls",
                       "usage: graft ckpt ls DIR\nList the checkpoints under DIR: size, step, "
                       "whether each verifies, which one 'latest' names.",
                       "one checkpoint directory", argc, argv, NULL, 0, &dir, 1);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    return cli_exit_status(graft_ckpt_list(dir, stdout));
}

/* graft ckpt verify CKPT_DIR_OR_ROOT */
static int ckpt_verify(int argc, char **argv) {
    const char *path = NULL;
    int rc = parse_sub("ckpt verify",
                       "usage: graft ckpt verify CKPT\nCheck a checkpoint (step-NNNNNNNN) against "
                       "its MANIFEST, or every checkpoint of a root directory.",
                       "one checkpoint or checkpoint root", argc, argv, NULL, 0, &path, 1);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    graft_status st;
    if (graft_ckpt_is_checkpoint(path)) {
        st = graft_ckpt_verify(path);
        if (st == GRAFT_OK) {
            graft_fputs_escaped(path, stdout);
            printf(": ok\n");
        }
    } else {
        st = graft_ckpt_verify_root(path, stdout);
    }
    return cli_exit_status(st);
}

/* --dtype: f32, f16 or bf16 (any case); 0 when it is none of them. */
static int parse_dtype(const char *text, graft_dtype *out) {
    static const struct {
        const char *name;
        graft_dtype dtype;
    } known[] = {{"f32", GRAFT_DTYPE_F32}, {"f16", GRAFT_DTYPE_F16}, {"bf16", GRAFT_DTYPE_BF16}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(text, known[i].name) == 0) {
            *out = known[i].dtype;
            return 1;
        }
    return 0;
}

/* graft ckpt export CKPT --out FILE [--dtype f32|f16|bf16] [--merge-lora] */
static int ckpt_export(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *dtype_text = "f32";
    int merge_lora = 0;
    const cli_option opts[] = {
        {"out", CLI_STRING, &out, "safetensors file to write (required)", 0},
        {"dtype", CLI_STRING, &dtype_text,
         "f32 (default), f16 or bf16: rounded to nearest even; values beyond f16's range "
         "refuse the export",
         0},
        {"merge-lora", CLI_FLAG, &merge_lora,
         "merge a LoRA run's adapters into the base weights (W + alpha/rank * B A) and write "
         "plain Hugging Face names, no lora_A / lora_B",
         0},
    };
    int rc = parse_sub("ckpt export",
                       "usage: graft ckpt export CKPT --out FILE [--dtype f32|f16|bf16] "
                       "[--merge-lora]\nWrite "
                       "the weights of a checkpoint (every parameter and buffer, frozen ones "
                       "included) as one safetensors file; a checkpoint root exports the one a "
                       "resume would use.",
                       "one checkpoint or checkpoint root", argc, argv, opts,
                       sizeof opts / sizeof opts[0], &path, 1);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    if (!out || !*out) {
        fprintf(stderr, "graft ckpt export: --out FILE is required\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    graft_dtype dtype;
    if (!parse_dtype(dtype_text, &dtype)) {
        char shown[256];
        fprintf(stderr, "graft ckpt export: --dtype: expected f32, f16 or bf16, found '%s'\n",
                graft_escape(shown, sizeof shown, dtype_text));
        return GRAFT_EXIT_BAD_INPUT;
    }
    char chosen[4096];
    graft_status st = GRAFT_OK;
    if (graft_ckpt_is_checkpoint(path)) {
        snprintf(chosen, sizeof chosen, "%s", path);
    } else {
        st = graft_ckpt_find_resume(path, chosen, sizeof chosen);
        if (st == GRAFT_ERR_NOT_FOUND)
            fprintf(stderr, "graft ckpt export: %s: no checkpoint to export\n", path);
    }
    if (st == GRAFT_OK)
        st = merge_lora ? graft_ckpt_export_merge_lora(chosen, out, dtype)
                        : graft_ckpt_export(chosen, out, dtype);
    if (st != GRAFT_OK) return cli_exit_status(st);
    graft_st_file f;
    st = graft_st_open(&f, out);
    if (st != GRAFT_OK) return cli_exit_status(st);
    char out_text[1024], chosen_text[1024];
    printf("wrote %s: %zu tensors (%s), %zu bytes, from %s\n",
           graft_escape(out_text, sizeof out_text, out), f.n_tensors, graft_dtype_name(dtype),
           f.map_bytes,
           graft_escape(chosen_text, sizeof chosen_text, chosen));
    graft_st_close(&f);
    return GRAFT_EXIT_OK;
}

static void ckpt_usage(void) {
    printf("usage: graft ckpt <ls|verify|export> ...\n\n"
           "  ls      DIR                  list checkpoints: size, step, ok or damaged, latest\n"
           "  verify  CKPT|DIR             check one checkpoint, or every one under DIR\n"
           "  export  CKPT|DIR --out FILE [--dtype f32|f16|bf16] [--merge-lora]\n"
           "                               weights (frozen included) as one safetensors file\n");
}

int cmd_ckpt(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "graft ckpt: missing sub-command (" SUB_NAMES ")\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    const char *sub = argv[2];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        ckpt_usage();
        return GRAFT_EXIT_OK;
    }
    if (strcmp(sub, "ls") == 0) return ckpt_ls(argc, argv);
    if (strcmp(sub, "verify") == 0) return ckpt_verify(argc, argv);
    if (strcmp(sub, "export") == 0) return ckpt_export(argc, argv);
    fprintf(stderr, "graft ckpt: unknown sub-command '%s' (" SUB_NAMES ")\n", sub);
    return GRAFT_EXIT_BAD_INPUT;
}
