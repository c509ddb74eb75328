#include "plan.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

/* Places units = [output head, layer n-1, ..., layer n-k] on GPUs, the rest on the host. */
static void place(const slm_plan_model *m, int n_devices, const float *split, int units, slm_plan *p) {
    int n = m->n_layer;
    int gpu_layers = units > 0 ? units - 1 : 0;
    if (gpu_layers > n) gpu_layers = n;
    p->n_devices = n_devices;
    p->n_layer = n;
    p->n_gpu_units = (units > 0 && n_devices > 1) ? gpu_layers + 1 : 0;
    p->output_device = 0;
    int first_gpu = n - gpu_layers;
    for (int i = 0; i < n; i++) p->layer_device[i] = 0;
    if (n_devices < 2) return;
    /* GPU layers split in contiguous ranges by share; the output head goes with the last range. */
    int n_gpus = n_devices - 1;
    double total = 0;
    for (int g = 0; g < n_gpus; g++) total += split ? split[g] : (g == 0 ? 1.0 : 0.0);
    int at = first_gpu;
    double acc = 0;
    for (int g = 0; g < n_gpus; g++) {
        acc += split ? split[g] : (g == 0 ? 1.0 : 0.0);
        int end = g == n_gpus - 1 ? n : first_gpu + (int)(gpu_layers * (total > 0 ? acc / total : 1.0) + 0.5);
        for (int i = at; i < end && i < n; i++) p->layer_device[i] = g + 1;
        if (end > at) at = end;
    }
    /* the head goes with the last layer, or alone to the last GPU */
    if (units > 0) p->output_device = gpu_layers > 0 ? p->layer_device[n - 1] : n_gpus;
}

static void account(const slm_plan_model *m, slm_plan *p) {
    memset(p->bytes, 0, sizeof p->bytes);
    bool used[SLM_PLAN_MAX_DEVICES] = {true};
    for (int i = 0; i < m->n_layer; i++) {
        int d = p->layer_device[i];
        p->bytes[d] += m->layer_bytes[i] + m->kv_bytes_per_layer;
        used[d] = true;
    }
    p->bytes[p->output_device] += m->output_bytes + m->logits_bytes;
    used[p->output_device] = true;
    for (int d = 0; d < p->n_devices; d++)
        if (used[d]) /* the host's working memory is not device memory: placement never asks for it */
            p->bytes[d] += m->scratch_bytes + (d > 0 ? m->work_bytes[d][p->output_device == d] : 0);
    /* device changes along the token's path: host (embedding) -> layers -> output -> host (logits) */
    int b = 0, cur = 0;
    for (int i = 0; i < m->n_layer; i++) {
        if (p->layer_device[i] != cur) b++;
        cur = p->layer_device[i];
    }
    if (p->output_device != cur) b++;
    if (p->output_device != 0) b++;
    p->n_boundaries = b;
}

double slm_plan_decode_seconds(const slm_plan_model *m, const slm_plan_device *devs, const slm_plan *p) {
    double read[SLM_PLAN_MAX_DEVICES] = {0};
    read[0] += (double)m->embd_row_bytes;
    for (int i = 0; i < m->n_layer; i++) read[p->layer_device[i]] += (double)m->layer_bytes[i];
    read[p->output_device] += (double)m->output_bytes;
    double s = 0;
    for (int d = 0; d < p->n_devices; d++)
        if (read[d] > 0 && devs[d].bandwidth > 0) s += read[d] / devs[d].bandwidth;
    /* each boundary moves the residual stream once over the link of the GPU involved */
    double link_bw = p->n_devices > 1 && devs[1].link_bandwidth > 0 ? devs[1].link_bandwidth : 1e10;
    double latency = p->n_devices > 1 ? devs[1].link_latency : 0;
    s += p->n_boundaries * ((double)m->boundary_bytes / link_bw + latency);
    return s;
}

static int first_over_budget(const slm_plan_model *m, const slm_plan_device *devs, const slm_plan *p, double margin) {
    for (int d = 1; d < p->n_devices; d++)
        if ((double)p->bytes[d] > (double)devs[d].budget * (1.0 - margin)) return d;
    return 0;
}

slm_status slm_plan_make(const slm_plan_model *m, const slm_plan_device *devs, int n_devices,
                         const slm_plan_request *req, slm_plan *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    if (!m || !devs || !req || m->n_layer < 1 || m->n_layer > (int)(sizeof out->layer_device / sizeof(int)) ||
        !m->layer_bytes || n_devices < 1 || n_devices > SLM_PLAN_MAX_DEVICES)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "planner: bad model or device count");
    int max_units = m->n_layer + 1;
    int units;
    if (n_devices == 1) {
        units = 0;
    } else if (req->n_gpu_layers == SLM_NGL_ALL) {
        units = max_units;
    } else if (req->n_gpu_layers == SLM_NGL_AUTO) {
        /* the most units that fit every budget with the margin kept free */
        units = 0;
        for (int u = max_units; u >= 1; u--) {
            place(m, n_devices, req->tensor_split, u, out);
            account(m, out);
            if (!first_over_budget(m, devs, out, req->margin)) {
                units = u;
                break;
            }
        }
    } else if (req->n_gpu_layers >= 0) {
        units = req->n_gpu_layers > max_units ? max_units : req->n_gpu_layers;
    } else {
        return slm_fail(err, SLM_ERR_INVALID_ARG, "planner: bad n_gpu_layers %d", req->n_gpu_layers);
    }
    place(m, n_devices, req->tensor_split, units, out);
    account(m, out);
    if (req->n_gpu_layers != SLM_NGL_AUTO) {
        int d = first_over_budget(m, devs, out, 0.0);
        if (d)
            return slm_fail(err, SLM_ERR_NOMEM,
                            "planner: %d GPU layer(s) need %.1f MiB on device %d but its budget is %.1f MiB", units,
                            out->bytes[d] / 1048576.0, d, devs[d].budget / 1048576.0);
    }
    double s = slm_plan_decode_seconds(m, devs, out);
    out->predicted_tps = s > 0 ? 1.0 / s : 0;
    return SLM_OK;
}

void slm_plan_describe(const slm_plan *p, const char *const *names, char *buf, size_t len) {
    size_t at = 0;
    buf[0] = 0;
    for (int d = 0; d < p->n_devices; d++) {
        int lo = -1, hi = -1;
        for (int i = 0; i < p->n_layer; i++)
            if (p->layer_device[i] == d) {
                if (lo < 0) lo = i;
                hi = i;
            }
        bool out = p->output_device == d;
        if (lo < 0 && !out && d != 0) continue;
        char layers[64] = "no layers";
        if (lo >= 0) snprintf(layers, sizeof layers, "layers %d-%d", lo, hi);
        int w = snprintf(buf + at, len - at, "%s%s: %s%s (%.1f MiB)", at ? " | " : "", names[d], layers,
                         out ? " + output" : "", p->bytes[d] / 1048576.0);
        if (w < 0 || (size_t)w >= len - at) return;
        at += (size_t)w;
    }
    snprintf(buf + at, len - at, " | predicted %.1f tok/s", p->predicted_tps);
}
