#include "graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static slm_op *push(slm_graph *g, slm_op_kind kind, int layer, const char *name) {
    if (g->n_ops == g->cap) {
        int cap = g->cap ? g->cap * 2 : 256;
        slm_op *ops = realloc(g->ops, (size_t)cap * sizeof *ops);
        if (!ops) return NULL;
        g->ops = ops;
        g->cap = cap;
    }
    slm_op *op = &g->ops[g->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->layer = layer;
    op->name = name;
    return op;
}

#define PUSH(kind, name)                                                        \
    op = push(g, kind, il, name);                                               \
    if (!op) return slm_fail(err, SLM_ERR_NOMEM, "out of memory building the graph");

static slm_status matmul(slm_graph *g, int il, const char *name, slm_tensor w, slm_tensor b, slm_tensor x,
                         slm_tensor y, slm_error *err) {
    slm_op *op;
    PUSH(SLM_OP_MATMUL, name);
    op->src[0] = w;
    op->src[1] = x;
    op->src[2] = b;
    op->dst = y;
    return SLM_OK;
}

/* [heads*hd, T] seen as [hd, heads, T] for RoPE */
static slm_tensor heads_view(slm_tensor t, int64_t hd) {
    slm_tensor v = t;
    v.ne[0] = hd;
    v.ne[1] = t.ne[0] / hd;
    v.ne[2] = t.ne[1];
    v.nb[1] = (size_t)hd * sizeof(float);
    v.nb[2] = t.nb[1];
    v.nb[3] = t.nb[1] * (size_t)t.ne[1];
    return v;
}

static slm_status build_layer(const slm_graph_inputs *in, slm_graph *g, int il, slm_error *err) {
    const slm_model *m = in->m;
    const slm_hparams *hp = &m->hp;
    const slm_layer *L = &m->layers[il];
    int d = L->device;
    slm_scratch *S = &in->scratch[d];
    int64_t T = in->n_tokens;
    slm_tensor x = slm_tensor_cols(S->x, 0, T), xn = slm_tensor_cols(S->xn, 0, T);
    slm_tensor q = slm_tensor_cols(S->q, 0, T), k = slm_tensor_cols(S->k, 0, T), v = slm_tensor_cols(S->v, 0, T);
    slm_tensor att = slm_tensor_cols(S->att, 0, T), tmp = slm_tensor_cols(S->tmp, 0, T);
    slm_tensor gate = slm_tensor_cols(S->gate, 0, T), up = slm_tensor_cols(S->up, 0, T);
    slm_tensor pos = S->pos;
    pos.ne[0] = T;
    slm_op *op;
    slm_status s;

    PUSH(SLM_OP_RMSNORM, "attn_norm");
    op->src[0] = x; op->src[1] = L->attn_norm; op->dst = xn; op->p.norm.eps = hp->norm_eps;
    if ((s = matmul(g, il, "attn_q", L->wq, L->bq, xn, q, err)) ||
        (s = matmul(g, il, "attn_k", L->wk, L->bk, xn, k, err)) ||
        (s = matmul(g, il, "attn_v", L->wv, L->bv, xn, v, err)))
        return s;
    slm_tensor qh = heads_view(q, hp->head_dim), kh = heads_view(k, hp->head_dim);
    for (int i = 0; i < 2; i++) {
        PUSH(SLM_OP_ROPE, i ? "rope_k" : "rope_q");
        op->dst = op->src[0] = i ? kh : qh;
        op->src[1] = pos;
        op->src[2] = m->rope_freqs_on[d];
        op->p.rope.n_rot = hp->n_rot;
        op->p.rope.neox = hp->rope_neox;
        op->p.rope.freq_base = hp->rope_freq_base;
        op->p.rope.freq_scale = hp->rope_freq_scale;
    }
    PUSH(SLM_OP_KV_WRITE, "k_write");
    op->src[0] = k; op->src[1] = pos; op->dst = in->k_cache[il];
    PUSH(SLM_OP_KV_WRITE, "v_write");
    op->src[0] = v; op->src[1] = pos; op->dst = in->v_cache[il];
    PUSH(SLM_OP_ATTENTION, "attention");
    op->src[0] = q; op->src[1] = in->k_cache[il]; op->src[2] = in->v_cache[il]; op->src[3] = pos; op->dst = att;
    op->p.attn.n_head = hp->n_head;
    op->p.attn.n_head_kv = hp->n_head_kv;
    op->p.attn.head_dim = hp->head_dim;
    /* longrope's magnitude factor on rotated q and k scales q.k by its square (see model.c) */
    float mag = hp->rope_attn_factor > 0.0f ? hp->rope_attn_factor : 1.0f;
    op->p.attn.scale = mag * mag / sqrtf((float)hp->head_dim);
    slm_tensor none = {0};
    if ((s = matmul(g, il, "attn_output", L->wo, none, att, tmp, err))) return s;
    PUSH(SLM_OP_ADD, "attn_residual");
    op->src[0] = x; op->src[1] = tmp; op->dst = x;
    PUSH(SLM_OP_RMSNORM, "ffn_norm");
    op->src[0] = x; op->src[1] = L->ffn_norm; op->dst = xn; op->p.norm.eps = hp->norm_eps;
    if ((s = matmul(g, il, "ffn_gate", L->w_gate, none, xn, gate, err)) ||
        (s = matmul(g, il, "ffn_up", L->w_up, none, xn, up, err)))
        return s;
    PUSH(SLM_OP_SWIGLU, "swiglu");
    op->src[0] = gate; op->src[1] = up; op->dst = gate;
    if ((s = matmul(g, il, "ffn_down", L->w_down, none, gate, tmp, err))) return s;
    PUSH(SLM_OP_ADD, "ffn_residual");
    op->src[0] = x; op->src[1] = tmp; op->dst = x;
    return SLM_OK;
}

slm_status slm_graph_build(const slm_graph_inputs *in, slm_graph *g, slm_error *err) {
    const slm_model *m = in->m;
    int64_t T = in->n_tokens;
    g->n_ops = 0;
    slm_op *op;
    int il = -1;
    slm_scratch *H = &in->scratch[0];
    slm_tensor ids = H->ids;
    ids.ne[0] = T;
    PUSH(SLM_OP_EMBED, "token_embd");
    op->src[0] = m->tok_embd; op->src[1] = ids; op->dst = slm_tensor_cols(H->x, 0, T);
    slm_status s;
    for (int l = 0; l < m->hp.n_layer; l++)
        if ((s = build_layer(in, g, l, err))) return s;
    il = m->hp.n_layer;
    slm_scratch *O = &in->scratch[m->output_device];
    int64_t first = in->all_logits ? 0 : T - 1, n = in->all_logits ? T : 1;
    PUSH(SLM_OP_RMSNORM, "output_norm");
    op->src[0] = slm_tensor_cols(O->x, first, n); op->src[1] = m->output_norm;
    op->dst = slm_tensor_cols(O->xn, first, n); op->p.norm.eps = m->hp.norm_eps;
    slm_tensor none = {0};
    return matmul(g, il, "output", m->output, none, slm_tensor_cols(O->xn, first, n),
                  slm_tensor_cols(O->logits, 0, n), err);
}

void slm_graph_free(slm_graph *g) {
    free(g->ops);
    memset(g, 0, sizeof *g);
}

int slm_graph_op_device(const slm_model *m, const slm_op *op) {
    if (op->layer < 0) return 0;
    if (op->layer >= m->hp.n_layer) return m->output_device;
    return m->layers[op->layer].device;
}
