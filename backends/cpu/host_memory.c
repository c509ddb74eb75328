/* Host memory available to this process (see host_memory.h). Everything is read from text files under a
 * root directory, rlimits included (/proc/self/limits rather than getrlimit), so that a test can feed the
 * parser every layout: cgroup v1 and v2, "max", no cgroup, limits on the address space. */
#include "host_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits at or above this are "no limit": cgroup v1 writes its unlimited value as a page-rounded 2^63 - 1. */
#define NO_LIMIT (1ull << 62)

/* The first line of root/rel (newline dropped) into buf; false when the file cannot be read. */
static bool read_line(const char *root, const char *rel, char *buf, size_t n) {
    char path[8192];
    snprintf(path, sizeof path, "%s%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\n")] = 0;
    return ok;
}

/* A byte count file (memory.max, memory.current, ...): "max" reads as no limit. */
static bool read_bytes(const char *root, const char *rel, uint64_t *out) {
    char line[64];
    if (!read_line(root, rel, line, sizeof line)) return false;
    if (!strcmp(line, "max")) {
        *out = UINT64_MAX;
        return true;
    }
    char *end;
    unsigned long long v = strtoull(line, &end, 10);
    if (end == line) return false;
    *out = v;
    return true;
}

/* The value of "name <number>" (memory.stat) or "Name: <number> kB" (meminfo, status) lines of a file,
 * multiplied by unit. */
static bool read_field(const char *root, const char *rel, const char *name, uint64_t unit, uint64_t *out) {
    char path[8192], line[256];
    snprintf(path, sizeof path, "%s%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t len = strlen(name);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, name, len) || (line[len] != ' ' && line[len] != ':' && line[len] != '\t')) continue;
        const char *p = line + len + (line[len] == ':');
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end != p) {
            *out = v * unit;
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Keeps the smallest availability seen and what set it. */
static void consider(slm_host_memory *m, uint64_t avail, const char *what) {
    if (avail < m->available) {
        m->available = avail;
        m->limit = what;
    }
}

/* One cgroup directory's room: limit minus what it uses, where page cache that is not in active use
 * (inactive_file) counts as free, since the kernel reclaims it before it kills anything. */
static void cgroup_dir(slm_host_memory *m, const char *root, const char *dir, bool v1) {
    char rel[4224];
    uint64_t limit, usage, inactive = 0;
    snprintf(rel, sizeof rel, "%s/%s", dir, v1 ? "memory.limit_in_bytes" : "memory.max");
    if (!read_bytes(root, rel, &limit) || limit >= NO_LIMIT) return;
    snprintf(rel, sizeof rel, "%s/%s", dir, v1 ? "memory.usage_in_bytes" : "memory.current");
    if (!read_bytes(root, rel, &usage)) usage = 0;
    snprintf(rel, sizeof rel, "%s/memory.stat", dir);
    read_field(root, rel, v1 ? "total_inactive_file" : "inactive_file", 1, &inactive);
    uint64_t used = usage > inactive ? usage - inactive : 0;
    if (limit < m->total) m->total = limit;
    consider(m, limit > used ? limit - used : 0, v1 ? "cgroup memory.limit_in_bytes" : "cgroup memory.max");
}

/* This process's memory cgroup from proc/self/cgroup, and every ancestor up to the mount's root: a parent's
 * limit binds its children too. Walking up also copes with a container whose cgroup mount shows only its
 * own subtree while proc/self/cgroup names the full path: the missing levels are skipped. */
static void cgroup_limits(slm_host_memory *m, const char *root) {
    char path[4096], line[4096], cg[4096] = "";
    bool v1 = false, v2 = false;
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        /* "id:controllers:path"; v2's line is "0::path" */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *p = c2 + 1;
        bool memory = false;
        for (const char *t = ctrls; *t;) {
            size_t n = strcspn(t, ",");
            memory |= n == 6 && !strncmp(t, "memory", 6);
            t += n + (t[n] == ',');
        }
        if (memory) { /* v1's memory controller takes precedence: v2 then has none */
            snprintf(cg, sizeof cg, "%s", p);
            v1 = true;
        } else if (!*ctrls && !v1) {
            snprintf(cg, sizeof cg, "%s", p);
            v2 = true;
        }
    }
    fclose(f);
    if (!v1 && !v2) return;
    const char *mount = v1 ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
    for (;;) {
        size_t n = strlen(cg);
        while (n > 1 && cg[n - 1] == '/') cg[--n] = 0;
        char dir[4160];
        snprintf(dir, sizeof dir, "%s%s", mount, strcmp(cg, "/") ? cg : "");
        cgroup_dir(m, root, dir, v1);
        char *slash = strrchr(cg, '/');
        if (!slash || !strcmp(cg, "/") || !*cg) break;
        if (slash == cg) strcpy(cg, "/");
        else *slash = 0;
    }
}

/* An rlimit's soft value from proc/self/limits ("Max address space  unlimited  unlimited  bytes") minus the
 * usage it counts, a proc/self/status field. */
static void rlimit(slm_host_memory *m, const char *root, const char *name, const char *usage_field, const char *what) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/proc/self/limits", root);
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t len = strlen(name);
    uint64_t limit = UINT64_MAX;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, len) || line[len] != ' ') continue;
        const char *p = line + len;
        while (*p == ' ') p++;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end != p) limit = v; /* "unlimited" parses as no number */
        break;
    }
    fclose(f);
    if (limit >= NO_LIMIT) return;
    uint64_t used = 0;
    read_field(root, "/proc/self/status", usage_field, 1024, &used);
    consider(m, limit > used ? limit - used : 0, what);
}

bool slm_host_memory_read(const char *root, slm_host_memory *out) {
    memset(out, 0, sizeof *out);
    if (!root) root = "";
    uint64_t total, avail;
    if (!read_field(root, "/proc/meminfo", "MemTotal", 1024, &total)) return false;
    if (!read_field(root, "/proc/meminfo", "MemAvailable", 1024, &avail)) {
        /* kernels before 3.14: free plus the page cache, which is what MemAvailable estimates */
        uint64_t fr = 0, buffers = 0, cached = 0;
        read_field(root, "/proc/meminfo", "MemFree", 1024, &fr);
        read_field(root, "/proc/meminfo", "Buffers", 1024, &buffers);
        read_field(root, "/proc/meminfo", "Cached", 1024, &cached);
        avail = fr + buffers + cached;
    }
    out->total = total;
    out->available = avail;
    out->limit = "MemAvailable";
    cgroup_limits(out, root);
    rlimit(out, root, "Max address space", "VmSize", "RLIMIT_AS");
    rlimit(out, root, "Max data size", "VmData", "RLIMIT_DATA");
    return true;
}
