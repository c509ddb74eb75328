#version 450
#extension GL_GOOGLE_include_directive : require
// Reads a large buffer once (vec4 per load, grid-strided) and writes one sum per workgroup so the loads are
// not optimised away: the device's achievable read bandwidth, for the planner's cost model.
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer S { vec4 s[]; };

layout(push_constant) uniform P { uint n_vec4; } p;

void main() {
    uint g = slm_global_linear();
    uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    vec4 acc = vec4(0.0);
    for (uint i = g; i < p.n_vec4; i += stride) acc += s[i];
    float r = acc.x + acc.y + acc.z + acc.w;
    if (r == 1234.5678) y[slm_group_linear()] = r;   // practically never; keeps the loads alive
}
