#version 450
#extension GL_GOOGLE_include_directive : require
// dst f32 [N, T] = W [K, N] (any weight type, row r = output r) . x f32 [K, T] (+ bias f32 [N]).
// One workgroup per weight row and per group of up to NC columns (tokens): each thread dequantizes 32-element
// chunks of the row in registers (never to memory) and multiplies each with the NC activation columns, so a
// prompt batch reads each weight byte once per NC tokens. At T = 1 this is the decode mat-vec.
// Reduction across the workgroup: subgroupAdd where the device has subgroup arithmetic (USE_SUBGROUP), else
// a shared-memory tree.
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif

layout(constant_id = 1) const uint NC = 8;   // columns per workgroup

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

shared float red[WG * NC];

void main() {
    uint row = slm_group_linear();
    if (row >= p.N) return;   // uniform over the workgroup
    uint c0 = gl_WorkGroupID.z * NC;
    uint nc = min(NC, p.T - c0);
    uint tid = gl_LocalInvocationID.x;
    uint rb = p.w_off + row * p.w_stride;
    uint nchunks = (p.K + 31u) / 32u;

    float acc[NC];
    [[unroll]] for (uint j = 0u; j < NC; j++) acc[j] = 0.0;

    for (uint c = tid; c < nchunks; c += WG) {
        float v[32];
        slm_dq32(rb, c, p.K, v);
        uint e0 = c * 32u;
        for (uint j = 0u; j < nc; j++) {
            uint xb = p.x_off + (c0 + j) * p.x_stride + e0;
            float s = 0.0;
#ifdef SLM_FLOAT_WEIGHTS
            uint m = min(32u, p.K - e0);
            for (uint l = 0u; l < m; l++) s += v[l] * x[xb + l];
#else
            [[unroll]] for (uint l = 0u; l < 32u; l++) s += v[l] * x[xb + l];
#endif
            acc[j] += s;
        }
    }

#ifdef USE_SUBGROUP
    [[unroll]] for (uint j = 0u; j < NC; j++) acc[j] = subgroupAdd(acc[j]);
    if (gl_NumSubgroups > 1u) {
        if (gl_SubgroupInvocationID == 0u)
            [[unroll]] for (uint j = 0u; j < NC; j++) red[j * WG + gl_SubgroupID] = acc[j];
        barrier();
        if (tid == 0u)
            for (uint j = 0u; j < nc; j++) {
                float s = 0.0;
                for (uint g = 0u; g < gl_NumSubgroups; g++) s += red[j * WG + g];
                acc[j] = s;
            }
    }
#else
    [[unroll]] for (uint j = 0u; j < NC; j++) red[j * WG + tid] = acc[j];
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s)
            [[unroll]] for (uint j = 0u; j < NC; j++) red[j * WG + tid] += red[j * WG + tid + s];
        barrier();
    }
    if (tid == 0u) [[unroll]] for (uint j = 0u; j < NC; j++) acc[j] = red[j * WG];
#endif
    if (tid == 0u) {
        float bv = p.has_bias != 0u ? bias[p.b_off + row] : 0.0;
        for (uint j = 0u; j < nc; j++) y[p.y_off + (c0 + j) * p.y_stride + row] = acc[j] + bv;
    }
}
