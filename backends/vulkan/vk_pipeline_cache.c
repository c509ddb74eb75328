/* The pipeline cache kept across runs: $XDG_CACHE_HOME/slm (else ~/.cache/slm), one file per driver and
 * device (vendor id, device id and pipelineCacheUUID in the name). Drivers that compile shaders at pipeline
 * creation (every Vulkan driver does some of it) then start faster from the second run on.
 *
 * A file that cannot be read, is too large, or whose header does not name this very driver and device is
 * ignored without a word: the cache is an optimisation, never a reason to fail. It is written back at close,
 * only when this run created pipelines and the cache grew, to a temporary file renamed over the old one, so
 * a reader never sees half a file. SLM_VK_NO_PIPELINE_CACHE=1 turns it off (the tests do, or point XDG_CACHE_HOME elsewhere). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vk_internal.h"

#define VK_PCACHE_MAX_BYTES ((size_t)64 << 20) /* larger files are not ours or not worth reading */
#define VK_PCACHE_HEADER_BYTES 32              /* VkPipelineCacheHeaderVersionOne */

/* Fills c->pcache_path, or leaves it empty when the cache is off or there is no cache directory. */
static void cache_path(vk_ctx *c) {
    c->pcache_path[0] = 0;
    const char *off = getenv("SLM_VK_NO_PIPELINE_CACHE");
    if (off && *off && *off != '0') return;
    char dir[400];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/') { /* the XDG spec says to ignore relative paths */
        if (snprintf(dir, sizeof dir, "%s/slm", xdg) >= (int)sizeof dir) return;
        mkdir(xdg, 0700);
    } else if (home && home[0] == '/') {
        char base[400];
        if (snprintf(base, sizeof base, "%s/.cache", home) >= (int)sizeof base) return;
        mkdir(base, 0700);
        if (snprintf(dir, sizeof dir, "%s/slm", base) >= (int)sizeof dir) return;
    } else {
        return;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; i++) snprintf(uuid + 2 * i, 3, "%02x", c->props.pipelineCacheUUID[i]);
    if (snprintf(c->pcache_path, sizeof c->pcache_path, "%s/vulkan-%04x-%04x-%s.bin", dir, c->props.vendorID,
                 c->props.deviceID, uuid) >= (int)sizeof c->pcache_path)
        c->pcache_path[0] = 0;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* the driver writes its header in host byte order */
    return v;
}

/* The file's bytes when its header is this driver's and device's; NULL otherwise. */
static void *read_valid(const vk_ctx *c, size_t *n_out) {
    FILE *f = fopen(c->pcache_path, "rb");
    if (!f) return NULL;
    void *data = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= VK_PCACHE_HEADER_BYTES && (size_t)n <= VK_PCACHE_MAX_BYTES && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)n);
        if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    if (!data) return NULL;
    const uint8_t *h = data;
    uint32_t hsize = rd32(h), version = rd32(h + 4);
    bool ok = hsize >= VK_PCACHE_HEADER_BYTES && hsize <= (uint32_t)n &&
        version == VK_PIPELINE_CACHE_HEADER_VERSION_ONE && rd32(h + 8) == c->props.vendorID &&
        rd32(h + 12) == c->props.deviceID && !memcmp(h + 16, c->props.pipelineCacheUUID, VK_UUID_SIZE);
    if (!ok) {
        free(data);
        return NULL;
    }
    *n_out = (size_t)n;
    return data;
}

slm_status slm_vk_pcache_create(vk_ctx *c, slm_error *err) {
    cache_path(c);
    size_t n = 0;
    void *data = c->pcache_path[0] ? read_valid(c, &n) : NULL;
    VkPipelineCacheCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO, .initialDataSize = n, .pInitialData = data};
    VkResult r = vkCreatePipelineCache(c->device, &pci, NULL, &c->pcache);
    if (r != VK_SUCCESS && data) { /* the driver disliked the contents after all: start empty */
        pci.initialDataSize = 0;
        pci.pInitialData = NULL;
        r = vkCreatePipelineCache(c->device, &pci, NULL, &c->pcache);
    }
    free(data);
    c->pcache_dirty = false;
    c->pcache_loaded = r == VK_SUCCESS ? pci.initialDataSize : 0;
    return slm_vk_check(c, r, "vkCreatePipelineCache", err);
}

void slm_vk_pcache_save(vk_ctx *c) {
    if (!c->pcache || !c->pcache_dirty || !c->pcache_path[0] || c->lost) return;
    size_t n = 0;
    /* the same size as the file read at open: nothing was added (drivers without a real cache, or every
     * pipeline came from the file), so the file stays as it is */
    if (vkGetPipelineCacheData(c->device, c->pcache, &n, NULL) != VK_SUCCESS || n < VK_PCACHE_HEADER_BYTES ||
        n > VK_PCACHE_MAX_BYTES || n == c->pcache_loaded)
        return;
    void *data = malloc(n);
    if (!data) return;
    if (vkGetPipelineCacheData(c->device, c->pcache, &n, data) == VK_SUCCESS) {
        char tmp[sizeof c->pcache_path + 32];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", c->pcache_path, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            size_t done = 0;
            while (done < n) {
                ssize_t w = write(fd, (const uint8_t *)data + done, n - done);
                if (w <= 0) break;
                done += (size_t)w;
            }
            bool ok = close(fd) == 0 && done == n;
            if (!ok || rename(tmp, c->pcache_path) != 0) unlink(tmp);
        }
    }
    free(data);
}
