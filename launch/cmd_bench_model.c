/* graft bench model: forward + backward time per step of an architecture on random
 * data, full fine-tuning next to a partly frozen model (by default only the
 * classifier trainable) or, with --lora-rank, LoRA adapters on a frozen base,
 * measured alternately in one run. The ratio is the price of the second variant's step
 * against the full one: stop-backward at work. Besides the time, what the variant
 * trains decides what data parallelism sends (4 bytes per trainable float, all-reduced
 * every step) and the AdamW state it keeps (2 floats per trainable float). */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "models/model.h"
#include "runtime/core/check.h"
#include "runtime/core/clock.h"
#include "runtime/core/rng.h"
#include "runtime/optim/optim.h"

typedef struct variant {
    const char *name;
    const char *trainable; /* glob; NULL = everything (or, with LoRA, the adapters) */
    const graft_config *cfg;
    graft_model model;
    double fwd, bwd; /* best round's mean seconds per step */
} variant;

typedef struct bench_input {
    int B;
    float *images;
    int32_t *tokens, *labels;
} bench_input;

static graft_status variant_setup(variant *v, const graft_model_input *in, int batch) {
    const graft_config *cfg = v->cfg;
    GRAFT_TRY(graft_model_create(&v->model, cfg, in));
    graft_params *p = v->model.params;
    if (cfg->model.lora.targets.count) { /* the base frozen, the adapters trainable */
        GRAFT_TRY(graft_params_set_trainable(p, "*", 0, NULL));
        for (int i = 0; i < p->count; i++)
            if (p->items[i].adapter) p->items[i].trainable = 1;
    } else if (v->trainable) {
        int matched = 0;
        GRAFT_TRY(graft_params_set_trainable(p, "*", 0, NULL));
        GRAFT_TRY(graft_params_set_trainable(p, v->trainable, 1, &matched));
        if (matched == 0) {
            GRAFT_ERROR("--trainable: '%s' matches no parameter of %s", v->trainable,
                        cfg->model.arch);
            return GRAFT_ERR_CONFIG;
        }
    }
    GRAFT_TRY(graft_params_finalize(p));
    GRAFT_TRY(graft_model_build(&v->model, batch));
    graft_model_init_weights(&v->model, 1);
    return GRAFT_OK;
}

/* Random inputs and labels for batch B (data->B) of the model's input kind. */
static graft_status make_input(bench_input *data, const graft_model_input *in, int tokens, int seq,
                               int vocab, int classes) {
    const int batch = data->B;
    graft_rng rng;
    graft_rng_seed(&rng, 7);
    size_t n_in = tokens ? (size_t)batch * seq : (size_t)batch * in->channels * in->height * in->width;
    size_t n_lab = tokens && !in->num_classes ? (size_t)batch * seq : (size_t)batch;
    if (tokens)
        data->tokens = malloc(n_in * sizeof *data->tokens);
    else
        data->images = malloc(n_in * sizeof *data->images);
    data->labels = malloc(n_lab * sizeof *data->labels);
    if ((!data->tokens && !data->images) || !data->labels) return GRAFT_ERR_NOMEM;
    for (size_t i = 0; i < n_in; i++) {
        if (tokens)
            data->tokens[i] = (int32_t)graft_rng_below(&rng, (uint64_t)vocab);
        else
            data->images[i] = graft_rng_uniform(&rng) * 2 - 1;
    }
    int K = tokens && !in->num_classes ? vocab : classes;
    for (size_t i = 0; i < n_lab; i++)
        data->labels[i] = (int32_t)graft_rng_below(&rng, (uint64_t)K);
    return GRAFT_OK;
}

/* Mean seconds of forward and backward over `steps` training steps. */
static void run_steps(variant *v, const bench_input *in, int steps, double *fwd, double *bwd) {
    graft_model *m = &v->model;
    *fwd = *bwd = 0;
    for (int s = 0; s < steps; s++) {
        graft_params_zero_grad(m->params);
        graft_model_seed_step(m, (uint64_t)s);
        double t0 = graft_now_s();
        graft_model_forward(m, in->images, in->tokens, in->labels, in->B, 1, NULL);
        double t1 = graft_now_s();
        graft_model_backward(m, 1.0f);
        *fwd += t1 - t0;
        *bwd += graft_now_s() - t1;
    }
    *fwd /= steps;
    *bwd /= steps;
}

/* Peak RSS in MB of one variant alone: a child process sets it up with an AdamW
 * optimizer and runs 1 + steps training steps (forward, backward, update); the parent
 * reads the child's ru_maxrss. -1 when the child failed. */
static double peak_rss_mb(variant *v, const graft_model_input *in, int batch, int tokens, int seq,
                          int vocab, int classes, int steps) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        bench_input data = {.B = batch};
        graft_optim opt;
        graft_optim_config oc;
        graft_optim_config_default(&oc, GRAFT_OPTIM_ADAMW);
        graft_status st = variant_setup(v, in, batch);
        if (st == GRAFT_OK) st = make_input(&data, in, tokens, seq, vocab, classes);
        if (st == GRAFT_OK) st = graft_optim_init(&opt, &oc, v->model.params);
        for (int s = 0; st == GRAFT_OK && s < 1 + steps; s++) {
            double f, b;
            run_steps(v, &data, 1, &f, &b);
            st = graft_optim_step(&opt, v->model.params, 1e-4f);
        }
        _exit(st == GRAFT_OK ? 0 : 1);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? (double)ru.ru_maxrss / 1024.0 : -1;
}

/* "<module>.*" for the module of the last registered parameter: the classifier, or the
 * top of a model without one (GPT-2's ln_f, whose lm_head is tied to the embedding). */
static void top_module_glob(const graft_params *p, char *glob, size_t size) {
    const char *name = "";
    for (int i = p->count - 1; i >= 0 && !name[0]; i--)
        if (p->items[i].kind == GRAFT_KIND_PARAM) name = p->items[i].name;
    const char *dot = strrchr(name, '.');
    snprintf(glob, size, "%.*s.*", dot ? (int)(dot - name) : (int)strlen(name), name);
}

/* One decimal dimension in [1, IMAGE_DIM_MAX] ending at `stop` ('x' or the end). */
#define IMAGE_DIM_MAX 65536
static const char *parse_dim(const char *p, char stop, int *out) {
    long v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9' && v <= IMAGE_DIM_MAX)
        v = v * 10 + (*p++ - '0');
    if (p == start || *p != stop || v < 1 || v > IMAGE_DIM_MAX) return NULL;
    *out = (int)v;
    return stop ? p + 1 : p;
}

/* "CxHxW", each in [1, 65536] (what a dataset may hold), nothing after. */
static int parse_image(const char *text, graft_model_input *in) {
    const char *p = parse_dim(text, 'x', &in->channels);
    if (p) p = parse_dim(p, 'x', &in->height);
    if (p) p = parse_dim(p, '\0', &in->width);
    return p != NULL;
}

int cmd_bench_model(int argc, char **argv) {
    int batch = 32, steps = 5, rounds = 3, classes = 10, seq = 128, vocab = 8192;
    const char *image = "3x64x64", *trainable = NULL;
    int lora_rank = 0;
    cli_option opts[] = {
        {"batch", CLI_INT, &batch, "samples per step (default 32)", 1},
        {"image", CLI_STRING, &image, "image models: CxHxW (default 3x64x64)", 0},
        {"classes", CLI_INT, &classes, "classifiers: outputs (default 10)", 1},
        {"seq", CLI_INT, &seq, "token models: sequence length (default 128)", 1},
        {"vocab", CLI_INT, &vocab, "token models: vocabulary (default 8192)", 1},
        {"steps", CLI_INT, &steps, "timed steps per round (default 5)", 1},
        {"rounds", CLI_INT, &rounds, "alternating rounds; the best is reported (default 3)", 1},
        {"trainable", CLI_STRING, &trainable,
         "glob of the frozen variant's trainable parameters (default: the classifier)", 0},
        {"lora-rank", CLI_INT, &lora_rank,
         "instead of the frozen variant: LoRA adapters of this rank (alpha = 2 x rank) on "
         "model.lora.targets (default: the architecture's attention projection)",
         1},
    };
    int n_pos = 0;
    int rc =
        cli_parse("bench model",
                  "usage: graft bench model ARCH [model.KEY=VALUE ...] [options]\n"
                  "Forward+backward time per step on random data: full fine-tuning next\n"
                  "to a model with only --trainable trainable (stop-backward), e.g.\n"
                  "  graft bench model resnet18 --image 3x64x64 --batch 32\n"
                  "  graft bench model gpt2 model.n_layer=6 model.n_embd=384 model.n_head=6 "
                  "--batch 8\n"
                  "  graft bench model vit model.patch_size=8 model.n_layer=6 model.n_embd=384 "
                  "model.n_head=6 --image 3x64x64 --batch 16\n"
                  "  graft bench model gpt2 model.n_layer=6 model.n_embd=384 model.n_head=6 "
                  "--batch 8 --lora-rank 8",
                  argc, argv, 3, opts, sizeof opts / sizeof opts[0], &n_pos);
    if (rc != GRAFT_EXIT_OK) return rc < 0 ? GRAFT_EXIT_OK : rc;
    if (n_pos < 1) {
        fprintf(stderr, "graft bench model: expected an architecture (%s)\n",
                graft_model_arch_names());
        return GRAFT_EXIT_BAD_INPUT;
    }
    graft_config cfg;
    graft_config_defaults(&cfg);
    char assign[256];
    snprintf(assign, sizeof assign, "model.arch=%s", argv[3]);
    int bad = graft_config_override(&cfg, assign) != GRAFT_OK;
    for (int i = 1; i < n_pos && !bad; i++)
        bad = graft_config_override(&cfg, argv[3 + i]) != GRAFT_OK;
    graft_model_input in = {0};
    const graft_model_desc *desc = graft_model_find(argv[3]);
    int tokens = desc && desc->input == GRAFT_INPUT_TOKENS;
    if (!bad && !tokens && !parse_image(image, &in)) {
        fprintf(stderr,
                "graft bench model: --image: expected CxHxW with each in [1, %d], got '%s'\n",
                IMAGE_DIM_MAX, image);
        bad = 1;
    }
    if (bad) {
        graft_config_free(&cfg);
        return GRAFT_EXIT_BAD_INPUT;
    }
    in.pad_id = -1;
    in.mask_id = 0; /* random tokens: any id can stand for [MASK] */
    if (cfg.model.head_num_classes > 0) classes = cfg.model.head_num_classes;
    if (tokens) {
        in.vocab_size = vocab;
        in.seq_len = seq;
        if (desc->head) in.num_classes = classes; /* a sequence classifier */
    } else {
        in.num_classes = classes;
    }
    /* the full variant never has adapters; the LoRA one has them on the given targets */
    graft_config full = cfg, lora = cfg;
    full.model.lora.targets = (graft_strlist){NULL, 0};
    char *default_target[1] = {desc && desc->lora_example ? (char *)desc->lora_example : NULL};
    if (lora_rank > 0) {
        lora.model.lora.rank = lora_rank;
        lora.model.lora.alpha = 2.0 * lora_rank;
        if (!lora.model.lora.targets.count && default_target[0])
            lora.model.lora.targets = (graft_strlist){default_target, 1};
        if (!lora.model.lora.targets.count) {
            fprintf(stderr, "graft bench model: --lora-rank: %s takes no adapters\n", argv[3]);
            graft_config_free(&cfg);
            return GRAFT_EXIT_BAD_INPUT;
        }
    }
    variant v[2] = {
        {.name = "full", .cfg = &full},
        {.name = lora_rank > 0 ? "lora" : "frozen", .cfg = lora_rank > 0 ? &lora : &full}};
    /* the second variant's trainable glob, from the parameter names alone */
    char head[GRAFT_NAME_MAX + 4];
    graft_model probe = {0};
    graft_status st = graft_model_create(&probe, &full, &in);
    if (st == GRAFT_OK) top_module_glob(probe.params, head, sizeof head);
    graft_model_free(&probe);
    v[1].trainable = lora_rank > 0 ? lora.model.lora.targets.items[0] : trainable ? trainable : head;
    /* each variant's peak RSS alone, measured before this process holds any model */
    fflush(stdout);
    double rss_mb[2] = {-1, -1};
    for (int k = 0; k < 2 && st == GRAFT_OK; k++)
        rss_mb[k] = peak_rss_mb(&v[k], &in, batch, tokens, seq, vocab, classes, steps);
    if (st == GRAFT_OK) st = variant_setup(&v[0], &in, batch);
    if (st == GRAFT_OK) st = variant_setup(&v[1], &in, batch);
    bench_input data = {.B = batch};
    if (st == GRAFT_OK) st = make_input(&data, &in, tokens, seq, vocab, classes);
    if (st == GRAFT_OK) {
        printf("%s, batch %d, %s, %d OpenBLAS thread(s); best of %d rounds of %d steps\n", argv[3],
               batch, tokens ? "tokens" : image, openblas_get_num_threads(), rounds, steps);
        double f, b;
        for (int k = 0; k < 2; k++)
            run_steps(&v[k], &data, 1, &f, &b); /* warm-up */
        for (int k = 0; k < 2; k++)
            v[k].fwd = v[k].bwd = 1e30;
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < 2; k++) {
                run_steps(&v[k], &data, steps, &f, &b);
                if (f + b < v[k].fwd + v[k].bwd) {
                    v[k].fwd = f;
                    v[k].bwd = b;
                }
            }
        printf("%-8s %-24s %14s %10s %10s %10s %12s %7s %14s %12s %12s\n", "variant",
               "trainable", "trainable_floats", "fwd_ms", "bwd_ms", "step_ms", "samples/s",
               "ratio", "allreduce_bytes", "adamw_MB", "peak_rss_MB");
        double full_s = v[0].fwd + v[0].bwd;
        for (int k = 0; k < 2; k++) {
            double s = v[k].fwd + v[k].bwd;
            size_t n = graft_params_numel(v[k].model.params, 1);
            printf("%-8s %-24s %14zu %10.1f %10.1f %10.1f %12.1f %7.3f %14zu %12.2f %12.1f\n",
                   v[k].name, v[k].trainable ? v[k].trainable : "*", n, v[k].fwd * 1e3,
                   v[k].bwd * 1e3, s * 1e3, batch / s, s / full_s, n * sizeof(float),
                   2.0 * (double)n * sizeof(float) / 1048576.0, rss_mb[k]);
        }
        printf("peak_rss_MB: each variant alone in a process of its own (its model, activations,\n"
               "gradients and AdamW state, the batch and the program), after %d steps\n",
               steps + 1);
    }
    free(data.images);
    free(data.tokens);
    free(data.labels);
    for (int k = 0; k < 2; k++)
        graft_model_free(&v[k].model);
    graft_config_free(&cfg);
    return cli_exit_status(st);
}
