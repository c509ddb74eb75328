#include "graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static slm_op *push(slm_graph *g, slm_op_kind kind, int layer, int device, const char *name) {
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
    op->device = device;
    op->name = name;
    return op;
}

static slm_status transfer(slm_graph *g, int before, slm_tensor src, slm_tensor dst, slm_error *err) {
    if (g->n_xfers == g->xcap) {
        int cap = g->xcap ? g->xcap * 2 : 16;
        slm_transfer *x = realloc(g->xfers, (size_t)cap * sizeof *x);
        if (!x) return slm_fail(err, SLM_ERR_NOMEM, "out of memory building the graph");
        g->xfers = x;
        g->xcap = cap;
    }
    g->xfers[g->n_xfers++] = (slm_transfer){.before = before, .src = src, .dst = dst};
    return SLM_OK;
}

#define PUSH(kind, name)                                                                                               \
    op = push(g, kind, il, d, name);                                                                                   \
    if (!op) return slm_fail(err, SLM_ERR_NOMEM, "out of memory building the graph");

static slm_status matmul(slm_graph *g, int il, int d, const char *name, slm_tensor w, slm_tensor b, slm_tensor x,
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

/* The residual stream of the batch moves to device `to` when the next ops run there. */
static slm_status follow_residual(const slm_graph_inputs *in, slm_graph *g, int *at, int to, slm_error *err) {
    if (*at == to) return SLM_OK;
    int64_t T = in->n_tokens;
    slm_status s =
        transfer(g, g->n_ops, slm_tensor_cols(in->scratch[*at].x, 0, T), slm_tensor_cols(in->scratch[to].x, 0, T), err);
    *at = to;
    return s;
}

/* gemma3 normalizes a block's output (in place) before it joins the residual; nothing for the others. */
static slm_status post_norm(slm_graph *g, int il, int d, const slm_hparams *hp, const char *name, slm_tensor w,
                            slm_tensor y, slm_error *err) {
    if (!hp->has_post_norms) return SLM_OK;
    slm_op *op;
    PUSH(SLM_OP_RMSNORM, name);
    op->dst = op->src[0] = y;
    op->src[1] = w;
    op->p.norm.eps = hp->norm_eps;
    return SLM_OK;
}

static slm_status build_layer(const slm_graph_inputs *in, slm_graph *g, int il, slm_error *err) {
    const slm_model *m = in->m;
    const slm_hparams *hp = &m->hp;
    int d = m->place.layer_device[il];
    const slm_layer *L = &m->place.bound[d].layers[il];
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
    op->src[0] = x;
    op->src[1] = L->attn_norm;
    op->dst = xn;
    op->p.norm.eps = hp->norm_eps;
    if ((s = matmul(g, il, d, "attn_q", L->wq, L->bq, xn, q, err)) ||
        (s = matmul(g, il, d, "attn_k", L->wk, L->bk, xn, k, err)) ||
        (s = matmul(g, il, d, "attn_v", L->wv, L->bv, xn, v, err)))
        return s;
    slm_tensor qh = heads_view(q, hp->head_dim), kh = heads_view(k, hp->head_dim);
    /* qwen3 normalizes each head of q and k before rotation: the RMSNorm op in place over columns of head_dim
     * ([heads*hd, T] is [hd, heads*T] column by column), so no op of its own is needed. */
    for (int i = 0; L->q_norm.buf && i < 2; i++) {
        slm_tensor t = i ? k : q;
        /* the view needs the token columns back to back, as scratch.c lays them out */
        if (t.ne[1] > 1 && t.nb[1] != (size_t)t.ne[0] * sizeof(float))
            return slm_fail(err, SLM_ERR_UNSUPPORTED, "graph: %s columns are padded; per-head norms need them packed",
                            i ? "k" : "q");
        t.ne[0] = hp->head_dim;
        t.ne[1] = (i ? hp->n_head_kv : hp->n_head) * T;
        t.nb[1] = (size_t)hp->head_dim * sizeof(float);
        PUSH(SLM_OP_RMSNORM, i ? "attn_k_norm" : "attn_q_norm");
        op->dst = op->src[0] = t;
        op->src[1] = i ? L->k_norm : L->q_norm;
        op->p.norm.eps = hp->norm_eps;
    }
    /* gemma3's local (sliding-window) layers rotate with their own base and without the file's scaling */
    bool local = slm_layer_is_local(hp, il);
    for (int i = 0; i < 2; i++) {
        PUSH(SLM_OP_ROPE, i ? "rope_k" : "rope_q");
        op->dst = op->src[0] = i ? kh : qh;
        op->src[1] = pos;
        if (!local) op->src[2] = m->place.bound[d].rope_freqs;
        op->p.rope.n_rot = hp->n_rot;
        op->p.rope.neox = hp->rope_neox;
        op->p.rope.freq_base = local ? hp->rope_local_freq_base : hp->rope_freq_base;
        op->p.rope.freq_scale = local ? 1.0f : hp->rope_freq_scale;
    }
    /* each sequence writes its rows and attends over its own cache: positions are per sequence */
    for (int ip = 0; ip < in->n_parts; ip++) {
        const slm_graph_part *pt = &in->parts[ip];
        slm_tensor kc = slm_kv_seq(in->kv, false, il, pt->seq), vc = slm_kv_seq(in->kv, true, il, pt->seq);
        slm_tensor ppos = pos;
        ppos.offset += (size_t)pt->first * pos.nb[0];
        ppos.ne[0] = pt->n;
        PUSH(SLM_OP_KV_WRITE, "k_write");
        op->src[0] = slm_tensor_cols(k, pt->first, pt->n);
        op->src[1] = ppos;
        op->dst = kc;
        PUSH(SLM_OP_KV_WRITE, "v_write");
        op->src[0] = slm_tensor_cols(v, pt->first, pt->n);
        op->src[1] = ppos;
        op->dst = vc;
        PUSH(SLM_OP_ATTENTION, "attention");
        op->src[0] = slm_tensor_cols(q, pt->first, pt->n);
        op->src[1] = kc;
        op->src[2] = vc;
        op->src[3] = ppos;
        op->dst = slm_tensor_cols(att, pt->first, pt->n);
        op->p.attn.n_head = hp->n_head;
        op->p.attn.n_head_kv = hp->n_head_kv;
        op->p.attn.head_dim = hp->head_dim;
        op->p.attn.scale = m->cfg.attn_scale;
        op->p.attn.window = local ? hp->sliding_window : 0;
    }
    slm_tensor none = {0};
    if ((s = matmul(g, il, d, "attn_output", L->wo, none, att, tmp, err))) return s;
    if ((s = post_norm(g, il, d, hp, "post_attention_norm", L->post_attn_norm, tmp, err))) return s;
    PUSH(SLM_OP_ADD, "attn_residual");
    op->src[0] = x;
    op->src[1] = tmp;
    op->dst = x;
    PUSH(SLM_OP_RMSNORM, "ffn_norm");
    op->src[0] = x;
    op->src[1] = L->ffn_norm;
    op->dst = xn;
    op->p.norm.eps = hp->norm_eps;
    if ((s = matmul(g, il, d, "ffn_gate", L->w_gate, none, xn, gate, err)) ||
        (s = matmul(g, il, d, "ffn_up", L->w_up, none, xn, up, err)))
        return s;
    PUSH(hp->ffn_gelu ? SLM_OP_GEGLU : SLM_OP_SWIGLU, hp->ffn_gelu ? "geglu" : "swiglu");
    op->src[0] = gate;
    op->src[1] = up;
    op->dst = gate;
    if ((s = matmul(g, il, d, "ffn_down", L->w_down, none, gate, tmp, err))) return s;
    if ((s = post_norm(g, il, d, hp, "post_ffw_norm", L->post_ffw_norm, tmp, err))) return s;
    PUSH(SLM_OP_ADD, "ffn_residual");
    op->src[0] = x;
    op->src[1] = tmp;
    op->dst = x;
    return SLM_OK;
}

/* ---- ops a device cannot run go to the CPU ---- */

/* The host's binding of a weight that device d holds: the same slot in the mapping. */
static bool host_twin(const slm_model *m, int d, int il, slm_tensor *t) {
    const slm_weights *dw = &m->place.bound[d], *hw = &m->host;
    const slm_tensor *from[SLM_LAYER_MAX_WEIGHTS + 3], *to[SLM_LAYER_MAX_WEIGHTS + 3];
    int n = 0;
    if (il >= 0 && il < m->hp.n_layer) {
        slm_tensor *a[SLM_LAYER_MAX_WEIGHTS], *b[SLM_LAYER_MAX_WEIGHTS];
        slm_layer_weights(&dw->layers[il], a);
        slm_layer_weights(&hw->layers[il], b);
        for (int i = 0; i < SLM_LAYER_MAX_WEIGHTS; i++, n++) {
            from[n] = a[i];
            to[n] = b[i];
        }
    }
    from[n] = &dw->output_norm, to[n++] = &hw->output_norm;
    from[n] = &dw->output, to[n++] = &hw->output;
    from[n] = &dw->rope_freqs, to[n++] = &hw->rope_freqs;
    for (int i = 0; i < n; i++)
        if (from[i]->buf && from[i]->buf == t->buf && from[i]->offset == t->offset) {
            *t = *to[i];
            return true;
        }
    return false;
}

/* Rebinds op i (on device d) to the CPU: weights to the mapping, activations to the CPU's scratch with
 * copies there before the op and back after it. The KV cache does not move. */
static slm_status route_to_host(const slm_graph_inputs *in, slm_graph *g, int i, slm_error *err) {
    const slm_model *m = in->m;
    slm_op *op = &g->ops[i];
    int d = op->device;
    slm_tensor *operands[5] = {&op->src[0], &op->src[1], &op->src[2], &op->src[3], &op->dst};
    for (int k = 0; k < 5; k++) {
        slm_tensor *t = operands[k];
        if (!t->buf) continue;
        slm_tensor dev_view = *t;
        if (host_twin(m, d, op->layer, t)) continue;
        if (!slm_scratch_remap(&in->scratch[d], &in->scratch[0], t))
            return slm_fail(err, SLM_ERR_UNSUPPORTED,
                            "%s cannot run op %s (%s) of layer %d, and its operand %d (the KV cache or the logits) "
                            "cannot move to the CPU; use fewer GPU layers",
                            m->place.devices[d]->name, op->name, slm_op_kind_name(op->kind), op->layer, k);
        slm_status s = k < 4 ? transfer(g, i, dev_view, *t, err) : transfer(g, i + 1, *t, dev_view, err);
        if (s) return s;
    }
    op->device = 0;
    return SLM_OK;
}

static slm_status route(const slm_graph_inputs *in, slm_graph *g, slm_error *err) {
    const slm_model *m = in->m;
    bool moved = false;
    for (int i = 0; i < g->n_ops; i++) {
        slm_op *op = &g->ops[i];
        if (op->device == 0) continue;
        if (!(m->gpu_refused_ops >> op->kind & 1) && slm_device_supports(m->place.devices[op->device], op)) continue;
        slm_status s = route_to_host(in, g, i, err);
        if (s) return s;
        moved = true;
    }
    /* in the order of `before`, stable: of the copies before one op, those declared first (a residual
     * crossing, a routed op's result) run first. Few copies: an insertion sort. */
    for (int i = 1; moved && i < g->n_xfers; i++) {
        slm_transfer x = g->xfers[i];
        int j = i;
        for (; j > 0 && g->xfers[j - 1].before > x.before; j--) g->xfers[j] = g->xfers[j - 1];
        g->xfers[j] = x;
    }
    return SLM_OK;
}

slm_status slm_graph_build(const slm_graph_inputs *given, slm_graph *g, slm_error *err) {
    /* no parts: one of sequence 0, every token */
    slm_graph_inputs one = *given;
    slm_graph_part whole = {.seq = 0, .first = 0, .n = given->n_tokens};
    if (!one.n_parts) {
        one.parts = &whole;
        one.n_parts = 1;
    }
    const slm_graph_inputs *in = &one;
    const slm_model *m = in->m;
    int64_t T = in->n_tokens;
    g->n_ops = 0;
    g->n_xfers = 0;
    slm_op *op;
    int il = -1, d = 0, at = 0;
    slm_scratch *H = &in->scratch[0];
    slm_tensor ids = H->ids;
    ids.ne[0] = T;
    PUSH(SLM_OP_EMBED, "token_embd");
    op->src[0] = m->host.tok_embd;
    op->src[1] = ids;
    op->dst = slm_tensor_cols(H->x, 0, T);
    op->p.embed.scale = m->hp.embd_scale;
    slm_status s;
    for (int l = 0; l < m->hp.n_layer; l++)
        if ((s = follow_residual(in, g, &at, m->place.layer_device[l], err)) || (s = build_layer(in, g, l, err)))
            return s;
    il = m->hp.n_layer;
    d = m->place.output_device;
    if ((s = follow_residual(in, g, &at, d, err))) return s;
    const slm_weights *w = &m->place.bound[d];
    slm_scratch *O = &in->scratch[d];
    /* the final norm of the columns that give logits, gathered into the first columns of xn (all tokens:
     * in place; one part: its last token) so that the head reads each of its rows once for all of them */
    int64_t n = in->all_logits ? T : in->n_parts;
    for (int ip = 0; ip < (in->all_logits ? 1 : in->n_parts); ip++) {
        int64_t from = in->all_logits ? 0 : in->parts[ip].first + in->parts[ip].n - 1, to = in->all_logits ? 0 : ip;
        int64_t cols = in->all_logits ? T : 1;
        PUSH(SLM_OP_RMSNORM, "output_norm");
        op->src[0] = slm_tensor_cols(O->x, from, cols);
        op->src[1] = w->output_norm;
        op->dst = slm_tensor_cols(O->xn, to, cols);
        op->p.norm.eps = m->hp.norm_eps;
    }
    slm_tensor none = {0};
    if ((s = matmul(g, il, d, "output", w->output, none, slm_tensor_cols(O->xn, 0, n), slm_tensor_cols(O->logits, 0, n),
                    err)))
        return s;
    return route(in, g, err);
}

void slm_graph_free(slm_graph *g) {
    free(g->ops);
    free(g->xfers);
    memset(g, 0, sizeof *g);
}
