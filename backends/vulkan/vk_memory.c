/* Device memory: buffers (device-local; host-visible on unified-memory devices such as integrated GPUs and
 * lavapipe, where uploads are plain copies) and a staging buffer for transfers to discrete GPUs. Transfers
 * are synchronous and wait for the split in flight first, because it may still read the buffer. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define VK_STAGING_BYTES ((VkDeviceSize)16 << 20)
#define VK_FENCE_TIMEOUT_NS ((uint64_t)600 * 1000000000ull)

static int find_type(const vk_ctx *c, uint32_t bits, VkMemoryPropertyFlags want) {
    for (uint32_t i = 0; i < c->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (c->mem_props.memoryTypes[i].propertyFlags & want) == want) return (int)i;
    return -1;
}

static const VkBufferUsageFlags k_usage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

slm_status slm_vk_buf_create(vk_ctx *c, VkDeviceSize size, uint32_t mem_type, bool map, vk_buf *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    size = (size + 255) & ~(VkDeviceSize)255; /* whole words for the shaders, room for aligned ranges */
    if (size == 0) size = 256;
    if (size > c->max_alloc)
        return slm_fail(err, SLM_ERR_DEVICE,
                        "vulkan: cannot allocate %llu bytes (the device's largest allocation is %llu)",
                        (unsigned long long)size, (unsigned long long)c->max_alloc);
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = k_usage,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    slm_status s = slm_vk_check(c, vkCreateBuffer(c->device, &bi, NULL, &out->buf), "vkCreateBuffer", err);
    if (s) return s;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(c->device, out->buf, &req);
    VkMemoryPropertyFlags flags = c->mem_props.memoryTypes[mem_type].propertyFlags;
    int t = (req.memoryTypeBits & (1u << mem_type)) ? (int)mem_type : find_type(c, req.memoryTypeBits, flags);
    if (t < 0) {
        vkDestroyBuffer(c->device, out->buf, NULL);
        out->buf = VK_NULL_HANDLE;
        return slm_fail(err, SLM_ERR_DEVICE, "vulkan: no memory type for a storage buffer");
    }
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = (uint32_t)t};
    /* the test hooks (vk_device.c read_faults) fail here, where a real driver would */
    bool injected = (c->fail_alloc_after >= 0 && c->n_allocs >= c->fail_alloc_after) ||
        (c->fail_alloc_above && req.size > c->fail_alloc_above);
    c->n_allocs++;
    VkResult r = injected ? VK_ERROR_OUT_OF_DEVICE_MEMORY : vkAllocateMemory(c->device, &ai, NULL, &out->mem);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(c->device, out->buf, NULL);
        memset(out, 0, sizeof *out);
        /* slm.h: a failed device allocation is SLM_ERR_DEVICE, a failed host one SLM_ERR_NOMEM */
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
            return slm_fail(err, SLM_ERR_DEVICE, "vulkan: out of device memory allocating %llu bytes on %s%s",
                            (unsigned long long)size, c->props.deviceName,
                            injected ? " (injected by SLM_VK_FAIL_ALLOC_AFTER / SLM_VK_FAIL_ALLOC_ABOVE)" : "");
        if (r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return slm_fail(err, SLM_ERR_NOMEM, "vulkan: out of host memory allocating a %llu-byte device buffer",
                            (unsigned long long)size);
        return slm_vk_check(c, r, "vkAllocateMemory", err);
    }
    s = slm_vk_check(c, vkBindBufferMemory(c->device, out->buf, out->mem, 0), "vkBindBufferMemory", err);
    if (!s && map && (c->mem_props.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
        s = slm_vk_check(c, vkMapMemory(c->device, out->mem, 0, VK_WHOLE_SIZE, 0, &out->mapped), "vkMapMemory", err);
    if (s) {
        slm_vk_buf_destroy(c, out);
        return s;
    }
    out->size = size;
    return SLM_OK;
}

void slm_vk_buf_destroy(vk_ctx *c, vk_buf *b) {
    if (b->mapped) vkUnmapMemory(c->device, b->mem);
    if (b->buf) vkDestroyBuffer(c->device, b->buf, NULL);
    if (b->mem) vkFreeMemory(c->device, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

slm_status slm_vk_memory_init(vk_ctx *c, slm_error *err) {
    /* The memory types a storage buffer may use, from a probe buffer. */
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = 256,
                             .usage = k_usage,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkBuffer probe;
    slm_status s = slm_vk_check(c, vkCreateBuffer(c->device, &bi, NULL, &probe), "vkCreateBuffer", err);
    if (s) return s;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(c->device, probe, &req);
    vkDestroyBuffer(c->device, probe, NULL);

    const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    bool uma = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
        c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    int dev_t = -1;
    if (uma) dev_t = find_type(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | hv);
    c->device_mapped = dev_t >= 0;
    /* Test hook: SLM_VK_STAGING=1 takes the discrete-GPU path (staged transfers) on any device. */
    const char *stg = getenv("SLM_VK_STAGING");
    if (stg && *stg && *stg != '0') c->device_mapped = false;
    if (dev_t < 0) dev_t = find_type(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (dev_t < 0) dev_t = find_type(c, req.memoryTypeBits, 0);
    int stg_t = find_type(c, req.memoryTypeBits, hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (stg_t < 0) stg_t = find_type(c, req.memoryTypeBits, hv);
    if (dev_t < 0 || stg_t < 0)
        return slm_fail(err, SLM_ERR_DEVICE, "vulkan: no usable memory types on %s", c->props.deviceName);
    c->mem_type_device = (uint32_t)dev_t;
    c->mem_type_staging = (uint32_t)stg_t;

    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = c->queue_family};
    s = slm_vk_check(c, vkCreateCommandPool(c->device, &pci, NULL, &c->cmd_pool), "vkCreateCommandPool", err);
    if (s) return s;
    VkCommandBuffer cbs[2];
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = c->cmd_pool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 2};
    s = slm_vk_check(c, vkAllocateCommandBuffers(c->device, &cai, cbs), "vkAllocateCommandBuffers", err);
    if (s) return s;
    c->cmd = cbs[0];
    c->xfer_cmd = cbs[1];
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    s = slm_vk_check(c, vkCreateFence(c->device, &fci, NULL, &c->fence), "vkCreateFence", err);
    if (!s) s = slm_vk_check(c, vkCreateFence(c->device, &fci, NULL, &c->xfer_fence), "vkCreateFence", err);
    if (!s && !c->device_mapped)
        s = slm_vk_buf_create(c, VK_STAGING_BYTES, c->mem_type_staging, true, &c->staging, err);
    if (!s) s = slm_vk_buf_create(c, 256, c->mem_type_device, false, &c->dummy, err);
    return s;
}

void slm_vk_memory_free(vk_ctx *c) {
    slm_vk_buf_destroy(c, &c->staging);
    slm_vk_buf_destroy(c, &c->dummy);
    slm_vk_buf_destroy(c, &c->scratch);
    if (c->fence) vkDestroyFence(c->device, c->fence, NULL);
    if (c->xfer_fence) vkDestroyFence(c->device, c->xfer_fence, NULL);
    if (c->cmd_pool) vkDestroyCommandPool(c->device, c->cmd_pool, NULL);
    c->fence = c->xfer_fence = VK_NULL_HANDLE;
    c->cmd_pool = VK_NULL_HANDLE;
}

slm_status slm_vk_alloc(slm_device *d, size_t bytes, slm_buffer *b, slm_error *err) {
    vk_ctx *c = d->ctx;
    memset(b, 0, sizeof *b);
    if (c->lost) return slm_fail(err, SLM_ERR_DEVICE, "vulkan: the device was lost earlier; reopen it");
    vk_buf *vb = calloc(1, sizeof *vb);
    if (!vb) return slm_fail(err, SLM_ERR_NOMEM, "vulkan: out of host memory");
    slm_status s = slm_vk_buf_create(c, bytes, c->mem_type_device, c->device_mapped, vb, err);
    if (s) {
        free(vb);
        return s;
    }
    /* Fresh buffers read as zeros, as on the cpu backend. */
    if (vb->mapped) {
        memset(vb->mapped, 0, (size_t)vb->size);
    } else {
        VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                       .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
        s = slm_vk_wait_idle(d, err);
        if (!s) s = slm_vk_check(c, vkBeginCommandBuffer(c->xfer_cmd, &bi), "vkBeginCommandBuffer", err);
        if (!s) {
            vkCmdFillBuffer(c->xfer_cmd, vb->buf, 0, VK_WHOLE_SIZE, 0);
            s = slm_vk_check(c, vkEndCommandBuffer(c->xfer_cmd), "vkEndCommandBuffer", err);
        }
        VkSubmitInfo si = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->xfer_cmd};
        if (!s) s = slm_vk_check(c, vkQueueSubmit(c->queue, 1, &si, c->xfer_fence), "vkQueueSubmit (fill)", err);
        if (!s)
            s = slm_vk_check(c, vkWaitForFences(c->device, 1, &c->xfer_fence, VK_TRUE, VK_FENCE_TIMEOUT_NS), "fill",
                             err);
        vkResetFences(c->device, 1, &c->xfer_fence);
        if (s) {
            slm_vk_buf_destroy(c, vb);
            free(vb);
            return s;
        }
    }
    c->allocated += (size_t)vb->size;
    b->dev = d;
    b->handle = vb;
    b->size = bytes;
    return SLM_OK;
}

void slm_vk_release(slm_device *d, slm_buffer *b) {
    vk_ctx *c = d->ctx;
    vk_buf *vb = b->handle;
    if (!vb) return;
    /* the split in flight may still use it */
    if (c->in_flight) vkWaitForFences(c->device, 1, &c->fence, VK_TRUE, VK_FENCE_TIMEOUT_NS);
    c->allocated -= c->allocated >= (size_t)vb->size ? (size_t)vb->size : c->allocated;
    slm_vk_buf_destroy(c, vb);
    free(vb);
    memset(b, 0, sizeof *b);
}

/* One staged copy of n <= staging bytes between the staging buffer and vb at off. */
static slm_status staged_copy(vk_ctx *c, vk_buf *vb, size_t off, size_t n, bool to_device, slm_error *err) {
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    slm_status s = slm_vk_check(c, vkBeginCommandBuffer(c->xfer_cmd, &bi), "vkBeginCommandBuffer", err);
    if (s) return s;
    /* order after earlier compute writes (previous submissions) */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(c->xfer_cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    VkBufferCopy region = {.srcOffset = to_device ? 0 : off, .dstOffset = to_device ? off : 0, .size = n};
    if (to_device) vkCmdCopyBuffer(c->xfer_cmd, c->staging.buf, vb->buf, 1, &region);
    else vkCmdCopyBuffer(c->xfer_cmd, vb->buf, c->staging.buf, 1, &region);
    VkMemoryBarrier hb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT};
    vkCmdPipelineBarrier(c->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &hb, 0, NULL, 0,
                         NULL);
    s = slm_vk_check(c, vkEndCommandBuffer(c->xfer_cmd), "vkEndCommandBuffer", err);
    if (s) return s;
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->xfer_cmd};
    s = slm_vk_check(c, vkQueueSubmit(c->queue, 1, &si, c->xfer_fence), "vkQueueSubmit (transfer)", err);
    if (s) return s;
    s = slm_vk_check(c, vkWaitForFences(c->device, 1, &c->xfer_fence, VK_TRUE, VK_FENCE_TIMEOUT_NS), "transfer", err);
    vkResetFences(c->device, 1, &c->xfer_fence);
    return s;
}

static slm_status check_range(const slm_buffer *b, size_t off, size_t n, const char *what, slm_error *err) {
    if (!b || !b->handle) return slm_fail(err, SLM_ERR_INVALID_ARG, "vulkan: %s on a released buffer", what);
    if (off > b->size || n > b->size - off)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "vulkan: %s of %zu bytes at %zu is outside the %zu-byte buffer", what,
                        n, off, b->size);
    return SLM_OK;
}

slm_status slm_vk_upload(slm_device *d, slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err) {
    vk_ctx *c = d->ctx;
    slm_status s = check_range(b, off, n, "upload", err);
    if (!s) s = slm_vk_wait_idle(d, err);
    if (s || n == 0) return s;
    vk_buf *vb = b->handle;
    if (vb->mapped) {
        memcpy((uint8_t *)vb->mapped + off, src, n);
        return SLM_OK;
    }
    for (size_t done = 0; done < n && !s;) {
        size_t k = n - done < (size_t)c->staging.size ? n - done : (size_t)c->staging.size;
        memcpy(c->staging.mapped, (const uint8_t *)src + done, k);
        s = staged_copy(c, vb, off + done, k, true, err);
        done += k;
    }
    return s;
}

slm_status slm_vk_download(slm_device *d, void *dst, const slm_buffer *b, size_t off, size_t n, slm_error *err) {
    vk_ctx *c = d->ctx;
    slm_status s = check_range(b, off, n, "download", err);
    if (!s) s = slm_vk_wait_idle(d, err);
    if (s || n == 0) return s;
    vk_buf *vb = b->handle;
    if (vb->mapped) {
        memcpy(dst, (const uint8_t *)vb->mapped + off, n);
        return SLM_OK;
    }
    for (size_t done = 0; done < n && !s;) {
        size_t k = n - done < (size_t)c->staging.size ? n - done : (size_t)c->staging.size;
        s = staged_copy(c, vb, off + done, k, false, err);
        if (!s) memcpy((uint8_t *)dst + done, c->staging.mapped, k);
        done += k;
    }
    return s;
}
