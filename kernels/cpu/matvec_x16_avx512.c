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

/* ---- Q4_K: super-blocks of 256 against SLM_ACT_Q8_256 columns ----
 * codes region per super-block: qs dword j of row r at [j][r] (low nibbles of dwords 8p..8p+7 are
 * sub-block 2p, high nibbles sub-block 2p + 1); scales region: d | dmin << 16 per row, then the 3 scale
 * words. dot = da * (d * sum_s sc_s * isum_s - dmin * sum_s mn_s * bsum_s), every sum exact in int32. */
typedef struct cols256 {
    const float *d[MAX_NC];
    const int16_t *bsum[MAX_NC];
    const int8_t *q[MAX_NC];
} cols256;

#define Q4K_NC 4 /* K-quant columns per pass: the code vectors, sums and broadcasts fill the registers */

/* The 8 six-bit scales and mins of 16 rows (lane r = row r) from the 3 scale words (quant_ref.c's bit
 * layout); mins go out as mn | mn << 16, the i16 pair that meets two 16-element activation sums. */
AI void q4k_scales(const uint8_t *words, __m512i *sc, __m512i *mnp) {
    const __m512i v0 = _mm512_loadu_si512((const void *)words), v1 = _mm512_loadu_si512((const void *)(words + 64)),
                  v2 = _mm512_loadu_si512((const void *)(words + 128));
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    for (int j = 0; j < 8; j++) {
        __m512i mn;
        if (j < 4) {
            sc[j] = _mm512_and_si512(_mm512_srli_epi32(v0, 8 * j), m6);
            mn = _mm512_and_si512(_mm512_srli_epi32(v1, 8 * j), m6);
        } else {
            const int sh = 8 * (j - 4);
            sc[j] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v2, sh), m4),
                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v0, sh + 6), m2), 4));
            mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v2, sh + 4), m4),
                                 _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v1, sh + 6), m2), 4));
        }
        mnp[j] = _mm512_or_si512(mn, _mm512_slli_epi32(mn, 16));
    }
}

AI void group_q4k(const uint8_t *codes, const uint8_t *meta, int64_t ns, const cols256 *x, int nc, float *out,
                  int64_t os) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[Q4K_NC];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *cb = codes + (size_t)sb * 2048, *mb = meta + (size_t)sb * 256;
        prefetch(cb, 2048);
        prefetch(mb, 256);
        __m512i sc[8], mnp[8];
        q4k_scales(mb + 64, sc, mnp);
        const __m512i dm = _mm512_loadu_si512((const void *)mb);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
        __m512i S[Q4K_NC];
        for (int c = 0; c < nc; c++) S[c] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            __m512i lo[8], hi[8];
            for (int i = 0; i < 8; i++) {
                __m512i v = _mm512_loadu_si512((const void *)(cb + 64 * (8 * p + i)));
                lo[i] = _mm512_and_si512(v, m4);
                hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            for (int c = 0; c < nc; c++) {
                const int8_t *a = x->q[c] + 256 * sb + 64 * p;
                __m512i s0 = _mm512_setzero_si512(), s1 = s0, t0 = s0, t1 = s0;
                for (int i = 0; i < 8; i += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[i], bcast4(a + 4 * i));
                    s1 = _mm512_dpbusd_epi32(s1, lo[i + 1], bcast4(a + 4 * i + 4));
                    t0 = _mm512_dpbusd_epi32(t0, hi[i], bcast4(a + 32 + 4 * i));
                    t1 = _mm512_dpbusd_epi32(t1, hi[i + 1], bcast4(a + 32 + 4 * i + 4));
                }
                S[c] = _mm512_add_epi32(S[c],
                                        _mm512_add_epi32(_mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc[2 * p]),
                                                         _mm512_mullo_epi32(_mm512_add_epi32(t0, t1), sc[2 * p + 1])));
            }
        }
        for (int c = 0; c < nc; c++) {
            const int16_t *bs = x->bsum[c] + 16 * sb;
            __m512i M = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) {
                int32_t pair;
                memcpy(&pair, bs + 2 * j, 4); /* the two 16-element sums of sub-block j */
                M = _mm512_dpwssd_epi32(M, mnp[j], _mm512_set1_epi32(pair));
            }
            __m512 t = _mm512_fmsub_ps(d, _mm512_cvtepi32_ps(S[c]), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(M)));
            acc[c] = _mm512_fmadd_ps(t, _mm512_set1_ps(x->d[c][sb]), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

/* ---- Q6_K: codes region per super-block: the 32 ql dwords, then the 16 qh dwords; scales region: the 16
 * int8 scales as 4 dwords, then d. Element 128h + 32s + 4i + e (i < 8) takes its low 4 bits from ql dword
 * 16h + 8(s & 1) + i (low nibble for s < 2, high for s >= 2) and bits 4..5 from bits 2s, 2s + 1 of qh dword
 * 8h + i; codes 0..63 carry the offset 32, and 16 elements (i < 4, i >= 4) share a scale, group
 * g = 8h + 2s + (i >= 4). dot = da * d * (sum_g sc_g * isum_g - 32 * sum_g sc_g * bsum_g). ---- */
AI void group_q6k(const uint8_t *codes, const uint8_t *meta, int64_t ns, const cols256 *x, int nc, float *out,
                  int64_t os) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);
    __m512 acc[Q4K_NC];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *cb = codes + (size_t)sb * 3072, *mb = meta + (size_t)sb * 288;
        prefetch(cb, 3072);
        prefetch(mb, 320);
        __m512i sc[16], scp[8];
        for (int wd = 0; wd < 4; wd++) {
            __m512i v = _mm512_loadu_si512((const void *)(mb + 64 * wd));
            for (int e = 0; e < 4; e++) sc[4 * wd + e] = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * e), 24);
        }
        for (int j = 0; j < 8; j++)
            scp[j] = _mm512_or_si512(_mm512_and_si512(sc[2 * j], _mm512_set1_epi32(0xffff)),
                                     _mm512_slli_epi32(sc[2 * j + 1], 16));
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(mb + 256)));
        __m512i S[Q4K_NC];
        for (int c = 0; c < nc; c++) S[c] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++)
            for (int s4 = 0; s4 < 4; s4++) {
                __m512i q[8];
                for (int i = 0; i < 8; i++) {
                    __m512i l = _mm512_loadu_si512((const void *)(cb + 64 * (16 * h + 8 * (s4 & 1) + i)));
                    __m512i hb = _mm512_loadu_si512((const void *)(cb + 2048 + 64 * (8 * h + i)));
                    l = s4 < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
                    /* bits 2s4, 2s4 + 1 of each qh byte to bits 4, 5 */
                    hb = s4 < 2 ? _mm512_slli_epi16(hb, 4 - 2 * s4) : _mm512_srli_epi16(hb, 2 * s4 - 4);
                    q[i] = _mm512_or_si512(l, _mm512_and_si512(hb, m2));
                }
                const int g = 8 * h + 2 * s4;
                for (int c = 0; c < nc; c++) {
                    const int8_t *a = x->q[c] + 256 * sb + 128 * h + 32 * s4;
                    __m512i s0 = _mm512_setzero_si512(), s1 = s0, t0 = s0, t1 = s0;
                    s0 = _mm512_dpbusd_epi32(s0, q[0], bcast4(a));
                    s1 = _mm512_dpbusd_epi32(s1, q[1], bcast4(a + 4));
                    t0 = _mm512_dpbusd_epi32(t0, q[4], bcast4(a + 16));
                    t1 = _mm512_dpbusd_epi32(t1, q[5], bcast4(a + 20));
                    s0 = _mm512_dpbusd_epi32(s0, q[2], bcast4(a + 8));
                    s1 = _mm512_dpbusd_epi32(s1, q[3], bcast4(a + 12));
                    t0 = _mm512_dpbusd_epi32(t0, q[6], bcast4(a + 24));
                    t1 = _mm512_dpbusd_epi32(t1, q[7], bcast4(a + 28));
                    S[c] = _mm512_add_epi32(S[c],
                                            _mm512_add_epi32(_mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc[g]),
                                                             _mm512_mullo_epi32(_mm512_add_epi32(t0, t1), sc[g + 1])));
                }
            }
        for (int c = 0; c < nc; c++) {
            const int16_t *bs = x->bsum[c] + 16 * sb;
            __m512i O = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) {
                int32_t pair;
                memcpy(&pair, bs + 2 * j, 4); /* the sums of groups 2j and 2j + 1 */
                O = _mm512_dpwssd_epi32(O, scp[j], _mm512_set1_epi32(pair));
            }
            __m512i T = _mm512_sub_epi32(S[c], _mm512_slli_epi32(O, 5));
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(x->d[c][sb])), _mm512_cvtepi32_ps(T), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + c * os, acc[c]);
}

AI void run_k(int is_q6, const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
              float *out, int64_t os) {
    cols256 x;
    for (int c = 0; c < nc; c++) {
        const uint8_t *col = xq + (size_t)c * as;
        x.d[c] = slm_act256_d(col);
        x.bsum[c] = slm_act256_bsum(col, k);
        x.q[c] = slm_act256_q(col, k);
    }
    const int64_t ns = k / SLM_QK_K;
    const size_t gbytes = 16 * rb, codes_bytes = (size_t)ns * (is_q6 ? 3072 : 2048);
    for (int64_t g = 0; g < nr / 16; g++) {
        const uint8_t *grp = w + (size_t)g * gbytes;
        if (is_q6) group_q6k(grp, grp + codes_bytes, ns, &x, nc, out + 16 * g, os);
        else group_q4k(grp, grp + codes_bytes, ns, &x, nc, out + 16 * g, os);
    }
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
#define X16K_FN(name, Q6, NC)                                                                                          \
    static void name(const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int64_t k, float *out,     \
                     int64_t os) {                                                                                     \
        run_k(Q6, w, rb, nr, xq, as, NC, k, out, os);                                                                  \
    }
X16K_FN(q4_k_1, 0, 1)
X16K_FN(q4_k_2, 0, 2)
X16K_FN(q4_k_3, 0, 3)
X16K_FN(q4_k_4, 0, 4)
X16K_FN(q6_k_1, 1, 1)
X16K_FN(q6_k_2, 1, 2)
X16K_FN(q6_k_3, 1, 3)
X16K_FN(q6_k_4, 1, 4)

typedef void (*x16_fn)(const uint8_t *, size_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);

void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    static const x16_fn q4[MAX_NC] = {q4_0_1, q4_0_2, q4_0_3, q4_0_4, q4_0_5, q4_0_6, q4_0_7, q4_0_8},
                        q8[MAX_NC] = {q8_0_1, q8_0_2, q8_0_3, q8_0_4, q8_0_5, q8_0_6, q8_0_7, q8_0_8};
    static const x16_fn q4k[Q4K_NC] = {q4_k_1, q4_k_2, q4_k_3, q4_k_4}, q6k[Q4K_NC] = {q6_k_1, q6_k_2, q6_k_3, q6_k_4};
    const x16_fn *fns = wtype == SLM_Q8_0 ? q8 : wtype == SLM_Q4_K ? q4k : wtype == SLM_Q6_K ? q6k : q4;
    const int per_pass = wtype == SLM_Q4_K || wtype == SLM_Q6_K ? Q4K_NC : MAX_NC;
    /* more columns than a pass takes: passes over the same rows (the caller's row tiles keep them in
     * cache) */
    for (int64_t c0 = 0; c0 < n_cols; c0 += per_pass) {
        int64_t m = n_cols - c0 < per_pass ? n_cols - c0 : per_pass;
        fns[m - 1]((const uint8_t *)w, row_bytes, n_rows, (const uint8_t *)xq + (size_t)c0 * act_stride, act_stride, k,
                   out + c0 * out_stride, out_stride);
    }
}

#else /* built without AVX-512: never selected (slm_cpu_isa_detect) */

bool slm_cpu_matvec_x16_has_avx512(slm_dtype wtype) { return false; }
void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {}

#endif
