#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLM_PAUSE() _mm_pause()
#else
#define SLM_PAUSE() ((void)0)
#endif

#include "error.h"

/* A wait that spins this long is waiting for a thread the OS has descheduled (more runnable threads than
 * cores): yield the core to it instead of burning the rest of the time slice. */
#define SLM_SPIN_BEFORE_YIELD 2048

static inline void spin_or_yield(int *spins) {
    if (++*spins < SLM_SPIN_BEFORE_YIELD) {
        SLM_PAUSE();
    } else {
        *spins = 0;
        sched_yield();
    }
}

/* Workers spin briefly on a generation counter (a decode step is a few hundred short dispatches, so
 * sleeping on a condition variable per op would dominate), then fall back to the condition variable so
 * an idle process does not burn cores. */
#define SLM_SPIN_ITERS (1 << 16)

struct slm_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned generation; /* bumped to start a dispatch */
    _Atomic int pending;         /* workers still running the current dispatch */
    _Atomic int stop;
    slm_pool_fn fn;
    void *arg;
    /* sense-reversing barrier */
    _Atomic int bar_count;
    _Atomic unsigned bar_phase;
};

typedef struct worker_arg {
    slm_pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    slm_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < SLM_SPIN_ITERS) {
                SLM_PAUSE();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
            if (atomic_load(&p->stop)) return NULL;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

slm_status slm_pool_create(int n, slm_pool **out, slm_error *err) {
    if (n < 1) n = 1;
    slm_pool *p = calloc(1, sizeof *p);
    if (!p) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating the thread pool");
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating the thread pool");
    }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, (wa->p = p, wa->ith = i, wa))) {
            free(wa);
            p->n = i;
            slm_pool_free(p);
            return slm_fail(err, SLM_ERR_NOMEM, "could not start worker thread %d", i);
        }
    }
    *out = p;
    return SLM_OK;
}

void slm_pool_free(slm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int slm_pool_size(const slm_pool *p) { return p->n; }

void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->bar_count, 0);
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) spin_or_yield(&spins);
}

void slm_pool_barrier(slm_pool *p) {
    if (p->n == 1) return;
    unsigned phase = atomic_load_explicit(&p->bar_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->n - 1) {
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->bar_phase, 1, memory_order_release);
    } else {
        int spins = 0;
        while (atomic_load_explicit(&p->bar_phase, memory_order_acquire) == phase) spin_or_yield(&spins);
    }
}
