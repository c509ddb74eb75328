/* AVX2 variant of the mat-vec on the repacked decode layout (matvec_x16_body.h): a 16-row group is two
 * vectors of 8 rows, taken one after the other (the second half reads the group back from L2); a
 * dot-product step is maddubs, summed in 16 bits while that cannot overflow, then one madd. Q8_0's codes
 * (w + 128, up to 255) would overflow maddubs' 16-bit pair sums, so Q8_0 keeps GGUF rows here. This file
 * is compiled with AVX2/FMA/F16C: the dispatcher hands it out only after slm_cpu_isa_detect() said so. */
#include "matvec_x16.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

typedef __m256i vi;
typedef __m256 vf;

AI vi v_load(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
AI vi v_and(vi a, vi b) { return _mm256_and_si256(a, b); }
AI vi v_or(vi a, vi b) { return _mm256_or_si256(a, b); }
AI vi v_add32(vi a, vi b) { return _mm256_add_epi32(a, b); }
AI vi v_sub32(vi a, vi b) { return _mm256_sub_epi32(a, b); }
AI vi v_mullo32(vi a, vi b) { return _mm256_mullo_epi32(a, b); }
#define v_srli16(v, n) _mm256_srli_epi16((v), (n))
#define v_slli16(v, n) _mm256_slli_epi16((v), (n))
#define v_srli32(v, n) _mm256_srli_epi32((v), (n))
#define v_slli32(v, n) _mm256_slli_epi32((v), (n))
#define v_srai32(v, n) _mm256_srai_epi32((v), (n))
AI vi v_set1_8(int x) { return _mm256_set1_epi8((char)x); }
AI vi v_set1_32(int x) { return _mm256_set1_epi32(x); }
AI vi v_zero(void) { return _mm256_setzero_si256(); }
AI vf f_zero(void) { return _mm256_setzero_ps(); }
AI vf f_set1(float x) { return _mm256_set1_ps(x); }
AI vf f_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
AI vf f_fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
AI vf f_fmsub(vf a, vf b, vf c) { return _mm256_fmsub_ps(a, b, c); }
AI vf f_cvt(vi v) { return _mm256_cvtepi32_ps(v); }
AI void f_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
AI vf f_halves(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
/* the low (or high) 16 bits of each dword, packed into 8 halves */
AI vf halves_of(vi v, int hi) {
    const __m256i pick = hi ? _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6, 7,
                                               10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1)
                            : _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8,
                                               9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i p = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0x08); /* qwords 0 and 2 */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(p));
}
AI vf f_low16(vi v) { return halves_of(v, 0); }
AI vf f_high16(vi v) { return halves_of(v, 1); }

AI vi bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
/* codes <= 15: a maddubs pair sum is at most 2 * 15 * 127 = 3810, so 8 of them add up in 16 bits */
AI vi dot8(const vi *u, const int8_t *a) {
    __m256i p = _mm256_maddubs_epi16(u[0], bcast4(a));
    for (int i = 1; i < 8; i++) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(u[i], bcast4(a + 4 * i)));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
/* codes <= 63: pair sums up to 2 * 63 * 127 = 16002, two of them per 16-bit sum */
AI vi dot4(const vi *u, const int8_t *a) {
    const __m256i one = _mm256_set1_epi16(1);
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u[0], bcast4(a)), _mm256_maddubs_epi16(u[1], bcast4(a + 4)));
    __m256i q = _mm256_add_epi16(_mm256_maddubs_epi16(u[2], bcast4(a + 8)), _mm256_maddubs_epi16(u[3], bcast4(a + 12)));
    return _mm256_add_epi32(_mm256_madd_epi16(p, one), _mm256_madd_epi16(q, one));
}
AI vi dot_i16(vi acc, vi a, vi b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }

#define X16_SFX avx2
#define X16_V 8
#define X16_MAX_NC 4 /* 16 vector registers */
#define X16_HAS_Q8 0
#include "matvec_x16_body.h"

#else /* built without AVX2: never selected (slm_cpu_isa_detect) */

bool slm_cpu_matvec_x16_has_avx2(slm_dtype wtype) { return false; }
void slm_cpu_matvec_x16_avx2(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                             size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {}

#endif
