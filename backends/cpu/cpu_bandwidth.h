/* Peak read bandwidth of host memory: the one measurement the CPU backend (measure_bandwidth) and slm-bench
 * (through slm_device_peak_read) both use. */
#ifndef SLM_CPU_BANDWIDTH_H
#define SLM_CPU_BANDWIDTH_H

#include <stddef.h>

#include "backend.h"

/* The buffer when the caller names none: far larger than the caches of the machines slm runs on. */
#define SLM_CPU_PEAK_READ_BYTES ((size_t)1 << 30)

/* The best of several read kernels over a buffer of `bytes`: one and four independent address streams per
 * thread, with and without software prefetch, the widest vector loads the CPU has, with n_threads threads
 * (<= 0: every CPU this process may run on, slm_cpu_usable; at most 256) and also one per physical core when
 * that is fewer. Each kernel is read reps times; out gets the fastest read, the spread of the kernel that
 * gave it and its description. False on failure (no memory, no threads). */
bool slm_cpu_peak_read(int n_threads, size_t bytes, int reps, slm_read_peak *out);

/* Physical cores among the CPUs this process may run on (SMT siblings counted once); 0 when unknown. */
int slm_cpu_physical_cores(void);

#endif
