/* Binding a model's weights: every tensor the architecture needs, as a view of the mapping in its per-layer
 * slot, its shape checked against the hyper-parameters. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Binds tensor `name` as a view of the mapping, checking its shape {ne0, ne1} (ne1 = 0: 1-D). */
static slm_status bind(slm_model *m, const char *name, int64_t ne0, int64_t ne1, bool required, slm_tensor *out,
                       slm_error *err) {
    memset(out, 0, sizeof *out);
    const slm_gguf_tensor *t = slm_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) return slm_fail(err, SLM_ERR_FORMAT, "%s: missing tensor %s", m->gguf->path, name);
        return SLM_OK;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        m->gguf->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3], (long long)ne0, (long long)want1);
    if (!ne1 && t->type != SLM_F32)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, expected f32", m->gguf->path, name,
                        slm_dtype_name(t->type));
    *out = slm_tensor_make(&m->host_weights, (size_t)(m->gguf->data_offset + t->offset), t->type, t->ne[0], t->ne[1], 1,
                           1);
    return SLM_OK;
}

/* phi3 fuses weights that llama keeps apart: attn_qkv [n_embd, Q + 2 KV] holds the rows of q, then k, then v;
 * ffn_up [n_embd, 2 n_ff] the rows of gate, then up. Rows are contiguous bytes whatever the quantization,
 * so each part is bound as a row range of the fused tensor: the same mat-mul ops as llama, no copy, and the
 * parts add up to the fused tensor's bytes (the planner's count stays exact). */
static slm_status bind_fused(slm_model *m, const char *name, int64_t ne0, const int64_t *parts, int n_parts,
                             slm_tensor **slots, slm_error *err) {
    int64_t rows = 0;
    for (int i = 0; i < n_parts; i++) rows += parts[i];
    slm_tensor whole;
    slm_status s = bind(m, name, ne0, rows, true, &whole, err);
    if (s) return s;
    for (int64_t i = 0, first = 0; i < n_parts; first += parts[i], i++)
        *slots[i] = slm_tensor_cols(whole, first, parts[i]);
    return SLM_OK;
}

static bool has_tensor(const slm_model *m, const char *name) { return slm_gguf_find_tensor(m->gguf, name) != NULL; }

static slm_status bind_layer(slm_model *m, int il, slm_error *err) {
    const slm_hparams *hp = &m->hp;
    slm_layer *L = &m->host.layers[il];
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[96];
    slm_status s;
#define NAME(suffix) snprintf(n, sizeof n, "blk.%d.%s", il, suffix)
#define BIND(suffix, a, b, req, slot)                                                                                  \
    NAME(suffix);                                                                                                      \
    if ((s = bind(m, n, a, b, req, &L->slot, err))) return s;
    BIND("attn_norm.weight", E, 0, true, attn_norm);
    /* phi3 files written by the common converters fuse q/k/v and gate/up; some carry them apart, as llama. */
    bool phi3 = hp->arch == SLM_ARCH_PHI3;
    NAME("attn_qkv.weight");
    if (phi3 && has_tensor(m, n)) {
        int64_t parts[3] = {Q, KV, KV};
        slm_tensor *slots[3] = {&L->wq, &L->wk, &L->wv};
        if ((s = bind_fused(m, n, E, parts, 3, slots, err))) return s;
    } else {
        BIND("attn_q.weight", E, Q, true, wq);
        BIND("attn_k.weight", E, KV, true, wk);
        BIND("attn_v.weight", E, KV, true, wv);
    }
    BIND("attn_output.weight", Q, E, true, wo);
    BIND("attn_q.bias", Q, 0, hp->has_qkv_bias, bq);
    BIND("attn_k.bias", KV, 0, hp->has_qkv_bias, bk);
    BIND("attn_v.bias", KV, 0, hp->has_qkv_bias, bv);
    BIND("attn_q_norm.weight", hp->head_dim, 0, hp->has_qk_norm, q_norm);
    BIND("attn_k_norm.weight", hp->head_dim, 0, hp->has_qk_norm, k_norm);
    BIND("ffn_norm.weight", E, 0, true, ffn_norm);
    NAME("ffn_gate.weight");
    if (phi3 && !has_tensor(m, n)) {
        NAME("ffn_up.weight");
        int64_t parts[2] = {hp->n_ff, hp->n_ff};
        slm_tensor *slots[2] = {&L->w_gate, &L->w_up};
        if ((s = bind_fused(m, n, E, parts, 2, slots, err))) return s;
    } else {
        BIND("ffn_gate.weight", E, hp->n_ff, true, w_gate);
        BIND("ffn_up.weight", E, hp->n_ff, true, w_up);
    }
    BIND("ffn_down.weight", hp->n_ff, E, true, w_down);
    if (hp->has_post_norms) {
        BIND("post_attention_norm.weight", E, 0, true, post_attn_norm);
        BIND("post_ffw_norm.weight", E, 0, true, post_ffw_norm);
    }
#undef BIND
#undef NAME
    m->layer_bytes[il] = slm_layer_bytes(L);
    return SLM_OK;
}

static slm_status bind_all(slm_model *m, slm_error *err) {
    const slm_hparams *hp = &m->hp;
    slm_weights *w = &m->host;
    slm_status s;
    if ((s = bind(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &w->tok_embd, err))) return s;
    if ((s = bind(m, "output_norm.weight", hp->n_embd, 0, true, &w->output_norm, err))) return s;
    if ((s = bind(m, "output.weight", hp->n_embd, hp->n_vocab, false, &w->output, err))) return s;
    if (!w->output.buf) w->output = w->tok_embd; /* tied embeddings */
    if (m->cfg.rope_freqs_name && (s = bind(m, m->cfg.rope_freqs_name, hp->n_rot / 2, 0, true, &w->rope_freqs, err)))
        return s;
    m->output_bytes = slm_tensor_bytes(&w->output) + slm_tensor_bytes(&w->output_norm);
    w->layers = calloc((size_t)hp->n_layer, sizeof *w->layers);
    m->layer_bytes = calloc((size_t)hp->n_layer, sizeof *m->layer_bytes);
    if (!w->layers || !m->layer_bytes)
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory binding %d layers", hp->n_layer);
    for (int il = 0; il < hp->n_layer; il++)
        if ((s = bind_layer(m, il, err))) return s;
    return SLM_OK;
}

static slm_status copy_strings(slm_model *m, slm_error *err) {
    slm_gguf_str v;
    if (slm_gguf_get_str(m->gguf, "general.name", &v))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(v.len < 127 ? v.len : 127), v.ptr);
    if (slm_gguf_get_str(m->gguf, "tokenizer.chat_template", &v)) {
        m->chat_template = malloc(v.len + 1);
        if (!m->chat_template) return slm_fail(err, SLM_ERR_NOMEM, "out of memory reading the chat template");
        memcpy(m->chat_template, v.ptr, v.len);
        m->chat_template[v.len] = 0;
    }
    return SLM_OK;
}

slm_status slm_model_bind(slm_model *m, slm_error *err) {
    slm_status s = copy_strings(m, err);
    return s ? s : bind_all(m, err);
}

void slm_model_unbind(slm_model *m) {
    free(m->host.layers);
    free(m->layer_bytes);
    free(m->chat_template);
    m->host.layers = NULL;
    m->layer_bytes = NULL;
    m->chat_template = NULL;
}
