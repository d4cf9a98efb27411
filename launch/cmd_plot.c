/* graft plot RUN_DIR: loss, learning-rate and eval-accuracy curves as PNG (gnuplot),
 * written to RUN_DIR/plots/. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define PATH_BYTES 4096

/* metrics.jsonl -> "step loss lr" rows; returns rows written or -1 (message printed). */
static int metrics_to_table(const char *metrics_path, FILE *out) {
    FILE *in = fopen(metrics_path, "r");
    if (!in) {
        fprintf(stderr, "graft plot: %s: cannot open: %s\n", metrics_path, strerror(errno));
        return -1;
    }
    char line[8192];
    int rows = 0, lineno = 0;
    while (fgets(line, sizeof line, in)) {
        lineno++;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        json_t *step = o ? json_object_get(o, "step") : NULL;
        json_t *loss = o ? json_object_get(o, "loss") : NULL;
        json_t *lr = o ? json_object_get(o, "lr") : NULL;
        if (!json_is_integer(step) || !json_is_number(loss) || !json_is_number(lr)) {
            fprintf(stderr, "graft plot: %s:%d: not a metrics line (need step, loss, lr)\n",
                    metrics_path, lineno);
            json_decref(o);
            (void)fclose(in); /* read only: nothing to lose */
            return -1;
        }
        fprintf(out, "%lld %.9g %.9g\n", (long long)json_integer_value(step),
                json_number_value(loss), json_number_value(lr));
        json_decref(o);
        rows++;
    }
    (void)fclose(in); /* read only: nothing to lose */
    return rows;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* eval/step-*.json -> "step accuracy loss" rows (in step order); rows written. */
static int evals_to_table(const char *run_dir, FILE *out) {
    char dir[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/eval", run_dir);
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, by_name);
    int rows = 0;
    for (int i = 0; i < n; i++) {
        if (strncmp(names[i]->d_name, "step-", 5) == 0) {
            char path[PATH_BYTES + 256];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            json_t *o = json_load_file(path, 0, NULL);
            json_t *acc = o ? json_object_get(o, "accuracy") : NULL;
            json_t *step = o ? json_object_get(o, "step") : NULL;
            json_t *loss = o ? json_object_get(o, "loss") : NULL;
            if (json_is_number(acc) && json_is_integer(step) && json_is_number(loss)) {
                fprintf(out, "%lld %.9g %.9g\n", (long long)json_integer_value(step),
                        json_number_value(acc), json_number_value(loss));
                rows++;
            }
            json_decref(o);
        }
        free(names[i]);
    }
    free(names);
    return rows;
}

int cmd_plot(int argc, char **argv) {
    if (argc != 3 || argv[2][0] == '-') {
        if (argc == 3 && strcmp(argv[2], "--help") == 0) {
            printf("usage: graft plot runs/EXPERIMENT\n"
                   "Render loss, learning-rate and eval-accuracy curves to PNG files in\n"
                   "runs/EXPERIMENT/plots/ with gnuplot.\n");
            return GRAFT_EXIT_OK;
        }
        fprintf(stderr, "graft plot: expected a run directory (graft plot runs/EXPERIMENT)\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    const char *run = argv[2];
    char metrics[PATH_BYTES], plots[PATH_BYTES], table[PATH_BYTES], evals[PATH_BYTES],
        script[PATH_BYTES];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
    snprintf(plots, sizeof plots, "%s/plots", run);
    snprintf(table, sizeof table, "%s/plots/metrics.dat", run);
    snprintf(evals, sizeof evals, "%s/plots/eval.dat", run);
    snprintf(script, sizeof script, "%s/plots/plot.gp", run);
    struct stat sb;
    if (stat(metrics, &sb) != 0) {
        fprintf(stderr, "graft plot: %s: cannot open: %s\n", metrics, strerror(errno));
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (mkdir(plots, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "graft plot: %s: cannot create: %s\n", plots, strerror(errno));
        return GRAFT_EXIT_FAILURE;
    }
    FILE *t = fopen(table, "w"), *e = fopen(evals, "w"), *s = fopen(script, "w");
    if (!t || !e || !s) {
        fprintf(stderr, "graft plot: %s: cannot write plot files: %s\n", plots, strerror(errno));
        /* already failing: a close error adds nothing */
        if (t) (void)fclose(t);
        if (e) (void)fclose(e);
        if (s) (void)fclose(s);
        return GRAFT_EXIT_FAILURE;
    }
    int rows = metrics_to_table(metrics, t), eval_rows = evals_to_table(run, e);
    int tables_written = !ferror(t) && !ferror(e); /* disk full: never plot half a table */
    if (fclose(t) != 0) tables_written = 0;
    if (fclose(e) != 0) tables_written = 0;
    if (rows > 0 && !tables_written) {
        fprintf(stderr, "graft plot: %s: cannot write plot files: %s\n", plots, strerror(errno));
        (void)fclose(s); /* not run */
        return GRAFT_EXIT_FAILURE;
    }
    if (rows <= 0) {
        (void)fclose(s); /* not run */
        if (rows == 0) fprintf(stderr, "graft plot: %s: no metrics lines yet\n", metrics);
        return GRAFT_EXIT_BAD_INPUT;
    }
    fprintf(s,
            "set terminal pngcairo size 900,500 noenhanced\n"
            "set grid\nset xlabel 'step'\n"
            "set output '%s/loss.png'\nset title 'training loss'\n"
            "plot '%s' using 1:2 with lines title 'loss'\n"
            "set output '%s/lr.png'\nset title 'learning rate'\n"
            "plot '%s' using 1:3 with lines title 'lr'\n",
            plots, table, plots, table);
    if (eval_rows > 0)
        fprintf(s,
                "set output '%s/accuracy.png'\nset title 'eval accuracy'\n"
                "plot '%s' using 1:2 with linespoints title 'accuracy'\n",
                plots, evals);
    int script_failed = ferror(s);
    if (fclose(s) != 0 || script_failed) {
        fprintf(stderr, "graft plot: %s: cannot write: %s\n", script, strerror(errno));
        return GRAFT_EXIT_FAILURE;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        fprintf(stderr, "graft plot: cannot run gnuplot: %s (scripts/deps.sh installs it)\n",
                strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "graft plot: gnuplot failed on %s\n", script);
        return GRAFT_EXIT_FAILURE;
    }
    printf("graft plot: wrote %s/loss.png, lr.png%s\n", plots,
           eval_rows ? " and accuracy.png" : "");
    return GRAFT_EXIT_OK;
}
