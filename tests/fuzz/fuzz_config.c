/* The experiment config: YAML text (graft_config_load_text, the loader's in-memory
 * entry point) followed by KEY=VALUE overrides, one per part:
 *   experiment: x\n...\n--8<--\noptim.lr=3e-4\n--8<--\ndata={batch_size: 64}
 * then validation, and for a valid config the promises of graft_config_print: its text
 * loads back into an equal config with the same digest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/config/config.h"

#define MAX_PARTS 9

/* Print cfg, load the text into a fresh config: it must load and be equal. */
static void check_round_trip(const graft_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) abort();
    graft_status printed = graft_config_print(cfg, mem);
    if (fclose(mem) != 0) abort();
    if (printed != GRAFT_OK) fuzz_fail("graft_config_print failed on a valid config");
    graft_config again;
    graft_config_defaults(&again);
    if (graft_config_load_text(&again, "printed.yaml", text) != GRAFT_OK) {
        fprintf(stderr, "%s\n--- printed ---\n%s", graft_config_last_error(), text);
        fuzz_fail("the printed config does not load");
    }
    const char *diff = NULL;
    if (!graft_config_equal(cfg, &again, &diff)) {
        fprintf(stderr, "first different key: %s\n--- printed ---\n%s", diff, text);
        fuzz_fail("the printed config loads as a different config");
    }
    if (graft_config_validate(&again) != GRAFT_OK) fuzz_fail("the printed config does not validate");
    if (graft_config_digest(cfg) != graft_config_digest(&again))
        fuzz_fail("equal configs have different digests");
    graft_config_free(&again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    const uint8_t *parts[MAX_PARTS];
    size_t lens[MAX_PARTS];
    int n = fuzz_split(data, size, parts, lens, MAX_PARTS);
    graft_config cfg;
    graft_config_defaults(&cfg);
    char *yaml = fuzz_strndup(parts[0], lens[0]);
    fuzz_check_memory(graft_config_load_text(&cfg, "fuzz.yaml", yaml), "graft_config_load_text");
    free(yaml);
    for (int i = 1; i < n; i++) {
        char *assignment = fuzz_strndup(parts[i], lens[i]);
        fuzz_check_memory(graft_config_override(&cfg, assignment), "graft_config_override");
        free(assignment);
    }
    if (graft_config_validate(&cfg) == GRAFT_OK) check_round_trip(&cfg);
    graft_config_free(&cfg);
    return 0;
}
