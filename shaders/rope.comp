#version 450
#extension GL_GOOGLE_include_directive : require
// In-place rotary embedding of x f32 [head_dim, n_head, T] at positions pos[t]. One thread per rotated pair:
// pairs (2i, 2i+1) in normal mode, (i, i + n_rot/2) in NeoX mode, i < n_rot/2; elements past n_rot stay.
// theta_i = pos * base^(-2i/n_rot) * freq_scale / factor_i.
//
// The angle agrees with the reference's double at long contexts: formed in float it is off by pos * 2^-24
// and more (0.01 rad at 128k), and GLSL has double only behind an optional feature (shaderFloat64, which
// many cards lack or run slowly, with no double sin/cos anyway). So it is carried as a float pair hi + lo
// (~48 bits): r = base^(-2/n_rot) comes from the host as such a pair (computed in double there), r^i by
// squaring, then the product with pos and the reduction to [-pi, pi] against 2*pi as a pair too. Only the
// reduced angle, small now, is rounded to float for sin/cos (Vulkan bounds their error on [-pi, pi] only).
// The error-free steps (two_prod, two_sum) must not be contracted into fma or reassociated: `precise`.
#include "common.glsl"

layout(std430, binding = 0) buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Pos { int pos[]; };
layout(std430, binding = 2) readonly buffer Ff { float ff[]; };

layout(push_constant) uniform P {
    uint n_head, T, n_rot, neox;
    uint x_off, head_stride, tok_stride;   // floats
    uint pos_off, has_ff, ff_off;
    float freq_scale;
    float r_hi, r_lo;                      // base^(-2/n_rot) = r_hi + r_lo
} p;

// a = result.x + result.y with each half of 12 significant bits, so that their products are exact (Veltkamp)
vec2 split(float a) {
    precise float c = 4097.0 * a;
    precise float hi = c - (c - a);
    precise float lo = a - hi;
    return vec2(hi, lo);
}

// a * b = result.x + result.y exactly (Dekker). Not fma(a, b, -h): Vulkan lets fma round twice.
vec2 two_prod(float a, float b) {
    precise float h = a * b;
    vec2 as = split(a), bs = split(b);
    precise float l = (((as.x * bs.x - h) + as.x * bs.y) + as.y * bs.x) + as.y * bs.y;
    return vec2(h, l);
}

// a + b = result.x + result.y exactly, any magnitudes
vec2 two_sum(float a, float b) {
    precise float s = a + b;
    precise float bb = s - a;
    precise float e = (a - (s - bb)) + (b - bb);
    return vec2(s, e);
}

// |a| >= |b|
vec2 fast_two_sum(float a, float b) {
    precise float s = a + b;
    precise float e = b - (s - a);
    return vec2(s, e);
}

vec2 pair_mul(vec2 a, vec2 b) {
    vec2 pr = two_prod(a.x, b.x);
    precise float l = pr.y + (a.x * b.y + a.y * b.x);
    return fast_two_sum(pr.x, l);
}

vec2 pair_add(vec2 a, vec2 b) {
    vec2 s = two_sum(a.x, b.x);
    precise float l = s.y + (a.y + b.y);
    return fast_two_sum(s.x, l);
}

// a / d for a float d: the quotient's float part, then the rest of a divided again
vec2 pair_div(vec2 a, float d) {
    precise float q1 = a.x / d;
    vec2 pr = two_prod(q1, d);
    precise float rem = ((a.x - pr.x) - pr.y) + a.y;
    precise float q2 = rem / d;
    return fast_two_sum(q1, q2);
}

void main() {
    uint g = slm_global_linear();
    uint half_rot = p.n_rot / 2u;
    if (g >= half_rot * p.n_head * p.T) return;
    uint i = g % half_rot, h = (g / half_rot) % p.n_head, t = g / (half_rot * p.n_head);

    vec2 f = vec2(1.0, 0.0), sq = vec2(p.r_hi, p.r_lo);
    for (uint e = i; e != 0u; e >>= 1) { // r^i by squaring: a few pair products, ~2^-46 relative each
        if ((e & 1u) != 0u) f = pair_mul(f, sq);
        if (e > 1u) sq = pair_mul(sq, sq);
    }
    f = pair_mul(f, vec2(p.freq_scale, 0.0));
    if (p.has_ff != 0u) f = pair_div(f, ff[p.ff_off + i]);
    // float(pos) is exact below 2^24 positions
    vec2 theta = pair_mul(f, vec2(float(pos[p.pos_off + t]), 0.0));

    // theta - k * 2pi, 2pi = TWO_PI_HI + TWO_PI_LO (the rest, ~2pi * 2^-48, times k < 2^20 stays below 1e-8)
    const float TWO_PI_HI = 6.28318548202514648438;     // float(2pi)
    const float TWO_PI_LO = -1.74845553146951715e-07;   // 2pi - TWO_PI_HI
    float k = floor(theta.x * 0.15915494309189535 + 0.5);
    theta = pair_add(theta, -two_prod(k, TWO_PI_HI));
    theta = pair_add(theta, -two_prod(k, TWO_PI_LO));
    precise float a_red = theta.x + theta.y;

    float cs = cos(a_red), sn = sin(a_red);
    uint b = p.x_off + t * p.tok_stride + h * p.head_stride;
    uint i0 = p.neox != 0u ? i : 2u * i;
    uint i1 = p.neox != 0u ? i + half_rot : 2u * i + 1u;
    float a = x[b + i0], c = x[b + i1];
    x[b + i0] = a * cs - c * sn;
    x[b + i1] = a * sn + c * cs;
}
