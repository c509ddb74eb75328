/* Command recording: a whole split becomes ONE command buffer (one dispatch per op, two for split-K
 * attention) submitted once; sync waits on its fence. Barriers are placed only where an op touches a byte
 * range written (or writes a range read) since the last barrier, so independent ops (Q, K and V
 * projections) may overlap. Each operand is bound as an aligned range of its buffer and the remainder
 * travels in push constants. Timestamps after every op give per-op device times (slm_vk_last_timings). */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vk_internal.h"
#include "vk_push.h"

#define VK_FENCE_TIMEOUT_NS ((uint64_t)600 * 1000000000ull)
#define VK_ATTN_MAX_HD 256
#define VK_ATTN_SPLIT_MIN 512 /* batch-1 contexts longer than this are split over chunks */
#define VK_ATTN_MAX_CHUNKS 32

typedef struct vk_bind {
    VkBuffer buf;
    VkDeviceSize off, range; /* the bound range */
    uint32_t rem;            /* tensor offset - off, bytes */
    VkDeviceSize lo, hi;     /* bytes the op touches, for hazards */
    bool used, write;
} vk_bind;

/* The push constants of one dispatch: the member of the shader it runs (vk_push.h), padded to the range
 * the pipeline layout declares. */
typedef union vk_push {
    uint32_t words[VK_PUSH_BYTES / 4];
    vk_push_matmul matmul;
    vk_push_embed embed;
    vk_push_rmsnorm rmsnorm;
    vk_push_rope rope;
    vk_push_kv_write kv_write;
    vk_push_attention attention;
    vk_push_attention_reduce attention_reduce;
    vk_push_eltwise eltwise;
    vk_push_bandwidth bandwidth;
} vk_push;
_Static_assert(sizeof(vk_push) == VK_PUSH_BYTES, "every shader's push constants fit the declared range");

typedef struct vk_dispatch {
    vk_pipe_id pipe;
    vk_bind b[VK_N_BINDINGS];
    vk_push push;
    uint32_t groups[3];
} vk_dispatch;

typedef struct vk_access {
    VkBuffer buf;
    VkDeviceSize lo, hi;
    bool write;
} vk_access;

typedef struct vk_recorder {
    vk_ctx *c;
    VkCommandBuffer cmd;
    vk_access *acc;
    int n_acc, cap_acc;
    VkDescriptorSet *sets;
    int n_sets;
} vk_recorder;

/* ---- supports ---------------------------------------------------------------------------------------- */

/* The device's own limits; the contract (types, shapes, strides, in-place rules) is slm_op_check's. */
bool slm_vk_supports(slm_device *d, const slm_op *op) {
    vk_ctx *c = d->ctx;
    switch (op->kind) {
    case SLM_OP_MATMUL:
    case SLM_OP_EMBED: /* a shader variant per weight type, GGUF rows only (x16 is the CPU's layout) */
        return slm_vk_wtype_index(op->src[0].type) >= 0 && !op->src[0].x16;
    case SLM_OP_KV_WRITE: return c->storage16 && op->dst.type == SLM_F16; /* f16 stores; no quantized KV yet */
    case SLM_OP_ATTENTION:
        /* the shader keeps a query head in shared memory; heads and tokens are workgroup counts; it reads an
         * f16 cache only (no quantized KV shader yet) */
        return c->storage16 && op->src[1].type == SLM_F16 && op->src[2].type == SLM_F16 &&
            op->p.attn.head_dim <= VK_ATTN_MAX_HD && op->p.attn.n_head <= 65535 && op->src[0].ne[1] <= 65535;
    default: return (unsigned)op->kind < SLM_OP_KIND_COUNT;
    }
}

/* ---- binding tensors --------------------------------------------------------------------------------- */

/* Binds t to slot; elem is the unit the shader indexes in (4: f32/i32/words, 2: f16), which the offset
 * and strides must be multiples of. */
static slm_status bind(vk_ctx *c, vk_dispatch *dp, int slot, const slm_tensor *t, uint32_t elem, bool write,
                       const char *what, slm_error *err) {
    vk_bind *b = &dp->b[slot];
    vk_buf *vb = t->buf ? t->buf->handle : NULL;
    if (!vb) return slm_fail(err, SLM_ERR_INVALID_ARG, "vulkan: %s: operand %d has no device buffer", what, slot);
    VkDeviceSize lo = t->offset, hi = lo + slm_tensor_extent(t);
    /* slm_op_check has checked these; kept as cheap guards because a shader would otherwise access memory
     * outside the operand's buffer */
    if (hi > t->buf->size || hi < lo)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "vulkan: %s: operand %d [%llu, %llu) is outside its %zu-byte buffer",
                        what, slot, (unsigned long long)lo, (unsigned long long)hi, t->buf->size);
    if (lo % elem || t->nb[1] % elem || t->nb[2] % elem || t->nb[3] % elem)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "vulkan: %s: operand %d offset/strides are not %u-byte aligned", what,
                        slot, elem);
    VkDeviceSize align = c->props.limits.minStorageBufferOffsetAlignment;
    if (align < 4) align = 4;
    b->off = lo - lo % align;
    /* whole 16-byte units (buffers are 256-byte multiples), so vec4 views of the operand stay in range */
    b->range = (hi - b->off + 15) & ~(VkDeviceSize)15;
    if (b->off + b->range > vb->size) b->range = vb->size - b->off;
    if (b->range > c->props.limits.maxStorageBufferRange)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "vulkan: %s: operand %d spans %llu bytes, over the device's %u-byte storage range", what, slot,
                        (unsigned long long)b->range, c->props.limits.maxStorageBufferRange);
    b->buf = vb->buf;
    b->rem = (uint32_t)(lo - b->off);
    b->lo = lo;
    b->hi = hi;
    b->used = true;
    b->write = write;
    return SLM_OK;
}

static void bind_raw(vk_dispatch *dp, int slot, const vk_buf *vb, VkDeviceSize size, bool write) {
    vk_bind *b = &dp->b[slot];
    b->buf = vb->buf;
    b->off = 0;
    b->range = size;
    b->rem = 0;
    b->lo = 0;
    b->hi = size;
    b->used = true;
    b->write = write;
}

/* Workgroups for n items of wg threads (or n groups when wg is 1), folded into x and y. */
static slm_status groups_1d(uint64_t n, uint32_t wg, uint32_t g[3], slm_error *err) {
    uint64_t ng = (n + wg - 1) / wg;
    if (ng == 0) ng = 1;
    uint64_t x = ng < 65535 ? ng : 65535, y = (ng + x - 1) / x;
    if (y > 65535)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "vulkan: dispatch of %llu items is too large", (unsigned long long)n);
    g[0] = (uint32_t)x;
    g[1] = (uint32_t)y;
    g[2] = 1;
    return SLM_OK;
}

/* ---- hazards and recording --------------------------------------------------------------------------- */

static bool overlaps(const vk_access *a, const vk_bind *b) {
    return a->buf == b->buf && a->lo < b->hi && b->lo < a->hi;
}

static slm_status emit(vk_recorder *r, vk_dispatch *dp, slm_error *err) {
    vk_ctx *c = r->c;
    bool hazard = false;
    for (int i = 0; i < VK_N_BINDINGS && !hazard; i++) {
        if (!dp->b[i].used) continue;
        for (int j = 0; j < r->n_acc && !hazard; j++)
            hazard = overlaps(&r->acc[j], &dp->b[i]) && (r->acc[j].write || dp->b[i].write);
    }
    if (hazard) {
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT,
                              .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
        vkCmdPipelineBarrier(r->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                             &mb, 0, NULL, 0, NULL);
        r->n_acc = 0;
    }
    for (int i = 0; i < VK_N_BINDINGS; i++) {
        if (!dp->b[i].used || dp->b[i].buf == c->dummy.buf) continue;
        if (r->n_acc == r->cap_acc) {
            int cap = r->cap_acc ? r->cap_acc * 2 : 64;
            vk_access *na = realloc(r->acc, sizeof *na * (size_t)cap);
            if (!na) return slm_fail(err, SLM_ERR_NOMEM, "vulkan: out of host memory recording");
            r->acc = na;
            r->cap_acc = cap;
        }
        r->acc[r->n_acc++] = (vk_access){dp->b[i].buf, dp->b[i].lo, dp->b[i].hi, dp->b[i].write};
    }

    VkPipeline pipe;
    slm_status s = slm_vk_pipeline_get(c, dp->pipe, &pipe, err);
    if (s) return s;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = c->dpool,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &c->dsl};
    VkDescriptorSet set;
    s = slm_vk_check(c, vkAllocateDescriptorSets(c->device, &ai, &set), "vkAllocateDescriptorSets", err);
    if (s) return s;
    VkDescriptorBufferInfo bi[VK_N_BINDINGS];
    VkWriteDescriptorSet w[VK_N_BINDINGS];
    for (int i = 0; i < VK_N_BINDINGS; i++) {
        if (dp->b[i].used) bi[i] = (VkDescriptorBufferInfo){dp->b[i].buf, dp->b[i].off, dp->b[i].range};
        else bi[i] = (VkDescriptorBufferInfo){c->dummy.buf, 0, c->dummy.size};
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &bi[i]};
    }
    vkUpdateDescriptorSets(c->device, VK_N_BINDINGS, w, 0, NULL);
    vkCmdBindPipeline(r->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(r->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->playout, 0, 1, &set, 0, NULL);
    vkCmdPushConstants(r->cmd, c->playout, VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES, dp->push.words);
    vkCmdDispatch(r->cmd, dp->groups[0], dp->groups[1], dp->groups[2]);
    return SLM_OK;
}

/* ---- ops ----------------------------------------------------------------------------------------------- */

static slm_status rec_matmul_rows(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *w = &op->src[0], *x = &op->src[1], *b = &op->src[2], *y = &op->dst;
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    vk_ctx *c = r->c;
    int wi = slm_vk_wtype_index(w->type);
    vk_dispatch dp = {0};
    uint32_t welem = w->type == SLM_F32 ? 4 : 2;
    slm_status s = bind(c, &dp, 0, y, 4, true, "matmul", err);
    if (!s) s = bind(c, &dp, 1, w, welem, false, "matmul", err);
    if (!s) s = bind(c, &dp, 2, x, 4, false, "matmul", err);
    if (!s && b->buf) s = bind(c, &dp, 3, b, 4, false, "matmul", err);
    if (s) return s;
    vk_push_matmul *p = &dp.push.matmul;
    p->K = (uint32_t)K;
    p->N = (uint32_t)N;
    p->T = (uint32_t)T;
    p->w_off = dp.b[1].rem;
    p->w_stride = (uint32_t)w->nb[1];
    p->x_off = dp.b[2].rem / 4;
    p->x_stride = (uint32_t)(x->nb[1] / 4);
    p->y_off = dp.b[0].rem / 4;
    p->y_stride = (uint32_t)(y->nb[1] / 4);
    p->b_off = b->buf ? dp.b[3].rem / 4 : 0;
    p->has_bias = b->buf ? 1 : 0;
    if ((uint64_t)T >= c->tiled_min_batch) {
        /* prompt batches: tiles of VK_TILE_ROWS rows x VK_TILE_TOKENS tokens */
        dp.pipe = (vk_pipe_id)(VK_PIPE_TILED_FIRST + wi);
        s = groups_1d((uint64_t)(N + VK_TILE_ROWS - 1) / VK_TILE_ROWS, 1, dp.groups, err);
        dp.groups[2] = (uint32_t)((T + VK_TILE_TOKENS - 1) / VK_TILE_TOKENS);
    } else if (c->lane_matvec) {
        /* one row per lane; the aligned variants load activations as vec4 and blocks as whole words */
        const slm_dtype_info *ti = slm_dtype_get(w->type);
        uint32_t flags = 0;
        if (p->x_off % 4 == 0 && p->x_stride % 4 == 0) flags |= VK_MATVEC_X_VEC4;
        bool block_words = ti->block_elems == 1 ? (w->type == SLM_F32 || K % 2 == 0) : ti->block_bytes % 4 == 0;
        if (block_words && p->w_off % 4 == 0 && p->w_stride % 4 == 0) flags |= VK_MATVEC_W_ALIGN4;
        dp.pipe = (vk_pipe_id)(VK_PIPE_MATVEC_FIRST + 4 * wi + (int)flags);
        s = groups_1d((uint64_t)N, slm_vk_pipeline_wg(dp.pipe) * VK_MATVEC_RPT, dp.groups, err);
        dp.groups[2] = (uint32_t)T;
    } else {
        dp.pipe = (vk_pipe_id)(VK_PIPE_MATMUL_FIRST + wi);
        s = groups_1d((uint64_t)N, 1, dp.groups, err);
        dp.groups[2] = (uint32_t)((T + VK_MATMUL_NC - 1) / VK_MATMUL_NC);
    }
    return s ? s : emit(r, &dp, err);
}

/* A weight larger than one storage-buffer binding may span (lavapipe: 128 MiB; Gemma 3's tied head is 178 MB
 * of Q8_0) runs as ranges of rows that each fit, one dispatch per range into its rows of the output. */
static slm_status rec_matmul(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *w = &op->src[0];
    uint64_t range = r->c->props.limits.maxStorageBufferRange;
    /* room for the binding's alignment below the offset and its rounding up to 16 bytes */
    uint64_t limit = range > 4096 ? range - 4096 : range;
    if ((uint64_t)slm_tensor_extent(w) <= limit || w->ne[1] < 2) return rec_matmul_rows(r, op, err);
    int64_t per = (int64_t)(limit / w->nb[1]);
    if (per < 1) per = 1;
    for (int64_t r0 = 0; r0 < w->ne[1]; r0 += per) {
        int64_t n = w->ne[1] - r0 < per ? w->ne[1] - r0 : per;
        slm_op part = *op;
        part.src[0] = slm_tensor_cols(*w, r0, n);
        part.dst.offset += (size_t)r0 * sizeof(float);
        part.dst.ne[0] = n;
        if (part.src[2].buf) {
            part.src[2].offset += (size_t)r0 * sizeof(float);
            part.src[2].ne[0] = n;
        }
        slm_status s = rec_matmul_rows(r, &part, err);
        if (s) return s;
    }
    return SLM_OK;
}

static slm_status rec_embed(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *w = &op->src[0], *ids = &op->src[1], *y = &op->dst;
    int64_t n = w->ne[0], T = ids->ne[0];
    vk_dispatch dp = {.pipe = (vk_pipe_id)(VK_PIPE_EMBED_FIRST + slm_vk_wtype_index(w->type))};
    slm_status s = bind(r->c, &dp, 0, y, 4, true, "embed", err);
    if (!s) s = bind(r->c, &dp, 1, w, w->type == SLM_F32 ? 4 : 2, false, "embed", err);
    if (!s) s = bind(r->c, &dp, 2, ids, 4, false, "embed", err);
    if (s) return s;
    vk_push_embed *p = &dp.push.embed;
    p->n = (uint32_t)n;
    p->T = (uint32_t)T;
    p->w_off = dp.b[1].rem;
    p->w_stride = (uint32_t)w->nb[1];
    p->id_off = dp.b[2].rem / 4;
    p->y_off = dp.b[0].rem / 4;
    p->y_stride = (uint32_t)(y->nb[1] / 4);
    p->scale = op->p.embed.scale;
    s = groups_1d((uint64_t)((n + 31) / 32) * (uint64_t)T, slm_vk_pipeline_wg(dp.pipe), dp.groups, err);
    return s ? s : emit(r, &dp, err);
}

static slm_status rec_rmsnorm(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    int64_t n = x->ne[0], T = x->ne[1];
    vk_dispatch dp = {.pipe = VK_PIPE_RMSNORM};
    slm_status s = bind(r->c, &dp, 0, y, 4, true, "rmsnorm", err);
    if (!s) s = bind(r->c, &dp, 1, x, 4, false, "rmsnorm", err);
    if (!s) s = bind(r->c, &dp, 2, w, 4, false, "rmsnorm", err);
    if (s) return s;
    vk_push_rmsnorm *p = &dp.push.rmsnorm;
    p->n = (uint32_t)n;
    p->T = (uint32_t)T;
    p->x_off = dp.b[1].rem / 4;
    p->x_stride = (uint32_t)(x->nb[1] / 4);
    p->w_off = dp.b[2].rem / 4;
    p->y_off = dp.b[0].rem / 4;
    p->y_stride = (uint32_t)(y->nb[1] / 4);
    p->eps = op->p.norm.eps;
    s = groups_1d((uint64_t)T, 1, dp.groups, err);
    return s ? s : emit(r, &dp, err);
}

static slm_status rec_rope(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *x = &op->dst, *pos = &op->src[1], *ff = &op->src[2];
    int64_t nh = x->ne[1], T = x->ne[2];
    int n_rot = op->p.rope.n_rot;
    vk_dispatch dp = {.pipe = VK_PIPE_ROPE};
    slm_status s = bind(r->c, &dp, 0, x, 4, true, "rope", err);
    if (!s) s = bind(r->c, &dp, 1, pos, 4, false, "rope", err);
    if (!s && ff->buf) s = bind(r->c, &dp, 2, ff, 4, false, "rope", err);
    if (s) return s;
    vk_push_rope *p = &dp.push.rope;
    p->n_head = (uint32_t)nh;
    p->T = (uint32_t)T;
    p->n_rot = (uint32_t)n_rot;
    p->neox = op->p.rope.neox ? 1 : 0;
    p->x_off = dp.b[0].rem / 4;
    p->head_stride = (uint32_t)(x->nb[1] / 4);
    p->tok_stride = (uint32_t)(x->nb[2] / 4);
    p->pos_off = dp.b[1].rem / 4;
    p->has_ff = ff->buf ? 1 : 0;
    p->ff_off = ff->buf ? dp.b[2].rem / 4 : 0;
    p->freq_scale = op->p.rope.freq_scale;
    /* the ratio of consecutive frequencies in double, split into a float pair: r^i in pair arithmetic is
     * base^(-2i/n_rot) to ~1e-13 relative, as slm_ref_rope's pow in double */
    double ratio = pow((double)op->p.rope.freq_base, -2.0 / n_rot);
    p->r_hi = (float)ratio;
    p->r_lo = (float)(ratio - (double)p->r_hi);
    s = groups_1d((uint64_t)(n_rot / 2) * (uint64_t)nh * (uint64_t)T, slm_vk_pipeline_wg(dp.pipe), dp.groups, err);
    return s ? s : emit(r, &dp, err);
}

static slm_status rec_kv_write(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *cache = &op->dst, *x = &op->src[0], *pos = &op->src[1];
    int64_t n = x->ne[0], T = x->ne[1];
    vk_dispatch dp = {.pipe = VK_PIPE_KV_WRITE};
    slm_status s = bind(r->c, &dp, 0, cache, 2, true, "kv_write", err);
    if (!s) s = bind(r->c, &dp, 1, x, 4, false, "kv_write", err);
    if (!s) s = bind(r->c, &dp, 2, pos, 4, false, "kv_write", err);
    if (s) return s;
    vk_push_kv_write *p = &dp.push.kv_write;
    p->n = (uint32_t)n;
    p->T = (uint32_t)T;
    p->c_off = dp.b[0].rem / 2;
    p->c_stride = (uint32_t)(cache->nb[1] / 2);
    p->x_off = dp.b[1].rem / 4;
    p->x_stride = (uint32_t)(x->nb[1] / 4);
    p->pos_off = dp.b[2].rem / 4;
    s = groups_1d((uint64_t)n * (uint64_t)T, slm_vk_pipeline_wg(dp.pipe), dp.groups, err);
    return s ? s : emit(r, &dp, err);
}

/* Chunks for split-K attention: only at batch 1 with a long cache (the upper bound n_ctx is used because
 * positions live on the device; chunks past a token's position exit at once). */
static void attn_split(int64_t T, int64_t n_ctx, uint32_t *n_chunks, uint32_t *chunk_len) {
    if (T != 1 || n_ctx <= VK_ATTN_SPLIT_MIN) {
        *n_chunks = 1;
        *chunk_len = (uint32_t)n_ctx;
        return;
    }
    int64_t len = (n_ctx + VK_ATTN_MAX_CHUNKS - 1) / VK_ATTN_MAX_CHUNKS;
    if (len < 256) len = 256;
    len = (len + 63) / 64 * 64;
    *chunk_len = (uint32_t)len;
    *n_chunks = (uint32_t)((n_ctx + len - 1) / len);
}

static size_t attn_scratch_bytes(const slm_op *op) {
    uint32_t nc, cl;
    attn_split(op->src[0].ne[1], op->src[1].ne[1], &nc, &cl);
    if (nc <= 1) return 0;
    return (size_t)op->src[0].ne[1] * (size_t)op->p.attn.n_head * nc * (size_t)(op->p.attn.head_dim + 2) *
        sizeof(float);
}

static slm_status rec_attention(vk_recorder *r, const slm_op *op, slm_error *err) {
    vk_ctx *c = r->c;
    const slm_tensor *q = &op->src[0], *k = &op->src[1], *v = &op->src[2], *pos = &op->src[3], *o = &op->dst;
    int hd = op->p.attn.head_dim, nh = op->p.attn.n_head, nkv = op->p.attn.n_head_kv;
    int64_t T = q->ne[1], n_ctx = k->ne[1];
    uint32_t n_chunks, chunk_len;
    attn_split(T, n_ctx, &n_chunks, &chunk_len);
    vk_dispatch dp = {.pipe = VK_PIPE_ATTENTION};
    slm_status s = bind(c, &dp, 0, o, 4, true, "attention", err);
    if (!s) s = bind(c, &dp, 1, q, 4, false, "attention", err);
    if (!s) s = bind(c, &dp, 2, k, 2, false, "attention", err);
    if (!s) s = bind(c, &dp, 3, v, 2, false, "attention", err);
    if (!s) s = bind(c, &dp, 4, pos, 4, false, "attention", err);
    if (s) return s;
    size_t part_bytes = attn_scratch_bytes(op);
    if (n_chunks > 1) {
        bind_raw(&dp, 5, &c->scratch, (part_bytes + 3) & ~(size_t)3, true);
        dp.b[0].used = false; /* the partials are the output of this pass */
        bind_raw(&dp, 0, &c->dummy, c->dummy.size, false);
        dp.b[0].buf = c->dummy.buf;
    }
    vk_push_attention *p = &dp.push.attention;
    p->hd = (uint32_t)hd;
    p->n_head = (uint32_t)nh;
    p->n_head_kv = (uint32_t)nkv;
    p->T = (uint32_t)T;
    p->q_off = dp.b[1].rem / 4;
    p->q_stride = (uint32_t)(q->nb[1] / 4);
    p->k_off = dp.b[2].rem / 2;
    p->k_stride = (uint32_t)(k->nb[1] / 2);
    p->v_off = dp.b[3].rem / 2;
    p->v_stride = (uint32_t)(v->nb[1] / 2);
    p->pos_off = dp.b[4].rem / 4;
    vk_bind ob;
    {
        vk_dispatch tmp = {0};
        s = bind(c, &tmp, 0, o, 4, true, "attention", err);
        if (s) return s;
        ob = tmp.b[0];
    }
    p->o_off = ob.rem / 4;
    p->o_stride = (uint32_t)(o->nb[1] / 4);
    p->n_chunks = n_chunks;
    p->chunk_len = chunk_len;
    p->scale = op->p.attn.scale;
    p->window = (uint32_t)op->p.attn.window;
    dp.groups[0] = (uint32_t)nh;
    dp.groups[1] = (uint32_t)T;
    dp.groups[2] = n_chunks;
    s = emit(r, &dp, err);
    if (s || n_chunks == 1) return s;

    vk_dispatch rd = {.pipe = VK_PIPE_ATTENTION_REDUCE};
    rd.b[0] = ob;
    bind_raw(&rd, 5, &c->scratch, (part_bytes + 3) & ~(size_t)3, false);
    vk_push_attention_reduce *pr = &rd.push.attention_reduce;
    pr->hd = (uint32_t)hd;
    pr->n_head = (uint32_t)nh;
    pr->n_chunks = n_chunks;
    pr->o_off = ob.rem / 4;
    pr->o_stride = (uint32_t)(o->nb[1] / 4);
    rd.groups[0] = (uint32_t)nh;
    rd.groups[1] = (uint32_t)T;
    rd.groups[2] = 1;
    return emit(r, &rd, err);
}

static slm_status rec_eltwise(vk_recorder *r, const slm_op *op, slm_error *err) {
    const slm_tensor *a = &op->src[0], *b = &op->src[1], *y = &op->dst;
    int64_t n = y->ne[0], T = y->ne[1];
    vk_dispatch dp = {.pipe = op->kind == SLM_OP_ADD ? VK_PIPE_ADD
                          : op->kind == SLM_OP_GEGLU ? VK_PIPE_GEGLU
                                                     : VK_PIPE_SWIGLU};
    slm_status s = bind(r->c, &dp, 0, y, 4, true, "eltwise", err);
    if (!s) s = bind(r->c, &dp, 1, a, 4, false, "eltwise", err);
    if (!s) s = bind(r->c, &dp, 2, b, 4, false, "eltwise", err);
    if (s) return s;
    vk_push_eltwise *p = &dp.push.eltwise;
    p->n = (uint32_t)n;
    p->T = (uint32_t)T;
    p->a_off = dp.b[1].rem / 4;
    p->a_stride = (uint32_t)(a->nb[1] / 4);
    p->b_off = dp.b[2].rem / 4;
    p->b_stride = (uint32_t)(b->nb[1] / 4);
    p->y_off = dp.b[0].rem / 4;
    p->y_stride = (uint32_t)(y->nb[1] / 4);
    s = groups_1d((uint64_t)n * (uint64_t)T, slm_vk_pipeline_wg(dp.pipe), dp.groups, err);
    return s ? s : emit(r, &dp, err);
}

/* ---- run / sync ------------------------------------------------------------------------------------ */

static slm_status ensure_capacity(vk_ctx *c, int n_dispatch, int n_ops, size_t scratch, slm_error *err) {
    slm_status s = SLM_OK;
    if (!c->dpool || c->dpool_sets < (uint32_t)n_dispatch) {
        if (c->dpool) vkDestroyDescriptorPool(c->device, c->dpool, NULL);
        c->dpool = VK_NULL_HANDLE;
        uint32_t sets = 256;
        while (sets < (uint32_t)n_dispatch) sets *= 2;
        VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, sets * VK_N_BINDINGS};
        VkDescriptorPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                         .maxSets = sets,
                                         .poolSizeCount = 1,
                                         .pPoolSizes = &ps};
        s = slm_vk_check(c, vkCreateDescriptorPool(c->device, &ci, NULL, &c->dpool), "vkCreateDescriptorPool", err);
        if (s) return s;
        c->dpool_sets = sets;
    } else {
        vkResetDescriptorPool(c->device, c->dpool, 0);
    }
    if (c->timestamps && c->qpool_size < (uint32_t)n_ops + 1) {
        if (c->qpool) vkDestroyQueryPool(c->device, c->qpool, NULL);
        c->qpool = VK_NULL_HANDLE;
        uint32_t n = 256;
        while (n < (uint32_t)n_ops + 1) n *= 2;
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = n};
        if (vkCreateQueryPool(c->device, &qi, NULL, &c->qpool) == VK_SUCCESS) c->qpool_size = n;
        else c->qpool_size = 0;
    }
    if (c->cap_times < n_ops) {
        slm_vk_op_time *t = realloc(c->times, sizeof *t * (size_t)n_ops);
        if (!t) return slm_fail(err, SLM_ERR_NOMEM, "vulkan: out of host memory");
        c->times = t;
        c->cap_times = n_ops;
    }
    if (scratch > c->scratch.size) {
        slm_vk_buf_destroy(c, &c->scratch);
        s = slm_vk_buf_create(c, scratch, c->mem_type_device, false, &c->scratch, err);
    }
    return s;
}

/* The only working memory: split attention's partial results (one op's at a time, as in slm_vk_run). */
uint64_t slm_vk_work_bytes(slm_device *d, const slm_op *shapes, int n_shapes) {
    (void)d;
    size_t scratch = 0;
    for (int i = 0; i < n_shapes; i++)
        if (shapes[i].kind == SLM_OP_ATTENTION) {
            size_t b = attn_scratch_bytes(&shapes[i]);
            if (b > scratch) scratch = b;
        }
    return scratch;
}

slm_status slm_vk_work_reserve(slm_device *d, const slm_op *shapes, int n_shapes, slm_error *err) {
    vk_ctx *c = d->ctx;
    slm_status s = slm_vk_wait_idle(d, err); /* a split in flight may still use the scratch */
    if (s) return s;
    if (n_shapes <= 0) {
        slm_vk_buf_destroy(c, &c->scratch);
        return SLM_OK;
    }
    size_t scratch = (size_t)slm_vk_work_bytes(d, shapes, n_shapes);
    if (scratch <= c->scratch.size) return SLM_OK;
    slm_vk_buf_destroy(c, &c->scratch);
    return slm_vk_buf_create(c, scratch, c->mem_type_device, false, &c->scratch, err);
}

slm_status slm_vk_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err) {
    vk_ctx *c = d->ctx;
    slm_status s = slm_vk_wait_idle(d, err); /* the previous split's command buffer and sets are reused */
    if (s || n_ops <= 0) return s;
    int n_dispatch = 0;
    size_t scratch = 0;
    for (int i = 0; i < n_ops; i++) {
        /* the contract was checked when the graph was built; the device's own limits are checked again
         * because an attention head past VK_ATTN_MAX_HD would overflow the shader's shared array */
        if (!slm_vk_supports(d, &ops[i]))
            return slm_fail(err, SLM_ERR_UNSUPPORTED,
                            "vulkan: op %s (%s) with weight/operand type %s is not supported on %s",
                            slm_op_kind_name(ops[i].kind), ops[i].name ? ops[i].name : "",
                            slm_dtype_name(ops[i].src[0].type), c->props.deviceName);
        n_dispatch += ops[i].kind == SLM_OP_ATTENTION ? 2 : 1;
        if (ops[i].kind == SLM_OP_ATTENTION) {
            size_t b = attn_scratch_bytes(&ops[i]);
            if (b > scratch) scratch = b;
        }
    }
    s = ensure_capacity(c, n_dispatch, n_ops, scratch, err);
    if (s) return s;

    vk_recorder r = {.c = c, .cmd = c->cmd};
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    s = slm_vk_check(c, vkBeginCommandBuffer(c->cmd, &bi), "vkBeginCommandBuffer", err);
    if (s) return s;
    /* earlier transfers and splits (previous submissions) before this split's shaders */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask =
                              VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
    vkCmdPipelineBarrier(
        c->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_HOST_BIT,
        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    bool ts = c->timestamps && c->qpool_size > (uint32_t)n_ops;
    if (ts) {
        vkCmdResetQueryPool(c->cmd, c->qpool, 0, (uint32_t)n_ops + 1);
        vkCmdWriteTimestamp(c->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->qpool, 0);
    }
    for (int i = 0; i < n_ops && !s; i++) {
        const slm_op *op = &ops[i];
        switch (op->kind) {
        case SLM_OP_MATMUL: s = rec_matmul(&r, op, err); break;
        case SLM_OP_EMBED: s = rec_embed(&r, op, err); break;
        case SLM_OP_RMSNORM: s = rec_rmsnorm(&r, op, err); break;
        case SLM_OP_ROPE: s = rec_rope(&r, op, err); break;
        case SLM_OP_KV_WRITE: s = rec_kv_write(&r, op, err); break;
        case SLM_OP_ATTENTION: s = rec_attention(&r, op, err); break;
        case SLM_OP_SWIGLU:
        case SLM_OP_GEGLU:
        case SLM_OP_ADD: s = rec_eltwise(&r, op, err); break;
        default: s = slm_fail(err, SLM_ERR_UNSUPPORTED, "vulkan: op kind %d", (int)op->kind);
        }
        if (ts) vkCmdWriteTimestamp(c->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->qpool, (uint32_t)i + 1);
        c->times[i] = (slm_vk_op_time){op->kind, op->name, op->layer, 0.0};
    }
    free(r.acc);
    /* results visible to transfers (staged downloads) and the host (mapped downloads) */
    VkMemoryBarrier eb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT};
    vkCmdPipelineBarrier(c->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &eb, 0, NULL, 0, NULL);
    VkResult er = vkEndCommandBuffer(c->cmd);
    if (s) return s; /* the recorded buffer is dropped; it is reset by the next begin */
    s = slm_vk_check(c, er, "vkEndCommandBuffer", err);
    if (s) return s;
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->cmd};
    s = slm_vk_check(c, vkQueueSubmit(c->queue, 1, &si, c->fence), "vkQueueSubmit", err);
    if (s) return s;
    c->in_flight = true;
    c->n_times = n_ops;
    c->times_pending = ts;
    return SLM_OK;
}

slm_status slm_vk_sync(slm_device *d, slm_error *err) {
    vk_ctx *c = d->ctx;
    if (!c->in_flight)
        return c->lost ? slm_fail(err, SLM_ERR_DEVICE, "vulkan: the device was lost earlier; reopen it") : SLM_OK;
    VkResult r = vkWaitForFences(c->device, 1, &c->fence, VK_TRUE, VK_FENCE_TIMEOUT_NS);
    if (r == VK_TIMEOUT) return slm_vk_check(c, r, "waiting for a split", err);
    /* test hook SLM_VK_FAKE_DEVICE_LOST=N: the Nth split's wait reports what a driver reports after a hang */
    if (r == VK_SUCCESS && c->fake_lost_at && ++c->n_splits == c->fake_lost_at) r = VK_ERROR_DEVICE_LOST;
    c->in_flight = false;
    vkResetFences(c->device, 1, &c->fence);
    slm_status s = slm_vk_check(c, r, "waiting for a split", err);
    if (s) return s;
    if (c->times_pending) {
        c->times_pending = false;
        uint64_t stack[64], *t = c->n_times + 1 <= 64 ? stack : malloc(sizeof *t * (size_t)(c->n_times + 1));
        if (t &&
            vkGetQueryPoolResults(c->device, c->qpool, 0, (uint32_t)c->n_times + 1,
                                  sizeof *t * (size_t)(c->n_times + 1), t, sizeof *t,
                                  VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
            for (int i = 0; i < c->n_times; i++)
                c->times[i].ms = (double)(t[i + 1] - t[i]) * c->props.limits.timestampPeriod * 1e-6;
        } else {
            c->n_times = 0;
        }
        if (t != stack) free(t);
    } else {
        c->n_times = 0;
    }
    return SLM_OK;
}

void slm_vk_record_free(vk_ctx *c) {
    if (c->dpool) vkDestroyDescriptorPool(c->device, c->dpool, NULL);
    if (c->qpool) vkDestroyQueryPool(c->device, c->qpool, NULL);
    c->dpool = VK_NULL_HANDLE;
    c->qpool = VK_NULL_HANDLE;
    free(c->times);
    c->times = NULL;
    c->cap_times = c->n_times = 0;
}

int slm_vk_last_timings(slm_device *dev, slm_vk_op_time *out, int max) {
    extern const slm_backend_ops slm_backend_vulkan;
    if (!dev || dev->ops != &slm_backend_vulkan || !dev->ctx) return 0;
    vk_ctx *c = dev->ctx;
    if (c->in_flight || c->times_pending) return 0;
    int n = c->n_times < max ? c->n_times : max;
    memcpy(out, c->times, sizeof *out * (size_t)n);
    return n;
}

/* ---- bandwidth --------------------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The fastest of timed reads of a 256 MiB buffer in several launch shapes (workgroup counts: a CPU driver
 * wants about one per core, a GPU many per compute unit), interleaved, each repeated; the first round warms
 * up. */
bool slm_vk_measure_bandwidth(slm_device *d, slm_read_peak *peak) {
    vk_ctx *c = d->ctx;
    slm_error err;
    if (slm_vk_wait_idle(d, &err)) return false;
    VkDeviceSize bytes = (VkDeviceSize)256 << 20;
    if (bytes > c->props.limits.maxStorageBufferRange)
        bytes = c->props.limits.maxStorageBufferRange & ~(VkDeviceSize)255;
    if (bytes > c->max_alloc) bytes = c->max_alloc & ~(VkDeviceSize)255;
    vk_buf src, out;
    if (slm_vk_buf_create(c, bytes, c->mem_type_device, false, &src, &err)) return false;
    if (slm_vk_buf_create(c, 65536 * 4, c->mem_type_device, false, &out, &err)) {
        slm_vk_buf_destroy(c, &src);
        return false;
    }
    const bool cpu = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const uint32_t gpu_shapes[] = {1024, 4096, 16384}, cpu_shapes[] = {16, 64, 256};
    const uint32_t *shapes = cpu ? cpu_shapes : gpu_shapes;
    enum { N_SHAPES = 3, REPS = 3 };
    double lo[N_SHAPES], hi[N_SHAPES];
    for (int i = 0; i < N_SHAPES; i++) lo[i] = 1e300, hi[i] = 0;
    bool failed = ensure_capacity(c, 1, 1, 0, &err) != SLM_OK;
    for (int rep = 0; rep <= REPS && !failed; rep++) {
        for (int i = 0; i < N_SHAPES && !failed; i++) {
            failed = true;
            vkResetDescriptorPool(c->device, c->dpool, 0);
            vk_recorder r = {.c = c, .cmd = c->cmd};
            vk_dispatch dp = {.pipe = VK_PIPE_BANDWIDTH};
            bind_raw(&dp, 0, &out, out.size, true);
            bind_raw(&dp, 1, &src, bytes, false);
            dp.push.bandwidth.n_vec4 = (uint32_t)(bytes / 16);
            dp.groups[0] = shapes[i];
            dp.groups[1] = 1;
            dp.groups[2] = 1;
            VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                           .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
            if (vkBeginCommandBuffer(c->cmd, &bi) != VK_SUCCESS) break;
            slm_status s = emit(&r, &dp, &err);
            free(r.acc);
            if (vkEndCommandBuffer(c->cmd) != VK_SUCCESS || s) break;
            VkSubmitInfo si = {
                .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->cmd};
            double t0 = now_s();
            if (vkQueueSubmit(c->queue, 1, &si, c->fence) != VK_SUCCESS) break;
            VkResult wr = vkWaitForFences(c->device, 1, &c->fence, VK_TRUE, VK_FENCE_TIMEOUT_NS);
            vkResetFences(c->device, 1, &c->fence);
            double dt = now_s() - t0;
            if (wr != VK_SUCCESS) break;
            failed = false;
            double bw = dt > 0 ? (double)bytes / dt : 0;
            if (rep == 0 || bw <= 0) continue;
            if (bw < lo[i]) lo[i] = bw;
            if (bw > hi[i]) hi[i] = bw;
        }
    }
    int best = -1;
    for (int i = 0; i < N_SHAPES && !failed; i++)
        if (hi[i] > 0 && (best < 0 || hi[i] > hi[best])) best = i;
    if (best >= 0) {
        peak->best = hi[best];
        peak->spread = hi[best] - lo[best];
        peak->n_kernels = N_SHAPES;
        snprintf(peak->kernel, sizeof peak->kernel, "%u workgroups", shapes[best]);
    }
    slm_vk_buf_destroy(c, &src);
    slm_vk_buf_destroy(c, &out);
    return best >= 0;
}
