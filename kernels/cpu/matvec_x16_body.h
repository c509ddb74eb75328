/* The mat-vec on the repacked decode layout (matvec_x16.h), written once and compiled twice:
 * matvec_x16_avx512.c (X16_V = 16 lanes: a whole 16-row group per vector) and matvec_x16_avx2.c
 * (X16_V = 8: a group as two halves of 8 rows, the second read back from L2). The includer defines X16_SFX
 * (the name suffix), X16_V, X16_MAX_NC (columns per pass over a 32-element type), X16_HAS_Q8 (whether its
 * dot product takes Q8_0's codes up to 255), the vector types vi and vf, and the inline helpers used below:
 *   v_load(p) v_and v_or v_add32 v_sub32 v_mullo32 v_srli16 v_slli16 v_srli32 v_slli32 v_srai32 v_set1_8
 *   v_set1_32 v_zero; f_zero f_set1 f_mul f_fmadd f_fmsub f_cvt f_store; f_halves(p): X16_V f16 at p;
 *   f_low16(v) / f_high16(v): the low / high f16 half of each dword;
 *   dot8(u, a): sum over i < 8 of u[i] . (bytes a + 4i, broadcast) as int32 lanes (codes u <= 15);
 *   dot4(u, a): the same over 4 (codes <= 63); dot4_255: dot4 for codes up to 255 (X16_HAS_Q8 only);
 *   dot_i16(acc, a, b): acc + the sums of the two i16 products of each dword.
 *
 * Per block of a group: the codes are loaded once (and their nibbles split once) for every column; each
 * column then costs one broadcast and one dot-product step per 4 elements and a few float steps per block,
 * the scalar kernel's formula with the row sums kept apart in the lanes. The columns share no arithmetic, so
 * a column's result does not depend on how many others run with it (a server's replies do not depend on
 * its load). */
#ifndef X16_SFX
#error "define X16_SFX and the helpers before including matvec_x16_body.h"
#endif

#include <string.h>

#include "act_quant.h"
#include "matvec_x16.h"
#include "quant_blocks.h"

#define X16_CAT2(a, b) a##_##b
#define X16_CAT(a, b) X16_CAT2(a, b)
#define X16_VARIANT(name) X16_CAT(name, X16_SFX)

#define HALVES (16 / X16_V) /* vectors per 16-row group */
#define VB (X16_V * 4)      /* bytes of one vector of dwords */
#define K_NC 4              /* K-quant columns per pass: the code vectors, sums and broadcasts fill the registers */

/* Weights stream from memory once per token: prefetch into L2 ahead of the loads (as the row-major
 * kernels do; the hardware prefetcher alone leaves the loads waiting). With two halves, the first one
 * prefetches for both. */
#define AHEAD 4096
AI void prefetch(const uint8_t *p, int n) {
    for (int l = 0; l < n; l += 64) _mm_prefetch((const char *)p + AHEAD + l, _MM_HINT_T1);
}

/* ---- Q4_0, Q8_0 against SLM_ACT_Q8_32 columns ----
 * t = d_a * isum + offset * s_a (s_a = d_a * sum(q_a); offset -8, or -128 for Q8_0's w + 128 codes),
 * acc += d_w * t. */
typedef struct cols32 {
    const float *d[X16_MAX_NC], *s[X16_MAX_NC];
    const int8_t *q[X16_MAX_NC];
} cols32;

/* Rows 16g + X16_V * h .. of one group (h < HALVES) against nc columns. */
AI void group32(int is_q8, const uint8_t *codes, const uint8_t *scales, int h, int64_t nb, const cols32 *x, int nc,
                float *out, int64_t os) {
    const int cv = is_q8 ? 8 : 4;
    const float off = is_q8 ? -128.0f : -8.0f;
    const vi m4 = v_set1_8(15);
    vf acc[X16_MAX_NC];
    for (int c = 0; c < nc; c++) acc[c] = f_zero();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *cb = codes + (size_t)b * cv * 64 + (size_t)h * VB;
        if (h == 0) {
            prefetch(cb, cv * 64);
            if ((b & 1) == 0) prefetch(scales + (size_t)b * 32, 64);
        }
        vi w[8];
        if (is_q8) {
            for (int j = 0; j < 8; j++) w[j] = v_load(cb + 64 * j);
        } else {
            for (int j = 0; j < 4; j++) {
                vi v = v_load(cb + 64 * j);
                w[j] = v_and(v, m4);                  /* elements 4j..4j+3 */
                w[4 + j] = v_and(v_srli16(v, 4), m4); /* elements 16+4j.. */
            }
        }
        const vf dw = f_halves(scales + (size_t)b * 32 + (size_t)h * X16_V * 2);
        for (int c = 0; c < nc; c++) {
            const int8_t *a = x->q[c] + 32 * b;
#if X16_HAS_Q8
            vi s = is_q8 ? v_add32(dot4_255(w, a), dot4_255(w + 4, a + 16)) : dot8(w, a);
#else
            vi s = dot8(w, a);
#endif
            vf t = f_fmadd(f_cvt(s), f_set1(x->d[c][b]), f_set1(off * x->s[c][b]));
            acc[c] = f_fmadd(dw, t, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) f_store(out + c * os, acc[c]);
}

AI void run32(int is_q8, const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
              float *out, int64_t os) {
    cols32 x;
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
        for (int h = 0; h < HALVES; h++)
            group32(is_q8, grp, grp + codes_bytes, h, nb, &x, nc, out + 16 * g + X16_V * h, os);
    }
}

/* ---- Q4_K, Q6_K against SLM_ACT_Q8_256 columns ---- */
typedef struct cols256 {
    const float *d[K_NC];
    const int16_t *bsum[K_NC];
    const int8_t *q[K_NC];
} cols256;

AI vi bcast_pair(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4); /* two consecutive 16-element sums */
    return v_set1_32(v);
}

/* The 8 six-bit scales and mins of the rows (lane r = row r) from the 3 scale words (quant_ref.c's bit
 * layout); mins go out as mn | mn << 16, the i16 pair that meets two 16-element activation sums. */
AI void q4k_scales(const uint8_t *words, vi *sc, vi *mnp) {
    const vi v0 = v_load(words), v1 = v_load(words + 64), v2 = v_load(words + 128);
    const vi m6 = v_set1_32(63), m4 = v_set1_32(15), m2 = v_set1_32(3);
    for (int j = 0; j < 8; j++) {
        vi mn;
        if (j < 4) {
            sc[j] = v_and(v_srli32(v0, 8 * j), m6);
            mn = v_and(v_srli32(v1, 8 * j), m6);
        } else {
            const int sh = 8 * (j - 4);
            sc[j] = v_or(v_and(v_srli32(v2, sh), m4), v_slli32(v_and(v_srli32(v0, sh + 6), m2), 4));
            mn = v_or(v_and(v_srli32(v2, sh + 4), m4), v_slli32(v_and(v_srli32(v1, sh + 6), m2), 4));
        }
        mnp[j] = v_or(mn, v_slli32(mn, 16));
    }
}

/* Q4_K, Q5_K: dot = da * (d * sum_s sc_s * isum_s - dmin * sum_s mn_s * bsum_s), every sum exact in int32
 * (codes region per super-block: 32 qs dwords, and for Q5_K the 8 qh dwords: bit s of qh byte l is the
 * fifth bit of element l of sub-block s; scales region: d | dmin << 16, then the 3 scale words). */
AI void group_q45k(int is_q5, const uint8_t *codes, const uint8_t *meta, int h, int64_t ns, const cols256 *x, int nc,
                   float *out, int64_t os) {
    const vi m4 = v_set1_8(15), bit4 = v_set1_8(0x10);
    const size_t sbytes = is_q5 ? 2560 : 2048;
    vf acc[K_NC];
    for (int c = 0; c < nc; c++) acc[c] = f_zero();
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *cb = codes + (size_t)sb * sbytes + (size_t)h * VB,
                      *mb = meta + (size_t)sb * 256 + (size_t)h * VB;
        if (h == 0) {
            prefetch(cb, (int)sbytes);
            prefetch(mb, 256);
        }
        vi sc[8], mnp[8];
        q4k_scales(mb + 64, sc, mnp);
        const vi dm = v_load(mb);
        const vf d = f_low16(dm), dmin = f_high16(dm);
        vi S[K_NC];
        for (int c = 0; c < nc; c++) S[c] = v_zero();
        for (int p = 0; p < 4; p++) {
            vi lo[8], hi[8];
            for (int i = 0; i < 8; i++) {
                vi v = v_load(cb + 64 * (8 * p + i));
                lo[i] = v_and(v, m4);
                hi[i] = v_and(v_srli16(v, 4), m4);
                if (is_q5) {
                    /* bits 2p and 2p + 1 of each qh byte to bit 4 */
                    vi hb = v_load(cb + 2048 + 64 * i);
                    vi b0 = p < 2 ? v_slli16(hb, 4 - 2 * p) : v_srli16(hb, 2 * p - 4);
                    vi b1 = p < 2 ? v_slli16(hb, 3 - 2 * p) : v_srli16(hb, 2 * p - 3);
                    lo[i] = v_or(lo[i], v_and(b0, bit4));
                    hi[i] = v_or(hi[i], v_and(b1, bit4));
                }
            }
            for (int c = 0; c < nc; c++) {
                const int8_t *a = x->q[c] + 256 * sb + 64 * p;
                /* codes up to 31: dot4, as 8 products could overflow a 16-bit sum (AVX2) */
                vi s0 = is_q5 ? v_add32(dot4(lo, a), dot4(lo + 4, a + 16)) : dot8(lo, a);
                vi s1 = is_q5 ? v_add32(dot4(hi, a + 32), dot4(hi + 4, a + 48)) : dot8(hi, a + 32);
                S[c] = v_add32(S[c], v_add32(v_mullo32(s0, sc[2 * p]), v_mullo32(s1, sc[2 * p + 1])));
            }
        }
        for (int c = 0; c < nc; c++) {
            const int16_t *bs = x->bsum[c] + 16 * sb;
            vi M = v_zero();
            for (int j = 0; j < 8; j++) M = dot_i16(M, mnp[j], bcast_pair(bs + 2 * j));
            vf t = f_fmsub(d, f_cvt(S[c]), f_mul(dmin, f_cvt(M)));
            acc[c] = f_fmadd(t, f_set1(x->d[c][sb]), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) f_store(out + c * os, acc[c]);
}

/* Q6_K: codes region per super-block: the 32 ql dwords, then the 16 qh dwords; scales region: the 16 int8
 * scales as 4 words, then d. Element 128h + 32s + 4i + e (i < 8) takes its low 4 bits from ql dword
 * 16h + 8(s & 1) + i (low nibble for s < 2, high for s >= 2) and bits 4..5 from bits 2s, 2s + 1 of qh dword
 * 8h + i; codes 0..63 carry the offset 32, and 16 elements (i < 4, i >= 4) share a scale, group
 * g = 8h + 2s + (i >= 4). dot = da * d * (sum_g sc_g * isum_g - 32 * sum_g sc_g * bsum_g). */
AI void group_q6k(const uint8_t *codes, const uint8_t *meta, int half, int64_t ns, const cols256 *x, int nc, float *out,
                  int64_t os) {
    const vi m4 = v_set1_8(15), m2 = v_set1_8(0x30);
    vf acc[K_NC];
    for (int c = 0; c < nc; c++) acc[c] = f_zero();
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *cb = codes + (size_t)sb * 3072 + (size_t)half * VB, *mb = meta + (size_t)sb * 288;
        if (half == 0) {
            prefetch(cb, 3072);
            prefetch(mb, 320);
        }
        vi sc[16], scp[8];
        for (int wd = 0; wd < 4; wd++) {
            vi v = v_load(mb + 64 * wd + (size_t)half * VB);
            for (int e = 0; e < 4; e++) sc[4 * wd + e] = v_srai32(v_slli32(v, 24 - 8 * e), 24);
        }
        for (int j = 0; j < 8; j++) scp[j] = v_or(v_and(sc[2 * j], v_set1_32(0xffff)), v_slli32(sc[2 * j + 1], 16));
        const vf d = f_halves(mb + 256 + (size_t)half * X16_V * 2);
        vi S[K_NC];
        for (int c = 0; c < nc; c++) S[c] = v_zero();
        for (int h = 0; h < 2; h++)
            for (int s4 = 0; s4 < 4; s4++) {
                vi q[8];
                for (int i = 0; i < 8; i++) {
                    vi l = v_load(cb + 64 * (16 * h + 8 * (s4 & 1) + i));
                    vi hb = v_load(cb + 2048 + 64 * (8 * h + i));
                    l = s4 < 2 ? v_and(l, m4) : v_and(v_srli16(l, 4), m4);
                    /* bits 2s4, 2s4 + 1 of each qh byte to bits 4, 5 */
                    hb = s4 < 2 ? v_slli16(hb, 4 - 2 * s4) : v_srli16(hb, 2 * s4 - 4);
                    q[i] = v_or(l, v_and(hb, m2));
                }
                const int g = 8 * h + 2 * s4;
                for (int c = 0; c < nc; c++) {
                    const int8_t *a = x->q[c] + 256 * sb + 128 * h + 32 * s4;
                    S[c] =
                        v_add32(S[c], v_add32(v_mullo32(dot4(q, a), sc[g]), v_mullo32(dot4(q + 4, a + 16), sc[g + 1])));
                }
            }
        for (int c = 0; c < nc; c++) {
            const int16_t *bs = x->bsum[c] + 16 * sb;
            vi O = v_zero();
            for (int j = 0; j < 8; j++) O = dot_i16(O, scp[j], bcast_pair(bs + 2 * j));
            vi T = v_sub32(S[c], v_slli32(O, 5));
            acc[c] = f_fmadd(f_mul(d, f_set1(x->d[c][sb])), f_cvt(T), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) f_store(out + c * os, acc[c]);
}

/* kind: 4 (Q4_K), 5 (Q5_K), 6 (Q6_K) */
AI void run256(int kind, const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
               float *out, int64_t os) {
    cols256 x;
    for (int c = 0; c < nc; c++) {
        const uint8_t *col = xq + (size_t)c * as;
        x.d[c] = slm_act256_d(col);
        x.bsum[c] = slm_act256_bsum(col, k);
        x.q[c] = slm_act256_q(col, k);
    }
    const int64_t ns = k / SLM_QK_K;
    const size_t gbytes = 16 * rb, codes_bytes = (size_t)ns * (kind == 6 ? 3072 : kind == 5 ? 2560 : 2048);
    for (int64_t g = 0; g < nr / 16; g++) {
        const uint8_t *grp = w + (size_t)g * gbytes;
        for (int h = 0; h < HALVES; h++) {
            if (kind == 6) group_q6k(grp, grp + codes_bytes, h, ns, &x, nc, out + 16 * g + X16_V * h, os);
            else group_q45k(kind == 5, grp, grp + codes_bytes, h, ns, &x, nc, out + 16 * g + X16_V * h, os);
        }
    }
}

/* ---- dispatch: one out-of-line function per (type, column count), so that the column loops unroll ---- */
typedef void (*x16_fn)(const uint8_t *, size_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);

#define X16_FN(name, CALL, NC)                                                                                         \
    static void name##_##NC(const uint8_t *w, size_t rb, int64_t nr, const uint8_t *xq, size_t as, int64_t k,          \
                            float *out, int64_t os) {                                                                  \
        CALL(w, rb, nr, xq, as, NC, k, out, os);                                                                       \
    }
#define X16_FNS4(name, CALL) X16_FN(name, CALL, 1) X16_FN(name, CALL, 2) X16_FN(name, CALL, 3) X16_FN(name, CALL, 4)
#define X16_FNS8(name, CALL)                                                                                           \
    X16_FNS4(name, CALL) X16_FN(name, CALL, 5) X16_FN(name, CALL, 6) X16_FN(name, CALL, 7) X16_FN(name, CALL, 8)

#define CALL_Q4_0(...) run32(0, __VA_ARGS__)
#define CALL_Q8_0(...) run32(1, __VA_ARGS__)
#define CALL_Q4_K(...) run256(4, __VA_ARGS__)
#define CALL_Q5_K(...) run256(5, __VA_ARGS__)
#define CALL_Q6_K(...) run256(6, __VA_ARGS__)
#if X16_MAX_NC == 8
X16_FNS8(q4_0, CALL_Q4_0)
#define Q4_0_FNS                                                                                                       \
    { q4_0_1, q4_0_2, q4_0_3, q4_0_4, q4_0_5, q4_0_6, q4_0_7, q4_0_8 }
#if X16_HAS_Q8
X16_FNS8(q8_0, CALL_Q8_0)
#define Q8_0_FNS                                                                                                       \
    { q8_0_1, q8_0_2, q8_0_3, q8_0_4, q8_0_5, q8_0_6, q8_0_7, q8_0_8 }
#endif
#else
X16_FNS4(q4_0, CALL_Q4_0)
#define Q4_0_FNS                                                                                                       \
    { q4_0_1, q4_0_2, q4_0_3, q4_0_4 }
#if X16_HAS_Q8
X16_FNS4(q8_0, CALL_Q8_0)
#define Q8_0_FNS                                                                                                       \
    { q8_0_1, q8_0_2, q8_0_3, q8_0_4 }
#endif
#endif
X16_FNS4(q4_k, CALL_Q4_K)
X16_FNS4(q5_k, CALL_Q5_K)
X16_FNS4(q6_k, CALL_Q6_K)

bool X16_VARIANT(slm_cpu_matvec_x16_has)(slm_dtype wtype) {
    return wtype == SLM_Q4_0 || wtype == SLM_Q4_K || wtype == SLM_Q5_K || wtype == SLM_Q6_K ||
        (X16_HAS_Q8 && wtype == SLM_Q8_0);
}

void X16_VARIANT(slm_cpu_matvec_x16)(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                                     size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    static const x16_fn q4[X16_MAX_NC] = Q4_0_FNS, q4k[K_NC] = {q4_k_1, q4_k_2, q4_k_3, q4_k_4},
                        q5k[K_NC] = {q5_k_1, q5_k_2, q5_k_3, q5_k_4}, q6k[K_NC] = {q6_k_1, q6_k_2, q6_k_3, q6_k_4};
#if X16_HAS_Q8
    static const x16_fn q8[X16_MAX_NC] = Q8_0_FNS;
#else
    const x16_fn *q8 = q4; /* never asked for: has() says no */
#endif
    const x16_fn *fns = wtype == SLM_Q8_0 ? q8
        : wtype == SLM_Q4_K               ? q4k
        : wtype == SLM_Q5_K               ? q5k
        : wtype == SLM_Q6_K               ? q6k
                                          : q4;
    const int per_pass = wtype == SLM_Q4_0 || wtype == SLM_Q8_0 ? X16_MAX_NC : K_NC;
    /* more columns than a pass takes: passes over the same rows (the caller's row tiles keep them in
     * cache) */
    for (int64_t c0 = 0; c0 < n_cols; c0 += per_pass) {
        int64_t m = n_cols - c0 < per_pass ? n_cols - c0 : per_pass;
        fns[m - 1]((const uint8_t *)w, row_bytes, n_rows, (const uint8_t *)xq + (size_t)c0 * act_stride, act_stride, k,
                   out + c0 * out_stride, out_stride);
    }
}
