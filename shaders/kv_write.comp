#version 450
#extension GL_GOOGLE_include_directive : require
// Cache f16 [n, n_ctx]: row pos[t] = x f32 [n, T] column t, converted to f16. One thread per element.
#include "common.glsl"
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable

layout(std430, binding = 0) writeonly buffer C { float16_t cache[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer Pos { int pos[]; };

layout(push_constant) uniform P {
    uint n, T;
    uint c_off, c_stride;   // halves
    uint x_off, x_stride;   // floats
    uint pos_off;
} p;

void main() {
    uint g = slm_global_linear();
    if (g >= p.n * p.T) return;
    uint t = g / p.n, i = g % p.n;
    cache[p.c_off + uint(pos[p.pos_off + t]) * p.c_stride + i] = float16_t(x[p.x_off + t * p.x_stride + i]);
}
