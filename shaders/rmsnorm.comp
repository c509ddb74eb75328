#version 450
#extension GL_GOOGLE_include_directive : require
// dst f32 [n, T] = x / sqrt(mean(x^2) + eps) * w, fused with the weight. One workgroup per token.
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer Wt { float wt[]; };

layout(push_constant) uniform P {
    uint n, T;
    uint x_off, x_stride, w_off, y_off, y_stride;
    float eps;
} p;

shared float red[WG];

void main() {
    uint t = slm_group_linear();
    if (t >= p.T) return;
    uint tid = gl_LocalInvocationID.x;
    uint xb = p.x_off + t * p.x_stride;
    float s = 0.0;
    for (uint i = tid; i < p.n; i += WG) {
        float v = x[xb + i];
        s += v * v;
    }
    red[tid] = s;
    barrier();
    for (uint k = WG / 2u; k > 0u; k >>= 1) {
        if (tid < k) red[tid] += red[tid + k];
        barrier();
    }
    float scale = inversesqrt(red[0] / float(p.n) + p.eps);
    uint yb = p.y_off + t * p.y_stride;
    for (uint i = tid; i < p.n; i += WG) y[yb + i] = x[xb + i] * scale * wt[p.w_off + i];
}
