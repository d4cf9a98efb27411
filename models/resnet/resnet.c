#include "resnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

/* Blocks per stage (layer1..layer4) and whether they are Bottlenecks (expansion 4). */
static int layout(int depth, int blocks[4]) {
    static const int basic18[4] = {2, 2, 2, 2}, deep[4] = {3, 4, 6, 3};
    memcpy(blocks, depth == 18 ? basic18 : deep, sizeof basic18);
    return depth == 50;
}

graft_status graft_resnet_init(graft_resnet *m, const graft_resnet_config *cfg) {
    memset(m, 0, sizeof *m);
    if (cfg->depth != 18 && cfg->depth != 34 && cfg->depth != 50) {
        GRAFT_ERROR("resnet: depth %d is not one of 18, 34, 50", cfg->depth);
        return GRAFT_ERR_CONFIG;
    }
    /* The limits keep every size of the kernels (ints) far from overflowing. */
    if (cfg->base_width <= 0 || cfg->base_width > 1024 || cfg->channels <= 0 ||
        cfg->channels > 4096 || cfg->height <= 0 || cfg->width <= 0 || cfg->height > 8192 ||
        cfg->width > 8192 || cfg->num_classes <= 0 || cfg->dropout < 0 || cfg->dropout >= 1) {
        GRAFT_ERROR("bad resnet%d config: width %d (1..1024), images %dx%dx%d (up to "
                    "4096x8192x8192), %d classes, dropout %g",
                    cfg->depth, cfg->base_width, cfg->channels, cfg->height, cfg->width,
                    cfg->num_classes, (double)cfg->dropout);
        return GRAFT_ERR_CONFIG;
    }
    m->cfg = *cfg;
    graft_params *p = &m->params;
    graft_params_init(p);
    const int w = cfg->base_width;
    int H = cfg->height, W = cfg->width;
    m->stages[0] = graft_param_range_begin(p);
    if (cfg->small_stem)
        GRAFT_TRY(graft_conv_bn_add(&m->stem, p, "conv1", "bn1", cfg->channels, H, W, w, 3, 1, 1));
    else
        GRAFT_TRY(graft_conv_bn_add(&m->stem, p, "conv1", "bn1", cfg->channels, H, W, w, 7, 2, 3));
    graft_param_range_end(&m->stages[0], p);
    m->stem.shape.nchw_input = 1; /* the images; every activation after is [C, N, H, W] */
    H = m->stem.shape.OH;
    W = m->stem.shape.OW;
    if (!cfg->small_stem) {
        m->pool = graft_pool2d_shape_make(1, w, H, W, 3, 2, 1);
        H = m->pool.OH;
        W = m->pool.OW;
    }
    int per_stage[4];
    const int bottleneck = layout(cfg->depth, per_stage);
    graft_status (*add_block)(graft_resblock *, graft_params *, const char *, int, int, int, int,
                              int, int) =
        bottleneck ? graft_resblock_bottleneck_add : graft_resblock_basic_add;
    int inplanes = w;
    char prefix[32];
    for (int stage = 0; stage < 4; stage++) {
        const int planes = w << stage;
        for (int i = 0; i < per_stage[stage]; i++) {
            graft_resblock *blk = &m->blocks[m->n_blocks];
            snprintf(prefix, sizeof prefix, "layer%d.%d", stage + 1, i);
            GRAFT_TRY(add_block(blk, p, prefix, inplanes, H, W, planes, i == 0 && stage > 0 ? 2 : 1,
                                cfg->frozen_bn_eval));
            m->stages[1 + m->n_blocks++] = blk->range;
            H = graft_resblock_last(blk)->shape.OH;
            W = graft_resblock_last(blk)->shape.OW;
            inplanes = planes * (bottleneck ? 4 : 1);
        }
    }
    m->features = inplanes;
    graft_param_range *fc = &m->stages[m->n_blocks + 1];
    *fc = graft_param_range_begin(p);
    GRAFT_TRY(
        graft_linear_layer_add(&m->fc, p, "fc", m->features, cfg->num_classes, 1, GRAFT_W_OUT_IN));
    graft_param_range_end(fc, p);
    return GRAFT_OK;
}

/* Stage index of the lowest trainable parameter (see graft_resnet.lowest). */
static int lowest_stage(const graft_resnet *m) {
    return graft_nn_lowest_trainable(&m->params, m->stages, m->n_blocks + 2);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Activation layout, identical in the planning and the real pass of the arena. */
static void plan_activations(graft_resnet *m) {
    graft_arena *a = &m->arena;
    const graft_params *p = &m->params;
    const size_t B = (size_t)m->max_batch;
    /* The stem's output (the largest activation) only ever goes to ping[0]. */
    graft_resblock_sizes stem = {0, 0, 0};
    int keep = m->lowest == 0;
    graft_resblock_unit_plan(&m->stem, p, a, m->max_batch, keep, m->cfg.frozen_bn_eval, &stem);
    graft_resblock_sizes need = {0, stem.grad, stem.scratch};
    const size_t stem_n = graft_conv_bn_out_floats(&m->stem, (int)B);
    const size_t pool_n = m->cfg.small_stem ? 0 : B * m->pool.C * m->pool.OH * m->pool.OW;
    m->stem_out = keep ? graft_arena_floats(a, stem_n) : NULL;
    m->pool_out = keep && pool_n ? graft_arena_floats(a, pool_n) : NULL;
    m->pool_argmax = pool_n ? graft_arena_alloc(a, pool_n * sizeof(int32_t)) : NULL;
    if (!keep) need.ping = max_size(need.ping, pool_n);
    for (int b = 0; b < m->n_blocks; b++)
        graft_resblock_plan(&m->blocks[b], p, a, m->max_batch, 1 + b >= m->lowest, &need);
    for (int i = 0; i < 3; i++) {
        size_t n = i == 0 ? max_size(stem.ping, need.ping) : need.ping;
        m->ping[i] = n ? graft_arena_floats(a, n) : NULL;
    }
    for (int i = 0; i < 4; i++)
        m->grad[i] = need.grad ? graft_arena_floats(a, need.grad) : NULL;
    m->scratch = graft_arena_floats(a, need.scratch);
    const size_t F = (size_t)m->features, K = (size_t)m->cfg.num_classes;
    m->feat = graft_arena_floats(a, B * F);
    m->mask = m->cfg.dropout > 0 ? graft_arena_floats(a, B * F) : NULL;
    m->dfeat = graft_arena_floats(a, B * F);
    m->logits = graft_arena_floats(a, B * K);
    m->probs = graft_arena_floats(a, B * K);
    m->dlogits = graft_arena_floats(a, B * K);
}

graft_status graft_resnet_build(graft_resnet *m, int max_batch) {
    if (max_batch <= 0) return GRAFT_ERR_INVALID_ARG;
    GRAFT_TRY(graft_params_finalize(&m->params));
    m->max_batch = max_batch;
    m->lowest = lowest_stage(m);
    graft_arena_free(&m->arena);
    graft_arena_init_plan(&m->arena);
    plan_activations(m);
    GRAFT_TRY(graft_arena_commit(&m->arena));
    plan_activations(m);
    return GRAFT_OK;
}

void graft_resnet_init_weights(graft_resnet *m, uint64_t seed) {
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    graft_conv_bn_init(&m->stem, &m->params, &rng);
    for (int b = 0; b < m->n_blocks; b++)
        graft_resblock_init(&m->blocks[b], &m->params, &rng);
    graft_linear_layer_init(&m->fc, &m->params, &rng);
    graft_rng_seed(&m->dropout_rng, graft_rng_mix(seed, 0xD50u));
}

void graft_resnet_free(graft_resnet *m) {
    if (!m) return;
    graft_params_free(&m->params);
    graft_arena_free(&m->arena);
    memset(m, 0, sizeof *m);
}

/* ---- forward ------------------------------------------------------------------------ */

/* feat [B, F] = the mean of each channel-major plane of x [F, B, P]. */
static void global_avgpool_forward(float *feat, const float *x, int B, int F, int P) {
    for (int f = 0; f < F; f++)
        for (int b = 0; b < B; b++) {
            const float *plane = x + ((size_t)f * B + b) * P;
            float sum = 0.0f;
            for (int i = 0; i < P; i++)
                sum += plane[i];
            feat[(size_t)b * F + f] = sum / (float)P;
        }
}

/* dx [F, B, P] = dfeat [B, F] / P spread over each plane (overwrites dx). */
static void global_avgpool_backward(float *dx, const float *dfeat, int B, int F, int P) {
    for (int f = 0; f < F; f++)
        for (int b = 0; b < B; b++) {
            float *plane = dx + ((size_t)f * B + b) * P;
            const float g = dfeat[(size_t)b * F + f] / (float)P;
            for (int i = 0; i < P; i++)
                plane[i] = g;
        }
}

/* The stem (conv1/bn1/relu[/max-pool]) over x: its output, in ping[*at] when the stem
 * runs forward only. */
static const float *stem_forward(graft_resnet *m, const float *x, int *at, int B, int training) {
    /* Forward-only stages rotate through ping[]: `at` holds the current activation. */
    *at = 0;
    float *y = m->lowest == 0 ? m->stem_out : m->ping[0];
    graft_resblock_unit_forward(&m->stem, &m->params, y, x, NULL, 1, B, training,
                                m->cfg.frozen_bn_eval, m->scratch);
    if (m->cfg.small_stem) return y;
    graft_pool2d_shape s = m->pool;
    s.N = B;
    float *pooled = m->lowest == 0 ? m->pool_out : m->ping[1];
    graft_maxpool2d_forward(pooled, m->pool_argmax, y, &s);
    *at = 1;
    return pooled;
}

/* Blocks [first, end) from their input cur. */
static const float *blocks_forward(graft_resnet *m, const float *cur, int *at, int first, int end,
                                   int B, int training) {
    for (int b = first; b < end; b++)
        cur = graft_resblock_forward(&m->blocks[b], &m->params, cur, m->ping, at, B, training,
                                     m->scratch);
    return cur;
}

/* Planes per channel of the last block's output (the average pool's input). */
static int top_planes(const graft_resnet *m) {
    const graft_conv2d_shape *top = &graft_resblock_last(&m->blocks[m->n_blocks - 1])->shape;
    return top->OH * top->OW;
}

/* From the pooled features in m->feat: dropout, fc, the loss. */
static float head_forward(graft_resnet *m, const int32_t *targets, int B, int training) {
    const int F = m->features, K = m->cfg.num_classes;
    m->dropout_applied = training && m->cfg.dropout > 0;
    if (m->dropout_applied)
        graft_dropout_forward(m->feat, m->mask, m->feat, (size_t)B * F, m->cfg.dropout,
                              &m->dropout_rng);
    graft_linear_layer_forward(&m->fc, &m->params, m->logits, m->feat, B);
    m->counted = 0;
    if (!targets) return 0.0f;
    return graft_cross_entropy_forward(m->probs, m->logits, targets, B, K, -1, &m->counted);
}

float graft_resnet_forward(graft_resnet *m, const float *x, const int32_t *targets, int B,
                           int training) {
    GRAFT_ASSERT(B > 0 && B <= m->max_batch);
    m->input = x;
    m->targets = targets;
    m->batch = B;
    int at;
    const float *cur = stem_forward(m, x, &at, B, training);
    cur = blocks_forward(m, cur, &at, 0, m->n_blocks, B, training);
    global_avgpool_forward(m->feat, cur, B, m->features, top_planes(m));
    return head_forward(m, targets, B, training);
}

/* ---- backward ----------------------------------------------------------------------- */

/* Backward of conv1/bn1/relu[/max-pool] from g, the gradient w.r.t. the stem's output. */
static void stem_backward(graft_resnet *m, float *g, int B) {
    float *dy = g;
    const size_t n = graft_conv_bn_out_floats(&m->stem, B);
    if (!m->cfg.small_stem) {
        graft_pool2d_shape s = m->pool;
        s.N = B;
        dy = m->grad[2];
        memset(dy, 0, n * sizeof(float));
        graft_maxpool2d_backward(dy, g, m->pool_argmax, &s);
    }
    graft_resblock_relu_mask(dy, m->stem_out, n);
    graft_conv_bn_backward(&m->stem, &m->params, NULL, 0, dy, m->grad[1], m->input, B, m->scratch);
}

void graft_resnet_backward(graft_resnet *m, float loss_scale) {
    /* the plan covers the trainable set it was built for */
    GRAFT_ASSERT(lowest_stage(m) == m->lowest);
    const int B = m->batch, F = m->features, K = m->cfg.num_classes;
    if (m->lowest > m->n_blocks + 1 || m->counted == 0) return;
    memset(m->dlogits, 0, (size_t)B * K * sizeof(float));
    graft_cross_entropy_backward(m->dlogits, m->probs, m->targets, B, K, -1,
                                 loss_scale / (float)m->counted);
    const int trunk = m->lowest <= m->n_blocks; /* something under fc trains */
    if (trunk) memset(m->dfeat, 0, (size_t)B * F * sizeof(float));
    graft_linear_layer_backward(&m->fc, &m->params, trunk ? m->dfeat : NULL, m->dlogits, m->feat,
                                B);
    if (!trunk) return;
    if (m->dropout_applied)
        for (size_t i = 0; i < (size_t)B * F; i++)
            m->dfeat[i] *= m->mask[i];
    const graft_conv2d_shape *s = &graft_resblock_last(&m->blocks[m->n_blocks - 1])->shape;
    float *g = m->grad[0], *spare = m->grad[3];
    global_avgpool_backward(g, m->dfeat, B, F, s->OH * s->OW);
    /* g: the gradient w.r.t. the output of block b; spare: a free buffer of its size */
    for (int b = m->n_blocks - 1; b >= 0 && 1 + b >= m->lowest; b--) {
        float *dx = graft_resblock_backward(&m->blocks[b], &m->params, g, spare, 1 + b > m->lowest,
                                            m->grad[1], m->grad[2], B, m->scratch);
        if (dx == spare) {
            spare = g;
            g = dx;
        }
    }
    if (m->lowest == 0) stem_backward(m, g, B);
}

/* ---- feature extraction (the feature cache) ----------------------------------------- */

/* The boundary is the input of the lowest trainable stage: a block's input (the rows
 * are its channel-major activation packed per sample) or fc's, the pooled features
 * before dropout (dropout stays in the trainable part). The stem cannot be split off:
 * its input is the image. */
void graft_resnet_split(const graft_resnet *m, graft_model_split *out) {
    memset(out, 0, sizeof *out);
    const int s = m->lowest;
    out->boundary = s;
    if (s == 0 || s > m->n_blocks + 1) {
        snprintf(out->why, sizeof out->why, "%s",
                 s == 0 ? "the stem (conv1) trains: nothing below it is frozen"
                        : "nothing trains");
        return;
    }
    if (!m->cfg.frozen_bn_eval) {
        snprintf(out->why, sizeof out->why,
                 "frozen batchnorm layers run in train mode (freeze.bn: train), so their output "
                 "depends on the batch");
        return;
    }
    out->prefix_params = m->stages[s].first;
    if (s == m->n_blocks + 1) {
        out->floats = (size_t)m->features;
        snprintf(out->where, sizeof out->where, "the input of fc");
        return;
    }
    const graft_conv2d_shape *in = &m->blocks[s - 1].unit[0].shape;
    out->floats = (size_t)in->C * in->H * in->W;
    /* the block's name: its first parameter's up to the second dot ("layer4.0") */
    const char *name = m->params.items[m->stages[s].first].name;
    const char *dot = strchr(name, '.');
    const char *end = dot ? strchr(dot + 1, '.') : NULL;
    snprintf(out->where, sizeof out->where, "the input of %.*s",
             end ? (int)(end - name) : (int)strlen(name), name);
}

/* rows [B, C*P] <-> channel-major x [C, B, P]. */
static void pack_rows(float *rows, const float *x, int B, int C, int P) {
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            memcpy(rows + ((size_t)b * C + c) * P, x + ((size_t)c * B + b) * P,
                   (size_t)P * sizeof(float));
}

static void unpack_rows(float *x, const float *rows, int B, int C, int P) {
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            memcpy(x + ((size_t)c * B + b) * P, rows + ((size_t)b * C + c) * P,
                   (size_t)P * sizeof(float));
}

void graft_resnet_prefix_forward(graft_resnet *m, const float *x, int B, float *features) {
    const int s = m->lowest;
    GRAFT_ASSERT(B > 0 && B <= m->max_batch && s >= 1 && s <= m->n_blocks + 1);
    int at;
    const float *cur = stem_forward(m, x, &at, B, 1);
    cur = blocks_forward(m, cur, &at, 0, s - 1, B, 1);
    if (s == m->n_blocks + 1) {
        global_avgpool_forward(features, cur, B, m->features, top_planes(m));
        return;
    }
    const graft_conv2d_shape *in = &m->blocks[s - 1].unit[0].shape;
    pack_rows(features, cur, B, in->C, in->H * in->W);
}

float graft_resnet_forward_features(graft_resnet *m, const float *features,
                                    const int32_t *targets, int B, int training) {
    const int s = m->lowest;
    GRAFT_ASSERT(B > 0 && B <= m->max_batch && s >= 1 && s <= m->n_blocks + 1);
    m->input = NULL; /* the stem does not train */
    m->targets = targets;
    m->batch = B;
    if (s == m->n_blocks + 1) {
        memcpy(m->feat, features, (size_t)B * m->features * sizeof(float));
    } else {
        const graft_conv2d_shape *in = &m->blocks[s - 1].unit[0].shape;
        unpack_rows(m->ping[0], features, B, in->C, in->H * in->W);
        int at = 0;
        const float *cur = blocks_forward(m, m->ping[0], &at, s - 1, m->n_blocks, B, training);
        global_avgpool_forward(m->feat, cur, B, m->features, top_planes(m));
    }
    return head_forward(m, targets, B, training);
}

/* ---- the model interface ------------------------------------------------------------ */

static graft_status resnet_build(void *self, int max_batch) {
    return graft_resnet_build(self, max_batch);
}
static void resnet_init_weights(void *self, uint64_t seed) {
    graft_resnet_init_weights(self, seed);
}
static void resnet_seed_step(void *self, uint64_t seed) {
    graft_rng_seed(&((graft_resnet *)self)->dropout_rng, seed);
}
static float resnet_forward(void *self, const float *inputs, const int32_t *tokens,
                            const int32_t *labels, int B, int training, int *counted) {
    (void)tokens;
    graft_resnet *m = self;
    float loss = graft_resnet_forward(m, inputs, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}
static void resnet_backward(void *self, float loss_scale) {
    graft_resnet_backward(self, loss_scale);
}
static const float *resnet_logits(void *self) { return ((graft_resnet *)self)->logits; }
static void resnet_split(void *self, graft_model_split *out) { graft_resnet_split(self, out); }
static void resnet_prefix_forward(void *self, const float *inputs, const int32_t *tokens, int B,
                                  float *features) {
    (void)tokens;
    graft_resnet_prefix_forward(self, inputs, B, features);
}
static float resnet_forward_features(void *self, const float *features, const int32_t *labels,
                                     int B, int training, int *counted) {
    graft_resnet *m = self;
    float loss = graft_resnet_forward_features(m, features, labels, B, training);
    if (counted) *counted = m->counted;
    return loss;
}
static void resnet_free(void *self) {
    graft_resnet_free(self);
    free(self);
}

graft_status graft_resnet_create(graft_model *out, const graft_config *cfg,
                                 const graft_model_input *input) {
    static const struct {
        const char *arch;
        int depth;
    } archs[] = {{"resnet18", 18}, {"resnet34", 34}, {"resnet50", 50}};
    const char *arch = NULL;
    int depth = 0;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(cfg->model.arch, archs[i].arch) == 0) {
            arch = archs[i].arch;
            depth = archs[i].depth;
        }
    if (!arch) {
        GRAFT_ERROR("model.arch: '%s' is not resnet18, resnet34 or resnet50", cfg->model.arch);
        return GRAFT_ERR_CONFIG;
    }
    if (input->channels <= 0 || input->height <= 0 || input->width <= 0) {
        GRAFT_ERROR("model.arch %s needs an image dataset (got %s)", arch,
                    input->channels <= 0 ? "a token dataset" : "images with no pixels");
        return GRAFT_ERR_CONFIG;
    }
    const int classes =
        cfg->model.head_num_classes > 0 ? cfg->model.head_num_classes : input->num_classes;
    if (classes <= 0) {
        GRAFT_ERROR("model.arch %s: no class count (the dataset has none; set "
                    "model.head.num_classes)",
                    arch);
        return GRAFT_ERR_CONFIG;
    }
    graft_resnet_config rc = {.depth = depth,
                              .base_width = cfg->model.width,
                              .channels = input->channels,
                              .height = input->height,
                              .width = input->width,
                              .num_classes = classes,
                              .small_stem = cfg->model.small_stem,
                              .dropout = (float)cfg->model.dropout,
                              .frozen_bn_eval = strcmp(cfg->freeze.bn, "train") != 0};
    graft_resnet *m = calloc(1, sizeof *m);
    if (!m) return GRAFT_ERR_NOMEM;
    graft_status st = graft_resnet_init(m, &rc);
    if (st != GRAFT_OK) {
        resnet_free(m);
        return st;
    }
    out->iface = (graft_model_i){.name = arch,
                                 .head = "fc",
                                 .build = resnet_build,
                                 .init_weights = resnet_init_weights,
                                 .seed_step = resnet_seed_step,
                                 .forward = resnet_forward,
                                 .backward = resnet_backward,
                                 .logits = resnet_logits,
                                 .split = resnet_split,
                                 .prefix_forward = resnet_prefix_forward,
                                 .forward_features = resnet_forward_features,
                                 .free = resnet_free};
    out->self = m;
    out->params = &m->params;
    out->task = GRAFT_TASK_CLASSIFY;
    out->num_outputs = classes;
    return GRAFT_OK;
}
