/* Dataset writer -> reader round trips (images, tokens and sequences), directory
 * replacement rules, and the exact one-line error for each kind of damaged dataset. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/data/dataset.h"
#include "runtime/io/fs.h"

static char root[256]; /* a fresh temp dir per test run */

/* "dir/name", malloc'd and remembered; all freed at teardown. */
static char *paths[512];
static int n_paths = 0;
static char *path_in(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    assert_non_null(p);
    assert_true(n_paths < 512);
    snprintf(p, len, "%s/%s", dir, name);
    paths[n_paths++] = p;
    return p;
}

/* ---- capturing the error line ----------------------------------------------------- */

static int saved_stderr = -1;
static char capture_path[300];

static void capture_begin(void) {
    fflush(stderr);
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", root);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Stop capturing; returns the captured text (static buffer). */
static const char *capture_end(void) {
    static char text[8192];
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *fp = fopen(capture_path, "rb");
    assert_non_null(fp);
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    return text;
}

/* The captured output must be exactly one log line whose message (after
 * "[rank 0] ERROR func: ") equals `want`. */
static void check_one_error(const char *captured, const char *want) {
    int lines = 0;
    for (const char *p = captured; *p; p++)
        lines += *p == '\n';
    const char *msg = strstr(captured, "ERROR ");
    msg = msg ? strstr(msg, ": ") : NULL;
    printf("  error line: %s", captured);
    assert_int_equal(lines, 1);
    assert_non_null(msg);
    char got[4096];
    snprintf(got, sizeof got, "%s", msg + 2);
    got[strcspn(got, "\n")] = '\0';
    if (strcmp(got, want) != 0) printf("  expected:   %s\n", want);
    assert_string_equal(got, want);
}

/* Open dir, expecting failure with status st and exactly the message want. */
static void expect_open_error(const char *dir, int verify, graft_status st, const char *want) {
    graft_dataset d;
    capture_begin();
    graft_status got = graft_dataset_open(&d, dir, verify);
    const char *text = capture_end();
    check_one_error(text, want);
    assert_int_equal(got, st);
    assert_null(d.shards); /* left zeroed */
    graft_dataset_close(&d);
}

/* ---- a small image dataset: 10 samples [1, 4, 5], 3 classes, shards of 4 ---------- */

enum { IMG_N = 10, IMG_C = 1, IMG_H = 4, IMG_W = 5, IMG_K = 3 };
static const char *const img_names[IMG_K] = {"zero", "one", "two"};

static uint8_t pixel_of(size_t i, size_t p) {
    return (uint8_t)((i * 37 + p * 11 + (i * p) % 7) & 255);
}

static void make_image_dataset(const char *dir, size_t n) {
    graft_dataset_writer *w;
    assert_int_equal(
        graft_dataset_writer_new_images(&w, dir, IMG_C, IMG_H, IMG_W, IMG_K, img_names, 4),
        GRAFT_OK);
    uint8_t img[IMG_C * IMG_H * IMG_W];
    for (size_t i = 0; i < n; i++) {
        for (size_t p = 0; p < sizeof img; p++)
            img[p] = pixel_of(i, p);
        assert_int_equal(graft_dataset_writer_add_image(w, img, (int)(i % IMG_K)), GRAFT_OK);
    }
    assert_int_equal(graft_dataset_writer_count(w), n);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
}

static void test_images_round_trip(void **state) {
    (void)state;
    char *dir = path_in(root, "img");
    make_image_dataset(dir, IMG_N);
    struct stat sb;
    assert_int_not_equal(stat(path_in(root, "img.tmp"), &sb), 0); /* nothing left behind */
    assert_int_not_equal(stat(path_in(dir, "index.json.tmp"), &sb), 0);

    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
    assert_int_equal(d.kind, GRAFT_DATA_IMAGES);
    assert_int_equal(d.num_samples, IMG_N);
    assert_int_equal(d.channels, IMG_C);
    assert_int_equal(d.height, IMG_H);
    assert_int_equal(d.width, IMG_W);
    assert_int_equal(d.num_classes, IMG_K);
    assert_int_equal(d.n_shards, 3);
    assert_int_equal(d.n_verified, 3);
    size_t firsts[4] = {0, 4, 8, 10};
    for (int s = 0; s <= 3; s++)
        assert_int_equal(d.shard_first[s], firsts[s]);
    assert_string_equal(d.shard_files[2], "shard-00002.safetensors");
    assert_int_equal(strlen(d.shard_xxh64[0]), 16);
    for (int c = 0; c < IMG_K; c++) {
        assert_string_equal(d.class_names[c], img_names[c]);
        assert_int_equal(d.class_counts[c], c == 0 ? 4 : 3);
    }
    /* normalisation: per-channel mean/std of x/255 over all written pixels */
    double sum = 0, sumsq = 0, count = 0;
    for (size_t i = 0; i < IMG_N; i++)
        for (size_t p = 0; p < IMG_H * IMG_W; p++) {
            double x = pixel_of(i, p) / 255.0;
            sum += x, sumsq += x * x, count += 1;
        }
    double mean = sum / count, std = sqrt(sumsq / count - mean * mean);
    double err = fmax(fabs(d.mean[0] - mean) / mean, fabs(d.std[0] - std) / std);
    TU_CHECK_REL("stored mean/std vs recomputed", err, 1e-6);

    float x[IMG_C * IMG_H * IMG_W];
    double max_err = 0;
    for (size_t i = 0; i < IMG_N; i++) {
        int label_raw;
        const uint8_t *raw = graft_dataset_image_raw(&d, i, &label_raw);
        int label = graft_dataset_image(&d, i, x);
        assert_int_equal(label, (int)(i % IMG_K));
        assert_int_equal(label_raw, label);
        for (size_t p = 0; p < sizeof x / sizeof x[0]; p++) {
            assert_int_equal(raw[p], pixel_of(i, p));
            double want = (pixel_of(i, p) / 255.0 - d.mean[0]) / d.std[0];
            max_err = fmax(max_err, fabs(x[p] - want) / fmax(fabs(want), 1.0));
        }
    }
    TU_CHECK_REL("normalised pixels", max_err, 1e-6);
    graft_dataset_close(&d);
    graft_dataset_close(&d); /* twice is fine */
}

static void test_tokens_round_trip(void **state) {
    (void)state;
    int vocabs[2] = {300, 70000};
    for (int v = 0; v < 2; v++) {
        char name[32];
        snprintf(name, sizeof name, "tok%d", vocabs[v]);
        char *dir = path_in(root, name);
        graft_dataset_writer *w;
        assert_int_equal(graft_dataset_writer_new_tokens(&w, dir, "bytes", vocabs[v], 7), GRAFT_OK);
        int32_t ids[53];
        for (int i = 0; i < 53; i++)
            ids[i] = (int32_t)(((int64_t)i * 7919) % vocabs[v]);
        assert_int_equal(graft_dataset_writer_add_tokens(w, ids, 20), GRAFT_OK); /* uneven pieces */
        assert_int_equal(graft_dataset_writer_add_tokens(w, ids + 20, 33), GRAFT_OK);
        int32_t bad = vocabs[v];
        capture_begin();
        graft_status st = graft_dataset_writer_add_tokens(w, &bad, 1);
        const char *text = capture_end();
        assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
        char want[256];
        snprintf(want, sizeof want, "%s: token id %d at position 53 is outside [0, %d)", dir,
                 vocabs[v], vocabs[v]);
        check_one_error(text, want);
        assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
        graft_dataset_writer_free(w);

        graft_dataset d;
        assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
        assert_int_equal(d.kind, GRAFT_DATA_TOKENS);
        assert_int_equal(d.num_tokens, 53);
        assert_int_equal(d.vocab_size, vocabs[v]);
        assert_string_equal(d.tokenizer, "bytes");
        assert_int_equal(d.n_shards, 8); /* 7 * 7 + 4 */
        assert_int_equal(d.token_dtype, vocabs[v] <= 65536 ? GRAFT_DTYPE_U16 : GRAFT_DTYPE_I32);
        int32_t got[53];
        for (size_t start = 0; start < 53; start += 5) {
            size_t count = 53 - start < 12 ? 53 - start : 12; /* crosses shard boundaries */
            graft_dataset_tokens(&d, start, count, got);
            assert_memory_equal(got, ids + start, count * sizeof(int32_t));
        }
        printf("  vocab %d: 53 tokens in %d shards of %s, read back exactly\n", vocabs[v],
               d.n_shards, graft_dtype_name(d.token_dtype));
        graft_dataset_close(&d);
    }
}

/* Where DIR may be written: absent, empty, a previous dataset (replaced), nothing else. */
static void test_writer_target_rules(void **state) {
    (void)state;
    char *dir = path_in(root, "target");
    make_image_dataset(dir, 6);
    make_image_dataset(dir, 9); /* replaces the previous dataset */
    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
    assert_int_equal(d.num_samples, 9);
    graft_dataset_close(&d);

    char *empty = path_in(root, "empty");
    assert_int_equal(mkdir(empty, 0755), 0);
    make_image_dataset(empty, 3);
    assert_int_equal(graft_dataset_open(&d, empty, 0), GRAFT_OK);
    graft_dataset_close(&d);

    /* a foreign file in DIR: refused, DIR untouched */
    FILE *fp = fopen(path_in(dir, "notes.txt"), "w");
    assert_non_null(fp);
    fputs("mine\n", fp);
    fclose(fp);
    graft_dataset_writer *w = NULL;
    capture_begin();
    graft_status st = graft_dataset_writer_new_images(&w, dir, 1, 2, 2, 2, NULL, 4);
    const char *text = capture_end();
    char want[600];
    snprintf(want, sizeof want,
             "%s: exists and holds 'notes.txt', which is not part of a graft dataset; refusing to "
             "replace it",
             dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_IO);
    assert_null(w);
    struct stat sb;
    assert_int_equal(stat(path_in(dir, "notes.txt"), &sb), 0);

    /* a non-empty directory without index.json */
    char *other = path_in(root, "other");
    assert_int_equal(mkdir(other, 0755), 0);
    fp = fopen(path_in(other, "shard-00000.safetensors"), "w");
    fclose(fp);
    capture_begin();
    st = graft_dataset_writer_new_images(&w, other, 1, 2, 2, 2, NULL, 4);
    text = capture_end();
    snprintf(want, sizeof want,
             "%s: exists, is not empty and is not a graft dataset (no valid index.json); refusing "
             "to replace it",
             other);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_IO);
    assert_null(w);

    /* abandoned writer: DIR.tmp removed, DIR unchanged */
    char *fresh = path_in(root, "abandoned");
    assert_int_equal(graft_dataset_writer_new_images(&w, fresh, 1, 2, 2, 2, NULL, 1), GRAFT_OK);
    uint8_t px[4] = {1, 2, 3, 4};
    assert_int_equal(graft_dataset_writer_add_image(w, px, 1), GRAFT_OK); /* writes a shard */
    graft_dataset_writer_free(w);
    assert_int_not_equal(stat(fresh, &sb), 0);
    snprintf(want, sizeof want, "%s.tmp", fresh);
    assert_int_not_equal(stat(want, &sb), 0);

    /* nothing to write */
    assert_int_equal(graft_dataset_writer_new_images(&w, fresh, 1, 2, 2, 2, NULL, 1), GRAFT_OK);
    capture_begin();
    st = graft_dataset_writer_finish(w);
    text = capture_end();
    snprintf(want, sizeof want, "%s: no samples to write; refusing to create an empty dataset",
             fresh);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
    graft_dataset_writer_free(w);
}

/* ---- damaged datasets ----------------------------------------------------------------- */

/* A fresh copy of the image dataset under a new name. */
static char *fresh_dataset(const char *name) {
    char *dir = path_in(root, name);
    make_image_dataset(dir, IMG_N);
    return dir;
}

static json_t *load_index(const char *dir) {
    json_error_t err;
    json_t *j = json_load_file(path_in(dir, "index.json"), 0, &err);
    assert_non_null(j);
    return j;
}

static void save_index(const char *dir, json_t *j) {
    assert_int_equal(json_dump_file(j, path_in(dir, "index.json"), JSON_INDENT(1)), 0);
    json_decref(j);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* What predictions need from a dataset: the resize mode of images, and a --vocab
 * tokenizer's vocabulary stored inside the dataset; both checked when read. */
static void test_prediction_fields(void **state) {
    (void)state;
    char *dir = path_in(root, "stretched");
    graft_dataset_writer *w;
    assert_int_equal(
        graft_dataset_writer_new_images(&w, dir, IMG_C, IMG_H, IMG_W, IMG_K, img_names, 4),
        GRAFT_OK);
    capture_begin();
    assert_int_equal(graft_dataset_writer_set_resize(w, "crop"), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_dataset_writer_set_vocab_file(w, "x"), GRAFT_ERR_INVALID_ARG);
    capture_end();
    assert_int_equal(graft_dataset_writer_set_resize(w, "stretch"), GRAFT_OK);
    uint8_t img[IMG_C * IMG_H * IMG_W] = {0};
    assert_int_equal(graft_dataset_writer_add_image(w, img, 0), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 0), GRAFT_OK);
    assert_string_equal(d.resize, "stretch");
    assert_null(d.vocab_path);
    graft_dataset_close(&d);
    json_t *j = load_index(dir);
    json_object_set_new(j, "resize", json_string("crop"));
    save_index(dir, j);
    char want[600];
    snprintf(want, sizeof want, "%s: \"resize\" must be \"shorter\" or \"stretch\", got \"crop\"",
             path_in(dir, "index.json"));
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* a vocabulary copied in: the same bytes, found by the reader; the source may go */
    char *vocab = path_in(root, "my vocab.txt");
    write_text(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
    dir = path_in(root, "with_vocab");
    assert_int_equal(graft_dataset_writer_new_tokens(&w, dir, "wordpiece", 5, 8), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_set_vocab_file(w, vocab), GRAFT_OK);
    int32_t ids[3] = {2, 4, 3};
    assert_int_equal(graft_dataset_writer_add_tokens(w, ids, 3), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
    assert_int_equal(unlink(vocab), 0);
    assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
    assert_string_equal(d.vocab_path, path_in(dir, "vocab.txt"));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(graft_fs_read(d.vocab_path, 1000, &text, &len, GRAFT_LOG_ERROR), GRAFT_OK);
    assert_int_equal(len, strlen("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n"));
    assert_memory_equal(text, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", len);
    free(text);
    graft_dataset_close(&d);
    /* the writer may replace a dataset that holds its vocab.txt */
    assert_int_equal(graft_dataset_writer_new_tokens(&w, dir, "bytes", 5, 8), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_add_tokens(w, ids, 3), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
    struct stat sb;
    assert_int_not_equal(stat(path_in(dir, "vocab.txt"), &sb), 0); /* the old one went with it */
    /* a vocabulary named anywhere but inside the dataset is refused */
    j = load_index(dir);
    json_object_set_new(j, "vocab_file", json_string("/etc/passwd"));
    save_index(dir, j);
    snprintf(want, sizeof want,
             "%s: \"vocab_file\" must be \"vocab.txt\" (the vocabulary stored in the dataset), "
             "got \"/etc/passwd\"",
             path_in(dir, "index.json"));
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
}

static void test_checksum_mismatch(void **state) {
    (void)state;
    char *dir = fresh_dataset("bad_sum");
    char *shard = path_in(dir, "shard-00001.safetensors");
    /* flip a bit in the last byte (a pixel): the file stays a valid safetensors */
    int fd = open(shard, O_RDWR);
    assert_true(fd >= 0);
    off_t end = lseek(fd, -1, SEEK_END);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, end), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(fd, &byte, 1, end), 1);
    close(fd);
    /* the recorded and the actual checksums */
    json_t *j = load_index(dir);
    const char *recorded = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "shards"), 1), "xxh64"));
    FILE *fp = fopen(shard, "rb");
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    char want[600];
    snprintf(want, sizeof want, "%s: checksum mismatch (index.json says %s, file has %016llx)",
             shard, recorded, (unsigned long long)XXH64(buf, n, 0));
    json_decref(j);
    expect_open_error(dir, 1, GRAFT_ERR_FORMAT, want);
    /* without verification the pixel change goes unnoticed: only checksums see data bytes */
    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 0), GRAFT_OK);
    assert_int_equal(d.n_verified, 0);
    graft_dataset_close(&d);
}

static void test_truncated_shard(void **state) {
    (void)state;
    char *dir = fresh_dataset("bad_trunc");
    char *shard = path_in(dir, "shard-00002.safetensors");
    struct stat sb;
    assert_int_equal(stat(shard, &sb), 0);
    assert_int_equal(truncate(shard, sb.st_size / 2), 0);
    char want[600];
    snprintf(want, sizeof want, "%s: file is %lld bytes, index.json says %lld (truncated)", shard,
             (long long)(sb.st_size / 2), (long long)sb.st_size);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
}

static void test_missing_shard(void **state) {
    (void)state;
    char *dir = fresh_dataset("bad_missing");
    assert_int_equal(unlink(path_in(dir, "shard-00001.safetensors")), 0);
    char want[600];
    snprintf(want, sizeof want,
             "%s/index.json: shard 'shard-00001.safetensors' is missing: No such file or directory",
             dir);
    expect_open_error(dir, 0, GRAFT_ERR_IO, want);

    char *none = path_in(root, "no_such_dataset");
    snprintf(want, sizeof want, "%s/index.json: cannot open: No such file or directory", none);
    expect_open_error(none, 0, GRAFT_ERR_IO, want);
}

static void test_label_out_of_range(void **state) {
    (void)state;
    char *dir = fresh_dataset("bad_label");
    char *shard = path_in(dir, "shard-00000.safetensors");
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, shard), GRAFT_OK);
    const graft_st_tensor *t = graft_st_find(&f, "labels");
    assert_non_null(t);
    off_t at = (off_t)(8 + f.header_bytes + t->offset + 8 * 2); /* sample 2 */
    graft_st_close(&f);
    int64_t label = 12;
    int fd = open(shard, O_RDWR);
    assert_int_equal(pwrite(fd, &label, 8, at), 8);
    close(fd);
    char want[600];
    snprintf(want, sizeof want, "%s: label 12 at sample 2 is outside [0, 3)", shard);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
}

static void test_token_out_of_range(void **state) {
    (void)state;
    char *dir = path_in(root, "tok_bad");
    graft_dataset_writer *w;
    assert_int_equal(graft_dataset_writer_new_tokens(&w, dir, "bytes", 300, 7), GRAFT_OK);
    int32_t ids[53];
    for (int i = 0; i < 53; i++)
        ids[i] = (int32_t)((i * 7919) % 300);
    assert_int_equal(graft_dataset_writer_add_tokens(w, ids, 53), GRAFT_OK);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
    json_t *j = load_index(dir);
    json_object_set_new(j, "vocab_size", json_integer(100));
    save_index(dir, j);
    graft_dataset d;
    capture_begin();
    graft_status st = graft_dataset_open(&d, dir, 0);
    const char *text = capture_end();
    /* ids are i * 7919 % 300: 0, 119, ... -> the first is at position 1 of shard 0 */
    char want[600];
    snprintf(want, sizeof want,
             "%s/shard-00000.safetensors: token 119 at position 1 is outside [0, 100)", dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_FORMAT);
}

static void test_malformed_index(void **state) {
    (void)state;
    char *dir = fresh_dataset("bad_json");
    char *index = path_in(dir, "index.json");
    char want[600];

    write_text(index, "{\"format\": \"graft-dataset\", \"version\": 1,\n  \"kind\": ");
    snprintf(want, sizeof want,
             "%s: invalid JSON at line 2, column 10: unexpected token near end of file", index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    write_text(index, "[1, 2]");
    snprintf(want, sizeof want, "%s: not a graft dataset index (expected a JSON object, got [1,2])",
             index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    write_text(index, "{\"format\": \"pytorch\"}");
    snprintf(
        want, sizeof want,
        "%s: not a graft dataset index (\"format\" is \"pytorch\", expected \"graft-dataset\")",
        index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    write_text(index, "{\"format\": \"graft-dataset\", \"version\": 2}");
    snprintf(want, sizeof want, "%s: unsupported version 2 (this graft reads version 1)", index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* field-level problems, on an otherwise valid index */
    dir = fresh_dataset("bad_fields");
    index = path_in(dir, "index.json");
    json_t *j = load_index(dir);
    json_object_set_new(j, "sample_shape", json_pack("[iii]", 1, 4, -5));
    save_index(dir, j);
    snprintf(want, sizeof want,
             "%s: \"sample_shape\" must be [C, H, W] with 1 <= C <= 4 and 1 <= H, W <= 65536, got "
             "[1,4,-5]",
             index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    dir = fresh_dataset("bad_fields2");
    index = path_in(dir, "index.json");
    j = load_index(dir);
    json_array_remove(json_object_get(j, "class_names"), 0);
    save_index(dir, j);
    snprintf(
        want, sizeof want,
        "%s: \"class_names\" must be an array of num_classes = 3 strings, got [\"one\",\"two\"]",
        index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    dir = fresh_dataset("bad_fields3");
    index = path_in(dir, "index.json");
    j = load_index(dir);
    json_object_set_new(json_array_get(json_object_get(j, "shards"), 1), "file",
                        json_string("../img/shard-00001.safetensors"));
    save_index(dir, j);
    snprintf(want, sizeof want,
             "%s: \"shards[1].file\" must be a plain file name inside the dataset directory, got "
             "\"../img/shard-00001.safetensors\"",
             index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    dir = fresh_dataset("bad_fields4");
    index = path_in(dir, "index.json");
    j = load_index(dir);
    json_object_set_new(json_array_get(json_object_get(j, "shards"), 0), "xxh64",
                        json_string("12345"));
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: \"shards[0].xxh64\" must be 16 hex digits, got \"12345\"",
             index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    dir = fresh_dataset("bad_fields5");
    index = path_in(dir, "index.json");
    j = load_index(dir);
    json_object_del(j, "num_classes");
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: missing \"num_classes\"", index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
}

static void test_count_mismatch(void **state) {
    (void)state;
    /* index total disagrees with its shard list */
    char *dir = fresh_dataset("bad_total");
    char *index = path_in(dir, "index.json");
    json_t *j = load_index(dir);
    json_object_set_new(j, "num_samples", json_integer(11));
    save_index(dir, j);
    char want[600];
    snprintf(want, sizeof want,
             "%s: the 3 shards hold 10 samples in total, \"num_samples\" says 11", index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* a shard missing from the index */
    dir = fresh_dataset("bad_nshards");
    index = path_in(dir, "index.json");
    j = load_index(dir);
    json_array_remove(json_object_get(j, "shards"), 2);
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: the 2 shards hold 8 samples in total, \"num_samples\" says 10",
             index);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* a consistent index that disagrees with a shard file */
    dir = fresh_dataset("bad_shard_count");
    j = load_index(dir);
    json_t *shards = json_object_get(j, "shards");
    json_object_set_new(json_array_get(shards, 0), "samples", json_integer(5));
    json_object_set_new(json_array_get(shards, 2), "samples", json_integer(1));
    save_index(dir, j);
    snprintf(want, sizeof want, "%s/shard-00000.safetensors: holds 4 samples, index.json says 5",
             dir);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* a shard whose tensors are not what the index promises */
    dir = fresh_dataset("bad_tensor");
    char *shard = path_in(dir, "shard-00001.safetensors");
    graft_st_writer w;
    graft_st_writer_init(&w);
    float values[4 * IMG_H * IMG_W] = {0};
    int64_t labels[4] = {0, 1, 2, 0};
    int64_t shape[4] = {4, IMG_C, IMG_H, IMG_W};
    assert_int_equal(graft_st_writer_add_f32(&w, "inputs", GRAFT_DTYPE_F32, 4, shape, values),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_add(&w, "labels", GRAFT_DTYPE_I64, 1, shape, labels),
                     GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&w, shard), GRAFT_OK);
    graft_st_writer_free(&w);
    struct stat sb;
    assert_int_equal(stat(shard, &sb), 0);
    j = load_index(dir);
    json_object_set_new(json_array_get(json_object_get(j, "shards"), 1), "bytes",
                        json_integer((json_int_t)sb.st_size));
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: tensor 'inputs' is F32, expected U8", shard);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
}

/* ---- sequences: 10 samples of T = 6 ids, 3 classes, shards of 4 ------------------------- */

enum { SEQ_N = 10, SEQ_T = 6, SEQ_K = 3, SEQ_PAD = 5 };
static const char *const seq_names[SEQ_K] = {"science", "computers", "food"};

/* Sample i has seq_len_of(i) ids (1..9: some padded, some truncated), label i % 3. */
static size_t seq_len_of(size_t i) { return (i * 4) % 9 + 1; }
static int32_t seq_id(size_t i, size_t t, int vocab) {
    return (int32_t)((i * 7919 + t * 104729 + 11) % (size_t)vocab);
}

static void make_sequence_dataset(const char *dir, int vocab) {
    graft_dataset_writer *w;
    assert_int_equal(graft_dataset_writer_new_sequences(&w, dir, "bytes", vocab, SEQ_T, SEQ_PAD,
                                                        SEQ_K, seq_names, 4),
                     GRAFT_OK);
    int32_t ids[16];
    for (size_t i = 0; i < SEQ_N; i++) {
        for (size_t t = 0; t < seq_len_of(i); t++)
            ids[t] = seq_id(i, t, vocab);
        assert_int_equal(graft_dataset_writer_add_sequence(w, ids, seq_len_of(i), (int)(i % SEQ_K)),
                         GRAFT_OK);
    }
    assert_int_equal(graft_dataset_writer_count(w), SEQ_N);
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
}

static void test_sequences_round_trip(void **state) {
    (void)state;
    int vocabs[2] = {300, 70000};
    for (int v = 0; v < 2; v++) {
        char name[32];
        snprintf(name, sizeof name, "seq%d", vocabs[v]);
        char *dir = path_in(root, name);
        make_sequence_dataset(dir, vocabs[v]);
        graft_dataset d;
        assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
        assert_int_equal(d.kind, GRAFT_DATA_SEQUENCES);
        assert_string_equal(graft_dataset_kind_name(d.kind), "sequences");
        assert_int_equal(d.num_samples, SEQ_N);
        assert_int_equal(d.seq_len, SEQ_T);
        assert_int_equal(d.pad_id, SEQ_PAD);
        assert_int_equal(d.vocab_size, vocabs[v]);
        assert_string_equal(d.tokenizer, "bytes");
        assert_int_equal(d.num_classes, SEQ_K);
        assert_int_equal(d.n_shards, 3);
        assert_int_equal(d.n_verified, 3);
        assert_int_equal(d.token_dtype, vocabs[v] <= 65536 ? GRAFT_DTYPE_U16 : GRAFT_DTYPE_I32);
        for (int c = 0; c < SEQ_K; c++) {
            assert_string_equal(d.class_names[c], seq_names[c]);
            assert_int_equal(d.class_counts[c], c == 0 ? 4 : 3);
        }
        int truncated = 0, padded = 0;
        for (size_t i = 0; i < SEQ_N; i++) {
            int32_t got[SEQ_T];
            assert_int_equal(graft_dataset_sequence(&d, i, got), (int)(i % SEQ_K));
            for (size_t t = 0; t < SEQ_T; t++)
                assert_int_equal(got[t], t < seq_len_of(i) ? seq_id(i, t, vocabs[v]) : SEQ_PAD);
            truncated += seq_len_of(i) > SEQ_T;
            padded += seq_len_of(i) < SEQ_T;
        }
        /* the index as documented in dataset.h */
        json_t *j = load_index(dir);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), "sequences");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "sample_shape"), 0)),
                         SEQ_T);
        assert_int_equal(json_array_size(json_object_get(j, "sample_shape")), 1);
        assert_int_equal(json_integer_value(json_object_get(j, "pad_id")), SEQ_PAD);
        assert_int_equal(json_integer_value(json_object_get(
                             json_array_get(json_object_get(j, "shards"), 2), "samples")),
                         2);
        json_decref(j);
        printf("  vocab %d: %d sequences (%d truncated, %d padded) in %d shards of %s, read "
               "back exactly\n",
               vocabs[v], SEQ_N, truncated, padded, d.n_shards, graft_dtype_name(d.token_dtype));
        assert_true(truncated > 0 && padded > 0);
        graft_dataset_close(&d);
    }
}

static void test_sequence_writer_errors(void **state) {
    (void)state;
    char *dir = path_in(root, "seq_writer");
    graft_dataset_writer *w = NULL;
    char want[600];
    capture_begin();
    graft_status st =
        graft_dataset_writer_new_sequences(&w, dir, "bytes", 256, 8, 256, 2, NULL, 16);
    const char *text = capture_end();
    snprintf(want, sizeof want,
             "%s: bad sequence dataset: tokenizer bytes, vocab_size 256, seq_len 8, pad_id 256, "
             "num_classes 2 (need 1 <= seq_len <= 1048576, 0 <= pad_id < vocab_size, "
             "1 <= num_classes <= 1048576)",
             dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
    assert_null(w);
    /* what the reader would refuse is refused before anything is written */
    assert_int_equal(
        graft_dataset_writer_new_sequences(&w, dir, "bytes", 256, (1 << 20) + 1, 0, 2, NULL, 16),
        GRAFT_ERR_INVALID_ARG);
    assert_null(w);
    const char *names[2] = {"good", "bad\xff"};
    capture_begin();
    st = graft_dataset_writer_new_sequences(&w, dir, "bytes", 256, 8, 0, 2, names, 16);
    text = capture_end();
    snprintf(want, sizeof want,
             "%s: the name of class 1 is not valid UTF-8 (index.json cannot hold it)", dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
    assert_null(w);
    struct stat sb;
    assert_int_not_equal(stat(dir, &sb), 0);

    assert_int_equal(graft_dataset_writer_new_sequences(&w, dir, "bytes", 256, 8, 0, 2, NULL, 16),
                     GRAFT_OK);
    int32_t ids[3] = {65, 300, 66};
    capture_begin();
    st = graft_dataset_writer_add_sequence(w, ids, 3, 1);
    text = capture_end();
    snprintf(want, sizeof want, "%s: token id 300 at position 1 of sample 0 is outside [0, 256)",
             dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
    ids[1] = 32;
    capture_begin();
    st = graft_dataset_writer_add_sequence(w, ids, 3, 2);
    text = capture_end();
    snprintf(want, sizeof want, "%s: label 2 of sample 0 is outside [0, 2)", dir);
    check_one_error(text, want);
    assert_int_equal(st, GRAFT_ERR_INVALID_ARG);
    /* other kinds' appends are refused */
    uint8_t px[4] = {0};
    assert_int_equal(graft_dataset_writer_add_image(w, px, 0), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_dataset_writer_add_tokens(w, ids, 3), GRAFT_ERR_INVALID_ARG);
    assert_int_equal(graft_dataset_writer_add_sequence(w, ids, 0, 1), GRAFT_OK); /* all padding */
    assert_int_equal(graft_dataset_writer_finish(w), GRAFT_OK);
    graft_dataset_writer_free(w);
    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 1), GRAFT_OK);
    int32_t row[8];
    assert_int_equal(graft_dataset_sequence(&d, 0, row), 1);
    for (int t = 0; t < 8; t++)
        assert_int_equal(row[t], 0);
    assert_null(d.class_names);
    graft_dataset_close(&d);

    /* an image writer takes no sequences */
    assert_int_equal(
        graft_dataset_writer_new_images(&w, path_in(root, "seq_img"), 1, 2, 2, 2, NULL, 4),
        GRAFT_OK);
    assert_int_equal(graft_dataset_writer_add_sequence(w, ids, 3, 0), GRAFT_ERR_INVALID_ARG);
    graft_dataset_writer_free(w);
}

/* A fresh copy of the sequence dataset (vocab 300) under a new name. */
static char *fresh_sequences(const char *name) {
    char *dir = path_in(root, name);
    make_sequence_dataset(dir, 300);
    return dir;
}

/* Replace shard `s` of dir by a file holding the given tensors (NULL name: left out) and
 * record its new size in index.json, so only the contents are wrong. */
static void rewrite_shard(const char *dir, int s, const char *tok_name, graft_dtype tok_dtype,
                          int tok_ndim, const int64_t *tok_shape, const void *tok_data,
                          const char *lab_name, int64_t n_labels, const int64_t *labels) {
    char file[64];
    snprintf(file, sizeof file, "shard-%05d.safetensors", s);
    char *shard = path_in(dir, file);
    graft_st_writer w;
    graft_st_writer_init(&w);
    if (tok_name)
        assert_int_equal(
            graft_st_writer_add(&w, tok_name, tok_dtype, tok_ndim, tok_shape, tok_data), GRAFT_OK);
    if (lab_name)
        assert_int_equal(graft_st_writer_add(&w, lab_name, GRAFT_DTYPE_I64, 1, &n_labels, labels),
                         GRAFT_OK);
    assert_int_equal(graft_st_writer_save(&w, shard), GRAFT_OK);
    graft_st_writer_free(&w);
    struct stat sb;
    assert_int_equal(stat(shard, &sb), 0);
    json_t *j = load_index(dir);
    json_t *entry = json_array_get(json_object_get(j, "shards"), (size_t)s);
    json_object_set_new(entry, "bytes", json_integer((json_int_t)sb.st_size));
    json_object_del(entry, "xxh64");
    save_index(dir, j);
}

/* Every check of a sequences index and its shards, each with its exact line. */
static void test_sequence_validation(void **state) {
    (void)state;
    char want[600];
    struct {
        const char *key;
        json_t *value; /* NULL: key removed */
        const char *message;
    } fields[] = {
        {"kind", json_string("sequence"),
         "\"kind\" must be \"images\", \"tokens\" or \"sequences\", got \"sequence\""},
        {"sample_shape", json_pack("[ii]", 6, 1),
         "\"sample_shape\" must be [T] with 1 <= T <= 1048576, got [6,1]"},
        {"sample_shape", json_pack("[i]", 0),
         "\"sample_shape\" must be [T] with 1 <= T <= 1048576, got [0]"},
        {"pad_id", NULL, "missing \"pad_id\""},
        {"pad_id", json_integer(300), "\"pad_id\" must be an integer in [0, 299], got 300"},
        {"vocab_size", NULL, "missing \"vocab_size\""},
        {"tokenizer", json_integer(2), "\"tokenizer\" must be a string, got 2"},
        {"num_classes", NULL, "missing \"num_classes\""},
        {"class_names", json_pack("[ss]", "a", "b"),
         "\"class_names\" must be an array of num_classes = 3 strings, got [\"a\",\"b\"]"},
        {"num_samples", json_integer(11),
         "the 3 shards hold 10 samples in total, \"num_samples\" says 11"},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        char name[32];
        snprintf(name, sizeof name, "seq_field%zu", f);
        char *dir = fresh_sequences(name);
        json_t *j = load_index(dir);
        if (fields[f].value)
            json_object_set_new(j, fields[f].key, fields[f].value);
        else
            json_object_del(j, fields[f].key);
        save_index(dir, j);
        snprintf(want, sizeof want, "%s: %s", path_in(dir, "index.json"), fields[f].message);
        expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
    }

    /* ids out of the (lowered) vocabulary: named by sample and position; pad_id kept valid */
    char *dir = fresh_sequences("seq_vocab");
    json_t *j = load_index(dir);
    json_object_set_new(j, "vocab_size", json_integer(100));
    json_object_set_new(j, "pad_id", json_integer(0));
    save_index(dir, j);
    size_t bad = 0; /* the first id >= 100 in storage order */
    while (bad < 4 * SEQ_T &&
           (bad % SEQ_T >= seq_len_of(bad / SEQ_T) ? SEQ_PAD
                                                   : seq_id(bad / SEQ_T, bad % SEQ_T, 300)) < 100)
        bad++;
    assert_true(bad < 4 * SEQ_T);
    snprintf(want, sizeof want, "%s: token %d at sample %zu, position %zu is outside [0, 100)",
             path_in(dir, "shard-00000.safetensors"), seq_id(bad / SEQ_T, bad % SEQ_T, 300),
             bad / SEQ_T, bad % SEQ_T);
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* labels outside the (lowered) class count */
    dir = fresh_sequences("seq_classes");
    j = load_index(dir);
    json_object_set_new(j, "num_classes", json_integer(2));
    json_object_del(j, "class_names");
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: label 2 at sample 2 is outside [0, 2)",
             path_in(dir, "shard-00000.safetensors"));
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* rows of another length than sample_shape */
    dir = fresh_sequences("seq_len");
    j = load_index(dir);
    json_object_set_new(j, "sample_shape", json_pack("[i]", SEQ_T + 1));
    save_index(dir, j);
    snprintf(want, sizeof want,
             "%s: tensor 'tokens' has shape [4, 6], index.json says samples are [7]",
             path_in(dir, "shard-00000.safetensors"));
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* per-shard counts that add up but disagree with the files */
    dir = fresh_sequences("seq_counts");
    j = load_index(dir);
    json_t *shards = json_object_get(j, "shards");
    json_object_set_new(json_array_get(shards, 1), "samples", json_integer(3));
    json_object_set_new(json_array_get(shards, 2), "samples", json_integer(3));
    save_index(dir, j);
    snprintf(want, sizeof want, "%s: holds 4 samples, index.json says 3",
             path_in(dir, "shard-00001.safetensors"));
    expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);

    /* shard tensors that are not what a sequences index promises */
    uint16_t ids[4 * SEQ_T] = {0};
    float floats[4 * SEQ_T] = {0};
    int64_t labels[4] = {0, 1, 2, 0};
    int64_t shape2[2] = {4, SEQ_T}, shape1[1] = {4 * SEQ_T};
    struct {
        const char *tok_name;
        graft_dtype dtype;
        int ndim;
        const int64_t *shape;
        const void *data;
        const char *lab_name;
        int64_t n_labels;
        const char *message;
    } shards_bad[] = {
        {"tokens", GRAFT_DTYPE_U16, 1, shape1, ids, "labels", 4,
         "tensor 'tokens' has shape [24], expected 2 dimensions"},
        {"tokens", GRAFT_DTYPE_F32, 2, shape2, floats, "labels", 4,
         "tensor 'tokens' is F32, expected U16 or I32"},
        {"inputs", GRAFT_DTYPE_U16, 2, shape2, ids, "labels", 4, "no tensor 'tokens'"},
        {"tokens", GRAFT_DTYPE_U16, 2, shape2, ids, NULL, 0, "no tensor 'labels'"},
        {"tokens", GRAFT_DTYPE_U16, 2, shape2, ids, "labels", 3,
         "tensor 'labels' has 3 entries, 'tokens' has 4 samples"},
    };
    for (size_t b = 0; b < sizeof shards_bad / sizeof shards_bad[0]; b++) {
        char name[32];
        snprintf(name, sizeof name, "seq_shard%zu", b);
        dir = fresh_sequences(name);
        rewrite_shard(dir, 1, shards_bad[b].tok_name, shards_bad[b].dtype, shards_bad[b].ndim,
                      shards_bad[b].shape, shards_bad[b].data, shards_bad[b].lab_name,
                      shards_bad[b].n_labels, labels);
        snprintf(want, sizeof want, "%s: %s", path_in(dir, "shard-00001.safetensors"),
                 shards_bad[b].message);
        expect_open_error(dir, 0, GRAFT_ERR_FORMAT, want);
    }
    /* a well-formed replacement shard (I32 next to U16 shards) is accepted */
    dir = fresh_sequences("seq_shard_ok");
    int32_t wide[4 * SEQ_T];
    for (int k = 0; k < 4 * SEQ_T; k++)
        wide[k] = 200 + k;
    rewrite_shard(dir, 1, "tokens", GRAFT_DTYPE_I32, 2, shape2, wide, "labels", 4, labels);
    graft_dataset d;
    assert_int_equal(graft_dataset_open(&d, dir, 0), GRAFT_OK);
    int32_t row[SEQ_T];
    assert_int_equal(graft_dataset_sequence(&d, 5, row), 1); /* shard 1, row 1 */
    for (int t = 0; t < SEQ_T; t++)
        assert_int_equal(row[t], 200 + SEQ_T + t);
    assert_int_equal(graft_dataset_sequence(&d, 0, row), 0); /* shard 0 still U16 */
    assert_int_equal(row[0], seq_id(0, 0, 300));
    graft_dataset_close(&d);
}

static int setup(void **state) {
    (void)state;
    return tu_make_temp_dir(root, sizeof root, "dataset");
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(root);
    for (int i = 0; i < n_paths; i++)
        free(paths[i]);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_images_round_trip),    cmocka_unit_test(test_tokens_round_trip),
        cmocka_unit_test(test_writer_target_rules),  cmocka_unit_test(test_checksum_mismatch),
        cmocka_unit_test(test_truncated_shard),      cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_label_out_of_range),   cmocka_unit_test(test_token_out_of_range),
        cmocka_unit_test(test_malformed_index),      cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_sequences_round_trip), cmocka_unit_test(test_sequence_writer_errors),
        cmocka_unit_test(test_sequence_validation),  cmocka_unit_test(test_prediction_fields),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
