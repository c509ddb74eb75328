#include "thread_pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLM_PAUSE() _mm_pause()
#else
#define SLM_PAUSE() ((void)0)
#endif

#include "cpu_threads.h"
#include "error.h"

/* Every wait of the pool (a worker for the next dispatch, a thread at a barrier, the caller for the
 * workers' end) goes through wait_change: it spins in rounds of pauses, yields the core after each round,
 * and once its budget of pauses is spent sleeps on a futex, so that a long wait costs no CPU. Spinning is
 * what keeps a decode step fast: it is a few hundred short ops, the other threads are usually microseconds
 * behind, and sleeping and waking per op would dominate.
 * Two regimes, after whether the threads of every pool in a dispatch fit the CPUs. When they do, a long
 * wait means another process took the core of the thread waited for: waiting threads stay runnable (long
 * rounds, a long budget), because a thread woken from a futex is often queued on its waker's core and the
 * two then share one core while the other process keeps the second. When they do not (several contexts at
 * once), the thread waited for may need this very core: short rounds, and sleep soon.
 * Idle workers sleep after a few milliseconds in both. The sleepers counters let the waking side skip the
 * system call when nobody sleeps, the normal case. */
#define SPIN_ALONE 2048          /* ~80 us of pauses before a yield while the CPUs suffice */
#define SPIN_CROWDED 64          /* ~2.5 us when more threads are dispatching than there are CPUs */
#define BUDGET_ALONE (1 << 20)   /* ~40 ms of spinning and yielding at a barrier, then sleep */
#define BUDGET_CROWDED (1 << 14) /* ~0.6 ms when crowded */
#define BUDGET_IDLE (1 << 16)    /* ~2.5 ms for the next dispatch: the gap between decode steps stays awake */

/* Threads of every pool of the process that are inside a dispatch now (each pool counts its own while it
 * runs one): against the CPUs, whether waiting threads compete with working ones for cores. */
static _Atomic int g_dispatching;

struct slm_pool {
    int n;
    int cpus; /* slm_cpu_usable() at creation */
    pthread_t *threads;
    _Atomic unsigned generation; /* bumped to start a dispatch (futex word) */
    _Atomic unsigned pending;    /* workers still running the current dispatch (futex word) */
    _Atomic int stop;
    slm_pool_fn fn;
    void *arg;
    /* sense-reversing barrier */
    _Atomic int bar_count;
    _Atomic unsigned bar_phase; /* futex word */
    /* threads asleep (or about to sleep) on each futex word */
    _Atomic int gen_sleepers, bar_sleepers, done_sleepers;
};

static void futex_wait(_Atomic unsigned *word, unsigned expected) {
    /* returns at once when *word != expected (checked atomically with going to sleep), on a wake, or on a
     * signal: the caller looks at the word again in every case */
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned *word) {
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until *word differs from old; returns the new value (read with acquire ordering or stronger).
 * idle: a worker waiting for the next dispatch (its pool's other threads then wait outside the count of
 * g_dispatching too). */
static unsigned wait_change(const slm_pool *p, _Atomic unsigned *word, unsigned old, _Atomic int *sleepers, bool idle) {
    unsigned v;
    for (int spent = 0;;) {
        bool crowded = atomic_load_explicit(&g_dispatching, memory_order_relaxed) + (idle ? p->n - 1 : 0) > p->cpus;
        if (spent >= (idle ? BUDGET_IDLE : crowded ? BUDGET_CROWDED : BUDGET_ALONE)) break;
        int round = crowded ? SPIN_CROWDED : SPIN_ALONE;
        for (int i = 0; i < round; i++) {
            if ((v = atomic_load_explicit(word, memory_order_acquire)) != old) return v;
            SLM_PAUSE();
        }
        spent += round;
        sched_yield();
    }
    /* Sleeping: the sleepers increment and the waker's change of the word are both sequentially
     * consistent, so either the waker sees a sleeper and wakes, or the load below sees the change. */
    for (;;) {
        atomic_fetch_add(sleepers, 1);
        v = atomic_load(word);
        if (v == old) futex_wait(word, old);
        atomic_fetch_sub(sleepers, 1);
        if ((v = atomic_load(word)) != old) return v;
    }
}

static void wake(_Atomic unsigned *word, _Atomic int *sleepers) {
    if (atomic_load(sleepers) > 0) futex_wake_all(word);
}

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
        seen = wait_change(p, &p->generation, seen, &p->gen_sleepers, true);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        p->fn(p->arg, wa.ith, p->n);
        /* the last worker to finish wakes the caller if it went to sleep */
        if (atomic_fetch_sub(&p->pending, 1) == 1) wake(&p->pending, &p->done_sleepers);
    }
}

slm_status slm_pool_create(int n, slm_pool **out, slm_error *err) {
    if (n < 1) n = 1;
    slm_pool *p = calloc(1, sizeof *p);
    if (!p) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating the thread pool");
    p->n = n;
    p->cpus = slm_cpu_usable();
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
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->generation, 1);
    wake(&p->generation, &p->gen_sleepers);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p);
}

int slm_pool_size(const slm_pool *p) { return p->n; }

void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    atomic_fetch_add_explicit(&g_dispatching, p->n, memory_order_relaxed);
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, (unsigned)(p->n - 1), memory_order_relaxed);
    /* publishes fn, arg and the counters above to the workers that see the new generation */
    atomic_fetch_add(&p->generation, 1);
    wake(&p->generation, &p->gen_sleepers);
    fn(arg, 0, p->n);
    unsigned left;
    while ((left = atomic_load_explicit(&p->pending, memory_order_acquire)) > 0)
        wait_change(p, &p->pending, left, &p->done_sleepers, false);
    atomic_fetch_sub_explicit(&g_dispatching, p->n, memory_order_relaxed);
}

void slm_pool_barrier(slm_pool *p) {
    if (p->n == 1) return;
    unsigned phase = atomic_load_explicit(&p->bar_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->n - 1) {
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add(&p->bar_phase, 1);
        wake(&p->bar_phase, &p->bar_sleepers);
    } else {
        wait_change(p, &p->bar_phase, phase, &p->bar_sleepers, false);
    }
}
