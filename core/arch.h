/* Per-architecture hyper-parameters as the file states them. Only arch.c, model*.c, weights.h and graph.c
 * know what a transformer is. */
#ifndef SLM_ARCH_H
#define SLM_ARCH_H

#include <stdbool.h>

#include "gguf.h"

typedef enum slm_arch_kind { SLM_ARCH_LLAMA, SLM_ARCH_QWEN2, SLM_ARCH_PHI3, SLM_ARCH_QWEN3 } slm_arch_kind;

typedef struct slm_hparams {
    slm_arch_kind arch;
    char arch_name[32];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train, n_rot;
    float norm_eps, rope_freq_base, rope_freq_scale;
    bool rope_neox;    /* NeoX-style pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    bool has_qkv_bias; /* qwen2 */
    bool has_qk_norm;  /* qwen3: RMSNorm of each q and k head (weights [head_dim]) before RoPE */
    /* phi3: the context the rope frequencies were trained for before long-context extension
     * ({arch}.rope.scaling.original_context_length; 0 when absent), and the sliding attention window
     * ({arch}.attention.sliding_window; 0 when absent or disabled, as Phi-4 files say). */
    int n_ctx_orig, sliding_window;
    /* {arch}.rope.scaling.attn_factor, the magnitude factor of rotated q and k (0: absent); the factor the
     * model runs with is resolved in model_config.c, which sees whether the file has longrope factors. */
    float rope_attn_factor;
} slm_hparams;

/* Reads {arch}.* keys (n_vocab from the vocabulary or, without one, the embedding table); fails naming the
 * key for missing or inconsistent values and for unknown architectures. */
slm_status slm_arch_read_hparams(const slm_gguf *g, slm_hparams *hp, slm_error *err);

#endif
