/* GPT-2 tokenizer files: encoder.json and vocab.bpe, then a text to encode with them:
 *   ENCODER_JSON\n--8<--\nVOCAB_BPE\n--8<--\nTEXT
 * written to a temp directory and loaded with graft_tokenizer_new("gpt2", dir). Files
 * that load must give a tokenizer whose ids are in the vocabulary and whose decoding
 * gives back the text's bytes exactly. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    const uint8_t *parts[3];
    size_t lens[3];
    int n_parts = fuzz_split(data, size, parts, lens, 3);
    if (n_parts < 2) return 0;
    const char *dir = fuzz_tmpdir();
    fuzz_write(dir, "encoder.json", parts[0], lens[0]);
    fuzz_write(dir, "vocab.bpe", parts[1], lens[1]);
    graft_tokenizer *t = NULL;
    graft_status s = graft_tokenizer_new(&t, "gpt2", dir);
    fuzz_check_memory(s, "graft_tokenizer_new");
    if (s != GRAFT_OK) return 0;
    const char *text = n_parts == 3 ? (const char *)parts[2] : "";
    size_t len = n_parts == 3 ? lens[2] : 0;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    fuzz_encode_in_vocab(t, text, len, &ids, &n, &cap);
    unsigned char *back = malloc(len + 1);
    size_t at = 0;
    if (!back) abort();
    for (size_t i = 0; i < n; i++) {
        size_t tlen = 0;
        const unsigned char *bytes = graft_tokenizer_token_bytes(t, ids[i], &tlen);
        if (!bytes || at + tlen > len)
            fuzz_fail("tokens hold more bytes than the text");
        memcpy(back + at, bytes, tlen);
        at += tlen;
    }
    if (at != len || (len && memcmp(back, text, len) != 0))
        fuzz_fail("decoding does not give back the text");
    free(back);
    free(ids);
    graft_tokenizer_free(t);
    return 0;
}
