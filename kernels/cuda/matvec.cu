/* Fused dequantize + mat-vec: y[N, T] = W[K, N] . x[K, T] (+ bias) for 1 <= T <= SLM_CUDA_MATVEC_MAX_COLS.
 *
 * One warp per output row; a block holds MV_ROWS warps (rows). Lanes walk the row's pieces (8 weights each,
 * see cuda_common.cuh) with stride 32, so the warp reads the row's bytes front to back and every weight byte
 * is read once per launch whatever T is. Dequantization happens in registers in f32; the activations stay
 * f32 (no activation quantization), so the result differs from kernels/ref only in summation order.
 * (An int8 dp4a variant with 8-bit activations is the obvious next step once it can be measured.) */
#include "cuda_common.cuh"

#define MV_ROWS 4

template <int TYPE>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_quant(const uint8_t *__restrict__ w, size_t row_bytes, int K, int N, const float *__restrict__ x,
                 int64_t ldx, float *__restrict__ y, int64_t ldy, int T, const float *__restrict__ bias) {
    typedef dq<TYPE> D;
    const int lane = threadIdx.x;
    const int64_t row = (int64_t)blockIdx.x * MV_ROWS + threadIdx.y;
    if (row >= N) return; /* whole warp: threadIdx.y is uniform within a warp */
    const uint8_t *wr = w + row * row_bytes;
    const int per_block = D::QK / 8;
    const int n_pieces = (K / D::QK) * per_block;
    float acc[SLM_CUDA_MATVEC_MAX_COLS];
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) acc[c] = 0.0f;

    for (int i = lane; i < n_pieces; i += 32) {
        const int blk = i / per_block, p = i % per_block;
        float v[8];
        D::piece(wr + (size_t)blk * D::BB, p, v);
        const int e0 = blk * D::QK + D::base0(p), e1 = blk * D::QK + D::base1(p);
#pragma unroll
        for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
            if (c < T) {
                const float *xc = x + c * ldx;
                acc[c] += v[0] * xc[e0] + v[1] * xc[e0 + 1] + v[2] * xc[e0 + 2] + v[3] * xc[e0 + 3] + v[4] * xc[e1] +
                    v[5] * xc[e1 + 1] + v[6] * xc[e1 + 2] + v[7] * xc[e1 + 3];
            }
        }
    }
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
        if (c < T) {
            float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + row] = s + (bias ? bias[row] : 0.0f);
        }
    }
}

template <int TYPE>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_plain(const uint8_t *__restrict__ w, size_t row_bytes, int K, int N, const float *__restrict__ x,
                 int64_t ldx, float *__restrict__ y, int64_t ldy, int T, const float *__restrict__ bias) {
    const int lane = threadIdx.x;
    const int64_t row = (int64_t)blockIdx.x * MV_ROWS + threadIdx.y;
    if (row >= N) return;
    const uint8_t *wr = w + row * row_bytes;
    float acc[SLM_CUDA_MATVEC_MAX_COLS];
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) acc[c] = 0.0f;
    for (int i = lane; i < K; i += 32) {
        float wv = ld_elem<TYPE>(wr, i);
#pragma unroll
        for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++)
            if (c < T) acc[c] += wv * x[c * ldx + i];
    }
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
        if (c < T) {
            float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + row] = s + (bias ? bias[row] : 0.0f);
        }
    }
}

typedef void (*matvec_fn)(const uint8_t *, size_t, int, int, const float *, int64_t, float *, int64_t, int,
                          const float *);

static matvec_fn matvec_kernel(slm_dtype t) {
    switch (t) {
    case SLM_F32: return matvec_plain<SLM_F32>;
    case SLM_F16: return matvec_plain<SLM_F16>;
    case SLM_BF16: return matvec_plain<SLM_BF16>;
    case SLM_Q4_0: return matvec_quant<SLM_Q4_0>;
    case SLM_Q4_1: return matvec_quant<SLM_Q4_1>;
    case SLM_Q5_0: return matvec_quant<SLM_Q5_0>;
    case SLM_Q5_1: return matvec_quant<SLM_Q5_1>;
    case SLM_Q8_0: return matvec_quant<SLM_Q8_0>;
    case SLM_Q4_K: return matvec_quant<SLM_Q4_K>;
    case SLM_Q5_K: return matvec_quant<SLM_Q5_K>;
    case SLM_Q6_K: return matvec_quant<SLM_Q6_K>;
    default: return NULL;
    }
}

extern "C" bool slm_cuda_weight_type_ok(slm_dtype t) { return matvec_kernel(t) != NULL; }

extern "C" slm_status slm_cuda_matvec(const slm_cuda_matmul_args *a, cudaStream_t s, slm_error *err) {
    slm_status st = slm_cu_check_weights(a->wtype, a->w, a->row_bytes, a->K, a->N, "matvec", err);
    if (st) return st;
    SLM_CU_REQUIRE(a->T >= 1 && a->T <= SLM_CUDA_MATVEC_MAX_COLS, "cuda matvec: T=%lld outside 1..%d", (long long)a->T,
                   SLM_CUDA_MATVEC_MAX_COLS);
    SLM_CU_REQUIRE(a->N <= INT32_MAX, "cuda matvec: N=%lld too large", (long long)a->N);
    SLM_CU_REQUIRE(a->x && a->y, "cuda matvec: missing x or y");
    SLM_CU_REQUIRE(a->T == 1 || (a->ldx >= a->K && a->ldy >= a->N), "cuda matvec: column strides %lld/%lld too small",
                   (long long)a->ldx, (long long)a->ldy);
    dim3 block(32, MV_ROWS);
    dim3 grid((unsigned)((a->N + MV_ROWS - 1) / MV_ROWS));
    SLM_LAUNCH(matvec_kernel(a->wtype), grid, block, 0, s)
    ((const uint8_t *)a->w, a->row_bytes, (int)a->K, (int)a->N, a->x, a->ldx, a->y, a->ldy, (int)a->T, a->bias);
    return slm_cu_launched("matvec", err);
}
