/* Synthetic models: GGUF files of the exact shape of real models (Llama 3.2 1B/3B, Llama 3.1 8B, Qwen2.5 14B,
 * Phi-4 14B, or custom dimensions) with random quantized weights, so that slm can be measured on 8B and 14B
 * shapes on a machine with no network. The result is an ordinary GGUF (written by support/gguf_write.h) that
 * goes through slm_model_load_memory, the same path as a real file.
 *
 * Weights are random but well formed: every block scale is a small normal f16 chosen so that the
 * dequantized weights have a standard deviation near 0.02 (like trained weights), norms are 1 and
 * nothing is NaN, so activations stay finite through any number of layers. The values carry no meaning:
 * generated text is noise, speed is real.
 *
 * Spec strings: PRESET[:QUANT][:KEY=VALUE]...
 *   PRESET  llama3-1b, llama3-3b, llama3-8b, qwen2.5-14b, qwen3-0.6b, qwen3-8b, qwen3-14b, phi4-14b, or custom
 *           (a small llama shape)
 *   QUANT   q4_0 (Q4_0 everywhere, Q6_K output), q4_k_m (the llama.cpp Q4_K_M mix: Q4_K, with Q6_K for
 *           attn_v and ffn_down of a third of the layers and for the output, Q5_K for phi3's attn_qkv),
 *           q8_0, f16
 *   KEY     n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx, arch (llama|qwen2|qwen3),
 *           tied (0|1), seed
 * e.g. "llama3-8b:q4_k_m", "qwen2.5-14b:q4_k_m:n_layer=4", "custom:q4_0:n_layer=2:n_embd=256".
 *
 * This header needs only include/slm.h, so slm-bench builds on the public API; what takes the engine's own
 * types (a tensor's type, the GGUF opened in place, raw block filling) is in synth_gguf.h, for tests. */
#ifndef SLM_SYNTH_H
#define SLM_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef enum slm_synth_quant {
    SLM_SYNTH_Q4_0,
    SLM_SYNTH_Q4_K_M,
    SLM_SYNTH_Q8_0,
    SLM_SYNTH_F16,
} slm_synth_quant;

typedef struct slm_synth_spec {
    char name[64];       /* "llama3-8b:q4_k_m" as given (normalised), for reports */
    char model_name[64]; /* general.name: "Llama 3.1 8B (synthetic)" */
    char arch[16];   /* "llama", "qwen2", "qwen3", "phi3" or "gemma3" (what the file says; phi3 fuses qkv and gate/up,
                    * gemma3 adds post-attention and post-feed-forward norms) */
    char family[16]; /* tokenizer family of the specials: "llama3", "qwen2", "phi4", "custom" */
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_freq_base, norm_eps;
    float rope_llama3_factor; /* > 0: write rope_freqs.weight with Llama 3 frequency scaling */
    bool tied;                /* no output.weight: the head reads token_embd */
    bool qkv_bias;            /* qwen2 */
    bool qk_norm;             /* qwen3, gemma3: attn_q_norm / attn_k_norm [head_dim] per layer */
    slm_synth_quant quant;
    uint64_t seed;
} slm_synth_spec;

/* Names of the presets, NULL-terminated (for --help). */
const char *const *slm_synth_preset_names(void);

/* Parses a spec string; fails with SLM_ERR_INVALID_ARG naming the bad part. */
slm_status slm_synth_parse(const char *spec, slm_synth_spec *out, slm_error *err);

/* Checks that the dimensions make a model slm can load (multiples of the block sizes, heads dividing). */
slm_status slm_synth_validate(const slm_synth_spec *s, slm_error *err);

/* Parameters of the model (every tensor's elements, as the Hugging Face count: rope_freqs excluded). */
uint64_t slm_synth_param_count(const slm_synth_spec *s);

/* Builds the whole GGUF in one malloc'd buffer (*data, *size: the caller frees it). n_threads <= 0: all
 * cores. Peak memory is the file size plus the vocabulary, never twice the weights. */
slm_status slm_synth_build(const slm_synth_spec *s, int n_threads, void **data, size_t *size, slm_error *err);

/* Builds and writes the GGUF to path. */
slm_status slm_synth_write_file(const slm_synth_spec *s, int n_threads, const char *path, slm_error *err);

#endif
