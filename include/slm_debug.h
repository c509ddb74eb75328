/* slm — testing knobs. Not part of the stable API and not installed: the test suite and the command-line
 * tools use these to check accuracy and failure paths; applications have no use for them. */
#ifndef SLM_DEBUG_H
#define SLM_DEBUG_H

#include "slm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_debug_params {
    bool f32_activations;       /* CPU and CUDA mat-vecs: multiply quantized weights with f32 activations
                                 instead of 8-bit blocks: several times slower, used to check accuracy */
    size_t fault_alloc_limit;   /* GPU weight allocations above this many bytes fail as if the device were out
                                 of memory (0: off) */
    const char *gpu_refuse_ops; /* "rope,swiglu": op kinds every GPU treats as unsupported, so that the graph
                                   routes them to the CPU (NULL: none) */
} slm_debug_params;

/* slm_model_load and slm_model_load_memory with testing knobs (dbg NULL: none). */
slm_status slm_model_load_debug(const char *path, const slm_params *params, const slm_debug_params *dbg,
                                slm_model **out, slm_error *err);
slm_status slm_model_load_memory_debug(const void *data, size_t size, const slm_params *params,
                                       const slm_debug_params *dbg, slm_model **out, slm_error *err);

#ifdef __cplusplus
}
#endif
#endif
