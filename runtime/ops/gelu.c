/* GELU activation: the exact erf form (BERT, torch default) and the tanh
 * approximation (GPT-2, torch approximate="tanh").
 * Both are evaluated in forms that avoid the cancellation in 1 + erf / 1 + tanh
 * for negative inputs: 0.5 * (1 + erf(x / sqrt2)) = 0.5 * erfc(-x / sqrt2) and
 * 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)).
 *
 * libm's erfcf and expf are scalar calls (they made the erf GELU ~30x slower than
 * PyTorch's). Here every function of one float is branch-free and inlined into loops
 * over blocks of GELU_LANES values, which the compiler vectorises:
 * - exp_split: exp(hi + lo) by Cody-Waite reduction and Cephes' expf polynomial.
 * - erfc(a) = exp(-a^2) t Q(t) with t = 2 / (2 + a) for a >= 0, and erf(z) =
 *   z (1 + P(z^2)) for |z| < 1, P and Q fitted to a relative error < 4e-9. -a^2
 *   reaches exp_split as an exact sum hi + lo (rounding a^2 alone would cost ~1e-6
 *   relative in the far tail), and the GELU takes exp(-x^2/2) from x itself rather
 *   than from the rounded x / sqrt2 for the same reason; the backward's normal
 *   density reuses that exponential.
 * - Selects are bit operations and clamps selects: with a ?: GCC moves the work of
 *   one side into a branch, which it then may not vectorise (the float operations
 *   could trap). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops.h"

#define GELU_SQRT_2_OVER_PI 0.79788456080286535588f /* sqrt(2/pi) */
#define GELU_INV_SQRT_2 0.70710678118654752440f     /* 1/sqrt(2) */
#define GELU_INV_SQRT_2PI 0.39894228040143267794f   /* 1/sqrt(2*pi) */
#define GELU_TANH_CUBIC 0.044715f
#define GELU_LANES 16

/* The helpers must be inlined for the loops to vectorise. */
#define GELU_INLINE static inline __attribute__((always_inline))
/* On x86-64 Linux the loops also get AVX2 and AVX-512 copies, chosen at load time
 * (2.5x and 4x faster than the SSE2 baseline for the erf GELU). Multiply-adds are not
 * contracted into FMAs (ISO C mode), so every copy computes the same bits. */
/* clang before 15 names the dispatcher "f.ifunc" instead of "f" (callers fail to link). */
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute) && \
    !(defined(__clang__) && __clang_major__ < 15)
#if __has_attribute(target_clones)
#define GELU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef GELU_CLONES
#define GELU_CLONES
#endif

/* Beyond these |arguments| erfc underflows to 0 in float: clamping keeps x*x finite
 * (an infinite x*x would turn the exact split below into inf - inf). */
#define ERF_ARG_MAX 10.5f
#define GELU_ARG_MAX 14.849242f /* ERF_ARG_MAX * sqrt2 */

GELU_INLINE uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

GELU_INLINE float bits_float(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* cond ? a : b with both already computed. */
GELU_INLINE float select_float(int cond, float a, float b) {
    uint32_t mask = 0u - (uint32_t)(cond != 0);
    return bits_float((float_bits(a) & mask) | (float_bits(b) & ~mask));
}

/* exp(hi + lo) for |lo| <= 1e-3, within ~1 ulp. hi is clamped to [-104, 100], where
 * the result is 0 or inf in float anyway; NaN stays NaN. */
GELU_INLINE float exp_split(float hi, float lo) {
    const float round_magic = 12582912.0f;        /* 1.5 * 2^23: adding it rounds to an integer */
    hi = select_float(hi < -104.0f, -104.0f, hi); /* comparisons are false for NaN */
    hi = select_float(hi > 100.0f, 100.0f, hi);
    float shifted = hi * 1.44269504088896341f + round_magic; /* log2(e) */
    float k = shifted - round_magic;
    /* k ln2 with ln2 = 0.693359375 - 2.12194440e-4: the first product is exact */
    float r = (hi - k * 0.693359375f) + k * 2.12194440e-4f + lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^k as two factors, so that k down to -150 needs no subnormal factor; the integer
     * k comes from the bits of `shifted` (no float-to-int conversion of a NaN) */
    int32_t ki = (int32_t)(float_bits(shifted) - float_bits(round_magic));
    int32_t k1 = ki / 2, k2 = ki - k1;
    return p * bits_float((uint32_t)(k1 + 127) << 23) * bits_float((uint32_t)(k2 + 127) << 23);
}

/* -x*x as hi + lo exactly (Dekker): x's upper 12 significand bits times either part
 * of x is an exact float product. */
GELU_INLINE float neg_square(float x, float *lo) {
    float xh = bits_float(float_bits(x) & 0xFFFFF000u), xl = x - xh, hi = x * x;
    *lo = -(((xh * xh - hi) + 2.0f * xh * xl) + xl * xl);
    return -hi;
}

/* erf(z) / z - 1 for |z| < 1, as a polynomial in s = z*z: erf(z) = z + z * it is
 * then rounded about once. */
GELU_INLINE float erf_small_excess(float s) {
    float p = 7.85385928e-05f;
    p = p * s - 8.01019312e-04f;
    p = p * s + 5.18832775e-03f;
    p = p * s - 2.68538110e-02f;
    p = p * s + 1.12835854e-01f;
    p = p * s - 3.76126260e-01f;
    return p * s + 1.28379166e-01f;
}

/* erfc(a) / exp(-a*a) for 0 <= a <= ERF_ARG_MAX. */
GELU_INLINE float erfc_scaled(float a) {
    float t = 2.0f / (2.0f + a);
    float q = 3.63177285e-02f;
    q = q * t - 1.94296896e-01f;
    q = q * t + 3.89896214e-01f;
    q = q * t - 3.02268952e-01f;
    q = q * t - 9.90068447e-03f;
    q = q * t + 2.78005674e-02f;
    q = q * t + 5.80894351e-02f;
    q = q * t + 1.84700727e-01f;
    q = q * t + 2.45335892e-01f;
    q = q * t + 2.82236814e-01f;
    q = q * t + 2.82089174e-01f;
    return q * t;
}

GELU_INLINE float erf_one(float x) {
    float xc = select_float(x > ERF_ARG_MAX, ERF_ARG_MAX, x);
    xc = select_float(xc < -ERF_ARG_MAX, -ERF_ARG_MAX, xc);
    float a = fabsf(xc), lo;
    float small = xc + xc * erf_small_excess(xc * xc);
    float hi = neg_square(xc, &lo);
    float big = 1.0f - exp_split(hi, lo) * erfc_scaled(a);
    return select_float(a < 1.0f, small, select_float(xc < 0.0f, -big, big));
}

/* The standard normal cdf Phi(x) = 0.5 * erfc(-x / sqrt2), relative to either tail;
 * *gauss = exp(-x*x / 2). */
GELU_INLINE float normal_cdf(float x, float *gauss) {
    float xc = select_float(x > GELU_ARG_MAX, GELU_ARG_MAX, x);
    xc = select_float(xc < -GELU_ARG_MAX, -GELU_ARG_MAX, xc);
    float lo, hi = neg_square(xc, &lo);
    float e = exp_split(0.5f * hi, 0.5f * lo);
    float tail = 0.5f * e * erfc_scaled(fabsf(xc) * GELU_INV_SQRT_2); /* Phi(-|x|) */
    *gauss = e;
    return select_float(xc < 0.0f, tail, 1.0f - tail);
}

GELU_INLINE float gelu_erf_one(float x) {
    float gauss;
    return x * normal_cdf(x, &gauss);
}

GELU_INLINE float gelu_erf_grad(float x) {
    float gauss, cdf = normal_cdf(x, &gauss);
    return cdf + x * (GELU_INV_SQRT_2PI * gauss);
}

/* 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)) for u = sqrt(2/pi) (x + 0.044715 x^3). */
GELU_INLINE float tanh_cdf(float x) {
    float u = GELU_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
    return 1.0f / (1.0f + exp_split(-2.0f * u, 0.0f));
}

GELU_INLINE float gelu_tanh_one(float x) { return x * tanh_cdf(x); }

GELU_INLINE float gelu_tanh_grad(float x) {
    float s = tanh_cdf(x);
    float du = GELU_SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_CUBIC * x * x);
    /* d/du of 0.5 * (1 + tanh(u)) = 2 * s * (1 - s) */
    return s + x * 2.0f * s * (1.0f - s) * du;
}

/* out[i] = f(inp[i]) in blocks the compiler vectorises, then the tail. */
#define GELU_MAP(out, inp, n, f)                                                                   \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + GELU_LANES <= (n); i_ += GELU_LANES) {                                         \
            float v_[GELU_LANES];                                                                  \
            for (int j_ = 0; j_ < GELU_LANES; j_++)                                                \
                v_[j_] = f((inp)[i_ + j_]);                                                        \
            for (int j_ = 0; j_ < GELU_LANES; j_++)                                                \
                (out)[i_ + j_] = v_[j_];                                                           \
        }                                                                                          \
        for (; i_ < (n); i_++)                                                                     \
            (out)[i_] = f((inp)[i_]);                                                              \
    } while (0)

/* dinp[i] += f(inp[i]) * dout[i], likewise. */
#define GELU_GRAD(dinp, dout, inp, n, f)                                                           \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + GELU_LANES <= (n); i_ += GELU_LANES) {                                         \
            float v_[GELU_LANES];                                                                  \
            for (int j_ = 0; j_ < GELU_LANES; j_++)                                                \
                v_[j_] = f((inp)[i_ + j_]) * (dout)[i_ + j_];                                      \
            for (int j_ = 0; j_ < GELU_LANES; j_++)                                                \
                (dinp)[i_ + j_] += v_[j_];                                                         \
        }                                                                                          \
        for (; i_ < (n); i_++)                                                                     \
            (dinp)[i_] += f((inp)[i_]) * (dout)[i_];                                               \
    } while (0)

GELU_CLONES void graft_erf(float *out, const float *inp, size_t n) {
    GELU_MAP(out, inp, n, erf_one);
}

/* out[i] = gelu(inp[i]) for i < n. */
GELU_CLONES void graft_gelu_forward(float *out, const float *inp, size_t n, graft_gelu_kind kind) {
    if (kind == GRAFT_GELU_TANH)
        GELU_MAP(out, inp, n, gelu_tanh_one);
    else
        GELU_MAP(out, inp, n, gelu_erf_one);
}

/* dinp[i] += gelu'(inp[i]) * dout[i]; nothing to do when dinp is NULL. */
GELU_CLONES void graft_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                                     graft_gelu_kind kind) {
    if (!dinp) return;
    if (kind == GRAFT_GELU_TANH)
        GELU_GRAD(dinp, dout, inp, n, gelu_tanh_grad);
    else
        GELU_GRAD(dinp, dout, inp, n, gelu_erf_grad);
}
