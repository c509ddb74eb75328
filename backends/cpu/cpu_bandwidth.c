/* Peak read bandwidth of host memory (cpu_bandwidth.h). The figure is the denominator of slm-bench's
 * "% of peak", so it must be a ceiling: one simple read loop is not, because how fast a core pulls lines in
 * depends on how many address streams its prefetchers follow and on how far ahead loads are issued, and a
 * decode kernel that reads several rows at once can beat a single-stream sum. So several read kernels are
 * tried (one and four streams per thread, with and without software prefetch, all with the widest vector
 * loads) at the requested thread count and at one thread per physical core, each repeated, and the fastest
 * read is the peak. The workers time themselves, so the figure is the read alone and not thread start-up or
 * wake-up. */
#include "cpu_bandwidth.h"
#include "cpu_threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Software prefetch distance: the decode mat-vecs' (kernels/cpu), so that the kernel that reads like them is
 * among those tried. */
#define PREFETCH_BYTES 4096

/* Sum of n words (p 64-byte aligned; n a multiple of 8 vectors per stream) through eight independent
 * vector sums: STREAMS equal parts of the range are read side by side, 8 / STREAMS vectors of each per
 * step, so the core follows STREAMS address streams at once. */
#define SUM_WORDS_BODY(bytes, STREAMS, PREFETCH)                                                                       \
    typedef uint64_t vec __attribute__((vector_size(bytes)));                                                          \
    enum { PER = 8 / (STREAMS) };                                                                                      \
    const size_t per_vec = (bytes) / 8, nv = n / per_vec / (STREAMS) / PER * PER;                                      \
    const vec *v[STREAMS];                                                                                             \
    for (int k = 0; k < (STREAMS); k++) v[k] = (const vec *)p + (size_t)k * nv;                                        \
    vec s[8] = {{0}};                                                                                                  \
    for (size_t i = 0; i < nv; i += PER) {                                                                             \
        for (int k = 0; k < (STREAMS); k++) {                                                                          \
            if (PREFETCH)                                                                                              \
                for (int j = 0; j < PER * (bytes); j += 64)                                                            \
                    __builtin_prefetch((const char *)(v[k] + i) + PREFETCH_BYTES + j, 0, 0);                           \
            for (int j = 0; j < PER; j++) s[k * PER + j] += v[k][i + j];                                               \
        }                                                                                                              \
    }                                                                                                                  \
    vec tot = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];                                                   \
    uint64_t r = 0;                                                                                                    \
    for (size_t j = 0; j < per_vec; j++) r += tot[j];                                                                  \
    return r;

typedef uint64_t (*sum_words_fn)(const uint64_t *p, size_t n);

#define SUM_WORDS_FN(name, bytes, streams, prefetch, attr)                                                             \
    attr static uint64_t name(const uint64_t *p, size_t n) { SUM_WORDS_BODY(bytes, streams, prefetch) }

SUM_WORDS_FN(sum_16_s1, 16, 1, 0, )
SUM_WORDS_FN(sum_16_s1p, 16, 1, 1, )
SUM_WORDS_FN(sum_16_s4, 16, 4, 0, )
SUM_WORDS_FN(sum_16_s4p, 16, 4, 1, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx512f")))
SUM_WORDS_FN(sum_32_s1, 32, 1, 0, AVX2)
SUM_WORDS_FN(sum_32_s1p, 32, 1, 1, AVX2)
SUM_WORDS_FN(sum_32_s4, 32, 4, 0, AVX2)
SUM_WORDS_FN(sum_32_s4p, 32, 4, 1, AVX2)
SUM_WORDS_FN(sum_64_s1, 64, 1, 0, AVX512)
SUM_WORDS_FN(sum_64_s1p, 64, 1, 1, AVX512)
SUM_WORDS_FN(sum_64_s4, 64, 4, 0, AVX512)
SUM_WORDS_FN(sum_64_s4p, 64, 4, 1, AVX512)
#endif

typedef struct read_kernel {
    sum_words_fn fn;
    int streams;
    bool prefetch;
} read_kernel;

/* The kernels of the widest vectors the CPU has, and their name. */
static const char *read_kernels(read_kernel k[4]) {
    const char *isa = "sse2";
    sum_words_fn f[4] = {sum_16_s1, sum_16_s1p, sum_16_s4, sum_16_s4p};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        isa = "avx512";
        f[0] = sum_64_s1, f[1] = sum_64_s1p, f[2] = sum_64_s4, f[3] = sum_64_s4p;
    } else if (__builtin_cpu_supports("avx2")) {
        isa = "avx2";
        f[0] = sum_32_s1, f[1] = sum_32_s1p, f[2] = sum_32_s4, f[3] = sum_32_s4p;
    }
#elif !defined(__x86_64__)
    isa = "128-bit";
#endif
    for (int i = 0; i < 4; i++) k[i] = (read_kernel){f[i], i < 2 ? 1 : 4, (i & 1) != 0};
    return isa;
}

int slm_cpu_physical_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    /* (package, core) pairs seen so far; a pair occurs once per SMT sibling */
    int seen[1024][2], n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        int id[2] = {-1, -1};
        const char *file[2] = {"physical_package_id", "core_id"};
        for (int j = 0; j < 2; j++) {
            char path[96];
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, file[j]);
            FILE *f = fopen(path, "r");
            if (!f) return 0;
            if (fscanf(f, "%d", &id[j]) != 1) id[j] = -1;
            fclose(f);
        }
        if (id[0] < 0 || id[1] < 0) return 0;
        bool dup = false;
        for (int i = 0; i < n && !dup; i++) dup = seen[i][0] == id[0] && seen[i][1] == id[1];
        if (dup) continue;
        if (n == (int)(sizeof seen / sizeof seen[0])) return 0;
        seen[n][0] = id[0];
        seen[n][1] = id[1];
        n++;
    }
    return n;
}

typedef struct bw_shared {
    const uint64_t *buf;
    size_t n; /* words */
    int n_threads;
    pthread_barrier_t start, stop;
    /* this round's read, set by the timing thread between the barriers; fn NULL ends the workers */
    sum_words_fn fn;
    int active; /* threads that read this round; the others wait it out */
    volatile uint64_t sink[64];
    double t_start[256], t_end[256]; /* per active thread, this round */
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

/* Each active thread's share: whole groups of 8 lines of 64 bytes per stream, so every vector is aligned
 * and every stream reads whole steps. */
static size_t share_words(const bw_shared *sh) { return sh->n / (size_t)sh->active & ~(size_t)255; }

static void *bw_worker(void *arg) {
    bw_thread *t = arg;
    bw_shared *sh = t->sh;
    for (;;) {
        pthread_barrier_wait(&sh->start);
        if (!sh->fn) return NULL;
        if (t->ith < sh->active) {
            size_t per = share_words(sh), i0 = per * (size_t)t->ith;
            sh->t_start[t->ith] = bw_now();
            sh->sink[t->ith & 63] = sh->fn(sh->buf + i0, per);
            sh->t_end[t->ith] = bw_now();
        }
        pthread_barrier_wait(&sh->stop);
    }
}

/* One timed read of kernel fn by `active` threads: bytes/s, first start to last end. */
static double timed_read(bw_shared *sh, sum_words_fn fn, int active) {
    sh->fn = fn;
    sh->active = active;
    pthread_barrier_wait(&sh->start);
    pthread_barrier_wait(&sh->stop);
    double t0 = sh->t_start[0], t1 = sh->t_end[0];
    for (int i = 1; i < active; i++) {
        if (sh->t_start[i] < t0) t0 = sh->t_start[i];
        if (sh->t_end[i] > t1) t1 = sh->t_end[i];
    }
    double dt = t1 - t0, read = (double)(share_words(sh) * (size_t)active * 8);
    return dt > 0 ? read / dt : 0;
}

bool slm_cpu_peak_read(int n_threads, size_t bytes, int reps, slm_read_peak *out) {
    memset(out, 0, sizeof *out);
    if (n_threads <= 0) n_threads = slm_cpu_usable();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    if (reps < 1) reps = 1;
    if (bytes < (size_t)2048 * (size_t)n_threads) bytes = (size_t)2048 * (size_t)n_threads; /* a step per thread */
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes)) return false;
    memset(buf, 1, bytes); /* touch every page before timing */
    bw_shared *sh = calloc(1, sizeof *sh);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    bw_thread *ta = calloc((size_t)n_threads, sizeof *ta);
    if (!sh || !th || !ta) {
        free(sh);
        free(th);
        free(ta);
        free(buf);
        return false;
    }
    sh->buf = buf;
    sh->n = bytes / 8;
    sh->n_threads = n_threads;
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
        return false;
    }

    read_kernel k[4];
    const char *isa = read_kernels(k);
    int counts[2] = {n_threads, slm_cpu_physical_cores()};
    int n_counts = counts[1] > 0 && counts[1] < n_threads ? 2 : 1;
    /* rounds interleave the kernels, so that a slow spell of a shared machine does not fall on one kernel */
    double lo[2][4], hi[2][4];
    for (int c = 0; c < n_counts; c++)
        for (int i = 0; i < 4; i++) lo[c][i] = 1e300, hi[c][i] = 0;
    for (int r = 0; r < reps; r++)
        for (int c = 0; c < n_counts; c++)
            for (int i = 0; i < 4; i++) {
                double bw = timed_read(sh, k[i].fn, counts[c]);
                if (bw < lo[c][i]) lo[c][i] = bw;
                if (bw > hi[c][i]) hi[c][i] = bw;
            }
    int bc = 0, bi = 0;
    for (int c = 0; c < n_counts; c++)
        for (int i = 0; i < 4; i++)
            if (hi[c][i] > hi[bc][bi]) bc = c, bi = i;
    out->best = hi[bc][bi];
    out->spread = hi[bc][bi] - lo[bc][bi];
    out->n_kernels = 4 * n_counts;
    snprintf(out->kernel, sizeof out->kernel, "%s, %d stream%s%s, %d thread%s%s", isa, k[bi].streams,
             k[bi].streams == 1 ? "" : "s", k[bi].prefetch ? ", prefetch" : "", counts[bc], counts[bc] == 1 ? "" : "s",
             bc == 1 ? " (one per core)" : "");

    sh->fn = NULL; /* ends the workers */
    pthread_barrier_wait(&sh->start);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&sh->start);
    pthread_barrier_destroy(&sh->stop);
    free(sh);
    free(th);
    free(ta);
    free(buf);
    return out->best > 0;
}
