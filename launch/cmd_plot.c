/* graft plot RUN_DIR: loss, learning-rate and eval-accuracy curves as PNG (gnuplot),
 * written to RUN_DIR/plots/.
 *
 * gnuplot runs in RUN_DIR/plots/ on a script that names only fixed file names there:
 * no path or name from the user or the run directory ever reaches its command language,
 * so quotes, spaces, ';' or '`' in a path are just characters of a directory name. A
 * value written as null (a non-finite loss, see metrics.jsonl) is a gap in the curve. */
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
#include "runtime/io/fs.h"

/* A series of (step, value) points; a null value ends a segment (a blank line, which
 * gnuplot draws as a gap). Counts the points written. */
typedef struct series {
    FILE *f;
    int points;
    int in_gap; /* a blank line is already there */
} series;

static void series_add(series *s, long long step, const json_t *value) {
    if (json_is_number(value)) {
        fprintf(s->f, "%lld %.9g\n", step, json_number_value(value));
        s->points++;
        s->in_gap = 0;
    } else if (!s->in_gap) {
        fputc('\n', s->f);
        s->in_gap = 1;
    }
}

static int number_or_null(const json_t *v) { return json_is_number(v) || json_is_null(v); }

/* metrics.jsonl -> the loss and lr series; 0, or -1 after a printed message. */
static int read_metrics(const char *metrics_path, series *loss, series *lr, int *lines) {
    FILE *in = fopen(metrics_path, "r");
    if (!in) {
        fprintf(stderr, "graft plot: %s: cannot open: %s\n", metrics_path, strerror(errno));
        return -1;
    }
    char line[8192];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, in)) {
        lineno++;
        json_t *o = json_loads(line, 0, NULL);
        json_t *step = json_object_get(o, "step");
        json_t *l = json_object_get(o, "loss"), *r = json_object_get(o, "lr");
        if (!json_is_integer(step) || !number_or_null(l) || !number_or_null(r)) {
            fprintf(stderr,
                    "graft plot: %s:%d: not a metrics line (need step, loss and lr: numbers "
                    "or null)\n",
                    metrics_path, lineno);
            rc = -1;
        } else {
            series_add(loss, json_integer_value(step), l);
            series_add(lr, json_integer_value(step), r);
        }
        json_decref(o);
    }
    fclose(in);
    *lines = lineno;
    return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* eval/step-*.json (in step order) -> the accuracy series. Files that are not
 * classifier results (no accuracy key) are left out. */
static void read_evals(const char *run_dir, series *accuracy) {
    char dir[GRAFT_FS_PATH_MAX], path[GRAFT_FS_PATH_MAX];
    if (graft_fs_path_join(dir, sizeof dir, run_dir, "eval") != GRAFT_OK) return;
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, by_name);
    for (int i = 0; i < n; i++) {
        if (strncmp(names[i]->d_name, "step-", 5) == 0 &&
            graft_fs_path_join(path, sizeof path, dir, names[i]->d_name) == GRAFT_OK) {
            json_t *o = json_load_file(path, 0, NULL);
            json_t *acc = json_object_get(o, "accuracy"), *step = json_object_get(o, "step");
            if (json_is_integer(step) && number_or_null(acc))
                series_add(accuracy, json_integer_value(step), acc);
            json_decref(o);
        }
        free(names[i]);
    }
    free(names);
}

/* Run gnuplot on plot.gp with plots_dir as its working directory; 0 when it succeeded. */
static int run_gnuplot(const char *plots_dir) {
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(plots_dir) != 0) {
            fprintf(stderr, "graft plot: %s: cannot enter: %s\n", plots_dir, strerror(errno));
            _exit(126);
        }
        execlp("gnuplot", "gnuplot", "plot.gp", (char *)NULL);
        fprintf(stderr, "graft plot: cannot run gnuplot: %s (scripts/deps.sh installs it)\n",
                strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The script: only the fixed file names of plots/. A series without a single finite
 * point gets no plot (gnuplot refuses an empty one). */
static void write_script(FILE *s, const series *loss, const series *lr, const series *acc) {
    fprintf(s, "set terminal pngcairo size 900,500 noenhanced\n"
               "set grid\nset xlabel 'step'\n");
    if (loss->points)
        fprintf(s, "set output 'loss.png'\nset title 'training loss'\n"
                   "plot 'loss.dat' using 1:2 with linespoints pointtype 7 pointsize 0.3 "
                   "title 'loss'\n");
    if (lr->points)
        fprintf(s, "set output 'lr.png'\nset title 'learning rate'\n"
                   "plot 'lr.dat' using 1:2 with lines title 'lr'\n");
    if (acc->points)
        fprintf(s, "set output 'accuracy.png'\nset title 'eval accuracy'\n"
                   "plot 'accuracy.dat' using 1:2 with linespoints title 'accuracy'\n");
}

/* Open plots/NAME for writing; NULL after a printed message. */
static FILE *open_in(const char *plots_dir, const char *name) {
    char path[GRAFT_FS_PATH_MAX];
    if (graft_fs_path_join(path, sizeof path, plots_dir, name) != GRAFT_OK) return NULL;
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "graft plot: %s: cannot write: %s\n", path, strerror(errno));
    return f;
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
    char metrics[GRAFT_FS_PATH_MAX], plots[GRAFT_FS_PATH_MAX];
    if (graft_fs_path_join(metrics, sizeof metrics, run, "metrics.jsonl") != GRAFT_OK ||
        graft_fs_path_join(plots, sizeof plots, run, "plots") != GRAFT_OK)
        return GRAFT_EXIT_BAD_INPUT;
    struct stat sb;
    if (stat(metrics, &sb) != 0) {
        fprintf(stderr, "graft plot: %s: cannot open: %s\n", metrics, strerror(errno));
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (mkdir(plots, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "graft plot: %s: cannot create: %s\n", plots, strerror(errno));
        return GRAFT_EXIT_FAILURE;
    }
    series loss = {open_in(plots, "loss.dat"), 0, 1}, lr = {open_in(plots, "lr.dat"), 0, 1},
           acc = {open_in(plots, "accuracy.dat"), 0, 1};
    FILE *script = open_in(plots, "plot.gp");
    int rc = loss.f && lr.f && acc.f && script ? GRAFT_EXIT_OK : GRAFT_EXIT_FAILURE;
    int lines = 0;
    if (rc == GRAFT_EXIT_OK && read_metrics(metrics, &loss, &lr, &lines) != 0)
        rc = GRAFT_EXIT_BAD_INPUT;
    if (rc == GRAFT_EXIT_OK && lines == 0) {
        fprintf(stderr, "graft plot: %s: no metrics lines yet\n", metrics);
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK) {
        read_evals(run, &acc);
        write_script(script, &loss, &lr, &acc);
    }
    FILE *files[] = {loss.f, lr.f, acc.f, script};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i] && fclose(files[i]) != 0 && rc == GRAFT_EXIT_OK) {
            fprintf(stderr, "graft plot: %s: cannot write plot files: %s\n", plots,
                    strerror(errno));
            rc = GRAFT_EXIT_FAILURE;
        }
    if (rc != GRAFT_EXIT_OK) return rc;
    if (run_gnuplot(plots) != 0) {
        fprintf(stderr, "graft plot: gnuplot failed on %s/plot.gp\n", plots);
        return GRAFT_EXIT_FAILURE;
    }
    printf("graft plot: wrote in %s:%s%s%s%s\n", plots, loss.points ? " loss.png" : "",
           lr.points ? " lr.png" : "", acc.points ? " accuracy.png" : "",
           loss.points ? "" : " (no finite loss to draw)");
    return GRAFT_EXIT_OK;
}
