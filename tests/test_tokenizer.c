/* Tests for runtime/data/tokenizer: the bytes tokenizer's round trip; GPT-2's BPE on
 * fixed strings whose ids come from the npm package gpt-3-encoder (written in below as
 * literals, so the test needs no node); encoder.py's merge order on a tiny vocabulary
 * built here; invalid UTF-8; long pieces; bad encoder.json / vocab.bpe files (one log
 * line naming the file); throughput on fortune files; and, when GRAFT_TOKENIZER_REF
 * names a JSON file of [{"text", "ids"}] (tests/e2e_tokenizer.sh makes one with node),
 * every text in it. The GPT-2 files come from scripts/deps.sh: without them the GPT-2
 * tests fail, naming the folder. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/data/tokenizer.h"

static char g_dir[256];         /* per-run temp directory */
static graft_tokenizer *g_gpt2; /* loaded on first use, freed by the group teardown */

/* The real GPT-2 tokenizer from the default folder (or $GRAFT_GPT2_DIR); fails the test
 * with a message saying how to get the files when they are missing. */
static graft_tokenizer *gpt2(void) {
    if (g_gpt2) return g_gpt2;
    graft_status s = graft_tokenizer_new(&g_gpt2, "gpt2", NULL);
    if (s != GRAFT_OK) {
        const char *dir = getenv("GRAFT_GPT2_DIR");
        fail_msg("cannot load GPT-2's encoder.json/vocab.bpe from %s (%s): run scripts/deps.sh",
                 dir && *dir ? dir : GRAFT_GPT2_DIR_DEFAULT, graft_status_str(s));
    }
    return g_gpt2;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Whole file into a malloc'd buffer (NUL-terminated); NULL when it cannot be read. */
static char *read_text(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            assert_non_null(grown);
            buf = grown;
        }
    }
    fclose(fp);
    buf[len] = '\0';
    *n = len;
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Encode text into a fresh array; *n gets the count. */
static int32_t *encode_all(graft_tokenizer *t, const char *text, size_t len, size_t *n) {
    int32_t *ids = NULL;
    size_t cap = 0;
    *n = 0;
    assert_int_equal(graft_tokenizer_encode(t, text, len, &ids, n, &cap), GRAFT_OK);
    assert_true(*n <= cap);
    return ids;
}

/* Decode with graft_tokenizer_token_bytes (exact even with NUL bytes). */
static char *decode_exact(const graft_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        assert_non_null(graft_tokenizer_token_bytes(t, ids[i], &l));
        total += l;
    }
    char *out = malloc(total + 1);
    assert_non_null(out);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const unsigned char *b = graft_tokenizer_token_bytes(t, ids[i], &l);
        memcpy(out + pos, b, l);
        pos += l;
    }
    out[pos] = '\0';
    *len = pos;
    return out;
}

/* Compare ids with the reference; on a difference print where and both sides around it.
 * Returns 1 when equal. */
static int same_ids(const graft_tokenizer *t, const char *label, const int32_t *got, size_t n_got,
                    const int32_t *want, size_t n_want) {
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i])
        i++;
    if (i == n_got && i == n_want) return 1;
    printf("  MISMATCH %s: %zu ids, reference %zu; first difference at id %zu\n", label, n_got,
           n_want, i);
    size_t from = i >= 3 ? i - 3 : 0;
    for (int side = 0; side < 2; side++) {
        const int32_t *ids = side ? want : got;
        size_t n = side ? n_want : n_got;
        printf("    %-9s", side ? "reference" : "graft");
        for (size_t k = from; k < n && k < i + 6; k++) {
            size_t l;
            const unsigned char *b = graft_tokenizer_token_bytes(t, ids[k], &l);
            printf(" %d\"", ids[k]);
            for (size_t c = 0; b && c < l; c++)
                printf(b[c] >= 0x20 && b[c] < 0x7f ? "%c" : "\\x%02x", b[c]);
            printf("\"");
        }
        printf("\n");
    }
    return 0;
}

/* ---- bytes ----------------------------------------------------------------------------- */

static void test_bytes_round_trip(void **state) {
    (void)state;
    graft_tokenizer *t = NULL;
    assert_int_equal(graft_tokenizer_new(&t, "bytes", NULL), GRAFT_OK);
    assert_int_equal(graft_tokenizer_vocab_size(t), 256);
    assert_int_equal(graft_tokenizer_eot(t), -1);
    unsigned char text[256 + 1000];
    for (int b = 0; b < 256; b++)
        text[b] = (unsigned char)b;
    graft_rng r;
    graft_rng_seed(&r, 11);
    for (int i = 0; i < 1000; i++)
        text[256 + i] = (unsigned char)(graft_rng_uniform(&r) * 256);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    /* Two appends into one array: the second continues after the first. */
    assert_int_equal(graft_tokenizer_encode(t, (const char *)text, 256, &ids, &n, &cap), GRAFT_OK);
    assert_int_equal(graft_tokenizer_encode(t, (const char *)text + 256, 1000, &ids, &n, &cap),
                     GRAFT_OK);
    assert_int_equal(n, sizeof text);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], text[i]);
    size_t len;
    char *back = decode_exact(t, ids, n, &len);
    assert_int_equal(len, sizeof text);
    assert_memory_equal(back, text, len);
    free(back);
    /* decode() stops at NUL only for the reader of the string: "Hi!" survives whole. */
    const int32_t hi[3] = {'H', 'i', '!'};
    char *s = graft_tokenizer_decode(t, hi, 3);
    assert_string_equal(s, "Hi!");
    free(s);
    const int32_t bad[2] = {'a', 256};
    assert_null(graft_tokenizer_decode(t, bad, 2));
    size_t l = 99;
    assert_null(graft_tokenizer_token_bytes(t, -1, &l));
    assert_int_equal(l, 0);
    /* Empty text appends nothing, even with a NULL text. */
    assert_int_equal(graft_tokenizer_encode(t, NULL, 0, &ids, &n, &cap), GRAFT_OK);
    assert_int_equal(n, sizeof text);
    free(ids);
    graft_tokenizer_free(t);
    graft_tokenizer_free(NULL);
}

/* ---- GPT-2 against the npm package ---------------------------------------------------- */

typedef struct {
    const char *text;
    const int32_t *ids;
    size_t n;
} ref_case;

/* clang-format off */
/* Generated by: node tests/tools/gpt2_reference.js --c --json tests/tools/gpt2_cases.json
 * (the last two texts are fortunes from /usr/share/games/fortunes/literature). */
static const ref_case gpt2_cases[] = {
    {"Hello world",
     (const int32_t[]){15496, 995}, 2},
    {"The quick brown fox jumps over the lazy dog.",
     (const int32_t[]){464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}, 10},
    {"",
     NULL, 0},
    {" ",
     (const int32_t[]){220}, 1},
    {"   ",
     (const int32_t[]){220, 220, 220}, 3},
    {"  leading spaces",
     (const int32_t[]){220, 3756, 9029}, 3},
    {"trailing spaces   ",
     (const int32_t[]){9535, 4386, 9029, 220, 220, 220}, 6},
    {"multiple   spaces   inside  words",
     (const int32_t[]){48101, 220, 220, 9029, 220, 220, 2641, 220, 2456}, 9},
    {" x  y   z    ",
     (const int32_t[]){2124, 220, 331, 220, 220, 1976, 220, 220, 220, 220}, 10},
    {"line one\nline two\n\nline four\n",
     (const int32_t[]){1370, 530, 198, 1370, 734, 198, 198, 1370, 1440, 198}, 10},
    {"\n\n\nstarts with newlines",
     (const int32_t[]){628, 198, 301, 5889, 351, 649, 6615}, 7},
    {"\ttabbed\tcolumns\t\t\n\t \n  \tmixed",
     (const int32_t[]){197, 8658, 3077, 197, 28665, 82, 197, 197, 198, 197, 220, 198, 220, 220, 197, 76, 2966}, 17},
    {"windows\r\nline endings\r\n\r\n",
     (const int32_t[]){28457, 201, 198, 1370, 38168, 201, 198, 201, 198}, 9},
    {"form\x0c" "feed and vertical\x0btab",
     (const int32_t[]){687, 200, 12363, 290, 11723, 199, 8658}, 7},
    {"it's don't they're we've I'm you'll he'd",
     (const int32_t[]){270, 338, 836, 470, 484, 821, 356, 1053, 314, 1101, 345, 1183, 339, 1549}, 14},
    {"IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D",
     (const int32_t[]){2043, 6, 50, 23917, 6, 51, 33302, 6, 2200, 12887, 6, 6089, 314, 6, 44, 7013, 6, 3069, 11179, 6, 35}, 21},
    {"John'S book, 'twas 'sup ''s 'Re 'd'm 'll' 've't",
     (const int32_t[]){7554, 6, 50, 1492, 11, 705, 4246, 292, 705, 37330, 10148, 82, 705, 3041, 705, 67, 1101, 705, 297, 6, 705, 303, 470}, 23},
    {"In 2023, 3.14159 and 1,000,000 people; 007 agents; 12345678901234567890",
     (const int32_t[]){818, 1160, 1954, 11, 513, 13, 1415, 19707, 290, 352, 11, 830, 11, 830, 661, 26, 3571, 22, 6554, 26, 17031, 2231, 3134, 4531, 486, 1954, 2231, 30924, 3829}, 29},
    {"x1 y22 333z 4th 5.5% $6.50 -7 +8e-9 0x1F",
     (const int32_t[]){87, 16, 331, 1828, 23460, 89, 604, 400, 642, 13, 20, 4, 720, 21, 13, 1120, 532, 22, 1343, 23, 68, 12, 24, 657, 87, 16, 37}, 27},
    {"Wait... what?!? (yes) -- [no] {maybe}; \"quoted\" <tag/> ***bold*** ~~~ @#$%^&*",
     (const int32_t[]){21321, 986, 644, 12248, 30, 357, 8505, 8, 1377, 685, 3919, 60, 1391, 25991, 19629, 366, 421, 5191, 1, 1279, 12985, 15913, 17202, 36575, 8162, 220, 4907, 93, 2488, 29953, 4, 61, 5, 9}, 34},
    {"!!!???... ,,, ;;; ::: ___ === --- +++ ||| ///",
     (const int32_t[]){10185, 28358, 986, 837, 9832, 2162, 7665, 1058, 3712, 46444, 24844, 11420, 49954, 8614, 91, 34013}, 16},
    {"caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 \xc3\x85ngstr\xc3\xb6m fa\xc3\xa7" "ade S\xc3\xa3o Paulo \xc2\xbfQu\xc3\xa9? \xc2\xa1Ol\xc3\xa9!",
     (const int32_t[]){66, 1878, 2634, 41492, 40560, 16345, 2634, 6184, 227, 782, 2536, 9101, 76, 24685, 16175, 671, 311, 28749, 34410, 1587, 123, 4507, 2634, 30, 1587, 94, 30098, 2634, 0}, 29},
    {"\xc2\xbd \xc2\xbc \xc2\xb2\xc2\xb3 \xc2\xb5 \xc3\x9f \xc3\xbf \xc2\xaa\xc2\xba \xc2\xa7 \xc2\xb0" "C \xc2\xab\xc2\xbb \xc3\x97\xc3\xb7",
     (const int32_t[]){23141, 1587, 120, 1587, 110, 126, 111, 31324, 6184, 253, 6184, 123, 1587, 103, 36165, 8460, 22074, 34, 21110, 17730, 13958, 127, 115}, 23},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! \xd0\xa1\xd1\x8a\xd0\xb5\xd1\x88\xd1\x8c \xd0\xb6\xd0\xb5 \xd0\xb5\xd1\x89\xd1\x91 \xd1\x8d\xd1\x82\xd0\xb8\xd1\x85 \xd0\xbc\xd1\x8f\xd0\xb3\xd0\xba\xd0\xb8\xd1\x85 \xd1\x84\xd1\x80\xd0\xb0\xd0\xbd\xd1\x86\xd1\x83\xd0\xb7\xd1\x81\xd0\xba\xd0\xb8\xd1\x85 \xd0\xb1\xd1\x83\xd0\xbb\xd0\xbe\xd0\xba.",
     (const int32_t[]){140, 253, 21169, 18849, 38857, 16843, 20375, 11, 12466, 120, 18849, 21169, 0, 12466, 94, 141, 232, 16843, 141, 230, 45367, 12466, 114, 16843, 12466, 113, 141, 231, 141, 239, 220, 141, 235, 20375, 18849, 141, 227, 12466, 120, 40623, 140, 111, 31583, 18849, 141, 227, 220, 141, 226, 21169, 16142, 22177, 141, 228, 35072, 140, 115, 21727, 31583, 18849, 141, 227, 12466, 109, 35072, 30143, 25443, 118, 13}, 69},
    {"\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5, \xce\xb1\xce\xb2\xce\xb3\xce\xb4\xce\xb5 \xce\x91\xce\x92\xce\x93\xce\x94\xce\x95 \xcf\x80\xe2\x89\x88" "3.14",
     (const int32_t[]){138, 248, 17394, 39377, 138, 115, 34703, 138, 255, 33643, 17394, 7377, 118, 139, 234, 38392, 34703, 30950, 11, 26367, 26638, 42063, 138, 112, 30950, 7377, 239, 138, 240, 138, 241, 138, 242, 138, 243, 18074, 222, 35705, 230, 18, 13, 1415}, 42},
    {"\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x80\x81\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8",
     (const int32_t[]){19526, 254, 25001, 121, 171, 120, 234, 10310, 244, 45911, 234, 16764, 33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302, 23513, 47991, 250, 166, 113, 255, 168, 244, 112, 220, 169, 227, 235, 168, 232, 97, 169, 232, 116}, 41},
    {"I \xe2\x9d\xa4\xef\xb8\x8f emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x87\xa9\xf0\x9f\x87\xaa family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7!",
     (const int32_t[]){40, 43074, 97, 37929, 44805, 30325, 222, 41840, 235, 8582, 237, 121, 12520, 229, 102, 8582, 229, 103, 1641, 50169, 101, 447, 235, 41840, 102, 447, 235, 41840, 100, 0}, 30},
    {"Arabic \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd9\xa1\xd9\xa2\xd9\xa3 and Devanagari \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xe0\xa5\xa7\xe0\xa5\xa8\xe0\xa5\xa9 \xe2\x85\xa7 \xe2\x91\xa0",
     (const int32_t[]){31602, 291, 47048, 26897, 148, 255, 39848, 12919, 18923, 94, 149, 95, 149, 96, 290, 6245, 272, 363, 2743, 28225, 101, 11976, 106, 11976, 116, 24231, 235, 11976, 97, 24231, 229, 220, 24231, 100, 24231, 101, 24231, 102, 2343, 227, 100, 2343, 239, 254}, 44},
    {"nbsp\xc2\xa0" "between ideographic\xe3\x80\x80space em\xe2\x80\x83 space\xe2\x80\x83\xe2\x80\x83x thin\xe2\x80\x89y",
     (const int32_t[]){77, 24145, 1849, 23395, 1405, 6826, 5099, 222, 13200, 795, 447, 225, 2272, 447, 225, 447, 225, 87, 7888, 447, 231, 88}, 22},
    {"<|endoftext|> is plain text here",
     (const int32_t[]){27, 91, 437, 1659, 5239, 91, 29, 318, 8631, 2420, 994}, 11},
    {"def f(x):\n    return x**2  # square\n\nprint(f(3))\n",
     (const int32_t[]){4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 1174, 17, 220, 1303, 6616, 198, 198, 4798, 7, 69, 7, 18, 4008, 198}, 25},
    {"https://example.com/path?q=1&r=2#frag mail@example.org",
     (const int32_t[]){5450, 1378, 20688, 13, 785, 14, 6978, 30, 80, 28, 16, 5, 81, 28, 17, 2, 8310, 363, 6920, 31, 20688, 13, 2398}, 23},
    {"{\"a\": [1, 2, 3], \"b\": {\"c\": null}},{\"d\":\"e\"}",
     (const int32_t[]){4895, 64, 1298, 685, 16, 11, 362, 11, 513, 4357, 366, 65, 1298, 19779, 66, 1298, 9242, 92, 8762, 67, 2404, 68, 20662}, 23},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     (const int32_t[]){24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 7252}, 13},
    {"========================================================================================================================================================================================================",
     (const int32_t[]){23926, 23926, 23926, 2559}, 4},
    {"                                        x",
     (const int32_t[]){220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 2124}, 40},
    {"\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
     (const int32_t[]){628, 628, 628, 628, 628, 628, 628, 628, 628, 628, 628, 628, 628, 628, 628}, 15},
    {"kemubcrdlsbqgbcnnchcrnbsdhuusbssmbhbrejnerdsjrvfdssugldrwcsbtgpvrnykosoljhzfwyhcsjqpkxojtcdqnfykepnbvcyrszkkwltpszoccipwvcbxwjusvojwmvlaolftdpbgyjexhmmpcfomrienriwnlvmhecfehvhapsfijaenrltskewqtuvxboyvzrmmmmdpumbgcgofdktbdaserdltacgtmeuiltlpddpoppjcedxkxipwfqagqlewrayqjucwiqlflyhrryqkuhtzzygzhmxzhgqp",
     (const int32_t[]){365, 76, 549, 66, 4372, 7278, 65, 80, 70, 15630, 20471, 354, 6098, 77, 1443, 67, 13415, 43319, 824, 2022, 71, 4679, 73, 1008, 9310, 73, 81, 85, 16344, 824, 1018, 335, 81, 12712, 18347, 31197, 37020, 3281, 46150, 349, 73, 32179, 69, 21768, 71, 6359, 73, 80, 79, 74, 87, 13210, 83, 10210, 80, 77, 24928, 365, 21999, 65, 85, 948, 3808, 89, 28747, 86, 2528, 862, 89, 13966, 541, 86, 85, 21101, 87, 86, 73, 385, 13038, 73, 26377, 85, 5031, 349, 701, 26059, 65, 1360, 73, 1069, 71, 3020, 79, 12993, 296, 15355, 380, 675, 6780, 76, 258, 66, 5036, 71, 85, 2772, 69, 34655, 268, 45895, 912, 365, 86, 39568, 14795, 87, 7081, 85, 89, 81, 40133, 26059, 2178, 36484, 70, 1659, 67, 21841, 17457, 6005, 67, 2528, 330, 13655, 1326, 21955, 34431, 1860, 7501, 381, 73, 771, 87, 74, 87, 541, 86, 69, 80, 363, 80, 293, 86, 2433, 80, 73, 1229, 86, 25011, 1652, 306, 11840, 563, 80, 23063, 4352, 31570, 70, 23548, 36802, 23548, 70, 80, 79}, 174},
    {"999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999",
     (const int32_t[]){24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 24214, 2079}, 38},
    {"Gone With The Wind LITE(tm)\n\t-- by Margaret Mitchell\n\n\tA woman only likes men she can't have and the South gets trashed.\n\nGift of the Magi LITE(tm)\n\t-- by O. Henry\n\n\tA husband and wife forget to register their gift preferences.\n\nThe Old Man and the Sea LITE(tm)\n\t-- by Ernest Hemingway\n\n\tAn old man goes fishing, but doesn't have much luck.\n",
     (const int32_t[]){38, 505, 2080, 383, 3086, 406, 12709, 7, 17209, 8, 198, 197, 438, 416, 19579, 14526, 628, 197, 32, 2415, 691, 7832, 1450, 673, 460, 470, 423, 290, 262, 2520, 3011, 491, 5263, 13, 198, 198, 38, 2135, 286, 262, 2944, 72, 406, 12709, 7, 17209, 8, 198, 197, 438, 416, 440, 13, 8616, 628, 197, 32, 5229, 290, 3656, 6044, 284, 7881, 511, 6979, 15387, 13, 198, 198, 464, 5706, 1869, 290, 262, 6896, 406, 12709, 7, 17209, 8, 198, 197, 438, 416, 34705, 15617, 278, 1014, 628, 197, 2025, 1468, 582, 2925, 12478, 11, 475, 1595, 470, 423, 881, 8458, 13, 198}, 104},
    {"I reverently believe that the maker who made us all  makes everything in New\nEngland, but the weather.  I don't know who makes that, but I think it must be\nraw apprentices in the weather-clerks factory who experiment and learn how, in\nNew England, for board and clothes, and then are promoted to make weather for\ncountries that require a good article, and will take their custom elsewhere\nif they don't get it.\n\t\t-- Mark Twain\n",
     (const int32_t[]){40, 2697, 1156, 306, 1975, 326, 262, 16009, 508, 925, 514, 477, 220, 1838, 2279, 287, 968, 198, 39163, 11, 475, 262, 6193, 13, 220, 314, 836, 470, 760, 508, 1838, 326, 11, 475, 314, 892, 340, 1276, 307, 198, 1831, 38523, 287, 262, 6193, 12, 22902, 591, 8860, 508, 6306, 290, 2193, 703, 11, 287, 198, 3791, 4492, 11, 329, 3096, 290, 8242, 11, 290, 788, 389, 13722, 284, 787, 6193, 329, 198, 9127, 1678, 326, 2421, 257, 922, 2708, 11, 290, 481, 1011, 511, 2183, 8057, 198, 361, 484, 836, 470, 651, 340, 13, 198, 197, 197, 438, 2940, 49824, 198}, 103},
};
/* clang-format on */

static void test_gpt2_vocab(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    assert_int_equal(graft_tokenizer_vocab_size(t), 50257);
    assert_int_equal(graft_tokenizer_eot(t), 50256);
    size_t l;
    const unsigned char *b = graft_tokenizer_token_bytes(t, 50256, &l);
    assert_int_equal(l, 13);
    assert_memory_equal(b, "<|endoftext|>", 13);
    b = graft_tokenizer_token_bytes(t, 198, &l);
    assert_int_equal(l, 1);
    assert_int_equal(b[0], '\n');
    b = graft_tokenizer_token_bytes(t, 995, &l); /* " world" */
    assert_int_equal(l, 6);
    assert_memory_equal(b, " world", 6);
    assert_null(graft_tokenizer_token_bytes(t, 50257, &l));
}

static void test_gpt2_fixed_strings(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    size_t n_cases = sizeof gpt2_cases / sizeof gpt2_cases[0], bad = 0, tokens = 0;
    for (size_t c = 0; c < n_cases; c++) {
        const ref_case *rc = &gpt2_cases[c];
        size_t n, len = strlen(rc->text);
        int32_t *ids = encode_all(t, rc->text, len, &n);
        char label[64];
        int k = snprintf(label, sizeof label, "case %zu (\"", c);
        for (size_t i = 0; i < len && i < 20; i++)
            label[k++] = (unsigned char)rc->text[i] < 0x20 ? '.' : rc->text[i];
        snprintf(label + k, sizeof label - (size_t)k, "...\")");
        if (!same_ids(t, label, ids, n, rc->ids, rc->n)) bad++;
        tokens += n;
        char *back = graft_tokenizer_decode(t, ids, n);
        assert_non_null(back);
        assert_string_equal(back, rc->text);
        free(back);
        free(ids);
    }
    printf("  %zu strings, %zu tokens, %zu differ from gpt-3-encoder\n", n_cases, tokens, bad);
    assert_int_equal(bad, 0);
}

/* Encoding twice (the second time from the cache) and appending to one array gives the
 * same ids as a fresh tokenizer. */
static void test_gpt2_cache_and_append(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    const ref_case *rc = &gpt2_cases[sizeof gpt2_cases / sizeof gpt2_cases[0] - 1];
    size_t len = strlen(rc->text);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (int rep = 0; rep < 3; rep++)
        assert_int_equal(graft_tokenizer_encode(t, rc->text, len, &ids, &n, &cap), GRAFT_OK);
    assert_int_equal(n, 3 * rc->n);
    for (int rep = 0; rep < 3; rep++)
        assert_memory_equal(ids + (size_t)rep * rc->n, rc->ids, rc->n * sizeof(int32_t));
    free(ids);
}

/* Text that is not UTF-8 still round-trips byte for byte; an invalid byte is a piece
 * boundary like any character that is not a letter, number or space. */
static void test_gpt2_invalid_utf8(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): "b" split off to end the \x escape */
    const char *texts[] = {"a\xff"
                           "b",
                           "caf\xc3",
                           "\xc0\xaf overlong",
                           "\xed\xa0\x80 surrogate",
                           "\xf4\x90\x80\x80 too big",
                           "\xe2\x82 cut",
                           "x\x80\x80\x80y",
                           "nul\0inside"};
    size_t lens[] = {3, 4, 11, 13, 12, 6, 5, 10};
    for (size_t c = 0; c < sizeof texts / sizeof texts[0]; c++) {
        size_t n, len;
        int32_t *ids = encode_all(t, texts[c], lens[c], &n);
        char *back = decode_exact(t, ids, n, &len);
        assert_int_equal(len, lens[c]);
        assert_memory_equal(back, texts[c], len);
        free(back);
        free(ids);
    }
    /* "a\xff" "b" = "a" + the byte 0xff + "b". */
    size_t n;
    int32_t *ids = encode_all(t,
                              "a\xff"
                              "b",
                              3, &n);
    assert_int_equal(n, 3);
    size_t l;
    const unsigned char *b = graft_tokenizer_token_bytes(t, ids[1], &l);
    assert_int_equal(l, 1);
    assert_int_equal(b[0], 0xff);
    free(ids);
}

/* Pieces far longer than any cached word (one letter run of 200 kB, white space, digits)
 * round-trip, give the same ids whether encoded whole or as repeated halves where that
 * must hold, and stay fast (the merge loop is O(n log n)). */
static void test_gpt2_long_pieces(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    size_t big = 200000;
    char *text = malloc(big + 1);
    assert_non_null(text);
    graft_rng r;
    graft_rng_seed(&r, 3);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)('a' + (int)(graft_rng_uniform(&r) * 26));
    text[big] = '\0';
    double t0 = now_seconds();
    size_t n, len;
    int32_t *ids = encode_all(t, text, big, &n);
    double dt = now_seconds() - t0;
    char *back = decode_exact(t, ids, n, &len);
    assert_int_equal(len, big);
    assert_memory_equal(back, text, big);
    printf("  one 200000-letter piece: %zu tokens in %.3f s\n", n, dt);
    assert_true(dt < 10.0);
    free(back);
    free(ids);
    /* 100000 spaces then "x": the run minus one space, then " x". */
    memset(text, ' ', 100000);
    text[100000] = 'x';
    ids = encode_all(t, text, 100001, &n);
    back = decode_exact(t, ids, n, &len);
    assert_int_equal(len, 100001);
    assert_memory_equal(back, text, len);
    assert_int_equal(ids[n - 1], 2124); /* " x" */
    free(back);
    free(ids);
    free(text);
}

/* ---- a tiny vocabulary, written here: merge order and file errors ---------------------- */

/* GPT-2's printable spelling of byte b (bytes_to_unicode) as UTF-8 into out[4]. */
static void spell_byte(int b, char out[4]) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++) {
            int p = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
            k += !p;
        }
        cp = 256 + k;
    }
    memset(out, 0, 4);
    if (cp < 0x80)
        out[0] = (char)cp;
    else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
    }
}

/* In dir: encoder.json with the 256 bytes (id = byte), "xy" 256, "xyx" 257 and
 * "<|endoftext|>" 258 (edit = 0), or one damaged variant; vocab.bpe with text bpe. */
enum { ENC_OK, ENC_BAD_JSON, ENC_ARRAY, ENC_ID_RANGE, ENC_ID_TWICE, ENC_NO_BYTE, ENC_NO_EOT };
static void write_tiny_vocab(const char *dir, int edit, const char *bpe) {
    char path[512];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    if (edit == ENC_BAD_JSON)
        write_text(path, "{\"a\": 1,");
    else if (edit == ENC_ARRAY)
        write_text(path, "[1, 2, 3]");
    else {
        json_t *o = json_object();
        for (int b = 0; b < 256; b++) {
            char s[4];
            spell_byte(b, s);
            if (!(edit == ENC_NO_BYTE && b == 'q')) json_object_set_new(o, s, json_integer(b));
        }
        json_object_set_new(o, "xy", json_integer(edit == ENC_ID_RANGE ? 9999 : 256));
        json_object_set_new(o, "xyx", json_integer(edit == ENC_ID_TWICE ? 256 : 257));
        if (edit != ENC_NO_EOT) json_object_set_new(o, "<|endoftext|>", json_integer(258));
        if (edit == ENC_NO_BYTE) json_object_set_new(o, "qq", json_integer(113));
        assert_int_equal(json_dump_file(o, path, 0), 0);
        json_decref(o);
    }
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    if (bpe)
        write_text(path, bpe);
    else
        unlink(path);
}

/* encoder.py's bpe() merges every occurrence of the best pair before looking at new
 * pairs. With "xy x" ranked above "x y", "xyxy" is [xy, xy]: a merger that took the
 * new pair (xy, x) at once would give [xyx, y]. */
static void test_bpe_merge_rounds(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny", g_dir);
    write_tiny_vocab(dir, ENC_OK, "#version: 0.2\nxy x\nx y\n");
    graft_tokenizer *t = NULL;
    assert_int_equal(graft_tokenizer_new(&t, "gpt2", dir), GRAFT_OK);
    assert_int_equal(graft_tokenizer_vocab_size(t), 259);
    assert_int_equal(graft_tokenizer_eot(t), 258);
    size_t n;
    int32_t *ids = encode_all(t, "xyxy", 4, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 256);
    free(ids);
    ids = encode_all(t, "xyx yx", 6, &n); /* pieces "xyx", " yx" */
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], ' ');
    assert_int_equal(ids[2], 'y');
    assert_int_equal(ids[3], 'x');
    free(ids);
    graft_tokenizer_free(t);
    /* $GRAFT_GPT2_DIR is where dir = NULL looks. */
    setenv("GRAFT_GPT2_DIR", dir, 1);
    assert_int_equal(graft_tokenizer_new(&t, "gpt2", NULL), GRAFT_OK);
    unsetenv("GRAFT_GPT2_DIR");
    assert_int_equal(graft_tokenizer_vocab_size(t), 259);
    graft_tokenizer_free(t);
}

/* graft_tokenizer_new with stderr captured into log (NUL-terminated). */
static graft_status new_capturing(graft_tokenizer **t, const char *name, const char *dir, char *log,
                                  size_t cap) {
    char log_path[512];
    snprintf(log_path, sizeof log_path, "%s/stderr.txt", g_dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    graft_status s = graft_tokenizer_new(t, name, dir);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n = 0;
    char *text = read_text(log_path, &n);
    assert_non_null(text);
    if (n >= cap) n = cap - 1;
    memcpy(log, text, n);
    log[n] = '\0';
    free(text);
    return s;
}

/* Loading must fail with `want`, log one line that names `file` and contains `what`. */
static void expect_load_error(const char *dir, graft_status want, const char *file,
                              const char *what) {
    graft_tokenizer *t = (graft_tokenizer *)&t; /* must come back NULL */
    char log[4096];
    graft_status s = new_capturing(&t, "gpt2", dir, log, sizeof log);
    const char *nl = strchr(log, '\n');
    printf("  %-28s -> %s: %s", what, graft_status_str(s), log);
    assert_int_equal(s, want);
    assert_null(t);
    assert_non_null(nl);
    assert_true(nl[1] == '\0'); /* exactly one line */
    assert_non_null(strstr(log, file));
    assert_non_null(strstr(log, what));
}

static void test_load_errors(void **state) {
    (void)state;
    char dir[512], enc[600], bpe[600];
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    const char *good_bpe = "#version: 0.2\nxy x\nx y\n";
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nowhere", g_dir);
    expect_load_error(missing, GRAFT_ERR_IO, "nowhere/encoder.json", "No such file");
    write_tiny_vocab(dir, ENC_BAD_JSON, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "not valid JSON");
    write_tiny_vocab(dir, ENC_ARRAY, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "expected an object");
    write_tiny_vocab(dir, ENC_ID_RANGE, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "outside [0, 259)");
    write_tiny_vocab(dir, ENC_ID_TWICE, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "more than one token");
    write_tiny_vocab(dir, ENC_NO_BYTE, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "byte 0x71");
    write_tiny_vocab(dir, ENC_NO_EOT, good_bpe);
    expect_load_error(dir, GRAFT_ERR_FORMAT, enc, "<|endoftext|>");
    write_tiny_vocab(dir, ENC_OK, NULL);
    expect_load_error(dir, GRAFT_ERR_IO, bpe, "cannot open");
    write_tiny_vocab(dir, ENC_OK, "xy x\nx y\n");
    expect_load_error(dir, GRAFT_ERR_FORMAT, bpe, "#version");
    write_tiny_vocab(dir, ENC_OK, "#version: 0.2\nx y\nx q9\n");
    expect_load_error(dir, GRAFT_ERR_FORMAT, bpe, "vocab.bpe:3: token \"q9\"");
    write_tiny_vocab(dir, ENC_OK, "#version: 0.2\nxyz\n");
    expect_load_error(dir, GRAFT_ERR_FORMAT, bpe, "vocab.bpe:2: expected");
    write_tiny_vocab(dir, ENC_OK, "#version: 0.2\nx y z\n");
    expect_load_error(dir, GRAFT_ERR_FORMAT, bpe, "vocab.bpe:2: expected");
    graft_tokenizer *t = NULL;
    char log[1024];
    assert_int_equal(new_capturing(&t, "sentencepiece", NULL, log, sizeof log),
                     GRAFT_ERR_INVALID_ARG);
    assert_null(t);
    assert_non_null(strstr(log, "sentencepiece"));
}

/* ---- real text ------------------------------------------------------------------------ */

/* Throughput on the fortunes-min files (scripts/deps.sh installs them): first pass with
 * the pieces mostly new to the cache, second pass from the cache. */
static void test_gpt2_fortune_throughput(void **state) {
    (void)state;
    graft_tokenizer *t = gpt2();
    const char *files[] = {"/usr/share/games/fortunes/fortunes",
                           "/usr/share/games/fortunes/literature",
                           "/usr/share/games/fortunes/riddles"};
    size_t total = 0;
    char *texts[3];
    size_t lens[3];
    for (int f = 0; f < 3; f++) {
        texts[f] = read_text(files[f], &lens[f]);
        if (!texts[f])
            fail_msg("%s: cannot read (run scripts/deps.sh: package fortunes)", files[f]);
        total += lens[f];
    }
    for (int pass = 0; pass < 2; pass++) {
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        double t0 = now_seconds();
        for (int f = 0; f < 3; f++)
            assert_int_equal(graft_tokenizer_encode(t, texts[f], lens[f], &ids, &n, &cap),
                             GRAFT_OK);
        double dt = now_seconds() - t0;
        printf("  %s pass: %zu bytes -> %zu tokens (%.2f bytes/token) in %.4f s = %.1f MB/s\n",
               pass ? "cached" : "first", total, n, (double)total / (double)n, dt,
               (double)total / 1e6 / dt);
        size_t len;
        char *back = decode_exact(t, ids, n, &len);
        assert_int_equal(len, total);
        size_t off = 0;
        for (int f = 0; f < 3; f++) {
            assert_memory_equal(back + off, texts[f], lens[f]);
            off += lens[f];
        }
        free(back);
        free(ids);
    }
    for (int f = 0; f < 3; f++)
        free(texts[f]);
}

/* Every {"text", "ids"} in the JSON file $GRAFT_TOKENIZER_REF (made by
 * tests/e2e_tokenizer.sh with node and gpt-3-encoder); skipped when it is not set. */
static void test_gpt2_reference_file(void **state) {
    (void)state;
    const char *path = getenv("GRAFT_TOKENIZER_REF");
    if (!path || !*path) {
        printf("  GRAFT_TOKENIZER_REF not set (tests/e2e_tokenizer.sh sets it): skipped\n");
        skip();
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) fail_msg("%s:%d: %s", path, err.line, err.text);
    assert_true(json_is_array(root));
    graft_tokenizer *t = gpt2();
    size_t bad = 0, bytes = 0, tokens = 0;
    double seconds = 0;
    for (size_t k = 0; k < json_array_size(root); k++) {
        json_t *item = json_array_get(root, k);
        json_t *text = json_object_get(item, "text"), *want = json_object_get(item, "ids");
        assert_true(json_is_string(text) && json_is_array(want));
        size_t n_want = json_array_size(want);
        int32_t *want_ids = malloc((n_want + 1) * sizeof(int32_t));
        assert_non_null(want_ids);
        for (size_t i = 0; i < n_want; i++)
            want_ids[i] = (int32_t)json_integer_value(json_array_get(want, i));
        size_t len = json_string_length(text), n;
        double t0 = now_seconds();
        int32_t *ids = encode_all(t, json_string_value(text), len, &n);
        seconds += now_seconds() - t0;
        char label[64];
        snprintf(label, sizeof label, "text %zu (%zu bytes)", k, len);
        if (!same_ids(t, label, ids, n, want_ids, n_want)) bad++;
        bytes += len;
        tokens += n;
        free(ids);
        free(want_ids);
    }
    printf("  %s: %zu texts, %zu bytes, %zu tokens, %zu differ; encoded at %.1f MB/s\n", path,
           json_array_size(root), bytes, tokens, bad, (double)bytes / 1e6 / seconds);
    json_decref(root);
    assert_int_equal(bad, 0);
}

static int group_setup(void **state) {
    (void)state;
    return tu_make_temp_dir(g_dir, sizeof g_dir, "tokenizer");
}

static int group_teardown(void **state) {
    (void)state;
    graft_tokenizer_free(g_gpt2);
    g_gpt2 = NULL;
    return tu_remove_tree(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_round_trip),
        cmocka_unit_test(test_gpt2_vocab),
        cmocka_unit_test(test_gpt2_fixed_strings),
        cmocka_unit_test(test_gpt2_cache_and_append),
        cmocka_unit_test(test_gpt2_invalid_utf8),
        cmocka_unit_test(test_gpt2_long_pieces),
        cmocka_unit_test(test_bpe_merge_rounds),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_gpt2_fortune_throughput),
        cmocka_unit_test(test_gpt2_reference_file),
    };
    /* GRAFT_TEST_FILTER=name runs only the tests whose names match (e2e_tokenizer.sh). */
    const char *filter = getenv("GRAFT_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
