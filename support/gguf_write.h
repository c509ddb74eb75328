/* A small GGUF v2/v3 writer for tests and synthetic models: collect metadata and tensors, then write them to a
 * FILE *, a path, or a malloc'd buffer. Tensor data is padded to general.alignment (default 32).
 *
 * The add_* calls keep the first failure (out of memory, bad argument) and every later write reports it, so a
 * sequence of adds can be checked once at the end. They also return it for callers that want to stop early.
 * Nothing checks for duplicate keys or tensor names, so tests can write files that readers must reject.
 * It speaks the engine's GGUF types (core/gguf.h): its users need the internal include paths, as tests have. */
#ifndef SLM_GGUF_WRITE_H
#define SLM_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gguf.h"

typedef struct slm_gguf_writer slm_gguf_writer;

slm_status slm_gguf_writer_create(slm_gguf_writer **out, slm_error *err);
void slm_gguf_writer_free(slm_gguf_writer *w);
/* 2 or 3 (the default). The two differ only in the number: v3 added big-endian files, which this writer never
 * produces. Any other value is written as given so tests can produce files readers must reject. */
void slm_gguf_writer_set_version(slm_gguf_writer *w, uint32_t version);
/* Later add_* calls for these metadata keys and tensor names write nothing and succeed, so that a caller that
 * writes a whole model (support/synth.c) can leave some of it out for a test to replace or drop. The arrays
 * must outlive the calls; NULL lists end the skipping. */
void slm_gguf_writer_skip(slm_gguf_writer *w, const char *const *keys, size_t n_keys, const char *const *tensors,
                          size_t n_tensors);

slm_status slm_gguf_writer_add_u32(slm_gguf_writer *w, const char *key, uint32_t v);
slm_status slm_gguf_writer_add_i32(slm_gguf_writer *w, const char *key, int32_t v);
slm_status slm_gguf_writer_add_u64(slm_gguf_writer *w, const char *key, uint64_t v);
slm_status slm_gguf_writer_add_f32(slm_gguf_writer *w, const char *key, float v);
slm_status slm_gguf_writer_add_bool(slm_gguf_writer *w, const char *key, bool v);
slm_status slm_gguf_writer_add_str(slm_gguf_writer *w, const char *key, const char *v);
/* Any scalar type: value points at a C value of that type (uint8_t, int16_t, double, bool, ...). */
slm_status slm_gguf_writer_add_scalar(slm_gguf_writer *w, const char *key, slm_gguf_type type, const void *value);

/* Arrays. add_arr takes n C values of a fixed-size element type (not STRING/ARRAY). */
slm_status slm_gguf_writer_add_arr(slm_gguf_writer *w, const char *key, slm_gguf_type elem, const void *values,
                                   uint64_t n);
slm_status slm_gguf_writer_add_arr_str(slm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
slm_status slm_gguf_writer_add_arr_i32(slm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
slm_status slm_gguf_writer_add_arr_f32(slm_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* A value already encoded as GGUF bytes (everything after the u32 value type), e.g. a nested array. */
slm_status slm_gguf_writer_add_raw(slm_gguf_writer *w, const char *key, slm_gguf_type type, const void *bytes,
                                   size_t len);

/* A tensor of type id `type` and shape ne[0..n_dims) (ne[0] innermost). The data is NOT copied: it must stay
 * valid until the last write (NULL writes zeros). size = 0: computed from the type and shape (the type must be
 * known); else written as given (for tensors of types this build does not know). */
slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                      const int64_t *ne, const void *data, size_t size);

slm_status slm_gguf_writer_write_file(const slm_gguf_writer *w, FILE *f, slm_error *err);
slm_status slm_gguf_writer_write_path(const slm_gguf_writer *w, const char *path, slm_error *err);
/* *out: malloc'd buffer the caller frees; *size its length. */
slm_status slm_gguf_writer_write_memory(const slm_gguf_writer *w, void **out, size_t *size, slm_error *err);

#endif
