/* A small seeded random number generator (splitmix64). Its whole state is one
 * uint64, so checkpoints can save and restore it exactly. */
#ifndef GRAFT_RNG_H
#define GRAFT_RNG_H

#include <stdint.h>

typedef struct graft_rng {
    uint64_t state;
} graft_rng;

void graft_rng_seed(graft_rng *r, uint64_t seed);
uint64_t graft_rng_u64(graft_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float graft_rng_uniform(graft_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t graft_rng_below(graft_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float graft_rng_normal(graft_rng *r);
/* Mix several numbers into one seed (e.g. seed, epoch, rank). */
uint64_t graft_rng_mix(uint64_t a, uint64_t b);

#endif
