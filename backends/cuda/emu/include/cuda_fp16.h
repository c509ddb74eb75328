/* Stand-in for cuda_fp16.h in the emulation build: __half as IEEE binary16 bits with conversions that round
 * to nearest even like the hardware's cvt.rn.f16.f32 (overflow to inf, subnormals kept, NaN stays NaN). */
#ifndef SLM_EMU_CUDA_FP16_H
#define SLM_EMU_CUDA_FP16_H

#include <stdint.h>
#include <string.h>

struct __half {
    unsigned short __x;
};
struct __half2 {
    __half x, y;
};

namespace slm_emu {
inline unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* quiet NaN */
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); /* >= 65520 rounds to inf (and inf) */
    if (ax >= 0x38800000u) {                                        /* normal half: >= 2^-14 */
        const uint32_t v = ax - 0x38000000u;                        /* exponent rebiased 127 -> 15 */
        uint32_t r = v >> 13;
        const uint32_t rem = v & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
        return (unsigned short)(sign | r);
    }
    if (ax <= 0x33000000u) return (unsigned short)sign; /* <= 2^-25: rounds to zero (ties to even) */
    const uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e; /* value = mant * 2^(e-150) = (mant >> shift) * 2^-24 */
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u))) r++;
    return (unsigned short)(sign | r);
}

inline float half_bits_to_float(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        return sign ? -f : f;
    }
    if (e == 31) x = sign | 0x7f800000u | (m << 13);
    else x = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}
} // namespace slm_emu

inline __half __float2half_rn(float f) { return __half{slm_emu::float_to_half_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return slm_emu::half_bits_to_float(h.__x); }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half_rn(a), __float2half_rn(b)}; }
inline __half2 __float2half2_rn(float a) { return __floats2half2_rn(a, a); }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
/* Arithmetic on halves rounds each result to f16, as the f16 instructions do. */
inline __half __hadd(__half a, __half b) { return __float2half_rn(__half2float(a) + __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
inline __half __hfma(__half a, __half b, __half c) {
    return __float2half_rn(__half2float(a) * __half2float(b) + __half2float(c));
}
inline __half operator+(__half a, __half b) { return __hadd(a, b); }
inline __half operator*(__half a, __half b) { return __hmul(a, b); }
inline __half operator-(__half a, __half b) { return __float2half_rn(__half2float(a) - __half2float(b)); }
inline __half operator/(__half a, __half b) { return __float2half_rn(__half2float(a) / __half2float(b)); }
inline bool __hisnan(__half h) { return (h.__x & 0x7c00u) == 0x7c00u && (h.__x & 0x3ffu); }

#endif
