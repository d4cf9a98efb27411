/* graft bench gemm: graft's linear layer (forward + backward) against the raw
 * cblas_sgemm calls it is built on, side by side in one run, for 1 and 2 threads. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/ops/ops.h"

typedef struct {
    int B, IC, OC;
    graft_wlayout layout;
    float *inp, *w, *b, *out, *dout, *dinp, *dw, *db;
} gemm_case;

/* The three GEMMs of a linear layer's forward + backward, with nothing around them. */
static void raw_sgemms(gemm_case *c) {
    int B = c->B, IC = c->IC, OC = c->OC;
    if (c->layout == GRAFT_W_OUT_IN) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, IC, 1.0f, c->inp, IC, c->w,
                    IC, 0.0f, c->out, OC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IC, OC, 1.0f, c->dout, OC, c->w,
                    IC, 1.0f, c->dinp, IC);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, B, 1.0f, c->dout, OC, c->inp,
                    IC, 1.0f, c->dw, IC);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, OC, IC, 1.0f, c->inp, IC, c->w,
                    OC, 0.0f, c->out, OC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, IC, OC, 1.0f, c->dout, OC, c->w,
                    OC, 1.0f, c->dinp, IC);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, B, 1.0f, c->inp, IC, c->dout,
                    OC, 1.0f, c->dw, OC);
    }
}

static void graft_linear_step(gemm_case *c) {
    graft_linear_forward(c->out, c->inp, c->w, c->b, c->B, c->IC, c->OC, c->layout);
    graft_linear_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->B, c->IC, c->OC,
                          c->layout);
}

static float *random_floats(size_t n, graft_rng *rng) {
    float *p = malloc(n * sizeof(float));
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = graft_rng_uniform(rng) - 0.5f;
    return p;
}

/* Alternate graft and raw runs; keep the best time of each (least disturbed by noise). */
static int bench_case(int B, int IC, int OC, graft_wlayout layout, int iters, int threads) {
    graft_rng rng;
    graft_rng_seed(&rng, 1);
    size_t in_n = (size_t)B * IC, out_n = (size_t)B * OC, w_n = (size_t)IC * OC;
    gemm_case c = {B, IC, OC, layout, random_floats(in_n, &rng), random_floats(w_n, &rng),
                   random_floats(OC, &rng), random_floats(out_n, &rng), random_floats(out_n, &rng),
                   random_floats(in_n, &rng), random_floats(w_n, &rng), random_floats(OC, &rng)};
    if (!c.inp || !c.w || !c.b || !c.out || !c.dout || !c.dinp || !c.dw || !c.db) {
        fprintf(stderr, "graft bench: out of memory\n");
        return GRAFT_EXIT_FAILURE;
    }
    raw_sgemms(&c); /* warm up both paths */
    graft_linear_step(&c);
    double best_raw = 1e30, best_graft = 1e30;
    for (int i = 0; i < iters; i++) {
        double t0 = graft_now_s();
        raw_sgemms(&c);
        double t1 = graft_now_s();
        graft_linear_step(&c);
        double t2 = graft_now_s();
        if (t1 - t0 < best_raw) best_raw = t1 - t0;
        if (t2 - t1 < best_graft) best_graft = t2 - t1;
    }
    double flops = 6.0 * B * IC * OC;
    printf("%-8d %-6d %-6d %-7s %-8d %10.3f %10.1f %10.3f %10.1f %8.3f\n", B, IC, OC,
           layout == GRAFT_W_OUT_IN ? "out,in" : "in,out", threads, best_raw * 1e3,
           flops / best_raw * 1e-9, best_graft * 1e3, flops / best_graft * 1e-9,
           best_raw / best_graft);
    float *all[] = {c.inp, c.w, c.b, c.out, c.dout, c.dinp, c.dw, c.db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return GRAFT_EXIT_OK;
}

static int bench_gemm(int argc, char **argv) {
    int iters = 20, max_threads = 2;
    cli_option opts[] = {
        {"iters", CLI_INT, &iters, "timed repetitions per case (best is reported)", 1},
        {"max-threads", CLI_INT, &max_threads, "run with 1..N OpenBLAS threads", 1},
    };
    size_t n_opts = sizeof opts / sizeof opts[0];
    int rc = cli_parse("bench gemm", argc, argv, 3, opts, n_opts);
    if (rc < 0) {
        cli_print_help("bench gemm",
                       "Time graft's linear forward+backward against the raw cblas_sgemm calls\n"
                       "it makes; ratio = raw time / graft time (1.0 = no overhead).",
                       opts, n_opts);
        return GRAFT_EXIT_OK;
    }
    if (rc != GRAFT_EXIT_OK) return rc;
    printf("%-8s %-6s %-6s %-7s %-8s %10s %10s %10s %10s %8s\n", "B", "in", "out", "layout",
           "threads", "raw_ms", "raw_GF/s", "graft_ms", "graft_GF/s", "ratio");
    static const struct {
        int B, IC, OC;
        graft_wlayout layout;
    } cases[] = {
        {256, 1024, 1024, GRAFT_W_OUT_IN},
        {8 * 128, 384, 1536, GRAFT_W_OUT_IN},
        {8 * 128, 384, 1536, GRAFT_W_IN_OUT},
    };
    for (int t = 1; t <= max_threads; t++) {
        openblas_set_num_threads(t);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            rc = bench_case(cases[i].B, cases[i].IC, cases[i].OC, cases[i].layout, iters, t);
            if (rc != GRAFT_EXIT_OK) return rc;
        }
    }
    return GRAFT_EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "--help") == 0) {
        printf("usage: graft bench gemm [options]\n");
        return argc < 3 ? GRAFT_EXIT_BAD_INPUT : GRAFT_EXIT_OK;
    }
    if (strcmp(argv[2], "gemm") == 0) return bench_gemm(argc, argv);
    fprintf(stderr, "graft bench: unknown benchmark '%s' (available: gemm)\n", argv[2]);
    return GRAFT_EXIT_BAD_INPUT;
}
