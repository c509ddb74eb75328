#version 450
#extension GL_GOOGLE_include_directive : require
// In-place rotary embedding of x f32 [head_dim, n_head, T] at positions pos[t]. One thread per rotated pair:
// pairs (2i, 2i+1) in normal mode, (i, i + n_rot/2) in NeoX mode, i < n_rot/2; elements past n_rot stay.
// theta_i = pos * base^(-2i/n_rot) * freq_scale / factor_i. The angle is reduced to [-pi, pi] before
// sin/cos because Vulkan only bounds their error on that interval.
#include "common.glsl"

layout(std430, binding = 0) buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Pos { int pos[]; };
layout(std430, binding = 2) readonly buffer Ff { float ff[]; };

layout(push_constant) uniform P {
    uint n_head, T, n_rot, neox;
    uint x_off, head_stride, tok_stride;   // floats
    uint pos_off, has_ff, ff_off;
    float freq_base, freq_scale;
} p;

void main() {
    uint g = slm_global_linear();
    uint half_rot = p.n_rot / 2u;
    if (g >= half_rot * p.n_head * p.T) return;
    uint i = g % half_rot, h = (g / half_rot) % p.n_head, t = g / (half_rot * p.n_head);
    float theta = float(pos[p.pos_off + t]) * exp2(-2.0 * float(i) / float(p.n_rot) * log2(p.freq_base)) * p.freq_scale;
    if (p.has_ff != 0u) theta /= ff[p.ff_off + i];
    const float two_pi = 6.28318530717958647692;
    theta -= two_pi * floor(theta / two_pi + 0.5);
    float cs = cos(theta), sn = sin(theta);
    uint b = p.x_off + t * p.tok_stride + h * p.head_stride;
    uint i0 = p.neox != 0u ? i : 2u * i;
    uint i1 = p.neox != 0u ? i + half_rot : 2u * i + 1u;
    float a = x[b + i0], c = x[b + i1];
    x[b + i0] = a * cs - c * sn;
    x[b + i1] = a * sn + c * cs;
}
