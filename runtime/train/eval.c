/* Evaluation: the model over a whole dataset (each rank its share, totals summed),
 * its JSON form and per-class table, and `graft eval` (graft_evaluate). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/data/loader.h"
#include "runtime/io/json.h"
#include "runtime/nn/params_io.h"
#include "train.h"
#include "train_internal.h"

void train_eval_result_free(train_eval_result *r) {
    if (!r) return;
    free(r->confusion);
    memset(r, 0, sizeof *r);
}

/* Argmax of one row of logits. */
static int argmax(const float *row, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (row[k] > row[best]) best = k;
    return best;
}

graft_status train_eval_run(graft_model *m, const graft_dataset *d, int batch, int seq_len,
                            graft_comm *comm, train_eval_result *r) {
    memset(r, 0, sizeof *r);
    r->task = m->task;
    int K = m->task == GRAFT_TASK_CLASSIFY ? m->num_outputs : 0;
    r->num_classes = K;
    /* totals[0] = loss sum, [1] = count, then the K*K confusion matrix: one allreduce */
    size_t n_totals = 2 + (size_t)K * K;
    double *totals = calloc(n_totals, sizeof *totals);
    float *reduce = calloc(n_totals, sizeof *reduce);
    graft_loader *loader = NULL;
    graft_status st = (!totals || !reduce) ? GRAFT_ERR_NOMEM : GRAFT_OK;
    if (st == GRAFT_OK)
        st = graft_loader_new_eval(&loader, d, batch, comm->rank, comm->size, seq_len);
    while (st == GRAFT_OK) {
        graft_batch *b;
        st = graft_loader_next(loader, &b, NULL);
        if (st != GRAFT_OK || b->global_n == 0) break;
        if (b->n == 0) continue;
        int counted = 0;
        float loss = graft_model_forward(m, b->inputs, b->tokens, b->labels, b->n, 0, &counted);
        totals[0] += (double)loss * counted;
        totals[1] += counted;
        if (K) {
            const float *logits = graft_model_logits(m);
            for (int i = 0; i < b->n; i++)
                totals[2 + (size_t)b->labels[i] * K + argmax(logits + (size_t)i * K, K)] += 1;
        }
    }
    graft_loader_free(loader);
    /* Sums go over the wire as floats: exact for counts below 2^24 per cell. */
    if (st == GRAFT_OK) {
        for (size_t i = 0; i < n_totals; i++)
            reduce[i] = (float)totals[i];
        graft_comm_set_context(comm, "summing the evaluation totals");
        st = graft_comm_allreduce_sum(comm, reduce, n_totals);
    }
    if (st == GRAFT_OK) {
        if (comm->size > 1)
            for (size_t i = 0; i < n_totals; i++)
                totals[i] = reduce[i];
        r->count = totals[1];
        r->loss = r->count > 0 ? totals[0] / r->count : 0;
        if (K) {
            r->confusion = malloc((size_t)K * K * sizeof *r->confusion);
            if (!r->confusion)
                st = GRAFT_ERR_NOMEM;
            else {
                double correct = 0;
                for (int k = 0; k < K; k++)
                    correct += totals[2 + (size_t)k * K + k];
                memcpy(r->confusion, totals + 2, (size_t)K * K * sizeof *r->confusion);
                r->accuracy = r->count > 0 ? correct / r->count : 0;
            }
        }
    }
    free(totals);
    free(reduce);
    return st;
}

static const char *class_name(const graft_dataset *d, int k, char *buf, size_t size) {
    if (d->class_names && k < d->num_classes && d->class_names[k]) return d->class_names[k];
    snprintf(buf, size, "%d", k);
    return buf;
}

json_t *train_eval_to_json(const train_eval_result *r, const graft_dataset *d, long step) {
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "loss", graft_json_real_or_null(r->loss));
    json_object_set_new(o, "count", json_integer((json_int_t)r->count));
    if (r->task == GRAFT_TASK_LANGUAGE) {
        json_object_set_new(o, "perplexity", graft_json_real_or_null(exp(r->loss)));
        return o;
    }
    int K = r->num_classes;
    json_object_set_new(o, "accuracy", graft_json_real_or_null(r->accuracy));
    json_t *per_class = json_array(), *confusion = json_array();
    for (int k = 0; k < K; k++) {
        double total = 0;
        json_t *row = json_array();
        for (int j = 0; j < K; j++) {
            total += r->confusion[(size_t)k * K + j];
            json_array_append_new(row, json_integer((json_int_t)r->confusion[(size_t)k * K + j]));
        }
        json_array_append_new(confusion, row);
        char buf[16];
        json_t *c = json_object();
        json_object_set_new(c, "class", json_string(class_name(d, k, buf, sizeof buf)));
        json_object_set_new(c, "count", json_integer((json_int_t)total));
        json_object_set_new(c, "accuracy",
                            graft_json_real_or_null(total > 0 ? r->confusion[(size_t)k * K + k] / total : 0));
        json_array_append_new(per_class, c);
    }
    json_object_set_new(o, "per_class", per_class);
    json_object_set_new(o, "confusion", confusion);
    return o;
}

void train_eval_print_per_class(const train_eval_result *r, const graft_dataset *d) {
    if (r->task != GRAFT_TASK_CLASSIFY) return;
    int K = r->num_classes;
    printf("  %-20s %8s %9s\n", "class", "samples", "accuracy");
    for (int k = 0; k < K; k++) {
        double total = 0;
        for (int j = 0; j < K; j++)
            total += r->confusion[(size_t)k * K + j];
        char buf[16], name[1024];
        printf("  %-20s %8.0f %9.4f\n",
               graft_escape(name, sizeof name, class_name(d, k, buf, sizeof buf)), total,
               total > 0 ? r->confusion[(size_t)k * K + k] / total : 0.0);
    }
}

/* graft eval: the weights of a file on data.val (or data.train). */
graft_status graft_evaluate(const graft_config *cfg, const char *weights, const char *json_path,
                            graft_comm *comm) {
    const char *dir = cfg->data.val ? cfg->data.val : cfg->data.train;
    graft_dataset d;
    memset(&d, 0, sizeof d);
    graft_model m;
    memset(&m, 0, sizeof m);
    train_eval_result r;
    memset(&r, 0, sizeof r);
    int batch = (int)(cfg->data.micro_batch > 0 ? cfg->data.micro_batch : cfg->data.batch_size);
    graft_status st = graft_dataset_open(&d, dir, cfg->data.verify);
    if (st == GRAFT_OK) st = train_model_load(&m, cfg, &d, batch, weights);
    /* ranks that hold other data, weights or settings must not sum their shares */
    if (st == GRAFT_OK && comm->size > 1) {
        static const char *const what[] = {"config digest", "evaluation data", "weights"};
        const graft_params *p = m.params;
        uint64_t values[3] = {graft_config_digest(cfg), graft_dataset_digest(&d),
                              XXH64(p->values, p->n_values * sizeof(float), 0)};
        st = graft_comm_check_agreement(comm, what, values, 3);
    }
    if (st == GRAFT_OK) st = train_eval_run(&m, &d, batch, cfg->data.seq_len, comm, &r);
    if (st == GRAFT_OK && comm->rank == 0) {
        char weights_text[1024], dir_text[1024];
        graft_escape(weights_text, sizeof weights_text, weights);
        graft_escape(dir_text, sizeof dir_text, dir);
        if (r.task == GRAFT_TASK_CLASSIFY) {
            printf("%s on %s: loss %.4f, accuracy %.4f (%.0f samples)\n", weights_text, dir_text,
                   r.loss, r.accuracy, r.count);
            train_eval_print_per_class(&r, &d);
        } else {
            printf("%s on %s: loss %.4f, perplexity %.3f\n", weights_text, dir_text, r.loss,
                   exp(r.loss));
        }
        if (json_path) {
            json_t *j = train_eval_to_json(&r, &d, 0);
            st = graft_json_write_atomic(json_path, j, TRAIN_EVAL_JSON_FLAGS);
            json_decref(j);
        }
    }
    train_eval_result_free(&r);
    graft_model_free(&m);
    graft_dataset_close(&d);
    return st;
}
