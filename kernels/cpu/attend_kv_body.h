/* The body of the KV attention kernel (attend_kv.h), included by attend_kv.c (scalar build: GCC vector
 * extensions lowered to what the baseline has) and attend_kv_avx2.c (AVX2, FMA, F16C). The includer defines
 * ATTEND_KV_NAME, AKV_F16(h) (one f16 to float) and the loads of 8 or 16 cached elements as floats:
 *   AKV_LOAD_F16x8(dst, const uint16_t *src)      8 halves
 *   AKV_LOAD_I8x8(dst, const uint8_t *src)        8 signed bytes
 *   AKV_LOAD_U4x16(lo, hi, const uint8_t *src)    bytes 0..7 of src: lo = their low nibbles, hi = their high
 *                                                 nibbles (0..15)
 * Vector extensions, not intrinsics, in the arithmetic, so one text serves both builds. */
#include <math.h>
#include <string.h>

#include "quant_blocks.h"

/* the scalar build passes these 32-byte vectors between inline functions; no ABI is exposed */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float akv_v8f __attribute__((vector_size(32)));
typedef int32_t akv_v8i __attribute__((vector_size(32)));

#define AKV_TILE 64 /* positions whose scores are computed before their V rows are summed */
#define AKV_AHEAD                                                                                                      \
    8 /* rows prefetched ahead: one head's slice of a row is 68 bytes of a row of several
                        heads, a stride the hardware prefetcher follows late */
#define AKV_INLINE static inline __attribute__((always_inline))

AKV_INLINE float akv_hsum(akv_v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

AKV_INLINE akv_v8f akv_splat(float x) { return (akv_v8f){x, x, x, x, x, x, x, x}; }

/* The 8 lane sums of v[0..7], lane j = the sum of v[j]: three rounds of pairwise shuffles and adds instead of
 * 8 horizontal sums. */
AKV_INLINE akv_v8f akv_reduce8(const akv_v8f v[8]) {
    akv_v8f a[4], b[2];
    for (int i = 0; i < 4; i++)
        a[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
            __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int i = 0; i < 2; i++)
        b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
            __builtin_shufflevector(a[2 * i], a[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    /* b[0]: lanes 0..3 the first-half sums of v[0..3], lanes 4..7 their second-half sums; b[1] of v[4..7] */
    return __builtin_shufflevector(b[0], b[1], 0, 1, 2, 3, 8, 9, 10, 11) +
        __builtin_shufflevector(b[0], b[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

/* lane-wise max(a, b); where either is NaN, b */
AKV_INLINE akv_v8f akv_max(akv_v8f a, akv_v8f b) {
    akv_v8i gt = a > b, ai, bi;
    memcpy(&ai, &a, sizeof a);
    memcpy(&bi, &b, sizeof b);
    ai = (gt & ai) | (~gt & bi);
    memcpy(&a, &ai, sizeof a);
    return a;
}

/* exp(x) for x <= 0 (scores minus their maximum), 8 lanes: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2],
 * a degree-6 polynomial; below -87 the result is 0. Relative error about 2e-7. NaN stays NaN. */
AKV_INLINE akv_v8f akv_exp_neg(akv_v8f x) {
    akv_v8i below = x < akv_splat(-87.0f), xi, lo;
    akv_v8f lof = akv_splat(-87.0f);
    memcpy(&xi, &x, sizeof x);
    memcpy(&lo, &lof, sizeof x);
    xi = (below & lo) | (~below & xi);
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

/* 16 elements of a row of type t, elements 16*u .. 16*u+15, as two vectors. */
AKV_INLINE void akv_load16(slm_dtype t, const uint8_t *row, int u, akv_v8f out[2]) {
    int b = u >> 1, half = u & 1;
    if (t == SLM_Q8_0) {
        const uint8_t *blk = row + (size_t)b * SLM_Q8_0_BYTES;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        akv_v8f d = akv_splat(AKV_F16(dh));
        const uint8_t *qs = blk + SLM_Q8_0_QS + 16 * half;
        AKV_LOAD_I8x8(out[0], qs);
        AKV_LOAD_I8x8(out[1], qs + 8);
        out[0] *= d;
        out[1] *= d;
    } else if (t == SLM_Q4_0) {
        /* elements 0..15 are the low nibbles of qs[0..15], 16..31 the high ones */
        const uint8_t *blk = row + (size_t)b * SLM_Q4_0_BYTES;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        akv_v8f d = akv_splat(AKV_F16(dh)), eight = akv_splat(8.0f);
        akv_v8f lo0, hi0, lo1, hi1;
        AKV_LOAD_U4x16(lo0, hi0, blk + SLM_Q4_0_QS);
        AKV_LOAD_U4x16(lo1, hi1, blk + SLM_Q4_0_QS + 8);
        out[0] = ((half ? hi0 : lo0) - eight) * d;
        out[1] = ((half ? hi1 : lo1) - eight) * d;
    } else {
        const uint16_t *h = (const uint16_t *)row + 16 * u;
        AKV_LOAD_F16x8(out[0], h);
        AKV_LOAD_F16x8(out[1], h + 8);
    }
}

/* The kernel for a group of g heads; always inlined with a constant g, so that the per-head accumulators
 * live in registers. */
AKV_INLINE void akv_run(const float *q, const int g, const void *k, size_t k_stride, slm_dtype kt, const void *v,
                        size_t v_stride, slm_dtype vt, int64_t n, int hd, float scale, float *part) {
    float *m = part, *l = part + g, *acc = part + 2 * g;
    for (int h = 0; h < g; h++) {
        m[h] = -INFINITY;
        l[h] = 0;
    }
    memset(acc, 0, sizeof(float) * (size_t)g * (size_t)hd);
    const int nu = hd / 16; /* 16-element units per head */
    const int head_bytes_k = (int)slm_dtype_row_bytes(kt, hd), head_bytes_v = (int)slm_dtype_row_bytes(vt, hd);
    float s[SLM_ATTEND_KV_MAX_G][AKV_TILE];
    for (int64_t p0 = 0; p0 < n; p0 += AKV_TILE) {
        int np = n - p0 < AKV_TILE ? (int)(n - p0) : AKV_TILE;
        /* scores: each K row read once for the g heads; the sums of 8 positions reduced together */
        akv_v8f stash[SLM_ATTEND_KV_MAX_G][8];
        for (int p = 0; p < np; p++) {
            const uint8_t *kr = (const uint8_t *)k + (size_t)(p0 + p) * k_stride;
            if (p + AKV_AHEAD < n - p0)
                for (int o = 0; o < head_bytes_k; o += 64) __builtin_prefetch(kr + AKV_AHEAD * k_stride + o);
            akv_v8f sa[SLM_ATTEND_KV_MAX_G] = {0};
#pragma GCC unroll 16
            for (int h = 0; h < g; h++) sa[h] = akv_splat(0);
            for (int u = 0; u < nu; u++) {
                akv_v8f kv[2];
                akv_load16(kt, kr, u, kv);
#pragma GCC unroll 16
                for (int h = 0; h < g; h++) {
                    akv_v8f q0, q1;
                    memcpy(&q0, q + (size_t)h * hd + 16 * u, sizeof q0);
                    memcpy(&q1, q + (size_t)h * hd + 16 * u + 8, sizeof q1);
                    sa[h] += q0 * kv[0] + q1 * kv[1];
                }
            }
            if ((np & ~7) > p) { /* a whole group of 8: reduce when its last position is in */
#pragma GCC unroll 16
                for (int h = 0; h < g; h++) stash[h][p & 7] = sa[h];
                if ((p & 7) == 7) {
                    akv_v8f vs = akv_splat(scale);
#pragma GCC unroll 16
                    for (int h = 0; h < g; h++) {
                        akv_v8f r = akv_reduce8(stash[h]) * vs;
                        memcpy(&s[h][p - 7], &r, sizeof r);
                    }
                }
            } else {
#pragma GCC unroll 16
                for (int h = 0; h < g; h++) s[h][p] = akv_hsum(sa[h]) * scale;
            }
        }
        /* the tile's weights against the new running maximum; acc and l rescaled to it */
        for (int h = 0; h < g; h++) {
            float mx = m[h];
            int p8 = np & ~7;
            if (p8) {
                akv_v8f vmx;
                memcpy(&vmx, &s[h][0], sizeof vmx);
                for (int p = 8; p < p8; p += 8) {
                    akv_v8f x;
                    memcpy(&x, &s[h][p], sizeof x);
                    vmx = akv_max(x, vmx);
                }
                for (int j = 0; j < 8; j++) mx = vmx[j] > mx ? vmx[j] : mx;
            }
            for (int p = p8; p < np; p++) mx = s[h][p] > mx ? s[h][p] : mx;
            float r = m[h] == -INFINITY ? 0.0f : expf(m[h] - mx);
            if (r != 1.0f) {
                l[h] *= r;
                akv_v8f vr = akv_splat(r);
                for (int i = 0; i < hd; i += 8) {
                    akv_v8f a;
                    memcpy(&a, acc + (size_t)h * hd + i, sizeof a);
                    a *= vr;
                    memcpy(acc + (size_t)h * hd + i, &a, sizeof a);
                }
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
        /* acc += w V, 16 elements of every head at a time in registers over the tile's rows: each V
         * element read once for the g heads */
        for (int u = 0; u < nu; u++) {
            akv_v8f ac[SLM_ATTEND_KV_MAX_G][2];
#pragma GCC unroll 16
            for (int h = 0; h < g; h++) {
                memcpy(&ac[h][0], acc + (size_t)h * hd + 16 * u, sizeof ac[h][0]);
                memcpy(&ac[h][1], acc + (size_t)h * hd + 16 * u + 8, sizeof ac[h][1]);
            }
            for (int p = 0; p < np; p++) {
                if (u == 0 && p + AKV_AHEAD < n - p0)
                    for (int o = 0; o < head_bytes_v; o += 64)
                        __builtin_prefetch((const uint8_t *)v + (size_t)(p0 + p + AKV_AHEAD) * v_stride + o);
                akv_v8f vv[2];
                akv_load16(vt, (const uint8_t *)v + (size_t)(p0 + p) * v_stride, u, vv);
#pragma GCC unroll 16
                for (int h = 0; h < g; h++) {
                    akv_v8f w = akv_splat(s[h][p]);
                    ac[h][0] += w * vv[0];
                    ac[h][1] += w * vv[1];
                }
            }
#pragma GCC unroll 16
            for (int h = 0; h < g; h++) {
                memcpy(acc + (size_t)h * hd + 16 * u, &ac[h][0], sizeof ac[h][0]);
                memcpy(acc + (size_t)h * hd + 16 * u + 8, &ac[h][1], sizeof ac[h][1]);
            }
        }
    }
}

void ATTEND_KV_NAME(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v, size_t v_stride,
                    slm_dtype vt, int64_t n, int hd, float scale, float *part) {
    switch (g) {
    case 1: akv_run(q, 1, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    case 2: akv_run(q, 2, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    case 4: akv_run(q, 4, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    case 8: akv_run(q, 8, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    case 16: akv_run(q, 16, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    default: akv_run(q, g, k, k_stride, kt, v, v_stride, vt, n, hd, scale, part); break;
    }
}
