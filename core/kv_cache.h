/* The KV cache: its element types (f16, or q8_0 / q4_0 rows of whole GGUF blocks, quantized as they are
 * written and dequantized inside attention), its layout (row size and padding, bytes per layer and per device, bytes read at a position)
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
#include "slm.h"

#define SLM_KV_MAX_DEVICES 4

typedef struct slm_kv_cache {
    int n_layer, n_ctx, n_seq;
    slm_dtype type_k, type_v;
    slm_buffer buf[SLM_KV_MAX_DEVICES]; /* the layers of device d, K then V of each, in layer order */
    slm_tensor *k, *v;                  /* [n_layer] [n_head_kv * head_dim, n_ctx] of type_k / type_v, rows padded:
                                           sequence 0 */
    size_t seq_stride_k, seq_stride_v;  /* bytes from one sequence's K (V) rows to the next's */
} slm_kv_cache;

/* The K (v false) or V cache of layer il for sequence seq: [n_head_kv * head_dim, n_ctx]. */
slm_tensor slm_kv_seq(const slm_kv_cache *kv, bool v, int il, int seq);

/* The dtype of a public slm_kv_type (SLM_KV_F16 -> SLM_F16 ...); SLM_DTYPE_COUNT when out of range. */
slm_dtype slm_kv_dtype(int kv_type);
/* Checks params' type_k / type_v against the model (quantized rows need head_dim a multiple of 32, so that
 * each head's elements are whole blocks) and gives their dtypes. */
slm_status slm_kv_types_resolve(const slm_hparams *hp, int type_k, int type_v, slm_dtype *k, slm_dtype *v,
                                slm_error *err);

/* Bytes between positions of one layer's K (or V) rows of type t. */
size_t slm_kv_row_bytes(const slm_hparams *hp, slm_dtype t);
/* K and V of one layer for n_ctx positions. */
uint64_t slm_kv_layer_bytes(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx);
/* K and V bytes an attention op over the caches k_cache and v_cache reads when it sees n_pos positions (the
 * elements and block scales, not the padding between rows). */
uint64_t slm_kv_bytes_read(const slm_tensor *k_cache, const slm_tensor *v_cache, int n_pos);

/* Checks, before anything is allocated, that the cache of n_seq sequences of n_ctx positions fits the memory each device has
 * left beside other[d] bytes the caller allocates there too (other may be NULL): a host allocation past it
 * is not refused but killed later by the OOM killer, as its pages are touched. Fails with SLM_ERR_NOMEM
 * (host) or SLM_ERR_DEVICE (GPU), the sizes and the largest context per sequence that fits every device
 * (rounded down to 256 positions). Devices that cannot tell their free memory are not checked. */
slm_status slm_kv_cache_check_memory(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx, int n_seq,
                                     slm_device *const *devices, int n_devices, const int *layer_device,
                                     const uint64_t *other, slm_error *err);

/* Allocates the cache of every layer on its device (layer_device[il] indexes devices). Host memory comes
 * zeroed from the kernel and is committed only as positions are written. */
slm_status slm_kv_cache_create(const slm_hparams *hp, slm_dtype type_k, slm_dtype type_v, int n_ctx, int n_seq,
                               slm_device *const *devices, int n_devices, const int *layer_device, slm_kv_cache *out,
                               slm_error *err);
void slm_kv_cache_free(slm_kv_cache *kv);

#endif
