/* Whole-row dequantization to f16: the copy of a chunk of weight rows that the prompt-batch GEMM reads. One
 * thread decodes one piece (8 values) of a quantized row, or one element of a plain row. (The embedding
 * lookup always runs on the host, where the whole table is mapped: there is no CUDA embedding kernel.) */
#include "cuda_common.cuh"

/* out[t * K + i] = element i of row first + t, for t < T */
template <int TYPE>
__global__ void dequant_rows_quant(const uint8_t *__restrict__ w, size_t row_bytes, int64_t K, int64_t first, int64_t T,
                                   __half *__restrict__ out) {
    typedef dq<TYPE> D;
    const int64_t per_row = K / 8;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= per_row * T) return;
    const int64_t t = i / per_row, piece_in_row = i % per_row;
    const int64_t blk = piece_in_row / (D::QK / 8);
    const int p = (int)(piece_in_row % (D::QK / 8));
    __half *o = out + t * K + blk * D::QK;
    float v[8];
    D::piece(w + (size_t)(first + t) * row_bytes + (size_t)blk * D::BB, p, v);
    const int b0 = D::base0(p), b1 = D::base1(p);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        o[b0 + k] = __float2half_rn(v[k]);
        o[b1 + k] = __float2half_rn(v[4 + k]);
    }
}

template <int TYPE>
__global__ void dequant_rows_plain(const uint8_t *__restrict__ w, size_t row_bytes, int64_t K, int64_t first, int64_t T,
                                   __half *__restrict__ out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * T) return;
    const int64_t t = i / K, e = i % K;
    out[t * K + e] = __float2half_rn(ld_elem<TYPE>(w + (size_t)(first + t) * row_bytes, e));
}

extern "C" slm_status slm_cuda_dequant_f16(slm_dtype wtype, const void *w, size_t row_bytes, int64_t K,
                                           int64_t first_row, int64_t n_rows, void *out, cudaStream_t s,
                                           slm_error *err) {
    slm_status st = slm_cu_check_weights(wtype, w, row_bytes, K, first_row + n_rows, "dequant_f16", err);
    if (st) return st;
    SLM_CU_REQUIRE(out && first_row >= 0 && n_rows >= 1, "cuda dequant_f16: bad rows %lld+%lld", (long long)first_row,
                   (long long)n_rows);
    typedef void (*fn)(const uint8_t *, size_t, int64_t, int64_t, int64_t, __half *);
    fn k = NULL;
    bool plain = false;
    switch (wtype) {
    case SLM_F32:
        k = dequant_rows_plain<SLM_F32>;
        plain = true;
        break;
    case SLM_F16:
        k = dequant_rows_plain<SLM_F16>;
        plain = true;
        break;
    case SLM_BF16:
        k = dequant_rows_plain<SLM_BF16>;
        plain = true;
        break;
    case SLM_Q4_0: k = dequant_rows_quant<SLM_Q4_0>; break;
    case SLM_Q4_1: k = dequant_rows_quant<SLM_Q4_1>; break;
    case SLM_Q5_0: k = dequant_rows_quant<SLM_Q5_0>; break;
    case SLM_Q5_1: k = dequant_rows_quant<SLM_Q5_1>; break;
    case SLM_Q8_0: k = dequant_rows_quant<SLM_Q8_0>; break;
    case SLM_Q4_K: k = dequant_rows_quant<SLM_Q4_K>; break;
    case SLM_Q5_K: k = dequant_rows_quant<SLM_Q5_K>; break;
    case SLM_Q6_K: k = dequant_rows_quant<SLM_Q6_K>; break;
    default: break;
    }
    SLM_CU_REQUIRE(k != NULL, "cuda dequant_f16: weight type %s is not supported", slm_dtype_name(wtype));
    int64_t items = plain ? K * n_rows : (K / 8) * n_rows;
    const int threads = 256;
    int64_t blocks = (items + threads - 1) / threads;
    SLM_CU_REQUIRE(blocks <= INT32_MAX, "cuda dequant_f16: %lld x %lld is too large", (long long)K, (long long)n_rows);
    SLM_LAUNCH(k, (unsigned)blocks, threads, 0, s)((const uint8_t *)w, row_bytes, K, first_row, n_rows, (__half *)out);
    return slm_cu_launched("dequant_f16", err);
}

/* The device decoders run on the host: the same piece functions and the same piece -> element mapping the
 * kernels use, so a machine without a GPU still checks every block layout against kernels/ref. */
template <int TYPE> static void host_rows_quant(const uint8_t *src, float *dst, int64_t n) {
    typedef dq<TYPE> D;
    for (int64_t blk = 0; blk < n / D::QK; blk++)
        for (int p = 0; p < D::QK / 8; p++) {
            float v[8];
            D::piece(src + blk * D::BB, p, v);
            for (int k = 0; k < 4; k++) {
                dst[blk * D::QK + D::base0(p) + k] = v[k];
                dst[blk * D::QK + D::base1(p) + k] = v[4 + k];
            }
        }
}

template <int TYPE> static void host_rows_plain(const uint8_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ld_elem<TYPE>(src, i);
}

extern "C" bool slm_cuda_host_dequant_row(slm_dtype t, const void *src, float *dst, int64_t n) {
    int qk, bb, al;
    if (!slm_cu_type_facts(t, &qk, &bb, &al) || n % qk || (uintptr_t)src % (uintptr_t)al) return false;
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case SLM_F32: host_rows_plain<SLM_F32>(s, dst, n); return true;
    case SLM_F16: host_rows_plain<SLM_F16>(s, dst, n); return true;
    case SLM_BF16: host_rows_plain<SLM_BF16>(s, dst, n); return true;
    case SLM_Q4_0: host_rows_quant<SLM_Q4_0>(s, dst, n); return true;
    case SLM_Q4_1: host_rows_quant<SLM_Q4_1>(s, dst, n); return true;
    case SLM_Q5_0: host_rows_quant<SLM_Q5_0>(s, dst, n); return true;
    case SLM_Q5_1: host_rows_quant<SLM_Q5_1>(s, dst, n); return true;
    case SLM_Q8_0: host_rows_quant<SLM_Q8_0>(s, dst, n); return true;
    case SLM_Q4_K: host_rows_quant<SLM_Q4_K>(s, dst, n); return true;
    case SLM_Q5_K: host_rows_quant<SLM_Q5_K>(s, dst, n); return true;
    case SLM_Q6_K: host_rows_quant<SLM_Q6_K>(s, dst, n); return true;
    default: return false;
    }
}
