/* Every Vulkan shader variant against kernels/ref through the generic op harness (tests/op_harness.h).
 * Skips (77) when the build has no Vulkan backend or the machine has no Vulkan device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "op_harness.h"
#include "test_util.h"

#ifdef SLM_HAVE_VULKAN
#include "vk_backend.h"
#endif

int main(void) {
#ifndef SLM_HAVE_VULKAN
    printf("test_vulkan_ops: built without Vulkan: skip\n");
    return SLM_TEST_SKIP;
#else
    slm_error err = {{0}};
    slm_device *dev = NULL;
    slm_status s = slm_device_open("vulkan:0", NULL, &dev, &err);
    if (s == SLM_ERR_NO_DEVICE) {
        printf("test_vulkan_ops: no Vulkan device (%s): skip\n", err.msg);
        return SLM_TEST_SKIP;
    }
    CHECK(s == SLM_OK, "open vulkan:0: %s: %s", slm_status_name(s), err.msg);
    if (s) return slm_test_finish("test_vulkan_ops");
    printf("device: %s\n", dev->name);
    size_t free_b = 0, total_b = 0;
    dev->ops->memory(dev, &free_b, &total_b);
    CHECK(total_b > 0 && free_b <= total_b, "memory: free %zu total %zu", free_b, total_b);

    /* Errors are statuses, not crashes: an absurd allocation and an out-of-range upload. */
    slm_buffer huge;
    s = dev->ops->alloc(dev, (size_t)1 << 62, &huge, &err);
    CHECK(s == SLM_ERR_DEVICE || s == SLM_ERR_NOMEM, "huge alloc returned %s", slm_status_name(s));
    slm_buffer small;
    s = dev->ops->alloc(dev, 64, &small, &err);
    CHECK(s == SLM_OK, "small alloc: %s", err.msg);
    if (!s) {
        char tmp[128] = {0};
        CHECK(dev->ops->upload(dev, &small, 32, tmp, 64, &err) == SLM_ERR_INVALID_ARG, "upload past the end");
        CHECK(dev->ops->download(dev, tmp, &small, 0, 65, &err) == SLM_ERR_INVALID_ARG, "download past the end");
        dev->ops->release(dev, &small);
    }

    slm_harness h;
    slm_harness_init(&h, dev);
    /* The shaders see the same quantized weights as the reference and accumulate in f32. */
    h.tol_matmul_quant = 1e-5;
    slm_harness_run_all(&h);

    /* Device timestamps of the last split (the chain test), when the device has them. */
    slm_vk_op_time times[16];
    int n = slm_vk_last_timings(dev, times, 16);
    for (int i = 0; i < n; i++) printf("  gpu time %-10s %8.3f ms\n", slm_op_kind_name(times[i].kind), times[i].ms);

    if (dev->ops->measure_bandwidth) {
        double bw = dev->ops->measure_bandwidth(dev);
        printf("read bandwidth: %.1f GB/s\n", bw / 1e9);
        CHECK(bw >= 0, "bandwidth %g", bw);
    }
    int rc = slm_harness_finish(&h, "test_vulkan_ops");
    slm_device_close(dev);
    if (rc) return rc;

    /* Second pass through the other code paths (read at open): shared-memory reductions instead of
     * subgroup ones, and staged transfers as on a discrete GPU (lavapipe and integrated GPUs map memory). */
    setenv("SLM_VK_NO_SUBGROUP", "1", 1);
    setenv("SLM_VK_STAGING", "1", 1);
    s = slm_device_open("vulkan:0", NULL, &dev, &err);
    CHECK(s == SLM_OK, "reopen vulkan:0: %s: %s", slm_status_name(s), err.msg);
    if (s) return slm_test_finish("test_vulkan_ops");
    slm_harness_init(&h, dev);
    h.tol_matmul_quant = 1e-5;
    slm_harness_run_all(&h);
    rc = slm_harness_finish(&h, "test_vulkan_ops (shared-memory reductions, staged transfers)");
    slm_device_close(dev);
    return rc;
#endif
}
