#version 450
#extension GL_GOOGLE_include_directive : require
// dst f32 [N, T] = W [K, N] (any weight type) . x f32 [K, T] (+ bias f32 [N]): the mat-vec for CPU Vulkan
// drivers (lavapipe). There an invocation is one SIMD lane, every buffer load instruction becomes a loop
// over the lanes whatever its width, and both sides of a branch run under a mask. So each invocation owns
// RPT whole rows (no reduction, no barrier, no shared memory), copies each weight block into registers with
// vec4 loads and dequantizes it there (dequant.glsl reading `blk`), reads every activation
// chunk once for its RPT rows, as vec4 when X_VEC4 says the offset and stride allow. Variants are chosen by
// specialization constants so that no unused path is compiled in. One z workgroup per column (token).
#include "common.glsl"

layout(constant_id = 1) const uint RPT = 2;            // rows per invocation
layout(constant_id = 2) const bool X_VEC4 = false;     // x_off and x_stride are multiples of 4 floats
layout(constant_id = 3) const bool W_ALIGN4 = false;   // every block starts on a word (row starts and
                                                       // block size multiples of 4 bytes)

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer W4 { uvec4 w4[]; };   // the same words, for wide loads
layout(std430, binding = 2) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };

layout(push_constant) uniform P {
    uint K, N, T;
    uint w_off, w_stride;   // bytes
    uint x_off, x_stride;   // floats
    uint y_off, y_stride;   // floats
    uint b_off, has_bias;
} p;

// The current block of each of the RPT rows, as words aligned to the block's first byte.
#include "quant_blocks.glsl"
uint blk[RPT * SLM_BLOCK_WORDS];
uint blk_base;   // which row's block dequant.glsl reads (a constant once the row loop is unrolled)
#define SLM_DQ_WORD(i) blk[blk_base + (i)]
#include "dequant.glsl"

// Copies the block at byte b of a row into blk[base ..] as words aligned to its first byte. The loads are
// vec4s (one load instruction per 4 words) from the 16-byte boundary below the block; the block's phase
// within them is picked with selects. The index is clamped to the row's last vec4 (last_q), so neither a
// float row's partial chunk nor the spare word ever reads past the row's 16-byte-rounded end.
#define SLM_BLOCK_VEC4 ((SLM_BLOCK_WORDS + 6u) / 4u)   // vec4s that cover a block (+ its spare word) at any phase
void load_block(uint base, uint b, uint last_q) {
    const uint nw = (SLM_BLOCK_BYTES + 3u) / 4u;   // words of the block
    const uint need = W_ALIGN4 ? nw : nw + 1u;     // a block at 2 mod 4 needs the word after it too
    const uint nq = (need + 3u + 3u) / 4u;
    uint wi = b >> 2, ph = wi & 3u, q0 = wi >> 2;
    uint raw[4u * SLM_BLOCK_VEC4];
    [[unroll]] for (uint j = 0u; j < SLM_BLOCK_VEC4; j++) {
        if (j < nq) {   // constant once specialised
            uvec4 q = w4[min(q0 + j, last_q)];
            raw[4u * j] = q.x; raw[4u * j + 1u] = q.y; raw[4u * j + 2u] = q.z; raw[4u * j + 3u] = q.w;
        }
    }
    [[unroll]] for (uint k = 0u; k < SLM_BLOCK_WORDS; k++) {
        if (k < need)
            blk[base + k] = ph == 0u ? raw[k] : ph == 1u ? raw[k + 1u] : ph == 2u ? raw[k + 2u] : raw[k + 3u];
    }
    if (!W_ALIGN4) {
        bool odd = (b & 2u) != 0u;   // shift the words down by 16 bits
        [[unroll]] for (uint k = 0u; k < nw; k++)
            blk[base + k] = odd ? (blk[base + k] >> 16) | (blk[base + k + 1u] << 16) : blk[base + k];
    }
}

void main() {
    uint row0 = slm_group_linear() * (WG * RPT) + gl_LocalInvocationID.x;   // rows row0 + r * WG
    uint col = gl_WorkGroupID.z;
    uint xb = p.x_off + col * p.x_stride;
    uint nblk = p.K / SLM_BLOCK_ELEMS;   // whole blocks (quantized rows have nothing else)

    uint rb[RPT], last_q[RPT];
    [[unroll]] for (uint r = 0u; r < RPT; r++) {
        uint row = min(row0 + r * WG, p.N - 1u);   // past the end: compute a real row, store nothing
        rb[r] = p.w_off + row * p.w_stride;
        last_q[r] = (rb[r] + p.w_stride - 1u) >> 4;
    }
    float acc[RPT];
    [[unroll]] for (uint r = 0u; r < RPT; r++) acc[r] = 0.0;

    for (uint bi = 0u; bi < nblk; bi++) {
        [[unroll]] for (uint r = 0u; r < RPT; r++) load_block(r * SLM_BLOCK_WORDS, rb[r] + bi * SLM_BLOCK_BYTES, last_q[r]);
        [[unroll]] for (uint cc = 0u; cc < SLM_BLOCK_ELEMS / 32u; cc++) {
            uint e = xb + bi * SLM_BLOCK_ELEMS + cc * 32u;
            float xv[32];
            if (X_VEC4) {
                [[unroll]] for (uint l = 0u; l < 8u; l++) {
                    vec4 q = x4[(e >> 2) + l];
                    xv[4u * l] = q.x; xv[4u * l + 1u] = q.y; xv[4u * l + 2u] = q.z; xv[4u * l + 3u] = q.w;
                }
            } else {
                [[unroll]] for (uint l = 0u; l < 32u; l++) xv[l] = x[e + l];
            }
            [[unroll]] for (uint r = 0u; r < RPT; r++) {
                blk_base = r * SLM_BLOCK_WORDS;
                float v[32];
                slm_dq32(0u, cc, 32u, v);
                float s = 0.0;
                [[unroll]] for (uint l = 0u; l < 32u; l++) s += v[l] * xv[l];
                acc[r] += s;
            }
        }
    }
#ifdef SLM_FLOAT_WEIGHTS
    // the rest of a float row that is not a multiple of 32 (a real loop: it runs only when K % 32 != 0)
    for (uint e = nblk * 32u; e < p.K; e++) {
        float xe = x[xb + e];
        [[unroll]] for (uint r = 0u; r < RPT; r++) {
#if defined(WTYPE_F32)
            float we = uintBitsToFloat(w[(rb[r] >> 2) + e]);
#elif defined(WTYPE_F16)
            uint b = rb[r] + 2u * e;
            float we = unpackHalf2x16((w[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu).x;
#else
            uint b = rb[r] + 2u * e;
            float we = uintBitsToFloat(((w[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu) << 16);
#endif
            acc[r] += we * xe;
        }
    }
#endif
    [[unroll]] for (uint r = 0u; r < RPT; r++) {
        uint row = row0 + r * WG;
        if (row < p.N) {
            float bv = bias[p.has_bias != 0u ? p.b_off + row : 0u];   // index 0 of the dummy when absent
            y[p.y_off + col * p.y_stride + row] = acc[r] + (p.has_bias != 0u ? bv : 0.0);
        }
    }
}
