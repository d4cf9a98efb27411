/* BERT's WordPiece: a vocab.txt, then a text to encode with it:
 *   VOCAB_TXT\n--8<--\nTEXT
 * written to a temp directory and loaded with graft_tokenizer_new_vocab. A vocabulary
 * that loads must give ids inside it, a decodable encoding, and classification samples
 * of at most seq_len ids that start with [CLS] and end with [SEP]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    const uint8_t *parts[2];
    size_t lens[2];
    int n_parts = fuzz_split(data, size, parts, lens, 2);
    const char *dir = fuzz_tmpdir();
    fuzz_write(dir, "vocab.txt", parts[0], lens[0]);
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    graft_tokenizer *t = NULL;
    graft_status s = graft_tokenizer_new_vocab(&t, path);
    fuzz_check_memory(s, "graft_tokenizer_new_vocab");
    if (s != GRAFT_OK) return 0;
    const char *text = n_parts == 2 ? (const char *)parts[1] : "";
    size_t len = n_parts == 2 ? lens[1] : 0;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    fuzz_encode_in_vocab(t, text, len, &ids, &n, &cap);
    char *back = graft_tokenizer_decode(t, ids, n);
    if (!back) fuzz_fail("decode failed on ids encode gave");
    free(back);
    int seq_len = 2 + (int)(size % 40), truncated = 0;
    if (graft_tokenizer_encode_sample(t, text, len, seq_len, &ids, &n, &cap, &truncated) !=
        GRAFT_OK)
        fuzz_fail("encode_sample failed with a loaded vocabulary");
    if (n < 2 || n > (size_t)seq_len || ids[0] != graft_tokenizer_special(t, GRAFT_TOKEN_CLS) ||
        ids[n - 1] != graft_tokenizer_special(t, GRAFT_TOKEN_SEP))
        fuzz_fail("a sample is not [CLS] ... [SEP] within seq_len");
    free(ids);
    graft_tokenizer_free(t);
    return 0;
}
