#include <string.h>

#include "backend.h"

slm_tensor slm_tensor_make(slm_buffer *buf, size_t offset, slm_dtype type, int64_t ne0, int64_t ne1, int64_t ne2,
                           int64_t ne3) {
    slm_tensor t;
    memset(&t, 0, sizeof t);
    t.buf = buf;
    t.offset = offset;
    t.type = type;
    t.ne[0] = ne0;
    t.ne[1] = ne1 > 0 ? ne1 : 1;
    t.ne[2] = ne2 > 0 ? ne2 : 1;
    t.ne[3] = ne3 > 0 ? ne3 : 1;
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)type);
    t.nb[0] = ti ? (size_t)ti->block_bytes : 0;
    t.nb[1] = slm_dtype_row_bytes(type, ne0);
    t.nb[2] = t.nb[1] * (size_t)t.ne[1];
    t.nb[3] = t.nb[2] * (size_t)t.ne[2];
    return t;
}

slm_tensor slm_tensor_cols(slm_tensor t, int64_t first, int64_t n) {
    t.offset += (size_t)first * t.nb[1];
    t.ne[1] = n;
    t.nb[2] = t.nb[1] * (size_t)n;
    t.nb[3] = t.nb[2] * (size_t)t.ne[2];
    return t;
}

int64_t slm_tensor_nelements(const slm_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

size_t slm_tensor_bytes(const slm_tensor *t) {
    return slm_dtype_row_bytes(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

size_t slm_tensor_extent(const slm_tensor *t) {
    size_t e = slm_dtype_row_bytes(t->type, t->ne[0]);
    for (int i = 1; i < 4; i++)
        if (t->ne[i] > 1) e += (size_t)(t->ne[i] - 1) * t->nb[i];
    return e;
}

const char *slm_op_kind_name(slm_op_kind k) {
    static const char *const names[SLM_OP_KIND_COUNT] = {
        [SLM_OP_EMBED] = "embed",   [SLM_OP_RMSNORM] = "rmsnorm",   [SLM_OP_MATMUL] = "matmul",
        [SLM_OP_ROPE] = "rope",     [SLM_OP_KV_WRITE] = "kv_write", [SLM_OP_ATTENTION] = "attention",
        [SLM_OP_SWIGLU] = "swiglu", [SLM_OP_ADD] = "add",           [SLM_OP_GEGLU] = "geglu"};
    return (unsigned)k < SLM_OP_KIND_COUNT ? names[k] : "unknown";
}
