/* The run-time cuBLAS table (backends/cuda/cuda_blas.c): loaded once whatever the number of threads asking,
 * every function present, and, when the library cannot be found, a NULL table with a message that names the
 * library and what to do instead of a crash.
 *
 * Normally the test expects the table (and skips, 77, where this machine's loader does not find cuBLAS);
 * with SLM_TEST_EXPECT_NO_CUBLAS=1 it expects the failure: tests/cuda_without_libraries.sh runs it that way
 * under a loader that cannot see the CUDA libraries. Needs no GPU. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#ifdef SLM_HAVE_CUDA
#include "cuda_blas.h"

enum { N_THREADS = 8 };

typedef struct answer {
    const slm_cuda_blas *table;
    const char *why;
} answer;

static void *ask(void *arg) {
    answer *a = arg;
    a->table = slm_cuda_blas_get(&a->why);
    return NULL;
}
#endif

int main(void) {
#ifndef SLM_HAVE_CUDA
    printf("test_cuda_blas: built without CUDA: skip\n");
    return SLM_TEST_SKIP;
#else
    /* the first calls race: pthread_once must give every thread the same answer */
    pthread_t th[N_THREADS];
    answer ans[N_THREADS];
    memset(ans, 0, sizeof ans);
    for (int i = 0; i < N_THREADS; i++) CHECK(pthread_create(&th[i], NULL, ask, &ans[i]) == 0, "pthread_create");
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < N_THREADS; i++)
        CHECK(ans[i].table == ans[0].table && ans[i].why == ans[0].why, "thread %d got another answer", i);
    const char *why = NULL;
    const slm_cuda_blas *b = slm_cuda_blas_get(&why);
    CHECK(b == ans[0].table, "a later call got another table");
    CHECK((b == NULL) == (why != NULL), "a table or a reason (%p, %s)", (const void *)b, why ? why : "none");

    const char *expect_missing = getenv("SLM_TEST_EXPECT_NO_CUBLAS");
    if (expect_missing && *expect_missing == '1') {
        if (b) {
            /* only the loader's own system folders are searched: cuBLAS was installed into one of them */
            printf("test_cuda_blas: cuBLAS is in a system folder of the loader, it cannot be hidden: skip\n");
            return slm_test_failures ? slm_test_finish("test_cuda_blas") : SLM_TEST_SKIP;
        }
        printf("test_cuda_blas: %s\n", why);
        CHECK(strstr(why, "libcublas.so.") != NULL, "the message names no library: %s", why);
        CHECK(strstr(why, "--device cpu") != NULL, "the message does not say what to do: %s", why);
        return slm_test_finish("test_cuda_blas");
    }
    if (!b) {
        printf("test_cuda_blas: cuBLAS not found by this machine's loader (%s): skip\n", why);
        return slm_test_failures ? slm_test_finish("test_cuda_blas") : SLM_TEST_SKIP;
    }
    CHECK(b->create && b->destroy && b->set_stream && b->sgemm && b->gemm_ex, "a function is missing");
    /* Without a GPU cublasCreate fails with a status; with one it succeeds. Either way it returns. */
    cublasHandle_t h = NULL;
    cublasStatus_t st = b->create(&h);
    printf("test_cuda_blas: loaded; cublasCreate_v2 returned %d\n", (int)st);
    if (st == CUBLAS_STATUS_SUCCESS) CHECK(b->destroy(h) == CUBLAS_STATUS_SUCCESS, "cublasDestroy_v2");
    return slm_test_finish("test_cuda_blas");
#endif
}
