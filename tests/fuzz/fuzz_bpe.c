/* GPT-2 BPE encoding of arbitrary bytes with the real vocabulary (the files scripts/deps.sh
 * installs; GRAFT_GPT2_DIR overrides). Any bytes must encode to ids that decode back to
 * exactly those bytes, and encoding again (now from the tokenizer's piece cache) must
 * give the same ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/core/log.h"
#include "runtime/data/tokenizer.h"

static graft_tokenizer *tokenizer(void) {
    static graft_tokenizer *t;
    if (!t && graft_tokenizer_new(&t, "gpt2", NULL) != GRAFT_OK) {
        fprintf(stderr, "fuzz_bpe: %s (scripts/deps.sh installs the GPT-2 files)\n",
                graft_log_last_error());
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    graft_tokenizer *t = tokenizer();
    int32_t *ids = NULL, *again = NULL;
    size_t n = 0, cap = 0, n2 = 0, cap2 = 0;
    if (graft_tokenizer_encode(t, (const char *)data, size, &ids, &n, &cap) != GRAFT_OK ||
        graft_tokenizer_encode(t, (const char *)data, size, &again, &n2, &cap2) != GRAFT_OK)
        fuzz_fail("encode failed");
    if (n != n2 || (n && memcmp(ids, again, n * sizeof *ids) != 0))
        fuzz_fail("encoding the same bytes twice gave different ids");
    if (n > size) fuzz_fail("more ids than bytes");
    unsigned char *back = malloc(size + 1);
    if (!back) abort();
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const unsigned char *bytes = graft_tokenizer_token_bytes(t, ids[i], &len);
        if (!bytes || at + len > size) fuzz_fail("tokens hold more bytes than the input");
        memcpy(back + at, bytes, len);
        at += len;
    }
    if (at != size || (size && memcmp(back, data, size) != 0))
        fuzz_fail("decoding does not give back the input");
    if (!memchr(data, '\0', size)) { /* graft_tokenizer_decode: text without NULs */
        char *text = graft_tokenizer_decode(t, ids, n);
        if (!text || strlen(text) != size || memcmp(text, data, size) != 0)
            fuzz_fail("graft_tokenizer_decode does not give back the input");
        free(text);
    }
    free(back);
    free(ids);
    free(again);
    return 0;
}
