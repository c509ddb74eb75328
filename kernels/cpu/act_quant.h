/* Activation formats of the CPU mat-mul: what an f32 activation column becomes before it meets a weight
 * row. Quantized weights multiply int8 activations so the inner loops are integer dot products; float
 * weights multiply f32 activations.
 *
 * Every format is a struct of arrays inside one column buffer so SIMD loads of the int8 quants are
 * contiguous; each array starts on a 64-byte boundary relative to the column start, and the column size is
 * a multiple of 64 so columns laid end to end keep that alignment.
 *
 *   SLM_ACT_F32    (F32, F16, BF16 weights)      float x[k]
 *   SLM_ACT_Q8_32  (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) nb = k / 32 blocks of 32:
 *                  float d[nb]        block scale (x ~ d * q)
 *                  float s[nb]        d * sum(q) of the block: the term that an offset (Q4_0, Q5_0) or a
 *                                     min (Q4_1, Q5_1) of the weight block multiplies
 *                  int8  q[k]
 *   SLM_ACT_Q8_256 (Q4_K, Q5_K, Q6_K)            ns = k / 256 super-blocks of 256:
 *                  float d[ns]        one scale per super-block
 *                  int16 bsum[16*ns]  sum of each group of 16 quants (Q4_K/Q5_K mins act on groups of
 *                                     32 = two of these; Q6_K's -32 offset on groups of 16)
 *                  int8  q[k]
 * Quants are round-to-nearest of x / d with d = max|x| / 127, so |q| <= 127. */
#ifndef SLM_ACT_QUANT_H
#define SLM_ACT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "types.h"

typedef enum slm_act_format { SLM_ACT_F32 = 0, SLM_ACT_Q8_32 = 1, SLM_ACT_Q8_256 = 2 } slm_act_format;

slm_act_format slm_act_format_of(slm_dtype wtype);
/* Bytes of one column of k elements for weight type wtype (a multiple of 64). */
size_t slm_act_row_bytes(slm_dtype wtype, int64_t k);
/* Quantizes x[k] into the column buffer xq (slm_act_row_bytes(wtype, k) bytes). */
void slm_act_quantize(slm_dtype wtype, const float *x, void *xq, int64_t k);

static inline size_t slm_act_round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Array offsets inside a SLM_ACT_Q8_32 column of k elements. */
static inline const float *slm_act32_d(const void *col) { return (const float *)col; }
static inline const float *slm_act32_s(const void *col, int64_t k) { return (const float *)col + k / 32; }
static inline const int8_t *slm_act32_q(const void *col, int64_t k) {
    return (const int8_t *)col + slm_act_round64((size_t)(k / 32) * 8);
}

/* Array offsets inside a SLM_ACT_Q8_256 column of k elements. */
static inline const float *slm_act256_d(const void *col) { return (const float *)col; }
static inline size_t slm_act256_bsum_off(int64_t k) { return slm_act_round64((size_t)(k / 256) * 4); }
static inline const int16_t *slm_act256_bsum(const void *col, int64_t k) {
    return (const int16_t *)((const uint8_t *)col + slm_act256_bsum_off(k));
}
static inline const int8_t *slm_act256_q(const void *col, int64_t k) {
    return (const int8_t *)col + slm_act_round64(slm_act256_bsum_off(k) + (size_t)(k / 256) * 32);
}

#endif
