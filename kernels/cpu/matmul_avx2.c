/* AVX2 + FMA + F16C variant of the CPU mat-mul (this file is compiled with -mavx2 -mfma -mf16c; call it
 * only after slm_cpu_isa_detect() reported AVX2). Without VNNI, the u8 x s8 dot products are
 * maddubs (pairs to i16) then madd with ones (pairs to i32). */
#include "cpu_variants.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#define SLM_SFX avx2
#define SLM_DPBUSD(acc, u, s)                                                                                          \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define SLM_DPWSSD(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16((a), (b)))
#include "matmul_simd_body.h"

#else
/* Built for a CPU family without AVX2: the dispatcher never selects this variant, but the symbols must
 * exist; they forward to the scalar code. */
void slm_cpu_matmul_avx2(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                         size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    slm_cpu_matmul_scalar(wtype, w, w_row_bytes, n_rows, xq, act_stride, n_cols, k, out, out_stride);
}
void slm_cpu_attend_f16_avx2(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride, size_t v_stride,
                             int64_t n, int hd, float scale, float *scores, float *out) {
    slm_cpu_attend_f16_scalar(q, k, v, k_stride, v_stride, n, hd, scale, scores, out);
}
bool slm_cpu_matmul_has_fast_avx2(slm_dtype wtype) { return false; }
#endif
