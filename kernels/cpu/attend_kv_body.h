/* The body of the KV attention kernel (attend_kv.h), included by attend_kv.c (scalar build: GCC vector
 * extensions lowered to what the baseline has) and attend_kv_avx2.c (AVX2, FMA, F16C), each defining
 * ATTEND_KV_NAME and LOAD_F16x8(dst, src). Vector extensions, not intrinsics, so one text serves both. */
#include <math.h>
#include <string.h>

#include "quant_blocks.h"

/* the scalar build passes these 32-byte vectors between inline functions; no ABI is exposed */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float akv_v8f __attribute__((vector_size(32)));
typedef int32_t akv_v8i __attribute__((vector_size(32)));
typedef int8_t akv_v8c __attribute__((vector_size(8)));
typedef uint8_t akv_v8u __attribute__((vector_size(8)));

#define AKV_TILE 64 /* positions whose scores are computed before their V rows are summed */

static inline float akv_hsum(akv_v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

static inline akv_v8f akv_splat(float x) { return (akv_v8f){x, x, x, x, x, x, x, x}; }

/* exp(x) for x <= 0 (scores minus their maximum), 8 lanes: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2],
 * a degree-6 polynomial; below -87 the result is 0. Relative error about 2e-7. */
static inline akv_v8f akv_exp_neg(akv_v8f x) {
    akv_v8i below = x < akv_splat(-87.0f), xi, lo;
    akv_v8f lof = akv_splat(-87.0f);
    memcpy(&xi, &x, sizeof x);
    memcpy(&lo, &lof, sizeof x);
    xi = (below & lo) | (~below & xi); /* NaN lanes stay NaN (the comparison is false) */
    memcpy(&x, &xi, sizeof x);
    akv_v8f t = x * akv_splat(1.44269504f) - akv_splat(0.5f);
    akv_v8i n = __builtin_convertvector(t, akv_v8i); /* toward zero: t < 0, so ceil(x log2 e - 1/2) */
    akv_v8f nf = __builtin_convertvector(n, akv_v8f);
    akv_v8f r = x - nf * akv_splat(0.693145752f) - nf * akv_splat(1.42860677e-6f);
    akv_v8f p = akv_splat(1.0f / 720);
    p = p * r + akv_splat(1.0f / 120);
    p = p * r + akv_splat(1.0f / 24);
    p = p * r + akv_splat(1.0f / 6);
    p = p * r + akv_splat(0.5f);
    p = p * r + akv_splat(1.0f);
    p = p * r + akv_splat(1.0f);
    akv_v8i e = (n + 127) << 23;
    akv_v8f scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* 32 elements of a row of type t from element 32*b on: f16 (64 bytes), q8_0 or q4_0 (one block). */
static inline void akv_load32(slm_dtype t, const uint8_t *row, int b, akv_v8f out[4]) {
    if (t == SLM_Q8_0) {
        const uint8_t *blk = row + (size_t)b * SLM_Q8_0_BYTES;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        akv_v8f d = akv_splat(AKV_F16(dh));
        for (int j = 0; j < 4; j++) {
            akv_v8c c;
            memcpy(&c, blk + SLM_Q8_0_QS + 8 * j, 8);
            out[j] = __builtin_convertvector(c, akv_v8f) * d;
        }
    } else if (t == SLM_Q4_0) {
        const uint8_t *blk = row + (size_t)b * SLM_Q4_0_BYTES;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        akv_v8f d = akv_splat(AKV_F16(dh)), eight = akv_splat(8.0f);
        for (int j = 0; j < 2; j++) {
            akv_v8u c;
            memcpy(&c, blk + SLM_Q4_0_QS + 8 * j, 8);
            akv_v8u lo = c & 0xf, hi = c >> 4;
            out[j] = (__builtin_convertvector(lo, akv_v8f) - eight) * d;     /* elements 8j .. 8j+7 */
            out[j + 2] = (__builtin_convertvector(hi, akv_v8f) - eight) * d; /* elements 16+8j .. */
        }
    } else {
        const uint16_t *h = (const uint16_t *)row + 32 * b;
        for (int j = 0; j < 4; j++) LOAD_F16x8(out[j], h + 8 * j);
    }
}

void ATTEND_KV_NAME(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v, size_t v_stride,
                    slm_dtype vt, int64_t n, int hd, float scale, float *part) {
    float *m = part, *l = part + g, *acc = part + 2 * g;
    for (int h = 0; h < g; h++) {
        m[h] = -INFINITY;
        l[h] = 0;
    }
    memset(acc, 0, sizeof(float) * (size_t)g * (size_t)hd);
    const int nb = hd / 32;
    float s[SLM_ATTEND_KV_MAX_G][AKV_TILE];
    for (int64_t p0 = 0; p0 < n; p0 += AKV_TILE) {
        int np = n - p0 < AKV_TILE ? (int)(n - p0) : AKV_TILE;
        /* scores: each K row read once for the g heads */
        for (int p = 0; p < np; p++) {
            const uint8_t *kr = (const uint8_t *)k + (size_t)(p0 + p) * k_stride;
            akv_v8f sa[SLM_ATTEND_KV_MAX_G];
            for (int h = 0; h < g; h++) sa[h] = akv_splat(0);
            for (int b = 0; b < nb; b++) {
                akv_v8f kv[4];
                akv_load32(kt, kr, b, kv);
                for (int h = 0; h < g; h++) {
                    const float *qh = q + (size_t)h * hd + 32 * b;
                    for (int j = 0; j < 4; j++) {
                        akv_v8f qv;
                        memcpy(&qv, qh + 8 * j, sizeof qv);
                        sa[h] += qv * kv[j];
                    }
                }
            }
            for (int h = 0; h < g; h++) s[h][p] = akv_hsum(sa[h]) * scale;
        }
        /* the tile's weights against the new running maximum; acc and l rescaled to it */
        for (int h = 0; h < g; h++) {
            float mx = m[h];
            for (int p = 0; p < np; p++) mx = s[h][p] > mx ? s[h][p] : mx;
            float r = m[h] == -INFINITY ? 0.0f : expf(m[h] - mx);
            if (r != 1.0f) {
                l[h] *= r;
                for (int i = 0; i < hd; i++) acc[(size_t)h * hd + i] *= r;
            }
            m[h] = mx;
            akv_v8f sum = akv_splat(0), vm = akv_splat(mx);
            int p = 0;
            for (; p + 8 <= np; p += 8) {
                akv_v8f x;
                memcpy(&x, &s[h][p], sizeof x);
                x = akv_exp_neg(x - vm);
                memcpy(&s[h][p], &x, sizeof x);
                sum += x;
            }
            float ls = akv_hsum(sum);
            for (; p < np; p++) {
                s[h][p] = expf(s[h][p] - mx);
                ls += s[h][p];
            }
            l[h] += ls;
        }
        /* acc += w V: each V row read once for the g heads */
        for (int p = 0; p < np; p++) {
            const uint8_t *vr = (const uint8_t *)v + (size_t)(p0 + p) * v_stride;
            for (int b = 0; b < nb; b++) {
                akv_v8f vv[4];
                akv_load32(vt, vr, b, vv);
                for (int h = 0; h < g; h++) {
                    akv_v8f w = akv_splat(s[h][p]);
                    float *a = acc + (size_t)h * hd + 32 * b;
                    for (int j = 0; j < 4; j++) {
                        akv_v8f av;
                        memcpy(&av, a + 8 * j, sizeof av);
                        av += w * vv[j];
                        memcpy(a + 8 * j, &av, sizeof av);
                    }
                }
            }
        }
    }
}
