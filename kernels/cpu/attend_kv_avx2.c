/* The KV attention kernel built with AVX2, FMA and F16C (this file is compiled with those flags; called only
 * after slm_cpu_isa_detect() reported AVX2). */
#include "attend_kv.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#define ATTEND_KV_NAME slm_attend_kv_avx2
#define AKV_F16(h) _cvtsh_ss(h)
#define LOAD_F16x8(dst, src)                                                                                           \
    do {                                                                                                               \
        __m256 f_ = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src)));                            \
        memcpy(&(dst), &f_, sizeof f_);                                                                                \
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
