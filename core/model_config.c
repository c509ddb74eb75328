#include "model_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "kv_cache.h"

/* The request, else the trained context up to 4096. Phi-3 (not Phi-4) attends over a sliding window of the
 * last W positions; the attention op is causal over the whole cache, which is the same function while the
 * context is at most W: the default context is kept within the window, and a larger one asked for is
 * refused rather than computed differently. */
static slm_status resolve_ctx(const slm_gguf *g, const slm_hparams *hp, const slm_params *p, slm_model_config *c,
                              slm_error *err) {
    bool asked = p->n_ctx > 0;
    c->n_ctx = asked ? p->n_ctx : hp->n_ctx_train >= 1 && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    /* gemma3's local layers mask the rows beyond their window (the attention op's window), so any context
     * works there; phi3 has no such layers */
    int w = hp->swa_period > 0 ? 0 : hp->sliding_window;
    if (w > 0 && !asked && c->n_ctx > w) c->n_ctx = w;
    if (w > 0 && c->n_ctx > w)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "%s: context %d is longer than the model's sliding attention window %d "
                        "(%s.attention.sliding_window), which is unsupported; use a context of at most %d",
                        g->path, c->n_ctx, w, hp->arch_name, w);
    c->n_batch = p->n_batch > 0 ? p->n_batch : 512;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    return SLM_OK;
}

/* Rope frequency divisors must be f32 [n_rot/2], finite and positive: a zero would turn every angle after
 * it into NaN. The binding checks the shape again; the values are checked here, once. */
static slm_status check_divisors(const slm_gguf *g, const slm_hparams *hp, const char *name, slm_error *err) {
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, name);
    if (!t) return SLM_OK;
    if (t->type != SLM_F32 || t->ne[0] != hp->n_rot / 2 || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tensor %s must be f32 [%d]", g->path, name, hp->n_rot / 2);
    const uint8_t *p = (const uint8_t *)t->data;
    for (int64_t i = 0; i < t->ne[0]; i++) {
        float f;
        memcpy(&f, p + 4 * i, 4); /* the data is only 32-byte aligned as a whole; copy, never cast */
        if (!(f > 0.0f) || !isfinite(f))
            return slm_fail(err, SLM_ERR_FORMAT, "%s: tensor %s holds %g at %lld; rope divisors must be positive",
                            g->path, name, f, (long long)i);
    }
    return SLM_OK;
}

/* Llama 3 style scaling comes as one set of divisors (rope_freqs). Long-context Phi-3 ("longrope") has two:
 * for contexts up to the original length (rope_factors_short) and beyond it (rope_factors_long), and a
 * magnitude factor for rotated q and k, sqrt(1 + ln(s) / ln(original)) with s = trained context / original
 * context. slm's rope op takes divisors but no magnitude; since q.k is the only use of the rotated values,
 * the factor folds into the attention scale as its square, exact when every dimension is rotated. */
static slm_status resolve_rope(const slm_gguf *g, const slm_hparams *hp, slm_model_config *c, slm_error *err) {
    static const char *const names[] = {"rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight"};
    slm_status s;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((s = check_divisors(g, hp, names[i], err))) return s;
    bool freqs = slm_gguf_find_tensor(g, names[0]), shrt = slm_gguf_find_tensor(g, names[1]),
         lng = slm_gguf_find_tensor(g, names[2]);
    c->rope_freqs_name = freqs ? names[0] : NULL;
    c->rope_attn_factor = hp->rope_attn_factor > 0.0f ? hp->rope_attn_factor : 1.0f;
    if (shrt || lng) {
        const char *which = shrt ? names[1] : names[2];
        if (!shrt || !lng)
            return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s comes without its %s partner (unsupported)",
                            g->path, which, shrt ? names[2] : names[1]);
        if (freqs)
            return slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tensor %s together with %s is unsupported", g->path, which,
                            names[0]);
        if (hp->n_ctx_orig < 1)
            return slm_fail(err, SLM_ERR_FORMAT,
                            "%s: tensor %s needs metadata key %s.rope.scaling.original_context_length", g->path, which,
                            hp->arch_name);
        c->rope_freqs_name = c->n_ctx > hp->n_ctx_orig ? names[2] : names[1];
        if (hp->rope_attn_factor <= 0.0f) {
            double sc = (double)hp->n_ctx_train / hp->n_ctx_orig;
            c->rope_attn_factor = sc > 1.0 ? (float)sqrt(1.0 + log(sc) / log((double)hp->n_ctx_orig)) : 1.0f;
        }
    }
    if (c->rope_attn_factor != 1.0f && hp->n_rot != hp->head_dim)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "%s: a rope attention factor (%g) with partial rotation (%d of %d dimensions) is unsupported",
                        g->path, c->rope_attn_factor, hp->n_rot, hp->head_dim);
    float q_scalar = hp->query_pre_attn_scalar > 0.0f ? hp->query_pre_attn_scalar : (float)hp->head_dim;
    c->attn_scale = c->rope_attn_factor * c->rope_attn_factor / sqrtf(q_scalar);
    return SLM_OK;
}

slm_status slm_model_config_resolve(const slm_gguf *g, const slm_hparams *hp, const slm_params *p,
                                    slm_model_config *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    slm_status s = resolve_ctx(g, hp, p, out, err);
    if (!s) s = resolve_rope(g, hp, out, err);
    if (!s) s = slm_kv_types_resolve(hp, p->type_k, p->type_v, &out->type_k, &out->type_v, err);
    return s;
}
