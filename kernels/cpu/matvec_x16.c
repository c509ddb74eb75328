/* The repacked decode layout (matvec_x16.h): packing at model load and unpacking (for the packed GEMM of
 * prompt batches, which builds its own layout from GGUF rows). Portable code: it runs once per tensor.
 *
 * Each type is a list of segments of its block: a segment is n units (dwords, or f16 halves) at a byte
 * offset of the block, stored for the 16 rows as [n][16] units, in the codes region or in the scales
 * region of its group (matvec_x16.h). */
#include "matvec_x16.h"

#include <string.h>

#include "quant_blocks.h"

typedef struct x16_segment {
    int at, n, unit; /* byte offset in the block, units, bytes per unit (4 or 2) */
    bool scales;     /* in the scales region (else the codes region) */
    uint8_t flip;    /* xored into every byte (Q8_0: signed codes -> w + 128) */
} x16_segment;

typedef struct x16_format {
    int block_elems, block_bytes, n_seg;
    x16_segment seg[4];
} x16_format;

static bool format_of(slm_dtype t, x16_format *f) {
    switch (t) {
    case SLM_Q4_0:
        *f = (x16_format){SLM_QK, SLM_Q4_0_BYTES, 2, {{SLM_Q4_0_QS, 4, 4, false, 0}, {SLM_Q4_0_D, 1, 2, true, 0}}};
        return true;
    case SLM_Q8_0:
        *f = (x16_format){SLM_QK, SLM_Q8_0_BYTES, 2, {{SLM_Q8_0_QS, 8, 4, false, 0x80}, {SLM_Q8_0_D, 1, 2, true, 0}}};
        return true;
    case SLM_Q4_K:
        /* d and dmin as one dword, then the 12 scale bytes as 3 */
        *f = (x16_format){SLM_QK_K,
                          SLM_Q4_K_BYTES,
                          3,
                          {{SLM_Q4_K_QS, 32, 4, false, 0}, {0, 1, 4, true, 0}, {SLM_Q4_K_SCALES, 3, 4, true, 0}}};
        return true;
    case SLM_Q5_K:
        /* Q4_K's, with the 8 qh dwords after the qs ones */
        *f = (x16_format){SLM_QK_K,
                          SLM_Q5_K_BYTES,
                          4,
                          {{SLM_Q5_K_QS, 32, 4, false, 0},
                           {SLM_Q5_K_QH, 8, 4, false, 0},
                           {SLM_Q5_K_D, 1, 4, true, 0},
                           {SLM_Q5_K_SCALES, 3, 4, true, 0}}};
        return true;
    case SLM_Q6_K:
        /* ql and qh as codes; the 16 int8 scales as 4 dwords, then d */
        *f = (x16_format){SLM_QK_K,
                          SLM_Q6_K_BYTES,
                          4,
                          {{SLM_Q6_K_QL, 32, 4, false, 0},
                           {SLM_Q6_K_QH, 16, 4, false, 0},
                           {SLM_Q6_K_SCALES, 4, 4, true, 0},
                           {SLM_Q6_K_D, 1, 2, true, 0}}};
        return true;
    default: return false;
    }
}

bool slm_x16_type(slm_dtype wtype) {
    x16_format f;
    return format_of(wtype, &f);
}

/* Bytes per block of the codes region (scales = false) or of the scales region, for all 16 rows. */
static size_t region_bytes(const x16_format *f, bool scales) {
    size_t n = 0;
    for (int i = 0; i < f->n_seg; i++)
        if (f->seg[i].scales == scales) n += (size_t)f->seg[i].n * f->seg[i].unit * SLM_X16_ROWS;
    return n;
}

size_t slm_x16_codes_bytes(slm_dtype wtype) {
    x16_format f;
    return format_of(wtype, &f) ? region_bytes(&f, false) : 0;
}

/* Fixed-size copies, so that the compiler makes each a single move: packing is a pass over the model. */
static inline void copy_unit(uint8_t *dst, const uint8_t *src, int unit, uint8_t flip) {
    if (unit == 4) {
        uint32_t v;
        memcpy(&v, src, 4);
        v ^= flip * 0x01010101u;
        memcpy(dst, &v, 4);
    } else {
        uint16_t v;
        memcpy(&v, src, 2);
        v ^= (uint16_t)(flip * 0x0101u);
        memcpy(dst, &v, 2);
    }
}

/* to_group: rows -> group, else group -> rows. The group is walked in storage order (rows innermost), so
 * its writes (or reads) are sequential and the 16 rows' side stays within a few cache lines. */
static void convert(slm_dtype t, uint8_t *group_base, uint8_t *rows, size_t row_bytes, int64_t n_rows, int64_t k,
                    bool to_group) {
    x16_format f;
    if (!format_of(t, &f)) return;
    const int64_t nb = k / f.block_elems;
    const size_t codes = region_bytes(&f, false), scales = region_bytes(&f, true);
    const size_t group_bytes = (size_t)SLM_X16_ROWS * (size_t)nb * f.block_bytes;
    /* each segment's offset within its region's per-block part */
    size_t seg_at[4], next[2] = {0, 0};
    for (int s = 0; s < f.n_seg; s++) {
        seg_at[s] = next[f.seg[s].scales];
        next[f.seg[s].scales] += (size_t)f.seg[s].n * f.seg[s].unit * SLM_X16_ROWS;
    }
    for (int64_t g = 0; g < n_rows / SLM_X16_ROWS; g++) {
        uint8_t *grp = group_base + (size_t)g * group_bytes;
        uint8_t *row0 = rows + (size_t)g * SLM_X16_ROWS * row_bytes;
        for (int64_t b = 0; b < nb; b++)
            for (int s = 0; s < f.n_seg; s++) {
                const x16_segment *sg = &f.seg[s];
                uint8_t *out =
                    grp + (sg->scales ? (size_t)nb * codes + (size_t)b * scales : (size_t)b * codes) + seg_at[s];
                const size_t in_block = (size_t)b * f.block_bytes + sg->at;
                for (int u = 0; u < sg->n; u++)
                    for (int r = 0; r < SLM_X16_ROWS; r++, out += sg->unit) {
                        uint8_t *in_row = row0 + (size_t)r * row_bytes + in_block + (size_t)u * sg->unit;
                        if (to_group) copy_unit(out, in_row, sg->unit, sg->flip);
                        else copy_unit(in_row, out, sg->unit, sg->flip);
                    }
            }
    }
}

void slm_x16_pack(slm_dtype wtype, const void *src, size_t row_bytes, int64_t n_rows, int64_t k, void *dst) {
    convert(wtype, dst, (uint8_t *)src, row_bytes, n_rows, k, true); /* src is only read */
}

void slm_x16_unpack(slm_dtype wtype, const void *src, int64_t n_rows, int64_t k, void *dst, size_t row_bytes) {
    convert(wtype, (uint8_t *)src, dst, row_bytes, n_rows, k, false); /* src is only read */
}
