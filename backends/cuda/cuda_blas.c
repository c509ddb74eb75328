/* The cuBLAS function table (see cuda_blas.h): dlopen of the cuBLAS of the toolkit the backend was built
 * with, once per process, or the emulator's functions in an SLM_CUDA_EMU build. */
#include "cuda_blas.h"

#ifdef SLM_CUDA_EMU

/* The emulator links functions with cuBLAS's own names and signatures: take their addresses. */
const slm_cuda_blas *slm_cuda_blas_get(const char **why) {
    static const slm_cuda_blas table = {
        .create = cublasCreate_v2,
        .destroy = cublasDestroy_v2,
        .set_stream = cublasSetStream_v2,
        .set_workspace = cublasSetWorkspace_v2,
        .sgemm = cublasSgemm_v2,
        .gemm_ex = cublasGemmEx,
    };
    if (why) *why = NULL;
    return &table;
}

#else

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The table's types are those of the header's declarations: a header of another cuBLAS whose prototypes
 * changed fails to compile here instead of calling through a wrong signature. typeof does not evaluate (or
 * link) the functions. */
#define SLM_BLAS_SAME_TYPE(field, fn)                                                                                  \
    _Static_assert(__builtin_types_compatible_p(__typeof__(((slm_cuda_blas *)0)->field), __typeof__(&fn)),             \
                   #fn " does not have the type of slm_cuda_blas." #field)
SLM_BLAS_SAME_TYPE(create, cublasCreate_v2);
SLM_BLAS_SAME_TYPE(destroy, cublasDestroy_v2);
SLM_BLAS_SAME_TYPE(set_stream, cublasSetStream_v2);
SLM_BLAS_SAME_TYPE(set_workspace, cublasSetWorkspace_v2);
SLM_BLAS_SAME_TYPE(sgemm, cublasSgemm_v2);
SLM_BLAS_SAME_TYPE(gemm_ex, cublasGemmEx);

#define SLM_STR2(x) #x
#define SLM_STR(x) SLM_STR2(x)
/* The soname of the cuBLAS whose header this file was compiled against: another major version may differ in
 * ABI and in the driver it needs. */
#define SLM_CUBLAS_SONAME "libcublas.so." SLM_STR(CUBLAS_VER_MAJOR)

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static slm_cuda_blas blas_table;
static const slm_cuda_blas *blas_loaded;
static char blas_why[768];

typedef cublasStatus_t (*get_property_fn)(libraryPropertyType, int *);

/* An unversioned libcublas.so (a development symlink) is taken only when it is the same major version. */
static bool same_major(void *lib) {
    get_property_fn get = (get_property_fn)dlsym(lib, "cublasGetProperty");
    int major = -1;
    return get && get(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS && major == CUBLAS_VER_MAJOR;
}

static void *open_cublas(char *first_error, size_t len) {
    /* Through the loader's search only (LD_LIBRARY_PATH, ld.so.cache, system directories), as a linked
     * library would be found: no path of the build machine is baked in. The versioned soname first, then an
     * unversioned development symlink when it is the same major version. */
    const char *candidates[2] = {SLM_CUBLAS_SONAME, "libcublas.so"};
    first_error[0] = 0;
    for (int i = 0; i < 2; i++) {
        void *lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = dlerror();
            if (!first_error[0]) snprintf(first_error, len, "%s", e ? e : candidates[i]);
            continue;
        }
        if (i == 1 && !same_major(lib)) {
            dlclose(lib);
            continue;
        }
        return lib;
    }
    return NULL;
}

static void load_cublas(void) {
    char first_error[512];
    void *lib = open_cublas(first_error, sizeof first_error);
    if (!lib) {
        /* dlerror already starts with the name it tried */
        snprintf(blas_why, sizeof blas_why,
                 "cannot load cuBLAS (%s): install the CUDA %d runtime libraries or use --device cpu", first_error,
                 CUBLAS_VER_MAJOR);
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&blas_table.create, "cublasCreate_v2"},
        {(void **)&blas_table.destroy, "cublasDestroy_v2"},
        {(void **)&blas_table.set_stream, "cublasSetStream_v2"},
        {(void **)&blas_table.sgemm, "cublasSgemm_v2"},
        {(void **)&blas_table.gemm_ex, "cublasGemmEx"},
        {(void **)&blas_table.set_workspace, "cublasSetWorkspace_v2"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        /* POSIX: a function pointer converts through void * (dlsym's own contract) */
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(blas_why, sizeof blas_why,
                     "cannot load cuBLAS (%s in the loaded library is missing): install the CUDA %d runtime "
                     "libraries or use --device cpu",
                     syms[i].name, CUBLAS_VER_MAJOR);
            dlclose(lib);
            memset(&blas_table, 0, sizeof blas_table);
            return;
        }
    }
    /* kept loaded for the life of the process: handles may outlive any one device */
    blas_loaded = &blas_table;
}

const slm_cuda_blas *slm_cuda_blas_get(const char **why) {
    pthread_once(&blas_once, load_cublas);
    if (why) *why = blas_loaded ? NULL : blas_why;
    return blas_loaded;
}

#endif
