/* The Vulkan device: instance, physical-device choice and order, the one compute queue, memory query, and
 * the backend's function table. Devices are ordered discrete, integrated, virtual, CPU (lavapipe last) so
 * vulkan:0 is the fastest kind present. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define VK_MAX_DEVICES 16

slm_status slm_vk_check(vk_ctx *c, VkResult r, const char *what, slm_error *err) {
    if (r == VK_SUCCESS) return SLM_OK;
    if (r == VK_ERROR_DEVICE_LOST) {
        if (c) c->lost = true;
        return slm_fail(err, SLM_ERR_DEVICE, "vulkan: the device was lost during %s (driver reset or hang); reopen it",
                        what);
    }
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        return slm_fail(err, SLM_ERR_DEVICE, "vulkan: out of device memory during %s", what);
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return slm_fail(err, SLM_ERR_NOMEM, "vulkan: out of host memory during %s", what);
    if (r == VK_TIMEOUT) return slm_fail(err, SLM_ERR_DEVICE, "vulkan: timed out during %s (device hung?)", what);
    return slm_fail(err, SLM_ERR_DEVICE, "vulkan: %s failed (VkResult %d)", what, (int)r);
}

static bool has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *p = calloc(n, sizeof *p);
    if (!p) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(p[i].layerName, name);
    free(p);
    return found;
}

static bool has_instance_ext(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *p = calloc(n, sizeof *p);
    if (!p) return false;
    bool found = false;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(p[i].extensionName, name);
    free(p);
    return found;
}

static VkResult create_instance(VkInstance *out) {
    uint32_t api = 0;
    if (vkEnumerateInstanceVersion(&api) != VK_SUCCESS || api < VK_API_VERSION_1_2) return VK_ERROR_INCOMPATIBLE_DRIVER;
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "slm",
                             .pEngineName = "slm",
                             .apiVersion = VK_API_VERSION_1_2};
    const char *exts[1];
    uint32_t n_ext = 0;
    VkInstanceCreateFlags flags = 0;
    /* MoltenVK and other portability drivers are only listed when asked for. */
    if (has_instance_ext("VK_KHR_portability_enumeration")) {
        exts[n_ext++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }
    const char *layers[1];
    uint32_t n_layers = 0;
    /* Debugging aid: SLM_VK_VALIDATE=1 turns on the Khronos validation layer when it is installed. */
    const char *v = getenv("SLM_VK_VALIDATE");
    if (v && *v && *v != '0' && has_layer("VK_LAYER_KHRONOS_validation"))
        layers[n_layers++] = "VK_LAYER_KHRONOS_validation";
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .flags = flags,
                               .pApplicationInfo = &app,
                               .enabledExtensionCount = n_ext,
                               .ppEnabledExtensionNames = exts,
                               .enabledLayerCount = n_layers,
                               .ppEnabledLayerNames = layers};
    return vkCreateInstance(&ci, NULL, out);
}

static int find_compute_queue(VkPhysicalDevice p) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(p, &n, NULL);
    if (n == 0) return -1;
    VkQueueFamilyProperties *q = calloc(n, sizeof *q);
    if (!q) return -1;
    vkGetPhysicalDeviceQueueFamilyProperties(p, &n, q);
    int best = -1;
    /* prefer a compute family without graphics (async compute), else any with compute */
    for (uint32_t i = 0; i < n; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) {
            best = (int)i;
            break;
        }
    if (best < 0)
        for (uint32_t i = 0; i < n; i++)
            if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                best = (int)i;
                break;
            }
    free(q);
    return best;
}

static int type_rank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

/* Usable devices (Vulkan 1.2, a compute queue) in the order vulkan:N names them. */
static int list_devices(VkInstance inst, VkPhysicalDevice *out, int max) {
    uint32_t n = 0;
    if (vkEnumeratePhysicalDevices(inst, &n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkPhysicalDevice *all = calloc(n, sizeof *all);
    if (!all) return 0;
    if (vkEnumeratePhysicalDevices(inst, &n, all) != VK_SUCCESS && n == 0) {
        free(all);
        return 0;
    }
    int count = 0;
    for (int rank = 0; rank <= 4; rank++)
        for (uint32_t i = 0; i < n && count < max; i++) {
            VkPhysicalDeviceProperties pr;
            vkGetPhysicalDeviceProperties(all[i], &pr);
            if (type_rank(pr.deviceType) != rank || pr.apiVersion < VK_API_VERSION_1_2) continue;
            if (find_compute_queue(all[i]) < 0) continue;
            out[count++] = all[i];
        }
    free(all);
    return count;
}

static int vk_count(void) {
    VkInstance inst;
    if (create_instance(&inst) != VK_SUCCESS) return 0;
    VkPhysicalDevice devs[VK_MAX_DEVICES];
    int n = list_devices(inst, devs, VK_MAX_DEVICES);
    vkDestroyInstance(inst, NULL);
    return n;
}

static bool has_device_ext(VkPhysicalDevice p, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(p, NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(p, NULL, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

static void vk_close(slm_device *d);

static int64_t env_int(const char *name, int64_t def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end ? def : (int64_t)x;
}

/* Test hooks (read once here, kept in the context): make the real vkAllocateMemory path fail after N
 * buffers or above a size, and make the wait for the Nth split report a lost device. */
static void read_faults(vk_ctx *c) {
    c->fail_alloc_after = env_int("SLM_VK_FAIL_ALLOC_AFTER", -1);
    int64_t above = env_int("SLM_VK_FAIL_ALLOC_ABOVE", 0);
    c->fail_alloc_above = above > 0 ? (uint64_t)above : 0;
    int64_t lost = env_int("SLM_VK_FAKE_DEVICE_LOST", 0);
    c->fake_lost_at = lost > 0 ? lost : 0;
    c->n_allocs = c->n_splits = 0;
}

/* Mat-mul strategy. GPUs: matmul.comp (a workgroup per row, 8 tokens per workgroup) below 8 tokens, the
 * tiled shader from 8. CPU drivers (lavapipe) run a lane per row (matvec.comp): there each load instruction
 * loops over the SIMD lanes and barriers switch coroutines, so rows without reductions win; the tiled shader
 * takes over once a batch reuses each dequantized tile enough. Devices with less shared memory than the
 * tiles (Vulkan only promises 16 KiB) never tile. SLM_VK_MATVEC=lane|group and SLM_VK_TILED_MIN=N override
 * both (tests use them to run every path on one device). */
static void pick_matmul(vk_ctx *c) {
    bool cpu = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    c->lane_matvec = cpu;
    c->tiled_min_batch = cpu ? VK_TILED_MIN_CPU : VK_TILED_MIN_GPU;
    const char *mv = getenv("SLM_VK_MATVEC");
    if (mv && !strcmp(mv, "lane")) c->lane_matvec = true;
    if (mv && !strcmp(mv, "group")) c->lane_matvec = false;
    const char *tm = getenv("SLM_VK_TILED_MIN");
    if (tm && *tm) {
        long v = strtol(tm, NULL, 10);
        c->tiled_min_batch = v >= 1 ? (uint32_t)v : UINT32_MAX; /* 0: never tiled */
    }
    if (c->props.limits.maxComputeSharedMemorySize < VK_TILE_SHARED_BYTES) c->tiled_min_batch = UINT32_MAX;
}

static slm_status vk_open(slm_device *d, int index, const slm_device_config *cfg, slm_error *err) {
    vk_ctx *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory opening vulkan:%d", index);
    c->fail_alloc_after = -1; /* no fault hooks until read_faults at the end of open */
    d->ctx = c;
    d->host_memory = false;
    VkResult r = create_instance(&c->instance);
    if (r != VK_SUCCESS) {
        vk_close(d);
        return slm_fail(err, SLM_ERR_NO_DEVICE, "vulkan: no Vulkan 1.2 instance (VkResult %d): no driver installed?",
                        (int)r);
    }
    VkPhysicalDevice devs[VK_MAX_DEVICES];
    int n = list_devices(c->instance, devs, VK_MAX_DEVICES);
    if (index < 0 || index >= n) {
        vk_close(d);
        return slm_fail(err, SLM_ERR_NO_DEVICE, "vulkan:%d not found (%d Vulkan 1.2 device%s with compute)", index, n,
                        n == 1 ? "" : "s");
    }
    c->phys = devs[index];
    c->queue_family = (uint32_t)find_compute_queue(c->phys);
    vkGetPhysicalDeviceProperties(c->phys, &c->props);
    d->software = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU; /* lavapipe: never a default */
    vkGetPhysicalDeviceMemoryProperties(c->phys, &c->mem_props);

    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                             .pNext = &m3};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vkGetPhysicalDeviceProperties2(c->phys, &p2);
    c->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : ((VkDeviceSize)1 << 30);
    c->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
        (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT);
    const char *nosg = getenv("SLM_VK_NO_SUBGROUP"); /* test hook: force the shared-memory reductions */
    if (nosg && *nosg && *nosg != '0') c->subgroup_arith = false;
    pick_matmul(c);

    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vkGetPhysicalDeviceFeatures2(c->phys, &f2);
    c->storage16 = f11.storageBuffer16BitAccess;

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, NULL);
    VkQueueFamilyProperties *qf = calloc(nq, sizeof *qf);
    if (qf) {
        vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nq, qf);
        c->timestamps = qf[c->queue_family].timestampValidBits > 0 && c->props.limits.timestampPeriod > 0;
        free(qf);
    }

    const char *exts[1];
    uint32_t n_ext = 0;
    c->has_budget = has_device_ext(c->phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    if (c->has_budget) exts[n_ext++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;

    VkPhysicalDeviceVulkan11Features en11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                             .storageBuffer16BitAccess = f11.storageBuffer16BitAccess};
    VkPhysicalDeviceFeatures2 en = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &en11};
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = c->queue_family,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .pNext = &en,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci,
                              .enabledExtensionCount = n_ext,
                              .ppEnabledExtensionNames = exts};
    slm_status s = slm_vk_check(c, vkCreateDevice(c->phys, &dci, NULL, &c->device), "vkCreateDevice", err);
    if (!s) {
        vkGetDeviceQueue(c->device, c->queue_family, 0, &c->queue);
        s = slm_vk_memory_init(c, err);
    }
    if (!s) s = slm_vk_pipelines_init(c, err);
    if (s) {
        vk_close(d);
        return s;
    }
    snprintf(d->name, sizeof d->name, "vulkan:%d %.120s", index, c->props.deviceName);
    read_faults(c); /* only now: the hooks fail the caller's allocations, never the device's own at open */
    return SLM_OK;
}

static void vk_close(slm_device *d) {
    vk_ctx *c = d->ctx;
    if (!c) return;
    if (c->device) {
        vkDeviceWaitIdle(c->device);
        slm_vk_record_free(c);
        slm_vk_pipelines_free(c);
        slm_vk_memory_free(c);
        vkDestroyDevice(c->device, NULL);
    }
    if (c->instance) vkDestroyInstance(c->instance, NULL);
    free(c);
    d->ctx = NULL;
}

static void vk_memory(slm_device *d, size_t *free_b, size_t *total_b) {
    vk_ctx *c = d->ctx;
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 mp = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                            .pNext = c->has_budget ? &budget : NULL};
    vkGetPhysicalDeviceMemoryProperties2(c->phys, &mp);
    size_t total = 0, avail = 0;
    for (uint32_t h = 0; h < mp.memoryProperties.memoryHeapCount; h++) {
        if (!(mp.memoryProperties.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)) continue;
        total += mp.memoryProperties.memoryHeaps[h].size;
        if (c->has_budget) {
            VkDeviceSize b = budget.heapBudget[h], u = budget.heapUsage[h];
            avail += b > u ? b - u : 0;
        }
    }
    if (!c->has_budget) avail = total > c->allocated ? total - c->allocated : 0;
    if (avail > total) avail = total;
    *free_b = avail;
    *total_b = total;
}

slm_status slm_vk_wait_idle(slm_device *d, slm_error *err) {
    vk_ctx *c = d->ctx;
    if (c->lost) return slm_fail(err, SLM_ERR_DEVICE, "vulkan: the device was lost earlier; reopen it");
    return slm_vk_sync(d, err);
}

const slm_backend_ops slm_backend_vulkan = {
    .name = "vulkan",
    .count = vk_count,
    .open = vk_open,
    .close = vk_close,
    .memory = vk_memory,
    .supports = slm_vk_supports,
    .alloc = slm_vk_alloc,
    .wrap_host = NULL,
    .release = slm_vk_release,
    .upload = slm_vk_upload,
    .download = slm_vk_download,
    .run = slm_vk_run,
    .sync = slm_vk_sync,
    .measure_bandwidth = slm_vk_measure_bandwidth,
    .work_bytes = slm_vk_work_bytes,
    .work_reserve = slm_vk_work_reserve,
};
