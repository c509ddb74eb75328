/* The small ops: RMSNorm (fused with its weight), RoPE, KV cache write, SwiGLU, add, the scaled f32 -> f16
 * conversion of GEMM activations and the GEMM's unscale + bias, and the read-bandwidth probe. Simple grid-stride or block-per-row kernels:
 * these are a few percent of a token's time next to the mat-vecs. */
#include "cuda_common.cuh"

#define SLM_CU_THREADS 256

static unsigned grid_for(int64_t items, int threads) {
    int64_t b = (items + threads - 1) / threads;
    if (b > 65535LL * 16) b = 65535LL * 16; /* grid-stride loops cover the rest */
    return (unsigned)(b > 0 ? b : 1);
}

/* ---- RMSNorm: one block per column ---------------------------------------------------------------------- */

__global__ void rmsnorm_kernel(const float *x, int64_t ldx, const float *__restrict__ w, float *y, int64_t ldy, int n,
                               float eps) {
    __shared__ float red[32];
    const int64_t t = blockIdx.x;
    const float *xc = x + t * ldx;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += xc[i] * xc[i];
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        v = warp_sum(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    const float inv = rsqrtf(red[0] / (float)n + eps);
    float *yc = y + t * ldy;
    /* y may alias x: each element is read and written by the same thread after the reduction */
    for (int i = threadIdx.x; i < n; i += blockDim.x) yc[i] = xc[i] * inv * w[i];
}

extern "C" slm_status slm_cuda_rmsnorm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t n,
                                       int64_t T, float eps, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(x && w && y && n >= 1 && n <= INT32_MAX && T >= 1 && T <= INT32_MAX,
                   "cuda rmsnorm: bad arguments (n=%lld T=%lld)", (long long)n, (long long)T);
    SLM_CU_REQUIRE(T == 1 || (ldx >= n && ldy >= n), "cuda rmsnorm: column strides too small");
    SLM_LAUNCH(rmsnorm_kernel, (unsigned)T, SLM_CU_THREADS, 0, s)(x, ldx, w, y, ldy, (int)n, eps);
    return slm_cu_launched("rmsnorm", err);
}

/* ---- RoPE: one thread per (token, pair), over every head --------------------------------------------------- */

__global__ void rope_kernel(slm_cuda_rope_args a) {
    const int half = a.n_rot / 2;
    const int64_t total = a.T * half;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int j = (int)(i % half);
        const int64_t t = i / half;
        /* theta_j = pos * base^(-2j/n_rot) * freq_scale / factor_j, in double with the arithmetic of
         * slm_ref_rope and the CPU backend: in float the angle alone is off by pos * 2^-24 (0.008 rad at
         * 128k) before powf's error is scaled by pos, which breaks agreement with the other backends at long
         * contexts. Every head of a token turns by the same angles, so each is computed once per (token,
         * pair) and applied to all heads: the double pow and sincos (slow on consumer cards) then cost
         * n_head times less than the loads and stores. */
        double theta = (double)a.pos[t] * pow((double)a.freq_base, -2.0 * j / a.n_rot) * (double)a.freq_scale;
        if (a.factors) theta /= (double)a.factors[j];
        double sn, cs;
        sincos(theta, &sn, &cs);
        const int i0 = a.neox ? j : 2 * j, i1 = a.neox ? j + half : 2 * j + 1;
        for (int hh = 0; hh < a.n_head; hh++) {
            float *v = a.x + t * a.ld_tok + (int64_t)hh * a.ld_head;
            const double x0 = v[i0], x1 = v[i1];
            v[i0] = (float)(x0 * cs - x1 * sn);
            v[i1] = (float)(x0 * sn + x1 * cs);
        }
    }
}

extern "C" slm_status slm_cuda_rope(const slm_cuda_rope_args *a, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(a->x && a->pos && a->head_dim >= 2 && a->n_head >= 1 && a->T >= 1,
                   "cuda rope: bad arguments (head_dim=%d n_head=%d T=%lld)", a->head_dim, a->n_head, (long long)a->T);
    SLM_CU_REQUIRE(a->n_rot >= 2 && a->n_rot % 2 == 0 && a->n_rot <= a->head_dim,
                   "cuda rope: n_rot=%d must be even and <= head_dim=%d", a->n_rot, a->head_dim);
    SLM_CU_REQUIRE((a->n_head == 1 || a->ld_head >= a->head_dim) && (a->T == 1 || a->ld_tok >= a->head_dim),
                   "cuda rope: strides %lld/%lld too small", (long long)a->ld_head, (long long)a->ld_tok);
    const int64_t total = a->T * (a->n_rot / 2);
    SLM_LAUNCH(rope_kernel, grid_for(total, SLM_CU_THREADS), SLM_CU_THREADS, 0, s)(*a);
    return slm_cu_launched("rope", err);
}

/* ---- KV cache write --------------------------------------------------------------------------------------- */

__global__ void kv_write_kernel(const float *__restrict__ src, int64_t lds, int64_t n, int64_t T,
                                const int32_t *__restrict__ pos, __half *cache, int64_t ldc, int64_t n_ctx) {
    const int64_t total = n * T;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / n, e = i % n;
        const int64_t p = pos[t];
        if (p < 0 || p >= n_ctx) continue; /* never write outside the cache */
        cache[p * ldc + e] = __float2half_rn(src[t * lds + e]);
    }
}

extern "C" slm_status slm_cuda_kv_write(const float *src, int64_t ld_src, int64_t n, int64_t T, const int32_t *pos,
                                        uint16_t *cache, int64_t ld_cache, int64_t n_ctx, cudaStream_t s,
                                        slm_error *err) {
    SLM_CU_REQUIRE(src && pos && cache && n >= 1 && T >= 1 && n_ctx >= 1, "cuda kv_write: bad arguments");
    SLM_CU_REQUIRE(ld_cache >= n && (T == 1 || ld_src >= n), "cuda kv_write: strides too small");
    SLM_CU_REQUIRE((uintptr_t)cache % 2 == 0, "cuda kv_write: cache must be 2-byte aligned");
    SLM_LAUNCH(kv_write_kernel, grid_for(n * T, SLM_CU_THREADS), SLM_CU_THREADS, 0, s)
    (src, ld_src, n, T, pos, (__half *)cache, ld_cache, n_ctx);
    return slm_cu_launched("kv_write", err);
}

/* ---- element-wise ------------------------------------------------------------------------------------------ */

/* The element-wise kinds: y = a + b, silu(a) * b, gelu(a) * b (tanh form). */
enum { ELT_ADD, ELT_SWIGLU, ELT_GEGLU };

template <int KIND>
__global__ void eltwise_kernel(const float *a, int64_t lda, const float *b, int64_t ldb, float *y, int64_t ldy,
                               int64_t n, int64_t T) {
    const int64_t total = n * T;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / n, e = i % n;
        const float av = a[t * lda + e], bv = b[t * ldb + e];
        float r;
        if (KIND == ELT_SWIGLU) {
            r = av / (1.0f + expf(-av)) * bv;
        } else if (KIND == ELT_GEGLU) {
            /* x/2 (1 + tanh(u)) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): e^(-2u) overflowing to
             * inf gives -0, as gelu does far below 0 */
            const float u2 = 1.5957691216057308f * (av + 0.044715f * av * av * av);
            r = av / (1.0f + expf(-u2)) * bv;
        } else {
            r = av + bv;
        }
        y[t * ldy + e] = r;
    }
}

template <int KIND>
static slm_status eltwise(const float *a, int64_t lda, const float *b, int64_t ldb, float *y, int64_t ldy, int64_t n,
                          int64_t T, cudaStream_t s, const char *what, slm_error *err) {
    SLM_CU_REQUIRE(a && b && y && n >= 1 && T >= 1, "cuda %s: bad arguments (n=%lld T=%lld)", what, (long long)n,
                   (long long)T);
    SLM_CU_REQUIRE(T == 1 || (lda >= n && ldb >= n && ldy >= n), "cuda %s: column strides too small", what);
    SLM_LAUNCH(eltwise_kernel<KIND>, grid_for(n * T, SLM_CU_THREADS), SLM_CU_THREADS, 0, s)
    (a, lda, b, ldb, y, ldy, n, T);
    return slm_cu_launched(what, err);
}

extern "C" slm_status slm_cuda_swiglu(const float *g, int64_t ldg, const float *u, int64_t ldu, float *y, int64_t ldy,
                                      int64_t n, int64_t T, cudaStream_t s, slm_error *err) {
    return eltwise<ELT_SWIGLU>(g, ldg, u, ldu, y, ldy, n, T, s, "swiglu", err);
}

extern "C" slm_status slm_cuda_geglu(const float *g, int64_t ldg, const float *u, int64_t ldu, float *y, int64_t ldy,
                                     int64_t n, int64_t T, cudaStream_t s, slm_error *err) {
    return eltwise<ELT_GEGLU>(g, ldg, u, ldu, y, ldy, n, T, s, "geglu", err);
}

extern "C" slm_status slm_cuda_add(const float *a, int64_t lda, const float *b, int64_t ldb, float *y, int64_t ldy,
                                   int64_t n, int64_t T, cudaStream_t s, slm_error *err) {
    return eltwise<ELT_ADD>(a, lda, b, ldb, y, ldy, n, T, s, "add", err);
}

/* ---- prompt-batch GEMM: activations to f16 and back ------------------------------------------------------
 * f16 holds magnitudes up to 65504 only, and activations of real models exceed it (outlier features of large
 * models, SwiGLU's products): a plain conversion gives inf, and cuBLAS then whole rows of inf. Each column
 * (token) t is multiplied by the power of two col_scale[t] that brings its largest magnitude into
 * [2^14, 2^15), and the GEMM's f32 result is divided by it. A power of two changes only the exponent, so
 * values round as they would in an f16 of unlimited range: nothing overflows, and a column of small values
 * keeps its bits out of f16's subnormals too. Elements more than 2^39 below the column's largest become
 * zero, where their share of the dot product is below f32's resolution of the sum anyway. */

/* The scale of a column whose largest finite magnitude is m (host and device: tests check it without a GPU). */
SLM_HD float f16_scale_for(float m) {
    if (!(m > 0.0f) || !isfinite(m)) return 1.0f; /* zeros; inf and NaN are left as they are, as on the CPU */
    int e;
    frexpf(m, &e); /* m = f * 2^e, f in [0.5, 1): m * 2^(15 - e) in [2^14, 2^15) */
    return ldexpf(1.0f, 15 - e);
}

extern "C" float slm_cuda_f16_scale_for(float max_abs) { return f16_scale_for(max_abs); }

/* one block per column: col_scale[t] from the column's largest finite magnitude (NaN is skipped by fmaxf and
 * reaches the output through the conversion; inf keeps scale 1 and stays inf, as on the CPU) */
__global__ void f16_col_scale_kernel(const float *__restrict__ x, int64_t ldx, int K, float *__restrict__ col_scale) {
    __shared__ float red[32];
    const float *xc = x + (int64_t)blockIdx.x * ldx;
    float m = 0.0f;
    for (int i = threadIdx.x; i < K; i += blockDim.x) m = fmaxf(m, fabsf(xc[i]));
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        v = warp_max(v);
        if (threadIdx.x == 0) col_scale[blockIdx.x] = f16_scale_for(v);
    }
}

__global__ void f32_to_f16_kernel(const float *__restrict__ x, int64_t ldx, int64_t K, int64_t T,
                                  const float *__restrict__ col_scale, __half *__restrict__ out) {
    const int64_t total = K * T;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / K;
        out[i] = __float2half_rn(x[t * ldx + i % K] * col_scale[t]);
    }
}

extern "C" slm_status slm_cuda_f32_to_f16(const float *x, int64_t ldx, int64_t K, int64_t T, void *out,
                                          float *col_scale, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(x && out && col_scale && K >= 1 && K <= INT32_MAX && T >= 1 && T <= INT32_MAX &&
                       (T == 1 || ldx >= K),
                   "cuda f32_to_f16: bad arguments");
    SLM_CU_REQUIRE((uintptr_t)out % 2 == 0, "cuda f32_to_f16: output must be 2-byte aligned");
    SLM_LAUNCH(f16_col_scale_kernel, (unsigned)T, SLM_CU_THREADS, 0, s)(x, ldx, (int)K, col_scale);
    slm_status st = slm_cu_launched("f16_col_scale", err);
    if (st) return st;
    SLM_LAUNCH(f32_to_f16_kernel, grid_for(K * T, SLM_CU_THREADS), SLM_CU_THREADS, 0, s)
    (x, ldx, K, T, col_scale, (__half *)out);
    return slm_cu_launched("f32_to_f16", err);
}

/* y[n, t] = y[n, t] / col_scale[t] + bias[n]: one pass over the GEMM's output for both (either may be absent;
 * dividing by a power of two is exact) */
__global__ void gemm_finish_kernel(float *y, int64_t ldy, int64_t N, int64_t T, const float *__restrict__ col_scale,
                                   const float *__restrict__ bias) {
    const int64_t total = N * T;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / N, n = i % N;
        float v = y[t * ldy + n];
        if (col_scale) v *= 1.0f / col_scale[t];
        if (bias) v += bias[n];
        y[t * ldy + n] = v;
    }
}

extern "C" slm_status slm_cuda_gemm_finish(float *y, int64_t ldy, int64_t N, int64_t T, const float *col_scale,
                                           const float *bias, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(y && N >= 1 && T >= 1 && (T == 1 || ldy >= N), "cuda gemm_finish: bad arguments");
    if (!col_scale && !bias) return SLM_OK;
    SLM_LAUNCH(gemm_finish_kernel, grid_for(N * T, SLM_CU_THREADS), SLM_CU_THREADS, 0, s)
    (y, ldy, N, T, col_scale, bias);
    return slm_cu_launched("gemm_finish", err);
}

/* ---- bandwidth probe ---------------------------------------------------------------------------------------- */

/* UNROLL independent 16-byte loads in flight per thread per step: whether a card reaches its peak with one
 * load per thread or needs several depends on its memory latency and occupancy, so the probe tries both. */
template <int UNROLL> __global__ void read_probe_kernel(const uint4 *__restrict__ buf, size_t n, float *sink) {
    uint32_t acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + (UNROLL - 1) * stride < n; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) v[u] = buf[i + u * stride];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) {
        uint4 v = buf[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    /* a data-dependent store the compiler cannot drop; practically never taken */
    if (acc == 0x9e3779b9u && (threadIdx.x & 31) == 0) sink[0] = (float)acc;
}

extern "C" slm_status slm_cuda_read_probe(const void *buf, size_t n_words, float *sink, int blocks_per_sm, int unroll,
                                          cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(buf && sink && n_words > 0 && (uintptr_t)buf % 16 == 0 && blocks_per_sm >= 1 &&
                       (unroll == 1 || unroll == 4),
                   "cuda read_probe: bad arguments");
    int dev = 0, sms = 1;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const unsigned grid = (unsigned)(sms * blocks_per_sm);
    if (unroll == 4) SLM_LAUNCH(read_probe_kernel<4>, grid, 512, 0, s)((const uint4 *)buf, n_words, sink);
    else SLM_LAUNCH(read_probe_kernel<1>, grid, 512, 0, s)((const uint4 *)buf, n_words, sink);
    return slm_cu_launched("read_probe", err);
}
