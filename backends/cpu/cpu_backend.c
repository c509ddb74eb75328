/* The CPU backend: host memory (the mmapped weights are used in place), a persistent thread pool, and a
 * whole split run as one pool dispatch with a barrier between ops. Each instance has its own pool and work
 * scratch, so instances run in parallel (one per context); the pool starts at the first run, so an
 * instance that only holds buffers (a model's, which wraps the mapping) has no threads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_bandwidth.h"
#include "cpu_ops.h"
#include "cpu_threads.h"
#include "error.h"
#include "host_memory.h"
#include "matvec_x16.h"

typedef struct cpu_ctx {
    slm_cpu_kernels kernels;
    slm_cpu_exec exec;
    slm_pool *pool; /* NULL until the first run */
    int n_threads;
    /* the split being run by the pool */
    const slm_op *ops;
    int n_ops;
} cpu_ctx;

static int cpu_count(void) { return 1; }

static slm_status cpu_open(slm_device *d, int index, const slm_device_config *cfg, slm_error *err) {
    if (index != 0) return slm_fail(err, SLM_ERR_NO_DEVICE, "there is one cpu device (cpu:0)");
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory opening the cpu device");
    /* more threads than CPUs only wait for each other at every barrier (the placement says so) */
    int n = slm_cpu_threads_resolve(cfg->n_threads, NULL, 0);
    c->n_threads = n;
    c->kernels =
        cfg->f32_activations ? slm_cpu_kernels_f32act(slm_cpu_isa_detect()) : slm_cpu_kernels_get(slm_cpu_isa_detect());
    c->exec.k = &c->kernels;
    d->ctx = c;
    d->host_memory = true;
    snprintf(d->name, sizeof d->name, "cpu (%s%s, %d thread%s)", slm_cpu_isa_name(c->kernels.isa),
             cfg->f32_activations ? ", f32 activations" : "", n, n == 1 ? "" : "s");
    return SLM_OK;
}

static void cpu_close(slm_device *d) {
    cpu_ctx *c = d->ctx;
    if (!c) return;
    slm_pool_free(c->pool);
    free(c->exec.work);
    free(c);
    d->ctx = NULL;
}

/* What this process can still allocate: MemAvailable, its cgroup's limit and its rlimits (host_memory.c). */
static void cpu_memory(slm_device *d, size_t *free_b, size_t *total_b) {
    slm_host_memory hm;
    if (slm_host_memory_read("", &hm)) {
        *free_b = (size_t)hm.available;
        *total_b = (size_t)hm.total;
    } else {
        *free_b = *total_b = 0;
    }
}

static bool cpu_supports(slm_device *d, const slm_op *op) { return slm_cpu_op_supported(op); }

/* Buffers from this size on are anonymous mappings: the kernel hands out zeroed pages as they are first
 * touched, so a KV cache for a long context costs memory only for the positions used, and allocating it does
 * not write (and commit) every page up front as memset would. Smaller ones come from malloc and are zeroed. */
#define CPU_MMAP_MIN ((size_t)1 << 20)

static slm_status cpu_alloc(slm_device *d, size_t bytes, slm_buffer *b, slm_error *err) {
    memset(b, 0, sizeof *b);
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz < bytes) return slm_fail(err, SLM_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    void *p = NULL;
    if (sz >= CPU_MMAP_MIN) {
        p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* page aligned */
        if (p == MAP_FAILED)
            return slm_fail(err, SLM_ERR_NOMEM, "cpu: cannot allocate %zu bytes: %s", bytes, strerror(errno));
    } else {
        if (posix_memalign(&p, 64, sz ? sz : 64))
            return slm_fail(err, SLM_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
        memset(p, 0, sz ? sz : 64);
    }
    b->dev = d;
    b->host = p;
    b->handle = p;
    b->size = bytes;
    return SLM_OK;
}

static slm_status cpu_wrap_host(slm_device *d, void *p, size_t n, slm_buffer *b, slm_error *err) {
    memset(b, 0, sizeof *b);
    b->dev = d;
    b->host = p;
    b->handle = NULL; /* not ours to free */
    b->size = n;
    return SLM_OK;
}

static void cpu_release(slm_device *d, slm_buffer *b) {
    /* b->size is the allocation's: the same rounding tells how it was made (wrapped memory has no handle) */
    size_t sz = (b->size + 63) & ~(size_t)63;
    if (b->handle && sz >= CPU_MMAP_MIN) munmap(b->handle, sz);
    else free(b->handle);
    memset(b, 0, sizeof *b);
}

static slm_status cpu_upload(slm_device *d, slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err) {
    if (off > b->size || n > b->size - off) return slm_fail(err, SLM_ERR_INVALID_ARG, "cpu: upload out of range");
    memcpy((uint8_t *)b->host + off, src, n);
    return SLM_OK;
}

static slm_status cpu_download(slm_device *d, void *dst, const slm_buffer *b, size_t off, size_t n, slm_error *err) {
    if (off > b->size || n > b->size - off) return slm_fail(err, SLM_ERR_INVALID_ARG, "cpu: download out of range");
    memcpy(dst, (const uint8_t *)b->host + off, n);
    return SLM_OK;
}

static void run_split(void *arg, int ith, int nth) {
    cpu_ctx *c = arg;
    for (int i = 0; i < c->n_ops; i++) {
        slm_cpu_op_run(&c->exec, &c->ops[i], ith, nth);
        slm_pool_barrier(c->pool);
    }
}

static slm_status cpu_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err) {
    cpu_ctx *c = d->ctx;
    if (!c->pool) {
        slm_status s = slm_pool_create(c->n_threads, &c->pool, err);
        if (s) return s;
        c->exec.pool = c->pool;
    }
    int nth = c->n_threads;
    size_t need = 0;
    /* the ops were checked (slm_op_check, supports) when the graph was built */
    for (int i = 0; i < n_ops; i++) {
        size_t w = slm_cpu_op_work_size(&c->exec, &ops[i], nth);
        if (w > need) need = w;
    }
    if (need > c->exec.work_size) {
        free(c->exec.work);
        c->exec.work = NULL;
        c->exec.work_size = 0;
        if (posix_memalign((void **)&c->exec.work, 64, need))
            return slm_fail(err, SLM_ERR_NOMEM, "cpu: cannot allocate %zu bytes of scratch", need);
        c->exec.work_size = need;
    }
    c->ops = ops;
    c->n_ops = n_ops;
    slm_pool_run(c->pool, run_split, c);
    return SLM_OK;
}

static slm_status cpu_sync(slm_device *d, slm_error *err) { return SLM_OK; }

/* Peak read bandwidth: the host's one measurement (cpu_bandwidth.c), on as many threads as the pool has. */
static bool cpu_measure_bandwidth(slm_device *d, slm_read_peak *out) {
    cpu_ctx *c = d->ctx;
    return slm_cpu_peak_read(c->n_threads, SLM_CPU_PEAK_READ_BYTES, 3, out);
}

/* Decode reads a repacked weight's 16-row groups with no horizontal sums (kernels/cpu/matvec_x16.h): every
 * weight of a type the kernel set has the layout for, rows a multiple of 16, unpadded. */
static bool cpu_repacks(slm_device *d, const slm_tensor *w) {
    cpu_ctx *c = d->ctx;
    return c->kernels.x16_has && c->kernels.x16_has(w->type) && !w->x16 && w->ne[1] % SLM_X16_ROWS == 0 &&
        w->ne[2] == 1 && w->ne[3] == 1 && w->nb[1] == slm_dtype_row_bytes(w->type, w->ne[0]);
}

static void cpu_repack(slm_device *d, const slm_tensor *w, slm_tensor *dst) {
    slm_x16_pack(w->type, (const uint8_t *)w->buf->host + w->offset, w->nb[1], w->ne[1], w->ne[0],
                 (uint8_t *)dst->buf->host + dst->offset);
    dst->x16 = true;
}

const slm_backend_ops slm_backend_cpu = {
    .name = "cpu",
    .count = cpu_count,
    .open = cpu_open,
    .close = cpu_close,
    .memory = cpu_memory,
    .supports = cpu_supports,
    .alloc = cpu_alloc,
    .wrap_host = cpu_wrap_host,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .run = cpu_run,
    .sync = cpu_sync,
    .measure_bandwidth = cpu_measure_bandwidth,
    .repacks = cpu_repacks,
    .repack = cpu_repack,
};
