/* The KV attention kernel built with AVX2, FMA and F16C (this file is compiled with those flags; called only
 * after slm_cpu_isa_detect() reported AVX2). */
#include "attend_kv.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#define ATTEND_KV_NAME slm_attend_kv_avx2
#define AKV_F16(h) _cvtsh_ss(h)
#define AKV_LOAD_F16x8(dst, src) ((dst) = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src))))
#define AKV_LOAD_I8x8(dst, src)                                                                                        \
    ((dst) = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(src)))))
#define AKV_LOAD_U4x16(lo, hi, src)                                                                                    \
    do {                                                                                                               \
        __m128i b_ = _mm_loadl_epi64((const __m128i *)(const void *)(src)), m_ = _mm_set1_epi8(0xf);                   \
        (lo) = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(b_, m_)));                                        \
        (hi) = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b_, 4), m_)));                     \
    } while (0)
#include "attend_kv_body.h"

#else
void slm_attend_kv_scalar(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v,
                          size_t v_stride, slm_dtype vt, int64_t n, int hd, float scale, float *part);
/* Built for a CPU family without AVX2: the dispatcher never selects this variant; it forwards. */
void slm_attend_kv_avx2(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v,
                        size_t v_stride, slm_dtype vt, int64_t n, int hd, float scale, float *part) {
    slm_attend_kv_scalar(q, g, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part);
}
#endif
