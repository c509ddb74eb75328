/* The CUDA backend: device discovery and context (one stream and one cuBLAS handle per device), device
 * memory, pinned staging for uploads, the memory query, and the slm_backend_ops table. Only the CUDA runtime
 * is linked (statically): without a driver cudaGetDeviceCount fails and count() reports 0. cuBLAS is loaded
 * when a device opens (cuda_blas.c), so a CPU user needs none of the CUDA libraries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_backend.h"
#include "cuda_internal.h"
#include "cuda_kernels.h"
#include "error.h"

slm_status slm_cuda_error(cudaError_t e, const char *what, slm_error *err) {
    return slm_fail(err, SLM_ERR_DEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

slm_status slm_cuda_set_device(slm_cuda_ctx *c, slm_error *err) {
    cudaError_t e = cudaSetDevice(c->device);
    return e == cudaSuccess ? SLM_OK : slm_cuda_error(e, "cudaSetDevice", err);
}

static int cuda_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: not an error of ours */
        return 0;
    }
    return n > 0 ? n : 0;
}

static bool env_flag(const char *name, bool def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    return !(v[0] == '0' || v[0] == 'n' || v[0] == 'N' || v[0] == 'f' || v[0] == 'F');
}

static void cuda_close(slm_device *d) {
    slm_cuda_ctx *c = d->ctx;
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    slm_cuda_graph_clear(c);
    if (c->blas) c->cublas->destroy(c->blas);
    for (int i = 0; i < 2; i++) {
        if (c->stage_done[i]) cudaEventDestroy(c->stage_done[i]);
        if (c->stage[i]) cudaFreeHost(c->stage[i]);
    }
    if (c->scratch) cudaFree(c->scratch);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c);
    d->ctx = NULL;
}

static slm_status cuda_open(slm_device *d, int index, const slm_device_config *cfg, slm_error *err) {
    int n = cuda_count();
    if (index < 0 || index >= n)
        return slm_fail(err, SLM_ERR_NO_DEVICE, "cuda:%d not found (%d CUDA device%s)", index, n, n == 1 ? "" : "s");
    struct cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, index);
    if (e != cudaSuccess) return slm_cuda_error(e, "cudaGetDeviceProperties", err);
    int sm = prop.major * 10 + prop.minor;
    if (sm < 75)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "cuda:%d %s has compute capability %d.%d; slm needs 7.5 (Turing) or newer", index, prop.name,
                        prop.major, prop.minor);
    const char *why = NULL;
    const slm_cuda_blas *cublas = slm_cuda_blas_get(&why);
    if (!cublas) return slm_fail(err, SLM_ERR_DEVICE, "cuda:%d: %s", index, why);
    slm_cuda_ctx *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory opening cuda:%d", index);
    c->device = index;
    c->sm = sm;
    c->cublas = cublas;
    c->use_graphs = env_flag("SLM_CUDA_GRAPHS", true);
    c->sync_each = env_flag("SLM_CUDA_SYNC", false);
    const char *mv = getenv("SLM_CUDA_MATVEC");
    c->matvec_f32 = (cfg && cfg->f32_activations) || (mv && !strcmp(mv, "f32"));
    d->ctx = c;
    d->host_memory = false;
    slm_status s = slm_cuda_set_device(c, err);
    if (!s && (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        s = slm_cuda_error(e, "cudaStreamCreate", err);
    if (!s) {
        cublasStatus_t bs = cublas->create(&c->blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            c->blas = NULL;
            s = slm_fail(err, SLM_ERR_DEVICE, "cuda:%d: cublasCreate failed (status %d)", index, (int)bs);
        } else if ((bs = cublas->set_stream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS) {
            s = slm_fail(err, SLM_ERR_DEVICE, "cuda:%d: cublasSetStream failed (status %d)", index, (int)bs);
        }
    }
    /* Pinned staging is an optimisation: without it uploads go straight from pageable memory. */
    for (int i = 0; i < 2 && !s; i++) {
        if (cudaHostAlloc(&c->stage[i], SLM_CUDA_STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&c->stage_done[i], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            if (c->stage[i]) cudaFreeHost(c->stage[i]);
            c->stage[i] = NULL;
            c->stage_done[i] = NULL;
        }
    }
    if (s) {
        cuda_close(d);
        return s;
    }
    snprintf(d->name, sizeof d->name, "cuda:%d %.100s (sm_%d, %.1f GiB)", index, prop.name, sm,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return SLM_OK;
}

static void cuda_memory(slm_device *d, size_t *free_b, size_t *total_b) {
    slm_cuda_ctx *c = d->ctx;
    *free_b = *total_b = 0;
    if (slm_cuda_set_device(c, NULL)) return;
    if (cudaMemGetInfo(free_b, total_b) != cudaSuccess) {
        cudaGetLastError();
        *free_b = *total_b = 0;
    }
}

static bool cuda_supports(slm_device *d, const slm_op *op) { return slm_cuda_op_check(op, NULL) == SLM_OK; }

static slm_status cuda_alloc(slm_device *d, size_t bytes, slm_buffer *b, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    memset(b, 0, sizeof *b);
    slm_status s = slm_cuda_set_device(c, err);
    if (s) return s;
    if (bytes > SIZE_MAX - 256) return slm_fail(err, SLM_ERR_DEVICE, "cuda: cannot allocate %zu bytes", bytes);
    size_t sz = (bytes + 255) & ~(size_t)255;
    if (sz == 0) sz = 256;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* out of memory is not sticky: clear it for the next call */
        return slm_fail(err, SLM_ERR_DEVICE, "%s: cannot allocate %zu bytes of device memory: %s", d->name, bytes,
                        cudaGetErrorString(e));
    }
    /* Zeroed like the other backends' buffers; ordered before any later work on the stream. */
    e = cudaMemsetAsync(p, 0, sz, c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return slm_cuda_error(e, "cudaMemset", err);
    }
    b->dev = d;
    b->host = NULL;
    b->handle = p;
    b->size = bytes;
    return SLM_OK;
}

static void cuda_release(slm_device *d, slm_buffer *b) {
    slm_cuda_ctx *c = d->ctx;
    if (b->handle && !slm_cuda_set_device(c, NULL)) {
        /* Work still queued may read the buffer; a captured graph may name it (its signature would then
         * only match a split that passes this address again, i.e. a new buffer at the same address, which
         * is correct to replay), so only the stream has to drain. */
        cudaStreamSynchronize(c->stream);
        cudaFree(b->handle);
        cudaGetLastError();
    }
    memset(b, 0, sizeof *b);
}

static slm_status check_span(slm_device *d, const slm_buffer *b, size_t off, size_t n, const char *what,
                             slm_error *err) {
    if (!b || !b->handle || b->dev != d)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: %s into a buffer of another device", d->name, what);
    if (off > b->size || n > b->size - off)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: %s of %zu bytes at %zu is outside the buffer (%zu bytes)",
                        d->name, what, n, off, b->size);
    return SLM_OK;
}

static slm_status cuda_upload(slm_device *d, slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    slm_status s = check_span(d, b, off, n, "upload", err);
    if (s || n == 0) return s;
    if ((s = slm_cuda_set_device(c, err))) return s;
    uint8_t *dst = (uint8_t *)b->handle + off;
    const uint8_t *from = src;
    cudaError_t e;
    if (!c->stage[0] || !c->stage[1]) {
        e = cudaMemcpyAsync(dst, from, n, cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
        return e == cudaSuccess ? SLM_OK : slm_cuda_error(e, "upload", err);
    }
    /* Through the pinned halves: copies stay asynchronous and ordered with the kernels on the stream; the
     * caller's memory is free again on return. */
    for (size_t done = 0; done < n;) {
        size_t m = n - done < SLM_CUDA_STAGE_BYTES ? n - done : SLM_CUDA_STAGE_BYTES;
        int k = c->stage_next;
        c->stage_next ^= 1;
        if ((e = cudaEventSynchronize(c->stage_done[k])) != cudaSuccess) return slm_cuda_error(e, "upload (wait)", err);
        memcpy(c->stage[k], from + done, m);
        if ((e = cudaMemcpyAsync(dst + done, c->stage[k], m, cudaMemcpyHostToDevice, c->stream)) != cudaSuccess ||
            (e = cudaEventRecord(c->stage_done[k], c->stream)) != cudaSuccess)
            return slm_cuda_error(e, "upload", err);
        done += m;
    }
    return SLM_OK;
}

static slm_status cuda_download(slm_device *d, void *dst, const slm_buffer *b, size_t off, size_t n, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    slm_status s = check_span(d, b, off, n, "download", err);
    if (s || n == 0) return s;
    if ((s = slm_cuda_set_device(c, err))) return s;
    cudaError_t e = cudaMemcpyAsync(dst, (const uint8_t *)b->handle + off, n, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? SLM_OK : slm_cuda_error(e, "download (or an earlier kernel)", err);
}

/* Rounds a scratch request up to whole MiB (fewer regrowths, and cuBLAS's workspace after it stays aligned). */
static size_t round_mib(size_t n) { return (n + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); }

/* What ops of these shapes need: the largest op's scratch, and cuBLAS's workspace when one of them runs a GEMM
 * (the scratch holds one op's data at a time: a split's ops run in order on one stream). */
static void work_need(const slm_cuda_ctx *c, const slm_op *ops, int n_ops, size_t *scratch, size_t *blas) {
    *scratch = 0;
    *blas = 0;
    for (int i = 0; i < n_ops; i++) {
        size_t w = slm_cuda_op_scratch(&ops[i]);
        if (w > *scratch) *scratch = w;
        if (slm_cuda_op_uses_blas(&ops[i])) *blas = SLM_CUDA_BLAS_WORKSPACE(c->sm);
    }
}

/* Makes room for `need` bytes of op scratch and, when blas, cuBLAS's workspace after it, in one allocation.
 * Grown (never inside a capture) before a split that needs more; graphs naming the old one go. */
static slm_status ensure_scratch(slm_device *d, slm_cuda_ctx *c, size_t need, size_t blas, slm_error *err) {
    if (need <= c->scratch_size && blas <= c->blas_workspace) return SLM_OK;
    need = round_mib(need > c->scratch_size ? need : c->scratch_size);
    if (blas < c->blas_workspace) blas = c->blas_workspace;
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return slm_cuda_error(e, "synchronize before growing scratch", err);
    slm_cuda_graph_clear(c);
    /* cuBLAS must not keep the old workspace: back to its own until the new one is set */
    if (c->blas_workspace) c->cublas->set_workspace(c->blas, NULL, 0);
    if (c->scratch) cudaFree(c->scratch);
    c->scratch = NULL;
    c->scratch_size = c->blas_workspace = 0;
    if ((e = cudaMalloc(&c->scratch, need + blas)) != cudaSuccess) {
        cudaGetLastError();
        c->scratch = NULL;
        return slm_fail(err, SLM_ERR_DEVICE, "%s: cannot allocate %zu bytes of scratch: %s", d->name, need + blas,
                        cudaGetErrorString(e));
    }
    if (blas) {
        cublasStatus_t bs = c->cublas->set_workspace(c->blas, (uint8_t *)c->scratch + need, blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            cudaFree(c->scratch);
            c->scratch = NULL;
            return slm_fail(err, SLM_ERR_DEVICE, "%s: cublasSetWorkspace failed (status %d)", d->name, (int)bs);
        }
    }
    c->scratch_size = need;
    c->blas_workspace = blas;
    return SLM_OK;
}

/* The memory ensure_scratch would hold for these shapes, rounding included. */
static uint64_t cuda_work_bytes(slm_device *d, const slm_op *shapes, int n_shapes) {
    size_t need, blas;
    work_need(d->ctx, shapes, n_shapes, &need, &blas);
    return need || blas ? (uint64_t)round_mib(need) + blas : 0;
}

static slm_status cuda_work_reserve(slm_device *d, const slm_op *shapes, int n_shapes, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    slm_status s = slm_cuda_set_device(c, err);
    if (s) return s;
    if (n_shapes <= 0) {
        /* give it back (the placement moved everything off this device) */
        cudaError_t e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) return slm_cuda_error(e, "synchronize before freeing scratch", err);
        slm_cuda_graph_clear(c);
        if (c->blas_workspace) c->cublas->set_workspace(c->blas, NULL, 0);
        if (c->scratch) cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_size = c->blas_workspace = 0;
        return SLM_OK;
    }
    size_t need, blas;
    work_need(c, shapes, n_shapes, &need, &blas);
    return need || blas ? ensure_scratch(d, c, need, blas, err) : SLM_OK;
}

static slm_status cuda_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    if (n_ops < 0 || (n_ops > 0 && !ops)) return slm_fail(err, SLM_ERR_INVALID_ARG, "cuda: bad op list");
    slm_status s = slm_cuda_set_device(c, err);
    if (s) return s;
    /* Everything is checked before anything is enqueued: a bad op fails the split without side effects. */
    for (int i = 0; i < n_ops; i++)
        if ((s = slm_cuda_op_check_buffers(d, &ops[i], err))) return s;
    size_t need, blas;
    work_need(c, ops, n_ops, &need, &blas);
    if ((s = ensure_scratch(d, c, need, blas, err))) return s;
    return slm_cuda_graph_run(c, ops, n_ops, err);
}

static slm_status cuda_sync(slm_device *d, slm_error *err) {
    slm_cuda_ctx *c = d->ctx;
    slm_status s = slm_cuda_set_device(c, err);
    if (s) return s;
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return slm_fail(err, SLM_ERR_DEVICE, "%s: a kernel failed: %s (%s); run with SLM_CUDA_SYNC=1 to find the op",
                        d->name, cudaGetErrorString(e), cudaGetErrorName(e));
    return SLM_OK;
}

/* The fastest of a few timed passes of a read-only kernel over 256 MiB (well beyond L2 of current parts) in
 * several launch shapes (blocks per multiprocessor, loads in flight per thread). The emulator reads 16 MiB:
 * its figure means nothing, and every emulated thread is a fiber. */
static bool cuda_measure_bandwidth(slm_device *d, slm_read_peak *out) {
    static const struct { int blocks_per_sm, unroll; } shapes[] = {{4, 1}, {8, 1}, {16, 1}, {4, 4}, {8, 4}};
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0], REPS = 4 };
    slm_cuda_ctx *c = d->ctx;
    if (slm_cuda_set_device(c, NULL)) return false;
#ifdef SLM_CUDA_EMU
    size_t bytes = (size_t)16 << 20;
#else
    size_t bytes = (size_t)256 << 20;
#endif
    void *buf = NULL;
    float *sink = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    double lo[N_SHAPES], hi[N_SHAPES];
    int best = -1;
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc((void **)&sink, 256) != cudaSuccess ||
        cudaMemsetAsync(buf, 1, bytes, c->stream) != cudaSuccess || cudaEventCreate(&t0) != cudaSuccess ||
        cudaEventCreate(&t1) != cudaSuccess)
        goto done;
    for (int i = 0; i < N_SHAPES; i++) lo[i] = 1e300, hi[i] = 0;
    /* rounds interleave the shapes; round 0 warms up */
    for (int rep = 0; rep <= REPS; rep++) {
        for (int i = 0; i < N_SHAPES; i++) {
            cudaEventRecord(t0, c->stream);
            if (slm_cuda_read_probe(buf, bytes / 16, sink, shapes[i].blocks_per_sm, shapes[i].unroll, c->stream, NULL))
                goto done;
            cudaEventRecord(t1, c->stream);
            if (cudaEventSynchronize(t1) != cudaSuccess) goto done;
            float ms = 0;
            cudaEventElapsedTime(&ms, t0, t1);
            double bw = ms > 0 ? bytes / (ms * 1e-3) : 0;
            if (rep == 0 || bw <= 0) continue;
            if (bw < lo[i]) lo[i] = bw;
            if (bw > hi[i]) hi[i] = bw;
        }
    }
    for (int i = 0; i < N_SHAPES; i++)
        if (hi[i] > 0 && (best < 0 || hi[i] > hi[best])) best = i;
    if (best >= 0) {
        out->best = hi[best];
        out->spread = hi[best] - lo[best];
        out->n_kernels = N_SHAPES;
        snprintf(out->kernel, sizeof out->kernel, "%d blocks of 512 per SM, %d load%s in flight per thread",
                 shapes[best].blocks_per_sm, shapes[best].unroll, shapes[best].unroll == 1 ? "" : "s");
    }
done:
    if (t0) cudaEventDestroy(t0);
    if (t1) cudaEventDestroy(t1);
    if (buf) cudaFree(buf);
    if (sink) cudaFree(sink);
    cudaGetLastError();
    return best >= 0;
}

const slm_backend_ops slm_backend_cuda = {
    .name = "cuda",
    .count = cuda_count,
    .open = cuda_open,
    .close = cuda_close,
    .memory = cuda_memory,
    .supports = cuda_supports,
    .alloc = cuda_alloc,
    .wrap_host = NULL,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .run = cuda_run,
    .sync = cuda_sync,
    .work_bytes = cuda_work_bytes,
    .work_reserve = cuda_work_reserve,
    .measure_bandwidth = cuda_measure_bandwidth,
};

slm_cuda_stats slm_cuda_get_stats(const slm_device *d) {
    slm_cuda_stats st;
    memset(&st, 0, sizeof st);
    if (!d || d->ops != &slm_backend_cuda || !d->ctx) return st;
    const slm_cuda_ctx *c = d->ctx;
    st.captures = c->n_captures;
    st.graph_launches = c->n_graph_launches;
    st.sm = c->sm;
    st.graphs_enabled = c->use_graphs && !c->sync_each ? 1 : 0; /* SLM_CUDA_SYNC=1 never captures */
    st.sync_each = c->sync_each ? 1 : 0;
    st.matvec_f32 = c->matvec_f32 ? 1 : 0;
    return st;
}
