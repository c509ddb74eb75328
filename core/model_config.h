/* The values a model runs with that are derived, not read: the context and batch sizes from the params and
 * the file, which rope divisors apply at that context, and the attention scale. Resolved once, in one step,
 * before any weight is bound; read-only afterwards. */
#ifndef SLM_MODEL_CONFIG_H
#define SLM_MODEL_CONFIG_H

#include "arch.h"
#include "gguf.h"
#include "slm.h"
#include "types.h"

typedef struct slm_model_config {
    int n_ctx;                   /* context window in tokens */
    int n_batch;                 /* largest batch of one forward pass (<= n_ctx) */
    const char *rope_freqs_name; /* the tensor of rope frequency divisors for n_ctx; NULL: none */
    float rope_attn_factor;      /* magnitude factor of rotated q and k (longrope), 1 otherwise */
    slm_dtype type_k, type_v;    /* KV cache element types (f16, q8_0, q4_0), from params.type_k / type_v */
    float attn_scale;            /* q.k scale: rope_attn_factor^2 / sqrt(head_dim, or gemma3's query_pre_attn_scalar) */
} slm_model_config;

slm_status slm_model_config_resolve(const slm_gguf *g, const slm_hparams *hp, const slm_params *p,
                                    slm_model_config *out, slm_error *err);

#endif
