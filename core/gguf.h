/* GGUF v2/v3 reader over a read-only mmap. Every count, length, type, dimension and offset is validated
 * against the file size and against overflow before anything points into the mapping. */
#ifndef SLM_GGUF_H
#define SLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"
#include "types.h"

typedef enum slm_gguf_type {
    SLM_GGUF_UINT8 = 0,
    SLM_GGUF_INT8 = 1,
    SLM_GGUF_UINT16 = 2,
    SLM_GGUF_INT16 = 3,
    SLM_GGUF_UINT32 = 4,
    SLM_GGUF_INT32 = 5,
    SLM_GGUF_FLOAT32 = 6,
    SLM_GGUF_BOOL = 7,
    SLM_GGUF_STRING = 8,
    SLM_GGUF_ARRAY = 9,
    SLM_GGUF_UINT64 = 10,
    SLM_GGUF_INT64 = 11,
    SLM_GGUF_FLOAT64 = 12,
} slm_gguf_type;

/* A string inside the mapping: not NUL-terminated. */
typedef struct slm_gguf_str {
    const char *ptr;
    uint64_t len;
} slm_gguf_str;

typedef struct slm_gguf_kv {
    slm_gguf_str key;
    slm_gguf_type type;
    /* Scalars (type < ARRAY): the value's bytes in the file (little endian, possibly unaligned). */
    const uint8_t *data;
    /* Arrays: element type and count; data points at the first element. For arrays of strings and nested
     * arrays the elements are variable sized: use slm_gguf_arr_str / slm_gguf_arr_nested. */
    slm_gguf_type arr_type;
    uint64_t arr_len;
    /* Byte offset of each element for arrays of strings (NULL otherwise) so lookup is O(1). */
    const uint64_t *arr_offsets;
} slm_gguf_kv;

typedef struct slm_gguf_tensor {
    slm_gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];    /* ne[0] is the row length (innermost); unused dims are 1 */
    slm_dtype type;   /* validated: a known type (slm_dtype_known) */
    uint64_t offset;  /* from the start of the data section, aligned */
    uint64_t size;    /* bytes */
    const void *data; /* into the mapping */
} slm_gguf_tensor;

typedef struct slm_gguf {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    slm_gguf_kv *kv;
    slm_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
    const uint8_t *base;  /* the mapping (or caller's buffer) */
    size_t size;
    bool mapped; /* owns an mmap (else borrowed memory) */
    char path[256];
} slm_gguf;

/* Opens and validates a file. Tensors of types this build does not know fail with SLM_ERR_UNSUPPORTED
 * naming the tensor and the type id. */
slm_status slm_gguf_open(const char *path, slm_gguf **out, slm_error *err);
/* Same over caller-owned memory (fuzzing, tests); the memory must outlive the slm_gguf. */
slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out, slm_error *err);
void slm_gguf_close(slm_gguf *g);

const slm_gguf_kv *slm_gguf_find(const slm_gguf *g, const char *key);
const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *g, const char *name);
bool slm_gguf_str_eq(slm_gguf_str s, const char *cstr);

/* Typed getters. They fail (returning false, or SLM_ERR_FORMAT with a message naming the key) when the key
 * is missing or has another type; integer getters accept any integer type whose value fits. */
bool slm_gguf_get_u64(const slm_gguf *g, const char *key, uint64_t *out);
bool slm_gguf_get_i64(const slm_gguf *g, const char *key, int64_t *out);
bool slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out); /* any float or integer type */
bool slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out);
bool slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out);
/* Array element access with bounds checks (i < arr_len, element type matches). */
bool slm_gguf_arr_str(const slm_gguf_kv *kv, uint64_t i, slm_gguf_str *out);
bool slm_gguf_arr_i64(const slm_gguf_kv *kv, uint64_t i, int64_t *out); /* any integer element type */
bool slm_gguf_arr_f32(const slm_gguf_kv *kv, uint64_t i, float *out);   /* f32/f64 element type */

/* Additions (beyond the first interface) ------------------------------------------------------------- */

/* arr_offsets is also set for arrays of arrays (use slm_gguf_arr_nested, not the table, which then holds
 * 2 * arr_len entries), and is NULL for empty arrays. An slm_gguf must come from slm_gguf_open*: the lookups
 * use an index kept beside the public struct. */

/* "uint32", "string", "array", ...; "unknown" for ids outside the enum. */
const char *slm_gguf_type_name(uint32_t type);
/* Bytes of one value of a scalar metadata type (1, 2, 4 or 8); 0 for strings, arrays and unknown types. */
size_t slm_gguf_scalar_size(uint32_t type);

/* Scalar values of a kv itself (kv->type < ARRAY, or STRING). Integer accessors accept any integer type
 * whose value fits; f64 accepts float and integer types; bool only BOOL. */
bool slm_gguf_kv_u64(const slm_gguf_kv *kv, uint64_t *out);
bool slm_gguf_kv_i64(const slm_gguf_kv *kv, int64_t *out);
bool slm_gguf_kv_f64(const slm_gguf_kv *kv, double *out);
bool slm_gguf_kv_bool(const slm_gguf_kv *kv, bool *out);
bool slm_gguf_kv_str(const slm_gguf_kv *kv, slm_gguf_str *out);
bool slm_gguf_get_f64(const slm_gguf *g, const char *key, double *out); /* any float or integer type */

/* More element accessors, with the same bounds and type checks as the ones above. */
bool slm_gguf_arr_u64(const slm_gguf_kv *kv, uint64_t i, uint64_t *out); /* integer elements >= 0 */
bool slm_gguf_arr_f64(const slm_gguf_kv *kv, uint64_t i, double *out);   /* f32/f64 element type */
bool slm_gguf_arr_bool(const slm_gguf_kv *kv, uint64_t i, bool *out);
/* Element i of an array of arrays, described as an array kv (same key; type ARRAY; its own arr_type,
 * arr_len, data and, for strings or deeper nesting, arr_offsets). Arrays nest at most
 * SLM_GGUF_MAX_DEPTH deep; deeper files are rejected at open. */
#define SLM_GGUF_MAX_DEPTH 8
bool slm_gguf_arr_nested(const slm_gguf_kv *kv, uint64_t i, slm_gguf_kv *out);

#endif
