/* Executes a graph on a set of devices: consecutive ops of one device form a split, run by that device's
 * backend in one call; the graph's transfers run between splits through host staging memory. The scheduler
 * knows devices, ops and transfers, not the model. An observer, when set, sees every op and transfer with
 * its device, the bytes it reads and its time: each then runs and is waited for alone. */
#ifndef SLM_SCHEDULER_H
#define SLM_SCHEDULER_H

#include "graph.h"

typedef struct slm_sched {
    slm_device *const *devices;
    int n_devices;
    void *staging; /* host memory for transfers, grown to the largest (owned) */
    size_t staging_size;
    slm_op_observer observer; /* NULL: off */
    void *observer_user;
} slm_sched;

/* Checks every op of g against the op contract (slm_op_check) and its device index: the one place the
 * contract is checked before ops reach a backend. A graph built the same way again need not be checked
 * again (the context checks each shape of graph once). */
slm_status slm_sched_check(const slm_sched *s, const slm_graph *g, slm_error *err);
/* Runs a checked graph. pos: the position of the batch's first token (for the observer's byte counts). */
slm_status slm_sched_run(slm_sched *s, const slm_graph *g, int pos, int n_tokens, slm_error *err);
void slm_sched_free(slm_sched *s);

#endif
