/* Scalar mat-mul of every weight type against the activation formats of act_quant.h: the fallback when
 * the CPU has no AVX2, and the baseline the SIMD variants are tested against. Integer dot products per
 * block, block scales applied in float, exactly the arithmetic the SIMD variants do (in another order). */
#include <math.h>
#include <string.h>

#include "act_quant.h"
#include "cpu_variants.h"
#include "quant_blocks.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float f16(const uint8_t *p) { return slm_f16_to_f32(rd16(p)); }

/* ---- 32-element blocks against SLM_ACT_Q8_32 ---- */

static float dot_q4_0(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act32_d(col), *s = slm_act32_s(col, k);
    const int8_t *q = slm_act32_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK; b++, w += SLM_Q4_0_BYTES, q += SLM_QK) {
        const uint8_t *qs = w + SLM_Q4_0_QS;
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += (qs[j] & 15) * q[j] + (qs[j] >> 4) * q[j + 16];
        float dw = f16(w);
        acc += dw * (d[b] * (float)sum - 8.0f * s[b]);
    }
    return acc;
}

static float dot_q4_1(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act32_d(col), *s = slm_act32_s(col, k);
    const int8_t *q = slm_act32_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK; b++, w += SLM_Q4_1_BYTES, q += SLM_QK) {
        const uint8_t *qs = w + SLM_Q4_1_QS;
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += (qs[j] & 15) * q[j] + (qs[j] >> 4) * q[j + 16];
        acc += f16(w) * d[b] * (float)sum + f16(w + SLM_Q4_1_M) * s[b];
    }
    return acc;
}

static int dot_q5_ints(const uint8_t *qs, uint32_t qh, const int8_t *q) {
    int sum = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        sum += lo * q[j] + hi * q[j + 16];
    }
    return sum;
}

static float dot_q5_0(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act32_d(col), *s = slm_act32_s(col, k);
    const int8_t *q = slm_act32_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK; b++, w += SLM_Q5_0_BYTES, q += SLM_QK) {
        int sum = dot_q5_ints(w + SLM_Q5_0_QS, rd32(w + SLM_Q5_0_QH), q);
        acc += f16(w) * (d[b] * (float)sum - 16.0f * s[b]);
    }
    return acc;
}

static float dot_q5_1(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act32_d(col), *s = slm_act32_s(col, k);
    const int8_t *q = slm_act32_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK; b++, w += SLM_Q5_1_BYTES, q += SLM_QK) {
        int sum = dot_q5_ints(w + SLM_Q5_1_QS, rd32(w + SLM_Q5_1_QH), q);
        acc += f16(w) * d[b] * (float)sum + f16(w + SLM_Q5_1_M) * s[b];
    }
    return acc;
}

static float dot_q8_0(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act32_d(col);
    const int8_t *q = slm_act32_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK; b++, w += SLM_Q8_0_BYTES, q += SLM_QK) {
        const int8_t *qs = (const int8_t *)(w + SLM_Q8_0_QS);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += qs[j] * q[j];
        acc += f16(w) * d[b] * (float)sum;
    }
    return acc;
}

/* ---- 256-element super-blocks against SLM_ACT_Q8_256 ---- */

/* The 8 six-bit scales and mins packed in the 12 scale bytes of Q4_K/Q5_K (layout in quant_ref.c). */
static void kq_unpack(const uint8_t *s, int *sc, int *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 15) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Q4_K and Q5_K differ only in the fifth bit (qh == NULL for Q4_K). */
static float dot_q45_k(const uint8_t *w, const void *col, int64_t k, int is_q5) {
    const float *d = slm_act256_d(col);
    const int16_t *bsum = slm_act256_bsum(col, k);
    const int8_t *q = slm_act256_q(col, k);
    size_t bb = is_q5 ? SLM_Q5_K_BYTES : SLM_Q4_K_BYTES;
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK_K; b++, w += bb, q += SLM_QK_K, bsum += 16) {
        int sc[8], mn[8];
        kq_unpack(w + SLM_Q4_K_SCALES, sc, mn);
        const uint8_t *qh = w + SLM_Q5_K_QH, *qs = w + (is_q5 ? SLM_Q5_K_QS : SLM_Q4_K_QS);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *p = qs + 32 * (j / 2);
            int shift = 4 * (j & 1), sub = 0;
            for (int l = 0; l < 32; l++) {
                int v = (p[l] >> shift) & 15;
                if (is_q5) v |= ((qh[l] >> j) & 1) << 4;
                sub += v * q[32 * j + l];
            }
            isum += sc[j] * sub;
            msum += mn[j] * (bsum[2 * j] + bsum[2 * j + 1]);
        }
        acc += d[b] * (f16(w) * (float)isum - f16(w + SLM_Q4_K_DMIN) * (float)msum);
    }
    return acc;
}

static float dot_q6_k(const uint8_t *w, const void *col, int64_t k) {
    const float *d = slm_act256_d(col);
    const int16_t *bsum = slm_act256_bsum(col, k);
    const int8_t *q = slm_act256_q(col, k);
    float acc = 0;
    for (int64_t b = 0; b < k / SLM_QK_K; b++, w += SLM_Q6_K_BYTES, q += SLM_QK_K, bsum += 16) {
        const uint8_t *ql = w, *qh = w + SLM_Q6_K_QH;
        const int8_t *sc = (const int8_t *)(w + SLM_Q6_K_SCALES);
        /* codes in element order first (the bit layout is easiest to walk by halves and quarters) */
        int8_t code[256];
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    int lo = (ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 15;
                    int hi = (qh[32 * h + l] >> (2 * s)) & 3;
                    code[128 * h + 32 * s + l] = (int8_t)(lo | (hi << 4));
                }
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int sub = 0;
            for (int i = 0; i < 16; i++) sub += code[16 * g + i] * q[16 * g + i];
            /* codes are stored +32: subtract 32 * (sum of the group's activations) */
            isum += sc[g] * (sub - 32 * bsum[g]);
        }
        acc += d[b] * f16(w + SLM_Q6_K_D) * (float)isum;
    }
    return acc;
}

/* ---- float weights against f32 activations ---- */

static float dot_f32(const uint8_t *w, const void *col, int64_t k) {
    const float *x = (const float *)col;
    float acc = 0;
    for (int64_t i = 0; i < k; i++) {
        float v;
        memcpy(&v, w + 4 * i, 4);
        acc += v * x[i];
    }
    return acc;
}

static float dot_f16(const uint8_t *w, const void *col, int64_t k) {
    const float *x = (const float *)col;
    float acc = 0;
    for (int64_t i = 0; i < k; i++) acc += slm_f16_to_f32(rd16(w + 2 * i)) * x[i];
    return acc;
}

static float dot_bf16(const uint8_t *w, const void *col, int64_t k) {
    const float *x = (const float *)col;
    float acc = 0;
    for (int64_t i = 0; i < k; i++) acc += slm_bf16_to_f32(rd16(w + 2 * i)) * x[i];
    return acc;
}

static float dot_q4_k(const uint8_t *w, const void *col, int64_t k) { return dot_q45_k(w, col, k, 0); }
static float dot_q5_k(const uint8_t *w, const void *col, int64_t k) { return dot_q45_k(w, col, k, 1); }

typedef float (*row_dot_fn)(const uint8_t *, const void *, int64_t);

static row_dot_fn row_dot_for(slm_dtype t) {
    switch (t) {
    case SLM_F32: return dot_f32;
    case SLM_F16: return dot_f16;
    case SLM_BF16: return dot_bf16;
    case SLM_Q4_0: return dot_q4_0;
    case SLM_Q4_1: return dot_q4_1;
    case SLM_Q5_0: return dot_q5_0;
    case SLM_Q5_1: return dot_q5_1;
    case SLM_Q8_0: return dot_q8_0;
    case SLM_Q4_K: return dot_q4_k;
    case SLM_Q5_K: return dot_q5_k;
    case SLM_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}

void slm_cpu_matmul_scalar(slm_dtype wtype, const void *w, size_t w_row_bytes, int64_t n_rows, const void *xq,
                           size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride) {
    row_dot_fn dot = row_dot_for(wtype);
    for (int64_t c = 0; c < n_cols; c++) {
        const uint8_t *col = (const uint8_t *)xq + (size_t)c * act_stride;
        float *o = out + c * out_stride;
        for (int64_t r = 0; r < n_rows; r++) {
            /* An unsupported type cannot be reported from here (no status): NaN makes it visible. The
             * backend only routes types slm_dtype_get knows, which all have a row_dot. */
            o[r] = dot ? dot((const uint8_t *)w + (size_t)r * w_row_bytes, col, k) : NAN;
        }
    }
}

void slm_cpu_attend_f16_scalar(const float *q, const uint16_t *k, const uint16_t *v, size_t k_stride, size_t v_stride,
                               int64_t n, int hd, float scale, float *scores, float *out) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n; p++) {
        const uint16_t *kp = k + (size_t)p * k_stride;
        float acc = 0;
        for (int i = 0; i < hd; i++) acc += slm_f16_to_f32(kp[i]) * q[i];
        scores[p] = acc * scale;
        if (scores[p] > mx) mx = scores[p];
    }
    float sum = 0;
    for (int64_t p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - mx);
        sum += scores[p];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int64_t p = 0; p < n; p++) {
        const uint16_t *vp = v + (size_t)p * v_stride;
        float w = scores[p] * inv;
        for (int i = 0; i < hd; i++) out[i] += w * slm_f16_to_f32(vp[i]);
    }
}

bool slm_cpu_matmul_has_fast_scalar(slm_dtype wtype) { return row_dot_for(wtype) != NULL; }
