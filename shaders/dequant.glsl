// Dequantization of weight rows read straight from the GGUF block layout in a buffer of 32-bit words
// (binding `w`), so no 8-bit storage feature is needed. Every block starts at an even byte offset (all block
// sizes are even and rows are whole blocks), so 16-bit reads never straddle a word and 32-bit reads straddle
// at most two. One of WTYPE_* selects the format; slm_dq32 produces 32 consecutive elements (the "chunk"
// c of a row: elements 32c .. 32c+31), which is the sub-block granularity of every supported format.

// The words come from the buffer unless the including shader defines SLM_DQ_WORD(i) first (matvec.comp
// copies each block into registers and points it there).
#ifndef SLM_DQ_WORD
#define SLM_DQ_WORD(i) w[i]
#endif
uint w_u8(uint b) { return (SLM_DQ_WORD(b >> 2) >> ((b & 3u) * 8u)) & 0xFFu; }
uint w_u16(uint b) { return (SLM_DQ_WORD(b >> 2) >> ((b & 2u) * 8u)) & 0xFFFFu; }
uint w_u32(uint b) {
    uint i = b >> 2;
    if ((b & 2u) == 0u) return SLM_DQ_WORD(i);
    return (SLM_DQ_WORD(i) >> 16) | (SLM_DQ_WORD(i + 1u) << 16);
}
float w_f16(uint b) { return unpackHalf2x16(w_u16(b)).x; }
// Signed byte k (0..3) of a word.
int s8(uint q, uint k) { return int(q << (24u - 8u * k)) >> 24; }

#include "quant_blocks.glsl"

// rb: byte offset of the row in w; c: chunk index; k: row length (float types may end mid-chunk: zeros).
void slm_dq32(uint rb, uint c, uint k, out float v[32]) {
#if defined(WTYPE_F32)
    uint e0 = c * 32u;
    [[unroll]] for (uint l = 0u; l < 32u; l++) v[l] = e0 + l < k ? uintBitsToFloat(SLM_DQ_WORD((rb >> 2) + e0 + l)) : 0.0;
#elif defined(WTYPE_F16)
    uint e0 = c * 32u;
    [[unroll]] for (uint l = 0u; l < 32u; l++) v[l] = e0 + l < k ? w_f16(rb + 2u * (e0 + l)) : 0.0;
#elif defined(WTYPE_BF16)
    uint e0 = c * 32u;
    [[unroll]] for (uint l = 0u; l < 32u; l++) v[l] = e0 + l < k ? uintBitsToFloat(w_u16(rb + 2u * (e0 + l)) << 16) : 0.0;
#elif defined(WTYPE_Q4_0)
    // 18 bytes: d f16, qs[16]; element j = lo nibble of qs[j], element j+16 = hi nibble; value d * (q - 8)
    uint b = rb + c * 18u;
    float d = w_f16(b);
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint q = w_u32(b + 2u + 4u * i);
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            v[4u * i + k2] = d * (float((q >> (8u * k2)) & 0xFu) - 8.0);
            v[16u + 4u * i + k2] = d * (float((q >> (8u * k2 + 4u)) & 0xFu) - 8.0);
        }
    }
#elif defined(WTYPE_Q4_1)
    // 20 bytes: d f16, m f16, qs[16]; value d * q + m
    uint b = rb + c * 20u;
    float d = w_f16(b), m = w_f16(b + 2u);
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint q = w_u32(b + 4u + 4u * i);
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            v[4u * i + k2] = d * float((q >> (8u * k2)) & 0xFu) + m;
            v[16u + 4u * i + k2] = d * float((q >> (8u * k2 + 4u)) & 0xFu) + m;
        }
    }
#elif defined(WTYPE_Q5_0)
    // 22 bytes: d f16, qh u32 (bit j = 5th bit of element j), qs[16]; value d * (q - 16)
    uint b = rb + c * 22u;
    float d = w_f16(b);
    uint qh = w_u32(b + 2u);
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint q = w_u32(b + 6u + 4u * i);
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            uint j = 4u * i + k2;
            v[j] = d * (float(((q >> (8u * k2)) & 0xFu) | (((qh >> j) & 1u) << 4)) - 16.0);
            v[16u + j] = d * (float(((q >> (8u * k2 + 4u)) & 0xFu) | (((qh >> (j + 16u)) & 1u) << 4)) - 16.0);
        }
    }
#elif defined(WTYPE_Q5_1)
    // 24 bytes: d f16, m f16, qh u32, qs[16]; value d * q + m
    uint b = rb + c * 24u;
    float d = w_f16(b), m = w_f16(b + 2u);
    uint qh = w_u32(b + 4u);
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint q = w_u32(b + 8u + 4u * i);
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            uint j = 4u * i + k2;
            v[j] = d * float(((q >> (8u * k2)) & 0xFu) | (((qh >> j) & 1u) << 4)) + m;
            v[16u + j] = d * float(((q >> (8u * k2 + 4u)) & 0xFu) | (((qh >> (j + 16u)) & 1u) << 4)) + m;
        }
    }
#elif defined(WTYPE_Q8_0)
    // 34 bytes: d f16, qs[32] int8; value d * q
    uint b = rb + c * 34u;
    float d = w_f16(b);
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        uint q = w_u32(b + 2u + 4u * i);
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) v[4u * i + k2] = d * float(s8(q, k2));
    }
#elif defined(WTYPE_Q4_K) || defined(WTYPE_Q5_K)
    // Super-block of 256 = 8 sub-blocks of 32, each with a 6-bit scale and min packed in scales[12]:
    // Q4_K 144 bytes: d, dmin (f16), scales[12], qs[128]
    // Q5_K 176 bytes: d, dmin (f16), scales[12], qh[32], qs[128]
    // Sub-block j takes nibble (j & 1) of qs[32 * (j / 2) + l]; Q5_K adds bit j of qh[l] as bit 4.
    // value = d * scale_j * q - dmin * min_j
#if defined(WTYPE_Q4_K)
    uint b = rb + (c >> 3) * 144u;
    uint qs = b + 16u;
#else
    uint b = rb + (c >> 3) * 176u;
    uint qhb = b + 16u;
    uint qs = b + 48u;
#endif
    uint j = c & 7u;
    float d = w_f16(b), dmin = w_f16(b + 2u);
    uint sb = b + 4u;
    uint sc, mn;
    if (j < 4u) {
        sc = w_u8(sb + j) & 63u;
        mn = w_u8(sb + j + 4u) & 63u;
    } else {
        sc = (w_u8(sb + j + 4u) & 0xFu) | ((w_u8(sb + j - 4u) >> 6) << 4);
        mn = (w_u8(sb + j + 4u) >> 4) | ((w_u8(sb + j) >> 6) << 4);
    }
    float ds = d * float(sc), dm = dmin * float(mn);
    uint qb = qs + 32u * (j >> 1), sh = 4u * (j & 1u);
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        uint q = w_u32(qb + 4u * i);
#if defined(WTYPE_Q5_K)
        uint h = w_u32(qhb + 4u * i);
#endif
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            uint qv = (q >> (8u * k2 + sh)) & 0xFu;
#if defined(WTYPE_Q5_K)
            qv |= ((h >> (8u * k2 + j)) & 1u) << 4;
#endif
            v[4u * i + k2] = ds * float(qv) - dm;
        }
    }
#elif defined(WTYPE_Q6_K)
    // 210 bytes: ql[128], qh[64], scales[16] int8, d f16. Half n = j / 4 covers 128 elements; quarter
    // cq = j % 4 takes nibble (cq >> 1) of ql[64n + 32(cq & 1) + l] and bits 2cq..2cq+1 of qh[32n + l];
    // scale index 8n + 2cq + l / 16; value d * scale * (q - 32)
    uint b = rb + (c >> 3) * 210u;
    uint j = c & 7u, n = j >> 2, cq = j & 3u;
    float d = w_f16(b + 208u);
    uint qlb = b + 64u * n + 32u * (cq & 1u), qhb = b + 128u + 32u * n;
    uint shl = 4u * (cq >> 1), shh = 2u * cq;
    uint scb = b + 192u + 8u * n + 2u * cq;
    float d0 = d * float(int(w_u8(scb) << 24) >> 24), d1 = d * float(int(w_u8(scb + 1u) << 24) >> 24);
    [[unroll]] for (uint i = 0u; i < 8u; i++) {
        uint ql = w_u32(qlb + 4u * i), qh = w_u32(qhb + 4u * i);
        float ds = i < 4u ? d0 : d1;
        [[unroll]] for (uint k2 = 0u; k2 < 4u; k2++) {
            uint q = ((ql >> (8u * k2 + shl)) & 0xFu) | (((qh >> (8u * k2 + shh)) & 3u) << 4);
            v[4u * i + k2] = ds * (float(q) - 32.0);
        }
    }
#else
#error "define one WTYPE_*"
#endif
}
