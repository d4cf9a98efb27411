/* Moving a parameter table in and out of safetensors files, by canonical name, so
 * weights load in PyTorch (safetensors.torch.load_file) and come back from it. */
#ifndef GRAFT_PARAMS_IO_H
#define GRAFT_PARAMS_IO_H

#include "runtime/io/safetensors.h"
#include "runtime/nn/params.h"

/* Write every parameter and buffer of a finalized table as F32 to `path`, atomically
 * (see graft_st_writer_save), with metadata format=pt and graft_version. Aliases (tied
 * weights) are written as copies, as PyTorch's state_dict() lists them. */
graft_status graft_params_save(const graft_params *p, const char *path);
/* The same with these values ([n_values], laid out as p's), leaving the LoRA adapters
 * out when without_adapters (a merged model). */
graft_status graft_params_save_values(const graft_params *p, const float *values,
                                      int without_adapters, const char *path);

typedef struct graft_load_options {
    /* Like load_state_dict(strict=True): names missing from the file or in the file but
     * not in the model fail the load (otherwise they are warnings). */
    int strict;
    /* Optional: the model's name for a file tensor, or NULL to skip it silently (see
     * graft_model_i.map_name). */
    const char *(*map_name)(const char *file_name, char *buf, size_t size);
    /* Optional: name prefix of a replaced classifier ("fc"): its parameters keep their
     * fresh values, and the file's tensors under it are counted as replaced. */
    const char *replaced;
    /* Optional: how messages name the file (a checkpoint exported to a temporary file
     * is named as the checkpoint); NULL = path. */
    const char *shown_path;
} graft_load_options;

/* What a load matched. */
typedef struct graft_load_report {
    int matched;    /* names found in both with the same shape: loaded */
    int missing;    /* in the table, not in the file: left as they were */
    int unexpected; /* in the file, not in the table: ignored */
    int replaced;   /* in the file under options.replaced: ignored on purpose */
    int skipped;    /* dropped by map_name (e.g. mask buffers) */
    int zeroed;     /* zero_when_absent buffers the file lacks: set to 0 */
} graft_load_report;

/* 1 when the file tensor s has parameter t's shape (dtype not considered). */
int graft_param_shape_matches(const graft_param *t, const graft_st_tensor *s);

/* Load values by name from a safetensors file (F32, F16 or BF16 converted to fp32;
 * buffers may also be integers, like torch's int64 num_batches_tracked). A
 * zero_when_absent buffer the file lacks is set to 0 and is not missing. Names present
 * in both with different shapes, a non-float tensor where a weight is expected, or a
 * tensor holding NaN or infinite values fail the load (GRAFT_ERR_MISMATCH); so do
 * missing and unexpected names
 * when strict. Each kind of problem is logged name by name (the first 20, then how
 * many more). The table is only changed when the whole load succeeds. */
graft_status graft_params_load(graft_params *p, const char *path,
                               const graft_load_options *options, graft_load_report *report);

#endif
