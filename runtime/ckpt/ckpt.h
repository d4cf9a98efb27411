/* Checkpoints that survive preemption (DESIGN.md, Checkpoints).
 *
 *   DIR/step-00001200/
 *     model.safetensors   parameters + buffers by canonical name (F32, PyTorch-loadable);
 *                         with save_frozen "once", frozen parameters are left out and
 *                         state.json names the file that holds them (see below)
 *     optim.safetensors   optimizer state per trainable parameter ("exp_avg.<name>",
 *                         "exp_avg_sq.<name>" / "momentum_buffer.<name>"), no timestamps
 *     state.json          step, epoch, data cursor, per-rank RNG states, optimizer step,
 *                         lr, config digest, world size, graft version, frozen reference:
 *                         {"config_digest": "<16 hex>", "cursor": N, "epoch": N,
 *                          "frozen": null | {"bytes": N, "file": "frozen-<16 hex>.safetensors",
 *                                            "xxh64": "<16 hex>"},
 *                          "lr": X, "optimizer": null | {"kind": "adamw"|"sgd", "step": N},
 *                          "rng_states": ["<16 hex>", ...], "step": N, "version": "0.1.0",
 *                          "world_size": N}   (sorted keys, 2-space indent)
 *     config.yaml         the resolved config of the run (to say which keys changed)
 *     MANIFEST            "<xxh64 hex> <bytes> <file>" per file above (sorted by name),
 *                         written last
 *   DIR/latest            the name of the newest complete checkpoint ("step-00001200")
 *   DIR/frozen-<xxh64>.safetensors   (save_frozen once) the frozen parameters, written
 *                         by the first checkpoint and never pruned while referenced; named
 *                         after the xxh64 of the frozen parameters (names, shapes, values),
 *                         so a later save with unchanged frozen values reuses it (after
 *                         checking the file against the size and xxh64 recorded by a
 *                         checkpoint that references it). Buffers always stay in
 *                         model.safetensors. Unreferenced frozen files are removed.
 *
 * A checkpoint is written into "step-NNNNNNNN.tmp/", every file fsynced, the directory
 * renamed and the parent fsynced; then "latest" is replaced atomically (tmp + rename)
 * and keep_last prunes older complete checkpoints. Saving a step that already exists
 * (again after a resume) moves the old directory aside to step-N.old.tmp, renames the
 * new one in, and deletes the old one once "latest" is replaced. Leftover step-*.tmp
 * directories of a crashed save are removed by the next save. Identical state gives
 * identical bytes. A failed save leaves every earlier checkpoint and "latest" untouched.
 * Only rank 0 calls save; every rank calls load. */
#ifndef GRAFT_CKPT_H
#define GRAFT_CKPT_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "runtime/core/status.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params.h"
#include "runtime/optim/optim.h"

/* The training state besides the tensors. */
typedef struct graft_ckpt_state {
    long step;              /* optimizer steps done */
    long epoch;             /* epoch of the next batch */
    uint64_t cursor;        /* samples consumed (the loader's global cursor) */
    int world_size;         /* ranks that wrote it (resume may use another) */
    uint64_t *rng_states;   /* world_size entries (rank order), owned; may be NULL */
    double lr;              /* learning rate of the last step (for the record) */
    uint64_t config_digest; /* graft_config_digest of the run */
    long nonfinite_in_a_row; /* non-finite steps just before `step` (train.on_nonfinite:
                                skip); written only when > 0, absent reads as 0 */
    char version[32];       /* graft version that wrote it (filled by load; save always
                               writes this library's GRAFT_VERSION) */
} graft_ckpt_state;

typedef struct graft_ckpt_save_args {
    const char *dir;            /* checkpoint root (created if missing) */
    const graft_params *params; /* finalized table */
    const graft_optim *optim;   /* state saved per trainable parameter; may be NULL */
    const graft_ckpt_state *state;
    const char *config_yaml;    /* resolved config text, stored as config.yaml */
    int save_frozen_once;       /* 1: frozen parameters go to DIR/frozen-<hash>.safetensors once */
    int keep_last;              /* complete checkpoints to keep (>= 1): the new one and the
                                   keep_last-1 newest older ones; checkpoints of later steps
                                   (left by a run that resumed from an earlier one) are kept
                                   until the run saves their step again */
} graft_ckpt_save_args;

/* Write checkpoint step-<state->step> atomically, point "latest" at it, prune.
 * On error (disk full, permissions) logs one line naming the path and the errno text,
 * removes the partial .tmp directory (and a frozen file this save created) and returns
 * GRAFT_ERR_IO; nothing earlier is touched. GRAFT_ERR_INVALID_ARG (logged) for bad
 * arguments. *bytes_written (may be NULL) receives the bytes written (0 on failure). */
graft_status graft_ckpt_save(const graft_ckpt_save_args *a, uint64_t *bytes_written);

/* The checkpoint to resume from in DIR: the one "latest" names when it verifies, else
 * the newest step-* that verifies. Writes its path ("DIR/step-00000200") to out. Each
 * problem passed over is logged as one warning line, e.g.
 *   "DIR/step-00000300: model.safetensors checksum mismatch; resuming from step-00000200 instead"
 *   "DIR/latest names step-00000300, which does not exist; resuming from step-00000200 instead"
 *   "DIR/latest is missing; resuming from step-00000200 instead"
 *   "DIR/latest does not hold a checkpoint name (step-NNNNNNNN); resuming from ..."
 *   "DIR/latest is a link that leads out of DIR; resuming from ..."
 * "latest" must name a step directory of DIR itself; what it holds is never quoted (it
 * may be anything), and a step directory that is a link out of DIR is not used. A
 * "latest" that cannot be used is passed over like a damaged checkpoint: the newest
 * intact step directory is used instead, saying why.
 * GRAFT_ERR_NOT_FOUND (not logged) when DIR does not exist or holds neither a checkpoint
 * nor "latest" (a fresh run); GRAFT_ERR_FORMAT (logged) when there are checkpoints or a
 * "latest" but nothing intact. */
graft_status graft_ckpt_find_resume(const char *dir, char *out, size_t out_size);

/* Check MANIFEST: every listed file present with its size (all sizes first) and then
 * its xxh64, and state.json parses (its step matching the directory name), plus the
 * frozen file it references. One error line "CKPT_DIR: <what is wrong>" on failure, e.g.
 * "DIR/step-00000300: model.safetensors checksum mismatch", "...: optim.safetensors has
 * 100 bytes, MANIFEST says 2000", "...: no MANIFEST (the save did not finish)".
 * GRAFT_ERR_FORMAT (damaged), GRAFT_ERR_NOT_FOUND (no such directory), GRAFT_ERR_IO. */
graft_status graft_ckpt_verify(const char *ckpt_dir);

/* Verify every checkpoint under root DIR, printing "step-NNNNNNNN: ok" or what is wrong
 * per checkpoint (and a dangling or missing "latest") to out (may be NULL). GRAFT_OK when
 * all are intact; otherwise one error line summarising the damaged ones and the first
 * failure's status; GRAFT_ERR_NOT_FOUND (logged) when DIR holds no checkpoint. */
graft_status graft_ckpt_verify_root(const char *dir, FILE *out);

/* 1 when path is a checkpoint directory (holds MANIFEST or state.json, or is named
 * step-NNNNNNNN) rather than a checkpoint root; 0 otherwise. */
int graft_ckpt_is_checkpoint(const char *path);

/* Load a checkpoint into a finalized table with the same names and shapes (else
 * GRAFT_ERR_MISMATCH naming the checkpoint and the tensor, e.g. "DIR/step-00000300:
 * tensor 'fc.weight' has shape [3, 4] in the checkpoint, the model has [5, 4]"; a tensor
 * that is not F32 is GRAFT_ERR_FORMAT), the optimizer state and o->step (when optim is
 * not NULL: same kind and trainable set, else GRAFT_ERR_MISMATCH), and the state
 * (state may be NULL; *state is overwritten, so free an old one first; rng_states is
 * NULL when the checkpoint has none). *config_yaml (may be NULL) receives the stored
 * config text (malloc'd, caller frees). Verifies the manifest first. Nothing is
 * changed on failure (*config_yaml is set to NULL). */
graft_status graft_ckpt_load(const char *ckpt_dir, graft_params *params, graft_optim *optim,
                             graft_ckpt_state *state, char **config_yaml);
/* Free rng_states (and set it to NULL); safe on NULL and twice. */
void graft_ckpt_state_free(graft_ckpt_state *s);

/* Weights only, as one safetensors file loadable by PyTorch (frozen parameters
 * included, from the referenced frozen file when needed; metadata format=pt), written
 * atomically, in `dtype`: F32 (as stored), F16 or BF16 (rounded to nearest even;
 * BatchNorm's num_batches_tracked stays F32). A finite value that would become
 * infinite in F16/BF16 refuses the export (GRAFT_ERR_UNSUPPORTED, naming the tensor);
 * nothing is written then. Verifies the checkpoint first. */
graft_status graft_ckpt_export(const char *ckpt_dir, const char *out_file, graft_dtype dtype);
/* The same with a LoRA run's adapters merged: "<layer>.weight" += (alpha / rank) · B·A
 * (transposed for GPT-2's Conv1D), the lora_A / lora_B tensors left out, so the file
 * holds plain Hugging Face names. A checkpoint without adapters is GRAFT_ERR_MISMATCH.
 * model.safetensors records the scale and layout as metadata "lora_scale" and
 * "lora_fan_in_fan_out" when the model has adapters. */
graft_status graft_ckpt_export_merge_lora(const char *ckpt_dir, const char *out_file,
                                          graft_dtype dtype);

/* One line per checkpoint in DIR: name, bytes, "ok: step N, epoch E, cursor C" or
 * "DAMAGED: what is wrong", and "  <- latest" on the one "latest" names; then unfinished
 * saves (step-*.tmp), frozen files and a dangling "latest" (for `graft ckpt ls`).
 * Returns GRAFT_ERR_NOT_FOUND (logged) when there is no checkpoint. */
graft_status graft_ckpt_list(const char *dir, FILE *out);

#endif
