/* GPT-2 generation (models/gpt2: gpt2_kv_cache, gpt2_generate, sampling):
 * - the key/value cache gives the model's own full-forward logits at every position,
 *   token by token and in chunks of a prompt (relative error <= 1e-5 per position);
 * - greedy generation equals the PyTorch reference's (tools/fixtures/gpt2.py: ids
 *   exactly), past n_positions too, and a prompt longer than n_positions is windowed;
 * - the sampler: greedy, temperature, top-k (ties kept), top-p (nucleus), frequencies,
 *   seeds; a continuation's stop id and allowed ids. */
#include "tests/testutil_model.h"

#include "models/gpt2/gpt2.h"
#include "models/gpt2/gpt2_generate.h"
#include "models/gpt2/gpt2_kv_cache.h"
#include "models/gpt2/sampling.h"
#include "runtime/io/safetensors.h"
#include "runtime/nn/params_io.h"

#define FIXTURES GRAFT_SOURCE_DIR "/tests/fixtures/"
#define WEIGHTS FIXTURES "gpt2.weights.safetensors"
#define CACHE_TOL 1e-5

enum { L = 2, NH = 4, C = 32, NPOS = 32, V = 64 };

/* The fixture's 2 x 16 tokens as one sequence of NPOS. */
static void fixture_tokens(int32_t *tokens) {
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2.expect.safetensors"), GRAFT_OK);
    size_t n;
    float *x = tu_read_tensor(&f, "tokens", &n);
    assert_int_equal(n, NPOS);
    for (size_t i = 0; i < n; i++)
        tokens[i] = (int32_t)x[i];
    free(x);
    graft_st_close(&f);
}

/* A model whose full forward covers seq_len tokens, with the fixture weights or (weights
 * NULL) seeded ones. */
static void model_new(graft_gpt2 *m, const graft_gpt2_config *cfg, const char *weights) {
    assert_int_equal(graft_gpt2_init(m, cfg), GRAFT_OK);
    assert_int_equal(graft_params_finalize(&m->params), GRAFT_OK);
    assert_int_equal(graft_gpt2_build(m, 1), GRAFT_OK);
    graft_gpt2_init_weights(m, 11);
    if (weights) {
        graft_load_options opt = {.strict = 1, .map_name = graft_gpt2_map_name};
        assert_int_equal(graft_params_load(&m->params, weights, &opt, NULL), GRAFT_OK);
    }
}

static void fixture_model(graft_gpt2 *m) {
    const graft_gpt2_config cfg = {
        .n_layer = L, .n_head = NH, .n_embd = C, .n_positions = NPOS, .vocab_size = V,
        .seq_len = NPOS};
    model_new(m, &cfg, WEIGHTS);
}

/* The cache's logits against row t of the full forward's. */
static double row_err(const graft_gpt2 *m, const graft_gpt2_kv_cache *c, int t) {
    const size_t Vm = (size_t)m->cfg.vocab_size;
    return tu_rel_err_floor(c->logits, m->logits + (size_t)t * Vm, Vm, 0);
}

/* Every position fed one token at a time, and prompts of several lengths in one call
 * (then token by token), against one full forward over the sequence. */
static void test_cache_matches_full_forward(void **state) {
    (void)state;
    graft_gpt2 m;
    fixture_model(&m);
    int32_t tokens[NPOS];
    fixture_tokens(tokens);
    graft_gpt2_forward(&m, tokens, NULL, 1, 0);
    graft_gpt2_kv_cache c;
    assert_int_equal(graft_gpt2_kv_cache_init(&c, &m, NPOS), GRAFT_OK);
    double worst = 0;
    for (int t = 0; t < NPOS; t++) {
        graft_gpt2_kv_forward(&m, &c, tokens + t, 1);
        assert_int_equal(c.len, t + 1);
        worst = fmax(worst, row_err(&m, &c, t));
    }
    TU_CHECK_REL("token by token, worst position", worst, CACHE_TOL);
    const int prompts[] = {1, 7, 20, NPOS};
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        const int P = prompts[i];
        c.len = 0;
        graft_gpt2_kv_forward(&m, &c, tokens, P);
        worst = row_err(&m, &c, P - 1);
        for (int t = P; t < NPOS; t++) {
            graft_gpt2_kv_forward(&m, &c, tokens + t, 1);
            worst = fmax(worst, row_err(&m, &c, t));
        }
        char what[64];
        snprintf(what, sizeof what, "prompt of %d, then token by token", P);
        TU_CHECK_REL(what, worst, CACHE_TOL);
    }
    /* a copy continues exactly as the original would */
    graft_gpt2_kv_cache d;
    assert_int_equal(graft_gpt2_kv_cache_init(&d, &m, NPOS), GRAFT_OK);
    c.len = 0;
    graft_gpt2_kv_forward(&m, &c, tokens, 9);
    graft_gpt2_kv_cache_copy(&d, &c, &m);
    graft_gpt2_kv_forward(&m, &c, tokens + 9, 1);
    graft_gpt2_kv_forward(&m, &d, tokens + 9, 1);
    assert_int_equal(d.len, 10);
    assert_memory_equal(c.logits, d.logits, V * sizeof(float));
    graft_gpt2_kv_cache_free(&d);
    graft_gpt2_kv_cache_free(&c);
    graft_gpt2_free(&m);
}

/* A prompt longer than one chunk of rows (64): 150 positions in 3 chunks, with seeded
 * weights of the usual scale, against the full forward at every position after it. */
static void test_cache_in_chunks(void **state) {
    (void)state;
    enum { T = 150, VB = 50 };
    const graft_gpt2_config cfg = {
        .n_layer = 2, .n_head = 2, .n_embd = 16, .n_positions = T, .vocab_size = VB, .seq_len = T};
    graft_gpt2 m;
    model_new(&m, &cfg, NULL);
    int32_t tokens[T];
    graft_rng r;
    graft_rng_seed(&r, 3);
    for (int t = 0; t < T; t++)
        tokens[t] = (int32_t)graft_rng_below(&r, VB);
    graft_gpt2_forward(&m, tokens, NULL, 1, 0);
    graft_gpt2_kv_cache c;
    assert_int_equal(graft_gpt2_kv_cache_init(&c, &m, T), GRAFT_OK);
    assert_int_equal(c.chunk, 64);
    graft_gpt2_kv_forward(&m, &c, tokens, 140);
    double worst = row_err(&m, &c, 139);
    for (int t = 140; t < T; t++) {
        graft_gpt2_kv_forward(&m, &c, tokens + t, 1);
        worst = fmax(worst, row_err(&m, &c, t));
    }
    TU_CHECK_REL("prompt of 140 in chunks, then 10 more", worst, CACHE_TOL);
    graft_gpt2_kv_cache_free(&c);
    graft_gpt2_free(&m);
}

static int32_t *read_ids(const graft_st_file *f, const char *name, size_t *n) {
    float *x = tu_read_tensor(f, name, n);
    int32_t *ids = calloc(*n, sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)x[i];
    free(x);
    return ids;
}

static const graft_gpt2_generation greedy = {.stop_id = -1, .sampling = {.top_p = 1}};

/* The reference's greedy continuation, 40 tokens after a prompt of 10: past n_positions
 * (32) its window slides, as ours does. */
static void test_greedy_matches_reference(void **state) {
    (void)state;
    graft_st_file f;
    assert_int_equal(graft_st_open(&f, FIXTURES "gpt2.expect.safetensors"), GRAFT_OK);
    size_t n_prompt, n_want;
    int32_t *prompt = read_ids(&f, "generate.prompt", &n_prompt);
    int32_t *want = read_ids(&f, "generate.greedy", &n_want);
    assert_true(n_prompt + n_want > NPOS);
    graft_gpt2 m;
    fixture_model(&m);
    graft_gpt2_generation opt = greedy;
    opt.max_new_tokens = (int)n_want;
    graft_gpt2_generator g;
    assert_int_equal(graft_gpt2_generator_init(&g, &m, prompt, (int)n_prompt, &opt), GRAFT_OK);
    assert_int_equal(graft_gpt2_generate(&g, NULL, NULL, NULL), (int)n_want);
    assert_memory_equal(g.tokens, prompt, n_prompt * sizeof *prompt);
    for (size_t i = 0; i < n_want; i++)
        if (g.tokens[n_prompt + i] != want[i])
            fail_msg("greedy token %zu: %d, the reference has %d", i, g.tokens[n_prompt + i],
                     want[i]);
    printf("  %zu greedy tokens after %zu equal the reference's\n", n_want, n_prompt);
    graft_gpt2_generator_free(&g);
    graft_gpt2_free(&m);
    free(prompt);
    free(want);
    graft_st_close(&f);
}

/* A prompt longer than n_positions keeps its last n_positions tokens: greedy tokens equal
 * the argmax of the full forward over the last n_positions tokens at every step. */
static void test_window(void **state) {
    (void)state;
    enum { P = 40, N = 12 };
    graft_gpt2 m;
    fixture_model(&m);
    int32_t ids[P + N];
    fixture_tokens(ids);
    for (int i = NPOS; i < P; i++) /* a prompt that goes on: the reversed start */
        ids[i] = ids[P - 1 - i];
    graft_gpt2_generation opt = greedy;
    opt.max_new_tokens = N;
    graft_gpt2_generator g;
    assert_int_equal(graft_gpt2_generator_init(&g, &m, ids, P, &opt), GRAFT_OK);
    assert_int_equal(graft_gpt2_generate(&g, NULL, NULL, NULL), N);
    for (int i = 0; i < N; i++) {
        graft_gpt2_forward(&m, ids + P + i - NPOS, NULL, 1, 0);
        const float *last = m.logits + (size_t)(NPOS - 1) * V;
        int best = 0;
        for (int k = 1; k < V; k++)
            if (last[k] > last[best]) best = k;
        ids[P + i] = best;
    }
    assert_memory_equal(g.tokens, ids, sizeof ids);
    graft_gpt2_generator_free(&g);
    graft_gpt2_free(&m);
}

static int32_t draw(graft_sampler *s, const float *logits, uint64_t seed) {
    graft_rng r;
    graft_rng_seed(&r, seed);
    return graft_sampler_draw(s, logits, &r);
}

/* Relative frequencies of `draws` draws over n tokens. */
static void frequencies(graft_sampler *s, const float *logits, int n, int draws, double *freq) {
    graft_rng r;
    graft_rng_seed(&r, 99);
    memset(freq, 0, (size_t)n * sizeof *freq);
    for (int i = 0; i < draws; i++) {
        int32_t id = graft_sampler_draw(s, logits, &r);
        assert_true(id >= 0 && id < n);
        freq[id] += 1.0 / draws;
    }
}

static void expect_freq(const double *freq, const double *want, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (fabs(freq[i] - want[i]) > tol)
            fail_msg("token %d drawn %.4f of the time, expected %.4f", i, freq[i], want[i]);
}

static void test_sampler(void **state) {
    (void)state;
    enum { N = 5, DRAWS = 200000 };
    /* probabilities 0.4, 0.3, 0.15, 0.1, 0.05 at temperature 1 */
    const double p[N] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float logits[N];
    for (int i = 0; i < N; i++)
        logits[i] = (float)log(p[i]);
    double freq[N], want[N];
    graft_sampler s;

    /* greedy: the first maximum, no draw */
    const float tie[N] = {1, 3, 3, 0, -1};
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){0, 0, 1}), GRAFT_OK);
    assert_int_equal(graft_sampler_draw(&s, tie, NULL), 1);
    graft_sampler_free(&s);

    /* temperature 1: the softmax itself; temperature 0.5: p^2 renormalised */
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1, 0, 1}), GRAFT_OK);
    frequencies(&s, logits, N, DRAWS, freq);
    expect_freq(freq, p, N, 0.005);
    graft_sampler_free(&s);
    double z = 0;
    for (int i = 0; i < N; i++)
        z += p[i] * p[i];
    for (int i = 0; i < N; i++)
        want[i] = p[i] * p[i] / z;
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){0.5f, 0, 1}), GRAFT_OK);
    frequencies(&s, logits, N, DRAWS, freq);
    expect_freq(freq, want, N, 0.005);
    graft_sampler_free(&s);

    /* top-k 2: the two most likely, renormalised */
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1, 2, 1}), GRAFT_OK);
    frequencies(&s, logits, N, DRAWS, freq);
    expect_freq(freq, (const double[N]){0.4 / 0.7, 0.3 / 0.7, 0, 0, 0}, N, 0.005);
    /* ties with the k-th logit stay (Hugging Face's `scores < kth` removal) */
    frequencies(&s, (const float[N]){0, 2, 1, 1, 1}, N, DRAWS, freq);
    assert_true(freq[0] == 0 && freq[2] > 0.1 && freq[3] > 0.1 && freq[4] > 0.1);
    graft_sampler_free(&s);

    /* top-p: 0.4 alone is not 0.5 of the mass, 0.4 + 0.3 is: two tokens; 0.35: one */
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1, 0, 0.5f}), GRAFT_OK);
    frequencies(&s, logits, N, DRAWS, freq);
    expect_freq(freq, (const double[N]){0.4 / 0.7, 0.3 / 0.7, 0, 0, 0}, N, 0.005);
    graft_sampler_free(&s);
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1, 0, 0.35f}), GRAFT_OK);
    for (uint64_t seed = 0; seed < 100; seed++)
        assert_int_equal(draw(&s, logits, seed), 0);
    graft_sampler_free(&s);
    /* top-k, then top-p over what top-k kept, renormalised: {0.4, 0.3, 0.15} / 0.85 has
     * 0.82 >= 0.8 in its first two (of the whole softmax, 0.7 < 0.8 would need three) */
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1, 3, 0.8f}), GRAFT_OK);
    frequencies(&s, logits, N, DRAWS, freq);
    expect_freq(freq, (const double[N]){0.4 / 0.7, 0.3 / 0.7, 0, 0, 0}, N, 0.005);
    graft_sampler_free(&s);

    /* a tiny temperature is greedy without overflowing */
    assert_int_equal(graft_sampler_init(&s, N, &(graft_sampling){1e-30f, 0, 1}), GRAFT_OK);
    for (uint64_t seed = 0; seed < 100; seed++)
        assert_int_equal(draw(&s, logits, seed), 0);
    graft_sampler_free(&s);

    /* options out of range */
    const graft_sampling bad[] = {{-1, 0, 1}, {1, -1, 1}, {1, 0, 0}, {1, 0, 1.5f}, {NAN, 0, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(graft_sampler_init(&s, N, &bad[i]), GRAFT_ERR_INVALID_ARG);
}

/* Continuations of one prompt: the same stream gives the same tokens, another stream
 * other tokens; the stop id ends one unseen; ids beyond n_allowed are never drawn. */
static void test_generate_streams(void **state) {
    (void)state;
    enum { N = 20 };
    graft_gpt2 m;
    fixture_model(&m);
    int32_t prompt[NPOS];
    fixture_tokens(prompt);
    graft_gpt2_generation opt = {
        .max_new_tokens = N, .stop_id = -1, .sampling = {.temperature = 1, .top_p = 1}};
    graft_gpt2_generator g;
    assert_int_equal(graft_gpt2_generator_init(&g, &m, prompt, 4, &opt), GRAFT_OK);
    int32_t runs[3][N];
    const uint64_t seeds[3] = {5, 5, 6};
    for (int i = 0; i < 3; i++) {
        graft_rng r;
        graft_rng_seed(&r, seeds[i]);
        assert_int_equal(graft_gpt2_generate(&g, &r, NULL, NULL), N);
        memcpy(runs[i], g.tokens + 4, sizeof runs[i]);
    }
    assert_memory_equal(runs[0], runs[1], sizeof runs[0]);
    assert_memory_not_equal(runs[0], runs[2], sizeof runs[0]);
    graft_gpt2_generator_free(&g);

    /* the stop id: the first token of run 0 ends that continuation at once */
    opt.stop_id = runs[0][0];
    assert_int_equal(graft_gpt2_generator_init(&g, &m, prompt, 4, &opt), GRAFT_OK);
    graft_rng r;
    graft_rng_seed(&r, 5);
    assert_int_equal(graft_gpt2_generate(&g, &r, NULL, NULL), 0);
    graft_gpt2_generator_free(&g);

    /* n_allowed 8 of 64: only ids 0..7 */
    opt.stop_id = -1;
    opt.n_allowed = 8;
    opt.max_new_tokens = 60; /* past n_positions too */
    assert_int_equal(graft_gpt2_generator_init(&g, &m, prompt, 4, &opt), GRAFT_OK);
    assert_int_equal(graft_gpt2_generate(&g, &r, NULL, NULL), opt.max_new_tokens);
    for (int i = 0; i < opt.max_new_tokens; i++)
        assert_true(g.tokens[4 + i] >= 0 && g.tokens[4 + i] < 8);
    graft_gpt2_generator_free(&g);

    /* options out of range */
    const graft_gpt2_generation bad[] = {
        {.max_new_tokens = 0, .stop_id = -1, .sampling = {1, 0, 1}},
        {.max_new_tokens = 1, .stop_id = V, .sampling = {1, 0, 1}},
        {.max_new_tokens = 1, .stop_id = -1, .n_allowed = V + 1, .sampling = {1, 0, 1}},
        {.max_new_tokens = 1, .stop_id = -1, .sampling = {1, 0, 2}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(graft_gpt2_generator_init(&g, &m, prompt, 4, &bad[i]),
                         GRAFT_ERR_INVALID_ARG);
    graft_gpt2_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_matches_full_forward),
        cmocka_unit_test(test_cache_in_chunks),
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_generate_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
