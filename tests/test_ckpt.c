/* Tests for runtime/ckpt: save/load round trips (bit-exact values, optimizer state,
 * step and training state, config text), byte-identical saves, keep_last pruning,
 * save_frozen once, saves that fail midway (file size limit, /dev/full, a blocked
 * path) leaving earlier checkpoints intact, damaged checkpoints (flipped byte,
 * truncated file, missing latest target, garbage state.json) with find_resume falling
 * back, and mismatching models and optimizers. */
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/ckpt/ckpt.h"
#include "runtime/core/log.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"

#define PATH_LEN 4096
static const char *const CONFIG_TEXT = "experiment: ckpt-test\noptim:\n  lr: 0.0003\n";

/* ---- helpers -------------------------------------------------------------------- */

/* A fresh empty directory under /tmp (caller removes it with remove_dir). */
static void make_root(char *root) {
    snprintf(root, PATH_LEN, "/tmp/graft_test_ckpt_XXXXXX");
    assert_non_null(mkdtemp(root));
}

static void remove_dir(const char *root) {
    char cmd[PATH_LEN + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void join(char *out, const char *a, const char *b) {
    int n = snprintf(out, PATH_LEN, "%s/%s", a, b);
    assert_true(n > 0 && n < PATH_LEN);
}

static int path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The whole file, NUL-terminated (caller frees); *len its size. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Log capture: every log line also goes to a temporary file. */
static FILE *capture_file;
static void capture_start(void) {
    capture_file = tmpfile();
    assert_non_null(capture_file);
    graft_log_set_file(capture_file);
}
/* Stop capturing; returns the captured text (caller frees). */
static char *capture_stop(void) {
    graft_log_set_file(NULL);
    long n = ftell(capture_file);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    rewind(capture_file);
    size_t got = fread(buf, 1, (size_t)n, capture_file);
    buf[got] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return buf;
}
/* Assert the captured text holds `want`, printing both. */
static void expect_logged(const char *log, const char *want) {
    printf("  expect in log: %s\n", want);
    if (!strstr(log, want)) printf("  log was:\n%s\n", log);
    assert_non_null(strstr(log, want));
}
static int count_lines(const char *text) {
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* The test model: embed.weight [10, 8] frozen, fc1.weight [H, 8], fc1.bias [H],
 * bn.running_mean / bn.running_var [H] buffers, fc2.weight [4, H]; values from seed. */
static void make_table(graft_params *p, int64_t hidden, const char *frozen_glob, uint64_t seed) {
    graft_params_init(p);
    const int64_t embed[2] = {10, 8}, fc1w[2] = {hidden, 8}, vec[1] = {hidden},
                  fc2w[2] = {4, hidden};
    assert_true(graft_params_add(p, "embed.weight", GRAFT_KIND_PARAM, 2, embed) >= 0);
    assert_true(graft_params_add(p, "fc1.weight", GRAFT_KIND_PARAM, 2, fc1w) >= 0);
    assert_true(graft_params_add(p, "fc1.bias", GRAFT_KIND_PARAM, 1, vec) >= 0);
    assert_true(graft_params_add(p, "bn.running_mean", GRAFT_KIND_BUFFER, 1, vec) >= 0);
    assert_true(graft_params_add(p, "bn.running_var", GRAFT_KIND_BUFFER, 1, vec) >= 0);
    assert_true(graft_params_add(p, "fc2.weight", GRAFT_KIND_PARAM, 2, fc2w) >= 0);
    assert_int_equal(graft_params_set_trainable(p, frozen_glob, 0, NULL), GRAFT_OK);
    assert_int_equal(graft_params_finalize(p), GRAFT_OK);
    tu_fill_uniform(p->values, p->n_values, -1.0f, 1.0f, seed);
}

static void default_table(graft_params *p, uint64_t seed) { make_table(p, 16, "embed.*", seed); }

/* An optimizer of `kind` (SGD with momentum 0.9 / AdamW) with `steps` steps taken on
 * random gradients, so its state is not trivial. */
static void make_optim(graft_optim *o, graft_params *p, graft_optim_kind kind, double momentum,
                       int steps, uint64_t seed) {
    graft_optim_config cfg;
    graft_optim_config_default(&cfg, kind);
    if (kind == GRAFT_OPTIM_SGD) cfg.momentum = momentum;
    assert_int_equal(graft_optim_init(o, &cfg, p), GRAFT_OK);
    for (int s = 0; s < steps; s++) {
        tu_fill_uniform(p->grads, p->n_grads, -0.5f, 0.5f, seed + (uint64_t)s);
        assert_int_equal(graft_optim_step(o, p, 0.01f), GRAFT_OK);
    }
}

static uint64_t test_rng[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};

static graft_ckpt_state make_state(long step) {
    graft_ckpt_state s;
    memset(&s, 0, sizeof s);
    s.step = step;
    s.epoch = 1 + step / 10;
    s.cursor = 1000003ull * (uint64_t)step;
    s.world_size = 2;
    s.rng_states = test_rng;
    s.lr = 3e-4 * (1.0 + 1.0 / 3.0) + (double)step * 1e-7; /* not a short decimal */
    s.config_digest = 0xdeadbeefcafef00dull;
    return s;
}

static graft_status save_step(const char *root, const graft_params *p, const graft_optim *o,
                              long step, int once, int keep_last, uint64_t *bytes) {
    graft_ckpt_state s = make_state(step);
    graft_ckpt_save_args a = {.dir = root,
                              .params = p,
                              .optim = o,
                              .state = &s,
                              .config_yaml = CONFIG_TEXT,
                              .save_frozen_once = once,
                              .keep_last = keep_last};
    return graft_ckpt_save(&a, bytes);
}

static void read_latest(const char *root, char *out, size_t size) {
    char path[PATH_LEN];
    join(path, root, "latest");
    char *text = read_all(path, NULL);
    snprintf(out, size, "%s", text);
    free(text);
}

/* Number of entries in dir whose name starts with prefix (first match copied to name). */
static int count_entries(const char *dir, const char *prefix, char *name) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            if (name && n == 0) snprintf(name, PATH_LEN, "%s", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/* Assert two tables hold the same values bit for bit; prints the float count. */
static void expect_same_values(const char *label, const graft_params *a, const graft_params *b) {
    assert_int_equal(a->n_values, b->n_values);
    size_t differ = 0;
    for (size_t i = 0; i < a->n_values; i++)
        differ += memcmp(&a->values[i], &b->values[i], sizeof(float)) != 0;
    printf("  %-40s %zu of %zu floats differ (bound 0)\n", label, differ, a->n_values);
    assert_int_equal(differ, 0);
}

static void expect_same_optim(const graft_optim *a, const graft_optim *b) {
    assert_int_equal(a->n_bufs, b->n_bufs);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->step, b->step);
    size_t n = (size_t)a->n_bufs * a->n, differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += memcmp(&a->state[i], &b->state[i], sizeof(float)) != 0;
    printf("  %-40s %zu of %zu floats differ (bound 0), step %lld\n", "optimizer state", differ, n,
           (long long)a->step);
    assert_int_equal(differ, 0);
}

/* Rewrite ckpt/MANIFEST from the files as they are now (to get past the checksum
 * and reach the parser with a hand-made file). */
static void rewrite_manifest(const char *ckpt) {
    const char *files[4] = {"config.yaml", "model.safetensors", "optim.safetensors", "state.json"};
    char text[1024];
    size_t used = 0;
    for (int f = 0; f < 4; f++) {
        char path[PATH_LEN];
        size_t len;
        join(path, ckpt, files[f]);
        char *data = read_all(path, &len);
        used += (size_t)snprintf(text + used, sizeof text - used, "%016llx %zu %s\n",
                                 (unsigned long long)XXH64(data, len, 0), len, files[f]);
        free(data);
    }
    char path[PATH_LEN];
    join(path, ckpt, "MANIFEST");
    write_all(path, text, used);
}

/* ---- round trips -------------------------------------------------------------------- */

/* Save a table + optimizer, load into a table and optimizer holding other values:
 * every value, state float, the step counter, the state fields and the config come
 * back bit for bit. */
static void roundtrip(graft_optim_kind kind, double momentum, int once) {
    char root[PATH_LEN];
    make_root(root);
    graft_params p, q;
    graft_optim o, r;
    default_table(&p, 1);
    make_optim(&o, &p, kind, momentum, 3, 10);
    uint64_t bytes = 0;
    assert_int_equal(save_step(root, &p, &o, 3, once, 3, &bytes), GRAFT_OK);
    assert_true(bytes > 0);

    default_table(&q, 2);
    make_optim(&r, &q, kind, momentum, 1, 20);
    graft_ckpt_state s;
    char *config = NULL;
    char ckpt[PATH_LEN];
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    char want_ckpt[PATH_LEN];
    join(want_ckpt, root, "step-00000003");
    assert_string_equal(ckpt, want_ckpt);
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_OK);
    assert_int_equal(graft_ckpt_load(ckpt, &q, &r, &s, &config), GRAFT_OK);

    expect_same_values("parameter and buffer values", &p, &q);
    expect_same_optim(&o, &r);
    graft_ckpt_state want = make_state(3);
    assert_int_equal(s.step, want.step);
    assert_int_equal(s.epoch, want.epoch);
    assert_true(s.cursor == want.cursor);
    assert_int_equal(s.world_size, 2);
    assert_non_null(s.rng_states);
    assert_memory_equal(s.rng_states, test_rng, sizeof test_rng);
    assert_memory_equal(&s.lr, &want.lr, sizeof want.lr); /* doubles bit for bit */
    assert_true(s.config_digest == want.config_digest);
    assert_string_equal(s.version, GRAFT_VERSION);
    assert_non_null(config);
    assert_string_equal(config, CONFIG_TEXT);
    free(config);
    graft_ckpt_state_free(&s);
    graft_ckpt_state_free(&s); /* twice is fine */
    assert_null(s.rng_states);

    /* state NULL, config NULL, optimizer NULL: weights only */
    graft_params w;
    default_table(&w, 3);
    assert_int_equal(graft_ckpt_load(ckpt, &w, NULL, NULL, NULL), GRAFT_OK);
    expect_same_values("weights-only load", &p, &w);

    graft_params_free(&w);
    graft_optim_free(&r);
    graft_params_free(&q);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

static void test_roundtrip_adamw(void **state) {
    (void)state;
    roundtrip(GRAFT_OPTIM_ADAMW, 0, 0);
}

static void test_roundtrip_sgd_momentum_frozen_once(void **state) {
    (void)state;
    roundtrip(GRAFT_OPTIM_SGD, 0.9, 1);
}

static void test_roundtrip_plain_sgd(void **state) {
    (void)state;
    roundtrip(GRAFT_OPTIM_SGD, 0.0, 0);
}

/* The layout the header promises: the files, state.json's keys (sorted), MANIFEST
 * lines, latest, and bytes_written adding up to what is on disk. */
static void test_layout_and_state_json(void **state) {
    (void)state;
    char root[PATH_LEN], path[PATH_LEN], ckpt[PATH_LEN];
    make_root(root);
    graft_params p;
    graft_optim o;
    default_table(&p, 1);
    make_optim(&o, &p, GRAFT_OPTIM_ADAMW, 0, 2, 5);
    uint64_t bytes = 0;
    assert_int_equal(save_step(root, &p, &o, 1200, 1, 3, &bytes), GRAFT_OK);
    join(ckpt, root, "step-00001200");
    uint64_t on_disk = 0;
    const char *files[5] = {"MANIFEST", "config.yaml", "model.safetensors", "optim.safetensors",
                            "state.json"};
    for (int f = 0; f < 5; f++) {
        struct stat st;
        join(path, ckpt, files[f]);
        assert_int_equal(stat(path, &st), 0);
        on_disk += (uint64_t)st.st_size;
    }
    char frozen[PATH_LEN];
    assert_int_equal(count_entries(root, "frozen-", frozen), 1);
    join(path, root, frozen);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    on_disk += (uint64_t)st.st_size + strlen("step-00001200\n");
    printf("  bytes_written %llu, on disk %llu\n", (unsigned long long)bytes,
           (unsigned long long)on_disk);
    assert_true(bytes == on_disk);

    char latest[64];
    read_latest(root, latest, sizeof latest);
    assert_string_equal(latest, "step-00001200\n");

    join(path, ckpt, "state.json");
    char *json = read_all(path, NULL);
    printf("%s", json);
    const char *keys[] = {"\"config_digest\": \"deadbeefcafef00d\"",
                          "\"cursor\": 1200003600",
                          "\"epoch\": 121",
                          "\"frozen\": {",
                          "\"lr\": ",
                          "\"optimizer\": {",
                          "\"rng_states\": [",
                          "\"step\": 1200",
                          /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one key */
                          "\"version\": \"" GRAFT_VERSION "\"",
                          "\"world_size\": 2"};
    const char *prev = json;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *at = strstr(json, keys[k]);
        if (!at) printf("  missing %s\n", keys[k]);
        assert_non_null(at);
        assert_true(at >= prev); /* sorted keys */
        prev = at;
    }
    assert_non_null(strstr(json, "\"kind\": \"adamw\""));
    assert_non_null(strstr(json, "\"0123456789abcdef\""));
    char want_file[PATH_LEN + 16];
    snprintf(want_file, sizeof want_file, "\"file\": \"%s\"", frozen);
    assert_non_null(strstr(json, want_file));
    free(json);

    join(path, ckpt, "MANIFEST");
    char *manifest = read_all(path, NULL);
    printf("%s", manifest);
    assert_int_equal(count_lines(manifest), 4);
    const char *names[4] = {" config.yaml\n", " model.safetensors\n", " optim.safetensors\n",
                            " state.json\n"};
    prev = manifest;
    for (int f = 0; f < 4; f++) {
        const char *at = strstr(manifest, names[f]);
        assert_non_null(at);
        assert_true(at >= prev);
        prev = at;
    }
    free(manifest);

    /* optimizer state by torch names */
    graft_st_file f;
    join(path, ckpt, "optim.safetensors");
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_int_equal(f.n_tensors, 2 * 3); /* exp_avg, exp_avg_sq of 3 trainable params */
    assert_non_null(graft_st_find(&f, "exp_avg.fc1.weight"));
    assert_non_null(graft_st_find(&f, "exp_avg_sq.fc2.weight"));
    assert_null(graft_st_find(&f, "exp_avg.embed.weight"));
    graft_st_close(&f);

    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* Identical state saved into two roots gives byte-identical files. */
static void test_determinism(void **state) {
    (void)state;
    char root_a[PATH_LEN], root_b[PATH_LEN];
    make_root(root_a);
    make_root(root_b);
    graft_params p;
    graft_optim o;
    default_table(&p, 7);
    make_optim(&o, &p, GRAFT_OPTIM_ADAMW, 0, 2, 70);
    assert_int_equal(save_step(root_a, &p, &o, 5, 1, 3, NULL), GRAFT_OK);
    sleep(1); /* a timestamp anywhere would now differ */
    assert_int_equal(save_step(root_b, &p, &o, 5, 1, 3, NULL), GRAFT_OK);
    char frozen[PATH_LEN];
    assert_int_equal(count_entries(root_a, "frozen-", frozen), 1);
    char frozen_rel[PATH_LEN];
    snprintf(frozen_rel, sizeof frozen_rel, "%s", frozen);
    const char *files[] = {"latest",
                           "step-00000005/MANIFEST",
                           "step-00000005/config.yaml",
                           "step-00000005/model.safetensors",
                           "step-00000005/optim.safetensors",
                           "step-00000005/state.json",
                           frozen_rel};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char pa[PATH_LEN], pb[PATH_LEN];
        join(pa, root_a, files[k]);
        join(pb, root_b, files[k]);
        size_t la, lb;
        char *a = read_all(pa, &la), *b = read_all(pb, &lb);
        printf("  %-34s %6zu bytes, %s\n", files[k], la,
               la == lb && memcmp(a, b, la) == 0 ? "identical" : "DIFFERENT");
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
    }
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root_a);
    remove_dir(root_b);
}

/* keep_last 2 over five saves keeps the last two; a stale .tmp directory of a crashed
 * save is removed by the next save; re-saving an existing step replaces it. */
static void test_keep_last(void **state) {
    (void)state;
    char root[PATH_LEN], path[PATH_LEN];
    make_root(root);
    graft_params p;
    graft_optim o;
    default_table(&p, 1);
    make_optim(&o, &p, GRAFT_OPTIM_SGD, 0.9, 1, 10);
    for (long step = 1; step <= 4; step++) {
        assert_int_equal(graft_optim_step(&o, &p, 0.01f), GRAFT_OK);
        assert_int_equal(save_step(root, &p, &o, step, 0, 2, NULL), GRAFT_OK);
    }
    /* a crashed save left this behind */
    join(path, root, "step-00000009.tmp");
    assert_int_equal(mkdir(path, 0755), 0);
    char junk[PATH_LEN];
    join(junk, path, "model.safetensors");
    write_all(junk, "partial", 7);
    assert_int_equal(save_step(root, &p, &o, 5, 0, 2, NULL), GRAFT_OK);
    assert_false(path_exists(path));

    const char *want_gone[] = {"step-00000001", "step-00000002", "step-00000003"};
    for (int k = 0; k < 3; k++) {
        join(path, root, want_gone[k]);
        assert_false(path_exists(path));
    }
    join(path, root, "step-00000004");
    assert_true(path_exists(path));
    join(path, root, "step-00000005");
    assert_true(path_exists(path));
    assert_int_equal(count_entries(root, "step-", NULL), 2);
    char latest[64];
    read_latest(root, latest, sizeof latest);
    assert_string_equal(latest, "step-00000005\n");

    /* saving step 5 again (after a resume) replaces it in place */
    tu_fill_uniform(p.values, p.n_values, -2.0f, 2.0f, 55);
    assert_int_equal(save_step(root, &p, &o, 5, 0, 2, NULL), GRAFT_OK);
    graft_params q;
    default_table(&q, 9);
    join(path, root, "step-00000005");
    assert_int_equal(graft_ckpt_load(path, &q, NULL, NULL, NULL), GRAFT_OK);
    expect_same_values("re-saved step 5", &p, &q);
    assert_int_equal(count_entries(root, "step-", NULL), 2);

    /* keep_last 1 */
    assert_int_equal(save_step(root, &p, &o, 6, 0, 1, NULL), GRAFT_OK);
    assert_int_equal(count_entries(root, "step-", NULL), 1);
    join(path, root, "step-00000006");
    assert_true(path_exists(path));

    /* a crash between moving step 6 aside (re-saving it) and renaming the new one in:
     * the next save puts it back */
    char aside[PATH_LEN];
    join(aside, root, "step-00000006.old.tmp");
    assert_int_equal(rename(path, aside), 0);
    assert_int_equal(save_step(root, &p, &o, 7, 0, 2, NULL), GRAFT_OK);
    assert_false(path_exists(aside));
    assert_int_equal(graft_ckpt_verify(path), GRAFT_OK);
    assert_int_equal(count_entries(root, "step-", NULL), 2);

    /* bad keep_last */
    assert_int_equal(save_step(root, &p, &o, 7, 0, 0, NULL), GRAFT_ERR_INVALID_ARG);

    graft_params_free(&q);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* save_frozen once: the frozen parameter goes to one frozen file, written by the first
 * save and reused (same inode, same mtime) by the next; model.safetensors keeps the
 * trainable parameters and the buffers; load and export get the frozen values back;
 * changed frozen values give a new file and the old one goes when unreferenced. */
static void test_save_frozen_once(void **state) {
    (void)state;
    char root[PATH_LEN], path[PATH_LEN], frozen[PATH_LEN], frozen_path[PATH_LEN];
    make_root(root);
    graft_params p;
    graft_optim o;
    default_table(&p, 1);
    make_optim(&o, &p, GRAFT_OPTIM_ADAMW, 0, 1, 10);
    assert_int_equal(save_step(root, &p, &o, 1, 1, 3, NULL), GRAFT_OK);
    assert_int_equal(count_entries(root, "frozen-", frozen), 1);
    join(frozen_path, root, frozen);
    struct stat first;
    assert_int_equal(stat(frozen_path, &first), 0);

    graft_st_file f;
    assert_int_equal(graft_st_open(&f, frozen_path), GRAFT_OK);
    assert_int_equal(f.n_tensors, 1);
    assert_non_null(graft_st_find(&f, "embed.weight"));
    graft_st_close(&f);

    sleep(1); /* a rewrite would change the mtime */
    assert_int_equal(graft_optim_step(&o, &p, 0.01f), GRAFT_OK);
    assert_int_equal(save_step(root, &p, &o, 2, 1, 3, NULL), GRAFT_OK);
    struct stat second;
    assert_int_equal(stat(frozen_path, &second), 0);
    printf("  frozen file %s: inode %llu -> %llu, mtime %lld.%09ld -> %lld.%09ld\n", frozen,
           (unsigned long long)first.st_ino, (unsigned long long)second.st_ino,
           (long long)first.st_mtim.tv_sec, first.st_mtim.tv_nsec, (long long)second.st_mtim.tv_sec,
           second.st_mtim.tv_nsec);
    FILE *listing = tmpfile();
    assert_int_equal(graft_ckpt_list(root, listing), GRAFT_OK);
    char text[4096];
    long n_text = ftell(listing);
    rewind(listing);
    text[fread(text, 1, n_text < 4095 ? (size_t)n_text : 4095, listing)] = '\0';
    fclose(listing);
    printf("%s", text);
    char want_line[PATH_LEN + 64];
    snprintf(want_line, sizeof want_line,
             "%s: %lld bytes, the frozen parameters of 2 checkpoints\n", frozen,
             (long long)first.st_size);
    assert_non_null(strstr(text, want_line));
    assert_true(first.st_ino == second.st_ino);
    assert_true(first.st_mtim.tv_sec == second.st_mtim.tv_sec &&
                first.st_mtim.tv_nsec == second.st_mtim.tv_nsec);
    assert_int_equal(count_entries(root, "frozen-", NULL), 1);

    char ckpt[PATH_LEN];
    join(ckpt, root, "step-00000002");
    join(path, ckpt, "model.safetensors");
    assert_int_equal(graft_st_open(&f, path), GRAFT_OK);
    assert_null(graft_st_find(&f, "embed.weight"));
    assert_non_null(graft_st_find(&f, "fc1.weight"));
    assert_non_null(graft_st_find(&f, "bn.running_mean")); /* buffers stay here */
    assert_non_null(graft_st_find(&f, "bn.running_var"));
    assert_int_equal(f.n_tensors, 5);
    graft_st_close(&f);

    graft_params q;
    graft_optim r;
    default_table(&q, 2);
    make_optim(&r, &q, GRAFT_OPTIM_ADAMW, 0, 0, 0);
    assert_int_equal(graft_ckpt_load(ckpt, &q, &r, NULL, NULL), GRAFT_OK);
    expect_same_values("load with frozen file", &p, &q);
    expect_same_optim(&o, &r);

    /* export: one file with everything, loadable strictly into a fresh table */
    char exported[PATH_LEN];
    join(exported, root, "export.safetensors");
    assert_int_equal(graft_ckpt_export(ckpt, exported, GRAFT_DTYPE_F32), GRAFT_OK);
    assert_int_equal(graft_st_open(&f, exported), GRAFT_OK);
    assert_int_equal(f.n_tensors, 6);
    assert_string_equal(graft_st_metadata_get(&f, "format"), "pt");
    graft_st_close(&f);
    graft_params e;
    default_table(&e, 3);
    graft_load_report rep = {0};
    assert_int_equal(graft_params_load(&e, exported, &(graft_load_options){.strict = 1}, &rep), GRAFT_OK);
    assert_int_equal(rep.matched, 6);
    expect_same_values("export", &p, &e);
    unlink(exported);

    /* frozen values changed (another frozen set): a new file; keep_last 1 prunes the
     * checkpoints that referenced the old one, and with them the old file */
    tu_fill_uniform(graft_params_value(&p, 0), p.items[0].numel, -3.0f, 3.0f, 99);
    assert_int_equal(save_step(root, &p, &o, 3, 1, 1, NULL), GRAFT_OK);
    char new_frozen[PATH_LEN];
    assert_int_equal(count_entries(root, "frozen-", new_frozen), 1);
    assert_string_not_equal(new_frozen, frozen);
    assert_false(path_exists(frozen_path));
    join(ckpt, root, "step-00000003");
    assert_int_equal(graft_ckpt_load(ckpt, &q, &r, NULL, NULL), GRAFT_OK);
    expect_same_values("load with the new frozen file", &p, &q);

    /* once off again: everything in model.safetensors, the frozen file goes */
    assert_int_equal(save_step(root, &p, &o, 4, 0, 1, NULL), GRAFT_OK);
    assert_int_equal(count_entries(root, "frozen-", NULL), 0);

    /* a missing frozen file is reported by verify */
    assert_int_equal(save_step(root, &p, &o, 5, 1, 1, NULL), GRAFT_OK);
    assert_int_equal(count_entries(root, "frozen-", new_frozen), 1);
    join(path, root, new_frozen);
    unlink(path);
    join(ckpt, root, "step-00000005");
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    char *log = capture_stop();
    char want[2 * PATH_LEN + 64];
    snprintf(want, sizeof want, "%s: frozen file %s is missing", ckpt, path);
    expect_logged(log, want);
    free(log);
    /* and the next save writes it again rather than trusting the name */
    assert_int_equal(save_step(root, &p, &o, 6, 1, 1, NULL), GRAFT_OK);
    assert_true(path_exists(path));

    graft_params_free(&e);
    graft_optim_free(&r);
    graft_params_free(&q);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* ---- failures during save ----------------------------------------------------------- */

/* Export as F16 and BF16: every value rounded to nearest even (compared with the scalar
 * conversions, which test_safetensors checks against references), both files of a
 * save_frozen_once checkpoint included, the result loading strictly; BatchNorm's step
 * count stays F32; a value beyond F16's range refuses the F16 export naming the tensor
 * and writes nothing, while BF16 (F32's range) takes it. */
static void test_export_dtypes(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], out[PATH_LEN];
    make_root(root);
    graft_params p;
    graft_optim o;
    default_table(&p, 1);
    make_optim(&o, &p, GRAFT_OPTIM_ADAMW, 0, 1, 10);
    assert_int_equal(save_step(root, &p, &o, 1, 1, 3, NULL), GRAFT_OK);
    join(ckpt, root, "step-00000001");
    join(out, root, "export.safetensors");
    const graft_dtype dtypes[2] = {GRAFT_DTYPE_F16, GRAFT_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        assert_int_equal(graft_ckpt_export(ckpt, out, dtypes[d]), GRAFT_OK);
        graft_st_file f;
        assert_int_equal(graft_st_open(&f, out), GRAFT_OK);
        assert_int_equal(f.n_tensors, 6);
        for (size_t k = 0; k < f.n_tensors; k++)
            assert_int_equal(f.tensors[k].dtype, dtypes[d]);
        graft_st_close(&f);
        graft_params e;
        default_table(&e, 3);
        graft_load_report rep = {0};
        assert_int_equal(
            graft_params_load(&e, out, &(graft_load_options){.strict = 1}, &rep), GRAFT_OK);
        assert_int_equal(rep.matched, 6);
        size_t differ = 0, changed = 0;
        for (size_t i = 0; i < p.n_values; i++) {
            float x = p.values[i];
            float want = dtypes[d] == GRAFT_DTYPE_F16 ? graft_f16_to_f32(graft_f32_to_f16(x))
                                                      : graft_bf16_to_f32(graft_f32_to_bf16(x));
            differ += memcmp(&want, &e.values[i], sizeof want) != 0;
            changed += want != x;
        }
        printf("  %-5s export: %zu of %zu values rounded, %zu differ from round-to-nearest-even\n",
               graft_dtype_name(dtypes[d]), changed, p.n_values, differ);
        assert_int_equal(differ, 0);
        assert_true(changed > p.n_values / 2); /* the values were converted */
        graft_params_free(&e);
        unlink(out);
    }

    /* a value F16 cannot hold */
    p.values[p.items[graft_params_find(&p, "fc1.bias")].offset + 3] = 70000.0f;
    assert_int_equal(save_step(root, &p, &o, 2, 1, 3, NULL), GRAFT_OK);
    join(ckpt, root, "step-00000002");
    capture_start();
    assert_int_equal(graft_ckpt_export(ckpt, out, GRAFT_DTYPE_F16), GRAFT_ERR_UNSUPPORTED);
    char *log = capture_stop();
    expect_logged(log, "cannot export as F16: tensor 'fc1.bias' has 1 value beyond F16's range "
                       "(the first, 70000, at index 3); export as f32");
    assert_int_equal(count_lines(log), 1);
    free(log);
    assert_false(path_exists(out));
    assert_int_equal(graft_ckpt_export(ckpt, out, GRAFT_DTYPE_BF16), GRAFT_OK);
    unlink(out);
    graft_optim_free(&o);
    graft_params_free(&p);

    /* BatchNorm's step count keeps every step */
    graft_params c;
    graft_params_init(&c);
    const int64_t three[1] = {3};
    assert_true(graft_params_add(&c, "bn.weight", GRAFT_KIND_PARAM, 1, three) >= 0);
    assert_true(graft_params_add(&c, "bn.num_batches_tracked", GRAFT_KIND_BUFFER, 0, three) >= 0);
    assert_int_equal(graft_params_finalize(&c), GRAFT_OK);
    *graft_params_value(&c, 1) = 5001.0f; /* 5000 or 5002 in F16 */
    make_optim(&o, &c, GRAFT_OPTIM_SGD, 0, 0, 1);
    assert_int_equal(save_step(root, &c, &o, 3, 0, 3, NULL), GRAFT_OK);
    join(ckpt, root, "step-00000003");
    assert_int_equal(graft_ckpt_export(ckpt, out, GRAFT_DTYPE_F16), GRAFT_OK);
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, out), GRAFT_OK);
    const graft_st_tensor *count = graft_st_find(&f, "bn.num_batches_tracked");
    assert_non_null(count);
    assert_int_equal(count->dtype, GRAFT_DTYPE_F32);
    float value;
    assert_int_equal(graft_st_read_f32(count, &value, 1), GRAFT_OK);
    assert_true(value == 5001.0f);
    assert_int_equal(graft_st_find(&f, "bn.weight")->dtype, GRAFT_DTYPE_F16);
    graft_st_close(&f);
    graft_optim_free(&o);
    graft_params_free(&c);
    remove_dir(root);
}


/* The checkpoint root holds step-00000001 and "latest" names it, and it loads. */
static void expect_only_step1(const char *root, const graft_params *p1) {
    char latest[64], path[PATH_LEN];
    read_latest(root, latest, sizeof latest);
    assert_string_equal(latest, "step-00000001\n");
    join(path, root, "step-00000002");
    assert_false(path_exists(path));
    join(path, root, "step-00000002.tmp");
    assert_false(path_exists(path));
    join(path, root, "latest.tmp");
    assert_false(path_exists(path));
    char ckpt[PATH_LEN];
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    join(path, root, "step-00000001");
    assert_string_equal(ckpt, path);
    graft_params q;
    default_table(&q, 77);
    assert_int_equal(graft_ckpt_load(ckpt, &q, NULL, NULL, NULL), GRAFT_OK);
    expect_same_values("step 1 after the failed save", p1, &q);
    graft_params_free(&q);
}

/* A save that runs out of space while writing model.safetensors (RLIMIT_FSIZE makes
 * the write fail with EFBIG): one error line naming the file, the .tmp directory gone,
 * step 1 and latest intact. */
static void test_save_fails_midway(void **state) {
    (void)state;
    char root[PATH_LEN];
    make_root(root);
    graft_params p, p1;
    graft_optim o;
    default_table(&p, 1);
    default_table(&p1, 1);
    make_optim(&o, &p, GRAFT_OPTIM_ADAMW, 0, 1, 10);
    memcpy(p1.values, p.values, p.n_values * sizeof(float));
    assert_int_equal(save_step(root, &p, &o, 1, 1, 3, NULL), GRAFT_OK);
    assert_int_equal(graft_optim_step(&o, &p, 0.01f), GRAFT_OK);

    struct rlimit old_limit, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    small = old_limit;
    small.rlim_cur = 1024; /* model.safetensors is ~2.5 KB */
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    capture_start();
    uint64_t bytes = 123;
    graft_status st = save_step(root, &p, &o, 2, 1, 3, &bytes);
    char *log = capture_stop();
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
    signal(SIGXFSZ, old_handler);
    printf("  log: %s", log);
    assert_int_equal(st, GRAFT_ERR_IO);
    assert_true(bytes == 0);
    assert_int_equal(count_lines(log), 1);
    expect_logged(log, "step-00000002.tmp/model.safetensors");
    expect_logged(log, strerror(EFBIG));
    free(log);
    expect_only_step1(root, &p1);

    graft_optim_free(&o);
    graft_params_free(&p1);
    graft_params_free(&p);
    remove_dir(root);
}

/* latest.tmp is a link to /dev/full: the new checkpoint is complete and renamed when
 * replacing "latest" fails with ENOSPC; the save is undone (no step-2, latest still
 * step-1). Re-saving an existing step under the same failure puts the old one back. */
static void test_save_fails_replacing_latest(void **state) {
    (void)state;
    char root[PATH_LEN], link_path[PATH_LEN], path[PATH_LEN];
    make_root(root);
    graft_params p, p1;
    default_table(&p, 1);
    default_table(&p1, 1);
    assert_int_equal(save_step(root, &p, NULL, 1, 1, 3, NULL), GRAFT_OK);
    tu_fill_uniform(p.values, p.n_values, -1.0f, 1.0f, 2); /* frozen values change too */

    join(link_path, root, "latest.tmp");
    assert_int_equal(symlink("/dev/full", link_path), 0);
    capture_start();
    graft_status st = save_step(root, &p, NULL, 2, 1, 3, NULL);
    char *log = capture_stop();
    printf("  log: %s", log);
    assert_int_equal(st, GRAFT_ERR_IO);
    assert_int_equal(count_lines(log), 1);
    expect_logged(log, link_path);
    expect_logged(log, strerror(ENOSPC));
    free(log);
    expect_only_step1(root, &p1);
    /* the frozen file the failed save wrote is gone too */
    assert_int_equal(count_entries(root, "frozen-", NULL), 1);

    /* replacing step 1 in place, failing: the old step 1 comes back */
    assert_int_equal(symlink("/dev/full", link_path), 0);
    graft_ckpt_state s1 = make_state(1);
    graft_ckpt_save_args a = {.dir = root,
                              .params = &p,
                              .state = &s1,
                              .config_yaml = CONFIG_TEXT,
                              .save_frozen_once = 1,
                              .keep_last = 3};
    capture_start();
    st = graft_ckpt_save(&a, NULL);
    log = capture_stop();
    assert_int_equal(st, GRAFT_ERR_IO);
    free(log);
    expect_only_step1(root, &p1);
    join(path, root, "step-00000001.old.tmp");
    assert_false(path_exists(path));

    /* without the trap the same save succeeds and replaces step 1 */
    assert_int_equal(graft_ckpt_save(&a, NULL), GRAFT_OK);
    graft_params q;
    default_table(&q, 3);
    join(path, root, "step-00000001");
    assert_int_equal(graft_ckpt_load(path, &q, NULL, NULL, NULL), GRAFT_OK);
    expect_same_values("step 1 replaced", &p, &q);
    join(path, root, "step-00000001.old.tmp");
    assert_false(path_exists(path));
    assert_int_equal(count_entries(root, "frozen-", NULL), 1); /* old frozen file pruned */

    graft_params_free(&q);
    graft_params_free(&p1);
    graft_params_free(&p);
    remove_dir(root);
}

/* A regular file where the step's .tmp directory must go: the save fails at once with
 * one line, leaves the file alone, and step 1 stays. */
static void test_save_fails_blocked_path(void **state) {
    (void)state;
    char root[PATH_LEN], blocker[PATH_LEN];
    make_root(root);
    graft_params p, p1;
    default_table(&p, 1);
    default_table(&p1, 1);
    assert_int_equal(save_step(root, &p, NULL, 1, 0, 3, NULL), GRAFT_OK);
    join(blocker, root, "step-00000002.tmp");
    write_all(blocker, "x", 1);
    capture_start();
    graft_status st = save_step(root, &p, NULL, 2, 0, 3, NULL);
    char *log = capture_stop();
    printf("  log: %s", log);
    assert_int_equal(st, GRAFT_ERR_IO);
    assert_int_equal(count_lines(log), 1);
    expect_logged(log, blocker);
    expect_logged(log, strerror(EEXIST));
    free(log);
    struct stat sb;
    assert_int_equal(lstat(blocker, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    unlink(blocker);
    expect_only_step1(root, &p1);

    /* a root that is a file cannot be created */
    char file_root[PATH_LEN];
    join(file_root, root, "not-a-dir");
    write_all(file_root, "x", 1);
    capture_start();
    st = save_step(file_root, &p, NULL, 1, 0, 3, NULL);
    char *log2 = capture_stop();
    assert_int_equal(st, GRAFT_ERR_IO);
    expect_logged(log2, file_root);
    free(log2);

    graft_params_free(&p1);
    graft_params_free(&p);
    remove_dir(root);
}

/* ---- damaged checkpoints ------------------------------------------------------------ */

/* Three checkpoints of the default model under a fresh root. */
static void three_checkpoints(char *root, graft_params *p, graft_optim *o) {
    make_root(root);
    default_table(p, 1);
    make_optim(o, p, GRAFT_OPTIM_ADAMW, 0, 1, 10);
    for (long step = 1; step <= 3; step++) {
        assert_int_equal(graft_optim_step(o, p, 0.01f), GRAFT_OK);
        assert_int_equal(save_step(root, p, o, step, 0, 5, NULL), GRAFT_OK);
    }
}

/* find_resume on root must pick step-00000002 and log `want` (one line). */
static void expect_resume_step2(const char *root, const char *want) {
    char ckpt[PATH_LEN], path[PATH_LEN];
    capture_start();
    graft_status st = graft_ckpt_find_resume(root, ckpt, sizeof ckpt);
    char *log = capture_stop();
    printf("  log: %s", log);
    assert_int_equal(st, GRAFT_OK);
    join(path, root, "step-00000002");
    assert_string_equal(ckpt, path);
    assert_int_equal(count_lines(log), 1);
    expect_logged(log, want);
    free(log);
}

/* A flipped byte in the newest model.safetensors: verify names the file, find_resume
 * falls back to the previous checkpoint, load refuses and changes nothing. */
static void test_corrupt_byte(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], path[PATH_LEN], want[2 * PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    join(ckpt, root, "step-00000003");
    join(path, ckpt, "model.safetensors");
    size_t len;
    char *data = read_all(path, &len);
    data[len - 5] ^= 0x10;
    write_all(path, data, len);
    free(data);

    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    char *log = capture_stop();
    snprintf(want, sizeof want, "%s: model.safetensors checksum mismatch\n", ckpt);
    expect_logged(log, want);
    assert_int_equal(count_lines(log), 1);
    free(log);

    snprintf(want, sizeof want,
             "%s: model.safetensors checksum mismatch; resuming from step-00000002 instead\n",
             ckpt);
    expect_resume_step2(root, want);

    graft_params q, before;
    graft_optim r;
    default_table(&q, 5);
    default_table(&before, 5);
    make_optim(&r, &q, GRAFT_OPTIM_ADAMW, 0, 2, 50);
    memcpy(before.values, q.values, q.n_values * sizeof(float));
    float *state_before = tu_floats(2 * r.n);
    memcpy(state_before, r.state, 2 * r.n * sizeof(float));
    capture_start();
    assert_int_equal(graft_ckpt_load(ckpt, &q, &r, NULL, NULL), GRAFT_ERR_FORMAT);
    free(capture_stop());
    expect_same_values("table after a refused load", &before, &q);
    assert_memory_equal(r.state, state_before, 2 * r.n * sizeof(float));
    assert_int_equal(r.step, 2);

    /* verify of the whole root: one summary line, exit-2 class status */
    FILE *out = tmpfile();
    capture_start();
    assert_int_equal(graft_ckpt_verify_root(root, out), GRAFT_ERR_FORMAT);
    log = capture_stop();
    expect_logged(log, "1 of 3 checkpoints damaged: step-00000003 (model.safetensors checksum "
                       "mismatch)");
    assert_int_equal(count_lines(log), 1);
    free(log);
    long n = ftell(out);
    char text[4096] = "";
    rewind(out);
    text[fread(text, 1, n < 4095 ? (size_t)n : 4095, out)] = '\0';
    fclose(out);
    printf("%s", text);
    assert_non_null(strstr(text, "step-00000001: ok\n"));
    assert_non_null(strstr(text, "step-00000003: model.safetensors checksum mismatch\n"));

    /* ls shows it */
    out = tmpfile();
    assert_int_equal(graft_ckpt_list(root, out), GRAFT_OK);
    n = ftell(out);
    rewind(out);
    text[fread(text, 1, n < 4095 ? (size_t)n : 4095, out)] = '\0';
    fclose(out);
    printf("%s", text);
    assert_non_null(strstr(text, "DAMAGED: model.safetensors checksum mismatch  <- latest"));
    assert_non_null(strstr(text, "ok: step 2, epoch 1, cursor 2000006\n"));

    free(state_before);
    graft_optim_free(&r);
    graft_params_free(&before);
    graft_params_free(&q);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* A truncated optim.safetensors: the size check names it. */
static void test_truncated_file(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], path[PATH_LEN], want[2 * PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    join(ckpt, root, "step-00000003");
    join(path, ckpt, "optim.safetensors");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    snprintf(want, sizeof want, "%s: optim.safetensors has %lld bytes, MANIFEST says %lld", ckpt,
             (long long)(st.st_size / 2), (long long)st.st_size);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    char *log = capture_stop();
    expect_logged(log, want);
    free(log);
    strcat(want, "; resuming from step-00000002 instead");
    expect_resume_step2(root, want);

    /* no MANIFEST: an unfinished checkpoint */
    join(path, ckpt, "MANIFEST");
    unlink(path);
    snprintf(want, sizeof want, "%s: no MANIFEST (the save did not finish)", ckpt);
    expect_resume_step2(root, want);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* "latest" naming a directory that is gone, "latest" missing, "latest" holding junk:
 * find_resume takes the newest intact checkpoint. */
static void test_latest_problems(void **state) {
    (void)state;
    char root[PATH_LEN], path[PATH_LEN], want[2 * PATH_LEN], latest[PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    join(path, root, "step-00000003");
    remove_dir(path);
    join(latest, root, "latest");
    snprintf(want, sizeof want,
             "%s names step-00000003, which does not exist; resuming from step-00000002 instead",
             latest);
    expect_resume_step2(root, want);

    unlink(latest);
    snprintf(want, sizeof want, "%s is missing; resuming from step-00000002 instead", latest);
    expect_resume_step2(root, want);

    /* what latest holds is never quoted back: a path out, a forged log line, an escape */
    const char *hostile[] = {"../../etc\n", "step-00000002/../../x\n", "/etc/passwd\n",
                             "step-1\n[rank 0] ERROR forged: line\n", "\x1b[2J\x1b]0;title\x07\n"};
    snprintf(want, sizeof want,
             "%s does not hold a checkpoint name (step-NNNNNNNN); resuming from step-00000002 "
             "instead",
             latest);
    for (size_t k = 0; k < sizeof hostile / sizeof hostile[0]; k++) {
        write_all(latest, hostile[k], strlen(hostile[k]));
        capture_start();
        char ckpt[PATH_LEN];
        assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
        char *log = capture_stop();
        expect_logged(log, want);
        assert_int_equal(count_lines(log), 1);
        assert_null(strstr(log, "etc"));
        assert_null(strstr(log, "forged"));
        assert_null(strchr(log, '\x1b'));
        free(log);
    }

    /* latest names step 1 (older, intact): it wins, nothing logged */
    write_all(latest, "step-00000001\n", 14);
    char ckpt[PATH_LEN];
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    char *log = capture_stop();
    assert_string_equal(log, "");
    free(log);
    join(path, root, "step-00000001");
    assert_string_equal(ckpt, path);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* Links out of the checkpoint root: "latest" as a link to a file elsewhere, "latest"
 * naming a step directory that is a link to a checkpoint elsewhere, and such a step
 * directory met while scanning: each refused, saying so, and resume takes the newest
 * intact checkpoint inside the root. A link that stays inside is followed. */
static void test_latest_links_out(void **state) {
    (void)state;
    char root[PATH_LEN], other[PATH_LEN], path[PATH_LEN], target[PATH_LEN], want[3 * PATH_LEN],
        latest[PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    make_root(other);
    join(latest, root, "latest");

    /* latest -> OTHER/name, a file that holds a good name */
    join(target, other, "name");
    write_all(target, "step-00000003\n", 14);
    unlink(latest);
    assert_int_equal(symlink(target, latest), 0);
    snprintf(want, sizeof want,
             "%s is a link that leads out of %s; resuming from step-00000003 instead", latest,
             root);
    char ckpt[PATH_LEN];
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    char *log = capture_stop();
    expect_logged(log, want);
    free(log);

    /* a link inside the root is followed */
    unlink(latest);
    join(target, root, "latest.copy");
    write_all(target, "step-00000002\n", 14);
    assert_int_equal(symlink("latest.copy", latest), 0);
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    log = capture_stop();
    assert_string_equal(log, "");
    free(log);
    join(path, root, "step-00000002");
    assert_string_equal(ckpt, path);

    /* step-00000003 moved to OTHER and linked back: latest names it, scanning meets it */
    join(path, root, "step-00000003");
    join(target, other, "step-00000003");
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    unlink(latest);
    write_all(latest, "step-00000003\n", 14);
    snprintf(want, sizeof want,
             "%s names step-00000003, a link that leads out of %s; resuming from step-00000002 "
             "instead",
             latest, root);
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_OK);
    log = capture_stop();
    printf("  log: %s", log);
    expect_logged(log, want);
    snprintf(want, sizeof want, "%s is a link that leads out of %s; not a checkpoint of it", path,
             root);
    expect_logged(log, want);
    free(log);
    join(path, root, "step-00000002");
    assert_string_equal(ckpt, path);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(other);
    remove_dir(root);
}

/* state.json garbage: the checksum catches it; with a MANIFEST made to match, the
 * parser does, naming state.json. */
static void test_state_json_garbage(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], path[PATH_LEN], want[2 * PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    join(ckpt, root, "step-00000003");
    join(path, ckpt, "state.json");
    size_t len;
    char *orig = read_all(path, &len);
    char *garbage = malloc(len);
    memset(garbage, '#', len);
    write_all(path, garbage, len);
    snprintf(want, sizeof want, "%s: state.json checksum mismatch", ckpt);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    char *log = capture_stop();
    expect_logged(log, want);
    free(log);

    rewrite_manifest(ckpt);
    snprintf(want, sizeof want, "%s: state.json: not valid JSON", ckpt);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    log = capture_stop();
    expect_logged(log, want);
    free(log);
    strcat(want, " (line 1: ");
    expect_resume_step2(root, want);

    /* valid JSON of the wrong shape */
    const char *wrong = "{\"step\": \"three\"}\n";
    write_all(path, wrong, strlen(wrong));
    rewrite_manifest(ckpt);
    snprintf(want, sizeof want, "%s: state.json: 'step' is missing or not an integer >= 0", ckpt);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    log = capture_stop();
    expect_logged(log, want);
    free(log);

    /* a state.json of another step */
    char *other = strdup(orig);
    char *at = strstr(other, "\"step\": 3");
    assert_non_null(at);
    at[8] = '7';
    write_all(path, other, len);
    rewrite_manifest(ckpt);
    snprintf(want, sizeof want, "%s: state.json says step 7, the directory name says 3", ckpt);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    log = capture_stop();
    expect_logged(log, want);
    free(log);

    /* back to the original: fine again */
    write_all(path, orig, len);
    rewrite_manifest(ckpt);
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_OK);

    /* a malformed MANIFEST line */
    join(path, ckpt, "MANIFEST");
    write_all(path, "not a manifest\n", 15);
    snprintf(want, sizeof want, "%s: MANIFEST line 1 is malformed", ckpt);
    capture_start();
    assert_int_equal(graft_ckpt_verify(ckpt), GRAFT_ERR_FORMAT);
    log = capture_stop();
    expect_logged(log, want);
    free(log);

    free(other);
    free(garbage);
    free(orig);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* ---- mismatches --------------------------------------------------------------------- */

/* Load a checkpoint into `q` (and optimizer r); expect `status` and `want` in the one
 * logged line, and q / r unchanged. */
static void expect_refused(const char *ckpt, graft_params *q, graft_optim *r, graft_status status,
                           const char *want) {
    float *values = tu_floats(q->n_values);
    memcpy(values, q->values, q->n_values * sizeof(float));
    size_t n_state = r ? (size_t)r->n_bufs * r->n : 0;
    float *opt_state = tu_floats(n_state);
    if (n_state) memcpy(opt_state, r->state, n_state * sizeof(float));
    int64_t step = r ? r->step : 0;
    graft_ckpt_state s = {0};
    s.step = -5;
    char *config = (char *)"untouched";
    capture_start();
    graft_status st = graft_ckpt_load(ckpt, q, r, &s, &config);
    char *log = capture_stop();
    printf("  log: %s", log);
    assert_int_equal(st, status);
    assert_int_equal(count_lines(log), 1);
    expect_logged(log, want);
    free(log);
    assert_memory_equal(q->values, values, q->n_values * sizeof(float));
    if (n_state) assert_memory_equal(r->state, opt_state, n_state * sizeof(float));
    if (r) assert_int_equal(r->step, step);
    assert_int_equal(s.step, -5);
    assert_null(s.rng_states);
    assert_null(config);
    free(opt_state);
    free(values);
}

/* Checkpoints of another model: a different shape, a parameter the checkpoint lacks,
 * a tensor the model lacks. */
static void test_other_model(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], want[2 * PATH_LEN];
    graft_params p;
    graft_optim o;
    three_checkpoints(root, &p, &o);
    join(ckpt, root, "step-00000003");

    graft_params q;
    make_table(&q, 12, "embed.*", 4);
    snprintf(want, sizeof want,
             "%s: tensor 'fc1.weight' has shape [16, 8] in the checkpoint, the model has [12, 8]",
             ckpt);
    expect_refused(ckpt, &q, NULL, GRAFT_ERR_MISMATCH, want);
    graft_params_free(&q);

    /* the model has one more parameter */
    graft_params_init(&q);
    const int64_t embed[2] = {10, 8}, fc1w[2] = {16, 8}, vec[1] = {16}, fc2w[2] = {4, 16};
    graft_params_add(&q, "embed.weight", GRAFT_KIND_PARAM, 2, embed);
    graft_params_add(&q, "fc1.weight", GRAFT_KIND_PARAM, 2, fc1w);
    graft_params_add(&q, "fc1.bias", GRAFT_KIND_PARAM, 1, vec);
    graft_params_add(&q, "bn.running_mean", GRAFT_KIND_BUFFER, 1, vec);
    graft_params_add(&q, "bn.running_var", GRAFT_KIND_BUFFER, 1, vec);
    graft_params_add(&q, "fc2.weight", GRAFT_KIND_PARAM, 2, fc2w);
    graft_params_add(&q, "head.weight", GRAFT_KIND_PARAM, 2, fc2w);
    assert_int_equal(graft_params_finalize(&q), GRAFT_OK);
    snprintf(want, sizeof want, "%s: no tensor 'head.weight' in the checkpoint", ckpt);
    expect_refused(ckpt, &q, NULL, GRAFT_ERR_MISMATCH, want);
    graft_params_free(&q);

    /* the model lacks fc2.weight */
    graft_params_init(&q);
    graft_params_add(&q, "embed.weight", GRAFT_KIND_PARAM, 2, embed);
    graft_params_add(&q, "fc1.weight", GRAFT_KIND_PARAM, 2, fc1w);
    graft_params_add(&q, "fc1.bias", GRAFT_KIND_PARAM, 1, vec);
    graft_params_add(&q, "bn.running_mean", GRAFT_KIND_BUFFER, 1, vec);
    graft_params_add(&q, "bn.running_var", GRAFT_KIND_BUFFER, 1, vec);
    assert_int_equal(graft_params_finalize(&q), GRAFT_OK);
    snprintf(want, sizeof want, "%s: tensor 'fc2.weight' of the checkpoint is not in the model",
             ckpt);
    expect_refused(ckpt, &q, NULL, GRAFT_ERR_MISMATCH, want);
    graft_params_free(&q);

    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root);
}

/* Optimizer mismatches: another kind, another trainable set, plain SGD state loaded
 * into momentum SGD, no optimizer state at all. */
static void test_optimizer_mismatch(void **state) {
    (void)state;
    char root[PATH_LEN], ckpt[PATH_LEN], want[2 * PATH_LEN];
    graft_params p, q;
    graft_optim o, r;
    three_checkpoints(root, &p, &o); /* AdamW */
    join(ckpt, root, "step-00000003");

    default_table(&q, 4);
    make_optim(&r, &q, GRAFT_OPTIM_SGD, 0.9, 2, 40);
    snprintf(want, sizeof want, "%s: the checkpoint's optimizer is adamw, the run uses sgd", ckpt);
    expect_refused(ckpt, &q, &r, GRAFT_ERR_MISMATCH, want);
    graft_optim_free(&r);
    graft_params_free(&q);

    /* fc2 frozen in the run, trainable in the checkpoint */
    make_table(&q, 16, "[ef][mc][b2]*", 4); /* embed.* and fc2.* */
    assert_int_equal(q.items[5].trainable, 0);
    assert_int_equal(q.items[1].trainable, 1);
    make_optim(&r, &q, GRAFT_OPTIM_ADAMW, 0, 2, 40);
    snprintf(want, sizeof want,
             "%s: optimizer state 'exp_avg.fc2.weight' belongs to no trainable parameter", ckpt);
    expect_refused(ckpt, &q, &r, GRAFT_ERR_MISMATCH, want);
    graft_optim_free(&r);
    graft_params_free(&q);

    /* a plain-SGD checkpoint (no state) into SGD with momentum; then no optimizer */
    char root2[PATH_LEN];
    make_root(root2);
    graft_optim plain;
    make_optim(&plain, &p, GRAFT_OPTIM_SGD, 0.0, 1, 5);
    assert_int_equal(save_step(root2, &p, &plain, 4, 0, 3, NULL), GRAFT_OK);
    assert_int_equal(save_step(root2, &p, NULL, 5, 0, 3, NULL), GRAFT_OK);
    default_table(&q, 4);
    make_optim(&r, &q, GRAFT_OPTIM_SGD, 0.9, 2, 40);
    join(ckpt, root2, "step-00000004");
    snprintf(want, sizeof want,
             "%s: no optimizer state 'momentum_buffer.fc1.weight' in the checkpoint", ckpt);
    expect_refused(ckpt, &q, &r, GRAFT_ERR_MISMATCH, want);
    join(ckpt, root2, "step-00000005");
    snprintf(want, sizeof want, "%s: the checkpoint holds no optimizer state (the run uses sgd)",
             ckpt);
    expect_refused(ckpt, &q, &r, GRAFT_ERR_MISMATCH, want);
    /* without an optimizer the weights load */
    assert_int_equal(graft_ckpt_load(ckpt, &q, NULL, NULL, NULL), GRAFT_OK);
    expect_same_values("weights of an optimizer-less checkpoint", &p, &q);

    graft_optim_free(&plain);
    graft_optim_free(&r);
    graft_params_free(&q);
    graft_optim_free(&o);
    graft_params_free(&p);
    remove_dir(root2);
    remove_dir(root);
}

/* ---- find_resume with nothing to resume ---------------------------------------------- */

static void test_find_resume_empty(void **state) {
    (void)state;
    char root[PATH_LEN], path[PATH_LEN], ckpt[PATH_LEN];
    make_root(root);
    join(path, root, "does-not-exist");
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(path, ckpt, sizeof ckpt), GRAFT_ERR_NOT_FOUND);
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_ERR_NOT_FOUND);
    char *log = capture_stop();
    assert_string_equal(log, ""); /* a fresh run is not an error */
    free(log);

    /* only a leftover .tmp directory: still a fresh run */
    join(path, root, "step-00000001.tmp");
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_ERR_NOT_FOUND);
    rmdir(path);

    /* checkpoints, none intact */
    graft_params p;
    default_table(&p, 1);
    assert_int_equal(save_step(root, &p, NULL, 1, 0, 3, NULL), GRAFT_OK);
    join(path, root, "step-00000001/MANIFEST");
    unlink(path);
    capture_start();
    assert_int_equal(graft_ckpt_find_resume(root, ckpt, sizeof ckpt), GRAFT_ERR_FORMAT);
    log = capture_stop();
    printf("%s", log);
    expect_logged(log, "no intact checkpoint to resume from");
    free(log);
    /* list: none intact is still a listing; no checkpoints at all is NOT_FOUND */
    FILE *out = tmpfile();
    assert_int_equal(graft_ckpt_list(root, out), GRAFT_OK);
    fclose(out);
    join(path, root, "step-00000001");
    remove_dir(path);
    capture_start();
    out = tmpfile();
    assert_int_equal(graft_ckpt_list(root, out), GRAFT_ERR_NOT_FOUND);
    fclose(out);
    free(capture_stop());
    assert_false(graft_ckpt_is_checkpoint(root));
    graft_params_free(&p);
    remove_dir(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_adamw),
        cmocka_unit_test(test_roundtrip_sgd_momentum_frozen_once),
        cmocka_unit_test(test_roundtrip_plain_sgd),
        cmocka_unit_test(test_layout_and_state_json),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_keep_last),
        cmocka_unit_test(test_save_frozen_once),
        cmocka_unit_test(test_save_fails_midway),
        cmocka_unit_test(test_save_fails_replacing_latest),
        cmocka_unit_test(test_save_fails_blocked_path),
        cmocka_unit_test(test_corrupt_byte),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_latest_problems),
        cmocka_unit_test(test_latest_links_out),
        cmocka_unit_test(test_state_json_garbage),
        cmocka_unit_test(test_other_model),
        cmocka_unit_test(test_optimizer_mismatch),
        cmocka_unit_test(test_find_resume_empty),
        cmocka_unit_test(test_export_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
