/* Causal grouped-query attention over the f16 KV cache, split-K with online softmax (flash-decoding).
 *
 * Pass 1, grid (n_head, n_split, T), ATT_THREADS threads: block (h, s, t) takes the key tiles s, s + n_split,
 * s + 2 n_split, ... (ATT_TILE keys each) of token t's visible range 0..pos[t] and keeps a running max m,
 * a running sum l and an unnormalised output acc[head_dim]; it writes (m, l, acc) to the partial buffer.
 * Tiles are dealt round-robin so the work is even whatever the length, which is read on the device from
 * pos[] (a CUDA graph captured once is replayed with new positions). Pass 2, grid (n_head, T), rescales and
 * sums the n_split partials. Each warp scores keys (lanes over head_dim, then a warp sum); each thread owns
 * output dims tid and tid + ATT_THREADS. */
#include <math.h>

#include "cuda_common.cuh"

#define ATT_TILE 32
#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_DIMS_PER_THREAD (SLM_CUDA_ATTN_MAX_HEAD_DIM / ATT_THREADS)

/* A K or V element of the f16 cache, reported to the emulator's load accounting. */
__device__ __forceinline__ float ld_kv(const uint16_t *p) {
    SLM_NOTE_LOAD(p, 2);
    return __half2float(__ushort_as_half(*p));
}

static int attn_splits(int64_t T, int64_t n_ctx) {
    int64_t tiles = (n_ctx + ATT_TILE - 1) / ATT_TILE;
    int64_t want = T == 1 ? 32 : (T <= 8 ? 8 : 1); /* batch 1 needs the split to fill the GPU */
    return (int)(tiles < want ? (tiles > 0 ? tiles : 1) : want);
}

__global__ void __launch_bounds__(ATT_THREADS) attn_split_kernel(slm_cuda_attn_args a, int n_split) {
    __shared__ float q_s[SLM_CUDA_ATTN_MAX_HEAD_DIM];
    __shared__ float s_s[ATT_TILE];
    const int h = blockIdx.x, split = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int hd = a.head_dim, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kh = h / (a.n_head / a.n_head_kv);
    const float *q = a.q + t * a.ldq + (int64_t)h * hd;
    for (int i = tid; i < hd; i += ATT_THREADS) q_s[i] = q[i] * a.scale;
    __syncthreads();

    int64_t last = a.pos[t];
    if (last > a.n_ctx - 1) last = a.n_ctx - 1;
    const int64_t n_keys = last + 1; /* <= 0 when pos < 0: nothing visible */
    const int64_t n_tiles = n_keys > 0 ? (n_keys + ATT_TILE - 1) / ATT_TILE : 0;
    const uint16_t *kbase = a.k + (int64_t)kh * hd;
    const uint16_t *vbase = a.v + (int64_t)kh * hd;

    float m = -INFINITY, l = 0.0f;
    float acc[ATT_DIMS_PER_THREAD];
#pragma unroll
    for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[j] = 0.0f;

    for (int64_t tile = split; tile < n_tiles; tile += n_split) {
        const int64_t p0 = tile * ATT_TILE;
        for (int kk = warp; kk < ATT_TILE; kk += ATT_WARPS) {
            const int64_t p = p0 + kk;
            float sc = -INFINITY;
            if (p < n_keys) {
                const uint16_t *kr = kbase + p * a.ldk;
                float d = 0.0f;
                for (int i = lane; i < hd; i += 32) d += q_s[i] * ld_kv(kr + i);
                sc = warp_sum(d);
            }
            if (lane == 0) s_s[kk] = sc;
        }
        __syncthreads();
        float tmax = -INFINITY;
        for (int kk = 0; kk < ATT_TILE; kk++) tmax = fmaxf(tmax, s_s[kk]);
        const float m_new = fmaxf(m, tmax); /* finite: key p0 is visible */
        const float corr = expf(m - m_new); /* 0 on the first tile (m = -inf) */
        l *= corr;
#pragma unroll
        for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[j] *= corr;
        const int n_in = (int)(n_keys - p0 < ATT_TILE ? n_keys - p0 : ATT_TILE);
        for (int kk = 0; kk < n_in; kk++) {
            const float e = expf(s_s[kk] - m_new);
            l += e;
            const uint16_t *vr = vbase + (p0 + kk) * a.ldv;
#pragma unroll
            for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
                const int d = tid + j * ATT_THREADS;
                if (d < hd) acc[j] += e * ld_kv(vr + d);
            }
        }
        m = m_new;
        __syncthreads(); /* s_s is rewritten by the next tile */
    }

    float *part = a.partial + (((size_t)t * a.n_head + h) * n_split + split) * (size_t)(hd + 2);
    if (tid == 0) {
        part[0] = m;
        part[1] = l;
    }
#pragma unroll
    for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
        const int d = tid + j * ATT_THREADS;
        if (d < hd) part[2 + d] = acc[j];
    }
}

__global__ void __launch_bounds__(ATT_THREADS) attn_merge_kernel(slm_cuda_attn_args a, int n_split) {
    const int h = blockIdx.x, hd = a.head_dim;
    const int64_t t = blockIdx.y;
    const float *part = a.partial + ((size_t)t * a.n_head + h) * n_split * (size_t)(hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++)
        if (part[s * (hd + 2) + 1] > 0.0f) M = fmaxf(M, part[s * (hd + 2)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float ls = part[s * (hd + 2) + 1];
        if (ls > 0.0f) L += ls * expf(part[s * (hd + 2)] - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float *out = a.out + t * a.ldo + (int64_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float ls = part[s * (hd + 2) + 1];
            if (ls > 0.0f) o += part[s * (hd + 2) + 2 + d] * expf(part[s * (hd + 2)] - M);
        }
        out[d] = o * inv;
    }
}

extern "C" size_t slm_cuda_attention_scratch_floats(int head_dim, int n_head, int64_t T, int64_t n_ctx) {
    if (head_dim < 1 || n_head < 1 || T < 1) return 0;
    return (size_t)T * (size_t)n_head * (size_t)attn_splits(T, n_ctx) * (size_t)(head_dim + 2);
}

extern "C" slm_status slm_cuda_attention(const slm_cuda_attn_args *a, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(a->q && a->k && a->v && a->pos && a->out && a->partial, "cuda attention: missing operand");
    SLM_CU_REQUIRE(a->head_dim >= 1 && a->head_dim <= SLM_CUDA_ATTN_MAX_HEAD_DIM,
                   "cuda attention: head_dim=%d outside 1..%d", a->head_dim, SLM_CUDA_ATTN_MAX_HEAD_DIM);
    SLM_CU_REQUIRE(a->n_head >= 1 && a->n_head_kv >= 1 && a->n_head % a->n_head_kv == 0 && a->n_head <= 65535,
                   "cuda attention: n_head=%d is not a multiple of n_head_kv=%d", a->n_head, a->n_head_kv);
    SLM_CU_REQUIRE(a->T >= 1 && a->T <= 65535 && a->n_ctx >= 1, "cuda attention: T=%lld n_ctx=%lld", (long long)a->T,
                   (long long)a->n_ctx);
    SLM_CU_REQUIRE(a->ldk >= (int64_t)a->head_dim * a->n_head_kv && a->ldv >= (int64_t)a->head_dim * a->n_head_kv,
                   "cuda attention: cache row strides too small");
    SLM_CU_REQUIRE(a->T == 1 ||
                       (a->ldq >= (int64_t)a->head_dim * a->n_head && a->ldo >= (int64_t)a->head_dim * a->n_head),
                   "cuda attention: q/out column strides too small");
    SLM_CU_REQUIRE((uintptr_t)a->k % 2 == 0 && (uintptr_t)a->v % 2 == 0,
                   "cuda attention: cache must be 2-byte aligned");
    const int n_split = attn_splits(a->T, a->n_ctx);
    SLM_LAUNCH(attn_split_kernel, dim3((unsigned)a->n_head, (unsigned)n_split, (unsigned)a->T), ATT_THREADS, 0, s)
    (*a, n_split);
    slm_status st = slm_cu_launched("attention", err);
    if (st) return st;
    SLM_LAUNCH(attn_merge_kernel, dim3((unsigned)a->n_head, (unsigned)a->T), ATT_THREADS, 0, s)(*a, n_split);
    return slm_cu_launched("attention merge", err);
}
