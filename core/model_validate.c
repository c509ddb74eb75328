/* Validation of a model's hyper-parameters (see model_validate.h). Each rule says what the value means to
 * the forward pass (graph.c) and why a value outside it cannot be run: most would give NaN logits, a read
 * out of bounds, or a silently different model. Keys are named in full ("llama.rope.freq_base") so that a
 * user can find the setting in the file. */
#include "model_validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* The head sizes the attention kernels are built for (their per-head accumulators live in registers or
 * shared memory of this size). */
#define MAX_HEAD_DIM 512

typedef struct vctx {
    const slm_gguf *g;
    const slm_hparams *hp;
    slm_error *err;
    char key[128]; /* scratch for key names */
} vctx;

/* "{arch}.{suffix}" in v->key. */
static const char *key(vctx *v, const char *suffix) {
    snprintf(v->key, sizeof v->key, "%s.%s", v->hp->arch_name, suffix);
    return v->key;
}

static bool has(vctx *v, const char *suffix) { return slm_gguf_find(v->g, key(v, suffix)) != NULL; }

/* Integer counts: at least lo. A count the file does not state was given its default by arch.c; the message
 * names the key either way, since that is where a user would set it. */
static slm_status at_least(vctx *v, const char *suffix, int value, int lo) {
    if (value >= lo) return SLM_OK;
    return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d: it must be at least %d", v->g->path, key(v, suffix), value,
                    lo);
}

static slm_status check_counts(vctx *v) {
    const slm_hparams *hp = v->hp;
    slm_status s;
    if ((s = at_least(v, "block_count", hp->n_layer, 1)) || (s = at_least(v, "embedding_length", hp->n_embd, 1)) ||
        (s = at_least(v, "feed_forward_length", hp->n_ff, 1)) ||
        (s = at_least(v, "attention.head_count", hp->n_head, 1)) ||
        (s = at_least(v, "attention.head_count_kv", hp->n_head_kv, 1)) ||
        (s = at_least(v, "context_length", hp->n_ctx_train, 1)))
        return s;
    /* grouped-query attention: each kv head serves n_head / n_head_kv query heads */
    if (hp->n_head % hp->n_head_kv)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d: it must divide %s.attention.head_count (%d)", v->g->path,
                        key(v, "attention.head_count_kv"), hp->n_head_kv, hp->arch_name, hp->n_head);
    /* Without key_length the head size is embedding_length / head_count, which must come out whole. With it,
     * q has head_count * key_length rows, which need not be embedding_length (attn_output maps back). */
    if (!has(v, "attention.key_length") && hp->n_embd % hp->n_head)
        return slm_fail(v->err, SLM_ERR_FORMAT,
                        "%s: %s is %d: it must be a multiple of %s.attention.head_count (%d) when the file has no "
                        "%s.attention.key_length",
                        v->g->path, key(v, "embedding_length"), hp->n_embd, hp->arch_name, hp->n_head, hp->arch_name);
    return SLM_OK;
}

static slm_status check_heads(vctx *v) {
    const slm_hparams *hp = v->hp;
    const char *kl = has(v, "attention.key_length") ? "attention.key_length" : "embedding_length / head_count";
    /* rope rotates pairs of dimensions, and the f16 KV rows are read two elements at a time */
    if (hp->head_dim < 2 || hp->head_dim % 2)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: the head size (%s.%s) is %d: it must be even and at least 2",
                        v->g->path, hp->arch_name, kl, hp->head_dim);
    if (hp->head_dim > MAX_HEAD_DIM)
        return slm_fail(v->err, SLM_ERR_UNSUPPORTED, "%s: the head size (%s.%s) is %d: at most %d is supported",
                        v->g->path, hp->arch_name, kl, hp->head_dim, MAX_HEAD_DIM);
    /* V rows are read with the same head size as K */
    uint64_t vl;
    if (has(v, "attention.value_length") && slm_gguf_get_u64(v->g, v->key, &vl) && vl != (uint64_t)hp->head_dim)
        return slm_fail(v->err, SLM_ERR_UNSUPPORTED,
                        "%s: %s is %llu but the key head size is %d: different K and V head sizes are unsupported",
                        v->g->path, v->key, (unsigned long long)vl, hp->head_dim);
    if (hp->n_rot < 2 || hp->n_rot % 2 || hp->n_rot > hp->head_dim)
        return slm_fail(v->err, SLM_ERR_FORMAT,
                        "%s: %s is %d: it must be even, at least 2 and at most the head size %d", v->g->path,
                        key(v, "rope.dimension_count"), hp->n_rot, hp->head_dim);
    return SLM_OK;
}

static slm_status check_floats(vctx *v) {
    const slm_hparams *hp = v->hp;
    /* rms_norm divides by sqrt(mean(x^2) + eps): eps <= 0 gives inf or NaN for a zero row (and NaN logits
     * for every token when the file says 0 and an activation row vanishes); above 1 it swamps the activations
     * of unit scale that the norm weights were trained on */
    if (!(hp->norm_eps > 0.0f && hp->norm_eps <= 1.0f))
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %g: it must be finite, > 0 and at most 1", v->g->path,
                        key(v, "attention.layer_norm_rms_epsilon"), hp->norm_eps);
    /* rope's wavelengths run from 2 pi to 2 pi * base: a base below 1 inverts them, and a tiny one makes
     * base^-1 overflow to inf, whose angle is NaN */
    if (!(hp->rope_freq_base >= 1.0f) || !isfinite(hp->rope_freq_base))
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %g: it must be finite and at least 1", v->g->path,
                        key(v, "rope.freq_base"), hp->rope_freq_base);
    slm_gguf_str type;
    if (slm_gguf_get_str(v->g, key(v, "rope.scaling.type"), &type) && !slm_gguf_str_eq(type, "none")) {
        if (slm_gguf_str_eq(type, "linear")) {
            float f = 0.0f;
            if (!slm_gguf_get_f32(v->g, key(v, "rope.scaling.factor"), &f) || !(f > 0.0f) || !isfinite(f))
                return slm_fail(v->err, SLM_ERR_FORMAT,
                                "%s: %s is %g (or absent): linear rope scaling needs a finite factor > 0", v->g->path,
                                v->key, f);
        } else if (slm_gguf_str_eq(type, "yarn")) {
            /* YaRN changes every frequency and the attention magnitude; running without it is another model */
            return slm_fail(v->err, SLM_ERR_UNSUPPORTED, "%s: %s is yarn: YaRN rope scaling is unsupported", v->g->path,
                            key(v, "rope.scaling.type"));
        } else if (!slm_gguf_str_eq(type, "longrope")) {
            /* longrope is applied through the rope_factors tensors (model_config.c) */
            return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is '%.*s': expected none, linear, yarn or longrope",
                            v->g->path, key(v, "rope.scaling.type"), (int)(type.len < 32 ? type.len : 32), type.ptr);
        }
    }
    /* gemma3's local layers: their own rope base (as rope.freq_base) and a window of positions */
    if (hp->swa_period > 0 && (!(hp->rope_local_freq_base >= 1.0f) || !isfinite(hp->rope_local_freq_base)))
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %g: it must be finite and at least 1", v->g->path,
                        key(v, "rope.local.freq_base"), hp->rope_local_freq_base);
    if (hp->query_pre_attn_scalar < 0.0f || !isfinite(hp->query_pre_attn_scalar))
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %g: it must be finite and >= 0 (0: the head size)",
                        v->g->path, key(v, "attention.query_pre_attn_scalar"), hp->query_pre_attn_scalar);
    if (hp->sliding_window < 0)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d: it must be >= 0", v->g->path,
                        key(v, "attention.sliding_window"), hp->sliding_window);
    /* the longrope magnitude factor, squared into the attention scale (0: absent, derived) */
    if (hp->rope_attn_factor < 0.0f || hp->rope_attn_factor > 16.0f)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %g: it must be in 0..16", v->g->path,
                        key(v, "rope.scaling.attn_factor"), hp->rope_attn_factor);
    return SLM_OK;
}

/* The vocabulary: one size for the embedding table, the output head and the tokenizer. */
static slm_status check_vocab(vctx *v) {
    const slm_hparams *hp = v->hp;
    const char *from = has(v, "vocab_size")            ? v->key
        : slm_gguf_find(v->g, "tokenizer.ggml.tokens") ? "the entries of tokenizer.ggml.tokens"
                                                       : "the rows of token_embd.weight";
    char src[128];
    snprintf(src, sizeof src, "%s", from);
    uint64_t stated;
    if (has(v, "vocab_size") && slm_gguf_get_u64(v->g, v->key, &stated) && stated == 0)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is 0: it must be at least 1", v->g->path, v->key);
    if (hp->n_vocab < 1)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: the vocabulary size (%s) is %d: it must be 1..%d", v->g->path, src,
                        hp->n_vocab, 1 << 24);
    const slm_gguf_kv *tok = slm_gguf_find(v->g, "tokenizer.ggml.tokens");
    if (tok && (tok->type != SLM_GGUF_ARRAY || tok->arr_len != (uint64_t)hp->n_vocab))
        return slm_fail(v->err, SLM_ERR_FORMAT,
                        "%s: tokenizer.ggml.tokens has %llu entries but the vocabulary size (%s) is %d", v->g->path,
                        (unsigned long long)(tok->type == SLM_GGUF_ARRAY ? tok->arr_len : 0), src, hp->n_vocab);
    static const char *const tables[] = {"token_embd.weight", "output.weight"};
    for (int i = 0; i < 2; i++) {
        const slm_gguf_tensor *t = slm_gguf_find_tensor(v->g, tables[i]);
        if (!t) continue; /* token_embd is required (arch.c); output is absent when tied */
        if (t->ne[1] != hp->n_vocab || t->ne[0] != hp->n_embd || t->ne[2] != 1 || t->ne[3] != 1)
            return slm_fail(v->err, SLM_ERR_FORMAT,
                            "%s: %s has shape [%lld, %lld, %lld, %lld] but the model has %s.embedding_length %d and "
                            "vocabulary size %d (%s)",
                            v->g->path, tables[i], (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                            (long long)t->ne[3], hp->arch_name, hp->n_embd, hp->n_vocab, src);
    }
    return SLM_OK;
}

/* The layer of a tensor named "blk.N.*": N, or -1 for other names (and for N past 2^24, reported as such). */
static long layer_of(slm_gguf_str name) {
    if (name.len < 6 || memcmp(name.ptr, "blk.", 4)) return -1;
    long n = 0;
    uint64_t i = 4;
    for (; i < name.len && name.ptr[i] >= '0' && name.ptr[i] <= '9'; i++) {
        n = n * 10 + (name.ptr[i] - '0');
        if (n > (1L << 24)) n = 1L << 24; /* saturate: past any block_count */
    }
    if (i == 4 || i >= name.len || name.ptr[i] != '.') return -1;
    return n;
}

/* Tensors of layers past block_count would be silently left out of the forward pass, and a layer with no
 * tensors at all is a block_count larger than the file: both are refused naming the key. */
static slm_status check_layers(vctx *v) {
    const slm_hparams *hp = v->hp;
    const slm_gguf *g = v->g;
    /* every layer has several tensors: more layers than tensors cannot be the file (and no table is needed) */
    if ((uint64_t)hp->n_layer > g->n_tensors)
        return slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d but the file has only %llu tensors", g->path,
                        key(v, "block_count"), hp->n_layer, (unsigned long long)g->n_tensors);
    bool *seen = calloc((size_t)hp->n_layer, sizeof *seen);
    if (!seen) return slm_fail(v->err, SLM_ERR_NOMEM, "out of memory validating %d layers", hp->n_layer);
    slm_status s = SLM_OK;
    for (uint64_t i = 0; i < g->n_tensors && !s; i++) {
        slm_gguf_str nm = g->tensors[i].name;
        long il = layer_of(nm);
        if (il < 0) continue;
        if (il >= hp->n_layer)
            s = slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d but the file has tensors of layer %ld (%.*s)", g->path,
                         key(v, "block_count"), hp->n_layer, il, (int)(nm.len < 64 ? nm.len : 64), nm.ptr);
        else seen[il] = true;
    }
    for (int il = 0; il < hp->n_layer && !s; il++)
        if (!seen[il])
            s = slm_fail(v->err, SLM_ERR_FORMAT, "%s: %s is %d but the file has no tensors of layer %d (blk.%d.*)",
                         g->path, key(v, "block_count"), hp->n_layer, il, il);
    free(seen);
    return s;
}

/* Keys of features the forward pass does not implement: refused rather than run as another model. */
static slm_status check_features(vctx *v) {
    uint64_t n;
    if (has(v, "expert_count") && slm_gguf_get_u64(v->g, v->key, &n) && n > 0)
        return slm_fail(v->err, SLM_ERR_UNSUPPORTED, "%s: %s is %llu: mixture-of-experts models are unsupported",
                        v->g->path, v->key, (unsigned long long)n);
    /* Gemma 2's tanh caps on the attention scores and the logits: not in Gemma 3, and not implemented */
    static const char *const caps[] = {"attn_logit_softcapping", "final_logit_softcapping"};
    for (int i = 0; i < 2; i++) {
        float cap = 0.0f;
        if (has(v, caps[i]) && slm_gguf_get_f32(v->g, v->key, &cap) && cap != 0.0f)
            return slm_fail(v->err, SLM_ERR_UNSUPPORTED, "%s: %s is %g: logit soft-capping is unsupported", v->g->path,
                            v->key, cap);
    }
    return SLM_OK;
}

slm_status slm_model_validate(const slm_gguf *g, const slm_hparams *hp, slm_error *err) {
    vctx v = {.g = g, .hp = hp, .err = err};
    slm_status s;
    if ((s = check_counts(&v)) || (s = check_heads(&v)) || (s = check_floats(&v)) || (s = check_vocab(&v)) ||
        (s = check_layers(&v)) || (s = check_features(&v)))
        return s;
    return SLM_OK;
}
