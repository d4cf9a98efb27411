/* graft predict: a classifier's top classes for image files or texts, each input prepared
 * exactly as the training data was (graft_predict, train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "runtime/core/check.h"
#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/data/dataset_internal.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/text_records.h"
#include "runtime/data/tokenizer.h"
#include "runtime/io/fs.h"
#include "runtime/io/json.h"
#include "train.h"
#include "train_internal.h"

/* The largest file of text lines read, and the longest text predicted from (a longer
 * one is cut to the sequence length anyway; this bounds the tokenizer's work). */
#define PREDICT_MAX_TEXT_FILE ((size_t)1 << 30)
#define PREDICT_MAX_TEXT ((size_t)1 << 20)

typedef struct predictor {
    const graft_predict_options *o;
    graft_dataset d; /* the training set: sizes, normalisation, tokenizer, class names */
    graft_model m;
    graft_tokenizer *tok; /* sequences */
    graft_resize_mode resize;
    int batch, K, top_k;
    int *order;   /* [K] classes by probability */
    double *prob; /* [top_k] */
    size_t sample_floats;
    float *inputs;   /* images: [batch, C*H*W] */
    int32_t *tokens; /* sequences: [batch, T] */
    int32_t *ids;    /* the tokenizer's output for one text */
    size_t n_ids, cap_ids;
    uint8_t *pixels;   /* one image, CHW */
    char **names;      /* the pending batch's inputs (escaped for printing) */
    long *lines;       /* their line numbers in a text file (0: a whole file) */
    char **raw_names;  /* as given, for JSON */
    int pending;       /* samples in the batch */
    size_t done, failed;
    json_t *results; /* the JSON array, when asked for */
} predictor;

static const char *class_name(const predictor *p, int k, char *buf, size_t size) {
    if (p->d.class_names && p->d.class_names[k]) return p->d.class_names[k];
    snprintf(buf, size, "%d", k);
    return buf;
}

static const float *sort_logits; /* qsort's context (predictions run on one thread) */

/* Higher logit first; equal ones by class index, as torch.topk on CPU keeps them. */
static int by_logit(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_logits[i] != sort_logits[j]) return sort_logits[i] > sort_logits[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* Classes of one row of logits into order[K], most probable first, and the softmax
 * probability of the first top_k into prob (in double). */
static void top_classes(const float *logits, int K, int top_k, int *order, double *prob) {
    for (int k = 0; k < K; k++)
        order[k] = k;
    sort_logits = logits;
    qsort(order, (size_t)K, sizeof *order, by_logit);
    double max = logits[order[0]], sum = 0;
    for (int k = 0; k < K; k++)
        sum += exp((double)logits[k] - max);
    for (int j = 0; j < top_k; j++)
        prob[j] = exp((double)logits[order[j]] - max) / sum;
}

/* A JSON string of text that came from the command line or a file: as it is when it is
 * UTF-8 (JSON holds nothing else), else in its escaped form. */
static json_t *json_text(const char *text) {
    json_t *s = json_string(text);
    if (s) return s;
    char esc[1024];
    return json_string(graft_escape(esc, sizeof esc, text));
}

static json_t *input_json(const char *name, long line) {
    json_t *o = json_object();
    json_object_set_new(o, "input", json_text(name));
    if (line > 0) json_object_set_new(o, "line", json_integer(line));
    return o;
}

/* Run the pending batch and print (and record) one line per input. */
static graft_status flush_batch(predictor *p) {
    if (p->pending == 0) return GRAFT_OK;
    int counted = 0; /* no labels: the loss is not computed */
    /* The buffers stay p's (predictor_free frees them); the analyzer loses them across
     * the call. NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    (void)graft_model_forward(&p->m, p->inputs, p->tokens, NULL, p->pending, 0, &counted);
    const float *logits = graft_model_logits(&p->m);
    int *best = p->order;
    double *prob = p->prob;
    for (int i = 0; i < p->pending; i++) {
        const float *row = logits + (size_t)i * p->K;
        int finite = 1;
        for (int k = 0; k < p->K; k++)
            finite &= isfinite(row[k]) != 0;
        json_t *o = p->results ? input_json(p->raw_names[i], p->lines[i]) : NULL;
        if (!finite) {
            GRAFT_ERROR("%s: the model's output is not finite (NaN or Inf logits)", p->names[i]);
            p->failed++;
            if (o) json_object_set_new(o, "error", json_string("the model's output is not finite"));
        } else {
            top_classes(row, p->K, p->top_k, best, prob);
            printf("%s:", p->names[i]);
            json_t *top = o ? json_array() : NULL;
            for (int j = 0; j < p->top_k; j++) {
                char buf[16], esc[512];
                const char *name = class_name(p, best[j], buf, sizeof buf);
                printf("%s %s %.4f", j ? "," : "", graft_escape(esc, sizeof esc, name), prob[j]);
                if (top)
                    json_array_append_new(top, json_pack("{sssiso}", "class", name, "index",
                                                         best[j], "probability",
                                                         graft_json_real_or_null(prob[j])));
            }
            printf("\n");
            if (o) json_object_set_new(o, "top", top);
            p->done++;
        }
        if (o) json_array_append_new(p->results, o);
        free(p->names[i]);
        free(p->raw_names[i]);
        p->names[i] = p->raw_names[i] = NULL;
    }
    fflush(stdout);
    p->pending = 0;
    return GRAFT_OK;
}

/* An input that cannot be predicted: one line, recorded, and the others go on. Printed
 * after the batch before it so the output keeps the order of the inputs. */
static graft_status input_failed(predictor *p, const char *name, long line, const char *why) {
    GRAFT_TRY(flush_batch(p));
    if (line > 0)
        GRAFT_ERROR("%s:%ld: %s", name, line, why);
    else
        GRAFT_ERROR("%s: %s", name, why);
    p->failed++;
    if (p->results) {
        json_t *o = input_json(name, line);
        json_object_set_new(o, "error", json_string(why));
        json_array_append_new(p->results, o);
    }
    return GRAFT_OK;
}

/* Give the slot just filled its name and run the batch when it is full. */
static graft_status add_to_batch(predictor *p, const char *name, long line) {
    char esc[1024], label[1100];
    graft_escape(esc, sizeof esc, name);
    if (line > 0)
        snprintf(label, sizeof label, "%s:%ld", esc, line);
    else
        snprintf(label, sizeof label, "%s", esc);
    int i = p->pending;
    p->names[i] = strdup(label);
    p->raw_names[i] = strdup(name);
    p->lines[i] = line;
    if (!p->names[i] || !p->raw_names[i]) return GRAFT_ERR_NOMEM;
    p->pending++;
    return p->pending == p->batch ? flush_batch(p) : GRAFT_OK;
}

static graft_status predict_image(predictor *p, const char *path) {
    char why[256];
    graft_status st = graft_images_load(path, p->d.channels, p->d.height, p->d.width, p->resize,
                                        p->pixels, why, sizeof why);
    if (st == GRAFT_ERR_NOMEM) return st;
    if (st != GRAFT_OK) return input_failed(p, path, 0, why);
    float *dst = p->inputs + (size_t)p->pending * p->sample_floats;
    size_t plane = (size_t)p->d.height * (size_t)p->d.width;
    for (int c = 0; c < p->d.channels; c++)
        for (size_t i = 0; i < plane; i++)
            dst[c * plane + i] =
                graft_data_normalize(p->pixels[c * plane + i], p->d.mean[c], p->d.std[c]);
    return add_to_batch(p, path, 0);
}

/* One text, tokenized and padded as `graft data text` writes a sample. */
static graft_status predict_text(predictor *p, const char *name, long line, const char *text,
                                 size_t len) {
    if (len > PREDICT_MAX_TEXT) len = PREDICT_MAX_TEXT;
    int cut = 0, T = p->d.seq_len;
    GRAFT_TRY(graft_tokenizer_encode_sample(p->tok, text, len, T, &p->ids, &p->n_ids,
                                            &p->cap_ids, &cut));
    int32_t *dst = p->tokens + (size_t)p->pending * T;
    for (int t = 0; t < T; t++)
        dst[t] = (size_t)t < p->n_ids ? p->ids[t] : p->d.pad_id;
    return add_to_batch(p, name, line);
}

/* The bytes of a text file, or of the standard input for "-"; the reason in why when
 * they cannot be read. */
static graft_status read_text_input(const char *path, char **data, size_t *len, char *why,
                                    size_t why_size) {
    if (strcmp(path, "-") == 0) {
        size_t cap = 0;
        for (;;) {
            if (*len == cap) {
                cap = cap ? 2 * cap : 65536;
                char *more = cap <= PREDICT_MAX_TEXT_FILE ? realloc(*data, cap) : NULL;
                if (!more) {
                    snprintf(why, why_size, "more than %zu bytes on the standard input",
                             PREDICT_MAX_TEXT_FILE);
                    return cap <= PREDICT_MAX_TEXT_FILE ? GRAFT_ERR_NOMEM : GRAFT_ERR_FORMAT;
                }
                *data = more;
            }
            size_t got = fread(*data + *len, 1, cap - *len, stdin);
            *len += got;
            if (got == 0) break;
        }
        if (ferror(stdin)) {
            snprintf(why, why_size, "cannot read the standard input");
            return GRAFT_ERR_IO;
        }
        return GRAFT_OK;
    }
    graft_status st = graft_fs_read(path, PREDICT_MAX_TEXT_FILE, data, len, GRAFT_LOG_QUIET);
    if (st != GRAFT_OK) {
        snprintf(why, why_size, "%s", graft_log_last_reason(path));
    }
    return st;
}

/* A file of texts: JSONL or CSV records with the text field, else one text per
 * non-empty line. */
static graft_status predict_text_file(predictor *p, const char *path) {
    size_t n = strlen(path);
    int jsonl = n >= 6 && strcasecmp(path + n - 6, ".jsonl") == 0;
    int csv = n >= 4 && strcasecmp(path + n - 4, ".csv") == 0;
    if (jsonl || csv) {
        graft_text_records r;
        graft_status st = graft_text_records_read(
            &r, path, jsonl ? GRAFT_RECORDS_JSONL : GRAFT_RECORDS_CSV, p->o->text_field, NULL, 0);
        if (st != GRAFT_OK) {
            graft_text_records_free(&r);
            if (st == GRAFT_ERR_NOMEM) return st;
            p->failed++; /* its one line is logged */
            return GRAFT_OK;
        }
        p->failed += r.skipped; /* each listed by the reader */
        for (size_t i = 0; st == GRAFT_OK && i < r.n; i++)
            st = predict_text(p, path, (long)r.items[i].line, r.items[i].text,
                              r.items[i].text_len);
        graft_text_records_free(&r);
        return st;
    }
    char *data = NULL, why[512] = "";
    size_t len = 0;
    graft_status st = read_text_input(path, &data, &len, why, sizeof why);
    if (st == GRAFT_ERR_NOMEM) return st;
    if (st == GRAFT_OK && memchr(data, '\0', len)) {
        snprintf(why, sizeof why, "holds NUL bytes: not a text file");
        st = GRAFT_ERR_FORMAT;
    }
    if (st != GRAFT_OK) {
        free(data);
        return input_failed(p, path, 0, why);
    }
    size_t pos = 0;
    long line = 0;
    while (st == GRAFT_OK && pos < len) {
        line++;
        const char *eol = memchr(data + pos, '\n', len - pos);
        size_t end = eol ? (size_t)(eol - data) : len, start = pos;
        pos = end + 1;
        if (end > start && data[end - 1] == '\r') end--;
        size_t blank = start;
        while (blank < end && (data[blank] == ' ' || data[blank] == '\t'))
            blank++;
        if (blank == end) continue;
        st = predict_text(p, path, line, data + start, end - start);
    }
    free(data);
    return st;
}

/* The tokenizer the dataset was written with. */
static graft_status open_tokenizer(predictor *p) {
    if (p->d.vocab_path) return graft_tokenizer_new_vocab(&p->tok, p->d.vocab_path);
    if (strcmp(p->d.tokenizer, "wordpiece") == 0) {
        GRAFT_ERROR("%s: written with --vocab before datasets kept their vocabulary (no "
                    "vocab.txt in it): convert the text again to predict with it",
                    p->d.dir);
        return GRAFT_ERR_FORMAT;
    }
    return graft_tokenizer_new(&p->tok, p->d.tokenizer, NULL);
}

/* Everything that can be wrong before the first input: data, model, weights, buffers. */
static graft_status setup(predictor *p, const graft_config *cfg) {
    const graft_predict_options *o = p->o;
    const char *dir = cfg->data.train ? cfg->data.train : cfg->data.val;
    GRAFT_TRY(graft_dataset_open(&p->d, dir, 0));
    if (p->d.kind == GRAFT_DATA_TOKENS) {
        GRAFT_ERROR("%s holds running text for a language model: graft predict is for "
                    "classifiers of images or labelled text",
                    dir);
        return GRAFT_ERR_CONFIG;
    }
    p->batch = (int)(cfg->data.micro_batch > 0 ? cfg->data.micro_batch : cfg->data.batch_size);
    GRAFT_TRY(train_model_load(&p->m, cfg, &p->d, p->batch, o->weights));
    p->K = p->m.num_outputs;
    p->top_k = o->top_k > 0 ? o->top_k : 5;
    if (p->top_k > p->K) p->top_k = p->K;
    p->resize = p->d.resize && strcmp(p->d.resize, "stretch") == 0 ? GRAFT_RESIZE_STRETCH
                                                                   : GRAFT_RESIZE_SHORTER;
    if (p->d.kind == GRAFT_DATA_SEQUENCES) GRAFT_TRY(open_tokenizer(p));
    p->sample_floats = (size_t)p->d.channels * p->d.height * p->d.width;
    size_t b = (size_t)p->batch;
    p->names = calloc(b, sizeof *p->names);
    p->raw_names = calloc(b, sizeof *p->raw_names);
    p->lines = calloc(b, sizeof *p->lines);
    if (p->d.kind == GRAFT_DATA_IMAGES) {
        p->inputs = malloc(b * p->sample_floats * sizeof *p->inputs);
        p->pixels = malloc(p->sample_floats);
    } else {
        p->tokens = malloc(b * (size_t)p->d.seq_len * sizeof *p->tokens);
    }
    p->order = malloc((size_t)p->K * sizeof *p->order);
    p->prob = malloc((size_t)p->top_k * sizeof *p->prob);
    if (!p->names || !p->raw_names || !p->lines || !p->order || !p->prob || (!p->inputs && !p->tokens) ||
        (p->inputs && !p->pixels)) {
        GRAFT_ERROR("out of memory for a batch of %d inputs", p->batch);
        return GRAFT_ERR_NOMEM;
    }
    if (o->json_path && !(p->results = json_array())) return GRAFT_ERR_NOMEM;
    return GRAFT_OK;
}

static void predictor_free(predictor *p) {
    for (int i = 0; p->names && i < p->batch; i++) {
        free(p->names[i]);
        free(p->raw_names[i]);
    }
    free(p->names);
    free(p->raw_names);
    free(p->lines);
    free(p->order);
    free(p->prob);
    free(p->inputs);
    free(p->tokens);
    free(p->pixels);
    free(p->ids);
    json_decref(p->results);
    graft_tokenizer_free(p->tok);
    graft_model_free(&p->m);
    graft_dataset_close(&p->d);
}

graft_status graft_predict(const graft_config *cfg, const graft_predict_options *o,
                           size_t *predicted, size_t *failed) {
    predictor p;
    memset(&p, 0, sizeof p);
    p.o = o;
    graft_status st = setup(&p, cfg);
    for (int i = 0; st == GRAFT_OK && i < o->n_inputs; i++)
        st = p.d.kind == GRAFT_DATA_IMAGES ? predict_image(&p, o->inputs[i])
                                           : predict_text_file(&p, o->inputs[i]);
    if (st == GRAFT_OK) st = flush_batch(&p);
    if (st == GRAFT_OK && o->json_path) {
        json_t *doc = json_object();
        json_object_set_new(doc, "weights", json_text(o->weights));
        json_object_set_new(doc, "predicted", json_integer((json_int_t)p.done));
        json_object_set_new(doc, "failed", json_integer((json_int_t)p.failed));
        json_object_set(doc, "predictions", p.results);
        st = graft_json_write_atomic(o->json_path, doc,
                                     JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(doc);
    }
    if (st == GRAFT_OK && p.done == 0 && p.failed == 0) {
        GRAFT_ERROR("no inputs to predict (the files hold no text)");
        st = GRAFT_ERR_INVALID_ARG;
    }
    *predicted = p.done;
    *failed = p.failed;
    predictor_free(&p);
    return st;
}
