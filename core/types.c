#include "types.h"

#include <stdio.h>
#include <string.h>

#include "quant_blocks.h"

static const slm_dtype_info k_types[SLM_DTYPE_COUNT] = {
    [SLM_F32] = {"f32", 1, 4},
    [SLM_F16] = {"f16", 1, 2},
    [SLM_Q4_0] = {"q4_0", SLM_QK, SLM_Q4_0_BYTES},
    [SLM_Q4_1] = {"q4_1", SLM_QK, SLM_Q4_1_BYTES},
    [SLM_Q5_0] = {"q5_0", SLM_QK, SLM_Q5_0_BYTES},
    [SLM_Q5_1] = {"q5_1", SLM_QK, SLM_Q5_1_BYTES},
    [SLM_Q8_0] = {"q8_0", SLM_QK, SLM_Q8_0_BYTES},
    [SLM_Q4_K] = {"q4_k", SLM_QK_K, SLM_Q4_K_BYTES},
    [SLM_Q5_K] = {"q5_k", SLM_QK_K, SLM_Q5_K_BYTES},
    [SLM_Q6_K] = {"q6_k", SLM_QK_K, SLM_Q6_K_BYTES},
    [SLM_I32] = {"i32", 1, 4},
    [SLM_BF16] = {"bf16", 1, 2},
};

const slm_dtype_info *slm_dtype_get(uint32_t id) {
    if (id >= SLM_DTYPE_COUNT || !k_types[id].name) return NULL;
    return &k_types[id];
}

bool slm_dtype_known(uint32_t id) { return slm_dtype_get(id) != NULL; }

const char *slm_dtype_name(uint32_t id) {
    /* Names of GGUF types this build does not run, so error messages can say what the file holds. */
    static const char *const other[] = {
        [9] = "q8_1",     [10] = "q2_k",  [11] = "q3_k",   [15] = "q8_k",  [16] = "iq2_xxs", [17] = "iq2_xs",
        [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s", [22] = "iq2_s",   [23] = "iq4_xs",
        [24] = "i8",      [25] = "i16",   [27] = "i64",    [28] = "f64",   [29] = "iq1_m"};
    const slm_dtype_info *t = slm_dtype_get(id);
    if (t) return t->name;
    if (id < sizeof other / sizeof other[0] && other[id]) return other[id];
    return "unknown";
}

size_t slm_dtype_row_bytes(slm_dtype t, int64_t n) {
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    if (!ti || n < 0 || n % ti->block_elems) return 0;
    return (size_t)(n / ti->block_elems) * (size_t)ti->block_bytes;
}

bool slm_dtype_is_quant(slm_dtype t) {
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    return ti && ti->block_elems > 1;
}

float slm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t slm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* carry into exponent is correct */
    return (uint16_t)(sign | half);
}

float slm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
