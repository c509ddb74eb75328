/* How many CPU threads are useful: as many as there are CPUs this process may run on. More threads than that
 * only wait for each other (every op ends at a barrier), so a request beyond it is capped, with a note. */
#ifndef SLM_CPU_THREADS_H
#define SLM_CPU_THREADS_H

#include <stddef.h>

/* CPUs this process may run on: its affinity mask (taskset, cpusets), further bounded by a CFS CPU quota
 * (cgroup v2 cpu.max or v1 cpu.cfs_quota_us, as containers started with --cpus have), rounded up; >= 1. */
int slm_cpu_usable(void);

/* The thread count for a request (<= 0: every usable CPU): at most slm_cpu_usable(). When the request is
 * capped, note (when not NULL) receives why, e.g. "using 2 threads, not 1000: this process may run on 2
 * CPUs"; else it is set to "". */
int slm_cpu_threads_resolve(int requested, char *note, size_t note_len);

#endif
