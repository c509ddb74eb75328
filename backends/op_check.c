/* The op contract of backend.h as code: every rule stated on slm_op_kind is checked here, once per op of each
 * shape of graph a context builds (the scheduler's slm_sched_check), so backends only check their own limits (slm_backend_ops.supports). Messages name the op
 * kind, the op's name and layer, the operand and what was expected against what it got. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "backend.h"
#include "error.h"
#include "matvec_x16.h"

/* What an operand slot of a kind holds: its role in messages, and whether it may or must be absent. */
typedef enum { ABSENT, REQUIRED, OPTIONAL } presence;
typedef struct slot_rule {
    const char *role;
    presence need;
} slot_rule;

/* [kind][0] is dst, [kind][1 + i] is src[i] */
static const slot_rule k_slots[SLM_OP_KIND_COUNT][5] = {
    [SLM_OP_EMBED] = {{"out", REQUIRED}, {"table", REQUIRED}, {"ids", REQUIRED}},
    [SLM_OP_RMSNORM] = {{"out", REQUIRED}, {"x", REQUIRED}, {"weight", REQUIRED}},
    [SLM_OP_MATMUL] = {{"out", REQUIRED}, {"weight", REQUIRED}, {"x", REQUIRED}, {"bias", OPTIONAL}},
    [SLM_OP_ROPE] = {{"x", REQUIRED},
                     {"x (same as dst)", OPTIONAL},
                     {"positions", REQUIRED},
                     {"freq_factors", OPTIONAL}},
    [SLM_OP_KV_WRITE] = {{"cache", REQUIRED}, {"x", REQUIRED}, {"positions", REQUIRED}},
    [SLM_OP_ATTENTION] =
        {{"out", REQUIRED}, {"q", REQUIRED}, {"k_cache", REQUIRED}, {"v_cache", REQUIRED}, {"positions", REQUIRED}},
    [SLM_OP_SWIGLU] = {{"out", REQUIRED}, {"gate", REQUIRED}, {"up", REQUIRED}},
    [SLM_OP_ADD] = {{"out", REQUIRED}, {"a", REQUIRED}, {"b", REQUIRED}},
    [SLM_OP_GEGLU] = {{"out", REQUIRED}, {"gate", REQUIRED}, {"up", REQUIRED}},
};

static const char *const k_slot_names[5] = {"dst", "src0", "src1", "src2", "src3"};

static const slm_tensor *slot(const slm_op *op, int i) { return i == 0 ? &op->dst : &op->src[i - 1]; }

/* Fails with "op_check: KIND 'NAME' (layer L): SLOT (ROLE): MESSAGE"; slot < 0: the op as a whole. */
SLM_PRINTF(5, 6)
static slm_status bad(const slm_op *op, slm_error *err, slm_status code, int slot_i, const char *fmt, ...) {
    if (!err) return code;
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *kind = slm_op_kind_name(op->kind), *name = op->name ? op->name : "?";
    if (slot_i < 0) return slm_fail(err, code, "op_check: %s '%s' (layer %d): %s", kind, name, op->layer, what);
    return slm_fail(err, code, "op_check: %s '%s' (layer %d): %s (%s): %s", kind, name, op->layer, k_slot_names[slot_i],
                    k_slots[op->kind][slot_i].role, what);
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        slm_status _s = (x);                                                                                           \
        if (_s) return _s;                                                                                             \
    } while (0)

/* The unit offsets and strides must be multiples of: the element size of plain types, 2 bytes for blocks
 * (every block is a whole number of 16-bit words, which GPU kernels read them as). */
static size_t access_unit(slm_dtype t) {
    const slm_dtype_info *ti = slm_dtype_get(t);
    return ti->block_elems == 1 ? (size_t)ti->block_bytes : 2;
}

/* Everything every present operand needs: a known type, dims >= 1 and 1 past `dims`, nb[0] the element
 * (block) size, rows and higher dims that do not overlap, aligned offset and strides, bytes inside its
 * buffer. */
static slm_status layout(const slm_op *op, int si, int dims, slm_error *err) {
    const slm_tensor *t = slot(op, si);
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t->type);
    if (!ti)
        return bad(op, err, SLM_ERR_UNSUPPORTED, si, "type %s (%d) is not one slm knows", slm_dtype_name(t->type),
                   (int)t->type);
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] < 1)
            return bad(op, err, SLM_ERR_INVALID_ARG, si, "ne[%d] = %lld, expected >= 1", i, (long long)t->ne[i]);
        if (i >= dims && t->ne[i] != 1)
            return bad(op, err, SLM_ERR_INVALID_ARG, si, "ne[%d] = %lld, expected 1 (a %d-D operand)", i,
                       (long long)t->ne[i], dims);
    }
    if (t->ne[0] % ti->block_elems)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "ne[0] = %lld is not a multiple of the %s block (%d)",
                   (long long)t->ne[0], ti->name, ti->block_elems);
    if (t->nb[0] != (size_t)ti->block_bytes)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "nb[0] = %zu, expected %d (rows must be contiguous %s)", t->nb[0],
                   ti->block_bytes, ti->name);
    size_t unit = access_unit(t->type);
    if (t->offset % unit)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "offset %zu is not a multiple of %zu", t->offset, unit);
    size_t inner = slm_dtype_row_bytes(t->type, t->ne[0]); /* bytes of dim i - 1 */
    for (int i = 1; i < dims; i++) {
        if (t->ne[i] > 1 && (t->nb[i] % unit || t->nb[i] < inner))
            return bad(op, err, SLM_ERR_INVALID_ARG, si, "nb[%d] = %zu, expected a multiple of %zu and >= %zu", i,
                       t->nb[i], unit, inner);
        inner = t->nb[i] * (size_t)t->ne[i];
    }
    size_t ext = slm_tensor_extent(t);
    if (t->offset > t->buf->size || ext > t->buf->size - t->offset)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "bytes [%zu, %zu) are outside its %zu-byte buffer", t->offset,
                   t->offset + ext, t->buf->size);
    return SLM_OK;
}

/* A plain operand of one type (f32, f16, i32) and dims dimensions. */
static slm_status plain(const slm_op *op, int si, slm_dtype type, int dims, slm_error *err) {
    const slm_tensor *t = slot(op, si);
    if (t->type != type)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "type %s, expected %s", slm_dtype_name(t->type),
                   slm_dtype_name(type));
    return layout(op, si, dims, err);
}

/* A weight matrix (or embedding table) [K, N] of any type but i32. */
static slm_status weight(const slm_op *op, int si, slm_error *err) {
    const slm_tensor *t = slot(op, si);
    if (t->type == SLM_I32)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "type i32, expected a float or quantized type");
    return layout(op, si, 2, err);
}

static slm_status dim_is(const slm_op *op, int si, int d, int64_t want, const char *what, slm_error *err) {
    int64_t got = slot(op, si)->ne[d];
    if (got == want) return SLM_OK;
    return bad(op, err, SLM_ERR_INVALID_ARG, si, "ne[%d] = %lld, expected %lld (%s)", d, (long long)got,
               (long long)want, what);
}

static bool same_view(const slm_tensor *a, const slm_tensor *b) {
    if (a->buf != b->buf || a->offset != b->offset || a->type != b->type) return false;
    for (int i = 0; i < 4; i++)
        if (a->ne[i] != b->ne[i] || a->nb[i] != b->nb[i]) return false;
    return true;
}

static bool overlap(const slm_tensor *a, const slm_tensor *b) {
    if (a->buf != b->buf) return false;
    size_t a1 = a->offset + slm_tensor_extent(a), b1 = b->offset + slm_tensor_extent(b);
    return a->offset < b1 && b->offset < a1;
}

/* dst does not share bytes with a source, except where the kind allows the very same view (in place). */
static slm_status aliasing(const slm_op *op, slm_error *err) {
    bool elementwise = op->kind == SLM_OP_ADD || op->kind == SLM_OP_SWIGLU || op->kind == SLM_OP_GEGLU;
    /* RMSNorm may too (src0 only): every kernel sums a column before writing it, and each element is written
     * by the thread that read it */
    bool in_place_src0 = op->kind == SLM_OP_RMSNORM;
    for (int i = 0; i < 4; i++) {
        const slm_tensor *s = &op->src[i];
        if (!s->buf || !overlap(&op->dst, s)) continue;
        if (op->kind == SLM_OP_ROPE && i == 0) continue; /* checked to be the same view */
        if (elementwise && i < 2 && same_view(&op->dst, s)) continue;
        if (in_place_src0 && i == 0 && same_view(&op->dst, s)) continue;
        return bad(op, err, SLM_ERR_INVALID_ARG, 0, "overlaps src%d (%s)%s", i, k_slots[op->kind][i + 1].role,
                   elementwise || (in_place_src0 && i == 0) ? " without being the same view"
                                                            : "; this op cannot run in place");
    }
    return SLM_OK;
}

static slm_status check_embed(const slm_op *op, slm_error *err) {
    TRY(weight(op, 1, err));
    TRY(plain(op, 2, SLM_I32, 1, err));
    TRY(plain(op, 0, SLM_F32, 2, err));
    TRY(dim_is(op, 0, 0, op->src[0].ne[0], "the table's row length", err));
    TRY(dim_is(op, 0, 1, op->src[1].ne[0], "one column per id", err));
    if (!isfinite(op->p.embed.scale) || !(op->p.embed.scale > 0))
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.embed.scale = %g, expected finite and > 0", op->p.embed.scale);
    return SLM_OK;
}

static slm_status check_rmsnorm(const slm_op *op, slm_error *err) {
    TRY(plain(op, 1, SLM_F32, 2, err));
    TRY(plain(op, 2, SLM_F32, 1, err));
    TRY(plain(op, 0, SLM_F32, 2, err));
    TRY(dim_is(op, 2, 0, op->src[0].ne[0], "x's row length", err));
    TRY(dim_is(op, 0, 0, op->src[0].ne[0], "x's shape", err));
    TRY(dim_is(op, 0, 1, op->src[0].ne[1], "x's shape", err));
    if (!isfinite(op->p.norm.eps) || op->p.norm.eps < 0)
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.norm.eps = %g, expected finite and >= 0", op->p.norm.eps);
    return SLM_OK;
}

static slm_status check_matmul(const slm_op *op, slm_error *err) {
    const slm_tensor *w = &op->src[0];
    TRY(weight(op, 1, err));
    TRY(plain(op, 2, SLM_F32, 2, err));
    TRY(plain(op, 0, SLM_F32, 2, err));
    TRY(dim_is(op, 2, 0, w->ne[0], "K, the weight's row length", err));
    TRY(dim_is(op, 0, 0, w->ne[1], "N, the weight's rows", err));
    TRY(dim_is(op, 0, 1, op->src[1].ne[1], "x's columns", err));
    if (w->x16 &&
        (!slm_x16_type(w->type) || w->ne[1] % SLM_X16_ROWS || w->nb[1] != slm_dtype_row_bytes(w->type, w->ne[0])))
        return bad(
            op, err, SLM_ERR_INVALID_ARG, 1,
            "repacked (x16) %s [%lld, %lld]: the layout takes q4_0, q8_0, q4_k, q5_k and q6_k rows, 16 at a time, unpadded",
            slm_dtype_name(w->type), (long long)w->ne[0], (long long)w->ne[1]);
    if (op->src[2].buf) {
        TRY(plain(op, 3, SLM_F32, 1, err));
        TRY(dim_is(op, 3, 0, w->ne[1], "N, the weight's rows", err));
    }
    return SLM_OK;
}

static slm_status check_rope(const slm_op *op, slm_error *err) {
    const slm_tensor *x = &op->dst;
    TRY(plain(op, 0, SLM_F32, 3, err));
    if (op->src[0].buf && !same_view(&op->src[0], x))
        return bad(op, err, SLM_ERR_INVALID_ARG, 1, "must be absent or the same view as dst (rope is in place)");
    TRY(plain(op, 2, SLM_I32, 1, err));
    TRY(dim_is(op, 2, 0, x->ne[2], "one position per token", err));
    int n_rot = op->p.rope.n_rot;
    if (n_rot < 2 || n_rot % 2 || n_rot > x->ne[0])
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.rope.n_rot = %d, expected even, >= 2 and <= head_dim %lld",
                   n_rot, (long long)x->ne[0]);
    if (!(op->p.rope.freq_base > 0) || !isfinite(op->p.rope.freq_base) || !(op->p.rope.freq_scale > 0) ||
        !isfinite(op->p.rope.freq_scale))
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.rope.freq_base = %g, freq_scale = %g, expected finite and > 0",
                   op->p.rope.freq_base, op->p.rope.freq_scale);
    if (op->src[2].buf) {
        TRY(plain(op, 3, SLM_F32, 1, err));
        if (op->src[2].ne[0] < n_rot / 2)
            return bad(op, err, SLM_ERR_INVALID_ARG, 3, "ne[0] = %lld, expected >= n_rot / 2 = %d",
                       (long long)op->src[2].ne[0], n_rot / 2);
    }
    return SLM_OK;
}

/* A KV cache operand: f16, or rows of q8_0 / q4_0 blocks (quantized KV) whose heads are whole blocks
 * (head_dim 0: no head size to check, as for kv_write). */
static slm_status kv_cache(const slm_op *op, int si, int head_dim, slm_error *err) {
    const slm_tensor *t = slot(op, si);
    if (t->type != SLM_F16 && t->type != SLM_Q8_0 && t->type != SLM_Q4_0)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "type %s, expected f16, q8_0 or q4_0", slm_dtype_name(t->type));
    TRY(layout(op, si, 2, err));
    int blk = slm_dtype_get(t->type)->block_elems;
    if (head_dim > 0 && head_dim % blk)
        return bad(op, err, SLM_ERR_INVALID_ARG, si, "p.attn.head_dim %d is not a multiple of the %s block (%d)",
                   head_dim, slm_dtype_name(t->type), blk);
    return SLM_OK;
}

static slm_status check_kv_write(const slm_op *op, slm_error *err) {
    TRY(kv_cache(op, 0, 0, err));
    TRY(plain(op, 1, SLM_F32, 2, err));
    TRY(plain(op, 2, SLM_I32, 1, err));
    TRY(dim_is(op, 1, 0, op->dst.ne[0], "the cache's row length", err));
    TRY(dim_is(op, 2, 0, op->src[0].ne[1], "one position per token", err));
    if (op->src[0].ne[1] > op->dst.ne[1])
        return bad(op, err, SLM_ERR_INVALID_ARG, 1, "%lld tokens, more than the cache's %lld rows",
                   (long long)op->src[0].ne[1], (long long)op->dst.ne[1]);
    return SLM_OK;
}

static slm_status check_attention(const slm_op *op, slm_error *err) {
    int hd = op->p.attn.head_dim, nh = op->p.attn.n_head, nkv = op->p.attn.n_head_kv;
    if (hd < 1 || nh < 1 || nkv < 1 || nh % nkv)
        return bad(op, err, SLM_ERR_INVALID_ARG, -1,
                   "p.attn head_dim %d, n_head %d, n_head_kv %d: expected all >= 1 and n_head_kv dividing n_head", hd,
                   nh, nkv);
    if (!isfinite(op->p.attn.scale) || !(op->p.attn.scale > 0))
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.attn.scale = %g, expected finite and > 0", op->p.attn.scale);
    if (op->p.attn.window < 0)
        return bad(op, err, SLM_ERR_INVALID_ARG, -1, "p.attn.window = %d, expected >= 0 (0: no window)",
                   op->p.attn.window);
    TRY(plain(op, 1, SLM_F32, 2, err));
    TRY(kv_cache(op, 2, hd, err));
    TRY(kv_cache(op, 3, hd, err));
    TRY(plain(op, 4, SLM_I32, 1, err));
    TRY(plain(op, 0, SLM_F32, 2, err));
    TRY(dim_is(op, 1, 0, (int64_t)hd * nh, "head_dim * n_head", err));
    TRY(dim_is(op, 2, 0, (int64_t)hd * nkv, "head_dim * n_head_kv", err));
    TRY(dim_is(op, 3, 0, (int64_t)hd * nkv, "head_dim * n_head_kv", err));
    TRY(dim_is(op, 3, 1, op->src[1].ne[1], "the K cache's rows", err));
    TRY(dim_is(op, 4, 0, op->src[0].ne[1], "one position per token", err));
    TRY(dim_is(op, 0, 0, op->src[0].ne[0], "q's shape", err));
    return dim_is(op, 0, 1, op->src[0].ne[1], "q's shape", err);
}

static slm_status check_elementwise(const slm_op *op, slm_error *err) {
    TRY(plain(op, 1, SLM_F32, 2, err));
    TRY(plain(op, 2, SLM_F32, 2, err));
    TRY(plain(op, 0, SLM_F32, 2, err));
    for (int si = 0; si < 3; si += 2) {
        TRY(dim_is(op, si, 0, op->src[0].ne[0], "src0's shape", err));
        TRY(dim_is(op, si, 1, op->src[0].ne[1], "src0's shape", err));
    }
    return SLM_OK;
}

slm_status slm_op_check(const slm_op *op, slm_error *err) {
    if (!op) return slm_fail(err, SLM_ERR_INVALID_ARG, "op_check: no op");
    if ((unsigned)op->kind >= SLM_OP_KIND_COUNT)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "op_check: op '%s' (layer %d): unknown kind %d",
                        op->name ? op->name : "?", op->layer, (int)op->kind);
    for (int si = 0; si < 5; si++) {
        presence need = k_slots[op->kind][si].need;
        bool has = slot(op, si)->buf != NULL;
        if (need == REQUIRED && !has) return bad(op, err, SLM_ERR_INVALID_ARG, si, "missing (no buffer)");
        if (need == ABSENT && has)
            return bad(op, err, SLM_ERR_INVALID_ARG, -1, "%s is set, but %s takes no %s", k_slot_names[si],
                       slm_op_kind_name(op->kind), k_slot_names[si]);
        if (slot(op, si)->x16 && (op->kind != SLM_OP_MATMUL || si != 1))
            return bad(op, err, SLM_ERR_INVALID_ARG, si, "is in the repacked (x16) layout, which only a weight reads");
    }
    slm_status s = SLM_OK;
    switch (op->kind) {
    case SLM_OP_EMBED: s = check_embed(op, err); break;
    case SLM_OP_RMSNORM: s = check_rmsnorm(op, err); break;
    case SLM_OP_MATMUL: s = check_matmul(op, err); break;
    case SLM_OP_ROPE: s = check_rope(op, err); break;
    case SLM_OP_KV_WRITE: s = check_kv_write(op, err); break;
    case SLM_OP_ATTENTION: s = check_attention(op, err); break;
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_ADD: s = check_elementwise(op, err); break;
    case SLM_OP_KIND_COUNT: break;
    }
    return s ? s : aliasing(op, err);
}
