/* Fused dequantize + mat-vec: y[N, T] = W[K, N] . x[K, T] (+ bias) for 1 <= T <= SLM_CUDA_MATVEC_MAX_COLS.
 *
 * Two paths, one warp per output row in both:
 *
 * f32 activations (matvec_quant, matvec_plain): lanes walk the row's pieces (8 weights each, see
 * cuda_common.cuh) with stride 32, so the warp reads the row's bytes front to back and every weight byte is
 * read once per launch whatever T is; weights are dequantized to f32 in registers and meet the f32
 * activations read from global memory. The result differs from kernels/ref only in summation order. Float
 * weight types always take this path; quantized ones when the backend asks for f32 activations.
 *
 * 8-bit activations (matvec_q8, quantized weights): the columns were quantized to blocks of 32
 * (slm_cuda_act_quant). A thread block stages a slice of every column's quants and block scales in
 * shared memory once, for all its rows. Each warp copies a chunk of its row's blocks into its own shared
 * buffer with the widest loads the row's alignment allows (16 bytes for rows of the usual shapes): GGUF
 * blocks of 18, 22, 34 or 210 bytes are only 2-byte aligned, so loading a block's quants straight into
 * registers would take many narrow, scattered requests, whereas the chunk is one contiguous run of bytes.
 * Lanes then take 32-weight sub-blocks ("items") from the chunk, turn the quants into signed or unsigned
 * bytes four to a word and multiply them with the activation quants by __dp4a; the weight and activation
 * scales are applied once per item. */
#include "cuda_common.cuh"

#define MV_ROWS 4

/* An f32 activation read from global memory (counted by the emulator's load accounting). */
__device__ __forceinline__ float ld_act(const float *p) {
    SLM_NOTE_LOAD(p, 4);
    return *p;
}

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
                acc[c] += v[0] * ld_act(xc + e0) + v[1] * ld_act(xc + e0 + 1) + v[2] * ld_act(xc + e0 + 2) +
                    v[3] * ld_act(xc + e0 + 3) + v[4] * ld_act(xc + e1) + v[5] * ld_act(xc + e1 + 1) +
                    v[6] * ld_act(xc + e1 + 2) + v[7] * ld_act(xc + e1 + 3);
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
            if (c < T) acc[c] += wv * ld_act(x + c * ldx + i);
    }
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
        if (c < T) {
            float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + row] = s + (bias ? bias[row] : 0.0f);
        }
    }
}

/* ---- 8-bit activations ------------------------------------------------------------------------------ */

#define MVQ_ROWS 8
/* Elements of every column staged per pass: a multiple of every chunk's elements (below), and small
 * enough that T = SLM_CUDA_MATVEC_MAX_COLS columns plus the warps' chunks fit the 48 KiB of shared memory
 * any launch may take. */
#define MVQ_KC 2048

/* Shared-memory reads of a chunk copied from a 2-byte aligned row: blocks start at even offsets only. */
__device__ __forceinline__ uint32_t sh_u16(const uint8_t *p) { return *(const uint16_t *)p; }
__device__ __forceinline__ uint32_t sh_u32(const uint8_t *p) { return sh_u16(p) | (sh_u16(p + 2) << 16); }
__device__ __forceinline__ float sh_f16(const uint8_t *p) {
    return __half2float(__ushort_as_half((unsigned short)sh_u16(p)));
}

/* Byte-wise a - k for bytes of a below 128 and of k at most 128: no borrow crosses a byte. The result
 * bytes are the signed quants (q - 8, q - 16, q - 32) dp4a multiplies. */
__device__ __forceinline__ int sub_bytes(uint32_t a, uint32_t k) {
    return (int)(((a | 0x80808080u) - k) ^ 0x80808080u);
}

/* Bits 0..3 of b to bit 4 of bytes 0..3 (the 5th bit of four Q5_0 / Q5_1 quants). */
__device__ __forceinline__ uint32_t spread4(uint32_t b) {
    return ((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25);
}

/* Per weight type: NB blocks per warp chunk (NB * BB a multiple of 16, so chunks start 16-byte aligned in a
 * row that does), IPB items (sub-blocks of 32 elements) per block, and item(b, j): the quants of elements
 * 32j..32j+31 of the block at b (shared memory) as 8 words of 4 bytes in element order, the scale s0 of
 * words 0..3 and s1 of words 4..7, and m, the weight's per-element offset when the type has a min (the
 * item's sum is then s * da * dot + m * (da * sum of the activation quants)). */
template <int TYPE> struct mvq;

template <> struct mvq<SLM_Q4_0> {
    static constexpr int QK = SLM_QK, BB = SLM_Q4_0_BYTES, NB = 32, IPB = 1;
    static constexpr bool MIN = false, SPLIT = false;
    static __device__ void item(const uint8_t *b, int, int q[8], float &s0, float &s1, float &m) {
        s0 = s1 = sh_f16(b);
        m = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t x = sh_u32(b + SLM_Q4_0_QS + 4 * i);
            q[i] = sub_bytes(x & 0x0f0f0f0fu, 0x08080808u);
            q[4 + i] = sub_bytes((x >> 4) & 0x0f0f0f0fu, 0x08080808u);
        }
    }
};

template <> struct mvq<SLM_Q4_1> {
    static constexpr int QK = SLM_QK, BB = SLM_Q4_1_BYTES, NB = 32, IPB = 1;
    static constexpr bool MIN = true, SPLIT = false;
    static __device__ void item(const uint8_t *b, int, int q[8], float &s0, float &s1, float &m) {
        s0 = s1 = sh_f16(b);
        m = sh_f16(b + SLM_Q4_1_M);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t x = sh_u32(b + SLM_Q4_1_QS + 4 * i);
            q[i] = (int)(x & 0x0f0f0f0fu);
            q[4 + i] = (int)((x >> 4) & 0x0f0f0f0fu);
        }
    }
};

template <> struct mvq<SLM_Q5_0> {
    static constexpr int QK = SLM_QK, BB = SLM_Q5_0_BYTES, NB = 32, IPB = 1;
    static constexpr bool MIN = false, SPLIT = false;
    static __device__ void item(const uint8_t *b, int, int q[8], float &s0, float &s1, float &m) {
        s0 = s1 = sh_f16(b);
        m = 0.0f;
        const uint32_t qh = sh_u32(b + SLM_Q5_0_QH);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t x = sh_u32(b + SLM_Q5_0_QS + 4 * i);
            q[i] = sub_bytes((x & 0x0f0f0f0fu) | spread4(qh >> (4 * i)), 0x10101010u);
            q[4 + i] = sub_bytes(((x >> 4) & 0x0f0f0f0fu) | spread4(qh >> (16 + 4 * i)), 0x10101010u);
        }
    }
};

template <> struct mvq<SLM_Q5_1> {
    static constexpr int QK = SLM_QK, BB = SLM_Q5_1_BYTES, NB = 32, IPB = 1;
    static constexpr bool MIN = true, SPLIT = false;
    static __device__ void item(const uint8_t *b, int, int q[8], float &s0, float &s1, float &m) {
        s0 = s1 = sh_f16(b);
        m = sh_f16(b + SLM_Q5_1_M);
        const uint32_t qh = sh_u32(b + SLM_Q5_1_QH);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t x = sh_u32(b + SLM_Q5_1_QS + 4 * i);
            q[i] = (int)((x & 0x0f0f0f0fu) | spread4(qh >> (4 * i)));
            q[4 + i] = (int)(((x >> 4) & 0x0f0f0f0fu) | spread4(qh >> (16 + 4 * i)));
        }
    }
};

template <> struct mvq<SLM_Q8_0> {
    static constexpr int QK = SLM_QK, BB = SLM_Q8_0_BYTES, NB = 32, IPB = 1;
    static constexpr bool MIN = false, SPLIT = false;
    static __device__ void item(const uint8_t *b, int, int q[8], float &s0, float &s1, float &m) {
        s0 = s1 = sh_f16(b);
        m = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = (int)sh_u32(b + SLM_Q8_0_QS + 4 * i);
    }
};

/* Q4_K / Q5_K: item j is sub-block j (its own 6-bit scale and min); chunk j / 2 of qs holds it in the low
 * (j even) or high (j odd) nibbles. */
template <> struct mvq<SLM_Q4_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q4_K_BYTES, NB = 4, IPB = 8;
    static constexpr bool MIN = true, SPLIT = false;
    static __device__ void item(const uint8_t *b, int j, int q[8], float &s0, float &s1, float &m) {
        float sc, mn;
        kq_scale_min(b + SLM_Q4_K_SCALES, j, &sc, &mn);
        s0 = s1 = sh_f16(b) * sc;
        m = -sh_f16(b + SLM_Q4_K_DMIN) * mn;
        const uint8_t *qs = b + SLM_Q4_K_QS + 32 * (j >> 1);
        const int sh = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = (int)((sh_u32(qs + 4 * i) >> sh) & 0x0f0f0f0fu);
    }
};

template <> struct mvq<SLM_Q5_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q5_K_BYTES, NB = 4, IPB = 8;
    static constexpr bool MIN = true, SPLIT = false;
    static __device__ void item(const uint8_t *b, int j, int q[8], float &s0, float &s1, float &m) {
        float sc, mn;
        kq_scale_min(b + SLM_Q5_K_SCALES, j, &sc, &mn);
        s0 = s1 = sh_f16(b) * sc;
        m = -sh_f16(b + SLM_Q5_K_DMIN) * mn;
        const uint8_t *qs = b + SLM_Q5_K_QS + 32 * (j >> 1);
        const int sh = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t hb = ((sh_u32(b + SLM_Q5_K_QH + 4 * i) >> j) & 0x01010101u) << 4;
            q[i] = (int)(((sh_u32(qs + 4 * i) >> sh) & 0x0f0f0f0fu) | hb);
        }
    }
};

/* Q6_K: item j = elements 32j.. of the block: half h = j / 4, group g = j % 4 of it. Low 4 bits: the low
 * (g < 2) or high nibbles of ql[64h + 32(g % 2) + l]; high 2 bits: bits 2g, 2g+1 of qh[32h + l]. Each
 * half of an item has its own int8 scale. */
template <> struct mvq<SLM_Q6_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q6_K_BYTES, NB = 8, IPB = 8;
    static constexpr bool MIN = false, SPLIT = true;
    static __device__ void item(const uint8_t *b, int j, int q[8], float &s0, float &s1, float &m) {
        const float d = sh_f16(b + SLM_Q6_K_D);
        const int8_t *sc = (const int8_t *)(b + SLM_Q6_K_SCALES);
        s0 = d * (float)sc[2 * j];
        s1 = d * (float)sc[2 * j + 1];
        m = 0.0f;
        const int h = j >> 2, g = j & 3;
        const uint8_t *ql = b + 64 * h + 32 * (g & 1), *qh = b + SLM_Q6_K_QH + 32 * h;
        const int shl = 4 * (g >> 1), shh = 2 * g;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t lo = (sh_u32(ql + 4 * i) >> shl) & 0x0f0f0f0fu;
            uint32_t hi = ((sh_u32(qh + 4 * i) >> shh) & 0x03030303u) << 4;
            q[i] = sub_bytes(lo | hi, 0x20202020u);
        }
    }
};

/* Global loads of 16, 8, 4 and 2 bytes (counted by the emulator's load accounting). */
__device__ __forceinline__ void copy16(uint8_t *dst, const uint8_t *src) {
    SLM_NOTE_LOAD(src, 16);
    *(uint4 *)dst = *(const uint4 *)src;
}
__device__ __forceinline__ void copy8(uint8_t *dst, const uint8_t *src) {
    SLM_NOTE_LOAD(src, 8);
    *(unsigned long long *)dst = *(const unsigned long long *)src;
}
__device__ __forceinline__ void copy4(uint8_t *dst, const uint8_t *src) {
    SLM_NOTE_LOAD(src, 4);
    *(uint32_t *)dst = *(const uint32_t *)src;
}

/* The warp copies n bytes (even) from src to dst (shared) in words of vw bytes (src and dst vw-aligned),
 * the last n % vw bytes in halves. */
__device__ __forceinline__ void warp_copy(uint8_t *dst, const uint8_t *src, int n, int vw, int lane) {
    const int body = vw > 2 ? n - n % vw : 0;
    if (vw == 16)
        for (int o = 16 * lane; o < body; o += 16 * 32) copy16(dst + o, src + o);
    else if (vw == 8)
        for (int o = 8 * lane; o < body; o += 8 * 32) copy8(dst + o, src + o);
    else if (vw == 4)
        for (int o = 4 * lane; o < body; o += 4 * 32) copy4(dst + o, src + o);
    for (int o = body + 2 * lane; o < n; o += 2 * 32) *(uint16_t *)(dst + o) = (uint16_t)ld_u16(src + o);
}

/* Shared bytes of the staged activations: T columns of kc quants, then T columns of kc / 32 float pairs,
 * rounded to 16 so the warps' chunks after them stay 16-byte aligned. */
static SLM_HD int mvq_act_bytes(int kc, int T) { return (T * kc + T * (kc / 32) * 8 + 15) & ~15; }

template <int TYPE>
__global__ void __launch_bounds__(32 * MVQ_ROWS)
    matvec_q8(const uint8_t *__restrict__ w, size_t row_bytes, int K, int N, const uint8_t *__restrict__ xq,
              int64_t ldq, int64_t ds_off, float *__restrict__ y, int64_t ldy, int T, const float *__restrict__ bias,
              int vw) {
    typedef mvq<TYPE> M;
    constexpr int CHUNK = M::NB * M::BB;
    SLM_EXTERN_SHARED(uint4, smem);
    uint8_t *sh = (uint8_t *)smem;
    const int lane = threadIdx.x, warp = threadIdx.y, tid = warp * 32 + lane;
    const int64_t row = (int64_t)blockIdx.x * MVQ_ROWS + warp;
    const bool live = row < N; /* warps past the last row still stage activations and meet at barriers */
    const int kc_max = K < MVQ_KC ? K : MVQ_KC;
    uint8_t *aq = sh;                                      /* [T][kc_max] int8 */
    const float2 *ads = (const float2 *)(sh + T * kc_max); /* [T][kc_max / 32] (d, d * sum) */
    uint8_t *wsh = sh + mvq_act_bytes(kc_max, T) + warp * CHUNK;
    const uint8_t *wr = w + (live ? row : 0) * row_bytes;
    float acc[SLM_CUDA_MATVEC_MAX_COLS];
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) acc[c] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MVQ_KC) {
        const int kc = K - k0 < MVQ_KC ? K - k0 : MVQ_KC;
        /* stage this slice of every column: quants in 16-byte words, block scales in pairs */
        const int qw = kc / 16, nbk = kc / 32;
        for (int i = tid; i < T * qw; i += 32 * MVQ_ROWS) {
            const int c = i / qw, o = i % qw;
            copy16(aq + c * kc_max + 16 * o, xq + c * ldq + k0 + 16 * o);
        }
        for (int i = tid; i < T * nbk; i += 32 * MVQ_ROWS) {
            const int c = i / nbk, o = i % nbk;
            copy8(sh + T * kc_max + (c * (kc_max / 32) + o) * 8, xq + c * ldq + ds_off + (k0 / 32 + o) * 8);
        }
        __syncthreads();
        if (live) {
            const int b_first = k0 / M::QK, b_end = (k0 + kc) / M::QK;
            for (int cb = b_first; cb < b_end; cb += M::NB) {
                const int nb = b_end - cb < M::NB ? b_end - cb : M::NB;
                warp_copy(wsh, wr + (size_t)cb * M::BB, nb * M::BB, vw, lane);
                __syncwarp();
                for (int it = lane; it < nb * M::IPB; it += 32) {
                    const int blk = it / M::IPB, j = it % M::IPB;
                    int q[8];
                    float s0, s1, m;
                    M::item(wsh + blk * M::BB, j, q, s0, s1, m);
                    const int e = (cb - b_first + blk) * M::QK + 32 * j; /* element within the slice */
#pragma unroll
                    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
                        if (c < T) {
                            /* 16-byte shared reads: lanes 32 bytes apart would conflict 8-way on
                             * 4-byte ones */
                            const int4 a0 = *(const int4 *)(aq + c * kc_max + e);
                            const int4 a1 = *(const int4 *)(aq + c * kc_max + e + 16);
                            const float2 ds = ads[c * (kc_max / 32) + e / 32];
                            int d0 = __dp4a(q[0], a0.x, 0), d1 = __dp4a(q[4], a1.x, 0);
                            d0 = __dp4a(q[1], a0.y, d0);
                            d0 = __dp4a(q[2], a0.z, d0);
                            d0 = __dp4a(q[3], a0.w, d0);
                            d1 = __dp4a(q[5], a1.y, d1);
                            d1 = __dp4a(q[6], a1.z, d1);
                            d1 = __dp4a(q[7], a1.w, d1);
                            float v = M::SPLIT ? s0 * (float)d0 + s1 * (float)d1 : s0 * (float)(d0 + d1);
                            acc[c] += ds.x * v;
                            if (M::MIN) acc[c] += m * ds.y;
                        }
                    }
                }
                __syncwarp();
            }
        }
        __syncthreads();
    }
    if (!live) return;
#pragma unroll
    for (int c = 0; c < SLM_CUDA_MATVEC_MAX_COLS; c++) {
        if (c < T) {
            float s = warp_sum(acc[c]);
            if (lane == 0) y[c * ldy + row] = s + (bias ? bias[row] : 0.0f);
        }
    }
}

typedef void (*matvec_q8_fn)(const uint8_t *, size_t, int, int, const uint8_t *, int64_t, int64_t, float *, int64_t,
                             int, const float *, int);

/* The dp4a kernel of a weight type and the bytes of its warp chunk (NULL: no such kernel). */
static matvec_q8_fn matvec_q8_kernel(slm_dtype t, int *chunk) {
#define MVQ_CASE(ty)                                                                                                   \
    case ty: *chunk = mvq<ty>::NB * mvq<ty>::BB; return matvec_q8<ty>;
    switch (t) {
        MVQ_CASE(SLM_Q4_0)
        MVQ_CASE(SLM_Q4_1)
        MVQ_CASE(SLM_Q5_0)
        MVQ_CASE(SLM_Q5_1)
        MVQ_CASE(SLM_Q8_0)
        MVQ_CASE(SLM_Q4_K)
        MVQ_CASE(SLM_Q5_K)
        MVQ_CASE(SLM_Q6_K)
    default: *chunk = 0; return NULL;
    }
#undef MVQ_CASE
}

extern "C" size_t slm_cuda_matvec_scratch(slm_dtype wtype, int64_t K, int64_t T) {
    int chunk;
    if (!matvec_q8_kernel(wtype, &chunk) || K <= 0 || T <= 0) return 0;
    return (size_t)T * slm_cuda_q8_col_bytes(K);
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
    if (a->act_scratch) {
        int chunk;
        matvec_q8_fn q8_kernel = matvec_q8_kernel(a->wtype, &chunk);
        if (q8_kernel) {
            st = slm_cuda_act_quant(a->x, a->ldx, a->K, a->T, a->act_scratch, s, err);
            if (st) return st;
            /* the widest load both the weights' start and their row stride allow */
            uintptr_t al = (uintptr_t)a->w | (uintptr_t)a->row_bytes;
            int vw = al % 16 == 0 ? 16 : al % 8 == 0 ? 8 : al % 4 == 0 ? 4 : 2;
            int kc = a->K < MVQ_KC ? (int)a->K : MVQ_KC;
            size_t shmem = (size_t)mvq_act_bytes(kc, (int)a->T) + (size_t)MVQ_ROWS * (size_t)chunk;
            dim3 block(32, MVQ_ROWS);
            dim3 grid((unsigned)((a->N + MVQ_ROWS - 1) / MVQ_ROWS));
            SLM_LAUNCH(q8_kernel, grid, block, shmem, s)
            ((const uint8_t *)a->w, a->row_bytes, (int)a->K, (int)a->N, (const uint8_t *)a->act_scratch,
             (int64_t)slm_cuda_q8_col_bytes(a->K), (int64_t)slm_cuda_q8_ds_offset(a->K), a->y, a->ldy, (int)a->T,
             a->bias, vw);
            return slm_cu_launched("matvec (8-bit activations)", err);
        }
    }
    dim3 block(32, MV_ROWS);
    dim3 grid((unsigned)((a->N + MV_ROWS - 1) / MV_ROWS));
    SLM_LAUNCH(matvec_kernel(a->wtype), grid, block, 0, s)
    ((const uint8_t *)a->w, a->row_bytes, (int)a->K, (int)a->N, a->x, a->ldx, a->y, a->ldy, (int)a->T, a->bias);
    return slm_cu_launched("matvec", err);
}
