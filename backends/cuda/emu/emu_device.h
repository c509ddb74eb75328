/* The device side of the CUDA language for the kernels of kernels/cuda (.cu files) compiled as C++ by the host
 * (SLM_CUDA_EMU): qualifiers, built-in indices, vector types, barriers, warp shuffles and votes, atomics,
 * __dp4a, the math intrinsics the kernels use, and the launcher behind SLM_LAUNCH.
 *
 * Execution model (emu_exec.cpp): the blocks of a grid run one after another on the launching OS thread;
 * the threads of a block are fibers on that thread, switched only at __syncthreads, __syncwarp, shuffles
 * and votes. So a block's threads never run at the same time, and:
 * - threadIdx names the running fiber's index (switched with the fiber);
 * - `__shared__` is `static thread_local`: one copy per OS thread, and as a thread runs one block at a time
 *   that copy is the block's shared memory (CUDA leaves its initial contents undefined; the kernels must
 *   not read before writing, and the fiber schedules make a missing barrier show);
 * - a barrier or warp collective that cannot complete (threads exited, or waiting elsewhere) fails the
 *   launch with a message naming the kernel and the threads, instead of hanging. */
#ifndef SLM_EMU_DEVICE_H
#define SLM_EMU_DEVICE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

/* ---- qualifiers ---------------------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__

/* ---- vector types --------------------------------------------------------------------------------------- */
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct uint4 {
    unsigned int x, y, z, w;
};
struct int4 {
    int x, y, z, w;
};
struct float4 {
    float x, y, z, w;
};
struct float2 {
    float x, y;
};

namespace slm_emu {

/* One fiber: a CUDA thread of the running block. */
struct fiber;

/* What the running OS thread executes now: the block's indices and the current fiber. */
struct exec_state {
    uint3 block_idx;
    dim3 grid_dim, block_dim;
    fiber *cur;
    uint3 cur_tid;
    void *dyn_shared;
};
extern thread_local exec_state g_exec;

/* Block barrier (line: the call site, for the divergence message). */
void syncthreads(int line);

/* Warp collectives: every lane in mask (including the caller) must arrive with the same kind and mask;
 * the caller's fiber yields until they have. The return is the lane's result (a value or a vote). */
enum coll_kind { COLL_SHFL, COLL_SHFL_UP, COLL_SHFL_DOWN, COLL_SHFL_XOR, COLL_BALLOT, COLL_ANY, COLL_ALL, COLL_SYNC };
uint64_t warp_collective(coll_kind kind, unsigned mask, uint64_t value, int arg, int width, int line);

/* The launch: validated, then run now or recorded into the graph its stream is capturing. */
struct launch_info {
    const char *name; /* the kernel expression at the launch site */
    const char *file;
    int line;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
};
void submit(const launch_info &info, std::function<void()> body);

template <class... P> struct launcher {
    launch_info info;
    void (*kernel)(P...);
    /* Arguments are converted to the parameter types and copied, as a real launch copies them. */
    template <class... A> void operator()(A &&...args) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
        void (*k)(P...) = kernel;
        submit(info, [k, params]() { std::apply(k, params); });
    }
};

template <class... P>
launcher<P...> make_launcher(const char *name, const char *file, int line, void (*kernel)(P...), dim3 grid, dim3 block,
                             size_t shmem, cudaStream_t stream) {
    return launcher<P...>{launch_info{name, file, line, grid, block, shmem, stream}, kernel};
}

/* A global load of a kernel, for the per-kernel accounting (SLM_CUDA_EMU_MEMSTATS=1, emu_memstats.cpp);
 * host callers of the same helpers (no fiber running) are not counted. */
extern bool g_memstats;
void note_load_slow(const void *p, unsigned bytes);
inline void note_load(const void *p, unsigned bytes) {
    if (g_memstats && g_exec.cur) note_load_slow(p, bytes);
}

template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles of more than 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}

} // namespace slm_emu

/* ---- built-in variables ------------------------------------------------------------------------------------ */
#define threadIdx (::slm_emu::g_exec.cur_tid)
#define blockIdx (::slm_emu::g_exec.block_idx)
#define blockDim (::slm_emu::g_exec.block_dim)
#define gridDim (::slm_emu::g_exec.grid_dim)
static constexpr int warpSize = 32;

/* ---- barriers, shuffles, votes ------------------------------------------------------------------------------ */
#define __syncthreads() ::slm_emu::syncthreads(__LINE__)
#define __syncwarp(...)                                                                                                \
    ((void)::slm_emu::warp_collective(::slm_emu::COLL_SYNC, (__VA_ARGS__ + 0u) ? (__VA_ARGS__ + 0u) : 0xffffffffu, 0,  \
                                      0, 32, __LINE__))
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

template <class T> inline T slm_emu_shfl(::slm_emu::coll_kind kind, unsigned mask, T v, int arg, int width, int line) {
    return ::slm_emu::from_bits<T>(::slm_emu::warp_collective(kind, mask, ::slm_emu::to_bits(v), arg, width, line));
}
#define __shfl_sync(mask, v, src, ...)                                                                                 \
    slm_emu_shfl(::slm_emu::COLL_SHFL, mask, v, src, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32, __LINE__)
#define __shfl_up_sync(mask, v, d, ...)                                                                                \
    slm_emu_shfl(::slm_emu::COLL_SHFL_UP, mask, v, d, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32, __LINE__)
#define __shfl_down_sync(mask, v, d, ...)                                                                              \
    slm_emu_shfl(::slm_emu::COLL_SHFL_DOWN, mask, v, d, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32, __LINE__)
#define __shfl_xor_sync(mask, v, m, ...)                                                                               \
    slm_emu_shfl(::slm_emu::COLL_SHFL_XOR, mask, v, m, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32, __LINE__)
#define __ballot_sync(mask, pred)                                                                                      \
    ((unsigned)::slm_emu::warp_collective(::slm_emu::COLL_BALLOT, mask, (pred) ? 1 : 0, 0, 32, __LINE__))
#define __any_sync(mask, pred)                                                                                         \
    ((int)::slm_emu::warp_collective(::slm_emu::COLL_ANY, mask, (pred) ? 1 : 0, 0, 32, __LINE__))
#define __all_sync(mask, pred)                                                                                         \
    ((int)::slm_emu::warp_collective(::slm_emu::COLL_ALL, mask, (pred) ? 1 : 0, 0, 32, __LINE__))

/* ---- atomics: fibers of a block never run at once, but two host threads may run kernels, so these are
 * real atomic read-modify-writes on host memory ------------------------------------------------------------ */
inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float *p, float v) {
    uint32_t old = __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED), want;
    do {
        float f;
        memcpy(&f, &old, 4);
        f += v;
        memcpy(&want, &f, 4);
    } while (!__atomic_compare_exchange_n((uint32_t *)p, &old, want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    float r;
    memcpy(&r, &old, 4);
    return r;
}
inline int atomicSub(int *p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned *p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned *p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
template <class T> inline T slm_emu_atomic_cas(T *p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp; /* the old value either way */
}
inline int atomicCAS(int *p, int cmp, int v) { return slm_emu_atomic_cas(p, cmp, v); }
inline unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v) { return slm_emu_atomic_cas(p, cmp, v); }
inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp, unsigned long long v) {
    return slm_emu_atomic_cas(p, cmp, v);
}
template <class T> inline T slm_emu_atomic_max(T *p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
template <class T> inline T slm_emu_atomic_min(T *p, T v) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline int atomicMax(int *p, int v) { return slm_emu_atomic_max(p, v); }
inline unsigned atomicMax(unsigned *p, unsigned v) { return slm_emu_atomic_max(p, v); }
inline int atomicMin(int *p, int v) { return slm_emu_atomic_min(p, v); }
inline unsigned atomicMin(unsigned *p, unsigned v) { return slm_emu_atomic_min(p, v); }

/* ---- integer and float intrinsics ------------------------------------------------------------------------ */
/* Four signed (or unsigned) byte products summed into c. */
inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; k++) c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int k = 0; k < 4; k++) c += ((a >> (8 * k)) & 0xffu) * ((b >> (8 * k)) & 0xffu);
    return c;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __float_as_int(float f) { return slm_emu::from_bits<int>(slm_emu::to_bits(f)); }
inline float __int_as_float(int i) { return slm_emu::from_bits<float>(slm_emu::to_bits(i)); }
inline unsigned __float_as_uint(float f) { return slm_emu::from_bits<unsigned>(slm_emu::to_bits(f)); }
inline float __uint_as_float(unsigned u) { return slm_emu::from_bits<float>(slm_emu::to_bits(u)); }

/* Dynamic shared memory of the running block (the launch's shmem bytes): `extern __shared__` cannot be
 * expressed in C++, so kernels declare it with SLM_EXTERN_SHARED (cuda_common.cuh). */
#define SLM_EMU_DYNAMIC_SHARED() (::slm_emu::g_exec.dyn_shared)

#endif
