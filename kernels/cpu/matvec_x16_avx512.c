/* AVX-512 VNNI mat-vec on the repacked decode layout (matvec_x16.h). This file is compiled with AVX-512
 * flags: the dispatcher hands it out only after slm_cpu_isa_detect() reported AVX512.
 *
 * Per block of a 16-row group: the codes are loaded once (and their nibbles split once) for every column;
 * each column then costs one broadcast and one vpdpbusd per 4 elements, and three float steps for the
 * block: t = d_a * isum - offset * s_a (s_a = d_a * sum(q_a), from the activation column), acc += d_w * t,
 * the scalar kernel's formula with the row sums kept apart in the lanes. The columns do not share any
 * arithmetic, so a column's result does not depend on how many others run with it (a server's replies do
 * not depend on its load). */
#include "matvec_x16.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "act_quant.h"
#include "quant_blocks.h"

#define AI static inline __attribute__((always_inline))
#define MAX_NC 8

bool slm_cpu_matvec_x16_has_avx512(slm_dtype wtype) { return slm_x16_type(wtype); }

AI __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Weights stream from memory once per token: prefetch into L2 ahead of the loads (as the row-major
 * kernels do; the hardware prefetcher alone leaves the loads waiting). */
#define AHEAD 4096
AI void prefetch(const uint8_t *p, int n) {
    for (int l = 0; l < n; l += 64) _mm_prefetch((const char *)p + AHEAD + l, _MM_HINT_T1);
}

typedef struct cols {
    const float *d[MAX_NC], *s[MAX_NC];
    const int8_t *q[MAX_NC];
} cols;

/* One 16-row group against nc columns; is_q8: Q8_0 (8 code vectors, offset 128), else Q4_0 (4 vectors of
 * nibble pairs, offset 8). */
AI void group(int is_q8, const uint8_t *codes, const uint8_t *scales, int64_t nb, const cols *x, int nc, float *out,
              int64_t os) {
    const int cv = is_q8 ? 8 : 4;
    const float off = is_q8 ? -128.0f : -8.0f;
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[MAX_NC];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *cb = codes + (size_t)b * cv * 64;
        prefetch(cb, cv * 64);
        if ((b & 1) == 0) prefetch(scales + (size_t)b * 32, 64);
        __m512i w[8];
        if (is_q8) {
            for (int j = 0; j < 8; j++) w[j] = _mm512_loadu_si512((const void *)(cb + 64 * j));
        } else {
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_loadu_si512((const void *)(cb + 64 * j));
                w[j] = _mm512_and_si512(v, m4);                           /* elements 4j..4j+3 */
                w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4); /* elements 16+4j.. */
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + (size_t)b * 32)));
        for (int c = 0; c < nc; c++) {
            const int8_t *a = x->q[c] + 32 * b;
            /* two chains, so that each waits on half the dot-product latency */
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], bcast4(a));
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], bcast4(a + 4));
            s0 = _mm512_dpbusd_epi32(s0, w[2], bcast4(a + 8));
            s1 = _mm512_dpbusd_epi32(s1, w[3], bcast4(a + 12));
            s0 = _mm512_dpbusd_epi32(s0, w[4], bcast4(a + 16));
            s1 = _mm512_dpbusd_epi32(s1, w[5], bcast4(a + 20));
            s0 = _mm512_dpbusd_epi32(s0, w[6], bcast4(a + 24));
            s1 = _mm512_dpbusd_epi32(s1, w[7], bcast4(a + 28));
            __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(x->d[c][b]),
                                       _mm512_set1_ps(off * x->s[c][b]));
            acc[c] = _mm512_fmadd_ps(dw, t, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

AI void run(int is_q8, const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
            float *out, int64_t os) {
    cols x;
    for (int c = 0; c < nc; c++) {
        const uint8_t *col = xq + (size_t)c * as;
        x.d[c] = slm_act32_d(col);
        x.s[c] = slm_act32_s(col, k);
        x.q[c] = slm_act32_q(col, k);
    }
    const int64_t nb = k / SLM_QK;
    const size_t gbytes = 16 * rb, codes_bytes = (size_t)nb * (is_q8 ? 8 : 4) * 64;
    for (int64_t g = 0; g < nr / 16; g++) {
        const uint8_t *grp = w + (size_t)g * gbytes;
        group(is_q8, grp, grp + codes_bytes, nb, &x, nc, out + 16 * g, os);
    }
}

/* One out-of-line function per (type, column count), so that the column loops unroll. */
#define X16_FN(name, Q8, NC)                                                                                           \
    static void name(const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int64_t k, float *out,     \
                     int64_t os) {                                                                                     \
        run(Q8, w, rb, nr, xq, as, NC, k, out, os);                                                                    \
    }
#define X16_FNS(pfx, Q8)                                                                                               \
    X16_FN(pfx##_1, Q8, 1)                                                                                             \
    X16_FN(pfx##_2, Q8, 2)                                                                                             \
    X16_FN(pfx##_3, Q8, 3)                                                                                             \
    X16_FN(pfx##_4, Q8, 4)                                                                                             \
    X16_FN(pfx##_5, Q8, 5)                                                                                             \
    X16_FN(pfx##_6, Q8, 6)                                                                                             \
    X16_FN(pfx##_7, Q8, 7)                                                                                             \
    X16_FN(pfx##_8, Q8, 8)
X16_FNS(q4_0, 0)
X16_FNS(q8_0, 1)

typedef void (*x16_fn)(const uint8_t *, size_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);

void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    static const x16_fn q4[MAX_NC] = {q4_0_1, q4_0_2, q4_0_3, q4_0_4, q4_0_5, q4_0_6, q4_0_7, q4_0_8},
                        q8[MAX_NC] = {q8_0_1, q8_0_2, q8_0_3, q8_0_4, q8_0_5, q8_0_6, q8_0_7, q8_0_8};
    const x16_fn *fns = wtype == SLM_Q8_0 ? q8 : q4;
    /* more than 8 columns: groups of 8 over the same rows (the caller's row tiles keep them in cache) */
    for (int64_t c0 = 0; c0 < n_cols; c0 += MAX_NC) {
        int64_t m = n_cols - c0 < MAX_NC ? n_cols - c0 : MAX_NC;
        fns[m - 1]((const uint8_t *)w, row_bytes, n_rows, (const uint8_t *)xq + (size_t)c0 * act_stride, act_stride, k,
                   out + c0 * out_stride, out_stride);
    }
}

#else /* built without AVX-512: never selected (slm_cpu_isa_detect) */

bool slm_cpu_matvec_x16_has_avx512(slm_dtype wtype) { return false; }
void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {}

#endif
