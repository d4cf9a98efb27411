/* Shared pieces of the graft command-line tool: sub-command entry points and a
 * small "--name value" option parser that turns bad values into exit status 2. */
#ifndef GRAFT_CLI_H
#define GRAFT_CLI_H

#include <stddef.h>

#include "runtime/config/config.h"

/* Exit statuses of the graft command (documented in the README). */
enum {
    GRAFT_EXIT_OK = 0,
    GRAFT_EXIT_FAILURE = 1, /* a run failed for a reason other than its input */
    GRAFT_EXIT_BAD_INPUT = 2, /* bad flags, config, data or weights file */
    GRAFT_EXIT_PREEMPTED = 75 /* stopped by SIGTERM/SIGINT/SIGUSR1/SIGHUP after a checkpoint */
};

typedef enum { CLI_INT, CLI_FLOAT, CLI_STRING, CLI_FLAG } cli_kind;

/* Largest value of a CLI_INT option: counts and sizes of the commands stay far from
 * int overflow in the products they are used in. */
#define CLI_INT_MAX 1000000000L

/* One accepted option; `value` points at an int, float, const char* or int (flag). */
typedef struct cli_option {
    const char *name; /* without the leading "--" */
    cli_kind kind;
    void *value;
    const char *help;
    double min; /* numeric options: smallest accepted value */
} cli_option;

/* Parse argv[first..argc) against opts ("--name value", "--name=value", "--flag").
 * With n_pos, positional arguments are allowed: they are moved, in order, to
 * argv[first .. first + *n_pos); without it they are errors. --help / -h prints the
 * usage (unless summary starts with its own "usage:" line), summary and options, and
 * returns -1. A bad option or value prints one line and returns GRAFT_EXIT_BAD_INPUT. */
int cli_parse(const char *command, const char *summary, int argc, char **argv, int first,
              const cli_option *opts, size_t n_opts, int *n_pos);
/* What a command that takes a config accepts besides it. */
typedef struct cli_config_args {
    const cli_option *opts;
    size_t n_opts;
    int trains; /* 0: the command trains nothing (train.epochs / max_steps not required) */
    /* NULL: every argument that is not an option is a key=value override. Else those
     * without '=' (and every one after "--") are inputs, moved in order to
     * argv[3 .. 3 + *n_inputs). */
    int *n_inputs;
} cli_config_args;

/* For commands that take a config: argv[2] is the YAML file, later arguments are
 * "key=value" overrides, options or inputs (see cli_config_args). Loads, overrides and
 * validates into cfg (the caller frees it); returns an exit status (errors already
 * printed). */
int cli_load_config(const char *command, graft_config *cfg, int argc, char **argv,
                    const cli_config_args *args);

/* Map a library status to the command's exit status. */
int cli_exit_status(int graft_status_value);

int cmd_bench(int argc, char **argv);
int cmd_bench_model(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_launch(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);
int cmd_predict(int argc, char **argv);

#endif
