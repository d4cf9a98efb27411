/* graft: the command-line entry point. Each sub-command lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train as a YAML experiment config says"},
    {"launch", cmd_launch, "run `graft train` on MPI ranks as the config's launch section says"},
    {"eval", cmd_eval, "evaluate saved weights on a config's validation set"},
    {"predict", cmd_predict, "a classifier's top classes for image files or texts"},
    {"sample", cmd_sample, "generate text with a GPT-2 from a prompt"},
    {"data", cmd_data, "build, inspect, verify and benchmark sharded datasets"},
    {"ckpt", cmd_ckpt, "list, verify and export checkpoints"},
    {"plot", cmd_plot, "render loss / lr / accuracy curves of a run to PNG"},
    {"inspect", cmd_inspect, "list the tensors and metadata of a safetensors file"},
    {"bench", cmd_bench, "benchmarks (bench gemm: linear layer vs raw sgemm)"},
};

static void usage(void) {
    FILE *out = stdout;
    fprintf(out, "usage: graft <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-10s %s\n\nRun 'graft <command> --help' for a command's options.\n",
            "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "graft: missing command (run 'graft --help')\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        return GRAFT_EXIT_OK;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("graft %s\n", GRAFT_VERSION);
        return GRAFT_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc, argv);
    fprintf(stderr, "graft: unknown command '%s' (run 'graft --help')\n", argv[1]);
    return GRAFT_EXIT_BAD_INPUT;
}
