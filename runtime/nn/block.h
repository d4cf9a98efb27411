/* What every nn block records: the slice of the parameter table it registered, and the
 * one function that finds, from the table alone, where the backward may stop.
 *
 * Blocks register their parameters contiguously and in forward order (the table's
 * order is the state_dict order, which is also forward order for every graft model), so
 * a block owns the index range [first, end) it registered. The lowest block that must
 * run a backward is the one owning the first trainable parameter of the table: no
 * per-model list of "which layers can be skipped" exists to fall out of date when a
 * parameter is added (see docs/DESIGN.md, Note [Activation sharing under frozen
 * layers]). */
#ifndef GRAFT_NN_BLOCK_H
#define GRAFT_NN_BLOCK_H

#include "runtime/nn/params.h"

/* Parameters [first, end) of a table, as registered by one block (end == first: none). */
typedef struct graft_param_range {
    int first, end;
} graft_param_range;

/* Start recording a block's range: call before the block's first graft_params_add. */
graft_param_range graft_param_range_begin(const graft_params *p);
/* Close the range after the block's last graft_params_add. */
void graft_param_range_end(graft_param_range *r, const graft_params *p);
/* 1 when some parameter of the range is trainable. */
int graft_param_range_trainable(const graft_params *p, graft_param_range r);

/* Of n ranges in registration order, the index of the lowest one holding the table's
 * first trainable parameter; n when no range holds a trainable parameter. A trainable
 * parameter registered outside every range counts for the next range above it (or n
 * when there is none), so nothing trainable is ever skipped by a backward. */
int graft_nn_lowest_trainable(const graft_params *p, const graft_param_range *ranges, int n);

#endif
