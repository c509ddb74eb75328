/* The KV cache: its layout (row size and padding, bytes per layer and per device, bytes read at a position)
 * and its allocation, one buffer per device holding the K and V of the layers placed there. A cache holds
 * n_seq sequences (a server's slots), each n_ctx positions of its own: sequence s of a layer is the rows
 * [s * n_ctx, (s + 1) * n_ctx) of that layer's K and of its V, so every op that reads or writes one sequence
 * sees an ordinary one-sequence cache (slm_kv_seq). The planner, the placement's memory check, the context
 * and the op observer all size it from here. */
#ifndef SLM_KV_CACHE_H
#define SLM_KV_CACHE_H

#include <stdint.h>

#include "arch.h"
#include "backend.h"

#define SLM_KV_MAX_DEVICES 4

typedef struct slm_kv_cache {
    int n_layer, n_ctx, n_seq;
    slm_buffer buf[SLM_KV_MAX_DEVICES]; /* the layers of device d, K then V of each, in layer order */
    slm_tensor *k, *v;                  /* [n_layer] f16 [n_head_kv * head_dim, n_ctx], rows padded: sequence 0 */
    size_t seq_stride;                  /* bytes from one sequence's rows to the next's */
} slm_kv_cache;

/* The K (v false) or V cache of layer il for sequence seq: [n_head_kv * head_dim, n_ctx]. */
slm_tensor slm_kv_seq(const slm_kv_cache *kv, bool v, int il, int seq);

/* Bytes between positions of one layer's K (or V) rows. */
size_t slm_kv_row_bytes(const slm_hparams *hp);
/* K and V of one layer for n_ctx positions. */
uint64_t slm_kv_layer_bytes(const slm_hparams *hp, int n_ctx);
/* K and V bytes an attention op over the cache `k_cache` reads when it sees n_pos positions (the elements,
 * not the padding between rows). */
uint64_t slm_kv_bytes_read(const slm_tensor *k_cache, int n_pos);

/* Checks, before anything is allocated, that the cache of n_seq sequences of n_ctx positions fits the memory each device has
 * left beside other[d] bytes the caller allocates there too (other may be NULL): a host allocation past it
 * is not refused but killed later by the OOM killer, as its pages are touched. Fails with SLM_ERR_NOMEM
 * (host) or SLM_ERR_DEVICE (GPU), the sizes and the largest context per sequence that fits every device
 * (rounded down to 256 positions). Devices that cannot tell their free memory are not checked. */
slm_status slm_kv_cache_check_memory(const slm_hparams *hp, int n_ctx, int n_seq, slm_device *const *devices,
                                     int n_devices, const int *layer_device, const uint64_t *other, slm_error *err);

/* Allocates the cache of every layer on its device (layer_device[il] indexes devices). Host memory comes
 * zeroed from the kernel and is committed only as positions are written. */
slm_status slm_kv_cache_create(const slm_hparams *hp, int n_ctx, int n_seq, slm_device *const *devices, int n_devices,
                               const int *layer_device, slm_kv_cache *out, slm_error *err);
void slm_kv_cache_free(slm_kv_cache *kv);

#endif
