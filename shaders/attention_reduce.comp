#version 450
#extension GL_GOOGLE_include_directive : require
// Combines the split-K partials of attention.comp: out = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M)
// over the chunks that saw at least one key (l_c > 0). One workgroup per (head, token).
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 5) readonly buffer Part { float part[]; };

layout(push_constant) uniform P {
    uint hd, n_head, n_chunks;
    uint o_off, o_stride;
} p;

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint base = (t * p.n_head + h) * p.n_chunks * (p.hd + 2u);
    float M = -1.0 / 0.0;
    for (uint c = 0u; c < p.n_chunks; c++) {
        uint pb = base + c * (p.hd + 2u);
        if (part[pb + p.hd + 1u] > 0.0) M = max(M, part[pb + p.hd]);
    }
    float L = 0.0;
    for (uint c = 0u; c < p.n_chunks; c++) {
        uint pb = base + c * (p.hd + 2u);
        float lc = part[pb + p.hd + 1u];
        if (lc > 0.0) L += lc * exp(part[pb + p.hd] - M);
    }
    float inv = L > 0.0 ? 1.0 / L : 0.0;
    uint ob = p.o_off + t * p.o_stride + h * p.hd;
    for (uint d = tid; d < p.hd; d += WG) {
        float a = 0.0;
        for (uint c = 0u; c < p.n_chunks; c++) {
            uint pb = base + c * (p.hd + 2u);
            float lc = part[pb + p.hd + 1u];
            if (lc > 0.0) a += part[pb + d] * exp(part[pb + p.hd] - M);
        }
        o[ob + d] = a * inv;
    }
}
