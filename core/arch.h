/* Per-architecture hyper-parameters as the file states them. Only arch.c, model*.c, weights.h and graph.c
 * know what a transformer is. */
#ifndef SLM_ARCH_H
#define SLM_ARCH_H

#include <stdbool.h>

#include "gguf.h"

typedef enum slm_arch_kind {
    SLM_ARCH_LLAMA,
    SLM_ARCH_QWEN2,
    SLM_ARCH_PHI3,
    SLM_ARCH_QWEN3,
    SLM_ARCH_GEMMA3
} slm_arch_kind;

typedef struct slm_hparams {
    slm_arch_kind arch;
    char arch_name[32];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train, n_rot;
    float norm_eps, rope_freq_base, rope_freq_scale;
    bool rope_neox;    /* NeoX-style pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    bool has_qkv_bias; /* qwen2 */
    bool has_qk_norm;  /* qwen3, gemma3: RMSNorm of each q and k head (weights [head_dim]) before RoPE */
    /* gemma3: the attention and feed-forward outputs RMS-normalized again (post_attention_norm, post_ffw_norm)
     * before they join the residual; a GELU-gated (tanh form) feed-forward instead of SiLU; the embeddings
     * multiplied by embd_scale (sqrt(n_embd); 1 for the others) */
    bool has_post_norms, ffn_gelu;
    float embd_scale;
    /* gemma3: layers attend over a sliding window of sliding_window positions (local layers) except every
     * swa_period-th (global: layer il with (il + 1) % swa_period == 0); local layers rotate with base
     * rope_local_freq_base and no scaling, global ones with rope.freq_base and the file's scaling.
     * swa_period 0: every layer is global (and sliding_window, where set, is phi3's, see model_config.c). */
    int swa_period;
    float rope_local_freq_base;
    /* gemma3: scores are q.k / sqrt(query_pre_attn_scalar); 0: the head size (every model but Gemma 3 27B) */
    float query_pre_attn_scalar;
    /* phi3: the context the rope frequencies were trained for before long-context extension
     * ({arch}.rope.scaling.original_context_length; 0 when absent), and the sliding attention window
     * ({arch}.attention.sliding_window; 0 when absent or disabled, as Phi-4 files say). */
    int n_ctx_orig, sliding_window;
    /* {arch}.rope.scaling.attn_factor, the magnitude factor of rotated q and k (0: absent); the factor the
     * model runs with is resolved in model_config.c, which sees whether the file has longrope factors. */
    float rope_attn_factor;
} slm_hparams;

/* Whether layer il attends over the sliding window only (gemma3's local layers). */
static inline bool slm_layer_is_local(const slm_hparams *hp, int il) {
    return hp->swa_period > 0 && hp->sliding_window > 0 && (il + 1) % hp->swa_period != 0;
}

/* Reads {arch}.* keys (n_vocab from the vocabulary or, without one, the embedding table); fails naming the
 * key for missing or inconsistent values and for unknown architectures. */
slm_status slm_arch_read_hparams(const slm_gguf *g, slm_hparams *hp, slm_error *err);

#endif
