/* AVX-512 VNNI variant of the mat-vec on the repacked decode layout (matvec_x16_body.h): a 16-row group is
 * one vector, a dot-product step one vpdpbusd. This file is compiled with AVX-512 flags: the dispatcher
 * hands it out only after slm_cpu_isa_detect() reported AVX512. */
#include "matvec_x16.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

typedef __m512i vi;
typedef __m512 vf;

AI vi v_load(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
AI vi v_and(vi a, vi b) { return _mm512_and_si512(a, b); }
AI vi v_or(vi a, vi b) { return _mm512_or_si512(a, b); }
AI vi v_add32(vi a, vi b) { return _mm512_add_epi32(a, b); }
AI vi v_sub32(vi a, vi b) { return _mm512_sub_epi32(a, b); }
AI vi v_mullo32(vi a, vi b) { return _mm512_mullo_epi32(a, b); }
#define v_srli16(v, n) _mm512_srli_epi16((v), (n))
#define v_slli16(v, n) _mm512_slli_epi16((v), (n))
#define v_srli32(v, n) _mm512_srli_epi32((v), (n))
#define v_slli32(v, n) _mm512_slli_epi32((v), (n))
#define v_srai32(v, n) _mm512_srai_epi32((v), (n))
AI vi v_set1_8(int x) { return _mm512_set1_epi8((char)x); }
AI vi v_set1_32(int x) { return _mm512_set1_epi32(x); }
AI vi v_zero(void) { return _mm512_setzero_si512(); }
AI vf f_zero(void) { return _mm512_setzero_ps(); }
AI vf f_set1(float x) { return _mm512_set1_ps(x); }
AI vf f_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
AI vf f_fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
AI vf f_fmsub(vf a, vf b, vf c) { return _mm512_fmsub_ps(a, b, c); }
AI vf f_cvt(vi v) { return _mm512_cvtepi32_ps(v); }
AI void f_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
AI vf f_halves(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
AI vf f_low16(vi v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
AI vf f_high16(vi v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

AI vi bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
/* two chains, so that each waits on half the dot-product latency */
AI vi dot4(const vi *u, const int8_t *a) {
    vi s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[0], bcast4(a));
    vi s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[1], bcast4(a + 4));
    s0 = _mm512_dpbusd_epi32(s0, u[2], bcast4(a + 8));
    s1 = _mm512_dpbusd_epi32(s1, u[3], bcast4(a + 12));
    return _mm512_add_epi32(s0, s1);
}
AI vi dot8(const vi *u, const int8_t *a) {
    vi s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[0], bcast4(a));
    vi s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[1], bcast4(a + 4));
    for (int i = 2; i < 8; i += 2) {
        s0 = _mm512_dpbusd_epi32(s0, u[i], bcast4(a + 4 * i));
        s1 = _mm512_dpbusd_epi32(s1, u[i + 1], bcast4(a + 4 * i + 4));
    }
    return _mm512_add_epi32(s0, s1);
}
#define dot4_255 dot4 /* vpdpbusd sums in 32 bits: any u8 code */
AI vi dot_i16(vi acc, vi a, vi b) { return _mm512_dpwssd_epi32(acc, a, b); }

#define X16_SFX avx512
#define X16_V 16
#define X16_MAX_NC 8
#define X16_HAS_Q8 1
#include "matvec_x16_body.h"

#else /* built without AVX-512: never selected (slm_cpu_isa_detect) */

bool slm_cpu_matvec_x16_has_avx512(slm_dtype wtype) { return false; }
void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {}

#endif
