/* Placing a bound model on devices: opens them, asks the planner, copies each GPU's share of the weights and
 * records it in the placement's binding table, and re-plans with fewer GPU layers when a device refuses. */
#include "model_place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_threads.h"
#include "error.h"
#include "device_probe.h"
#include "kv_cache.h"
#include "plan.h"
#include "scratch.h"
#include "weights_repack.h"

#define ALIGN_UP(x) (((x) + 255) & ~(uint64_t)255)

static slm_op matmul_shape(const slm_tensor *w, int64_t T) {
    slm_op op = {.kind = SLM_OP_MATMUL, .name = "work shape"};
    op.src[0] = *w;
    op.src[0].buf = NULL; /* a shape: no backend may read it */
    op.src[1] = slm_tensor_make(NULL, 0, SLM_F32, w->ne[0], T, 1, 1);
    op.dst = slm_tensor_make(NULL, 0, SLM_F32, w->ne[1], T, 1, 1);
    return op;
}

/* The ops device d would run, as shapes at their largest (a batch of n_batch tokens, attention over the whole
 * context): the mat-muls of its layers (every layer when d < 0, for the planner, which has not placed them
 * yet), one attention when it runs any layer, and the head when output. ops holds n_layer * 8 + 1; returns
 * the count. Its backend sizes its own working memory by them (slm_device_work_bytes). */
static int work_shapes(const slm_model *m, int d, bool output, slm_op *ops) {
    const slm_hparams *hp = &m->hp;
    int64_t T = m->cfg.n_batch;
    int n = 0;
    bool any_layer = false;
    for (int il = 0; il < hp->n_layer; il++) {
        if (d >= 0 && m->place.layer_device[il] != d) continue;
        any_layer = true;
        const slm_layer *L = &m->host.layers[il];
        const slm_tensor *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            if (w[i]->buf) ops[n++] = matmul_shape(w[i], T);
    }
    if (any_layer) {
        slm_op a = {.kind = SLM_OP_ATTENTION, .name = "work shape"};
        int64_t q_rows = (int64_t)hp->head_dim * hp->n_head, kv_rows = (int64_t)hp->head_dim * hp->n_head_kv;
        a.src[0] = slm_tensor_make(NULL, 0, SLM_F32, q_rows, T, 1, 1);
        a.src[1] = slm_tensor_make(NULL, 0, m->cfg.type_k, kv_rows, m->cfg.n_ctx, 1, 1);
        a.src[2] = slm_tensor_make(NULL, 0, m->cfg.type_v, kv_rows, m->cfg.n_ctx, 1, 1);
        a.src[3] = slm_tensor_make(NULL, 0, SLM_I32, T, 1, 1, 1);
        a.dst = a.src[0];
        a.p.attn.n_head = hp->n_head;
        a.p.attn.n_head_kv = hp->n_head_kv;
        a.p.attn.head_dim = hp->head_dim;
        a.p.attn.scale = m->cfg.attn_scale;
        ops[n++] = a;
    }
    if (output) ops[n++] = matmul_shape(&m->host.output, T);
    return n;
}

/* The backend's working memory on device d under the current placement (0 when d runs nothing). */
static uint64_t placed_work_bytes(const slm_model *m, int d) {
    slm_op *ops = malloc(((size_t)m->hp.n_layer * 8 + 1) * sizeof *ops);
    if (!ops) return 0;
    uint64_t b = slm_device_work_bytes(m->place.devices[d], ops, work_shapes(m, d, m->place.output_device == d, ops));
    free(ops);
    return b;
}

void slm_model_plan_input(const slm_model *m, slm_plan_model *pm) {
    const slm_hparams *hp = &m->hp;
    memset(pm, 0, sizeof *pm);
    pm->n_layer = hp->n_layer;
    pm->layer_bytes = m->layer_bytes;
    pm->output_bytes = m->output_bytes;
    pm->embd_row_bytes = m->host.tok_embd.nb[1];
    pm->kv_bytes_per_layer = slm_kv_layer_bytes(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx);
    pm->scratch_bytes = slm_scratch_layout(hp, m->cfg.n_batch, false, NULL, NULL);
    pm->logits_bytes = (uint64_t)hp->n_vocab * (uint64_t)m->cfg.n_batch * 4;
    pm->boundary_bytes = (uint64_t)hp->n_embd * 4;
    /* Every layer's shapes bound what any subset of them needs; layers differ only in their weights' types. */
    slm_op *ops = malloc(((size_t)hp->n_layer * 8 + 1) * sizeof *ops);
    for (int d = 1; ops && d < m->place.n_devices && d < SLM_PLAN_MAX_DEVICES; d++)
        for (int out = 0; out < 2; out++)
            pm->work_bytes[d][out] = slm_device_work_bytes(m->place.devices[d], ops, work_shapes(m, -1, out, ops));
    free(ops);
}

/* Points device d's binding table at the weights device d runs with: its layers, the head on the output
 * device, the rope divisors wherever layers run. Returns the number of tensors; fills list (when not NULL)
 * with the table's entries, still bound to the mapping, in upload order. */
static int device_tensors(slm_model *m, int d, slm_tensor **list) {
    slm_placement *pl = &m->place;
    slm_weights *w = &pl->bound[d];
    int n = 0, n_layers = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        if (pl->layer_device[il] != d) continue;
        n_layers++;
        w->layers[il] = m->host.layers[il];
        slm_tensor *slots[SLM_LAYER_MAX_WEIGHTS];
        for (int i = 0, k = slm_layer_weights(&w->layers[il], slots); i < k; i++)
            if (slots[i]->buf) {
                if (list) list[n] = slots[i];
                n++;
            }
    }
    slm_tensor *extra[3] = {0};
    int n_extra = 0;
    if (pl->output_device == d) {
        w->output_norm = m->host.output_norm;
        w->output = m->host.output;
        extra[n_extra++] = &w->output_norm;
        extra[n_extra++] = &w->output;
    }
    if (n_layers && m->host.rope_freqs.buf) {
        w->rope_freqs = m->host.rope_freqs;
        extra[n_extra++] = &w->rope_freqs;
    }
    for (int i = 0; i < n_extra; i++) {
        if (list) list[n] = extra[i];
        n++;
    }
    return n;
}

/* Bytes a context will allocate on device d beside the weights: the KV cache of its layers and the scratch
 * (with the logits on the output device). Same sizes as core/context.c asks for. */
static uint64_t runtime_bytes(const slm_model *m, int d) {
    const slm_hparams *hp = &m->hp;
    uint64_t n = 0;
    for (int i = 0; i < hp->n_layer; i++) n += m->place.layer_device[i] == d;
    return n * slm_kv_layer_bytes(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx) +
        slm_scratch_layout(hp, m->cfg.n_batch, m->place.output_device == d, NULL, NULL);
}

/* Holds the runtime allocation once while the weights are resident, so a device whose free memory was
 * overstated fails here, where the loader can still place fewer layers, not later in slm_context_create. */
static slm_status reserve_runtime(slm_model *m, int d, slm_error *err) {
    slm_device *dev = m->place.devices[d];
    uint64_t bytes = runtime_bytes(m, d);
    if (!bytes) return SLM_OK;
    slm_buffer trial = {0};
    slm_error e = {{0}};
    /* e.msg names the device already: what failed comes first, so that the loader's note (cut short) says it */
    if (slm_buffer_alloc(dev, (size_t)bytes, &trial, &e))
        return slm_fail(err, SLM_ERR_DEVICE, "%s (no room for the KV cache and scratch, %.1f MiB, beside the weights)",
                        e.msg, bytes / 1048576.0);
    slm_buffer_release(&trial);
    return SLM_OK;
}

/* Allocates the backend's working memory for the ops device d will run and keeps it (the device's contexts
 * share it, taking turns): a device that cannot hold it beside the weights fails here, where the loader can
 * still place fewer layers, not in the first prompt. */
static slm_status reserve_work(slm_model *m, int d, slm_error *err) {
    slm_device *dev = m->place.devices[d];
    slm_op *ops = malloc(((size_t)m->hp.n_layer * 8 + 1) * sizeof *ops);
    if (!ops) return slm_fail(err, SLM_ERR_NOMEM, "out of memory placing weights");
    int n = work_shapes(m, d, m->place.output_device == d, ops);
    uint64_t bytes = slm_device_work_bytes(dev, ops, n);
    slm_error e = {{0}};
    slm_status s = slm_device_work_reserve(dev, ops, n, &e);
    free(ops);
    /* as in reserve_runtime: e.msg first */
    if (s)
        return slm_fail(err, SLM_ERR_DEVICE,
                        "%s (no room for the backend's working memory, %.1f MiB, beside the weights)", e.msg,
                        bytes / 1048576.0);
    return SLM_OK;
}

/* Allocates device d's weight buffer, copies its tensors there and points its binding table at the copies. */
static slm_status upload_device(slm_model *m, int d, slm_error *err) {
    slm_placement *pl = &m->place;
    slm_device *dev = pl->devices[d];
    pl->bound[d].layers = calloc((size_t)m->hp.n_layer, sizeof *pl->bound[d].layers);
    if (!pl->bound[d].layers) return slm_fail(err, SLM_ERR_NOMEM, "out of memory placing weights");
    int n = device_tensors(m, d, NULL);
    slm_tensor **list = malloc((size_t)(n ? n : 1) * sizeof *list);
    if (!list) return slm_fail(err, SLM_ERR_NOMEM, "out of memory placing weights");
    device_tensors(m, d, list);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += ALIGN_UP(slm_tensor_bytes(list[i]));
    slm_status s = SLM_OK;
    if (total && m->dbg.fault_alloc_limit && total > m->dbg.fault_alloc_limit)
        s = slm_fail(err, SLM_ERR_DEVICE, "%s: out of device memory allocating %.1f MiB (simulated)", dev->name,
                     total / 1048576.0);
    else if (total) s = slm_buffer_alloc(dev, (size_t)total, &pl->dev_weights[d], err);
    /* the working memory is held from now on, so the trial of the contexts' allocations counts it too */
    if (!s) s = reserve_work(m, d, err);
    if (!s) s = reserve_runtime(m, d, err);
    uint64_t at = 0;
    for (int i = 0; i < n && !s; i++) {
        slm_tensor *t = list[i];
        const uint8_t *src = (const uint8_t *)t->buf->host + t->offset;
        s = slm_buffer_upload(&pl->dev_weights[d], (size_t)at, src, slm_tensor_bytes(t), err);
        t->buf = &pl->dev_weights[d];
        t->offset = (size_t)at;
        at += ALIGN_UP(slm_tensor_bytes(t));
    }
    if (!s && total) s = slm_device_sync(dev, err);
    free(list);
    return s;
}

/* Drops every GPU's share, leaving the model bound to the mapping alone. */
static void release_gpu_weights(slm_model *m) {
    slm_placement *pl = &m->place;
    for (int d = 1; d < pl->n_devices; d++) {
        slm_buffer_release(&pl->dev_weights[d]);
        /* nothing runs there any more: give the backend's working memory back (it cannot fail to) */
        if (pl->devices[d]) slm_device_work_reserve(pl->devices[d], NULL, 0, NULL);
        free(pl->bound[d].layers);
        memset(&pl->bound[d], 0, sizeof pl->bound[d]);
        memset(&pl->dev_weights[d], 0, sizeof pl->dev_weights[d]);
    }
}

/* Uploads every GPU device's share; a failure drops them all. *failed is the device that refused. */
static slm_status upload_all(slm_model *m, int *failed, slm_error *err) {
    slm_status s = SLM_OK;
    for (int d = 1; d < m->place.n_devices && !s; d++) {
        s = upload_device(m, d, err);
        if (s) *failed = d;
    }
    if (s) release_gpu_weights(m);
    return s;
}

/* "3,1" -> shares[0..n) (the GPU devices' shares of the GPU layers). */
static slm_status parse_split(const char *text, int n, float *shares, slm_error *err) {
    const char *p = text;
    for (int i = 0; i < n; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v >= 0 && v <= 1e6)) /* written so that NaN fails too */
            return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': expected %d numbers in [0, 1e6]", text, n);
        shares[i] = (float)v;
        p = end;
        if (i + 1 < n) {
            if (*p != ',')
                return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': expected %d numbers (one per GPU)", text,
                                n);
            p++;
        }
    }
    if (*p) return slm_fail(err, SLM_ERR_INVALID_ARG, "tensor split '%s': more numbers than GPUs (%d)", text, n);
    return SLM_OK;
}

/* Opens the GPU devices of a comma-separated list ("vulkan:0", "cuda:0,cuda:1") as devices 1.. */
static slm_status open_gpus(slm_placement *pl, const char *list, const slm_device_config *cfg, slm_error *err) {
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char spec[64];
        if (len == 0 || len >= sizeof spec)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "device list '%s': empty or overlong entry", list);
        memcpy(spec, p, len);
        spec[len] = 0;
        if (pl->n_devices >= SLM_MAX_DEVICES)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "device list '%s': at most %d GPUs", list, SLM_MAX_DEVICES - 1);
        slm_status s = slm_device_open(spec, cfg, &pl->devices[pl->n_devices], err);
        if (s) return s;
        pl->n_devices++;
        p += len + (comma ? 1 : 0);
    }
    return SLM_OK;
}

/* No device named: the first hardware GPU, CUDA before Vulkan (which may show the same card again).
 * Software renderers (lavapipe) are slower than the CPU backend, so only an explicit --device picks them.
 * Finding none is not an error: the model runs on the CPU. */
static void open_default_gpu(slm_placement *pl, const slm_device_config *cfg) {
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
                pl->devices[pl->n_devices++] = d;
                return;
            }
        }
}

static void measure(const slm_model *m, slm_plan_device *pd) {
    const slm_placement *pl = &m->place;
    for (int d = 0; d < pl->n_devices; d++) {
        slm_device *dev = pl->devices[d];
        size_t fr = 0, tot = 0;
        slm_device_memory(dev, &fr, &tot);
        pd[d].budget = d > 0 && m->params.vram_budget ? m->params.vram_budget : fr;
        /* the rate of the device's own mat-vec (what decode is bound by), else its raw read bandwidth */
        slm_device_probe pr = slm_device_probe_run(dev, m->host.layers[0].w_up.type, m->hp.n_embd, (size_t)128 << 20);
        pd[d].bandwidth = pr.matvec_bandwidth > 0 ? pr.matvec_bandwidth : slm_device_measure_bandwidth(dev);
        /* host -> device copies; a PCIe 3/4 x16 order of magnitude when the probe could not tell */
        pd[d].link_bandwidth = d > 0 && pr.link_bandwidth > 0 ? pr.link_bandwidth : 10e9;
        pd[d].link_latency = 20e-6;
    }
}

static void place_all_on_host(slm_placement *pl, int n_layer) {
    for (int il = 0; il < n_layer; il++) pl->layer_device[il] = 0;
    pl->output_device = 0;
}

/* Opens the devices the params name (or the default GPU) beside the CPU, which wraps the mapping. */
static slm_status open_devices(slm_model *m, bool *gpu, slm_error *err) {
    const slm_params *p = &m->params;
    slm_placement *pl = &m->place;
    /* resolved once, so that every context's CPU instance gets the same count (and the note says it once) */
    int n_threads = slm_cpu_threads_resolve(p->n_threads, pl->threads_note, sizeof pl->threads_note);
    slm_device_config cfg = {.n_threads = n_threads, .f32_activations = m->dbg.f32_activations};
    pl->cpu_cfg = cfg;
    slm_status s = slm_device_open("cpu", &cfg, &pl->devices[0], err);
    if (s) return s;
    pl->n_devices = 1;
    s = slm_buffer_wrap_host(pl->devices[0], (void *)m->gguf->base, m->gguf->size, &m->host_weights, err);
    if (s) return s;
    bool pick = !p->device || !*p->device || !strcmp(p->device, "auto");
    *gpu = !pick && strncmp(p->device, "cpu", 3) != 0;
    if (*gpu && (s = open_gpus(pl, p->device, &cfg, err))) return s;
    if (pick) {
        open_default_gpu(pl, &cfg);
        *gpu = pl->n_devices > 1;
    }
    return SLM_OK;
}

/* Plans, uploads, and re-plans with one GPU unit fewer while a device refuses its share. */
static slm_status place_on_gpus(slm_model *m, const float *shares, slm_error *err) {
    slm_placement *pl = &m->place;
    const slm_hparams *hp = &m->hp;
    slm_plan_model pm;
    slm_model_plan_input(m, &pm);
    slm_plan_device pd[SLM_MAX_DEVICES];
    memset(pd, 0, sizeof pd);
    measure(m, pd);
    slm_plan_request req = {
        .n_gpu_layers = m->params.n_gpu_layers, .margin = 0.05, .tensor_split = pl->n_devices > 2 ? shares : NULL};
    slm_plan plan;
    slm_status s = slm_plan_make(&pm, pd, pl->n_devices, &req, &plan, err);
    while (!s) {
        for (int il = 0; il < hp->n_layer; il++) pl->layer_device[il] = plan.layer_device[il];
        pl->output_device = plan.output_device;
        slm_error up_err = {{0}};
        int failed = 1;
        s = plan.n_gpu_units ? upload_all(m, &failed, &up_err) : SLM_OK;
        if (!s) break;
        /* A device refused: re-plan with one unit fewer and say why (a 160-character device name, 300 of the
         * error and the rest fit the note's 512). */
        int units = plan.n_gpu_units - 1;
        snprintf(pl->note, sizeof pl->note, "%s: could not hold %d GPU layer(s) (%.300s); using %d",
                 pl->devices[failed]->name, plan.n_gpu_units, up_err.msg, units < 0 ? 0 : units);
        place_all_on_host(pl, hp->n_layer);
        req.n_gpu_layers = units < 0 ? 0 : units;
        s = slm_plan_make(&pm, pd, pl->n_devices, &req, &plan, err);
    }
    if (s) return s;
    const char *names[SLM_MAX_DEVICES] = {0};
    for (int d = 0; d < pl->n_devices; d++) names[d] = pl->devices[d]->name;
    slm_plan_describe(&plan, names, pl->text, sizeof pl->text);
    pl->predicted_tps = plan.predicted_tps;
    return SLM_OK;
}

slm_status slm_model_place(slm_model *m, slm_error *err) {
    const slm_params *p = &m->params;
    slm_placement *pl = &m->place;
    pl->layer_device = calloc((size_t)m->hp.n_layer, sizeof *pl->layer_device);
    if (!pl->layer_device) return slm_fail(err, SLM_ERR_NOMEM, "out of memory planning");
    for (int d = 0; d < SLM_MAX_DEVICES; d++) pthread_mutex_init(&pl->gpu_lock[d], NULL);
    pl->locks_ready = true;
    bool gpu = false;
    slm_status s = open_devices(m, &gpu, err);
    if (s) return s;
    pl->bound[0] = m->host; /* the CPU runs with the mapping itself */
    place_all_on_host(pl, m->hp.n_layer);
    if (!gpu) {
        snprintf(pl->text, sizeof pl->text, "%s: all layers", pl->devices[0]->name);
        return slm_weights_repack_host(m, err);
    }
    float shares[SLM_MAX_DEVICES] = {0};
    if (p->tensor_split && *p->tensor_split && (s = parse_split(p->tensor_split, pl->n_devices - 1, shares, err)))
        return s;
    if (!p->tensor_split && pl->n_devices > 2)
        for (int d = 1; d < pl->n_devices; d++) shares[d - 1] = 1; /* equal shares by default */
    s = place_on_gpus(m, shares, err);
    /* the GPUs' copies came from the mapping, which the host's repacked copies then replace */
    return s ? s : slm_weights_repack_host(m, err);
}

void slm_model_unplace(slm_model *m) {
    slm_placement *pl = &m->place;
    slm_weights_repack_free(m);
    release_gpu_weights(m);
    for (int d = pl->n_devices - 1; d >= 0; d--) {
        if (pl->devices[d]) slm_device_close(pl->devices[d]);
        pl->devices[d] = NULL;
    }
    pl->n_devices = 0;
    free(pl->layer_device);
    pl->layer_device = NULL;
    if (pl->locks_ready)
        for (int d = 0; d < SLM_MAX_DEVICES; d++) pthread_mutex_destroy(&pl->gpu_lock[d]);
    pl->locks_ready = false;
}

slm_plan_info slm_model_plan_info(const slm_model *m) {
    slm_plan_info pi;
    memset(&pi, 0, sizeof pi);
    const slm_hparams *hp = &m->hp;
    const slm_placement *pl = &m->place;
    pi.n_devices = pl->n_devices;
    pi.n_ctx = m->cfg.n_ctx;
    pi.n_batch = m->cfg.n_batch;
    pi.predicted_tps = pl->predicted_tps;
    snprintf(pi.text, sizeof pi.text, "%s", pl->text);
    snprintf(pi.note, sizeof pi.note, "%s%s%.190s%s%.150s", pl->threads_note,
             pl->threads_note[0] && pl->note[0] ? "; " : "", pl->note,
             (pl->threads_note[0] || pl->note[0]) && pl->repack_note[0] ? "; " : "", pl->repack_note);
    uint64_t kv_layer = slm_kv_layer_bytes(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx);
    uint64_t embd_row = m->host.tok_embd.nb[1];
    for (int d = 0; d < pl->n_devices; d++) {
        slm_plan_device_info *di = &pi.device[d];
        snprintf(di->name, sizeof di->name, "%s", pl->devices[d]->name);
        di->gpu = d > 0;
        di->output = pl->output_device == d;
        for (int il = 0; il < hp->n_layer; il++) {
            if (pl->layer_device[il] != d) continue;
            di->n_layers++;
            di->read_bytes_per_token += m->layer_bytes[il];
        }
        if (di->output) di->read_bytes_per_token += m->output_bytes;
        if (d == 0) di->read_bytes_per_token += embd_row; /* the embedding lookup runs on the host */
        /* the host holds the whole embedding table, which is also the head when the embeddings are tied */
        bool tied_here = di->output && m->host.output.offset == m->host.tok_embd.offset;
        di->weight_bytes = d > 0
            ? pl->dev_weights[d].size
            : di->read_bytes_per_token - embd_row + (tied_here ? 0 : slm_tensor_bytes(&m->host.tok_embd));
        di->kv_bytes = kv_layer * (uint64_t)di->n_layers;
        bool used = d == 0 || di->output || di->n_layers > 0;
        di->scratch_bytes = used ? slm_scratch_layout(hp, m->cfg.n_batch, di->output, NULL, NULL) : 0;
        di->work_bytes = d > 0 && used ? placed_work_bytes(m, d) : 0;
    }
    return pi;
}
