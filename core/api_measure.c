/* The measurement block of the public API (include/slm.h, "measurement (slm-bench)"): what slm-bench needs
 * from the engine besides loading and running a model, so that it builds on slm.h alone. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_bandwidth.h"
#include "error.h"
#include "model.h"

const char *slm_model_file_type(const slm_model *m) {
    /* the values of general.file_type that GGUF files in use carry, with the names their writers print */
    static const struct {
        uint32_t id;
        const char *name;
    } FT[] = {
        {0, "F32"},
        {1, "F16"},
        {2, "Q4_0"},
        {3, "Q4_1"},
        {7, "Q8_0"},
        {8, "Q5_0"},
        {9, "Q5_1"},
        {14, "Q4_K - Small"},
        {15, "Q4_K - Medium"},
        {16, "Q5_K - Small"},
        {17, "Q5_K - Medium"},
        {18, "Q6_K"},
        {32, "BF16"},
    };
    uint64_t id;
    if (!m || !m->gguf || !slm_gguf_get_u64(m->gguf, "general.file_type", &id)) return NULL;
    for (size_t i = 0; i < sizeof FT / sizeof FT[0]; i++)
        if (FT[i].id == id) return FT[i].name;
    return NULL;
}

uint64_t slm_model_kv_read_bytes(const slm_model *m) {
    const slm_hparams *hp = &m->hp;
    int64_t n = (int64_t)hp->n_head_kv * hp->head_dim;
    return (uint64_t)hp->n_layer *
        ((uint64_t)slm_dtype_row_bytes(m->cfg.type_k, n) + slm_dtype_row_bytes(m->cfg.type_v, n));
}

int slm_backends_list(slm_backend_info *out, int max) {
    int n = 0;
    for (const slm_backend_ops *const *b = slm_backends(); b && *b; b++, n++)
        if (out && n < max) out[n] = (slm_backend_info){(*b)->name, (*b)->count ? (*b)->count() : 0};
    return n;
}

slm_status slm_device_peak_read(const char *spec, int n_threads, size_t bytes, slm_peak_read *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    slm_device *d = NULL;
    slm_device_config cfg = {.n_threads = n_threads};
    /* opened on the CPU too: the spec is checked the same way and the name is the device's */
    slm_status st = slm_device_open(spec, &cfg, &d, err);
    if (st) return st;
    snprintf(out->name, sizeof out->name, "%s", d->name);
    bool cpu = !strcmp(d->ops->name, "cpu");
    slm_read_peak pk = {0};
    bool ok = !cpu && slm_device_measure_peak(d, &pk);
    /* the CPU device's idle pool is closed first, so that only the measurement's threads run */
    slm_device_close(d);
    if (cpu) {
        size_t buf = bytes ? bytes : SLM_CPU_PEAK_READ_BYTES;
        ok = slm_cpu_peak_read(n_threads, buf, 3, &pk);
        if (!ok)
            return slm_fail(err, SLM_ERR_NOMEM, "%s: no peak read (cannot allocate %zu bytes or start the threads)",
                            out->name, buf);
    } else if (!ok) {
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: the backend has no bandwidth measurement", out->name);
    }
    out->bytes_per_s = pk.best;
    out->spread = pk.spread;
    out->n_kernels = pk.n_kernels;
    snprintf(out->kernel, sizeof out->kernel, "%s", pk.kernel);
    return SLM_OK;
}
