/* Executes a graph: consecutive ops of one device form a split, run by that device's backend in one call;
 * between splits only the residual stream crosses, through host staging memory. */
#ifndef SLM_SCHEDULER_H
#define SLM_SCHEDULER_H

#include "graph.h"

typedef struct slm_sched {
    const slm_model *m;
    slm_scratch *scratch;     /* [m->n_devices] */
    void *staging;            /* host memory for one residual stream of n_batch tokens */
    size_t staging_size;
} slm_sched;

slm_status slm_sched_run(slm_sched *s, const slm_graph *g, int n_tokens, slm_error *err);

#endif
