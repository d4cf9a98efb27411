/* Image decoding and resizing against PIL's results (tests/fixtures/images, written by
 * tools/make_image_fixtures.py), and broken files refused with a reason, never a crash. */
#include "testutil.h"

#include "runtime/data/image_decode.h"
#include "runtime/data/image_resize.h"
#include "runtime/io/fs.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/images/"

static char *read_fixture(const char *name, size_t *len) {
    char path[512], *data;
    snprintf(path, sizeof path, FIXTURES "%s", name);
    assert_int_equal(graft_fs_read(path, 0, &data, len, GRAFT_LOG_ERROR), GRAFT_OK);
    return data;
}

/* The largest difference between n bytes, and how many differ at all. */
static int max_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *differ) {
    int worst = 0;
    *differ = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > worst) worst = d;
        *differ += d != 0;
    }
    return worst;
}

static void decode_fixture(const char *name, int channels, graft_image *img) {
    size_t len;
    char *data = read_fixture(name, &len), why[256];
    graft_status st =
        graft_image_decode((const uint8_t *)data, len, channels, img, why, sizeof why);
    if (st != GRAFT_OK) fail_msg("%s: %s", name, why);
    free(data);
    assert_int_equal(img->width, 41);
    assert_int_equal(img->height, 29);
    assert_int_equal(img->channels, channels);
}

/* PIL and graft use the same libjpeg-turbo and libpng, PIL's conversions and PIL's
 * resampling arithmetic: PNGs match byte for byte (tolerance 0); JPEGs are allowed 1 in
 * case another libjpeg-turbo build rounds its IDCT differently. */
static void check_against_pil(const char *name, int tolerance) {
    for (int channels = 1; channels <= 3; channels += 2) {
        graft_image img;
        decode_fixture(name, channels, &img);
        char ref_name[128];
        size_t len, differ;
        snprintf(ref_name, sizeof ref_name, "%s.c%d.u8", name, channels);
        char *ref = read_fixture(ref_name, &len);
        assert_int_equal(len, (size_t)41 * 29 * (size_t)channels);
        int worst = max_diff(img.pixels, (const uint8_t *)ref, len, &differ);
        if (worst > tolerance)
            fail_msg("%s: decoded differs by up to %d from PIL", ref_name, worst);
        free(ref);
        const struct {
            const char *suffix;
            int h, w;
            graft_resize_mode mode;
        } cases[] = {{"shorter16", 16, 16, GRAFT_RESIZE_SHORTER},
                     {"stretch20x12", 20, 12, GRAFT_RESIZE_STRETCH},
                     {"shorter48", 48, 48, GRAFT_RESIZE_SHORTER}};
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            size_t n = (size_t)channels * (size_t)cases[k].h * (size_t)cases[k].w;
            uint8_t *chw = malloc(n);
            assert_non_null(chw);
            assert_int_equal(graft_image_fit(&img, cases[k].h, cases[k].w, cases[k].mode, chw),
                             GRAFT_OK);
            snprintf(ref_name, sizeof ref_name, "%s.c%d.%s.u8", name, channels, cases[k].suffix);
            ref = read_fixture(ref_name, &len);
            assert_int_equal(len, n);
            worst = max_diff(chw, (const uint8_t *)ref, n, &differ);
            if (worst > tolerance)
                fail_msg("%s: differs by up to %d from PIL (%zu of %zu bytes)", ref_name, worst,
                         differ, n);
            free(ref);
            free(chw);
        }
        graft_image_free(&img);
    }
}

static void test_png_rgb(void **s) {
    (void)s;
    check_against_pil("rgb.png", 0);
}
static void test_png_rgba_alpha_dropped(void **s) {
    (void)s;
    check_against_pil("rgba.png", 0);
}
static void test_png_gray(void **s) {
    (void)s;
    check_against_pil("gray.png", 0);
}
static void test_png_gray_alpha(void **s) {
    (void)s;
    check_against_pil("gray_alpha.png", 0);
}
static void test_png_palette_with_transparency(void **s) {
    (void)s;
    check_against_pil("palette.png", 0);
}
static void test_png_bilevel(void **s) {
    (void)s;
    check_against_pil("bilevel.png", 0);
}
static void test_png_16bit_high_byte(void **s) {
    (void)s;
    check_against_pil("gray16.png", 0);
}
static void test_jpeg_baseline(void **s) {
    (void)s;
    check_against_pil("baseline.jpg", 1);
}
static void test_jpeg_progressive(void **s) {
    (void)s;
    check_against_pil("progressive.jpg", 1);
}
static void test_jpeg_gray(void **s) {
    (void)s;
    check_against_pil("gray.jpg", 1);
}

/* Decoding `len` bytes fails with `want` and a reason containing `reason`. */
static void expect_refused(const uint8_t *data, size_t len, graft_status want, const char *reason) {
    graft_image img;
    char why[256];
    graft_status st = graft_image_decode(data, len, 3, &img, why, sizeof why);
    if (st != want || !strstr(why, reason))
        fail_msg("got status %d, reason '%s' (want %d and '%s')", st, why, want, reason);
    assert_null(img.pixels);
}

static void test_cmyk_jpeg_refused_by_name(void **s) {
    (void)s;
    size_t len;
    char *data = read_fixture("cmyk.jpg", &len);
    expect_refused((const uint8_t *)data, len, GRAFT_ERR_UNSUPPORTED, "CMYK JPEG");
    free(data);
}

static void test_empty_and_unknown(void **s) {
    (void)s;
    const uint8_t text[] = "hello, not an image";
    expect_refused(text, 0, GRAFT_ERR_FORMAT, "empty file");
    expect_refused(text, sizeof text, GRAFT_ERR_FORMAT, "not a JPEG or PNG");
}

/* Every prefix of a JPEG and a PNG is refused (truncated or corrupt), never accepted
 * with made-up pixels, never a crash or an exit. */
static void test_every_truncation_refused(void **s) {
    (void)s;
    const char *names[] = {"baseline.jpg", "progressive.jpg", "rgb.png", "palette.png"};
    for (size_t f = 0; f < 4; f++) {
        size_t len;
        char *data = read_fixture(names[f], &len);
        for (size_t cut = 1; cut < len; cut++) {
            graft_image img;
            char why[256];
            graft_status st =
                graft_image_decode((const uint8_t *)data, cut, 3, &img, why, sizeof why);
            /* a PNG's IEND chunk (the last 12 bytes) carries nothing the image needs */
            if (strstr(names[f], ".png") && cut >= len - 12 && st == GRAFT_OK) {
                graft_image_free(&img);
                continue;
            }
            if (st != GRAFT_ERR_FORMAT || !why[0])
                fail_msg("%s cut to %zu of %zu bytes: status %d, reason '%s'", names[f], cut, len,
                         st, why);
        }
        free(data);
    }
}

/* Flipped bytes anywhere give an image or a refusal, never a crash (ASan run). */
static void test_corrupted_bytes_never_crash(void **s) {
    (void)s;
    const char *names[] = {"baseline.jpg", "progressive.jpg", "rgb.png", "gray16.png"};
    graft_rng r;
    graft_rng_seed(&r, 7);
    for (size_t f = 0; f < 4; f++) {
        size_t len;
        char *data = read_fixture(names[f], &len);
        for (int trial = 0; trial < 200; trial++) {
            uint8_t *copy = malloc(len);
            assert_non_null(copy);
            memcpy(copy, data, len);
            for (int k = 0; k < 4; k++)
                copy[graft_rng_below(&r, len)] ^= (uint8_t)(1 + graft_rng_below(&r, 255));
            graft_image img;
            char why[256];
            graft_status st = graft_image_decode(copy, len, 3, &img, why, sizeof why);
            assert_true(st == GRAFT_OK || st == GRAFT_ERR_FORMAT || st == GRAFT_ERR_UNSUPPORTED);
            graft_image_free(&img);
            free(copy);
        }
        free(data);
    }
}

/* A 1 x 5000 line scaled to a shorter side of 224 would be 224 x 1120000 pixels before
 * the crop: refused, not allocated. Within the limit it is resized and cropped. */
static void test_too_thin_refused(void **s) {
    (void)s;
    uint8_t line[5000], chw[224 * 224];
    for (int i = 0; i < 5000; i++)
        line[i] = (uint8_t)i;
    graft_image img = {.width = 1, .height = 5000, .channels = 1, .pixels = line};
    assert_int_equal(graft_image_fit(&img, 224, 224, GRAFT_RESIZE_SHORTER, chw),
                     GRAFT_ERR_UNSUPPORTED);
    assert_int_equal(graft_image_fit(&img, 16, 16, GRAFT_RESIZE_SHORTER, chw), GRAFT_OK);
    assert_int_equal(graft_image_fit(&img, 224, 224, GRAFT_RESIZE_STRETCH, chw), GRAFT_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_rgb),
        cmocka_unit_test(test_png_rgba_alpha_dropped),
        cmocka_unit_test(test_png_gray),
        cmocka_unit_test(test_png_gray_alpha),
        cmocka_unit_test(test_png_palette_with_transparency),
        cmocka_unit_test(test_png_bilevel),
        cmocka_unit_test(test_png_16bit_high_byte),
        cmocka_unit_test(test_jpeg_baseline),
        cmocka_unit_test(test_jpeg_progressive),
        cmocka_unit_test(test_jpeg_gray),
        cmocka_unit_test(test_cmyk_jpeg_refused_by_name),
        cmocka_unit_test(test_empty_and_unknown),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_corrupted_bytes_never_crash),
        cmocka_unit_test(test_too_thin_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
