/* The experiment config: the one table of keys, and the loader, override, validator,
 * comparison and release that walk it. Printing, the digest and the README reference
 * (config_print.c) walk the same table; YAML parsing is in config_yaml.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

/* A config file larger than this is certainly not a config file. */
#define CFG_MAX_FILE_BYTES ((size_t)16 << 20)
/* Longest dotted key path handled (longer ones are unknown keys anyway). */
#define CFG_MAX_PATH 256

/* ---- the table ------------------------------------------------------------------------ */

#define CFG(field) offsetof(graft_config, field)

/* One entry per key, laid out to be read as a table. */
/* clang-format off */

/* optim.groups entries (graft_cfg_group). */
static const key_spec group_fields[] = {
    {.key = "params", .type = KEY_STRING, .offset = offsetof(graft_cfg_group, params),
     .flags = KEY_REQUIRED, .doc = "glob (fnmatch) over parameter names"},
    {.key = "lr_scale", .type = KEY_DOUBLE, .offset = offsetof(graft_cfg_group, lr_scale),
     .flags = KEY_MIN, .min = 0, .def = "1.0",
     .doc = "multiplier on the scheduled learning rate"},
    {.key = "weight_decay", .type = KEY_DOUBLE, .offset = offsetof(graft_cfg_group, weight_decay),
     .flags = KEY_NULLABLE | KEY_MIN, .min = 0, .def = "null",
     .default_doc = "`optim.weight_decay`", .doc = "weight decay of the group"},
};

/* freeze.schedule entries (graft_cfg_unfreeze). */
static const key_spec unfreeze_fields[] = {
    {.key = "at_step", .type = KEY_LONG, .offset = offsetof(graft_cfg_unfreeze, at_step),
     .flags = KEY_REQUIRED | KEY_MIN, .min = 0,
     .doc = "optimizer step at which the globs become trainable"},
    {.key = "trainable", .type = KEY_STRLIST, .offset = offsetof(graft_cfg_unfreeze, trainable),
     .flags = KEY_REQUIRED, .min_items = 1, .doc = "globs of the parameters to unfreeze"},
};

/* Every key, in the order of the struct (the printed config and the README follow
 * it). Sub-sections (data.augment.*) must stay contiguous. */
const key_spec cfg_keys[] = {
    {.key = "experiment", .type = KEY_STRING, .offset = CFG(experiment),
     .flags = KEY_REQUIRED | KEY_DIRNAME, .doc = "run name: outputs go to `runs/<experiment>/`"},
    {.key = "seed", .type = KEY_LONG, .offset = CFG(seed), .flags = KEY_MIN, .min = 0,
     .def = "0", .doc = "seed of initialisation, data order, augmentation and dropout"},

    {.key = "model.arch", .type = KEY_ENUM, .offset = CFG(model.arch), .flags = KEY_REQUIRED,
     .choices = "mlp|resnet18|resnet34|resnet50|gpt2|bert", .what = "architecture",
     .doc = "network to build"},
    {.key = "model.init", .type = KEY_STRING, .offset = CFG(model.init), .flags = KEY_NULLABLE,
     .def = "null", .default_doc = "none",
     .doc = "weights to start from: a safetensors file or a checkpoint directory"},
    {.key = "model.init_strict", .type = KEY_BOOL, .offset = CFG(model.init_strict),
     .def = "false", .doc = "fail when model.init lacks a parameter (otherwise warn)"},
    {.key = "model.hidden", .type = KEY_INTLIST, .offset = CFG(model.hidden),
     .aux_offset = CFG(model.n_hidden), .flags = KEY_MIN, .min = 1, .max_items = 8,
     .def = "[512, 256]", .doc = "MLP hidden layer sizes"},
    {.key = "model.dropout", .type = KEY_DOUBLE, .offset = CFG(model.dropout),
     .flags = KEY_MIN | KEY_MAX | KEY_MAX_EXCL, .min = 0, .max = 1, .def = "0.0",
     .doc = "dropout probability (mlp: after each hidden layer; gpt2/bert: Hugging Face's hidden "
            "and attention dropout)"},
    {.key = "model.small_stem", .type = KEY_BOOL, .offset = CFG(model.small_stem), .def = "false",
     .doc = "resnet: 3x3 stride-1 first convolution and no max-pool (28x28, 32x32 images)"},
    {.key = "model.width", .type = KEY_INT, .offset = CFG(model.width), .flags = KEY_MIN,
     .min = 1, .def = "64", .doc = "resnet: channels of the first stage (torchvision: 64)"},
    {.key = "model.n_layer", .type = KEY_INT, .offset = CFG(model.n_layer), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert: transformer blocks; 0 = 12 (GPT-2 small, BERT-base)"},
    {.key = "model.n_head", .type = KEY_INT, .offset = CFG(model.n_head), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert: attention heads; 0 = 12"},
    {.key = "model.n_embd", .type = KEY_INT, .offset = CFG(model.n_embd), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert: width; 0 = 768"},
    {.key = "model.n_positions", .type = KEY_INT, .offset = CFG(model.n_positions),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "gpt2/bert: longest sequence; 0 = 1024 (gpt2) or 512 (bert)"},
    {.key = "model.vocab_size", .type = KEY_INT, .offset = CFG(model.vocab_size),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "gpt2/bert: vocabulary; 0 = the dataset's (both given: they must agree)"},
    {.key = "model.type_vocab_size", .type = KEY_INT, .offset = CFG(model.type_vocab_size),
     .flags = KEY_MIN, .min = 1, .def = "2", .doc = "bert: token types (segments)"},
    {.key = "model.mask_token_id", .type = KEY_INT, .offset = CFG(model.mask_token_id),
     .flags = KEY_MIN, .min = 0, .def = "103",
     .doc = "bert masked-LM training: id of the mask token ([MASK] in BERT's vocabulary)"},
    {.key = "model.head.num_classes", .type = KEY_INT, .offset = CFG(model.head_num_classes),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "replace the classifier (resnet `fc`, bert `classifier`, mlp `head`) by a fresh one "
            "with this many outputs; 0 = keep it, sized by the training set"},

    {.key = "freeze.trainable", .type = KEY_STRLIST, .offset = CFG(freeze.trainable),
     .def = "[]", .doc = "globs of the parameters to train; everything else is frozen"},
    {.key = "freeze.frozen", .type = KEY_STRLIST, .offset = CFG(freeze.frozen), .def = "[]",
     .doc = "globs of the parameters to freeze; everything else trains"},
    {.key = "freeze.bn", .type = KEY_ENUM, .offset = CFG(freeze.bn), .choices = "eval|train",
     .what = "batchnorm mode", .def = "eval", .doc = "mode of frozen batchnorm layers"},
    {.key = "freeze.schedule", .type = KEY_MAPLIST, .offset = CFG(freeze.schedule),
     .aux_offset = CFG(freeze.n_schedule), .def = "[]", .fields = unfreeze_fields,
     .n_fields = 2, .elem_size = sizeof(graft_cfg_unfreeze),
     .doc = "gradual unfreezing: at step `at_step` the globs `trainable` start training"},

    {.key = "data.train", .type = KEY_STRING, .offset = CFG(data.train), .flags = KEY_REQUIRED,
     .doc = "training dataset directory"},
    {.key = "data.val", .type = KEY_STRING, .offset = CFG(data.val), .flags = KEY_NULLABLE,
     .def = "null", .default_doc = "none", .doc = "validation dataset directory"},
    {.key = "data.batch_size", .type = KEY_LONG, .offset = CFG(data.batch_size),
     .flags = KEY_MIN, .min = 1, .def = "128", .doc = "global batch size (all ranks together)"},
    {.key = "data.micro_batch", .type = KEY_LONG, .offset = CFG(data.micro_batch),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "samples per rank per forward pass; 0 = batch_size / ranks (no accumulation)"},
    {.key = "data.shuffle", .type = KEY_BOOL, .offset = CFG(data.shuffle), .def = "true",
     .doc = "visit the training set in a new random order every epoch"},
    {.key = "data.prefetch", .type = KEY_INT, .offset = CFG(data.prefetch), .flags = KEY_MIN,
     .min = 0, .def = "2", .doc = "batches prepared ahead by the loader thread; 0 = none"},
    {.key = "data.seq_len", .type = KEY_INT, .offset = CFG(data.seq_len), .flags = KEY_MIN,
     .min = 1, .def = "128", .doc = "token streams: tokens per training window (sequence datasets use their own "
            "length)"},
    {.key = "data.augment.crop_padding", .type = KEY_INT, .offset = CFG(data.augment_crop_padding),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "images: random crop after zero padding by this many pixels; 0 = off"},
    {.key = "data.augment.hflip", .type = KEY_BOOL, .offset = CFG(data.augment_hflip),
     .def = "false", .doc = "images: random horizontal flip"},
    {.key = "data.verify", .type = KEY_BOOL, .offset = CFG(data.verify), .def = "true",
     .doc = "check the shards' checksums at start"},

    {.key = "optim.name", .type = KEY_ENUM, .offset = CFG(optim.name), .choices = "adamw|sgd",
     .what = "optimizer", .def = "adamw", .doc = "optimizer (torch semantics)"},
    {.key = "optim.lr", .type = KEY_DOUBLE, .offset = CFG(optim.lr),
     .flags = KEY_REQUIRED | KEY_MIN | KEY_MIN_EXCL, .min = 0,
     .doc = "peak learning rate (after warmup)"},
    {.key = "optim.weight_decay", .type = KEY_DOUBLE, .offset = CFG(optim.weight_decay),
     .flags = KEY_NULLABLE | KEY_MIN, .min = 0, .def = "null",
     .default_doc = "0.01 for adamw, 0 for sgd", .doc = "weight decay (decoupled for adamw)"},
    {.key = "optim.momentum", .type = KEY_DOUBLE, .offset = CFG(optim.momentum),
     .flags = KEY_MIN, .min = 0, .def = "0.9", .doc = "sgd: momentum"},
    {.key = "optim.nesterov", .type = KEY_BOOL, .offset = CFG(optim.nesterov), .def = "false",
     .doc = "sgd: Nesterov momentum"},
    {.key = "optim.betas", .type = KEY_DOUBLE_PAIR, .offset = CFG(optim.beta1),
     .aux_offset = CFG(optim.beta2), .flags = KEY_MIN | KEY_MAX | KEY_MAX_EXCL, .min = 0,
     .max = 1, .def = "[0.9, 0.999]", .doc = "adamw: decay rates of the moment estimates"},
    {.key = "optim.eps", .type = KEY_DOUBLE, .offset = CFG(optim.eps), .flags = KEY_MIN,
     .min = 0, .def = "1.0e-8", .doc = "adamw: term added to the denominator"},
    {.key = "optim.grad_clip", .type = KEY_DOUBLE, .offset = CFG(optim.grad_clip),
     .flags = KEY_MIN, .min = 0, .def = "1.0",
     .doc = "clip the global gradient norm to this; 0 = off"},
    /* at most GRAFT_OPTIM_MAX_GROUPS - 1: the optimizer's group 0 is the default group */
    {.key = "optim.groups", .type = KEY_MAPLIST, .offset = CFG(optim.groups),
     .aux_offset = CFG(optim.n_groups), .max_items = 15, .def = "[]", .fields = group_fields,
     .n_fields = 3, .elem_size = sizeof(graft_cfg_group),
     .doc = "parameter groups with their own learning-rate scale and weight decay"},

    {.key = "schedule.name", .type = KEY_ENUM, .offset = CFG(schedule.name),
     .choices = "constant|cosine|linear", .what = "schedule", .def = "cosine",
     .doc = "learning-rate schedule after warmup"},
    {.key = "schedule.warmup_steps", .type = KEY_LONG, .offset = CFG(schedule.warmup_steps),
     .flags = KEY_MIN, .min = 0, .def = "0", .doc = "steps of linear warmup from 0 to optim.lr"},
    {.key = "schedule.min_lr", .type = KEY_DOUBLE, .offset = CFG(schedule.min_lr),
     .flags = KEY_MIN, .min = 0, .def = "0.0",
     .doc = "learning rate at the end of a cosine or linear decay"},

    {.key = "train.epochs", .type = KEY_LONG, .offset = CFG(train.epochs), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "passes over the training set (when train.max_steps is 0)"},
    {.key = "train.max_steps", .type = KEY_LONG, .offset = CFG(train.max_steps),
     .flags = KEY_MIN, .min = 0, .def = "0", .doc = "optimizer steps to run; 0 = from train.epochs"},
    {.key = "train.eval_every", .type = KEY_LONG, .offset = CFG(train.eval_every),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "evaluate every this many steps; 0 = only at the end"},
    {.key = "train.log_every", .type = KEY_LONG, .offset = CFG(train.log_every),
     .flags = KEY_MIN, .min = 1, .def = "10", .doc = "log metrics every this many steps"},

    {.key = "checkpoint.dir", .type = KEY_STRING, .offset = CFG(checkpoint.dir),
     .flags = KEY_NULLABLE, .def = "null", .default_doc = "`runs/<experiment>/checkpoints`",
     .doc = "checkpoint directory"},
    {.key = "checkpoint.every_steps", .type = KEY_LONG, .offset = CFG(checkpoint.every_steps),
     .flags = KEY_MIN, .min = 0, .def = "0", .doc = "save every this many steps; 0 = off"},
    {.key = "checkpoint.every_minutes", .type = KEY_DOUBLE, .offset = CFG(checkpoint.every_minutes),
     .flags = KEY_MIN, .min = 0, .def = "0.0", .doc = "save every this many minutes; 0 = off"},
    {.key = "checkpoint.keep_last", .type = KEY_INT, .offset = CFG(checkpoint.keep_last),
     .flags = KEY_MIN, .min = 1, .def = "3", .doc = "newest checkpoints kept on disk"},
    {.key = "checkpoint.save_frozen", .type = KEY_ENUM, .offset = CFG(checkpoint.save_frozen),
     .choices = "always|once", .what = "save_frozen mode", .def = "once",
     .doc = "write frozen parameters into every checkpoint, or only into the first"},
    {.key = "checkpoint.on_error", .type = KEY_ENUM, .offset = CFG(checkpoint.on_error),
     .choices = "continue|stop", .what = "on_error mode", .def = "continue",
     .doc = "when saving a checkpoint fails: log it and keep training, or stop"},
    {.key = "checkpoint.resume", .type = KEY_STRING, .offset = CFG(checkpoint.resume),
     .flags = KEY_NO_DIGEST, .def = "auto",
     .doc = "`auto` (from the latest checkpoint if any), `never`, or a checkpoint path"},
    {.key = "checkpoint.allow_config_change", .type = KEY_BOOL,
     .offset = CFG(checkpoint.allow_config_change), .flags = KEY_NO_DIGEST, .def = "false",
     .doc = "resume even when training keys differ from the checkpoint's config"},

    {.key = "comm.backend", .type = KEY_ENUM, .offset = CFG(comm.backend),
     .choices = "auto|local|mpi|nccl", .what = "backend", .def = "auto",
     .doc = "gradient all-reduce backend; auto = nccl with a GPU, else mpi under mpirun, "
            "else local"},
    {.key = "comm.bucket_mb", .type = KEY_DOUBLE, .offset = CFG(comm.bucket_mb),
     .flags = KEY_MIN | KEY_MIN_EXCL, .min = 0, .def = "25.0", .doc = "gradient bucket size in MB"},
    {.key = "comm.first_bucket_mb", .type = KEY_DOUBLE, .offset = CFG(comm.first_bucket_mb),
     .flags = KEY_MIN | KEY_MIN_EXCL, .min = 0, .def = "1.0",
     .doc = "size of the first bucket (the last layers) in MB"},
    {.key = "comm.overlap", .type = KEY_BOOL, .offset = CFG(comm.overlap), .def = "true",
     .doc = "all-reduce gradient buckets during backward (false: all after backward)"},
    {.key = "comm.timeout_s", .type = KEY_DOUBLE, .offset = CFG(comm.timeout_s),
     .flags = KEY_MIN | KEY_MIN_EXCL, .min = 0, .def = "300.0",
     .doc = "abort when a collective is stuck this many seconds"},

    {.key = "launch.np", .type = KEY_INT, .offset = CFG(launch.np),
     .flags = KEY_NO_DIGEST | KEY_MIN, .min = 1, .def = "1", .doc = "MPI ranks to start"},
    {.key = "launch.hosts", .type = KEY_STRLIST, .offset = CFG(launch.hosts),
     .flags = KEY_NO_DIGEST, .def = "[]", .doc = "hosts as `host:slots`; empty = this machine"},
    {.key = "launch.hostfile", .type = KEY_STRING, .offset = CFG(launch.hostfile),
     .flags = KEY_NO_DIGEST | KEY_NULLABLE, .def = "null", .default_doc = "none",
     .doc = "mpirun hostfile (instead of launch.hosts)"},
    {.key = "launch.threads_per_rank", .type = KEY_INT, .offset = CFG(launch.threads_per_rank),
     .flags = KEY_NO_DIGEST | KEY_MIN, .min = 0, .def = "0",
     .doc = "OpenBLAS threads per rank; 0 = cores per node / ranks per node"},
    {.key = "launch.env", .type = KEY_ENVMAP, .offset = CFG(launch.env),
     .flags = KEY_NO_DIGEST, .def = "{}", .doc = "environment variables exported to every rank"},
    {.key = "launch.mpirun_args", .type = KEY_STRLIST, .offset = CFG(launch.mpirun_args),
     .flags = KEY_NO_DIGEST, .def = "[]", .doc = "extra arguments passed to mpirun"},
    {.key = "launch.requeue_exit", .type = KEY_BOOL, .offset = CFG(launch.requeue_exit),
     .flags = KEY_NO_DIGEST, .def = "false",
     .doc = "on preemption (exit 75) exit too, for the scheduler to requeue, instead of restarting"},
    {.key = "launch.max_restarts", .type = KEY_INT, .offset = CFG(launch.max_restarts),
     .flags = KEY_NO_DIGEST | KEY_MIN, .min = 0, .def = "0",
     .doc = "restarts from the latest checkpoint after a failed run"},
};
/* clang-format on */
const int cfg_n_keys = (int)(sizeof cfg_keys / sizeof cfg_keys[0]);

/* ---- errors ---------------------------------------------------------------------------- */

static _Thread_local char last_error[1024];

/* The message kept by the last failing call on this thread. */
const char *graft_config_last_error(void) { return last_error; }

/* Public calls start with no error. */
void cfg_clear_error(void) { last_error[0] = '\0'; }

/* A message with no "where" prefix of its own (I/O errors name the file themselves). */
void cfg_set_error(const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    graft_log(GRAFT_LOG_ERROR, func, "%s", last_error);
}

/* The message body after the location: "[KEY: ]message". */
static graft_status vfail(const cfg_where *w, unsigned long line, unsigned long col,
                          const char *key, const char *fmt, va_list ap) {
    char where[320];
    if (w->file && line)
        snprintf(where, sizeof where, "%.280s:%lu:%lu", w->file, line, col);
    else if (w->file)
        snprintf(where, sizeof where, "%.280s", w->file);
    else if (w->override)
        snprintf(where, sizeof where, "override '%.200s'", w->override);
    else
        snprintf(where, sizeof where, "config");
    int n;
    if (key)
        n = snprintf(last_error, sizeof last_error, "%s: %.300s: ", where, key);
    else
        n = snprintf(last_error, sizeof last_error, "%s: ", where);
    if (n > 0 && (size_t)n < sizeof last_error)
        vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
    graft_log(GRAFT_LOG_ERROR, w->func, "%s", last_error);
    return GRAFT_ERR_CONFIG;
}

/* Report at an explicit line:column (0 = none). */
graft_status cfg_fail_at(const cfg_where *w, unsigned long line, unsigned long col, const char *key,
                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    graft_status s = vfail(w, line, col, key, fmt, ap);
    va_end(ap);
    return s;
}

/* Report at a node's line:column. */
graft_status cfg_fail(const cfg_where *w, const cfg_node *at, const char *key, const char *fmt,
                      ...) {
    va_list ap;
    va_start(ap, fmt);
    graft_status s = vfail(w, at ? at->line : 0, at ? at->col : 0, key, fmt, ap);
    va_end(ap);
    return s;
}

/* Out of memory is not the user's fault: its own status. */
static graft_status fail_nomem(const cfg_where *w) {
    cfg_fail(w, NULL, NULL, "out of memory");
    return GRAFT_ERR_NOMEM;
}

/* ---- node helpers ------------------------------------------------------------------- */

/* YAML's null: an empty plain value, ~ or null. */
static int is_null(const cfg_node *v) {
    if (v->kind != CFG_SCALAR || !v->plain) return 0;
    const char *t = v->text;
    return !t[0] || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
           !strcmp(t, "NULL");
}

/* What a node is, for "found ..." in messages. */
static const char *describe(const cfg_node *v, char *out, size_t size) {
    if (v->kind == CFG_MAP) return "a mapping";
    if (v->kind == CFG_SEQ) return "a list";
    if (v->plain && !v->text[0]) return "an empty value";
    if (is_null(v)) return "null";
    size_t len = strlen(v->text);
    const char *more = len > 48 ? "..." : "";
    if (v->plain)
        snprintf(out, size, "'%.48s%s'", v->text, more);
    else
        snprintf(out, size, "a quoted string '%.48s%s'", v->text, more);
    return out;
}

/* "KEY: expected X, found Y" for a value of the wrong type. */
static graft_status fail_expected(const cfg_where *w, const char *path, const cfg_node *v,
                                  const char *expected) {
    char buf[96];
    return cfg_fail(w, v, path, "expected %s, found %s", expected, describe(v, buf, sizeof buf));
}

/* ---- numbers -------------------------------------------------------------------------- */

/* Decimal integer with an optional sign: 1 ok, 0 not an integer, -1 out of range. */
static int parse_integer_text(const char *t, long long *out) {
    const char *p = t;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p) return 0;
    errno = 0;
    long long x = strtoll(t, NULL, 10);
    if (errno == ERANGE) return -1;
    *out = x;
    return 1;
}

/* A decimal number: [+-] digits [. digits] [e [+-] digits], or .5, or 5.; 1 ok, 0 not
 * a number, -1 not finite in a double (1e999). No inf, nan, hex or underscores. */
static int parse_number_text(const char *t, double *out) {
    const char *p = t;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p) return 0;
    double x = strtod(t, NULL);
    if (!isfinite(x)) return -1;
    *out = x;
    return 1;
}

/* A limit or value as text: integers without a fraction, others in shortest form. */
static void number_text(double x, char *out, size_t size) {
    if (x == floor(x) && fabs(x) < 1e15)
        snprintf(out, size, "%.0f", x);
    else
        cfg_double_text(x, out, size);
}

/* A key's limits as text, for messages and the reference. */
void cfg_range_text(const key_spec *k, char *out, size_t size) {
    char lo[40], hi[40];
    number_text(k->min, lo, sizeof lo);
    number_text(k->max, hi, sizeof hi);
    int has_min = (k->flags & KEY_MIN) != 0, has_max = (k->flags & KEY_MAX) != 0;
    if (has_min && has_max)
        snprintf(out, size, "in %c%s, %s%c", (k->flags & KEY_MIN_EXCL) ? '(' : '[', lo, hi,
                 (k->flags & KEY_MAX_EXCL) ? ')' : ']');
    else if (has_min)
        snprintf(out, size, "%s %s", (k->flags & KEY_MIN_EXCL) ? ">" : ">=", lo);
    else if (has_max)
        snprintf(out, size, "%s %s", (k->flags & KEY_MAX_EXCL) ? "<" : "<=", hi);
    else
        out[0] = '\0';
}

/* Whether x is within the key's limits (NaN never is). */
static int in_range(const key_spec *k, double x) {
    if (isnan(x)) return 0;
    if (k->flags & KEY_MIN) {
        if ((k->flags & KEY_MIN_EXCL) ? !(x > k->min) : !(x >= k->min)) return 0;
    }
    if (k->flags & KEY_MAX) {
        if ((k->flags & KEY_MAX_EXCL) ? !(x < k->max) : !(x <= k->max)) return 0;
    }
    return 1;
}

/* "KEY: must be >= 1, found -4". */
static graft_status fail_range(const cfg_where *w, const cfg_node *at, const key_spec *k,
                               const char *path, const char *found) {
    char range[96];
    cfg_range_text(k, range, sizeof range);
    return cfg_fail(w, at, path, "must be %s, found %s", range, found);
}

/* Integer value of node v for key k (its limits; `is_int`: must fit an int). */
static graft_status read_integer(const cfg_where *w, const key_spec *k, const char *path,
                                 const cfg_node *v, int is_int, long long *out) {
    if (v->kind != CFG_SCALAR || !v->plain || is_null(v))
        return fail_expected(w, path, v, "an integer");
    long long x = 0;
    int r = parse_integer_text(v->text, &x);
    if (r == 0) return fail_expected(w, path, v, "an integer");
    long long lo = is_int ? INT_MIN : LONG_MIN, hi = is_int ? INT_MAX : LONG_MAX;
    if (r < 0 || x < lo || x > hi) { /* beyond the C type: name the limit that was crossed */
        int negative = v->text[0] == '-';
        if ((negative && (k->flags & KEY_MIN)) || (!negative && (k->flags & KEY_MAX)))
            return fail_range(w, v, k, path, v->text);
        if (negative) return cfg_fail(w, v, path, "must be >= %lld, found %.40s", lo, v->text);
        return cfg_fail(w, v, path, "must be <= %lld, found %.40s", hi, v->text);
    }
    if (!in_range(k, (double)x)) return fail_range(w, v, k, path, v->text);
    *out = x;
    return GRAFT_OK;
}

/* Number (integer or decimal) value of node v for key k. */
static graft_status read_number(const cfg_where *w, const key_spec *k, const char *path,
                                const cfg_node *v, double *out) {
    if (v->kind != CFG_SCALAR || !v->plain || is_null(v))
        return fail_expected(w, path, v, "a number");
    double x = 0;
    int r = parse_number_text(v->text, &x);
    if (r == 0) return fail_expected(w, path, v, "a number");
    if (r < 0) return cfg_fail(w, v, path, "number out of range, found %.40s", v->text);
    if (!in_range(k, x)) return fail_range(w, v, k, path, v->text);
    *out = x;
    return GRAFT_OK;
}

/* ---- strings ------------------------------------------------------------------------ */

static int is_dirname(const char *s) {
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return 0;
    return 1;
}

/* [A-Za-z_][A-Za-z0-9_]*: a name a shell can export. */
static int is_env_name(const char *s, size_t len) {
    if (!len || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* Whether s is one of the enum's names (exact, case-sensitive). */
static int enum_has(const key_spec *k, const char *s) {
    size_t len = strlen(s);
    for (const char *c = k->choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == len && !strncmp(c, s, n)) return 1;
        c += n + (bar ? 1 : 0);
    }
    return 0;
}

/* "adamw, sgd" from "adamw|sgd". */
static void enum_list(const key_spec *k, char *out, size_t size) {
    size_t j = 0;
    for (const char *c = k->choices; *c && j + 3 < size; c++) {
        if (*c == '|') {
            out[j++] = ',';
            out[j++] = ' ';
        } else {
            out[j++] = *c;
        }
    }
    out[j] = '\0';
}

/* Problems of a string value that do not depend on where it came from (NULL if none). */
static const char *string_problem(const key_spec *k, const char *s, char *buf, size_t size) {
    if (!s[0]) return "must not be empty";
    if (k->type == KEY_ENUM && !enum_has(k, s)) {
        char list[128];
        enum_list(k, list, sizeof list);
        snprintf(buf, size, "unknown %s '%.48s%s' (expected one of: %s)", k->what, s,
                 strlen(s) > 48 ? "..." : "", list);
        return buf;
    }
    if ((k->flags & KEY_DIRNAME) && !is_dirname(s)) {
        if (!strcmp(s, ".") || !strcmp(s, ".."))
            snprintf(buf, size, "must not be '%s' (it names a directory)", s);
        else
            snprintf(buf, size, "must match [A-Za-z0-9._-]+ (it names a directory), found '%.48s'",
                     s);
        return buf;
    }
    return NULL;
}

/* Owned copy of the string in node v for key k; NULL for null on a nullable key. */
static graft_status read_string(const cfg_where *w, const key_spec *k, const char *path,
                                const cfg_node *v, char **out) {
    *out = NULL;
    if ((k->flags & KEY_NULLABLE) && is_null(v)) return GRAFT_OK;
    if (v->kind != CFG_SCALAR || is_null(v)) return fail_expected(w, path, v, "a string");
    char buf[256];
    const char *problem = string_problem(k, v->text, buf, sizeof buf);
    if (problem) return cfg_fail(w, v, path, "%s", problem);
    *out = strdup(v->text);
    if (!*out) return fail_nomem(w);
    return GRAFT_OK;
}

/* Release a list of strings and leave it empty. */
static void strlist_free(graft_strlist *l) {
    for (int i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* ---- key lookup and suggestions -------------------------------------------------- */

static const key_spec *find_key_n(const char *path, size_t len) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strlen(cfg_keys[i].key) == len && !strncmp(cfg_keys[i].key, path, len))
            return &cfg_keys[i];
    return NULL;
}

/* A section is a proper prefix of some key, ending at a dot ("" is the top level). */
static int is_section_n(const char *path, size_t len) {
    if (len == 0) return 1;
    for (int i = 0; i < cfg_n_keys; i++)
        if (!strncmp(cfg_keys[i].key, path, len) && cfg_keys[i].key[len] == '.') return 1;
    return 0;
}

/* The table entry for a full dotted key, or NULL. */
static const key_spec *find_key(const char *path) { return find_key_n(path, strlen(path)); }

/* Edit distance between two names, ignoring case (large when either is long). */
static size_t edit_distance(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen > 63 || blen > 63) return 1000;
    size_t row[64];
    for (size_t j = 0; j <= blen; j++)
        row[j] = j;
    for (size_t i = 1; i <= alen; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t up = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag + (same ? 0 : 1);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[blen];
}

/* a (at least 2 characters) starts b, ignoring case. */
static int prefix_of(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen > blen || alen < 2) return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

typedef struct name_ref {
    const char *s;
    size_t len;
} name_ref;

/* The candidate closest to `typed`: edit distance <= 2, else the closest prefix match
 * (either way round); -1 when none qualifies. */
static int best_match(const name_ref *cands, int n, const char *typed, size_t tlen) {
    int best = -1;
    size_t best_d = 3;
    for (int i = 0; i < n; i++) {
        size_t d = edit_distance(typed, tlen, cands[i].s, cands[i].len);
        if (d < best_d) best_d = d, best = i;
    }
    if (best >= 0) return best;
    size_t best_diff = (size_t)-1;
    for (int i = 0; i < n; i++) {
        if (prefix_of(typed, tlen, cands[i].s, cands[i].len) ||
            prefix_of(cands[i].s, cands[i].len, typed, tlen)) {
            size_t diff = tlen > cands[i].len ? tlen - cands[i].len : cands[i].len - tlen;
            if (diff < best_diff) best_diff = diff, best = i;
        }
    }
    return best;
}

/* The names directly under a section (path[0..len), "" = top level), in table order. */
static int section_children(const char *path, size_t len, name_ref *out, int max) {
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++) {
        const char *k = cfg_keys[i].key;
        if (len) {
            if (strncmp(k, path, len) || k[len] != '.') continue;
            k += len + 1;
        }
        const char *dot = strchr(k, '.');
        size_t clen = dot ? (size_t)(dot - k) : strlen(k);
        int seen = 0;
        for (int j = 0; j < n; j++)
            if (out[j].len == clen && !strncmp(out[j].s, k, clen)) seen = 1;
        if (!seen && n < max) out[n++] = (name_ref){k, clen};
    }
    return n;
}

/* Did-you-mean for an unknown dotted path: the first component that does not exist
 * is compared with its siblings; the rest of the path is kept when that still names
 * a key or section. out = "" when nothing is close. */
static void suggest_path(const char *full, char *out, size_t size) {
    out[0] = '\0';
    size_t pos = 0, len = strlen(full);
    for (;;) {
        const char *dot = strchr(full + pos, '.');
        size_t end = dot ? (size_t)(dot - full) : len;
        int more = dot != NULL;
        if (more && is_section_n(full, end)) {
            pos = end + 1;
            continue;
        }
        name_ref kids[64];
        int n = section_children(full, pos ? pos - 1 : 0, kids, 64);
        int best = best_match(kids, n, full + pos, end - pos);
        if (best < 0) return;
        snprintf(out, size, "%.*s%.*s%s", (int)pos, full, (int)kids[best].len, kids[best].s,
                 more ? full + end : "");
        if (!find_key(out) && !is_section_n(out, strlen(out)))
            snprintf(out, size, "%.*s%.*s", (int)pos, full, (int)kids[best].len, kids[best].s);
        if (!strcmp(out, full)) out[0] = '\0';
        return;
    }
}

/* "KEY: unknown key (did you mean '...'?)". */
static graft_status fail_unknown_key(const cfg_where *w, const cfg_node *at, const char *full) {
    char suggestion[CFG_MAX_PATH + 32];
    suggest_path(full, suggestion, sizeof suggestion);
    if (suggestion[0]) return cfg_fail(w, at, full, "unknown key (did you mean '%s'?)", suggestion);
    return cfg_fail(w, at, full, "unknown key");
}

/* Mapping keys must be scalars; a key repeated in the same mapping is an error. */
static graft_status check_map_key(const cfg_where *w, const cfg_node *map, size_t i,
                                  const char *path_for_dup) {
    const cfg_node *kn = map->kids[i];
    char buf[96];
    if (kn->kind != CFG_SCALAR || !kn->text[0])
        return cfg_fail(w, kn, NULL, "expected a key name, found %s",
                        describe(kn, buf, sizeof buf));
    for (size_t j = 0; j < i; j += 2) {
        if (!strcmp(map->kids[j]->text, kn->text)) {
            if (w->file)
                return cfg_fail(w, kn, path_for_dup, "duplicate key (first at line %lu)",
                                map->kids[j]->line);
            return cfg_fail(w, kn, path_for_dup, "duplicate key");
        }
    }
    return GRAFT_OK;
}

/* ---- applying values ------------------------------------------------------------------ */

static graft_status apply_value(const cfg_where *w, const key_spec *k, const char *path, void *base,
                                const cfg_node *v);

static void free_value(const key_spec *k, void *base);

/* Release n entries of a list of mappings and the array itself. */
static void free_entries(const key_spec *k, char *items, int n) {
    for (int i = 0; i < n; i++)
        for (int f = 0; f < k->n_fields; f++)
            free_value(&k->fields[f], items + (size_t)i * k->elem_size);
    free(items);
}

/* Release what a key owns at `base` and reset it to empty. */
static void free_value(const key_spec *k, void *base) {
    char *field = (char *)base + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_ENUM:
        free(*(char **)field);
        *(char **)field = NULL;
        break;
    case KEY_STRLIST:
    case KEY_ENVMAP:
        strlist_free((graft_strlist *)field);
        break;
    case KEY_MAPLIST: {
        int *count = (int *)((char *)base + k->aux_offset);
        free_entries(k, *(char **)field, *count);
        *(char **)field = NULL;
        *count = 0;
        break;
    }
    default:
        break;
    }
}

/* Set a key to its default from the table (a YAML literal parsed like any value). */
static void apply_default(const key_spec *k, void *base) {
    cfg_where w = {"graft_config_defaults", NULL, k->key};
    cfg_node *v = NULL;
    graft_status s = cfg_parse_yaml(&w, k->def, strlen(k->def), &v);
    if (s == GRAFT_OK) s = apply_value(&w, k, k->key, base, v);
    cfg_node_free(v);
    GRAFT_ASSERT(s == GRAFT_OK); /* the table's defaults are checked by the tests */
}

/* A list of non-empty strings; replaces the old list only when every item is valid. */
static graft_status apply_strlist(const cfg_where *w, const key_spec *k, const char *path,
                                  graft_strlist *dst, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of strings");
    if (v->n_kids < (size_t)k->min_items)
        return cfg_fail(w, v, path, "must have at least %d entr%s, found %zu", k->min_items,
                        k->min_items == 1 ? "y" : "ies", v->n_kids);
    if (k->max_items && v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    graft_strlist list = {NULL, 0};
    if (v->n_kids) {
        list.items = calloc(v->n_kids, sizeof *list.items);
        if (!list.items) return fail_nomem(w);
    }
    for (size_t i = 0; i < v->n_kids; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%zu]", path, i);
        key_spec item = *k;
        item.type = KEY_STRING;
        item.flags &= ~KEY_NULLABLE;
        graft_status s = read_string(w, &item, item_path, v->kids[i], &list.items[i]);
        if (s != GRAFT_OK) {
            strlist_free(&list);
            return s;
        }
        list.count++;
    }
    strlist_free(dst);
    *dst = list;
    return GRAFT_OK;
}

/* A list of integers within the key's limits, at most max_items of them. */
static graft_status apply_intlist(const cfg_where *w, const key_spec *k, const char *path,
                                  void *base, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of integers");
    if (v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    int values[64];
    for (size_t i = 0; i < v->n_kids; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%zu]", path, i);
        long long x;
        GRAFT_TRY(read_integer(w, k, item_path, v->kids[i], 1, &x));
        values[i] = (int)x;
    }
    int *dst = (int *)((char *)base + k->offset);
    for (size_t i = 0; i < v->n_kids; i++)
        dst[i] = values[i];
    *(int *)((char *)base + k->aux_offset) = (int)v->n_kids;
    return GRAFT_OK;
}

/* Exactly two numbers ([beta1, beta2]), each within the key's limits. */
static graft_status apply_pair(const cfg_where *w, const key_spec *k, const char *path, void *base,
                               const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of 2 numbers");
    if (v->n_kids != 2)
        return cfg_fail(w, v, path, "expected a list of 2 numbers, found %zu entr%s", v->n_kids,
                        v->n_kids == 1 ? "y" : "ies");
    double x[2];
    for (int i = 0; i < 2; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
        GRAFT_TRY(read_number(w, k, item_path, v->kids[i], &x[i]));
    }
    *(double *)((char *)base + k->offset) = x[0];
    *(double *)((char *)base + k->aux_offset) = x[1];
    return GRAFT_OK;
}

/* {NAME: value, ...} stored as "NAME=value" strings, in file order. */
static graft_status apply_envmap(const cfg_where *w, const key_spec *k, const char *path,
                                 graft_strlist *dst, const cfg_node *v) {
    if (v->kind != CFG_MAP) return fail_expected(w, path, v, "a mapping of NAME: value");
    size_t n = v->n_kids / 2;
    graft_strlist list = {NULL, 0};
    if (n) {
        list.items = calloc(n, sizeof *list.items);
        if (!list.items) return fail_nomem(w);
    }
    graft_status s = GRAFT_OK;
    for (size_t i = 0; i < v->n_kids && s == GRAFT_OK; i += 2) {
        const cfg_node *kn = v->kids[i], *vn = v->kids[i + 1];
        char key_path[CFG_MAX_PATH + 128] = "";
        if (kn->kind == CFG_SCALAR) snprintf(key_path, sizeof key_path, "%s.%.64s", path, kn->text);
        s = check_map_key(w, v, i, key_path);
        if (s != GRAFT_OK) break;
        if (!is_env_name(kn->text, strlen(kn->text))) {
            s = cfg_fail(w, kn, path, "'%.64s' is not a valid environment variable name", kn->text);
            break;
        }
        if (vn->kind != CFG_SCALAR || (vn->plain && !vn->text[0])) {
            s = fail_expected(w, key_path, vn, "a string");
            break;
        }
        size_t len = strlen(kn->text) + 1 + strlen(vn->text) + 1;
        char *item = malloc(len);
        if (!item) {
            s = fail_nomem(w);
            break;
        }
        snprintf(item, len, "%s=%s", kn->text, vn->text);
        list.items[list.count++] = item;
    }
    (void)k;
    if (s != GRAFT_OK) {
        strlist_free(&list);
        return s;
    }
    strlist_free(dst);
    *dst = list;
    return GRAFT_OK;
}

/* One entry of a list of mappings: defaults, then the given keys, then required ones. */
static graft_status apply_entry(const cfg_where *w, const key_spec *k, const char *entry_path,
                                void *entry, const cfg_node *v) {
    if (v->kind != CFG_MAP) return fail_expected(w, entry_path, v, "a mapping");
    for (int f = 0; f < k->n_fields; f++)
        if (k->fields[f].def) apply_default(&k->fields[f], entry);
    int given[16] = {0};
    for (size_t i = 0; i < v->n_kids; i += 2) {
        const cfg_node *kn = v->kids[i];
        char key_path[CFG_MAX_PATH + 128] = "";
        if (kn->kind == CFG_SCALAR)
            snprintf(key_path, sizeof key_path, "%s.%.64s", entry_path, kn->text);
        GRAFT_TRY(check_map_key(w, v, i, key_path));
        int found = -1;
        name_ref names[16];
        for (int f = 0; f < k->n_fields; f++) {
            names[f] = (name_ref){k->fields[f].key, strlen(k->fields[f].key)};
            if (!strcmp(k->fields[f].key, kn->text)) found = f;
        }
        if (found < 0) {
            int best = best_match(names, k->n_fields, kn->text, strlen(kn->text));
            if (best >= 0)
                return cfg_fail(w, kn, key_path, "unknown key (did you mean '%s.%s'?)", entry_path,
                                k->fields[best].key);
            return cfg_fail(w, kn, key_path, "unknown key");
        }
        GRAFT_TRY(apply_value(w, &k->fields[found], key_path, entry, v->kids[i + 1]));
        given[found] = 1;
    }
    for (int f = 0; f < k->n_fields; f++)
        if ((k->fields[f].flags & KEY_REQUIRED) && !given[f])
            return cfg_fail(w, v, entry_path, "missing required key '%s'", k->fields[f].key);
    return GRAFT_OK;
}

/* A list of mappings (optim.groups, freeze.schedule): built aside, swapped in when
 * every entry is valid. */
static graft_status apply_maplist(const cfg_where *w, const key_spec *k, const char *path,
                                  void *base, const cfg_node *v) {
    if (v->kind != CFG_SEQ) return fail_expected(w, path, v, "a list of mappings");
    if (k->max_items && v->n_kids > (size_t)k->max_items)
        return cfg_fail(w, v, path, "must have at most %d entries, found %zu", k->max_items,
                        v->n_kids);
    size_t n = v->n_kids;
    char *items = NULL;
    if (n) {
        items = calloc(n, k->elem_size);
        if (!items) return fail_nomem(w);
    }
    graft_status s = GRAFT_OK;
    for (size_t i = 0; i < n && s == GRAFT_OK; i++) {
        char entry_path[CFG_MAX_PATH + 32];
        snprintf(entry_path, sizeof entry_path, "%s[%zu]", path, i);
        s = apply_entry(w, k, entry_path, items + i * k->elem_size, v->kids[i]);
    }
    if (s != GRAFT_OK) { /* entries not reached are still zeroed: safe to release */
        free_entries(k, items, (int)n);
        return s;
    }
    free_value(k, base);
    *(char **)((char *)base + k->offset) = items;
    *(int *)((char *)base + k->aux_offset) = (int)n;
    return GRAFT_OK;
}

/* Set key k (at `base`) from node v; `path` names it in errors. On error the old
 * value is kept. */
static graft_status apply_value(const cfg_where *w, const key_spec *k, const char *path, void *base,
                                const cfg_node *v) {
    char *field = (char *)base + k->offset;
    long long x;
    double d;
    switch (k->type) {
    case KEY_INT:
        GRAFT_TRY(read_integer(w, k, path, v, 1, &x));
        *(int *)field = (int)x;
        return GRAFT_OK;
    case KEY_LONG:
        GRAFT_TRY(read_integer(w, k, path, v, 0, &x));
        *(long *)field = (long)x;
        return GRAFT_OK;
    case KEY_DOUBLE:
        if ((k->flags & KEY_NULLABLE) && is_null(v)) {
            *(double *)field = -1.0;
            return GRAFT_OK;
        }
        GRAFT_TRY(read_number(w, k, path, v, &d));
        *(double *)field = d;
        return GRAFT_OK;
    case KEY_BOOL:
        if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->text, "true"))
            *(int *)field = 1;
        else if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->text, "false"))
            *(int *)field = 0;
        else
            return fail_expected(w, path, v, "true or false");
        return GRAFT_OK;
    case KEY_STRING:
    case KEY_ENUM: {
        char *s = NULL;
        GRAFT_TRY(read_string(w, k, path, v, &s));
        free(*(char **)field);
        *(char **)field = s;
        return GRAFT_OK;
    }
    case KEY_STRLIST:
        return apply_strlist(w, k, path, (graft_strlist *)field, v);
    case KEY_INTLIST:
        return apply_intlist(w, k, path, base, v);
    case KEY_DOUBLE_PAIR:
        return apply_pair(w, k, path, base, v);
    case KEY_ENVMAP:
        return apply_envmap(w, k, path, (graft_strlist *)field, v);
    case KEY_MAPLIST:
        return apply_maplist(w, k, path, base, v);
    }
    return GRAFT_ERR_INTERNAL;
}

/* Apply a mapping of keys under `section` ("" = the top level). */
static graft_status apply_mapping(const cfg_where *w, graft_config *cfg, const char *section,
                                  const cfg_node *map) {
    char buf[96];
    if (section[0] && is_null(map)) return GRAFT_OK; /* "data:" with nothing under it */
    if (map->kind != CFG_MAP) {
        if (!section[0])
            return cfg_fail(w, map, NULL,
                            "expected a mapping of settings at the top level, found %s",
                            describe(map, buf, sizeof buf));
        return fail_expected(w, section, map, "a mapping");
    }
    for (size_t i = 0; i < map->n_kids; i += 2) {
        const cfg_node *kn = map->kids[i], *vn = map->kids[i + 1];
        char full[CFG_MAX_PATH] = "";
        if (kn->kind == CFG_SCALAR)
            snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", kn->text);
        GRAFT_TRY(check_map_key(w, map, i, full));
        const key_spec *k = find_key(full);
        if (k)
            GRAFT_TRY(apply_value(w, k, full, cfg, vn));
        else if (is_section_n(full, strlen(full)))
            GRAFT_TRY(apply_mapping(w, cfg, full, vn));
        else
            return fail_unknown_key(w, kn, full);
    }
    return GRAFT_OK;
}

/* ---- public: defaults, load, override ----------------------------------------------- */

void graft_config_defaults(graft_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->source = strdup("");
    GRAFT_ASSERT(cfg->source != NULL);
    for (int i = 0; i < cfg_n_keys; i++)
        if (cfg_keys[i].def) apply_default(&cfg_keys[i], cfg);
}

/* "'experiment', 'model', 'data' and 'optim'": the sections holding required keys. */
static void required_sections(char *out, size_t size) {
    name_ref seen[16];
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++) {
        if (!(cfg_keys[i].flags & KEY_REQUIRED)) continue;
        const char *k = cfg_keys[i].key, *dot = strchr(k, '.');
        size_t len = dot ? (size_t)(dot - k) : strlen(k);
        int dup = 0;
        for (int j = 0; j < n; j++)
            if (seen[j].len == len && !strncmp(seen[j].s, k, len)) dup = 1;
        if (!dup && n < 16) seen[n++] = (name_ref){k, len};
    }
    size_t j = 0;
    out[0] = '\0';
    for (int i = 0; i < n && j < size; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? " and " : ", ");
        j += (size_t)snprintf(out + j, size - j, "%s'%.*s'", sep, (int)seen[i].len, seen[i].s);
    }
}

/* Whole file into a NUL-terminated buffer; errors name the file (GRAFT_ERR_IO). A file
 * of CFG_MAX_FILE_BYTES or more is refused. */
static graft_status read_file(const char *path, char **text, size_t *len) {
    const char *step;
    int err = graft_fs_read(path, CFG_MAX_FILE_BYTES - 1, text, len, &step);
    if (err == 0) return GRAFT_OK;
    if (err == EFBIG) {
        cfg_set_error("graft_config_load", "%s: file too large (a config file is at most %zu MiB)",
                      path, CFG_MAX_FILE_BYTES >> 20);
        return GRAFT_ERR_CONFIG;
    }
    if (err == ENOMEM) {
        cfg_set_error("graft_config_load", "%s: out of memory", path);
        return GRAFT_ERR_NOMEM;
    }
    cfg_set_error("graft_config_load", "%s: cannot %s: %s", path, step, graft_fs_strerror(err));
    return GRAFT_ERR_IO;
}

/* Read, parse, and apply the top-level mapping on top of the current values. */
graft_status graft_config_load(graft_config *cfg, const char *path) {
    cfg_clear_error();
    char *text = NULL;
    size_t len = 0;
    GRAFT_TRY(read_file(path, &text, &len));
    cfg_where w = {"graft_config_load", path, NULL};
    cfg_node *root = NULL;
    graft_status s = cfg_parse_yaml(&w, text, len, &root);
    if (s == GRAFT_OK && (!root || (root->kind == CFG_SCALAR && is_null(root)))) {
        int only_space = 1;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)text[i])) only_space = 0;
        char sections[160];
        required_sections(sections, sizeof sections);
        s = cfg_fail(&w, NULL, NULL, "%s (expected a mapping with at least %s)",
                     only_space ? "empty file" : "no settings, only comments", sections);
    }
    if (s == GRAFT_OK) s = apply_mapping(&w, cfg, "", root);
    if (s == GRAFT_OK) {
        char *source = strdup(path);
        if (!source) {
            s = fail_nomem(&w);
        } else {
            free(cfg->source);
            cfg->source = source;
        }
    }
    cfg_node_free(root);
    free(text);
    return s;
}

/* A dotted key: names of [A-Za-z0-9_] joined by single dots. */
static int is_key_path(const char *s, size_t len) {
    if (!len || s[0] == '.' || s[len - 1] == '.') return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.' && s[i + 1] == '.') return 0;
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.') return 0;
    }
    return 1;
}

/* Split KEY=VALUE, parse VALUE as YAML, and apply it like a file's value. */
graft_status graft_config_override(graft_config *cfg, const char *assignment) {
    cfg_clear_error();
    cfg_where w = {"graft_config_override", NULL, assignment ? assignment : ""};
    if (!assignment) {
        cfg_fail(&w, NULL, NULL, "expected KEY=VALUE (e.g. optim.lr=3e-4)");
        return GRAFT_ERR_INVALID_ARG;
    }
    const char *eq = strchr(assignment, '=');
    if (!eq) return cfg_fail(&w, NULL, NULL, "expected KEY=VALUE (e.g. optim.lr=3e-4)");
    const char *key = assignment, *key_end = eq;
    while (key < key_end && isspace((unsigned char)*key))
        key++;
    while (key_end > key && isspace((unsigned char)key_end[-1]))
        key_end--;
    size_t key_len = (size_t)(key_end - key);
    if (!key_len) return cfg_fail(&w, NULL, NULL, "missing key before '='");
    if (key_len >= CFG_MAX_PATH || !is_key_path(key, key_len))
        return cfg_fail(&w, NULL, NULL,
                        "'%.*s' is not a key (expected names joined by dots, e.g. optim.lr)",
                        (int)(key_len > 64 ? 64 : key_len), key);
    char path[CFG_MAX_PATH];
    memcpy(path, key, key_len);
    path[key_len] = '\0';
    const char *value = eq + 1;
    const key_spec *k = find_key(path);
    if (!k && !is_section_n(path, key_len)) return fail_unknown_key(&w, NULL, path);

    cfg_node *v = NULL;
    GRAFT_TRY(cfg_parse_yaml(&w, value, strlen(value), &v));
    if (!v) { /* "key=" or only a comment: an empty value */
        v = calloc(1, sizeof *v);
        if (v) v->text = strdup("");
        if (!v || !v->text) {
            cfg_node_free(v);
            return fail_nomem(&w);
        }
        v->kind = CFG_SCALAR;
        v->plain = 1;
    }
    graft_status s = k ? apply_value(&w, k, path, cfg, v) : apply_mapping(&w, cfg, path, v);
    cfg_node_free(v);
    return s;
}

/* ---- validate ------------------------------------------------------------------------- */

static graft_status check_stored(const cfg_where *w, const key_spec *k, const char *path,
                                 const void *base);

/* Range error for a value already in the struct (no position to name). */
static graft_status fail_stored_range(const cfg_where *w, const key_spec *k, const char *path,
                                      double x) {
    char found[40];
    number_text(x, found, sizeof found);
    return fail_range(w, NULL, k, path, found);
}

/* A stored string: set unless nullable, non-empty, a known enum name, a valid dir name. */
static graft_status check_stored_string(const cfg_where *w, const key_spec *k, const char *path,
                                        const char *s) {
    if (!s) {
        if (k->flags & (KEY_NULLABLE | KEY_REQUIRED)) return GRAFT_OK; /* required: see caller */
        return cfg_fail(w, NULL, path, "must be set");
    }
    char buf[256];
    const char *problem = string_problem(k, s, buf, sizeof buf);
    if (problem) return cfg_fail(w, NULL, path, "%s", problem);
    return GRAFT_OK;
}

/* A stored list of strings (or NAME=value entries): counts and items. */
static graft_status check_stored_list(const cfg_where *w, const key_spec *k, const char *path,
                                      const graft_strlist *l) {
    if (l->count < k->min_items)
        return cfg_fail(w, NULL, path, "must have at least %d entr%s, found %d", k->min_items,
                        k->min_items == 1 ? "y" : "ies", l->count);
    if (k->max_items && l->count > k->max_items)
        return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                        l->count);
    key_spec item = *k;
    item.type = KEY_STRING;
    item.flags &= ~(unsigned)(KEY_NULLABLE | KEY_REQUIRED);
    for (int i = 0; i < l->count; i++) {
        char item_path[CFG_MAX_PATH + 32];
        snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
        if (k->type == KEY_ENVMAP) {
            const char *s = l->items[i], *eq = s ? strchr(s, '=') : NULL;
            if (!eq || !is_env_name(s, (size_t)(eq - s)))
                return cfg_fail(w, NULL, item_path, "expected NAME=value, found '%.64s'",
                                s ? s : "(null)");
        } else {
            GRAFT_TRY(check_stored_string(w, &item, item_path, l->items[i]));
        }
    }
    return GRAFT_OK;
}

/* Re-check a stored value against the table (the struct may have been edited in code). */
static graft_status check_stored(const cfg_where *w, const key_spec *k, const char *path,
                                 const void *base) {
    const char *field = (const char *)base + k->offset;
    switch (k->type) {
    case KEY_INT: {
        int x = *(const int *)field;
        return in_range(k, x) ? GRAFT_OK : fail_stored_range(w, k, path, x);
    }
    case KEY_LONG: {
        long x = *(const long *)field;
        return in_range(k, (double)x) ? GRAFT_OK : fail_stored_range(w, k, path, (double)x);
    }
    case KEY_DOUBLE: {
        double x = *(const double *)field;
        if ((k->flags & KEY_NULLABLE) && x < 0) return GRAFT_OK; /* not given */
        if (!isfinite(x)) return cfg_fail(w, NULL, path, "must be a finite number");
        return in_range(k, x) ? GRAFT_OK : fail_stored_range(w, k, path, x);
    }
    case KEY_BOOL: {
        int x = *(const int *)field;
        if (x != 0 && x != 1) return cfg_fail(w, NULL, path, "must be true or false, found %d", x);
        return GRAFT_OK;
    }
    case KEY_STRING:
    case KEY_ENUM:
        return check_stored_string(w, k, path, *(char *const *)field);
    case KEY_STRLIST:
    case KEY_ENVMAP:
        return check_stored_list(w, k, path, (const graft_strlist *)field);
    case KEY_INTLIST: {
        int n = *(const int *)((const char *)base + k->aux_offset);
        if (n < 0 || n > k->max_items)
            return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                            n);
        for (int i = 0; i < n; i++) {
            int x = ((const int *)field)[i];
            if (!in_range(k, x)) {
                char item_path[CFG_MAX_PATH + 32];
                snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
                return fail_stored_range(w, k, item_path, x);
            }
        }
        return GRAFT_OK;
    }
    case KEY_DOUBLE_PAIR: {
        double x[2] = {*(const double *)field,
                       *(const double *)((const char *)base + k->aux_offset)};
        for (int i = 0; i < 2; i++) {
            if (!in_range(k, x[i])) {
                char item_path[CFG_MAX_PATH + 32];
                snprintf(item_path, sizeof item_path, "%s[%d]", path, i);
                return fail_stored_range(w, k, item_path, x[i]);
            }
        }
        return GRAFT_OK;
    }
    case KEY_MAPLIST: {
        const char *items = *(char *const *)field;
        int n = *(const int *)((const char *)base + k->aux_offset);
        if (n < 0 || (n > 0 && !items) || (k->max_items && n > k->max_items))
            return cfg_fail(w, NULL, path, "must have at most %d entries, found %d", k->max_items,
                            n);
        for (int i = 0; i < n; i++) {
            const char *entry = items + (size_t)i * k->elem_size;
            for (int f = 0; f < k->n_fields; f++) {
                const key_spec *fk = &k->fields[f];
                char field_path[CFG_MAX_PATH + 64];
                snprintf(field_path, sizeof field_path, "%s[%d].%s", path, i, fk->key);
                if (fk->type == KEY_STRING && (fk->flags & KEY_REQUIRED) &&
                    !*(char *const *)(entry + fk->offset)) {
                    snprintf(field_path, sizeof field_path, "%s[%d]", path, i);
                    return cfg_fail(w, NULL, field_path, "missing required key '%s'", fk->key);
                }
                GRAFT_TRY(check_stored(w, fk, field_path, entry));
            }
        }
        return GRAFT_OK;
    }
    }
    return GRAFT_ERR_INTERNAL;
}

/* Whether a required key has a value (numbers: non-zero, since 0 is out of range). */
static int is_given(const key_spec *k, const void *base) {
    const char *field = (const char *)base + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_ENUM:
        return *(char *const *)field != NULL;
    case KEY_DOUBLE:
        return *(const double *)field != 0.0;
    case KEY_INT:
    case KEY_BOOL:
        return *(const int *)field != 0;
    case KEY_LONG:
        return *(const long *)field != 0;
    default:
        return 1;
    }
}

/* Required keys first, then every key against the table, then rules across keys. */
graft_status graft_config_validate(const graft_config *cfg) {
    cfg_clear_error();
    cfg_where w = {"graft_config_validate", cfg->source && cfg->source[0] ? cfg->source : "config",
                   NULL};
    for (int i = 0; i < cfg_n_keys; i++)
        if ((cfg_keys[i].flags & KEY_REQUIRED) && !is_given(&cfg_keys[i], cfg))
            return cfg_fail(&w, NULL, NULL, "missing required key '%s'", cfg_keys[i].key);
    for (int i = 0; i < cfg_n_keys; i++)
        GRAFT_TRY(check_stored(&w, &cfg_keys[i], cfg_keys[i].key, cfg));

    char a[40], b[40];
    if (cfg->train.epochs == 0 && cfg->train.max_steps == 0)
        return cfg_fail(&w, NULL, "train", "set train.epochs or train.max_steps");
    if (cfg->data.micro_batch > cfg->data.batch_size)
        return cfg_fail(&w, NULL, "data.micro_batch", "must be <= data.batch_size (%ld), found %ld",
                        cfg->data.batch_size, cfg->data.micro_batch);
    if (cfg->freeze.trainable.count > 0 && cfg->freeze.frozen.count > 0)
        return cfg_fail(&w, NULL, "freeze", "give freeze.trainable or freeze.frozen, not both");
    for (int i = 1; i < cfg->freeze.n_schedule; i++) {
        long prev = cfg->freeze.schedule[i - 1].at_step, at = cfg->freeze.schedule[i].at_step;
        if (at <= prev) {
            char path[64];
            snprintf(path, sizeof path, "freeze.schedule[%d].at_step", i);
            return cfg_fail(&w, NULL, path,
                            "must be > freeze.schedule[%d].at_step (%ld), found %ld", i - 1, prev,
                            at);
        }
    }
    if (cfg->train.max_steps > 0 && cfg->schedule.warmup_steps >= cfg->train.max_steps)
        return cfg_fail(&w, NULL, "schedule.warmup_steps",
                        "must be < train.max_steps (%ld), found %ld", cfg->train.max_steps,
                        cfg->schedule.warmup_steps);
    if (cfg->schedule.min_lr > cfg->optim.lr) {
        number_text(cfg->optim.lr, a, sizeof a);
        number_text(cfg->schedule.min_lr, b, sizeof b);
        return cfg_fail(&w, NULL, "schedule.min_lr", "must be <= optim.lr (%s), found %s", a, b);
    }
    if (cfg->optim.nesterov && strcmp(cfg->optim.name, "sgd") != 0)
        return cfg_fail(&w, NULL, "optim.nesterov", "only applies to optim.name: sgd");
    if (cfg->optim.nesterov && !(cfg->optim.momentum > 0))
        return cfg_fail(&w, NULL, "optim.nesterov", "needs optim.momentum > 0");
    if (cfg->launch.hosts.count > 0 && cfg->launch.hostfile)
        return cfg_fail(&w, NULL, "launch", "give launch.hosts or launch.hostfile, not both");
    return GRAFT_OK;
}

/* ---- equality, release, helpers --------------------------------------------------- */

static int strs_equal(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Same strings in the same order. */
static int lists_equal(const graft_strlist *a, const graft_strlist *b) {
    if (a->count != b->count) return 0;
    for (int i = 0; i < a->count; i++)
        if (!strs_equal(a->items[i], b->items[i])) return 0;
    return 1;
}

/* Typed comparison of one key (doubles bit for bit). */
static int value_equal(const key_spec *k, const void *a_base, const void *b_base) {
    const char *a = (const char *)a_base + k->offset, *b = (const char *)b_base + k->offset;
    switch (k->type) {
    case KEY_INT:
    case KEY_BOOL:
        return *(const int *)a == *(const int *)b;
    case KEY_LONG:
        return *(const long *)a == *(const long *)b;
    case KEY_DOUBLE:
        return memcmp(a, b, sizeof(double)) == 0;
    case KEY_DOUBLE_PAIR:
        return memcmp(a, b, sizeof(double)) == 0 &&
               memcmp((const char *)a_base + k->aux_offset, (const char *)b_base + k->aux_offset,
                      sizeof(double)) == 0;
    case KEY_STRING:
    case KEY_ENUM:
        return strs_equal(*(char *const *)a, *(char *const *)b);
    case KEY_STRLIST:
    case KEY_ENVMAP:
        return lists_equal((const graft_strlist *)a, (const graft_strlist *)b);
    case KEY_INTLIST: {
        int na = *(const int *)((const char *)a_base + k->aux_offset);
        int nb = *(const int *)((const char *)b_base + k->aux_offset);
        return na == nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0;
    }
    case KEY_MAPLIST: {
        int na = *(const int *)((const char *)a_base + k->aux_offset);
        int nb = *(const int *)((const char *)b_base + k->aux_offset);
        if (na != nb) return 0;
        const char *ia = *(char *const *)a, *ib = *(char *const *)b;
        for (int i = 0; i < na; i++)
            for (int f = 0; f < k->n_fields; f++)
                if (!value_equal(&k->fields[f], ia + (size_t)i * k->elem_size,
                                 ib + (size_t)i * k->elem_size))
                    return 0;
        return 1;
    }
    }
    return 0;
}

/* Compare key by key in table order. */
int graft_config_equal(const graft_config *a, const graft_config *b, const char **first_diff) {
    if (first_diff) *first_diff = NULL;
    for (int i = 0; i < cfg_n_keys; i++) {
        if (!value_equal(&cfg_keys[i], a, b)) {
            if (first_diff) *first_diff = cfg_keys[i].key;
            return 0;
        }
    }
    return 1;
}

/* Keys that may change between a checkpoint and its resume without changing what is
 * trained: bookkeeping, communication and checkpointing itself. */
static int resume_may_change(const char *key) {
    static const char *const prefixes[] = {"experiment",       "checkpoint.",   "comm.",
                                           "launch.",          "model.init",    "train.log_every",
                                           "train.eval_every", "data.prefetch", "data.verify"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

int graft_config_resume_diff(const graft_config *saved, const graft_config *now, char *out,
                             size_t size) {
    int n = 0;
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < cfg_n_keys; i++) {
        if (resume_may_change(cfg_keys[i].key) || value_equal(&cfg_keys[i], saved, now)) continue;
        if (used < size)
            used +=
                (size_t)snprintf(out + used, size - used, "%s%s", n ? ", " : "", cfg_keys[i].key);
        n++;
    }
    return n;
}

/* Resolve "not given" to torch's default for the chosen optimizer. */
double graft_config_weight_decay(const graft_config *cfg) {
    if (cfg->optim.weight_decay >= 0) return cfg->optim.weight_decay;
    return cfg->optim.name && !strcmp(cfg->optim.name, "sgd") ? 0.0 : 0.01;
}

/* Release every owned value through the table, then the source name. */
void graft_config_free(graft_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg_n_keys; i++)
        free_value(&cfg_keys[i], cfg);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}
