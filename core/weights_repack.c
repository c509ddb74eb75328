#include "weights_repack.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "kv_cache.h"
#include "scratch.h"

/* The weights of the host's share that the CPU repacks, in binding order: each layer's slots, then the
 * output head (out NULL: only count them); layer[i]: the layer of out[i], -1 for the head. */
static int collect(slm_model *m, slm_device *cpu, slm_tensor **out, int *layer) {
    slm_placement *pl = &m->place;
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        if (pl->layer_device[il] != 0) continue;
        slm_tensor *w[SLM_LAYER_MAX_WEIGHTS];
        for (int i = 0, k = slm_layer_weights(&pl->bound[0].layers[il], w); i < k; i++)
            if (w[i]->buf && cpu->ops->repacks(cpu, w[i])) {
                if (out) out[n] = w[i], layer[n] = il;
                n++;
            }
    }
    if (pl->output_device == 0 && cpu->ops->repacks(cpu, &pl->bound[0].output)) {
        if (out) out[n] = &pl->bound[0].output, layer[n] = -1;
        n++;
    }
    return n;
}

/* The whole pages inside [p, p + n) of the file mapping back to the kernel: they are clean file pages,
 * so a later read (the embedding lookup of a tied head) faults them in again from the page cache. */
static void release_pages(const slm_model *m, const uint8_t *p, size_t n) {
    if (!m->gguf->mapped) return; /* borrowed memory: dropping its pages would zero it */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* One thread's share of a tensor: rows [r0, r1) of src into the same rows of dst. */
typedef struct repack_job {
    slm_device *cpu;
    slm_tensor src, dst;
} repack_job;

static void *repack_rows(void *arg) {
    repack_job *j = arg;
    j->cpu->ops->repack(j->cpu, &j->src, &j->dst);
    return NULL;
}

/* src into dst on up to n_threads threads, in shares of whole 16-row groups (the rewrite is a pass over
 * memory at a few GB/s on one core: seconds for a 3B model). A thread that cannot start leaves its share to
 * the caller. */
#define REPACK_MAX_THREADS 64
static void repack_tensor(slm_device *cpu, const slm_tensor *src, slm_tensor *dst, int n_threads) {
    int64_t groups = src->ne[1] / 16;
    if (n_threads > REPACK_MAX_THREADS) n_threads = REPACK_MAX_THREADS;
    if (n_threads > groups) n_threads = (int)groups;
    if (n_threads < 1) n_threads = 1;
    repack_job job[REPACK_MAX_THREADS];
    pthread_t th[REPACK_MAX_THREADS];
    bool started[REPACK_MAX_THREADS] = {false};
    for (int i = 0; i < n_threads; i++) {
        int64_t r0 = 16 * (groups * i / n_threads), r1 = 16 * (groups * (i + 1) / n_threads);
        job[i] = (repack_job){cpu, *src, *dst};
        job[i].src.offset += (size_t)r0 * src->nb[1];
        job[i].dst.offset += (size_t)r0 * dst->nb[1];
        job[i].src.ne[1] = job[i].dst.ne[1] = r1 - r0;
        if (i > 0) started[i] = pthread_create(&th[i], NULL, repack_rows, &job[i]) == 0;
    }
    repack_rows(&job[0]);
    for (int i = 1; i < n_threads; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else repack_rows(&job[i]);
    }
    dst->x16 = job[0].dst.x16;
}

slm_status slm_weights_repack_host(slm_model *m, slm_error *err) {
    slm_placement *pl = &m->place;
    slm_device *cpu = pl->devices[0];
    const char *off = getenv("SLM_NO_REPACK");
    if (!cpu->ops->repacks || (off && *off && strcmp(off, "0"))) return SLM_OK;
    /* bound[0] shares the mapping's layer table until now: give it its own, which the copies rebind */
    slm_layer *own = malloc((size_t)m->hp.n_layer * sizeof *own);
    if (!own) return slm_fail(err, SLM_ERR_NOMEM, "out of memory repacking weights");
    memcpy(own, m->host.layers, (size_t)m->hp.n_layer * sizeof *own);
    pl->bound[0].layers = own;
    pl->own_host_layers = true;
    int n = collect(m, cpu, NULL, NULL);
    if (n == 0) return SLM_OK;
    slm_tensor **t = malloc((size_t)n * sizeof *t);
    int *layer = malloc((size_t)n * sizeof *layer);
    if (!t || !layer) {
        free(t);
        free(layer);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory repacking weights");
    }
    collect(m, cpu, t, layer);
    /* as many (in binding order) as the free memory holds beside what a context needs on the host later
     * (the KV cache of its layers at n_ctx, the scratch of a batch) and a quarter of it to spare */
    size_t free_b = 0, total_b = 0, bytes = 0;
    slm_device_memory(cpu, &free_b, &total_b);
    int host_layers = 0;
    for (int il = 0; il < m->hp.n_layer; il++) host_layers += pl->layer_device[il] == 0;
    uint64_t context = slm_kv_layer_bytes(&m->hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx) * (uint64_t)host_layers +
        slm_scratch_layout(&m->hp, m->cfg.n_batch, pl->output_device == 0, NULL, NULL);
    size_t budget = free_b - free_b / 4 > context ? free_b - free_b / 4 - (size_t)context : 0;
    int fit = 0;
    uint64_t left_bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t b = (slm_tensor_bytes(t[i]) + 63) & ~(size_t)63;
        if (fit == i && (!free_b || bytes + b <= budget)) {
            bytes += b;
            fit++;
        } else {
            left_bytes += slm_tensor_bytes(t[i]);
        }
    }
    slm_error alloc_err = {{0}};
    if (fit && slm_buffer_alloc(cpu, bytes, &pl->repacked, &alloc_err)) {
        /* not fatal: every weight keeps the file's layout, which the kernels read as well */
        snprintf(pl->repack_note, sizeof pl->repack_note, "CPU weights keep the file's layout: %.120s", alloc_err.msg);
        free(t);
        free(layer);
        return SLM_OK;
    }
    size_t at = 0;
    for (int i = 0; i < fit; i++) {
        slm_tensor dst = *t[i];
        dst.buf = &pl->repacked;
        dst.offset = at;
        repack_tensor(cpu, t[i], &dst, pl->cpu_cfg.n_threads);
        release_pages(m, (const uint8_t *)t[i]->buf->host + t[i]->offset, slm_tensor_bytes(t[i]));
        *t[i] = dst;
        at += (slm_tensor_bytes(t[i]) + 63) & ~(size_t)63;
    }
    if (fit < n) {
        char from[32] = "the output head";
        if (layer[fit] >= 0) snprintf(from, sizeof from, "layer %d on", layer[fit]);
        snprintf(pl->repack_note, sizeof pl->repack_note,
                 "%d of %d CPU weights (%.0f MiB, %s) keep the file's layout: repacked copies would not fit the "
                 "free memory (%.0f MiB)",
                 n - fit, n, (double)left_bytes / (1 << 20), from, (double)free_b / (1 << 20));
    }
    free(t);
    free(layer);
    return SLM_OK;
}

void slm_weights_repack_free(slm_model *m) {
    slm_placement *pl = &m->place;
    if (pl->own_host_layers) {
        free(pl->bound[0].layers);
        pl->bound[0].layers = NULL;
    }
    pl->own_host_layers = false;
    slm_buffer_release(&pl->repacked);
}
