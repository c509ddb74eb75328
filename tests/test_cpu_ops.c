/* The CPU backend's ops (thread pool, dispatch, SIMD kernels) vs kernels/ref on random data, through the
 * same device-generic harness as the GPU backends, with 1 and 2 threads. */
#include "op_harness.h"

int main(void) {
    int failures = 0;
    for (int threads = 1; threads <= 2; threads++) {
        slm_device_config cfg = {.n_threads = threads};
        slm_device *dev;
        slm_error err = {{0}};
        if (slm_device_open("cpu", &cfg, &dev, &err)) {
            fprintf(stderr, "cannot open the cpu device: %s\n", err.msg);
            return 1;
        }
        printf("device: %s\n", dev->name);
        slm_harness h;
        slm_harness_init(&h, dev);
        slm_harness_run_all(&h);
        slm_harness_run_long_positions(&h);
        slm_harness_run_gemma(&h);
        slm_harness_run_kv_types(&h);
        failures += slm_harness_finish(&h, threads == 1 ? "test_cpu_ops (1 thread)" : "test_cpu_ops (2 threads)");
        slm_device_close(dev);
    }
    return failures ? 1 : 0;
}
