/* The compiled-in backends and opening a device by its spec ("cpu", "vulkan:0", "cuda:1"). */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

extern const slm_backend_ops slm_backend_cpu;
#ifdef SLM_HAVE_VULKAN
extern const slm_backend_ops slm_backend_vulkan;
#endif
#ifdef SLM_HAVE_CUDA
extern const slm_backend_ops slm_backend_cuda;
#endif

static const slm_backend_ops *const k_backends[] = {
    &slm_backend_cpu,
#ifdef SLM_HAVE_VULKAN
    &slm_backend_vulkan,
#endif
#ifdef SLM_HAVE_CUDA
    &slm_backend_cuda,
#endif
    NULL,
};

const slm_backend_ops *const *slm_backends(void) { return k_backends; }

slm_status slm_device_open(const char *spec, const slm_device_config *cfg, slm_device **out, slm_error *err) {
    *out = NULL;
    if (!spec || !*spec) spec = "cpu";
    size_t name_len = strcspn(spec, ":");
    int index = 0;
    if (spec[name_len] == ':') {
        char *end;
        long v = strtol(spec + name_len + 1, &end, 10);
        if (*end || end == spec + name_len + 1 || v < 0 || v > 64)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "bad device '%s' (expected e.g. cpu, vulkan:0, cuda:0)", spec);
        index = (int)v;
    }
    for (int i = 0; k_backends[i]; i++) {
        const slm_backend_ops *ops = k_backends[i];
        if (strlen(ops->name) != name_len || strncmp(ops->name, spec, name_len)) continue;
        int n = ops->count();
        if (index >= n)
            return slm_fail(err, SLM_ERR_NO_DEVICE, "device '%s' not found (%d %s device%s present)", spec, n,
                            ops->name, n == 1 ? "" : "s");
        slm_device *d = calloc(1, sizeof *d);
        if (!d) return slm_fail(err, SLM_ERR_NOMEM, "out of memory opening device '%s'", spec);
        d->ops = ops;
        d->index = index;
        slm_device_config def = {0};
        slm_status s = ops->open(d, index, cfg ? cfg : &def, err);
        if (s) {
            free(d);
            return s;
        }
        *out = d;
        return SLM_OK;
    }
    return slm_fail(err, SLM_ERR_NO_DEVICE, "device kind '%.*s' is not compiled into this build", (int)name_len, spec);
}

void slm_device_close(slm_device *d) {
    if (!d) return;
    d->ops->close(d);
    free(d);
}
