/* Weights repacked for decode (internal to kernels/cpu and the CPU backend): rows interleaved 16 at a time
 * so that one 64-byte vector holds 4 consecutive codes of each of 16 rows. A u8 x s8 dot-product
 * instruction against 4 broadcast activation bytes then advances 16 output rows at once (lane r is row r)
 * and no dot product is ever summed across lanes: the per-row horizontal sums of the row-major kernels
 * (matmul_simd_body.h) cost more than the multiplies, and they are paid again for every extra column of a
 * small batch.
 *
 * The layout keeps the GGUF bytes (the same size, so a repacked tensor replaces the mapped one byte for
 * byte) and is only a permutation of them. A tensor of n_rows (a multiple of 16) rows of nb blocks is
 * n_rows / 16 groups of 16 * row_bytes bytes; group g holds rows 16g..16g+15 as
 *   uint32 codes[nb][C][16]   code dword j of block b of row r at [b][j][r]
 *   uint16 d[nb][16]          the f16 scale of block b of row r
 * (Q4_0, Q8_0; the K-quants below). Q4_0 (C = 4): code dword j is bytes 4j..4j+3 of the block's qs, so its low nibbles are elements
 *   4j..4j+3 and its high nibbles elements 16+4j..16+4j+3.
 * Q8_0 (C = 8): code dword j is elements 4j..4j+3, each stored as the unsigned byte w + 128 (the
 *   instruction multiplies unsigned by signed; the kernel takes 128 * sum(q) back).
 * Q4_K: the codes region of a super-block is its 32 qs dwords (dword 8p + i holds elements 64p + 4i.. in
 *   its low nibbles and 64p + 32 + 4i.. in its high ones); its scales region the dword d | dmin << 16 of
 *   each row, then the 12 scale bytes as 3 dwords.
 * Q5_K: Q4_K's, with the 8 qh dwords after the 32 qs dwords in the codes region (bit s of qh byte l is
 *   the fifth bit of element l of sub-block s).
 * Q6_K: codes region: the 32 ql dwords, then the 16 qh dwords; scales region: the 16 int8 scales as 4
 *   dwords, then the f16 d of each row.
 * A group is the codes region of every block, then the scales region of every block ([nb][...][16]), so
 * the codes stay 64-byte aligned. Activation columns are the row-major kernels' (act_quant.h). */
#ifndef SLM_MATVEC_X16_H
#define SLM_MATVEC_X16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define SLM_X16_ROWS 16

/* Whether the layout exists for wtype (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K). */
bool slm_x16_type(slm_dtype wtype);
/* Bytes of the codes region of one block (all 16 rows). */
size_t slm_x16_codes_bytes(slm_dtype wtype);
/* Rewrites n_rows (a multiple of 16) rows of wtype, row_bytes apart at src, into the layout at dst
 * (n_rows * row_bytes bytes), and back. */
void slm_x16_pack(slm_dtype wtype, const void *src, size_t row_bytes, int64_t n_rows, int64_t k, void *dst);
void slm_x16_unpack(slm_dtype wtype, const void *src, int64_t n_rows, int64_t k, void *dst, size_t row_bytes);

/* out[c * out_stride + r] = dot(row r, column c) for r < n_rows (a multiple of 16, w the start of a group),
 * c < n_cols, from repacked weights (row_bytes: the GGUF row size) and SLM_ACT_Q8_32 columns act_stride
 * bytes apart. Every column gets the same bits whatever n_cols is. */
bool slm_cpu_matvec_x16_has_avx512(slm_dtype wtype); /* Q4_0, Q8_0, Q4_K, Q5_K, Q6_K */
void slm_cpu_matvec_x16_avx512(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                               size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride);

/* The same on AVX2 (8 rows per vector): Q4_0, Q4_K, Q5_K, Q6_K; Q8_0 keeps GGUF rows there. */
bool slm_cpu_matvec_x16_has_avx2(slm_dtype wtype);
void slm_cpu_matvec_x16_avx2(slm_dtype wtype, const void *w, size_t row_bytes, int64_t n_rows, const void *xq,
                             size_t act_stride, int64_t n_cols, int64_t k, float *out, int64_t out_stride);

#endif
