/* Private to runtime/ckpt: checkpoint names and listing, the MANIFEST and state.json
 * formats, and the checkpoint check shared by save, verify, find_resume and load.
 * Plain file work (joining paths, reading, durable writes, fsync, digests) is
 * runtime/io/fs. */
#ifndef GRAFT_CKPT_INTERNAL_H
#define GRAFT_CKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"

#define CKPT_PATH_MAX GRAFT_FS_PATH_MAX
#define CKPT_NAME_MAX 64
/* model.safetensors metadata of a model with LoRA adapters (see graft_ckpt_export_merge_lora) */
#define CKPT_META_LORA_SCALE "lora_scale"
#define CKPT_META_LORA_FAN_IN_FAN_OUT "lora_fan_in_fan_out"
/* Room for what ckpt_read_latest says: a name, or a line naming root twice. */
#define CKPT_LATEST_MAX (2 * CKPT_PATH_MAX + 128)

/* The files of a checkpoint directory, in MANIFEST order (sorted by name). */
#define CKPT_N_FILES 4
extern const char *const ckpt_files[CKPT_N_FILES];

/* A complete checkpoint directory ("step-NNNNNNNN") found under a root. */
typedef struct ckpt_dir_entry {
    long step;
    char name[CKPT_NAME_MAX];
} ckpt_dir_entry;

/* The "frozen" object of state.json: the file (relative to the checkpoint root)
 * holding the frozen parameters, its size and its xxh64. */
typedef struct ckpt_frozen_ref {
    int present;
    char file[CKPT_NAME_MAX];
    uint64_t bytes;
    uint64_t xxh64;
} ckpt_frozen_ref;

/* Everything state.json says. */
typedef struct ckpt_info {
    graft_ckpt_state state; /* rng_states owned (ckpt_info_free) */
    int has_optim;
    graft_optim_kind optim_kind;
    int64_t optim_step;
    ckpt_frozen_ref frozen;
} ckpt_info;

/* 1 when name is a canonical checkpoint name "step-%08ld" (sets *step), else 0. */
int ckpt_parse_step_name(const char *name, long *step);
/* The complete checkpoints under root, ascending by step (*out malloc'd, may be NULL
 * when *n == 0). GRAFT_ERR_NOT_FOUND (not logged) when root does not exist; other
 * errors are logged at `level`, naming root.
 *
 * `level` here and below: how the function logs the problem it finds (one line naming
 * the directory): GRAFT_LOG_ERROR when it ends the call, GRAFT_LOG_QUIET to keep it for
 * graft_log_last_error without printing (a caller that reports it in its own words),
 * GRAFT_LOG_DEBUG for best-effort work that goes on without it. */
graft_status ckpt_scan(const char *root, ckpt_dir_entry **out, size_t *n, graft_log_level level);
/* What root/latest says: 1 and the checkpoint name ("step-NNNNNNNN", no slash, no
 * "..") in name when it holds one that stays inside root; 0 when the file is missing;
 * -1 when it is unusable, with a line saying why in name ("ROOT/latest: cannot read:
 * not a regular file", "ROOT/latest does not hold a checkpoint name (step-NNNNNNNN)",
 * "ROOT/latest is a link that leads out of ROOT", "ROOT/latest names step-N, a link
 * that leads out of ROOT"). What the file holds is never copied into that line. */
int ckpt_read_latest(const char *root, char *name, size_t size);
/* 1 when root/name is a symbolic link whose target (every link followed) is not inside
 * root, or leads nowhere; 0 for a plain entry or a link that stays inside. */
int ckpt_leads_out(const char *root, const char *name);

/* Remove path and, for a directory, everything under it (links are not followed).
 * GRAFT_OK when done or when path did not exist; else "PATH: cannot remove WHAT: <errno
 * text>" is logged at `level` (WHAT: "the replaced checkpoint") and GRAFT_ERR_IO
 * returned. */
graft_status ckpt_remove_tree(const char *path, graft_log_level level, const char *what);
/* state.json text (sorted keys, 2-space indent, trailing newline), malloc'd; NULL when
 * memory ran out. version is always this library's GRAFT_VERSION. */
char *ckpt_state_json(const graft_ckpt_state *s, const graft_optim *o,
                      const ckpt_frozen_ref *frozen);
/* Parse the state.json text of ckpt_dir into *info (zeroed first; free with
 * ckpt_info_free). GRAFT_ERR_FORMAT ("CKPT_DIR: state.json: ...") when it is not what
 * save writes. */
graft_status ckpt_parse_state(const char *ckpt_dir, const char *text, ckpt_info *info,
                              graft_log_level level);
/* Read and parse ckpt_dir/state.json without checking the MANIFEST. */
graft_status ckpt_read_state(const char *ckpt_dir, ckpt_info *info, graft_log_level level);
void ckpt_info_free(ckpt_info *info);

/* Full check of one checkpoint: MANIFEST sizes then xxh64s, state.json, the frozen
 * file it references. On failure one line "CKPT_DIR: what is wrong" ("...: model.
 * safetensors checksum mismatch") is logged at `level` and the result is
 * GRAFT_ERR_FORMAT (damaged), GRAFT_ERR_NOT_FOUND (no such directory) or GRAFT_ERR_IO
 * (unreadable). info (may be NULL) receives state.json on success. */
graft_status ckpt_check(const char *ckpt_dir, ckpt_info *info, graft_log_level level);
/* The problem the last failed ckpt_check of ckpt_dir kept (at GRAFT_LOG_QUIET), without
 * the "CKPT_DIR: " it starts with. */
const char *ckpt_problem(const char *ckpt_dir);

#endif
