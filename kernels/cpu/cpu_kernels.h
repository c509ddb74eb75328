/* CPU kernels with SIMD variants (AVX2, AVX-512) chosen at run time from CPU features; the scalar
 * variant is the fallback. Decode is a mat-vec that reads quantized weight blocks directly and multiplies
 * them with activations quantized to 8-bit blocks (dequantization happens in registers). */
#ifndef SLM_CPU_KERNELS_H
#define SLM_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

typedef enum slm_cpu_isa { SLM_ISA_SCALAR = 0, SLM_ISA_AVX2 = 1, SLM_ISA_AVX512 = 2 } slm_cpu_isa;

slm_cpu_isa slm_cpu_isa_detect(void); /* best ISA this CPU and build support */
const char *slm_cpu_isa_name(slm_cpu_isa isa);

/* out[c * out_stride + r] = dot(weight row r, activation column c), r < n_rows, c < n_cols. Weight rows
 * are w_row_bytes apart; activation columns (from quantize_act) act_stride bytes apart. */
typedef void (*slm_cpu_matmul_fn)(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                                  size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride);

typedef struct slm_cpu_kernels {
    slm_cpu_isa isa;
    /* Bytes of one activation column of k elements in the format that weight type wtype multiplies with
     * (8-bit blocks for quantized weights, f32 for float weights). */
    size_t (*act_row_bytes)(slm_dtype wtype, int64_t k);
    /* Quantizes one f32 activation column x[k] into that format at xq. */
    void (*quantize_act)(slm_dtype wtype, const float *x, void *xq, int64_t k);
    slm_cpu_matmul_fn matmul;
    /* Packed GEMM for prompt batches (gemm_packed.h); gemm is NULL in a set without one (today only the
     * AVX-512 set has it). It repacks weight rows before use, which pays off from gemm_min_cols columns
     * on; below that, matmul is faster. Its activations are SLM_ACT_Q8_32 columns for every weight type
     * it takes (K-quants included), so they come from gemm_act_row_bytes / gemm_quantize_act, not from
     * act_row_bytes / quantize_act. scratch: 64-byte aligned, gemm_scratch_bytes(k) bytes, one per
     * concurrent caller. */
    bool (*gemm_has)(slm_dtype wtype);
    int gemm_min_cols;
    size_t (*gemm_act_row_bytes)(int64_t k);
    void (*gemm_quantize_act)(const float *x, void *xq, int64_t k);
    size_t (*gemm_scratch_bytes)(int64_t k);
    void (*gemm)(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                 size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch);
    /* Decode on weights repacked at load (matvec_x16.h): x16_has is NULL in a set without it, else says
     * which types it takes; the CPU backend repacks a weight of those types whose rows are a multiple of
     * 16, and then every mat-mul on it goes to matvec_x16 (up to gemm_min_cols - 1 columns) or to gemm with
     * x16 set. Its activations are quantize_act's. */
    bool (*x16_has)(slm_dtype wtype);
    slm_cpu_matmul_fn matvec_x16; /* n_rows a multiple of 16, w_row_bytes the GGUF row size */
    /* One query head against n positions of the f16 KV cache: out[hd] = softmax(scale * K q) V, where
     * row p of K and V (hd elements) starts at k + p * k_stride and v + p * v_stride (elements).
     * scores: n floats of scratch. n >= 1. */
    void (*attend_f16)(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride, size_t v_stride,
                       int64_t n, int hd, float scale, float *scores, float *out);
} slm_cpu_kernels;

/* The kernel set for isa (falls back to a lower one if isa is not supported by this build or CPU). */
slm_cpu_kernels slm_cpu_kernels_get(slm_cpu_isa isa);
/* The same set with mat-muls on f32 activations instead of 8-bit blocks (slow; accuracy checks). */
slm_cpu_kernels slm_cpu_kernels_f32act(slm_cpu_isa isa);

#endif
