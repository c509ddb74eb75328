// Shared by every compute shader: the workgroup size comes from specialization constant 0 so the host picks
// it per device without recompiling; workgroup ids are linearised over x and y because large dispatches
// (vocabulary-sized mat-vecs, long element-wise ops) exceed the 65535 limit of one dimension.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG = 64;

uint slm_group_linear() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }
uint slm_global_linear() { return slm_group_linear() * WG + gl_LocalInvocationID.x; }
