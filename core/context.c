/* A context: per-device scratch, the KV cache of each layer on the layer's device, host logits, and eval. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "graph.h"
#include "model.h"
#include "scheduler.h"

struct slm_context {
    slm_model *m;
    slm_scratch scratch[SLM_MAX_DEVICES];
    slm_buffer kv_buf[SLM_MAX_DEVICES];
    slm_tensor *k_cache, *v_cache;     /* [n_layer] */
    float *logits;                     /* host [n_vocab, n_logits] */
    int n_logits;          /* rows of logits from the last slm_eval */
    int eval_start;        /* position of the first token of the last slm_eval */
    size_t logits_rows;    /* rows the logits buffer holds */
    int pos;
    int32_t *pos_host;                 /* [n_batch] */
    slm_graph graph;
    slm_sched sched;
    slm_perf perf;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static bool device_used(const slm_model *m, int d) {
    if (d == 0 || m->output_device == d) return true;
    for (int i = 0; i < m->hp.n_layer; i++)
        if (m->layers[i].device == d) return true;
    return false;
}

static slm_status alloc_kv(slm_context *c, slm_error *err) {
    slm_model *m = c->m;
    const slm_hparams *hp = &m->hp;
    size_t per = slm_kv_row_bytes(hp) * (size_t)m->n_ctx;
    c->k_cache = calloc((size_t)hp->n_layer, sizeof *c->k_cache);
    c->v_cache = calloc((size_t)hp->n_layer, sizeof *c->v_cache);
    if (!c->k_cache || !c->v_cache) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for the KV cache");
    for (int d = 0; d < m->n_devices; d++) {
        size_t n = 0;
        for (int i = 0; i < hp->n_layer; i++)
            if (m->layers[i].device == d) n++;
        if (!n) continue;
        slm_device *dev = m->devices[d];
        slm_status s = dev->ops->alloc(dev, 2 * n * per, &c->kv_buf[d], err);
        if (s) return s;
        size_t at = 0;
        for (int i = 0; i < hp->n_layer; i++) {
            if (m->layers[i].device != d) continue;
            c->k_cache[i] = slm_kv_tensor(&c->kv_buf[d], at, hp, m->n_ctx);
            c->v_cache[i] = slm_kv_tensor(&c->kv_buf[d], at + per, hp, m->n_ctx);
            at += 2 * per;
        }
    }
    return SLM_OK;
}

slm_status slm_context_create(slm_model *m, slm_context **out, slm_error *err) {
    *out = NULL;
    slm_context *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a context");
    c->m = m;
    slm_status s = SLM_OK;
    for (int d = 0; d < m->n_devices && !s; d++) {
        if (!device_used(m, d)) continue;
        bool logits = d == m->output_device;
        uint64_t bytes = slm_scratch_layout(&m->hp, m->n_batch, logits, NULL, NULL);
        s = m->devices[d]->ops->alloc(m->devices[d], (size_t)bytes, &c->scratch[d].buf, err);
        if (!s) slm_scratch_layout(&m->hp, m->n_batch, logits, &c->scratch[d].buf, &c->scratch[d]);
    }
    if (!s) s = alloc_kv(c, err);
    if (!s) {
        c->logits = malloc((size_t)m->hp.n_vocab * (size_t)m->n_batch * sizeof(float));
        c->logits_rows = (size_t)m->n_batch;
        c->pos_host = malloc((size_t)m->n_batch * sizeof(int32_t));
        c->sched.staging_size = (size_t)m->hp.n_embd * (size_t)m->n_batch * sizeof(float);
        c->sched.staging = malloc(c->sched.staging_size);
        if (!c->logits || !c->pos_host || !c->sched.staging)
            s = slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a context");
    }
    c->sched.m = m;
    c->sched.scratch = c->scratch;
    /* weights streamed per generated token: every layer, the head, one embedding row */
    c->perf.bytes_per_token = m->output_bytes + m->tok_embd.nb[1];
    for (int i = 0; i < m->hp.n_layer; i++) c->perf.bytes_per_token += m->layers[i].weight_bytes;
    if (s) {
        slm_context_free(c);
        return s;
    }
    *out = c;
    return SLM_OK;
}

void slm_context_free(slm_context *c) {
    if (!c) return;
    for (int d = 0; d < c->m->n_devices; d++) {
        slm_device *dev = c->m->devices[d];
        if (c->scratch[d].buf.size) dev->ops->release(dev, &c->scratch[d].buf);
        if (c->kv_buf[d].size) dev->ops->release(dev, &c->kv_buf[d]);
    }
    free(c->k_cache);
    free(c->v_cache);
    free(c->logits);
    free(c->pos_host);
    free(c->sched.staging);
    slm_graph_free(&c->graph);
    free(c);
}

int slm_context_n_ctx(const slm_context *c) { return c->m->n_ctx; }
int slm_context_pos(const slm_context *c) { return c->pos; }

void slm_context_rewind(slm_context *c, int pos) {
    if (pos >= 0 && pos < c->pos) c->pos = pos;
}

slm_perf slm_context_perf(const slm_context *c) { return c->perf; }

/* One batch of at most n_batch tokens. */
static slm_status eval_batch(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    slm_model *m = c->m;
    slm_status s;
    for (int i = 0; i < n; i++) c->pos_host[i] = c->pos + i;
    slm_device *host = m->devices[0];
    if ((s = host->ops->upload(host, c->scratch[0].ids.buf, c->scratch[0].ids.offset, tokens, (size_t)n * 4, err)))
        return s;
    for (int d = 0; d < m->n_devices; d++) {
        if (!c->scratch[d].buf.size) continue;
        slm_device *dev = m->devices[d];
        if ((s = dev->ops->upload(dev, c->scratch[d].pos.buf, c->scratch[d].pos.offset, c->pos_host,
                                  (size_t)n * 4, err)))
            return s;
    }
    slm_graph_inputs in = {.m = m, .scratch = c->scratch, .k_cache = c->k_cache, .v_cache = c->v_cache,
                           .n_tokens = n, .all_logits = all_logits};
    if ((s = slm_graph_build(&in, &c->graph, err))) return s;
    if ((s = slm_sched_run(&c->sched, &c->graph, n, err))) return s;
    int n_out = all_logits ? n : 1;
    slm_tensor lg = slm_tensor_cols(c->scratch[m->output_device].logits, 0, n_out);
    slm_device *od = m->devices[m->output_device];
    float *dst = c->logits + (all_logits ? (size_t)(c->pos - c->eval_start) * (size_t)m->hp.n_vocab : 0);
    if ((s = od->ops->download(od, dst, lg.buf, lg.offset, slm_tensor_bytes(&lg), err))) return s;
    c->pos += n;
    return SLM_OK;
}

slm_status slm_eval(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    slm_model *m = c->m;
    if (n < 1) return slm_fail(err, SLM_ERR_INVALID_ARG, "eval: no tokens");
    if (n > m->n_ctx - c->pos)
        return slm_fail(err, SLM_ERR_CONTEXT, "%d tokens do not fit: context is %d tokens and %d are used", n,
                        m->n_ctx, c->pos);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "token id %d at %d is outside the vocabulary (%d)", tokens[i],
                            i, m->hp.n_vocab);
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
    for (int i = 0; i < n; i += m->n_batch) {
        int b = n - i < m->n_batch ? n - i : m->n_batch;
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
