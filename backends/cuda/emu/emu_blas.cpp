/* The cuBLAS calls slm makes, as a reference GEMM in float behind the documented signatures: column-major
 * matrices, op(A) m x k and op(B) k x n with transposes, leading dimensions checked as cuBLAS checks them,
 * f32 or f16 inputs and outputs, f32 accumulation, beta == 0 meaning C is not read (so NaN in a fresh C
 * does not leak in). The work goes onto the handle's stream like any other, so it is ordered with the
 * kernels and recorded when the stream is capturing. Operands outside device memory fail the call with a
 * message: on a GPU they would be an illegal address. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "emu_internal.h"
#include "include/cublas_v2.h"
#include "include/cuda_fp16.h"

struct slm_emu_blas {
    cudaStream_t stream;
    /* cublasSetWorkspace's buffer: recorded and checked like cuBLAS does (the reference GEMM needs none) */
    void *workspace;
    size_t workspace_size;
};

using namespace slm_emu;

extern "C" cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        cudaGetLastError();
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    *handle = new slm_emu_blas{nullptr, nullptr, 0};
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    /* as in cuBLAS: setting the stream drops a workspace set before (the caller sets it again after) */
    handle->workspace = nullptr;
    handle->workspace_size = 0;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t size) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    /* cuBLAS requires a workspace aligned to 256 bytes */
    if ((reinterpret_cast<uintptr_t>(workspace) & 255) != 0) return CUBLAS_STATUS_INVALID_VALUE;
    handle->workspace = workspace;
    handle->workspace_size = size;
    return CUBLAS_STATUS_SUCCESS;
}

static size_t type_bytes(cudaDataType_t t) {
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: return 2;
    default: return 0;
    }
}

static float load(cudaDataType_t t, const void *p, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __half2float(((const __half *)p)[i]);
}

/* Elements a column-major rows x cols matrix with leading dimension ld spans. */
static size_t extent(int rows, int cols, int ld) {
    return rows == 0 || cols == 0 ? 0 : (size_t)ld * (size_t)(cols - 1) + (size_t)rows;
}

static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           float alpha, const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt,
                           int ldb, float beta, void *C, cudaDataType_t ct, int ldc, const char *what) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const bool tra = ta != CUBLAS_OP_N, trb = tb != CUBLAS_OP_N;
    const int a_rows = tra ? k : m, b_rows = trb ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1) || !type_bytes(at) || !type_bytes(bt) || !type_bytes(ct)) {
        fprintf(stderr, "slm cuda emulator: %s: invalid value (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d)\n", what, m, n, k,
                lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const size_t ea = extent(a_rows, tra ? m : k, lda), eb = extent(b_rows, trb ? k : n, ldb), ec = extent(m, n, ldc);
    if ((ea && !device_range(A, ea * type_bytes(at))) || (eb && !device_range(B, eb * type_bytes(bt))) ||
        !device_range(C, ec * type_bytes(ct))) {
        fprintf(stderr, "slm cuda emulator: %s: an operand lies outside device memory (m=%d n=%d k=%d)\n", what, m, n,
                k);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    cudaError_t e = enqueue_host_work(h->stream, what, [=]() {
        /* op(A) as rows of k and op(B) as columns of k, in float, so the inner loop is a contiguous dot */
        std::vector<float> a((size_t)m * k), b((size_t)n * k);
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++)
                a[(size_t)i * k + l] = load(at, A, tra ? l + (size_t)i * lda : i + (size_t)l * lda);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++)
                b[(size_t)j * k + l] = load(bt, B, trb ? j + (size_t)l * ldb : l + (size_t)j * ldb);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *x = &a[(size_t)i * k], *y = &b[(size_t)j * k];
                float acc = 0.0f;
                for (int l = 0; l < k; l++) acc += x[l] * y[l];
                const size_t ci = i + (size_t)j * ldc;
                float r = alpha * acc;
                if (beta != 0.0f) r += beta * load(ct, C, ci);
                if (ct == CUDA_R_32F) ((float *)C)[ci] = r;
                else ((__half *)C)[ci] = __float2half_rn(r);
            }
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

extern "C" cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         const float *B, int ldb, const float *beta, float *C, int ldc) {
    return gemm(handle, transa, transb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, CUDA_R_32F,
                ldc, "cublasSgemm");
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                       int n, int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                       const void *B, cudaDataType_t Btype, int ldb, const void *beta, void *C,
                                       cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                                       cublasGemmAlgo_t algo) {
    (void)algo;
    /* with a 32-bit compute type alpha and beta are floats (host pointer mode, the default) */
    if (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_FAST_16F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm(handle, transa, transb, m, n, k, *(const float *)alpha, A, Atype, lda, B, Btype, ldb,
                *(const float *)beta, C, Ctype, ldc, "cublasGemmEx");
}
