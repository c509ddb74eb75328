/* CPU attention over a KV cache of any of its types (f16, q8_0, q4_0), K and V rows dequantized in registers
 * as they are read (no f16 copy of the cache). One call is one KV head's group of g query heads over a run of
 * positions: each K and V row is read once for all g heads. Its result is a partial softmax (the running
 * maximum, the sum of exponentials and the unnormalized weighted sum of V), so that runs of positions can be
 * computed apart (by different threads) and merged. */
#ifndef SLM_ATTEND_KV_H
#define SLM_ATTEND_KV_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_kernels.h"
#include "types.h"

/* The most query heads one call takes; a larger group is split into calls of at most this many. */
#define SLM_ATTEND_KV_MAX_G 16

/* Positions are processed (and partials merged) in chunks of this many rows counted from the first row a
 * token sees, whatever the thread count, so results do not depend on it. */
#define SLM_ATTEND_KV_CHUNK 256

/* One partial: m[g], l[g], then acc[g][hd]; slm_attend_kv_partial_floats(g, hd) floats. */
static inline size_t slm_attend_kv_partial_floats(int g, int hd) { return (size_t)g * ((size_t)hd + 2); }

/* q: g query heads, hd floats apart; K row p at (const uint8_t *)k + p * k_stride (bytes), its first hd
 * elements (whole blocks of kt) are this head's; V likewise. n >= 1 positions. Writes the partial to part. */
typedef void (*slm_attend_kv_fn)(const float *q, int g, const void *k, size_t k_stride, slm_dtype kt, const void *v,
                                 size_t v_stride, slm_dtype vt, int64_t n, int hd, float scale, float *part);

/* The kernel for isa (the AVX2 one for AVX2 and AVX-512 CPUs, else the scalar one). */
slm_attend_kv_fn slm_attend_kv_get(slm_cpu_isa isa);

/* into = merge(into, part), both partials of g heads. */
void slm_attend_kv_merge(float *into, const float *part, int g, int hd);
/* out[h * hd + i] = acc / l of each of the g heads (out heads hd floats apart). */
void slm_attend_kv_finish(const float *part, int g, int hd, float *out);

#endif
