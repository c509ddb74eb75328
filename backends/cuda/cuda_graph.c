/* Decode as a CUDA graph: the graph builder hands the same split (same ops, same buffers, one token) to the
 * device for every generated token, and every value that changes per token (positions, and through them the
 * KV length of attention) is read by the kernels from device memory uploaded before the run. So a split
 * captured once can be replayed unchanged: no re-capture and no graph update per token.
 *
 * A split is identified by its signature: kind, parameters, resolved device addresses, types, shapes and
 * strides of every op. A signature seen for the second time (among the last few) is captured; a captured
 * one is replayed. One-off splits (tests, changing prompt lengths) never pay for a capture. Splits that need cuBLAS
 * (prompt GEMMs) are never captured. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "error.h"

static void put_tensor(uint64_t **p, const slm_tensor *t) {
    uint64_t *q = *p;
    q[0] = t->buf ? (uint64_t)(uintptr_t)t->buf->handle + t->offset : 0;
    q[1] = (uint64_t)t->type;
    for (int i = 0; i < 4; i++) {
        q[2 + i] = (uint64_t)t->ne[i];
        q[6 + i] = (uint64_t)t->nb[i];
    }
    *p = q + 10;
}

static uint64_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

#define SIG_WORDS_PER_OP (2 + 5 * 10 + 4)

/* Fills sig (n_ops * SIG_WORDS_PER_OP words). */
static void signature(const slm_op *ops, int n_ops, uint64_t *sig) {
    uint64_t *p = sig;
    for (int i = 0; i < n_ops; i++) {
        const slm_op *op = &ops[i];
        *p++ = (uint64_t)op->kind;
        *p++ = (uint64_t)(int64_t)op->layer;
        put_tensor(&p, &op->dst);
        for (int j = 0; j < 4; j++) put_tensor(&p, &op->src[j]);
        uint64_t par[4] = {0, 0, 0, 0};
        switch (op->kind) {
        case SLM_OP_RMSNORM: par[0] = f2u(op->p.norm.eps); break;
        case SLM_OP_ROPE:
            par[0] = (uint64_t)op->p.rope.n_rot;
            par[1] = op->p.rope.neox ? 1 : 0;
            par[2] = f2u(op->p.rope.freq_base);
            par[3] = f2u(op->p.rope.freq_scale);
            break;
        case SLM_OP_ATTENTION:
            par[0] = (uint64_t)op->p.attn.n_head | (uint64_t)(uint32_t)op->p.attn.window << 32;
            par[1] = (uint64_t)op->p.attn.n_head_kv;
            par[2] = (uint64_t)op->p.attn.head_dim;
            par[3] = f2u(op->p.attn.scale);
            break;
        default: break;
        }
        memcpy(p, par, sizeof par);
        p += 4;
    }
}

static void drop(slm_cuda_graph *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    free(g->sig);
    memset(g, 0, sizeof *g);
}

void slm_cuda_graph_clear(slm_cuda_ctx *c) {
    for (int i = 0; i < SLM_CUDA_MAX_GRAPHS; i++) {
        drop(&c->graphs[i]);
        drop(&c->seen[i]);
    }
}

static bool same(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    return a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0;
}

/* Captures the split into a new executable graph (slot chosen least recently used) and launches it. Takes
 * ownership of sig. *captured tells whether the graph was made (a later failure is then a launch failure). */
static slm_status capture(slm_cuda_ctx *c, const slm_op *ops, int n_ops, uint64_t *sig, size_t n_sig, bool *captured,
                          slm_error *err) {
    *captured = false;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        free(sig);
        cudaGetLastError();
        return slm_cuda_error(e, "begin graph capture", err);
    }
    slm_status st = slm_cuda_enqueue(c, ops, n_ops, err);
    cudaGraph_t graph = NULL;
    e = cudaStreamEndCapture(c->stream, &graph); /* always: the stream must leave capture mode */
    if (st || e != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        free(sig);
        return st ? st : slm_cuda_error(e, "end graph capture", err);
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        free(sig);
        return slm_cuda_error(e, "instantiate graph", err);
    }
    *captured = true;
    int slot = 0;
    for (int i = 1; i < SLM_CUDA_MAX_GRAPHS; i++)
        if (c->graphs[i].last_use < c->graphs[slot].last_use) slot = i;
    drop(&c->graphs[slot]);
    c->graphs[slot].sig = sig;
    c->graphs[slot].n_sig = n_sig;
    c->graphs[slot].exec = exec;
    c->graphs[slot].last_use = ++c->tick;
    c->n_captures++;
    e = cudaGraphLaunch(exec, c->stream);
    if (e != cudaSuccess) return slm_cuda_error(e, "launch graph", err);
    c->n_graph_launches++;
    return SLM_OK;
}

slm_status slm_cuda_graph_run(slm_cuda_ctx *c, const slm_op *ops, int n_ops, slm_error *err) {
    bool capturable = c->use_graphs && !c->sync_each && n_ops > 0;
    for (int i = 0; i < n_ops && capturable; i++) capturable = slm_cuda_op_capturable(&ops[i]);
    if (!capturable) return slm_cuda_enqueue(c, ops, n_ops, err);

    size_t n_sig = (size_t)n_ops * SIG_WORDS_PER_OP;
    uint64_t *sig = malloc(n_sig * sizeof *sig);
    if (!sig) return slm_cuda_enqueue(c, ops, n_ops, err); /* graphs are an optimisation */
    signature(ops, n_ops, sig);

    for (int i = 0; i < SLM_CUDA_MAX_GRAPHS; i++) {
        slm_cuda_graph *g = &c->graphs[i];
        if (g->exec && same(g->sig, g->n_sig, sig, n_sig)) {
            free(sig);
            g->last_use = ++c->tick;
            cudaError_t e = cudaGraphLaunch(g->exec, c->stream);
            if (e != cudaSuccess) return slm_cuda_error(e, "launch graph", err);
            c->n_graph_launches++;
            return SLM_OK;
        }
    }
    int seen = -1, oldest = 0;
    for (int i = 0; i < SLM_CUDA_MAX_GRAPHS; i++) {
        if (same(c->seen[i].sig, c->seen[i].n_sig, sig, n_sig)) seen = i;
        if (c->seen[i].last_use < c->seen[oldest].last_use) oldest = i;
    }
    if (seen >= 0) {
        drop(&c->seen[seen]);
        bool captured;
        slm_status st = capture(c, ops, n_ops, sig, n_sig, &captured, err);
        if (st == SLM_OK || captured) return st;
        /* Capture is an optimisation: when it fails (e.g. a driver without graph support), run eagerly
         * and stop trying on this device. A launch failure of a made graph is a real error. */
        c->use_graphs = false;
        return slm_cuda_enqueue(c, ops, n_ops, err);
    }
    drop(&c->seen[oldest]);
    c->seen[oldest].sig = sig;
    c->seen[oldest].n_sig = n_sig;
    c->seen[oldest].last_use = ++c->tick;
    return slm_cuda_enqueue(c, ops, n_ops, err);
}
