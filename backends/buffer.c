/* The calls the rest of slm makes on devices and buffers: thin wrappers over slm_backend_ops that check
 * what every backend would otherwise check on its own (a live buffer, a byte range inside it) and give one
 * message for it. Backends keep their own range checks as memory-safety guards. */
#include <string.h>

#include "backend.h"
#include "error.h"

slm_status slm_buffer_alloc(slm_device *d, size_t bytes, slm_buffer *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    if (!d) return slm_fail(err, SLM_ERR_INVALID_ARG, "allocating %zu bytes: no device", bytes);
    return d->ops->alloc(d, bytes, out, err);
}

void slm_buffer_release(slm_buffer *b) {
    if (!b) return;
    /* a zeroed buffer (never allocated, or a failed allocation) has nothing to give back; a 0-byte
     * allocation may still hold a handle */
    if (b->dev && (b->size || b->handle)) b->dev->ops->release(b->dev, b);
    memset(b, 0, sizeof *b);
}

/* [off, off + n) lies inside the live buffer b. */
static slm_status check_range(const slm_buffer *b, size_t off, size_t n, const char *what, slm_error *err) {
    if (!b || !b->dev)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s of %zu bytes: the buffer is not allocated", what, n);
    if (off > b->size || n > b->size - off)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: %zu bytes at offset %zu are outside the %zu-byte buffer on %s",
                        what, n, off, b->size, b->dev->name);
    return SLM_OK;
}

slm_status slm_buffer_upload(slm_buffer *b, size_t off, const void *src, size_t n, slm_error *err) {
    slm_status s = check_range(b, off, n, "upload", err);
    return s ? s : b->dev->ops->upload(b->dev, b, off, src, n, err);
}

slm_status slm_buffer_download(const slm_buffer *b, size_t off, void *dst, size_t n, slm_error *err) {
    slm_status s = check_range(b, off, n, "download", err);
    return s ? s : b->dev->ops->download(b->dev, dst, b, off, n, err);
}

slm_status slm_tensor_upload(const slm_tensor *t, const void *src, size_t n, slm_error *err) {
    if (!t->buf) return slm_fail(err, SLM_ERR_INVALID_ARG, "upload of %zu bytes to a tensor without a buffer", n);
    return slm_buffer_upload(t->buf, t->offset, src, n, err);
}

slm_status slm_tensor_download(const slm_tensor *t, void *dst, size_t n, slm_error *err) {
    if (!t->buf) return slm_fail(err, SLM_ERR_INVALID_ARG, "download of %zu bytes from a tensor without a buffer", n);
    return slm_buffer_download(t->buf, t->offset, dst, n, err);
}

slm_status slm_device_run(slm_device *d, const slm_op *ops, int n_ops, slm_error *err) {
    if (n_ops < 0 || (n_ops > 0 && !ops))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "run on %s: bad op list (%d ops)", d->name, n_ops);
    return d->ops->run(d, ops, n_ops, err);
}

slm_status slm_device_sync(slm_device *d, slm_error *err) { return d->ops->sync(d, err); }

void slm_device_memory(slm_device *d, size_t *free_bytes, size_t *total_bytes) {
    size_t fr = 0, tot = 0;
    if (d->ops->memory) d->ops->memory(d, &fr, &tot);
    if (free_bytes) *free_bytes = fr;
    if (total_bytes) *total_bytes = tot;
}

bool slm_device_supports(slm_device *d, const slm_op *op) {
    return slm_op_check(op, NULL) == SLM_OK && d->ops->supports(d, op);
}

slm_status slm_buffer_wrap_host(slm_device *d, void *p, size_t n, slm_buffer *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    if (!d->ops->wrap_host) return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s cannot use host memory in place", d->name);
    return d->ops->wrap_host(d, p, n, out, err);
}

bool slm_device_measure_peak(slm_device *d, slm_read_peak *out) {
    memset(out, 0, sizeof *out);
    if (!d->ops->measure_bandwidth || !d->ops->measure_bandwidth(d, out) || !(out->best > 0)) {
        memset(out, 0, sizeof *out);
        return false;
    }
    return true;
}

double slm_device_measure_bandwidth(slm_device *d) {
    slm_read_peak pk;
    return slm_device_measure_peak(d, &pk) ? pk.best : 0;
}

uint64_t slm_device_work_bytes(slm_device *d, const slm_op *shapes, int n_shapes) {
    return d->ops->work_bytes && n_shapes > 0 ? d->ops->work_bytes(d, shapes, n_shapes) : 0;
}

slm_status slm_device_work_reserve(slm_device *d, const slm_op *shapes, int n_shapes, slm_error *err) {
    return d->ops->work_reserve ? d->ops->work_reserve(d, shapes, n_shapes < 0 ? 0 : n_shapes, err) : SLM_OK;
}
