/* The repacked decode layout (matvec_x16.h): packing at model load and unpacking (for the packed GEMM of
 * prompt batches, which builds its own layout from GGUF rows). Portable code: it runs once per tensor. */
#include "matvec_x16.h"

#include <string.h>

#include "quant_blocks.h"

bool slm_x16_type(slm_dtype wtype) { return wtype == SLM_Q4_0 || wtype == SLM_Q8_0; }

typedef struct x16_shape {
    int block_bytes, code_dwords, qs_at;
    uint8_t flip; /* xored into every code byte (Q8_0: signed -> w + 128) */
} x16_shape;

static x16_shape shape_of(slm_dtype t) {
    if (t == SLM_Q8_0) return (x16_shape){SLM_Q8_0_BYTES, 8, SLM_Q8_0_QS, 0x80};
    return (x16_shape){SLM_Q4_0_BYTES, 4, SLM_Q4_0_QS, 0};
}

/* Copies one block's code dword between a row and its slot in a group, flipping the sign bits. */
static void copy_dword(uint8_t *dst, const uint8_t *src, uint8_t flip) {
    for (int i = 0; i < 4; i++) dst[i] = src[i] ^ flip;
}

void slm_x16_pack(slm_dtype wtype, const void *src, size_t row_bytes, int64_t n_rows, int64_t k, void *dst) {
    const x16_shape s = shape_of(wtype);
    const int64_t nb = k / SLM_QK;
    const size_t codes_bytes = (size_t)nb * s.code_dwords * 4 * SLM_X16_ROWS;
    const size_t group_bytes = (size_t)SLM_X16_ROWS * (size_t)nb * s.block_bytes;
    for (int64_t g = 0; g < n_rows / SLM_X16_ROWS; g++) {
        uint8_t *codes = (uint8_t *)dst + (size_t)g * group_bytes, *scales = codes + codes_bytes;
        for (int r = 0; r < SLM_X16_ROWS; r++) {
            const uint8_t *row = (const uint8_t *)src + (size_t)(g * SLM_X16_ROWS + r) * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * s.block_bytes;
                memcpy(scales + ((size_t)b * SLM_X16_ROWS + r) * 2, blk, 2);
                for (int j = 0; j < s.code_dwords; j++)
                    copy_dword(codes + (((size_t)b * s.code_dwords + j) * SLM_X16_ROWS + r) * 4, blk + s.qs_at + 4 * j,
                               s.flip);
            }
        }
    }
}

void slm_x16_unpack(slm_dtype wtype, const void *src, int64_t n_rows, int64_t k, void *dst, size_t row_bytes) {
    const x16_shape s = shape_of(wtype);
    const int64_t nb = k / SLM_QK;
    const size_t codes_bytes = (size_t)nb * s.code_dwords * 4 * SLM_X16_ROWS;
    const size_t group_bytes = (size_t)SLM_X16_ROWS * (size_t)nb * s.block_bytes;
    for (int64_t g = 0; g < n_rows / SLM_X16_ROWS; g++) {
        const uint8_t *codes = (const uint8_t *)src + (size_t)g * group_bytes, *scales = codes + codes_bytes;
        for (int r = 0; r < SLM_X16_ROWS; r++) {
            uint8_t *row = (uint8_t *)dst + (size_t)(g * SLM_X16_ROWS + r) * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = row + (size_t)b * s.block_bytes;
                memcpy(blk, scales + ((size_t)b * SLM_X16_ROWS + r) * 2, 2);
                for (int j = 0; j < s.code_dwords; j++)
                    copy_dword(blk + s.qs_at + 4 * j, codes + (((size_t)b * s.code_dwords + j) * SLM_X16_ROWS + r) * 4,
                               s.flip);
            }
        }
    }
}
