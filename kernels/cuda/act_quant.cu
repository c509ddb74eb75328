/* Quantization of activation columns into the 8-bit blocks of the dp4a mat-vec (layout and recipe in
 * cuda_kernels.h). It runs once per mat-vec over K * T floats, a small fraction of the weight bytes the
 * mat-vec then reads, so one warp per block of 32 is plenty.
 *
 * The recipe is the CPU's for its blocks of 32 (kernels/cpu/act_quant.c): same scale, same rounding, same
 * handling of NaN/inf and of a subnormal scale. A CUDA and a CPU run of a Q4_0..Q8_0 model then round
 * their activations identically (barring a fused multiply-add moving a tie), and the tests judge the
 * kernel against kernels/ref fed with the CPU's quantized activations. */
#include "cuda_common.cuh"

#define AQ_WARPS 8

__global__ void __launch_bounds__(32 * AQ_WARPS) act_quant_q8(const float *__restrict__ x, int64_t ldx, int n_blocks,
                                                              uint8_t *__restrict__ xq, int64_t ldq, int64_t ds_off) {
    const int lane = threadIdx.x;
    const int b = blockIdx.x * AQ_WARPS + threadIdx.y;
    if (b >= n_blocks) return; /* whole warp: threadIdx.y is uniform within a warp */
    const int64_t c = blockIdx.y;
    const float *xp = x + c * ldx + 32 * b + lane;
    SLM_NOTE_LOAD(xp, 4);
    const float v = *xp;
    /* NaN would drop out of fmaxf: a vote catches it (and inf) instead */
    const bool bad = __any_sync(0xffffffffu, !isfinite(v));
    const float amax = warp_max(fabsf(v));
    float d = amax / 127.0f;
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    int q = 0;
    if (bad) d = NAN;
    else if (isfinite(id)) { /* else a subnormal d: 1 / d overflows, and these values quantize to 0 anyway */
        const float t = v * id;
        const int r = (int)(t + (t >= 0.0f ? 0.5f : -0.5f)); /* |t| <= 127.5: the cast cannot overflow */
        q = r > 127 ? 127 : (r < -127 ? -127 : r);
    }
    int sum = q;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    uint8_t *col = xq + c * ldq;
    col[32 * b + lane] = (uint8_t)(int8_t)q;
    if (lane == 0) {
        float2 ds;
        ds.x = d;
        ds.y = d * (float)sum;
        ((float2 *)(col + ds_off))[b] = ds;
    }
}

extern "C" slm_status slm_cuda_act_quant(const float *x, int64_t ldx, int64_t K, int64_t T, void *xq, cudaStream_t s,
                                         slm_error *err) {
    SLM_CU_REQUIRE(x && xq, "cuda act_quant: missing x or xq");
    SLM_CU_REQUIRE(K > 0 && K % 32 == 0 && K / 32 <= INT32_MAX,
                   "cuda act_quant: K=%lld is not a positive multiple of 32", (long long)K);
    SLM_CU_REQUIRE(T >= 1 && T <= 65535 && (T == 1 || ldx >= K), "cuda act_quant: T=%lld, ldx=%lld", (long long)T,
                   (long long)ldx);
    const int nb = (int)(K / 32);
    dim3 block(32, AQ_WARPS);
    dim3 grid((unsigned)((nb + AQ_WARPS - 1) / AQ_WARPS), (unsigned)T);
    SLM_LAUNCH(act_quant_q8, grid, block, 0, s)
    (x, ldx, nb, (uint8_t *)xq, (int64_t)slm_cuda_q8_col_bytes(K), (int64_t)slm_cuda_q8_ds_offset(K));
    return slm_cu_launched("act_quant", err);
}
