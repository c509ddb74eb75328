/* The KV attention kernel's scalar build, its dispatch and the merge of partials (attend_kv.h). */
#include "attend_kv.h"

#include <math.h>

#define ATTEND_KV_NAME slm_attend_kv_scalar
#define AKV_F16(h) slm_f16_to_f32(h)
#define AKV_LOAD_F16x8(dst, src)                                                                                       \
    do {                                                                                                               \
        for (int i_ = 0; i_ < 8; i_++) (dst)[i_] = slm_f16_to_f32((src)[i_]);                                          \
    } while (0)
#define AKV_LOAD_I8x8(dst, src)                                                                                        \
    do {                                                                                                               \
        for (int i_ = 0; i_ < 8; i_++) (dst)[i_] = (float)(int8_t)(src)[i_];                                           \
    } while (0)
#define AKV_LOAD_U4x16(lo, hi, src)                                                                                    \
    do {                                                                                                               \
        for (int i_ = 0; i_ < 8; i_++) {                                                                               \
            (lo)[i_] = (float)((src)[i_] & 0xf);                                                                       \
            (hi)[i_] = (float)((src)[i_] >> 4);                                                                        \
        }                                                                                                              \
    } while (0)
#include "attend_kv_body.h"

void slm_attend_kv_avx2(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v,
                        size_t v_stride, slm_dtype vt, int64_t n, int hd, float scale, float *part);

slm_attend_kv_fn slm_attend_kv_get(slm_cpu_isa isa) {
    return isa >= SLM_ISA_AVX2 ? slm_attend_kv_avx2 : slm_attend_kv_scalar;
}

void slm_attend_kv_merge(float *into, const float *part, int g, int hd) {
    for (int h = 0; h < g; h++) {
        float ma = into[h], mb = part[h], mx = ma > mb ? ma : mb;
        float fa = ma == -INFINITY ? 0.0f : expf(ma - mx), fb = mb == -INFINITY ? 0.0f : expf(mb - mx);
        into[h] = mx;
        into[g + h] = into[g + h] * fa + part[g + h] * fb;
        float *a = into + 2 * g + (size_t)h * hd;
        const float *b = part + 2 * g + (size_t)h * hd;
        for (int i = 0; i < hd; i++) a[i] = a[i] * fa + b[i] * fb;
    }
}

void slm_attend_kv_finish(const float *part, int g, int hd, float *out) {
    for (int h = 0; h < g; h++) {
        float inv = 1.0f / part[g + h];
        const float *a = part + 2 * g + (size_t)h * hd;
        for (int i = 0; i < hd; i++) out[(size_t)h * hd + i] = a[i] * inv;
    }
}
