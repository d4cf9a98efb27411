#include "cli.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/status.h"

static const cli_option *find_option(const char *name, size_t len, const cli_option *opts,
                                     size_t n_opts) {
    for (size_t i = 0; i < n_opts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

/* Decimal text only: strtol/strtod would also take leading blanks, hex, "inf" and "nan". */
static int is_decimal_text(const char *text, int fraction) {
    const char *allowed = fraction ? "0123456789+-.eE" : "0123456789+-";
    return text[0] && strspn(text, allowed) == strlen(text);
}

static int set_value(const char *command, const cli_option *o, const char *text) {
    char *end = NULL;
    errno = 0;
    if (o->kind == CLI_INT) {
        long v = is_decimal_text(text, 0) ? strtol(text, &end, 10) : 0;
        if (!end || errno || end == text || *end || v < (long)o->min || v > CLI_INT_MAX) {
            fprintf(stderr, "graft %s: --%s: expected an integer in [%g, %ld], got '%s'\n",
                    command, o->name, o->min, CLI_INT_MAX, text);
            return GRAFT_EXIT_BAD_INPUT;
        }
        *(int *)o->value = (int)v;
    } else if (o->kind == CLI_FLOAT) {
        double v = is_decimal_text(text, 1) ? strtod(text, &end) : NAN;
        /* the value is stored as a float: it must neither overflow nor underflow to 0 */
        if (!end || errno || end == text || *end || !isfinite(v) || v < o->min ||
            fabs(v) > FLT_MAX || (v != 0 && fabs(v) < FLT_TRUE_MIN)) {
            fprintf(stderr,
                    "graft %s: --%s: expected a number >= %g that a 32-bit float holds (0 or "
                    "of magnitude in [%g, %g]), got '%s'\n",
                    command, o->name, o->min, (double)FLT_TRUE_MIN, (double)FLT_MAX, text);
            return GRAFT_EXIT_BAD_INPUT;
        }
        *(float *)o->value = (float)v;
    } else {
        *(const char **)o->value = text;
    }
    return GRAFT_EXIT_OK;
}

/* One "--name [value]" argument at argv[*i] (advancing *i past a separate value). */
static int parse_option(const char *command, int argc, char **argv, int *i, const cli_option *opts,
                        size_t n_opts) {
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_option *o = find_option(name, len, opts, n_opts);
    if (!o) {
        fprintf(stderr, "graft %s: unknown option '--%.*s' (see graft %s --help)\n", command,
                (int)len, name, command);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (o->kind == CLI_FLAG) {
        if (eq) {
            fprintf(stderr, "graft %s: --%s takes no value\n", command, o->name);
            return GRAFT_EXIT_BAD_INPUT;
        }
        *(int *)o->value = 1;
        return GRAFT_EXIT_OK;
    }
    const char *text = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!text) {
        fprintf(stderr, "graft %s: --%s needs a value\n", command, o->name);
        return GRAFT_EXIT_BAD_INPUT;
    }
    return set_value(command, o, text);
}

int cli_load_config(const char *command, graft_config *cfg, int argc, char **argv,
                    const cli_option *opts, size_t n_opts) {
    graft_config_defaults(cfg);
    if (argc < 3 || argv[2][0] == '-') {
        fprintf(stderr, "graft %s: expected a config file (graft %s CONFIG.yaml [key=value ...])\n",
                command, command);
        return GRAFT_EXIT_BAD_INPUT;
    }
    graft_status st = graft_config_load(cfg, argv[2]);
    for (int i = 3; i < argc && st == GRAFT_OK; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            int rc = parse_option(command, argc, argv, &i, opts, n_opts);
            if (rc != GRAFT_EXIT_OK) return rc;
        } else {
            st = graft_config_override(cfg, argv[i]);
        }
    }
    if (st == GRAFT_OK) st = graft_config_validate(cfg);
    /* evaluating weights or sampling from them needs no training length */
    if (st == GRAFT_OK && strcmp(command, "eval") != 0 && strcmp(command, "sample") != 0)
        st = graft_config_validate_training(cfg);
    return cli_exit_status(st);
}

/* "usage: graft CMD [options]" (unless the summary starts with its own usage line),
 * the summary, and one line per option. */
static void print_help(const char *command, const char *summary, const cli_option *opts,
                       size_t n_opts) {
    if (strncmp(summary, "usage:", 6) != 0) printf("usage: graft %s [options]\n", command);
    printf("%s\n", summary);
    if (n_opts) printf("\noptions:\n");
    for (size_t i = 0; i < n_opts; i++) {
        const char *arg = opts[i].kind == CLI_FLAG ? "" : opts[i].kind == CLI_STRING ? " S" : " N";
        printf("  --%s%-*s %s\n", opts[i].name, (int)(18 - strlen(opts[i].name)), arg,
               opts[i].help);
    }
}

int cli_parse(const char *command, const char *summary, int argc, char **argv, int first,
              const cli_option *opts, size_t n_opts, int *n_pos) {
    int positionals = 0;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(command, summary, opts, n_opts);
            return -1;
        }
        if (strncmp(arg, "--", 2) == 0) {
            int rc = parse_option(command, argc, argv, &i, opts, n_opts);
            if (rc != GRAFT_EXIT_OK) return rc;
        } else if (n_pos) {
            argv[first + positionals++] = argv[i]; /* a slot already read: i >= it */
        } else {
            fprintf(stderr, "graft %s: unexpected argument '%s' (see graft %s --help)\n", command,
                    arg, command);
            return GRAFT_EXIT_BAD_INPUT;
        }
    }
    if (n_pos) *n_pos = positionals;
    return GRAFT_EXIT_OK;
}

int cli_exit_status(int graft_status_value) {
    if (graft_status_value == GRAFT_OK) return GRAFT_EXIT_OK;
    if (graft_status_value == GRAFT_STOPPED) return GRAFT_EXIT_PREEMPTED;
    return graft_status_is_bad_input((graft_status)graft_status_value) ? GRAFT_EXIT_BAD_INPUT
                                                                       : GRAFT_EXIT_FAILURE;
}
