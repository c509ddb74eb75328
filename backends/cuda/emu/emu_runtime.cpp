/* The CUDA runtime subset slm uses, on the host: devices of a configurable card, device memory (host memory
 * behind, with a budget and injectable allocation failure), pinned host memory, copies, streams and events
 * (work runs synchronously, in issue order, which is one legal order of a single stream), stream capture
 * into graphs and their replay, and the error state (per-thread last error, sticky device faults).
 *
 * Environment (read once):
 *   SLM_CUDA_EMU_DEVICES   number of devices (default 1; 0 = a machine without a GPU)
 *   SLM_CUDA_EMU_MEM       memory of each device (default 12G)
 *   SLM_CUDA_EMU_FAIL_AFTER  refuse any cudaMalloc that would take a device's live allocations above this
 *                          many bytes (read at every call), while cudaMemGetInfo still reports SLM_CUDA_EMU_MEM (a driver that
 *                          says yes and then refuses: what the placement's re-plan is for)
 *   SLM_CUDA_EMU_SM        compute capability (default 89), SLM_CUDA_EMU_SMS multiprocessors (default 4)
 *   SLM_CUDA_EMU_POISON=0  leave new device memory zeroed (default: 0xff bytes, NaN as f32 and f16, so a
 *                          kernel that reads memory nobody wrote shows it) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu_internal.h"

struct slm_emu_node {
    bool is_kernel;
    slm_emu::launch_info info; /* kernels: names and files are string literals of the launch sites */
    std::function<void()> fn;
};

struct slm_emu_graph {
    std::vector<slm_emu_node> nodes;
};
struct slm_emu_graph_exec {
    std::vector<slm_emu_node> nodes;
};

struct slm_emu_stream {
    int device;
    bool capturing, invalidated;
    slm_emu_graph *graph;
};

struct slm_emu_event {
    bool timing, recorded;
    double ms; /* host clock at the (synchronous) record */
};

namespace slm_emu {

size_t env_bytes(const char *name, size_t def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K': mul = 1024.0, end++; break;
    case 'm':
    case 'M': mul = 1024.0 * 1024, end++; break;
    case 'g':
    case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 't':
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == s || *end || !(v >= 0) || v * mul > 1.8e19) {
        fprintf(stderr, "slm cuda emulator: %s=%s is not a byte size (e.g. 12G, 512M)\n", name, s);
        abort();
    }
    return (size_t)(v * mul);
}

long env_long(const char *name, long def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s) {
        fprintf(stderr, "slm cuda emulator: %s=%s is not an integer\n", name, s);
        abort();
    }
    return v;
}

struct device {
    size_t total, fail_after, used;
    int sm, sms;
};

struct alloc_info {
    size_t size;
    int device; /* -1: pinned host memory */
};

/* Everything shared between host threads sits behind one lock (kernels run outside it). */
static std::mutex g_lock;
static std::vector<device> g_devices;
static bool g_poison = true;
static std::map<uintptr_t, alloc_info> g_allocs;
static cudaError_t g_sticky = cudaSuccess;
static std::string g_sticky_msg;
static thread_local cudaError_t t_last = cudaSuccess;
static thread_local int t_device = 0;
static thread_local int t_capturing = 0; /* streams this thread is capturing */

static void init_locked() {
    static bool done;
    if (done) return;
    done = true;
    long n = env_long("SLM_CUDA_EMU_DEVICES", 1);
    if (n < 0 || n > 16) {
        fprintf(stderr, "slm cuda emulator: SLM_CUDA_EMU_DEVICES=%ld outside 0..16\n", n);
        abort();
    }
    device d;
    d.total = env_bytes("SLM_CUDA_EMU_MEM", (size_t)12 << 30);
    d.fail_after = env_bytes("SLM_CUDA_EMU_FAIL_AFTER", (size_t)-1);
    d.used = 0;
    d.sm = (int)env_long("SLM_CUDA_EMU_SM", 89);
    d.sms = (int)env_long("SLM_CUDA_EMU_SMS", 4);
    if (d.sms < 1) d.sms = 1;
    g_poison = env_long("SLM_CUDA_EMU_POISON", 1) != 0;
    g_devices.assign((size_t)n, d);
}

static int n_devices() {
    std::lock_guard<std::mutex> l(g_lock);
    init_locked();
    return (int)g_devices.size();
}

static cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess) t_last = e;
    return e;
}

static cudaError_t sticky() {
    std::lock_guard<std::mutex> l(g_lock);
    return g_sticky;
}

void set_kernel_failure(const std::string &msg) {
    fprintf(stderr, "slm cuda emulator: %s\n", msg.c_str());
    std::lock_guard<std::mutex> l(g_lock);
    if (g_sticky == cudaSuccess) {
        g_sticky = cudaErrorLaunchFailure;
        g_sticky_msg = "unspecified launch failure: " + msg;
    }
}

static const alloc_info *find_locked(const void *p, uintptr_t *base) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    if (a - it->first >= it->second.size && !(a == it->first)) return nullptr;
    *base = it->first;
    return &it->second;
}

bool device_range(const void *p, size_t n) {
    std::lock_guard<std::mutex> l(g_lock);
    uintptr_t base;
    const alloc_info *ai = find_locked(p, &base);
    return ai && ai->device >= 0 && (uintptr_t)p - base <= ai->size && n <= ai->size - ((uintptr_t)p - base);
}

static bool host_or_pinned(const void *p) {
    std::lock_guard<std::mutex> l(g_lock);
    uintptr_t base;
    const alloc_info *ai = find_locked(p, &base);
    return !ai || ai->device < 0;
}

static double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void execute(const slm_emu_node &n) {
    if (sticky() != cudaSuccess) return; /* a faulted device runs nothing more */
    if (!n.is_kernel) {
        n.fn();
        return;
    }
    std::string msg;
    if (!run_kernel(n.info, n.fn, &msg)) set_kernel_failure(msg);
}

static cudaError_t check_stream(cudaStream_t s) {
    if (s && s->device != t_device) return cudaErrorInvalidResourceHandle; /* a stream of another device */
    return sticky();
}

static cudaError_t enqueue(cudaStream_t s, slm_emu_node n) {
    cudaError_t e = check_stream(s);
    if (e != cudaSuccess) return e;
    if (s && s->capturing) {
        s->graph->nodes.push_back(std::move(n));
        return cudaSuccess;
    }
    execute(n);
    return sticky();
}

cudaError_t enqueue_host_work(cudaStream_t s, const char *name, std::function<void()> fn) {
    launch_info info{};
    info.name = name;
    slm_emu_node n{false, info, std::move(fn)};
    return fail(enqueue(s, std::move(n)));
}

/* An operation a capture does not allow (a synchronisation, an allocation): the capture is invalidated
 * and the call fails, as with the real runtime in global and thread-local capture modes. */
static cudaError_t refuse_in_capture(cudaStream_t s, const char *what) {
    if (t_capturing == 0 && !(s && s->capturing)) return cudaSuccess;
    fprintf(stderr, "slm cuda emulator: %s during stream capture\n", what);
    return cudaErrorStreamCaptureUnsupported;
}

void submit(const launch_info &info, std::function<void()> body) {
    const dim3 g = info.grid, b = info.block;
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (threads < 1 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x < 1 || g.x > 0x7fffffffu ||
        g.y < 1 || g.y > 65535 || g.z < 1 || g.z > 65535 || info.shmem > 48 * 1024) {
        fprintf(stderr,
                "slm cuda emulator: kernel %s (%s:%d): invalid configuration grid (%u,%u,%u) block (%u,%u,%u) "
                "shared %zu\n",
                info.name, info.file, info.line, g.x, g.y, g.z, b.x, b.y, b.z, info.shmem);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    slm_emu_node n{true, info, std::move(body)};
    cudaError_t e = check_stream(info.stream);
    if (e != cudaSuccess) {
        fail(e);
        return;
    }
    if (info.stream && info.stream->capturing) {
        info.stream->graph->nodes.push_back(std::move(n));
        return;
    }
    execute(n);
    fail(sticky());
}

} // namespace slm_emu

using namespace slm_emu;

/* ---- errors --------------------------------------------------------------------------------------------- */

extern "C" const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    }
    return "cudaErrorUnknown";
}

extern "C" const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: {
        /* the emulator knows which kernel failed and why: say it (the message is set once, then fixed) */
        std::lock_guard<std::mutex> l(g_lock);
        return g_sticky == cudaErrorLaunchFailure ? g_sticky_msg.c_str() : "unspecified launch failure";
    }
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture from another thread";
    }
    return "unknown error";
}

extern "C" cudaError_t cudaGetLastError(void) {
    cudaError_t s = sticky();
    if (s != cudaSuccess) return s;
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

extern "C" cudaError_t cudaPeekAtLastError(void) {
    cudaError_t s = sticky();
    return s != cudaSuccess ? s : t_last;
}

/* ---- devices --------------------------------------------------------------------------------------------- */

extern "C" cudaError_t cudaGetDeviceCount(int *n) {
    *n = n_devices();
    return *n > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

extern "C" cudaError_t cudaGetDevice(int *dev) {
    *dev = t_device;
    return cudaSuccess;
}

extern "C" cudaError_t cudaSetDevice(int dev) {
    if (dev < 0 || dev >= n_devices()) return fail(cudaErrorInvalidDevice);
    t_device = dev;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int dev) {
    if (dev < 0 || dev >= n_devices()) return fail(cudaErrorInvalidDevice);
    std::lock_guard<std::mutex> l(g_lock);
    const device &d = g_devices[(size_t)dev];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "slm emulated GPU sm_%d", d.sm);
    p->totalGlobalMem = d.total;
    p->sharedMemPerBlock = 48 * 1024;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = d.sm / 10;
    p->minor = d.sm % 10;
    p->multiProcessorCount = d.sms;
    p->memoryBusWidth = 192;
    p->l2CacheSize = (size_t)32 << 20;
    return cudaSuccess;
}

extern "C" cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int dev) {
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) return e;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    default: return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaDeviceSynchronize(void) {
    cudaError_t e = refuse_in_capture(nullptr, "cudaDeviceSynchronize");
    return fail(e != cudaSuccess ? e : sticky());
}

extern "C" cudaError_t cudaDeviceReset(void) {
    std::lock_guard<std::mutex> l(g_lock);
    g_sticky = cudaSuccess;
    g_sticky_msg.clear();
    t_last = cudaSuccess;
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (t_device >= n_devices()) return fail(cudaErrorInvalidDevice);
    std::lock_guard<std::mutex> l(g_lock);
    const device &d = g_devices[(size_t)t_device];
    *total_bytes = d.total;
    *free_bytes = d.total - d.used;
    return g_sticky;
}

/* ---- memory ------------------------------------------------------------------------------------------------ */

extern "C" cudaError_t cudaMalloc(void **p, size_t size) {
    *p = nullptr;
    cudaError_t e = refuse_in_capture(nullptr, "cudaMalloc");
    if (e != cudaSuccess || (e = sticky()) != cudaSuccess) return fail(e);
    if (t_device >= n_devices()) return fail(cudaErrorInvalidDevice);
    if (size == 0) return cudaSuccess;
    {
        std::lock_guard<std::mutex> l(g_lock);
        device &d = g_devices[(size_t)t_device];
        /* read at every call so a test can set it between loads */
        d.fail_after = env_bytes("SLM_CUDA_EMU_FAIL_AFTER", (size_t)-1);
        if (size > d.total - d.used || size > d.fail_after - (d.used < d.fail_after ? d.used : d.fail_after) ||
            d.used >= d.fail_after)
            return fail(cudaErrorMemoryAllocation);
        d.used += size;
    }
    void *m = nullptr;
    if (posix_memalign(&m, 256, size)) {
        std::lock_guard<std::mutex> l(g_lock);
        g_devices[(size_t)t_device].used -= size;
        return fail(cudaErrorMemoryAllocation);
    }
    memset(m, g_poison ? 0xff : 0, size);
    std::lock_guard<std::mutex> l(g_lock);
    g_allocs[(uintptr_t)m] = alloc_info{size, t_device};
    *p = m;
    return cudaSuccess;
}

static cudaError_t free_any(void *p, bool device_memory) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_lock);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || (it->second.device >= 0) != device_memory) {
        fprintf(stderr, "slm cuda emulator: %s of %p, which is not a live %s allocation\n",
                device_memory ? "cudaFree" : "cudaFreeHost", p, device_memory ? "device" : "pinned");
        t_last = cudaErrorInvalidValue;
        return cudaErrorInvalidValue;
    }
    if (device_memory) g_devices[(size_t)it->second.device].used -= it->second.size;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}

extern "C" cudaError_t cudaFree(void *p) {
    cudaError_t e = refuse_in_capture(nullptr, "cudaFree");
    if (e != cudaSuccess) return fail(e);
    return free_any(p, true);
}

extern "C" cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags) {
    (void)flags;
    *p = nullptr;
    void *m = nullptr;
    if (posix_memalign(&m, 4096, size ? size : 1)) return fail(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> l(g_lock);
    g_allocs[(uintptr_t)m] = alloc_info{size ? size : 1, -1};
    *p = m;
    return cudaSuccess;
}

extern "C" cudaError_t cudaMallocHost(void **p, size_t size) { return cudaHostAlloc(p, size, 0); }

extern "C" cudaError_t cudaFreeHost(void *p) { return free_any(p, false); }

/* The copy's ends must be where its kind says: device ends inside one live allocation, host ends outside
 * device memory. This catches out-of-bounds and wrong-direction copies a GPU would fault on (or worse). */
static cudaError_t check_copy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) return cudaSuccess;
    if ((dst_dev && !device_range(dst, n)) || (!dst_dev && !host_or_pinned(dst)) ||
        (src_dev && !device_range(src, n)) || (!src_dev && !host_or_pinned(src))) {
        fprintf(stderr, "slm cuda emulator: cudaMemcpy of %zu bytes %p -> %p (kind %d) outside device memory\n", n, src,
                dst, (int)kind);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess) return fail(e);
    slm_emu_node node{false, launch_info{}, [dst, src, n]() { memcpy(dst, src, n); }};
    return fail(enqueue(s, std::move(node)));
}

extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    cudaError_t e = refuse_in_capture(nullptr, "cudaMemcpy");
    if (e != cudaSuccess) return fail(e);
    return cudaMemcpyAsync(dst, src, n, kind, nullptr);
}

extern "C" cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    if (!device_range(p, n)) {
        fprintf(stderr, "slm cuda emulator: cudaMemset of %zu bytes at %p outside device memory\n", n, p);
        return fail(cudaErrorInvalidValue);
    }
    slm_emu_node node{false, launch_info{}, [p, value, n]() { memset(p, value, n); }};
    return fail(enqueue(s, std::move(node)));
}

extern "C" cudaError_t cudaMemset(void *p, int value, size_t n) {
    cudaError_t e = refuse_in_capture(nullptr, "cudaMemset");
    if (e != cudaSuccess) return fail(e);
    return cudaMemsetAsync(p, value, n, nullptr);
}

/* ---- streams and capture ---------------------------------------------------------------------------------------- */

extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    (void)flags;
    *s = new slm_emu_stream{t_device, false, false, nullptr};
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

extern "C" cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return fail(cudaErrorInvalidResourceHandle);
    if (s->capturing) {
        t_capturing--;
        delete s->graph;
    }
    delete s;
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s && s->capturing) {
        s->invalidated = true;
        return fail(refuse_in_capture(s, "cudaStreamSynchronize"));
    }
    return fail(check_stream(s));
}

extern "C" cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
    (void)mode;
    if (!s || s->capturing) return fail(!s ? cudaErrorStreamCaptureUnsupported : cudaErrorInvalidValue);
    cudaError_t e = check_stream(s);
    if (e != cudaSuccess) return fail(e);
    s->capturing = true;
    s->invalidated = false;
    s->graph = new slm_emu_graph();
    t_capturing++;
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    *graph = nullptr;
    if (!s || !s->capturing) return fail(cudaErrorInvalidValue);
    s->capturing = false;
    t_capturing--;
    slm_emu_graph *g = s->graph;
    s->graph = nullptr;
    if (s->invalidated) {
        delete g;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *graph = g;
    return cudaSuccess;
}

/* ---- events ---------------------------------------------------------------------------------------------------------- */

extern "C" cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    *e = new slm_emu_event{!(flags & cudaEventDisableTiming), false, 0};
    return cudaSuccess;
}

extern "C" cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

extern "C" cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    delete e;
    return cudaSuccess;
}

extern "C" cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
    if (!ev) return fail(cudaErrorInvalidResourceHandle);
    slm_emu_node node{false, launch_info{}, [ev]() {
                          ev->recorded = true;
                          ev->ms = now_ms();
                      }};
    return fail(enqueue(s, std::move(node)));
}

extern "C" cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    cudaError_t r = refuse_in_capture(nullptr, "cudaEventSynchronize");
    return fail(r != cudaSuccess ? r : sticky());
}

extern "C" cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start || !end || !start->timing || !end->timing) return fail(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return fail(cudaErrorNotReady);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

/* ---- graphs ------------------------------------------------------------------------------------------------------------- */

extern "C" cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    (void)flags;
    *exec = nullptr;
    if (!graph) return fail(cudaErrorInvalidValue);
    slm_emu_graph_exec *x = new slm_emu_graph_exec();
    x->nodes = graph->nodes;
    *exec = x;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return fail(cudaErrorInvalidResourceHandle);
    cudaError_t e = check_stream(s);
    if (e != cudaSuccess) return fail(e);
    for (const auto &n : exec->nodes) {
        if ((e = enqueue(s, n)) != cudaSuccess) return fail(e);
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}
