/* A context: the KV cache of its sequences (kv_cache.c: one for slm_context_create, n_seq for a server's
 * slots), per-device scratch, host logits, and eval: build the graph for a batch (the tokens of one or of
 * several sequences), run it on the scheduler, read the logits back. Contexts of one model run in parallel: each
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
    int n_logits;       /* rows of logits from the last slm_eval or slm_eval_batch */
    size_t logits_rows; /* rows the logits buffer holds */
    int n_seq;
    int *pos;              /* [n_seq]: tokens in each sequence's cache */
    int32_t *pos_host;     /* [n_batch] */
    slm_graph_part *parts; /* [n_seq]: the batch being evaluated */
    slm_graph graph;
    /* the shape of graph that passed slm_sched_check: tokens per part (n_checked 0: none yet) */
    int *checked_n;
    int n_checked;
    bool checked_all;
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

/* A GPU that holds layers must have kernels for the KV cache's types: the ops that read the cache cannot
 * move to the CPU, so a type without a kernel there is refused here, before anything is allocated. */
static slm_status check_kv_types(const slm_model *m, slm_error *err) {
    const slm_placement *pl = &m->place;
    const slm_hparams *hp = &m->hp;
    if (m->cfg.type_k == SLM_F16 && m->cfg.type_v == SLM_F16) return SLM_OK;
    int64_t rows = (int64_t)hp->head_dim * hp->n_head_kv;
    slm_op w = {.kind = SLM_OP_KV_WRITE, .name = "kv type check"},
           a = {.kind = SLM_OP_ATTENTION, .name = "kv type check"};
    w.src[0] = slm_tensor_make(NULL, 0, SLM_F32, rows, 1, 1, 1);
    w.src[1] = slm_tensor_make(NULL, 0, SLM_I32, 1, 1, 1, 1);
    a.src[0] = slm_tensor_make(NULL, 0, SLM_F32, (int64_t)hp->head_dim * hp->n_head, 1, 1, 1);
    a.src[1] = slm_tensor_make(NULL, 0, m->cfg.type_k, rows, m->cfg.n_ctx, 1, 1);
    a.src[2] = slm_tensor_make(NULL, 0, m->cfg.type_v, rows, m->cfg.n_ctx, 1, 1);
    a.src[3] = w.src[1];
    a.dst = a.src[0];
    a.p.attn.n_head = hp->n_head;
    a.p.attn.n_head_kv = hp->n_head_kv;
    a.p.attn.head_dim = hp->head_dim;
    a.p.attn.scale = m->cfg.attn_scale;
    for (int d = 1; d < pl->n_devices; d++) {
        bool layers = false;
        for (int il = 0; il < hp->n_layer; il++) layers |= pl->layer_device[il] == d;
        if (!layers) continue;
        slm_device *dev = pl->devices[d];
        for (int i = 0; i < 2; i++) {
            slm_dtype t = i ? m->cfg.type_v : m->cfg.type_k;
            if (t == SLM_F16) continue;
            w.dst = slm_tensor_make(NULL, 0, t, rows, m->cfg.n_ctx, 1, 1);
            if (!dev->ops->supports(dev, &w) || !dev->ops->supports(dev, &a))
                return slm_fail(err, SLM_ERR_UNSUPPORTED,
                                "%s %s is not supported on %s yet (its layers' KV cache; use f16 there, or -ngl 0)",
                                i ? "-ctv" : "-ctk", slm_dtype_name(t), dev->name);
        }
    }
    return SLM_OK;
}

slm_status slm_context_create(slm_model *m, slm_context **out, slm_error *err) {
    return slm_context_create_seqs(m, 1, out, err);
}

slm_status slm_context_create_seqs(slm_model *m, int n_seq, slm_context **out, slm_error *err) {
    *out = NULL;
    if (n_seq < 1 || n_seq > SLM_MAX_SEQS)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "a context holds 1 to %d sequences, not %d", SLM_MAX_SEQS, n_seq);
    slm_context *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a context");
    c->m = m;
    c->n_seq = n_seq;
    const slm_placement *pl = &m->place;
    const slm_hparams *hp = &m->hp;
    int n_batch = m->cfg.n_batch;
    /* CPU buffers are host memory, so this instance runs on the model's mapping as its own instance would */
    slm_status s = check_kv_types(m, err);
    if (!s) s = slm_device_open("cpu", &pl->cpu_cfg, &c->devices[0], err);
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
        s = slm_kv_cache_check_memory(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx, n_seq, c->devices, pl->n_devices,
                                      pl->layer_device, other, err);
        for (int d = 0; d < pl->n_devices && !s; d++) {
            if (!device_used(pl, hp->n_layer, d)) continue;
            bool logits = d == pl->output_device;
            uint64_t bytes = slm_scratch_layout(hp, n_batch, logits, NULL, NULL);
            s = slm_buffer_alloc(c->devices[d], (size_t)bytes, &c->scratch[d].buf, err);
            if (!s) slm_scratch_layout(hp, n_batch, logits, &c->scratch[d].buf, &c->scratch[d]);
        }
        if (!s)
            s = slm_kv_cache_create(hp, m->cfg.type_k, m->cfg.type_v, m->cfg.n_ctx, n_seq, c->devices, pl->n_devices,
                                    pl->layer_device, &c->kv, err);
        slm_sched_unlock(&c->sched);
    }
    if (!s) {
        /* a batch has at most n_batch parts (one token each at least) */
        c->logits_rows = (size_t)n_batch;
        c->logits = malloc((size_t)hp->n_vocab * c->logits_rows * sizeof(float));
        c->pos_host = malloc((size_t)n_batch * sizeof(int32_t));
        c->pos = calloc((size_t)n_seq, sizeof *c->pos);
        c->parts = calloc((size_t)n_seq, sizeof *c->parts);
        c->checked_n = calloc((size_t)n_seq, sizeof *c->checked_n);
        c->sched.staging_size = (size_t)hp->n_embd * (size_t)n_batch * sizeof(float);
        c->sched.staging = malloc(c->sched.staging_size);
        if (!c->logits || !c->pos_host || !c->pos || !c->parts || !c->checked_n || !c->sched.staging)
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
    free(c->pos);
    free(c->parts);
    free(c->checked_n);
    slm_sched_free(&c->sched);
    slm_graph_free(&c->graph);
    free(c);
}

int slm_context_n_ctx(const slm_context *c) { return c->m->cfg.n_ctx; }
int slm_context_n_seq(const slm_context *c) { return c->n_seq; }
int slm_context_pos(const slm_context *c) { return c->pos[0]; }
int slm_seq_pos(const slm_context *c, int seq) { return seq >= 0 && seq < c->n_seq ? c->pos[seq] : -1; }

void slm_seq_rewind(slm_context *c, int seq, int pos) {
    if (seq >= 0 && seq < c->n_seq && pos >= 0 && pos < c->pos[seq]) c->pos[seq] = pos;
}
void slm_context_rewind(slm_context *c, int pos) { slm_seq_rewind(c, 0, pos); }

slm_perf slm_context_perf(const slm_context *c) { return c->perf; }

void slm_context_set_observer(slm_context *c, slm_op_observer fn, void *user) {
    c->sched.observer = fn;
    c->sched.observer_user = user;
}

/* Whether the graph of this batch has the shape of the one last checked (the same parts' lengths: the
 * sequences' views differ only in offset, all inside the cache). */
static bool shape_checked(slm_context *c, int n_parts, bool all_logits) {
    bool same = c->n_checked == n_parts && c->checked_all == all_logits;
    for (int i = 0; same && i < n_parts; i++) same = c->checked_n[i] == c->parts[i].n;
    return same;
}

static void shape_record(slm_context *c, int n_parts, bool all_logits) {
    c->n_checked = n_parts;
    c->checked_all = all_logits;
    for (int i = 0; i < n_parts; i++) c->checked_n[i] = c->parts[i].n;
}

/* One forward pass over c->parts[0..n_parts) (n tokens in all, at most n_batch; positions in pos_host), with
 * the model's GPUs held (eval_pass). Logits land at row `row` of the host buffer on: one per token
 * (all_logits) or one per part. */
static slm_status eval_pass_locked(slm_context *c, const int32_t *tokens, int n, int n_parts, bool all_logits,
                                   size_t row, slm_error *err) {
    slm_model *m = c->m;
    const slm_placement *pl = &m->place;
    slm_status s;
    if ((s = slm_tensor_upload(&c->scratch[0].ids, tokens, (size_t)n * 4, err))) return s;
    for (int d = 0; d < pl->n_devices; d++)
        if (c->scratch[d].buf.size && (s = slm_tensor_upload(&c->scratch[d].pos, c->pos_host, (size_t)n * 4, err)))
            return s;
    slm_graph_inputs in = {.m = m,
                           .scratch = c->scratch,
                           .kv = &c->kv,
                           .n_tokens = n,
                           .parts = c->parts,
                           .n_parts = n_parts,
                           .all_logits = all_logits};
    if ((s = slm_graph_build(&in, &c->graph, err))) return s;
    /* the builder makes the same ops for the same batch shape: each shape is checked once */
    if (!shape_checked(c, n_parts, all_logits)) {
        if ((s = slm_sched_check(&c->sched, &c->graph, err))) return s;
        shape_record(c, n_parts, all_logits);
    }
    if ((s = slm_sched_run(&c->sched, &c->graph, c->pos_host[0], n, err))) return s;
    int n_out = all_logits ? n : n_parts;
    slm_tensor lg = slm_tensor_cols(c->scratch[pl->output_device].logits, 0, n_out);
    float *dst = c->logits + row * (size_t)m->hp.n_vocab;
    if ((s = slm_tensor_download(&lg, dst, slm_tensor_bytes(&lg), err))) return s;
    /* NaN or inf logits (broken weights, an overflow) would be sampled as some token or as none at all and
     * end a generation silently; n_vocab floats a row cost nothing beside the forward pass that made them */
    size_t n_vocab = (size_t)m->hp.n_vocab;
    for (size_t i = 0; i < (size_t)n_out * n_vocab; i++)
        if (!isfinite(dst[i])) {
            size_t r = i / n_vocab;
            int at = all_logits ? c->pos_host[r] : c->pos_host[c->parts[r].first + c->parts[r].n - 1];
            return slm_fail(err, SLM_ERR_NUMERIC,
                            "the model produced a non-finite logit (%g for token %zu) at position %d%s: its weights "
                            "or settings are broken",
                            dst[i], i % n_vocab, at, c->n_seq > 1 ? " of a sequence" : "");
        }
    for (int i = 0; i < n_parts; i++) c->pos[c->parts[i].seq] += c->parts[i].n;
    return SLM_OK;
}

/* One forward pass. The GPUs are held from the first upload to the logits' download: uploads and downloads
 * go through a GPU's own staging buffer and command buffer, which contexts share. */
static slm_status eval_pass(slm_context *c, const int32_t *tokens, int n, int n_parts, bool all_logits, size_t row,
                            slm_error *err) {
    for (int i = 0; i < n_parts; i++)
        for (int t = 0; t < c->parts[i].n; t++) c->pos_host[c->parts[i].first + t] = c->pos[c->parts[i].seq] + t;
    slm_sched_lock(&c->sched);
    slm_status s = eval_pass_locked(c, tokens, n, n_parts, all_logits, row, err);
    slm_sched_unlock(&c->sched);
    return s;
}

static slm_status check_tokens(const slm_model *m, const int32_t *tokens, int n, slm_error *err) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "token id %d at %d is outside the vocabulary (%d)", tokens[i], i,
                            m->hp.n_vocab);
    return SLM_OK;
}

static void perf_add(slm_perf *p, double dt, int n_prompt, int n_gen) {
    if (n_prompt) {
        p->prompt_s += dt;
        p->n_prompt += n_prompt;
    } else {
        p->gen_s += dt;
    }
    p->n_gen += n_gen;
}

slm_status slm_eval(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err) {
    slm_model *m = c->m;
    int n_ctx = m->cfg.n_ctx, n_batch = m->cfg.n_batch;
    if (n < 1) return slm_fail(err, SLM_ERR_INVALID_ARG, "eval: no tokens");
    if (n > n_ctx - c->pos[0])
        return slm_fail(err, SLM_ERR_CONTEXT, "%d tokens do not fit: context is %d tokens and %d are used", n, n_ctx,
                        c->pos[0]);
    slm_status s = check_tokens(m, tokens, n, err);
    if (s) return s;
    /* all_logits over several batches: the host buffer grows to hold every row */
    if (all_logits && (size_t)n > c->logits_rows) {
        float *grown = realloc(c->logits, (size_t)m->hp.n_vocab * (size_t)n * sizeof(float));
        if (!grown) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for the logits of %d tokens", n);
        c->logits = grown;
        c->logits_rows = (size_t)n;
    }
    double t0 = now_s();
    c->n_logits = 0;
    for (int i = 0; i < n; i += n_batch) {
        int b = n - i < n_batch ? n - i : n_batch;
        c->parts[0] = (slm_graph_part){.seq = 0, .first = 0, .n = b};
        if ((s = eval_pass(c, tokens + i, b, 1, all_logits, all_logits ? (size_t)i : 0, err))) return s;
        c->n_logits = all_logits ? i + b : 1;
    }
    perf_add(&c->perf, now_s() - t0, n > 1 ? n : 0, n > 1 ? 0 : 1);
    return SLM_OK;
}

slm_status slm_eval_batch(slm_context *c, const slm_batch_part *parts, int n_parts, slm_error *err) {
    slm_model *m = c->m;
    int n_ctx = m->cfg.n_ctx, n_batch = m->cfg.n_batch;
    c->n_logits = 0;
    if (n_parts < 1 || n_parts > c->n_seq)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "a batch has 1 to %d parts (the context's sequences), not %d",
                        c->n_seq, n_parts);
    int n = 0, n_prompt = 0, n_gen = 0;
    for (int i = 0; i < n_parts; i++) {
        const slm_batch_part *p = &parts[i];
        if (p->seq < 0 || p->seq >= c->n_seq)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "batch part %d: sequence %d does not exist (the context has %d)",
                            i, p->seq, c->n_seq);
        if (p->n < 1 || !p->tokens) return slm_fail(err, SLM_ERR_INVALID_ARG, "batch part %d has no tokens", i);
        for (int j = 0; j < i; j++)
            if (parts[j].seq == p->seq)
                return slm_fail(err, SLM_ERR_INVALID_ARG, "sequence %d is in the batch twice (parts %d and %d)", p->seq,
                                j, i);
        if (p->n > n_batch - n)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "a batch holds at most %d tokens (n_batch); these parts have %d",
                            n_batch, n + p->n);
        if (p->n > n_ctx - c->pos[p->seq])
            return slm_fail(err, SLM_ERR_CONTEXT,
                            "%d tokens do not fit sequence %d: context is %d tokens and %d are used", p->n, p->seq,
                            n_ctx, c->pos[p->seq]);
        slm_status s = check_tokens(m, p->tokens, p->n, err);
        if (s) return s;
        c->parts[i] = (slm_graph_part){.seq = p->seq, .first = n, .n = p->n};
        n += p->n;
        if (p->n > 1) n_prompt += p->n;
        else n_gen++;
    }
    /* the parts' tokens, back to back in column order (pos_host is free until eval_pass fills it) */
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for a batch of %d tokens", n);
    for (int i = 0; i < n_parts; i++)
        memcpy(ids + c->parts[i].first, parts[i].tokens, (size_t)parts[i].n * sizeof *ids);
    double t0 = now_s();
    slm_status s = eval_pass(c, ids, n, n_parts, false, 0, err);
    free(ids);
    if (s) return s;
    c->n_logits = n_parts;
    perf_add(&c->perf, now_s() - t0, n_prompt, n_gen);
    return SLM_OK;
}

const float *slm_batch_logits(const slm_context *c, int part) { return slm_logits(c, part); }

const float *slm_logits(const slm_context *c, int i) {
    if (i < 0) i = c->n_logits - 1;
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}
