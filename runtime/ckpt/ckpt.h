/* Checkpoints that survive preemption (DESIGN.md, Checkpoints).
 *
 *   DIR/step-00001200/
 *     model.safetensors   parameters + buffers by canonical name (F32, PyTorch-loadable);
 *                         with save_frozen "once", frozen parameters are left out and
 *                         state.json names the file that holds them (see below)
 *     optim.safetensors   optimizer state per trainable parameter ("exp_avg.<name>",
 *                         "exp_avg_sq.<name>" / "momentum_buffer.<name>"), no timestamps
 *     state.json          step, epoch, data cursor, per-rank RNG states, optimizer step,
 *                         lr, config digest, world size, graft version, frozen reference
 *     config.yaml         the resolved config of the run (to say which keys changed)
 *     MANIFEST            "<xxh64 hex> <bytes> <file>" per file above, written last
 *   DIR/latest            the name of the newest complete checkpoint ("step-00001200")
 *   DIR/frozen-<xxh64>.safetensors   (save_frozen once) the frozen parameters, written
 *                         by the first checkpoint and never pruned while referenced
 *
 * A checkpoint is written into "step-NNNNNNNN.tmp/", every file fsynced, the directory
 * renamed and the parent fsynced; then "latest" is replaced atomically (tmp + rename)
 * and keep_last prunes older complete checkpoints. Identical state gives identical
 * bytes. A failed save leaves every earlier checkpoint and "latest" untouched.
 * Only rank 0 calls save; every rank calls load. */
#ifndef GRAFT_CKPT_H
#define GRAFT_CKPT_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "runtime/core/status.h"
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
    char version[32];       /* graft version that wrote it */
} graft_ckpt_state;

typedef struct graft_ckpt_save_args {
    const char *dir;            /* checkpoint root (created if missing) */
    const graft_params *params; /* finalized table */
    const graft_optim *optim;   /* state saved per trainable parameter; may be NULL */
    const graft_ckpt_state *state;
    const char *config_yaml;    /* resolved config text, stored as config.yaml */
    int save_frozen_once;       /* 1: frozen parameters go to DIR/frozen-<hash>.safetensors once */
    int keep_last;              /* complete checkpoints to keep (>= 1) */
} graft_ckpt_save_args;

/* Write checkpoint step-<state->step> atomically, point "latest" at it, prune.
 * On error (disk full, permissions) logs one line naming the path, removes the
 * partial .tmp directory and returns GRAFT_ERR_IO; nothing earlier is touched.
 * *bytes_written (may be NULL) receives the bytes written. */
graft_status graft_ckpt_save(const graft_ckpt_save_args *a, uint64_t *bytes_written);

/* The checkpoint to resume from in DIR: the one "latest" names when it verifies, else
 * (after logging what is wrong with it) the newest step-* that verifies. Writes its
 * path to out. GRAFT_ERR_NOT_FOUND when DIR holds no checkpoint at all (a fresh run);
 * GRAFT_ERR_FORMAT when there are checkpoints but none is intact. */
graft_status graft_ckpt_find_resume(const char *dir, char *out, size_t out_size);

/* Check MANIFEST: every listed file present with its size and xxh64, and state.json
 * parses (plus the frozen file it references). One line naming the file on failure. */
graft_status graft_ckpt_verify(const char *ckpt_dir);

/* Load a checkpoint into a finalized table with the same names and shapes (else
 * GRAFT_ERR_MISMATCH naming the tensor), the optimizer state (when optim is not NULL:
 * same kind and trainable set, else GRAFT_ERR_MISMATCH), and the state. *config_yaml
 * (may be NULL) receives the stored config text (malloc'd, caller frees).
 * Verifies the manifest first. Nothing is changed on failure. */
graft_status graft_ckpt_load(const char *ckpt_dir, graft_params *params, graft_optim *optim,
                             graft_ckpt_state *state, char **config_yaml);
void graft_ckpt_state_free(graft_ckpt_state *s);

/* Weights only, as one safetensors file loadable by PyTorch (frozen parameters
 * included, from the referenced frozen file when needed). */
graft_status graft_ckpt_export(const char *ckpt_dir, const char *out_file);

/* One line per checkpoint in DIR: name, step, bytes, "ok" / what is wrong, and which
 * one "latest" names (for `graft ckpt ls`). Returns GRAFT_ERR_NOT_FOUND when none. */
graft_status graft_ckpt_list(const char *dir, FILE *out);

#endif
