#include "model.h"

#include <stdio.h>
#include <string.h>

#include "models/bert/bert.h"
#include "models/gpt2/gpt2.h"
#include "models/mlp/mlp.h"
#include "models/resnet/resnet.h"
#include "models/vit/vit.h"
#include "runtime/core/log.h"

/* The architectures, by model.arch. Each folder of models/ provides its create function. */
static const struct {
    const char *arch;
    graft_status (*create)(graft_model *, const graft_config *, const graft_model_input *);
} architectures[] = {
    {"mlp", graft_mlp_create},
    {"resnet18", graft_resnet_create},
    {"resnet34", graft_resnet_create},
    {"resnet50", graft_resnet_create},
    {"bert", graft_bert_create},
    {"gpt2", graft_gpt2_create},
    {"vit", graft_vit_create},
};

enum { N_ARCHS = sizeof architectures / sizeof architectures[0] };

const char *graft_model_arch_names(void) {
    static char names[256];
    if (!names[0]) {
        size_t len = 0;
        for (int i = 0; i < N_ARCHS && len < sizeof names; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                    architectures[i].arch);
    }
    return names;
}

graft_status graft_model_create(graft_model *m, const graft_config *cfg,
                                const graft_model_input *input) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(cfg->model.arch, architectures[i].arch) == 0) {
            graft_status st = architectures[i].create(m, cfg, input);
            if (st == GRAFT_OK && cfg->model.head_num_classes > 0 && !m->iface.head) {
                GRAFT_ERROR("model.head.num_classes: %s has no classifier to replace",
                            cfg->model.arch);
                graft_model_free(m);
                return GRAFT_ERR_CONFIG;
            }
            return st;
        }
    GRAFT_ERROR("model.arch: unknown architecture '%s' (expected one of: %s)", cfg->model.arch,
                graft_model_arch_names());
    return GRAFT_ERR_CONFIG;
}

void graft_model_free(graft_model *m) {
    if (!m) return;
    if (m->iface.free) m->iface.free(m->self);
    memset(m, 0, sizeof *m);
}
