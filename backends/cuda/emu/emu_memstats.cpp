/* Per-kernel global-load accounting (SLM_CUDA_EMU_MEMSTATS=1): the loads a kernel reports through
 * SLM_NOTE_LOAD (cuda_common.cuh: every weight load of the decoders and plain rows) are grouped into warp
 * requests, 32-byte sectors and distinct bytes used, so the coalescing of the decode mat-vec can be measured without
 * a GPU. A figure printed at exit, not a check.
 *
 * Grouping: the fibers of a warp run one after another, so the k-th load each lane makes after the warp
 * last met (a shuffle, vote or barrier) is taken to be the same load instruction: one request, whose
 * sectors are the distinct 32-byte segments its lanes touch. That holds for convergent code, which the
 * loads in question are; a divergent load sequence is counted as if it were convergent. Counted: the loads
 * through ld_u16/ld_u32/ld_f16 and ld_elem (quantized blocks and plain weight rows); not counted: the
 * K-quant scale bytes read directly, activations, shared memory and stores. */
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu_internal.h"

namespace slm_emu {

bool g_memstats;

namespace {
struct access {
    uintptr_t addr;
    unsigned bytes;
};
struct kernel_stats {
    uint64_t launches = 0, requests = 0, sectors = 0, bytes = 0;
};
struct per_thread {
    std::vector<std::vector<access>> lanes; /* by linear thread index of the running block */
    std::string kernel;
    kernel_stats *stats = nullptr;
};
std::mutex g_lock;
std::map<std::string, kernel_stats> *g_stats;
thread_local per_thread t;

void print_stats() {
    std::lock_guard<std::mutex> l(g_lock);
    fprintf(stderr, "slm cuda emulator: global loads reported by the kernels (SLM_NOTE_LOAD), per launch site:\n");
    fprintf(stderr, "  %-48s %8s %12s %12s %9s %12s %8s\n", "kernel", "launches", "requests", "sectors", "sect/req",
            "bytes used", "used %");
    for (const auto &kv : *g_stats) {
        const kernel_stats &s = kv.second;
        if (!s.requests) continue;
        fprintf(stderr, "  %-48.48s %8llu %12llu %12llu %9.2f %12llu %7.1f%%\n", kv.first.c_str(),
                (unsigned long long)s.launches, (unsigned long long)s.requests, (unsigned long long)s.sectors,
                (double)s.sectors / (double)s.requests, (unsigned long long)s.bytes,
                100.0 * (double)s.bytes / (32.0 * (double)s.sectors));
    }
}
} // namespace

void memstats_begin_kernel(const launch_info &info, int n_threads) {
    static std::once_flag once;
    std::call_once(once, [] {
        g_memstats = env_long("SLM_CUDA_EMU_MEMSTATS", 0) != 0;
        if (g_memstats) {
            g_stats = new std::map<std::string, kernel_stats>();
            atexit(print_stats);
        }
    });
    if (!g_memstats) return;
    if ((int)t.lanes.size() < n_threads) t.lanes.resize((size_t)n_threads);
    char site[64];
    const char *file = strrchr(info.file, '/');
    snprintf(site, sizeof site, " (%s:%d)", file ? file + 1 : info.file, info.line);
    std::lock_guard<std::mutex> l(g_lock);
    t.stats = &(*g_stats)[std::string(info.name) + site];
    t.stats->launches++;
}

void note_load_slow(const void *p, unsigned bytes) {
    const dim3 bd = g_exec.block_dim;
    const uint3 id = g_exec.cur_tid;
    const size_t linear = id.x + (size_t)id.y * bd.x + (size_t)id.z * bd.x * bd.y;
    if (linear < t.lanes.size()) t.lanes[linear].push_back(access{(uintptr_t)p, bytes});
}

void memstats_flush_warp(int warp, int n_threads) {
    if (!g_memstats || !t.stats) return;
    const int base = warp * 32, end = std::min(base + 32, n_threads);
    size_t k_max = 0;
    for (int i = base; i < end; i++) k_max = std::max(k_max, t.lanes[(size_t)i].size());
    if (!k_max) return;
    uint64_t requests = 0, sectors = 0, bytes = 0;
    std::vector<uintptr_t> seg, used;
    for (size_t k = 0; k < k_max; k++) {
        seg.clear();
        used.clear();
        for (int i = base; i < end; i++) {
            const auto &v = t.lanes[(size_t)i];
            if (k >= v.size()) continue;
            for (uintptr_t s = v[k].addr >> 5; s <= (v[k].addr + v[k].bytes - 1) >> 5; s++) seg.push_back(s);
            for (unsigned b = 0; b < v[k].bytes; b++) used.push_back(v[k].addr + b);
        }
        std::sort(seg.begin(), seg.end());
        sectors += (uint64_t)(std::unique(seg.begin(), seg.end()) - seg.begin());
        std::sort(used.begin(), used.end()); /* lanes reading the same bytes (a block's scale) use them once */
        bytes += (uint64_t)(std::unique(used.begin(), used.end()) - used.begin());
        requests++;
    }
    for (int i = base; i < end; i++) t.lanes[(size_t)i].clear();
    std::lock_guard<std::mutex> l(g_lock);
    t.stats->requests += requests;
    t.stats->sectors += sectors;
    t.stats->bytes += bytes;
}

void memstats_flush_block(int n_threads) {
    if (!g_memstats) return;
    for (int w = 0; w * 32 < n_threads; w++) memstats_flush_warp(w, n_threads);
}

} // namespace slm_emu
