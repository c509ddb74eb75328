/* cuBLAS through a table of function pointers, filled once per process when the first CUDA device opens.
 *
 * Why not link it: libcublas is a shared library of several hundred MiB that a CPU user of a CUDA build does
 * not have. Linked, the loader would refuse to start `slm` at all; loaded here, only opening a CUDA device
 * fails (with a message saying what to install) and everything else works.
 *
 * The backend includes <cublas_v2.h> for the types and constants only and calls cuBLAS through this table.
 * Built with SLM_CUDA_EMU, the table holds the addresses of the emulator's functions of the same names
 * (linked in), and nothing is loaded. */
#ifndef SLM_CUDA_BLAS_H
#define SLM_CUDA_BLAS_H

#include <cublas_v2.h>

typedef struct slm_cuda_blas {
    cublasStatus_t (*create)(cublasHandle_t *handle);                     /* cublasCreate_v2 */
    cublasStatus_t (*destroy)(cublasHandle_t handle);                     /* cublasDestroy_v2 */
    cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t st); /* cublasSetStream_v2 */
    /* cublasSetWorkspace_v2: GEMMs use this memory instead of a workspace cuBLAS would allocate itself */
    cublasStatus_t (*set_workspace)(cublasHandle_t handle, void *workspace, size_t bytes);
    cublasStatus_t (*sgemm)(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                            float *C, int ldc); /* cublasSgemm_v2 */
    cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                              cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                              cublasComputeType_t compute, cublasGemmAlgo_t algo); /* cublasGemmEx */
} slm_cuda_blas;

/* The table, loaded on the first call (thread-safe; later calls return the same answer). NULL when cuBLAS
 * cannot be loaded: *why then says which library was tried and what the loader answered, and what to
 * install, e.g. "cannot load cuBLAS (libcublas.so.13: cannot open shared object file: ...): install the CUDA
 * 13 runtime libraries or use --device cpu". The callers prefix the device's name. */
const slm_cuda_blas *slm_cuda_blas_get(const char **why);

#endif
