/* graft data: build sharded datasets (fmnist, images, text, text --classify), look at them
 * (inspect), check their checksums (verify) and measure the loader (bench). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "runtime/core/clock.h"
#include "runtime/core/escape.h"
#include "runtime/core/log.h"
#include "runtime/data/dataset.h"
#include "runtime/data/idx.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/loader.h"
#include "runtime/data/text_records.h"
#include "runtime/data/tokenizer.h"
#include "runtime/io/fs.h"

static const char *const fmnist_class_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* --classes "0-4", "0,2,5" or a mix ("0-2,7") into selected[10]. */
static int parse_classes(const char *text, int selected[10]) {
    memset(selected, 0, 10 * sizeof(int));
    const char *p = text;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p || a < 0 || a > 9) goto bad;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1 || b < a || b > 9) goto bad;
            p = end;
        }
        for (long c = a; c <= b; c++) {
            if (selected[c]) {
                fprintf(stderr, "graft data fmnist: --classes: class %ld is given twice in '%s'\n",
                        c, text);
                return GRAFT_EXIT_BAD_INPUT;
            }
            selected[c] = 1;
        }
        if (*p == ',' && p[1])
            p++;
        else if (*p)
            goto bad;
    }
    if (*text) return GRAFT_EXIT_OK;
bad:
    fprintf(
        stderr,
        "graft data fmnist: --classes: expected class ids in 0-9 like '0-4' or '0,2,5', got '%s'\n",
        text);
    return GRAFT_EXIT_BAD_INPUT;
}

/* Open the dataset just written and print a one-line summary of it. */
static int report_written(const char *dir) {
    graft_dataset d;
    graft_status st = graft_dataset_open(&d, dir, 1);
    if (st != GRAFT_OK) return cli_exit_status(st);
    char dir_text[1024], tokenizer[256];
    dir = graft_escape(dir_text, sizeof dir_text, dir);
    graft_escape(tokenizer, sizeof tokenizer, d.tokenizer ? d.tokenizer : "");
    if (d.kind == GRAFT_DATA_IMAGES) {
        printf("wrote %zu samples of %d classes in %d shard(s), %llu bytes, to %s (mean",
               d.num_samples, d.num_classes, d.n_shards, (unsigned long long)d.total_bytes, dir);
        for (int c = 0; c < d.channels; c++)
            printf(" %.4f", d.mean[c]);
        printf(", std");
        for (int c = 0; c < d.channels; c++)
            printf(" %.4f", d.std[c]);
        printf(")\n");
    } else if (d.kind == GRAFT_DATA_SEQUENCES)
        printf("wrote %zu sequences of %d tokens (%s, vocab %d, pad %d) of %d classes in %d "
               "shard(s), %llu bytes, to %s\n",
               d.num_samples, d.seq_len, tokenizer, d.vocab_size, d.pad_id, d.num_classes,
               d.n_shards, (unsigned long long)d.total_bytes, dir);
    else
        printf("wrote %zu tokens (%s, vocab %d) in %d shard(s), %llu bytes, to %s\n", d.num_tokens,
               tokenizer, d.vocab_size, d.n_shards, (unsigned long long)d.total_bytes, dir);
    graft_dataset_close(&d);
    return GRAFT_EXIT_OK;
}

/* graft data fmnist: convert (a subset of) Fashion-MNIST's idx files to shards. */
/* Once the converter writes the dataset (its input read and its target accepted), an
 * I/O failure (disk full, EIO) is not the input's fault: exit 1, not 2. */
static graft_status while_writing(graft_status st) {
    return st == GRAFT_ERR_IO ? GRAFT_ERR_RUN : st;
}

static int data_fmnist(int argc, char **argv) {
    const char *out = NULL, *split = "train", *classes = NULL, *source = GRAFT_FMNIST_DIR;
    int per_class = 0, shard_size = 8192;
    const cli_option opts[] = {
        {"out", CLI_STRING, &out, "dataset directory to create (required)", 0},
        {"split", CLI_STRING, &split, "train or test (default train)", 0},
        {"classes", CLI_STRING, &classes,
         "keep these classes, e.g. 0-4 or 0,2,5 (relabelled 0..k-1)", 0},
        {"per-class", CLI_INT, &per_class, "keep the first N samples of each class (default all)",
         1},
        {"shard-size", CLI_INT, &shard_size, "samples per shard (default 8192)", 1},
        {"source", CLI_STRING, &source,
         "folder with the idx .gz files (default " GRAFT_FMNIST_DIR ")", 0},
    };
    int rc = cli_parse("data fmnist", "Convert Fashion-MNIST (idx .gz files) to a sharded dataset.",
                       argc, argv, 3, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    if (!out) {
        fprintf(stderr, "graft data fmnist: --out DIR is required\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    const char *prefix = strcmp(split, "train") == 0  ? "train"
                         : strcmp(split, "test") == 0 ? "t10k"
                                                      : NULL;
    if (!prefix) {
        fprintf(stderr, "graft data fmnist: --split: expected 'train' or 'test', got '%s'\n",
                split);
        return GRAFT_EXIT_BAD_INPUT;
    }
    int selected[10];
    if (classes) {
        rc = parse_classes(classes, selected);
        if (rc != GRAFT_EXIT_OK) return rc;
    } else {
        for (int c = 0; c < 10; c++)
            selected[c] = 1;
    }
    int remap[10], k = 0;
    const char *names[10];
    for (int c = 0; c < 10; c++) {
        remap[c] = selected[c] ? k : -1;
        if (selected[c]) names[k++] = fmnist_class_names[c];
    }

    char img_path[4096], lab_path[4096];
    snprintf(img_path, sizeof img_path, "%s/%s-images-idx3-ubyte.gz", source, prefix);
    snprintf(lab_path, sizeof lab_path, "%s/%s-labels-idx1-ubyte.gz", source, prefix);
    graft_idx img = {0}, lab = {0};
    graft_dataset_writer *w = NULL;
    graft_status st = graft_idx_read(&img, img_path);
    if (st == GRAFT_OK) st = graft_idx_read(&lab, lab_path);
    if (st == GRAFT_OK) {
        st = GRAFT_ERR_FORMAT;
        if (img.ndim != 3)
            GRAFT_ERROR("%s: expected 3 dimensions (count, rows, cols), found %d", img_path,
                        img.ndim);
        else if (lab.ndim != 1)
            GRAFT_ERROR("%s: expected 1 dimension (count), found %d", lab_path, lab.ndim);
        else if (img.count != lab.count)
            GRAFT_ERROR("%s: %zu labels but %s has %zu images", lab_path, lab.count, img_path,
                        img.count);
        else
            st = GRAFT_OK;
    }
    for (size_t i = 0; st == GRAFT_OK && i < lab.count; i++) {
        if (lab.data[i] >= 10) {
            GRAFT_ERROR("%s: label %u at item %zu is not a class (expected 0-9)", lab_path,
                        lab.data[i], i);
            st = GRAFT_ERR_FORMAT;
        }
    }
    if (st == GRAFT_OK && (img.dims[1] > 65536 || img.dims[2] > 65536)) { /* before the casts */
        GRAFT_ERROR("%s: images of %ux%u pixels, more than a dataset may hold (65536x65536)",
                    img_path, img.dims[1], img.dims[2]);
        st = GRAFT_ERR_FORMAT;
    }
    if (st == GRAFT_OK)
        st = graft_dataset_writer_new_images(&w, out, 1, (int)img.dims[1], (int)img.dims[2], k,
                                             names, (size_t)shard_size);
    if (st == GRAFT_OK) {
        char desc[200], limit[48] = "all samples";
        if (per_class > 0) snprintf(limit, sizeof limit, "first %d per class", per_class);
        snprintf(desc, sizeof desc, "Fashion-MNIST %s split, classes %s, %s", split,
                 classes ? classes : "0-9", limit);
        st = graft_dataset_writer_set_description(w, desc);
    }
    size_t taken[10] = {0};
    for (size_t i = 0; st == GRAFT_OK && i < img.count; i++) {
        int c = lab.data[i];
        if (remap[c] < 0 || (per_class > 0 && taken[c] >= (size_t)per_class)) continue;
        taken[c]++;
        st = while_writing(
            graft_dataset_writer_add_image(w, img.data + i * img.item_size, remap[c]));
    }
    if (st == GRAFT_OK) st = while_writing(graft_dataset_writer_finish(w));
    graft_dataset_writer_free(w);
    graft_idx_free(&img);
    graft_idx_free(&lab);
    if (st != GRAFT_OK) return cli_exit_status(st);
    return report_written(out);
}

/* Read a whole file; NULL with a one-line error. */
static char *read_file(const char *path, size_t *len) {
    char *text;
    return graft_fs_read(path, 0, &text, len, GRAFT_LOG_ERROR) == GRAFT_OK ? text : NULL;
}

/* Does the text hold a fortune separator (a line that is exactly "%")? */
static int has_fortune_separator(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '%' || (i > 0 && text[i - 1] != '\n')) continue;
        if (i + 1 == len || text[i + 1] == '\n' ||
            (text[i + 1] == '\r' && (i + 2 == len || text[i + 2] == '\n')))
            return 1;
    }
    return 0;
}

typedef struct text_job {
    graft_tokenizer *tok;
    graft_dataset_writer *w;
    int32_t *ids;
    size_t n, cap;
    long documents;
    /* --classify: every document is one sample of class `label` */
    int classify, label, seq_len;
    long truncated, padded;
} text_job;

static int is_blank(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') return 0;
    return 1;
}

/* --classify: one document as one sample of T tokens; blank documents are skipped. */
static graft_status add_sample(text_job *job, const char *text, size_t len) {
    if (is_blank(text, len)) return GRAFT_OK;
    int truncated = 0;
    graft_status st = graft_tokenizer_encode_sample(job->tok, text, len, job->seq_len, &job->ids,
                                                    &job->n, &job->cap, &truncated);
    if (st == GRAFT_OK)
        st = graft_dataset_writer_add_sequence(job->w, job->ids, job->n, job->label);
    if (st != GRAFT_OK) return st;
    job->documents++;
    job->truncated += truncated;
    job->padded += job->n < (size_t)job->seq_len;
    return GRAFT_OK;
}

/* Tokenize one document, preceded by the EOT token when it is not the first. */
static graft_status add_document(text_job *job, const char *text, size_t len) {
    if (job->classify) return add_sample(job, text, len);
    if (len == 0) return GRAFT_OK;
    job->n = 0;
    int eot = graft_tokenizer_eot(job->tok);
    if (job->documents > 0 && eot >= 0) {
        int32_t e = eot;
        graft_status st = graft_dataset_writer_add_tokens(job->w, &e, 1);
        if (st != GRAFT_OK) return st;
    }
    graft_status st = graft_tokenizer_encode(job->tok, text, len, &job->ids, &job->n, &job->cap);
    if (st == GRAFT_OK) st = graft_dataset_writer_add_tokens(job->w, job->ids, job->n);
    if (st == GRAFT_OK) job->documents++;
    return st;
}

/* One file: one document, or one per fortune when it holds "%" separator lines. */
static graft_status add_file(text_job *job, const char *text, size_t len) {
    if (!has_fortune_separator(text, len)) return add_document(job, text, len);
    size_t start = 0, i = 0;
    while (i <= len) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n')
            eol++;
        size_t line_len = eol - i;
        if (line_len > 0 && text[eol - 1] == '\r') line_len--;
        if (line_len == 1 && text[i] == '%') {
            graft_status st = add_document(job, text + start, i - start);
            if (st != GRAFT_OK) return st;
            start = eol < len ? eol + 1 : len;
        }
        i = eol + 1;
    }
    return start < len ? add_document(job, text + start, len - start) : GRAFT_OK;
}

/* The class name of a file: its base name. */
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* --classify: one class per file, named after it; two files may not share a name. */
static int check_class_files(char **files, int n_files) {
    for (int f = 0; f < n_files; f++)
        for (int g = 0; g < f; g++)
            if (strcmp(base_name(files[f]), base_name(files[g])) == 0) {
                fprintf(stderr,
                        "graft data text: %s and %s would both be class '%s' (one class per file "
                        "name)\n",
                        files[g], files[f], base_name(files[f]));
                return GRAFT_EXIT_BAD_INPUT;
            }
    return GRAFT_EXIT_OK;
}

/* The tokenizer of --tokenizer NAME or --vocab FILE (a WordPiece vocab.txt). */
static graft_status open_tokenizer(graft_tokenizer **tok, const char *name, const char *vocab) {
    return vocab ? graft_tokenizer_new_vocab(tok, vocab) : graft_tokenizer_new(tok, name, NULL);
}

/* The id padding short samples: the tokenizer's [PAD], else its end of text, else 0. */
static int sample_pad_id(const graft_tokenizer *tok) {
    int pad = graft_tokenizer_special(tok, GRAFT_TOKEN_PAD);
    if (pad >= 0) return pad;
    int eot = graft_tokenizer_eot(tok);
    return eot >= 0 ? eot : 0;
}

/* Labels sort as numbers when every one is an integer, else as byte strings. */
static int g_labels_numeric;

static int is_integer_text(const char *s) {
    if (*s == '-') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int cmp_labels(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    if (g_labels_numeric) {
        long long u = strtoll(x, NULL, 10), v = strtoll(y, NULL, 10);
        if (u != v) return (u > v) - (u < v);
    }
    return strcmp(x, y);
}

/* Class names: --labels a,b,c as given, or the distinct labels of the records, sorted.
 * *names points into *storage or the records; free both. */
static graft_status class_names(const char *labels, const graft_text_records *recs,
                                char **storage, const char ***names, int *n_names) {
    *storage = NULL;
    *n_names = 0;
    size_t most = labels ? strlen(labels) + 1 : recs->n;
    *names = malloc((most ? most : 1) * sizeof **names);
    if (!*names) return GRAFT_ERR_NOMEM;
    size_t n = 0;
    if (labels) {
        *storage = strdup(labels);
        if (!*storage) return GRAFT_ERR_NOMEM;
        for (char *p = *storage;;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (!*p) {
                GRAFT_ERROR("--labels: an empty label in \"%s\" (expected names like a,b,c)",
                            labels);
                return GRAFT_ERR_INVALID_ARG;
            }
            for (size_t k = 0; k < n; k++)
                if (strcmp((*names)[k], p) == 0) {
                    GRAFT_ERROR("--labels: \"%s\" is given twice", p);
                    return GRAFT_ERR_INVALID_ARG;
                }
            (*names)[n++] = p;
            if (!comma) break;
            p = comma + 1;
        }
    } else {
        g_labels_numeric = 1;
        for (size_t i = 0; i < recs->n; i++) {
            (*names)[n++] = recs->items[i].label;
            g_labels_numeric = g_labels_numeric && is_integer_text(recs->items[i].label);
        }
        qsort(*names, n, sizeof **names, cmp_labels);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || strcmp((*names)[k - 1], (*names)[i]) != 0) (*names)[k++] = (*names)[i];
        n = k;
    }
    if (n > 65536) {
        GRAFT_ERROR("%zu classes: more than a dataset may hold (65536)", n);
        return GRAFT_ERR_INVALID_ARG;
    }
    *n_names = (int)n;
    return GRAFT_OK;
}

/* The class of a record's label, or -1. */
static int label_class(const char *const *names, int n_names, const char *label) {
    for (int c = 0; c < n_names; c++)
        if (strcmp(names[c], label) == 0) return c;
    return -1;
}

typedef struct {
    const char *format, *text_field, *label_field, *labels, *tokenizer, *vocab, *out;
    int seq_len, shard_size, strict;
} records_job;

/* graft data text --format jsonl|csv: one labelled sample per record. Everything is
 * read and checked before the dataset is created: on bad input nothing is written. */
static int data_records(const records_job *job, char **files, int n_files) {
    graft_records_format format = strcmp(job->format, "csv") == 0 ? GRAFT_RECORDS_CSV
                                                                   : GRAFT_RECORDS_JSONL;
    graft_text_records *recs = calloc((size_t)n_files, sizeof *recs);
    graft_tokenizer *tok = NULL;
    graft_dataset_writer *w = NULL;
    char *storage = NULL;
    const char **names = NULL;
    int n_names = 0, *classes = NULL;
    int32_t *ids = NULL;
    size_t total = 0, skipped = 0, n = 0, cap = 0;
    long truncated = 0, padded = 0;
    graft_status st = recs ? GRAFT_OK : GRAFT_ERR_NOMEM;
    if (st == GRAFT_OK) st = open_tokenizer(&tok, job->tokenizer, job->vocab);
    for (int f = 0; st == GRAFT_OK && f < n_files; f++) {
        st = graft_text_records_read(&recs[f], files[f], format, job->text_field,
                                     job->label_field, job->strict);
        total += recs[f].n;
        skipped += recs[f].skipped;
    }
    if (st == GRAFT_OK && total == 0) {
        GRAFT_ERROR("%s: no record with a \"%s\" and a \"%s\" field to make a sample of",
                    files[0], job->text_field, job->label_field);
        st = GRAFT_ERR_FORMAT;
    }
    /* all records in one list for the class names: the first file's array grows */
    graft_text_records all = {0};
    if (st == GRAFT_OK) {
        all.items = malloc(total * sizeof *all.items);
        st = all.items ? GRAFT_OK : GRAFT_ERR_NOMEM;
        for (int f = 0; st == GRAFT_OK && f < n_files; f++)
            for (size_t i = 0; i < recs[f].n; i++)
                all.items[all.n++] = recs[f].items[i];
    }
    if (st == GRAFT_OK) st = class_names(job->labels, &all, &storage, &names, &n_names);
    if (st == GRAFT_OK) {
        classes = malloc(total * sizeof *classes);
        st = classes ? GRAFT_OK : GRAFT_ERR_NOMEM;
    }
    for (size_t i = 0, f = 0, k = 0; st == GRAFT_OK && i < all.n; i++, k++) {
        while (k >= recs[f].n)
            f++, k = 0;
        classes[i] = label_class(names, n_names, all.items[i].label);
        if (classes[i] < 0) {
            char label[128];
            GRAFT_ERROR("%s:%zu: label \"%s\" is not one of --labels %s", files[f],
                        all.items[i].line, graft_escape(label, sizeof label, all.items[i].label),
                        job->labels);
            st = GRAFT_ERR_FORMAT;
        }
    }
    if (st == GRAFT_OK) {
        int shard = job->shard_size ? job->shard_size
                                    : (10000000 + job->seq_len - 1) / job->seq_len;
        st = graft_dataset_writer_new_sequences(
            &w, job->out, job->vocab ? "wordpiece" : job->tokenizer,
            graft_tokenizer_vocab_size(tok), job->seq_len, sample_pad_id(tok), n_names, names,
            (size_t)shard);
    }
    int mask = st == GRAFT_OK ? graft_tokenizer_special(tok, GRAFT_TOKEN_MASK) : -1;
    if (st == GRAFT_OK && mask >= 0) st = graft_dataset_writer_set_mask_id(w, mask);
    if (st == GRAFT_OK && job->vocab) st = graft_dataset_writer_set_vocab_file(w, job->vocab);
    if (st == GRAFT_OK) {
        char desc[512];
        snprintf(desc, sizeof desc,
                 "%zu %s record(s) of %d file(s), text \"%.60s\", label \"%.60s\", tokenized "
                 "with %.200s to %d tokens",
                 total, job->format, n_files, job->text_field, job->label_field,
                 job->vocab ? job->vocab : job->tokenizer, job->seq_len);
        st = graft_dataset_writer_set_description(w, desc);
    }
    for (size_t i = 0; st == GRAFT_OK && i < all.n; i++) {
        int cut = 0;
        st = graft_tokenizer_encode_sample(tok, all.items[i].text, all.items[i].text_len,
                                           job->seq_len, &ids, &n, &cap, &cut);
        if (st == GRAFT_OK)
            st = while_writing(graft_dataset_writer_add_sequence(w, ids, n, classes[i]));
        truncated += cut;
        padded += n < (size_t)job->seq_len;
    }
    if (st == GRAFT_OK) st = while_writing(graft_dataset_writer_finish(w));
    graft_dataset_writer_free(w);
    free(all.items);
    for (int f = 0; recs && f < n_files; f++)
        graft_text_records_free(&recs[f]);
    free(recs);
    free(names);
    free(storage);
    free(classes);
    free(ids);
    graft_tokenizer_free(tok);
    if (st != GRAFT_OK) return cli_exit_status(st);
    printf("%zu record(s) in %d classes (%zu malformed skipped): %ld truncated to %d tokens, "
           "%ld padded\n",
           total, n_names, skipped, truncated, job->seq_len, padded);
    return report_written(job->out);
}

/* graft data text: tokenize text files into a token dataset, or with --classify into
 * labelled sequences (one class per file, one sample per document), or with --format
 * into labelled sequences (one sample per JSON Lines / CSV record). */
static int data_text(int argc, char **argv) {
    const char *out = NULL, *tokenizer = NULL, *vocab = NULL, *format = NULL;
    const char *text_field = "text", *label_field = "label", *labels = NULL;
    int shard_size = 0, classify = 0, seq_len = 0, strict = 0;
    const cli_option opts[] = {
        {"out", CLI_STRING, &out, "dataset directory to create (required)", 0},
        {"tokenizer", CLI_STRING, &tokenizer,
         "gpt2, bytes or bert-base-uncased (required unless --vocab)", 0},
        {"vocab", CLI_STRING, &vocab,
         "a WordPiece vocab.txt (one token per line): BERT's uncased tokenizer with it", 0},
        {"classify", CLI_FLAG, &classify,
         "labelled sequences: every FILE is a class (named after the file), every document a "
         "sample",
         0},
        {"format", CLI_STRING, &format,
         "jsonl or csv: labelled sequences, one sample per record of the FILEs", 0},
        {"text-field", CLI_STRING, &text_field, "with --format: the text's field (default text)",
         0},
        {"label-field", CLI_STRING, &label_field,
         "with --format: the label's field (default label)", 0},
        {"labels", CLI_STRING, &labels,
         "with --format: the classes in order, e.g. neg,pos (default: the labels found, "
         "sorted); another label is an error",
         0},
        {"strict", CLI_FLAG, &strict,
         "with --format: a malformed record is an error (default: reported and skipped)", 0},
        {"seq-len", CLI_INT, &seq_len,
         "with --classify or --format (required): tokens per sample; longer documents are "
         "truncated, shorter ones padded (bert: [CLS] text [SEP] then [PAD]; gpt2: with "
         "<|endoftext|> 50256; bytes: with 0)",
         1},
        {"shard-size", CLI_INT, &shard_size,
         "tokens per shard (default 10000000); with --classify or --format samples per shard "
         "(default 10000000 / seq-len)",
         1},
    };
    int n_files = 0;
    int rc = cli_parse("data text",
                       "Tokenize text FILEs (one document each; fortune files: one per '%' "
                       "separated entry) into a token dataset, or with --classify into a "
                       "sequences dataset for classification, or with --format jsonl|csv "
                       "labelled records into one. Usage: graft data text --out DIR "
                       "--tokenizer gpt2|bytes|bert-base-uncased [--classify --seq-len T | "
                       "--format jsonl|csv [--text-field F] [--label-field L] [--labels a,b] "
                       "--seq-len T] FILE...",
                       argc, argv, 3, opts, sizeof opts / sizeof opts[0], &n_files);
    char **files = argv + 3;
    int labelled = classify || format;
    if (rc == GRAFT_EXIT_OK) {
        rc = GRAFT_EXIT_BAD_INPUT;
        if (!out || (!tokenizer && !vocab))
            fprintf(stderr, "graft data text: --out DIR and --tokenizer "
                            "gpt2|bytes|bert-base-uncased (or --vocab FILE) are required\n");
        else if (tokenizer && vocab)
            fprintf(stderr, "graft data text: --vocab FILE is a tokenizer of its own: give "
                            "--tokenizer or --vocab, not both\n");
        else if (tokenizer && strcmp(tokenizer, "gpt2") != 0 && strcmp(tokenizer, "bytes") != 0 &&
                 strcmp(tokenizer, "bert-base-uncased") != 0)
            fprintf(stderr,
                    "graft data text: --tokenizer: expected 'gpt2', 'bytes' or "
                    "'bert-base-uncased', got '%s'\n",
                    tokenizer);
        else if (n_files == 0)
            fprintf(stderr, "graft data text: no input FILE given\n");
        else if (format && strcmp(format, "jsonl") != 0 && strcmp(format, "csv") != 0)
            fprintf(stderr, "graft data text: --format: expected 'jsonl' or 'csv', got '%s'\n",
                    format);
        else if (classify && format)
            fprintf(stderr, "graft data text: --classify (a class per file) and --format (a "
                            "label per record) exclude each other\n");
        else if (labelled && seq_len == 0)
            fprintf(stderr, "graft data text: --%s needs --seq-len T (tokens per sample)\n",
                    classify ? "classify" : "format");
        else if (!labelled && seq_len != 0)
            fprintf(stderr, "graft data text: --seq-len is for --classify and --format (token "
                            "datasets are cut into windows by data.seq_len at training time)\n");
        else if (!format && (labels || strict))
            fprintf(stderr, "graft data text: --%s is for --format\n",
                    labels ? "labels" : "strict");
        else if (!*text_field || !*label_field)
            fprintf(stderr, "graft data text: --text-field and --label-field need a name\n");
        else
            rc = classify ? check_class_files(files, n_files) : GRAFT_EXIT_OK;
    }
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    if (format) {
        const records_job job = {format, text_field, label_field, labels, tokenizer, vocab,
                                 out,    seq_len,    shard_size,  strict};
        return data_records(&job, files, n_files);
    }
    if (shard_size == 0) shard_size = classify ? (10000000 + seq_len - 1) / seq_len : 10000000;
    text_job job = {.classify = classify, .seq_len = seq_len};
    graft_status st = open_tokenizer(&job.tok, tokenizer, vocab);
    int vocab_size = st == GRAFT_OK ? graft_tokenizer_vocab_size(job.tok) : 0;
    if (vocab) tokenizer = "wordpiece";
    if (st == GRAFT_OK && classify) {
        const char **names = malloc((size_t)n_files * sizeof *names);
        st = names ? GRAFT_OK : GRAFT_ERR_NOMEM;
        for (int f = 0; names && f < n_files; f++)
            names[f] = base_name(files[f]);
        if (st == GRAFT_OK)
            st = graft_dataset_writer_new_sequences(&job.w, out, tokenizer, vocab_size, seq_len,
                                                    sample_pad_id(job.tok), n_files, names,
                                                    (size_t)shard_size);
        free(names);
    } else if (st == GRAFT_OK) {
        st = graft_dataset_writer_new_tokens(&job.w, out, tokenizer, vocab_size,
                                             (size_t)shard_size);
    }
    int mask = st == GRAFT_OK ? graft_tokenizer_special(job.tok, GRAFT_TOKEN_MASK) : -1;
    if (st == GRAFT_OK && mask >= 0) st = graft_dataset_writer_set_mask_id(job.w, mask);
    if (st == GRAFT_OK && vocab) st = graft_dataset_writer_set_vocab_file(job.w, vocab);
    if (st == GRAFT_OK) {
        char desc[200];
        if (classify)
            snprintf(desc, sizeof desc,
                     "%d text file(s) as classes, one sample per document, tokenized with %s "
                     "to %d tokens",
                     n_files, tokenizer, seq_len);
        else
            snprintf(desc, sizeof desc, "%d text file(s) tokenized with %s", n_files, tokenizer);
        st = graft_dataset_writer_set_description(job.w, desc);
    }
    for (int f = 0; st == GRAFT_OK && f < n_files; f++) {
        size_t len = 0;
        char *text = read_file(files[f], &len);
        if (!text) {
            st = GRAFT_ERR_IO;
            break;
        }
        long before = job.documents;
        job.label = f;
        st = while_writing(add_file(&job, text, len));
        free(text);
        if (st == GRAFT_OK && classify && job.documents == before) {
            fprintf(stderr, "graft data text: %s: empty file (no document to make a sample of)\n",
                    files[f]);
            st = GRAFT_ERR_INVALID_ARG;
        }
    }
    if (st == GRAFT_OK) st = while_writing(graft_dataset_writer_finish(job.w));
    graft_dataset_writer_free(job.w);
    graft_tokenizer_free(job.tok);
    free(job.ids);
    if (st != GRAFT_OK) return cli_exit_status(st);
    if (classify)
        printf("%ld document(s) in %d classes: %ld truncated to %d tokens, %ld padded\n",
               job.documents, n_files, job.truncated, seq_len, job.padded);
    else
        printf("%ld document(s)\n", job.documents);
    return report_written(out);
}

/* --size S or HxW into *h, *w (each 1..GRAFT_IMAGES_MAX_SIDE). */
static int parse_size(const char *text, int *h, int *w) {
    char *end;
    long a = strtol(text, &end, 10), b = a;
    if (end != text && *end == 'x') {
        const char *second = end + 1;
        b = strtol(second, &end, 10);
        if (end == second) a = 0;
    }
    if (end == text || *end || a < 1 || b < 1 || a > GRAFT_IMAGES_MAX_SIDE ||
        b > GRAFT_IMAGES_MAX_SIDE) {
        fprintf(stderr, "graft data images: --size: expected S or HxW with sides 1..%d, got '%s'\n",
                GRAFT_IMAGES_MAX_SIDE, text);
        return GRAFT_EXIT_BAD_INPUT;
    }
    *h = (int)a;
    *w = (int)b;
    return GRAFT_EXIT_OK;
}

/* The checks of data images' flags that need no file: one line and exit 2 each. */
static int check_images_flags(graft_images_options *o, const char *size, const char *resize,
                              int n_pos, int seed) {
    if (!o->out) {
        fprintf(stderr, "graft data images: --out DIR is required\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (n_pos > 1 || (n_pos == 0 && !o->csv)) {
        fprintf(stderr,
                "graft data images: expected one ROOT folder (or --csv FILE), got %d "
                "arguments\n",
                n_pos);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (parse_size(size, &o->height, &o->width) != GRAFT_EXIT_OK) return GRAFT_EXIT_BAD_INPUT;
    if (strcmp(resize, "shorter") == 0) {
        o->mode = GRAFT_RESIZE_SHORTER;
    } else if (strcmp(resize, "stretch") == 0) {
        o->mode = GRAFT_RESIZE_STRETCH;
    } else {
        fprintf(stderr, "graft data images: --resize: expected 'shorter' or 'stretch', got '%s'\n",
                resize);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (o->channels != 1 && o->channels != 3) {
        fprintf(stderr, "graft data images: --channels: expected 1 or 3, got %d\n", o->channels);
        return GRAFT_EXIT_BAD_INPUT;
    }
    int has_fraction = o->val_fraction != 0;
    if (has_fraction && !(o->val_fraction > 0 && o->val_fraction < 1)) {
        fprintf(stderr, "graft data images: --val-fraction: expected a number in (0, 1), got %g\n",
                o->val_fraction);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (has_fraction != (o->val_out != NULL)) {
        fprintf(stderr, "graft data images: --val-fraction F and --val-out DIR go together\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (o->val_out && strcmp(o->val_out, o->out) == 0) {
        fprintf(stderr, "graft data images: --val-out must differ from --out (%s)\n", o->out);
        return GRAFT_EXIT_BAD_INPUT;
    }
    o->seed = (uint64_t)seed;
    return GRAFT_EXIT_OK;
}

/* graft data images: JPEG/PNG files in class folders (or a CSV) to an images dataset. */
static int data_images(int argc, char **argv) {
    graft_images_options o = {.channels = 3};
    const char *size = "224", *resize = "shorter";
    int shard_size = 4096, strict = 0, seed = 0, threads = 0;
    float val_fraction = 0;
    const cli_option opts[] = {
        {"out", CLI_STRING, &o.out, "dataset directory to create (required)", 0},
        {"size", CLI_STRING, &size, "S (square) or HxW, the sample size (default 224)", 0},
        {"resize", CLI_STRING, &resize,
         "shorter: shorter side to the size, then centre crop (torchvision Resize+CenterCrop, "
         "the default); stretch: both sides to the size",
         0},
        {"channels", CLI_INT, &o.channels, "3 (RGB, the default) or 1 (grayscale)", 1},
        {"val-fraction", CLI_FLOAT, &val_fraction,
         "this fraction of every class goes to --val-out (seeded, stratified)", 0},
        {"val-out", CLI_STRING, &o.val_out, "the validation dataset directory", 0},
        {"seed", CLI_INT, &seed, "seed of the train/val split (default 0)", 0},
        {"shard-size", CLI_INT, &shard_size, "samples per shard (default 4096)", 1},
        {"strict", CLI_FLAG, &strict, "an unreadable image file is an error (exit 2), not skipped",
         0},
        {"csv", CLI_STRING, &o.csv,
         "a CSV of path,label rows instead of class folders (paths relative to ROOT when given, "
         "else to the CSV's folder)",
         0},
        {"threads", CLI_INT, &threads, "decoding threads (default: cores, at most 4; at most 16)",
         1},
    };
    int n_pos = 0;
    int rc = cli_parse("data images",
                       "Convert JPEG/PNG images to a sharded images dataset. Usage: graft data "
                       "images --out DIR [options] ROOT (ROOT/<class>/*.jpg|jpeg|png, as "
                       "torchvision's ImageFolder), or --csv FILE [ROOT]",
                       argc, argv, 3, opts, sizeof opts / sizeof opts[0], &n_pos);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    o.val_fraction = val_fraction;
    rc = check_images_flags(&o, size, resize, n_pos, seed);
    if (rc != GRAFT_EXIT_OK) return rc;
    o.root = n_pos ? argv[3] : NULL;
    o.shard_size = (size_t)shard_size;
    o.strict = strict;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = threads ? threads : (cores < 1 ? 1 : cores > 4 ? 4 : (int)cores);
    o.progress = isatty(fileno(stderr)) ? stderr : NULL;
    graft_images_result res;
    graft_status st = graft_images_convert(&o, &res);
    char path[1024], reason[1024];
    for (size_t i = 0; i < res.n_skipped; i++)
        fprintf(stderr, "%s %s: %s\n", strict ? "unreadable" : "skipped",
                graft_escape(path, sizeof path, res.skipped[i].path),
                graft_escape(reason, sizeof reason, res.skipped[i].reason));
    if (st == GRAFT_OK)
        printf("%zu image file(s) in %d classes: %zu for training, %zu for validation, %zu "
               "skipped%s; %zu other file(s) ignored (not .jpg, .jpeg or .png)\n",
               res.found, res.num_classes, res.train, res.val, res.n_skipped,
               res.n_skipped ? " (listed on stderr)" : "", res.ignored);
    graft_images_result_free(&res);
    if (st != GRAFT_OK) return cli_exit_status(st);
    rc = report_written(o.out);
    if (rc == GRAFT_EXIT_OK && o.val_out) rc = report_written(o.val_out);
    return rc;
}

/* Parse the single DIR argument of inspect / verify / bench (plus options). */
static int dir_command(const char *command, const char *summary, int argc, char **argv,
                       const cli_option *opts, size_t n_opts, const char **dir) {
    int n_pos = 0;
    int rc = cli_parse(command, summary, argc, argv, 3, opts, n_opts, &n_pos);
    if (rc == GRAFT_EXIT_OK && n_pos != 1) {
        fprintf(stderr, "graft %s: expected one dataset directory, got %d arguments\n", command,
                n_pos);
        rc = GRAFT_EXIT_BAD_INPUT;
    }
    if (rc == GRAFT_EXIT_OK) *dir = argv[3];
    return rc;
}

/* graft data inspect DIR: what the dataset holds. */
static int data_inspect(int argc, char **argv) {
    const char *dir = NULL;
    int rc = dir_command("data inspect", "Summarise a dataset directory (graft data inspect DIR).",
                         argc, argv, NULL, 0, &dir);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    graft_dataset d;
    graft_status st = graft_dataset_open(&d, dir, 0);
    if (st != GRAFT_OK) return cli_exit_status(st);
    /* everything but the numbers comes from the dataset's files: escaped */
    char text[1024];
    printf("%s: graft dataset, %s\n", graft_escape(text, sizeof text, dir),
           graft_dataset_kind_name(d.kind));
    if (d.description) {
        fputs("  description: ", stdout);
        graft_fputs_escaped(d.description, stdout);
        putchar('\n');
    }
    if (d.kind == GRAFT_DATA_IMAGES) {
        printf("  samples:     %zu\n", d.num_samples);
        printf("  shape:       [%d, %d, %d] U8 (C, H, W), labels I64\n", d.channels, d.height,
               d.width);
        printf("  normalize:   mean [");
        for (int c = 0; c < d.channels; c++)
            printf(c ? ", %.4f" : "%.4f", d.mean[c]);
        printf("] std [");
        for (int c = 0; c < d.channels; c++)
            printf(c ? ", %.4f" : "%.4f", d.std[c]);
        printf("]\n");
        if (d.resize) printf("  resize:      %s\n", d.resize);
    } else if (d.kind == GRAFT_DATA_SEQUENCES) {
        printf("  samples:     %zu\n", d.num_samples);
        printf("  shape:       [%d] %s token ids, padded with %d, labels I64\n", d.seq_len,
               graft_dtype_name(d.token_dtype), d.pad_id);
        printf("  tokenizer:   %s (vocab %d%s)\n", graft_escape(text, sizeof text, d.tokenizer),
               d.vocab_size, d.vocab_path ? ", stored in " GRAFT_DATASET_VOCAB_FILE : "");
    } else {
        printf("  tokens:      %zu\n", d.num_tokens);
        printf("  tokenizer:   %s (vocab %d%s), stored as %s\n",
               graft_escape(text, sizeof text, d.tokenizer), d.vocab_size,
               d.vocab_path ? ", stored in " GRAFT_DATASET_VOCAB_FILE : "",
               graft_dtype_name(d.token_dtype));
    }
    if (d.kind != GRAFT_DATA_TOKENS) {
        printf("  classes:     %d\n", d.num_classes);
        for (int c = 0; c < d.num_classes; c++)
            printf("    %3d %-20s %zu\n", c,
                   graft_escape(text, sizeof text, d.class_names ? d.class_names[c] : ""),
                   d.class_counts[c]);
    }
    printf("  shards:      %d, %llu bytes in total\n", d.n_shards,
           (unsigned long long)d.total_bytes);
    for (int i = 0; i < d.n_shards; i++)
        printf("    %-28s %10zu %s %12llu bytes  xxh64 %s\n",
               graft_escape(text, sizeof text, d.shard_files[i]),
               d.shard_first[i + 1] - d.shard_first[i],
               d.kind == GRAFT_DATA_TOKENS ? "tokens " : "samples",
               (unsigned long long)d.shard_bytes[i], d.shard_xxh64[i][0] ? d.shard_xxh64[i] : "-");
    graft_dataset_close(&d);
    return GRAFT_EXIT_OK;
}

/* graft data verify DIR: recompute every checksum. */
static int data_verify(int argc, char **argv) {
    const char *dir = NULL;
    int rc = dir_command("data verify",
                         "Check a dataset against its index, recomputing every shard's xxh64 "
                         "(graft data verify DIR).",
                         argc, argv, NULL, 0, &dir);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    graft_dataset d;
    graft_status st = graft_dataset_open(&d, dir, 1);
    if (st != GRAFT_OK) return cli_exit_status(st);
    if (d.n_verified == 0) { /* "ok" would vouch for data nobody checked */
        fprintf(stderr, "graft data verify: %s: nothing to verify: %s\n", dir,
                d.n_shards ? "no shard has a checksum in index.json" : "index.json lists no shard");
        graft_dataset_close(&d);
        return GRAFT_EXIT_BAD_INPUT;
    }
    if (d.n_verified == d.n_shards)
        printf("ok: %d shards verified\n", d.n_verified);
    else
        printf("ok: %d shards verified (%d have no checksum in index.json)\n", d.n_verified,
               d.n_shards - d.n_verified);
    graft_dataset_close(&d);
    return GRAFT_EXIT_OK;
}

/* A stand-in for a training step: `seconds` of arithmetic on this thread. */
static void simulated_step(double seconds) {
    volatile double acc = 0;
    double end = graft_now_s() + seconds;
    while (graft_now_s() < end)
        for (int i = 0; i < 1000; i++)
            acc = acc * 0.999 + i;
}

/* graft data bench DIR: loader throughput with and without prefetch. */
static int data_bench(int argc, char **argv) {
    const char *dir = NULL;
    int batch = 256, steps = 50, crop = 0, hflip = 0, seq_len = 64;
    float step_ms = 5.0f;
    const cli_option opts[] = {
        {"batch", CLI_INT, &batch, "samples per step (default 256)", 1},
        {"steps", CLI_INT, &steps, "steps per measurement (default 50)", 1},
        {"step-ms", CLI_FLOAT, &step_ms, "simulated compute per step in ms (default 5)", 0},
        {"crop", CLI_INT, &crop, "images: random-crop padding (default 0)", 0},
        {"hflip", CLI_FLAG, &hflip, "images: random horizontal flips", 0},
        {"seq-len", CLI_INT, &seq_len,
         "tokens: window length (default 64; sequences have their own)", 1},
    };
    int rc = dir_command("data bench",
                         "Loader throughput with prefetch 0 and 2 around a simulated step "
                         "(graft data bench DIR).",
                         argc, argv, opts, sizeof opts / sizeof opts[0], &dir);
    if (rc != GRAFT_EXIT_OK) return rc == -1 ? GRAFT_EXIT_OK : rc;
    graft_dataset d;
    graft_status st = graft_dataset_open(&d, dir, 0);
    if (st != GRAFT_OK) return cli_exit_status(st);
    printf("%s: batch %d, %d steps, simulated step %.2f ms%s\n", dir, batch, steps, step_ms,
           crop || hflip ? ", augmented" : "");
    const int prefetch_values[2] = {0, 2};
    for (int p = 0; p < 2 && st == GRAFT_OK; p++) {
        graft_loader_config cfg = {.batch_size = batch,
                                   .rank = 0,
                                   .world = 1,
                                   .seed = 1,
                                   .shuffle = 1,
                                   .prefetch = prefetch_values[p],
                                   .seq_len = seq_len,
                                   .crop_padding = crop,
                                   .hflip = hflip};
        graft_loader *l;
        st = graft_loader_new(&l, &d, &cfg, 0);
        if (st != GRAFT_OK) break;
        if ((size_t)batch > graft_loader_epoch_samples(l)) {
            GRAFT_ERROR("%s: --batch %d is more than the %zu samples of the dataset", dir, batch,
                        graft_loader_epoch_samples(l));
            graft_loader_free(l);
            st = GRAFT_ERR_INVALID_ARG;
            break;
        }
        graft_batch *b;
        graft_loader_next(l, &b, NULL); /* warm-up: page in, start the thread */
        double waited = 0, start = graft_now_s();
        long samples = 0;
        for (int s = 0; s < steps; s++) {
            double w;
            graft_loader_next(l, &b, &w);
            waited += w;
            samples += b->n;
            simulated_step(step_ms / 1000.0);
        }
        double total = graft_now_s() - start;
        printf("  prefetch %d: %10.0f samples/s, waiting for data %5.1f%% of the time "
               "(%.3f ms per step)\n",
               prefetch_values[p], (double)samples / total, 100.0 * waited / total,
               1000.0 * waited / steps);
        graft_loader_free(l);
    }
    graft_dataset_close(&d);
    return cli_exit_status(st);
}

static void data_usage(void) {
    printf("usage: graft data <fmnist|images|text|inspect|verify|bench> [options]\n\n"
           "  fmnist   --out DIR [--split train|test] [--classes 0-4] [--per-class N]\n"
           "           [--shard-size N] [--source DIR]   convert Fashion-MNIST\n"
           "  images   --out DIR [--size S|HxW] [--resize shorter|stretch] [--channels 1|3]\n"
           "           [--val-fraction F --val-out DIR2] [--seed N] [--shard-size N] [--strict]\n"
           "           [--csv FILE] ROOT                 convert JPEG/PNG class folders\n"
           "  text     --out DIR --tokenizer gpt2|bytes|bert-base-uncased (or --vocab FILE)\n"
           "           [--shard-size N] FILE...          tokenize text files\n"
           "           ... --classify --seq-len T FILE...  one class per file, one sample\n"
           "                                             per document (sequences)\n"
           "           ... --format jsonl|csv --seq-len T [--text-field F] [--label-field L]\n"
           "               [--labels a,b] [--strict] FILE...  one sample per record\n"
           "  inspect  DIR                               summarise a dataset\n"
           "  verify   DIR                               recompute every checksum\n"
           "  bench    DIR [--batch N] [--steps N] [--step-ms X]  loader throughput\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 3) {
        fprintf(
            stderr,
            "graft data: missing sub-command (fmnist, images, text, inspect, verify or bench)\n");
        return GRAFT_EXIT_BAD_INPUT;
    }
    const char *sub = argv[2];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        data_usage();
        return GRAFT_EXIT_OK;
    }
    if (strcmp(sub, "fmnist") == 0) return data_fmnist(argc, argv);
    if (strcmp(sub, "images") == 0) return data_images(argc, argv);
    if (strcmp(sub, "text") == 0) return data_text(argc, argv);
    if (strcmp(sub, "inspect") == 0) return data_inspect(argc, argv);
    if (strcmp(sub, "verify") == 0) return data_verify(argc, argv);
    if (strcmp(sub, "bench") == 0) return data_bench(argc, argv);
    fprintf(
        stderr,
        "graft data: unknown sub-command '%s' (fmnist, images, text, inspect, verify or bench)\n",
        sub);
    return GRAFT_EXIT_BAD_INPUT;
}
