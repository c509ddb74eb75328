/* Shared device helpers of the CUDA kernels: unaligned-safe loads, warp reductions, launcher error checks,
 * and the block decoders of every GGUF weight type.
 *
 * Decoders: a block of QK elements is split into QK/8 "pieces". Piece p decodes to 8 floats v[0..7]:
 * v[0..3] are the elements base0(p)..base0(p)+3 of the block and v[4..7] the elements base1(p)..+3. The
 * pairing follows the byte layout (low and high nibble of the same 4 bytes), so one piece costs one 32-bit
 * read of quants; neighbouring lanes read neighbouring bytes. Layouts: GGUF/ggml (kernels/ref/quant_ref.c
 * is the definition the tests compare against). */
#ifndef SLM_CUDA_COMMON_CUH
#define SLM_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "error.h"
}
#include "cuda_kernels.h"
#include "quant_blocks.h"

/* The one way kernels are launched: SLM_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...). nvcc
 * gets the real <<<>>>; the emulation build (SLM_CUDA_EMU, backends/cuda/emu) runs the kernel's threads as
 * host fibers, naming the kernel expression and launch site in its errors. */
#ifdef SLM_CUDA_EMU
#define SLM_LAUNCH(kernel, grid, block, shmem, stream)                                                                 \
    ::slm_emu::make_launcher(#kernel, __FILE__, __LINE__, kernel, grid, block, shmem, stream)
/* Dynamic shared memory: `extern __shared__ T name[];` has no C++ spelling. */
#define SLM_EXTERN_SHARED(type, name) type *name = (type *)SLM_EMU_DYNAMIC_SHARED()
#else
#define SLM_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#define SLM_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif

/* Every launcher ends with this: a bad launch configuration shows up here, not at the next sync. */
static inline slm_status slm_cu_launched(const char *what, slm_error *err) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return slm_fail(err, SLM_ERR_DEVICE, "cuda: launch of %s failed: %s", what, cudaGetErrorString(e));
    return SLM_OK;
}

#define SLM_CU_REQUIRE(cond, ...)                                                                                      \
    do {                                                                                                               \
        if (!(cond)) return slm_fail(err, SLM_ERR_INVALID_ARG, __VA_ARGS__);                                           \
    } while (0)

/* Decoders and loads run on the host too: slm_cuda_host_dequant_row checks them against kernels/ref on
 * machines without a GPU. */
#define SLM_HD __host__ __device__ __forceinline__

/* A weight or KV-cache load, for the emulator's per-kernel accounting of requests and sectors (nothing under nvcc). */
#ifdef SLM_CUDA_EMU
#define SLM_NOTE_LOAD(p, bytes) ::slm_emu::note_load(p, bytes)
#else
#define SLM_NOTE_LOAD(p, bytes) ((void)0)
#endif

/* Quantized rows are only guaranteed 2-byte aligned (block sizes 18, 22, 34, 210 ...): 16-bit loads. */
SLM_HD uint32_t ld_u16(const uint8_t *p) {
    SLM_NOTE_LOAD(p, 2);
    return *(const uint16_t *)p;
}
SLM_HD uint32_t ld_u32(const uint8_t *p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }
SLM_HD float ld_f16(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)ld_u16(p))); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- block decoders -------------------------------------------------------------------------------- */

template <int T> struct dq;

template <> struct dq<SLM_Q4_0> { /* d f16, qs[16]: element j = lo nibble of qs[j], j+16 = hi nibble */
    static constexpr int QK = SLM_QK, BB = SLM_Q4_0_BYTES;
    static SLM_HD int base0(int p) { return 4 * p; }
    static SLM_HD int base1(int p) { return 16 + 4 * p; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b);
        uint32_t q = ld_u32(b + SLM_Q4_0_QS + 4 * p);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu;
            v[k] = d * (float)((int)(x & 15u) - 8);
            v[4 + k] = d * (float)((int)(x >> 4) - 8);
        }
    }
};

template <> struct dq<SLM_Q4_1> { /* d f16, m f16, qs[16]: d * q + m */
    static constexpr int QK = SLM_QK, BB = SLM_Q4_1_BYTES;
    static SLM_HD int base0(int p) { return 4 * p; }
    static SLM_HD int base1(int p) { return 16 + 4 * p; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b), m = ld_f16(b + SLM_Q4_1_M);
        uint32_t q = ld_u32(b + SLM_Q4_1_QS + 4 * p);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu;
            v[k] = d * (float)(x & 15u) + m;
            v[4 + k] = d * (float)(x >> 4) + m;
        }
    }
};

template <> struct dq<SLM_Q5_0> { /* d f16, qh u32 (bit j = 5th bit of element j), qs[16]; q - 16 */
    static constexpr int QK = SLM_QK, BB = SLM_Q5_0_BYTES;
    static SLM_HD int base0(int p) { return 4 * p; }
    static SLM_HD int base1(int p) { return 16 + 4 * p; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b);
        uint32_t qh = ld_u32(b + SLM_Q5_0_QH);
        uint32_t q = ld_u32(b + SLM_Q5_0_QS + 4 * p);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu;
            int j = 4 * p + k;
            int lo = (int)((x & 15u) | (((qh >> j) & 1u) << 4));
            int hi = (int)((x >> 4) | (((qh >> (j + 16)) & 1u) << 4));
            v[k] = d * (float)(lo - 16);
            v[4 + k] = d * (float)(hi - 16);
        }
    }
};

template <> struct dq<SLM_Q5_1> { /* d f16, m f16, qh u32, qs[16]; d * q + m */
    static constexpr int QK = SLM_QK, BB = SLM_Q5_1_BYTES;
    static SLM_HD int base0(int p) { return 4 * p; }
    static SLM_HD int base1(int p) { return 16 + 4 * p; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b), m = ld_f16(b + SLM_Q5_1_M);
        uint32_t qh = ld_u32(b + SLM_Q5_1_QH);
        uint32_t q = ld_u32(b + SLM_Q5_1_QS + 4 * p);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu;
            int j = 4 * p + k;
            uint32_t lo = (x & 15u) | (((qh >> j) & 1u) << 4);
            uint32_t hi = (x >> 4) | (((qh >> (j + 16)) & 1u) << 4);
            v[k] = d * (float)lo + m;
            v[4 + k] = d * (float)hi + m;
        }
    }
};

template <> struct dq<SLM_Q8_0> { /* d f16, qs int8[32] */
    static constexpr int QK = SLM_QK, BB = SLM_Q8_0_BYTES;
    static SLM_HD int base0(int p) { return 8 * p; }
    static SLM_HD int base1(int p) { return 8 * p + 4; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b);
        uint32_t q0 = ld_u32(b + SLM_Q8_0_QS + 8 * p), q1 = ld_u32(b + SLM_Q8_0_QS + 4 + 8 * p);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[k] = d * (float)(int8_t)((q0 >> (8 * k)) & 0xffu);
            v[4 + k] = d * (float)(int8_t)((q1 >> (8 * k)) & 0xffu);
        }
    }
};

/* 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K / Q5_K. */
SLM_HD void kq_scale_min(const uint8_t *s, int j, float *sc, float *mn) {
    if (j < 4) {
        *sc = (float)(s[j] & 63);
        *mn = (float)(s[j + 4] & 63);
    } else {
        *sc = (float)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *mn = (float)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Q4_K: d f16, dmin f16, scales[12], qs[128]. Chunk c (64 elements) = qs[32c..32c+31]: low nibbles are
 * sub-block 2c, high nibbles sub-block 2c+1. x = d*sc*q - dmin*m. Piece p: chunk p/8, bytes 4*(p%8).. */
template <> struct dq<SLM_Q4_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q4_K_BYTES;
    static SLM_HD int base0(int p) { return (p >> 3) * 64 + (p & 7) * 4; }
    static SLM_HD int base1(int p) { return (p >> 3) * 64 + 32 + (p & 7) * 4; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b), dmin = ld_f16(b + SLM_Q4_K_DMIN);
        int c = p >> 3, l = (p & 7) * 4;
        float sc0, m0, sc1, m1;
        kq_scale_min(b + SLM_Q4_K_SCALES, 2 * c, &sc0, &m0);
        kq_scale_min(b + SLM_Q4_K_SCALES, 2 * c + 1, &sc1, &m1);
        float d0 = d * sc0, o0 = dmin * m0, d1 = d * sc1, o1 = dmin * m1;
        uint32_t q = ld_u32(b + SLM_Q4_K_QS + c * 32 + l);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu;
            v[k] = d0 * (float)(x & 15u) - o0;
            v[4 + k] = d1 * (float)(x >> 4) - o1;
        }
    }
};

/* Q5_K: d, dmin, scales[12], qh[32], qs[128]: as Q4_K plus bit j of qh[l] = 5th bit of element l of
 * sub-block j. */
template <> struct dq<SLM_Q5_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q5_K_BYTES;
    static SLM_HD int base0(int p) { return (p >> 3) * 64 + (p & 7) * 4; }
    static SLM_HD int base1(int p) { return (p >> 3) * 64 + 32 + (p & 7) * 4; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        float d = ld_f16(b), dmin = ld_f16(b + SLM_Q5_K_DMIN);
        int c = p >> 3, l = (p & 7) * 4;
        float sc0, m0, sc1, m1;
        kq_scale_min(b + SLM_Q5_K_SCALES, 2 * c, &sc0, &m0);
        kq_scale_min(b + SLM_Q5_K_SCALES, 2 * c + 1, &sc1, &m1);
        float d0 = d * sc0, o0 = dmin * m0, d1 = d * sc1, o1 = dmin * m1;
        uint32_t qh = ld_u32(b + SLM_Q5_K_QH + l);
        uint32_t q = ld_u32(b + SLM_Q5_K_QS + c * 32 + l);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (q >> (8 * k)) & 0xffu, h = (qh >> (8 * k)) & 0xffu;
            uint32_t lo = (x & 15u) | (((h >> (2 * c)) & 1u) << 4);
            uint32_t hi = (x >> 4) | (((h >> (2 * c + 1)) & 1u) << 4);
            v[k] = d0 * (float)lo - o0;
            v[4 + k] = d1 * (float)hi - o1;
        }
    }
};

/* Q6_K: ql[128], qh[64], scales int8[16], d f16. Half h (128 elements): element h*128 + i (i < 64) is the
 * low nibble of ql[64h + i], element h*128 + 64 + i the high nibble; 2 more bits of element h*128 + 32s + l
 * are bits 2s..2s+1 of qh[32h + l]. x = d * scales[e / 16] * (q - 32). Piece p: half p/16, i = 4*(p%16). */
template <> struct dq<SLM_Q6_K> {
    static constexpr int QK = SLM_QK_K, BB = SLM_Q6_K_BYTES;
    static SLM_HD int base0(int p) { return (p >> 4) * 128 + (p & 15) * 4; }
    static SLM_HD int base1(int p) { return (p >> 4) * 128 + 64 + (p & 15) * 4; }
    static SLM_HD void piece(const uint8_t *b, int p, float v[8]) {
        int h = p >> 4, r = p & 15, i = 4 * r;
        float d = ld_f16(b + SLM_Q6_K_D);
        const int8_t *sc = (const int8_t *)(b + SLM_Q6_K_SCALES);
        float d0 = d * (float)sc[(h * 128 + i) >> 4];
        float d1 = d * (float)sc[(h * 128 + 64 + i) >> 4];
        uint32_t ql = ld_u32(b + 64 * h + i);
        uint32_t qh = ld_u32(b + SLM_Q6_K_QH + 32 * h + (i & 31));
        int s0 = 2 * (r >> 3), s1 = 2 * (2 + (r >> 3));
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t x = (ql >> (8 * k)) & 0xffu, hb = (qh >> (8 * k)) & 0xffu;
            int lo = (int)((x & 15u) | (((hb >> s0) & 3u) << 4)) - 32;
            int hi = (int)((x >> 4) | (((hb >> s1) & 3u) << 4)) - 32;
            v[k] = d0 * (float)lo;
            v[4 + k] = d1 * (float)hi;
        }
    }
};

/* Plain element types: element i of a row. */
template <int T> SLM_HD float ld_elem(const uint8_t *row, int64_t i);
template <> SLM_HD float ld_elem<SLM_F32>(const uint8_t *row, int64_t i) {
    SLM_NOTE_LOAD(row + 4 * i, 4);
    return ((const float *)row)[i];
}
template <> SLM_HD float ld_elem<SLM_F16>(const uint8_t *row, int64_t i) {
    SLM_NOTE_LOAD(row + 2 * i, 2);
    return __half2float(((const __half *)row)[i]);
}
template <> SLM_HD float ld_elem<SLM_BF16>(const uint8_t *row, int64_t i) {
    SLM_NOTE_LOAD(row + 2 * i, 2);
    uint32_t u = (uint32_t)((const uint16_t *)row)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Host-side facts of the weight types the kernels read (block elements, block bytes, pointer alignment). */
static inline bool slm_cu_type_facts(slm_dtype t, int *qk, int *bb, int *align) {
    switch (t) {
    case SLM_F32:
        *qk = 1;
        *bb = 4;
        *align = 4;
        return true;
    case SLM_F16:
        *qk = 1;
        *bb = 2;
        *align = 2;
        return true;
    case SLM_BF16:
        *qk = 1;
        *bb = 2;
        *align = 2;
        return true;
    case SLM_Q4_0:
        *qk = 32;
        *bb = 18;
        *align = 2;
        return true;
    case SLM_Q4_1:
        *qk = 32;
        *bb = 20;
        *align = 2;
        return true;
    case SLM_Q5_0:
        *qk = 32;
        *bb = 22;
        *align = 2;
        return true;
    case SLM_Q5_1:
        *qk = 32;
        *bb = 24;
        *align = 2;
        return true;
    case SLM_Q8_0:
        *qk = 32;
        *bb = 34;
        *align = 2;
        return true;
    case SLM_Q4_K:
        *qk = 256;
        *bb = 144;
        *align = 2;
        return true;
    case SLM_Q5_K:
        *qk = 256;
        *bb = 176;
        *align = 2;
        return true;
    case SLM_Q6_K:
        *qk = 256;
        *bb = 210;
        *align = 2;
        return true;
    default: return false;
    }
}

/* Checks a weight matrix [K, N] of type t at w with rows row_bytes apart. */
static inline slm_status slm_cu_check_weights(slm_dtype t, const void *w, size_t row_bytes, int64_t K, int64_t N,
                                              const char *what, slm_error *err) {
    int qk, bb, al;
    SLM_CU_REQUIRE(slm_cu_type_facts(t, &qk, &bb, &al), "cuda %s: weight type %s is not supported", what,
                   slm_dtype_name(t));
    SLM_CU_REQUIRE(w != NULL && K > 0 && N > 0, "cuda %s: empty or missing weights (K=%lld N=%lld)", what, (long long)K,
                   (long long)N);
    SLM_CU_REQUIRE(K % qk == 0, "cuda %s: K=%lld is not a multiple of the %s block (%d)", what, (long long)K,
                   slm_dtype_name(t), qk);
    SLM_CU_REQUIRE(K <= INT32_MAX, "cuda %s: K=%lld too large", what, (long long)K);
    SLM_CU_REQUIRE(row_bytes >= (size_t)(K / qk) * (size_t)bb, "cuda %s: row stride %zu < row size", what, row_bytes);
    SLM_CU_REQUIRE((uintptr_t)w % (uintptr_t)al == 0 && row_bytes % (size_t)al == 0,
                   "cuda %s: %s weights must be %d-byte aligned", what, slm_dtype_name(t), al);
    return SLM_OK;
}

#endif
