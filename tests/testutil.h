/* Helpers shared by the CMocka tests: seeded random fills and error reports.
 * Header-only so each test stays one executable. */
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

#endif
