/* --profile: where a decode step's time goes. The model's real graph (core/graph.c) is built for one token at
 * each position and every op is run and synchronised on its own device, timed, and summed by op name
 * ("attn_q", "ffn_down", "attention", ...). Running op by op adds a dispatch and a sync per op but leaves out
 * what slm_eval does around the graph (on a 2-layer test model the op-by-op sum came to about 0.6x the tg
 * rows' time), so the footer prints the ratio; the split between ops is what this is for. The activations and the
 * KV cache are this file's own (as a context would lay them out), so the model is not disturbed. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "error.h"
#include "graph.h"
#include "scratch.h"

static double prof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct prof_entry {
    const char *name;
    slm_op_kind kind;
    int device;
    double seconds;
    double bytes;   /* weight or cache bytes read */
    long calls;
} prof_entry;

typedef struct prof_state {
    slm_model *m;
    slm_buffer scratch_buf[SLM_MAX_DEVICES];
    slm_scratch scratch[SLM_MAX_DEVICES];
    slm_buffer *kv_buf;          /* [2 * n_layer] */
    slm_tensor *k, *v;           /* [n_layer] */
    prof_entry e[64];
    int n_e;
} prof_state;

static bool device_used(const slm_model *m, int d) {
    if (d == 0 || m->output_device == d) return true;
    for (int i = 0; i < m->hp.n_layer; i++)
        if (m->layers[i].device == d) return true;
    return false;
}

static slm_status setup(prof_state *p, int n_ctx, slm_error *err) {
    slm_model *m = p->m;
    const slm_hparams *hp = &m->hp;
    for (int d = 0; d < m->n_devices; d++) {
        if (!device_used(m, d)) continue;
        bool logits = d == m->output_device;
        uint64_t bytes = slm_scratch_layout(hp, 1, logits, NULL, NULL);
        slm_status s = m->devices[d]->ops->alloc(m->devices[d], (size_t)bytes, &p->scratch_buf[d], err);
        if (s) return s;
        slm_scratch_layout(hp, 1, logits, &p->scratch_buf[d], &p->scratch[d]);
    }
    size_t per = slm_kv_row_bytes(hp) * (size_t)n_ctx;
    p->kv_buf = calloc(2 * (size_t)hp->n_layer, sizeof *p->kv_buf);
    p->k = calloc((size_t)hp->n_layer, sizeof *p->k);
    p->v = calloc((size_t)hp->n_layer, sizeof *p->v);
    if (!p->kv_buf || !p->k || !p->v) return slm_fail(err, SLM_ERR_NOMEM, "profile: out of memory");
    for (int il = 0; il < hp->n_layer; il++) {
        slm_device *dev = m->devices[m->layers[il].device];
        for (int j = 0; j < 2; j++) {
            slm_status s = dev->ops->alloc(dev, per, &p->kv_buf[2 * il + j], err);
            if (s) return s;
        }
        p->k[il] = slm_kv_tensor(&p->kv_buf[2 * il], 0, hp, n_ctx);
        p->v[il] = slm_kv_tensor(&p->kv_buf[2 * il + 1], 0, hp, n_ctx);
    }
    return SLM_OK;
}

static void teardown(prof_state *p) {
    slm_model *m = p->m;
    for (int d = 0; d < m->n_devices; d++)
        if (p->scratch_buf[d].size) m->devices[d]->ops->release(m->devices[d], &p->scratch_buf[d]);
    for (int i = 0; p->kv_buf && i < 2 * m->hp.n_layer; i++) {
        slm_buffer *b = &p->kv_buf[i];
        if (b->size) b->dev->ops->release(b->dev, b);
    }
    free(p->kv_buf);
    free(p->k);
    free(p->v);
}

static prof_entry *entry(prof_state *p, const char *name, slm_op_kind kind, int device) {
    for (int i = 0; i < p->n_e; i++)
        if (p->e[i].kind == kind && p->e[i].device == device && !strcmp(p->e[i].name, name)) return &p->e[i];
    if (p->n_e == (int)(sizeof p->e / sizeof p->e[0])) return &p->e[p->n_e - 1];
    prof_entry *e = &p->e[p->n_e++];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->kind = kind;
    e->device = device;
    return e;
}

/* Bytes an op streams from memory that is not activations: weights, one embedding row, the KV rows seen. */
static double op_bytes(const slm_op *op, int pos) {
    switch (op->kind) {
    case SLM_OP_MATMUL: return (double)slm_tensor_bytes(&op->src[0]) + (op->src[2].buf ? slm_tensor_bytes(&op->src[2]) : 0);
    case SLM_OP_EMBED: return (double)op->src[0].nb[1];
    case SLM_OP_RMSNORM: return (double)slm_tensor_bytes(&op->src[1]);
    case SLM_OP_ATTENTION: /* the K and V elements read, not the padding between rows */
        return 2.0 * (double)slm_dtype_row_bytes(SLM_F16, op->src[1].ne[0]) * (pos + 1);
    default: return 0;
    }
}

static int cmp_time(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->seconds, y = ((const prof_entry *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

slm_status bench_profile(FILE *f, slm_model *m, int n_gen, bool warmup, double fused_s_per_token, slm_error *err) {
    if (n_gen < 1) n_gen = 16;
    prof_state p;
    memset(&p, 0, sizeof p);
    p.m = m;
    slm_graph g = {0};
    size_t staging_size = (size_t)m->hp.n_embd * sizeof(float);
    void *staging = malloc(staging_size);
    slm_status s = staging ? setup(&p, n_gen, err) : slm_fail(err, SLM_ERR_NOMEM, "profile: out of memory");
    double total = 0, total_bytes = 0;
    uint64_t rng = 12345;
    /* step -1 is the warm-up: position 0 untimed, so the first timed op does not pay for cold caches, page
     * faults in the weights and sleeping workers */
    for (int step = warmup ? -1 : 0; step < n_gen && !s; step++) {
        bool timed = step >= 0;
        int pos = timed ? step : 0;
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        int32_t tok = (int32_t)(rng % (uint64_t)m->hp.n_vocab), ip = pos;
        slm_device *host = m->devices[0];
        s = host->ops->upload(host, p.scratch[0].ids.buf, p.scratch[0].ids.offset, &tok, 4, err);
        for (int d = 0; d < m->n_devices && !s; d++)
            if (p.scratch_buf[d].size)
                s = m->devices[d]->ops->upload(m->devices[d], p.scratch[d].pos.buf, p.scratch[d].pos.offset, &ip, 4, err);
        slm_graph_inputs in = {.m = m, .scratch = p.scratch, .k_cache = p.k, .v_cache = p.v, .n_tokens = 1};
        if (!s) s = slm_graph_build(&in, &g, err);
        int cur = 0;
        for (int i = 0; i < g.n_ops && !s; i++) {
            const slm_op *op = &g.ops[i];
            int d = slm_graph_op_device(m, op);
            slm_device *dev = m->devices[d];
            if (d != cur) {
                /* the residual stream crosses to the next device through host memory, as the scheduler does */
                double t0 = prof_now();
                slm_device *a = m->devices[cur];
                slm_tensor xa = slm_tensor_cols(p.scratch[cur].x, 0, 1), xb = slm_tensor_cols(p.scratch[d].x, 0, 1);
                s = a->ops->sync(a, err);
                if (!s) s = a->ops->download(a, staging, xa.buf, xa.offset, slm_tensor_bytes(&xa), err);
                if (!s) s = dev->ops->upload(dev, xb.buf, xb.offset, staging, slm_tensor_bytes(&xb), err);
                if (!s) s = dev->ops->sync(dev, err);
                double dt = prof_now() - t0;
                cur = d;
                if (s) break;
                if (timed) {
                    prof_entry *e = entry(&p, "boundary_copy", SLM_OP_KIND_COUNT, d);
                    e->seconds += dt;
                    e->calls++;
                    total += dt;
                }
            }
            double t0 = prof_now();
            s = dev->ops->run(dev, op, 1, err);
            if (!s) s = dev->ops->sync(dev, err);
            double dt = prof_now() - t0;
            if (!timed) continue;
            prof_entry *e = entry(&p, op->name ? op->name : slm_op_kind_name(op->kind), op->kind, d);
            e->seconds += dt;
            e->bytes += op_bytes(op, pos);
            e->calls++;
            total += dt;
            total_bytes += op_bytes(op, pos);
        }
    }
    if (!s) {
        qsort(p.e, (size_t)p.n_e, sizeof p.e[0], cmp_time);
        fprintf(f, "\nprofile: %s, %d decode steps (positions 0-%d), every op run and synchronised alone\n\n",
                m->name[0] ? m->name : m->hp.arch_name, n_gen, n_gen - 1);
        fprintf(f, "| op | kind | device | calls/token | ms/token | %% of time | MB/token | GB/s |\n");
        fprintf(f, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
        for (int i = 0; i < p.n_e; i++) {
            const prof_entry *e = &p.e[i];
            double ms = e->seconds * 1e3 / n_gen, mb = e->bytes / 1e6 / n_gen;
            fprintf(f, "| %s | %s | %s | %.0f | %.3f | %.1f%% | ", e->name,
                    e->kind == SLM_OP_KIND_COUNT ? "copy" : slm_op_kind_name(e->kind), m->devices[e->device]->name,
                    (double)e->calls / n_gen, ms, total > 0 ? 100.0 * e->seconds / total : 0.0);
            /* three decimals of MB (kB): the norms and one embedding row of a small model are a few kB */
            if (e->bytes > 0) fprintf(f, "%.3f | %.2f |\n", mb, e->seconds > 0 ? e->bytes / e->seconds / 1e9 : 0.0);
            else fprintf(f, "- | - |\n");
        }
        /* the byte total is the tg rows' bytes per token at the same mean position, a check on both */
        fprintf(f, "| total | | | | %.3f | 100%% | %.3f | %.2f |\n", total * 1e3 / n_gen, total_bytes / 1e6 / n_gen,
                total > 0 ? total_bytes / total / 1e9 : 0.0);
        fprintf(f, "\n%.2f tokens/s op by op", total > 0 ? n_gen / total : 0.0);
        if (fused_s_per_token > 0)
            fprintf(f, "; the tg%d row's fused decode: %.3f ms/token (%.2f tokens/s), op by op / fused = %.2f", n_gen,
                    fused_s_per_token * 1e3, 1.0 / fused_s_per_token, total / n_gen / fused_s_per_token);
        fprintf(f, ". Op by op adds a dispatch and a synchronisation per op; on a busy machine every one can also"
                   " wait for a descheduled worker thread.\n");
    }
    slm_graph_free(&g);
    teardown(&p);
    free(staging);
    return s;
}
