/* The device interface: one table of function pointers per backend kind, one slm_device per opened device.
 * Backends know ops and buffers, never models. */
#ifndef SLM_BACKEND_H
#define SLM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"
#include "types.h"

typedef struct slm_device slm_device;

typedef struct slm_buffer {
    slm_device *dev;
    void *host;   /* host address of the memory when the CPU can read it directly (cpu backend), else NULL */
    void *handle; /* backend private (VkBuffer + memory, CUDA pointer, ...) */
    size_t size;
} slm_buffer;

/* A strided view into a buffer. ne[0] is the innermost (contiguous) dimension; nb[i] is the byte stride of
 * dimension i (nb[0] = element or block size). Quantized types are only ever viewed as whole rows. */
typedef struct slm_tensor {
    slm_buffer *buf; /* NULL: absent (optional operands) */
    size_t offset;
    slm_dtype type;
    int64_t ne[4];
    size_t nb[4];
    /* A weight in the CPU's repacked decode layout (kernels/cpu/matvec_x16.h: rows interleaved 16 at a time,
     * the same bytes per row): only the CPU backend's mat-mul reads it (slm_op_check). */
    bool x16;
} slm_tensor;

/* Contiguous tensor of the given shape at offset; unused dims are 1. */
slm_tensor slm_tensor_make(slm_buffer *buf, size_t offset, slm_dtype type, int64_t ne0, int64_t ne1, int64_t ne2,
                           int64_t ne3);
/* The columns [first, first+n) of dimension 1 (e.g. some tokens of an activation matrix). */
slm_tensor slm_tensor_cols(slm_tensor t, int64_t first, int64_t n);
size_t slm_tensor_bytes(const slm_tensor *t); /* contiguous size */
/* Bytes from t->offset to the end of its last row, strides included (what the view touches). */
size_t slm_tensor_extent(const slm_tensor *t);
int64_t slm_tensor_nelements(const slm_tensor *t);

/* The op contract. slm_op_check enforces all of it (once per op, when a graph is built); backends check
 * only their own limits on top (slm_backend_ops.supports).
 *
 * Every operand: present means buf != NULL; an operand a kind does not list must be absent. Its type is one
 * slm knows; every ne[i] >= 1 and dims past the operand's rank are 1; nb[0] is the element (block) size, so
 * rows are contiguous; for i >= 1 within the rank, nb[i] >= the bytes of dim i - 1 (rows never overlap;
 * padding between them is allowed, as the KV cache has). The offset and strides are multiples of the
 * element size for plain types (f32, i32: 4; f16, bf16: 2) and of 2 bytes for block types; ne[0] of a block
 * type is a multiple of its block. All of [offset, offset + extent) lies inside buf (slm_tensor_extent).
 * dst shares no bytes with a source unless the kind says it may be that very source (in place).
 * Values that live on the device (ids, positions) are the caller's to keep in range: ids < n_vocab,
 * positions < the cache's rows. "weight" below is any known type but i32, 2-D [K, N]: row r is N's r-th row. */
typedef enum slm_op_kind {
    /* dst f32 [n_embd, T] = row src1[t] of src0 (weight table [n_embd, n_vocab]) for each t, times
     * p.embed.scale (finite and > 0; Gemma scales by sqrt(n_embd), the others by 1); src1 i32 [T] ids. */
    SLM_OP_EMBED,
    /* dst f32 [n, T] = src0 f32 [n, T] / rms(column) * src1 f32 [n]; p.norm.eps finite, >= 0. dst may be the
     * very same view as src0 (in place: per-head norms of q and k, as [head_dim, heads*T]). */
    SLM_OP_RMSNORM,
    /* dst f32 [N, T] = src0 (weight [K, N]) . src1 f32 [K, T] (+ src2 f32 [N], optional bias). */
    SLM_OP_MATMUL,
    /* dst f32 [head_dim, n_heads, T] rotated in place: src0 is absent or the very same view as dst;
     * src1 i32 [T] positions; src2 f32 [>= n_rot/2] frequency factors (optional, the first n_rot/2 used).
     * p.rope: n_rot even, 2 <= n_rot <= head_dim (the first n_rot of each head turn); neox pairs i with
     * i + n_rot/2 (else 2i with 2i+1); freq_base and freq_scale finite and > 0. */
    SLM_OP_ROPE,
    /* dst [n_kv_embd, n_ctx] (the cache, rows may be padded) of f16, q8_0 or q4_0: row src1[t] = src0 f32
     * [n_kv_embd, T] column t, converted (f16: round to nearest even) or quantized per 32-element block as
     * slm_ref_quantize_row does; src1 i32 [T] positions; T <= n_ctx. */
    SLM_OP_KV_WRITE,
    /* dst f32 [head_dim * n_head, T]: causal GQA attention of src0 q f32 [head_dim * n_head, T] over src1 K
     * cache [head_dim * n_head_kv, n_ctx] and src2 V cache of the same shape, each f16, q8_0 or q4_0 (types
     * and row strides may differ, rows may be padded; a quantized cache needs head_dim a multiple of 32); token t sees cache rows 0..src3[t] inclusive (src3 i32 [T] positions),
     * or with p.attn.window > 0 (a sliding window) only the last window of them, rows
     * max(0, src3[t] - window + 1)..src3[t]. p.attn: head_dim, n_head, n_head_kv >= 1, n_head a multiple of
     * n_head_kv (query head h reads kv head h / (n_head / n_head_kv)); scale finite and > 0 (scores are
     * q.k * scale); window >= 0 (0: no window). */
    SLM_OP_ATTENTION,
    /* dst f32 [n, T] = silu(src0) * src1, all f32 [n, T]; dst may be src0 or src1 (the same view). */
    SLM_OP_SWIGLU,
    /* dst f32 [n, T] = src0 + src1, all f32 [n, T]; dst may be src0 or src1 (the same view). */
    SLM_OP_ADD,
    /* dst f32 [n, T] = gelu(src0) * src1 with the tanh form of GELU,
     * gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), all f32 [n, T]; dst may be src0 or src1. */
    SLM_OP_GEGLU,
    SLM_OP_KIND_COUNT,
} slm_op_kind;

const char *slm_op_kind_name(slm_op_kind k);

typedef struct slm_op {
    slm_op_kind kind;
    int layer;        /* -1: embedding, 0..n_layer-1, n_layer: output head */
    const char *name; /* e.g. "attn_q" (static string) for profiles */
    int device;       /* the device that runs it (an index into the scheduler's devices), set by the graph
                           builder from the placement; backends do not read it */
    slm_tensor dst;
    slm_tensor src[4];
    union {
        struct {
            float eps;
        } norm;
        struct {
            int n_rot;
            bool neox;
            float freq_base, freq_scale;
        } rope;
        struct {
            int n_head, n_head_kv, head_dim;
            float scale;
            int window; /* sliding window in positions, 0: none */
        } attn;
        struct {
            float scale;
        } embed;
    } p;
} slm_op;

/* Checks op against the contract above: SLM_OK, or SLM_ERR_INVALID_ARG (SLM_ERR_UNSUPPORTED for a type or
 * kind slm does not know) with a message naming the op kind, its name and layer, the operand and what was
 * expected against what it got. err may be NULL. */
slm_status slm_op_check(const slm_op *op, slm_error *err);

typedef struct slm_device_config {
    int n_threads;        /* cpu: worker threads (<= 0: every usable CPU; capped at that, cpu/cpu_threads.h) */
    bool f32_activations; /* cpu, cuda mat-vecs: on f32 activations, not 8-bit blocks (slow, exact) */
} slm_device_config;

/* A device's peak read: the fastest of several read kernels or launch shapes, each timed several times. */
typedef struct slm_read_peak {
    double best;     /* bytes/s: the fastest timed read */
    double spread;   /* bytes/s: between the fastest and the slowest timed read of the kernel that gave best */
    int n_kernels;   /* read kernels or launch shapes tried */
    char kernel[96]; /* the one that gave best, e.g. "avx512, 4 streams, prefetch, 2 threads" */
} slm_read_peak;

typedef struct slm_backend_ops {
    const char *name; /* "cpu", "vulkan", "cuda" */
    /* Number of devices of this kind present (0 when the driver or hardware is absent). */
    int (*count)(void);
    slm_status (*open)(slm_device *, int index, const slm_device_config *, slm_error *);
    void (*close)(slm_device *);
    void (*memory)(slm_device *, size_t *free, size_t *total);
    /* This backend's own limits only (weight types it has no kernel for, sizes past a shader's arrays, ...):
     * callers check the contract with slm_op_check (slm_device_supports does both). */
    bool (*supports)(slm_device *, const slm_op *);
    slm_status (*alloc)(slm_device *, size_t bytes, slm_buffer *, slm_error *);
    /* Optional (NULL when absent): use host memory (e.g. the mmapped file) in place. */
    slm_status (*wrap_host)(slm_device *, void *, size_t, slm_buffer *, slm_error *);
    void (*release)(slm_device *, slm_buffer *);
    slm_status (*upload)(slm_device *, slm_buffer *, size_t off, const void *src, size_t n, slm_error *);
    slm_status (*download)(slm_device *, void *dst, const slm_buffer *, size_t off, size_t n, slm_error *);
    /* Runs a whole split in order; may return before the work is done (sync waits). The ops satisfy
     * slm_op_check and supports. */
    slm_status (*run)(slm_device *, const slm_op *ops, int n_ops, slm_error *);
    slm_status (*sync)(slm_device *, slm_error *);
    /* Optional: measures the peak read bandwidth now (several kernels or launch shapes, each repeated);
     * false when it cannot. */
    bool (*measure_bandwidth)(slm_device *, slm_read_peak *out);
    /* Optional (NULL: the backend needs no device memory beyond the buffers it is given). Working memory is
     * what a backend allocates for itself to run ops: partial results, converted copies of operands, a
     * library's workspace. Both hooks take "shapes": ops of which only the kind, p and each operand's type
     * and ne are read (buffers may be absent), the largest a model will run here. work_bytes says how many
     * bytes of working memory running ops no larger than those takes; work_reserve allocates it now and
     * keeps it until close (n_shapes 0 gives it back), so that a device too small to run the model fails
     * when the placement can still re-plan instead of in the first run. run still grows it for larger ops. */
    uint64_t (*work_bytes)(slm_device *, const slm_op *shapes, int n_shapes);
    slm_status (*work_reserve)(slm_device *, const slm_op *shapes, int n_shapes, slm_error *);
    /* Optional: whether the device's mat-muls read weight w faster in a layout of its own (the same bytes,
     * rearranged), and the rewrite of w into dst (a view of the same shape in a buffer of this device),
     * which marks dst with that layout. */
    bool (*repacks)(slm_device *, const slm_tensor *w);
    void (*repack)(slm_device *, const slm_tensor *w, slm_tensor *dst);
} slm_backend_ops;

/* An opened device instance. One thread at a time uses an instance (GPU instances are shared by a model's
 * contexts, which take turns under the placement's lock; each context has a CPU instance of its own). The
 * ops an instance runs read and write its own buffers, except on host-memory devices: a host_memory
 * instance may use any buffer whose memory is plain host memory (buffer.host set) of any host_memory
 * instance, so every context's CPU instance runs on the mapping that the model's CPU instance wraps. */
struct slm_device {
    const slm_backend_ops *ops;
    void *ctx; /* backend private state */
    int index;
    bool host_memory; /* buffers are plain host memory (buffer.host is set) */
    bool software;    /* a CPU implementation of a GPU API (lavapipe): used only when asked for */
    char name[160];   /* "cpu (AVX-512, 2 threads)", "vulkan:0 llvmpipe (LLVM 15.0.6, 256 bits)" */
};

/* Buffers and devices: what callers use instead of dev->ops->... Every status return fills err. */
slm_status slm_buffer_alloc(slm_device *d, size_t bytes, slm_buffer *out, slm_error *err);
/* A no-op on a zeroed buffer (b->dev NULL or size 0: never allocated, or already released); zeroes *b. */
void slm_buffer_release(slm_buffer *b);
/* Copies n bytes at byte off of b; SLM_ERR_INVALID_ARG when [off, off + n) is not inside b. */
slm_status slm_buffer_upload(slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err);
slm_status slm_buffer_download(const slm_buffer *b, size_t off, void *dst, size_t n, slm_error *err);
/* The same at t->offset of t->buf (n bytes, whatever the tensor's shape). */
slm_status slm_tensor_upload(const slm_tensor *t, const void *src, size_t n, slm_error *err);
slm_status slm_tensor_download(const slm_tensor *t, void *dst, size_t n, slm_error *err);
/* Runs a split in order; may return before the work is done (slm_device_sync waits). */
slm_status slm_device_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err);
slm_status slm_device_sync(slm_device *d, slm_error *err);
/* Free and total bytes of the device's memory (0 and 0 when unknown); either pointer may be NULL. */
void slm_device_memory(slm_device *d, size_t *free_bytes, size_t *total_bytes);
/* Whether op satisfies the contract (slm_op_check) and the device has kernels for it. */
bool slm_device_supports(slm_device *d, const slm_op *op);
/* Host memory used in place as a buffer of d (the CPU wraps the mapped file); SLM_ERR_UNSUPPORTED when the
 * backend cannot. */
slm_status slm_buffer_wrap_host(slm_device *d, void *p, size_t n, slm_buffer *out, slm_error *err);
/* The backend's own measure of its peak read bandwidth in bytes/s; 0 when it has none. */
double slm_device_measure_bandwidth(slm_device *d);
/* The same with its spread and the kernel that gave it; false (out zeroed) when the backend has none. */
bool slm_device_measure_peak(slm_device *d, slm_read_peak *out);

/* The backend's working memory for ops shaped like shapes[0..n) (work_bytes above); 0 when it has none. */
uint64_t slm_device_work_bytes(slm_device *d, const slm_op *shapes, int n_shapes);
/* Allocates that memory now (work_reserve above); SLM_OK when the backend has none to allocate. */
slm_status slm_device_work_reserve(slm_device *d, const slm_op *shapes, int n_shapes, slm_error *err);

/* Registry of compiled-in backends: spec is "cpu", "vulkan", "vulkan:N", "cuda", "cuda:N". */
slm_status slm_device_open(const char *spec, const slm_device_config *cfg, slm_device **out, slm_error *err);
void slm_device_close(slm_device *d);
/* Compiled-in backends, NULL-terminated. */
const slm_backend_ops *const *slm_backends(void);

#endif
