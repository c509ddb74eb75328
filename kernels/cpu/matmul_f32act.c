/* Exact-activation kernel set: quantized weights times f32 activations (no 8-bit activation blocks).
 * About as slow as the scalar reference; it exists so accuracy checks can tell the error of 8-bit
 * activations apart from faults (tests/reference/test_e2e_logits.py runs both). */
#include <string.h>

#include "act_quant.h"
#include "cpu_kernels.h"
#include "quant_ref.h"

static size_t f32_row_bytes(slm_dtype wtype, int64_t k) { return k < 0 ? 0 : slm_act_round64((size_t)k * 4); }

static void f32_copy(slm_dtype wtype, const float *x, void *xq, int64_t k) { memcpy(xq, x, (size_t)k * 4); }

/* Rows are dequantized 256 elements at a time (a whole number of blocks of every type) into a stack
 * buffer: no allocation, so no failure path in a kernel that has none. */
#define CHUNK 256

static void f32_matmul(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                       size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    float v[CHUNK];
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * w_row_bytes;
        for (int64_t c = 0; c < n_cols; c++) out[c * out_stride + r] = 0;
        for (int64_t i0 = 0; i0 < k; i0 += CHUNK) {
            int64_t n = k - i0 < CHUNK ? k - i0 : CHUNK;
            slm_ref_dequant_row(wtype, row + slm_dtype_row_bytes(wtype, i0), v, n);
            for (int64_t c = 0; c < n_cols; c++) {
                const float *x = (const float *)((const uint8_t *)xq + (size_t)c * act_stride) + i0;
                double acc = 0;
                for (int64_t i = 0; i < n; i++) acc += (double)v[i] * x[i];
                out[c * out_stride + r] += (float)acc;
            }
        }
    }
}

slm_cpu_kernels slm_cpu_kernels_f32act(slm_cpu_isa isa) {
    slm_cpu_kernels k = slm_cpu_kernels_get(isa);
    k.act_row_bytes = f32_row_bytes;
    k.quantize_act = f32_copy;
    k.matmul = f32_matmul;
    /* the packed GEMM multiplies 8-bit activations: not in an exact-activation set */
    k.gemm = NULL;
    k.gemm_has = NULL;
    /* nor the repacked decode layout, so weights stay in the GGUF rows f32_matmul reads */
    k.x16_has = NULL;
    k.matvec_x16 = NULL;
    return k;
}
