#version 450
#extension GL_GOOGLE_include_directive : require
// dst f32 [N, T] = W [K, N] (any weight type) . x f32 [K, T] (+ bias f32 [N]) for prompt batches.
// A workgroup of 128 threads owns a tile of BM = 128 weight rows x BN = 32 tokens. Per step of BK = 32 along
// K, thread t dequantizes the 32-element chunk of row t (dequant.glsl, in registers) into shared memory and
// copies 8 activations of one token; then each thread accumulates an 8 x 4 register block (rows tx + 16 i,
// tokens 4 ty + j) from the two tiles. Each weight byte is thus read and dequantized once per 32 tokens
// (matmul.comp: once per 8) and each activation once per 128 rows.
// Both tiles are row-major [row or token][k] in vec4s, so the dequantizing thread writes 8 vec4s and the
// inner loop reads 4 k at a time as one vec4 per row and per token. A row is 9 vec4s (one of padding) so
// that the 8 threads of one 128-bit load phase read 8 different bank groups on GPUs; rows of a thread are
// 16 apart so neighbouring threads also store neighbouring rows. Rows, tokens and K that do not fill a tile
// are clamped (or zeroed) on load and dropped on store.
#include "common.glsl"

#define BM 128u   // rows per tile = threads per workgroup (the host specialises WG to 128)
#define BN 32u    // tokens per tile
#define BK 32u    // K per step: one chunk
#define TM 8u     // rows per thread: tx + 16 i
#define TN 4u     // tokens per thread: 4 ty + j
#define RS 9u     // row stride of both tiles in vec4s (8 of data, 1 of padding)

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 2) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };

layout(push_constant) uniform P {
    uint K, N, T;
    uint w_off, w_stride;   // bytes
    uint x_off, x_stride;   // floats
    uint y_off, y_stride;   // floats
    uint b_off, has_bias;
} p;

#include "dequant.glsl"

shared vec4 ws[BM * RS];   // [row][k / 4]
shared vec4 xs[BN * RS];   // [token][k / 4]

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint m_base = slm_group_linear() * BM;
    uint n_base = gl_WorkGroupID.z * BN;
    uint tx = tid % 16u, ty = tid / 16u;

    // the row this thread dequantizes; past the end: the last row (computed, never stored)
    uint rb = p.w_off + min(m_base + tid, p.N - 1u) * p.w_stride;
    // the activations it copies: token tid / 4 (clamped), k (tid % 4) * 8 .. + 8
    uint ld_tok = tid / 4u, ld_k = (tid % 4u) * 8u;
    uint xcol = p.x_off + min(n_base + ld_tok, p.T - 1u) * p.x_stride;

    vec4 acc[TM];   // acc[i][j]: row tx + 16 i, token 4 ty + j
    [[unroll]] for (uint i = 0u; i < TM; i++) acc[i] = vec4(0.0);

    uint nchunks = (p.K + 31u) / 32u;
    for (uint c = 0u; c < nchunks; c++) {
        float v[32];
        slm_dq32(rb, c, p.K, v);   // float types: zeros past K
        [[unroll]] for (uint q = 0u; q < 8u; q++)
            ws[tid * RS + q] = vec4(v[4u * q], v[4u * q + 1u], v[4u * q + 2u], v[4u * q + 3u]);
        float xv[8];
        [[unroll]] for (uint k = 0u; k < 8u; k++) {
            uint e = c * BK + ld_k + k;
            float t = x[xcol + min(e, p.K - 1u)];   // a clamped index never leaves x; zero past K
            xv[k] = e < p.K ? t : 0.0;
        }
        xs[ld_tok * RS + ld_k / 4u] = vec4(xv[0], xv[1], xv[2], xv[3]);
        xs[ld_tok * RS + ld_k / 4u + 1u] = vec4(xv[4], xv[5], xv[6], xv[7]);
        barrier();
        [[unroll]] for (uint q = 0u; q < 8u; q++) {
            vec4 b0 = xs[(4u * ty) * RS + q], b1 = xs[(4u * ty + 1u) * RS + q];
            vec4 b2 = xs[(4u * ty + 2u) * RS + q], b3 = xs[(4u * ty + 3u) * RS + q];
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                vec4 a = ws[(tx + 16u * i) * RS + q];
                acc[i] += vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
            }
        }
        barrier();
    }

    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint row = m_base + tx + 16u * i;
        float bv = bias[p.has_bias != 0u ? p.b_off + min(row, p.N - 1u) : 0u];   // index 0 of the dummy when absent
        if (p.has_bias == 0u) bv = 0.0;
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint tok = n_base + 4u * ty + j;
            if (row < p.N && tok < p.T) y[p.y_off + tok * p.y_stride + row] = acc[i][j] + bv;
        }
    }
}
