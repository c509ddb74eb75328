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

/* Every pipeline the recorder may use; created on first use. */
typedef enum vk_pipe_id {
    VK_PIPE_MATMUL_FIRST = 0,                  /* + weight type index (vk_wtype_index) */
    VK_PIPE_EMBED_FIRST = VK_PIPE_MATMUL_FIRST + 11,
    VK_PIPE_RMSNORM = VK_PIPE_EMBED_FIRST + 11,
    VK_PIPE_ROPE,
    VK_PIPE_KV_WRITE,
    VK_PIPE_ATTENTION,
    VK_PIPE_ATTENTION_REDUCE,
    VK_PIPE_SWIGLU,
    VK_PIPE_ADD,
    VK_PIPE_BANDWIDTH,
    VK_PIPE_COUNT,
} vk_pipe_id;

#define VK_N_BINDINGS 6
#define VK_PUSH_BYTES 128

/* A device buffer (behind slm_buffer.handle). */
typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;   /* allocated (rounded) size */
    void *mapped;        /* persistent mapping when the memory is host visible */
} vk_buf;

typedef struct vk_ctx {
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDeviceSize max_alloc;          /* maxMemoryAllocationSize */
    bool has_budget;                 /* VK_EXT_memory_budget */
    bool subgroup_arith;             /* compute-stage subgroup arithmetic: use the *_sg variants */
    bool storage16;                  /* storageBuffer16BitAccess: needed by the f16 cache shaders */
    bool timestamps;
    bool lost;                       /* a device-lost error was seen: every later call fails */
    uint32_t mem_type_device;        /* buffers */
    uint32_t mem_type_staging;       /* host visible + coherent */
    bool device_mapped;              /* buffers are host visible (UMA, lavapipe): upload/download memcpy */
    size_t allocated;                /* bytes of live buffers, for memory() without the budget extension */

    /* staging and transfers */
    vk_buf staging;
    VkCommandPool cmd_pool;
    VkCommandBuffer xfer_cmd;
    VkFence xfer_fence;

    /* pipelines */
    VkPipelineCache pcache;
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
    vk_buf dummy;                    /* bound to unused bindings */
    vk_buf scratch;                  /* split-K attention partials */
    /* per-op timing of the split in flight / last completed */
    slm_vk_op_time *times;
    int n_times, cap_times;
    bool times_pending;
} vk_ctx;

/* vk_device.c */
slm_status slm_vk_check(vk_ctx *c, VkResult r, const char *what, slm_error *err);
slm_status slm_vk_wait_idle(slm_device *d, slm_error *err);   /* waits for the split in flight */

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

/* vk_pipelines.c */
int slm_vk_wtype_index(slm_dtype t);    /* -1 when the type has no shader */
slm_status slm_vk_pipelines_init(vk_ctx *c, slm_error *err);
void slm_vk_pipelines_free(vk_ctx *c);
slm_status slm_vk_pipeline_get(vk_ctx *c, vk_pipe_id id, VkPipeline *out, slm_error *err);
uint32_t slm_vk_pipeline_wg(vk_pipe_id id);   /* the workgroup size the pipeline was specialised with */

/* vk_record.c */
bool slm_vk_supports(slm_device *d, const slm_op *op);
slm_status slm_vk_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err);
slm_status slm_vk_sync(slm_device *d, slm_error *err);
void slm_vk_record_free(vk_ctx *c);
double slm_vk_measure_bandwidth(slm_device *d);

#endif
