/* The push constants of each shader as C structs: member for member the `layout(push_constant)` block of the
 * .comp file named on each struct (scalars only, so std430 places them 4 bytes apart in declaration order
 * and the C layout below is the same bytes). vk_record.c fills these; a block changed in a shader must be
 * changed here in the same order. */
#ifndef SLM_VK_PUSH_H
#define SLM_VK_PUSH_H

#include <stddef.h>
#include <stdint.h>

/* Asserts that struct s has n 4-byte members with `last` the n-th, so no member moved or went missing. */
#define VK_PUSH_LAYOUT(s, n, last)                                                                                     \
    _Static_assert(sizeof(s) == 4 * (n), #s ": " #n " 4-byte members");                                                \
    _Static_assert(offsetof(s, last) == 4 * ((n)-1), #s ": " #last " is member " #n)

/* matmul.comp, matmul_tiled.comp, matvec.comp. Offsets and strides: w in bytes, x, y, b in floats. */
typedef struct vk_push_matmul {
    uint32_t K, N, T;
    uint32_t w_off, w_stride;
    uint32_t x_off, x_stride;
    uint32_t y_off, y_stride;
    uint32_t b_off, has_bias;
} vk_push_matmul;
VK_PUSH_LAYOUT(vk_push_matmul, 11, has_bias);
_Static_assert(offsetof(vk_push_matmul, w_off) == 12 && offsetof(vk_push_matmul, x_off) == 20 &&
                   offsetof(vk_push_matmul, y_off) == 28,
               "vk_push_matmul offsets");

/* embed.comp: w in bytes, ids in ints, y in floats. */
typedef struct vk_push_embed {
    uint32_t n, T;
    uint32_t w_off, w_stride;
    uint32_t id_off;
    uint32_t y_off, y_stride;
    float scale;
} vk_push_embed;
VK_PUSH_LAYOUT(vk_push_embed, 8, scale);

/* rmsnorm.comp: floats. */
typedef struct vk_push_rmsnorm {
    uint32_t n, T;
    uint32_t x_off, x_stride, w_off, y_off, y_stride;
    float eps;
} vk_push_rmsnorm;
VK_PUSH_LAYOUT(vk_push_rmsnorm, 8, eps);

/* rope.comp: floats (positions and factors in their elements). */
typedef struct vk_push_rope {
    uint32_t n_head, T, n_rot, neox;
    uint32_t x_off, head_stride, tok_stride;
    uint32_t pos_off, has_ff, ff_off;
    float freq_scale;
    float r_hi, r_lo; /* base^(-2/n_rot) = r_hi + r_lo, from a double (the shader keeps angles as float pairs) */
} vk_push_rope;
VK_PUSH_LAYOUT(vk_push_rope, 13, r_lo);
_Static_assert(offsetof(vk_push_rope, freq_scale) == 40, "vk_push_rope: freq_scale");

/* kv_write.comp: the cache in halves, x in floats, positions in ints. */
typedef struct vk_push_kv_write {
    uint32_t n, T;
    uint32_t c_off, c_stride;
    uint32_t x_off, x_stride;
    uint32_t pos_off;
} vk_push_kv_write;
VK_PUSH_LAYOUT(vk_push_kv_write, 7, pos_off);

/* attention.comp: q and o in floats, the caches in halves. */
typedef struct vk_push_attention {
    uint32_t hd, n_head, n_head_kv, T;
    uint32_t q_off, q_stride;
    uint32_t k_off, k_stride;
    uint32_t v_off, v_stride;
    uint32_t pos_off;
    uint32_t o_off, o_stride;
    uint32_t n_chunks, chunk_len;
    float scale;
    uint32_t window;
} vk_push_attention;
VK_PUSH_LAYOUT(vk_push_attention, 17, window);
_Static_assert(offsetof(vk_push_attention, pos_off) == 40 && offsetof(vk_push_attention, n_chunks) == 52,
               "vk_push_attention offsets");

/* attention_reduce.comp: o in floats. */
typedef struct vk_push_attention_reduce {
    uint32_t hd, n_head, n_chunks;
    uint32_t o_off, o_stride;
} vk_push_attention_reduce;
VK_PUSH_LAYOUT(vk_push_attention_reduce, 5, o_stride);

/* eltwise.comp (add and swiglu): floats. */
typedef struct vk_push_eltwise {
    uint32_t n, T;
    uint32_t a_off, a_stride, b_off, b_stride, y_off, y_stride;
} vk_push_eltwise;
VK_PUSH_LAYOUT(vk_push_eltwise, 8, y_stride);

/* bandwidth.comp */
typedef struct vk_push_bandwidth {
    uint32_t n_vec4;
} vk_push_bandwidth;
VK_PUSH_LAYOUT(vk_push_bandwidth, 1, n_vec4);

#endif
