/* Stand-in for cuda_runtime.h in the emulation build: the runtime API plus, for the kernels compiled as
 * C++, the device-side language (backends/cuda/emu/emu_device.h). */
#ifndef SLM_EMU_CUDA_RUNTIME_H
#define SLM_EMU_CUDA_RUNTIME_H

#include "cuda_runtime_api.h"

#ifdef __cplusplus
#include "../emu_device.h"
#endif
#endif
