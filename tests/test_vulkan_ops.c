/* Every Vulkan shader variant against kernels/ref through the generic op harness (tests/op_harness.h), each
 * mat-mul strategy forced in turn on the one device (lane mat-vec, workgroup mat-vec with and without
 * subgroups, tiled), then the failure paths through the real backend (injected allocation failure and
 * device loss) and the persistent pipeline cache. Skips (77) when the build has no Vulkan backend or the
 * machine has no Vulkan device. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "op_harness.h"
#include "test_util.h"

#ifdef SLM_HAVE_VULKAN
#include "vk_backend.h"

/* The backend reads its knobs at open; each pass sets them, opens, and clears them again. */
static const char *const k_knobs[] = {"SLM_VK_NO_SUBGROUP", "SLM_VK_STAGING",          "SLM_VK_MATVEC",
                                      "SLM_VK_TILED_MIN",   "SLM_VK_FAIL_ALLOC_AFTER", "SLM_VK_FAKE_DEVICE_LOST"};

static slm_device *open_with(const char *const *env, const char *what) {
    for (size_t i = 0; i < sizeof k_knobs / sizeof k_knobs[0]; i++) unsetenv(k_knobs[i]);
    for (int i = 0; env && env[i]; i += 2) setenv(env[i], env[i + 1], 1);
    slm_error err = {{0}};
    slm_device *dev = NULL;
    slm_status s = slm_device_open("vulkan:0", NULL, &dev, &err);
    for (size_t i = 0; i < sizeof k_knobs / sizeof k_knobs[0]; i++) unsetenv(k_knobs[i]);
    CHECK(s == SLM_OK, "%s: open vulkan:0: %s: %s", what, slm_status_name(s), err.msg);
    return s ? NULL : dev;
}

/* One harness pass: everything, or the mat-muls only; with aligned_too the mat-muls again at a 16-aligned
 * operand offset, which reaches the lane mat-vec's vec4 / whole-word variants. */
static void pass(const char *const *env, const char *what, bool all, bool aligned_too) {
    slm_device *dev = open_with(env, what);
    if (!dev) return;
    slm_harness h;
    slm_harness_init(&h, dev);
    h.tol_matmul_quant = 1e-5; /* the shaders see the reference's quantized weights and accumulate in f32 */
    /* rope.comp keeps the angle as a float pair (lavapipe: NMSE 5e-15 at 128k) but takes float sin/cos,
     * whose error hardware bounds near 2^-21 (NMSE ~1e-13) and Vulkan only on [-pi, pi]; an angle formed in
     * plain float misses by 6e-10 at 4k and 8e-7 at 128k, so this limit still tells the two apart. */
    h.tol_rope_long = 1e-10;
    if (all) {
        slm_harness_run_all(&h);
        slm_harness_run_long_positions(&h);
        slm_harness_run_gemma(&h);
        slm_harness_run_kv_types(&h); /* no quantized KV shader yet: each check is refused (a skip) */
        /* a weight past one binding's range (lavapipe: 128 MiB), as Gemma 3's tied head (178 MB of Q8_0):
         * recorded as row ranges that each fit */
        slm_harness_matmul(&h, SLM_Q8_0, 1024, 140000, 1, true);
        slm_harness_matmul(&h, SLM_Q8_0, 1024, 140000, 3, false);
    } else {
        for (int i = 0; i < SLM_HARNESS_N_WTYPES; i++) {
            slm_harness_run_matmuls(&h, slm_harness_weight_types[i]);
            slm_harness_run_batches(&h, slm_harness_weight_types[i]);
        }
    }
    h.offset = 64;
    for (int i = 0; i < SLM_HARNESS_N_WTYPES && aligned_too; i++) {
        slm_harness_run_matmuls(&h, slm_harness_weight_types[i]);
        slm_harness_run_batches(&h, slm_harness_weight_types[i]);
    }
    slm_harness_finish(&h, what);
    if (all) {
        /* device timestamps of the last split, when the device has them */
        slm_vk_op_time times[16];
        int n = slm_vk_last_timings(dev, times, 16);
        for (int i = 0; i < n; i++) printf("  gpu time %-10s %8.3f ms\n", slm_op_kind_name(times[i].kind), times[i].ms);
    }
    slm_device_close(dev);
}

/* y [N] = W [K, N] . x (f32) with W and x in buffer a, y in buffer b; returns run's status (sync'd when
 * do_sync) and checks the values when everything succeeded. */
enum { MK = 64, MN = 8 };
static slm_status small_matmul(slm_device *dev, slm_buffer *a, slm_buffer *b, bool do_sync, bool check,
                               slm_error *err) {
    static float w[MK * MN], x[MK], y[MN];
    uint64_t seed = 7;
    slm_test_fill(w, MK * MN, &seed, 1.0f);
    slm_test_fill(x, MK, &seed, 1.0f);
    slm_status s = slm_buffer_upload(a, 0, w, sizeof w, err);
    if (!s) s = slm_buffer_upload(a, sizeof w, x, sizeof x, err);
    if (s) return s;
    slm_op op;
    memset(&op, 0, sizeof op);
    op.kind = SLM_OP_MATMUL;
    op.name = "fault_matmul";
    op.src[0] = slm_tensor_make(a, 0, SLM_F32, MK, MN, 1, 1);
    op.src[1] = slm_tensor_make(a, sizeof w, SLM_F32, MK, 1, 1, 1);
    op.dst = slm_tensor_make(b, 0, SLM_F32, MN, 1, 1, 1);
    s = slm_device_run(dev, &op, 1, err);
    if (!s && do_sync) s = slm_device_sync(dev, err);
    if (!s && check) {
        s = slm_buffer_download(b, 0, y, sizeof y, err);
        float want[MN];
        for (int r = 0; r < MN; r++) {
            want[r] = 0;
            for (int k = 0; k < MK; k++) want[r] += w[r * MK + k] * x[k];
        }
        CHECK(!s && slm_test_nmse(y, want, MN) < 1e-10, "matmul after the fault: nmse %g", slm_test_nmse(y, want, MN));
    }
    return s;
}

/* SLM_VK_FAIL_ALLOC_AFTER=2: the third buffer fails inside the real allocation path with a readable
 * status; the device keeps working with the buffers it has, and later allocations fail the same way. */
static void test_alloc_fault(void) {
    const char *env[] = {"SLM_VK_FAIL_ALLOC_AFTER", "2", NULL};
    slm_device *dev = open_with(env, "alloc fault");
    if (!dev) return;
    slm_error err = {{0}};
    slm_buffer a, b, c;
    CHECK(slm_buffer_alloc(dev, 4096, &a, &err) == SLM_OK, "first alloc: %s", err.msg);
    CHECK(slm_buffer_alloc(dev, 4096, &b, &err) == SLM_OK, "second alloc: %s", err.msg);
    memset(&err, 0, sizeof err);
    slm_status s = slm_buffer_alloc(dev, 4096, &c, &err);
    printf("injected allocation failure: %s: %s\n", slm_status_name(s), err.msg);
    CHECK(s == SLM_ERR_DEVICE, "third alloc returned %s", slm_status_name(s));
    CHECK(strstr(err.msg, "out of device memory") && strstr(err.msg, "4096"), "message: '%s'", err.msg);
    CHECK(c.handle == NULL && c.size == 0, "a failed alloc leaves an empty buffer");
    slm_buffer_release(&c); /* harmless on the empty buffer */
    s = small_matmul(dev, &a, &b, true, true, &err);
    CHECK(s == SLM_OK, "the device must still run after a failed allocation: %s", err.msg);
    CHECK(slm_buffer_alloc(dev, 64, &c, &err) == SLM_ERR_DEVICE, "later allocations fail the same way");
    slm_buffer_release(&a);
    slm_buffer_release(&b);
    slm_device_close(dev);
}

/* SLM_VK_FAKE_DEVICE_LOST=1: the first split's wait reports a lost device; run itself succeeded (it is
 * asynchronous). Every later call fails with SLM_ERR_DEVICE and says so; release and close still work. */
static void test_device_lost(void) {
    const char *env[] = {"SLM_VK_FAKE_DEVICE_LOST", "1", NULL};
    slm_device *dev = open_with(env, "device lost");
    if (!dev) return;
    slm_error err = {{0}};
    slm_buffer a, b;
    bool ok = slm_buffer_alloc(dev, 4096, &a, &err) == SLM_OK && slm_buffer_alloc(dev, 4096, &b, &err) == SLM_OK;
    CHECK(ok, "alloc before the loss: %s", err.msg);
    if (!ok) {
        slm_device_close(dev);
        return;
    }
    slm_status s = small_matmul(dev, &a, &b, false, false, &err);
    CHECK(s == SLM_OK, "run before the loss is reported: %s", err.msg);
    memset(&err, 0, sizeof err);
    s = slm_device_sync(dev, &err);
    printf("injected device loss: %s: %s\n", slm_status_name(s), err.msg);
    CHECK(s == SLM_ERR_DEVICE && strstr(err.msg, "lost"), "sync: %s '%s'", slm_status_name(s), err.msg);
    float tmp[MN] = {0};
    slm_buffer c;
    memset(&err, 0, sizeof err);
    CHECK(small_matmul(dev, &a, &b, true, false, &err) == SLM_ERR_DEVICE && strstr(err.msg, "lost"),
          "upload/run after the loss: '%s'", err.msg);
    CHECK(slm_device_run(dev, NULL, 0, &err) == SLM_ERR_DEVICE, "run after the loss");
    CHECK(slm_device_sync(dev, &err) == SLM_ERR_DEVICE, "sync after the loss");
    CHECK(slm_buffer_download(&b, 0, tmp, sizeof tmp, &err) == SLM_ERR_DEVICE, "download after the loss");
    CHECK(slm_buffer_alloc(dev, 64, &c, &err) == SLM_ERR_DEVICE && c.handle == NULL, "alloc after the loss");
    slm_vk_op_time t[4];
    CHECK(slm_vk_last_timings(dev, t, 4) == 0, "no timings from a lost split");
    slm_buffer_release(&a);
    slm_buffer_release(&b);
    slm_device_close(dev);
}

/* Path of the one cache file under dir/slm (false when there is not exactly one file, or a temp is left). */
static bool cache_file(const char *dir, char *path, size_t len) {
    char sub[64];
    snprintf(sub, sizeof sub, "%s/slm", dir);
    DIR *d = opendir(sub);
    if (!d) return false;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            n++;
            snprintf(path, len, "%.63s/%.255s", sub, e->d_name);
        }
    closedir(d);
    return n == 1 && strstr(path, ".tmp.") == NULL;
}

/* The cache file's header names the driver: version 1, its size, and the UUID that is also in the name. */
static bool cache_valid(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    uint8_t h[32];
    bool ok = fread(h, 1, 32, f) == 32;
    fclose(f);
    uint32_t size, version;
    memcpy(&size, h, 4);
    memcpy(&version, h + 4, 4);
    char uuid[33];
    for (int i = 0; i < 16; i++) snprintf(uuid + 2 * i, 3, "%02x", h[16 + i]);
    return ok && size >= 32 && version == 1 && strstr(path, uuid) != NULL;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void run_once(const char *what) {
    slm_device *dev = open_with(NULL, what);
    if (!dev) return;
    slm_error err = {{0}};
    slm_buffer a, b;
    if (slm_buffer_alloc(dev, 4096, &a, &err) == SLM_OK) {
        if (slm_buffer_alloc(dev, 4096, &b, &err) == SLM_OK) {
            CHECK(small_matmul(dev, &a, &b, true, true, &err) == SLM_OK, "%s: matmul: %s", what, err.msg);
            slm_buffer_release(&b);
        }
        slm_buffer_release(&a);
    }
    slm_device_close(dev);
}

/* Written at close under $XDG_CACHE_HOME/slm; a garbage or truncated file is ignored and replaced; nothing
 * is written with SLM_VK_NO_PIPELINE_CACHE=1. */
static void test_pipeline_cache(void) {
    char dir[] = "/tmp/slm_vk_cache_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("SLM_VK_NO_PIPELINE_CACHE");
    char path[700] = "";
    run_once("pipeline cache: first run");
    CHECK(cache_file(dir, path, sizeof path), "one cache file under %s/slm after the first run", dir);
    CHECK(cache_valid(path), "the cache file %s has a valid header", path);
    run_once("pipeline cache: second run (loads it)");
    CHECK(cache_file(dir, path, sizeof path) && cache_valid(path), "still one valid file");
    char garbage[100];
    memset(garbage, 0x5a, sizeof garbage);
    write_file(path, garbage, sizeof garbage);
    run_once("pipeline cache: garbage file");
    CHECK(cache_file(dir, path, sizeof path) && cache_valid(path), "a garbage cache is ignored and rewritten");
    write_file(path, garbage, 10);
    run_once("pipeline cache: truncated file");
    CHECK(cache_file(dir, path, sizeof path) && cache_valid(path), "a truncated cache is ignored and rewritten");
    unlink(path);
    setenv("SLM_VK_NO_PIPELINE_CACHE", "1", 1);
    run_once("pipeline cache: off");
    CHECK(!cache_file(dir, path, sizeof path), "SLM_VK_NO_PIPELINE_CACHE=1 writes nothing");
    char sub[64];
    snprintf(sub, sizeof sub, "%s/slm", dir);
    rmdir(sub);
    rmdir(dir);
    unsetenv("XDG_CACHE_HOME");
}
#endif

int main(void) {
#ifndef SLM_HAVE_VULKAN
    printf("test_vulkan_ops: built without Vulkan: skip\n");
    return SLM_TEST_SKIP;
#else
    setenv("SLM_VK_NO_PIPELINE_CACHE", "1", 1); /* leave the user's cache alone (test_pipeline_cache aside) */
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
    slm_device_memory(dev, &free_b, &total_b);
    CHECK(total_b > 0 && free_b <= total_b, "memory: free %zu total %zu", free_b, total_b);

    /* Errors are statuses, not crashes: an absurd allocation and an out-of-range upload. */
    slm_buffer huge;
    s = slm_buffer_alloc(dev, (size_t)1 << 62, &huge, &err);
    CHECK(s == SLM_ERR_DEVICE || s == SLM_ERR_NOMEM, "huge alloc returned %s", slm_status_name(s));
    slm_buffer small;
    s = slm_buffer_alloc(dev, 64, &small, &err);
    CHECK(s == SLM_OK, "small alloc: %s", err.msg);
    if (!s) {
        char tmp[128] = {0};
        CHECK(slm_buffer_upload(&small, 32, tmp, 64, &err) == SLM_ERR_INVALID_ARG, "upload past the end");
        CHECK(slm_buffer_download(&small, 0, tmp, 65, &err) == SLM_ERR_INVALID_ARG, "download past the end");
        slm_buffer_release(&small);
    }
    if (dev->ops->measure_bandwidth) {
        double bw = slm_device_measure_bandwidth(dev);
        printf("read bandwidth: %.1f GB/s\n", bw / 1e9);
        CHECK(bw >= 0, "bandwidth %g", bw);
    }
    slm_device_close(dev);

    /* The lane mat-vec (what CPU drivers get) with the device's tiled threshold, then every other mat-mul
     * path forced on this device: the workgroup mat-vec with subgroup and with shared-memory reductions
     * (what GPUs get), and the tiled shader at every batch size. The shared-memory pass also stages
     * transfers as on a discrete GPU (lavapipe and integrated GPUs map memory). */
    const char *lane[] = {"SLM_VK_MATVEC", "lane", NULL};
    pass(lane, "test_vulkan_ops (lane mat-vec, then tiled)", true, true);
    const char *group[] = {"SLM_VK_MATVEC", "group", "SLM_VK_TILED_MIN", "0", NULL};
    pass(group, "test_vulkan_ops (workgroup mat-vec, subgroups)", false, false);
    const char *shared[] = {
        "SLM_VK_MATVEC", "group", "SLM_VK_TILED_MIN", "0", "SLM_VK_NO_SUBGROUP", "1", "SLM_VK_STAGING", "1", NULL};
    pass(shared, "test_vulkan_ops (shared-memory reductions, staged transfers)", true, false);
    const char *tiled[] = {"SLM_VK_TILED_MIN", "1", NULL};
    pass(tiled, "test_vulkan_ops (tiled at every batch)", false, false);

    test_alloc_fault();
    test_device_lost();
    test_pipeline_cache();
    return slm_test_finish("test_vulkan_ops");
#endif
}
