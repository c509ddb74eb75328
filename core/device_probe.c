#include "device_probe.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Seconds for one mat-vec over the first n_rows of w (x and y sized for the full matrix). */
static double time_matvec(slm_device *dev, slm_dtype wtype, slm_buffer *w, slm_buffer *x, slm_buffer *y, int64_t k,
                          int64_t n_rows) {
    slm_op op;
    memset(&op, 0, sizeof op);
    op.kind = SLM_OP_MATMUL;
    op.layer = 0;
    op.name = "probe";
    op.src[0] = slm_tensor_make(w, 0, wtype, k, n_rows, 1, 1);
    op.src[1] = slm_tensor_make(x, 0, SLM_F32, k, 1, 1, 1);
    op.dst = slm_tensor_make(y, 0, SLM_F32, n_rows, 1, 1, 1);
    slm_error err;
    double t0 = now_s();
    if (slm_device_run(dev, &op, 1, &err) || slm_device_sync(dev, &err)) return 0;
    return now_s() - t0;
}

slm_device_probe slm_device_probe_run(slm_device *dev, slm_dtype wtype, int64_t k, size_t max_bytes) {
    slm_device_probe pr = {0, 0};
    size_t row = slm_dtype_row_bytes(wtype, k);
    int64_t n = row ? (int64_t)(max_bytes / row) : 0;
    if (n < 64) return pr;
    slm_buffer w = {0}, x = {0}, y = {0};
    slm_error err;
    size_t wbytes = (size_t)n * row;
    void *zeros = calloc(1, wbytes); /* zero weights (zero scales): finite, as costly to decode as any */
    if (!zeros) return pr;
    if (slm_buffer_alloc(dev, wbytes, &w, &err) || slm_buffer_alloc(dev, (size_t)k * 4, &x, &err) ||
        slm_buffer_alloc(dev, (size_t)n * 4, &y, &err))
        goto done;
    double t0 = now_s();
    if (slm_buffer_upload(&w, 0, zeros, wbytes, &err) || slm_buffer_upload(&x, 0, zeros, (size_t)k * 4, &err) ||
        slm_device_sync(dev, &err))
        goto done;
    double up = now_s() - t0;
    if (up > 0) pr.link_bandwidth = (double)wbytes / up;
    /* a slice first (warms the pipeline up); the whole matrix only when that stays short */
    int64_t slice = n / 16;
    double ts = time_matvec(dev, wtype, &w, &x, &y, k, slice);
    ts = time_matvec(dev, wtype, &w, &x, &y, k, slice);
    if (ts <= 0) goto done;
    if (ts * 16 > 0.25) {
        pr.matvec_bandwidth = (double)slice * (double)row / ts;
    } else {
        double t = time_matvec(dev, wtype, &w, &x, &y, k, n);
        if (t > 0) pr.matvec_bandwidth = (double)wbytes / t;
    }
done:
    slm_buffer_release(&w);
    slm_buffer_release(&x);
    slm_buffer_release(&y);
    free(zeros);
    return pr;
}
