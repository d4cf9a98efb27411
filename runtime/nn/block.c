#include "block.h"

graft_param_range graft_param_range_begin(const graft_params *p) {
    return (graft_param_range){p->count, p->count};
}

void graft_param_range_end(graft_param_range *r, const graft_params *p) { r->end = p->count; }

int graft_param_range_trainable(const graft_params *p, graft_param_range r) {
    for (int i = r.first; i < r.end; i++)
        if (p->items[i].trainable) return 1;
    return 0;
}

int graft_nn_lowest_trainable(const graft_params *p, const graft_param_range *ranges, int n) {
    int first = -1;
    for (int i = 0; i < p->count && first < 0; i++)
        if (p->items[i].trainable) first = i;
    if (first < 0) return n;
    for (int b = 0; b < n; b++)
        if (first < ranges[b].end) return b;
    return n;
}
