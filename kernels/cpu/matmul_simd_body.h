/* The x86 SIMD mat-mul, written once and compiled twice: matmul_avx2.c (AVX2 + FMA + F16C) and
 * matmul_avx512.c (adds AVX-512 VNNI). The includer defines
 *   SLM_SFX                 the name suffix (avx2, avx512)
 *   SLM_DPBUSD(acc, u, s)   acc (8 x i32) + sums of 4 products u8 * s8
 *   SLM_DPWSSD(acc, a, b)   acc (8 x i32) + sums of 2 products i16 * i16
 * With VNNI these are single instructions; without, maddubs/madd + add (the u8 * s8 pair sums saturate
 * at 16 bits, which the weights below never reach: at most 2 * 128 * 127).
 *
 * Shape of every kernel: weights are decoded in registers (nibbles masked out, fifth/sixth bits merged),
 * then multiplied with up to 4 activation columns, so a prompt batch reads each weight block once per 4
 * columns. The 32-element formats work on 8 blocks at a time: their 8 integer dot products are reduced
 * into one vector and scaled by one FMA (scaling block by block costs more than the dot itself); the
 * k-quants apply their small integer sub-block scales in the integer domain (madd) and scale once per
 * 256 elements.
 *
 * Weight types with a SIMD path here: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K
 * (all of them; others go to the scalar variant). */
#ifndef SLM_SFX
#error "define SLM_SFX, SLM_DPBUSD and SLM_DPWSSD before including matmul_simd_body.h"
#endif

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "act_quant.h"
#include "cpu_variants.h"
#include "quant_blocks.h"
#include "simd_bytes.h"

#define AI static inline __attribute__((always_inline))
#define SLM_CAT2(a, b) a##_##b
#define SLM_CAT(a, b) SLM_CAT2(a, b)
#define VARIANT(name) SLM_CAT(name, SLM_SFX)

#define MAX_NC 4

AI __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Software prefetch (into L2) of the weight bytes PREFETCH_AHEAD past [p, p + n): weight rows are
 * contiguous, so this runs on into the next rows. With weights streamed from DRAM, the hardware
 * prefetcher alone left the kernels waiting on memory about as long as they computed, which made decode
 * far slower than the memory allows. The distance matters little (1 to 16 KiB ahead did alike); into L2
 * (T1) did better than into L1 (T0). */
#define PREFETCH_AHEAD 4096
AI void prefetch_ahead(const uint8_t *p, int n) {
    for (int l = 0; l < n; l += 64) _mm_prefetch((const char *)p + PREFETCH_AHEAD + l, _MM_HINT_T1);
}
AI __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
AI float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) against SLM_ACT_Q8_32 ---- */

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15) then high (16..31). */
AI __m256i unpack_nibbles(const uint8_t *qs) {
    __m256i v = _mm256_broadcastsi128_si256(loadu128(qs)); /* a load-only broadcast */
    v = _mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* Byte i = 0x10 when bit i of qh is set: the fifth bit of element i of a Q5_0/Q5_1 block. */
AI __m256i q5_high_bits(uint32_t qh) {
    __m256i v = _mm256_set1_epi32((int)qh);
    /* byte i reads byte i / 8 of qh (each 128-bit lane holds all 4 bytes after the broadcast) */
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    v = _mm256_shuffle_epi8(v, spread);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

AI int blk32_bytes(slm_dtype t) {
    switch (t) {
    case SLM_Q4_0: return SLM_Q4_0_BYTES;
    case SLM_Q4_1: return SLM_Q4_1_BYTES;
    case SLM_Q5_0: return SLM_Q5_0_BYTES;
    case SLM_Q5_1: return SLM_Q5_1_BYTES;
    default: return SLM_Q8_0_BYTES;
    }
}

/* The 32 codes of a block: unsigned for Q4/Q5, the signed bytes as stored for Q8_0. */
AI __m256i blk32_codes(slm_dtype t, const uint8_t *b) {
    switch (t) {
    case SLM_Q4_0: return unpack_nibbles(b + SLM_Q4_0_QS);
    case SLM_Q4_1: return unpack_nibbles(b + SLM_Q4_1_QS);
    case SLM_Q5_0: return _mm256_or_si256(unpack_nibbles(b + SLM_Q5_0_QS), q5_high_bits(rd32(b + SLM_Q5_0_QH)));
    case SLM_Q5_1: return _mm256_or_si256(unpack_nibbles(b + SLM_Q5_1_QS), q5_high_bits(rd32(b + SLM_Q5_1_QH)));
    default: return loadu256(b + SLM_Q8_0_QS);
    }
}

typedef struct cols32 {
    const float *d[MAX_NC], *s[MAX_NC];
    const int8_t *q[MAX_NC];
} cols32;

/* One weight block b against nc columns:
 *   dot = dw * da * sum(code * qa) + coef * (da * sum(qa))
 * with coef = -8 dw (Q4_0), -16 dw (Q5_0), the block min m (Q4_1, Q5_1), 0 (Q8_0). */
AI void blk32_step(slm_dtype t, const uint8_t *blk, int64_t b, const cols32 *x, int nc, __m256 *acc, float *off) {
    float dw = h2f(blk);
    __m256i codes = blk32_codes(t, blk);
    /* Q8_0 is signed x signed: move the weight's sign onto the activation so the u8 operand is |w|. */
    __m256i u = t == SLM_Q8_0 ? _mm256_abs_epi8(codes) : codes;
    float coef = t == SLM_Q4_0 ? -8.0f * dw
        : t == SLM_Q5_0        ? -16.0f * dw
        : t == SLM_Q8_0        ? 0.0f
                               : h2f(blk + SLM_Q4_1_M); /* Q4_1 and Q5_1 keep m at one offset */
    for (int c = 0; c < nc; c++) {
        __m256i a = loadu256(x->q[c] + 32 * b);
        if (t == SLM_Q8_0) a = _mm256_sign_epi8(a, codes);
        __m256i p = SLM_DPBUSD(_mm256_setzero_si256(), u, a);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x->d[c][b]), _mm256_cvtepi32_ps(p), acc[c]);
        if (t != SLM_Q8_0) off[c] += coef * x->s[c][b];
    }
}

/* Block headers of 8 consecutive blocks (d, and m for Q4_1/Q5_1: the first 4 bytes) as f32 vectors in
 * the block order [0,2,4,6,1,3,5,7] that group8_reduce produces. */
AI void hdr8(const uint8_t *p, int bb, int want_m, __m256 *dv, __m256 *mv) {
    __m256i u;
#define SLM_PAIR(i)                                                                                                    \
    _mm256_inserti128_si256(_mm256_castsi128_si256(loadu128(p + (2 * (i)) * bb)), loadu128(p + (2 * (i) + 1) * bb), 1)
    /* dword i of lane 0 = header of block 2i, of lane 1 = header of block 2i + 1 */
    u = SLM_PAIR(0);
    u = _mm256_blend_epi32(u, _mm256_slli_si256(SLM_PAIR(1), 4), 0x22);
    u = _mm256_blend_epi32(u, _mm256_slli_si256(SLM_PAIR(2), 8), 0x44);
    u = _mm256_blend_epi32(u, _mm256_slli_si256(SLM_PAIR(3), 12), 0x88);
#undef SLM_PAIR
    /* d halves to the low 8 bytes of each lane, m halves to the high 8 */
    const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12,
                                           13, 2, 3, 6, 7, 10, 11, 14, 15);
    u = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(u, split), _MM_SHUFFLE(3, 1, 2, 0));
    *dv = _mm256_cvtph_ps(_mm256_castsi256_si128(u));
    if (want_m) *mv = _mm256_cvtph_ps(_mm256_extracti128_si256(u, 1));
}

/* Sums of the 8 lanes of each of v[0..7] -> one vector, element j = sum of v[j]. */
AI __m256i group8_reduce(const __m256i *v) {
    __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    /* g0 lane 0 = partial sums of v0..v3 over their low halves, lane 1 over the high halves */
    return _mm256_add_epi32(_mm256_blend_epi32(g0, g1, 0xf0), _mm256_permute2x128_si256(g0, g1, 0x21));
}

/* 8 blocks at once: integer dots of every block reduced to one vector, then scaled with one FMA, so
 * the per-block cost is decode + dot + 1/8 of the scaling (scaling each block alone costs more than its
 * dot). */
AI void blk32_group8(slm_dtype t, const uint8_t *p, int64_t b, const cols32 *x, int nc, __m256 *acc, __m256 *offacc) {
    static const int ord[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const int bb = blk32_bytes(t);
    const int has_min = t == SLM_Q4_1 || t == SLM_Q5_1;
    __m256 dw, mw = _mm256_setzero_ps();
    hdr8(p, bb, has_min, &dw, &mw);
    __m256i codes[8];
    for (int j = 0; j < 8; j++) codes[j] = blk32_codes(t, p + ord[j] * bb);
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int c = 0; c < nc; c++) {
        __m256i v[8];
        for (int j = 0; j < 8; j++) {
            __m256i a = loadu256(x->q[c] + 32 * (b + ord[j]));
            __m256i u = codes[j];
            if (t == SLM_Q8_0) {
                a = _mm256_sign_epi8(a, codes[j]);
                u = _mm256_abs_epi8(codes[j]);
            }
            v[j] = SLM_DPBUSD(_mm256_setzero_si256(), u, a);
        }
        __m256 da = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x->d[c] + b), perm);
        acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(group8_reduce(v)), acc[c]);
        if (t != SLM_Q8_0) {
            __m256 sa = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x->s[c] + b), perm);
            offacc[c] = _mm256_fmadd_ps(has_min ? mw : dw, sa, offacc[c]);
        }
    }
}

AI void mm_blk32(slm_dtype t, const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
                 float *out, int64_t os) {
    cols32 x;
    for (int c = 0; c < nc; c++) {
        const uint8_t *col = xq + (size_t)c * as;
        x.d[c] = slm_act32_d(col);
        x.s[c] = slm_act32_s(col, k);
        x.q[c] = slm_act32_q(col, k);
    }
    const int bb = blk32_bytes(t);
    const int64_t nb = k / 32;
    /* offacc holds sum(dw * s) (Q4_0, Q5_0: times -8 / -16 at the end) or sum(m * s) (Q4_1, Q5_1) */
    const float off_scale = t == SLM_Q4_0 ? -8.0f : t == SLM_Q5_0 ? -16.0f : 1.0f;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * wrb;
        __m256 acc[MAX_NC], offacc[MAX_NC], acc1[MAX_NC];
        float off1[MAX_NC];
        for (int c = 0; c < nc; c++) {
            acc[c] = offacc[c] = acc1[c] = _mm256_setzero_ps();
            off1[c] = 0;
        }
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            prefetch_ahead(row + b * bb, 8 * bb);
            blk32_group8(t, row + b * bb, b, &x, nc, acc, offacc);
        }
        for (; b < nb; b++) blk32_step(t, row + b * bb, b, &x, nc, acc1, off1);
        for (int c = 0; c < nc; c++)
            out[c * os + r] = hsum8(_mm256_add_ps(acc[c], acc1[c])) + off_scale * hsum8(offacc[c]) + off1[c];
    }
}

/* ---- 256-element super-blocks (Q4_K, Q5_K, Q6_K) against SLM_ACT_Q8_256 ---- */

typedef struct cols256 {
    const float *d[MAX_NC];
    const int16_t *bsum[MAX_NC];
    const int8_t *q[MAX_NC];
} cols256;

AI void cols256_init(cols256 *x, const uint8_t *xq, size_t as, int nc, int64_t k) {
    for (int c = 0; c < nc; c++) {
        const uint8_t *col = xq + (size_t)c * as;
        x->d[c] = slm_act256_d(col);
        x->bsum[c] = slm_act256_bsum(col, k);
        x->q[c] = slm_act256_q(col, k);
    }
}

/* Every 16-bit lane = 16-bit element j of each 128-bit half of v. */
AI __m256i bcast_i16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
}

/* Q4_K / Q5_K super-block:
 *   dot = da * (d * sum_j sc[j] * sum(code * qa over sub-block j) - dmin * sum_j mn[j] * sum(qa over j)) */
AI void q45k_step(int is_q5, const uint8_t *blk, int64_t sb, const cols256 *x, int nc, __m256 *acc, __m128 *macc) {
    /* 12 scale bytes -> 8 six-bit scales and 8 six-bit mins, four at a time in 32-bit words
     * (bit layout in quant_ref.c). */
    const uint8_t *sc = blk + SLM_Q4_K_SCALES;
    uint32_t w0 = rd32(sc), w1 = rd32(sc + 4), w2 = rd32(sc + 8);
    uint32_t sc_lo = w0 & 0x3f3f3f3fu, mn_lo = w1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
    uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo)));
    __m128i mn16 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn_hi, (int)mn_lo));
    const uint8_t *qs = blk + (is_q5 ? SLM_Q5_K_QS : SLM_Q4_K_QS);
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256i hb = is_q5 ? loadu256(blk + SLM_Q5_K_QH) : _mm256_setzero_si256();
    __m256i is0[MAX_NC], is1[MAX_NC];
    for (int c = 0; c < nc; c++) is0[c] = is1[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i v = loadu256(qs + 32 * p);
        __m256i lo = _mm256_and_si256(v, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (is_q5) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * p), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * p + 1), one), 4));
        }
        __m256i slo = bcast_i16(sc16, 2 * p), shi = bcast_i16(sc16, 2 * p + 1);
        for (int c = 0; c < nc; c++) {
            const int8_t *a = x->q[c] + 256 * sb + 64 * p;
            is0[c] = SLM_DPWSSD(is0[c], _mm256_maddubs_epi16(lo, loadu256(a)), slo);
            is1[c] = SLM_DPWSSD(is1[c], _mm256_maddubs_epi16(hi, loadu256(a + 32)), shi);
        }
    }
    float d = h2f(blk), dmin = h2f(blk + SLM_Q4_K_DMIN);
    for (int c = 0; c < nc; c++) {
        float da = x->d[c][sb];
        __m256i is = _mm256_add_epi32(is0[c], is1[c]);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * da), _mm256_cvtepi32_ps(is), acc[c]);
        __m256i b16 = loadu256(x->bsum[c] + 16 * sb);
        /* pairs of 16-sums -> the 8 sums over 32 elements, in sub-block order */
        __m128i b32 = _mm_hadd_epi16(_mm256_castsi256_si128(b16), _mm256_extracti128_si256(b16, 1));
        __m128i m = _mm_madd_epi16(mn16, b32);
        macc[c] = _mm_fmadd_ps(_mm_set1_ps(-dmin * da), _mm_cvtepi32_ps(m), macc[c]);
    }
}

AI void mm_q45k(int is_q5, const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
                float *out, int64_t os) {
    cols256 x;
    cols256_init(&x, xq, as, nc, k);
    const int bb = is_q5 ? SLM_Q5_K_BYTES : SLM_Q4_K_BYTES;
    const int64_t ns = k / SLM_QK_K;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * wrb;
        __m256 acc[MAX_NC];
        __m128 macc[MAX_NC];
        for (int c = 0; c < nc; c++) {
            acc[c] = _mm256_setzero_ps();
            macc[c] = _mm_setzero_ps();
        }
        for (int64_t sb = 0; sb < ns; sb++) {
            prefetch_ahead(row + sb * bb, bb);
            q45k_step(is_q5, row + sb * bb, sb, &x, nc, acc, macc);
        }
        for (int c = 0; c < nc; c++) out[c * os + r] = hsum8(acc[c]) + hsum4(macc[c]);
    }
}

/* Q6_K super-block: dot = da * d * sum_g sc[g] * (sum(code * qa over group g) - 32 * sum(qa over g)),
 * g = 16 groups of 16 elements, codes 0..63 stored with +32. */
AI void q6k_step(const uint8_t *blk, int64_t sb, const cols256 *x, int nc, __m256 *acc) {
    const uint8_t *ql = blk + SLM_Q6_K_QL, *qh = blk + SLM_Q6_K_QH;
    __m256i s16 = _mm256_cvtepi8_epi16(loadu128(blk + SLM_Q6_K_SCALES)); /* the 16 group scales as i16 */
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    __m256i is0[MAX_NC], is1[MAX_NC];
    for (int c = 0; c < nc; c++) is0[c] = is1[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        /* scales 8h..8h+7 in both 128-bit halves */
        __m256i sh = h ? _mm256_permute2x128_si256(s16, s16, 0x11) : _mm256_permute2x128_si256(s16, s16, 0x00);
        __m256i l0 = loadu256(ql + 64 * h), l1 = loadu256(ql + 64 * h + 32), hv = loadu256(qh + 32 * h);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m3), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2), m3), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 4), m3), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 6), m3), 4));
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            /* elements 32s..32s+15 use scale 2s of this half, 32s+16..32s+31 scale 2s+1 */
            __m256i sc = _mm256_shuffle_epi8(sh,
                                             _mm256_set_m128i(_mm_set1_epi16((short)(((4 * s + 3) << 8) | (4 * s + 2))),
                                                              _mm_set1_epi16((short)(((4 * s + 1) << 8) | (4 * s)))));
            for (int c = 0; c < nc; c++) {
                __m256i p = _mm256_maddubs_epi16(q[s], loadu256(x->q[c] + 256 * sb + 128 * h + 32 * s));
                if (s & 1) is1[c] = SLM_DPWSSD(is1[c], p, sc);
                else is0[c] = SLM_DPWSSD(is0[c], p, sc);
            }
        }
    }
    float d = h2f(blk + SLM_Q6_K_D);
    for (int c = 0; c < nc; c++) {
        __m256i corr = _mm256_madd_epi16(s16, loadu256(x->bsum[c] + 16 * sb));
        __m256i is = _mm256_sub_epi32(_mm256_add_epi32(is0[c], is1[c]), _mm256_slli_epi32(corr, 5));
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d[c][sb]), _mm256_cvtepi32_ps(is), acc[c]);
    }
}

AI void mm_q6k(const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k, float *out,
               int64_t os) {
    cols256 x;
    cols256_init(&x, xq, as, nc, k);
    const int64_t ns = k / 256;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * wrb;
        __m256 acc[MAX_NC];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < ns; sb++) {
            prefetch_ahead(row + sb * SLM_Q6_K_BYTES, SLM_Q6_K_BYTES);
            q6k_step(row + sb * SLM_Q6_K_BYTES, sb, &x, nc, acc);
        }
        for (int c = 0; c < nc; c++) out[c * os + r] = hsum8(acc[c]);
    }
}

/* ---- float weights against f32 activations ---- */

AI __m256 load8_w(slm_dtype t, const uint8_t *w, int64_t i) {
    switch (t) {
    case SLM_F16: return _mm256_cvtph_ps(loadu128(w + 2 * i));
    case SLM_BF16: return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(w + 2 * i)), 16));
    default: return _mm256_loadu_ps((const float *)(w + 4 * i));
    }
}

AI float load1_w(slm_dtype t, const uint8_t *w, int64_t i) {
    uint16_t h;
    float f;
    switch (t) {
    case SLM_F16: memcpy(&h, w + 2 * i, 2); return _cvtsh_ss(h);
    case SLM_BF16: {
        memcpy(&h, w + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        memcpy(&f, &u, 4);
        return f;
    }
    default: memcpy(&f, w + 4 * i, 4); return f;
    }
}

AI void mm_float(slm_dtype t, const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int nc, int64_t k,
                 float *out, int64_t os) {
    const float *x[MAX_NC];
    for (int c = 0; c < nc; c++) x[c] = (const float *)(xq + (size_t)c * as);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * wrb;
        __m256 acc0[MAX_NC], acc1[MAX_NC];
        for (int c = 0; c < nc; c++) acc0[c] = acc1[c] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) {
            __m256 w0 = load8_w(t, row, i), w1 = load8_w(t, row, i + 8);
            for (int c = 0; c < nc; c++) {
                acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + i), acc0[c]);
                acc1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[c] + i + 8), acc1[c]);
            }
        }
        for (; i + 8 <= k; i += 8) {
            __m256 w0 = load8_w(t, row, i);
            for (int c = 0; c < nc; c++) acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + i), acc0[c]);
        }
        for (int c = 0; c < nc; c++) {
            float s = hsum8(_mm256_add_ps(acc0[c], acc1[c]));
            for (int64_t j = i; j < k; j++) s += load1_w(t, row, j) * x[c][j];
            out[c * os + r] = s;
        }
    }
}

/* ---- dispatch: one out-of-line function per (type, column count) ---- */

#define SLM_NC_FUNCS(name, CALL)                                                                                       \
    static void name##_1(const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int64_t k,            \
                         float *out, int64_t os) {                                                                     \
        CALL(1);                                                                                                       \
    }                                                                                                                  \
    static void name##_2(const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int64_t k,            \
                         float *out, int64_t os) {                                                                     \
        CALL(2);                                                                                                       \
    }                                                                                                                  \
    static void name##_3(const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int64_t k,            \
                         float *out, int64_t os) {                                                                     \
        CALL(3);                                                                                                       \
    }                                                                                                                  \
    static void name##_4(const uint8_t *w, size_t wrb, int64_t nr, const uint8_t *xq, size_t as, int64_t k,            \
                         float *out, int64_t os) {                                                                     \
        CALL(4);                                                                                                       \
    }

#define K_Q4_0(NC) mm_blk32(SLM_Q4_0, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q4_1(NC) mm_blk32(SLM_Q4_1, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q5_0(NC) mm_blk32(SLM_Q5_0, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q5_1(NC) mm_blk32(SLM_Q5_1, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q8_0(NC) mm_blk32(SLM_Q8_0, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q4_K(NC) mm_q45k(0, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q5_K(NC) mm_q45k(1, w, wrb, nr, xq, as, NC, k, out, os)
#define K_Q6_K(NC) mm_q6k(w, wrb, nr, xq, as, NC, k, out, os)
#define K_F32(NC) mm_float(SLM_F32, w, wrb, nr, xq, as, NC, k, out, os)
#define K_F16(NC) mm_float(SLM_F16, w, wrb, nr, xq, as, NC, k, out, os)
#define K_BF16(NC) mm_float(SLM_BF16, w, wrb, nr, xq, as, NC, k, out, os)

SLM_NC_FUNCS(mm_q4_0, K_Q4_0)
SLM_NC_FUNCS(mm_q4_1, K_Q4_1)
SLM_NC_FUNCS(mm_q5_0, K_Q5_0)
SLM_NC_FUNCS(mm_q5_1, K_Q5_1)
SLM_NC_FUNCS(mm_q8_0, K_Q8_0)
SLM_NC_FUNCS(mm_q4_k, K_Q4_K)
SLM_NC_FUNCS(mm_q5_k, K_Q5_K)
SLM_NC_FUNCS(mm_q6_k, K_Q6_K)
SLM_NC_FUNCS(mm_f32, K_F32)
SLM_NC_FUNCS(mm_f16, K_F16)
SLM_NC_FUNCS(mm_bf16, K_BF16)

typedef void (*mm_fn)(const uint8_t *, size_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);

#define SLM_NC_TABLE(name)                                                                                             \
    { name##_1, name##_2, name##_3, name##_4 }

static const mm_fn *mm_table(slm_dtype t) {
    static const mm_fn q4_0[4] = SLM_NC_TABLE(mm_q4_0), q4_1[4] = SLM_NC_TABLE(mm_q4_1),
                       q5_0[4] = SLM_NC_TABLE(mm_q5_0), q5_1[4] = SLM_NC_TABLE(mm_q5_1),
                       q8_0[4] = SLM_NC_TABLE(mm_q8_0), q4_k[4] = SLM_NC_TABLE(mm_q4_k),
                       q5_k[4] = SLM_NC_TABLE(mm_q5_k), q6_k[4] = SLM_NC_TABLE(mm_q6_k), f32[4] = SLM_NC_TABLE(mm_f32),
                       f16[4] = SLM_NC_TABLE(mm_f16), bf16[4] = SLM_NC_TABLE(mm_bf16);
    switch (t) {
    case SLM_Q4_0: return q4_0;
    case SLM_Q4_1: return q4_1;
    case SLM_Q5_0: return q5_0;
    case SLM_Q5_1: return q5_1;
    case SLM_Q8_0: return q8_0;
    case SLM_Q4_K: return q4_k;
    case SLM_Q5_K: return q5_k;
    case SLM_Q6_K: return q6_k;
    case SLM_F32: return f32;
    case SLM_F16: return f16;
    case SLM_BF16: return bf16;
    default: return NULL;
    }
}

bool VARIANT(slm_cpu_matmul_has_fast)(slm_dtype wtype) { return mm_table(wtype) != NULL; }

void VARIANT(slm_cpu_matmul)(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                             size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    const mm_fn *fns = mm_table(wtype);
    if (!fns) {
        slm_cpu_matmul_scalar(wtype, w, w_row_bytes, n_rows, xq, act_stride, n_cols, k, out, out_stride);
        return;
    }
    /* Columns in groups of up to 4 over the same rows: the caller passes row tiles small enough to stay in
     * cache, so each group after the first reads the weights from cache rather than memory. */
    for (int64_t c0 = 0; c0 < n_cols; c0 += MAX_NC) {
        int64_t m = n_cols - c0 < MAX_NC ? n_cols - c0 : MAX_NC;
        fns[m - 1]((const uint8_t *)w, w_row_bytes, n_rows, (const uint8_t *)xq + (size_t)c0 * act_stride, act_stride,
                   k, out + c0 * out_stride, out_stride);
    }
}

/* ---- attention of one query head over the f16 KV cache ----
 * Decode at depth reads the whole cache per token, and done as one dot and one axpy call per position
 * (with a scalar expf between) it read the cache far below the memory's bandwidth, a share of every decode
 * step that grows with the context. Here the scores of 8 positions are reduced together, the exponentials
 * are computed 8 at a time and the output stays in registers while the V rows stream past. */

/* Sums of v[0..7] -> element j = sum of the 8 lanes of v[j]. */
AI __m256 reduce8_ps(const __m256 *v) {
    __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    /* a: lane 0 = low-half partials of v0..v3, lane 1 = high-half partials */
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* Rows of one head are hd * 2 bytes at the stride of all kv heads, too short for the hardware prefetcher
 * to follow: prefetch them 16 positions ahead. This pays once the cache outgrows L2 and its rows come from
 * memory; a short cache stays in L2 and waits little either way. Past the last row it is harmless. */
#define ATTN_AHEAD 16
AI void prefetch_row(const uint16_t *row, int hd) {
    for (int b = 0; b < 2 * hd; b += 64) _mm_prefetch((const char *)row + b, _MM_HINT_T0);
}

/* q . k over hd elements as one vector of partial sums (plus the scalar tail in *tail). */
AI __m256 dot_f16_vec(const uint16_t *k, const float *q, int hd, float *tail) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= hd; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(k + i)), _mm256_loadu_ps(q + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(k + i + 8)), _mm256_loadu_ps(q + i + 8), a1);
    }
    for (; i + 8 <= hd; i += 8) a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(k + i)), _mm256_loadu_ps(q + i), a0);
    float t = 0;
    for (; i < hd; i++) t += _cvtsh_ss(k[i]) * q[i];
    *tail = t;
    return _mm256_add_ps(a0, a1);
}

/* exp(x) for x <= 0, 8 at a time: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^7
 * (relative error below 1e-7 there), times 2^n from the exponent bits. Below -87 (where expf leaves the
 * normal range) the result is exp(-87) ~ 1.6e-38: a weight that adds nothing to a sum that holds a 1. NaN
 * stays NaN (max takes its second operand when one is NaN). */
AI __m256 exp_neg_ps(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x); /* ln2 in two parts: n * hi is exact */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void VARIANT(slm_cpu_attend_f16)(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride, size_t v_stride,
                                 int64_t n, int hd, float scale, float *scores, float *out) {
    /* scores, 8 positions per reduction */
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 acc[8];
        float tails[8];
        for (int j = 0; j < 8; j++) {
            prefetch_row(k + (size_t)(p + j + ATTN_AHEAD) * k_stride, hd);
            acc[j] = dot_f16_vec(k + (size_t)(p + j) * k_stride, q, hd, &tails[j]);
        }
        __m256 s = _mm256_mul_ps(_mm256_add_ps(reduce8_ps(acc), _mm256_loadu_ps(tails)), _mm256_set1_ps(scale));
        _mm256_storeu_ps(scores + p, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    float mx = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int j = 0; j < 8; j++)
        if (lanes[j] > mx) mx = lanes[j];
    for (; p < n; p++) {
        float t;
        scores[p] = (hsum8(dot_f16_vec(k + (size_t)p * k_stride, q, hd, &t)) + t) * scale;
        if (scores[p] > mx) mx = scores[p];
    }
    /* weights */
    __m256 vsum = _mm256_setzero_ps(), vmx = _mm256_set1_ps(mx);
    for (p = 0; p + 8 <= n; p += 8) {
        __m256 e = exp_neg_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + p), vmx));
        _mm256_storeu_ps(scores + p, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum8(vsum);
    for (; p < n; p++) {
        scores[p] = expf(scores[p] - mx);
        sum += scores[p];
    }
    const float inv = 1.0f / sum;
    /* out = sum_p w_p v_p, 64 outputs at a time in registers */
    int i = 0;
    for (; i + 64 <= hd; i += 64) {
        __m256 o[8];
        for (int j = 0; j < 8; j++) o[j] = _mm256_setzero_ps();
        for (p = 0; p < n; p++) {
            const uint16_t *vp = v + (size_t)p * v_stride + i;
            if (i == 0) prefetch_row(vp + (size_t)ATTN_AHEAD * v_stride, hd);
            __m256 w = _mm256_broadcast_ss(scores + p);
            for (int j = 0; j < 8; j++) o[j] = _mm256_fmadd_ps(w, _mm256_cvtph_ps(loadu128(vp + 8 * j)), o[j]);
        }
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + i + 8 * j, _mm256_mul_ps(o[j], _mm256_set1_ps(inv)));
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 o = _mm256_setzero_ps();
        for (p = 0; p < n; p++)
            o = _mm256_fmadd_ps(_mm256_broadcast_ss(scores + p),
                                _mm256_cvtph_ps(loadu128(v + (size_t)p * v_stride + i)), o);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(o, _mm256_set1_ps(inv)));
    }
    for (; i < hd; i++) {
        float o = 0;
        for (p = 0; p < n; p++) o += scores[p] * _cvtsh_ss(v[(size_t)p * v_stride + i]);
        out[i] = o * inv;
    }
}
