/* slm_op_check, the op contract of backend.h: one valid op of every kind is accepted; every field made
 * invalid is rejected with a status and a message that names the operand (or parameter); and every op the
 * real graph builds for small synthetic models passes, as do the CPU's supports() for them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "graph.h"
#include "model.h"
#include "scratch.h"
#include "kv_cache.h"
#include "synth.h"
#include "synth_gguf.h"
#include "test_util.h"

/* Operands live in separate fake buffers (no device: slm_op_check never touches memory), so valid ops
 * overlap nothing. */
enum { N_BUFS = 5 };
static slm_buffer g_bufs[N_BUFS];

static slm_tensor make(int b, slm_dtype t, int64_t ne0, int64_t ne1, int64_t ne2) {
    return slm_tensor_make(&g_bufs[b], 64, t, ne0, ne1, ne2, 1);
}

static slm_op valid(slm_op_kind kind) {
    slm_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.layer = 3;
    op.name = "t_op";
    switch (kind) {
    case SLM_OP_EMBED:
        op.src[0] = make(0, SLM_Q4_0, 64, 100, 1);
        op.src[1] = make(1, SLM_I32, 3, 1, 1);
        op.dst = make(2, SLM_F32, 64, 3, 1);
        op.p.embed.scale = 1.0f;
        break;
    case SLM_OP_RMSNORM:
        op.src[0] = make(0, SLM_F32, 64, 3, 1);
        op.src[1] = make(1, SLM_F32, 64, 1, 1);
        op.dst = make(2, SLM_F32, 64, 3, 1);
        op.p.norm.eps = 1e-5f;
        break;
    case SLM_OP_MATMUL:
        op.src[0] = make(0, SLM_Q4_K, 256, 32, 1);
        op.src[1] = make(1, SLM_F32, 256, 3, 1);
        op.src[2] = make(3, SLM_F32, 32, 1, 1);
        op.dst = make(2, SLM_F32, 32, 3, 1);
        break;
    case SLM_OP_ROPE:
        op.dst = op.src[0] = make(0, SLM_F32, 64, 4, 3);
        op.src[1] = make(1, SLM_I32, 3, 1, 1);
        op.src[2] = make(2, SLM_F32, 32, 1, 1);
        op.p.rope.n_rot = 64;
        op.p.rope.neox = true;
        op.p.rope.freq_base = 10000.0f;
        op.p.rope.freq_scale = 1.0f;
        break;
    case SLM_OP_KV_WRITE:
        op.dst = make(0, SLM_F16, 128, 16, 1);
        op.dst.nb[1] = 2 * 128 + 64; /* padded rows, as the KV cache has */
        op.dst.nb[2] = op.dst.nb[3] = op.dst.nb[1] * 16;
        op.src[0] = make(1, SLM_F32, 128, 3, 1);
        op.src[1] = make(2, SLM_I32, 3, 1, 1);
        break;
    case SLM_OP_ATTENTION:
        op.p.attn.head_dim = 64;
        op.p.attn.n_head = 4;
        op.p.attn.n_head_kv = 2;
        op.p.attn.scale = 0.125f;
        op.src[0] = make(0, SLM_F32, 256, 3, 1);
        op.src[1] = make(1, SLM_F16, 128, 16, 1);
        op.src[2] = make(2, SLM_F16, 128, 16, 1);
        op.src[3] = make(3, SLM_I32, 3, 1, 1);
        op.dst = make(4, SLM_F32, 256, 3, 1);
        break;
    case SLM_OP_SWIGLU: /* in place, as the graph runs it */
        op.src[0] = make(0, SLM_F32, 64, 3, 1);
        op.src[1] = make(1, SLM_F32, 64, 3, 1);
        op.dst = op.src[0];
        break;
    case SLM_OP_ADD:
        op.src[0] = make(0, SLM_F32, 64, 3, 1);
        op.src[1] = make(1, SLM_F32, 64, 3, 1);
        op.dst = make(2, SLM_F32, 64, 3, 1);
        break;
    case SLM_OP_GEGLU: /* in place, as the graph runs it */
        op.src[0] = make(0, SLM_F32, 64, 3, 1);
        op.src[1] = make(1, SLM_F32, 64, 3, 1);
        op.dst = op.src[0];
        break;
    case SLM_OP_KIND_COUNT: break;
    }
    return op;
}

static slm_tensor *slot(slm_op *op, int i) { return i == 0 ? &op->dst : &op->src[i - 1]; }
static const char *const k_slot_names[5] = {"dst", "src0", "src1", "src2", "src3"};

static int n_rejected;

/* op must be rejected with INVALID_ARG or UNSUPPORTED, and the message must name `want`, the kind and the op. */
static void expect_reject(const slm_op *op, const char *what, const char *want) {
    slm_error err;
    memset(&err, 0, sizeof err);
    slm_status s = slm_op_check(op, &err);
    CHECK(s == SLM_ERR_INVALID_ARG || s == SLM_ERR_UNSUPPORTED, "%s %s: accepted (%s)", slm_op_kind_name(op->kind),
          what, slm_status_name(s));
    if (s == SLM_OK) return;
    CHECK(strstr(err.msg, want) != NULL, "%s %s: message does not name '%s': %s", slm_op_kind_name(op->kind), what,
          want, err.msg);
    if ((unsigned)op->kind < SLM_OP_KIND_COUNT)
        CHECK(strstr(err.msg, slm_op_kind_name(op->kind)) && strstr(err.msg, "t_op"), "%s: kind or name missing: %s",
              what, err.msg);
    if (getenv("SLM_TEST_VERBOSE")) printf("  %-10s %-34s -> %s\n", slm_op_kind_name(op->kind), what, err.msg);
    n_rejected++;
}

/* One statement that breaks a valid op of kind, and the word its message must contain. */
#define REJECT(kind, want, stmt)                                                                                       \
    do {                                                                                                               \
        slm_op op = valid(kind);                                                                                       \
        stmt;                                                                                                          \
        expect_reject(&op, #stmt, want);                                                                               \
    } while (0)

static void test_valid(void) {
    for (int k = 0; k < SLM_OP_KIND_COUNT; k++) {
        slm_op op = valid((slm_op_kind)k);
        slm_error err = {{0}};
        CHECK(slm_op_check(&op, &err) == SLM_OK, "valid %s rejected: %s", slm_op_kind_name((slm_op_kind)k), err.msg);
        CHECK(slm_op_check(&op, NULL) == SLM_OK, "valid %s rejected without err", slm_op_kind_name((slm_op_kind)k));
    }
    /* optional operands may be absent; elementwise ops may write a source in place or a fresh tensor */
    slm_op op = valid(SLM_OP_MATMUL);
    op.src[2] = (slm_tensor){0};
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "matmul without bias");
    op = valid(SLM_OP_ROPE);
    op.src[0] = op.src[2] = (slm_tensor){0};
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "rope without src0 and factors");
    op = valid(SLM_OP_ADD);
    op.dst = op.src[1];
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "add into src1");
    op = valid(SLM_OP_RMSNORM);
    op.dst = op.src[0];
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "rmsnorm in place");
    op = valid(SLM_OP_SWIGLU);
    op.dst = make(2, SLM_F32, 64, 3, 1);
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "swiglu into a fresh tensor");
    op = valid(SLM_OP_GEGLU);
    op.dst = op.src[1];
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "geglu into src1");
    op = valid(SLM_OP_EMBED);
    op.p.embed.scale = 25.3f;
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "embed scaled by sqrt(n_embd)");
    op = valid(SLM_OP_ATTENTION);
    op.p.attn.window = 1;
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "attention over a window of one row");
    op.p.attn.window = 512;
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "attention with a window larger than the cache");
    /* quantized KV caches (-ctk / -ctv): q8_0 K, q4_0 V, padded rows; a q8_0 cache written */
    op = valid(SLM_OP_ATTENTION);
    op.src[1] = make(1, SLM_Q8_0, 128, 16, 1);
    op.src[1].nb[1] = 4 * 34 + 20;
    op.src[1].nb[2] = op.src[1].nb[3] = op.src[1].nb[1] * 16;
    op.src[2] = make(2, SLM_Q4_0, 128, 16, 1);
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "attention over a q8_0 K and q4_0 V cache");
    op = valid(SLM_OP_KV_WRITE);
    op.dst = make(0, SLM_Q8_0, 128, 16, 1);
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "kv_write into a q8_0 cache");
    op = valid(SLM_OP_ROPE);
    op.dst.nb[1] = 64 * 4 + 16; /* padded heads */
    op.dst.nb[2] = op.dst.nb[1] * 4;
    op.src[0] = op.dst;
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "rope over padded heads");
    op = valid(SLM_OP_MATMUL);
    op.src[0] = make(0, SLM_BF16, 100, 7, 1);
    op.src[1] = make(1, SLM_F32, 100, 3, 1);
    op.src[2].ne[0] = 7;
    op.dst = make(2, SLM_F32, 7, 3, 1);
    CHECK(slm_op_check(&op, NULL) == SLM_OK, "bf16 weight, K not a multiple of 32");
}

/* Field by field on every slot of every kind: presence, type, rank, contiguity, alignment, buffer range. */
static void test_every_slot(void) {
    for (int k = 0; k < SLM_OP_KIND_COUNT; k++) {
        slm_op base = valid((slm_op_kind)k);
        for (int si = 0; si < 5; si++) {
            const char *name = k_slot_names[si];
            slm_op op = base;
            slm_tensor *t = slot(&op, si);
            if (!t->buf) { /* valid() fills every optional operand: an empty slot is one the kind does not take */
                *t = make(4, SLM_F32, 8, 1, 1);
                expect_reject(&op, "an operand the kind does not take", name);
                continue;
            }
            bool optional = (k == SLM_OP_MATMUL && si == 3) || (k == SLM_OP_ROPE && (si == 1 || si == 3));
            if (!optional) {
                t->buf = NULL;
                expect_reject(&op, "a required operand missing", name);
            }
            /* for rope's src0 the message is the in-place rule: it still names src0 */
            op = base;
            t = slot(&op, si);
            t->type = t->type == SLM_F32 ? SLM_F16 : t->type == SLM_I32 || t->type == SLM_F16 ? SLM_F32 : SLM_I32;
            expect_reject(&op, "the wrong type", name);
            op = base;
            t = slot(&op, si);
            t->type = (slm_dtype)4; /* a GGUF type id slm does not know */
            expect_reject(&op, "an unknown type", name);
            op = base;
            t = slot(&op, si);
            t->ne[3] = 2;
            expect_reject(&op, "one dimension too many", name);
            op = base;
            t = slot(&op, si);
            t->ne[0] = 0;
            expect_reject(&op, "an empty dimension", name);
            op = base;
            t = slot(&op, si);
            t->nb[0] *= 2;
            expect_reject(&op, "non-contiguous rows", name);
            op = base;
            t = slot(&op, si);
            t->offset += 1;
            expect_reject(&op, "a misaligned offset", name);
            op = base;
            t = slot(&op, si);
            t->offset = t->buf->size - 4;
            expect_reject(&op, "bytes past the buffer", name);
        }
    }
}

static void test_shapes_and_params(void) {
    const float nan = NAN;
    REJECT(SLM_OP_EMBED, "dst", op.dst.ne[0] = 32);
    REJECT(SLM_OP_EMBED, "dst", op.dst = make(2, SLM_F32, 64, 4, 1));
    REJECT(SLM_OP_EMBED, "src0", op.src[0].type = SLM_I32);
    REJECT(SLM_OP_EMBED, "src0", op.src[0] = make(0, SLM_Q4_0, 48, 100, 1));
    REJECT(SLM_OP_EMBED, "src0", op.src[0].nb[1] = 18);
    REJECT(SLM_OP_EMBED, "scale", op.p.embed.scale = 0.0f);
    REJECT(SLM_OP_EMBED, "scale", op.p.embed.scale = -1.0f);
    REJECT(SLM_OP_EMBED, "scale", op.p.embed.scale = nan);

    REJECT(SLM_OP_RMSNORM, "src1", op.src[1] = make(1, SLM_F32, 32, 1, 1));
    REJECT(SLM_OP_RMSNORM, "dst", op.dst = make(2, SLM_F32, 64, 2, 1));
    REJECT(SLM_OP_RMSNORM, "eps", op.p.norm.eps = -1.0f);
    REJECT(SLM_OP_RMSNORM, "eps", op.p.norm.eps = nan);
    REJECT(SLM_OP_RMSNORM, "src1", op.src[1] = make(1, SLM_F32, 64, 2, 1));
    /* in place means the very same view; the weight may never be written */
    REJECT(SLM_OP_RMSNORM, "overlaps src0", op.dst = op.src[0]; op.dst.nb[1] += 4);
    REJECT(SLM_OP_RMSNORM, "overlaps src1", op.src[1] = op.src[0]; op.src[1].ne[1] = 1; op.dst = op.src[0]);

    REJECT(SLM_OP_MATMUL, "src1", op.src[1] = make(1, SLM_F32, 512, 3, 1));
    REJECT(SLM_OP_MATMUL, "dst", op.dst = make(2, SLM_F32, 31, 3, 1));
    REJECT(SLM_OP_MATMUL, "dst", op.dst = make(2, SLM_F32, 32, 2, 1));
    REJECT(SLM_OP_MATMUL, "src2", op.src[2] = make(3, SLM_F32, 31, 1, 1));
    REJECT(SLM_OP_MATMUL, "src2", op.src[2].type = SLM_F16);
    REJECT(SLM_OP_MATMUL, "src0", op.src[0] = make(0, SLM_Q4_K, 128, 32, 1));
    REJECT(SLM_OP_MATMUL, "src0", op.src[0].nb[1] = 100);
    REJECT(SLM_OP_MATMUL, "src0", op.src[0] = make(0, SLM_Q4_K, 256, 32, 2));
    REJECT(SLM_OP_MATMUL, "src1", op.src[1].nb[1] = 4 * 256 - 4);
    REJECT(SLM_OP_MATMUL, "src1", op.src[1].nb[1] = 4 * 256 + 2);
    REJECT(SLM_OP_MATMUL, "in place", op.dst = make(1, SLM_F32, 32, 3, 1));

    REJECT(SLM_OP_ROPE, "n_rot", op.p.rope.n_rot = 63);
    REJECT(SLM_OP_ROPE, "n_rot", op.p.rope.n_rot = 0);
    REJECT(SLM_OP_ROPE, "n_rot", op.p.rope.n_rot = 66);
    REJECT(SLM_OP_ROPE, "freq_base", op.p.rope.freq_base = 0.0f);
    REJECT(SLM_OP_ROPE, "freq_scale", op.p.rope.freq_scale = nan);
    REJECT(SLM_OP_ROPE, "src1", op.src[1] = make(1, SLM_I32, 2, 1, 1));
    REJECT(SLM_OP_ROPE, "src2", op.src[2] = make(2, SLM_F32, 16, 1, 1));
    REJECT(SLM_OP_ROPE, "src0", op.src[0] = make(3, SLM_F32, 64, 4, 3));
    REJECT(SLM_OP_ROPE, "src0", op.src[0].nb[1] += 4);
    REJECT(SLM_OP_ROPE, "dst", op.dst.nb[1] = 100; op.src[0] = op.dst);
    REJECT(SLM_OP_ROPE, "dst", op.dst.nb[2] = 4 * 64 * 4 - 4; op.src[0] = op.dst);
    REJECT(SLM_OP_ROPE, "src1", op.src[1] = make(0, SLM_I32, 3, 1, 1); op.src[1].offset = 64 + 16);

    REJECT(SLM_OP_KV_WRITE, "src0", op.src[0] = make(1, SLM_F32, 64, 3, 1));
    REJECT(SLM_OP_KV_WRITE, "src1", op.src[1] = make(2, SLM_I32, 2, 1, 1));
    REJECT(SLM_OP_KV_WRITE, "dst", op.dst.nb[1] = 200);
    REJECT(SLM_OP_KV_WRITE, "dst", op.dst.type = SLM_F32);
    REJECT(SLM_OP_KV_WRITE, "dst", op.dst = make(0, SLM_Q4_K, 256, 16, 1); op.src[0] = make(1, SLM_F32, 256, 3, 1));
    REJECT(SLM_OP_KV_WRITE, "dst", op.dst = make(0, SLM_Q8_0, 128, 16, 1); op.dst.nb[1] = 3 * 34);
    REJECT(SLM_OP_KV_WRITE, "src0", op.src[0] = make(1, SLM_F32, 128, 17, 1); op.src[1] = make(2, SLM_I32, 17, 1, 1));

    REJECT(SLM_OP_ATTENTION, "n_head_kv", op.p.attn.n_head_kv = 3);
    REJECT(SLM_OP_ATTENTION, "n_head_kv", op.p.attn.n_head_kv = 0);
    REJECT(SLM_OP_ATTENTION, "head_dim", op.p.attn.head_dim = 0);
    REJECT(SLM_OP_ATTENTION, "n_head", op.p.attn.n_head = -4);
    REJECT(SLM_OP_ATTENTION, "scale", op.p.attn.scale = 0.0f);
    REJECT(SLM_OP_ATTENTION, "scale", op.p.attn.scale = nan);
    REJECT(SLM_OP_ATTENTION, "src0", op.p.attn.head_dim = 32);
    REJECT(SLM_OP_ATTENTION, "src0", op.src[0] = make(0, SLM_F32, 192, 3, 1));
    REJECT(SLM_OP_ATTENTION, "src1", op.src[1] = make(1, SLM_F16, 64, 16, 1));
    REJECT(SLM_OP_ATTENTION, "src2", op.src[2] = make(2, SLM_F16, 128, 8, 1));
    REJECT(SLM_OP_ATTENTION, "src2", op.src[2].type = SLM_F32);
    REJECT(SLM_OP_ATTENTION, "src3", op.src[3] = make(3, SLM_I32, 2, 1, 1));
    REJECT(SLM_OP_ATTENTION, "dst", op.dst = make(4, SLM_F32, 256, 2, 1));
    REJECT(SLM_OP_ATTENTION, "in place", op.dst = op.src[0]);
    REJECT(SLM_OP_ATTENTION, "window", op.p.attn.window = -1);
    /* a quantized cache needs heads of whole blocks: 4 heads of 48 over 2 kv heads (96 = 3 blocks) */
    REJECT(SLM_OP_ATTENTION, "head_dim 48", op.p.attn.head_dim = 48; op.p.attn.n_head = 4; op.p.attn.n_head_kv = 2;
           op.src[0] = make(0, SLM_F32, 192, 3, 1); op.dst = make(4, SLM_F32, 192, 3, 1);
           op.src[1] = make(1, SLM_Q8_0, 96, 16, 1); op.src[2] = make(2, SLM_F16, 96, 16, 1));
    REJECT(SLM_OP_ATTENTION, "src1", op.src[1] = make(1, SLM_Q5_0, 128, 16, 1));

    REJECT(SLM_OP_SWIGLU, "src1", op.src[1] = make(1, SLM_F32, 64, 2, 1));
    REJECT(SLM_OP_SWIGLU, "dst", op.dst = op.src[1]; op.dst.offset += 4);
    REJECT(SLM_OP_GEGLU, "src1", op.src[1] = make(1, SLM_F32, 64, 2, 1));
    REJECT(SLM_OP_GEGLU, "dst", op.dst = op.src[1]; op.dst.offset += 4);
    REJECT(SLM_OP_GEGLU, "src0", op.src[0].type = SLM_F16; op.dst = make(2, SLM_F32, 64, 3, 1));
    REJECT(SLM_OP_ADD, "dst", op.dst = make(2, SLM_F32, 32, 3, 1));
    REJECT(SLM_OP_ADD, "src1", op.src[1] = make(1, SLM_F32, 64, 3, 2));
    REJECT(SLM_OP_ADD, "dst", op.dst = op.src[0]; op.dst.nb[1] += 4);

    REJECT(SLM_OP_ADD, "kind", op.kind = SLM_OP_KIND_COUNT);
    REJECT(SLM_OP_ADD, "kind", op.kind = (slm_op_kind)-1);
    slm_error err = {{0}};
    CHECK(slm_op_check(NULL, &err) == SLM_ERR_INVALID_ARG, "a NULL op");
}

/* Every op slm_graph_build makes for a model passes slm_op_check and the CPU's supports(); want_bias and
 * want_factors: the graph must hold a matmul bias / rope frequency factors (so those paths are covered). */
static void graph_ops_pass(const char *spec_str, int n_ctx, bool want_bias, bool want_factors) {
    slm_error err = {{0}};
    slm_synth_spec spec;
    slm_gguf *g = NULL;
    void *data = NULL;
    slm_model *m = NULL;
    CHECK(slm_synth_parse(spec_str, &spec, &err) == SLM_OK, "%s: %s", spec_str, err.msg);
    CHECK(slm_synth_open(&spec, 2, &g, &data, &err) == SLM_OK, "%s: synth: %s", spec_str, err.msg);
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = n_ctx;
    p.n_batch = 8;
    p.device = "cpu";
    if (g) CHECK(slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK, "%s: load: %s", spec_str, err.msg);
    if (!m) {
        free(data);
        return;
    }
    const slm_hparams *hp = &m->hp;
    slm_device *dev = m->place.devices[0];
    slm_scratch sc;
    slm_buffer sbuf;
    slm_kv_cache kv = {0};
    int n_batch = m->cfg.n_batch;
    bool ok = slm_buffer_alloc(dev, (size_t)slm_scratch_layout(hp, n_batch, true, NULL, NULL), &sbuf, &err) == SLM_OK &&
        slm_kv_cache_create(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx, 1, m->place.devices, m->place.n_devices,
                            m->place.layer_device, &kv, &err) == SLM_OK;
    CHECK(ok, "%s: buffers: %s", spec_str, err.msg);
    bool bias = false, factors = false;
    if (ok) {
        slm_scratch_layout(hp, n_batch, true, &sbuf, &sc);
        int sizes[] = {1, 3, n_batch};
        for (int si = 0; si < 3; si++) {
            for (int all = 0; all < 2; all++) {
                slm_graph gr = {0};
                slm_graph_inputs in = {.m = m, .scratch = &sc, .kv = &kv, .n_tokens = sizes[si], .all_logits = all};
                CHECK(slm_graph_build(&in, &gr, &err) == SLM_OK, "%s: graph: %s", spec_str, err.msg);
                int seen = 0;
                for (int i = 0; i < gr.n_ops; i++) {
                    memset(&err, 0, sizeof err);
                    slm_status s = slm_op_check(&gr.ops[i], &err);
                    CHECK(s == SLM_OK, "%s T=%d: graph op %d: %s", spec_str, sizes[si], i, err.msg);
                    CHECK(slm_device_supports(dev, &gr.ops[i]), "%s: the cpu refuses %s '%s'", spec_str,
                          slm_op_kind_name(gr.ops[i].kind), gr.ops[i].name);
                    seen |= 1 << gr.ops[i].kind;
                    bias |= gr.ops[i].kind == SLM_OP_MATMUL && gr.ops[i].src[2].buf;
                    factors |= gr.ops[i].kind == SLM_OP_ROPE && gr.ops[i].src[2].buf;
                }
                /* one gated activation: SwiGLU, or GeGLU (gemma3) */
                int other = 1 << (seen >> SLM_OP_GEGLU & 1 ? SLM_OP_SWIGLU : SLM_OP_GEGLU);
                CHECK(!(seen & other) && (seen | other) == (1 << SLM_OP_KIND_COUNT) - 1,
                      "%s: the graph has every kind but one gated activation (mask %x)", spec_str, seen);
                slm_graph_free(&gr);
            }
        }
    }
    CHECK(bias == want_bias && factors == want_factors, "%s: bias %d (want %d), rope factors %d (want %d)", spec_str,
          bias, want_bias, factors, want_factors);
    slm_buffer_release(&sbuf);
    slm_kv_cache_free(&kv);
    slm_model_free(m);
    free(data);
    printf("graph of %s: every op passes\n", spec_str);
}

int main(void) {
    for (int i = 0; i < N_BUFS; i++) g_bufs[i].size = (size_t)1 << 20;
    test_valid();
    test_every_slot();
    test_shapes_and_params();
    printf("%d invalid ops rejected\n", n_rejected);
    graph_ops_pass("custom:q4_0", 64, false, false);
    graph_ops_pass("custom:q4_k_m:arch=qwen2:tied=1", 32, true, false); /* q/k/v biases, tied head */
    /* per-head q/k norms in place, q wider than the residual */
    graph_ops_pass("custom:q8_0:arch=qwen3:n_head=4:head_dim=128:tied=1", 16, false, false);
    /* gemma3: post norms in place, GeGLU, the scaled embedding, local layers with a window and their own base */
    graph_ops_pass("gemma3-270m:q8_0:n_layer=7:n_vocab=4096", 16, false, false);
    graph_ops_pass("llama3-1b:q8_0:n_layer=1:n_embd=256:n_head=4:n_head_kv=1:head_dim=64:n_ff=512:n_vocab=128008", 48,
                   false, true);
    return slm_test_finish("test_op_check");
}
