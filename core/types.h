/* The tensor type table. Type ids are the GGUF ggml_type ids stored in files. */
#ifndef SLM_TYPES_H
#define SLM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum slm_dtype {
    SLM_F32 = 0,
    SLM_F16 = 1,
    SLM_Q4_0 = 2,
    SLM_Q4_1 = 3,
    SLM_Q5_0 = 6,
    SLM_Q5_1 = 7,
    SLM_Q8_0 = 8,
    SLM_Q4_K = 12,
    SLM_Q5_K = 13,
    SLM_Q6_K = 14,
    SLM_I32 = 26, /* token ids and positions (not a weight type) */
    SLM_BF16 = 30,
    SLM_DTYPE_COUNT = 31,
} slm_dtype;

typedef struct slm_dtype_info {
    const char *name; /* "q4_k" */
    int block_elems;  /* elements per block (1 for plain types) */
    int block_bytes;  /* bytes per block */
} slm_dtype_info;

/* NULL for ids this build does not know (including valid GGUF ids it cannot run, e.g. Q2_K). */
const slm_dtype_info *slm_dtype_get(uint32_t type_id);
bool slm_dtype_known(uint32_t type_id);
const char *slm_dtype_name(uint32_t type_id); /* "type 10" style text for unknown ids never NULL */
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size or the type is unknown. */
size_t slm_dtype_row_bytes(slm_dtype t, int64_t n);
bool slm_dtype_is_quant(slm_dtype t);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float slm_f16_to_f32(uint16_t h);
uint16_t slm_f32_to_f16(float f);
float slm_bf16_to_f32(uint16_t h);

#endif
