/* AVX-512 (F/BW/VL/DQ + VNNI) variant of the CPU mat-mul (this file is compiled with those flags; call it
 * only after slm_cpu_isa_detect() reported AVX512). The kernels are the AVX2 ones with the 256-bit VNNI
 * forms: vpdpbusd replaces maddubs + madd + add, vpdpwssd replaces madd + add. 256-bit vectors keep the
 * block-at-a-time structure (a 32-element block fills one register); the loop is bound by memory, not
 * by vector width. */
#include "cpu_variants.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#define SLM_SFX avx512
#define SLM_DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define SLM_DPWSSD(acc, a, b) _mm256_dpwssd_epi32((acc), (a), (b))
#include "matmul_simd_body.h"

#else
/* Built for a CPU family without AVX-512: never selected by the dispatcher; forwards to scalar. */
void slm_cpu_matmul_avx512(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                           size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    slm_cpu_matmul_scalar(wtype, w, w_row_bytes, n_rows, xq, act_stride, n_cols, k, out, out_stride);
}
void slm_cpu_attend_f16_avx512(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride, size_t v_stride,
                               int64_t n, int hd, float scale, float *scores, float *out) {
    slm_cpu_attend_f16_scalar(q, k, v, k_stride, v_stride, n, hd, scale, scores, out);
}
bool slm_cpu_matmul_has_fast_avx512(slm_dtype wtype) { return false; }
#endif
