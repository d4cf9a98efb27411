/* graft train / graft eval: run an experiment described by a YAML config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comm/comm.h"
#include "runtime/config/config.h"
#include "runtime/train/train.h"

/* Load cfg_path, apply "key=value" overrides from argv (other arguments are left for
 * the caller: it passes the options it knows in `flags`), validate. */
static int load_config(const char *command, graft_config *cfg, int argc, char **argv,
                       const char **flags_with_value, const char **switches, const char **values,
                       int *switch_set) {
    graft_config_defaults(cfg);
    if (argc < 3 || argv[2][0] == '-') {
        fprintf(stderr, "graft %s: expected a config file (graft %s CONFIG.yaml [key=value ...])\n",
                command, command);
        return GRAFT_EXIT_BAD_INPUT;
    }
    graft_status st = graft_config_load(cfg, argv[2]);
    for (int i = 3; i < argc && st == GRAFT_OK; i++) {
        const char *a = argv[i];
        int known = 0;
        for (int k = 0; flags_with_value && flags_with_value[k]; k++)
            if (strcmp(a, flags_with_value[k]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "graft %s: %s needs a value\n", command, a);
                    return GRAFT_EXIT_BAD_INPUT;
                }
                values[k] = argv[++i];
                known = 1;
            }
        for (int k = 0; switches && switches[k]; k++)
            if (strcmp(a, switches[k]) == 0) {
                switch_set[k] = 1;
                known = 1;
            }
        if (known) continue;
        if (a[0] == '-') {
            fprintf(stderr, "graft %s: unknown option '%s'\n", command, a);
            return GRAFT_EXIT_BAD_INPUT;
        }
        st = graft_config_override(cfg, a);
    }
    if (st == GRAFT_OK) st = graft_config_validate(cfg);
    return cli_exit_status(st);
}

int cmd_train(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
        printf("usage: graft train CONFIG.yaml [key=value ...] [--print-config]\n"
               "Train as the config says; key=value overrides any config key\n"
               "(e.g. optim.lr=3e-4 train.max_steps=100). --print-config prints the\n"
               "resolved config as YAML and exits.\n");
        return GRAFT_EXIT_OK;
    }
    graft_config cfg;
    const char *switches[] = {"--print-config", NULL};
    int print_only = 0;
    int rc = load_config("train", &cfg, argc, argv, NULL, switches, NULL, &print_only);
    if (rc == GRAFT_EXIT_OK && print_only) {
        rc = cli_exit_status(graft_config_print(&cfg, stdout));
    } else if (rc == GRAFT_EXIT_OK) {
        graft_comm comm;
        graft_comm_init_local(&comm);
        rc = cli_exit_status(graft_train(&cfg, &comm));
        graft_comm_free(&comm);
    }
    graft_config_free(&cfg);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
        printf("usage: graft eval CONFIG.yaml --weights FILE.safetensors [--json OUT.json] "
               "[key=value ...]\n"
               "Evaluate weights on the config's data.val (or data.train) set: loss,\n"
               "accuracy and per-class accuracy for classifiers, perplexity for language models.\n");
        return GRAFT_EXIT_OK;
    }
    graft_config cfg;
    const char *flags[] = {"--weights", "--json", NULL};
    const char *values[2] = {NULL, NULL};
    int rc = load_config("eval", &cfg, argc, argv, flags, NULL, values, NULL);
    if (rc == GRAFT_EXIT_OK && !values[0]) {
        fprintf(stderr, "graft eval: --weights FILE is required\n");
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK) {
        graft_comm comm;
        graft_comm_init_local(&comm);
        rc = cli_exit_status(graft_evaluate(&cfg, values[0], values[1], &comm));
        graft_comm_free(&comm);
    }
    graft_config_free(&cfg);
    return rc;
}
