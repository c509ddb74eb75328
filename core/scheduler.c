#include "scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static slm_status run_transfer(slm_sched *s, const slm_transfer *x, slm_error *err) {
    size_t bytes = slm_tensor_bytes(&x->src);
    if (bytes > s->staging_size) {
        void *grown = realloc(s->staging, bytes);
        if (!grown) return slm_fail(err, SLM_ERR_NOMEM, "scheduler: out of memory for a %zu-byte transfer", bytes);
        s->staging = grown;
        s->staging_size = bytes;
    }
    slm_status st = slm_device_sync(x->src.buf->dev, err);
    if (!st) st = slm_tensor_download(&x->src, s->staging, bytes, err);
    if (!st) st = slm_tensor_upload(&x->dst, s->staging, bytes, err);
    return st;
}

/* Bytes an op streams from memory that is not activations: weights, embedding rows, the KV rows it sees. */
static uint64_t op_bytes(const slm_op *op, int pos, int n_tokens) {
    switch (op->kind) {
    case SLM_OP_MATMUL: return slm_tensor_bytes(&op->src[0]) + (op->src[2].buf ? slm_tensor_bytes(&op->src[2]) : 0);
    case SLM_OP_EMBED: return (uint64_t)op->src[0].nb[1] * (uint64_t)n_tokens;
    case SLM_OP_RMSNORM: return slm_tensor_bytes(&op->src[1]);
    case SLM_OP_ATTENTION: {
        /* a sliding window reads its last rows only: the first token's window and the batch's new rows */
        int rows = pos + n_tokens, w = op->p.attn.window;
        if (w > 0 && rows > w + n_tokens - 1) rows = w + n_tokens - 1;
        return slm_kv_bytes_read(&op->src[1], &op->src[2], rows);
    }
    default: return 0;
    }
}

static void observe(slm_sched *s, const char *name, const char *kind, int layer, int device, int pos, int n_tokens,
                    uint64_t bytes, double seconds) {
    slm_op_event ev = {.name = name,
                       .kind = kind,
                       .layer = layer,
                       .device = device,
                       .device_name = s->devices[device]->name,
                       .pos = pos,
                       .n_tokens = n_tokens,
                       .bytes = bytes,
                       .seconds = seconds};
    s->observer(&ev, s->observer_user);
}

/* Op by op, each waited for and reported. */
static slm_status run_observed(slm_sched *s, const slm_graph *g, int pos, int n_tokens, slm_error *err) {
    slm_status st = SLM_OK;
    int x = 0;
    for (int i = 0; i < g->n_ops && !st; i++) {
        const slm_op *op = &g->ops[i];
        for (; x < g->n_xfers && g->xfers[x].before <= i && !st; x++) {
            const slm_transfer *t = &g->xfers[x];
            double t0 = now_s();
            st = run_transfer(s, t, err);
            if (!st) st = slm_device_sync(t->dst.buf->dev, err);
            int to = 0;
            for (int d = 0; d < s->n_devices; d++)
                if (s->devices[d] == t->dst.buf->dev) to = d;
            if (!st) observe(s, "boundary_copy", "copy", op->layer, to, pos, n_tokens, 0, now_s() - t0);
        }
        if (st) break;
        slm_device *dev = s->devices[op->device];
        double t0 = now_s();
        st = slm_device_run(dev, op, 1, err);
        if (!st) st = slm_device_sync(dev, err);
        if (!st)
            observe(s, op->name ? op->name : slm_op_kind_name(op->kind), slm_op_kind_name(op->kind), op->layer,
                    op->device, pos, n_tokens, op_bytes(op, pos, n_tokens), now_s() - t0);
    }
    return st;
}

slm_status slm_sched_check(const slm_sched *s, const slm_graph *g, slm_error *err) {
    for (int i = 0; i < g->n_ops; i++) {
        if (g->ops[i].device < 0 || g->ops[i].device >= s->n_devices)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "scheduler: op %d (%s) has no device", i, g->ops[i].name);
        slm_status st = slm_op_check(&g->ops[i], err);
        if (st) return st;
    }
    return SLM_OK;
}

slm_status slm_sched_run(slm_sched *s, const slm_graph *g, int pos, int n_tokens, slm_error *err) {
    if (s->observer) return run_observed(s, g, pos, n_tokens, err);
    int i = 0, x = 0, last = 0;
    slm_status st = SLM_OK;
    while (i < g->n_ops && !st) {
        for (; x < g->n_xfers && g->xfers[x].before <= i && !st; x++) st = run_transfer(s, &g->xfers[x], err);
        /* a split ends where the device changes or the next transfer is due */
        int dev = g->ops[i].device, j = i + 1;
        int stop = x < g->n_xfers ? g->xfers[x].before : g->n_ops;
        while (j < g->n_ops && j < stop && g->ops[j].device == dev) j++;
        if (!st) st = slm_device_run(s->devices[dev], g->ops + i, j - i, err);
        last = dev;
        i = j;
    }
    for (; x < g->n_xfers && !st; x++) st = run_transfer(s, &g->xfers[x], err);
    if (!st) st = slm_device_sync(s->devices[last], err);
    return st;
}

void slm_sched_lock(slm_sched *s) {
    for (int d = 0; d < s->n_devices; d++)
        if (s->locks[d]) pthread_mutex_lock(s->locks[d]);
}

void slm_sched_unlock(slm_sched *s) {
    for (int d = s->n_devices - 1; d >= 0; d--)
        if (s->locks[d]) pthread_mutex_unlock(s->locks[d]);
}

void slm_sched_free(slm_sched *s) {
    free(s->staging);
    s->staging = NULL;
    s->staging_size = 0;
}
