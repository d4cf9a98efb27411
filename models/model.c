#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/bert/bert.h"
#include "models/gpt2/gpt2.h"
#include "models/mlp/mlp.h"
#include "models/resnet/resnet.h"
#include "models/vit/vit.h"
#include "runtime/core/check.h"
#include "runtime/core/log.h"

/* The registry: every architecture graft builds, by model.arch. The default sizes are
 * the published models' (GPT-2 small, BERT-base, ViT-B/16); each folder of models/
 * provides the create function. */
static const graft_model_desc registry[] = {
    {.arch = "mlp", .input = GRAFT_INPUT_IMAGES, .head = "head", .create = graft_mlp_create},
    {.arch = "resnet18", .input = GRAFT_INPUT_IMAGES, .head = "fc", .create = graft_resnet_create},
    {.arch = "resnet34", .input = GRAFT_INPUT_IMAGES, .head = "fc", .create = graft_resnet_create},
    {.arch = "resnet50", .input = GRAFT_INPUT_IMAGES, .head = "fc", .create = graft_resnet_create},
    {.arch = "bert",
     .lora = 1,
     .lora_example = "bert.encoder.layer.*.attention.self.query",
     .peft_task_classify = "SEQ_CLS",
     .input = GRAFT_INPUT_TOKENS,
     .head = "classifier",
     .defaults = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_positions = 512},
     .create = graft_bert_create},
    {.arch = "gpt2",
     .lora = 1,
     .lora_example = "transformer.h.*.attn.c_attn",
     .peft_task_lm = "CAUSAL_LM",
     .input = GRAFT_INPUT_TOKENS,
     .defaults = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_positions = 1024},
     .create = graft_gpt2_create_sized},
    {.arch = "vit",
     .lora = 1,
     .lora_example = "encoder.layers.encoder_layer_*.mlp.0",
     .input = GRAFT_INPUT_IMAGES,
     .head = "heads.head",
     .defaults = {.n_layer = 12, .n_head = 12, .n_embd = 768},
     .create = graft_vit_create},
};

enum { N_ARCHS = sizeof registry / sizeof registry[0] };

int graft_model_count(void) { return N_ARCHS; }

const graft_model_desc *graft_model_desc_at(int i) {
    return i >= 0 && i < N_ARCHS ? &registry[i] : NULL;
}

const graft_model_desc *graft_model_find(const char *arch) {
    for (int i = 0; arch && i < N_ARCHS; i++)
        if (strcmp(arch, registry[i].arch) == 0) return &registry[i];
    return NULL;
}

const char *graft_model_arch_names(void) {
    static char names[256];
    if (!names[0]) {
        size_t len = 0;
        for (int i = 0; i < N_ARCHS && len < sizeof names; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                    registry[i].arch);
    }
    return names;
}

/* A size left 0 in the config takes the architecture's default. */
static void apply_default(int *value, int fallback) {
    if (*value <= 0) *value = fallback;
}

graft_status graft_model_create(graft_model *m, const graft_config *cfg,
                                const graft_model_input *input) {
    memset(m, 0, sizeof *m);
    const graft_model_desc *d = graft_model_find(cfg->model.arch);
    if (!d) {
        GRAFT_ERROR("model.arch: unknown architecture '%s' (expected one of: %s)", cfg->model.arch,
                    graft_model_arch_names());
        return GRAFT_ERR_CONFIG;
    }
    graft_config sized = *cfg; /* shallow: only the sizes differ, read-only */
    apply_default(&sized.model.n_layer, d->defaults.n_layer);
    apply_default(&sized.model.n_head, d->defaults.n_head);
    apply_default(&sized.model.n_embd, d->defaults.n_embd);
    apply_default(&sized.model.n_positions, d->defaults.n_positions);
    const graft_strlist *targets = &cfg->model.lora.targets;
    if (targets->count > 0 && !d->lora) {
        GRAFT_ERROR("model.lora: model.arch %s takes no adapters (gpt2, bert and vit do)",
                    cfg->model.arch);
        return GRAFT_ERR_CONFIG;
    }
    int *matched = targets->count ? calloc((size_t)targets->count, sizeof *matched) : NULL;
    if (targets->count && !matched) return GRAFT_ERR_NOMEM;
    graft_lora_spec spec = {.rank = cfg->model.lora.rank,
                            .alpha = (float)cfg->model.lora.alpha,
                            .dropout = (float)cfg->model.lora.dropout,
                            .targets = targets->items,
                            .n_targets = targets->count,
                            .matched = matched};
    graft_model_input with_lora = *input;
    with_lora.lora = targets->count ? &spec : NULL;
    graft_status st = d->create(m, &sized, &with_lora);
    if (st == GRAFT_OK && cfg->model.head_num_classes > 0 && !m->iface.head) {
        GRAFT_ERROR("model.head.num_classes: %s has no classifier to replace", cfg->model.arch);
        st = GRAFT_ERR_CONFIG;
    }
    for (int g = 0; st == GRAFT_OK && g < targets->count; g++)
        if (matched[g] == 0) {
            GRAFT_ERROR("model.lora.targets: '%s' matches no linear layer of the transformer "
                        "blocks (e.g. %s)",
                        targets->items[g], d->lora_example);
            st = GRAFT_ERR_CONFIG;
        }
    free(matched);
    if (st != GRAFT_OK && m->iface.free) graft_model_free(m);
    return st;
}

void graft_model_free(graft_model *m) {
    if (!m) return;
    if (m->iface.free) m->iface.free(m->self);
    memset(m, 0, sizeof *m);
}

graft_status graft_model_build(graft_model *m, int max_batch) {
    return m->iface.build(m->self, max_batch);
}

void graft_model_init_weights(graft_model *m, uint64_t seed) {
    m->iface.init_weights(m->self, seed);
    graft_lora_init_all(m->params, seed);
}

void graft_model_seed_step(graft_model *m, uint64_t seed) {
    if (m->iface.seed_step) m->iface.seed_step(m->self, seed);
}

float graft_model_forward(graft_model *m, const float *inputs, const int32_t *tokens,
                          const int32_t *labels, int B, int training, int *counted) {
    return m->iface.forward(m->self, inputs, tokens, labels, B, training, counted);
}

void graft_model_backward(graft_model *m, float loss_scale) {
    m->iface.backward(m->self, loss_scale);
}

const float *graft_model_logits(graft_model *m) { return m->iface.logits(m->self); }

void graft_model_split_at(graft_model *m, graft_model_split *out) {
    memset(out, 0, sizeof *out);
    if (m->iface.split)
        m->iface.split(m->self, out);
    else
        snprintf(out->why, sizeof out->why, "%s cannot start its forward from features",
                 m->iface.name);
}

void graft_model_prefix_forward(graft_model *m, const float *inputs, const int32_t *tokens, int B,
                                float *features) {
    m->iface.prefix_forward(m->self, inputs, tokens, B, features);
}

float graft_model_forward_features(graft_model *m, const float *features, const int32_t *labels,
                                   int B, int training, int *counted) {
    return m->iface.forward_features(m->self, features, labels, B, training, counted);
}

const char *graft_model_head(const graft_model *m) { return m->iface.head; }

graft_load_options graft_model_load_options(const graft_model *m, int strict, int replace_head) {
    return (graft_load_options){.strict = strict,
                                .map_name = m->iface.map_name,
                                .replaced = replace_head ? m->iface.head : NULL};
}

graft_status graft_model_load_lora_init(const graft_model *m, const graft_config *cfg) {
    if (!cfg->model.lora.init) return GRAFT_OK;
    graft_lora_dir_config dc = graft_model_lora_dir_config(m, cfg);
    GRAFT_TRY(graft_lora_load_dir(m->params, &dc, cfg->model.lora.init));
    GRAFT_INFO("model.lora.init %s: adapters loaded", cfg->model.lora.init);
    return GRAFT_OK;
}

graft_lora_dir_config graft_model_lora_dir_config(const graft_model *m, const graft_config *cfg) {
    const graft_model_desc *d = graft_model_find(cfg->model.arch);
    return (graft_lora_dir_config){.rank = cfg->model.lora.rank,
                                   .alpha = cfg->model.lora.alpha,
                                   .dropout = cfg->model.lora.dropout,
                                   .task_type = !d ? NULL
                                                : m->task == GRAFT_TASK_CLASSIFY
                                                    ? d->peft_task_classify
                                                    : d->peft_task_lm};
}
