/* How much memory this process can still take from the host: the kernel's estimate (MemAvailable), the
 * memory limit of its cgroup (v1 or v2, every ancestor included), and the address-space and data rlimits,
 * the smallest winning. The CPU device reports it as its free memory, and the KV cache is checked against
 * it before a context allocates, so that a context too large for the machine fails with a message instead
 * of the process being killed by the OOM killer. */
#ifndef SLM_HOST_MEMORY_H
#define SLM_HOST_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct slm_host_memory {
    uint64_t total;     /* MemTotal, or the tightest limit when lower */
    uint64_t available; /* what can still be allocated: the smallest of the limits found */
    const char *limit;  /* which limit gave `available`: "MemAvailable", "cgroup memory.max",
                           "cgroup memory.limit_in_bytes", "RLIMIT_AS", "RLIMIT_DATA" (static text) */
} slm_host_memory;

/* Reads the limits from the files under root: "" for this process on this machine; a test passes a
 * directory holding its own proc/meminfo, proc/self/{cgroup,limits,status} and sys/fs/cgroup/... Files that
 * are missing or unreadable contribute nothing. False when not even proc/meminfo could be read (then out is
 * zeroed: unknown). */
bool slm_host_memory_read(const char *root, slm_host_memory *out);

#endif
