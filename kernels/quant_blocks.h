/* Block geometry of the weight types: elements per block, bytes per block, and the byte offset of each
 * member inside a block, for C and CUDA alike (no includes, constants only). Layouts (f16 = little-endian
 * IEEE half, all multi-byte values little-endian):
 *   Q4_0  d f16 | qs[16] nibbles (low = element j, high = element j + 16)
 *   Q4_1  d f16 | m f16 | qs[16]
 *   Q5_0  d f16 | qh u32 (bit j: 5th bit of element j) | qs[16]
 *   Q5_1  d f16 | m f16 | qh u32 | qs[16]
 *   Q8_0  d f16 | qs[32] int8
 *   Q4_K  d f16 | dmin f16 | scales[12] (8 x 6-bit scale and min, packed) | qs[128]
 *   Q5_K  d f16 | dmin f16 | scales[12] | qh[32] | qs[128]
 *   Q6_K  ql[128] | qh[64] | scales[16] int8 | d f16
 * shaders/quant_blocks.glsl repeats the sizes for the shaders; cmake/vulkan.cmake checks it against this
 * file at build time (cmake/check_quant_blocks.c). */
#ifndef SLM_QUANT_BLOCKS_H
#define SLM_QUANT_BLOCKS_H

#if defined(__cplusplus)
#define SLM_QB_ASSERT(c, m) static_assert(c, m)
#else
#define SLM_QB_ASSERT(c, m) _Static_assert(c, m)
#endif

#define SLM_QK 32            /* elements of a Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 block */
#define SLM_QK_K 256         /* elements of a Q4_K, Q5_K, Q6_K super-block */
#define SLM_K_SCALE_BYTES 12 /* Q4_K / Q5_K packed scales and mins */

#define SLM_Q4_0_BYTES 18
#define SLM_Q4_0_D 0
#define SLM_Q4_0_QS 2

#define SLM_Q4_1_BYTES 20
#define SLM_Q4_1_D 0
#define SLM_Q4_1_M 2
#define SLM_Q4_1_QS 4

#define SLM_Q5_0_BYTES 22
#define SLM_Q5_0_D 0
#define SLM_Q5_0_QH 2
#define SLM_Q5_0_QS 6

#define SLM_Q5_1_BYTES 24
#define SLM_Q5_1_D 0
#define SLM_Q5_1_M 2
#define SLM_Q5_1_QH 4
#define SLM_Q5_1_QS 8

#define SLM_Q8_0_BYTES 34
#define SLM_Q8_0_D 0
#define SLM_Q8_0_QS 2

#define SLM_Q4_K_BYTES 144
#define SLM_Q4_K_D 0
#define SLM_Q4_K_DMIN 2
#define SLM_Q4_K_SCALES 4
#define SLM_Q4_K_QS 16

#define SLM_Q5_K_BYTES 176
#define SLM_Q5_K_D 0
#define SLM_Q5_K_DMIN 2
#define SLM_Q5_K_SCALES 4
#define SLM_Q5_K_QH 16
#define SLM_Q5_K_QS 48

#define SLM_Q6_K_BYTES 210
#define SLM_Q6_K_QL 0
#define SLM_Q6_K_QH 128
#define SLM_Q6_K_SCALES 192
#define SLM_Q6_K_D 208

/* Each member starts where the one before ends and the last ends at the block's end. */
SLM_QB_ASSERT(SLM_Q4_0_QS == SLM_Q4_0_D + 2 && SLM_Q4_0_QS + SLM_QK / 2 == SLM_Q4_0_BYTES, "Q4_0 layout");
SLM_QB_ASSERT(SLM_Q4_1_M == SLM_Q4_1_D + 2 && SLM_Q4_1_QS == SLM_Q4_1_M + 2 &&
                  SLM_Q4_1_QS + SLM_QK / 2 == SLM_Q4_1_BYTES,
              "Q4_1 layout");
SLM_QB_ASSERT(SLM_Q5_0_QH == SLM_Q5_0_D + 2 && SLM_Q5_0_QS == SLM_Q5_0_QH + SLM_QK / 8 &&
                  SLM_Q5_0_QS + SLM_QK / 2 == SLM_Q5_0_BYTES,
              "Q5_0 layout");
SLM_QB_ASSERT(SLM_Q5_1_M == SLM_Q5_1_D + 2 && SLM_Q5_1_QH == SLM_Q5_1_M + 2 &&
                  SLM_Q5_1_QS == SLM_Q5_1_QH + SLM_QK / 8 && SLM_Q5_1_QS + SLM_QK / 2 == SLM_Q5_1_BYTES,
              "Q5_1 layout");
SLM_QB_ASSERT(SLM_Q8_0_QS == SLM_Q8_0_D + 2 && SLM_Q8_0_QS + SLM_QK == SLM_Q8_0_BYTES, "Q8_0 layout");
SLM_QB_ASSERT(SLM_Q4_K_DMIN == SLM_Q4_K_D + 2 && SLM_Q4_K_SCALES == SLM_Q4_K_DMIN + 2 &&
                  SLM_Q4_K_QS == SLM_Q4_K_SCALES + SLM_K_SCALE_BYTES && SLM_Q4_K_QS + SLM_QK_K / 2 == SLM_Q4_K_BYTES,
              "Q4_K layout");
SLM_QB_ASSERT(SLM_Q5_K_DMIN == SLM_Q5_K_D + 2 && SLM_Q5_K_SCALES == SLM_Q5_K_DMIN + 2 &&
                  SLM_Q5_K_QH == SLM_Q5_K_SCALES + SLM_K_SCALE_BYTES && SLM_Q5_K_QS == SLM_Q5_K_QH + SLM_QK_K / 8 &&
                  SLM_Q5_K_QS + SLM_QK_K / 2 == SLM_Q5_K_BYTES,
              "Q5_K layout");
SLM_QB_ASSERT(SLM_Q6_K_QH == SLM_Q6_K_QL + SLM_QK_K / 2 && SLM_Q6_K_SCALES == SLM_Q6_K_QH + SLM_QK_K / 4 &&
                  SLM_Q6_K_D == SLM_Q6_K_SCALES + SLM_QK_K / 16 && SLM_Q6_K_D + 2 == SLM_Q6_K_BYTES,
              "Q6_K layout");
/* Code that handles both types of a pair reads these members at one offset. */
SLM_QB_ASSERT(SLM_Q4_1_M == SLM_Q5_1_M, "Q4_1 / Q5_1 min");
SLM_QB_ASSERT(SLM_Q4_K_DMIN == SLM_Q5_K_DMIN && SLM_Q4_K_SCALES == SLM_Q5_K_SCALES, "Q4_K / Q5_K heads");

#endif
