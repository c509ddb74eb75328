/* The one check of a file's hyper-parameters against their meaning and against the tensors present, run
 * after they are read (arch.c) and before anything is derived from them or bound: a model that loads has
 * settings every op can run with, so a nonsense value fails here, naming its key, instead of as NaN logits
 * or a layer silently left out. */
#ifndef SLM_MODEL_VALIDATE_H
#define SLM_MODEL_VALIDATE_H

#include "arch.h"
#include "gguf.h"

/* SLM_ERR_FORMAT for values that mean nothing (a non-positive epsilon, heads that do not divide, tensors of
 * layers past block_count), SLM_ERR_UNSUPPORTED for meaningful ones this build cannot run (mixture of
 * experts, YaRN rope scaling, heads wider than the kernels take); the message names the key. */
slm_status slm_model_validate(const slm_gguf *g, const slm_hparams *hp, slm_error *err);

#endif
