/* Peak read bandwidth of host memory (cpu_bandwidth.h): a multi-threaded sum over a buffer far larger than the
 * caches, which is how decode reads weights: once, in order, every thread its own share. The workers time
 * themselves, so the figure is the read alone and not thread start-up or wake-up. */
#include "cpu_bandwidth.h"
#include "cpu_threads.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sum of n words (n a multiple of 8, p 64-byte aligned) through eight independent vector sums of
 * `bytes`-wide loads, the widest the CPU has: narrower loads read measurably less on one core than the
 * AVX-512 mat-vec does, and a peak that the decode kernels themselves can beat is no peak. */
#define SUM_WORDS_BODY(bytes)                                                                                          \
    typedef uint64_t vec __attribute__((vector_size(bytes)));                                                          \
    const vec *v = (const vec *)p;                                                                                     \
    const size_t per_vec = (bytes) / 8, nv = n / per_vec;                                                              \
    vec s[8] = {{0}};                                                                                                  \
    for (size_t i = 0; i + 8 <= nv; i += 8)                                                                            \
        for (int k = 0; k < 8; k++) s[k] += v[i + k];                                                                  \
    vec tot = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];                                                   \
    uint64_t r = 0;                                                                                                    \
    for (size_t j = 0; j < per_vec; j++) r += tot[j];                                                                  \
    return r;

typedef uint64_t (*sum_words_fn)(const uint64_t *p, size_t n);

static uint64_t sum_words_16(const uint64_t *p, size_t n) { SUM_WORDS_BODY(16) }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static uint64_t sum_words_32(const uint64_t *p, size_t n) { SUM_WORDS_BODY(32) }
__attribute__((target("avx512f"))) static uint64_t sum_words_64(const uint64_t *p, size_t n) { SUM_WORDS_BODY(64) }
#endif

static sum_words_fn widest_sum_words(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return sum_words_64;
    if (__builtin_cpu_supports("avx2")) return sum_words_32;
#endif
    return sum_words_16;
}

typedef struct bw_shared {
    const uint64_t *buf;
    sum_words_fn sum;
    size_t n; /* words */
    int n_threads;
    pthread_barrier_t start, stop;
    int reps;
    volatile uint64_t sink[64];
    double t_start[256], t_end[256]; /* per thread, this repetition */
} bw_shared;

typedef struct bw_thread {
    bw_shared *sh;
    int ith;
} bw_thread;

static double bw_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *bw_worker(void *arg) {
    bw_thread *t = arg;
    bw_shared *sh = t->sh;
    /* shares of whole 64-byte lines, so every thread's vectors are aligned */
    size_t per = sh->n / (size_t)sh->n_threads & ~(size_t)7, i0 = per * (size_t)t->ith, i1 = i0 + per;
    for (int r = 0; r < sh->reps; r++) {
        pthread_barrier_wait(&sh->start);
        sh->t_start[t->ith] = bw_now();
        sh->sink[t->ith & 63] = sh->sum(sh->buf + i0, i1 - i0);
        sh->t_end[t->ith] = bw_now();
        pthread_barrier_wait(&sh->stop);
    }
    return NULL;
}

double slm_cpu_peak_read(int n_threads, size_t bytes, int reps) {
    if (n_threads <= 0) n_threads = slm_cpu_usable();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    if (reps < 1) reps = 1;
    if (bytes < 64 * (size_t)n_threads) bytes = 64 * (size_t)n_threads; /* a whole 64-byte line per thread */
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes)) return 0;
    memset(buf, 1, bytes); /* touch every page before timing */
    bw_shared *sh = calloc(1, sizeof *sh);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    bw_thread *ta = calloc((size_t)n_threads, sizeof *ta);
    if (!sh || !th || !ta) {
        free(sh);
        free(th);
        free(ta);
        free(buf);
        return 0;
    }
    sh->buf = buf;
    sh->sum = widest_sum_words();
    sh->n = bytes / 8;
    sh->n_threads = n_threads;
    sh->reps = reps;
    pthread_barrier_init(&sh->start, NULL, (unsigned)n_threads + 1);
    pthread_barrier_init(&sh->stop, NULL, (unsigned)n_threads + 1);
    int started = 0;
    for (int i = 0; i < n_threads; i++) {
        ta[i] = (bw_thread){.sh = sh, .ith = i};
        if (pthread_create(&th[i], NULL, bw_worker, &ta[i])) break;
        started++;
    }
    if (started < n_threads) {
        /* the system is out of threads: the started ones wait at the start barrier for good, so their
         * state stays allocated and nothing is measured */
        for (int i = 0; i < started; i++) pthread_detach(th[i]);
        return 0;
    }
    double best = 0;
    size_t read = ((bytes / 8 / (size_t)n_threads) & ~(size_t)7) * (size_t)n_threads * 8;
    for (int r = 0; r < reps; r++) {
        /* the workers time themselves (first start to last end): with as many workers as cores this thread
         * may not run at all between the barriers */
        pthread_barrier_wait(&sh->start);
        pthread_barrier_wait(&sh->stop);
        double t0 = sh->t_start[0], t1 = sh->t_end[0];
        for (int i = 1; i < n_threads; i++) {
            if (sh->t_start[i] < t0) t0 = sh->t_start[i];
            if (sh->t_end[i] > t1) t1 = sh->t_end[i];
        }
        double dt = t1 - t0;
        if (dt > 0 && read / dt > best) best = read / dt;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&sh->start);
    pthread_barrier_destroy(&sh->stop);
    free(sh);
    free(th);
    free(ta);
    free(buf);
    return best;
}
