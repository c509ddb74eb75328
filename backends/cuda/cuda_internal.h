/* Private state of the CUDA backend shared by its files: the device context, op checking and enqueueing
 * (cuda_ops.c), and the decode graph cache (cuda_graph.c). Only backends/cuda includes this. */
#ifndef SLM_CUDA_INTERNAL_H
#define SLM_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h> /* types only: the functions come through cuda_blas.h */
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda_blas.h"

/* Captured splits kept per device (decode needs one per split on this device; a few spare for
 * alternating shapes). */
#define SLM_CUDA_MAX_GRAPHS 4
/* Rows of a weight dequantized to f16 per GEMM chunk are capped at this many elements (32 MiB). */
#define SLM_CUDA_GEMM_CHUNK_ELEMS ((int64_t)16 << 20)
/* cuBLAS's workspace, which we hand it from our scratch (cublasSetWorkspace) so that it never allocates
 * device memory of its own behind the placement's back: NVIDIA's recommended size, 32 MiB on Hopper (sm 9.x)
 * and later, 4 MiB before (cuBLAS documentation, cublasSetWorkspace). */
#define SLM_CUDA_BLAS_WORKSPACE(sm) ((size_t)((sm) >= 90 ? 32 : 4) << 20)
/* Pinned staging for uploads: two halves so the host fills one while the other is copied. */
#define SLM_CUDA_STAGE_BYTES ((size_t)8 << 20)

typedef struct slm_cuda_graph {
    uint64_t *sig; /* the split's signature (see slm_cuda_split_signature) */
    size_t n_sig;
    cudaGraphExec_t exec;
    uint64_t last_use;
} slm_cuda_graph;

typedef struct slm_cuda_ctx {
    int device;                  /* CUDA ordinal */
    int sm;                      /* compute capability, e.g. 89 */
    cudaStream_t stream;         /* every copy and kernel of this device, in order */
    const slm_cuda_blas *cublas; /* the loaded functions */
    cublasHandle_t blas;
    /* scratch: f16 activations + an f16 weight chunk for GEMMs, attention partials, for the ops in
     * [0, scratch_size); cuBLAS's workspace (blas_workspace bytes) follows it in the same allocation. Reserved
     * at placement (work_reserve), grown before a split that needs more. */
    void *scratch;
    size_t scratch_size;
    size_t blas_workspace;
    /* pinned upload staging */
    void *stage[2];
    cudaEvent_t stage_done[2];
    int stage_next;
    /* graphs */
    bool use_graphs; /* SLM_CUDA_GRAPHS=0 turns capture off */
    bool sync_each;  /* SLM_CUDA_SYNC=1: synchronise after every op and name the one that failed */
    /* mat-vecs of quantized weights on f32 activations instead of 8-bit ones: the device config's
     * f32_activations (--f32-act) or SLM_CUDA_MATVEC=f32 */
    bool matvec_f32;
    slm_cuda_graph graphs[SLM_CUDA_MAX_GRAPHS];
    slm_cuda_graph seen[SLM_CUDA_MAX_GRAPHS]; /* splits run eagerly once (no exec): captured when seen again */
    uint64_t tick;
    uint64_t n_graph_launches, n_captures;
} slm_cuda_ctx;

/* Makes this device current for the calling thread (the runtime keeps the current device per thread). */
slm_status slm_cuda_set_device(slm_cuda_ctx *c, slm_error *err);
slm_status slm_cuda_error(cudaError_t e, const char *what, slm_error *err);

/* The backend's own limits on an op that satisfies slm_op_check (weight types with kernels, sizes the
 * kernels' grids and 32-bit arguments take): what supports() answers. */
slm_status slm_cuda_op_check(const slm_op *op, slm_error *err);
/* Additionally checks that every present operand lies inside a live buffer of this device. */
slm_status slm_cuda_op_check_buffers(slm_device *d, const slm_op *op, slm_error *err);
/* Scratch bytes an op needs. */
size_t slm_cuda_op_scratch(const slm_op *op);
/* True when the op calls cuBLAS (which then needs its workspace). */
bool slm_cuda_op_uses_blas(const slm_op *op);
/* True when the op runs without cuBLAS or host interaction (it can go into a captured graph). */
bool slm_cuda_op_capturable(const slm_op *op);
/* Enqueues the ops on c->stream (no checks beyond the launchers'). */
slm_status slm_cuda_enqueue(slm_cuda_ctx *c, const slm_op *ops, int n_ops, slm_error *err);

/* Runs a checked split: replays a captured graph when this exact split ran before, captures it on its
 * second sighting, else enqueues it op by op. */
slm_status slm_cuda_graph_run(slm_cuda_ctx *c, const slm_op *ops, int n_ops, slm_error *err);
/* Drops every captured graph (scratch moved, device closing). */
void slm_cuda_graph_clear(slm_cuda_ctx *c);

#endif
