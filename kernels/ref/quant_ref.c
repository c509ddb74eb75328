/* Scalar reference of every tensor type: dequantize, quantize and dot for one row.
 *
 * Block layouts (GGUF/ggml, little-endian, every scale an IEEE half unless noted):
 *   Q4_0  32 elems, 18 B: d, qs[16]           x[i] = (q[i] - 8) * d
 *   Q4_1  32 elems, 20 B: d, m, qs[16]        x[i] = q[i] * d + m
 *         (qs[j] low nibble = element j, high nibble = element j + 16)
 *   Q5_0  32 elems, 22 B: d, qh[4], qs[16]    x[i] = (q[i] - 16) * d
 *   Q5_1  32 elems, 24 B: d, m, qh[4], qs[16] x[i] = q[i] * d + m
 *         (low 4 bits as Q4_0; bit i of the little-endian u32 qh is bit 4 of element i)
 *   Q8_0  32 elems, 34 B: d, int8 qs[32]      x[i] = qs[i] * d
 *   Q4_K  256 elems, 144 B: d, dmin, scales[12], qs[128]
 *         8 sub-blocks of 32 with 6-bit scale sc[j] and min mn[j] packed in scales[12];
 *         sub-block j reads qs[32*(j/2) + l], low nibble for even j, high for odd j;
 *         x = d*sc[j]*q - dmin*mn[j]
 *   Q5_K  256 elems, 176 B: d, dmin, scales[12], qh[32], qs[128]
 *         as Q4_K plus bit j of qh[l] as bit 4 of element 32*j + l
 *   Q6_K  256 elems, 210 B: ql[128], qh[64], int8 scales[16], d
 *         element 128*h + 32*s + l (h < 2, s < 4, l < 32): low 4 bits from ql[64*h + l + 32*(s&1)]
 *         (low nibble for s < 2, high for s >= 2), high 2 bits from (qh[32*h + l] >> 2*s) & 3;
 *         x = d * scales[e/16] * (q - 32)
 *
 * The dequantizers compute in float in the same order as the numpy reference of the `gguf` package
 * (products of the block scales first), so results agree bit for bit on targets without fused
 * multiply-add contraction. */
#include "quant_ref.h"
#include "quant_blocks.h"

/* Bit-exactness with the reference needs every product rounded before the subtraction: forbid the
 * compiler from fusing d*q - m into one multiply-add when it targets FMA hardware. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <string.h>

#define QK SLM_QK     /* elements per block of the legacy formats */
#define QK_K SLM_QK_K /* elements per super-block of the k-quants */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}
static float rdh(const uint8_t *p) { return slm_f16_to_f32(rd16(p)); }
/* Stores f as a half and returns the value the decoder will see, so quantizers divide by the scale
 * actually stored rather than the unrounded one. */
static float wrh(uint8_t *p, float f) {
    uint16_t h = slm_f32_to_f16(f);
    wr16(p, h);
    return slm_f16_to_f32(h);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);                                           /* round to nearest even */
    return (uint16_t)(x >> 16);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
/* Round half away from zero; NaN becomes 0 so a bad input cannot produce an out-of-range code. */
static int roundi(float v) {
    if (!(v == v)) return 0;
    if (v > 1e9f) return 1000000000;
    if (v < -1e9f) return -1000000000;
    return (int)lroundf(v);
}

/* ---- dequantization, one block at a time ---- */

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + SLM_Q4_0_QS;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)((qs[j] & 0xf) - 8);
        y[j + QK / 2] = d * (float)((qs[j] >> 4) - 8);
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + SLM_Q4_1_M);
    const uint8_t *qs = b + SLM_Q4_1_QS;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)(qs[j] & 0xf) + m;
        y[j + QK / 2] = d * (float)(qs[j] >> 4) + m;
    }
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    uint32_t qh = rd32(b + SLM_Q5_0_QH);
    const uint8_t *qs = b + SLM_Q5_0_QS;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + QK / 2] = d * (float)(hi - 16);
    }
}

static void dq_q5_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + SLM_Q5_1_M);
    uint32_t qh = rd32(b + SLM_Q5_1_QH);
    const uint8_t *qs = b + SLM_Q5_1_QS;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)lo + m;
        y[j + QK / 2] = d * (float)hi + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    const int8_t *qs = (const int8_t *)(b + SLM_Q8_0_QS);
    for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
}

/* The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins:
 *   bytes 0..3: scale j (j < 4) in bits 0..5, bits 4..5 of scale j+4 in bits 6..7
 *   bytes 4..7: min j   (j < 4) in bits 0..5, bits 4..5 of min j+4   in bits 6..7
 *   bytes 8..11: low 4 bits of scale j+4 in bits 0..3, low 4 bits of min j+4 in bits 4..7 */
static void kq_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void kq_pack_scale_min(uint8_t *s, const int *sc, const int *mn) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + SLM_Q4_K_DMIN);
    const uint8_t *scales = b + SLM_Q4_K_SCALES, *qs = b + SLM_Q4_K_QS;
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        kq_scale_min(scales, j, &sc, &mn);
        float dl = d * (float)sc, ml = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j & 1);
        for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)((q[l] >> shift) & 0xf) - ml;
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + SLM_Q5_K_DMIN);
    const uint8_t *scales = b + SLM_Q5_K_SCALES, *qh = b + SLM_Q5_K_QH, *qs = b + SLM_Q5_K_QS;
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        kq_scale_min(scales, j, &sc, &mn);
        float dl = d * (float)sc, ml = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j & 1);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0xf) | (((qh[l] >> j) & 1) << 4);
            y[32 * j + l] = dl * (float)v - ml;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + SLM_Q6_K_QH;
    const int8_t *scales = (const int8_t *)(b + SLM_Q6_K_SCALES);
    float d = rdh(b + SLM_Q6_K_D);
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, s = (e % 128) / 32, l = e % 32;
        int lo = (ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xf;
        int hi = (qh[32 * h + l] >> (2 * s)) & 3;
        float dl = d * (float)scales[e / 16];
        y[e] = dl * (float)((lo | (hi << 4)) - 32);
    }
}

void slm_ref_dequant_row(slm_dtype t, const void *src, float *dst, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    if (!ti || n < 0 || n % ti->block_elems) {
        /* No status to return here: NaN makes a caller's misuse visible instead of silent zeros. */
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    switch (t) {
    case SLM_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SLM_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = slm_f16_to_f32(rd16(p + 2 * i));
        return;
    case SLM_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = slm_bf16_to_f32(rd16(p + 2 * i));
        return;
    case SLM_I32:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)rd32(p + 4 * i);
        return;
    default: break;
    }
    void (*dq)(const uint8_t *, float *) = NULL;
    switch (t) {
    case SLM_Q4_0: dq = dq_q4_0; break;
    case SLM_Q4_1: dq = dq_q4_1; break;
    case SLM_Q5_0: dq = dq_q5_0; break;
    case SLM_Q5_1: dq = dq_q5_1; break;
    case SLM_Q8_0: dq = dq_q8_0; break;
    case SLM_Q4_K: dq = dq_q4_k; break;
    case SLM_Q5_K: dq = dq_q5_k; break;
    case SLM_Q6_K: dq = dq_q6_k; break;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    int64_t nb = n / ti->block_elems;
    for (int64_t b = 0; b < nb; b++) dq(p + b * ti->block_bytes, dst + b * ti->block_elems);
}

/* ---- quantization, one block at a time ---- */

/* Symmetric formats: the element of largest magnitude maps exactly onto the most negative code
 * (-8 or -16), which uses the one extra negative level the offset encoding has. */
static float q_sym_scale(const float *x, int n, float nlevels_neg) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    return vmax / -nlevels_neg;
}

static void q_q4_0(const float *x, uint8_t *b) {
    float d = wrh(b, q_sym_scale(x, QK, 8));
    float id = d != 0 ? 1.0f / d : 0;
    uint8_t *qs = b + SLM_Q4_0_QS;
    for (int j = 0; j < QK / 2; j++) {
        int lo = clampi(roundi(x[j] * id) + 8, 0, 15);
        int hi = clampi(roundi(x[j + QK / 2] * id) + 8, 0, 15);
        qs[j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q_minmax(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    *mn = lo;
    *mx = hi;
}

static void q_q4_1(const float *x, uint8_t *b) {
    float lo, hi;
    q_minmax(x, QK, &lo, &hi);
    float d = wrh(b, (hi - lo) / 15);
    float m = wrh(b + SLM_Q4_1_M, lo);
    float id = d != 0 ? 1.0f / d : 0;
    uint8_t *qs = b + SLM_Q4_1_QS;
    for (int j = 0; j < QK / 2; j++) {
        int a = clampi(roundi((x[j] - m) * id), 0, 15);
        int c = clampi(roundi((x[j + QK / 2] - m) * id), 0, 15);
        qs[j] = (uint8_t)(a | (c << 4));
    }
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void q_q5_0(const float *x, uint8_t *b) {
    float d = wrh(b, q_sym_scale(x, QK, 16));
    float id = d != 0 ? 1.0f / d : 0;
    uint32_t qh = 0;
    uint8_t *qs = b + SLM_Q5_0_QS;
    for (int j = 0; j < QK / 2; j++) {
        int lo = clampi(roundi(x[j] * id) + 16, 0, 31);
        int hi = clampi(roundi(x[j + QK / 2] * id) + 16, 0, 31);
        qs[j] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
        qh |= (uint32_t)(lo >> 4) << j;
        qh |= (uint32_t)(hi >> 4) << (j + 16);
    }
    wr32(b + SLM_Q5_0_QH, qh);
}

static void q_q5_1(const float *x, uint8_t *b) {
    float lo, hi;
    q_minmax(x, QK, &lo, &hi);
    float d = wrh(b, (hi - lo) / 31);
    float m = wrh(b + SLM_Q5_1_M, lo);
    float id = d != 0 ? 1.0f / d : 0;
    uint32_t qh = 0;
    uint8_t *qs = b + SLM_Q5_1_QS;
    for (int j = 0; j < QK / 2; j++) {
        int a = clampi(roundi((x[j] - m) * id), 0, 31);
        int c = clampi(roundi((x[j + QK / 2] - m) * id), 0, 31);
        qs[j] = (uint8_t)((a & 0xf) | ((c & 0xf) << 4));
        qh |= (uint32_t)(a >> 4) << j;
        qh |= (uint32_t)(c >> 4) << (j + 16);
    }
    wr32(b + SLM_Q5_1_QH, qh);
}

static void q_q8_0(const float *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = wrh(b, amax / 127);
    float id = d != 0 ? 1.0f / d : 0;
    int8_t *qs = (int8_t *)(b + SLM_Q8_0_QS);
    for (int i = 0; i < QK; i++) qs[i] = (int8_t)clampi(roundi(x[i] * id), -127, 127);
}

/* Q4_K / Q5_K: each sub-block of 32 gets an affine range [lo, hi] with lo clamped to <= 0 (the format
 * subtracts a non-negative min); the per-sub-block step and min are then quantized to 6 bits against
 * the super-block's d and dmin. Elements are finally coded against the scales as stored, so rounding
 * of d, dmin and the 6-bit codes never adds more than one step of error. */
static void q_kquant_affine(const float *x, uint8_t *b, int nlev, uint8_t *scales, float *d_out, float *dmin_out,
                            int *sc, int *mn) {
    float step[8], off[8], max_step = 0, max_off = 0;
    for (int j = 0; j < 8; j++) {
        float lo, hi;
        q_minmax(x + 32 * j, 32, &lo, &hi);
        if (lo > 0) lo = 0;
        if (hi < lo) hi = lo;
        step[j] = (hi - lo) / (float)nlev;
        off[j] = -lo;
        if (step[j] > max_step) max_step = step[j];
        if (off[j] > max_off) max_off = off[j];
    }
    float d = wrh(b, max_step / 63);
    float dmin = wrh(b + SLM_Q4_K_DMIN, max_off / 63);
    for (int j = 0; j < 8; j++) {
        /* Round the step up so the coded range still covers hi when possible. */
        sc[j] = d != 0 ? clampi((int)ceilf(step[j] / d - 1e-4f), 0, 63) : 0;
        if (step[j] > 0 && sc[j] == 0 && d != 0) sc[j] = 1;
        mn[j] = dmin != 0 ? clampi(roundi(off[j] / dmin), 0, 63) : 0;
    }
    kq_pack_scale_min(scales, sc, mn);
    *d_out = d;
    *dmin_out = dmin;
}

static void q_q4_k(const float *x, uint8_t *b) {
    int sc[8], mn[8];
    float d, dmin;
    q_kquant_affine(x, b, 15, b + SLM_Q4_K_SCALES, &d, &dmin, sc, mn);
    uint8_t *qs = b + SLM_Q4_K_QS;
    memset(qs, 0, 128);
    for (int j = 0; j < 8; j++) {
        float dl = d * (float)sc[j], ml = dmin * (float)mn[j];
        float id = dl != 0 ? 1.0f / dl : 0;
        for (int l = 0; l < 32; l++) {
            int q = clampi(roundi((x[32 * j + l] + ml) * id), 0, 15);
            qs[32 * (j / 2) + l] |= (uint8_t)(q << (4 * (j & 1)));
        }
    }
}

static void q_q5_k(const float *x, uint8_t *b) {
    int sc[8], mn[8];
    float d, dmin;
    q_kquant_affine(x, b, 31, b + SLM_Q5_K_SCALES, &d, &dmin, sc, mn);
    uint8_t *qh = b + SLM_Q5_K_QH, *qs = b + SLM_Q5_K_QS;
    memset(qh, 0, 32);
    memset(qs, 0, 128);
    for (int j = 0; j < 8; j++) {
        float dl = d * (float)sc[j], ml = dmin * (float)mn[j];
        float id = dl != 0 ? 1.0f / dl : 0;
        for (int l = 0; l < 32; l++) {
            int q = clampi(roundi((x[32 * j + l] + ml) * id), 0, 31);
            qs[32 * (j / 2) + l] |= (uint8_t)((q & 0xf) << (4 * (j & 1)));
            qh[l] |= (uint8_t)((q >> 4) << j);
        }
    }
}

/* Q6_K: 16 symmetric sub-blocks of 16; codes -32..31 (stored +32), sub-block scales as int8 against the
 * super-block d. The sub-block scale is signed so that its largest-magnitude element lands on -32, the
 * code with no positive twin. */
static void q_q6_k(const float *x, uint8_t *b) {
    float s[16], amax_s = 0;
    for (int j = 0; j < 16; j++) {
        s[j] = q_sym_scale(x + 16 * j, 16, 32);
        if (fabsf(s[j]) > amax_s) amax_s = fabsf(s[j]);
    }
    uint8_t *ql = b, *qh = b + SLM_Q6_K_QH;
    int8_t *scales = (int8_t *)(b + SLM_Q6_K_SCALES);
    float d = wrh(b + SLM_Q6_K_D, amax_s / 127);
    memset(ql, 0, 128);
    memset(qh, 0, 64);
    for (int j = 0; j < 16; j++) scales[j] = (int8_t)(d != 0 ? clampi(roundi(s[j] / d), -127, 127) : 0);
    for (int e = 0; e < QK_K; e++) {
        float dl = d * (float)scales[e / 16];
        float id = dl != 0 ? 1.0f / dl : 0;
        int q = clampi(roundi(x[e] * id), -32, 31) + 32;
        int h = e / 128, sub = (e % 128) / 32, l = e % 32;
        ql[64 * h + l + 32 * (sub & 1)] |= (uint8_t)((q & 0xf) << (4 * (sub >> 1)));
        qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * sub));
    }
}

void slm_ref_quantize_row(slm_dtype t, const float *src, void *dst, int64_t n) {
    uint8_t *p = (uint8_t *)dst;
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    if (!ti || n < 0 || n % ti->block_elems) return; /* nothing sensible to write */
    switch (t) {
    case SLM_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SLM_F16:
        for (int64_t i = 0; i < n; i++) wr16(p + 2 * i, slm_f32_to_f16(src[i]));
        return;
    case SLM_BF16:
        for (int64_t i = 0; i < n; i++) wr16(p + 2 * i, f32_to_bf16(src[i]));
        return;
    case SLM_I32:
        for (int64_t i = 0; i < n; i++) wr32(p + 4 * i, (uint32_t)(int32_t)roundi(src[i]));
        return;
    default: break;
    }
    void (*q)(const float *, uint8_t *) = NULL;
    switch (t) {
    case SLM_Q4_0: q = q_q4_0; break;
    case SLM_Q4_1: q = q_q4_1; break;
    case SLM_Q5_0: q = q_q5_0; break;
    case SLM_Q5_1: q = q_q5_1; break;
    case SLM_Q8_0: q = q_q8_0; break;
    case SLM_Q4_K: q = q_q4_k; break;
    case SLM_Q5_K: q = q_q5_k; break;
    case SLM_Q6_K: q = q_q6_k; break;
    default: return;
    }
    int64_t nb = n / ti->block_elems;
    for (int64_t b = 0; b < nb; b++) q(src + b * ti->block_elems, p + b * ti->block_bytes);
}

float slm_ref_dot_row(slm_dtype t, const void *w_row, const float *x, int64_t n) {
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    if (!ti || n < 0 || n % ti->block_elems) return NAN;
    /* One block at a time through the dequantizer keeps a single definition of every format. */
    float buf[QK_K];
    const uint8_t *p = (const uint8_t *)w_row;
    int64_t chunk = ti->block_elems > 1 ? ti->block_elems : QK_K;
    size_t chunk_bytes = (size_t)(chunk / ti->block_elems) * (size_t)ti->block_bytes;
    double acc = 0;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        slm_ref_dequant_row(t, p, buf, m);
        for (int64_t k = 0; k < m; k++) acc += (double)buf[k] * (double)x[i + k];
        p += chunk_bytes;
    }
    return (float)acc;
}
