/* State shared by the files of the Vulkan backend: device (vk_device.c), memory and staging (vk_memory.c),
 * pipelines (vk_pipelines.c) and command recording (vk_record.c). Not part of the library's surface. */
#ifndef SLM_VK_INTERNAL_H
#define SLM_VK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "backend.h"
#include "error.h"
#include "vk_backend.h"

#define VK_N_WTYPES 11 /* weight types with shaders (slm_vk_wtype_index) */

/* Flags of the lane-per-row mat-vec variants (matvec.comp), added to VK_PIPE_MATVEC_FIRST + 4 * type. */
#define VK_MATVEC_X_VEC4 1u   /* activations read as vec4 */
#define VK_MATVEC_W_ALIGN4 2u /* every weight block starts on a 32-bit word */

/* Every pipeline the recorder may use; created on first use. */
typedef enum vk_pipe_id {
    VK_PIPE_MATMUL_FIRST = 0,                                 /* + weight type index: matmul.comp */
    VK_PIPE_TILED_FIRST = VK_PIPE_MATMUL_FIRST + VK_N_WTYPES, /* + type: matmul_tiled.comp */
    VK_PIPE_MATVEC_FIRST = VK_PIPE_TILED_FIRST + VK_N_WTYPES, /* + 4 * type + VK_MATVEC_*: matvec.comp */
    VK_PIPE_EMBED_FIRST = VK_PIPE_MATVEC_FIRST + 4 * VK_N_WTYPES,
    VK_PIPE_RMSNORM = VK_PIPE_EMBED_FIRST + VK_N_WTYPES,
    VK_PIPE_ROPE,
    VK_PIPE_KV_WRITE,
    VK_PIPE_ATTENTION,
    VK_PIPE_ATTENTION_REDUCE,
    VK_PIPE_SWIGLU,
    VK_PIPE_ADD,
    VK_PIPE_GEGLU,
    VK_PIPE_BANDWIDTH,
    VK_PIPE_COUNT,
} vk_pipe_id;

#define VK_N_BINDINGS 6
#define VK_PUSH_BYTES 128

/* A device buffer (behind slm_buffer.handle). */
typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size; /* allocated (rounded) size */
    void *mapped;      /* persistent mapping when the memory is host visible */
} vk_buf;

typedef struct vk_ctx {
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDeviceSize max_alloc; /* maxMemoryAllocationSize */
    bool has_budget;        /* VK_EXT_memory_budget */
    bool subgroup_arith;    /* compute-stage subgroup arithmetic: use the *_sg variants */
    bool storage16;         /* storageBuffer16BitAccess: needed by the f16 cache shaders */
    bool timestamps;
    bool lost; /* a device-lost error was seen: every later call fails */
    /* mat-mul strategy (vk_device.c picks it per device type; SLM_VK_MATVEC / SLM_VK_TILED_MIN override) */
    bool lane_matvec;         /* small batches use matvec.comp (CPU drivers) instead of matmul.comp */
    uint32_t tiled_min_batch; /* batches of at least this many tokens use matmul_tiled.comp */
    /* fault injection for tests, read from the environment at open (vk_device.c) */
    int64_t fail_alloc_after;  /* SLM_VK_FAIL_ALLOC_AFTER: buffer allocations after this many fail; -1 off */
    uint64_t fail_alloc_above; /* SLM_VK_FAIL_ALLOC_ABOVE: allocations above this many bytes fail; 0 off */
    int64_t n_allocs;          /* vkAllocateMemory calls since open */
    int64_t fake_lost_at;      /* SLM_VK_FAKE_DEVICE_LOST: the wait for this split (1 = the next) reports
                                        a lost device; 0 off */
    int64_t n_splits;          /* splits waited for since open */
    uint32_t mem_type_device;  /* buffers */
    uint32_t mem_type_staging; /* host visible + coherent */
    bool device_mapped;        /* buffers are host visible (UMA, lavapipe): upload/download memcpy */
    size_t allocated;          /* bytes of live buffers, for memory() without the budget extension */

    /* staging and transfers */
    vk_buf staging;
    VkCommandPool cmd_pool;
    VkCommandBuffer xfer_cmd;
    VkFence xfer_fence;

    /* pipelines */
    VkPipelineCache pcache;
    char pcache_path[512]; /* where the cache persists; empty: not persisted (vk_pipeline_cache.c) */
    bool pcache_dirty;     /* pipelines were created since it was loaded */
    size_t pcache_loaded;  /* bytes it was created from (0: empty) */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout playout;
    VkPipeline pipes[VK_PIPE_COUNT];

    /* the split in flight */
    VkCommandBuffer cmd;
    VkFence fence;
    bool in_flight;
    VkDescriptorPool dpool;
    uint32_t dpool_sets;
    VkQueryPool qpool;
    uint32_t qpool_size;
    vk_buf dummy;   /* bound to unused bindings */
    vk_buf scratch; /* split-K attention partials */
    /* per-op timing of the split in flight / last completed */
    slm_vk_op_time *times;
    int n_times, cap_times;
    bool times_pending;
} vk_ctx;

/* vk_device.c */
slm_status slm_vk_check(vk_ctx *c, VkResult r, const char *what, slm_error *err);
slm_status slm_vk_wait_idle(slm_device *d, slm_error *err); /* waits for the split in flight */

/* vk_memory.c */
/* map: keep a persistent host mapping (the memory type must be host visible). */
slm_status slm_vk_buf_create(vk_ctx *c, VkDeviceSize size, uint32_t mem_type, bool map, vk_buf *out, slm_error *err);
void slm_vk_buf_destroy(vk_ctx *c, vk_buf *b);
slm_status slm_vk_memory_init(vk_ctx *c, slm_error *err);
void slm_vk_memory_free(vk_ctx *c);
slm_status slm_vk_alloc(slm_device *d, size_t bytes, slm_buffer *b, slm_error *err);
void slm_vk_release(slm_device *d, slm_buffer *b);
slm_status slm_vk_upload(slm_device *d, slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err);
slm_status slm_vk_download(slm_device *d, void *dst, const slm_buffer *b, size_t off, size_t n, slm_error *err);

/* Columns (tokens) per matmul.comp workgroup: each dequantized weight chunk is reused this many times. */
#define VK_MATMUL_NC 8
/* Rows per invocation of matvec.comp: each activation chunk loaded serves this many rows. */
#define VK_MATVEC_RPT 4
/* matmul_tiled.comp's tile: weight rows x tokens per workgroup. */
#define VK_TILE_ROWS 128
#define VK_TILE_TOKENS 32
#define VK_TILE_SHARED_BYTES ((VK_TILE_ROWS + VK_TILE_TOKENS) * 9 * 16) /* its two tiles (rows of 9 vec4) */
/* Batches from which the tiled shader is used. GPUs: from 8, where matmul.comp would need a second group of
 * 8 columns. lavapipe: its shared-memory loads cost as much as buffer loads, so the tiled shader only
 * overtakes the lane mat-vec at about 32 tokens (measured at SmolLM2 shapes). */
#define VK_TILED_MIN_GPU 8
#define VK_TILED_MIN_CPU 32

/* vk_pipelines.c */
int slm_vk_wtype_index(slm_dtype t); /* -1 when the type has no shader */
slm_status slm_vk_pipelines_init(vk_ctx *c, slm_error *err);
void slm_vk_pipelines_free(vk_ctx *c);
slm_status slm_vk_pipeline_get(vk_ctx *c, vk_pipe_id id, VkPipeline *out, slm_error *err);
uint32_t slm_vk_pipeline_wg(vk_pipe_id id); /* the workgroup size the pipeline was specialised with */

/* vk_pipeline_cache.c */
slm_status slm_vk_pcache_create(vk_ctx *c, slm_error *err); /* c->pcache, from the file when it is valid */
void slm_vk_pcache_save(vk_ctx *c);                         /* writes it back if new pipelines were made */

/* vk_record.c */
bool slm_vk_supports(slm_device *d, const slm_op *op);
slm_status slm_vk_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err);
/* The attention partials' scratch for ops of these shapes (slm_backend_ops.work_bytes / work_reserve). */
uint64_t slm_vk_work_bytes(slm_device *d, const slm_op *shapes, int n_shapes);
slm_status slm_vk_work_reserve(slm_device *d, const slm_op *shapes, int n_shapes, slm_error *err);
slm_status slm_vk_sync(slm_device *d, slm_error *err);
void slm_vk_record_free(vk_ctx *c);
bool slm_vk_measure_bandwidth(slm_device *d, slm_read_peak *peak);

#endif
