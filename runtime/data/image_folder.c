/* graft data images (see image_folder.h): list, check, split, write. */
#include "image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset.h"
#include "image_decode.h"
#include "runtime/core/log.h"
#include "runtime/core/rng.h"
#include "runtime/io/fs.h"

/* Larger files are refused unread (no JPEG or PNG we accept needs more). */
#define MAX_FILE_BYTES ((size_t)1 << 30)
/* Sub-directory depth followed inside a class folder (links may form loops). */
#define MAX_DEPTH 16
/* Items checked between two updates of the progress line. */
#define CHECK_CHUNK 512

typedef struct item {
    char *path;
    int label;
    int ok;    /* decoded in the check pass */
    int val;   /* goes to the validation set */
    char *why; /* why not ok */
} item;

typedef struct listing {
    item *items;
    size_t n, cap;
    char **classes;
    int n_classes, cap_classes;
    size_t ignored;
} listing;

static void listing_free(listing *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].why);
    }
    free(l->items);
    for (int c = 0; c < l->n_classes; c++)
        free(l->classes[c]);
    free(l->classes);
    memset(l, 0, sizeof *l);
}

static graft_status add_item(listing *l, char *path, int label) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        item *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(path);
            return GRAFT_ERR_NOMEM;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = (item){.path = path, .label = label};
    return GRAFT_OK;
}

static graft_status add_class(listing *l, const char *name) {
    if (l->n_classes == l->cap_classes) {
        int cap = l->cap_classes ? 2 * l->cap_classes : 16;
        char **grown = realloc(l->classes, (size_t)cap * sizeof *grown);
        if (!grown) return GRAFT_ERR_NOMEM;
        l->classes = grown;
        l->cap_classes = cap;
    }
    if (!(l->classes[l->n_classes] = strdup(name))) return GRAFT_ERR_NOMEM;
    l->n_classes++;
    return GRAFT_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

/* The entries of dir (without . and ..) sorted by their bytes; *n of them. */
static graft_status sorted_entries(const char *dir, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) {
        GRAFT_ERROR("%s: cannot open directory: %s", dir, strerror(errno));
        return GRAFT_ERR_IO;
    }
    size_t cap = 0;
    graft_status st = GRAFT_OK;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(*names, cap * sizeof *grown);
            if (!grown) {
                st = GRAFT_ERR_NOMEM;
                break;
            }
            *names = grown;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            st = GRAFT_ERR_NOMEM;
            break;
        }
        (*n)++;
    }
    closedir(dp);
    if (*n > 1) qsort(*names, *n, sizeof **names, compare_names);
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory listing the directory", dir);
    return st;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The image files under dir (its sub-directories too) as items of class `label`. */
static graft_status list_class(listing *l, const char *dir, int label, int depth) {
    char **names;
    size_t n;
    graft_status st = sorted_entries(dir, &names, &n);
    for (int pass = 0; pass < 2 && st == GRAFT_OK; pass++) /* files, then sub-directories */
        for (size_t i = 0; i < n && st == GRAFT_OK; i++) {
            char *path = graft_fs_path_join_alloc(dir, names[i]);
            if (!path) {
                st = GRAFT_ERR_NOMEM;
                break;
            }
            int is_dir = graft_fs_is_dir(path);
            if (pass == 0 && !is_dir && has_image_extension(names[i])) {
                st = add_item(l, path, label);
                continue;
            }
            if (pass == 0 && !is_dir) l->ignored++;
            if (pass == 1 && is_dir && depth < MAX_DEPTH)
                st = list_class(l, path, label, depth + 1);
            free(path);
        }
    free_names(names, n);
    return st;
}

static graft_status list_folder(listing *l, const char *root) {
    if (!graft_fs_is_dir(root)) {
        GRAFT_ERROR("%s: not a directory (expected ROOT/<class>/<image> folders)", root);
        return GRAFT_ERR_IO;
    }
    char **names;
    size_t n;
    graft_status st = sorted_entries(root, &names, &n);
    for (size_t i = 0; i < n && st == GRAFT_OK; i++) {
        char *path = graft_fs_path_join_alloc(root, names[i]);
        if (!path) {
            st = GRAFT_ERR_NOMEM;
            break;
        }
        if (graft_fs_is_dir(path)) {
            size_t before = l->n;
            st = add_class(l, names[i]);
            if (st == GRAFT_OK) st = list_class(l, path, l->n_classes - 1, 0);
            if (st == GRAFT_OK && l->n == before) {
                GRAFT_ERROR("%s: class folder without any .jpg, .jpeg or .png file (remove it, "
                            "or it would be a class without samples)",
                            path);
                st = GRAFT_ERR_INVALID_ARG;
            }
        }
        free(path);
    }
    free_names(names, n);
    if (st == GRAFT_OK && l->n_classes == 0) {
        GRAFT_ERROR("%s: no class folders (expected ROOT/<class>/<image> folders)", root);
        st = GRAFT_ERR_INVALID_ARG;
    }
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory listing the images", root);
    return st;
}

/* ---- CSV ----------------------------------------------------------------------------- */

/* One field at *p (quoted with "" for a quote inside, or bare up to the comma or line
 * end) into a new string; *p left after it. NULL on a malformed quote (or no memory). */
static char *csv_field(const char **p, const char *end) {
    const char *s = *p;
    size_t cap = (size_t)(end - s) + 1, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    if (s < end && *s == '"') {
        s++;
        for (;;) {
            if (s >= end) {
                free(out);
                return NULL;
            }
            if (*s == '"') {
                if (s + 1 < end && s[1] == '"') {
                    out[n++] = '"';
                    s += 2;
                    continue;
                }
                s++;
                break;
            }
            out[n++] = *s++;
        }
    } else {
        while (s < end && *s != ',')
            out[n++] = *s++;
    }
    out[n] = '\0';
    *p = s;
    return out;
}

typedef struct csv_row {
    char *path, *label;
} csv_row;

static int compare_rows_label(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static graft_status list_csv(listing *l, const char *csv, const char *root) {
    char *text;
    size_t len;
    graft_status st = graft_fs_read(csv, 0, &text, &len, GRAFT_LOG_ERROR);
    if (st != GRAFT_OK) return st;
    char base[GRAFT_FS_PATH_MAX];
    if (!root) {
        if (!graft_fs_parent(base, sizeof base, csv)) {
            GRAFT_ERROR("%s: path too long", csv);
            free(text);
            return GRAFT_ERR_IO;
        }
        root = base;
    }
    csv_row *rows = NULL;
    size_t n = 0, cap = 0;
    long line = 0;
    const char *p = text, *end = text + len;
    while (st == GRAFT_OK && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *stop = eol ? eol : end, *next = eol ? eol + 1 : end;
        if (stop > p && stop[-1] == '\r') stop--;
        line++;
        if (stop == p ||
            (line == 1 && (size_t)(stop - p) == 10 && memcmp(p, "path,label", 10) == 0)) {
            p = next;
            continue;
        }
        const char *q = p;
        char *path = csv_field(&q, stop), *label = NULL;
        if (path && q < stop && *q == ',') {
            q++;
            label = csv_field(&q, stop);
        }
        if (!path || !label || q != stop || !*path || !*label) {
            GRAFT_ERROR("%s: line %ld: expected two fields path,label (quoted with \" when they "
                        "hold a comma)",
                        csv, line);
            free(path);
            free(label);
            st = GRAFT_ERR_FORMAT;
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            csv_row *grown = realloc(rows, cap * sizeof *grown);
            if (!grown) {
                free(path);
                free(label);
                st = GRAFT_ERR_NOMEM;
                break;
            }
            rows = grown;
        }
        rows[n++] = (csv_row){path, label};
        p = next;
    }
    free(text);
    /* the classes: distinct labels in byte order */
    char **labels = st == GRAFT_OK && n ? malloc(n * sizeof *labels) : NULL;
    if (st == GRAFT_OK && n && !labels) st = GRAFT_ERR_NOMEM;
    if (st == GRAFT_OK && n == 0) {
        GRAFT_ERROR("%s: no rows (expected path,label lines)", csv);
        st = GRAFT_ERR_INVALID_ARG;
    }
    if (st == GRAFT_OK) {
        for (size_t i = 0; i < n; i++)
            labels[i] = rows[i].label;
        qsort(labels, n, sizeof *labels, compare_rows_label);
        for (size_t i = 0; i < n && st == GRAFT_OK; i++)
            if (i == 0 || strcmp(labels[i], labels[i - 1]) != 0) st = add_class(l, labels[i]);
    }
    for (size_t i = 0; i < n && st == GRAFT_OK; i++) {
        char **found = bsearch(&rows[i].label, l->classes, (size_t)l->n_classes, sizeof *l->classes,
                               compare_names);
        char *path = rows[i].path[0] == '/' ? strdup(rows[i].path)
                                            : graft_fs_path_join_alloc(root, rows[i].path);
        st = path ? add_item(l, path, (int)(found - l->classes)) : GRAFT_ERR_NOMEM;
    }
    free(labels);
    for (size_t i = 0; i < n; i++) {
        free(rows[i].path);
        free(rows[i].label);
    }
    free(rows);
    if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory reading the rows", csv);
    return st;
}

/* ---- decoding in parallel ------------------------------------------------------------- */

typedef struct work {
    const graft_images_options *o;
    item **order; /* the items of this run, in order */
    size_t n;
    uint8_t *out; /* n samples of C*H*W, or NULL: check only */
    size_t next;  /* the next item to take */
    pthread_mutex_t lock;
    graft_status st; /* out of memory */
} work;

graft_status graft_images_load(const char *path, int channels, int height, int width,
                               graft_resize_mode mode, uint8_t *chw, char *why, size_t why_size) {
    char *data;
    size_t len;
    graft_status st = graft_fs_read(path, MAX_FILE_BYTES, &data, &len, GRAFT_LOG_QUIET);
    if (st != GRAFT_OK) {
        snprintf(why, why_size, "%s", graft_log_last_reason(path));
        return st == GRAFT_ERR_NOMEM ? st : GRAFT_ERR_FORMAT;
    }
    graft_image img;
    st = graft_image_decode((const uint8_t *)data, len, channels, &img, why, why_size);
    free(data);
    if (st != GRAFT_OK) return st;
    st = graft_image_fit(&img, height, width, mode, chw);
    if (st == GRAFT_ERR_NOMEM) snprintf(why, why_size, "out of memory resizing");
    if (st == GRAFT_ERR_UNSUPPORTED)
        snprintf(why, why_size,
                 "%dx%d pixels: too thin to resize to %dx%d (more than %zu pixels "
                 "before the crop)",
                 img.width, img.height, height, width, GRAFT_IMAGE_MAX_PIXELS);
    graft_image_free(&img);
    return st;
}

static void *worker(void *arg) {
    work *w = arg;
    size_t sample = (size_t)w->o->channels * (size_t)w->o->height * (size_t)w->o->width;
    uint8_t *scratch = w->out ? NULL : malloc(sample);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t i = w->next++;
        if (!w->out && !scratch) w->st = GRAFT_ERR_NOMEM;
        int stop = i >= w->n || w->st != GRAFT_OK;
        pthread_mutex_unlock(&w->lock);
        if (stop) break;
        item *it = w->order[i];
        char why[256];
        graft_status st =
            graft_images_load(it->path, w->o->channels, w->o->height, w->o->width, w->o->mode,
                              w->out ? w->out + i * sample : scratch, why, sizeof why);
        if (st == GRAFT_ERR_NOMEM) {
            pthread_mutex_lock(&w->lock);
            w->st = st;
            pthread_mutex_unlock(&w->lock);
            break;
        }
        /* each item is written by the one thread that took it */
        if (!w->out) {
            it->ok = st == GRAFT_OK;
            if (!it->ok) it->why = strdup(why);
        } else if (st != GRAFT_OK) {
            it->ok = 0;
        }
    }
    free(scratch);
    return NULL;
}

/* Decode order[0..n) on o->threads threads (into out when not NULL). */
static graft_status run_decode(const graft_images_options *o, item **order, size_t n,
                               uint8_t *out) {
    work w = {.o = o, .order = order, .n = n, .out = out};
    pthread_mutex_init(&w.lock, NULL);
    int threads = o->threads < 1 ? 1 : o->threads;
    pthread_t tid[16];
    if (threads > 16) threads = 16;
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, worker, &w) != 0) break;
    if (started == 0) worker(&w);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&w.lock);
    return w.st;
}

/* ---- split and write ------------------------------------------------------------------ */

/* Per class, round(n * fraction) of its readable items (at least one left for training)
 * drawn with the seeded generator. Returns how many went to validation. */
static size_t split(listing *l, double fraction, uint64_t seed) {
    size_t total = 0;
    size_t *idx = malloc((l->n ? l->n : 1) * sizeof *idx);
    if (!idx) return 0;
    for (int c = 0; c < l->n_classes; c++) {
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].ok && l->items[i].label == c) idx[n++] = i;
        size_t k = (size_t)floor((double)n * fraction + 0.5);
        if (k >= n) k = n ? n - 1 : 0;
        graft_rng rng;
        graft_rng_seed(&rng, graft_rng_mix(seed, (uint64_t)c));
        for (size_t j = 0; j < k; j++) { /* partial Fisher-Yates */
            size_t r = j + (size_t)graft_rng_below(&rng, n - j);
            size_t t = idx[j];
            idx[j] = idx[r];
            idx[r] = t;
            l->items[idx[j]].val = 1;
        }
        total += k;
    }
    free(idx);
    return total;
}

static void show_progress(const graft_images_options *o, const char *what, size_t done,
                          size_t total) {
    if (!o->progress) return;
    fprintf(o->progress, "\r%s %zu/%zu images", what, done, total);
    if (done == total) fputc('\n', o->progress);
    fflush(o->progress);
}

/* Decode `order` in chunks and add each sample to w; sums for the normalisation. */
static graft_status write_set(const graft_images_options *o, item **order, size_t n,
                              graft_dataset_writer *w, uint64_t *sum, uint64_t *sumsq,
                              const char *what) {
    size_t sample = (size_t)o->channels * (size_t)o->height * (size_t)o->width;
    size_t chunk = 64 * (size_t)(o->threads < 1 ? 1 : o->threads);
    uint8_t *buf = malloc(chunk * sample);
    if (!buf) {
        GRAFT_ERROR("%s: out of memory for %zu decoded images", o->out, chunk);
        return GRAFT_ERR_NOMEM;
    }
    graft_status st = GRAFT_OK;
    size_t plane = (size_t)o->height * (size_t)o->width;
    for (size_t start = 0; start < n && st == GRAFT_OK; start += chunk) {
        size_t m = n - start < chunk ? n - start : chunk;
        st = run_decode(o, order + start, m, buf);
        for (size_t i = 0; i < m && st == GRAFT_OK; i++) {
            if (!order[start + i]->ok) {
                GRAFT_ERROR("%s: could not be decoded any more (changed during the conversion?)",
                            order[start + i]->path);
                st = GRAFT_ERR_RUN;
                break;
            }
            const uint8_t *chw = buf + i * sample;
            for (int c = 0; sum && c < o->channels; c++)
                for (size_t p = 0; p < plane; p++) {
                    uint64_t x = chw[(size_t)c * plane + p];
                    sum[c] += x;
                    sumsq[c] += x * x;
                }
            st = graft_dataset_writer_add_image(w, chw, order[start + i]->label);
        }
        show_progress(o, what, start + m, n);
    }
    free(buf);
    return st == GRAFT_ERR_IO ? GRAFT_ERR_RUN : st;
}

static graft_status new_writer(const graft_images_options *o, const listing *l, const char *dir,
                               graft_dataset_writer **w) {
    graft_status st =
        graft_dataset_writer_new_images(w, dir, o->channels, o->height, o->width, l->n_classes,
                                        (const char *const *)l->classes, o->shard_size);
    if (st == GRAFT_OK)
        st = graft_dataset_writer_set_resize(*w, o->mode == GRAFT_RESIZE_SHORTER ? "shorter"
                                                                                : "stretch");
    if (st != GRAFT_OK) return st;
    char desc[256];
    snprintf(desc, sizeof desc, "%s%s: %s to %dx%d (%s), %d channel(s)",
             o->csv ? "images listed in " : "image folder ", o->csv ? o->csv : o->root,
             o->mode == GRAFT_RESIZE_SHORTER ? "shorter side resized and centre-cropped"
                                             : "stretched",
             o->height, o->width, "bilinear, antialiased", o->channels);
    return graft_dataset_writer_set_description(*w, desc);
}

static graft_status convert(const graft_images_options *o, listing *l, graft_images_result *res) {
    graft_status st = o->csv ? list_csv(l, o->csv, o->root) : list_folder(l, o->root);
    if (st != GRAFT_OK) return st;
    res->found = l->n;
    res->num_classes = l->n_classes;
    res->ignored = l->ignored;
    /* the targets are checked (and DIR.tmp made) before the long decoding */
    graft_dataset_writer *train = NULL, *val = NULL;
    item **order = malloc((l->n ? l->n : 1) * sizeof(item *));
    if (!order) {
        GRAFT_ERROR("%s: out of memory", o->out);
        return GRAFT_ERR_NOMEM;
    }
    st = new_writer(o, l, o->out, &train);
    if (st == GRAFT_OK && o->val_out) st = new_writer(o, l, o->val_out, &val);
    for (size_t i = 0; i < l->n; i++)
        order[i] = &l->items[i];
    for (size_t start = 0; st == GRAFT_OK && start < l->n; start += CHECK_CHUNK) {
        size_t m = l->n - start < CHECK_CHUNK ? l->n - start : CHECK_CHUNK;
        st = run_decode(o, order + start, m, NULL);
        if (st == GRAFT_ERR_NOMEM) GRAFT_ERROR("%s: out of memory decoding", o->out);
        show_progress(o, "checked", start + m, l->n);
    }
    for (size_t i = 0; st == GRAFT_OK && i < l->n; i++) {
        if (l->items[i].ok) continue;
        graft_images_skipped *grown =
            realloc(res->skipped, (res->n_skipped + 1) * sizeof *res->skipped);
        if (!grown) {
            st = GRAFT_ERR_NOMEM;
            break;
        }
        res->skipped = grown;
        res->skipped[res->n_skipped].path = strdup(l->items[i].path);
        res->skipped[res->n_skipped].reason =
            strdup(l->items[i].why ? l->items[i].why : "out of memory");
        res->n_skipped++;
    }
    if (st == GRAFT_OK && o->strict && res->n_skipped) {
        GRAFT_ERROR("%s: %zu of %zu image file(s) cannot be read; --strict: nothing "
                    "written",
                    o->csv ? o->csv : o->root, res->n_skipped, l->n);
        st = GRAFT_ERR_FORMAT;
    }
    for (int c = 0; st == GRAFT_OK && c < l->n_classes; c++) {
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
            n += l->items[i].ok && l->items[i].label == c;
        if (n == 0) {
            GRAFT_ERROR("%s: class '%s' has no readable image", o->csv ? o->csv : o->root,
                        l->classes[c]);
            st = GRAFT_ERR_FORMAT;
        }
    }
    if (st == GRAFT_OK && val) {
        res->val = split(l, o->val_fraction, o->seed);
        if (res->val == 0) {
            GRAFT_ERROR("--val-fraction %g of %zu image(s) leaves no sample for validation",
                        o->val_fraction, l->n - res->n_skipped);
            st = GRAFT_ERR_INVALID_ARG;
        }
    }
    size_t n_train = 0, n_val = 0;
    if (st == GRAFT_OK) {
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].ok && !l->items[i].val) order[n_train++] = &l->items[i];
        uint64_t sum[3] = {0}, sumsq[3] = {0};
        st = write_set(o, order, n_train, train, sum, sumsq, "wrote");
        if (st == GRAFT_OK) {
            /* both sets normalised with the training set's statistics */
            float mean[3], std[3];
            double pixels = (double)n_train * o->height * o->width;
            for (int c = 0; c < o->channels; c++) {
                double m = (double)sum[c] / pixels, var = (double)sumsq[c] / pixels - m * m;
                double s = var > 0 ? sqrt(var) : 0.0;
                mean[c] = (float)(m / 255.0);
                std[c] = s > 0 ? (float)(s / 255.0) : 1.0f;
            }
            graft_dataset_writer_set_normalize(train, mean, std);
            if (val) graft_dataset_writer_set_normalize(val, mean, std);
        }
        for (size_t i = 0; val && i < l->n; i++)
            if (l->items[i].ok && l->items[i].val) order[n_val++] = &l->items[i];
        if (st == GRAFT_OK && val) st = write_set(o, order, n_val, val, NULL, NULL, "wrote val");
    }
    if (st == GRAFT_OK) { /* an I/O failure now is the run's, not the input's */
        st = graft_dataset_writer_finish(train);
        if (st == GRAFT_OK && val) st = graft_dataset_writer_finish(val);
        if (st == GRAFT_ERR_IO) st = GRAFT_ERR_RUN;
    }
    res->train = n_train;
    res->val = n_val;
    graft_dataset_writer_free(train);
    graft_dataset_writer_free(val);
    free(order);
    return st;
}

graft_status graft_images_convert(const graft_images_options *o, graft_images_result *res) {
    memset(res, 0, sizeof *res);
    listing l = {0};
    graft_status st = convert(o, &l, res);
    listing_free(&l);
    return st;
}

void graft_images_result_free(graft_images_result *res) {
    for (size_t i = 0; i < res->n_skipped; i++) {
        free(res->skipped[i].path);
        free(res->skipped[i].reason);
    }
    free(res->skipped);
    memset(res, 0, sizeof *res);
}
