/* graft demo: train an MLP classifier on real Fashion-MNIST (single process) and
 * print its test accuracy. The quick start's `make run` runs this. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "models/mlp/mlp.h"
#include "runtime/core/log.h"
#include "runtime/data/idx.h"
#include "runtime/nn/params_io.h"
#include "runtime/optim/optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "512,256" -> cfg->hidden; returns 0 on success. */
static int parse_hidden(const char *text, graft_mlp_config *cfg) {
    cfg->n_hidden = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 65536 || cfg->n_hidden == GRAFT_MLP_MAX_HIDDEN) return -1;
        cfg->hidden[cfg->n_hidden++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return 0;
}

/* Fraction of `data` classified correctly, in batches of the model's max batch. */
static double evaluate(graft_mlp *m, const graft_fmnist *data) {
    size_t correct = 0, pix = (size_t)data->height * data->width;
    int V = m->cfg.num_classes;
    for (size_t start = 0; start < data->count; start += (size_t)m->max_batch) {
        int B = (int)(data->count - start < (size_t)m->max_batch ? data->count - start
                                                                  : (size_t)m->max_batch);
        graft_mlp_forward(m, data->images + start * pix, NULL, B, 0);
        for (int b = 0; b < B; b++) {
            const float *row = m->logits + (size_t)b * V;
            int best = 0;
            for (int c = 1; c < V; c++)
                if (row[c] > row[best]) best = c;
            correct += best == data->labels[start + (size_t)b];
        }
    }
    return data->count ? (double)correct / (double)data->count : 0.0;
}

static void shuffle(size_t *order, size_t n, uint64_t seed, int epoch) {
    graft_rng rng;
    graft_rng_seed(&rng, graft_rng_mix(seed, (uint64_t)epoch));
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)graft_rng_below(&rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

int cmd_demo(int argc, char **argv) {
    const char *data_dir = GRAFT_FMNIST_DIR, *hidden = "512,256", *init = NULL, *save = NULL;
    int epochs = 8, batch = 128, seed = 1, warmup = 100;
    float lr = 1e-3f, weight_decay = 0.01f;
    cli_option opts[] = {
        {"data", CLI_STRING, &data_dir, "directory with the Fashion-MNIST idx .gz files", 0},
        {"epochs", CLI_INT, &epochs, "passes over the training set (default 8)", 1},
        {"batch", CLI_INT, &batch, "batch size (default 128)", 1},
        {"lr", CLI_FLOAT, &lr, "peak AdamW learning rate (default 1e-3)", 1e-12},
        {"weight-decay", CLI_FLOAT, &weight_decay, "AdamW weight decay (default 0.01)", 0},
        {"warmup", CLI_INT, &warmup, "linear warmup steps before cosine decay (default 100)", 0},
        {"hidden", CLI_STRING, &hidden, "hidden layer sizes (default 512,256)", 0},
        {"seed", CLI_INT, &seed, "seed for init and shuffling (default 1)", 0},
        {"init", CLI_STRING, &init, "start from the weights in this safetensors file", 0},
        {"save", CLI_STRING, &save, "write the trained weights to this safetensors file", 0},
    };
    size_t n_opts = sizeof opts / sizeof opts[0];
    int rc = cli_parse("demo", argc, argv, 2, opts, n_opts);
    if (rc < 0) {
        cli_print_help("demo", "Train an MLP on Fashion-MNIST and print test accuracy.", opts,
                       n_opts);
        return GRAFT_EXIT_OK;
    }
    if (rc != GRAFT_EXIT_OK) return rc;
    graft_mlp_config cfg = {.in_dim = 0, .num_classes = 10};
    if (parse_hidden(hidden, &cfg) != 0) {
        fprintf(stderr, "graft demo: --hidden: expected positive sizes like 512,256 (at most %d), got '%s'\n",
                GRAFT_MLP_MAX_HIDDEN, hidden);
        return GRAFT_EXIT_BAD_INPUT;
    }

    graft_fmnist train = {0}, test = {0};
    graft_mlp model = {0};
    graft_optim opt = {0};
    size_t *order = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    graft_status st = graft_fmnist_load(&train, data_dir, "train");
    if (st == GRAFT_OK) st = graft_fmnist_load(&test, data_dir, "t10k");
    if (st != GRAFT_OK) goto done;
    cfg.in_dim = train.height * train.width;
    if (test.height * test.width != cfg.in_dim) {
        GRAFT_ERROR("%s: test images are %dx%d but training images are %dx%d", data_dir,
                    test.height, test.width, train.height, train.width);
        st = GRAFT_ERR_FORMAT;
        goto done;
    }
    st = graft_mlp_init(&model, &cfg);
    if (st == GRAFT_OK) st = graft_mlp_build(&model, batch);
    if (st != GRAFT_OK) goto done;
    graft_mlp_init_weights(&model, (uint64_t)seed);
    if (init) {
        graft_load_report report;
        st = graft_params_load(&model.params, init, 1, &report);
        if (st != GRAFT_OK) goto done;
        printf("graft demo: loaded %d tensors from %s\n", report.matched, init);
    }

    graft_optim_config ocfg;
    graft_optim_config_default(&ocfg, GRAFT_OPTIM_ADAMW);
    ocfg.weight_decay = weight_decay;
    st = graft_optim_init(&opt, &ocfg, &model.params);
    if (st != GRAFT_OK) goto done;
    long steps_per_epoch = (long)((train.count + (size_t)batch - 1) / (size_t)batch);
    graft_lr_schedule sched = {GRAFT_LR_COSINE, lr, warmup, steps_per_epoch * epochs, 0.0f};
    st = graft_lr_schedule_check(&sched);
    if (st != GRAFT_OK) goto done;

    size_t pix = (size_t)cfg.in_dim;
    order = malloc(train.count * sizeof *order);
    xb = malloc((size_t)batch * pix * sizeof *xb);
    yb = malloc((size_t)batch * sizeof *yb);
    if (!order || !xb || !yb) {
        st = GRAFT_ERR_NOMEM;
        goto done;
    }
    printf("graft demo: MLP %d-[%s]-10 (%zu parameters) on Fashion-MNIST, %zu train / %zu test "
           "images, batch %d, AdamW lr %g\n",
           cfg.in_dim, hidden, graft_params_numel(&model.params, 0), train.count, test.count,
           batch, (double)lr);
    double t0 = now_s();
    long step = 0;
    for (int epoch = 0; epoch < epochs; epoch++) {
        shuffle(order, train.count, (uint64_t)seed, epoch);
        double loss_sum = 0;
        for (size_t start = 0; start < train.count; start += (size_t)batch, step++) {
            int B = (int)(train.count - start < (size_t)batch ? train.count - start
                                                                : (size_t)batch);
            for (int b = 0; b < B; b++) {
                size_t i = order[start + (size_t)b];
                memcpy(xb + (size_t)b * pix, train.images + i * pix, pix * sizeof(float));
                yb[b] = train.labels[i];
            }
            graft_params_zero_grad(&model.params);
            loss_sum += graft_mlp_forward(&model, xb, yb, B, 1);
            graft_mlp_backward(&model, 1.0f);
            st = graft_optim_step(&opt, &model.params, graft_lr_at(&sched, step));
            if (st != GRAFT_OK) goto done;
        }
        double acc = evaluate(&model, &test);
        printf("epoch %d/%d  train loss %.4f  test accuracy %.4f  (%.1f s)\n", epoch + 1, epochs,
               loss_sum / (double)steps_per_epoch, acc, now_s() - t0);
        fflush(stdout);
    }
    printf("test accuracy: %.4f\n", evaluate(&model, &test));
    if (save) {
        st = graft_params_save(&model.params, save);
        if (st == GRAFT_OK) printf("graft demo: weights written to %s\n", save);
    }
done:
    free(order);
    free(xb);
    free(yb);
    graft_optim_free(&opt);
    graft_mlp_free(&model);
    graft_fmnist_free(&train);
    graft_fmnist_free(&test);
    return cli_exit_status(st);
}
