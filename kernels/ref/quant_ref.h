/* Scalar reference of every tensor type: the definition of "correct" that every fast kernel is tested
 * against. Block layouts follow the GGUF/ggml file format. */
#ifndef SLM_QUANT_REF_H
#define SLM_QUANT_REF_H

#include <stdint.h>

#include "types.h"

/* dst[0..n) = dequantized row; n must be a multiple of the type's block size. */
void slm_ref_dequant_row(slm_dtype t, const void *src, float *dst, int64_t n);
/* Quantizes a float row into type t (round to nearest, the simple per-block scale the format defines;
 * k-quants use a plain max-abs / min-max search). For tests and synthetic models, not for speed. */
void slm_ref_quantize_row(slm_dtype t, const float *src, void *dst, int64_t n);
/* Dot product of one weight row of type t with f32 activations, accumulated in double. */
float slm_ref_dot_row(slm_dtype t, const void *w_row, const float *x, int64_t n);

#endif
