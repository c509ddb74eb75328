#include "model_place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "device_probe.h"
#include "plan.h"
#include "scratch.h"

#define ALIGN_UP(x) (((x) + 255) & ~(uint64_t)255)

void slm_model_plan_input(const slm_model *m, uint64_t *layer_bytes, slm_plan_model *pm) {
    const slm_hparams *hp = &m->hp;
    memset(pm, 0, sizeof *pm);
    pm->n_layer = hp->n_layer;
    for (int i = 0; i < hp->n_layer; i++) layer_bytes[i] = m->layers[i].weight_bytes;
    pm->layer_bytes = layer_bytes;
    pm->output_bytes = m->output_bytes;
    pm->embd_row_bytes = m->tok_embd.nb[1];
    pm->kv_bytes_per_layer = 2ull * slm_kv_row_bytes(hp) * (uint64_t)m->n_ctx;
    pm->scratch_bytes = slm_scratch_layout(hp, m->n_batch, false, NULL, NULL);
    pm->logits_bytes = (uint64_t)hp->n_vocab * (uint64_t)m->n_batch * 4;
    pm->boundary_bytes = (uint64_t)hp->n_embd * 4;
}

/* The tensors device d must hold: its layers' weights and, on the output device, the head. */
static int device_tensors(slm_model *m, int d, slm_tensor **list, int cap) {
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        slm_layer *L = &m->layers[il];
        if (L->device != d) continue;
        slm_tensor *all[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk,
                             &L->bv, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (all[i]->buf && n < cap) list[n++] = all[i];
    }
    if (m->output_device == d && n + 2 <= cap) {
        list[n++] = &m->output_norm;
        list[n++] = &m->output;
    }
    if (m->rope_freqs.buf && n < cap) {
        m->rope_freqs_on[d] = m->rope_freqs;
        list[n++] = &m->rope_freqs_on[d];
    }
    return n;
}

/* Device d's tensors and their offsets in its one weight buffer. */
typedef struct dev_upload {
    slm_tensor **list;
    uint64_t *offs;
    int n;
} dev_upload;

/* Bytes a context will allocate on device d beside the weights: the KV cache of its layers and the scratch
 * (with the logits on the output device). Same sizes as core/context.c asks for. */
static uint64_t runtime_bytes(const slm_model *m, int d) {
    const slm_hparams *hp = &m->hp;
    uint64_t per = (uint64_t)slm_kv_row_bytes(hp) * (uint64_t)m->n_ctx;
    uint64_t n = 0;
    for (int i = 0; i < hp->n_layer; i++) n += m->layers[i].device == d;
    return 2 * n * per + slm_scratch_layout(hp, m->n_batch, m->output_device == d, NULL, NULL);
}

/* Holds the runtime allocation once while the weights are resident, so a device whose free memory was
 * overstated fails here, where the loader can still place fewer layers, not later in slm_context_create. */
static slm_status reserve_runtime(slm_model *m, int d, slm_error *err) {
    slm_device *dev = m->devices[d];
    uint64_t bytes = runtime_bytes(m, d);
    if (!bytes) return SLM_OK;
    slm_buffer trial = {0};
    slm_error e = {{0}};
    if (dev->ops->alloc(dev, (size_t)bytes, &trial, &e))
        return slm_fail(err, SLM_ERR_DEVICE, "%s: no room for the KV cache and scratch (%.1f MiB) beside the weights: %s",
                        dev->name, bytes / 1048576.0, e.msg);
    dev->ops->release(dev, &trial);
    return SLM_OK;
}

/* Allocates device d's weight buffer and copies its tensors there, without moving any binding yet. */
static slm_status upload_device(slm_model *m, int d, dev_upload *u, slm_error *err) {
    slm_device *dev = m->devices[d];
    int cap = m->hp.n_layer * 12 + 8;
    u->list = malloc((size_t)cap * sizeof *u->list);
    u->offs = malloc((size_t)cap * sizeof *u->offs);
    if (!u->list || !u->offs) return slm_fail(err, SLM_ERR_NOMEM, "out of memory placing weights");
    u->n = device_tensors(m, d, u->list, cap);
    uint64_t total = 0;
    for (int i = 0; i < u->n; i++) {
        u->offs[i] = total;
        total += ALIGN_UP(slm_tensor_bytes(u->list[i]));
    }
    if (total == 0) return SLM_OK;
    slm_status s;
    if (m->dbg.fault_alloc_limit && total > m->dbg.fault_alloc_limit)
        s = slm_fail(err, SLM_ERR_DEVICE, "%s: out of device memory allocating %.1f MiB (simulated)", dev->name,
                     total / 1048576.0);
    else
        s = dev->ops->alloc(dev, (size_t)total, &m->dev_weights[d], err);
    if (!s) s = reserve_runtime(m, d, err);
    for (int i = 0; i < u->n && !s; i++) {
        const uint8_t *src = (const uint8_t *)u->list[i]->buf->host + u->list[i]->offset;
        s = dev->ops->upload(dev, &m->dev_weights[d], (size_t)u->offs[i], src, slm_tensor_bytes(u->list[i]), err);
    }
    if (!s) s = dev->ops->sync(dev, err);
    return s;
}

/* Uploads every GPU device's share; the bindings move only when all of them worked, so a failure leaves
 * the model bound to the mapping. *failed is the device that refused. */
static slm_status upload_all(slm_model *m, int *failed, slm_error *err) {
    dev_upload up[SLM_MAX_DEVICES];
    memset(up, 0, sizeof up);
    slm_status s = SLM_OK;
    for (int d = 1; d < m->n_devices && !s; d++) {
        s = upload_device(m, d, &up[d], err);
        if (s) *failed = d;
    }
    for (int d = 1; d < m->n_devices; d++) {
        if (s && m->dev_weights[d].size) {
            m->devices[d]->ops->release(m->devices[d], &m->dev_weights[d]);
            memset(&m->dev_weights[d], 0, sizeof m->dev_weights[d]);
        }
        for (int i = 0; i < up[d].n && !s; i++) {
            up[d].list[i]->buf = &m->dev_weights[d];
            up[d].list[i]->offset = (size_t)up[d].offs[i];
        }
        free(up[d].list);
        free(up[d].offs);
    }
    return s;
}

/* "3,1" -> shares[0..n) (the GPU devices' shares of the GPU layers). */
static slm_status parse_split(const char *text, int n, float *shares, slm_error *err) {
    const char *p = text;
    for (int i = 0; i < n; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0 || v > 1e6)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': expected %d non-negative numbers", text, n);
        shares[i] = (float)v;
        p = end;
        if (i + 1 < n) {
            if (*p != ',')
                return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': expected %d numbers (one per GPU)",
                                text, n);
            p++;
        }
    }
    if (*p) return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': more numbers than GPUs (%d)", text, n);
    return SLM_OK;
}

/* Opens the GPU devices of a comma-separated list ("vulkan:0", "cuda:0,cuda:1") as devices 1.. */
static slm_status open_gpus(slm_model *m, const char *list, const slm_device_config *cfg, slm_error *err) {
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char spec[64];
        if (len == 0 || len >= sizeof spec)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "device list '%s': empty or overlong entry", list);
        memcpy(spec, p, len);
        spec[len] = 0;
        if (m->n_devices >= SLM_MAX_DEVICES)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "device list '%s': at most %d GPUs", list, SLM_MAX_DEVICES - 1);
        slm_status s = slm_device_open(spec, cfg, &m->devices[m->n_devices], err);
        if (s) return s;
        m->n_devices++;
        p += len + (comma ? 1 : 0);
    }
    return SLM_OK;
}

/* No device named: the first hardware GPU, CUDA before Vulkan (which may show the same card again).
 * Software renderers (lavapipe) are slower than the CPU backend, so only an explicit --device picks them.
 * Finding none is not an error: the model runs on the CPU. */
static void open_default_gpu(slm_model *m, const slm_device_config *cfg) {
    static const char *const kinds[] = {"cuda", "vulkan"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (const slm_backend_ops *const *b = slm_backends(); *b; b++) {
            if (strcmp((*b)->name, kinds[k])) continue;
            int n = (*b)->count();
            for (int i = 0; i < n; i++) {
                char spec[32];
                snprintf(spec, sizeof spec, "%s:%d", kinds[k], i);
                slm_device *d = NULL;
                slm_error e;
                if (slm_device_open(spec, cfg, &d, &e)) continue;
                if (d->software) {
                    slm_device_close(d);
                    continue;
                }
                m->devices[m->n_devices++] = d;
                return;
            }
        }
}

static slm_status measure(slm_model *m, slm_plan_device *pd) {
    for (int d = 0; d < m->n_devices; d++) {
        slm_device *dev = m->devices[d];
        size_t fr = 0, tot = 0;
        dev->ops->memory(dev, &fr, &tot);
        pd[d].budget = d > 0 && m->params.vram_budget ? m->params.vram_budget : fr;
        /* the rate of the device's own mat-vec (what decode is bound by), else its raw read bandwidth */
        slm_device_probe pr = slm_device_probe_run(dev, m->layers[0].w_up.type, m->hp.n_embd, (size_t)128 << 20);
        pd[d].bandwidth = pr.matvec_bandwidth > 0                 ? pr.matvec_bandwidth
                          : dev->ops->measure_bandwidth ? dev->ops->measure_bandwidth(dev)
                                                        : 0;
        /* host -> device copies; a PCIe 3/4 x16 order of magnitude when the probe could not tell */
        pd[d].link_bandwidth = d > 0 && pr.link_bandwidth > 0 ? pr.link_bandwidth : 10e9;
        pd[d].link_latency = 20e-6;
    }
    return SLM_OK;
}

slm_status slm_model_place(slm_model *m, slm_error *err) {
    const slm_params *p = &m->params;
    slm_hparams *hp = &m->hp;
    m->n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (m->n_ctx < 1) m->n_ctx = 4096;
    m->n_batch = p->n_batch > 0 ? p->n_batch : 512;
    if (m->n_batch > m->n_ctx) m->n_batch = m->n_ctx;
    slm_device_config cfg = {.n_threads = p->n_threads, .f32_activations = m->dbg.f32_activations};
    slm_status s = slm_device_open("cpu", &cfg, &m->devices[0], err);
    if (s) return s;
    m->n_devices = 1;
    s = m->devices[0]->ops->wrap_host(m->devices[0], (void *)m->gguf->base, m->gguf->size, &m->host_weights, err);
    if (s) return s;
    bool pick = !p->device || !*p->device || !strcmp(p->device, "auto");
    bool gpu = !pick && strncmp(p->device, "cpu", 3) != 0;
    if (gpu && (s = open_gpus(m, p->device, &cfg, err))) return s;
    if (pick) {
        open_default_gpu(m, &cfg);
        gpu = m->n_devices > 1;
    }
    float shares[SLM_MAX_DEVICES] = {0};
    if (gpu && p->tensor_split && *p->tensor_split &&
        (s = parse_split(p->tensor_split, m->n_devices - 1, shares, err)))
        return s;
    if (gpu && !p->tensor_split && m->n_devices > 2)
        for (int d = 1; d < m->n_devices; d++) shares[d - 1] = 1;  /* equal shares by default */
    for (int il = 0; il < hp->n_layer; il++) m->layers[il].device = 0;
    m->output_device = 0;
    m->rope_freqs_on[0] = m->rope_freqs;
    if (!gpu) {
        snprintf(m->plan_text, sizeof m->plan_text, "%s: all layers", m->devices[0]->name);
        return SLM_OK;
    }
    uint64_t *lb = malloc((size_t)hp->n_layer * sizeof *lb);
    if (!lb) return slm_fail(err, SLM_ERR_NOMEM, "out of memory planning");
    slm_plan_model pm;
    slm_model_plan_input(m, lb, &pm);
    slm_plan_device pd[SLM_MAX_DEVICES];
    memset(pd, 0, sizeof pd);
    measure(m, pd);
    slm_plan_request req = {.n_gpu_layers = p->n_gpu_layers, .margin = 0.05,
                            .tensor_split = m->n_devices > 2 ? shares : NULL};
    slm_plan plan;
    s = slm_plan_make(&pm, pd, m->n_devices, &req, &plan, err);
    while (!s) {
        for (int il = 0; il < hp->n_layer; il++) m->layers[il].device = plan.layer_device[il];
        m->output_device = plan.output_device;
        slm_error up_err = {{0}};
        int failed = 1;
        s = plan.n_gpu_units ? upload_all(m, &failed, &up_err) : SLM_OK;
        if (!s) break;
        /* A device refused: re-plan with one unit fewer and say why. */
        int units = plan.n_gpu_units - 1;
        snprintf(m->plan_note, sizeof m->plan_note, "%s: could not hold %d GPU layer(s) (%.200s); using %d",
                 m->devices[failed]->name, plan.n_gpu_units, up_err.msg, units < 0 ? 0 : units);
        for (int il = 0; il < hp->n_layer; il++) m->layers[il].device = 0;
        m->output_device = 0;
        req.n_gpu_layers = units < 0 ? 0 : units;
        s = slm_plan_make(&pm, pd, m->n_devices, &req, &plan, err);
    }
    if (!s) {
        const char *names[SLM_MAX_DEVICES] = {0};
        for (int d = 0; d < m->n_devices; d++) names[d] = m->devices[d]->name;
        slm_plan_describe(&plan, names, m->plan_text, sizeof m->plan_text);
        m->predicted_tps = plan.predicted_tps;
    }
    free(lb);
    return s;
}

void slm_model_unplace(slm_model *m) {
    for (int d = 1; d < m->n_devices; d++) {
        if (m->dev_weights[d].size) m->devices[d]->ops->release(m->devices[d], &m->dev_weights[d]);
        slm_device_close(m->devices[d]);
        m->devices[d] = NULL;
    }
    if (m->devices[0]) slm_device_close(m->devices[0]);
    m->devices[0] = NULL;
    m->n_devices = 0;
}

slm_plan_info slm_model_plan_info(const slm_model *m) {
    slm_plan_info pi;
    memset(&pi, 0, sizeof pi);
    const slm_hparams *hp = &m->hp;
    pi.n_devices = m->n_devices;
    pi.n_ctx = m->n_ctx;
    pi.n_batch = m->n_batch;
    pi.predicted_tps = m->predicted_tps;
    snprintf(pi.text, sizeof pi.text, "%s", m->plan_text);
    snprintf(pi.note, sizeof pi.note, "%s", m->plan_note);
    uint64_t kv_layer = 2ull * slm_kv_row_bytes(hp) * (uint64_t)m->n_ctx;
    for (int d = 0; d < m->n_devices; d++) {
        slm_plan_device_info *di = &pi.device[d];
        snprintf(di->name, sizeof di->name, "%s", m->devices[d]->name);
        di->gpu = d > 0;
        di->output = m->output_device == d;
        for (int il = 0; il < hp->n_layer; il++) {
            if (m->layers[il].device != d) continue;
            di->n_layers++;
            di->read_bytes_per_token += m->layers[il].weight_bytes;
        }
        if (di->output) di->read_bytes_per_token += m->output_bytes;
        if (d == 0) di->read_bytes_per_token += m->tok_embd.nb[1];  /* the embedding lookup runs on the host */
        /* the host holds the whole embedding table, which is also the head when the embeddings are tied */
        bool tied_here = di->output && m->output.buf == m->tok_embd.buf && m->output.offset == m->tok_embd.offset;
        di->weight_bytes = d > 0 ? m->dev_weights[d].size
                                 : di->read_bytes_per_token - m->tok_embd.nb[1] +
                                       (tied_here ? 0 : slm_tensor_bytes(&m->tok_embd));
        di->kv_bytes = kv_layer * (uint64_t)di->n_layers;
        bool used = d == 0 || di->output || di->n_layers > 0;
        di->scratch_bytes = used ? slm_scratch_layout(hp, m->n_batch, di->output, NULL, NULL) : 0;
    }
    return pi;
}
