#version 450
#extension GL_GOOGLE_include_directive : require
// OP_ADD: y = a + b; OP_SWIGLU: y = silu(a) * b; over [n, T] columns with their own strides. y may alias a.
#include "common.glsl"

layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer Bb { float b[]; };

layout(push_constant) uniform P {
    uint n, T;
    uint a_off, a_stride, b_off, b_stride, y_off, y_stride;
} p;

void main() {
    uint g = slm_global_linear();
    if (g >= p.n * p.T) return;
    uint t = g / p.n, i = g % p.n;
    float av = a[p.a_off + t * p.a_stride + i], bv = b[p.b_off + t * p.b_stride + i];
#ifdef OP_ADD
    y[p.y_off + t * p.y_stride + i] = av + bv;
#else
    y[p.y_off + t * p.y_stride + i] = av / (1.0 + exp(-av)) * bv;
#endif
}
