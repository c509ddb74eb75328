#include "kv_cache.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* f16 rows are padded to 64 bytes and, when that is a multiple of 256, by one more line: at such a stride one
 * head's rows fall into a fraction of the cache sets (8 kv heads of 64 give 1 KiB rows, which use 1/8 of a
 * CPU's L2 sets), and CPU attention over long contexts waits on conflict misses. */
static const struct {
    const char *name;
    slm_dtype dtype;
} k_kv_types[SLM_KV_TYPE_COUNT] = {
    [SLM_KV_F16] = {"f16", SLM_F16}, [SLM_KV_Q8_0] = {"q8_0", SLM_Q8_0}, [SLM_KV_Q4_0] = {"q4_0", SLM_Q4_0}};

const char *slm_kv_type_name(int t) { return t >= 0 && t < SLM_KV_TYPE_COUNT ? k_kv_types[t].name : NULL; }

int slm_kv_type_from_name(const char *name) {
    for (int t = 0; name && t < SLM_KV_TYPE_COUNT; t++)
        if (!strcmp(name, k_kv_types[t].name)) return t;
    return -1;
}

slm_dtype slm_kv_dtype(int t) { return t >= 0 && t < SLM_KV_TYPE_COUNT ? k_kv_types[t].dtype : SLM_DTYPE_COUNT; }

slm_status slm_kv_types_resolve(const slm_hparams *hp, int type_k, int type_v, slm_dtype *k, slm_dtype *v,
                                slm_error *err) {
    const int types[2] = {type_k, type_v};
    slm_dtype *out[2] = {k, v};
    for (int i = 0; i < 2; i++) {
        const char *flag = i ? "-ctv" : "-ctk";
        if (types[i] < 0 || types[i] >= SLM_KV_TYPE_COUNT)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: KV cache type %d is not one slm has (f16, q8_0, q4_0)", flag,
                            types[i]);
        *out[i] = k_kv_types[types[i]].dtype;
        int blk = slm_dtype_get(*out[i])->block_elems;
        if (hp->head_dim % blk)
            return slm_fail(err, SLM_ERR_UNSUPPORTED,
                            "%s %s: a quantized KV cache needs a head size that is a multiple of %d; this model's is "
                            "%d (use f16)",
                            flag, k_kv_types[types[i]].name, blk, hp->head_dim);
    }
    return SLM_OK;
}

size_t slm_kv_row_bytes(const slm_hparams *hp, slm_dtype t) {
    size_t b = slm_dtype_row_bytes(t, (int64_t)hp->n_head_kv * hp->head_dim);
    if (t != SLM_F16) {
        /* quantized rows (34- or 18-byte blocks, read unaligned anyway) are padded to 16 bytes only, so that
         * they keep their 53% / 28% of the f16 size; the same rule against a power-of-two stride */
        b = (b + 15) & ~(size_t)15;
        return b % 256 ? b : b + 16;
    }
    b = (b + 63) & ~(size_t)63;
    return b % 256 ? b : b + 64;
}

uint64_t slm_kv_layer_bytes(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx) {
    return ((uint64_t)slm_kv_row_bytes(hp, type_k) + slm_kv_row_bytes(hp, type_v)) * (uint64_t)n_ctx;
}

uint64_t slm_kv_bytes_read(const slm_tensor *k_cache, const slm_tensor *v_cache, int n_pos) {
    return ((uint64_t)slm_dtype_row_bytes(k_cache->type, k_cache->ne[0]) +
            slm_dtype_row_bytes(v_cache->type, v_cache->ne[0])) *
        (uint64_t)n_pos;
}

static slm_tensor kv_tensor(slm_buffer *buf, size_t offset, const slm_hparams *hp, slm_dtype type, int64_t n_ctx) {
    slm_tensor t = slm_tensor_make(buf, offset, type, (int64_t)hp->n_head_kv * hp->head_dim, n_ctx, 1, 1);
    t.nb[1] = slm_kv_row_bytes(hp, type);
    t.nb[2] = t.nb[3] = t.nb[1] * (size_t)t.ne[1];
    return t;
}

slm_status slm_kv_cache_check_memory(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx, int n_seq,
                                     slm_device *const *devices, int n_devices, const int *layer_device,
                                     const uint64_t *other, slm_error *err) {
    int bad = -1;
    uint64_t need_bad = 0, other_bad = 0, usable_bad = 0, largest = UINT64_MAX;
    for (int d = 0; d < n_devices && d < SLM_KV_MAX_DEVICES; d++) {
        uint64_t n = 0, extra = other ? other[d] : 0;
        for (int il = 0; il < hp->n_layer; il++) n += layer_device[il] == d;
        if (!n && !extra) continue;
        size_t fr = 0;
        slm_device_memory(devices[d], &fr, NULL);
        if (!fr) continue; /* the device cannot tell: its allocation will say */
        /* 5% of what is free stays free: the allocator's overhead, the thread pool's work buffer */
        uint64_t usable = (uint64_t)fr - (uint64_t)fr / 20;
        uint64_t per_pos = n * (slm_kv_row_bytes(hp, type_k) + slm_kv_row_bytes(hp, type_v)) * (uint64_t)n_seq,
                 need = per_pos * (uint64_t)n_ctx;
        uint64_t fits = usable <= extra ? 0 : per_pos ? (usable - extra) / per_pos : UINT64_MAX;
        if (fits < largest) largest = fits;
        if (need + extra > usable && bad < 0) {
            bad = d;
            need_bad = need;
            other_bad = extra;
            usable_bad = usable;
        }
    }
    if (bad < 0) return SLM_OK;
    if (largest >= 256) largest &= ~(uint64_t)255;
    const slm_device *dev = devices[bad];
    char fits[128];
    if (largest >= 1)
        snprintf(fits, sizeof fits, "the largest context that fits is %llu tokens%s (-c %llu)",
                 (unsigned long long)largest, n_seq > 1 ? " per sequence" : "", (unsigned long long)largest);
    else snprintf(fits, sizeof fits, "no context fits");
    return slm_fail(err, dev->host_memory ? SLM_ERR_NOMEM : SLM_ERR_DEVICE,
                    "%d sequence%s of a %d-token context need%s %.1f GiB of KV cache on %s (plus %.2f GiB of "
                    "activations and logits), %.1f GiB is available; %s",
                    n_seq, n_seq > 1 ? "s" : "", n_ctx, n_seq > 1 ? "" : "s", need_bad / 1073741824.0, dev->name,
                    other_bad / 1073741824.0, usable_bad / 1073741824.0, fits);
}

slm_tensor slm_kv_seq(const slm_kv_cache *kv, bool v, int il, int seq) {
    slm_tensor t = v ? kv->v[il] : kv->k[il];
    t.offset += (size_t)seq * (v ? kv->seq_stride_v : kv->seq_stride_k);
    return t;
}

slm_status slm_kv_cache_create(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx, int n_seq,
                               slm_device *const *devices, int n_devices, const int *layer_device, slm_kv_cache *kv,
                               slm_error *err) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = hp->n_layer;
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->type_k = type_k;
    kv->type_v = type_v;
    kv->k = calloc((size_t)hp->n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)hp->n_layer, sizeof *kv->v);
    if (!kv->k || !kv->v) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for the KV cache");
    /* K and V may differ in type, so each has its own stride between sequences */
    kv->seq_stride_k = slm_kv_row_bytes(hp, type_k) * (size_t)n_ctx;
    kv->seq_stride_v = slm_kv_row_bytes(hp, type_v) * (size_t)n_ctx;
    /* K and V of one layer, every sequence */
    size_t per_k = kv->seq_stride_k * (size_t)n_seq, per_v = kv->seq_stride_v * (size_t)n_seq;
    for (int d = 0; d < n_devices && d < SLM_KV_MAX_DEVICES; d++) {
        size_t n = 0;
        for (int il = 0; il < hp->n_layer; il++) n += layer_device[il] == d;
        if (!n) continue;
        slm_status s = slm_buffer_alloc(devices[d], n * (per_k + per_v), &kv->buf[d], err);
        if (s) return s;
        size_t at = 0;
        for (int il = 0; il < hp->n_layer; il++) {
            if (layer_device[il] != d) continue;
            kv->k[il] = kv_tensor(&kv->buf[d], at, hp, type_k, n_ctx);
            kv->v[il] = kv_tensor(&kv->buf[d], at + per_k, hp, type_v, n_ctx);
            at += per_k + per_v;
        }
    }
    return SLM_OK;
}

void slm_kv_cache_free(slm_kv_cache *kv) {
    for (int d = 0; d < SLM_KV_MAX_DEVICES; d++) slm_buffer_release(&kv->buf[d]);
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}
