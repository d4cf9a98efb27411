/* Tests for runtime/io/safetensors: fp16/bf16 conversions against independent references,
 * write/read round trips of every dtype, metadata, byte-identical saves, atomic writes
 * that fail cleanly, ~30 malformed files that must each give GRAFT_ERR_FORMAT with one
 * log line, and a cross-check of a graft-written file by a stdlib-only Python reader. */
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/io/safetensors.h"

static char g_dir[256]; /* per-run temp directory, made in the group setup */

/* "<temp dir>/<name>" into buf. */
static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

/* Float bits and back, for exact comparisons. */
static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Write a whole file (asserts on failure). */
static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n > 0) assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* Whole file into a malloc'd buffer; *n gets its size. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size >= 0);
    rewind(fp);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *n = (size_t)size;
    return buf;
}

/* A safetensors file by hand: declared header length, header bytes, then data_len
 * bytes of data (0, 1, 2, ...). */
static void write_st_raw(const char *path, uint64_t declared_len, const char *header,
                         size_t header_len, size_t data_len) {
    size_t total = 8 + header_len + data_len;
    unsigned char *buf = malloc(total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(declared_len >> (8 * i));
    memcpy(buf + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + header_len + i] = (unsigned char)i;
    write_bytes(path, buf, total);
    free(buf);
}

/* graft_st_open with stderr captured into log (NUL-terminated). */
static graft_status open_capturing(graft_st_file *f, const char *path, char *log, size_t cap) {
    char log_path[1024];
    tmp_path(log_path, sizeof log_path, "stderr.txt");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    graft_status s = graft_st_open(f, path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n = 0;
    unsigned char *text = read_bytes(log_path, &n);
    if (n >= cap) n = cap - 1;
    memcpy(log, text, n);
    log[n] = '\0';
    free(text);
    return s;
}

/* Opening `path` must fail with GRAFT_ERR_FORMAT, log exactly one line naming the file and
 * containing `want`, and leave the struct zeroed. */
static void expect_format_error(const char *path, const char *want) {
    graft_st_file f;
    memset(&f, 0xab, sizeof f);
    char log[4096];
    graft_status s = open_capturing(&f, path, log, sizeof log);
    printf("  %s", log);
    assert_int_equal(s, GRAFT_ERR_FORMAT);
    assert_null(f.map);
    assert_null(f.tensors);
    assert_null(f.path);
    assert_null(f.meta_keys);
    assert_int_equal(f.n_tensors, 0);
    int lines = 0;
    for (const char *c = log; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, path));
    if (!strstr(log, want)) printf("  expected the message to contain: %s\n", want);
    assert_non_null(strstr(log, want));
    graft_st_close(&f); /* safe on a failed struct */
}

/* A file whose header text is `header` (declared length = its length) plus data_len bytes. */
static void expect_bad_header(const char *file, const char *header, size_t data_len,
                              const char *want) {
    char path[1024];
    tmp_path(path, sizeof path, file);
    write_st_raw(path, strlen(header), header, strlen(header), data_len);
    expect_format_error(path, want);
}

/* One temp directory for the whole run, removed afterwards. */
static int group_setup(void **state) {
    return tu_make_temp_dir(g_dir, sizeof g_dir, "safetensors");
}

static int group_teardown(void **state) {
    return tu_remove_tree(g_dir);
}

/* ---- dtypes and scalar conversions -------------------------------------------------------- */

/* Names and sizes of every dtype, and parsing of their names. */
static void test_dtype_table(void **state) {
    const char *names[] = {"F32", "F16", "BF16", "I64", "I32", "U8", "U16"};
    const size_t sizes[] = {4, 2, 2, 8, 4, 1, 2};
    for (int d = 0; d < GRAFT_DTYPE_COUNT; d++) {
        assert_string_equal(graft_dtype_name((graft_dtype)d), names[d]);
        assert_int_equal(graft_dtype_size((graft_dtype)d), sizes[d]);
        graft_dtype parsed;
        assert_true(graft_dtype_from_name(names[d], &parsed));
        assert_int_equal(parsed, d);
    }
    assert_false(graft_dtype_from_name("F64", NULL));
    assert_false(graft_dtype_from_name("f32", NULL));
    assert_false(graft_dtype_from_name("", NULL));
    assert_int_equal(graft_dtype_size(GRAFT_DTYPE_COUNT), 0);
}

/* fp16 value from its bits by the textbook formula (independent of the library). */
static double ref_f16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return m ? NAN : sign * INFINITY;
    if (e == 0) return sign * ldexp(m, -24);
    return sign * ldexp(1024 + m, e - 25);
}

static double g_f16_values[0x7c00]; /* ref_f16_value of every finite non-negative pattern */

/* fp32 -> fp16 by searching the sorted table of fp16 values, ties to the even pattern. */
static uint16_t ref_f32_to_f16(float x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7c00;
    unsigned lo = 0, hi = 0x7bff;
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (g_f16_values[mid] <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff;
    double below = a - g_f16_values[lo], above = g_f16_values[lo + 1] - a;
    unsigned pick = below < above ? lo : above < below ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
    return (uint16_t)(sign | pick);
}

/* fp16 values everyone knows: subnormals, limits, signed zero, inf, NaN, tie rounding. */
static void test_f16_known_values(void **state) {
    struct {
        uint16_t h;
        float f;
    } known[] = {
        {0x0000, 0.0f},
        {0x3c00, 1.0f},
        {0xc000, -2.0f},
        {0x3555, 0.333251953125f},
        {0x7bff, 65504.0f},
        {0xfbff, -65504.0f},
        {0x0400, 6.103515625e-05f},        /* smallest normal 2^-14 */
        {0x0001, 5.9604644775390625e-08f}, /* smallest subnormal 2^-24 */
        {0x03ff, 6.097555160522461e-05f},  /* largest subnormal 1023 * 2^-24 */
        {0x8001, -5.9604644775390625e-08f},
        {0x3800, 0.5f},
        {0x4248, 3.140625f},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        assert_true(graft_f16_to_f32(known[i].h) == known[i].f);
        assert_int_equal(graft_f32_to_f16(known[i].f), known[i].h);
    }
    /* signed zero, infinities, NaN */
    assert_true(signbit(graft_f16_to_f32(0x8000)) && graft_f16_to_f32(0x8000) == 0.0f);
    assert_false(signbit(graft_f16_to_f32(0x0000)));
    assert_int_equal(graft_f32_to_f16(-0.0f), 0x8000);
    assert_true(isinf(graft_f16_to_f32(0x7c00)) && graft_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(graft_f16_to_f32(0xfc00)) && graft_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(graft_f16_to_f32(0x7e00)) && isnan(graft_f16_to_f32(0xfc01)));
    assert_int_equal(graft_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(graft_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t nan16 = graft_f32_to_f16(NAN);
    assert_true((nan16 & 0x7c00) == 0x7c00 && (nan16 & 0x3ff) != 0);
    /* a signalling NaN whose payload sits below fp16's mantissa must stay NaN */
    uint16_t snan16 = graft_f32_to_f16(float_of(0x7f800001u));
    assert_true((snan16 & 0x7c00) == 0x7c00 && (snan16 & 0x3ff) != 0);
    /* rounding: ties to even, overflow, underflow */
    assert_int_equal(graft_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie -> even (down) */
    assert_int_equal(graft_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
    assert_int_equal(graft_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(graft_f32_to_f16(65520.0f), 0x7c00); /* tie past max -> inf */
    assert_int_equal(graft_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(graft_f32_to_f16(0x1p-25f), 0x0000); /* tie -> 0 */
    assert_int_equal(graft_f32_to_f16(0x1.000002p-25f), 0x0001);
    assert_int_equal(graft_f32_to_f16(3 * 0x1p-25f), 0x0002); /* tie -> even */
    assert_int_equal(graft_f32_to_f16(-1e-10f), 0x8000);
    assert_int_equal(graft_f32_to_f16(float_of(1)), 0x0000);  /* fp32 subnormal */
    assert_int_equal(graft_f32_to_f16(0x1.ffcp-15f), 0x0400); /* rounds up to normal */
}

/* Every fp16 pattern: decode matches the formula, and encode(decode(h)) == h. */
static void test_f16_exhaustive_roundtrip(void **state) {
    size_t decode_mismatch = 0, roundtrip_mismatch = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = graft_f16_to_f32((uint16_t)h);
        double want = ref_f16_value((uint16_t)h);
        int is_nan = isnan(want);
        if (is_nan ? !isnan(f) : ((double)f != want || !signbit(f) != !signbit(want)))
            decode_mismatch++;
        uint16_t back = graft_f32_to_f16(f);
        if (is_nan ? ((back & 0x7c00) != 0x7c00 || (back & 0x3ff) == 0 ||
                      (back & 0x8000) != (h & 0x8000))
                   : back != h)
            roundtrip_mismatch++;
    }
    printf("  65536 fp16 patterns: %zu decode mismatches, %zu round-trip mismatches\n",
           decode_mismatch, roundtrip_mismatch);
    assert_int_equal(decode_mismatch, 0);
    assert_int_equal(roundtrip_mismatch, 0);
}

/* fp32 -> fp16 rounding against the table search: every tie point, its neighbours, and
 * 10^6 random floats spread over fp16's range. */
static void test_f16_rounding_vs_reference(void **state) {
    for (uint32_t h = 0; h < 0x7c00; h++)
        g_f16_values[h] = ref_f16_value((uint16_t)h);
    size_t checked = 0, mismatches = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float mid = (float)((g_f16_values[h] + g_f16_values[h + 1]) / 2); /* exact in fp32 */
        float probes[3] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 3; k++) {
            for (int s = 0; s < 2; s++) {
                float x = s ? -probes[k] : probes[k];
                checked++;
                if (graft_f32_to_f16(x) != ref_f32_to_f16(x)) mismatches++;
            }
        }
    }
    graft_rng rng;
    graft_rng_seed(&rng, 1234);
    for (int i = 0; i < 1000000; i++) {
        uint64_t r = graft_rng_u64(&rng);
        uint32_t exponent = 127 - 27 + (uint32_t)(r % 46); /* 2^-27 .. 2^18 */
        uint32_t u = (uint32_t)((r >> 8) & 0x80000000u) | (exponent << 23) |
                     (uint32_t)((r >> 32) & 0x7fffffu);
        float x = float_of(u);
        checked++;
        if (graft_f32_to_f16(x) != ref_f32_to_f16(x)) mismatches++;
    }
    printf("  fp32->fp16: %zu values checked, %zu differ from nearest-even reference\n", checked,
           mismatches);
    assert_int_equal(mismatches, 0);
}

/* fp32 -> bf16 reference: pick the nearer of the two neighbouring bf16 values. */
static uint16_t ref_f32_to_bf16(float x) {
    uint32_t u = bits_of(x);
    uint16_t lo = (uint16_t)(u >> 16);
    if (isinf(x)) return lo;
    double a = fabs((double)x);
    double below = fabs((double)float_of((uint32_t)lo << 16));
    uint16_t up = (uint16_t)(lo + 1);
    double above =
        ((up & 0x7fff) == 0x7f80) ? ldexp(1.0, 128) : fabs((double)float_of((uint32_t)up << 16));
    double db = a - below, da = above - a;
    return db < da ? lo : da < db ? up : ((lo & 1) ? up : lo);
}

/* bf16: known values, every pattern round-trips, rounding of 10^6 random floats. */
static void test_bf16_conversions(void **state) {
    assert_true(graft_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(graft_bf16_to_f32(0xbf80) == -1.0f);
    assert_true(graft_bf16_to_f32(0x4049) == 3.140625f);
    assert_true(graft_bf16_to_f32(0x0001) == 0x1p-133f); /* smallest subnormal */
    assert_true(graft_bf16_to_f32(0x8000) == 0.0f && signbit(graft_bf16_to_f32(0x8000)));
    assert_true(isinf(graft_bf16_to_f32(0x7f80)) && graft_bf16_to_f32(0xff80) < 0);
    assert_true(isnan(graft_bf16_to_f32(0x7fc0)));
    assert_int_equal(graft_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie -> even (down) */
    assert_int_equal(graft_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie -> even (up) */
    assert_int_equal(graft_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(graft_f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80); /* FLT_MAX -> inf */
    uint16_t snan = graft_f32_to_bf16(float_of(0x7f800001u)); /* would round to inf if naive */
    assert_true((snan & 0x7f80) == 0x7f80 && (snan & 0x7f) != 0);
    assert_true((graft_f32_to_bf16(-NAN) & 0x8000) != 0);
    size_t roundtrip_mismatch = 0, rounding_mismatch = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = graft_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (graft_f32_to_bf16(f) != h) roundtrip_mismatch++;
    }
    graft_rng rng;
    graft_rng_seed(&rng, 99);
    for (int i = 0; i < 1000000; i++) {
        float x = float_of((uint32_t)graft_rng_u64(&rng));
        if (isnan(x)) continue;
        if (graft_f32_to_bf16(x) != ref_f32_to_bf16(x)) rounding_mismatch++;
    }
    printf("  bf16: %zu round-trip mismatches (65536 patterns), %zu rounding mismatches (10^6 "
           "random)\n",
           roundtrip_mismatch, rounding_mismatch);
    assert_int_equal(roundtrip_mismatch, 0);
    assert_int_equal(rounding_mismatch, 0);
}

/* ---- round trips ---------------------------------------------------------------------- */

typedef struct test_tensor {
    const char *name;
    graft_dtype dtype;
    int ndim;
    int64_t shape[GRAFT_ST_MAX_DIMS];
} test_tensor;

static const test_tensor g_roundtrip[] = {
    {"w.f32", GRAFT_DTYPE_F32, 2, {3, 5}},
    {"w.f16", GRAFT_DTYPE_F16, 3, {2, 3, 7}},
    {"w.bf16", GRAFT_DTYPE_BF16, 1, {9}},
    {"ids.i64", GRAFT_DTYPE_I64, 2, {4, 3}},
    {"ids.i32", GRAFT_DTYPE_I32, 1, {11}},
    {"bytes.u8", GRAFT_DTYPE_U8, 1, {13}}, /* odd size: later tensors must still be aligned */
    {"short.u16", GRAFT_DTYPE_U16, 2, {3, 3}},
    {"scalar", GRAFT_DTYPE_F32, 0, {0}},
    {"empty", GRAFT_DTYPE_F16, 2, {0, 4}},
    {"deep", GRAFT_DTYPE_U8, 8, {1, 2, 1, 2, 1, 2, 1, 3}},
};
#define N_ROUNDTRIP (sizeof g_roundtrip / sizeof g_roundtrip[0])

/* Elements of a test tensor. */
static size_t test_numel(const test_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

/* Random bytes for every tensor (so fp16/bf16 include NaN/inf/subnormal patterns). */
static unsigned char **make_roundtrip_data(uint64_t seed) {
    unsigned char **data = calloc(N_ROUNDTRIP, sizeof *data);
    assert_non_null(data);
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (size_t i = 0; i < N_ROUNDTRIP; i++) {
        size_t nbytes = test_numel(&g_roundtrip[i]) * graft_dtype_size(g_roundtrip[i].dtype);
        data[i] = malloc(nbytes + 1);
        assert_non_null(data[i]);
        for (size_t b = 0; b < nbytes; b++)
            data[i][b] = (unsigned char)graft_rng_u64(&rng);
    }
    return data;
}

/* Free what make_roundtrip_data allocated. */
static void free_roundtrip_data(unsigned char **data) {
    for (size_t i = 0; i < N_ROUNDTRIP; i++)
        free(data[i]);
    free(data);
}

/* Every dtype (plus scalar, empty and 8-dim tensors) written and read back bit-exactly. */
static void test_roundtrip_all_dtypes(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "roundtrip.safetensors");
    unsigned char **data = make_roundtrip_data(7);
    graft_st_writer w;
    graft_st_writer_init(&w);
    for (size_t i = 0; i < N_ROUNDTRIP; i++) {
        const test_tensor *t = &g_roundtrip[i];
        assert_int_equal(graft_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, data[i]),
                         GRAFT_OK);
    }
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);
    graft_st_writer_free(&w); /* twice is safe */

    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_tensors, N_ROUNDTRIP);
    assert_string_equal(f.path, path);
    assert_int_equal(f.header_bytes % 8, 0);
    for (size_t i = 0; i < N_ROUNDTRIP; i++) {
        const test_tensor *want = &g_roundtrip[i];
        const graft_st_tensor *t = graft_st_find(&f, want->name);
        assert_non_null(t);
        assert_int_equal(t->dtype, want->dtype);
        assert_int_equal(t->ndim, want->ndim);
        for (int d = 0; d < want->ndim; d++)
            assert_int_equal(t->shape[d], want->shape[d]);
        size_t nbytes = test_numel(want) * graft_dtype_size(want->dtype);
        assert_int_equal(t->numel, test_numel(want));
        assert_int_equal(t->nbytes, nbytes);
        if (nbytes > 0) assert_memory_equal(t->data, data[i], nbytes);
        /* graft lays out larger elements first, so every tensor is aligned */
        assert_int_equal((uintptr_t)t->data % graft_dtype_size(t->dtype), 0);
    }
    /* tensors come in offset order and tile the data region */
    size_t position = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        assert_int_equal(f.tensors[i].offset, position);
        position += f.tensors[i].nbytes;
    }
    assert_int_equal(position, f.data_bytes);
    assert_null(graft_st_find(&f, "missing"));
    assert_null(graft_st_find(&f, "w.f3"));
    graft_st_close(&f);
    graft_st_close(&f); /* twice is safe */
    free_roundtrip_data(data);
}

/* Integers convert to fp32 exactly where representable, floats bit-exactly. */
static void test_read_f32_all_dtypes(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "convert.safetensors");
    const int64_t i64[] = {-5, 0, 16777216, -9007199254740992LL, 1099511627776LL};
    const int32_t i32[] = {INT32_MIN, -1, 0, 16777215, 123456};
    const uint8_t u8[] = {0, 1, 127, 128, 255};
    const uint16_t u16[] = {0, 1, 32768, 65535, 4097};
    const uint16_t f16[] = {0x3c00, 0x8000, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00, 0xc248};
    const uint16_t bf16[] = {0x3f80, 0x8000, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0xc049, 0x4780};
    const float f32[] = {1.5f, -0.0f, 0x1p-149f, INFINITY};
    int64_t n5 = 5, n8 = 8, n4 = 4;
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add(&w, "i64", GRAFT_DTYPE_I64, 1, &n5, i64), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "i32", GRAFT_DTYPE_I32, 1, &n5, i32), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "u8", GRAFT_DTYPE_U8, 1, &n5, u8), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "u16", GRAFT_DTYPE_U16, 1, &n5, u16), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "f16", GRAFT_DTYPE_F16, 1, &n8, f16), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "bf16", GRAFT_DTYPE_BF16, 1, &n8, bf16), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "f32", GRAFT_DTYPE_F32, 1, &n4, f32), GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);

    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    float out[8];
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "i64"), out, 5), GRAFT_OK);
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == (float)i64[i] && (double)out[i] == (double)i64[i]);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "i32"), out, 5), GRAFT_OK);
    for (int i = 0; i < 5; i++)
        assert_true((double)out[i] == (double)i32[i]);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "u8"), out, 5), GRAFT_OK);
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == (float)u8[i]);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "u16"), out, 5), GRAFT_OK);
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == (float)u16[i]);

    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "f16"), out, 8), GRAFT_OK);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == 0.0f && signbit(out[1]));
    assert_true(out[2] == 0x1p-24f);
    assert_true(out[3] == 1023 * 0x1p-24f);
    assert_true(isinf(out[4]) && out[4] > 0);
    assert_true(isinf(out[5]) && out[5] < 0);
    assert_true(isnan(out[6]));
    assert_true(out[7] == -3.140625f);

    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "bf16"), out, 8), GRAFT_OK);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == 0.0f && signbit(out[1]));
    assert_true(out[2] == 0x1p-133f);
    assert_true(isinf(out[3]) && out[3] > 0);
    assert_true(isinf(out[4]) && out[4] < 0);
    assert_true(isnan(out[5]));
    assert_true(out[6] == -3.140625f);
    assert_true(out[7] == 65536.0f);

    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "f32"), out, 4), GRAFT_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bits_of(out[i]), bits_of(f32[i]));

    /* element count must match */
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "f32"), out, 3), GRAFT_ERR_MISMATCH);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "f32"), out, 5), GRAFT_ERR_MISMATCH);
    graft_st_close(&f);
}

/* fp32 data saved as F16/BF16 is converted on save with round-to-nearest-even. */
static void test_write_f32_as_f16_bf16(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "halves.safetensors");
    enum { N = 4096 };
    float *src = tu_floats(N);
    tu_fill_uniform(src, N, -100.0f, 100.0f, 42);
    src[0] = 0x1p-20f; /* fp16 subnormal */
    src[1] = 1e6f;     /* fp16 overflow -> inf */
    src[2] = -0.0f;
    int64_t shape[2] = {64, 64};
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add_f32(&w, "as_f16", GRAFT_DTYPE_F16, 2, shape, src),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "as_bf16", GRAFT_DTYPE_BF16, 2, shape, src),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "as_f32", GRAFT_DTYPE_F32, 2, shape, src),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "bad", GRAFT_DTYPE_I32, 2, shape, src),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);

    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    const graft_st_tensor *h = graft_st_find(&f, "as_f16"), *b = graft_st_find(&f, "as_bf16");
    const graft_st_tensor *s = graft_st_find(&f, "as_f32");
    assert_true(h && b && s);
    assert_int_equal(h->dtype, GRAFT_DTYPE_F16);
    assert_int_equal(b->dtype, GRAFT_DTYPE_BF16);
    assert_int_equal(h->nbytes, N * 2);
    assert_memory_equal(s->data, src, N * sizeof(float));
    size_t raw_mismatch = 0;
    for (size_t i = 0; i < N; i++) {
        uint16_t hv, bv;
        memcpy(&hv, (const unsigned char *)h->data + 2 * i, 2);
        memcpy(&bv, (const unsigned char *)b->data + 2 * i, 2);
        raw_mismatch += hv != graft_f32_to_f16(src[i]) || bv != graft_f32_to_bf16(src[i]);
    }
    assert_int_equal(raw_mismatch, 0);
    float *back = tu_floats(N);
    double *ref = tu_doubles(N);
    for (size_t i = 0; i < N; i++)
        ref[i] = src[i];
    assert_int_equal(graft_st_read_f32(h, back, N), GRAFT_OK);
    assert_true(back[0] == 0x1p-20f);
    assert_true(isinf(back[1]));
    assert_true(back[2] == 0.0f && signbit(back[2]));
    /* relative error per element (skip the overflowing one): fp16 keeps 11 bits */
    double worst = 0;
    for (size_t i = 3; i < N; i++) {
        double e = fabs(back[i] - ref[i]) / fabs(ref[i]);
        if (e > worst) worst = e;
    }
    TU_CHECK_REL("f32 -> F16 -> f32 (per element)", worst, 0x1p-11);
    assert_int_equal(graft_st_read_f32(b, back, N), GRAFT_OK);
    worst = 0;
    for (size_t i = 3; i < N; i++) {
        double e = fabs(back[i] - ref[i]) / fabs(ref[i]);
        if (e > worst) worst = e;
    }
    TU_CHECK_REL("f32 -> BF16 -> f32 (per element)", worst, 0x1p-8);
    graft_st_close(&f);
    free(back);
    free(ref);
    free(src);
}

/* __metadata__ strings (escapes, UTF-8, empty) survive a round trip. */
static void test_metadata_roundtrip(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "meta.safetensors");
    float x[2] = {1, 2};
    int64_t n = 2;
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add(&w, "x", GRAFT_DTYPE_F32, 1, &n, x), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "format", "np"), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "format", "pt"), GRAFT_OK); /* replaces */
    assert_int_equal(graft_st_writer_set_metadata(&w, "note",
                                                  "\xc3\xbcnic\xc3\xb6"
                                                  "de \"quoted\"\n\ttab \\"),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "empty", ""), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "graft.step", "1200"), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "bad", "\xff"), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_meta, 4);
    assert_string_equal(graft_st_metadata_get(&f, "format"), "pt");
    assert_string_equal(graft_st_metadata_get(&f, "note"), "\xc3\xbcnic\xc3\xb6"
                                                           "de \"quoted\"\n\ttab \\");
    assert_string_equal(graft_st_metadata_get(&f, "empty"), "");
    assert_string_equal(graft_st_metadata_get(&f, "graft.step"), "1200");
    assert_null(graft_st_metadata_get(&f, "bad"));
    assert_null(graft_st_metadata_get(&f, "missing"));
    graft_st_close(&f);
    assert_null(graft_st_metadata_get(&f, "format")); /* closed: empty */
}

/* Bad arguments to the writer are refused up front. */
static void test_writer_rejects_bad_input(void **state) {
    float x[4] = {0};
    int64_t n = 4, neg = -1;
    int64_t shape9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add(&w, "a", GRAFT_DTYPE_F32, 1, &n, x), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "a", GRAFT_DTYPE_F32, 1, &n, x),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "", GRAFT_DTYPE_F32, 1, &n, x), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "__metadata__", GRAFT_DTYPE_F32, 1, &n, x),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "bad\xc0", GRAFT_DTYPE_F32, 1, &n, x),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "b", GRAFT_DTYPE_F32, 1, &neg, x),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "c", GRAFT_DTYPE_F32, 9, shape9, x),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "d", GRAFT_DTYPE_F32, 1, &n, NULL),
                     GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_st_writer_add(&w, "e", GRAFT_DTYPE_COUNT, 1, &n, x),
                     GRAFT_ERR_INVALID_ARG);
    int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
    assert_int_equal(graft_st_writer_add(&w, "f", GRAFT_DTYPE_F32, 3, huge, x),
                     GRAFT_ERR_INVALID_ARG);
    int64_t zero = 0;
    assert_int_equal(graft_st_writer_add(&w, "g", GRAFT_DTYPE_F32, 1, &zero, NULL), GRAFT_OK);
    assert_int_equal(w.n_entries, 2);
    graft_st_writer_free(&w);
}

/* Same tensors and metadata, added in a different order: byte-identical files. */
static void test_deterministic_bytes(void **state) {
    char p1[1024], p2[1024], p3[1024];
    tmp_path(p1, sizeof p1, "det1.safetensors");
    tmp_path(p2, sizeof p2, "det2.safetensors");
    tmp_path(p3, sizeof p3, "det3.safetensors");
    unsigned char **data = make_roundtrip_data(11);
    graft_st_writer a, b;
    graft_st_writer_init(&a);
    graft_st_writer_init(&b);
    for (size_t i = 0; i < N_ROUNDTRIP; i++) {
        const test_tensor *t = &g_roundtrip[i];
        const test_tensor *r = &g_roundtrip[N_ROUNDTRIP - 1 - i];
        assert_int_equal(graft_st_writer_add(&a, t->name, t->dtype, t->ndim, t->shape, data[i]),
                         GRAFT_OK);
        assert_int_equal(graft_st_writer_add(&b, r->name, r->dtype, r->ndim, r->shape,
                                             data[N_ROUNDTRIP - 1 - i]),
                         GRAFT_OK);
    }
    assert_int_equal(graft_st_writer_set_metadata(&a, "format", "pt"), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&a, "author", "graft"), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&b, "author", "graft"), GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&b, "format", "pt"), GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&a, p1), GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&b, p2), GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&a, p3), GRAFT_OK);
    size_t n1, n2, n3;
    unsigned char *b1 = read_bytes(p1, &n1), *b2 = read_bytes(p2, &n2), *b3 = read_bytes(p3, &n3);
    printf("  file size %zu bytes, header %llu bytes\n", n1,
           (unsigned long long)b1[0] | ((unsigned long long)b1[1] << 8));
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(b1, b2, n1);
    assert_memory_equal(b1, b3, n1);
    /* header: length multiple of 8, JSON then space padding only */
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | b1[i];
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(b1[8], '{');
    size_t close_brace = 8 + (size_t)header_len - 1;
    while (b1[close_brace] == ' ')
        close_brace--;
    assert_int_equal(b1[close_brace], '}');
    assert_true(8 + (size_t)header_len - 1 - close_brace < 8);
    free(b1);
    free(b2);
    free(b3);
    graft_st_writer_free(&a);
    graft_st_writer_free(&b);
    free_roundtrip_data(data);
}

/* A save that fails must leave the old file byte-identical and no tmp file behind. */
static void assert_file_is(const char *path, const unsigned char *want, size_t n) {
    size_t got_n;
    unsigned char *got = read_bytes(path, &got_n);
    assert_int_equal(got_n, n);
    assert_memory_equal(got, want, n);
    free(got);
}

/* Saves that fail at each step (create, write, rename) keep the old file intact. */
static void test_atomic_write_failures(void **state) {
    char path[1024], tmp[1100], dir[1024], in_dir[1100];
    tmp_path(path, sizeof path, "atomic.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    float x[3] = {1, 2, 3};
    int64_t n = 3;
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add(&w, "x", GRAFT_DTYPE_F32, 1, &n, x), GRAFT_OK);
    const unsigned char old[] = "previous contents";
    write_bytes(path, old, sizeof old);
    struct stat st;

    /* 1. directory does not exist */
    tmp_path(dir, sizeof dir, "no/such/dir/model.safetensors");
    assert_int_equal(graft_st_writer_save(&w, dir), GRAFT_ERR_IO);

    /* 2. "<path>.tmp" cannot be created (a directory is in the way) */
    assert_int_equal(mkdir(tmp, 0755), 0);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_ERR_IO);
    assert_file_is(path, old, sizeof old);
    assert_int_equal(rmdir(tmp), 0);

    /* 3. the disk fills up mid-write: "<path>.tmp" links to /dev/full */
    if (stat("/dev/full", &st) == 0) {
        assert_int_equal(symlink("/dev/full", tmp), 0);
        assert_int_equal(graft_st_writer_save(&w, path), GRAFT_ERR_IO);
        assert_file_is(path, old, sizeof old);
        assert_int_equal(lstat(tmp, &st), -1); /* tmp removed */
    } else {
        printf("  /dev/full missing: write-error case not run\n");
    }

    /* 4. the rename fails: the target is a non-empty directory */
    tmp_path(dir, sizeof dir, "target_is_dir");
    snprintf(in_dir, sizeof in_dir, "%s/keep", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_bytes(in_dir, old, sizeof old);
    assert_int_equal(graft_st_writer_save(&w, dir), GRAFT_ERR_IO);
    assert_file_is(in_dir, old, sizeof old);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    assert_int_equal(lstat(tmp, &st), -1); /* tmp removed */

    /* 5. read-only directory (root ignores permissions, so only as a normal user) */
    tmp_path(dir, sizeof dir, "readonly");
    snprintf(in_dir, sizeof in_dir, "%s/model.safetensors", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_bytes(in_dir, old, sizeof old);
    assert_int_equal(chmod(dir, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(graft_st_writer_save(&w, in_dir), GRAFT_ERR_IO);
        assert_file_is(in_dir, old, sizeof old);
    } else {
        printf("  running as root: read-only directory case not run\n");
    }
    assert_int_equal(chmod(dir, 0755), 0);

    /* and after all that, a normal save replaces the old file */
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(lstat(tmp, &st), -1);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_tensors, 1);
    graft_st_close(&f);
    graft_st_writer_free(&w);
}

/* ---- opening files that are missing, odd or valid-but-unusual -------------------------- */

/* Missing files and directories are I/O errors; close is safe on any struct. */
static void test_open_io_errors(void **state) {
    char path[1024];
    graft_st_file f;
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    assert_int_equal(graft_st_open(&f, path), GRAFT_ERR_IO);
    assert_null(f.map);
    assert_int_equal(graft_st_open(&f, g_dir), GRAFT_ERR_IO); /* a directory */
    assert_null(f.map);
    graft_st_close(&f);
    graft_st_file zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    graft_st_close(&zeroed);
    graft_st_close(NULL);
}

/* Files from other writers: unaligned tensors, no tensors, zero-size tensors, padding. */
static void test_open_unusual_valid_files(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "unaligned.safetensors");
    /* U8[3] at [0,3], then F32[2] at [3,11]: the floats are unaligned in the map */
    const char *header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                         "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[11,11]}}";
    size_t hlen = strlen(header);
    unsigned char *file = malloc(8 + hlen + 11);
    assert_non_null(file);
    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): the header is bytes in a file */
    memcpy(file + 8, header, hlen);
    const unsigned char bytes[3] = {7, 8, 9};
    const float floats[2] = {-1.25f, 3e7f};
    memcpy(file + 8 + hlen, bytes, 3);
    memcpy(file + 8 + hlen + 3, floats, 8);
    write_bytes(path, file, 8 + hlen + 11);
    free(file);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_tensors, 3);
    assert_string_equal(f.tensors[0].name, "a"); /* offset order, not header order */
    assert_string_equal(f.tensors[1].name, "b");
    assert_string_equal(f.tensors[2].name, "z");
    float out[3];
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "b"), out, 2), GRAFT_OK);
    assert_true(out[0] == -1.25f && out[1] == 3e7f);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "a"), out, 3), GRAFT_OK);
    assert_true(out[0] == 7 && out[1] == 8 && out[2] == 9);
    assert_int_equal(graft_st_read_f32(graft_st_find(&f, "z"), NULL, 0), GRAFT_OK);
    assert_int_equal(f.n_meta, 0);
    graft_st_close(&f);

    /* no tensors at all, header padded with spaces, metadata only */
    tmp_path(path, sizeof path, "empty.safetensors");
    const char *empty = "{\"__metadata__\":{\"k\":\"v\"}}     ";
    write_st_raw(path, strlen(empty), empty, strlen(empty), 0);
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_tensors, 0);
    assert_string_equal(graft_st_metadata_get(&f, "k"), "v");
    graft_st_close(&f);
}

/* ---- malformed files: each GRAFT_ERR_FORMAT, one log line, nothing left allocated ------ */

static void test_bad_empty_file(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "empty_file.safetensors");
    write_bytes(path, "", 0);
    expect_format_error(path, "file is 0 bytes, too short");
}

static void test_bad_truncated_length(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "truncated.safetensors");
    write_bytes(path, "\x10\x00\x00\x00\x00", 5);
    expect_format_error(path, "file is 5 bytes, too short");
}

static void test_bad_header_past_eof(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "past_eof.safetensors");
    write_st_raw(path, 100, "{\"a\":", 5, 0);
    expect_format_error(path, "header length 100 runs past the end of the file (5 bytes follow");
}

static void test_bad_header_length_huge(void **state) {
    char path[1024];
    tmp_path(path, sizeof path, "huge.safetensors");
    write_st_raw(path, 1ull << 63, "{}", 2, 0);
    expect_format_error(path, "header length 9223372036854775808 exceeds the 100000000-byte limit");
    write_st_raw(path, UINT64_MAX, "{}", 2, 0);
    expect_format_error(path, "header length 18446744073709551615 exceeds");
}

static void test_bad_offsets_out_of_range(void **state) {
    expect_bad_header("range.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                      "tensor 'a' data_offsets [0, 8] run past the data region (4 bytes)");
}

static void test_bad_begin_after_end(void **state) {
    expect_bad_header("begin_end.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                      "tensor 'a' data_offsets [8, 0] has begin > end");
}

static void test_bad_overlapping_tensors(void **state) {
    expect_bad_header("overlap.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      12, "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    expect_bad_header("same_range.safetensors",
                      "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      8, "overlap");
}

static void test_bad_gap_or_trailing_bytes(void **state) {
    expect_bad_header("gap.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, "4 unused bytes in the data region before tensor 'b'");
    expect_bad_header("trailing.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 7,
                      "3 unused bytes at the end of the data region");
}

static void test_bad_unknown_dtype(void **state) {
    expect_bad_header("dtype.safetensors",
                      "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a' has unknown dtype 'Q7'");
    expect_bad_header("dtype_num.safetensors",
                      "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a' has no \"dtype\" string");
    /* names are shown on one line: control characters replaced, long names cut */
    expect_bad_header("newline_name.safetensors",
                      "{\"a\\nb\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a?b' has unknown dtype 'Q7'");
    char header[1024], want[256];
    memset(want, 'x', 150);
    snprintf(want + 150, sizeof want - 150, "...' has unknown dtype");
    snprintf(header, sizeof header,
             "{\"%0300d\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0);
    for (char *c = header + 2; *c == '0'; c++)
        *c = 'x';
    expect_bad_header("long_name.safetensors", header, 8, want);
}

static void test_bad_shape_size_mismatch(void **state) {
    expect_bad_header(
        "model.safetensors",
        "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,20],\"data_offsets\":[0,400]}}", 400,
        "tensor 'fc.weight' data_offsets [0, 400] but shape [10, 20] F32 needs 800 bytes");
}

static void test_bad_dims(void **state) {
    expect_bad_header("neg_dim.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a' shape dim 0 is -1, not a non-negative integer");
    expect_bad_header("real_dim.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a' shape dim 1 is 2.5, not a non-negative integer");
    expect_bad_header("string_dim.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                      "shape dim 0 is a JSON string");
    expect_bad_header("no_shape.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                      "tensor 'a' has no \"shape\" array");
    expect_bad_header("nine_dims.safetensors",
                      "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,1]}}",
                      1, "tensor 'a' has 9 dims, graft supports at most 8");
    expect_bad_header("overflow.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}",
                      0, "tensor 'a' shape [4294967296, 4294967296, 4294967296] has too many");
    expect_bad_header("overflow_bytes.safetensors",
                      "{\"a\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],"
                      "\"data_offsets\":[0,0]}}",
                      0, "too many elements");
}

static void test_bad_data_offsets_form(void **state) {
    expect_bad_header("no_offsets.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
                      "tensor 'a' needs \"data_offsets\": [begin, end]");
    expect_bad_header("one_offset.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8,
                      "needs \"data_offsets\"");
    expect_bad_header("neg_offset.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                      "needs \"data_offsets\"");
    expect_bad_header("entry_not_object.safetensors", "{\"a\":[1,2]}", 0,
                      "tensor 'a' is a JSON array, not an object");
}

static void test_bad_utf8(void **state) {
    expect_bad_header("utf8.safetensors", "{\"\xff\":{}}", 0,
                      "header is not valid UTF-8 (byte 0xff at header offset 2)");
    expect_bad_header("overlong.safetensors", "{\"\xc0\xaf\":{}}", 0, "not valid UTF-8");
    expect_bad_header("surrogate.safetensors", "{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8");
    expect_bad_header("cut_utf8.safetensors", "{}\xe2\x82", 0, "not valid UTF-8");
}

static void test_bad_not_json(void **state) {
    expect_bad_header("not_json.safetensors", "hello world", 0, "header is not valid JSON");
    expect_bad_header("trailing_json.safetensors", "{} {}", 0, "header is not valid JSON");
    expect_bad_header("cut_json.safetensors", "{\"a\":{\"dtype\":", 0, "header is not valid JSON");
    char path[1024];
    tmp_path(path, sizeof path, "nul.safetensors");
    write_st_raw(path, 4, "{\0}\0", 4, 0); /* NUL bytes inside the header */
    expect_format_error(path, "header is not valid JSON");
    tmp_path(path, sizeof path, "empty_header.safetensors");
    write_st_raw(path, 0, "", 0, 0);
    expect_format_error(path, "header is not valid JSON");
}

static void test_bad_json_not_object(void **state) {
    expect_bad_header("array.safetensors", "[1, 2, 3]", 0, "header is a JSON array, not an object");
}

static void test_bad_duplicate_keys(void **state) {
    expect_bad_header("dup.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                      4, "duplicate");
}

static void test_bad_metadata(void **state) {
    expect_bad_header("meta_int.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"k\":1}}", 0,
                      "__metadata__ value for key 'k' is a JSON integer, not a string");
    expect_bad_header("meta_str.safetensors", "{\"__metadata__\":\"pt\"}", 0,
                      "__metadata__ is a JSON string, not an object");
}

/* ---- independent reader ------------------------------------------------------------------- */

/* Exit status of a shell command, or -1 if it did not exit normally. */
static int run_command(const char *cmd) {
    fflush(stdout);
    fflush(stderr);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

/* A graft-written file checked by tests/tools/check_safetensors.py (json + struct only). */
static void test_python_stdlib_reader(void **state) {
    if (run_command("command -v python3 >/dev/null 2>&1") != 0) {
        printf("  python3 not found on PATH\n");
        skip();
    }
    char path[1024];
    tmp_path(path, sizeof path, "for_python.safetensors");
    const float weights[6] = {0.5f, -1.0f, 2.25f, 0.0f, 1e-3f, -7.5f};
    const float halves[4] = {1.0f, -2.0f, 0x1p-24f, 65504.0f};
    const float brains[2] = {1.5f, -3.0f};
    const int64_t tokens[3] = {-5, 1099511627776LL, 7};
    const int32_t labels[2] = {3, -4};
    const uint8_t pixels[3] = {0, 128, 255};
    const uint16_t ids[2] = {65535, 42};
    int64_t s23[2] = {2, 3}, s4 = 4, s2 = 2, s3 = 3;
    graft_st_writer w;
    graft_st_writer_init(&w);
    assert_int_equal(graft_st_writer_add(&w, "fc.weight", GRAFT_DTYPE_F32, 2, s23, weights),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "half", GRAFT_DTYPE_F16, 1, &s4, halves),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add_f32(&w, "brain", GRAFT_DTYPE_BF16, 1, &s2, brains),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "tokens", GRAFT_DTYPE_I64, 1, &s3, tokens), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "labels", GRAFT_DTYPE_I32, 1, &s2, labels), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "pixels", GRAFT_DTYPE_U8, 1, &s3, pixels), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "ids", GRAFT_DTYPE_U16, 1, &s2, ids), GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "scalar", GRAFT_DTYPE_F32, 0, NULL, &weights[2]),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_set_metadata(&w, "format", "pt"), GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&w, path), GRAFT_OK);
    graft_st_writer_free(&w);

    char cmd[4096];
    const char *script = GRAFT_SOURCE_DIR "/tests/tools/check_safetensors.py";
    snprintf(cmd, sizeof cmd,
             "python3 '%s' '%s' --meta format pt"
             " --tensor fc.weight F32 2,3 --tensor half F16 4 --tensor brain BF16 2"
             " --tensor tokens I64 3 --tensor labels I32 2 --tensor pixels U8 3"
             " --tensor ids U16 2 --tensor scalar F32 ''"
             " --value fc.weight 2 2.25 --value fc.weight 5 -7.5 --value half 1 -2.0"
             " --value half 2 5.9604644775390625e-08 --value half 3 65504 --value brain 0 1.5"
             " --value tokens 1 1099511627776 --value tokens 0 -5 --value labels 1 -4"
             " --value pixels 2 255 --value ids 0 65535 --value scalar 0 2.25",
             script, path);
    int rc = run_command(cmd);
    printf("  python3 check_safetensors.py -> exit %d (want 0)\n", rc);
    assert_int_equal(rc, 0);

    /* the checker can fail: a wrong expected value, and a malformed file */
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' --value fc.weight 0 0.75 2>/dev/null >/dev/null",
             script, path);
    rc = run_command(cmd);
    printf("  with a wrong expected value -> exit %d (want 1)\n", rc);
    assert_int_equal(rc, 1);
    char bad[1024];
    tmp_path(bad, sizeof bad, "for_python_bad.safetensors");
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    write_st_raw(bad, strlen(header), header, strlen(header), 12);
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' 2>/dev/null >/dev/null", script, bad);
    rc = run_command(cmd);
    printf("  on overlapping tensors -> exit %d (want 1)\n", rc);
    assert_int_equal(rc, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_f16_exhaustive_roundtrip),
        cmocka_unit_test(test_f16_rounding_vs_reference),
        cmocka_unit_test(test_bf16_conversions),
        cmocka_unit_test(test_roundtrip_all_dtypes),
        cmocka_unit_test(test_read_f32_all_dtypes),
        cmocka_unit_test(test_write_f32_as_f16_bf16),
        cmocka_unit_test(test_metadata_roundtrip),
        cmocka_unit_test(test_writer_rejects_bad_input),
        cmocka_unit_test(test_deterministic_bytes),
        cmocka_unit_test(test_atomic_write_failures),
        cmocka_unit_test(test_open_io_errors),
        cmocka_unit_test(test_open_unusual_valid_files),
        cmocka_unit_test(test_bad_empty_file),
        cmocka_unit_test(test_bad_truncated_length),
        cmocka_unit_test(test_bad_header_past_eof),
        cmocka_unit_test(test_bad_header_length_huge),
        cmocka_unit_test(test_bad_offsets_out_of_range),
        cmocka_unit_test(test_bad_begin_after_end),
        cmocka_unit_test(test_bad_overlapping_tensors),
        cmocka_unit_test(test_bad_gap_or_trailing_bytes),
        cmocka_unit_test(test_bad_unknown_dtype),
        cmocka_unit_test(test_bad_shape_size_mismatch),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_bad_data_offsets_form),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_bad_not_json),
        cmocka_unit_test(test_bad_json_not_object),
        cmocka_unit_test(test_bad_duplicate_keys),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_python_stdlib_reader),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
