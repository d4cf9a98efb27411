/* Helpers shared by the model tests (test_mlp, test_resnet, test_gpt2, test_bert,
 * test_vit): freezing by a list of globs, the grad-ready hook's log, fixture tensors,
 * an optimizer step that must leave frozen values alone. */
#ifndef GRAFT_TESTUTIL_MODEL_H
#define GRAFT_TESTUTIL_MODEL_H

#include "tests/testutil.h"

#include "runtime/io/safetensors.h"
#include "runtime/nn/params.h"
#include "runtime/optim/optim.h"

/* Freeze the parameters matching each of the comma-separated globs (NULL or "": none);
 * every glob must match something. Before finalize. */
static inline void tu_freeze(graft_params *p, const char *globs_csv) {
    char globs[1024];
    snprintf(globs, sizeof globs, "%s", globs_csv ? globs_csv : "");
    for (char *save = NULL, *g = strtok_r(globs, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        int matched = 0;
        assert_int_equal(graft_params_set_trainable(p, g, 0, &matched), GRAFT_OK);
        assert_true(matched > 0);
    }
}

/* Set as params->on_grad_ready with a tu_hook_log as context: checks that the announced
 * ranges tile the gradient buffer from 0 upward (backward order), counting the calls. */
typedef struct tu_hook_log {
    size_t next, calls;
} tu_hook_log;

static inline void tu_record_ready(void *ctx, size_t offset, size_t count) {
    tu_hook_log *h = ctx;
    assert_int_equal(offset, h->next);
    h->next = offset + count;
    h->calls++;
}

/* A fixture tensor as floats (caller frees); *numel (may be NULL) receives its size. */
static inline float *tu_read_tensor(const graft_st_file *f, const char *name, size_t *numel) {
    const graft_st_tensor *t = graft_st_find(f, name);
    if (!t) fail_msg("fixture tensor %s missing", name);
    float *x = tu_floats(t->numel);
    assert_int_equal(graft_st_read_f32(t, x, t->numel), GRAFT_OK);
    if (numel) *numel = t->numel;
    return x;
}

/* max |a - b| / max(max |b|, floor) (just max |a - b| when that is 0). */
static inline double tu_rel_err_floor(const float *a, const float *b, size_t n, double floor) {
    double diff = 0, scale = floor;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0 ? diff / scale : diff;
}

/* Every gradient of the table against the fixture's "grad.<name>": frozen parameters
 * must have none (NULL), trainable ones are measured with tu_rel_err_floor. Returns the
 * worst error; *worst_name (may be NULL) names its parameter ("-" when none). */
static inline double tu_worst_grad_err(const graft_params *p, const graft_st_file *f, double floor,
                                       const char **worst_name) {
    double worst = 0;
    if (worst_name) *worst_name = "-";
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        const float *g = graft_params_grad(p, i);
        if (!t->trainable) {
            assert_null(g);
            continue;
        }
        char name[GRAFT_NAME_MAX + 8];
        snprintf(name, sizeof name, "grad.%s", t->name);
        size_t n;
        float *want = tu_read_tensor(f, name, &n);
        assert_int_equal(n, t->numel);
        double e = tu_rel_err_floor(g, want, n, floor);
        free(want);
        if (e > worst) {
            worst = e;
            if (worst_name) *worst_name = t->name;
        }
    }
    return worst;
}

/* max |a - b| / max |b| of n floats against the fixture tensor `name`. */
static inline double tu_rel_err_tensor(const graft_st_file *f, const char *name, const float *a,
                                       size_t n) {
    size_t numel;
    float *b = tu_read_tensor(f, name, &numel);
    assert_int_equal(numel, n);
    double e = tu_rel_err_floor(a, b, n, 0);
    free(b);
    return e;
}

static inline int tu_count_trainable(const graft_params *p) {
    int n = 0;
    for (int i = 0; i < p->count; i++)
        n += p->items[i].trainable;
    return n;
}

/* One AdamW step on the current gradients: exactly the trainable parameters' values move. */
static inline void tu_adamw_moves_trainable_only(graft_params *p) {
    float *before = tu_floats(p->n_values);
    memcpy(before, p->values, p->n_values * sizeof(float));
    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    graft_optim opt;
    assert_int_equal(graft_optim_init(&opt, &ocfg, p), GRAFT_OK);
    assert_int_equal(graft_optim_step(&opt, p, 1e-2f), GRAFT_OK);
    for (int i = 0; i < p->count; i++) {
        const graft_param *t = &p->items[i];
        int same = memcmp(before + t->offset, p->values + t->offset, t->numel * sizeof(float)) == 0;
        assert_int_equal(same, !t->trainable);
    }
    graft_optim_free(&opt);
    free(before);
}

#endif
