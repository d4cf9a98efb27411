/* Tests for runtime/config: every malformed config in a table with its exact one-line
 * message and status, defaults, a config with every section, overrides, validation
 * across keys, print -> load round trips, the digest, the README key reference, and
 * every YAML file under configs/. The tests run in a fresh temporary
 * directory, so messages name "cfg.yaml" as a user would see it. */
#include "tests/testutil.h"

#include <errno.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/config/config.h"

#ifndef GRAFT_SOURCE_DIR
#define GRAFT_SOURCE_DIR "."
#endif
#ifndef GRAFT_BUILD_DIR
#define GRAFT_BUILD_DIR "."
#endif

static char test_dir[256];
static char start_dir[4096];

/* Run in a fresh temporary directory. */
static int group_setup(void **state) {
    (void)state;
    if (!getcwd(start_dir, sizeof start_dir)) return -1;
    snprintf(test_dir, sizeof test_dir, "/tmp/graft_test_config_XXXXXX");
    if (!mkdtemp(test_dir)) return -1;
    return chdir(test_dir);
}

/* Remove the files the tests wrote and the directory. */
static int group_teardown(void **state) {
    (void)state;
    const char *names[] = {"cfg.yaml", "printed.yaml", "printed2.yaml", "base.yaml",
                           "escaped.yaml"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(names[i]);
    if (chdir(start_dir) != 0) return -1;
    return rmdir(test_dir);
}

/* Write a string to a file, checked. */
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Whole file as a NUL-terminated string (caller frees), or NULL if it cannot be read. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n + 1 == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            assert_non_null(grown);
            buf = grown;
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* A complete, valid config: the smallest a user can write. */
static const char *const minimal_yaml = "experiment: t1\n"
                                        "model:\n  arch: mlp\n"
                                        "data:\n  train: data/train\n"
                                        "optim:\n  lr: 0.001\n"
                                        "train:\n  epochs: 1\n";

/* Load text as cfg.yaml on top of the defaults. */
static graft_status load_text(graft_config *cfg, const char *yaml) {
    write_text("cfg.yaml", yaml);
    graft_config_defaults(cfg);
    return graft_config_load(cfg, "cfg.yaml");
}

/* ---- the malformed-config table -------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *yaml;     /* written to cfg.yaml; NULL: load "missing.yaml" */
    const char *override; /* when set: yaml must load, then this override must fail */
    graft_status status;
    const char *message; /* exact text of graft_config_last_error() */
} bad_case;

#define MINIMAL "experiment: t1\nmodel:\n  arch: mlp\ndata:\n  train: d\noptim:\n  lr: 0.001\n"

static const bad_case bad_cases[] = {
    {"syntax error", "experiment: x\n  seed: 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: syntax error: mapping values are not allowed in this context"},
    {"unclosed flow list", "model:\n  hidden: [512, 256\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:3:1: syntax error: did not find expected ',' or ']'"},
    {"tab indentation", "model:\n\tarch: mlp\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:1: syntax error: found character that cannot start any token (tabs are not "
     "allowed for indentation)"},
    {"tab after a key", "experiment: x\n\tseed: 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:1: syntax error: found a tab character that violates indentation"},
    {"invalid UTF-8", "experiment: \xff\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:13: syntax error: invalid leading UTF-8 octet (byte 0xff)"},
    {"unknown top-level key", "experimnt: x\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:1: experimnt: unknown key (did you mean 'experiment'?)"},
    {"unknown top-level key, no suggestion", "wandb:\n  project: x\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:1: wandb: unknown key"},
    {"unknown nested key", "optim:\n  name: sgd\n  lrr: 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:3:3: optim.lrr: unknown key (did you mean 'optim.lr'?)"},
    {"unknown key two levels down", "data:\n  augment:\n    flip: true\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:3:5: data.augment.flip: unknown key (did you mean "
     "'data.augment.hflip'?)"},
    {"unknown key, prefix suggestion", "optim:\n  weight: 0.1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:3: optim.weight: unknown key (did you mean 'optim.weight_decay'?)"},
    {"unknown key in a list entry", "optim:\n  groups:\n    - params: '*.bias'\n      lr_scal: 2\n",
     NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:4:7: optim.groups[0].lr_scal: unknown key (did you mean "
     "'optim.groups[0].lr_scale'?)"},
    {"string for number", "experiment: x\nmodel:\n  arch: mlp\noptim:\n  lr: fast\n", NULL,
     GRAFT_ERR_CONFIG, "cfg.yaml:5:7: optim.lr: expected a number, found 'fast'"},
    {"float for int", "data:\n  batch_size: 1.5\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:15: data.batch_size: expected an integer, found '1.5'"},
    {"quoted number", "optim:\n  lr: \"0.1\"\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: optim.lr: expected a number, found a quoted string '0.1'"},
    {"empty value for number", "optim:\n  momentum:\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: optim.momentum: expected a number, found an empty value"},
    {"bool other than true/false", "data:\n  shuffle: yes\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: data.shuffle: expected true or false, found 'yes'"},
    {"list for scalar", "optim:\n  lr: [1, 2]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: optim.lr: expected a number, found a list"},
    {"mapping for scalar", "experiment:\n  name: x\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:3: experiment: expected a string, found a mapping"},
    {"scalar for section", "optim: adamw\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:8: optim: expected a mapping, found 'adamw'"},
    {"scalar for list", "model:\n  hidden: 512\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:11: model.hidden: expected a list of integers, found '512'"},
    {"wrong type inside a list", "model:\n  hidden: [512, big]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:17: model.hidden[1]: expected an integer, found 'big'"},
    {"top level is a list", "- a\n- b\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:1: expected a mapping of settings at the top level, found a list"},
    {"duplicate key", "data:\n  batch_size: 64\n  train: d\n  batch_size: 32\n", NULL,
     GRAFT_ERR_CONFIG, "cfg.yaml:4:3: data.batch_size: duplicate key (first at line 2)"},
    {"duplicate section", "data:\n  train: a\nseed: 1\ndata:\n  val: b\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:4:1: data: duplicate key (first at line 1)"},
    {"empty file", "", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml: empty file (expected a mapping with at least 'experiment', 'model', 'data' "
     "and 'optim')"},
    {"blank lines only", "\n  \n\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml: empty file (expected a mapping with at least 'experiment', 'model', 'data' "
     "and 'optim')"},
    {"comments only", "# nothing yet\n   # still nothing\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml: no settings, only comments (expected a mapping with at least 'experiment', "
     "'model', 'data' and 'optim')"},
    {"missing file", NULL, NULL, GRAFT_ERR_IO,
     "missing.yaml: cannot open: No such file or directory"},
    {"negative batch size", "data:\n  batch_size: -4\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:15: data.batch_size: must be >= 1, found -4"},
    {"huge negative batch size", "data:\n  batch_size: -99999999999999999999\n", NULL,
     GRAFT_ERR_CONFIG, "cfg.yaml:2:15: data.batch_size: must be >= 1, found -99999999999999999999"},
    {"int overflow", "launch:\n  np: 99999999999\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: launch.np: must be <= 2147483647, found 99999999999"},
    {"lr zero", "optim:\n  lr: 0\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: optim.lr: must be > 0, found 0"},
    {"lr negative", "optim:\n  lr: -1e-3\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: optim.lr: must be > 0, found -1e-3"},
    {"dropout 1.5", "model:\n  dropout: 1.5\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: model.dropout: must be in [0, 1), found 1.5"},
    {"beta 1.0", "optim:\n  betas: [0.9, 1.0]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:16: optim.betas[1]: must be in [0, 1), found 1.0"},
    /* finite as written, but not once narrowed to the float graft computes with */
    {"lr underflows a float", "optim:\n  lr: 1.0e-50\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: optim.lr: 1.0e-50 underflows to 0 as a 32-bit float, which graft computes "
     "with (non-zero magnitudes from 1.4013e-45)"},
    {"momentum overflows a float", "optim:\n  momentum: 1.0e39\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:13: optim.momentum: 1.0e39 overflows a 32-bit float, which graft computes with "
     "(magnitudes up to 3.40282e+38)"},
    {"dropout rounds to 1", "model:\n  dropout: 0.99999999999\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: model.dropout: must be in [0, 1) as a 32-bit float (graft computes with it "
     "as one), found 0.99999999999, which rounds to 1"},
    {"group lr_scale underflows", "optim:\n  groups: [{params: x, lr_scale: 1.0e-46}]\n", NULL,
     GRAFT_ERR_CONFIG,
     "cfg.yaml:2:34: optim.groups[0].lr_scale: 1.0e-46 underflows to 0 as a 32-bit float, "
     "which graft computes with (non-zero magnitudes from 1.4013e-45)"},
    {"three betas", "optim:\n  betas: [0.9, 0.99, 0.999]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:10: optim.betas: expected a list of 2 numbers, found 3 entries"},
    {"too many hidden layers", "model:\n  hidden: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n", NULL,
     GRAFT_ERR_CONFIG, "cfg.yaml:2:11: model.hidden: must have at most 8 entries, found 9"},
    {"unknown architecture", "model:\n  arch: resnet99\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:9: model.arch: unknown architecture 'resnet99' (expected one of: mlp, resnet18, resnet34, resnet50, gpt2, bert, vit)"},
    {"unknown optimizer", "optim:\n  name: adam\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:9: optim.name: unknown optimizer 'adam' (expected one of: adamw, sgd)"},
    {"unknown schedule", "schedule:\n  name: onecycle\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:9: schedule.name: unknown schedule 'onecycle' (expected one of: constant, "
     "cosine, linear)"},
    {"unknown comm backend", "comm:\n  backend: gloo\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: comm.backend: unknown backend 'gloo' (expected one of: auto, local, mpi, "
     "nccl)"},
    {"bad experiment name", "experiment: my run\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:13: experiment: must match [A-Za-z0-9._-]+ (it names a directory), found "
     "'my run'"},
    {"experiment name '..'", "experiment: ..\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:13: experiment: must not be '..' (it names a directory)"},
    {"experiment null", "experiment: null\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:13: experiment: expected a string, found null"},
    {"group without params", "optim:\n  groups: [{lr_scale: 2}]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:12: optim.groups[0]: missing required key 'params'"},
    {"unfreeze entry without globs",
     "freeze:\n  schedule:\n    - at_step: 10\n      trainable: []\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:4:18: freeze.schedule[0].trainable: must have at least 1 entry, found 0"},
    {"bad env name", "launch:\n  env: {BAD-NAME: 1}\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:9: launch.env: 'BAD-NAME' is not a valid environment variable name"},
    {"anchor", "seed: &s 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:7: anchors and aliases are not supported (found '&s'; quote strings that "
     "start with '&' or '*')"},
    {"alias", "freeze:\n  trainable: [*bias]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:15: anchors and aliases are not supported (found '*bias'; quote strings that "
     "start with '&' or '*')"},
    {"unquoted glob read as an alias", "freeze:\n  trainable: [*.bias]\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:16: syntax error: did not find expected alphabetic or numeric character (a "
     "value starting with '*' or '&' is an alias or anchor: quote it, e.g. '*.bias')"},
    {"tag", "optim:\n  lr: !!float 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:7: tags are not supported (found '!!float')"},
    {"two documents", "seed: 1\n---\nseed: 2\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:2:1: multiple YAML documents are not supported (a second one starts here)"},
    {"nesting too deep",
     "seed: "
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     NULL, GRAFT_ERR_CONFIG, "cfg.yaml:1:38: nesting deeper than 32 levels"},
    {"non-scalar key", "? [a]\n: 1\n", NULL, GRAFT_ERR_CONFIG,
     "cfg.yaml:1:3: expected a key name, found a list"},
    {"missing required key",
     "experiment: x\nmodel:\n  arch: mlp\noptim:\n  lr: 0.1\n"
     "train:\n  epochs: 1\n",
     NULL, GRAFT_ERR_CONFIG, "cfg.yaml: missing required key 'data.train'"},
    {"missing required section", "experiment: x\noptim:\n  lr: 0.1\ndata:\n  train: d\n", NULL,
     GRAFT_ERR_CONFIG, "cfg.yaml: missing required key 'model.arch'"},
    /* overrides on top of a valid file */
    {"override without '='", MINIMAL, "optim.lr", GRAFT_ERR_CONFIG,
     "override 'optim.lr': expected KEY=VALUE (e.g. optim.lr=3e-4)"},
    {"override without key", MINIMAL, "=3", GRAFT_ERR_CONFIG,
     "override '=3': missing key before '='"},
    {"override of an unknown section", MINIMAL, "nope.x=1", GRAFT_ERR_CONFIG,
     "override 'nope.x=1': nope.x: unknown key"},
    {"override typo in key", MINIMAL, "optim.lrr=1", GRAFT_ERR_CONFIG,
     "override 'optim.lrr=1': optim.lrr: unknown key (did you mean 'optim.lr'?)"},
    {"override typo in section", MINIMAL, "optm.lr=1", GRAFT_ERR_CONFIG,
     "override 'optm.lr=1': optm.lr: unknown key (did you mean 'optim.lr'?)"},
    {"override malformed key", MINIMAL, "optim..lr=1", GRAFT_ERR_CONFIG,
     "override 'optim..lr=1': 'optim..lr' is not a key (expected names joined by dots, e.g. "
     "optim.lr)"},
    {"override wrong type", MINIMAL, "optim.lr=fast", GRAFT_ERR_CONFIG,
     "override 'optim.lr=fast': optim.lr: expected a number, found 'fast'"},
    {"override out of range", MINIMAL, "data.batch_size=-4", GRAFT_ERR_CONFIG,
     "override 'data.batch_size=-4': data.batch_size: must be >= 1, found -4"},
    {"override list item", MINIMAL, "model.hidden=[512, x]", GRAFT_ERR_CONFIG,
     "override 'model.hidden=[512, x]': model.hidden[1]: expected an integer, found 'x'"},
    {"override value syntax", MINIMAL, "model.hidden=[512,", GRAFT_ERR_CONFIG,
     "override 'model.hidden=[512,': syntax error: did not find expected node content "
     "(at the end of the value)"},
    {"override value syntax, mid-value", MINIMAL, "launch.env={a: b: c}", GRAFT_ERR_CONFIG,
     "override 'launch.env={a: b: c}': syntax error: did not find expected ',' or '}' "
     "(column 6 of the value)"},
    {"override scalar for section", MINIMAL, "data=3", GRAFT_ERR_CONFIG,
     "override 'data=3': data: expected a mapping, found '3'"},
    {"override unknown key inside section", MINIMAL, "data={batchsize: 3}", GRAFT_ERR_CONFIG,
     "override 'data={batchsize: 3}': data.batchsize: unknown key (did you mean "
     "'data.batch_size'?)"},
    {"override enum", MINIMAL, "optim.name=adam", GRAFT_ERR_CONFIG,
     "override 'optim.name=adam': optim.name: unknown optimizer 'adam' (expected one of: adamw, "
     "sgd)"},
};

/* Every malformed config fails with exactly its message and status, and the struct
 * it leaves behind still frees cleanly (ASan checks the leaks). */
static void test_malformed_table(void **state) {
    (void)state;
    size_t n = sizeof bad_cases / sizeof bad_cases[0];
    printf("  %zu malformed configs\n", n);
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        graft_config cfg;
        graft_status s;
        if (!c->yaml) {
            unlink("missing.yaml");
            graft_config_defaults(&cfg);
            s = graft_config_load(&cfg, "missing.yaml");
        } else {
            s = load_text(&cfg, c->yaml);
            if (c->override) {
                if (s != GRAFT_OK)
                    printf("  [%s] base did not load: %s\n", c->name, graft_config_last_error());
                assert_int_equal(s, GRAFT_OK);
                s = graft_config_override(&cfg, c->override);
            } else if (s == GRAFT_OK) {
                s = graft_config_validate(&cfg);
            }
        }
        const char *got = graft_config_last_error();
        int ok = s == c->status && strcmp(got, c->message) == 0;
        printf("  %-4s %-40s %s\n", ok ? "ok" : "FAIL", c->name, got);
        if (!ok) printf("       expected (status %d, got %d): %s\n", c->status, s, c->message);
        assert_int_equal(s, c->status);
        assert_string_equal(got, c->message);
        graft_config_free(&cfg);
    }
}

/* ---- defaults ------------------------------------------------------------------- */

/* Every field's default, checked one by one; validate then asks for the required keys. */
static void test_defaults(void **state) {
    (void)state;
    graft_config c;
    graft_config_defaults(&c);
    assert_string_equal(c.source, "");
    assert_null(c.experiment);
    assert_int_equal(c.seed, 0);
    assert_null(c.model.arch);
    assert_null(c.model.init);
    assert_int_equal(c.model.init_strict, 0);
    assert_int_equal(c.model.head_num_classes, 0);
    assert_int_equal(c.model.width, 64);
    assert_int_equal(c.model.type_vocab_size, 2);
    assert_int_equal(c.model.n_hidden, 2);
    assert_int_equal(c.model.hidden[0], 512);
    assert_int_equal(c.model.hidden[1], 256);
    assert_true(c.model.dropout == 0.0);
    assert_int_equal(c.freeze.trainable.count, 0);
    assert_null(c.freeze.trainable.items);
    assert_int_equal(c.freeze.frozen.count, 0);
    assert_string_equal(c.freeze.bn, "eval");
    assert_int_equal(c.freeze.n_schedule, 0);
    assert_null(c.freeze.schedule);
    assert_null(c.data.train);
    assert_null(c.data.val);
    assert_int_equal(c.data.batch_size, 128);
    assert_int_equal(c.data.micro_batch, 0);
    assert_int_equal(c.data.shuffle, 1);
    assert_int_equal(c.data.prefetch, 2);
    assert_int_equal(c.data.seq_len, 128);
    assert_int_equal(c.data.augment_crop_padding, 0);
    assert_int_equal(c.data.augment_hflip, 0);
    assert_int_equal(c.data.verify, 1);
    assert_string_equal(c.optim.name, "adamw");
    assert_true(c.optim.lr == 0.0); /* required: not given yet */
    assert_true(c.optim.weight_decay < 0);
    assert_true(graft_config_weight_decay(&c) == 0.01);
    assert_true(c.optim.momentum == 0.9);
    assert_int_equal(c.optim.nesterov, 0);
    assert_true(c.optim.beta1 == 0.9);
    assert_true(c.optim.beta2 == 0.999);
    assert_true(c.optim.eps == 1e-8);
    assert_true(c.optim.grad_clip == 1.0);
    assert_int_equal(c.optim.n_groups, 0);
    assert_null(c.optim.groups);
    assert_string_equal(c.schedule.name, "cosine");
    assert_int_equal(c.schedule.warmup_steps, 0);
    assert_true(c.schedule.min_lr == 0.0);
    assert_int_equal(c.train.epochs, 0);
    assert_int_equal(c.train.max_steps, 0);
    assert_int_equal(c.train.eval_every, 0);
    assert_int_equal(c.train.log_every, 10);
    assert_null(c.checkpoint.dir);
    assert_int_equal(c.checkpoint.every_steps, 0);
    assert_true(c.checkpoint.every_minutes == 0.0);
    assert_int_equal(c.checkpoint.keep_last, 3);
    assert_string_equal(c.checkpoint.save_frozen, "once");
    assert_string_equal(c.checkpoint.on_error, "continue");
    assert_string_equal(c.checkpoint.resume, "auto");
    assert_string_equal(c.comm.backend, "auto");
    assert_true(c.comm.bucket_mb == 25.0);
    assert_true(c.comm.first_bucket_mb == 1.0);
    assert_true(c.comm.timeout_s == 300.0);
    assert_int_equal(c.launch.np, 1);
    assert_int_equal(c.launch.hosts.count, 0);
    assert_null(c.launch.hostfile);
    assert_int_equal(c.launch.threads_per_rank, 0);
    assert_int_equal(c.launch.env.count, 0);
    assert_int_equal(c.launch.mpirun_args.count, 0);
    assert_int_equal(c.launch.max_restarts, 0);

    /* defaults alone miss the required keys; validate names the first one */
    assert_int_equal(graft_config_validate(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(graft_config_last_error(), "config: missing required key 'experiment'");

    /* the smallest complete config validates, and a success clears the last error */
    graft_config_free(&c);
    assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    assert_string_equal(graft_config_last_error(), "");
    assert_string_equal(c.source, "cfg.yaml");
    graft_config_free(&c);
}

/* ---- a config with every section --------------------------------------------------- */

static const char *const full_yaml = "# every section, every key away from its default\n"
                                     "experiment: resnet-ft_v2.1\n"
                                     "seed: 42\n"
                                     "model:\n"
                                     "  arch: mlp\n"
                                     "  init: weights/pretrained.safetensors\n"
                                     "  init_strict: true\n"
                                     "  hidden: [1024, 512, 64]\n"
                                     "  dropout: 0.25\n"
                                     "  small_stem: true\n"
                                     "  width: 32\n"
                                     "  n_layer: 6\n"
                                     "  n_head: 6\n"
                                     "  n_embd: 384\n"
                                     "  n_positions: 256\n"
                                     "  vocab_size: 8192\n"
                                     "  type_vocab_size: 3\n"
                                     "  mask_token_id: 4\n"
                                     "  head: {num_classes: 10}\n"
                                     "freeze:\n"
                                     "  trainable: ['fc.*', \"layer4.*\"]\n"
                                     "  bn: train\n"
                                     "  schedule:\n"
                                     "    - at_step: 100\n"
                                     "      trainable: [layer3.*]\n"
                                     "    - {at_step: 200, trainable: ['layer2.*', 'layer1.*']}\n"
                                     "data:\n"
                                     "  train: /data/imagenet/train\n"
                                     "  val: /data/imagenet/val\n"
                                     "  batch_size: 256\n"
                                     "  micro_batch: 32\n"
                                     "  shuffle: false\n"
                                     "  prefetch: 4\n"
                                     "  seq_len: 1024\n"
                                     "  augment:\n"
                                     "    crop_padding: 4\n"
                                     "    hflip: true\n"
                                     "  verify: false\n"
                                     "optim:\n"
                                     "  name: sgd\n"
                                     "  lr: 3e-4\n"
                                     "  weight_decay: 5.0e-4\n"
                                     "  momentum: 0.8\n"
                                     "  nesterov: true\n"
                                     "  betas: [0.8, 0.95]\n"
                                     "  eps: 1.0e-6\n"
                                     "  grad_clip: 0\n"
                                     "  groups:\n"
                                     "    - params: '*.bias'\n"
                                     "      weight_decay: 0\n"
                                     "    - {params: 'fc.*', lr_scale: 10}\n"
                                     "schedule:\n"
                                     "  name: linear\n"
                                     "  warmup_steps: 500\n"
                                     "  min_lr: 1e-6\n"
                                     "train:\n"
                                     "  epochs: 90\n"
                                     "  max_steps: 100000\n"
                                     "  eval_every: 1000\n"
                                     "  log_every: 20\n"
                                     "checkpoint:\n"
                                     "  dir: /ckpt/run1\n"
                                     "  every_steps: 5000\n"
                                     "  every_minutes: 30.5\n"
                                     "  keep_last: 5\n"
                                     "  save_frozen: always\n"
                                     "  on_error: stop\n"
                                     "  resume: never\n"
                                     "comm:\n"
                                     "  backend: nccl\n"
                                     "  bucket_mb: 50\n"
                                     "  first_bucket_mb: 2.5\n"
                                     "  timeout_s: 600\n"
                                     "launch:\n"
                                     "  np: 16\n"
                                     "  hosts: ['node1:8', 'node2:8']\n"
                                     "  threads_per_rank: 4\n"
                                     "  env:\n"
                                     "    NCCL_DEBUG: WARN\n"
                                     "    OMP_NUM_THREADS: 4\n"
                                     "  mpirun_args: [--bind-to, core]\n"
                                     "  max_restarts: 3\n";

/* Every field of the full config (shared by the round-trip test). */
static void check_full_values(const graft_config *c) {
    assert_string_equal(c->experiment, "resnet-ft_v2.1");
    assert_int_equal(c->seed, 42);
    assert_string_equal(c->model.arch, "mlp");
    assert_string_equal(c->model.init, "weights/pretrained.safetensors");
    assert_int_equal(c->model.init_strict, 1);
    assert_int_equal(c->model.head_num_classes, 10);
    assert_int_equal(c->model.small_stem, 1);
    assert_int_equal(c->model.width, 32);
    assert_int_equal(c->model.n_layer, 6);
    assert_int_equal(c->model.n_embd, 384);
    assert_int_equal(c->model.n_positions, 256);
    assert_int_equal(c->model.vocab_size, 8192);
    assert_int_equal(c->model.type_vocab_size, 3);
    assert_int_equal(c->model.mask_token_id, 4);
    assert_int_equal(c->model.n_hidden, 3);
    assert_int_equal(c->model.hidden[0], 1024);
    assert_int_equal(c->model.hidden[1], 512);
    assert_int_equal(c->model.hidden[2], 64);
    assert_true(c->model.dropout == 0.25);
    assert_int_equal(c->freeze.trainable.count, 2);
    assert_string_equal(c->freeze.trainable.items[0], "fc.*");
    assert_string_equal(c->freeze.trainable.items[1], "layer4.*");
    assert_int_equal(c->freeze.frozen.count, 0);
    assert_string_equal(c->freeze.bn, "train");
    assert_int_equal(c->freeze.n_schedule, 2);
    assert_int_equal(c->freeze.schedule[0].at_step, 100);
    assert_int_equal(c->freeze.schedule[0].trainable.count, 1);
    assert_string_equal(c->freeze.schedule[0].trainable.items[0], "layer3.*");
    assert_int_equal(c->freeze.schedule[1].at_step, 200);
    assert_int_equal(c->freeze.schedule[1].trainable.count, 2);
    assert_string_equal(c->freeze.schedule[1].trainable.items[1], "layer1.*");
    assert_string_equal(c->data.train, "/data/imagenet/train");
    assert_string_equal(c->data.val, "/data/imagenet/val");
    assert_int_equal(c->data.batch_size, 256);
    assert_int_equal(c->data.micro_batch, 32);
    assert_int_equal(c->data.shuffle, 0);
    assert_int_equal(c->data.prefetch, 4);
    assert_int_equal(c->data.seq_len, 1024);
    assert_int_equal(c->data.augment_crop_padding, 4);
    assert_int_equal(c->data.augment_hflip, 1);
    assert_int_equal(c->data.verify, 0);
    assert_string_equal(c->optim.name, "sgd");
    assert_true(c->optim.lr == 3e-4);
    assert_true(c->optim.weight_decay == 5e-4);
    assert_true(graft_config_weight_decay(c) == 5e-4);
    assert_true(c->optim.momentum == 0.8);
    assert_int_equal(c->optim.nesterov, 1);
    assert_true(c->optim.beta1 == 0.8);
    assert_true(c->optim.beta2 == 0.95);
    assert_true(c->optim.eps == 1e-6);
    assert_true(c->optim.grad_clip == 0.0);
    assert_int_equal(c->optim.n_groups, 2);
    assert_string_equal(c->optim.groups[0].params, "*.bias");
    assert_true(c->optim.groups[0].lr_scale == 1.0);
    assert_true(c->optim.groups[0].weight_decay == 0.0);
    assert_string_equal(c->optim.groups[1].params, "fc.*");
    assert_true(c->optim.groups[1].lr_scale == 10.0);
    assert_true(c->optim.groups[1].weight_decay < 0); /* not given: optim.weight_decay */
    assert_string_equal(c->schedule.name, "linear");
    assert_int_equal(c->schedule.warmup_steps, 500);
    assert_true(c->schedule.min_lr == 1e-6);
    assert_int_equal(c->train.epochs, 90);
    assert_int_equal(c->train.max_steps, 100000);
    assert_int_equal(c->train.eval_every, 1000);
    assert_int_equal(c->train.log_every, 20);
    assert_string_equal(c->checkpoint.dir, "/ckpt/run1");
    assert_int_equal(c->checkpoint.every_steps, 5000);
    assert_true(c->checkpoint.every_minutes == 30.5);
    assert_int_equal(c->checkpoint.keep_last, 5);
    assert_string_equal(c->checkpoint.save_frozen, "always");
    assert_string_equal(c->checkpoint.on_error, "stop");
    assert_string_equal(c->checkpoint.resume, "never");
    assert_string_equal(c->comm.backend, "nccl");
    assert_true(c->comm.bucket_mb == 50.0);
    assert_true(c->comm.first_bucket_mb == 2.5);
    assert_true(c->comm.timeout_s == 600.0);
    assert_int_equal(c->launch.np, 16);
    assert_int_equal(c->launch.hosts.count, 2);
    assert_string_equal(c->launch.hosts.items[0], "node1:8");
    assert_string_equal(c->launch.hosts.items[1], "node2:8");
    assert_null(c->launch.hostfile);
    assert_int_equal(c->launch.threads_per_rank, 4);
    assert_int_equal(c->launch.env.count, 2);
    assert_string_equal(c->launch.env.items[0], "NCCL_DEBUG=WARN");
    assert_string_equal(c->launch.env.items[1], "OMP_NUM_THREADS=4");
    assert_int_equal(c->launch.mpirun_args.count, 2);
    assert_string_equal(c->launch.mpirun_args.items[0], "--bind-to");
    assert_string_equal(c->launch.mpirun_args.items[1], "core");
    assert_int_equal(c->launch.max_restarts, 3);
}

/* Every key of every section is read into its field, and the result validates. */
static void test_full_config(void **state) {
    (void)state;
    graft_config c;
    assert_int_equal(load_text(&c, full_yaml), GRAFT_OK);
    check_full_values(&c);
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    graft_config_free(&c);
}

/* ---- overrides ---------------------------------------------------------------------- */

/* Nested keys, lists, maps, whole sections and nulls; a failed override keeps the old
 * value. */
static void test_overrides(void **state) {
    (void)state;
    graft_config c;
    assert_int_equal(load_text(&c, full_yaml), GRAFT_OK);
    const char *ok[] = {
        "optim.lr=1e-2",
        "data.augment.crop_padding=8",
        " seed = 7",          /* spaces around the key are fine */
        "model.hidden=[128]", /* lists are replaced, not appended to */
        "optim.betas=[0.5, 0.75]",
        "freeze.trainable=['*.bias', head.*]",
        "launch.env={a: b}",
        "model.init=null",                                /* a nullable key unset again */
        "data={batch_size: 64, augment: {hflip: false}}", /* a section takes a mapping */
        "optim.groups=[{params: 'embed.*', lr_scale: 0.1, weight_decay: 0.0}]",
        "freeze.schedule=[]",
        "checkpoint.resume=runs/x/checkpoints/step-00000100",
        "experiment=run2",
        "optim.weight_decay=null",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        graft_status s = graft_config_override(&c, ok[i]);
        if (s != GRAFT_OK) printf("  override '%s': %s\n", ok[i], graft_config_last_error());
        assert_int_equal(s, GRAFT_OK);
        assert_string_equal(graft_config_last_error(), "");
    }
    assert_true(c.optim.lr == 1e-2);
    assert_int_equal(c.data.augment_crop_padding, 8);
    assert_int_equal(c.seed, 7);
    assert_int_equal(c.model.n_hidden, 1);
    assert_int_equal(c.model.hidden[0], 128);
    assert_true(c.optim.beta1 == 0.5 && c.optim.beta2 == 0.75);
    assert_int_equal(c.freeze.trainable.count, 2);
    assert_string_equal(c.freeze.trainable.items[0], "*.bias");
    assert_string_equal(c.freeze.trainable.items[1], "head.*");
    assert_int_equal(c.launch.env.count, 1);
    assert_string_equal(c.launch.env.items[0], "a=b");
    assert_null(c.model.init);
    assert_int_equal(c.data.batch_size, 64);
    assert_int_equal(c.data.augment_hflip, 0);
    assert_int_equal(c.data.micro_batch, 32); /* untouched keys of the section stay */
    assert_int_equal(c.optim.n_groups, 1);
    assert_string_equal(c.optim.groups[0].params, "embed.*");
    assert_true(c.optim.groups[0].lr_scale == 0.1);
    assert_true(c.optim.groups[0].weight_decay == 0.0);
    assert_int_equal(c.freeze.n_schedule, 0);
    assert_null(c.freeze.schedule);
    assert_string_equal(c.checkpoint.resume, "runs/x/checkpoints/step-00000100");
    assert_string_equal(c.experiment, "run2");
    assert_true(c.optim.weight_decay < 0);
    assert_true(graft_config_weight_decay(&c) == 0.0); /* sgd's default */

    /* a failed override leaves the old value in place */
    assert_int_equal(graft_config_override(&c, "optim.lr=fast"), GRAFT_ERR_CONFIG);
    assert_true(c.optim.lr == 1e-2);
    assert_int_equal(graft_config_override(&c, "model.hidden=[1, 2, 0]"), GRAFT_ERR_CONFIG);
    assert_string_equal(
        graft_config_last_error(),
        "override 'model.hidden=[1, 2, 0]': model.hidden[2]: must be >= 1, found 0");
    assert_int_equal(c.model.n_hidden, 1);
    assert_int_equal(c.model.hidden[0], 128);
    assert_int_equal(graft_config_override(&c, "freeze.trainable=[a, '']"), GRAFT_ERR_CONFIG);
    assert_string_equal(
        graft_config_last_error(),
        "override 'freeze.trainable=[a, '']': freeze.trainable[1]: must not be empty");
    assert_int_equal(c.freeze.trainable.count, 2);
    assert_int_equal(graft_config_override(&c, "optim.groups=[{params: x}, {lr_scale: 1}]"),
                     GRAFT_ERR_CONFIG);
    assert_int_equal(c.optim.n_groups, 1);
    assert_string_equal(c.optim.groups[0].params, "embed.*");
    assert_int_equal(graft_config_override(&c, NULL), GRAFT_ERR_INVALID_ARG);
    graft_config_free(&c);
}

/* ---- validate: checks across keys ------------------------------------------------------ */

typedef struct cross_case {
    const char *overrides[3];
    const char *message;
} cross_case;

/* Each rule across keys fails with its exact message, on top of a valid config. */
static void test_validate_cross_keys(void **state) {
    (void)state;
    const cross_case cases[] = {
        {{"data.micro_batch=256"},
         "cfg.yaml: data.micro_batch: must be <= data.batch_size (128), found 256"},
        {{"freeze.trainable=[fc.*]", "freeze.frozen=[conv1.*]"},
         "cfg.yaml: freeze: give freeze.trainable or freeze.frozen, not both"},
        {{"schedule.min_lr=0.01"},
         "cfg.yaml: schedule.min_lr: must be <= optim.lr (0.001), found 0.01"},
        {{"optim.nesterov=true"}, "cfg.yaml: optim.nesterov: only applies to optim.name: sgd"},
        {{"optim.name=sgd", "optim.nesterov=true", "optim.momentum=0"},
         "cfg.yaml: optim.nesterov: needs optim.momentum > 0"},
        {{"launch.hosts=['a:2']", "launch.hostfile=hosts.txt"},
         "cfg.yaml: launch: give launch.hosts or launch.hostfile, not both"},
        {{"freeze.schedule=[{at_step: 10, trainable: [a]}, {at_step: 10, trainable: [b]}]"},
         "cfg.yaml: freeze.schedule[1].at_step: must be > freeze.schedule[0].at_step (10), found "
         "10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        graft_config c;
        assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
        assert_int_equal(graft_config_validate(&c), GRAFT_OK);
        for (int j = 0; j < 3 && cases[i].overrides[j]; j++)
            assert_int_equal(graft_config_override(&c, cases[i].overrides[j]), GRAFT_OK);
        graft_status s = graft_config_validate(&c);
        printf("  %s\n", graft_config_last_error());
        assert_int_equal(s, GRAFT_ERR_CONFIG);
        assert_string_equal(graft_config_last_error(), cases[i].message);
        graft_config_free(&c);
    }

    /* a training length is asked for by training only, not by evaluation */
    graft_config c;
    assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
    assert_int_equal(graft_config_override(&c, "train.epochs=0"), GRAFT_OK);
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    assert_int_equal(graft_config_validate_training(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(graft_config_last_error(),
                        "cfg.yaml: train: set train.epochs or train.max_steps");
    graft_config_free(&c);
    assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
    c.optim.lr = 0; /* left out */
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    assert_int_equal(graft_config_validate_training(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(graft_config_last_error(), "cfg.yaml: missing required key 'optim.lr'");
    graft_config_free(&c);
    /* a warmup longer than the run is not a config error (training warns) */
    assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
    assert_int_equal(graft_config_override(&c, "train.max_steps=20"), GRAFT_OK);
    assert_int_equal(graft_config_override(&c, "schedule.warmup_steps=100"), GRAFT_OK);
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    assert_int_equal(graft_config_validate_training(&c), GRAFT_OK);
    graft_config_free(&c);

    /* values edited in code are checked against the same table */
    assert_int_equal(load_text(&c, minimal_yaml), GRAFT_OK);
    c.model.dropout = 1.5;
    assert_int_equal(graft_config_validate(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(graft_config_last_error(),
                        "cfg.yaml: model.dropout: must be in [0, 1), found 1.5");
    c.model.dropout = 0;
    c.optim.beta2 = 1.0;
    assert_int_equal(graft_config_validate(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(graft_config_last_error(),
                        "cfg.yaml: optim.betas[1]: must be in [0, 1), found 1");
    c.optim.beta2 = 0.999;
    free(c.optim.name);
    c.optim.name = strdup("adam");
    assert_int_equal(graft_config_validate(&c), GRAFT_ERR_CONFIG);
    assert_string_equal(
        graft_config_last_error(),
        "cfg.yaml: optim.name: unknown optimizer 'adam' (expected one of: adamw, sgd)");
    graft_config_free(&c);
}

/* ---- print round trip ---------------------------------------------------------------- */

/* print(a) -> printed.yaml -> load into b; b must equal a key for key. */
static void print_and_reload(const graft_config *a, graft_config *b, const char *file) {
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(graft_config_print(a, f), GRAFT_OK);
    assert_int_equal(fclose(f), 0);
    graft_config_defaults(b);
    graft_status s = graft_config_load(b, file);
    if (s != GRAFT_OK) {
        char *text = read_text(file);
        printf("  printed config did not load: %s\n%s\n", graft_config_last_error(), text);
        free(text);
    }
    assert_int_equal(s, GRAFT_OK);
    const char *diff = NULL;
    int equal = graft_config_equal(a, b, &diff);
    if (!equal) printf("  round trip changed %s\n", diff);
    assert_true(equal);
}

/* A value with terminal controls (ESC, a C1 CSI, a right-to-left override) prints
 * escaped, and loads back unchanged; UTF-8 text prints as it is. */
static void test_print_escapes_controls(void **state) {
    (void)state;
    graft_config a, b;
    assert_int_equal(load_text(&a, full_yaml), GRAFT_OK);
    assert_int_equal(
        graft_config_override(&a, "launch.env={E: \"a\\x1b[1m\\u009b2J\\u202eb caf\\u00e9\"}"),
        GRAFT_OK);
    assert_string_equal(a.launch.env.items[0], "E=a\x1b[1m\xc2\x9b"
                                               "2J\xe2\x80\xae"
                                               "b caf\xc3\xa9");
    print_and_reload(&a, &b, "escaped.yaml");
    char *text = read_text("escaped.yaml");
    assert_non_null(text);
    assert_non_null(strstr(text, "E: \"a\\x1b[1m\\u009b2J\\u202eb caf\xc3\xa9\""));
    assert_null(strchr(text, '\x1b'));
    assert_null(strstr(text, "\xc2\x9b"));
    assert_null(strstr(text, "\xe2\x80\xae"));
    free(text);
    graft_config_free(&b);
    graft_config_free(&a);
}

/* load(print(cfg)) == cfg with strings that need quoting and doubles that need 17
 * digits; a second round trip prints the same text. */
static void test_print_roundtrip(void **state) {
    (void)state;
    graft_config a, b;
    assert_int_equal(load_text(&a, full_yaml), GRAFT_OK);
    /* strings that need quoting and doubles that need all 17 digits */
    const char *tricky[] = {
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one override, split to fit */
        "freeze.trainable=['*.bias', 'has space', 'quote\"d', 'colon: x', 'null', '-dash', "
        "'#hash', 'ünïcödé', 'true', '[x]', 'back\\slash', '']",
        "optim.lr=0.30000000000000004",
        "comm.timeout_s=1.0e-300",
        "checkpoint.every_minutes=123456789.123",
        "optim.betas=[0.1, 0.7071067811865476]",
        "launch.env={A: 'x y', B: '', C: 'a=b', D: \"tab\\there\"}",
        "checkpoint.resume='/path with spaces/step-1'",
        "data.val=null",
    };
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        graft_status s = graft_config_override(&a, tricky[i]);
        if (s != GRAFT_OK) printf("  %s\n", graft_config_last_error());
        /* the empty glob in the first line is refused; apply it without it */
        if (i == 0) {
            assert_int_equal(s, GRAFT_ERR_CONFIG);
            assert_int_equal(
                graft_config_override(&a, "freeze.trainable=['*.bias', 'has space', 'quote\"d', "
                                          "'colon: x', 'null', '-dash', '#hash', 'ünïcödé', "
                                          "'true', '[x]', 'back\\slash']"),
                GRAFT_OK);
        } else {
            assert_int_equal(s, GRAFT_OK);
        }
    }
    assert_int_equal(a.freeze.trainable.count, 11);
    assert_string_equal(a.launch.env.items[3], "D=tab\there");
    print_and_reload(&a, &b, "printed.yaml");
    assert_true(b.optim.lr == 0.30000000000000004);
    assert_true(b.comm.timeout_s == 1.0e-300);
    assert_string_equal(b.freeze.trainable.items[2], "quote\"d");
    assert_string_equal(b.freeze.trainable.items[7], "ünïcödé");
    assert_string_equal(b.launch.env.items[2], "C=a=b");
    assert_null(b.data.val);
    assert_true(b.optim.groups[1].weight_decay < 0);

    /* printing the reloaded config gives the same text (but for the source line) */
    graft_config c;
    print_and_reload(&b, &c, "printed2.yaml");
    char *t1 = read_text("printed.yaml"), *t2 = read_text("printed2.yaml");
    assert_non_null(t1);
    assert_non_null(t2);
    assert_string_equal(strchr(t1, '\n'), strchr(t2, '\n'));
    printf("  printed config: %zu bytes, identical after a second round trip\n", strlen(t1));
    /* sections in struct order, lists in flow style */
    const char *order[] = {
        "\nseed:",         "\nmodel:\n",    "\n  hidden: [1024, 512, 64]\n",
        "\nfreeze:\n",     "\ndata:\n",     "\n  augment:\n    crop_padding: 4\n",
        "\noptim:\n",      "\nschedule:\n", "\ntrain:\n",
        "\ncheckpoint:\n", "\ncomm:\n",     "\nlaunch:\n"};
    const char *at = t1;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *found = strstr(at, order[i]);
        if (!found) printf("  missing or out of order: %s\n", order[i]);
        assert_non_null(found);
        at = found;
    }
    free(t1);
    free(t2);
    graft_config_free(&a);
    graft_config_free(&b);
    graft_config_free(&c);

    /* the fields of the full config survive unchanged */
    assert_int_equal(load_text(&a, full_yaml), GRAFT_OK);
    print_and_reload(&a, &b, "printed.yaml");
    check_full_values(&b);
    graft_config_free(&a);
    graft_config_free(&b);

    /* an incomplete config prints its missing required keys as null */
    graft_config_defaults(&a);
    FILE *f = fopen("printed.yaml", "w");
    assert_non_null(f);
    assert_int_equal(graft_config_print(&a, f), GRAFT_OK);
    fclose(f);
    t1 = read_text("printed.yaml");
    assert_non_null(strstr(t1, "experiment: null\n"));
    assert_non_null(strstr(t1, "\n  lr: null\n"));
    free(t1);
    graft_config_free(&a);
}

/* graft_config_equal notices a change in any kind of key. */
static void test_equal(void **state) {
    (void)state;
    const char *changes[][2] = {
        {"seed=1", "seed"},
        {"model.hidden=[512, 255]", "model.hidden"},
        {"model.init=x", "model.init"},
        {"optim.betas=[0.9, 0.998]", "optim.betas"},
        {"optim.groups[0]=x", NULL}, /* not a key: refused, nothing changes */
        {"optim.groups=[{params: '*.bias', lr_scale: 1, weight_decay: 0.1}]", "optim.groups"},
        {"freeze.schedule=[{at_step: 100, trainable: [layer3.*]}]", "freeze.schedule"},
        {"launch.env={NCCL_DEBUG: INFO, OMP_NUM_THREADS: 4}", "launch.env"},
        {"data.augment.hflip=false", "data.augment.hflip"},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        graft_config a, b;
        assert_int_equal(load_text(&a, full_yaml), GRAFT_OK);
        assert_int_equal(load_text(&b, full_yaml), GRAFT_OK);
        const char *diff = "x";
        assert_int_equal(graft_config_equal(&a, &b, &diff), 1);
        assert_null(diff);
        graft_status s = graft_config_override(&b, changes[i][0]);
        assert_int_equal(s, changes[i][1] ? GRAFT_OK : GRAFT_ERR_CONFIG);
        assert_int_equal(graft_config_equal(&a, &b, &diff), changes[i][1] ? 0 : 1);
        if (changes[i][1]) assert_string_equal(diff, changes[i][1]);
        graft_config_free(&a);
        graft_config_free(&b);
    }
}

/* ---- digest --------------------------------------------------------------------------- */

/* Equal on equal configs, blind to launch.* and checkpoint.resume, sensitive to the rest
 * (down to the last bit of a double). */
static void test_digest(void **state) {
    (void)state;
    graft_config a, b;
    assert_int_equal(load_text(&a, full_yaml), GRAFT_OK);
    assert_int_equal(load_text(&b, full_yaml), GRAFT_OK);
    uint64_t d0 = graft_config_digest(&a);
    printf("  digest of the full config: %016llx\n", (unsigned long long)d0);
    assert_true(d0 != 0);
    assert_true(graft_config_digest(&b) == d0); /* two "ranks", same file */
    assert_true(graft_config_digest(&a) == d0); /* deterministic */

    /* rank-local keys do not change it */
    const char *local[] = {
        "launch.np=2",           "launch.hosts=[a]",          "launch.env={X: y}",
        "launch.max_restarts=9", "launch.threads_per_rank=1", "launch.mpirun_args=[]",
        "checkpoint.resume=auto"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
        assert_int_equal(graft_config_override(&b, local[i]), GRAFT_OK);
        assert_true(graft_config_digest(&b) == d0);
    }
    /* everything else does, even the last bit of a double */
    char next_lr[64]; /* the double right above 3e-4 */
    snprintf(next_lr, sizeof next_lr, "optim.lr=%.17g", nextafter(3e-4, 1.0));
    const char *global[] = {next_lr,
                            "optim.lr=3e-4",
                            "data.augment.hflip=false",
                            "model.hidden=[1024, 512]",
                            "freeze.trainable=['fc.*']",
                            "optim.groups=[]",
                            "seed=43",
                            "checkpoint.dir=null",
                            "comm.timeout_s=601"};
    uint64_t prev = d0;
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++) {
        graft_config c;
        assert_int_equal(load_text(&c, full_yaml), GRAFT_OK);
        assert_int_equal(graft_config_override(&c, global[i]), GRAFT_OK);
        uint64_t d = graft_config_digest(&c);
        int same_value = i == 1; /* 3e-4 is the file's value */
        printf("  %-40s %016llx\n", global[i], (unsigned long long)d);
        if (same_value)
            assert_true(d == d0);
        else
            assert_true(d != d0 && d != prev);
        prev = d;
        graft_config_free(&c);
    }
    /* a printed and reloaded config has the same digest */
    graft_config c;
    print_and_reload(&a, &c, "printed.yaml");
    assert_true(graft_config_digest(&c) == d0);
    graft_config_free(&a);
    graft_config_free(&b);
    graft_config_free(&c);
}

/* ---- reference ------------------------------------------------------------------------ */

/* The generated Markdown table (caller frees). */
static char *reference_text(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    graft_config_write_reference(f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* Header, one row per key (every printed key appears, in print order), and a copy in
 * the build directory with the README markers for pasting. */
static void test_reference_table(void **state) {
    (void)state;
    char *ref = reference_text();
    const char *header = "| key | type | default | meaning |\n|---|---|---|---|\n";
    assert_memory_equal(ref, header, strlen(header));
    int rows = 0;
    for (const char *p = ref; *p; p++)
        if (*p == '\n') rows++;
    rows -= 2;

    /* every leaf key of the printed config has a row, in the same order */
    graft_config c;
    graft_config_defaults(&c);
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *f = open_memstream(&printed, &printed_len);
    assert_non_null(f);
    assert_int_equal(graft_config_print(&c, f), GRAFT_OK);
    fclose(f);
    char section[4][64] = {{0}};
    int keys = 0;
    const char *at = ref;
    for (const char *line = printed; *line;) {
        const char *end = strchr(line, '\n');
        int indent = 0;
        while (line[indent] == ' ')
            indent++;
        const char *colon = strchr(line, ':');
        int depth = indent / 2;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(colon - line - indent), line + indent);
        if (colon[1] == '\n') {
            snprintf(section[depth], sizeof section[depth], "%s", name);
        } else {
            char full[256] = "";
            for (int d = 0; d < depth; d++) {
                strcat(full, section[d]);
                strcat(full, ".");
            }
            strcat(full, name);
            char cell[300];
            snprintf(cell, sizeof cell, "| `%s` |", full);
            /* assert_non_null below ends the test when a row is missing; the analyzer does
             * not know it. NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
            const char *found = strstr(at, cell);
            if (!found) printf("  no reference row (or out of order): %s\n", full);
            assert_non_null(found);
            at = found;
            keys++;
        }
        line = end + 1;
    }
    printf("  %d keys printed, %d reference rows (sub-keys of list entries included)\n", keys,
           rows);
    assert_int_equal(rows, keys + 5); /* optim.groups[].{3}, freeze.schedule[].{2} */
    free(printed);
    graft_config_free(&c);

    char path[4096];
    snprintf(path, sizeof path, "%s/config-reference.md", GRAFT_BUILD_DIR);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "<!-- config-reference:begin -->\n%s<!-- config-reference:end -->\n", ref);
    assert_int_equal(fclose(f), 0);
    printf("  wrote %s\n", path);
    free(ref);
}

/* The README's table between the markers is exactly the generated one. */
static void test_readme_reference(void **state) {
    (void)state;
    const char *begin = "<!-- config-reference:begin -->\n", *end = "<!-- config-reference:end -->";
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", GRAFT_SOURCE_DIR);
    char *readme = read_text(path);
    assert_non_null(readme);
    char *b = strstr(readme, begin), *e = b ? strstr(b, end) : NULL;
    if (!b || !e) {
        printf("  README.md has no config-reference markers yet: paste %s/config-reference.md\n",
               GRAFT_BUILD_DIR);
        free(readme);
        skip();
        return;
    }
    b += strlen(begin);
    *e = '\0';
    char *ref = reference_text();
    if (strcmp(b, ref) != 0)
        printf(
            "  README.md's config reference is stale: regenerate it from %s/config-reference.md\n",
            GRAFT_BUILD_DIR);
    assert_string_equal(b, ref);
    free(ref);
    free(readme);
}

/* ---- the repository's configs ------------------------------------------------------- */

/* Every configs/ YAML file loads, validates and round-trips; fmnist_mlp.yaml holds what
 * it says. */
static void test_repo_configs(void **state) {
    (void)state;
    glob_t g;
    int rc = glob(GRAFT_SOURCE_DIR "/configs/*.yaml", 0, NULL, &g);
    assert_int_equal(rc, 0);
    assert_true(g.gl_pathc >= 1);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        graft_config a, b;
        graft_config_defaults(&a);
        graft_status s = graft_config_load(&a, g.gl_pathv[i]);
        if (s == GRAFT_OK) s = graft_config_validate(&a);
        printf("  %-50s %s\n", strrchr(g.gl_pathv[i], '/') + 1,
               s == GRAFT_OK ? "ok" : graft_config_last_error());
        assert_int_equal(s, GRAFT_OK);
        print_and_reload(&a, &b, "printed.yaml");
        assert_int_equal(graft_config_validate(&b), GRAFT_OK);
        if (strstr(g.gl_pathv[i], "/fmnist_mlp.yaml")) {
            assert_string_equal(a.experiment, "fmnist_mlp");
            assert_int_equal(a.seed, 0);
            assert_string_equal(a.model.arch, "mlp");
            assert_int_equal(a.model.n_hidden, 2);
            assert_int_equal(a.model.hidden[0], 512);
            assert_int_equal(a.model.hidden[1], 256);
            assert_string_equal(a.data.train, "data/fmnist/train");
            assert_string_equal(a.data.val, "data/fmnist/test");
            assert_int_equal(a.data.batch_size, 128);
            assert_string_equal(a.optim.name, "adamw");
            assert_true(a.optim.lr == 1e-3);
            assert_true(a.optim.weight_decay == 0.01);
            assert_string_equal(a.schedule.name, "cosine");
            assert_int_equal(a.schedule.warmup_steps, 100);
            assert_int_equal(a.train.epochs, 8);
            assert_int_equal(a.train.eval_every, 0);
            assert_int_equal(a.train.log_every, 50);
        }
        graft_config_free(&a);
        graft_config_free(&b);
    }
    globfree(&g);
}

/* ---- ownership ---------------------------------------------------------------------- */

/* free releases everything (ASan's leak check at exit), zeroes the struct, and can be
 * called again or on NULL; loading twice replaces owned values without leaking. */
static void test_free_releases(void **state) {
    (void)state;
    graft_config c;
    assert_int_equal(load_text(&c, full_yaml), GRAFT_OK);
    assert_int_equal(graft_config_load(&c, "cfg.yaml"), GRAFT_OK); /* same keys again */
    write_text("base.yaml", "experiment: other\noptim:\n  groups: [{params: x}]\n");
    assert_int_equal(graft_config_load(&c, "base.yaml"), GRAFT_OK);
    assert_string_equal(c.experiment, "other");
    assert_string_equal(c.source, "base.yaml");
    assert_int_equal(c.optim.n_groups, 1);
    assert_int_equal(c.freeze.n_schedule, 2); /* from the first file */
    graft_config_free(&c);
    assert_null(c.experiment);
    assert_null(c.source);
    assert_int_equal(c.freeze.trainable.count, 0);
    graft_config_free(&c);
    graft_config_free(NULL);
}

/* A UTF-8 byte-order mark and Windows line ends are fine; so is a dotted key written
 * in the file (the same path an override would use). */
static void test_bom_crlf(void **state) {
    (void)state;
    graft_config c;
    assert_int_equal(load_text(&c, "\xef\xbb\xbf"
                                   "experiment: x\r\nmodel: {arch: mlp}\r\ndata:\r\n"
                                   "  train: d\r\noptim.lr: 0.5\r\ntrain: {epochs: 2}\r\n"),
                     GRAFT_OK);
    assert_string_equal(c.experiment, "x");
    assert_string_equal(c.data.train, "d");
    assert_true(c.optim.lr == 0.5);
    assert_int_equal(graft_config_validate(&c), GRAFT_OK);
    graft_config_free(&c);
}

/* A directory is not a config file: an I/O error naming it. */
static void test_load_directory(void **state) {
    (void)state;
    assert_int_equal(mkdir("adir", 0700), 0);
    graft_config c;
    graft_config_defaults(&c);
    assert_int_equal(graft_config_load(&c, "adir"), GRAFT_ERR_IO);
    assert_string_equal(graft_config_last_error(), "adir: cannot read: Is a directory");
    graft_config_free(&c);
    assert_int_equal(rmdir("adir"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_validate_cross_keys),
        cmocka_unit_test(test_print_roundtrip),
        cmocka_unit_test(test_print_escapes_controls),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_reference_table),
        cmocka_unit_test(test_readme_reference),
        cmocka_unit_test(test_repo_configs),
        cmocka_unit_test(test_free_releases),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_bom_crlf),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
