#include "cpu_threads.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

/* CPUs the CFS quota of this process's cgroup allows (quota / period, rounded up), 0 when unlimited or
 * unknown. The cgroup's own files are at the root of /sys/fs/cgroup inside a container, where the quota
 * matters; a process outside one sees the machine's root cgroup, which has no quota. */
static int quota_cpus(void) {
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r"); /* cgroup v2: "max 100000" or "200000 100000" */
    if (f) {
        if (fscanf(f, "%lld %lld", &quota, &period) != 2) quota = -1;
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) { /* v1: -1 when unlimited */
        if (fscanf(f, "%lld", &quota) != 1) quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r"))) {
            if (fscanf(f, "%lld", &period) != 1) period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    long long n = (quota + period - 1) / period;
    return n > 0 && n < 1 << 20 ? (int)n : 0;
}

int slm_cpu_usable(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int q = quota_cpus();
    if (q > 0 && q < n) n = q;
    return n > 0 ? n : 1;
}

int slm_cpu_threads_resolve(int requested, char *note, size_t note_len) {
    int usable = slm_cpu_usable();
    if (note && note_len) note[0] = 0;
    if (requested <= 0) return usable;
    if (requested <= usable) return requested;
    if (note && note_len)
        snprintf(note, note_len, "using %d thread%s, not %d: this process may run on %d CPU%s", usable,
                 usable == 1 ? "" : "s", requested, usable, usable == 1 ? "" : "s");
    return usable;
}
