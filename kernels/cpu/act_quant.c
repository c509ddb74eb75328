/* Quantization of activation columns into the formats of act_quant.h. This runs once per column per
 * mat-mul (k elements against n_rows * k weight elements), so plain C is fast enough; the loops are simple
 * enough for the compiler to vectorise. */
#include "act_quant.h"

#include <math.h>
#include <string.h>

slm_act_format slm_act_format_of(slm_dtype wtype) {
    switch (wtype) {
    case SLM_Q4_0:
    case SLM_Q4_1:
    case SLM_Q5_0:
    case SLM_Q5_1:
    case SLM_Q8_0: return SLM_ACT_Q8_32;
    case SLM_Q4_K:
    case SLM_Q5_K:
    case SLM_Q6_K: return SLM_ACT_Q8_256;
    default: return SLM_ACT_F32;
    }
}

size_t slm_act_row_bytes(slm_dtype wtype, int64_t k) {
    if (k < 0) return 0;
    switch (slm_act_format_of(wtype)) {
    case SLM_ACT_Q8_32: return slm_act_round64((size_t)(k / 32) * 8) + slm_act_round64((size_t)k);
    case SLM_ACT_Q8_256:
        return slm_act_round64(slm_act256_bsum_off(k) + (size_t)(k / 256) * 32) + slm_act_round64((size_t)k);
    default: return slm_act_round64((size_t)k * 4);
    }
}

/* Round half away from zero; callers pass |v| <= 127.5 so the cast cannot overflow. */
static inline int round_q(float v) { return (int)(v + (v >= 0 ? 0.5f : -0.5f)); }

/* Quantizes n elements with one scale; returns the scale and writes the quants. NaN/inf inputs give a
 * NaN scale, which makes the mat-mul output NaN rather than silently wrong. */
static float quant_block(const float *x, int8_t *q, int n) {
    /* A compare-select max and an exponent test instead of fmaxf: fmaxf is a library call here (it must
     * skip NaN), which kept this loop scalar and made activation quantization a few per cent of a
     * prompt batch; and skipping NaN is what must not happen, so the exponent test catches NaN and inf. */
    float amax = 0;
    uint32_t nonfinite = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
        uint32_t u;
        memcpy(&u, &x[i], 4);
        nonfinite |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (nonfinite || !isfinite(amax)) {
        memset(q, 0, (size_t)n);
        return NAN;
    }
    float d = amax / 127.0f;
    float id = d > 0 ? 1.0f / d : 0.0f;
    if (!isfinite(id)) {
        /* a subnormal scale: 1/d overflows and x * inf would be cast to int (undefined). Values this small
         * (|x| < 2^-126 * 127) quantize to zero at any scale a mat-mul can tell apart. */
        memset(q, 0, (size_t)n);
        return d;
    }
    for (int i = 0; i < n; i++) {
        int v = round_q(x[i] * id);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return d;
}

void slm_act_quantize(slm_dtype wtype, const float *x, void *xq, int64_t k) {
    switch (slm_act_format_of(wtype)) {
    case SLM_ACT_Q8_32: {
        int64_t nb = k / 32;
        float *d = (float *)xq, *s = d + nb;
        int8_t *q = (int8_t *)slm_act32_q(xq, k);
        for (int64_t b = 0; b < nb; b++) {
            d[b] = quant_block(x + 32 * b, q + 32 * b, 32);
            int sum = 0;
            for (int i = 0; i < 32; i++) sum += q[32 * b + i];
            s[b] = d[b] * (float)sum;
        }
        return;
    }
    case SLM_ACT_Q8_256: {
        int64_t ns = k / 256;
        float *d = (float *)xq;
        int16_t *bsum = (int16_t *)slm_act256_bsum(xq, k);
        int8_t *q = (int8_t *)slm_act256_q(xq, k);
        for (int64_t b = 0; b < ns; b++) {
            d[b] = quant_block(x + 256 * b, q + 256 * b, 256);
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += q[256 * b + 16 * g + i];
                bsum[16 * b + g] = (int16_t)sum;
            }
        }
        return;
    }
    default: memcpy(xq, x, (size_t)k * 4); return;
    }
}
