/* Host memory availability (backends/cpu/host_memory.c) on fake /proc and /sys trees: MemAvailable alone,
 * cgroup v1 and v2 limits (with reclaimable page cache, "max", an ancestor's tighter limit, a container that
 * sees only its own subtree), rlimits, no meminfo; and through the API, a context whose KV cache cannot fit
 * the machine fails cleanly with SLM_ERR_NOMEM, the sizes and the largest context that fits. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu/host_memory.h"
#include "slm.h"
#include "synth.h"
#include "test_util.h"

#define GIB (1ull << 30)
#define MIB (1ull << 20)

static char g_root[64];

/* mkdir -p of root/dir. */
static void mkdirs(const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_root, dir);
    for (char *s = p + strlen(g_root) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0700);
            *s = '/';
        }
    mkdir(p, 0700);
}

/* Writes root/rel (its directory made first). */
static void put(const char *rel, const char *fmt, ...) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        mkdirs(dir);
    }
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(0, "cannot write %s", path);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* A fresh fake root with 16 GiB of memory, 10 GiB available. */
static void fresh_root(void) {
    snprintf(g_root, sizeof g_root, "/tmp/slm_test_hostmem_XXXXXX");
    if (!mkdtemp(g_root)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    put("proc/meminfo",
        "MemTotal:       16777216 kB\nMemFree:         1048576 kB\nMemAvailable:   10485760 kB\n"
        "Buffers:           1024 kB\n");
}

static void remove_root(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
}

static void expect(const char *what, uint64_t avail, uint64_t total, const char *limit) {
    slm_host_memory hm;
    bool ok = slm_host_memory_read(g_root, &hm);
    CHECK(ok, "%s: read failed", what);
    CHECK(hm.available == avail, "%s: available %llu, want %llu", what, (unsigned long long)hm.available,
          (unsigned long long)avail);
    CHECK(hm.total == total, "%s: total %llu, want %llu", what, (unsigned long long)hm.total,
          (unsigned long long)total);
    CHECK(hm.limit && !strcmp(hm.limit, limit), "%s: limit %s, want %s", what, hm.limit ? hm.limit : "NULL", limit);
}

static void test_parser(void) {
    /* no cgroup, no limits file: MemAvailable */
    fresh_root();
    expect("meminfo only", 10 * GIB, 16 * GIB, "MemAvailable");
    remove_root();

    /* cgroup v1 (hybrid layout: v2's line has no controllers): 2 GiB limit, 1.5 GiB used of which 256 MiB is
     * inactive page cache */
    fresh_root();
    put("proc/self/cgroup", "12:pids:/a/b\n4:memory:/a/b\n0::/a/b\n");
    put("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "%llu\n", 2 * GIB);
    put("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "%llu\n", 3 * GIB / 2);
    put("sys/fs/cgroup/memory/a/b/memory.stat", "cache 1\ninactive_file 5\ntotal_inactive_file %llu\n", 256 * MIB);
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"); /* v1's "unlimited" */
    expect("v1", 2 * GIB - (3 * GIB / 2 - 256 * MIB), 2 * GIB, "cgroup memory.limit_in_bytes");
    /* a parent's tighter limit binds the child */
    put("sys/fs/cgroup/memory/a/memory.limit_in_bytes", "%llu\n", 1 * GIB);
    put("sys/fs/cgroup/memory/a/memory.usage_in_bytes", "%llu\n", 3 * GIB / 4);
    expect("v1 parent", GIB / 4, 1 * GIB, "cgroup memory.limit_in_bytes");
    remove_root();

    /* cgroup v2: 1 GiB max, 512 MiB current, 128 MiB inactive file */
    fresh_root();
    put("proc/self/cgroup", "0::/user.slice/session-1.scope\n");
    put("sys/fs/cgroup/user.slice/session-1.scope/memory.max", "%llu\n", 1 * GIB);
    put("sys/fs/cgroup/user.slice/session-1.scope/memory.current", "%llu\n", 512 * MIB);
    put("sys/fs/cgroup/user.slice/session-1.scope/memory.stat", "anon 1\nfile 2\ninactive_file %llu\n", 128 * MIB);
    expect("v2", 1 * GIB - 384 * MIB, 1 * GIB, "cgroup memory.max");
    /* "max": no limit there */
    put("sys/fs/cgroup/user.slice/session-1.scope/memory.max", "max\n");
    expect("v2 max", 10 * GIB, 16 * GIB, "MemAvailable");
    /* usage above the limit (the kernel is reclaiming): nothing available, not a wrapped count */
    put("sys/fs/cgroup/user.slice/session-1.scope/memory.max", "%llu\n", 256 * MIB);
    expect("v2 over", 0, 256 * MIB, "cgroup memory.max");
    remove_root();

    /* a container: proc/self/cgroup names the host's path, the mount shows only the container's own group */
    fresh_root();
    put("proc/self/cgroup", "0::/system.slice/docker-abc.scope\n");
    put("sys/fs/cgroup/memory.max", "%llu\n", 3 * GIB);
    put("sys/fs/cgroup/memory.current", "%llu\n", 1 * GIB);
    expect("v2 container", 2 * GIB, 3 * GIB, "cgroup memory.max");
    remove_root();

    /* rlimits: RLIMIT_AS 4 GiB with 1 GiB of address space in use */
    fresh_root();
    put("proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max data size             unlimited            unlimited            bytes     \n"
        "Max address space         4294967296           unlimited            bytes     \n");
    put("proc/self/status", "Name:\tslm\nVmPeak:\t 2000000 kB\nVmSize:\t 1048576 kB\nVmData:\t  10 kB\n");
    expect("RLIMIT_AS", 3 * GIB, 16 * GIB, "RLIMIT_AS");
    put("proc/self/limits",
        "Max data size             2147483648           unlimited            bytes     \n"
        "Max address space         unlimited            unlimited            bytes     \n");
    put("proc/self/status", "VmSize:\t 1048576 kB\nVmData:\t 524288 kB\n");
    expect("RLIMIT_DATA", 3 * GIB / 2, 16 * GIB, "RLIMIT_DATA");
    remove_root();

    /* no meminfo: unknown */
    fresh_root();
    char p[128];
    snprintf(p, sizeof p, "%s/proc/meminfo", g_root);
    unlink(p);
    slm_host_memory hm;
    CHECK(!slm_host_memory_read(g_root, &hm) && hm.available == 0 && hm.total == 0, "no meminfo must be unknown");
    remove_root();

    /* this machine: something sensible */
    CHECK(slm_host_memory_read("", &hm) && hm.total > 0 && hm.available <= hm.total + hm.total / 2,
          "this machine: available %llu, total %llu", (unsigned long long)hm.available, (unsigned long long)hm.total);
}

/* A context of 2^31 - 1 positions needs terabytes of KV cache: creating it fails with SLM_ERR_NOMEM, the
 * numbers and a context that fits, instead of allocating (and the process being killed). */
static void test_kv_too_large(void) {
    slm_synth_spec s;
    slm_error err = {{0}};
    slm_status st = slm_synth_parse(
        "custom:q8_0:n_layer=2:n_embd=256:n_head=8:n_head_kv=8:head_dim=32:n_ff=256:n_vocab=512", &s, &err);
    CHECK(st == SLM_OK, "parse: %s", err.msg);
    void *data = NULL;
    size_t size = 0;
    if (!st) st = slm_synth_build(&s, 1, &data, &size, &err);
    CHECK(st == SLM_OK, "build: %s", err.msg);
    if (st) return;
    slm_params p = slm_params_default();
    p.device = "cpu";
    p.n_threads = 1;
    p.n_ctx = 2147483647;
    slm_model *m = NULL;
    st = slm_model_load_memory(data, size, &p, &m, &err);
    CHECK(st == SLM_OK, "load: %s", err.msg);
    slm_context *c = NULL;
    if (!st) {
        st = slm_context_create(m, &c, &err);
        CHECK(st == SLM_ERR_NOMEM && !c, "context: %s (%s)", slm_status_name(st), err.msg);
        CHECK(strstr(err.msg, "a 2147483647-token context needs") && strstr(err.msg, "GiB of KV cache on cpu") &&
                  strstr(err.msg, "is available"),
              "message: %s", err.msg);
        const char *at = strstr(err.msg, "the largest context that fits is ");
        CHECK(at != NULL, "no largest context in: %s", err.msg);
        long long fits = at ? atoll(at + strlen("the largest context that fits is ")) : 0;
        CHECK(fits > 0 && fits < 2147483647 && fits % 256 == 0, "largest context %lld", fits);
        char want[64];
        snprintf(want, sizeof want, "(-c %lld)", fits);
        CHECK(strstr(err.msg, want), "message lacks %s: %s", want, err.msg);
    }
    slm_context_free(c);
    slm_model_free(m);
    free(data);
}

int main(void) {
    test_parser();
    test_kv_too_large();
    return slm_test_finish("test_host_memory");
}
