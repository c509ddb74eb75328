/* CUDA kernels of every op, behind extern "C" launchers that check their arguments before launching.
 *
 * Conventions: activations are f32 column-major views: element i of column (token) t is at p[t * ld + i],
 * ld in elements. Weights are rows of a GGUF type (row r = output r, row_bytes apart). Launchers enqueue on
 * the given stream and return at once; they fail (SLM_ERR_INVALID_ARG, with a message) on bad arguments
 * and SLM_ERR_DEVICE when the launch itself fails. Nothing here allocates: scratch is the caller's. */
#ifndef SLM_CUDA_KERNELS_H
#define SLM_CUDA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" { /* types.h has no C++ guard of its own */
#endif

#include "slm.h"
#include "types.h"

/* Weight types the kernels read: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k. */
bool slm_cuda_weight_type_ok(slm_dtype t);

/* Decodes a row on the host with the very decoders the kernels use (src aligned as the kernels require);
 * false for an unsupported type or length. Lets tests check every block layout without a GPU. */
bool slm_cuda_host_dequant_row(slm_dtype t, const void *src, float *dst, int64_t n);

/* Columns a single mat-vec launch handles; wider batches go through dequantize + GEMM. */
#define SLM_CUDA_MATVEC_MAX_COLS 8

typedef struct slm_cuda_matmul_args {
    slm_dtype wtype;
    const void *w; /* [K, N]: N rows of row_bytes */
    size_t row_bytes;
    int64_t K, N;
    const float *x; /* [K, T] */
    int64_t ldx;
    float *y; /* [N, T] */
    int64_t ldy;
    int64_t T;         /* 1..SLM_CUDA_MATVEC_MAX_COLS for slm_cuda_matvec */
    const float *bias; /* [N] or NULL */
    /* slm_cuda_matvec: device scratch of slm_cuda_matvec_scratch() bytes for the 8-bit activations, or NULL
     * for f32 activations (float weight types always take f32 activations) */
    void *act_scratch;
} slm_cuda_matmul_args;

/* y = W x (+ bias), the quantized weight blocks read once per launch. With act_scratch the activation
 * columns are first quantized to 8-bit blocks (slm_cuda_act_quant) and quantized weights meet them in
 * integer dot products (dp4a); without it weights are dequantized to f32 in registers. */
slm_status slm_cuda_matvec(const slm_cuda_matmul_args *a, cudaStream_t s, slm_error *err);
/* Scratch bytes slm_cuda_matvec's 8-bit path needs for these sizes (0: the weight type has no such path). */
size_t slm_cuda_matvec_scratch(slm_dtype wtype, int64_t K, int64_t T);

/* 8-bit activation blocks, one column every slm_cuda_q8_col_bytes(K) bytes (a multiple of 256): int8
 * q[K] from byte 0, then at byte slm_cuda_q8_ds_offset(K) one float pair per block of 32 elements:
 * d (x ~ d * q) and d * sum(q) (what a weight block's min multiplies). The CPU's recipe for its blocks of
 * 32 (kernels/cpu/act_quant.c): d = max|x| / 127, q = x / d rounded half away from zero; a block holding
 * NaN or inf gets d = NaN (the outputs it reaches are NaN), a block whose 1 / d overflows gets q = 0. */
static inline size_t slm_cuda_q8_ds_offset(int64_t K) { return ((size_t)K + 255) & ~(size_t)255; }
static inline size_t slm_cuda_q8_col_bytes(int64_t K) {
    return slm_cuda_q8_ds_offset(K) + ((((size_t)K / 32) * 8 + 255) & ~(size_t)255);
}
/* xq (T columns of slm_cuda_q8_col_bytes(K)) = the 8-bit blocks of x [K, T]; K a multiple of 32. */
slm_status slm_cuda_act_quant(const float *x, int64_t ldx, int64_t K, int64_t T, void *xq, cudaStream_t s,
                              slm_error *err);

/* out f16 [K, n_rows] (contiguous) = rows first_row.. of W, dequantized (the GEMM path of prompt batches). */
slm_status slm_cuda_dequant_f16(slm_dtype wtype, const void *w, size_t row_bytes, int64_t K, int64_t first_row,
                                int64_t n_rows, void *out, cudaStream_t s, slm_error *err);
/* out f16 [K, T] contiguous = x f32 [K, T] (ldx) * col_scale[t], where col_scale (T floats, device memory,
 * written here) is for each column the power of two that brings its largest magnitude into [2^14, 2^15):
 * activations of 1e5 stay finite, tiny ones keep their precision. The GEMM's result goes through slm_cuda_gemm_finish
 * with the same col_scale. */
slm_status slm_cuda_f32_to_f16(const float *x, int64_t ldx, int64_t K, int64_t T, void *out, float *col_scale,
                               cudaStream_t s, slm_error *err);
/* The col_scale slm_cuda_f32_to_f16 picks for a column whose largest magnitude is max_abs (host code, the
 * kernel's own rule: lets tests check it without a GPU). */
float slm_cuda_f16_scale_for(float max_abs);
/* y [N, T] = y / col_scale[t] + bias [N]; col_scale or bias may be NULL (both NULL: nothing to do). */
slm_status slm_cuda_gemm_finish(float *y, int64_t ldy, int64_t N, int64_t T, const float *col_scale, const float *bias,
                                cudaStream_t s, slm_error *err);

/* y [n, T] = x / rms(x) * w */
slm_status slm_cuda_rmsnorm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t n, int64_t T,
                            float eps, cudaStream_t s, slm_error *err);

typedef struct slm_cuda_rope_args {
    float *x;                /* [head_dim, n_head, T], in place */
    int64_t ld_head, ld_tok; /* element strides of dims 1 and 2 */
    int head_dim, n_head, n_rot;
    int64_t T;
    const int32_t *pos;   /* [T] (device) */
    const float *factors; /* [n_rot/2] or NULL */
    bool neox;
    float freq_base, freq_scale;
} slm_cuda_rope_args;
slm_status slm_cuda_rope(const slm_cuda_rope_args *a, cudaStream_t s, slm_error *err);

/* cache f16 [n, n_ctx] (ld_cache) row pos[t] = src [n, T] column t; positions outside [0, n_ctx) are skipped
 * (the backend range-checks positions it can see; a replayed graph cannot). */
slm_status slm_cuda_kv_write(const float *src, int64_t ld_src, int64_t n, int64_t T, const int32_t *pos,
                             uint16_t *cache, int64_t ld_cache, int64_t n_ctx, cudaStream_t s, slm_error *err);

typedef struct slm_cuda_attn_args {
    const float *q; /* [head_dim * n_head, T] */
    int64_t ldq;
    const uint16_t *k, *v; /* f16 [head_dim * n_head_kv, n_ctx] */
    int64_t ldk, ldv;
    int64_t n_ctx;
    const int32_t *pos; /* [T]: token t attends to cache rows 0..pos[t] (clamped to n_ctx - 1) */
    float *out;         /* [head_dim * n_head, T] */
    int64_t ldo;
    int head_dim, n_head, n_head_kv;
    int64_t T;
    float scale;
    int window;     /* > 0: token t sees only rows pos[t] - window + 1 .. pos[t] (a sliding window) */
    float *partial; /* scratch of slm_cuda_attention_scratch_floats() floats (unused when that is 0) */
} slm_cuda_attn_args;
/* Maximum head_dim of the attention kernels. */
#define SLM_CUDA_ATTN_MAX_HEAD_DIM 256
/* Floats of scratch slm_cuda_attention needs for any batch of 1..T tokens over this cache (narrower batches
 * may need more: the planner asks once, for n_batch tokens). */
size_t slm_cuda_attention_scratch_floats(int head_dim, int n_head, int64_t T, int64_t n_ctx);
/* Online-softmax attention: decode splits each head's keys over blocks; prompt batches share each K/V tile
 * among a tile of queries (tokens x the query heads of one KV head), splitting keys when blocks are few. */
slm_status slm_cuda_attention(const slm_cuda_attn_args *a, cudaStream_t s, slm_error *err);

/* y = silu(g) * u, y = gelu(g) * u (tanh form) and y = a + b over [n, T] (y may alias an input). */
slm_status slm_cuda_swiglu(const float *g, int64_t ldg, const float *u, int64_t ldu, float *y, int64_t ldy, int64_t n,
                           int64_t T, cudaStream_t s, slm_error *err);
slm_status slm_cuda_geglu(const float *g, int64_t ldg, const float *u, int64_t ldu, float *y, int64_t ldy, int64_t n,
                          int64_t T, cudaStream_t s, slm_error *err);
slm_status slm_cuda_add(const float *a, int64_t lda, const float *b, int64_t ldb, float *y, int64_t ldy, int64_t n,
                        int64_t T, cudaStream_t s, slm_error *err);

/* Reads n_words 16-byte words (buf 16-byte aligned) with blocks_per_sm blocks of 512 threads per
 * multiprocessor, unroll (1 or 4) loads in flight per thread; may write one float to sink[0] (a bandwidth
 * probe). */
slm_status slm_cuda_read_probe(const void *buf, size_t n_words, float *sink, int blocks_per_sm, int unroll,
                               cudaStream_t s, slm_error *err);

#ifdef __cplusplus
}
#endif
#endif
