/* The per-ISA kernel entry points behind slm_cpu_kernels (internal to kernels/cpu). The _avx2 and
 * _avx512 functions live in files compiled with those instruction sets: call them only after
 * slm_cpu_isa_detect() said the CPU has them. A SIMD matmul hands the weight types it has no fast path
 * for to the scalar one. */
#ifndef SLM_CPU_VARIANTS_H
#define SLM_CPU_VARIANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define SLM_CPU_DECLARE_VARIANT(sfx)                                                                                   \
    void slm_cpu_matmul_##sfx(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,      \
                              size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride);           \
    void slm_cpu_attend_f16_##sfx(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride,               \
                                  size_t v_stride, int64_t n, int hd, float scale, float *scores, float *out);         \
    /* Whether this variant has its own (non-scalar) mat-mul for wtype. */                                             \
    bool slm_cpu_matmul_has_fast_##sfx(slm_dtype wtype);

SLM_CPU_DECLARE_VARIANT(scalar)
SLM_CPU_DECLARE_VARIANT(avx2)
SLM_CPU_DECLARE_VARIANT(avx512)

#endif
