#version 450
#extension GL_GOOGLE_include_directive : require
// dst f32 [n, T] = rows ids[t] of a weight table [n, n_vocab] of any type, times scale. One thread per
// 32-element chunk.
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 2) readonly buffer I { int ids[]; };

layout(push_constant) uniform P {
    uint n, T;
    uint w_off, w_stride;   // bytes
    uint id_off;            // ints
    uint y_off, y_stride;   // floats
    float scale;
} p;

#include "dequant.glsl"

void main() {
    uint g = slm_global_linear();
    uint nch = (p.n + 31u) / 32u;
    if (g >= nch * p.T) return;
    uint t = g / nch, c = g % nch;
    uint id = uint(ids[p.id_off + t]);
    float v[32];
    slm_dq32(p.w_off + id * p.w_stride, c, p.n, v);
    uint e0 = c * 32u, yb = p.y_off + t * p.y_stride + e0;
    uint m = min(32u, p.n - e0);
    for (uint l = 0u; l < m; l++) y[yb + l] = v[l] * p.scale;
}
