/* The CUDA emulator itself (SLM_CUDA_EMU builds only): a divergent barrier or shuffle fails the launch with
 * the kernel's name instead of hanging, a missing barrier changes the result under the fiber schedules,
 * warp shuffles and votes follow their documented lane rules, f16 conversion rounds like the hardware,
 * launch configurations are checked, graph capture records and replays (and refuses a synchronisation),
 * the allocation budget refuses, and the reference GEMM honours transposes and leading dimensions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_common.cuh" /* SLM_LAUNCH */

static int failures;
#define EXPECT(cond, ...)                                                                                              \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            printf("%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                                            \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

__global__ void early_exit_before_barrier(int *out) {
    if (threadIdx.x < 16) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void half_warp_shuffle(int *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void two_barriers(int *out) {
    if (threadIdx.x & 1) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1;
}

/* Reads a neighbour's shared slot, with or without the barrier between the write and the read. */
template <bool BARRIER> __global__ void neighbour(int *out, int salt) {
    __shared__ int s[64];
    s[threadIdx.x] = (int)threadIdx.x + salt;
    if (BARRIER) __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

__global__ void shuffles(int *out) {
    const int lane = (int)threadIdx.x;
    out[0 * 32 + lane] = __shfl_sync(0xffffffffu, lane * 10, 3, 8);     /* lane 3 of each group of 8 */
    out[1 * 32 + lane] = __shfl_up_sync(0xffffffffu, lane * 10, 2, 16); /* own value below 2 in each 16 */
    out[2 * 32 + lane] = __shfl_down_sync(0xffffffffu, lane * 10, 4);   /* own value from lane 28 on */
    out[3 * 32 + lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
    out[4 * 32 + lane] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    out[5 * 32 + lane] = __any_sync(0xffffffffu, lane == 31);
    out[6 * 32 + lane] = __all_sync(0xffffffffu, lane < 31);
    if (lane < 16) out[7 * 32 + lane] = (int)__ballot_sync(0x0000ffffu, lane & 1); /* a partial mask */
}

__global__ void count(int *c) {
    if (threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(c, 1);
}

static bool failed_naming(const char *kernel) {
    cudaError_t e = cudaDeviceSynchronize();
    const char *msg = cudaGetErrorString(e);
    bool ok = e == cudaErrorLaunchFailure && strstr(msg, kernel) != NULL;
    if (!ok) printf("  expected a launch failure naming %s, got %s: %s\n", kernel, cudaGetErrorName(e), msg);
    cudaDeviceReset();
    return ok;
}

static void test_divergence(int *d) {
    SLM_LAUNCH(early_exit_before_barrier, 1, 64, 0, 0)(d);
    EXPECT(failed_naming("early_exit_before_barrier"), "exited threads before a barrier");
    SLM_LAUNCH(half_warp_shuffle, 1, 32, 0, 0)(d);
    EXPECT(failed_naming("half_warp_shuffle"), "a full-mask shuffle with half the warp gone");
    SLM_LAUNCH(two_barriers, 1, 64, 0, 0)(d);
    EXPECT(failed_naming("two_barriers"), "threads at two different barriers");
}

static void test_schedules(int *d) {
    static const char *const names[] = {"inorder", "reverse", "random"};
    int h[64];
    for (int s = 0; s < 3; s++) {
        setenv("SLM_CUDA_EMU_SCHEDULE", names[s], 1);
        SLM_LAUNCH(neighbour<true>, 1, 64, 0, 0)(d, 100 * (s + 1));
        cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
        bool right = true;
        for (int i = 0; i < 64; i++) right = right && h[i] == (i + 1) % 64 + 100 * (s + 1);
        EXPECT(right, "with the barrier, schedule %s", names[s]);
        if (s == 2) continue; /* random may happen to run an order that works */
        SLM_LAUNCH(neighbour<false>, 1, 64, 0, 0)(d, 1000 * (s + 1));
        cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
        right = true;
        for (int i = 0; i < 64; i++) right = right && h[i] == (i + 1) % 64 + 1000 * (s + 1);
        EXPECT(!right, "without the barrier, schedule %s must show stale shared memory", names[s]);
    }
    unsetenv("SLM_CUDA_EMU_SCHEDULE");
}

static void test_shuffles(int *d) {
    int h[8 * 32];
    SLM_LAUNCH(shuffles, 1, 32, 0, 0)(d);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
    unsigned ballot = 0, half_ballot = 0;
    for (int l = 0; l < 32; l++) ballot |= (l % 3 == 0 ? 1u : 0u) << l;
    for (int l = 0; l < 16; l++) half_ballot |= (unsigned)(l & 1) << l;
    for (int l = 0; l < 32; l++) {
        EXPECT(h[l] == ((l & ~7) + 3) * 10, "shfl width 8 lane %d: %d", l, h[l]);
        EXPECT(h[32 + l] == ((l % 16) < 2 ? l : l - 2) * 10, "shfl_up lane %d: %d", l, h[32 + l]);
        EXPECT(h[64 + l] == (l + 4 >= 32 ? l : l + 4) * 10, "shfl_down lane %d: %d", l, h[64 + l]);
        EXPECT(h[96 + l] == (l ^ 5) * 10, "shfl_xor lane %d: %d", l, h[96 + l]);
        EXPECT((unsigned)h[128 + l] == ballot, "ballot lane %d", l);
        EXPECT(h[160 + l] == 1 && h[192 + l] == 0, "any/all lane %d", l);
        if (l < 16) EXPECT((unsigned)h[224 + l] == half_ballot, "partial-mask ballot lane %d", l);
    }
}

static void test_half() {
    struct {
        float f;
        unsigned short h;
    } cases[] = {{1.0f, 0x3c00},          {-2.0f, 0xc000},        {65504.0f, 0x7bff},      {65519.0f, 0x7bff},
                 {65520.0f, 0x7c00},      {1e9f, 0x7c00},         {-0.0f, 0x8000},         {5.9604645e-8f, 0x0001},
                 {2.9802322e-8f, 0x0000}, {8.940697e-8f, 0x0002}, {6.1035156e-5f, 0x0400}, {1.00048828125f, 0x3c00},
                 {1.00146484375f, 0x3c02}};
    for (auto &c : cases) {
        unsigned short got = __half_as_ushort(__float2half_rn(c.f));
        EXPECT(got == c.h, "f16(%g) = 0x%04x, want 0x%04x", c.f, got, c.h);
    }
    EXPECT(__hisnan(__float2half_rn(NAN)), "NaN stays NaN");
    /* every finite half survives float and back */
    int bad = 0;
    for (unsigned u = 0; u < 0x10000u; u++) {
        __half h = __ushort_as_half((unsigned short)u);
        if (__hisnan(h)) continue;
        if (__half_as_ushort(__float2half_rn(__half2float(h))) != u) bad++;
    }
    EXPECT(bad == 0, "%d halves do not round-trip", bad);
}

static void test_config_and_graphs(int *d) {
    SLM_LAUNCH(count, 1, 2048, 0, 0)(d);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block");
    EXPECT(cudaGetLastError() == cudaSuccess, "a configuration error is not sticky");
    SLM_LAUNCH(count, dim3(1, 70000), 32, 0, 0)(d);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y above 65535");

    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMemsetAsync(d, 0, sizeof(int), s);
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    SLM_LAUNCH(count, 4, 32, 0, s)(d);
    int h = -1;
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost); /* refused during capture; nothing ran */
    cudaGetLastError();
    cudaGraph_t g;
    EXPECT(cudaStreamEndCapture(s, &g) == cudaSuccess && g, "end capture");
    cudaGraphExec_t x;
    EXPECT(cudaGraphInstantiate(&x, g, 0) == cudaSuccess, "instantiate");
    for (int i = 0; i < 3; i++) cudaGraphLaunch(x, s);
    cudaStreamSynchronize(s);
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
    EXPECT(h == 3, "a captured launch runs once per graph launch, not at capture: %d", h);
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);

    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    EXPECT(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "sync inside a capture");
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g, "the capture is invalidated");
    cudaGetLastError();
    cudaStreamDestroy(s);
}

static void test_memory() {
    size_t free0, total;
    cudaMemGetInfo(&free0, &total);
    void *p = NULL;
    setenv("SLM_CUDA_EMU_FAIL_AFTER", "1M", 1);
    EXPECT(cudaMalloc(&p, (size_t)2 << 20) == cudaErrorMemoryAllocation && !p, "refused above the limit");
    cudaGetLastError();
    unsetenv("SLM_CUDA_EMU_FAIL_AFTER");
    EXPECT(cudaMalloc(&p, (size_t)2 << 20) == cudaSuccess && p, "allowed again");
    size_t free1;
    cudaMemGetInfo(&free1, &total);
    EXPECT(free0 - free1 == (size_t)2 << 20, "free memory drops by the allocation");
    EXPECT(cudaMemsetAsync((char *)p + 1, 0, (size_t)2 << 20, 0) == cudaErrorInvalidValue, "memset past the end");
    cudaGetLastError();
    cudaFree(p);
}

static void test_gemm() {
    const int m = 5, n = 3, k = 7, lda = 9, ldb = 8, ldc = 6; /* A stored k x m (transposed), B k x n */
    float ha[lda * m], hb[ldb * n], hc[ldc * n];
    for (int i = 0; i < lda * m; i++) ha[i] = (float)((i * 7) % 11) - 5;
    for (int i = 0; i < ldb * n; i++) hb[i] = (float)((i * 5) % 13) - 6;
    for (int i = 0; i < ldc * n; i++) hc[i] = NAN; /* beta = 0: C is not read */
    float *da, *db, *dc;
    cudaMalloc((void **)&da, sizeof ha);
    cudaMalloc((void **)&db, sizeof hb);
    cudaMalloc((void **)&dc, sizeof hc);
    cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
    cudaMemcpy(dc, hc, sizeof hc, cudaMemcpyHostToDevice);
    cublasHandle_t h;
    EXPECT(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "create");
    const float one = 1, zero = 0;
    EXPECT(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, da, lda, db, ldb, &zero, dc, ldc) ==
               CUBLAS_STATUS_SUCCESS,
           "sgemm");
    EXPECT(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, da, k - 1, db, ldb, &zero, dc, ldc) ==
               CUBLAS_STATUS_INVALID_VALUE,
           "lda below k for a transposed A");
    cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float want = 0;
            for (int l = 0; l < k; l++) want += ha[l + i * lda] * hb[l + j * ldb];
            EXPECT(hc[i + j * ldc] == want, "C[%d,%d] = %g, want %g", i, j, hc[i + j * ldc], want);
        }
    cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

int main(void) {
    int *d = NULL;
    if (cudaMalloc((void **)&d, 8 * 32 * sizeof(int)) != cudaSuccess) {
        printf("test_cuda_emu: no emulated device\n");
        return 1;
    }
    test_divergence(d);
    test_schedules(d);
    test_shuffles(d);
    test_half();
    test_config_and_graphs(d);
    test_memory();
    test_gemm();
    cudaFree(d);
    printf("test_cuda_emu: %s (%d failure(s))\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
