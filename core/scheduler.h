/* Executes a graph on a set of devices: consecutive ops of one device form a split, run by that device's
 * backend in one call; the graph's transfers run between splits through host staging memory. The scheduler
 * knows devices, ops and transfers, not the model. An observer, when set, sees every op and transfer with
 * its device, the bytes it reads and its time: each then runs and is waited for alone. */
#ifndef SLM_SCHEDULER_H
#define SLM_SCHEDULER_H

#include <pthread.h>

#include "graph.h"

typedef struct slm_sched {
    slm_device *const *devices;
    int n_devices;
    /* locks[d]: device d is shared with other schedulers (a GPU of the model, used by every context) and is
     * used only while this lock is held; NULL: the device is this scheduler's alone (its CPU instance) */
    pthread_mutex_t *locks[SLM_MAX_DEVICES];
    void *staging; /* host memory for transfers, grown to the largest (owned) */
    size_t staging_size;
    slm_op_observer observer; /* NULL: off */
    void *observer_user;
} slm_sched;

/* Checks every op of g against the op contract (slm_op_check) and its device index: the one place the
 * contract is checked before ops reach a backend. A graph built the same way again need not be checked
 * again (the context checks each shape of graph once). */
slm_status slm_sched_check(const slm_sched *s, const slm_graph *g, slm_error *err);
/* Take and release every lock of s->locks, in device order (so two schedulers never wait on each other
 * in a cycle). The caller holds them around everything it does on the shared devices: uploads, the graph
 * run with its last sync, downloads, and allocations and releases of buffers there. */
void slm_sched_lock(slm_sched *s);
void slm_sched_unlock(slm_sched *s);
/* Runs a checked graph (the caller holds the locks). pos: the position of the batch's first token (for the observer's byte counts). */
slm_status slm_sched_run(slm_sched *s, const slm_graph *g, int pos, int n_tokens, slm_error *err);
void slm_sched_free(slm_sched *s);

#endif
