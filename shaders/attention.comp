#version 450
#extension GL_GOOGLE_include_directive : require
// Causal grouped-query attention of q f32 [head_dim * n_head, T] over the f16 K/V cache
// [head_dim * n_head_kv, n_ctx]. Token t sees cache rows 0..pos[t], the last `window` of them with a window (positions are read on the device so a
// recorded command buffer stays valid as the sequence grows).
// One workgroup per (head, token, chunk of the context); keys are taken WG at a time: each thread scores one
// key, then the tile updates a running max / sum / weighted V accumulator (online softmax), so no score
// array of context length is needed. With n_chunks > 1 (split-K, long contexts at batch 1) each chunk writes
// its partial (acc, max, sum) and attention_reduce.comp combines them.
#include "common.glsl"
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable

#define MAX_HD 256u
#define PER_T ((MAX_HD + WG - 1u) / WG)

layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer Q { float q[]; };
layout(std430, binding = 2) readonly buffer Kc { float16_t kc[]; };
layout(std430, binding = 3) readonly buffer Vc { float16_t vc[]; };
layout(std430, binding = 4) readonly buffer Pos { int pos[]; };
layout(std430, binding = 5) writeonly buffer Part { float part[]; };

layout(push_constant) uniform P {
    uint hd, n_head, n_head_kv, T;
    uint q_off, q_stride;     // floats
    uint k_off, k_stride;     // halves
    uint v_off, v_stride;     // halves
    uint pos_off;
    uint o_off, o_stride;     // floats
    uint n_chunks, chunk_len;
    float scale;
    uint window;              // sliding window in positions, 0: none
} p;

shared float qs[MAX_HD];
shared float sc[WG];
shared float red[WG];

float wg_reduce_max(float v) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] = max(red[tid], red[tid + s]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

float wg_reduce_sum(float v) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, ch = gl_WorkGroupID.z;
    uint tid = gl_LocalInvocationID.x;
    uint kh = h / (p.n_head / p.n_head_kv);
    uint n_kv = uint(pos[p.pos_off + t]) + 1u;
    // a sliding window shows rows n_kv - window .. n_kv - 1 only; chunks before it see nothing
    uint first = p.window > 0u && n_kv > p.window ? n_kv - p.window : 0u;
    uint start = max(ch * p.chunk_len, first);
    uint end = min(ch * p.chunk_len + p.chunk_len, n_kv);

    uint qb = p.q_off + t * p.q_stride + h * p.hd;
    for (uint d = tid; d < p.hd; d += WG) qs[d] = q[qb + d] * p.scale;
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    float acc[PER_T];
    [[unroll]] for (uint i = 0u; i < PER_T; i++) acc[i] = 0.0;

    for (uint kb = start; kb < end; kb += WG) {
        uint key = kb + tid;
        float s = -1.0 / 0.0;
        if (key < end) {
            uint kr = p.k_off + key * p.k_stride + kh * p.hd;
            s = 0.0;
            for (uint d = 0u; d < p.hd; d++) s += qs[d] * float(kc[kr + d]);
        }
        float m_new = max(m, wg_reduce_max(s));
        float alpha = exp(m - m_new);
        float pr = key < end ? exp(s - m_new) : 0.0;
        sc[tid] = pr;
        l = l * alpha + wg_reduce_sum(pr);   // the reduction's barriers also publish sc[]
        uint n_tile = min(WG, end - kb);
        [[unroll]] for (uint i = 0u; i < PER_T; i++) {
            uint d = tid + i * WG;
            if (d < p.hd) {
                float a = acc[i] * alpha;
                uint vb = p.v_off + kb * p.v_stride + kh * p.hd + d;
                for (uint k = 0u; k < n_tile; k++) a += sc[k] * float(vc[vb + k * p.v_stride]);
                acc[i] = a;
            }
        }
        m = m_new;
        barrier();   // sc[] is rewritten by the next tile
    }

    if (p.n_chunks == 1u) {
        uint ob = p.o_off + t * p.o_stride + h * p.hd;
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        [[unroll]] for (uint i = 0u; i < PER_T; i++) {
            uint d = tid + i * WG;
            if (d < p.hd) o[ob + d] = acc[i] * inv;
        }
    } else {
        // partial record: [acc(hd), max, sum] per (token, head, chunk)
        uint pb = ((t * p.n_head + h) * p.n_chunks + ch) * (p.hd + 2u);
        [[unroll]] for (uint i = 0u; i < PER_T; i++) {
            uint d = tid + i * WG;
            if (d < p.hd) part[pb + d] = acc[i];
        }
        if (tid == 0u) {
            part[pb + p.hd] = m;
            part[pb + p.hd + 1u] = l;
        }
    }
}
