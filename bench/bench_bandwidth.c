/* Peak read bandwidth, the denominator of "% of peak", is measured by the library (slm_device_peak_read: on
 * the CPU a multi-threaded read of a buffer far larger than the caches, on other devices the backend's own
 * kernel). What is bench's: the size of the CPU buffer, from the last-level cache and the available memory. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* "491520K", "32M", "1024" (bytes), as in the size files of /sys/devices/system/cpu/cpu0/cache. */
static uint64_t parse_size(const char *s) {
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) v = v * 10 + (uint64_t)(*s++ - '0');
    if (*s == 'K' || *s == 'k') v <<= 10;
    else if (*s == 'M' || *s == 'm') v <<= 20;
    else if (*s == 'G' || *s == 'g') v <<= 30;
    return v;
}

uint64_t bench_llc_bytes(void) {
    uint64_t best = 0;
    for (int i = 0; i < 16; i++) {
        char path[96], line[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(line, sizeof line, f)) {
            uint64_t v = parse_size(line);
            if (v > best) best = v; /* the largest cache is the last level */
        }
        fclose(f);
    }
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (!best) {
        long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        best = l3 > 0 ? (uint64_t)l3 : l2 > 0 ? (uint64_t)l2 : 0;
    }
#endif
    return best;
}

uint64_t bench_available_bytes(void) {
    uint64_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (uint64_t)kb << 10;
                break;
            }
        }
        fclose(f);
    }
    if (!avail) {
        /* free pages only (no reclaimable cache): an underestimate, which is the safe side */
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) avail = (uint64_t)pages * (uint64_t)page;
    }
    return avail;
}

int bench_default_peak_mib(uint64_t llc_bytes, uint64_t avail_bytes) {
    uint64_t mib = 512, llc4 = (4 * llc_bytes + (1u << 20) - 1) >> 20;
    if (llc4 > mib) mib = llc4;
    if (avail_bytes && mib > avail_bytes / 2 >> 20) mib = avail_bytes / 2 >> 20;
    if (mib < 16) mib = 16;
    if (mib > (1u << 20)) mib = 1u << 20; /* 1 TiB: keeps the int and the shift well defined */
    return (int)mib;
}

const char *bench_first_gpu(char *buf, size_t len) {
    slm_backend_info b[8];
    int n = slm_backends_list(b, 8);
    for (int i = 0; i < n && i < 8; i++) {
        if (strcmp(b[i].name, "cpu") && b[i].n_devices > 0) {
            snprintf(buf, len, "%s:0", b[i].name);
            return buf;
        }
    }
    return NULL;
}
