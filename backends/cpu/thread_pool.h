/* A persistent pool of worker threads. slm_pool_run runs one function on every thread (the caller is
 * thread 0) and returns when all are done; inside it, slm_pool_barrier synchronises the threads, so a
 * whole split of ops runs in one dispatch with a barrier between dependent ops. */
#ifndef SLM_THREAD_POOL_H
#define SLM_THREAD_POOL_H

#include "slm.h"

typedef struct slm_pool slm_pool;
typedef void (*slm_pool_fn)(void *arg, int ith, int nth);

slm_status slm_pool_create(int n_threads, slm_pool **out, slm_error *err);
void slm_pool_free(slm_pool *p);
int slm_pool_size(const slm_pool *p);
void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *arg);
/* Must be called by all threads of the running dispatch. */
void slm_pool_barrier(slm_pool *p);

#endif
