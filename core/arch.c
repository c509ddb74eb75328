#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Reads "{arch}.{suffix}" as an integer; required keys fail with a message naming the key. */
static slm_status read_int(const slm_gguf *g, const char *arch, const char *suffix, bool required, int def, int *out,
                           slm_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint64_t v;
    if (!slm_gguf_find(g, key)) {
        if (required) return slm_fail(err, SLM_ERR_FORMAT, "missing metadata key %s", key);
        *out = def;
        return SLM_OK;
    }
    if (!slm_gguf_get_u64(g, key, &v) || v > (1u << 24))
        return slm_fail(err, SLM_ERR_FORMAT, "metadata key %s is not a usable integer", key);
    *out = (int)v;
    return SLM_OK;
}

static slm_status read_float(const slm_gguf *g, const char *arch, const char *suffix, float def, float *out,
                             slm_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!slm_gguf_find(g, key)) {
        *out = def;
        return SLM_OK;
    }
    if (!slm_gguf_get_f32(g, key, out) || !isfinite(*out))
        return slm_fail(err, SLM_ERR_FORMAT, "metadata key %s is not a finite number", key);
    return SLM_OK;
}

slm_status slm_arch_read_hparams(const slm_gguf *g, slm_hparams *hp, slm_error *err) {
    memset(hp, 0, sizeof *hp);
    slm_gguf_str a;
    if (!slm_gguf_get_str(g, "general.architecture", &a))
        return slm_fail(err, SLM_ERR_FORMAT, "missing metadata key general.architecture");
    if (a.len >= sizeof hp->arch_name) a.len = sizeof hp->arch_name - 1;
    memcpy(hp->arch_name, a.ptr, a.len);
    const char *arch = hp->arch_name;
    if (!strcmp(arch, "llama")) {
        hp->arch = SLM_ARCH_LLAMA;
    } else if (!strcmp(arch, "qwen2")) {
        hp->arch = SLM_ARCH_QWEN2;
        hp->rope_neox = true;
        hp->has_qkv_bias = true;
    } else if (!strcmp(arch, "phi3")) {
        /* Phi-3 and Phi-4: llama's block with fused qkv and gate/up weights (model.c splits them) and
         * rotation of half-split pairs; no biases. */
        hp->arch = SLM_ARCH_PHI3;
        hp->rope_neox = true;
    } else if (!strcmp(arch, "qwen3")) {
        /* Qwen 3: qwen2's block without q/k/v biases, each q and k head RMS-normalized (with a learned weight)
         * before rotation; head_dim comes from attention.key_length and need not be n_embd / n_head. */
        hp->arch = SLM_ARCH_QWEN3;
        hp->rope_neox = true;
        hp->has_qk_norm = true;
    } else if (!strcmp(arch, "gemma3")) {
        /* Gemma 3: per-head q/k RMSNorm before NeoX RoPE, norms before and after attention and feed-forward,
         * GeGLU (tanh GELU), embeddings scaled by sqrt(n_embd), local sliding-window layers between global
         * ones, the head tied to token_embd. Its norm weights are stored as the multipliers themselves
         * (1 + the checkpoint's offset), so RMSNorm runs as for the others. */
        hp->arch = SLM_ARCH_GEMMA3;
        hp->rope_neox = true;
        hp->has_qk_norm = true;
        hp->has_post_norms = true;
        hp->ffn_gelu = true;
    } else {
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "unsupported architecture '%s' (supported: llama, qwen2, qwen3, phi3, gemma3)", arch);
    }
    slm_status s;
    if ((s = read_int(g, arch, "block_count", true, 0, &hp->n_layer, err)) ||
        (s = read_int(g, arch, "embedding_length", true, 0, &hp->n_embd, err)) ||
        (s = read_int(g, arch, "feed_forward_length", true, 0, &hp->n_ff, err)) ||
        (s = read_int(g, arch, "attention.head_count", true, 0, &hp->n_head, err)) ||
        (s = read_int(g, arch, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, err)) ||
        (s = read_int(g, arch, "context_length", false, 2048, &hp->n_ctx_train, err)) ||
        (s = read_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err)) ||
        (s = read_float(g, arch, "rope.freq_base", 10000.0f, &hp->rope_freq_base, err)))
        return s;
    /* Values are read here as the file states them; what they must satisfy is checked in one place,
     * model_validate.c. The default head size divides only when both counts are usable. */
    int key_len = 0;
    int def_head = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    if ((s = read_int(g, arch, "attention.key_length", false, def_head, &key_len, err))) return s;
    hp->head_dim = key_len;
    if ((s = read_int(g, arch, "rope.dimension_count", false, hp->head_dim, &hp->n_rot, err))) return s;
    /* Linear rope scaling; llama3-style scaling comes as per-frequency factors in rope_freqs.weight. */
    float factor = 0.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    slm_gguf_str st;
    if (slm_gguf_get_str(g, key, &st) && slm_gguf_str_eq(st, "linear")) {
        if ((s = read_float(g, arch, "rope.scaling.factor", 1.0f, &factor, err))) return s;
    }
    hp->rope_freq_scale = factor > 0.0f ? 1.0f / factor : 1.0f; /* a factor <= 0 is refused by validation */
    hp->rope_attn_factor = 0.0f;
    if ((s = read_int(g, arch, "rope.scaling.original_context_length", false, 0, &hp->n_ctx_orig, err)) ||
        (s = read_int(g, arch, "attention.sliding_window", false, 0, &hp->sliding_window, err)) ||
        (s = read_float(g, arch, "rope.scaling.attn_factor", 0.0f, &hp->rope_attn_factor, err)))
        return s;
    hp->embd_scale = 1.0f;
    if (hp->arch == SLM_ARCH_GEMMA3) {
        hp->embd_scale = hp->n_embd > 0 ? sqrtf((float)hp->n_embd) : 1.0f;
        /* The published Gemma 3 definition: every 6th layer global (sliding_window_pattern 6), local layers
         * with RoPE base 10000 (rope_local_base_freq); GGUF files do not carry either, so these are the
         * defaults, with keys of the same meaning read where a file has them. */
        if ((s = read_int(g, arch, "attention.sliding_window_pattern", false, 6, &hp->swa_period, err)) ||
            (s = read_float(g, arch, "rope.local.freq_base", 10000.0f, &hp->rope_local_freq_base, err)) ||
            (s = read_float(g, arch, "attention.query_pre_attn_scalar", 0.0f, &hp->query_pre_attn_scalar, err)))
            return s;
        /* query_pre_attn_scalar is the head size (256) for 270M to 12B, but n_embd / n_head = 168 for 27B,
         * whose heads are 128 wide; converted files do not say it, so 27B is known by its published shape */
        if (hp->query_pre_attn_scalar == 0.0f && hp->n_layer == 62 && hp->n_embd == 5376 && hp->n_head == 32)
            hp->query_pre_attn_scalar = (float)hp->n_embd / (float)hp->n_head;
    }
    if ((s = read_int(g, arch, "vocab_size", false, 0, &hp->n_vocab, err))) return s;
    if (hp->n_vocab == 0) {
        const slm_gguf_kv *kv = slm_gguf_find(g, "tokenizer.ggml.tokens");
        /* counts past what read_int allows become -1, which validation refuses */
        if (kv && kv->type == SLM_GGUF_ARRAY) hp->n_vocab = kv->arr_len <= (1u << 24) ? (int)kv->arr_len : -1;
    }
    /* neither key: the embedding table's rows (validation checks the table's shape against this) */
    const slm_gguf_tensor *te = slm_gguf_find_tensor(g, "token_embd.weight");
    if (hp->n_vocab == 0 && te) hp->n_vocab = te->ne[1] <= (1 << 24) ? (int)te->ne[1] : -1;
    if (!te) return slm_fail(err, SLM_ERR_FORMAT, "%s: missing tensor token_embd.weight", g->path);
    return SLM_OK;
}
