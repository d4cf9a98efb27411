/* Moving a parameter table in and out of safetensors files, by canonical name, so
 * weights load in PyTorch (safetensors.torch.load_file) and come back from it. */
#ifndef GRAFT_PARAMS_IO_H
#define GRAFT_PARAMS_IO_H

#include "runtime/nn/params.h"

/* Write every parameter and buffer of a finalized table as F32 to `path`, atomically
 * (see graft_st_writer_save), with metadata format=pt and graft_version. */
graft_status graft_params_save(const graft_params *p, const char *path);

/* What a load matched. */
typedef struct graft_load_report {
    int matched;    /* names found in both with the same shape: loaded */
    int missing;    /* in the table, not in the file: left as they were */
    int unexpected; /* in the file, not in the table: ignored */
} graft_load_report;

/* Load values by name from a safetensors file (F32, F16 or BF16 converted to fp32).
 * A name present in both with a different shape is an error (GRAFT_ERR_MISMATCH,
 * nothing loaded); so is any missing name when strict. Missing and unexpected names
 * are logged. The table is only changed when the whole load succeeds. */
graft_status graft_params_load(graft_params *p, const char *path, int strict,
                               graft_load_report *report);

#endif
