/* Synthetic models seen through the engine's internals (core/gguf.h, core/types.h): the type of each tensor,
 * the GGUF opened in place, and the random block filler. For tests, which have the internal include paths;
 * slm-bench uses synth.h alone. */
#ifndef SLM_SYNTH_GGUF_H
#define SLM_SYNTH_GGUF_H

#include "gguf.h"
#include "synth.h"
#include "types.h"

/* The type the spec's quantization mix gives a tensor, by its GGUF name ("blk.3.attn_v.weight"). */
slm_dtype slm_synth_tensor_type(const slm_synth_spec *s, const char *name);

/* Builds and opens it: *g reads *data, which must outlive it (free *data after slm_gguf_close, or after
 * slm_model_free when the model took g). */
slm_status slm_synth_open(const slm_synth_spec *s, int n_threads, slm_gguf **g, void **data, slm_error *err);

/* Fills one tensor's data with random blocks of type t (rows of ne0 elements, nbytes in all) so that the
 * weights dequantize to values of standard deviation about `sigma`. Exposed for tests. */
slm_status slm_synth_fill(slm_dtype t, void *data, size_t nbytes, float sigma, uint64_t seed, slm_error *err);

#endif
