/* A checkpoint root holding step-00000001/ with a fuzzed state.json, then the MANIFEST
 * and the root's "latest":
 *   STATE_JSON[\n--8<--\nMANIFEST[\n--8<--\nLATEST]]
 * An absent or empty MANIFEST part is replaced by a correct MANIFEST of the files (so
 * state.json's own checks are reached past the checksums); an absent "latest" names
 * step-00000001. The checkpoint is then verified, listed, verified as a root and looked
 * up for resuming: every call must return, whatever the files hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "runtime/ckpt/ckpt.h"
#include "runtime/io/fs.h"

#define STEP_NAME "step-00000001"

/* The files a save writes besides state.json and MANIFEST (contents are only checked
 * against the MANIFEST by these calls). */
static const char *const fixed_files[][2] = {
    {"config.yaml", "experiment: fuzz\n"},
    {"model.safetensors", "model bytes"},
    {"optim.safetensors", "optim bytes"},
};

/* A MANIFEST as the save writes it: "<xxh64> <bytes> <name>" sorted by name. */
static void write_manifest(const char *ckpt) {
    static const char *const names[] = {"config.yaml", "model.safetensors", "optim.safetensors",
                                        "state.json"};
    char text[1024];
    size_t used = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", ckpt, names[i]);
        uint64_t h = 0, bytes = 0;
        if (graft_fs_xxh64(path, &h, &bytes, GRAFT_LOG_QUIET) != GRAFT_OK) abort();
        used += (size_t)snprintf(text + used, sizeof text - used, "%016llx %llu %s\n",
                                 (unsigned long long)h, (unsigned long long)bytes, names[i]);
    }
    fuzz_write(ckpt, "MANIFEST", text, used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    char root[512], ckpt[600];
    snprintf(root, sizeof root, "%s/ckpt", fuzz_tmpdir());
    snprintf(ckpt, sizeof ckpt, "%s/" STEP_NAME, root);
    mkdir(root, 0755);
    mkdir(ckpt, 0755);
    for (size_t i = 0; i < sizeof fixed_files / sizeof fixed_files[0]; i++)
        fuzz_write(ckpt, fixed_files[i][0], fixed_files[i][1], strlen(fixed_files[i][1]));

    const uint8_t *parts[3];
    size_t lens[3];
    int n = fuzz_split(data, size, parts, lens, 3);
    fuzz_write(ckpt, "state.json", parts[0], lens[0]);
    if (n >= 2 && lens[1] > 0)
        fuzz_write(ckpt, "MANIFEST", parts[1], lens[1]);
    else
        write_manifest(ckpt);
    if (n >= 3)
        fuzz_write(root, "latest", parts[2], lens[2]);
    else
        fuzz_write(root, "latest", STEP_NAME "\n", strlen(STEP_NAME) + 1);

    graft_status verified = graft_ckpt_verify(ckpt);
    fuzz_check_memory(verified, "graft_ckpt_verify");
    char found[1024];
    graft_status resumed = graft_ckpt_find_resume(root, found, sizeof found);
    /* The one checkpoint is the one to resume from exactly when it verifies. */
    if ((verified == GRAFT_OK) != (resumed == GRAFT_OK)) fuzz_fail("verify and find_resume disagree");
    if (resumed == GRAFT_OK && strcmp(found, ckpt) != 0) fuzz_fail("find_resume chose another path");
    graft_ckpt_verify_root(root, devnull);
    graft_ckpt_list(root, devnull);
    return 0;
}
