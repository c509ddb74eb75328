/* Peak read bandwidth of host memory: the one measurement the CPU backend (measure_bandwidth) and slm-bench
 * (through slm_device_peak_read) both use. */
#ifndef SLM_CPU_BANDWIDTH_H
#define SLM_CPU_BANDWIDTH_H

#include <stddef.h>

/* The buffer when the caller names none: far larger than the caches of the machines slm runs on. */
#define SLM_CPU_PEAK_READ_BYTES ((size_t)1 << 30)

/* n_threads threads (<= 0: every CPU this process may run on, slm_cpu_usable; at most 256) each sum their own share of a buffer of `bytes`
 * with the widest vector loads the CPU has; the best of reps reads, in bytes/s. 0 on failure (no memory, no
 * threads). */
double slm_cpu_peak_read(int n_threads, size_t bytes, int reps);

#endif
