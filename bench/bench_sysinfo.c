/* What a result depends on, for the report header: build (version, commit, type, compiler, backends),
 * CPU (model, cores, SIMD features), memory, and every device's measured peak bandwidth. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef SLM_BENCH_VERSION
#define SLM_BENCH_VERSION "unknown"
#endif
#ifndef SLM_BENCH_COMMIT
#define SLM_BENCH_COMMIT "unknown"
#endif
#ifndef SLM_BENCH_BUILD_TYPE
#define SLM_BENCH_BUILD_TYPE "unknown"
#endif

static void cpu_model(char *out, size_t len) {
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(out, len, "%s", c);
        break;
    }
    fclose(f);
}

static void cpu_features(char *out, size_t len) {
    out[0] = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    struct {
        const char *name;
        int on;
    } f[] = {
        {"AVX2", __builtin_cpu_supports("avx2")},
        {"FMA", __builtin_cpu_supports("fma")},
        {"AVX512F", __builtin_cpu_supports("avx512f")},
        {"AVX512BW", __builtin_cpu_supports("avx512bw")},
        {"AVX512VNNI", __builtin_cpu_supports("avx512vnni")},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? " " : "", f[i].name);
    }
#elif defined(__aarch64__)
    snprintf(out, len, "NEON");
#endif
    if (!out[0]) snprintf(out, len, "none");
}

void bench_sysinfo_collect(bench_sysinfo *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->version, sizeof s->version, "%s", SLM_BENCH_VERSION);
    snprintf(s->commit, sizeof s->commit, "%s", SLM_BENCH_COMMIT);
    snprintf(s->build_type, sizeof s->build_type, "%s", SLM_BENCH_BUILD_TYPE);
#if defined(__clang__)
    snprintf(s->compiler, sizeof s->compiler, "clang %s", __clang_version__);
#elif defined(__GNUC__)
    snprintf(s->compiler, sizeof s->compiler, "gcc %s", __VERSION__);
#else
    snprintf(s->compiler, sizeof s->compiler, "unknown");
#endif
    slm_backend_info b[8];
    int n_b = slm_backends_list(b, 8);
    for (int i = 0; i < n_b && i < 8; i++) {
        size_t used = strlen(s->backends);
        snprintf(s->backends + used, sizeof s->backends - used, "%s%s(%d)", used ? " " : "", b[i].name, b[i].n_devices);
    }
    cpu_model(s->cpu, sizeof s->cpu);
    cpu_features(s->cpu_features, sizeof s->cpu_features);
    s->n_cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    s->mem_gib = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0 * 1024.0);
    s->llc_bytes = bench_llc_bytes();
    s->peak_mib = bench_default_peak_mib(s->llc_bytes, bench_available_bytes());
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date, sizeof s->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *bench_device_name_tail(const char *name, const char *spec) {
    /* backends name their devices "vulkan:0 llvmpipe ..."; the report prints the spec beside the name */
    size_t n = strlen(spec);
    return !strncmp(name, spec, n) && name[n] == ' ' ? name + n + 1 : name;
}

const bench_device_fact *bench_sysinfo_peak(bench_sysinfo *s, const bench_options *o, const char *spec, int threads,
                                            bool measure) {
    bool cpu = !strncmp(spec, "cpu", 3);
    if (cpu && threads <= 0) threads = s->n_cores > 0 ? s->n_cores : 1;
    if (!cpu) threads = 0;
    for (int i = 0; i < s->n_dev; i++)
        if (!strcmp(s->dev[i].spec, spec) && s->dev[i].threads == threads) return &s->dev[i];
    if (!measure || s->n_dev == (int)(sizeof s->dev / sizeof s->dev[0])) return NULL;
    bench_device_fact *f = &s->dev[s->n_dev++];
    snprintf(f->spec, sizeof f->spec, "%s", spec);
    f->threads = threads;
    for (int i = 0; i < o->n_peak_given; i++)
        if (!strcmp(o->peak_given[i].spec, spec)) {
            f->peak = o->peak_given[i].bytes_per_s;
            f->given = true;
        }
    slm_peak_read pk = {0};
    if (cpu) f->buffer_mib = o->peak_mib > 0 ? o->peak_mib : s->peak_mib;
    if (!f->given) {
        /* the device's name comes with the measurement; a given figure needs only the name */
        if (slm_device_peak_read(spec, threads, (size_t)f->buffer_mib << 20, &pk, NULL) == SLM_OK) {
            f->peak = pk.bytes_per_s;
            f->spread = pk.spread;
            f->n_kernels = pk.n_kernels;
            snprintf(f->kernel, sizeof f->kernel, "%s", pk.kernel);
        }
    } else {
        f->buffer_mib = 0;
        slm_device_info di[16];
        int n = slm_devices_list(di, 16);
        for (int i = 0; i < n && i < 16; i++)
            if (!strcmp(di[i].spec, spec)) snprintf(pk.name, sizeof pk.name, "%s", di[i].name);
    }
    if (cpu) {
        snprintf(f->name, sizeof f->name, "%s, %d thread%s", s->cpu, threads, threads == 1 ? "" : "s");
    } else {
        const char *tail = bench_device_name_tail(pk.name, spec);
        if (tail[0]) snprintf(f->name, sizeof f->name, "%s", tail);
        else snprintf(f->name, sizeof f->name, "not available");
    }
    return f;
}
