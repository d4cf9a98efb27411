#include "rng.h"

#include <math.h>

void graft_rng_seed(graft_rng *r, uint64_t seed) { r->state = seed; }

uint64_t graft_rng_u64(graft_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float graft_rng_uniform(graft_rng *r) { return (float)(graft_rng_u64(r) >> 40) / 16777216.0f; }

uint64_t graft_rng_below(graft_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do {
        x = graft_rng_u64(r);
    } while (x >= limit);
    return x % n;
}

float graft_rng_normal(graft_rng *r) {
    double u1 = ((double)(graft_rng_u64(r) >> 11) + 1.0) / 9007199254740993.0; /* (0,1] */
    double u2 = (double)(graft_rng_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t graft_rng_mix(uint64_t a, uint64_t b) {
    graft_rng r = {a ^ (b * 0xD1342543DE82EF95ull)};
    return graft_rng_u64(&r);
}
