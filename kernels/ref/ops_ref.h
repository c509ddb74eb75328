/* Scalar reference of every op (f32 activations). Shapes: a "row" is ne[0] contiguous floats. */
#ifndef SLM_OPS_REF_H
#define SLM_OPS_REF_H

#include <stdint.h>

#include "types.h"

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] over one row of n. */
void slm_ref_rmsnorm(const float *x, const float *w, float *y, int n, float eps);
/* Rotates one head vector in place: pairs (i, i+1) when !neox, (i, i+n_rot/2) when neox, for i < n_rot.
 * theta_i = pos * base^(-2i/n_rot) * freq_scale / factor_i (factors may be NULL = all 1). */
void slm_ref_rope(float *x, int n_rot, int pos, float freq_base, float freq_scale, const float *factors, int neox);
/* y = silu(g) * u */
void slm_ref_swiglu(const float *g, const float *u, float *y, int n);
/* y = gelu(g) * u, GELU in its tanh form: gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void slm_ref_geglu(const float *g, const float *u, float *y, int n);
/* Causal grouped-query attention for one query token at position pos against an f16 KV cache.
 * q: [head_dim, n_head]; k_cache, v_cache: rows of [head_dim * n_head_kv] per position (f16);
 * out: [head_dim, n_head]. Attends to positions 0..pos inclusive. */
void slm_ref_attention(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out, int head_dim,
                       int n_head, int n_head_kv, int pos, float scale);
/* The same over a sliding window: positions max(0, pos - window + 1)..pos (window 0: all of 0..pos). */
void slm_ref_attention_window(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                              int head_dim, int n_head, int n_head_kv, int pos, int window, float scale);
/* The same over a KV cache of any type the KV cache has (f16, q8_0, q4_0: slm_ref_dequant_row's rows):
 * row p of K starts k_row_bytes * p bytes into k_cache (V likewise), holding head_dim * n_head_kv elements
 * (a multiple of the type's block); each row is dequantized as the reference dequantizer reads it, then
 * attended in double as above. A KV cache row is written by slm_ref_quantize_row (quant_ref.h). */
void slm_ref_attention_kv(const float *q, slm_dtype k_type, const void *k_cache, size_t k_row_bytes, slm_dtype v_type,
                          const void *v_cache, size_t v_row_bytes, float *out, int head_dim, int n_head, int n_head_kv,
                          int pos, int window, float scale);

#endif
