#version 450
#extension GL_GOOGLE_include_directive : require
// OP_ADD: y = a + b; OP_SWIGLU: y = silu(a) * b; OP_GEGLU: y = gelu(a) * b (tanh form); over [n, T] columns with their own strides. y may alias a.
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
#if defined(OP_ADD)
    y[p.y_off + t * p.y_stride + i] = av + bv;
#elif defined(OP_GEGLU)
    // x/2 (1 + tanh(u)) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): no tanh of a large argument
    // (inf / inf in some drivers); e^(-2u) overflowing to inf gives -0, as gelu does far below 0
    float u2 = 1.5957691216057308 * (av + 0.044715 * av * av * av);
    y[p.y_off + t * p.y_stride + i] = av / (1.0 + exp(-u2)) * bv;
#else
    y[p.y_off + t * p.y_stride + i] = av / (1.0 + exp(-av)) * bv;
#endif
}
