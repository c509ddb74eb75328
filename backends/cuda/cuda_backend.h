/* The CUDA backend's extras beyond slm_backend_ops (for tests and diagnostics). Plain C: no CUDA headers. */
#ifndef SLM_CUDA_BACKEND_H
#define SLM_CUDA_BACKEND_H

#include <stdint.h>

#include "backend.h"

extern const slm_backend_ops slm_backend_cuda;

typedef struct slm_cuda_stats {
    uint64_t captures;       /* splits captured into CUDA graphs */
    uint64_t graph_launches; /* graph launches (first launch after a capture included) */
    int sm;                  /* compute capability of the device, e.g. 89 */
    int graphs_enabled;      /* 0 after SLM_CUDA_GRAPHS=0, with SLM_CUDA_SYNC=1, or after a failed capture */
    int sync_each;           /* SLM_CUDA_SYNC=1: a synchronisation after every op */
    int matvec_f32;          /* quantized mat-vecs on f32 activations (--f32-act, SLM_CUDA_MATVEC=f32) */
} slm_cuda_stats;

/* Counters of an opened cuda device (zeros for a device of another backend). */
slm_cuda_stats slm_cuda_get_stats(const slm_device *d);

#endif
