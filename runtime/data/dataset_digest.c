/* A digest of what a dataset holds, for the ranks of a job to compare before they
 * train: two ranks that opened different data (another directory under the same
 * relative path, a re-converted copy) must not train on a mix. */
#include <string.h>

#include <xxhash.h>

#include "dataset.h"

static void add(XXH64_state_t *h, const void *p, size_t n) { XXH64_update(h, p, n); }

static void add_int(XXH64_state_t *h, long long v) { add(h, &v, sizeof v); }

/* Strings with their terminating NUL, so "ab"+"c" and "a"+"bc" differ. */
static void add_str(XXH64_state_t *h, const char *s) {
    if (s)
        add(h, s, strlen(s) + 1);
    else
        add(h, "", 1);
}

uint64_t graft_dataset_digest(const graft_dataset *d) {
    XXH64_state_t *h = XXH64_createState();
    if (!h) return 0;
    XXH64_reset(h, 0);
    add_int(h, d->kind);
    add_int(h, d->channels);
    add_int(h, d->height);
    add_int(h, d->width);
    add_int(h, (long long)d->num_samples);
    add_int(h, (long long)d->num_tokens);
    add_int(h, d->num_classes);
    for (int c = 0; d->class_names && c < d->num_classes; c++)
        add_str(h, d->class_names[c]);
    add(h, d->mean, sizeof d->mean);
    add(h, d->std, sizeof d->std);
    add_int(h, d->vocab_size);
    add_str(h, d->tokenizer);
    add_int(h, d->seq_len);
    add_int(h, d->pad_id);
    /* the content itself: each shard's size and the xxh64 index.json records for it */
    add_int(h, d->n_shards);
    for (int i = 0; i < d->n_shards; i++) {
        add_str(h, d->shard_files[i]);
        add_int(h, (long long)(d->shard_first[i + 1] - d->shard_first[i]));
        add_int(h, (long long)d->shard_bytes[i]);
        add_str(h, d->shard_xxh64[i]);
    }
    uint64_t digest = XXH64_digest(h);
    XXH64_freeState(h);
    return digest;
}
