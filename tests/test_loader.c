/* The loader: global sampler over simulated ranks (coverage, order, resume at another
 * world size), prefetch equivalence, augmentation, token windows, labelled sequences,
 * ragged batches and the eval loader. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/data/dataset.h"
#include "runtime/data/loader.h"

static char root[256];
static graft_dataset images; /* 37 samples [1, 6, 5], 5 classes, shards of 10 */
static graft_dataset tokens; /* 53 tokens, vocab 300, shards of 7 */
static graft_dataset seqs;   /* 29 sequences of T = 5, vocab 300, 4 classes, shards of 8 */

enum { N_IMG = 37, IMG_C = 1, IMG_H = 6, IMG_W = 5, IMG_PIX = IMG_C * IMG_H * IMG_W };
enum { N_TOK = 53, VOCAB = 300 };
enum { N_SEQ = 29, SEQ_T = 5, SEQ_K = 4, SEQ_PAD = 0 };

/* Sequence i: seq_len_of(i) ids in [1, VOCAB) (1..9: padded or truncated to T), its class. */
static size_t seq_len_of(size_t i) { return (i * 7) % 9 + 1; }
static int32_t seq_id(size_t i, size_t t) { return (int32_t)((i * 31 + t * 17) % (VOCAB - 1) + 1); }
static int seq_label(size_t i) { return (int)((i * 7 + 1) % SEQ_K); }

static uint8_t pixel_of(size_t i, size_t p) { return (uint8_t)((i * 53 + p * 29 + 7) & 255); }
static int32_t token_of(size_t i) { return (int32_t)((i * 7919 + 3) % VOCAB); }

static int setup(void **state) {
    (void)state;
    if (tu_make_temp_dir(root, sizeof root, "loader") != 0) return -1;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/img", root);
    graft_dataset_writer *w;
    if (graft_dataset_writer_new_images(&w, dir, IMG_C, IMG_H, IMG_W, 5, NULL, 10) != GRAFT_OK)
        return -1;
    uint8_t img[IMG_PIX];
    for (size_t i = 0; i < N_IMG; i++) {
        for (size_t p = 0; p < IMG_PIX; p++)
            img[p] = pixel_of(i, p);
        if (graft_dataset_writer_add_image(w, img, (int)(i % 5)) != GRAFT_OK) return -1;
    }
    if (graft_dataset_writer_finish(w) != GRAFT_OK) return -1;
    graft_dataset_writer_free(w);
    if (graft_dataset_open(&images, dir, 1) != GRAFT_OK) return -1;

    snprintf(dir, sizeof dir, "%s/tok", root);
    if (graft_dataset_writer_new_tokens(&w, dir, "bytes", VOCAB, 7) != GRAFT_OK) return -1;
    for (size_t i = 0; i < N_TOK; i++) {
        int32_t id = token_of(i);
        if (graft_dataset_writer_add_tokens(w, &id, 1) != GRAFT_OK) return -1;
    }
    if (graft_dataset_writer_finish(w) != GRAFT_OK) return -1;
    graft_dataset_writer_free(w);
    if (graft_dataset_open(&tokens, dir, 1) != GRAFT_OK) return -1;

    snprintf(dir, sizeof dir, "%s/seq", root);
    if (graft_dataset_writer_new_sequences(&w, dir, "bytes", VOCAB, SEQ_T, SEQ_PAD, SEQ_K, NULL,
                                           8) != GRAFT_OK)
        return -1;
    for (size_t i = 0; i < N_SEQ; i++) {
        int32_t ids[9];
        for (size_t t = 0; t < seq_len_of(i); t++)
            ids[t] = seq_id(i, t);
        if (graft_dataset_writer_add_sequence(w, ids, seq_len_of(i), seq_label(i)) != GRAFT_OK)
            return -1;
    }
    if (graft_dataset_writer_finish(w) != GRAFT_OK) return -1;
    graft_dataset_writer_free(w);
    return graft_dataset_open(&seqs, dir, 1) == GRAFT_OK ? 0 : -1;
}

/* Row i of a sequences batch holds sample idx: its T ids (padded) and its one label. */
static void check_sequence_row(const graft_batch *b, int i, uint64_t idx) {
    for (size_t t = 0; t < SEQ_T; t++)
        assert_int_equal(b->tokens[(size_t)i * SEQ_T + t],
                         t < seq_len_of(idx) ? seq_id(idx, t) : SEQ_PAD);
    assert_int_equal(b->labels[i], seq_label(idx));
}

static int teardown(void **state) {
    (void)state;
    graft_dataset_close(&images);
    graft_dataset_close(&tokens);
    graft_dataset_close(&seqs);
    tu_remove_tree(root);
    return 0;
}

static graft_loader_config config(long G, int rank, int world, int prefetch) {
    graft_loader_config c = {.batch_size = G,
                             .rank = rank,
                             .world = world,
                             .seed = 1234,
                             .shuffle = 1,
                             .prefetch = prefetch,
                             .seq_len = 0,
                             .crop_padding = 0,
                             .hflip = 0};
    return c;
}

/* Run `steps` global steps on W simulated ranks from `cursor` and write the global
 * sequence of sample indices (rank slices concatenated in rank order) to seq; checks
 * the slicing rule and the batch bookkeeping on the way. Returns positions written. */
static size_t global_sequence(const graft_dataset *d, graft_loader_config base, int W,
                              uint64_t cursor, int steps, uint64_t *seq) {
    graft_loader *l[8] = {NULL};
    for (int r = 0; r < W; r++) {
        graft_loader_config c = base;
        c.rank = r;
        c.world = W;
        assert_int_equal(graft_loader_new(&l[r], d, &c, cursor), GRAFT_OK);
        assert_int_equal(graft_loader_cursor(l[r]), cursor);
    }
    size_t N = graft_loader_epoch_samples(l[0]), written = 0;
    for (int s = 0; s < steps; s++) {
        uint64_t off = cursor % N, G = (uint64_t)base.batch_size;
        uint64_t b = G < N - off ? G : N - off;
        for (int r = 0; r < W; r++) {
            graft_batch *batch;
            double wait = -1;
            assert_int_equal(graft_loader_next(l[r], &batch, &wait), GRAFT_OK);
            assert_true(wait >= 0);
            assert_int_equal(batch->global_n, (int)b);
            assert_int_equal(batch->n, (int)(((uint64_t)r + 1) * b / (uint64_t)W -
                                             (uint64_t)r * b / (uint64_t)W));
            assert_int_equal(batch->epoch, (long)(cursor / N));
            assert_int_equal(batch->cursor_after, cursor + b);
            assert_int_equal(graft_loader_cursor(l[r]), cursor + b);
            for (int i = 0; i < batch->n; i++) {
                if (d->kind == GRAFT_DATA_SEQUENCES)
                    check_sequence_row(batch, i, batch->indices[i]);
                seq[written++] = batch->indices[i];
            }
        }
        cursor += b;
    }
    for (int r = 0; r < W; r++)
        graft_loader_free(l[r]);
    return written;
}

/* Fisher-Yates exactly as loader.h describes it. */
static void reference_permutation(uint64_t seed, long epoch, size_t N, uint64_t *perm) {
    for (size_t i = 0; i < N; i++)
        perm[i] = i;
    graft_rng rng;
    graft_rng_seed(&rng, graft_rng_mix(seed, (uint64_t)epoch));
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)graft_rng_below(&rng, i + 1);
        uint64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void test_epoch_covered_once(void **state) {
    (void)state;
    uint64_t ref[N_IMG], seq[N_IMG];
    reference_permutation(1234, 0, N_IMG, ref);
    for (int W = 1; W <= 4; W++) {
        graft_loader_config c = config(8, 0, W, 0);
        graft_loader *l;
        assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_OK);
        assert_int_equal(graft_loader_steps_per_epoch(l), 5); /* ceil(37 / 8) */
        graft_loader_free(l);
        size_t n = global_sequence(&images, c, W, 0, 5, seq);
        assert_int_equal(n, N_IMG);
        int seen[N_IMG] = {0};
        for (size_t i = 0; i < n; i++)
            seen[seq[i]]++;
        for (int i = 0; i < N_IMG; i++)
            assert_int_equal(seen[i], 1);
        /* the same global order whatever W is, and the documented permutation */
        assert_memory_equal(seq, ref, sizeof ref);
        printf("  W=%d: %zu samples, each once, order identical to the reference permutation\n", W,
               n);
    }
}

static void test_order_by_seed_and_epoch(void **state) {
    (void)state;
    uint64_t a[2 * N_IMG], b[2 * N_IMG];
    graft_loader_config c = config(10, 0, 1, 0);
    global_sequence(&images, c, 1, 0, 8, a); /* epochs 0 and 1: 4 steps each */
    global_sequence(&images, c, 1, 0, 8, b);
    assert_memory_equal(a, b, sizeof a); /* same seed, same epochs: same order */
    int differ = 0;
    for (int i = 0; i < N_IMG; i++)
        differ += a[i] != a[N_IMG + i];
    printf("  epoch 0 vs epoch 1: %d of %d positions differ\n", differ, N_IMG);
    assert_true(differ > N_IMG / 2);
    uint64_t ref[N_IMG];
    reference_permutation(1234, 1, N_IMG, ref);
    assert_memory_equal(a + N_IMG, ref, sizeof ref);
    c.seed = 99;
    global_sequence(&images, c, 1, 0, 4, b);
    differ = 0;
    for (int i = 0; i < N_IMG; i++)
        differ += a[i] != b[i];
    assert_true(differ > N_IMG / 2);
    c.shuffle = 0; /* identity order */
    global_sequence(&images, c, 1, 0, 4, b);
    for (int i = 0; i < N_IMG; i++)
        assert_int_equal(b[i], i);
}

static void test_resume_other_world_size(void **state) {
    (void)state;
    /* reference: W=1, three epochs from the start */
    enum { STEPS = 15 }; /* 3 epochs of 5 steps (G = 8, N = 37) */
    uint64_t ref[3 * N_IMG], got[3 * N_IMG];
    graft_loader_config c = config(8, 0, 1, 0);
    c.crop_padding = 1;
    assert_int_equal(global_sequence(&images, c, 1, 0, STEPS, ref), 3 * N_IMG);
    /* W=4: run 7 steps (into epoch 1), read the cursor, resume at W=2 and W=3 */
    graft_loader *l[4];
    uint64_t cursor = 0;
    for (int r = 0; r < 4; r++) {
        graft_loader_config cr = c;
        cr.rank = r;
        cr.world = 4;
        assert_int_equal(graft_loader_new(&l[r], &images, &cr, 0), GRAFT_OK);
        graft_batch *b;
        for (int s = 0; s < 7; s++)
            assert_int_equal(graft_loader_next(l[r], &b, NULL), GRAFT_OK);
        if (r > 0) assert_int_equal(graft_loader_cursor(l[r]), cursor);
        cursor = graft_loader_cursor(l[r]);
        graft_loader_free(l[r]);
    }
    assert_int_equal(cursor, N_IMG + 2 * 8); /* 5 steps of epoch 0, 2 of epoch 1 */
    for (int W = 2; W <= 3; W++) {
        size_t n = global_sequence(&images, c, W, cursor, STEPS - 7, got);
        assert_int_equal(n, 3 * N_IMG - cursor);
        assert_memory_equal(got, ref + cursor, n * sizeof(uint64_t));
        printf("  saved at W=4 after 7 steps (cursor %llu), resumed at W=%d: next %zu samples "
               "match the uninterrupted run\n",
               (unsigned long long)cursor, W, n);
    }
    /* a cursor exactly on an epoch boundary */
    size_t n = global_sequence(&images, c, 3, N_IMG, 5, got);
    assert_int_equal(n, N_IMG);
    assert_memory_equal(got, ref + N_IMG, n * sizeof(uint64_t));
}

/* Every field of two batches, including the bytes of the inputs; tokens_kind: 1 token
 * windows (a label per id), 2 sequences (a label per row). */
static void assert_batches_equal(const graft_batch *a, const graft_batch *b, size_t row_floats,
                                 int tokens_kind) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->global_n, b->global_n);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->cursor_after, b->cursor_after);
    assert_memory_equal(a->indices, b->indices, (size_t)a->n * sizeof(uint64_t));
    if (tokens_kind) {
        size_t labels = (size_t)a->n * (tokens_kind == 1 ? row_floats : 1);
        assert_memory_equal(a->tokens, b->tokens, (size_t)a->n * row_floats * sizeof(int32_t));
        assert_memory_equal(a->labels, b->labels, labels * sizeof(int32_t));
    } else {
        assert_memory_equal(a->inputs, b->inputs, (size_t)a->n * row_floats * sizeof(float));
        assert_memory_equal(a->labels, b->labels, (size_t)a->n * sizeof(int32_t));
    }
}

static void test_prefetch_matches_sync(void **state) {
    (void)state;
    for (int prefetch = 1; prefetch <= 3; prefetch += 2) {
        graft_loader_config c = config(6, 1, 2, 0);
        c.crop_padding = 2;
        c.hflip = 1;
        graft_loader *sync, *pre;
        assert_int_equal(graft_loader_new(&sync, &images, &c, 5), GRAFT_OK);
        c.prefetch = prefetch;
        assert_int_equal(graft_loader_new(&pre, &images, &c, 5), GRAFT_OK);
        double waited = 0;
        for (int s = 0; s < 20; s++) { /* crosses three epochs */
            graft_batch *a, *b;
            double w;
            assert_int_equal(graft_loader_next(sync, &a, NULL), GRAFT_OK);
            assert_int_equal(graft_loader_next(pre, &b, &w), GRAFT_OK);
            waited += w;
            assert_batches_equal(a, b, IMG_PIX, 0);
        }
        printf("  prefetch %d: 20 batches identical to prefetch 0 (waited %.3f ms in total)\n",
               prefetch, 1000 * waited);
        graft_loader_free(sync);
        graft_loader_free(pre); /* thread stops mid-epoch */
    }
    /* token windows through the thread as well */
    graft_loader_config c = config(3, 0, 1, 0);
    c.seq_len = 4;
    graft_loader *sync, *pre;
    assert_int_equal(graft_loader_new(&sync, &tokens, &c, 0), GRAFT_OK);
    c.prefetch = 2;
    assert_int_equal(graft_loader_new(&pre, &tokens, &c, 0), GRAFT_OK);
    for (int s = 0; s < 12; s++) {
        graft_batch *a, *b;
        assert_int_equal(graft_loader_next(sync, &a, NULL), GRAFT_OK);
        assert_int_equal(graft_loader_next(pre, &b, NULL), GRAFT_OK);
        assert_batches_equal(a, b, 4, 1);
    }
    graft_loader_free(sync);
    graft_loader_free(pre);
    /* freed before the first batch is taken, with the ring full */
    c.prefetch = 4;
    assert_int_equal(graft_loader_new(&pre, &tokens, &c, 0), GRAFT_OK);
    usleep(2000);
    graft_loader_free(pre);
}

/* Augmentation as loader.h specifies it, recomputed independently. */
static void reference_augment(const graft_dataset *d, uint64_t seed, long epoch, uint64_t idx,
                              int pad, int hflip, float *out) {
    graft_rng rng;
    graft_rng_seed(
        &rng, graft_rng_mix(graft_rng_mix(seed ^ GRAFT_LOADER_AUG_SALT, (uint64_t)epoch), idx));
    int dy = pad, dx = pad, flip = 0;
    if (pad) {
        dy = (int)graft_rng_below(&rng, 2 * (uint64_t)pad + 1);
        dx = (int)graft_rng_below(&rng, 2 * (uint64_t)pad + 1);
    }
    if (hflip) flip = (int)(graft_rng_u64(&rng) & 1);
    for (int y = 0; y < IMG_H; y++)
        for (int x = 0; x < IMG_W; x++) {
            int sy = y + dy - pad, sx = (flip ? IMG_W - 1 - x : x) + dx - pad;
            uint8_t v = (sy >= 0 && sy < IMG_H && sx >= 0 && sx < IMG_W)
                            ? pixel_of(idx, (size_t)sy * IMG_W + (size_t)sx)
                            : 0;
            out[y * IMG_W + x] = ((float)v / 255.0f - d->mean[0]) / d->std[0];
        }
}

static void test_augmentation(void **state) {
    (void)state;
    /* per world size: the augmented image of every sample in epochs 0 and 1 */
    static float by_w[5][2][N_IMG][IMG_PIX];
    int changed = 0, epoch_differs = 0;
    for (int W = 1; W <= 4; W += 3) {
        for (int r = 0; r < W; r++) {
            graft_loader_config c = config(8, r, W, 0);
            c.crop_padding = 2;
            c.hflip = 1;
            graft_loader *l;
            assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_OK);
            for (int s = 0; s < 10; s++) {
                graft_batch *b;
                assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
                for (int i = 0; i < b->n; i++)
                    memcpy(by_w[W][b->epoch][b->indices[i]], b->inputs + (size_t)i * IMG_PIX,
                           IMG_PIX * sizeof(float));
            }
            graft_loader_free(l);
        }
    }
    float ref[IMG_PIX], plain[IMG_PIX];
    for (int e = 0; e < 2; e++)
        for (uint64_t i = 0; i < N_IMG; i++) {
            reference_augment(&images, 1234, e, i, 2, 1, ref);
            assert_memory_equal(by_w[1][e][i], ref, sizeof ref); /* as documented */
            assert_memory_equal(by_w[4][e][i], ref, sizeof ref); /* independent of W */
            graft_dataset_image(&images, i, plain);
            changed += memcmp(ref, plain, sizeof ref) != 0;
            if (e == 1) epoch_differs += memcmp(by_w[1][0][i], by_w[1][1][i], sizeof ref) != 0;
        }
    printf("  %d of %d augmented images differ from the original, %d of %d differ between "
           "epochs; W=1 and W=4 identical\n",
           changed, 2 * N_IMG, epoch_differs, N_IMG);
    assert_true(changed > N_IMG);
    assert_true(epoch_differs > N_IMG / 2);
    /* without augmentation, the loader's floats equal graft_dataset_image's */
    graft_loader_config c = config(N_IMG, 0, 1, 0);
    graft_loader *l;
    graft_batch *b;
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_OK);
    assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
    for (int i = 0; i < b->n; i++) {
        int label = graft_dataset_image(&images, b->indices[i], plain);
        assert_memory_equal(b->inputs + (size_t)i * IMG_PIX, plain, sizeof plain);
        assert_int_equal(b->labels[i], label);
        assert_int_equal(label, (int)(b->indices[i] % 5));
    }
    graft_loader_free(l);
}

static void test_token_windows(void **state) {
    (void)state;
    for (int L = 1; L <= 8; L += 3) {
        graft_loader_config c = config(4, 0, 1, 0);
        c.seq_len = L;
        graft_loader *l;
        assert_int_equal(graft_loader_new(&l, &tokens, &c, 0), GRAFT_OK);
        size_t N = graft_loader_epoch_samples(l);
        assert_int_equal(N, (N_TOK - 1) / (size_t)L);
        int seen = 0;
        for (long s = 0; s < graft_loader_steps_per_epoch(l); s++) {
            graft_batch *b;
            assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
            assert_null(b->inputs);
            for (int i = 0; i < b->n; i++) {
                size_t w = b->indices[i];
                assert_true(w < N);
                for (int t = 0; t < L; t++) {
                    assert_int_equal(b->tokens[(size_t)i * L + t], token_of(w * L + t));
                    assert_int_equal(b->labels[(size_t)i * L + t], token_of(w * L + t + 1));
                }
                seen++;
            }
        }
        assert_int_equal(seen, (int)N);
        printf("  seq_len %d: %zu windows, inputs and next-token labels match the stream\n", L, N);
        graft_loader_free(l);
    }
    /* too short for one window: one line, CONFIG */
    graft_loader_config c = config(4, 0, 1, 0);
    c.seq_len = N_TOK;
    graft_loader *l = NULL;
    assert_int_equal(graft_loader_new(&l, &tokens, &c, 0), GRAFT_ERR_CONFIG);
    assert_null(l);
}

static void test_sequences(void **state) {
    (void)state;
    /* every world size covers the epoch once, in the reference order, a label per row */
    uint64_t ref[2 * N_SEQ], seq[2 * N_SEQ];
    reference_permutation(1234, 0, N_SEQ, ref);
    reference_permutation(1234, 1, N_SEQ, ref + N_SEQ);
    for (int W = 1; W <= 4; W++) {
        graft_loader_config c = config(6, 0, W, 0);
        c.seq_len = 3; /* not used: rows are the dataset's T */
        graft_loader *l;
        assert_int_equal(graft_loader_new(&l, &seqs, &c, 0), GRAFT_OK);
        assert_int_equal(graft_loader_epoch_samples(l), N_SEQ);
        assert_int_equal(graft_loader_steps_per_epoch(l), 5); /* ceil(29 / 6) */
        graft_loader_free(l);
        size_t n = global_sequence(&seqs, c, W, 0, 10, seq); /* two epochs */
        assert_int_equal(n, 2 * N_SEQ);
        assert_memory_equal(seq, ref, sizeof ref);
        printf("  W=%d: 2 epochs of %d sequences, each once per epoch in the reference order, "
               "tokens [n, %d] and one label per row\n",
               W, N_SEQ, SEQ_T);
    }
    /* resume: 3 steps at W=3 with prefetch, then W=2 from the cursor */
    graft_loader_config c = config(6, 0, 1, 0);
    uint64_t cursor = 0;
    for (int r = 0; r < 3; r++) {
        graft_loader_config cr = c;
        cr.rank = r;
        cr.world = 3;
        cr.prefetch = 2;
        graft_loader *l;
        graft_batch *b;
        assert_int_equal(graft_loader_new(&l, &seqs, &cr, 0), GRAFT_OK);
        for (int s = 0; s < 3; s++) {
            assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
            for (int i = 0; i < b->n; i++)
                check_sequence_row(b, i, b->indices[i]);
        }
        cursor = graft_loader_cursor(l);
        graft_loader_free(l);
    }
    assert_int_equal(cursor, 18);
    size_t n = global_sequence(&seqs, c, 2, cursor, 7, seq);
    assert_int_equal(n, 2 * N_SEQ - cursor);
    assert_memory_equal(seq, ref + cursor, n * sizeof(uint64_t));
    /* prefetch gives the same batches */
    graft_loader *sync, *pre;
    c = config(4, 1, 2, 0);
    assert_int_equal(graft_loader_new(&sync, &seqs, &c, 3), GRAFT_OK);
    c.prefetch = 3;
    assert_int_equal(graft_loader_new(&pre, &seqs, &c, 3), GRAFT_OK);
    for (int s = 0; s < 20; s++) {
        graft_batch *a, *b;
        assert_int_equal(graft_loader_next(sync, &a, NULL), GRAFT_OK);
        assert_int_equal(graft_loader_next(pre, &b, NULL), GRAFT_OK);
        assert_null(a->inputs);
        assert_batches_equal(a, b, SEQ_T, 2);
    }
    graft_loader_free(sync);
    graft_loader_free(pre);
    /* the eval loader: every sample once over the ranks, in order */
    for (int W = 1; W <= 3; W++) {
        int seen[N_SEQ] = {0};
        for (int r = 0; r < W; r++) {
            graft_loader *l;
            assert_int_equal(graft_loader_new_eval(&l, &seqs, 4, r, W, 0), GRAFT_OK);
            graft_batch *b;
            uint64_t next = (uint64_t)r * N_SEQ / (uint64_t)W;
            for (;;) {
                assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
                if (b->global_n == 0) break;
                for (int i = 0; i < b->n; i++) {
                    assert_int_equal(b->indices[i], next++);
                    check_sequence_row(b, i, b->indices[i]);
                    seen[b->indices[i]]++;
                }
            }
            graft_loader_free(l);
        }
        for (int i = 0; i < N_SEQ; i++)
            assert_int_equal(seen[i], 1);
    }
}

static void test_ragged_last_batch(void **state) {
    (void)state;
    /* N = 37, G = 12: the last batch of an epoch has 1 sample; with W = 4 only rank 3
     * gets it, ranks 0-2 get n = 0 but the same global_n and cursor */
    uint64_t seq[N_IMG];
    graft_loader_config c = config(12, 0, 4, 0);
    assert_int_equal(global_sequence(&images, c, 4, 0, 4, seq), N_IMG);
    for (int r = 0; r < 4; r++) {
        c.rank = r;
        graft_loader *l;
        graft_batch *b = NULL;
        assert_int_equal(graft_loader_new(&l, &images, &c, 36), GRAFT_OK);
        assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
        assert_int_equal(b->global_n, 1);
        assert_int_equal(b->n, r == 3 ? 1 : 0);
        assert_int_equal(b->cursor_after, 37);
        assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK); /* next epoch, full */
        assert_int_equal(b->epoch, 1);
        assert_int_equal(b->global_n, 12);
        assert_int_equal(b->n, 3);
        graft_loader_free(l);
    }
    /* G larger than N: one batch per epoch */
    c = config(100, 1, 3, 0);
    graft_loader *l;
    graft_batch *b;
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_OK);
    assert_int_equal(graft_loader_steps_per_epoch(l), 1);
    assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
    assert_int_equal(b->global_n, N_IMG);
    assert_int_equal(b->n, 24 - 12); /* floor(2*37/3) - floor(37/3) */
    graft_loader_free(l);
}

static void test_eval_loader(void **state) {
    (void)state;
    for (int W = 1; W <= 4; W++) {
        int seen[N_IMG] = {0};
        graft_loader *l[4];
        for (int r = 0; r < W; r++)
            assert_int_equal(graft_loader_new_eval(&l[r], &images, 4, r, W, 0), GRAFT_OK);
        int steps = 0, done = 0;
        while (!done) {
            int global = -1, total = 0;
            for (int r = 0; r < W; r++) {
                graft_batch *b;
                assert_int_equal(graft_loader_next(l[r], &b, NULL), GRAFT_OK);
                if (global < 0) global = b->global_n;
                assert_int_equal(b->global_n, global); /* every rank agrees on the step */
                assert_true(b->n <= 4);
                total += b->n;
                float plain[IMG_PIX];
                for (int i = 0; i < b->n; i++) {
                    seen[b->indices[i]]++;
                    int label = graft_dataset_image(&images, b->indices[i], plain);
                    assert_memory_equal(b->inputs + (size_t)i * IMG_PIX, plain, sizeof plain);
                    assert_int_equal(b->labels[i], label);
                }
            }
            assert_int_equal(total, global);
            if (global == 0)
                done = 1;
            else
                steps++;
        }
        for (int i = 0; i < N_IMG; i++)
            assert_int_equal(seen[i], 1);
        for (int r = 0; r < W; r++) { /* stays at the end */
            graft_batch *b;
            assert_int_equal(graft_loader_next(l[r], &b, NULL), GRAFT_OK);
            assert_int_equal(b->global_n, 0);
            graft_loader_free(l[r]);
        }
        printf("  W=%d: %d eval steps, every sample once\n", W, steps);
        assert_int_equal(steps, (int)(((N_IMG + W - 1) / W + 3) / 4));
    }
    /* token windows, sequential */
    graft_loader *l;
    graft_batch *b;
    assert_int_equal(graft_loader_new_eval(&l, &tokens, 100, 0, 1, 5), GRAFT_OK);
    assert_int_equal(graft_loader_next(l, &b, NULL), GRAFT_OK);
    assert_int_equal(b->n, (N_TOK - 1) / 5);
    for (int i = 0; i < b->n; i++) {
        assert_int_equal(b->indices[i], (uint64_t)i);
        assert_int_equal(b->tokens[(size_t)i * 5], token_of((size_t)i * 5));
        assert_int_equal(b->labels[(size_t)i * 5 + 4], token_of((size_t)i * 5 + 5));
    }
    graft_loader_free(l);
}

static void test_bad_config(void **state) {
    (void)state;
    graft_loader *l = NULL;
    graft_loader_config c = config(0, 0, 1, 0);
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_ERR_CONFIG);
    c = config(8, 2, 2, 0);
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_ERR_CONFIG);
    c = config(8, 0, 1, GRAFT_LOADER_MAX_PREFETCH + 1);
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_ERR_CONFIG);
    c = config(8, 0, 1, 0);
    c.crop_padding = 7;
    assert_int_equal(graft_loader_new(&l, &images, &c, 0), GRAFT_ERR_CONFIG);
    c = config(8, 0, 1, 0);
    assert_int_equal(graft_loader_new(&l, &tokens, &c, 0), GRAFT_ERR_CONFIG); /* seq_len 0 */
    assert_int_equal(graft_loader_new_eval(&l, &images, 0, 0, 1, 0), GRAFT_ERR_CONFIG);
    assert_null(l);
    graft_loader_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch_covered_once),
        cmocka_unit_test(test_order_by_seed_and_epoch),
        cmocka_unit_test(test_resume_other_world_size),
        cmocka_unit_test(test_prefetch_matches_sync),
        cmocka_unit_test(test_augmentation),
        cmocka_unit_test(test_token_windows),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_ragged_last_batch),
        cmocka_unit_test(test_eval_loader),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
