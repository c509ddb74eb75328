#include "cpu_ops.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "attend_kv.h"
#include "ops_ref.h"
#include "quant_ref.h"

#define PTR(t) ((uint8_t *)(t).buf->host + (t).offset)
#define COL(t, c) (PTR(t) + (size_t)(c) * (t).nb[1])

/* The [start, end) share of n items for thread ith, in chunks of `align` so SIMD kernels see whole
 * tiles. */
static void share(int64_t n, int ith, int nth, int64_t align, int64_t *start, int64_t *end) {
    int64_t chunks = (n + align - 1) / align;
    int64_t per = (chunks + nth - 1) / nth;
    *start = per * ith * align;
    *end = per * (ith + 1) * align;
    if (*start > n) *start = n;
    if (*end > n) *end = n;
}

/* The CPU's own limits (the contract is slm_op_check's): every weight type has a kernel, so only rope's
 * per-token angle tables (CPU_ROPE_MAX_HALF pairs) bound anything. */
#define CPU_ROPE_MAX_HALF 256

bool slm_cpu_op_supported(const slm_op *op) {
    return op->kind != SLM_OP_ROPE || op->p.rope.n_rot / 2 <= CPU_ROPE_MAX_HALF;
}

/* Prompt batches of a weight type the packed GEMM takes go there (see slm_cpu_kernels.gemm). */
static bool matmul_uses_gemm(const slm_cpu_exec *e, const slm_op *op) {
    return e->k->gemm && op->src[1].ne[1] >= e->k->gemm_min_cols && e->k->gemm_has(op->src[0].type);
}

/* Attention runs on the KV kernel (attend_kv.h: the query heads of a KV head in one pass, positions split
 * across threads at decode) for a quantized K or V cache and for an f16 one whose heads are whole 16-element
 * units (every model slm knows); attend_f16, one head at a time, takes the other head sizes. */
static bool attention_on_kv_kernel(const slm_op *op) {
    return op->src[1].type != SLM_F16 || op->src[2].type != SLM_F16 || op->p.attn.head_dim % 16 == 0;
}

/* Decode (one token) splits each KV head's positions into chunks that the threads share, a partial softmax
 * per chunk, merged afterwards; wider batches give each thread whole (token, KV head) pairs. */
#define ATTN_SPLIT_MAX_T 1

static int64_t attention_kv_chunks(int64_t n_ctx) { return (n_ctx + SLM_ATTEND_KV_CHUNK - 1) / SLM_ATTEND_KV_CHUNK; }

/* Floats of each thread's scratch: three partials of the most heads a call takes and their queries. */
static size_t attention_kv_per_thread(int hd) {
    return 3 * slm_attend_kv_partial_floats(SLM_ATTEND_KV_MAX_G, hd) + (size_t)SLM_ATTEND_KV_MAX_G * (size_t)hd;
}

static size_t attention_kv_work(const slm_op *op, int nth) {
    int hd = op->p.attn.head_dim, nh = op->p.attn.n_head;
    int64_t T = op->src[0].ne[1];
    size_t one = slm_attend_kv_partial_floats(nh, hd); /* the partials of every head of a token */
    size_t b = (size_t)nth * attention_kv_per_thread(hd) * sizeof(float);
    if (T <= ATTN_SPLIT_MAX_T) b += (size_t)T * (size_t)attention_kv_chunks(op->src[1].ne[1]) * one * sizeof(float);
    return b + 64;
}

size_t slm_cpu_op_work_size(const slm_cpu_exec *e, const slm_op *op, int nth) {
    if (op->kind == SLM_OP_MATMUL) {
        int64_t K = op->src[0].ne[0], T = op->src[1].ne[1];
        if (matmul_uses_gemm(e, op)) /* activations, then one packing scratch per thread */
            return e->k->gemm_act_row_bytes(K) * (size_t)T + (size_t)nth * e->k->gemm_scratch_bytes(K) + 64;
        return e->k->act_row_bytes(op->src[0].type, K) * (size_t)T + 128; /* + the row counter (64-aligned) */
    }
    if (op->kind == SLM_OP_ATTENTION) {
        if (attention_on_kv_kernel(op)) return attention_kv_work(op, nth);
        return (size_t)nth * ((size_t)op->src[1].ne[1] + 16) * sizeof(float) * 2;
    }
    return 0;
}

/* out[c][r0..r1) += bias[r0..r1) for every column. */
static void add_bias(const float *bias, float *out, int64_t ostride, int64_t T, int64_t r0, int64_t r1) {
    if (!bias) return;
    for (int64_t c = 0; c < T; c++)
        for (int64_t r = r0; r < r1; r++) out[c * ostride + r] += bias[r];
}

static void run_matmul(const slm_cpu_exec *e, const slm_op *op, int ith, int nth) {
    const slm_tensor *w = &op->src[0], *x = &op->src[1], *b = &op->src[2], *y = &op->dst;
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    /* The work buffer was sized by slm_cpu_op_work_size for this op and nth, so the choice matches. */
    const bool gemm = matmul_uses_gemm(e, op);
    size_t act = gemm ? e->k->gemm_act_row_bytes(K) : e->k->act_row_bytes(w->type, K);
    /* Phase 1: quantize the activation columns (shared by every thread's rows). */
    int64_t c0, c1;
    share(T, ith, nth, 1, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = (const float *)COL(*x, c);
        if (gemm) e->k->gemm_quantize_act(xc, e->work + c * act, K);
        else e->k->quantize_act(w->type, xc, e->work + c * act, K);
    }
    /* The mat-vec path deals rows out from a shared counter after the activations (64-aligned, reset
     * before the barrier, which every thread crosses before taking a chunk). */
    _Atomic int64_t *next = (_Atomic int64_t *)(e->work + ((act * (size_t)T + 63) & ~(size_t)63));
    if (!gemm && ith == 0) atomic_store_explicit(next, 0, memory_order_relaxed);
    slm_pool_barrier(e->pool);
    const uint8_t *wp = PTR(*w);
    float *out = (float *)PTR(*y);
    int64_t ostride = (int64_t)(y->nb[1] / sizeof(float));
    const float *bias = b->buf ? (const float *)PTR(*b) : NULL;
    if (gemm) {
        /* Phase 2 (GEMM): each thread packs and multiplies its own 16-row units of the weight once. */
        int64_t r0, r1;
        share(N, ith, nth, 16, &r0, &r1);
        if (r0 >= r1) return;
        /* act is a multiple of 64 and work is 64-byte aligned, so every thread's scratch is too */
        uint8_t *scratch = e->work + act * (size_t)T + (size_t)ith * e->k->gemm_scratch_bytes(K);
        e->k->gemm(w->type, wp + (size_t)r0 * w->nb[1], w->nb[1], w->x16, r1 - r0, e->work, act, T, K, out + r0,
                   ostride, scratch);
        add_bias(bias, out, ostride, T, r0, r1);
        return;
    }
    /* Phase 2 (mat-vec, small batches): chunks of rows taken in turn, about 8 per thread, so a thread the
     * OS or hypervisor slows down hands its remaining rows to the others instead of making every thread
     * wait at the op's end, as static halves would. Prompt batches keep 32-row tiles that stay in cache
     * while all columns pass over them. */
    /* repacked weights (x16): the chunks below are whole 16-row groups, as that kernel needs */
    slm_cpu_matmul_fn mm = w->x16 ? e->k->matvec_x16 : e->k->matmul;
    if (nth == 1) {
        mm(w->type, wp, w->nb[1], N, e->work, act, T, K, out, ostride);
        add_bias(bias, out, ostride, T, 0, N);
        return;
    }
    int64_t chunk = T > 1 ? 32 : ((N / (8 * nth)) + 15) & ~(int64_t)15;
    if (chunk < 16) chunk = 16;
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(next, chunk, memory_order_relaxed);
        if (r0 >= N) break;
        int64_t r1 = r0 + chunk < N ? r0 + chunk : N;
        mm(w->type, wp + (size_t)r0 * w->nb[1], w->nb[1], r1 - r0, e->work, act, T, K, out + r0, ostride);
        add_bias(bias, out, ostride, T, r0, r1);
    }
}

static void run_embed(const slm_op *op, int ith, int nth) {
    const slm_tensor *w = &op->src[0], *ids = &op->src[1];
    int64_t T = ids->ne[0], t0, t1;
    share(T, ith, nth, 1, &t0, &t1);
    const int32_t *id = (const int32_t *)PTR(*ids);
    float scale = op->p.embed.scale;
    for (int64_t t = t0; t < t1; t++) {
        /* ids were range-checked by the caller before the split ran */
        float *y = (float *)COL(op->dst, t);
        slm_ref_dequant_row(w->type, COL(*w, id[t]), y, w->ne[0]);
        if (scale != 1.0f)
            for (int64_t i = 0; i < w->ne[0]; i++) y[i] *= scale;
    }
}

static void run_rmsnorm(const slm_op *op, int ith, int nth) {
    int64_t t0, t1;
    share(op->src[0].ne[1], ith, nth, 1, &t0, &t1);
    for (int64_t t = t0; t < t1; t++)
        slm_ref_rmsnorm((const float *)COL(op->src[0], t), (const float *)PTR(op->src[1]), (float *)COL(op->dst, t),
                        (int)op->src[0].ne[0], op->p.norm.eps);
}

static void run_rope(const slm_op *op, int ith, int nth) {
    const slm_tensor *x = &op->dst;
    int64_t nh = x->ne[1], T = x->ne[2];
    const int32_t *pos = (const int32_t *)PTR(op->src[1]);
    const float *factors = op->src[2].buf ? (const float *)PTR(op->src[2]) : NULL;
    int n_rot = op->p.rope.n_rot, half = n_rot / 2, neox = op->p.rope.neox;
    /* supports() refuses wider rotations; the clamp keeps the tables in bounds should one get here anyway */
    if (half > CPU_ROPE_MAX_HALF) half = CPU_ROPE_MAX_HALF;
    double cs[CPU_ROPE_MAX_HALF], sn[CPU_ROPE_MAX_HALF];
    int64_t i0, i1, cached = -1;
    share(nh * T, ith, nth, 1, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        int64_t t = i / nh, h = i % nh;
        if (t != cached) {
            /* every head of a token turns by the same angles: the same arithmetic as slm_ref_rope */
            for (int j = 0; j < half; j++) {
                double theta = (double)pos[t] * pow((double)op->p.rope.freq_base, -2.0 * j / n_rot) *
                    (double)op->p.rope.freq_scale;
                if (factors) theta /= (double)factors[j];
                cs[j] = cos(theta);
                sn[j] = sin(theta);
            }
            cached = t;
        }
        float *v = (float *)(PTR(*x) + t * x->nb[2] + h * x->nb[1]);
        for (int j = 0; j < half; j++) {
            int a = neox ? j : 2 * j, b = neox ? j + half : 2 * j + 1;
            double x0 = v[a], x1 = v[b];
            v[a] = (float)(x0 * cs[j] - x1 * sn[j]);
            v[b] = (float)(x0 * sn[j] + x1 * cs[j]);
        }
    }
}

static void run_kv_write(const slm_op *op, int ith, int nth) {
    int64_t T = op->src[0].ne[1], n = op->src[0].ne[0], t0, t1;
    share(T, ith, nth, 1, &t0, &t1);
    const int32_t *pos = (const int32_t *)PTR(op->src[1]);
    for (int64_t t = t0; t < t1; t++) {
        const float *src = (const float *)COL(op->src[0], t);
        if (op->dst.type != SLM_F16) { /* quantized rows: the reference quantizer's blocks, bit for bit */
            slm_ref_quantize_row(op->dst.type, src, COL(op->dst, pos[t]), n);
            continue;
        }
        uint16_t *dst = (uint16_t *)COL(op->dst, pos[t]);
        for (int64_t i = 0; i < n; i++) dst[i] = slm_f32_to_f16(src[i]);
    }
}

/* Attention on the KV kernel. Heads are taken in groups of at most SLM_ATTEND_KV_MAX_G query heads of one KV
 * head; a group's positions in chunks of SLM_ATTEND_KV_CHUNK from the first row its token sees, merged in
 * order, so the result is the same for every thread count and both ways of sharing the work. */
static void run_attention_kv(const slm_cpu_exec *e, const slm_op *op, int ith, int nth) {
    int hd = op->p.attn.head_dim, nh = op->p.attn.n_head, nkv = op->p.attn.n_head_kv;
    int group = nh / nkv, gmax = SLM_ATTEND_KV_MAX_G;
    int n_sub = (group + gmax - 1) / gmax; /* calls per KV head */
    int64_t T = op->src[0].ne[1], n_ctx = op->src[1].ne[1], w = op->p.attn.window;
    const int32_t *pos = (const int32_t *)PTR(op->src[3]);
    slm_attend_kv_fn fn = slm_attend_kv_get(e->k->isa);
    size_t kb = slm_dtype_get(op->src[1].type)->block_bytes, vb = slm_dtype_get(op->src[2].type)->block_bytes;
    size_t k_head = (size_t)hd / (size_t)slm_dtype_get(op->src[1].type)->block_elems * kb; /* bytes per head */
    size_t v_head = (size_t)hd / (size_t)slm_dtype_get(op->src[2].type)->block_elems * vb;
    size_t pmax = slm_attend_kv_partial_floats(gmax, hd);
    float *mine = (float *)e->work + (size_t)ith * attention_kv_per_thread(hd), *part = mine + pmax;
    float *tok = part + pmax, *qbuf = tok + pmax;
    /* one call: token t, query heads [h0, h0 + g) of KV head h0 / group, chunk c, into dst */
#define ATTN_CALL(t, h0, g, c, dst)                                                                                    \
    do {                                                                                                               \
        int64_t n_ = pos[t] + 1, first_ = w > 0 && n_ > w ? n_ - w : 0;                                                \
        int64_t p0_ = first_ + (int64_t)(c)*SLM_ATTEND_KV_CHUNK, p1_ = p0_ + SLM_ATTEND_KV_CHUNK;                      \
        if (p1_ > n_) p1_ = n_;                                                                                        \
        int kh_ = (h0) / group;                                                                                        \
        fn((const float *)COL(op->src[0], t) + (size_t)(h0)*hd, g, COL(op->src[1], p0_) + (size_t)kh_ * k_head,        \
           op->src[1].nb[1], op->src[1].type, COL(op->src[2], p0_) + (size_t)kh_ * v_head, op->src[2].nb[1],           \
           op->src[2].type, p1_ - p0_, hd, op->p.attn.scale, dst);                                                     \
    } while (0)
    if (T <= ATTN_SPLIT_MAX_T) {
        /* phase 1: every (token, head group, chunk) partial, shared out; phase 2: merges per head group */
        int64_t max_chunks = attention_kv_chunks(n_ctx), n_groups = (int64_t)nkv * n_sub;
        float *parts = (float *)e->work + (size_t)nth * attention_kv_per_thread(hd);
        size_t per_chunk = slm_attend_kv_partial_floats(nh, hd); /* a chunk's partials of every head */
        int64_t i0, i1;
        share(T * n_groups * max_chunks, ith, nth, 1, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) {
            int64_t t = i / (n_groups * max_chunks), gi = i / max_chunks % n_groups, c = i % max_chunks;
            int64_t n = pos[t] + 1, first = w > 0 && n > w ? n - w : 0;
            if (first + c * SLM_ATTEND_KV_CHUNK >= n) continue; /* past this token's rows */
            int h0 = (int)(gi / n_sub) * group + (int)(gi % n_sub) * gmax;
            int g = group - (int)(gi % n_sub) * gmax < gmax ? group - (int)(gi % n_sub) * gmax : gmax;
            /* partials of heads h0.. at the group's place in the chunk's block (g * (hd + 2) floats each) */
            float *dst = parts + ((size_t)t * (size_t)max_chunks + (size_t)c) * per_chunk + (size_t)h0 * (hd + 2);
            ATTN_CALL(t, h0, g, c, dst);
        }
        slm_pool_barrier(e->pool);
        share(T * n_groups, ith, nth, 1, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) {
            int64_t t = i / n_groups, gi = i % n_groups;
            int64_t n = pos[t] + 1, first = w > 0 && n > w ? n - w : 0;
            int64_t nc = (n - first + SLM_ATTEND_KV_CHUNK - 1) / SLM_ATTEND_KV_CHUNK;
            int h0 = (int)(gi / n_sub) * group + (int)(gi % n_sub) * gmax;
            int g = group - (int)(gi % n_sub) * gmax < gmax ? group - (int)(gi % n_sub) * gmax : gmax;
            size_t pf = slm_attend_kv_partial_floats(g, hd);
            const float *p0 = parts + (size_t)t * (size_t)max_chunks * per_chunk + (size_t)h0 * (hd + 2);
            memcpy(mine, p0, pf * sizeof(float));
            for (int64_t c = 1; c < nc; c++) slm_attend_kv_merge(mine, p0 + (size_t)c * per_chunk, g, hd);
            slm_attend_kv_finish(mine, g, hd, (float *)COL(op->dst, t) + (size_t)h0 * hd);
        }
        return;
    }
    /* prompt batches: the tokens of a batch read the same rows, so (without a window) up to tq of them go
     * through each KV head together, as tq * group query heads, over the chunks every one of them sees in
     * full; each token's last chunks on its own */
    int tq = w == 0 && n_sub == 1 ? gmax / group : 1;
    if (tq > 8) tq = 8;
    if (tq > 1) {
        int64_t n_tb = (T + tq - 1) / tq, i0, i1;
        share(n_tb * nkv, ith, nth, 1, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) {
            int64_t t0 = i / nkv * tq, t1 = t0 + tq < T ? t0 + tq : T;
            int kh = (int)(i % nkv), h0 = kh * group, G = (int)(t1 - t0) * group;
            int64_t n_min = INT64_MAX;
            for (int64_t t = t0; t < t1; t++) n_min = pos[t] + 1 < n_min ? pos[t] + 1 : n_min;
            int64_t c_joint = n_min / SLM_ATTEND_KV_CHUNK; /* chunks every token of the block sees whole */
            for (int64_t t = t0; t < t1 && c_joint > 0; t++)
                memcpy(qbuf + (size_t)(t - t0) * group * hd, (const float *)COL(op->src[0], t) + (size_t)h0 * hd,
                       sizeof(float) * (size_t)group * hd);
            for (int64_t c = 0; c < c_joint; c++) {
                int64_t p0 = c * SLM_ATTEND_KV_CHUNK;
                fn(qbuf, G, COL(op->src[1], p0) + (size_t)kh * k_head, op->src[1].nb[1], op->src[1].type,
                   COL(op->src[2], p0) + (size_t)kh * v_head, op->src[2].nb[1], op->src[2].type, SLM_ATTEND_KV_CHUNK,
                   hd, op->p.attn.scale, c ? part : mine);
                if (c) slm_attend_kv_merge(mine, part, G, hd);
            }
            for (int64_t t = t0; t < t1; t++) {
                int j = (int)(t - t0);
                int64_t nc = (pos[t] + 1 + SLM_ATTEND_KV_CHUNK - 1) / SLM_ATTEND_KV_CHUNK;
                if (c_joint > 0) { /* token t's heads of the joint partial: m, l, then the V sums */
                    memcpy(tok, mine + (size_t)j * group, sizeof(float) * (size_t)group);
                    memcpy(tok + group, mine + G + (size_t)j * group, sizeof(float) * (size_t)group);
                    memcpy(tok + 2 * group, mine + 2 * (size_t)G + (size_t)j * group * hd,
                           sizeof(float) * (size_t)group * hd);
                }
                for (int64_t c = c_joint; c < nc; c++) {
                    ATTN_CALL(t, h0, group, c, c ? part : tok);
                    if (c) slm_attend_kv_merge(tok, part, group, hd);
                }
                slm_attend_kv_finish(tok, group, hd, (float *)COL(op->dst, t) + (size_t)h0 * hd);
            }
        }
        return;
    }
    int64_t n_groups = (int64_t)nkv * n_sub, i0, i1;
    share(T * n_groups, ith, nth, 1, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        int64_t t = i / n_groups, gi = i % n_groups;
        int64_t n = pos[t] + 1, first = w > 0 && n > w ? n - w : 0;
        int64_t nc = (n - first + SLM_ATTEND_KV_CHUNK - 1) / SLM_ATTEND_KV_CHUNK;
        int h0 = (int)(gi / n_sub) * group + (int)(gi % n_sub) * gmax;
        int g = group - (int)(gi % n_sub) * gmax < gmax ? group - (int)(gi % n_sub) * gmax : gmax;
        ATTN_CALL(t, h0, g, 0, mine);
        for (int64_t c = 1; c < nc; c++) {
            ATTN_CALL(t, h0, g, c, part);
            slm_attend_kv_merge(mine, part, g, hd);
        }
        slm_attend_kv_finish(mine, g, hd, (float *)COL(op->dst, t) + (size_t)h0 * hd);
    }
#undef ATTN_CALL
}

static void run_attention(const slm_cpu_exec *e, const slm_op *op, int ith, int nth) {
    if (attention_on_kv_kernel(op)) {
        run_attention_kv(e, op, ith, nth);
        return;
    }
    int hd = op->p.attn.head_dim, nh = op->p.attn.n_head, nkv = op->p.attn.n_head_kv;
    int group = nh / nkv;
    int64_t T = op->src[0].ne[1], n_ctx = op->src[1].ne[1];
    const int32_t *pos = (const int32_t *)PTR(op->src[3]);
    float *scores = (float *)(e->work) + (size_t)ith * (size_t)(n_ctx + 16) * 2;
    int64_t i0, i1;
    share(T * nh, ith, nth, 1, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        int64_t t = i / nh;
        int h = (int)(i % nh), kh = h / group;
        const float *q = (const float *)COL(op->src[0], t) + (size_t)h * hd;
        float *out = (float *)COL(op->dst, t) + (size_t)h * hd;
        /* K and V rows of kv head kh, one per cached position from the window's first */
        int64_t n = pos[t] + 1, w = op->p.attn.window, first = w > 0 && n > w ? n - w : 0;
        e->k->attend_f16(q, (const uint16_t *)COL(op->src[1], first) + (size_t)kh * hd,
                         (const uint16_t *)COL(op->src[2], first) + (size_t)kh * hd, op->src[1].nb[1] / 2,
                         op->src[2].nb[1] / 2, (int)(n - first), hd, op->p.attn.scale, scores, out);
    }
}

static void run_elementwise(const slm_op *op, int ith, int nth) {
    int64_t n = op->dst.ne[0], T = op->dst.ne[1];
    /* split the elements when there are fewer columns than threads (decode), else the columns */
    bool by_elem = T < nth;
    int64_t t0 = 0, t1 = T, e0 = 0, e1 = n;
    if (by_elem) share(n, ith, nth, 16, &e0, &e1);
    else share(T, ith, nth, 1, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const float *a = (const float *)COL(op->src[0], t), *b = (const float *)COL(op->src[1], t);
        float *y = (float *)COL(op->dst, t);
        if (op->kind == SLM_OP_ADD) {
            for (int64_t i = e0; i < e1; i++) y[i] = a[i] + b[i];
        } else if (e1 > e0 && op->kind == SLM_OP_GEGLU) {
            slm_ref_geglu(a + e0, b + e0, y + e0, (int)(e1 - e0));
        } else if (e1 > e0) {
            slm_ref_swiglu(a + e0, b + e0, y + e0, (int)(e1 - e0));
        }
    }
}

void slm_cpu_op_run(const slm_cpu_exec *e, const slm_op *op, int ith, int nth) {
    switch (op->kind) {
    case SLM_OP_MATMUL: run_matmul(e, op, ith, nth); break;
    case SLM_OP_EMBED: run_embed(op, ith, nth); break;
    case SLM_OP_RMSNORM: run_rmsnorm(op, ith, nth); break;
    case SLM_OP_ROPE: run_rope(op, ith, nth); break;
    case SLM_OP_KV_WRITE: run_kv_write(op, ith, nth); break;
    case SLM_OP_ATTENTION: run_attention(e, op, ith, nth); break;
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_ADD: run_elementwise(op, ith, nth); break;
    case SLM_OP_KIND_COUNT: break;
    }
}
