#include "gpt2_kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/core/check.h"
#include "runtime/ops/ops.h"

/* Rows of a prompt computed together: large enough for the linear layers to run as
 * GEMMs, small enough that the scratch stays a few MiB for GPT-2 small. */
#define KV_CHUNK 64

static float *floats(size_t n, int *failed) {
    float *x = calloc(n ? n : 1, sizeof(float));
    if (!x) *failed = 1;
    return x;
}

graft_status graft_gpt2_kv_cache_init(graft_gpt2_kv_cache *c, const graft_gpt2 *m, int capacity) {
    const graft_gpt2_config *g = &m->cfg;
    GRAFT_ASSERT(capacity >= 1 && capacity <= g->n_positions);
    memset(c, 0, sizeof *c);
    c->capacity = capacity;
    c->chunk = capacity < KV_CHUNK ? capacity : KV_CHUNK;
    const size_t C = (size_t)g->n_embd, rows = (size_t)c->chunk;
    const size_t cache = (size_t)g->n_layer * (size_t)capacity * C;
    int failed = 0;
    c->k = floats(cache, &failed);
    c->v = floats(cache, &failed);
    c->x = floats(rows * C, &failed);
    c->ln = floats(rows * C, &failed);
    c->mean = floats(rows, &failed);
    c->rstd = floats(rows, &failed);
    c->qkv = floats(rows * 3 * C, &failed);
    c->att = floats(rows * C, &failed);
    c->proj = floats(rows * C, &failed);
    c->fc = floats(rows * 4 * C, &failed);
    c->scores = floats(graft_attention_cached_scratch_floats(c->chunk, capacity), &failed);
    c->logits = floats((size_t)g->vocab_size, &failed);
    const int rank = m->blocks[0].lora_rank; /* adapters: no dropout at inference */
    c->lora =
        rank > 0 ? floats(graft_lora_scratch_floats(rows, 4 * g->n_embd, rank, 0), &failed) : NULL;
    if (failed) {
        GRAFT_ERROR("out of memory for a key/value cache of %d positions (%zu MiB)", capacity,
                    2 * cache * sizeof(float) >> 20);
        graft_gpt2_kv_cache_free(c);
        return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

void graft_gpt2_kv_cache_free(graft_gpt2_kv_cache *c) {
    if (!c) return;
    float *all[] = {c->k,   c->v,    c->x,  c->ln,     c->mean,   c->rstd, c->qkv,
                    c->att, c->proj, c->fc, c->scores, c->logits, c->lora};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(c, 0, sizeof *c);
}

/* The cache of layer l, head h: [capacity, head_dim] rows. */
static size_t head_offset(const graft_gpt2 *m, const graft_gpt2_kv_cache *c, int l, int h) {
    const size_t HS = (size_t)(m->cfg.n_embd / m->cfg.n_head);
    return (((size_t)l * m->cfg.n_head + h) * c->capacity) * HS;
}

void graft_gpt2_kv_cache_copy(graft_gpt2_kv_cache *dst, const graft_gpt2_kv_cache *src,
                              const graft_gpt2 *m) {
    GRAFT_ASSERT(dst->capacity >= src->len);
    const size_t HS = (size_t)(m->cfg.n_embd / m->cfg.n_head), n = (size_t)src->len * HS;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int h = 0; h < m->cfg.n_head; h++) {
            memcpy(dst->k + head_offset(m, dst, l, h), src->k + head_offset(m, src, l, h),
                   n * sizeof(float));
            memcpy(dst->v + head_offset(m, dst, l, h), src->v + head_offset(m, src, l, h),
                   n * sizeof(float));
        }
    memcpy(dst->logits, src->logits, (size_t)m->cfg.vocab_size * sizeof(float));
    dst->len = src->len;
}

/* Block l over R rows at positions first .. first+R-1, in place on the stream c->x:
 * the rows' keys and values go into the cache, then each row attends to positions up to
 * its own. The LayerNorms, linear layers (with their LoRA adapters) and GELU are the
 * block's own forwards. */
static void block_forward(const graft_gpt2 *m, graft_gpt2_kv_cache *c, int l, int first, int R) {
    const graft_transformer *t = &m->blocks[l];
    const graft_params *p = &m->params;
    const int C = m->cfg.n_embd, NH = m->cfg.n_head, HS = C / NH;
    const size_t n = (size_t)R * C;
    graft_layernorm_layer_forward(&t->attn_ln, p, c->ln, c->mean, c->rstd, c->x, R);
    graft_linear_lora_forward(&t->qkv, p, c->qkv, c->ln, R, NULL, c->lora, NULL);
    for (int r = 0; r < R; r++) {
        const float *row = c->qkv + (size_t)r * 3 * C;
        for (int h = 0; h < NH; h++) {
            const size_t at = head_offset(m, c, l, h) + (size_t)(first + r) * HS;
            memcpy(c->k + at, row + C + h * HS, (size_t)HS * sizeof(float));
            memcpy(c->v + at, row + 2 * C + h * HS, (size_t)HS * sizeof(float));
        }
    }
    graft_attention_cached_forward(c->att, c->qkv, 3 * C, c->k + head_offset(m, c, l, 0),
                                   c->v + head_offset(m, c, l, 0), (size_t)c->capacity * HS, first,
                                   R, NH, HS, c->scores);
    graft_linear_lora_forward(&t->attn_out, p, c->proj, c->att, R, NULL, c->lora, NULL);
    graft_residual_forward(c->x, c->x, c->proj, n);
    graft_layernorm_layer_forward(&t->out_ln, p, c->ln, c->mean, c->rstd, c->x, R);
    graft_linear_lora_forward(&t->intermediate, p, c->fc, c->ln, R, NULL, c->lora, NULL);
    graft_gelu_forward(c->fc, c->fc, (size_t)R * t->cfg.mlp, t->cfg.gelu);
    graft_linear_lora_forward(&t->output, p, c->proj, c->fc, R, NULL, c->lora, NULL);
    graft_residual_forward(c->x, c->x, c->proj, n);
}

void graft_gpt2_kv_forward(const graft_gpt2 *m, graft_gpt2_kv_cache *c, const int32_t *tokens,
                           int n) {
    GRAFT_ASSERT(n >= 1 && c->len + n <= c->capacity);
    const graft_params *p = &m->params;
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const float *wte = graft_params_value(p, m->emb.word);
    const float *wpe = graft_params_value(p, m->emb.position);
    for (int done = 0; done < n; done += c->chunk) {
        const int R = n - done < c->chunk ? n - done : c->chunk, first = c->len;
        /* wte[token] + wpe[position] */
        for (int r = 0; r < R; r++) {
            const int32_t id = tokens[done + r];
            GRAFT_ASSERT(id >= 0 && id < V);
            graft_residual_forward(c->x + (size_t)r * C, wte + (size_t)id * C,
                                   wpe + (size_t)(first + r) * C, (size_t)C);
        }
        for (int l = 0; l < m->cfg.n_layer; l++)
            block_forward(m, c, l, first, R);
        c->len += R;
        if (done + R < n) continue;
        /* ln_f and the tied lm_head on the last row only */
        const float *last = c->x + (size_t)(R - 1) * C;
        graft_layernorm_layer_forward(&m->ln_f, p, c->ln, c->mean, c->rstd, last, 1);
        graft_linear_forward(c->logits, c->ln, wte, NULL, 1, C, V, GRAFT_W_OUT_IN);
    }
}
