/* AVX2 packed GEMM for prompt batches on CPUs without AVX-512 (contract in gemm_packed.h; the idea is
 * that of gemm_packed_avx512.c at half the width). This file is compiled with AVX2/FMA/F16C flags: the
 * dispatcher hands it out only after slm_cpu_isa_detect() reported at least AVX2.
 *
 * Packed group of 8 rows, per 32-element block (K-quant sub-blocks count as blocks), REC_BYTES:
 *   uint8 codes[8][8][4]   chunk j (elements 4j..4j+3) of row r at [j][r], unsigned (Q4 0..15, Q5 0..31,
 *                          Q6_K 0..63; Q8_0 the signed weights)
 *   float d[8]             the code scale of row r (Q6_K: of elements 0..15)
 *   float coef[8]          the min of row r (Q4_1, Q5_1, Q4_K, Q5_K), Q6_K: the scale of elements 16..31
 * One 256-bit load then holds a chunk of 8 rows; a u8 x s8 multiply (maddubs) against 4 broadcast
 * activation bytes advances 8 output rows without horizontal sums. AVX2 has no u8 x s8 dot instruction:
 * two chunks' maddubs are added in 16 bits (at most 4 * 63 * 127, no overflow) and widened by one madd.
 * Q8_0 keeps its signed codes: the kernel multiplies |w| by the activation with w's sign (at most
 * 2 * 128 * 127 per pair, so each chunk is widened on its own).
 *
 * Packing works on 32-bit words of 4 codes (no vector shuffles), about 30 operations per row and block. */
#include "gemm_packed.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "act_quant.h"
#include "matvec_x16.h"
#include "quant_blocks.h"
#include "simd_bytes.h"

#define AI static inline __attribute__((always_inline))

#define GROUP_ROWS 8
#define REC_BYTES 320                     /* codes 8 x 32 B, d 32 B, coef 32 B */
#define COLS 4                            /* columns per pass: 4 x (int + float) accumulators + 5 temporaries */
#define ACT_REC SLM_GEMM_ACT_REC(COLS, 1) /* activation record per block (gemm_packed.h) */
#define ACT_D SLM_GEMM_ACT_D(COLS)
#define ACT_IOFF SLM_GEMM_ACT_IOFF(COLS)
#define ACT_S SLM_GEMM_ACT_S(COLS, 1)
#define ACT_IOFFH SLM_GEMM_ACT_IOFFH(COLS, 1)
#define ACT_BUDGET (1024 * 1024) /* activation bytes of one column chunk (L2) */

enum { MODE_OFFSET = 0, MODE_MIN = 1, MODE_HALVES = 2, MODE_SIGNED = 3 };

bool slm_cpu_gemm_has_avx2(slm_dtype wtype) {
    switch (wtype) {
    case SLM_Q4_0:
    case SLM_Q4_1:
    case SLM_Q5_0:
    case SLM_Q5_1:
    case SLM_Q4_K:
    case SLM_Q5_K:
    case SLM_Q6_K:
    case SLM_Q8_0: return true;
    default: return false;
    }
}

/* Bits 0..3 of b to bit 4 of bytes 0..3 (the fifth bit of 4 consecutive Q5_0/Q5_1 codes). */
AI uint32_t fifth_bits(uint32_t b) { return ((b & 1u) | (b & 2u) << 7 | (b & 4u) << 14 | (b & 8u) << 21) << 4; }

/* Six-bit scale and min of sub-block j from the 12 scale bytes of a Q4_K/Q5_K super-block. */
AI void k_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Block b of a row: the 8 code words (chunk j = elements 4j..4j+3), the scale and the coefficient. */
static void block_words(slm_dtype t, const uint8_t *row, int64_t b, uint32_t w[8], float *d, float *coef) {
    const uint32_t m4 = 0x0f0f0f0fu;
    switch (t) {
    case SLM_Q4_0:
    case SLM_Q4_1:
    case SLM_Q5_0:
    case SLM_Q5_1: {
        const int bb = t == SLM_Q4_0 ? SLM_Q4_0_BYTES
            : t == SLM_Q4_1          ? SLM_Q4_1_BYTES
            : t == SLM_Q5_0          ? SLM_Q5_0_BYTES
                                     : SLM_Q5_1_BYTES;
        const int has_min = t == SLM_Q4_1 || t == SLM_Q5_1, is_q5 = t == SLM_Q5_0 || t == SLM_Q5_1;
        const int qs_at = t == SLM_Q4_0 ? SLM_Q4_0_QS
            : t == SLM_Q4_1             ? SLM_Q4_1_QS
            : t == SLM_Q5_0             ? SLM_Q5_0_QS
                                        : SLM_Q5_1_QS;
        const uint8_t *blk = row + b * bb, *qs = blk + qs_at;
        uint32_t qh = is_q5 ? rd32(blk + (t == SLM_Q5_0 ? SLM_Q5_0_QH : SLM_Q5_1_QH)) : 0;
        for (int j = 0; j < 4; j++) {
            uint32_t v = rd32(qs + 4 * j); /* low nibbles: elements 4j.., high: 16 + 4j.. */
            w[j] = (v & m4) | (is_q5 ? fifth_bits(qh >> (4 * j) & 15) : 0);
            w[j + 4] = (v >> 4 & m4) | (is_q5 ? fifth_bits(qh >> (16 + 4 * j) & 15) : 0);
        }
        *d = h2f(blk);
        *coef = has_min ? h2f(blk + SLM_Q4_1_M) : 0.0f;
        return;
    }
    case SLM_Q4_K:
    case SLM_Q5_K: {
        const int is_q5 = t == SLM_Q5_K, sbk = (int)(b & 7);
        const uint8_t *blk = row + (b >> 3) * (is_q5 ? SLM_Q5_K_BYTES : SLM_Q4_K_BYTES);
        /* sub-blocks 2p and 2p + 1 share qs[32p ..] (low / high nibble); Q5_K bit sbk of qh[l] is the
         * fifth bit of element l */
        const uint8_t *qs = blk + (is_q5 ? SLM_Q5_K_QS : SLM_Q4_K_QS) + 32 * (sbk >> 1), *qh = blk + SLM_Q5_K_QH;
        for (int j = 0; j < 8; j++) {
            w[j] = rd32(qs + 4 * j) >> (4 * (sbk & 1)) & m4;
            if (is_q5) w[j] |= (rd32(qh + 4 * j) >> sbk & 0x01010101u) << 4;
        }
        int sc, mn;
        k_scale_min(blk + SLM_Q4_K_SCALES, sbk, &sc, &mn);
        *d = h2f(blk) * (float)sc;
        *coef = -(h2f(blk + SLM_Q4_K_DMIN) * (float)mn);
        return;
    }
    case SLM_Q8_0: {
        const uint8_t *blk = row + b * SLM_Q8_0_BYTES;
        for (int j = 0; j < 8; j++) w[j] = rd32(blk + SLM_Q8_0_QS + 4 * j);
        *d = h2f(blk);
        *coef = 0.0f;
        return;
    }
    default: { /* SLM_Q6_K */
        const uint8_t *blk = row + (b >> 3) * SLM_Q6_K_BYTES;
        const int s = (int)(b & 7), h = s >> 2, s4 = s & 3;
        /* elements 128h + 32 s4 + l: low 4 bits from ql[64h + 32 (s4 & 1) + l] (high nibble for s4 >= 2),
         * bits 4..5 from bits 2 s4 of qh[32h + l] */
        const uint8_t *ql = blk + SLM_Q6_K_QL + 64 * h + 32 * (s4 & 1), *qh = blk + SLM_Q6_K_QH + 32 * h;
        for (int j = 0; j < 8; j++)
            w[j] = (rd32(ql + 4 * j) >> (4 * (s4 >> 1)) & m4) | (rd32(qh + 4 * j) >> (2 * s4) & 0x03030303u) << 4;
        const float dd = h2f(blk + SLM_Q6_K_D);
        const int8_t *sc = (const int8_t *)(blk + SLM_Q6_K_SCALES);
        *d = dd * (float)sc[2 * s];
        *coef = dd * (float)sc[2 * s + 1];
        return;
    }
    }
}

/* Rows 0..n_valid-1 of a group (rows wrb bytes apart) into dst; missing rows get zero codes and scales. */
static void pack_group(slm_dtype t, const uint8_t *w, size_t wrb, int n_valid, int64_t nb, uint8_t *dst) {
    if (n_valid < GROUP_ROWS) memset(dst, 0, (size_t)nb * REC_BYTES);
    for (int r = 0; r < n_valid; r++) {
        const uint8_t *row = w + (size_t)r * wrb;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *rec = dst + (size_t)b * REC_BYTES;
            uint32_t words[8];
            float d, coef;
            block_words(t, row, b, words, &d, &coef);
            for (int j = 0; j < 8; j++) memcpy(rec + 32 * j + 4 * r, &words[j], 4);
            memcpy(rec + 256 + 4 * r, &d, 4);
            memcpy(rec + 288 + 4 * r, &coef, 4);
        }
    }
}

/* Rows 8h..8h+7 of a 16-row Q4_0 group of the repacked decode layout (matvec_x16.h) into dst: its code
 * dwords hold 4 consecutive codes of each row already, so the nibbles split and d converted are the record. */
static void pack_x16_q4_0(const uint8_t *grp, int h, int64_t nb, uint8_t *dst) {
    const uint8_t *scales = grp + (size_t)nb * 256;
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *rec = dst + (size_t)b * REC_BYTES;
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(grp + (size_t)b * 256 + 64 * j + 32 * h));
            _mm256_storeu_si256((__m256i *)(rec + 32 * j), _mm256_and_si256(v, m4));
            _mm256_storeu_si256((__m256i *)(rec + 32 * (4 + j)), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        }
        _mm256_storeu_ps((float *)(rec + 256),
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + (size_t)b * 32 + 16 * h))));
    }
}

static int code_offset(slm_dtype t) { return t == SLM_Q4_0 ? 8 : t == SLM_Q5_0 ? 16 : t == SLM_Q6_K ? 32 : 0; }

static int64_t chunk_cols(int64_t k) { return slm_cpu_gemm_chunk_cols(k, COLS, ACT_REC, ACT_BUDGET); }

/* 16 rows of a repacked group (matvec_x16.h) unpacked for packing: the widest repacked type (Q8_0) sets
 * the size. */
static size_t x16_rows_bytes(int64_t k) { return slm_act_round64((size_t)16 * (size_t)(k / 32) * SLM_Q8_0_BYTES); }

size_t slm_cpu_gemm_scratch_bytes_avx2(int64_t k) {
    if (k < 32) return REC_BYTES;
    size_t act = (size_t)(chunk_cols(k) / COLS) * (size_t)(k / 32) * ACT_REC;
    return slm_act_round64((size_t)(k / 32) * REC_BYTES) + slm_act_round64(act) + x16_rows_bytes(k);
}

/* Chunks j0..j0+nj-1 of one block into integer accumulators started at ioff, then f += (d_w d_a) acc. */
AI void half_step(const uint8_t *rec, const uint8_t *a, int nc, int j0, int nj, const int32_t *ioff, int dwoff,
                  int is_signed, __m256 *f) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[COLS];
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) acc[c] = _mm256_set1_epi32(ioff[c]);
    if (is_signed) {
#pragma GCC unroll 8
        for (int j = j0; j < j0 + nj; j++) {
            __m256i w = _mm256_load_si256((const __m256i *)(rec + 32 * j)), u = _mm256_abs_epi8(w);
            _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) {
                __m256i x = _mm256_sign_epi8(_mm256_set1_epi32((int)rd32(a + 32 * c + 4 * j)), w);
                acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones));
            }
        }
        nj = 0; /* skips the unsigned loop below */
    }
#pragma GCC unroll 4
    for (int j = j0; j < j0 + nj; j += 2) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(rec + 32 * j)),
                w1 = _mm256_load_si256((const __m256i *)(rec + 32 * (j + 1)));
        _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) {
            __m256i p =
                _mm256_add_epi16(_mm256_maddubs_epi16(w0, _mm256_set1_epi32((int)rd32(a + 32 * c + 4 * j))),
                                 _mm256_maddubs_epi16(w1, _mm256_set1_epi32((int)rd32(a + 32 * c + 4 * j + 4))));
            acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(p, ones));
        }
    }
    const float *da = (const float *)(a + ACT_D);
    const __m256 dw = _mm256_load_ps((const float *)(rec + dwoff));
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) f[c] =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[c]), _mm256_mul_ps(dw, _mm256_set1_ps(da[c])), f[c]);
}

AI void group_cols(const uint8_t *grp, const uint8_t *act, int64_t nb, int nc, int mode, float *out, int64_t os,
                   int n_valid) {
    __m256 f[COLS];
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) f[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *rec = grp + (size_t)b * REC_BYTES, *a = act + (size_t)b * ACT_REC;
        if (mode == MODE_HALVES) {
            half_step(rec, a, nc, 0, 4, (const int32_t *)(a + ACT_IOFF), 256, 0, f);
            half_step(rec, a, nc, 4, 4, (const int32_t *)(a + ACT_IOFFH), 288, 0, f);
            continue;
        }
        half_step(rec, a, nc, 0, 8, (const int32_t *)(a + ACT_IOFF), 256, mode == MODE_SIGNED, f);
        if (mode == MODE_MIN) {
            const float *sa = (const float *)(a + ACT_S);
            const __m256 cf = _mm256_load_ps((const float *)(rec + 288));
            _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) f[c] =
                _mm256_fmadd_ps(cf, _mm256_set1_ps(sa[c]), f[c]);
        }
    }
    for (int c = 0; c < nc; c++) {
        if (n_valid == GROUP_ROWS) {
            _mm256_storeu_ps(out + c * os, f[c]);
        } else {
            float tmp[GROUP_ROWS];
            _mm256_storeu_ps(tmp, f[c]);
            memcpy(out + c * os, tmp, (size_t)n_valid * 4);
        }
    }
}

typedef void (*group_fn)(const uint8_t *, const uint8_t *, int64_t, float *, int64_t, int);

#define SLM_GROUP_FN(NC, MODE)                                                                                         \
    static void group_##NC##_##MODE(const uint8_t *grp, const uint8_t *act, int64_t nb, float *out, int64_t os,        \
                                    int n_valid) {                                                                     \
        group_cols(grp, act, nb, NC, MODE, out, os, n_valid);                                                          \
    }
#define SLM_GROUP_FNS(MODE) SLM_GROUP_FN(1, MODE) SLM_GROUP_FN(2, MODE) SLM_GROUP_FN(3, MODE) SLM_GROUP_FN(4, MODE)
SLM_GROUP_FNS(0)
SLM_GROUP_FNS(1)
SLM_GROUP_FNS(2)
SLM_GROUP_FNS(3)

/* [mode][columns - 1] */
static const group_fn GROUP_FNS[4][COLS] = {{group_1_0, group_2_0, group_3_0, group_4_0},
                                            {group_1_1, group_2_1, group_3_1, group_4_1},
                                            {group_1_2, group_2_2, group_3_2, group_4_2},
                                            {group_1_3, group_2_3, group_3_3, group_4_3}};

void slm_cpu_gemm_avx2(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                       size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch) {
    const int64_t nb = k / 32, chunk = chunk_cols(k);
    uint8_t *grp = scratch, *act = grp + slm_act_round64((size_t)nb * REC_BYTES);
    uint8_t *rows = act + slm_act_round64((size_t)(chunk / COLS) * (size_t)nb * ACT_REC);
    const int offset = code_offset(wtype), halves = wtype == SLM_Q6_K;
    const group_fn *fns = GROUP_FNS[wtype == SLM_Q8_0 ? MODE_SIGNED
                                        : halves      ? MODE_HALVES
                                        : offset == 0 ? MODE_MIN
                                                      : MODE_OFFSET];
    for (int64_t c0 = 0; c0 < n_cols; c0 += chunk) {
        int64_t c1 = n_cols - c0 < chunk ? n_cols : c0 + chunk;
        slm_cpu_gemm_interleave_cols((const uint8_t *)xq + (size_t)c0 * act_stride, act_stride, c1 - c0, k, offset,
                                     halves, COLS, 1, act);
        for (int64_t r = 0; r < n_rows; r += GROUP_ROWS) {
            int nv = n_rows - r < GROUP_ROWS ? (int)(n_rows - r) : GROUP_ROWS;
            const uint8_t *wr = (const uint8_t *)w + (size_t)r * w_row_bytes;
            if (x16 && wtype == SLM_Q4_0) {
                pack_x16_q4_0(wr - (size_t)(r % 16) * w_row_bytes, (int)(r % 16) / 8, nb, grp);
            } else {
                if (x16) {
                    /* a repacked group of 16 rows back to GGUF rows, then its two halves packed from there */
                    if (r % 16 == 0) slm_x16_unpack(wtype, wr, 16, k, rows, w_row_bytes);
                    wr = rows + (size_t)(r % 16) * w_row_bytes;
                }
                pack_group(wtype, wr, w_row_bytes, nv, nb, grp);
            }
            for (int64_t c = c0; c < c1; c += COLS) {
                int64_t nc = c1 - c < COLS ? c1 - c : COLS;
                fns[nc - 1](grp, act + (size_t)((c - c0) / COLS) * (size_t)nb * ACT_REC, nb, out + c * out_stride + r,
                            out_stride, nv);
            }
        }
    }
}

#else
/* Built for a CPU family without AVX2: the dispatcher never offers this GEMM. */
bool slm_cpu_gemm_has_avx2(slm_dtype wtype) { return false; }
size_t slm_cpu_gemm_scratch_bytes_avx2(int64_t k) { return 0; }
void slm_cpu_gemm_avx2(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                       size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch) {}
#endif
