/* The one table of config keys (types, defaults, limits, the README's reference line)
 * and the lookups over it: finding a key or section, did-you-mean suggestions for an
 * unknown key, the sections that hold required keys. */
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

/* ---- the table ------------------------------------------------------------------------ */

#define CFG(field) offsetof(graft_config, field)

/* One entry per key, laid out to be read as a table. */
/* clang-format off */

/* optim.groups entries (graft_cfg_group). */
static const key_spec group_fields[] = {
    {.key = "params", .type = KEY_STRING, .offset = offsetof(graft_cfg_group, params),
     .flags = KEY_REQUIRED, .doc = "glob (fnmatch) over parameter names"},
    {.key = "lr_scale", .type = KEY_DOUBLE, .offset = offsetof(graft_cfg_group, lr_scale),
     .flags = KEY_MIN | KEY_F32, .min = 0, .def = "1.0",
     .doc = "multiplier on the scheduled learning rate"},
    {.key = "weight_decay", .type = KEY_DOUBLE, .offset = offsetof(graft_cfg_group, weight_decay),
     .flags = KEY_NULLABLE | KEY_MIN | KEY_F32, .min = 0, .def = "null",
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
     .choices = "mlp|resnet18|resnet34|resnet50|gpt2|bert|vit", .what = "architecture",
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
     .flags = KEY_MIN | KEY_MAX | KEY_MAX_EXCL | KEY_F32, .min = 0, .max = 1, .def = "0.0",
     .doc = "dropout probability (mlp: after each hidden layer; gpt2/bert/vit: the hidden and "
            "attention dropout of Hugging Face and torchvision)"},
    {.key = "model.small_stem", .type = KEY_BOOL, .offset = CFG(model.small_stem), .def = "false",
     .doc = "resnet: 3x3 stride-1 first convolution and no max-pool (28x28, 32x32 images)"},
    {.key = "model.width", .type = KEY_INT, .offset = CFG(model.width), .flags = KEY_MIN,
     .min = 1, .def = "64", .doc = "resnet: channels of the first stage (torchvision: 64)"},
    {.key = "model.n_layer", .type = KEY_INT, .offset = CFG(model.n_layer), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert/vit: transformer blocks; 0 = 12 (GPT-2 small, BERT-base, ViT-B/16)"},
    {.key = "model.n_head", .type = KEY_INT, .offset = CFG(model.n_head), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert/vit: attention heads; 0 = 12"},
    {.key = "model.n_embd", .type = KEY_INT, .offset = CFG(model.n_embd), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "gpt2/bert/vit: width; 0 = 768"},
    {.key = "model.n_positions", .type = KEY_INT, .offset = CFG(model.n_positions),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "gpt2/bert: longest sequence; 0 = 1024 (gpt2) or 512 (bert)"},
    {.key = "model.vocab_size", .type = KEY_INT, .offset = CFG(model.vocab_size),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "gpt2/bert: vocabulary; 0 = the dataset's; larger than the dataset's is fine, smaller "
            "an error"},
    {.key = "model.type_vocab_size", .type = KEY_INT, .offset = CFG(model.type_vocab_size),
     .flags = KEY_MIN, .min = 1, .def = "2", .doc = "bert: token types (segments)"},
    {.key = "model.mask_token_id", .type = KEY_INT, .offset = CFG(model.mask_token_id),
     .flags = KEY_MIN, .min = -1, .def = "-1",
     .doc = "bert masked-LM training: id of the mask token; -1 = the dataset tokenizer's "
            "[MASK] (bert-base-uncased: 103); bytes and gpt2 have none: set it"},
    {.key = "model.patch_size", .type = KEY_INT, .offset = CFG(model.patch_size),
     .flags = KEY_MIN, .min = 1, .def = "16",
     .doc = "vit: side of the square patches, dividing the image height and width"},
    {.key = "model.mlp_dim", .type = KEY_INT, .offset = CFG(model.mlp_dim), .flags = KEY_MIN,
     .min = 0, .def = "0", .doc = "vit: hidden width of the encoder MLPs; 0 = 4 x model.n_embd"},
    {.key = "model.head.num_classes", .type = KEY_INT, .offset = CFG(model.head_num_classes),
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "replace the classifier (resnet `fc`, bert `classifier`, vit `heads.head`, mlp `head`) by "
            "a fresh one "
            "with this many outputs; 0 = keep it, sized by the training set"},

    {.key = "model.lora.rank", .type = KEY_INT, .offset = CFG(model.lora.rank), .flags = KEY_MIN,
     .min = 1, .def = "8", .doc = "gpt2/bert/vit LoRA: rank r of the adapters"},
    {.key = "model.lora.alpha", .type = KEY_DOUBLE, .offset = CFG(model.lora.alpha),
     .flags = KEY_MIN | KEY_MIN_EXCL | KEY_F32, .min = 0, .def = "8.0",
     .doc = "LoRA: the adapters' output is scaled by alpha / rank (PEFT's lora_alpha)"},
    {.key = "model.lora.dropout", .type = KEY_DOUBLE, .offset = CFG(model.lora.dropout),
     .flags = KEY_MIN | KEY_MAX | KEY_MAX_EXCL | KEY_F32, .min = 0, .max = 1, .def = "0.0",
     .doc = "LoRA: dropout on an adapter's input while training"},
    {.key = "model.lora.targets", .type = KEY_STRLIST, .offset = CFG(model.lora.targets),
     .def = "[]", .default_doc = "none (no LoRA)",
     .doc = "globs (fnmatch) over the transformer blocks' linear-layer names "
            "(`transformer.h.*.attn.c_attn`, `bert.encoder.layer.*.attention.self.query`) that "
            "get adapters; the base weights are then frozen (freeze.trainable adds to what trains)"},
    {.key = "model.lora.init", .type = KEY_STRING, .offset = CFG(model.lora.init),
     .flags = KEY_NULLABLE, .def = "null", .default_doc = "none",
     .doc = "LoRA: a PEFT adapter directory (adapter_model.safetensors, adapter_config.json) to "
            "start the adapters from"},

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
    {.key = "data.cache_features", .type = KEY_ENUM, .offset = CFG(data.cache_features),
     .choices = "auto|on|off", .what = "feature cache mode", .def = "auto",
     .doc = "compute a frozen prefix's output once per sample and train the rest from it: auto "
            "when the prefix is a pure function of the sample and the run is longer than an "
            "epoch; on refuses to start when it cannot (README, Feature cache)"},
    {.key = "data.cache_max_gb", .type = KEY_DOUBLE, .offset = CFG(data.cache_max_gb),
     .flags = KEY_MIN, .min = 0, .def = "4",
     .doc = "feature cache held in memory up to this size (GiB); larger ones are a memory-mapped "
            "file in the run directory"},

    {.key = "optim.name", .type = KEY_ENUM, .offset = CFG(optim.name), .choices = "adamw|sgd",
     .what = "optimizer", .def = "adamw", .doc = "optimizer (torch semantics)"},
    {.key = "optim.lr", .type = KEY_DOUBLE, .offset = CFG(optim.lr),
     .flags = KEY_REQUIRED | KEY_TRAINING | KEY_MIN | KEY_MIN_EXCL | KEY_F32, .min = 0,
     .doc = "peak learning rate (after warmup)"},
    {.key = "optim.weight_decay", .type = KEY_DOUBLE, .offset = CFG(optim.weight_decay),
     .flags = KEY_NULLABLE | KEY_MIN | KEY_F32, .min = 0, .def = "null",
     .default_doc = "0.01 for adamw, 0 for sgd", .doc = "weight decay (decoupled for adamw)"},
    {.key = "optim.momentum", .type = KEY_DOUBLE, .offset = CFG(optim.momentum),
     .flags = KEY_MIN | KEY_F32, .min = 0, .def = "0.9", .doc = "sgd: momentum"},
    {.key = "optim.nesterov", .type = KEY_BOOL, .offset = CFG(optim.nesterov), .def = "false",
     .doc = "sgd: Nesterov momentum"},
    {.key = "optim.betas", .type = KEY_DOUBLE_PAIR, .offset = CFG(optim.beta1),
     .aux_offset = CFG(optim.beta2), .flags = KEY_MIN | KEY_MAX | KEY_MAX_EXCL | KEY_F32, .min = 0,
     .max = 1, .def = "[0.9, 0.999]", .doc = "adamw: decay rates of the moment estimates"},
    {.key = "optim.eps", .type = KEY_DOUBLE, .offset = CFG(optim.eps), .flags = KEY_MIN | KEY_F32,
     .min = 0, .def = "1.0e-8", .doc = "adamw: term added to the denominator"},
    {.key = "optim.grad_clip", .type = KEY_DOUBLE, .offset = CFG(optim.grad_clip),
     .flags = KEY_MIN | KEY_F32, .min = 0, .def = "1.0",
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
     .flags = KEY_MIN, .min = 0, .def = "0",
     .doc = "steps of linear warmup from 0 to optim.lr (a shorter run never finishes it: one "
            "warning)"},
    {.key = "schedule.min_lr", .type = KEY_DOUBLE, .offset = CFG(schedule.min_lr),
     .flags = KEY_MIN | KEY_F32, .min = 0, .def = "0.0",
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
    {.key = "train.on_nonfinite", .type = KEY_ENUM, .offset = CFG(train.on_nonfinite),
     .choices = "stop|skip", .what = "on_nonfinite mode", .def = "stop",
     .doc = "a step whose loss or gradient norm is NaN or infinite: stop the run (exit 1), "
            "or skip its update"},
    {.key = "train.max_nonfinite_steps", .type = KEY_LONG,
     .offset = CFG(train.max_nonfinite_steps), .flags = KEY_MIN, .min = 1, .def = "10",
     .doc = "with `skip`: non-finite steps in a row that are skipped; one more stops the run"},

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
    /* at most 1 TiB: the size in bytes must fit a size_t */
    {.key = "comm.bucket_mb", .type = KEY_DOUBLE, .offset = CFG(comm.bucket_mb),
     .flags = KEY_MIN | KEY_MIN_EXCL | KEY_MAX, .min = 0, .max = 1048576, .def = "25.0",
     .doc = "gradient bucket size in MB"},
    {.key = "comm.first_bucket_mb", .type = KEY_DOUBLE, .offset = CFG(comm.first_bucket_mb),
     .flags = KEY_MIN | KEY_MIN_EXCL | KEY_MAX, .min = 0, .max = 1048576, .def = "1.0",
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

/* ---- enums ---------------------------------------------------------------------------- */

/* "adamw, sgd" from "adamw|sgd". */
void cfg_enum_list(const key_spec *k, char *out, size_t size) {
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

/* ---- key lookup and suggestions -------------------------------------------------- */

const key_spec *cfg_find_key_n(const char *path, size_t len) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strlen(cfg_keys[i].key) == len && !strncmp(cfg_keys[i].key, path, len))
            return &cfg_keys[i];
    return NULL;
}

/* A section is a proper prefix of some key, ending at a dot ("" is the top level). */
int cfg_is_section_n(const char *path, size_t len) {
    if (len == 0) return 1;
    for (int i = 0; i < cfg_n_keys; i++)
        if (!strncmp(cfg_keys[i].key, path, len) && cfg_keys[i].key[len] == '.') return 1;
    return 0;
}

/* The table entry for a full dotted key, or NULL. */
const key_spec *cfg_find_key(const char *path) { return cfg_find_key_n(path, strlen(path)); }

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

/* The candidate closest to `typed`: edit distance <= 2, else the closest prefix match
 * (either way round); -1 when none qualifies. */
int cfg_best_match(const cfg_name_ref *cands, int n, const char *typed, size_t tlen) {
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
static int section_children(const char *path, size_t len, cfg_name_ref *out, int max) {
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++) {
        const char *k = cfg_keys[i].key;
        if (len) {
            if (strncmp(k, path, len) != 0 || k[len] != '.') continue;
            k += len + 1;
        }
        const char *dot = strchr(k, '.');
        size_t clen = dot ? (size_t)(dot - k) : strlen(k);
        int seen = 0;
        for (int j = 0; j < n; j++)
            if (out[j].len == clen && !strncmp(out[j].s, k, clen)) seen = 1;
        if (!seen && n < max) out[n++] = (cfg_name_ref){k, clen};
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
        if (more && cfg_is_section_n(full, end)) {
            pos = end + 1;
            continue;
        }
        cfg_name_ref kids[64];
        int n = section_children(full, pos ? pos - 1 : 0, kids, 64);
        int best = cfg_best_match(kids, n, full + pos, end - pos);
        if (best < 0) return;
        snprintf(out, size, "%.*s%.*s%s", (int)pos, full, (int)kids[best].len, kids[best].s,
                 more ? full + end : "");
        if (!cfg_find_key(out) && !cfg_is_section_n(out, strlen(out)))
            snprintf(out, size, "%.*s%.*s", (int)pos, full, (int)kids[best].len, kids[best].s);
        if (!strcmp(out, full)) out[0] = '\0';
        return;
    }
}

/* "KEY: unknown key (did you mean '...'?)". */
graft_status cfg_fail_unknown_key(const cfg_where *w, const cfg_node *at, const char *full) {
    char suggestion[CFG_MAX_PATH + 32];
    suggest_path(full, suggestion, sizeof suggestion);
    if (suggestion[0]) return cfg_fail(w, at, full, "unknown key (did you mean '%s'?)", suggestion);
    return cfg_fail(w, at, full, "unknown key");
}

/* "'experiment', 'model', 'data' and 'optim'": the sections holding required keys. */
void cfg_required_sections(char *out, size_t size) {
    cfg_name_ref seen[16];
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++) {
        if (!(cfg_keys[i].flags & KEY_REQUIRED)) continue;
        const char *k = cfg_keys[i].key, *dot = strchr(k, '.');
        size_t len = dot ? (size_t)(dot - k) : strlen(k);
        int dup = 0;
        for (int j = 0; j < n; j++)
            /* cppcheck-suppress uninitvar ; seen[j] for j < n was written below */
            if (seen[j].len == len && !strncmp(seen[j].s, k, len)) dup = 1;
        if (!dup && n < 16) seen[n++] = (cfg_name_ref){k, len};
    }
    size_t j = 0;
    out[0] = '\0';
    for (int i = 0; i < n && j < size; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? " and " : ", ");
        j += (size_t)snprintf(out + j, size - j, "%s'%.*s'", sep, (int)seen[i].len, seen[i].s);
    }
}
