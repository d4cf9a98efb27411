/* graft predict: a trained classifier's top classes for image files or texts. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "runtime/core/escape.h"
#include "runtime/io/fs.h"
#include "runtime/train/train.h"

/* --json OUT must be writable as a file: checked before anything is predicted. */
static int check_json_path(const char *path) {
    struct stat sb;
    char parent[GRAFT_FS_PATH_MAX], text[1024];
    graft_escape(text, sizeof text, path);
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "graft predict: --json %s: exists and is not a regular file\n", text);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (!graft_fs_parent(parent, sizeof parent, path) || stat(parent, &sb) != 0 ||
        !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "graft predict: --json %s: its directory does not exist\n", text);
        return GRAFT_EXIT_BAD_INPUT;
    }
    return GRAFT_EXIT_OK;
}

int cmd_predict(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
        printf(
            "usage: graft predict CONFIG.yaml --weights FILE.safetensors [--top-k K] [--json OUT]\n"
            "                     [--text-field F] [key=value ...] [--] INPUT...\n"
            "A classifier's most probable classes for each input, one line each:\n"
            "  INPUT: class probability, class probability, ...\n"
            "Inputs are prepared as the config's data.train set was: image files (JPEG, PNG)\n"
            "decoded, resized and normalised with the size and values stored in that dataset;\n"
            "for text, each non-empty line of a file (\"-\": standard input), or the text field\n"
            "of each record of a .jsonl or .csv file, tokenized with the dataset's tokenizer.\n"
            "An input that cannot be read gets one error line and the others go on; the exit\n"
            "status is then 2. Arguments with '=' are config overrides: put such file names\n"
            "after \"--\".\n\n"
            "options:\n"
            "  --weights FILE   the classifier's weights (required)\n"
            "  --top-k K        classes per input (default 5, at most the number of classes)\n"
            "  --json OUT       also write every prediction (or its error) to OUT as JSON\n"
            "  --text-field F   the text's field in .jsonl and .csv inputs (default text)\n");
        return GRAFT_EXIT_OK;
    }
    graft_config cfg;
    graft_predict_options o = {.text_field = "text"};
    int n_inputs = 0;
    cli_option opts[] = {
        {"weights", CLI_STRING, &o.weights, "the classifier's weights", 0},
        {"top-k", CLI_INT, &o.top_k, "classes per input", 1},
        {"json", CLI_STRING, &o.json_path, "write the predictions here", 0},
        {"text-field", CLI_STRING, &o.text_field, "the text's field of .jsonl/.csv inputs", 0}};
    const cli_config_args args = {opts, sizeof opts / sizeof opts[0], 0, &n_inputs};
    int rc = cli_load_config("predict", &cfg, argc, argv, &args);
    if (rc == GRAFT_EXIT_OK && !o.weights) {
        fprintf(stderr, "graft predict: --weights FILE is required\n");
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK && n_inputs == 0) {
        fprintf(stderr, "graft predict: no inputs: give image or text files after the config "
                        "(see graft predict --help)\n");
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK && o.json_path) rc = check_json_path(o.json_path);
    if (rc == GRAFT_EXIT_OK) {
        o.inputs = (const char *const *)(argv + 3);
        o.n_inputs = n_inputs;
        size_t predicted = 0, failed = 0;
        rc = cli_exit_status(graft_predict(&cfg, &o, &predicted, &failed));
        if (rc == GRAFT_EXIT_OK && failed) {
            fprintf(stderr, "graft predict: %zu of %zu inputs could not be predicted\n", failed,
                    predicted + failed);
            rc = GRAFT_EXIT_BAD_INPUT;
        }
    }
    graft_config_free(&cfg);
    return rc;
}
