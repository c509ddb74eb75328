/* A context: one sequence's KV cache (kv_cache.c), per-device scratch, host logits, and eval: build the graph
 * for a batch, run it on the scheduler, read the logits back. Contexts of one model run in parallel: each
 * has its own CPU device instance (thread pool, work scratch) and takes turns with the others on the
 * model's GPUs (the placement's locks, through the scheduler). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "graph.h"
#include "kv_cache.h"
#include "model.h"
#include "scheduler.h"

struct slm_context {
    slm_model *m;
    slm_device *devices[SLM_MAX_DEVICES]; /* [0]: this context's CPU instance; [d >= 1]: the model's GPUs */
    slm_scratch scratch[SLM_MAX_DEVICES];
    slm_kv_cache kv;
    float *logits;      /* host [n_vocab, n_logits] */
    int n_logits;       /* rows of logits from the last slm_eval */
    int eval_start;     /* position of the first token of the last slm_eval */
    size_t logits_rows; /* rows the logits buffer holds */
    int pos;
    int32_t *pos_host; /* [n_batch] */
    slm_graph graph;
    int graph_checked_tokens; /* the shape of graph that passed slm_sched_check (0: none yet) */
    bool graph_checked_all;
    slm_sched sched;
    slm_perf perf;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Devices that run ops (and so need scratch): the CPU (embedding), the layers' and the head's. */
static bool device_used(const slm_placement *pl, int n_layer, int d) {
    if (d == 0 || pl->output_device == d) return true;
    for (int i = 0; i < n_layer; i++)
        if (pl->layer_device[i] == d) return true;
    return false;
}

slm_status slm_context_create(slm_model *m, slm_context **out, slm_error *err) {
    *out = NULL;
    slm_context *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a context");
    c->m = m;
    const slm_placement *pl = &m->place;
    const slm_hparams *hp = &m->hp;
    int n_batch = m->cfg.n_batch;
    /* CPU buffers are host memory, so this instance runs on the model's mapping as its own instance would */
    slm_status s = slm_device_open("cpu", &pl->cpu_cfg, &c->devices[0], err);
    for (int d = 1; d < pl->n_devices; d++) {
        c->devices[d] = pl->devices[d];
        if (device_used(pl, hp->n_layer, d)) c->sched.locks[d] = &m->place.gpu_lock[d];
    }
    c->sched.devices = c->devices;
    c->sched.n_devices = pl->n_devices;
    if (!s) {
        slm_sched_lock(&c->sched); /* GPU allocations use the device's command buffers */
        /* everything this context will allocate, checked against each device's free memory before any of it is */
        uint64_t other[SLM_MAX_DEVICES] = {0};
        for (int d = 0; d < pl->n_devices; d++)
            if (device_used(pl, hp->n_layer, d))
                other[d] = slm_scratch_layout(hp, n_batch, d == pl->output_device, NULL, NULL);
        other[0] +=
            ((uint64_t)hp->n_vocab + 1 + (uint64_t)hp->n_embd) * (uint64_t)n_batch * 4; /* logits, pos, staging */
        s = slm_kv_cache_check_memory(hp, m->cfg.n_ctx, c->devices, pl->n_devices, pl->layer_device, other, err);
        for (int d = 0; d < pl->n_devices && !s; d++) {
            if (!device_used(pl, hp->n_layer, d)) continue;
            bool logits = d == pl->output_device;
            uint64_t bytes = slm_scratch_layout(hp, n_batch, logits, NULL, NULL);
            s = slm_buffer_alloc(c->devices[d], (size_t)bytes, &c->scratch[d].buf, err);
            if (!s) slm_scratch_layout(hp, n_batch, logits, &c->scratch[d].buf, &c->scratch[d]);
        }
        if (!s) s = slm_kv_cache_create(hp, m->cfg.n_ctx, c->devices, pl->n_devices, pl->layer_device, &c->kv, err);
        slm_sched_unlock(&c->sched);
    }
    if (!s) {
        c->logits = malloc((size_t)hp->n_vocab * (size_t)n_batch * sizeof(float));
        c->logits_rows = (size_t)n_batch;
        c->pos_host = malloc((size_t)n_batch * sizeof(int32_t));
        c->sched.staging_size = (size_t)hp->n_embd * (size_t)n_batch * sizeof(float);
        c->sched.staging = malloc(c->sched.staging_size);
        if (!c->logits || !c->pos_host || !c->sched.staging)
            s = slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a context");
    }
    /* weights streamed per generated token: every layer, the head, one embedding row */
    c->perf.bytes_per_token = m->output_bytes + m->host.tok_embd.nb[1];
    for (int i = 0; i < hp->n_layer; i++) c->perf.bytes_per_token += m->layer_bytes[i];
    if (s) {
        slm_context_free(c);
        return s;
    }
    *out = c;
    return SLM_OK;
}

void slm_context_free(slm_context *c) {
    if (!c) return;
    if (c->sched.devices) slm_sched_lock(&c->sched);
    for (int d = 0; d < SLM_MAX_DEVICES; d++) slm_buffer_release(&c->scratch[d].buf);
    slm_kv_cache_free(&c->kv);
    if (c->sched.devices) slm_sched_unlock(&c->sched);
    slm_device_close(c->devices[0]);
    free(c->logits);
    free(c->pos_host);
    slm_sched_free(&c->sched);
    slm_graph_free(&c->graph);
    free(c);
}

int slm_context_n_ctx(const slm_context *c) { return c->m->cfg.n_ctx; }
int slm_context_pos(const slm_context *c) { return c->pos; }

void slm_context_rewind(slm_context *c, int pos) {
    if (pos >= 0 && pos < c->pos) c->pos = pos;
}

slm_perf slm_context_perf(const slm_context *c) { return c->perf; }

void slm_context_set_observer(slm_context *c, slm_op_observer fn, void *user) {
    c->sched.observer = fn;
    c->sched.observer_user = user;
}

/* One batch of at most n_batch tokens, with the model's GPUs held (eval_batch). */
static slm_status eval_batch_locked(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    slm_model *m = c->m;
    const slm_placement *pl = &m->place;
    slm_status s;
    if ((s = slm_tensor_upload(&c->scratch[0].ids, tokens, (size_t)n * 4, err))) return s;
    for (int d = 0; d < pl->n_devices; d++)
        if (c->scratch[d].buf.size && (s = slm_tensor_upload(&c->scratch[d].pos, c->pos_host, (size_t)n * 4, err)))
            return s;
    slm_graph_inputs in = {.m = m, .scratch = c->scratch, .kv = &c->kv, .n_tokens = n, .all_logits = all_logits};
    if ((s = slm_graph_build(&in, &c->graph, err))) return s;
    /* the builder makes the same ops for the same batch shape: each shape is checked once */
    if (c->graph_checked_tokens != n || c->graph_checked_all != all_logits) {
        if ((s = slm_sched_check(&c->sched, &c->graph, err))) return s;
        c->graph_checked_tokens = n;
        c->graph_checked_all = all_logits;
    }
    if ((s = slm_sched_run(&c->sched, &c->graph, c->pos, n, err))) return s;
    int n_out = all_logits ? n : 1;
    slm_tensor lg = slm_tensor_cols(c->scratch[pl->output_device].logits, 0, n_out);
    float *dst = c->logits + (all_logits ? (size_t)(c->pos - c->eval_start) * (size_t)m->hp.n_vocab : 0);
    if ((s = slm_tensor_download(&lg, dst, slm_tensor_bytes(&lg), err))) return s;
    /* NaN or inf logits (broken weights, an overflow) would be sampled as some token or as none at all and
     * end a generation silently; n_vocab floats a row cost nothing beside the forward pass that made them */
    size_t n_vocab = (size_t)m->hp.n_vocab;
    for (size_t i = 0; i < (size_t)n_out * n_vocab; i++)
        if (!isfinite(dst[i])) {
            int at = c->pos + (all_logits ? (int)(i / n_vocab) : n - 1);
            return slm_fail(err, SLM_ERR_NUMERIC,
                            "the model produced a non-finite logit (%g for token %zu) at position %d: its weights "
                            "or settings are broken",
                            dst[i], i % n_vocab, at);
        }
    c->pos += n;
    return SLM_OK;
}

/* One batch of at most n_batch tokens. The GPUs are held from the first upload to the logits' download:
 * uploads and downloads go through a GPU's own staging buffer and command buffer, which contexts share. */
static slm_status eval_batch(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    for (int i = 0; i < n; i++) c->pos_host[i] = c->pos + i;
    slm_sched_lock(&c->sched);
    slm_status s = eval_batch_locked(c, tokens, n, all_logits, err);
    slm_sched_unlock(&c->sched);
    return s;
}

slm_status slm_eval(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    slm_model *m = c->m;
    int n_ctx = m->cfg.n_ctx, n_batch = m->cfg.n_batch;
    if (n < 1) return slm_fail(err, SLM_ERR_INVALID_ARG, "eval: no tokens");
    if (n > n_ctx - c->pos)
        return slm_fail(err, SLM_ERR_CONTEXT, "%d tokens do not fit: context is %d tokens and %d are used", n, n_ctx,
                        c->pos);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "token id %d at %d is outside the vocabulary (%d)", tokens[i], i,
                            m->hp.n_vocab);
    /* all_logits over several batches: the host buffer grows to hold every row */
    if (all_logits && (size_t)n > c->logits_rows) {
        float *grown = realloc(c->logits, (size_t)m->hp.n_vocab * (size_t)n * sizeof(float));
        if (!grown) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for the logits of %d tokens", n);
        c->logits = grown;
        c->logits_rows = (size_t)n;
    }
    double t0 = now_s();
    c->n_logits = 0;
    c->eval_start = c->pos;
    for (int i = 0; i < n; i += n_batch) {
        int b = n - i < n_batch ? n - i : n_batch;
        slm_status s = eval_batch(c, tokens + i, b, all_logits, err);
        if (s) return s;
        c->n_logits = all_logits ? i + b : 1;
    }
    double dt = now_s() - t0;
    if (n > 1) {
        c->perf.prompt_s += dt;
        c->perf.n_prompt += n;
    } else {
        c->perf.gen_s += dt;
        c->perf.n_gen += 1;
    }
    return SLM_OK;
}

const float *slm_logits(const slm_context *c, int i) {
    if (i < 0) i = c->n_logits - 1;
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}
