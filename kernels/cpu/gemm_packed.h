/* The packed GEMM of prompt batches (internal to kernels/cpu; reached through slm_cpu_kernels.gemm).
 *
 * The mat-vec kernels reduce each (row, column) dot product horizontally, which for many columns costs
 * more than the multiplies. Here weight rows are first repacked, 16 at a time, so that one 64-byte vector
 * holds 4 consecutive codes of each of 16 rows; a u8 x s8 dot-product instruction against 4 broadcast
 * activation bytes then advances 16 output rows at once, lane r being row r, and nothing is reduced
 * across lanes. Repacking costs one pass over the rows, paid back over the columns.
 *
 * Packed group of 16 rows, for each 32-element block b (K-quant sub-blocks count as blocks):
 *   uint8 codes[8][16][4]   chunk j (elements 4j..4j+3) of row r at [j][r]: the unsigned codes
 *                           (Q4_0/Q4_1/Q4_K 0..15, Q5_* 0..31, Q6_K 0..63, Q8_0 the signed value + 128)
 *   float d[16]             the code scale of row r (Q4_K/Q5_K: d * sc of the sub-block; Q6_K: d * sc
 *                           of elements 0..15, and the coef slot holds d * sc of elements 16..31)
 *   float coef[16]          the min of row r (Q4_1, Q5_1 m; Q4_K, Q5_K -dmin * mn); unused for the
 *                           offset types (Q4_0 -8, Q5_0 -16, Q8_0 -128 on the codes), whose offset the
 *                           kernel takes from the activation sums in the integer domain
 * so that dot = sum_b d[b] * d_a[b] * (sum(code * q_a) - offset * sum(q_a)) + coef[b] * s_a[b] for every
 * type, against SLM_ACT_Q8_32 activation columns (s_a = d_a * sum(q_a)). */
#ifndef SLM_GEMM_PACKED_H
#define SLM_GEMM_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

/* Whether the AVX-512 packed GEMM takes wtype (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K). */
bool slm_cpu_gemm_has_avx512(slm_dtype wtype);
/* Quantizes x[k] into an SLM_ACT_Q8_32 column (slm_act_row_bytes(SLM_Q8_0, k) bytes at xq), with the
 * values slm_act_quantize gives. */
void slm_cpu_gemm_quantize_act_avx512(const float *x, void *xq, int64_t k);
/* Bytes of scratch one call needs for rows of k elements (a multiple of 64). */
size_t slm_cpu_gemm_scratch_bytes_avx512(int64_t k);
/* out[c * out_stride + r] = dot(weight row r, activation column c) for r < n_rows, c < n_cols, with
 * SLM_ACT_Q8_32 activation columns act_stride bytes apart; scratch is 64-byte aligned and holds
 * slm_cpu_gemm_scratch_bytes_avx512(k) bytes. x16: the weights are in the repacked decode layout
 * (matvec_x16.h; n_rows a multiple of 16, w_row_bytes the GGUF row size). */
void slm_cpu_gemm_avx512(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                         size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch);

/* Activation columns for the GEMM kernels, in groups of `cols`, one record per 32-element block:
 *   int8 q[cols][32], float d[cols], int32 ioff[copies][cols], float s[cols], int32 ioffh[copies][cols]
 * (SLM_GEMM_ACT_REC bytes). ioff = -offset * sum(q) (Q6_K, halves = 1: over elements 0..15, ioffh over
 * 16..31): the kernel starts the block's integer accumulator there, so a constant code offset (Q4_0 8,
 * Q5_0 16, Q6_K 32, Q8_0 128) costs no float step. `copies` > 1 repeats the offsets, one per accumulator
 * set, so that each starts from its own broadcast load. */
#define SLM_GEMM_ACT_D(cols) (32 * (size_t)(cols))
#define SLM_GEMM_ACT_IOFF(cols) (36 * (size_t)(cols))
#define SLM_GEMM_ACT_S(cols, copies) (SLM_GEMM_ACT_IOFF(cols) + 4 * (size_t)(cols) * (size_t)(copies))
#define SLM_GEMM_ACT_IOFFH(cols, copies) (SLM_GEMM_ACT_S(cols, copies) + 4 * (size_t)(cols))
#define SLM_GEMM_ACT_REC(cols, copies) (SLM_GEMM_ACT_IOFFH(cols, copies) + 4 * (size_t)(cols) * (size_t)(copies))
void slm_cpu_gemm_interleave_cols(const void *xq, size_t act_stride, int64_t n_cols, int64_t k, int offset, int halves,
                                  int cols, int copies, void *dst);
/* Columns per chunk: as many whole groups of `cols` as fit `budget` bytes of records (rec_bytes per block
 * and group), at least one group. */
int64_t slm_cpu_gemm_chunk_cols(int64_t k, int cols, size_t rec_bytes, size_t budget);

/* The AVX2 packed GEMM (gemm_packed_avx2.c: 8 rows per vector; the same contract as the AVX-512 one
 * above, for the same types). Its activations come from the portable quantizer. */
bool slm_cpu_gemm_has_avx2(slm_dtype wtype);
size_t slm_cpu_gemm_scratch_bytes_avx2(int64_t k);
void slm_cpu_gemm_avx2(slm_dtype wtype, const void *w, size_t w_row_bytes, bool x16, int64_t n_rows, const void *xq,
                       size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride, void *scratch);

#endif
