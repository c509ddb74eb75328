/* gguf_dump: prints what core/gguf.c reads from a file, one JSON object per line, so that
 * tests/reference/test_gguf_python.py can compare it with the `gguf` package's reader and writer.
 *
 *   gguf_dump FILE
 *   {"version": 3, "n_kv": 5, "n_tensors": 2, "alignment": 32, "data_offset": 640}
 *   {"kv": "general.architecture", "type": "string", "value": "llama"}
 *   {"kv": "tokenizer.ggml.scores", "type": "array", "elem": "float32", "value": [0.0, -1.5]}
 *   {"tensor": "token_embd.weight", "type": "q8_0", "type_id": 8, "ne": [576, 49152], "offset": 0,
 *    "size": 1671168, "crc32": 123456789}
 *
 * Nested arrays print as nested lists; floats print exactly (%.9g / %.17g; NaN, Infinity as Python's json reads
 * them). Exit 1 with the reader's message on stderr when the file does not open. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gguf.h"

static void put_str(const char *p, uint64_t n) {
    putchar('"');
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c); /* UTF-8 passes through */
    }
    putchar('"');
}

static void put_double(double d, bool f32) {
    if (isnan(d)) printf("NaN");
    else if (isinf(d)) printf(d > 0 ? "Infinity" : "-Infinity");
    else printf(f32 ? "%.9g" : "%.17g", d);
}

static void put_array(const slm_gguf_kv *kv);

/* Element i of an array or, with i = UINT64_MAX, the scalar kv itself. */
static void put_value(const slm_gguf_kv *kv, slm_gguf_type t, uint64_t i) {
    bool scalar = i == UINT64_MAX;
    uint64_t u;
    int64_t s;
    double d;
    bool b;
    slm_gguf_str str;
    switch (t) {
    case SLM_GGUF_UINT8:
    case SLM_GGUF_UINT16:
    case SLM_GGUF_UINT32:
    case SLM_GGUF_UINT64:
        if (scalar ? slm_gguf_kv_u64(kv, &u) : slm_gguf_arr_u64(kv, i, &u)) printf("%llu", (unsigned long long)u);
        break;
    case SLM_GGUF_INT8:
    case SLM_GGUF_INT16:
    case SLM_GGUF_INT32:
    case SLM_GGUF_INT64:
        if (scalar ? slm_gguf_kv_i64(kv, &s) : slm_gguf_arr_i64(kv, i, &s)) printf("%lld", (long long)s);
        break;
    case SLM_GGUF_FLOAT32:
    case SLM_GGUF_FLOAT64:
        if (scalar ? slm_gguf_kv_f64(kv, &d) : slm_gguf_arr_f64(kv, i, &d)) put_double(d, t == SLM_GGUF_FLOAT32);
        break;
    case SLM_GGUF_BOOL:
        if (scalar ? slm_gguf_kv_bool(kv, &b) : slm_gguf_arr_bool(kv, i, &b)) printf(b ? "true" : "false");
        break;
    case SLM_GGUF_STRING:
        if (scalar ? slm_gguf_kv_str(kv, &str) : slm_gguf_arr_str(kv, i, &str)) put_str(str.ptr, str.len);
        break;
    case SLM_GGUF_ARRAY: {
        slm_gguf_kv sub;
        if (scalar) put_array(kv);
        else if (slm_gguf_arr_nested(kv, i, &sub)) put_array(&sub);
        break;
    }
    }
}

static void put_array(const slm_gguf_kv *kv) {
    putchar('[');
    for (uint64_t i = 0; i < kv->arr_len; i++) {
        if (i) printf(", ");
        put_value(kv, kv->arr_type, i);
    }
    putchar(']');
}

/* CRC-32 (IEEE, as zlib.crc32) so Python can hash whole tensors at C speed. */
static uint32_t crc32_bytes(const uint8_t *p, uint64_t n) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t c = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.gguf\n", argv[0]);
        return 2;
    }
    slm_gguf *g;
    slm_error err;
    slm_status s = slm_gguf_open(argv[1], &g, &err);
    if (s) {
        fprintf(stderr, "gguf_dump: %s: %s\n", slm_status_name(s), err.msg);
        return 1;
    }
    printf("{\"version\": %u, \"n_kv\": %llu, \"n_tensors\": %llu, \"alignment\": %llu, \"data_offset\": %llu}\n",
           g->version, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, (unsigned long long)g->alignment,
           (unsigned long long)g->data_offset);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const slm_gguf_kv *kv = &g->kv[i];
        printf("{\"kv\": ");
        put_str(kv->key.ptr, kv->key.len);
        printf(", \"type\": \"%s\"", slm_gguf_type_name(kv->type));
        if (kv->type == SLM_GGUF_ARRAY) printf(", \"elem\": \"%s\"", slm_gguf_type_name(kv->arr_type));
        printf(", \"value\": ");
        put_value(kv, kv->type, UINT64_MAX);
        printf("}\n");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        printf("{\"tensor\": ");
        put_str(t->name.ptr, t->name.len);
        printf(", \"type\": \"%s\", \"type_id\": %u, \"ne\": [", slm_dtype_name(t->type), (unsigned)t->type);
        for (uint32_t d = 0; d < t->n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t->ne[d]);
        printf("], \"offset\": %llu, \"size\": %llu, \"crc32\": %u}\n", (unsigned long long)t->offset,
               (unsigned long long)t->size, (unsigned)crc32_bytes(t->data, t->size));
    }
    slm_gguf_close(g);
    return ferror(stdout) ? 1 : 0;
}
