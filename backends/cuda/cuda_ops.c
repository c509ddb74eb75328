/* CUDA op dispatch: checks the backend's own limits and that operands are buffers of this device (the op
 * contract is slm_op_check's), then maps each op onto the kernel launchers of kernels/cuda. Mat-muls of up to SLM_CUDA_MATVEC_MAX_COLS tokens use the fused mat-vec;
 * wider prompt batches dequantize the weight to f16 in chunks of rows and run a cuBLAS GEMM. A mat-vec of
 * quantized weights quantizes its activations to 8 bits into the scratch first (unless the device runs
 * them on f32 activations). */
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_kernels.h"
#include "error.h"

#define ALIGN256(x) (((x) + 255) & ~(size_t)255)

static bool present(const slm_tensor *t) { return t->buf != NULL; }

static void *dptr(const slm_tensor *t) { return (uint8_t *)t->buf->handle + t->offset; }

/* Elements between columns (dim 1) of a plain-typed tensor. */
static int64_t ld1(const slm_tensor *t) {
    size_t es = (size_t)slm_dtype_get(t->type)->block_bytes;
    return (int64_t)(t->nb[1] / es);
}

static const char *op_label(const slm_op *op) { return op->name ? op->name : slm_op_kind_name(op->kind); }

#define FAIL(...) return slm_fail(err, SLM_ERR_UNSUPPORTED, __VA_ARGS__)

#define CHECK_ST(x)                                                                                                    \
    do {                                                                                                               \
        slm_status _s = (x);                                                                                           \
        if (_s) return _s;                                                                                             \
    } while (0)

slm_status slm_cuda_op_check(const slm_op *op, slm_error *err) {
    const slm_tensor *s0 = &op->src[0], *s1 = &op->src[1];
    switch (op->kind) {
    case SLM_OP_MATMUL:
        if (!slm_cuda_weight_type_ok(s0->type))
            FAIL("cuda: %s (%s): weight type %s is not supported", slm_op_kind_name(op->kind), op_label(op),
                 slm_dtype_name(s0->type));
        if (s0->x16) FAIL("cuda: matmul (%s): weights in the CPU's repacked layout", op_label(op));
        /* kernel arguments and cuBLAS dimensions are 32-bit */
        if (s0->ne[0] > INT32_MAX || s0->ne[1] > INT32_MAX || s1->ne[1] > INT32_MAX)
            FAIL("cuda: matmul (%s): too large", op_label(op));
        return SLM_OK;
    case SLM_OP_ROPE:
        if (op->dst.ne[0] > INT32_MAX || op->dst.ne[1] > INT32_MAX) FAIL("cuda: rope (%s): too large", op_label(op));
        return SLM_OK;
    case SLM_OP_ATTENTION: {
        /* a head lives in registers and shared memory; heads and tokens are grid dimensions */
        int hd = op->p.attn.head_dim, nh = op->p.attn.n_head;
        if (op->src[1].type != SLM_F16 || op->src[2].type != SLM_F16)
            FAIL("cuda: attention (%s): a %s/%s KV cache is not supported yet (f16 only)", op_label(op),
                 slm_dtype_name(op->src[1].type), slm_dtype_name(op->src[2].type));
        if (hd > SLM_CUDA_ATTN_MAX_HEAD_DIM || nh > 65535 || s0->ne[1] > 65535)
            FAIL("cuda: attention (%s): head_dim %d (max %d), %d heads, %lld tokens not supported", op_label(op), hd,
                 SLM_CUDA_ATTN_MAX_HEAD_DIM, nh, (long long)s0->ne[1]);
        return SLM_OK;
    }
    case SLM_OP_KV_WRITE:
        if (op->dst.type != SLM_F16)
            FAIL("cuda: kv_write (%s): a %s KV cache is not supported yet (f16 only)", op_label(op),
                 slm_dtype_name(op->dst.type));
        return SLM_OK;
    case SLM_OP_RMSNORM:
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_ADD: return SLM_OK;
    /* SLM_OP_EMBED: the graph runs the lookup on the host, where the whole table is mapped (and is the head
     * when the embeddings are tied); a CUDA kernel for it would never run. Refused, an embed op given to
     * this device would be routed to the CPU like any other. */
    default: FAIL("cuda: op %s is not supported", slm_op_kind_name(op->kind));
    }
}

/* The operand's bytes lie inside its buffer, and the buffer belongs to this device: slm_op_check has checked
 * the range, this guard stays because a kernel would otherwise touch memory outside the buffer, and only
 * here is the owning device known. */
static slm_status check_range(slm_device *dev, const slm_op *op, const slm_tensor *t, const char *which,
                              slm_error *err) {
    if (!t->buf || !t->buf->handle || t->buf->dev != dev)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "cuda: %s (%s): %s is not a buffer of %s", slm_op_kind_name(op->kind),
                        op_label(op), which, dev->name);
    size_t extent = slm_tensor_extent(t);
    if (extent == 0 || t->offset > t->buf->size || extent > t->buf->size - t->offset)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "cuda: %s (%s): %s [offset %zu + %zu bytes] exceeds its buffer (%zu)",
                        slm_op_kind_name(op->kind), op_label(op), which, t->offset, extent, t->buf->size);
    return SLM_OK;
}

slm_status slm_cuda_op_check_buffers(slm_device *dev, const slm_op *op, slm_error *err) {
    CHECK_ST(slm_cuda_op_check(op, err));
    static const char *const names[4] = {"src0", "src1", "src2", "src3"};
    CHECK_ST(check_range(dev, op, &op->dst, "dst", err));
    for (int i = 0; i < 4; i++)
        if (present(&op->src[i])) CHECK_ST(check_range(dev, op, &op->src[i], names[i], err));
    return SLM_OK;
}

static bool use_gemm(const slm_op *op) {
    return op->kind == SLM_OP_MATMUL && op->src[1].ne[1] > SLM_CUDA_MATVEC_MAX_COLS;
}

static int64_t gemm_chunk_rows(int64_t K, int64_t N) {
    int64_t r = SLM_CUDA_GEMM_CHUNK_ELEMS / K;
    if (r < 1) r = 1;
    return r < N ? r : N;
}

size_t slm_cuda_op_scratch(const slm_op *op) {
    if (use_gemm(op)) {
        slm_dtype t = op->src[0].type;
        int64_t K = op->src[0].ne[0], N = op->src[0].ne[1], T = op->src[1].ne[1];
        if (t == SLM_F32) return 0;
        /* f16 activations | their column scales | the f16 weight chunk (quantized weights) */
        size_t act = ALIGN256((size_t)K * (size_t)T * 2) + ALIGN256((size_t)T * sizeof(float));
        return t == SLM_F16 ? act : act + (size_t)K * (size_t)gemm_chunk_rows(K, N) * 2;
    }
    /* the 8-bit activations of a mat-vec (counted whether or not the device runs mat-vecs on f32
     * activations: a few hundred KiB at most, and the placement need not know that setting) */
    if (op->kind == SLM_OP_MATMUL) return slm_cuda_matvec_scratch(op->src[0].type, op->src[0].ne[0], op->src[1].ne[1]);
    if (op->kind == SLM_OP_ATTENTION)
        return sizeof(float) *
            slm_cuda_attention_scratch_floats(op->p.attn.head_dim, op->p.attn.n_head, op->src[0].ne[1],
                                              op->src[1].ne[1]);
    return 0;
}

bool slm_cuda_op_uses_blas(const slm_op *op) { return use_gemm(op); }

bool slm_cuda_op_capturable(const slm_op *op) { return !use_gemm(op); }

static slm_status blas_check(cublasStatus_t s, const char *what, const slm_op *op, slm_error *err) {
    if (s == CUBLAS_STATUS_SUCCESS) return SLM_OK;
    return slm_fail(err, SLM_ERR_DEVICE, "cuda: cuBLAS %s failed for matmul (%s): status %d", what, op_label(op),
                    (int)s);
}

/* Prompt batches: y [N, T] = W^T-as-stored . x, i.e. column-major GEMM with the weight as a K x N matrix
 * (lda = row stride) transposed. Tensor cores want f16 operands (f32 accumulation): the activations are
 * converted with a power-of-two scale per token that keeps them finite (slm_cuda_f32_to_f16), undone with
 * the bias in one pass afterwards. bf16 could not overflow but keeps 8 bits of mantissa instead of 11; an
 * f32 GEMM would be exact and several times slower. */
static slm_status matmul_gemm(slm_cuda_ctx *c, const slm_op *op, slm_error *err) {
    const slm_tensor *w = &op->src[0], *x = &op->src[1], *y = &op->dst;
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    float *yp = dptr(y);
    int64_t ldy = ld1(y), ldx = ld1(x);
    const float one = 1.0f, zero = 0.0f;
    float *col_scale = NULL;
    if (w->type == SLM_F32) {
        /* lda in floats: the contract makes an f32 weight's row stride a multiple of 4 */
        CHECK_ST(blas_check(c->cublas->sgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)T, (int)K, &one, dptr(w),
                                             (int)(w->nb[1] / 4), dptr(x), (int)ldx, &zero, yp, (int)ldy),
                            "Sgemm", op, err));
    } else {
        void *xh = c->scratch;
        col_scale = (float *)((uint8_t *)c->scratch + ALIGN256((size_t)K * (size_t)T * 2));
        void *wh = (uint8_t *)col_scale + ALIGN256((size_t)T * sizeof(float));
        CHECK_ST(slm_cuda_f32_to_f16(dptr(x), ldx, K, T, xh, col_scale, c->stream, err));
        if (w->type == SLM_F16) {
            CHECK_ST(
                blas_check(c->cublas->gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)T, (int)K, &one, dptr(w),
                                              CUDA_R_16F, (int)(w->nb[1] / 2), xh, CUDA_R_16F, (int)K, &zero, yp,
                                              CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "GemmEx", op, err));
        } else {
            int64_t rows = gemm_chunk_rows(K, N);
            for (int64_t r0 = 0; r0 < N; r0 += rows) {
                int64_t n = N - r0 < rows ? N - r0 : rows;
                CHECK_ST(slm_cuda_dequant_f16(w->type, dptr(w), w->nb[1], K, r0, n, wh, c->stream, err));
                CHECK_ST(blas_check(c->cublas->gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)T, (int)K, &one,
                                                       wh, CUDA_R_16F, (int)K, xh, CUDA_R_16F, (int)K, &zero, yp + r0,
                                                       CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                    "GemmEx", op, err));
            }
        }
    }
    return slm_cuda_gemm_finish(yp, ldy, N, T, col_scale, present(&op->src[2]) ? dptr(&op->src[2]) : NULL, c->stream,
                                err);
}

static slm_status enqueue_one(slm_cuda_ctx *c, const slm_op *op, slm_error *err) {
    const slm_tensor *d = &op->dst, *s0 = &op->src[0], *s1 = &op->src[1], *s2 = &op->src[2], *s3 = &op->src[3];
    cudaStream_t st = c->stream;
    switch (op->kind) {
    case SLM_OP_RMSNORM:
        return slm_cuda_rmsnorm(dptr(s0), ld1(s0), dptr(s1), dptr(d), ld1(d), s0->ne[0], s0->ne[1], op->p.norm.eps, st,
                                err);
    case SLM_OP_MATMUL: {
        if (use_gemm(op)) return matmul_gemm(c, op, err);
        slm_cuda_matmul_args a = {
            .wtype = s0->type,
            .w = dptr(s0),
            .row_bytes = s0->nb[1],
            .K = s0->ne[0],
            .N = s0->ne[1],
            .x = dptr(s1),
            .ldx = ld1(s1),
            .y = dptr(d),
            .ldy = ld1(d),
            .T = s1->ne[1],
            .bias = present(s2) ? dptr(s2) : NULL,
            .act_scratch = c->matvec_f32 ? NULL : c->scratch,
        };
        return slm_cuda_matvec(&a, st, err);
    }
    case SLM_OP_ROPE: {
        slm_cuda_rope_args a = {
            .x = dptr(d),
            .ld_head = (int64_t)(d->nb[1] / 4),
            .ld_tok = (int64_t)(d->nb[2] / 4),
            .head_dim = (int)d->ne[0],
            .n_head = (int)d->ne[1],
            .n_rot = op->p.rope.n_rot,
            .T = d->ne[2],
            .pos = dptr(s1),
            .factors = present(s2) ? dptr(s2) : NULL,
            .neox = op->p.rope.neox,
            .freq_base = op->p.rope.freq_base,
            .freq_scale = op->p.rope.freq_scale,
        };
        return slm_cuda_rope(&a, st, err);
    }
    case SLM_OP_KV_WRITE:
        return slm_cuda_kv_write(dptr(s0), ld1(s0), s0->ne[0], s0->ne[1], dptr(s1), dptr(d), ld1(d), d->ne[1], st, err);
    case SLM_OP_ATTENTION: {
        slm_cuda_attn_args a = {
            .q = dptr(s0),
            .ldq = ld1(s0),
            .k = dptr(s1),
            .v = dptr(s2),
            .ldk = ld1(s1),
            .ldv = ld1(s2),
            .n_ctx = s1->ne[1],
            .pos = dptr(s3),
            .out = dptr(d),
            .ldo = ld1(d),
            .head_dim = op->p.attn.head_dim,
            .n_head = op->p.attn.n_head,
            .n_head_kv = op->p.attn.n_head_kv,
            .T = s0->ne[1],
            .scale = op->p.attn.scale,
            .window = op->p.attn.window,
            .partial = c->scratch,
        };
        return slm_cuda_attention(&a, st, err);
    }
    case SLM_OP_SWIGLU:
        return slm_cuda_swiglu(dptr(s0), ld1(s0), dptr(s1), ld1(s1), dptr(d), ld1(d), d->ne[0], d->ne[1], st, err);
    case SLM_OP_GEGLU:
        return slm_cuda_geglu(dptr(s0), ld1(s0), dptr(s1), ld1(s1), dptr(d), ld1(d), d->ne[0], d->ne[1], st, err);
    case SLM_OP_ADD:
        return slm_cuda_add(dptr(s0), ld1(s0), dptr(s1), ld1(s1), dptr(d), ld1(d), d->ne[0], d->ne[1], st, err);
    default: return slm_fail(err, SLM_ERR_UNSUPPORTED, "cuda: op %s is not supported", slm_op_kind_name(op->kind));
    }
    (void)s3;
}

slm_status slm_cuda_enqueue(slm_cuda_ctx *c, const slm_op *ops, int n_ops, slm_error *err) {
    for (int i = 0; i < n_ops; i++) {
        slm_status s = enqueue_one(c, &ops[i], err);
        if (s) return s;
        if (c->sync_each) {
            cudaError_t e = cudaStreamSynchronize(c->stream);
            if (e != cudaSuccess)
                return slm_fail(err, SLM_ERR_DEVICE, "cuda: op %d (%s %s, layer %d) failed: %s", i,
                                slm_op_kind_name(ops[i].kind), op_label(&ops[i]), ops[i].layer, cudaGetErrorString(e));
        }
    }
    return SLM_OK;
}
