/* Loading a model: hyper-parameters, weights bound to per-layer slots (every shape checked), the
 * placement plan, and the upload of each device's layers. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_place.h"
#include "tokenizer.h"

slm_params slm_params_default(void) {
    slm_params p;
    memset(&p, 0, sizeof p);
    p.device = "auto";
    p.n_gpu_layers = -2;
    return p;
}

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
        return slm_fail(err, SLM_ERR_FORMAT,
                        "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", m->gguf->path,
                        name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)ne0, (long long)want1);
    if (!ne1 && t->type != SLM_F32)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, expected f32", m->gguf->path, name,
                        slm_dtype_name(t->type));
    *out = slm_tensor_make(&m->host_weights, (size_t)(m->gguf->data_offset + t->offset), t->type, t->ne[0],
                           t->ne[1], 1, 1);
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
    slm_layer *L = &m->layers[il];
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[96];
    slm_status s;
#define NAME(suffix) snprintf(n, sizeof n, "blk.%d.%s", il, suffix)
#define BIND(suffix, a, b, req, slot)                                    \
    NAME(suffix);                                                        \
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
#undef BIND
#undef NAME
    L->weight_bytes = 0;
    const slm_tensor *all[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk,
                               &L->bv, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buf) L->weight_bytes += slm_tensor_bytes(all[i]);
    return SLM_OK;
}

/* Rope frequency divisors must be finite and positive: a zero would turn every angle after it into NaN. */
static slm_status check_divisors(const slm_model *m, const char *name, slm_error *err) {
    const slm_gguf_tensor *t = slm_gguf_find_tensor(m->gguf, name);
    if (!t) return SLM_OK;
    const uint8_t *p = (const uint8_t *)t->data;
    for (int64_t i = 0; i < t->ne[0]; i++) {
        float f;
        memcpy(&f, p + 4 * i, 4);   /* the data is only 32-byte aligned as a whole; copy, never cast */
        if (!(f > 0.0f) || !isfinite(f))
            return slm_fail(err, SLM_ERR_FORMAT, "%s: tensor %s holds %g at %lld; rope divisors must be positive",
                            m->gguf->path, name, f, (long long)i);
    }
    return SLM_OK;
}

/* Long-context Phi-3 ("longrope"): per-frequency divisors for contexts up to the original length
 * (rope_factors_short) and beyond it (rope_factors_long), and a magnitude factor for rotated q and k,
 * sqrt(1 + ln(s) / ln(original)) with s = trained context / original context. slm's rope op takes
 * divisors (the rope_freqs slot) but no magnitude; since q.k is the only use of the rotated values the
 * factor folds into the attention scale as its square, exact when every dimension is rotated. */
static slm_status bind_longrope(slm_model *m, slm_error *err) {
    slm_hparams *hp = &m->hp;
    slm_tensor shrt, lng;
    slm_status s;
    if ((s = bind(m, "rope_factors_short.weight", hp->n_rot / 2, 0, false, &shrt, err)) ||
        (s = bind(m, "rope_factors_long.weight", hp->n_rot / 2, 0, false, &lng, err)))
        return s;
    float file_factor = hp->rope_attn_factor;
    hp->rope_attn_factor = file_factor > 0.0f ? file_factor : 1.0f;
    if (!shrt.buf && !lng.buf) return SLM_OK;
    const char *which = shrt.buf ? "rope_factors_short.weight" : "rope_factors_long.weight";
    if (!shrt.buf || !lng.buf)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s comes without its %s partner (unsupported)",
                        m->gguf->path, which, shrt.buf ? "rope_factors_long.weight" : "rope_factors_short.weight");
    if (m->rope_freqs.buf)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s together with rope_freqs.weight is unsupported",
                        m->gguf->path, which);
    if (hp->n_ctx_orig < 1)
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tensor %s needs metadata key %s.rope.scaling.original_context_length",
                        m->gguf->path, which, hp->arch_name);
    if ((s = check_divisors(m, "rope_factors_short.weight", err)) ||
        (s = check_divisors(m, "rope_factors_long.weight", err)))
        return s;
    /* params.n_ctx is final here (resolve_ctx) */
    m->rope_freqs = m->params.n_ctx > hp->n_ctx_orig ? lng : shrt;
    if (file_factor <= 0.0f) {
        double sc = (double)hp->n_ctx_train / hp->n_ctx_orig;
        hp->rope_attn_factor = sc > 1.0 ? (float)sqrt(1.0 + log(sc) / log((double)hp->n_ctx_orig)) : 1.0f;
    }
    return SLM_OK;
}

static slm_status bind_all(slm_model *m, slm_error *err) {
    slm_hparams *hp = &m->hp;
    const slm_gguf_tensor *te = slm_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return slm_fail(err, SLM_ERR_FORMAT, "%s: missing tensor token_embd.weight", m->gguf->path);
    if (hp->n_vocab == 0) hp->n_vocab = (int)te->ne[1];
    slm_status s;
    if ((s = bind(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err))) return s;
    if ((s = bind(m, "output_norm.weight", hp->n_embd, 0, true, &m->output_norm, err))) return s;
    if ((s = bind(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err))) return s;
    if (!m->output.buf) m->output = m->tok_embd; /* tied embeddings */
    if ((s = bind(m, "rope_freqs.weight", hp->n_rot / 2, 0, false, &m->rope_freqs, err)) ||
        (s = check_divisors(m, "rope_freqs.weight", err)) || (s = bind_longrope(m, err)))
        return s;
    if (hp->rope_attn_factor != 1.0f && hp->n_rot != hp->head_dim)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "%s: a rope attention factor (%g) with partial rotation (%d of %d dimensions) is unsupported",
                        m->gguf->path, hp->rope_attn_factor, hp->n_rot, hp->head_dim);
    m->output_bytes = slm_tensor_bytes(&m->output) + slm_tensor_bytes(&m->output_norm);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return slm_fail(err, SLM_ERR_NOMEM, "out of memory binding %d layers", hp->n_layer);
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

/* Fixes the context before binding, since long-context rope factors are chosen by it: the request, else the
 * trained context up to 4096 (slm_model_place's default rule, which then sees an explicit value).
 * Phi-3 (not Phi-4) attends over a sliding window of the last W positions. The attention op is causal over
 * the whole cache, which is the same function while the context is at most W: the default context is kept
 * within the window, and a larger one asked for is refused rather than computed differently. */
static slm_status resolve_ctx(slm_model *m, slm_error *err) {
    bool asked = m->params.n_ctx > 0;
    if (!asked) m->params.n_ctx = m->hp.n_ctx_train >= 1 && m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    int w = m->hp.sliding_window;
    if (w <= 0) return SLM_OK;
    if (!asked && m->params.n_ctx > w) m->params.n_ctx = w;
    if (m->params.n_ctx > w)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "%s: context %d is longer than the model's sliding attention window %d "
                        "(%s.attention.sliding_window), which is unsupported; use a context of at most %d",
                        m->gguf->path, m->params.n_ctx, w, m->hp.arch_name, w);
    return SLM_OK;
}

slm_status slm_model_load_gguf(slm_gguf *g, const slm_params *params, const slm_debug_params *dbg, slm_model **out,
                               slm_error *err) {
    *out = NULL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m) {
        slm_gguf_close(g);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory loading a model");
    }
    m->gguf = g;
    m->params = params ? *params : slm_params_default();
    if (dbg) m->dbg = *dbg;
    slm_status s = slm_arch_read_hparams(g, &m->hp, err);
    if (!s) s = resolve_ctx(m, err);
    if (!s) s = copy_strings(m, err);
    if (!s) s = bind_all(m, err);
    if (!s && slm_gguf_find(g, "tokenizer.ggml.model")) s = slm_tokenizer_create(g, &m->tok, err);
    if (!s) s = slm_model_place(m, err);
    if (s) {
        slm_model_free(m);
        return s;
    }
    *out = m;
    return SLM_OK;
}

slm_status slm_model_load_debug(const char *path, const slm_params *params, const slm_debug_params *dbg,
                                slm_model **out, slm_error *err) {
    *out = NULL;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open(path, &g, err);
    if (s) return s;
    return slm_model_load_gguf(g, params, dbg, out, err);
}

slm_status slm_model_load(const char *path, const slm_params *params, slm_model **out, slm_error *err) {
    return slm_model_load_debug(path, params, NULL, out, err);
}

slm_status slm_model_load_memory_debug(const void *data, size_t size, const slm_params *params,
                                       const slm_debug_params *dbg, slm_model **out, slm_error *err) {
    *out = NULL;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open_memory(data, size, &g, err);
    if (s) return s;
    return slm_model_load_gguf(g, params, dbg, out, err);
}

slm_status slm_model_load_memory(const void *data, size_t size, const slm_params *params, slm_model **out,
                                 slm_error *err) {
    return slm_model_load_memory_debug(data, size, params, NULL, out, err);
}

void slm_model_free(slm_model *m) {
    if (!m) return;
    slm_model_unplace(m);
    if (m->tok) slm_tokenizer_free(m->tok);
    free(m->layers);
    free(m->chat_template);
    slm_gguf_close(m->gguf);
    free(m);
}

const slm_tokenizer *slm_model_tokenizer(const slm_model *m) { return m->tok; }

const char *slm_model_chat_template(const slm_model *m) { return m->chat_template; }

slm_model_info slm_model_get_info(const slm_model *m) {
    slm_model_info i;
    memset(&i, 0, sizeof i);
    i.arch = m->hp.arch_name;
    i.name = m->name;
    i.n_layer = m->hp.n_layer;
    i.n_embd = m->hp.n_embd;
    i.n_head = m->hp.n_head;
    i.n_head_kv = m->hp.n_head_kv;
    i.n_ff = m->hp.n_ff;
    i.n_vocab = m->hp.n_vocab;
    i.n_ctx_train = m->hp.n_ctx_train;
    for (uint64_t t = 0; t < m->gguf->n_tensors; t++) {
        const slm_gguf_tensor *gt = &m->gguf->tensors[t];
        i.n_params += (uint64_t)(gt->ne[0] * gt->ne[1] * gt->ne[2] * gt->ne[3]);
        i.weight_bytes += gt->size;
    }
    return i;
}

/* Rows are padded to 64 bytes and, when that is a multiple of 256, by one more line: at such a stride one
 * head's rows fall into a fraction of the cache sets (8 kv heads of 64, 1 KiB rows: 1/8 of L2), and CPU
 * attention over 2048 positions cost 21 ns per head and position instead of 9 (kernel alone, one core). */
size_t slm_kv_row_bytes(const slm_hparams *hp) {
    size_t b = slm_dtype_row_bytes(SLM_F16, (int64_t)hp->n_head_kv * hp->head_dim);
    b = (b + 63) & ~(size_t)63;
    return b % 256 ? b : b + 64;
}

slm_tensor slm_kv_tensor(slm_buffer *buf, size_t offset, const slm_hparams *hp, int64_t n_ctx) {
    slm_tensor t = slm_tensor_make(buf, offset, SLM_F16, (int64_t)hp->n_head_kv * hp->head_dim, n_ctx, 1, 1);
    t.nb[1] = slm_kv_row_bytes(hp);
    t.nb[2] = t.nb[3] = t.nb[1] * (size_t)t.ne[1];
    return t;
}
