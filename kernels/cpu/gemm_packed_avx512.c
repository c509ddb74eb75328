/* AVX-512 VNNI packed GEMM (layout and contract in gemm_packed.h). This file is compiled with AVX-512
 * flags: the dispatcher hands it out only after slm_cpu_isa_detect() reported AVX512.
 *
 * Work of one call: columns in chunks (interleaved into scratch by slm_cpu_gemm_interleave_cols), rows
 * in tiles of a few 16-row groups packed into scratch; then groups two at a time meet the chunk's columns
 * six at a time (2 x 6 integer and 2 x 6 float accumulators of 16 rows stay in registers; one packed
 * vector load feeds 6 dot products, one activation broadcast 2).
 *
 * Measured on one Sapphire Rapids core, k = 2048, 120 columns: ~210 G multiply-adds/s against ~50 for
 * the mat-vec kernel on the same data (Q4_0; Q4_1/Q4_K ~195, Q6_K ~165). That is about half of the
 * dot-product peak; the float steps per block and the load ports take the rest. */
#include "gemm_packed.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "act_quant.h"
#include "quant_blocks.h"
#include "simd_bytes.h"

#define AI static inline __attribute__((always_inline))

#define GROUP_ROWS 16
#define REC_BYTES 640            /* one block of a group: codes 8 x 64 B, d 64 B, coef 64 B */
#define TILE_BUDGET (384 * 1024) /* packed tile bytes; a group pair is what must stay near (L1/L2) */
#define ACT_BUDGET (1280 * 1024) /* activation bytes of one column chunk (L2; L3 would do) */
#define MAX_TILE_GROUPS 8        /* beyond this a tile only delays the first columns' start */
#define COLS 6                   /* register blocking: 2 groups x COLS columns per pass */

static size_t group_bytes(int64_t k) { return (size_t)(k / 32) * REC_BYTES; }

static int64_t tile_groups(int64_t k) {
    size_t gb = group_bytes(k);
    int64_t g = gb > 0 ? (int64_t)(TILE_BUDGET / gb) : MAX_TILE_GROUPS;
    return g < 1 ? 1 : g > MAX_TILE_GROUPS ? MAX_TILE_GROUPS : g;
}

bool slm_cpu_gemm_has_avx512(slm_dtype wtype) {
    switch (wtype) {
    case SLM_Q4_0:
    case SLM_Q4_1:
    case SLM_Q5_0:
    case SLM_Q5_1:
    case SLM_Q8_0:
    case SLM_Q4_K:
    case SLM_Q5_K:
    case SLM_Q6_K: return true;
    default: return false;
    }
}

/* ---- activation quantization (SLM_ACT_Q8_32, the same values as slm_act_quantize) ----
 * A prompt batch quantizes k elements per column for every k x n_rows weight: cheap per element, but
 * the portable loop in act_quant.c stays scalar, slow enough to show in a prompt batch's time. Same
 * rounding (half away from zero, |q| <= 127) and the same NaN rule (a block with a NaN or inf gets scale
 * NaN and zero quants). */
void slm_cpu_gemm_quantize_act_avx512(const float *x, void *xq, int64_t k) {
    const int64_t nb = k / 32;
    float *dv = (float *)xq, *sv = dv + nb;
    int8_t *q = (int8_t *)slm_act32_q(xq, k);
    const __m512 half = _mm512_set1_ps(0.5f), lim = _mm512_set1_ps(127.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    for (int64_t b = 0; b < nb; b++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        /* fpclass 0x99: QNaN, SNaN, +inf, -inf */
        if (_mm512_fpclass_ps_mask(v0, 0x99) | _mm512_fpclass_ps_mask(v1, 0x99)) {
            memset(q + 32 * b, 0, 32);
            dv[b] = sv[b] = NAN;
            continue;
        }
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        if (!isfinite(id)) { /* a subnormal scale, as act_quant.c: every value quantizes to zero */
            memset(q + 32 * b, 0, 32);
            dv[b] = d;
            sv[b] = 0.0f;
            continue;
        }
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0, q1;
        {
            __m512 a = _mm512_mul_ps(v0, vid), c = _mm512_mul_ps(v1, vid);
            /* v + copysign(0.5, v), truncated: round half away from zero as act_quant.c's round_q */
            a = _mm512_add_ps(a,
                              _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(half),
                                                                  _mm512_and_si512(_mm512_castps_si512(a), sign))));
            c = _mm512_add_ps(c,
                              _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(half),
                                                                  _mm512_and_si512(_mm512_castps_si512(c), sign))));
            a = _mm512_max_ps(_mm512_min_ps(a, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
            c = _mm512_max_ps(_mm512_min_ps(c, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
            q0 = _mm512_cvttps_epi32(a);
            q1 = _mm512_cvttps_epi32(c);
        }
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(q1));
        dv[b] = d;
        sv[b] = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- packing ---- */

/* 16 bytes at offset off of rows rp[i], rp[4 + i], rp[8 + i], rp[12 + i] into 128-bit lanes 0..3. */
AI __m512i load4rows(const uint8_t *const *rp, int i, size_t off) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[i] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 + i] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[8 + i] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[12 + i] + off)), 3);
}

/* x[i]: lane L holds row 4L + i, dword c of the lane its code chunk c (c < 4). A 4 x 4 dword transpose
 * inside every lane gives w[c]: dword r = chunk c of row r, the packed order. */
AI void transpose4(const __m512i *x, __m512i *w) {
    __m512i t0 = _mm512_unpacklo_epi32(x[0], x[1]), t1 = _mm512_unpackhi_epi32(x[0], x[1]);
    __m512i t2 = _mm512_unpacklo_epi32(x[2], x[3]), t3 = _mm512_unpackhi_epi32(x[2], x[3]);
    w[0] = _mm512_unpacklo_epi64(t0, t2);
    w[1] = _mm512_unpackhi_epi64(t0, t2);
    w[2] = _mm512_unpacklo_epi64(t1, t3);
    w[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Nibble codes of 16 bytes per row at off: low nibbles are chunks 0..3 (lo), high nibbles 4..7 (hi) of
 * the same elements + 16 for Q4_0/Q4_1/Q5_*; for the K-quants the caller picks which nibble is which. */
AI void nibbles(const uint8_t *const *rp, size_t off, __m512i *lo, __m512i *hi) {
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int i = 0; i < 4; i++) {
        __m512i v = load4rows(rp, i, off);
        lo[i] = _mm512_and_si512(v, m4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
}

/* Adds 16 to every code byte whose bit `bit` is set in the same byte of qh (same lane layout). */
AI void add_fifth_bit(__m512i *codes, const __m512i *qh, int bit) {
    const __m512i sel = _mm512_set1_epi8((char)(1 << bit)), sixteen = _mm512_set1_epi8(16);
    for (int i = 0; i < 4; i++) {
        __mmask64 m = _mm512_test_epi8_mask(qh[i], sel);
        codes[i] = _mm512_mask_add_epi8(codes[i], m, codes[i], sixteen);
    }
}

/* Q5_0/Q5_1: after the transpose, chunk j of row r (elements 4j..4j+3) takes bits 4j..4j+3 of the row's
 * 32-bit qh (dword r of qhv): spread byte j/2 of the dword over its 4 bytes, test one bit per byte. */
AI __m512i with_qh32(__m512i w, __m512i qhv, int j) {
    const int byte = j >> 1;
    const __m512i spread =
        _mm512_set_epi32((12 + byte) * 0x01010101, (8 + byte) * 0x01010101, (4 + byte) * 0x01010101, byte * 0x01010101,
                         (12 + byte) * 0x01010101, (8 + byte) * 0x01010101, (4 + byte) * 0x01010101, byte * 0x01010101,
                         (12 + byte) * 0x01010101, (8 + byte) * 0x01010101, (4 + byte) * 0x01010101, byte * 0x01010101,
                         (12 + byte) * 0x01010101, (8 + byte) * 0x01010101, (4 + byte) * 0x01010101, byte * 0x01010101);
    __mmask64 m =
        _mm512_test_epi8_mask(_mm512_shuffle_epi8(qhv, spread), _mm512_set1_epi32((int)(0x08040201u << (4 * (j & 1)))));
    return _mm512_mask_add_epi8(w, m, w, _mm512_set1_epi8(16));
}

AI void store_codes(uint8_t *rec, const __m512i *lo, const __m512i *hi) {
    __m512i w[8];
    transpose4(lo, w);
    transpose4(hi, w + 4);
    for (int j = 0; j < 8; j++) _mm512_store_si512((void *)(rec + 64 * j), w[j]);
}

/* The 4 bytes at offset off of each of the group's 16 rows as one vector (dword r = row r). A gather:
 * 16 narrow stores read back by one vector load stall on store forwarding, which made the block
 * headers cost more than the codes. Offsets are 64-bit (rows of any length). */
typedef struct row_idx {
    __m512i lo, hi; /* byte offsets of rows 0..7 and 8..15 from row 0 */
} row_idx;

AI row_idx row_offsets(const uint8_t *const *rp) {
    int64_t o[GROUP_ROWS];
    for (int r = 0; r < GROUP_ROWS; r++) o[r] = rp[r] - rp[0];
    return (row_idx){_mm512_loadu_si512(o), _mm512_loadu_si512(o + 8)};
}

AI __m512i gather_rows(const uint8_t *const *rp, const row_idx *ix, size_t off) {
    __m256i a = _mm512_i64gather_epi32(ix->lo, (const void *)(rp[0] + off), 1);
    __m256i b = _mm512_i64gather_epi32(ix->hi, (const void *)(rp[0] + off), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* The low (hi = 0) or high half of every dword of v as 16 floats, zero in the lanes outside valid. */
AI __m512 halves_to_f32(__m512i v, int hi, __mmask16 valid) {
    if (hi) v = _mm512_srli_epi32(v, 16);
    return _mm512_maskz_mov_ps(valid, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)));
}

/* One 16-row group of a 32-element-block type: rp[16] are the rows (tail rows repeat a valid one and get
 * zero scales, so they add nothing and are never stored). */
static void pack_blk32(slm_dtype t, const uint8_t *const *rp, int n_valid, int64_t nb, uint8_t *dst) {
    const int bb = t == SLM_Q4_0 ? SLM_Q4_0_BYTES
        : t == SLM_Q4_1          ? SLM_Q4_1_BYTES
        : t == SLM_Q5_0          ? SLM_Q5_0_BYTES
        : t == SLM_Q5_1          ? SLM_Q5_1_BYTES
                                 : SLM_Q8_0_BYTES;
    const int qoff = t == SLM_Q4_0 ? SLM_Q4_0_QS
        : t == SLM_Q4_1            ? SLM_Q4_1_QS
        : t == SLM_Q5_0            ? SLM_Q5_0_QS
        : t == SLM_Q5_1            ? SLM_Q5_1_QS
                                   : SLM_Q8_0_QS;
    const __mmask16 valid = (__mmask16)(n_valid >= GROUP_ROWS ? 0xffff : (1u << n_valid) - 1);
    const row_idx ix = row_offsets(rp);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *rec = dst + (size_t)b * REC_BYTES;
        size_t off = (size_t)b * bb;
        __m512i lo[4], hi[4];
        if (t == SLM_Q8_0) {
            /* signed weights as unsigned codes: w + 128 (the coefficient below takes the 128 back) */
            const __m512i flip = _mm512_set1_epi8((char)0x80);
            for (int i = 0; i < 4; i++) {
                lo[i] = _mm512_xor_si512(load4rows(rp, i, off + SLM_Q8_0_QS), flip);
                hi[i] = _mm512_xor_si512(load4rows(rp, i, off + SLM_Q8_0_QS + 16), flip);
            }
        } else {
            nibbles(rp, off + qoff, lo, hi);
        }
        if (t == SLM_Q5_0 || t == SLM_Q5_1) {
            __m512i qhv = gather_rows(rp, &ix, off + (t == SLM_Q5_0 ? SLM_Q5_0_QH : SLM_Q5_1_QH)), w[8];
            transpose4(lo, w);
            transpose4(hi, w + 4);
            for (int j = 0; j < 8; j++) _mm512_store_si512((void *)(rec + 64 * j), with_qh32(w[j], qhv, j));
        } else {
            store_codes(rec, lo, hi);
        }
        /* scales; the min of Q4_1/Q5_1 as coef (the offset types carry theirs in the activations) */
        /* d (and m) of the 16 rows: the first 4 bytes of each block; tail rows get 0 */
        __m512i hdr = gather_rows(rp, &ix, off);
        _mm512_store_ps((float *)(rec + 512), halves_to_f32(hdr, 0, valid));
        if (t == SLM_Q4_1 || t == SLM_Q5_1) _mm512_store_ps((float *)(rec + 576), halves_to_f32(hdr, 1, valid));
    }
}

/* The 8 sub-block records' d * sc and -(dmin * mn) of a Q4_K/Q5_K super-block, from d and dmin as floats
 * and the 3 scale words (dword r = row r; bit layout in quant_ref.c), into recs (8 records). */
static void q45k_scales(__m512 d, __m512 dmin, __m512i v0, __m512i v1, __m512i v2, uint8_t *recs) {
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        __m512i sc, mn;
        if (j < 4) { /* bits 0..5 of byte j of words 0 (scales) and 1 (mins) */
            sc = _mm512_and_si512(_mm512_srli_epi32(v0, 8 * j), m6);
            mn = _mm512_and_si512(_mm512_srli_epi32(v1, 8 * j), m6);
        } else { /* low 4 bits from byte j-4 of word 2, high 2 bits from bits 6..7 of words 0 / 1 */
            const int sh = 8 * (j - 4);
            sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v2, sh), m4),
                                 _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v0, sh + 6), m2), 4));
            mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v2, sh + 4), m4),
                                 _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v1, sh + 6), m2), 4));
        }
        uint8_t *rec = recs + (size_t)j * REC_BYTES;
        /* d * sc and -(dmin * mn): the products the reference dequantizer rounds */
        _mm512_store_ps((float *)(rec + 512), _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
        _mm512_store_ps((float *)(rec + 576),
                        _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn))));
    }
}

/* One 16-row group of Q4_K / Q5_K: each super-block becomes 8 blocks of 32 with scale d * sc[j] and
 * coefficient -dmin * mn[j]. Sub-blocks 2p and 2p + 1 share qs[32p .. 32p + 31] (low / high nibble);
 * elements 0..15 of a sub-block are the first 16 of those bytes, 16..31 the next 16. */
static void pack_q45k(int is_q5, const uint8_t *const *rp, int n_valid, int64_t ns, uint8_t *dst) {
    const int bb = is_q5 ? SLM_Q5_K_BYTES : SLM_Q4_K_BYTES, qs = is_q5 ? SLM_Q5_K_QS : SLM_Q4_K_QS;
    const __mmask16 valid = (__mmask16)(n_valid >= GROUP_ROWS ? 0xffff : (1u << n_valid) - 1);
    const row_idx ix = row_offsets(rp);
    for (int64_t sb = 0; sb < ns; sb++) {
        size_t off = (size_t)sb * bb;
        __m512i qh0[4], qh1[4];
        if (is_q5)
            for (int i = 0; i < 4; i++) {
                /* bit j: fifth bit of element l < 16 of sub-block j, then the same for elements 16..31 */
                qh0[i] = load4rows(rp, i, off + SLM_Q5_K_QH);
                qh1[i] = load4rows(rp, i, off + SLM_Q5_K_QH + 16);
            }
        for (int p = 0; p < 4; p++) {
            __m512i a_lo[4], a_hi[4], b_lo[4], b_hi[4];
            nibbles(rp, off + qs + 32 * p, a_lo, b_lo);      /* elements 0..15 of sub-blocks 2p, 2p+1 */
            nibbles(rp, off + qs + 32 * p + 16, a_hi, b_hi); /* elements 16..31 */
            if (is_q5) {
                add_fifth_bit(a_lo, qh0, 2 * p);
                add_fifth_bit(a_hi, qh1, 2 * p);
                add_fifth_bit(b_lo, qh0, 2 * p + 1);
                add_fifth_bit(b_hi, qh1, 2 * p + 1);
            }
            store_codes(dst + (size_t)(8 * sb + 2 * p) * REC_BYTES, a_lo, a_hi);
            store_codes(dst + (size_t)(8 * sb + 2 * p + 1) * REC_BYTES, b_lo, b_hi);
        }
        /* Scales and mins across the 16 rows at once (dword r = row r), from the 32-bit words of the
         * scale bytes: row by row this decode cost more than packing the codes. Tail rows get d = dmin = 0. */
        const __m512i dm = gather_rows(rp, &ix, off);
        const size_t sc_at = off + SLM_Q4_K_SCALES;
        q45k_scales(halves_to_f32(dm, 0, valid), halves_to_f32(dm, 1, valid), gather_rows(rp, &ix, sc_at),
                    gather_rows(rp, &ix, sc_at + 4), gather_rows(rp, &ix, sc_at + 8), dst + (size_t)8 * sb * REC_BYTES);
    }
}

/* One 16-row group of Q6_K: sub-block (h, s) of a super-block (elements 128h + 32s + l) takes its low
 * 4 bits from ql[64h + 32(s & 1) + l] (low nibble for s < 2, high for s >= 2) and bits 4..5 from bits
 * 2s, 2s + 1 of qh[32h + l]; codes 0..63 carry the offset 32. Its two 16-element halves have their own
 * scale: d * sc[8h + 2s] into d, d * sc[8h + 2s + 1] into the coef slot. */
AI void add_high2(__m512i *codes, const __m512i *qh, int s) {
    const __m512i m2 = _mm512_set1_epi8(3);
    for (int i = 0; i < 4; i++)
        codes[i] =
            _mm512_or_si512(codes[i], _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[i], 2 * s), m2), 4));
}

static void pack_q6k(const uint8_t *const *rp, int n_valid, int64_t ns, uint8_t *dst) {
    const __mmask16 valid = (__mmask16)(n_valid >= GROUP_ROWS ? 0xffff : (1u << n_valid) - 1);
    const row_idx ix = row_offsets(rp);
    for (int64_t sb = 0; sb < ns; sb++) {
        size_t off = (size_t)sb * SLM_Q6_K_BYTES;
        for (int h = 0; h < 2; h++) {
            /* x_lo/x_hi: nibbles of ql bytes 64h + 16x.. (x = a, b, c, d); q0/q1: qh bytes 32h + 0 / 16.. */
            __m512i a_lo[4], a_hi[4], b_lo[4], b_hi[4], c_lo[4], c_hi[4], d_lo[4], d_hi[4], q0[4], q1[4];
            const size_t ql = off + SLM_Q6_K_QL + 64 * h, qh = off + SLM_Q6_K_QH + 32 * h;
            nibbles(rp, ql, a_lo, a_hi);
            nibbles(rp, ql + 16, b_lo, b_hi);
            nibbles(rp, ql + 32, c_lo, c_hi);
            nibbles(rp, ql + 48, d_lo, d_hi);
            for (int i = 0; i < 4; i++) {
                q0[i] = load4rows(rp, i, qh);
                q1[i] = load4rows(rp, i, qh + 16);
            }
            /* s = 0: a_lo | b_lo, s = 1: c_lo | d_lo, s = 2: a_hi | b_hi, s = 3: c_hi | d_hi (first | second
             * 16 elements) */
            __m512i *first[4] = {a_lo, c_lo, a_hi, c_hi}, *second[4] = {b_lo, d_lo, b_hi, d_hi};
            for (int s = 0; s < 4; s++) {
                add_high2(first[s], q0, s);
                add_high2(second[s], q1, s);
                store_codes(dst + (size_t)(8 * sb + 4 * h + s) * REC_BYTES, first[s], second[s]);
            }
        }
        /* d * sc[g] for the 16 rows; sc[g] is byte g % 4 of dword g / 4 of the int8 scales */
        /* d is the last 2 bytes of the block: read the dword that ends there (never past the row's end) */
        const __m512 d = halves_to_f32(gather_rows(rp, &ix, off + SLM_Q6_K_D - 2), 1, valid);
        for (int w4 = 0; w4 < 4; w4++) {
            __m512i scw = gather_rows(rp, &ix, off + SLM_Q6_K_SCALES + 4 * w4);
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++) {
                int g = 4 * w4 + e;
                __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(scw, 24 - 8 * e), 24); /* sign-extended */
                _mm512_store_ps((float *)(dst + (size_t)(8 * sb + g / 2) * REC_BYTES + 512 + 64 * (g & 1)),
                                _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
            }
        }
    }
}

/* ---- packing straight from the repacked decode layout (matvec_x16.h) ----
 * Its code dwords already hold 4 consecutive codes of the 16 rows in the lanes, the order of the packed
 * record, and its scales one row per lane: the nibbles split and the scales converted, with none of the
 * gathers and transposes that GGUF rows need. */
AI __m512i ld(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }

static void pack_x16_blk32(bool q8, const uint8_t *grp, int64_t nb, uint8_t *dst) {
    const size_t cb = q8 ? 512 : 256;
    const uint8_t *scales = grp + (size_t)nb * cb;
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *rec = dst + (size_t)b * REC_BYTES;
        const uint8_t *c = grp + (size_t)b * cb;
        if (q8) { /* the layout's codes are w + 128, as the record's */
            for (int j = 0; j < 8; j++) _mm512_store_si512((void *)(rec + 64 * j), ld(c + 64 * j));
        } else {
            for (int j = 0; j < 4; j++) {
                __m512i v = ld(c + 64 * j);
                _mm512_store_si512((void *)(rec + 64 * j), _mm512_and_si512(v, m4));
                _mm512_store_si512((void *)(rec + 64 * (4 + j)), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
        }
        _mm512_store_ps((float *)(rec + 512),
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + (size_t)b * 32))));
    }
}

static void pack_x16_q45k(bool q5, const uint8_t *grp, int64_t ns, uint8_t *dst) {
    const size_t cb = q5 ? 2560 : 2048;
    const uint8_t *meta = grp + (size_t)ns * cb;
    const __m512i m4 = _mm512_set1_epi8(15), sixteen = _mm512_set1_epi8(16);
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *c = grp + (size_t)sb * cb, *mb = meta + (size_t)sb * 256;
        for (int p = 0; p < 4; p++) {
            uint8_t *lo = dst + (size_t)(8 * sb + 2 * p) * REC_BYTES, *hi = lo + REC_BYTES;
            for (int j = 0; j < 8; j++) {
                __m512i v = ld(c + 64 * (8 * p + j));
                __m512i a = _mm512_and_si512(v, m4), b = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (q5) { /* bit s of each qh byte: the fifth bit of sub-block s's element */
                    __m512i qh = ld(c + 2048 + 64 * j);
                    a = _mm512_mask_add_epi8(a, _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << (2 * p)))), a,
                                             sixteen);
                    b = _mm512_mask_add_epi8(b, _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << (2 * p + 1)))),
                                             b, sixteen);
                }
                _mm512_store_si512((void *)(lo + 64 * j), a);
                _mm512_store_si512((void *)(hi + 64 * j), b);
            }
        }
        const __m512i dm = ld(mb);
        q45k_scales(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)),
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))), ld(mb + 64), ld(mb + 128),
                    ld(mb + 192), dst + (size_t)8 * sb * REC_BYTES);
    }
}

/* Q6_K: the record of sub-block (h, s) takes chunk i from ql dword 16h + 8(s & 1) + i (nibble s / 2) and
 * qh dword 8h + i (bits 2s, 2s + 1); its two scales are the int8 scales 8h + 2s and 8h + 2s + 1 times d. */
static void pack_x16_q6k(const uint8_t *grp, int64_t ns, uint8_t *dst) {
    const uint8_t *meta = grp + (size_t)ns * 3072;
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *c = grp + (size_t)sb * 3072, *mb = meta + (size_t)sb * 288;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(mb + 256)));
        for (int h = 0; h < 2; h++)
            for (int s4 = 0; s4 < 4; s4++) {
                uint8_t *rec = dst + (size_t)(8 * sb + 4 * h + s4) * REC_BYTES;
                for (int i = 0; i < 8; i++) {
                    __m512i l = ld(c + 64 * (16 * h + 8 * (s4 & 1) + i)), hb = ld(c + 2048 + 64 * (8 * h + i));
                    l = s4 < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
                    hb = s4 < 2 ? _mm512_slli_epi16(hb, 4 - 2 * s4) : _mm512_srli_epi16(hb, 2 * s4 - 4);
                    _mm512_store_si512((void *)(rec + 64 * i), _mm512_or_si512(l, _mm512_and_si512(hb, m2)));
                }
                for (int half = 0; half < 2; half++) {
                    const int g = 8 * h + 2 * s4 + half;
                    __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(ld(mb + 64 * (g / 4)), 24 - 8 * (g % 4)), 24);
                    _mm512_store_ps((float *)(rec + 512 + 64 * half), _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
                }
            }
    }
}

/* x16: w is a group of the repacked decode layout (matvec_x16.h; every type it has gets a packer here). */
static void pack_group(slm_dtype t, const uint8_t *w, size_t wrb, bool x16, int n_valid, int64_t k, uint8_t *dst) {
    if (x16) {
        if (t == SLM_Q4_0 || t == SLM_Q8_0) pack_x16_blk32(t == SLM_Q8_0, w, k / 32, dst);
        else if (t == SLM_Q4_K || t == SLM_Q5_K) pack_x16_q45k(t == SLM_Q5_K, w, k / 256, dst);
        else pack_x16_q6k(w, k / 256, dst);
        return;
    }
    const uint8_t *rp[GROUP_ROWS];
    for (int r = 0; r < GROUP_ROWS; r++) rp[r] = w + (size_t)(r < n_valid ? r : n_valid - 1) * wrb;
    if (t == SLM_Q4_K || t == SLM_Q5_K) pack_q45k(t == SLM_Q5_K, rp, n_valid, k / 256, dst);
    else if (t == SLM_Q6_K) pack_q6k(rp, n_valid, k / 256, dst);
    else pack_blk32(t, rp, n_valid, k / 32, dst);
}

/* ---- activations: columns interleaved in groups of COLS (slm_cpu_gemm_interleave_cols, two copies of
 * the offsets) ----
 * The kernel then walks one pointer for its columns instead of three per column (the general registers
 * would spill); the copy is T * k * 1.4 bytes against 16 * T * k multiply-adds per row group. The types
 * with a min (Q4_1, Q5_1, Q4_K, Q5_K) get ioff = 0 and one multiply-add of coef * s. */
#define ACT_REC SLM_GEMM_ACT_REC(COLS, 2)
#define ACT_D SLM_GEMM_ACT_D(COLS)
#define ACT_IOFF SLM_GEMM_ACT_IOFF(COLS) /* twice: one copy per row group of the kernel */
#define ACT_S SLM_GEMM_ACT_S(COLS, 2)
#define ACT_IOFFH SLM_GEMM_ACT_IOFFH(COLS, 2) /* Q6_K: ioff of elements 16..31, twice */

static int code_offset(slm_dtype t) {
    return t == SLM_Q4_0 ? 8 : t == SLM_Q5_0 ? 16 : t == SLM_Q6_K ? 32 : t == SLM_Q8_0 ? 128 : 0;
}

static int64_t chunk_cols(int64_t k) { return slm_cpu_gemm_chunk_cols(k, COLS, ACT_REC, ACT_BUDGET); }

size_t slm_cpu_gemm_scratch_bytes_avx512(int64_t k) {
    if (k < 32) return REC_BYTES;
    size_t act = (size_t)(chunk_cols(k) / COLS) * (size_t)(k / 32) * ACT_REC;
    return (size_t)tile_groups(k) * group_bytes(k) + slm_act_round64(act);
}

/* ---- the kernel: ng (1 or 2) packed groups, gb bytes apart, against nc <= COLS interleaved columns ----
 * Two groups share each activation broadcast and each group's code vector feeds COLS dot products: a
 * block costs 96 dot products for 16 code loads and 48 broadcasts. The two 512-bit ALU ports run the dot
 * products and the float steps alike (3 to 6 per 8 dot products), so the kernel runs well below the
 * dot-product peak; 6 columns beat 4 (fewer loads per dot product), and 2 x 6 x 2 accumulators are what
 * fits in the 32 vector registers. */
/* The kernel's three block shapes: the offset in the integer accumulator (Q4_0, Q5_0, Q8_0), plus a
 * min (Q4_1, Q5_1, Q4_K, Q5_K), or two scales per block, one per 16 elements (Q6_K: the packed d is
 * d * sc of elements 0..15, the coef slot d * sc of 16..31, each half with its own offset sum). */
enum { MODE_OFFSET = 0, MODE_MIN = 1, MODE_HALVES = 2 };

/* Chunks j0..j0+3 of block b into accumulators started at the offsets ioff (two copies, one per group),
 * then f += (d_w * d_a) * acc with d_w from dwoff of the group's record. */
AI void half_step(const uint8_t *rec, size_t gb, int ng, const uint8_t *a, int nc, int j0, int nj, const int32_t *ioff,
                  int dwoff, __m512 *f0, __m512 *f1) {
    __m512i i0[COLS], i1[COLS];
    _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) {
        i0[c] = _mm512_set1_epi32(ioff[c]); /* a load, no ALU work */
        if (ng > 1) i1[c] = _mm512_set1_epi32(ioff[COLS + c]);
    }
#pragma GCC unroll 8
    for (int j = j0; j < j0 + nj; j++) {
        __m512i w0 = _mm512_load_si512((const void *)(rec + 64 * j)), w1 = w0;
        if (ng > 1) w1 = _mm512_load_si512((const void *)(rec + gb + 64 * j));
        _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) {
            /* the 4 activation bytes of chunk j of column c, broadcast */
            __m512i x = _mm512_set1_epi32((int)rd32(a + 32 * c + 4 * j));
            i0[c] = _mm512_dpbusd_epi32(i0[c], w0, x);
            if (ng > 1) i1[c] = _mm512_dpbusd_epi32(i1[c], w1, x);
        }
    }
    const float *da = (const float *)(a + ACT_D);
    __m512 dw0 = _mm512_load_ps((const float *)(rec + dwoff)), dw1 = dw0;
    if (ng > 1) dw1 = _mm512_load_ps((const float *)(rec + gb + dwoff));
    _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) {
        __m512 dc = _mm512_set1_ps(da[c]);
        f0[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[c]), _mm512_mul_ps(dw0, dc), f0[c]);
        if (ng > 1) f1[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[c]), _mm512_mul_ps(dw1, dc), f1[c]);
    }
}

AI void tile_cols(const uint8_t *grp, size_t gb, int ng, const uint8_t *act, int64_t nb, int nc, int mode, float *out,
                  int64_t os, __mmask16 rows0, __mmask16 rows1) {
    /* separate arrays per group (not [2][COLS]) and unrolled column loops: GCC keeps them in registers */
    __m512 f0[COLS], f1[COLS];
    _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) f0[c] = f1[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *rec = grp + (size_t)b * REC_BYTES, *a = act + (size_t)b * ACT_REC;
        /* ioff is stored once per group so that each accumulator starts from its own broadcast load
         * (one shared load would be copied by register moves, which take the ALU ports) */
        if (mode == MODE_HALVES) {
            half_step(rec, gb, ng, a, nc, 0, 4, (const int32_t *)(a + ACT_IOFF), 512, f0, f1);
            half_step(rec, gb, ng, a, nc, 4, 4, (const int32_t *)(a + ACT_IOFFH), 576, f0, f1);
            continue;
        }
        half_step(rec, gb, ng, a, nc, 0, 8, (const int32_t *)(a + ACT_IOFF), 512, f0, f1);
        if (mode == MODE_MIN) {
            const float *sa = (const float *)(a + ACT_S);
            __m512 cf0 = _mm512_load_ps((const float *)(rec + 576)), cf1 = cf0;
            if (ng > 1) cf1 = _mm512_load_ps((const float *)(rec + gb + 576));
            _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) {
                __m512 sc = _mm512_set1_ps(sa[c]);
                f0[c] = _mm512_fmadd_ps(cf0, sc, f0[c]);
                if (ng > 1) f1[c] = _mm512_fmadd_ps(cf1, sc, f1[c]);
            }
        }
    }
    _Pragma("GCC unroll 6") for (int c = 0; c < nc; c++) {
        _mm512_mask_storeu_ps(out + c * os, rows0, f0[c]);
        if (ng > 1) _mm512_mask_storeu_ps(out + c * os + GROUP_ROWS, rows1, f1[c]);
    }
}

typedef void (*tile_fn)(const uint8_t *, size_t, const uint8_t *, int64_t, float *, int64_t, __mmask16, __mmask16);

/* clang-format off: one function per line, which the formatter would pack into one */
#define SLM_TILE_FN(NG, NC, MODE)                                                                                      \
    static void tile_##NG##_##NC##_##MODE(const uint8_t *grp, size_t gb, const uint8_t *act, int64_t nb, float *out,   \
                                          int64_t os, __mmask16 r0, __mmask16 r1) {                                    \
        tile_cols(grp, gb, NG, act, nb, NC, MODE, out, os, r0, r1);                                                    \
    }
#define SLM_TILE_FNS(NG, MODE)                                                                                         \
    SLM_TILE_FN(NG, 1, MODE)                                                                                           \
    SLM_TILE_FN(NG, 2, MODE)                                                                                           \
    SLM_TILE_FN(NG, 3, MODE)                                                                                           \
    SLM_TILE_FN(NG, 4, MODE)                                                                                           \
    SLM_TILE_FN(NG, 5, MODE)                                                                                           \
    SLM_TILE_FN(NG, 6, MODE)
/* clang-format on */
SLM_TILE_FNS(1, 0)
SLM_TILE_FNS(2, 0)
SLM_TILE_FNS(1, 1)
SLM_TILE_FNS(2, 1)
SLM_TILE_FNS(1, 2)
SLM_TILE_FNS(2, 2)

/* [mode][groups - 1][columns - 1] */
static const tile_fn TILE_FNS[3][2][COLS] = {
    {{tile_1_1_0, tile_1_2_0, tile_1_3_0, tile_1_4_0, tile_1_5_0, tile_1_6_0},
     {tile_2_1_0, tile_2_2_0, tile_2_3_0, tile_2_4_0, tile_2_5_0, tile_2_6_0}},
    {{tile_1_1_1, tile_1_2_1, tile_1_3_1, tile_1_4_1, tile_1_5_1, tile_1_6_1},
     {tile_2_1_1, tile_2_2_1, tile_2_3_1, tile_2_4_1, tile_2_5_1, tile_2_6_1}},
    {{tile_1_1_2, tile_1_2_2, tile_1_3_2, tile_1_4_2, tile_1_5_2, tile_1_6_2},
     {tile_2_1_2, tile_2_2_2, tile_2_3_2, tile_2_4_2, tile_2_5_2, tile_2_6_2}}};

static __mmask16 row_mask(int64_t n_rows, int64_t r) {
    int64_t nv = n_rows - r;
    return nv >= GROUP_ROWS ? (__mmask16)0xffff : nv <= 0 ? 0 : (__mmask16)((1u << nv) - 1);
}

void slm_cpu_gemm_avx512(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                         size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch) {
    const int64_t nb = k / 32, groups = tile_groups(k), chunk = chunk_cols(k);
    const size_t gb = group_bytes(k);
    uint8_t *tile = scratch, *act = tile + (size_t)groups * gb;
    /* Columns in chunks, each interleaved once; the rows are packed once per chunk (one chunk for the
     * usual prompt batch). Packing a tile costs about what 3 to 6 columns of the kernel cost, so with
     * chunks of ~100+ columns repacking is a few per cent, while interleaving per tile instead would
     * cost as much as the kernel at k = 8192 (the tile is then only 2 groups). */
    const int offset = code_offset(wtype), halves = wtype == SLM_Q6_K;
    const tile_fn(*fns)[COLS] = TILE_FNS[halves ? MODE_HALVES : offset == 0 ? MODE_MIN : MODE_OFFSET];
    for (int64_t c0 = 0; c0 < n_cols; c0 += chunk) {
        int64_t c1 = n_cols - c0 < chunk ? n_cols : c0 + chunk;
        slm_cpu_gemm_interleave_cols((const uint8_t *)xq + (size_t)c0 * act_stride, act_stride, c1 - c0, k, offset,
                                     halves, COLS, 2, act);
        for (int64_t r0 = 0; r0 < n_rows; r0 += GROUP_ROWS * groups) {
            int64_t ng = (n_rows - r0 + GROUP_ROWS - 1) / GROUP_ROWS;
            if (ng > groups) ng = groups;
            for (int64_t g = 0; g < ng; g++) {
                int64_t rg = r0 + GROUP_ROWS * g, nv = n_rows - rg < GROUP_ROWS ? n_rows - rg : GROUP_ROWS;
                pack_group(wtype, (const uint8_t *)w + (size_t)rg * w_row_bytes, w_row_bytes, x16, (int)nv, k,
                           tile + (size_t)g * gb);
            }
            for (int64_t g = 0; g < ng; g += 2) {
                int64_t rg = r0 + GROUP_ROWS * g;
                int pair = g + 1 < ng;
                __mmask16 m0 = row_mask(n_rows, rg), m1 = row_mask(n_rows, rg + GROUP_ROWS);
                for (int64_t c = c0; c < c1; c += COLS) {
                    int64_t nc = c1 - c < COLS ? c1 - c : COLS;
                    fns[pair][nc - 1](tile + (size_t)g * gb, gb, act + (size_t)((c - c0) / COLS) * nb * ACT_REC, nb,
                                      out + c * out_stride + rg, out_stride, m0, m1);
                }
            }
        }
    }
}

#else
/* Built for a CPU family without AVX-512: the dispatcher never offers this GEMM. */
void slm_cpu_gemm_quantize_act_avx512(const float *x, void *xq, int64_t k) {}
bool slm_cpu_gemm_has_avx512(slm_dtype wtype) { return false; }
size_t slm_cpu_gemm_scratch_bytes_avx512(int64_t k) { return 0; }
void slm_cpu_gemm_avx512(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                         size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch) {}
#endif
