/* The host's share of the weights rewritten once, at load, into the CPU's own mat-mul layout
 * (slm_backend_ops.repack; today the CPU's 16-row interleave of kernels/cpu/matvec_x16.h). */
#ifndef SLM_WEIGHTS_REPACK_H
#define SLM_WEIGHTS_REPACK_H

#include "model.h"

/* After placement: every weight of the layers (and output head) on the CPU that the CPU repacks gets a
 * copy in that layout, which m->place.bound[0] then points at (m->host keeps the mapping, for uploads and
 * the embedding lookup). The pages of the file mapping that a copy replaces are given back to the kernel,
 * so the copy does not add to the resident size. Copies stop where the host's free memory would not
 * hold them beside what a context needs there (its KV cache at n_ctx, its scratch) and a quarter to spare: those weights keep their GGUF rows, and m->place.repack_note says
 * which. SLM_NO_REPACK=1 in the environment keeps every weight as the file has it (for measurements). */
slm_status slm_weights_repack_host(slm_model *m, slm_error *err);
/* Frees the copies (part of slm_model_unplace). */
void slm_weights_repack_free(slm_model *m);

#endif
