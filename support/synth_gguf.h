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

/* A synthetic model one edit away from a valid one, for tests of what the loader refuses: metadata keys given
 * their own value (or left out) and tensors left out. */
typedef struct slm_synth_kv {
    const char *key;    /* in full: "llama.rope.freq_base", "general.alignment" */
    slm_gguf_type type; /* of the value written: UINT32 (default), INT32, UINT64, FLOAT32, FLOAT64, BOOL, STRING */
    double num;         /* numbers and bools */
    const char *str;    /* STRING */
    bool drop;          /* write no value: the file lacks the key */
} slm_synth_kv;
typedef struct slm_synth_edits {
    const slm_synth_kv *kvs;
    int n_kvs;
    const char *const *drop_tensors; /* names of tensors the file lacks */
    int n_drop_tensors;
} slm_synth_edits;
/* slm_synth_build with the edits: the model's own value of every key the edits name is replaced. The spec is
 * validated as usual, so a file whose tensors disagree with its metadata comes from editing the metadata
 * (block_count 2 over a spec of 3 layers). */
slm_status slm_synth_build_edited(const slm_synth_spec *s, const slm_synth_edits *e, int n_threads, void **data,
                                  size_t *size, slm_error *err);

/* Fills one tensor's data with random blocks of type t (rows of ne0 elements, nbytes in all) so that the
 * weights dequantize to values of standard deviation about `sigma`. Exposed for tests. */
slm_status slm_synth_fill(slm_dtype t, void *data, size_t nbytes, float sigma, uint64_t seed, slm_error *err);

#endif
