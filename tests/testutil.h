/* Helpers shared by the CMocka tests: seeded random fills, error reports and a
 * per-run temporary directory. Header-only so each test stays one executable. */
#ifndef GRAFT_TESTUTIL_H
#define GRAFT_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __clang_analyzer__
/* cmocka's _fail (behind fail() and fail_msg()) longjmps out of the test; saying so keeps
 * the analyzer (make lint) from following a test past its failure. */
void _fail(const char *const file, const int line) __attribute__((noreturn));
#endif

#include "runtime/core/rng.h"

/* Uniform floats in [lo, hi). */
static inline void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed) {
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * graft_rng_uniform(&r);
}

static inline float *tu_floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static inline double *tu_doubles(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}

/* max |a-b| / max(max|b|, floor): a relative error that is not blown up by
 * entries that happen to be near zero. */
static inline double tu_rel_err_fd(const float *a, const double *b, size_t n, double floor) {
    double maxdiff = 0, maxref = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxdiff / maxref;
}

/* Report and bound a relative error: prints "name: rel err X (bound Y)". */
#define TU_CHECK_REL(name, err, bound)                                                 \
    do {                                                                               \
        double tu_e_ = (err);                                                          \
        printf("  %-40s rel err %.3e (bound %.1e)\n", (name), tu_e_, (double)(bound)); \
        assert_true(tu_e_ <= (bound));                                                 \
    } while (0)

/* nftw callback of tu_remove_tree. */
static inline int tu_remove_entry(const char *path, const struct stat *sb, int flag,
                                  struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* A fresh directory "/tmp/graft_test_<name>_XXXXXX" into dir: 0, or -1 (what a cmocka
 * group setup returns). */
static inline int tu_make_temp_dir(char *dir, size_t size, const char *name) {
    snprintf(dir, size, "/tmp/graft_test_%s_XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

/* Delete dir and everything under it (links are removed, not followed): 0 or -1. */
static inline int tu_remove_tree(const char *dir) {
    return nftw(dir, tu_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
