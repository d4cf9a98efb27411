/* A dataset directory: index.json and its shards, one part each, written to a temp
 * directory as index.json, shard-00000.safetensors, shard-00001.safetensors, ...:
 *   INDEX_JSON\n--8<--\nSHARD0\n--8<--\nSHARD1
 * opened with checksum verification; a dataset that opens must be safe to read in
 * full through the accessors (every label a class, every token id in the vocabulary). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "runtime/data/dataset.h"

#define MAX_SHARDS 8
/* Samples read back per dataset: enough to cross shard boundaries, bounded in time. */
#define MAX_READ 4096

static void read_all(const graft_dataset *d) {
    if (d->kind == GRAFT_DATA_IMAGES) {
        size_t n = d->num_samples < MAX_READ ? d->num_samples : MAX_READ;
        float *x = malloc((size_t)d->channels * (size_t)d->height * (size_t)d->width * sizeof *x);
        if (!x) abort();
        /* cppcheck-suppress knownConditionTrueFalse ; n comes from the dataset (cppcheck 2.10 misreads) */
        for (size_t i = 0; i < n; i++) {
            int label = graft_dataset_image(d, i, x);
            if (label < 0 || label >= d->num_classes) fuzz_fail("image label out of range");
        }
        free(x);
    } else if (d->kind == GRAFT_DATA_SEQUENCES) {
        size_t n = d->num_samples < MAX_READ ? d->num_samples : MAX_READ;
        int32_t *ids = malloc((size_t)d->seq_len * sizeof *ids);
        if (!ids) abort();
        /* cppcheck-suppress knownConditionTrueFalse ; n comes from the dataset (cppcheck 2.10 misreads) */
        for (size_t i = 0; i < n; i++) {
            int label = graft_dataset_sequence(d, i, ids);
            if (label < 0 || label >= d->num_classes) fuzz_fail("sequence label out of range");
            for (int t = 0; t < d->seq_len; t++)
                if (ids[t] < 0 || ids[t] >= d->vocab_size) fuzz_fail("sequence token out of range");
        }
        free(ids);
    } else {
        size_t n = d->num_tokens < MAX_READ ? d->num_tokens : MAX_READ;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) abort();
        graft_dataset_tokens(d, d->num_tokens - n, n, ids);
        /* cppcheck-suppress knownConditionTrueFalse ; n comes from the dataset (cppcheck 2.10 misreads) */
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= d->vocab_size) fuzz_fail("token out of range");
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dataset", fuzz_tmpdir());
    mkdir(dir, 0755);
    const uint8_t *parts[1 + MAX_SHARDS];
    size_t lens[1 + MAX_SHARDS];
    int n = fuzz_split(data, size, parts, lens, 1 + MAX_SHARDS);
    fuzz_write(dir, "index.json", parts[0], lens[0]);
    for (int i = 0; i < MAX_SHARDS; i++) {
        char name[64];
        snprintf(name, sizeof name, "shard-%05d.safetensors", i);
        if (i + 1 < n)
            fuzz_write(dir, name, parts[i + 1], lens[i + 1]);
        else
            fuzz_remove(dir, name);
    }
    graft_dataset d;
    graft_status s = graft_dataset_open(&d, dir, 1);
    fuzz_check_memory(s, "graft_dataset_open");
    if (s != GRAFT_OK) return 0;
    read_all(&d);
    graft_dataset_close(&d);
    return 0;
}
