/* Activation columns of the packed GEMMs (gemm_packed.h), interleaved for the kernels' register blocking,
 * and how many go in one chunk. Portable C: both the AVX-512 and the AVX2 GEMM call it with their own
 * column count. */
#include <string.h>

#include "act_quant.h"
#include "gemm_packed.h"

void slm_cpu_gemm_interleave_cols(const void *xq, size_t act_stride, int64_t n_cols, int64_t k, int offset, int halves,
                                  int cols, int copies, void *dst) {
    const int64_t nb = k / 32;
    const size_t rec_bytes = SLM_GEMM_ACT_REC(cols, copies), off_d = SLM_GEMM_ACT_D(cols),
                 off_ioff = SLM_GEMM_ACT_IOFF(cols), off_s = SLM_GEMM_ACT_S(cols, copies),
                 off_ioffh = SLM_GEMM_ACT_IOFFH(cols, copies);
    for (int64_t c = 0; c < n_cols; c++) {
        const uint8_t *col = (const uint8_t *)xq + (size_t)c * act_stride;
        const float *d = slm_act32_d(col), *s = slm_act32_s(col, k);
        const int8_t *q = slm_act32_q(col, k);
        uint8_t *g = (uint8_t *)dst + (size_t)(c / cols) * (size_t)nb * rec_bytes;
        const size_t slot = (size_t)(c % cols);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *rec = g + (size_t)b * rec_bytes;
            int32_t lo = 0, hi = 0;
            for (int i = 0; i < 16; i++) lo += q[32 * b + i];
            for (int i = 16; i < 32; i++) hi += q[32 * b + i];
            int32_t ioff = -offset * (halves ? lo : lo + hi), ioffh = halves ? -offset * hi : 0;
            memcpy(rec + 32 * slot, q + 32 * b, 32);
            memcpy(rec + off_d + 4 * slot, d + b, 4);
            memcpy(rec + off_s + 4 * slot, s + b, 4);
            for (int cp = 0; cp < copies; cp++) {
                memcpy(rec + off_ioff + 4 * ((size_t)cp * (size_t)cols + slot), &ioff, 4);
                memcpy(rec + off_ioffh + 4 * ((size_t)cp * (size_t)cols + slot), &ioffh, 4);
            }
        }
    }
}

int64_t slm_cpu_gemm_chunk_cols(int64_t k, int cols, size_t rec_bytes, size_t budget) {
    size_t per_col = (size_t)(k / 32) * (rec_bytes / (size_t)cols);
    int64_t c = per_col > 0 ? (int64_t)(budget / per_col) / cols * cols : cols;
    return c < cols ? cols : c;
}
