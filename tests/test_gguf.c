/* GGUF reader and writer: round trips of every metadata type (v2/v3, alignment 8/32/64, from memory and from a
 * file), the real SmolLM2 model when $SLM_TEST_MODELS has it, and a corpus of hostile files built here
 * (truncations at every byte, bit flips, huge counts, bad alignment, bad tensor directories) that must all
 * fail cleanly with a message. Buffers handed to the reader are exactly sized so ASan sees any overread. */
#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#include "error.h"
#include "gguf.h"
#include "gguf_write.h"
#include "test_util.h"

/* ---- a byte builder for hand-made (hostile) files ---- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_le(bytes *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    b_put(b, t, (size_t)n);
}
static void b_u32(bytes *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(bytes *b, uint64_t v) { b_le(b, v, 8); }
static void b_str(bytes *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_pad(bytes *b, size_t a) {
    while (b->n % a) b_le(b, 0, 1);
}

/* Opens a copy of exactly n bytes (so reads past the end are caught by ASan). */
static slm_status open_exact(const uint8_t *p, size_t n, slm_gguf **g, slm_error *err) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, p, n);
    err->msg[0] = 0;
    slm_status s = slm_gguf_open_memory(n ? copy : NULL, n, g, err);
    if (s != SLM_OK) free(copy); /* on success g->base is the copy: close_exact frees it */
    return s;
}
static void close_exact(slm_gguf *g) {
    if (!g) return;
    void *copy = (void *)g->base;
    slm_gguf_close(g);
    free(copy);
}

/* Reads every kv, array element and tensor byte range through the public accessors. */
static uint64_t touch_kv(const slm_gguf_kv *kv, int depth) {
    uint64_t acc = 0, u;
    int64_t i64;
    double f;
    bool bo;
    float f32;
    slm_gguf_str s;
    if (slm_gguf_kv_u64(kv, &u)) acc += u;
    if (slm_gguf_kv_i64(kv, &i64)) acc += (uint64_t)i64;
    if (slm_gguf_kv_f64(kv, &f)) acc += f == f;
    if (slm_gguf_kv_bool(kv, &bo)) acc += bo;
    if (slm_gguf_kv_str(kv, &s) && s.len) acc += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    if (kv->type != SLM_GGUF_ARRAY) return acc;
    uint64_t n = kv->arr_len < 256 ? kv->arr_len : 256;
    for (uint64_t e = 0; e <= n; e++) { /* one past the end must be refused */
        uint64_t k = e == n ? kv->arr_len : e;
        if (k >= kv->arr_len && e < n) continue;
        if (slm_gguf_arr_u64(kv, k, &u)) acc += u;
        if (slm_gguf_arr_i64(kv, k, &i64)) acc += (uint64_t)i64;
        if (slm_gguf_arr_f64(kv, k, &f)) acc += f == f;
        if (slm_gguf_arr_f32(kv, k, &f32)) acc += f32 == f32;
        if (slm_gguf_arr_bool(kv, k, &bo)) acc += bo;
        if (slm_gguf_arr_str(kv, k, &s) && s.len) acc += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
        slm_gguf_kv sub;
        if (slm_gguf_arr_nested(kv, k, &sub) && depth < 16) acc += touch_kv(&sub, depth + 1);
    }
    if (kv->arr_len) { /* the last element too */
        if (slm_gguf_arr_str(kv, kv->arr_len - 1, &s) && s.len) acc += (uint8_t)s.ptr[s.len - 1];
        if (slm_gguf_arr_u64(kv, kv->arr_len - 1, &u)) acc += u;
    }
    return acc;
}

static uint64_t touch_all(const slm_gguf *g) {
    uint64_t acc = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const slm_gguf_kv *kv = &g->kv[i];
        acc += touch_kv(kv, 0);
        char key[128];
        if (kv->key.len < sizeof key) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = 0;
            if (strlen(key) == kv->key.len) CHECK(slm_gguf_find(g, key) == kv, "find(%s)", key);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        const uint8_t *d = t->data;
        acc += d[0] + d[t->size - 1];
        char name[128];
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        if (strlen(name) == t->name.len) CHECK(slm_gguf_find_tensor(g, name) == t, "find_tensor(%s)", name);
    }
    return acc;
}

/* ---- the valid file: every metadata type and a few tensors ---- */

static float f32_data[7] = {1.5f, -2.0f, 0.25f, 3e-5f, -7.0f, 1e10f, 0.0f};
static uint16_t f16_data[15];
static uint8_t q8_data[3 * 2 * 34]; /* q8_0 [64, 3] */
static uint8_t q4k_data[2 * 144];   /* q4_k [256, 2] */
static int32_t i32_data[8];         /* i32 [4, 1, 1, 2] */

static void fill_tensor_data(void) {
    for (int i = 0; i < 15; i++) f16_data[i] = slm_f32_to_f16((float)i * 0.5f - 3.0f);
    for (size_t i = 0; i < sizeof q8_data; i++) q8_data[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof q4k_data; i++) q4k_data[i] = (uint8_t)(i * 13 + 5);
    for (int i = 0; i < 8; i++) i32_data[i] = -1000 * i + 3;
}

/* Nested arrays encoded by hand: [[1, 2, 3], [], [-4]] of int32 and [["a", "bc"], ["def"]] of strings,
 * and a 3-deep [[[7], [8, 9]]] of uint16. */
static void nested_i32(bytes *b) {
    b_u32(b, SLM_GGUF_ARRAY);
    b_u64(b, 3);
    b_u32(b, SLM_GGUF_INT32);
    b_u64(b, 3);
    b_u32(b, 1);
    b_u32(b, 2);
    b_u32(b, 3);
    b_u32(b, SLM_GGUF_INT32);
    b_u64(b, 0);
    b_u32(b, SLM_GGUF_INT32);
    b_u64(b, 1);
    b_u32(b, (uint32_t)-4);
}
static void nested_str(bytes *b) {
    b_u32(b, SLM_GGUF_ARRAY);
    b_u64(b, 2);
    b_u32(b, SLM_GGUF_STRING);
    b_u64(b, 2);
    b_str(b, "a");
    b_str(b, "bc");
    b_u32(b, SLM_GGUF_STRING);
    b_u64(b, 1);
    b_str(b, "def");
}
static void nested_deep(bytes *b) {
    b_u32(b, SLM_GGUF_ARRAY);
    b_u64(b, 1);
    b_u32(b, SLM_GGUF_ARRAY);
    b_u64(b, 2);
    b_u32(b, SLM_GGUF_UINT16);
    b_u64(b, 1);
    b_le(b, 7, 2);
    b_u32(b, SLM_GGUF_UINT16);
    b_u64(b, 2);
    b_le(b, 8, 2);
    b_le(b, 9, 2);
}

static slm_gguf_writer *make_writer(uint32_t version, uint32_t alignment) {
    slm_gguf_writer *w;
    slm_error err;
    if (slm_gguf_writer_create(&w, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    slm_gguf_writer_set_version(w, version);
    slm_gguf_writer_add_str(w, "general.architecture", "llama");
    if (alignment) slm_gguf_writer_add_u32(w, "general.alignment", alignment);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -((int64_t)1 << 40);
    double f64 = 3.141592653589793;
    slm_gguf_writer_add_scalar(w, "t.u8", SLM_GGUF_UINT8, &u8);
    slm_gguf_writer_add_scalar(w, "t.i8", SLM_GGUF_INT8, &i8);
    slm_gguf_writer_add_scalar(w, "t.u16", SLM_GGUF_UINT16, &u16);
    slm_gguf_writer_add_scalar(w, "t.i16", SLM_GGUF_INT16, &i16);
    slm_gguf_writer_add_u32(w, "t.u32", 4000000000u);
    slm_gguf_writer_add_i32(w, "t.i32", -123456);
    slm_gguf_writer_add_f32(w, "t.f32", 0.1f);
    slm_gguf_writer_add_bool(w, "t.bool_t", true);
    slm_gguf_writer_add_bool(w, "t.bool_f", false);
    slm_gguf_writer_add_str(w, "t.str", "h\xc3\xa9llo world");
    slm_gguf_writer_add_str(w, "t.empty", "");
    slm_gguf_writer_add_u64(w, "t.u64", 0xfedcba9876543210ull);
    slm_gguf_writer_add_scalar(w, "t.i64", SLM_GGUF_INT64, &i64);
    slm_gguf_writer_add_scalar(w, "t.f64", SLM_GGUF_FLOAT64, &f64);
    const char *strs[] = {"<s>", "", "\xe2\x96\x81the", "</s>"};
    slm_gguf_writer_add_arr_str(w, "t.arr_str", strs, 4);
    int32_t ai[] = {5, -6, 7};
    slm_gguf_writer_add_arr_i32(w, "t.arr_i32", ai, 3);
    float af[] = {0.5f, -1.25f};
    slm_gguf_writer_add_arr_f32(w, "t.arr_f32", af, 2);
    uint8_t au8[] = {0, 255};
    slm_gguf_writer_add_arr(w, "t.arr_u8", SLM_GGUF_UINT8, au8, 2);
    uint64_t au64[] = {1, 0xffffffffffffffffull};
    slm_gguf_writer_add_arr(w, "t.arr_u64", SLM_GGUF_UINT64, au64, 2);
    double af64[] = {-2.5, 1e300};
    slm_gguf_writer_add_arr(w, "t.arr_f64", SLM_GGUF_FLOAT64, af64, 2);
    bool ab[] = {true, false, true};
    slm_gguf_writer_add_arr(w, "t.arr_bool", SLM_GGUF_BOOL, ab, 3);
    int16_t ai16[] = {-2, 3};
    slm_gguf_writer_add_arr(w, "t.arr_i16", SLM_GGUF_INT16, ai16, 2);
    slm_gguf_writer_add_arr(w, "t.arr_empty", SLM_GGUF_INT32, NULL, 0);
    slm_gguf_writer_add_arr_str(w, "t.arr_str_empty", NULL, 0); /* found by fuzzing: no table for 0 strings */
    bytes nb = {0};
    nested_i32(&nb);
    slm_gguf_writer_add_raw(w, "t.nested_i32", SLM_GGUF_ARRAY, nb.p, nb.n);
    nb.n = 0;
    nested_str(&nb);
    slm_gguf_writer_add_raw(w, "t.nested_str", SLM_GGUF_ARRAY, nb.p, nb.n);
    nb.n = 0;
    nested_deep(&nb);
    slm_gguf_writer_add_raw(w, "t.nested_deep", SLM_GGUF_ARRAY, nb.p, nb.n);
    free(nb.p);

    slm_gguf_writer_add_tensor(w, "f32", SLM_F32, 1, (int64_t[]){7}, f32_data, 0);
    slm_gguf_writer_add_tensor(w, "f16", SLM_F16, 2, (int64_t[]){3, 5}, f16_data, 0);
    slm_gguf_writer_add_tensor(w, "blk.0.q8", SLM_Q8_0, 2, (int64_t[]){64, 3}, q8_data, 0);
    slm_gguf_writer_add_tensor(w, "blk.0.q4k", SLM_Q4_K, 2, (int64_t[]){256, 2}, q4k_data, 0);
    slm_gguf_writer_add_tensor(w, "i32.4d", SLM_I32, 4, (int64_t[]){4, 1, 1, 2}, i32_data, 0);
    return w;
}

static void check_valid(const slm_gguf *g, uint32_t version, uint64_t alignment, bool has_alignment_key) {
    CHECK(g->version == version, "version %u", g->version);
    CHECK(g->alignment == alignment, "alignment %llu", (unsigned long long)g->alignment);
    CHECK(g->data_offset % alignment == 0, "data_offset %llu", (unsigned long long)g->data_offset);
    CHECK(g->n_kv == 28u + has_alignment_key, "n_kv %llu", (unsigned long long)g->n_kv);
    CHECK(g->n_tensors == 5, "n_tensors %llu", (unsigned long long)g->n_tensors);

    uint64_t u;
    int64_t i;
    float f;
    double d;
    bool b;
    slm_gguf_str s;
    CHECK(slm_gguf_get_str(g, "general.architecture", &s) && slm_gguf_str_eq(s, "llama"), "arch");
    CHECK(slm_gguf_get_u64(g, "t.u8", &u) && u == 200, "u8 %llu", (unsigned long long)u);
    CHECK(slm_gguf_get_i64(g, "t.i8", &i) && i == -100, "i8 %lld", (long long)i);
    CHECK(!slm_gguf_get_u64(g, "t.i8", &u), "negative i8 as u64 must fail");
    CHECK(slm_gguf_get_u64(g, "t.u16", &u) && u == 60000, "u16");
    CHECK(slm_gguf_get_i64(g, "t.i16", &i) && i == -30000, "i16");
    CHECK(slm_gguf_get_u64(g, "t.u32", &u) && u == 4000000000u, "u32");
    CHECK(slm_gguf_get_i64(g, "t.u32", &i) && i == 4000000000ll, "u32 as i64");
    CHECK(slm_gguf_get_i64(g, "t.i32", &i) && i == -123456, "i32");
    CHECK(slm_gguf_get_f32(g, "t.f32", &f) && f == 0.1f, "f32 %g", f);
    CHECK(slm_gguf_get_f32(g, "t.i32", &f) && f == -123456.0f, "int as f32");
    CHECK(!slm_gguf_get_u64(g, "t.f32", &u), "float as int must fail");
    CHECK(slm_gguf_get_bool(g, "t.bool_t", &b) && b, "bool true");
    CHECK(slm_gguf_get_bool(g, "t.bool_f", &b) && !b, "bool false");
    CHECK(!slm_gguf_get_bool(g, "t.u8", &b), "u8 as bool must fail");
    CHECK(slm_gguf_get_str(g, "t.str", &s) && slm_gguf_str_eq(s, "h\xc3\xa9llo world"), "str");
    CHECK(slm_gguf_get_str(g, "t.empty", &s) && s.len == 0, "empty str");
    CHECK(!slm_gguf_get_str(g, "t.u32", &s), "u32 as str must fail");
    CHECK(!slm_gguf_get_u64(g, "t.str", &u), "str as int must fail");
    CHECK(slm_gguf_get_u64(g, "t.u64", &u) && u == 0xfedcba9876543210ull, "u64");
    CHECK(!slm_gguf_get_i64(g, "t.u64", &i), "u64 > INT64_MAX as i64 must fail");
    CHECK(slm_gguf_get_i64(g, "t.i64", &i) && i == -((int64_t)1 << 40), "i64");
    CHECK(slm_gguf_get_f64(g, "t.f64", &d) && d == 3.141592653589793, "f64");
    CHECK(!slm_gguf_get_u64(g, "no.such.key", &u) && !slm_gguf_find(g, "no.such.key"), "missing key");
    CHECK(!slm_gguf_find(g, "t.u"), "prefix of a key is not a key");

    const slm_gguf_kv *kv = slm_gguf_find(g, "t.arr_str");
    CHECK(kv && kv->type == SLM_GGUF_ARRAY && kv->arr_type == SLM_GGUF_STRING && kv->arr_len == 4, "arr_str");
    if (kv) {
        CHECK(kv->arr_offsets != NULL, "arr_offsets of strings");
        const char *want[] = {"<s>", "", "\xe2\x96\x81the", "</s>"};
        for (int k = 0; k < 4; k++) CHECK(slm_gguf_arr_str(kv, k, &s) && slm_gguf_str_eq(s, want[k]), "arr_str[%d]", k);
        CHECK(!slm_gguf_arr_str(kv, 4, &s), "arr_str out of range");
        CHECK(!slm_gguf_arr_i64(kv, 0, &i), "string element as int");
    }
    kv = slm_gguf_find(g, "t.arr_i32");
    CHECK(kv && kv->arr_type == SLM_GGUF_INT32 && kv->arr_len == 3 && !kv->arr_offsets, "arr_i32");
    CHECK(slm_gguf_arr_i64(kv, 0, &i) && i == 5 && slm_gguf_arr_i64(kv, 1, &i) && i == -6 &&
              slm_gguf_arr_i64(kv, 2, &i) && i == 7 && !slm_gguf_arr_i64(kv, 3, &i),
          "arr_i32 values");
    CHECK(!slm_gguf_arr_u64(kv, 1, &u), "negative element as u64");
    CHECK(!slm_gguf_arr_f32(kv, 0, &f), "int element as f32");
    kv = slm_gguf_find(g, "t.arr_f32");
    CHECK(slm_gguf_arr_f32(kv, 0, &f) && f == 0.5f && slm_gguf_arr_f32(kv, 1, &f) && f == -1.25f &&
              !slm_gguf_arr_f32(kv, 2, &f),
          "arr_f32");
    kv = slm_gguf_find(g, "t.arr_u8");
    CHECK(slm_gguf_arr_i64(kv, 1, &i) && i == 255, "arr_u8");
    kv = slm_gguf_find(g, "t.arr_u64");
    CHECK(slm_gguf_arr_u64(kv, 1, &u) && u == 0xffffffffffffffffull && !slm_gguf_arr_i64(kv, 1, &i), "arr_u64");
    kv = slm_gguf_find(g, "t.arr_f64");
    CHECK(slm_gguf_arr_f64(kv, 0, &d) && d == -2.5 && slm_gguf_arr_f64(kv, 1, &d) && d == 1e300, "arr_f64");
    kv = slm_gguf_find(g, "t.arr_bool");
    CHECK(slm_gguf_arr_bool(kv, 0, &b) && b && slm_gguf_arr_bool(kv, 1, &b) && !b && slm_gguf_arr_bool(kv, 2, &b) && b,
          "arr_bool");
    kv = slm_gguf_find(g, "t.arr_i16");
    CHECK(slm_gguf_arr_i64(kv, 0, &i) && i == -2, "arr_i16");
    kv = slm_gguf_find(g, "t.arr_empty");
    CHECK(kv && kv->arr_len == 0 && !slm_gguf_arr_i64(kv, 0, &i), "empty array");
    kv = slm_gguf_find(g, "t.arr_str_empty");
    CHECK(kv && kv->arr_type == SLM_GGUF_STRING && kv->arr_len == 0 && !slm_gguf_arr_str(kv, 0, &s), "empty strings");

    kv = slm_gguf_find(g, "t.nested_i32");
    CHECK(kv && kv->arr_type == SLM_GGUF_ARRAY && kv->arr_len == 3 && kv->arr_offsets, "nested_i32");
    slm_gguf_kv sub, sub2;
    if (kv) {
        CHECK(slm_gguf_arr_nested(kv, 0, &sub) && sub.arr_type == SLM_GGUF_INT32 && sub.arr_len == 3, "[0]");
        CHECK(slm_gguf_arr_i64(&sub, 2, &i) && i == 3, "[0][2]");
        CHECK(slm_gguf_arr_nested(kv, 1, &sub) && sub.arr_len == 0, "[1]");
        CHECK(slm_gguf_arr_nested(kv, 2, &sub) && slm_gguf_arr_i64(&sub, 0, &i) && i == -4, "[2][0]");
        CHECK(!slm_gguf_arr_nested(kv, 3, &sub), "nested out of range");
        CHECK(!slm_gguf_arr_i64(kv, 0, &i), "nested element as int");
    }
    kv = slm_gguf_find(g, "t.nested_str");
    CHECK(kv && kv->arr_len == 2, "nested_str");
    if (kv) {
        CHECK(slm_gguf_arr_nested(kv, 0, &sub) && sub.arr_type == SLM_GGUF_STRING && sub.arr_len == 2, "[0]");
        CHECK(slm_gguf_arr_str(&sub, 1, &s) && slm_gguf_str_eq(s, "bc"), "[0][1]");
        CHECK(slm_gguf_arr_nested(kv, 1, &sub) && slm_gguf_arr_str(&sub, 0, &s) && slm_gguf_str_eq(s, "def"), "[1][0]");
    }
    kv = slm_gguf_find(g, "t.nested_deep");
    CHECK(kv && kv->arr_len == 1, "nested_deep");
    if (kv) {
        CHECK(slm_gguf_arr_nested(kv, 0, &sub) && sub.arr_type == SLM_GGUF_ARRAY && sub.arr_len == 2, "[0]");
        CHECK(slm_gguf_arr_nested(&sub, 1, &sub2) && sub2.arr_type == SLM_GGUF_UINT16 && sub2.arr_len == 2, "[0][1]");
        CHECK(slm_gguf_arr_u64(&sub2, 1, &u) && u == 9, "[0][1][1]");
        CHECK(slm_gguf_arr_nested(&sub, 0, &sub2) && slm_gguf_arr_u64(&sub2, 0, &u) && u == 7, "[0][0][0]");
    }

    struct {
        const char *name;
        slm_dtype type;
        uint32_t nd;
        int64_t ne[4];
        const void *data;
        size_t size;
    } want[] = {
        {"f32", SLM_F32, 1, {7, 1, 1, 1}, f32_data, sizeof f32_data},
        {"f16", SLM_F16, 2, {3, 5, 1, 1}, f16_data, sizeof f16_data},
        {"blk.0.q8", SLM_Q8_0, 2, {64, 3, 1, 1}, q8_data, 3 * 2 * 34},
        {"blk.0.q4k", SLM_Q4_K, 2, {256, 2, 1, 1}, q4k_data, sizeof q4k_data},
        {"i32.4d", SLM_I32, 4, {4, 1, 1, 2}, i32_data, sizeof i32_data},
    };
    for (int k = 0; k < 5; k++) {
        const slm_gguf_tensor *t = slm_gguf_find_tensor(g, want[k].name);
        CHECK(t == &g->tensors[k], "tensor %s", want[k].name);
        if (!t) continue;
        CHECK(t->type == want[k].type && t->n_dims == want[k].nd, "%s type/n_dims", want[k].name);
        CHECK(memcmp(t->ne, want[k].ne, sizeof t->ne) == 0, "%s shape", want[k].name);
        CHECK(t->size == want[k].size, "%s size %llu", want[k].name, (unsigned long long)t->size);
        CHECK(t->offset % alignment == 0, "%s offset %llu", want[k].name, (unsigned long long)t->offset);
        CHECK(t->data == g->base + g->data_offset + t->offset, "%s data pointer", want[k].name);
        CHECK(memcmp(t->data, want[k].data, want[k].size) == 0, "%s data", want[k].name);
    }
    CHECK(!slm_gguf_find_tensor(g, "f3"), "missing tensor");
    touch_all(g);
}

static void test_round_trip(void) {
    fill_tensor_data();
    const uint32_t versions[] = {2, 3};
    const uint32_t aligns[] = {0, 64, 32, 8};
    for (int v = 0; v < 2; v++) {
        for (int a = 0; a < 4; a++) {
            slm_gguf_writer *w = make_writer(versions[v], aligns[a]);
            slm_error err = {{0}};
            void *buf;
            size_t n;
            slm_status s = slm_gguf_writer_write_memory(w, &buf, &n, &err);
            CHECK(s == SLM_OK, "write_memory: %s", err.msg);
            if (s) {
                slm_gguf_writer_free(w);
                continue;
            }
            uint64_t al = aligns[a] ? aligns[a] : 32;
            CHECK(n % al == 0, "file size %zu not a multiple of %llu", n, (unsigned long long)al);
            slm_gguf *g = NULL;
            s = open_exact(buf, n, &g, &err);
            CHECK(s == SLM_OK, "v%u align %u: %s", versions[v], aligns[a], err.msg);
            if (!s) {
                check_valid(g, versions[v], al, aligns[a] != 0);
                close_exact(g);
            }

            /* The same through a file and the mmap path; write_file must give identical bytes. */
            char path[] = "/tmp/slm_test_gguf_XXXXXX";
            int fd = mkstemp(path);
            CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
            if (fd >= 0) {
                FILE *f = fdopen(fd, "wb");
                CHECK(slm_gguf_writer_write_file(w, f, &err) == SLM_OK, "write_file: %s", err.msg);
                fclose(f);
                s = slm_gguf_open(path, &g, &err);
                CHECK(s == SLM_OK, "open %s: %s", path, err.msg);
                if (!s) {
                    CHECK(g->mapped && g->size == n && memcmp(g->base, buf, n) == 0, "file bytes == memory bytes");
                    CHECK(strcmp(g->path, path) == 0, "path kept");
                    check_valid(g, versions[v], al, aligns[a] != 0);
                    slm_gguf_close(g);
                }
                unlink(path);
            }
            free(buf);
            slm_gguf_writer_free(w);
        }
    }
}

static void test_io_errors(void) {
    slm_gguf *g = (slm_gguf *)1;
    slm_error err = {{0}};
    slm_status s = slm_gguf_open("/nonexistent/dir/model.gguf", &g, &err);
    CHECK(s == SLM_ERR_IO && g == NULL, "missing file: %d", s);
    CHECK(strstr(err.msg, "/nonexistent/dir/model.gguf") && strstr(err.msg, "No such file"), "msg: %s", err.msg);
    s = slm_gguf_open("/tmp", &g, &err);
    CHECK(s == SLM_ERR_IO && strstr(err.msg, "/tmp"), "directory: %d %s", s, err.msg);
    char path[] = "/tmp/slm_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) {
        close(fd);
        s = slm_gguf_open(path, &g, &err); /* empty file */
        CHECK(s == SLM_ERR_FORMAT && strstr(err.msg, "empty"), "empty file: %d %s", s, err.msg);
        unlink(path);
    }
}

/* ---- hostile files ---- */

/* Expects open to fail with status `want` (0: any failure) and a message containing `needle` (if any). */
static void expect_fail(const bytes *b, slm_status want, const char *needle, const char *what) {
    slm_gguf *g = NULL;
    slm_error err;
    slm_status s = open_exact(b->p, b->n, &g, &err);
    CHECK(s != SLM_OK && g == NULL, "%s: should fail", what);
    if (s == SLM_OK) {
        close_exact(g);
        return;
    }
    CHECK(want == SLM_OK || s == want, "%s: status %s, want %s (%s)", what, slm_status_name(s), slm_status_name(want),
          err.msg);
    CHECK(err.msg[0] != 0, "%s: empty message", what);
    CHECK(!needle || strstr(err.msg, needle), "%s: message \"%s\" lacks \"%s\"", what, err.msg, needle);
}

typedef struct tinfo {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tinfo;

/* A file with no kvs (alignment 32) but the given tensor directory and `data` bytes of tensor data. */
static void tensor_file(bytes *b, const tinfo *t, int n, size_t data) {
    b->n = 0;
    b_header(b, 3, (uint64_t)n, 0);
    for (int i = 0; i < n; i++) {
        b_str(b, t[i].name);
        b_u32(b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims && d < 5; d++) b_u64(b, t[i].ne[d]);
        b_u32(b, t[i].type);
        b_u64(b, t[i].offset);
    }
    b_pad(b, 32);
    for (size_t i = 0; i < data; i++) b_le(b, i & 0xff, 1);
}

static void test_tensor_directory(void) {
    bytes b = {0};
    slm_gguf *g;
    slm_error err;
    /* The baseline is valid: two f32 tensors of 8 elements, 32 bytes each. */
    tinfo ok[2] = {{"a", 1, {8}, SLM_F32, 0}, {"b", 1, {8}, SLM_F32, 32}};
    tensor_file(&b, ok, 2, 64);
    slm_status s = open_exact(b.p, b.n, &g, &err);
    CHECK(s == SLM_OK, "baseline tensor file: %s", err.msg);
    if (!s) {
        CHECK(g->n_tensors == 2 && g->tensors[1].size == 32 && g->data_offset % 32 == 0, "baseline values");
        close_exact(g);
    }
    tinfo t[2];
#define CASE(mod, data, want, needle, what)                                                                            \
    memcpy(t, ok, sizeof ok);                                                                                          \
    mod;                                                                                                               \
    tensor_file(&b, t, 2, data);                                                                                       \
    expect_fail(&b, want, needle, what)
    CASE((void)0, 63, SLM_ERR_FORMAT, "outside", "data one byte short");
    CASE(t[1].offset = 16, 64, SLM_ERR_FORMAT, "alignment", "unaligned offset");
    CASE(t[1].offset = 0, 64, SLM_ERR_FORMAT, "overlap", "overlapping tensors");
    CASE((t[0].offset = 32, t[1].offset = 0, t[1].ne[0] = 9), 128, SLM_ERR_FORMAT, "overlap", "overlap, out of order");
    CASE(t[1].offset = 64, 64, SLM_ERR_FORMAT, "outside", "offset past the end");
    CASE(t[1].offset = 0xffffffffffffffe0ull, 64, SLM_ERR_FORMAT, "outside", "offset near 2^64");
    CASE(t[1].name = "a", 64, SLM_ERR_FORMAT, "duplicate tensor name a", "duplicate names");
    CASE(t[1].name = "", 64, SLM_ERR_FORMAT, "name", "empty name");
    CASE(t[1].type = 10, 64, SLM_ERR_UNSUPPORTED, "tensor b has type 10 (q2_k)", "q2_k type");
    CASE(t[1].type = 1000, 64, SLM_ERR_UNSUPPORTED, "type 1000", "unknown type id");
    CASE(t[1].type = SLM_DTYPE_COUNT, 64, SLM_ERR_UNSUPPORTED, "b", "type id = SLM_DTYPE_COUNT");
    CASE(t[1].n_dims = 0, 64, SLM_ERR_FORMAT, "n_dims = 0", "n_dims 0");
    CASE((t[1].n_dims = 5, t[1].ne[1] = t[1].ne[2] = t[1].ne[3] = t[1].ne[4] = 1), 64, SLM_ERR_FORMAT, "n_dims = 5",
         "n_dims 5");
    CASE(t[1].n_dims = 0xffffffffu, 64, SLM_ERR_FORMAT, "n_dims", "n_dims 2^32-1");
    CASE((t[1].n_dims = 2, t[1].ne[1] = 0), 64, SLM_ERR_FORMAT, "ne[1] = 0", "zero dim");
    CASE(t[1].ne[0] = 0, 64, SLM_ERR_FORMAT, "ne[0] = 0", "zero row");
    CASE(t[1].ne[0] = 1ull << 63, 64, SLM_ERR_FORMAT, "ne[0]", "dim > INT64_MAX");
    CASE((t[1].n_dims = 3, t[1].ne[0] = t[1].ne[1] = t[1].ne[2] = 1ull << 32), 64, SLM_ERR_FORMAT, "overflow",
         "dims product overflow");
    CASE((t[1].n_dims = 2, t[1].ne[0] = 1ull << 62, t[1].ne[1] = 1), 64, SLM_ERR_FORMAT, "overflow",
         "byte size overflow");
    CASE((t[1].n_dims = 2, t[1].ne[0] = 1ull << 40, t[1].ne[1] = 1ull << 20), 64, SLM_ERR_FORMAT, "outside",
         "huge but representable tensor");
    CASE((t[1].type = SLM_Q8_0, t[1].ne[0] = 33), 64, SLM_ERR_FORMAT, "block size", "ne[0] not a multiple of 32");
#undef CASE
    /* A huge tensor count, and a count just one more than the directory holds. */
    tensor_file(&b, ok, 2, 64);
    memcpy(b.p + 8, (uint64_t[]){1ull << 60}, 8);
    expect_fail(&b, SLM_ERR_FORMAT, "n_tensors", "n_tensors 2^60");
    tensor_file(&b, ok, 2, 64);
    b.p[8] = 3;
    expect_fail(&b, SLM_ERR_FORMAT, NULL, "n_tensors one too many");
    free(b.p);
}

/* A file with one kv whose value bytes (after the type) are given. */
static void kv_file(bytes *b, uint32_t version, const char *key, uint32_t type, const bytes *value) {
    b->n = 0;
    b_header(b, version, 0, 1);
    b_str(b, key);
    b_u32(b, type);
    b_put(b, value->p, value->n);
}

static void test_hostile_metadata(void) {
    bytes b = {0}, v = {0};
    slm_gguf *g;
    slm_error err;

    /* Header. */
    expect_fail(&b, SLM_ERR_FORMAT, "only 0 bytes", "empty buffer");
    b_put(&b, "GGUG", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    expect_fail(&b, SLM_ERR_FORMAT, "magic", "bad magic");
    b.n = 0;
    b_header(&b, 1, 0, 0);
    expect_fail(&b, SLM_ERR_FORMAT, "version 1", "v1");
    b.n = 0;
    b_header(&b, 4, 0, 0);
    expect_fail(&b, SLM_ERR_FORMAT, "version 4", "v4");
    b.n = 0;
    b_header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, SLM_ERR_FORMAT, "big-endian", "big-endian");
    b.n = 0;
    b_header(&b, 3, 0, 1ull << 60);
    expect_fail(&b, SLM_ERR_FORMAT, "n_kv = 1152921504606846976", "n_kv 2^60");
    b.n = 0;
    b_header(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, SLM_ERR_FORMAT, "n_kv", "n_kv 2^64-1");
    b.n = 0;
    b_header(&b, 3, 0, 0);
    CHECK(open_exact(b.p, b.n, &g, &err) == SLM_OK, "empty but valid file: %s", err.msg);
    if (g) {
        CHECK(g->n_kv == 0 && g->n_tensors == 0 && g->alignment == 32, "empty file values");
        close_exact(g);
    }

    /* Keys. */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_u64(&b, 1ull << 63);
    b_put(&b, "abcdefgh", 8);
    expect_fail(&b, SLM_ERR_FORMAT, "string length 9223372036854775808", "key length 2^63");
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_u64(&b, 0);
    b_u32(&b, SLM_GGUF_UINT8);
    b_le(&b, 1, 1);
    b_le(&b, 1, 1);
    expect_fail(&b, SLM_ERR_FORMAT, "length 0", "empty key");
    b.n = 0;
    b_header(&b, 3, 0, 2);
    for (int k = 0; k < 2; k++) {
        b_str(&b, "dup.key");
        b_u32(&b, SLM_GGUF_UINT8);
        b_le(&b, 1, 1);
    }
    expect_fail(&b, SLM_ERR_FORMAT, "duplicate key dup.key", "duplicate key");

    /* Values. */
    v.n = 0;
    b_le(&v, 1, 4);
    kv_file(&b, 3, "k.type", 13, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "k.type has unknown value type 13", "value type 13");
    kv_file(&b, 3, "k.u32", SLM_GGUF_UINT32, &(bytes){(uint8_t *)"\1\2\3", 3, 3});
    expect_fail(&b, SLM_ERR_FORMAT, "k.u32", "truncated u32");
    v.n = 0;
    b_u64(&v, 1ull << 62);
    b_put(&v, "xyz", 3);
    kv_file(&b, 3, "k.str", SLM_GGUF_STRING, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "4611686018427387904", "string length 2^62");
    v.n = 0;
    b_u64(&v, UINT64_MAX);
    kv_file(&b, 3, "k.str", SLM_GGUF_STRING, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "k.str", "string length 2^64-1");
    const uint32_t elem[] = {SLM_GGUF_UINT8, SLM_GGUF_FLOAT64, SLM_GGUF_STRING, SLM_GGUF_ARRAY};
    for (int e = 0; e < 4; e++) {
        v.n = 0;
        b_u32(&v, elem[e]);
        b_u64(&v, 1ull << 60);
        b_u64(&v, 0);
        b_u64(&v, 0);
        kv_file(&b, 3, "k.arr", SLM_GGUF_ARRAY, &v);
        expect_fail(&b, SLM_ERR_FORMAT, "1152921504606846976", "array length 2^60");
        v.n = 0;
        b_u32(&v, elem[e]);
        b_u64(&v, 1ull << 61 | 3);
        kv_file(&b, 3, "k.arr", SLM_GGUF_ARRAY, &v);
        expect_fail(&b, SLM_ERR_FORMAT, "k.arr", "array length 2^61+3, no data");
    }
    v.n = 0;
    b_u32(&v, 13);
    b_u64(&v, 1);
    b_u64(&v, 0);
    kv_file(&b, 3, "k.arr", SLM_GGUF_ARRAY, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "element type 13", "array element type 13");
    /* Array of strings where one string runs past the end. */
    v.n = 0;
    b_u32(&v, SLM_GGUF_STRING);
    b_u64(&v, 2);
    b_str(&v, "ok");
    b_u64(&v, 100);
    b_put(&v, "short", 5);
    kv_file(&b, 3, "k.strs", SLM_GGUF_ARRAY, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "k.strs", "array string past the end");
    /* Nesting deeper than the limit, and exactly at it. */
    for (int depth = SLM_GGUF_MAX_DEPTH; depth <= SLM_GGUF_MAX_DEPTH + 1; depth++) {
        v.n = 0;
        for (int d = 0; d < depth - 1; d++) {
            b_u32(&v, SLM_GGUF_ARRAY);
            b_u64(&v, 1);
        }
        b_u32(&v, SLM_GGUF_UINT8);
        b_u64(&v, 1);
        b_le(&v, 42, 1);
        kv_file(&b, 3, "k.deep", SLM_GGUF_ARRAY, &v);
        if (depth > SLM_GGUF_MAX_DEPTH) {
            expect_fail(&b, SLM_ERR_FORMAT, "nested deeper", "too deep");
        } else {
            CHECK(open_exact(b.p, b.n, &g, &err) == SLM_OK, "depth %d: %s", depth, err.msg);
            if (g) {
                slm_gguf_kv cur = g->kv[0], next;
                int levels = 1;
                while (cur.arr_type == SLM_GGUF_ARRAY && slm_gguf_arr_nested(&cur, 0, &next)) {
                    cur = next;
                    levels++;
                }
                uint64_t u = 0;
                CHECK(levels == depth && slm_gguf_arr_u64(&cur, 0, &u) && u == 42, "deep value %d %llu", levels,
                      (unsigned long long)u);
                close_exact(g);
            }
        }
    }

    /* Alignment. */
    const struct {
        uint32_t type;
        uint64_t value;
        const char *needle;
    } bad_align[] = {
        {SLM_GGUF_UINT32, 0, "general.alignment = 0"},
        {SLM_GGUF_UINT32, 1, "general.alignment = 1"}, /* powers of two below 8: misaligned tensor reads */
        {SLM_GGUF_UINT32, 2, "general.alignment = 2"},
        {SLM_GGUF_UINT32, 4, "general.alignment = 4"},
        {SLM_GGUF_UINT32, 3, "general.alignment = 3"},
        {SLM_GGUF_UINT32, 48, "general.alignment = 48"},
        {SLM_GGUF_UINT32, 1u << 31, "general.alignment = 2147483648"},
        {SLM_GGUF_INT32, (uint32_t)-32, "general.alignment has type int32"},
        {SLM_GGUF_FLOAT32, 0x42000000, "general.alignment has type float32"},
    };
    for (size_t k = 0; k < sizeof bad_align / sizeof bad_align[0]; k++) {
        v.n = 0;
        b_le(&v, bad_align[k].value, 4);
        kv_file(&b, 3, "general.alignment", bad_align[k].type, &v);
        expect_fail(&b, SLM_ERR_FORMAT, bad_align[k].needle, "bad alignment");
    }
    v.n = 0;
    b_str(&v, "32");
    kv_file(&b, 3, "general.alignment", SLM_GGUF_STRING, &v);
    expect_fail(&b, SLM_ERR_FORMAT, "general.alignment has type string", "string alignment");
    /* With alignment 64 a tensor at offset 32 is misaligned. */
    b.n = 0;
    b_header(&b, 3, 1, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, SLM_GGUF_UINT32);
    b_u32(&b, 64);
    b_str(&b, "t");
    b_u32(&b, 1);
    b_u64(&b, 8);
    b_u32(&b, SLM_F32);
    b_u64(&b, 32);
    b_pad(&b, 64);
    for (int k = 0; k < 64; k++) b_le(&b, 0, 1);
    expect_fail(&b, SLM_ERR_FORMAT, "not a multiple of the alignment 64", "offset 32 with alignment 64");
    free(b.p);
    free(v.p);
}

/* Every prefix of a valid file fails unless it still holds all tensor data (only the final padding is cut). */
static void test_truncations_and_flips(void) {
    fill_tensor_data();
    slm_gguf_writer *w = make_writer(3, 0);
    slm_error err;
    void *buf;
    size_t n;
    if (slm_gguf_writer_write_memory(w, &buf, &n, &err)) {
        CHECK(0, "write: %s", err.msg);
        slm_gguf_writer_free(w);
        return;
    }
    slm_gguf_writer_free(w);
    slm_gguf *g;
    CHECK(open_exact(buf, n, &g, &err) == SLM_OK, "valid: %s", err.msg);
    size_t need = 0;
    if (g) {
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            size_t end = (size_t)(g->data_offset + g->tensors[i].offset + g->tensors[i].size);
            if (end > need) need = end;
        }
        close_exact(g);
    }
    int failures = 0;
    for (size_t len = 0; len < n; len++) {
        slm_status s = open_exact(buf, len, &g, &err);
        if (len < need) {
            if (s == SLM_OK || !err.msg[0] || s != SLM_ERR_FORMAT) failures++;
            if (s == SLM_OK) close_exact(g);
        } else {
            if (s != SLM_OK) failures++;
            else close_exact(g);
        }
    }
    CHECK(failures == 0, "%d of %zu truncations misbehaved (need %zu)", failures, n, need);

    /* Every bit of the header and metadata, and random bits of the data: a flip may be harmless (a value
     * changes) but must either open, with every accessor usable, or fail with a message. */
    uint8_t *copy = malloc(n);
    int opened = 0, failed = 0, no_msg = 0;
    uint64_t rng = 12345;
    for (size_t k = 0; k < 8 * n; k++) {
        size_t bit = k < 8 * (size_t)need / 4 ? k : (size_t)(slm_test_rand(&rng) % (8 * n));
        if (k >= 8 * (size_t)need / 4 && k % 16) continue; /* sample the rest */
        memcpy(copy, buf, n);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        slm_status s = open_exact(copy, n, &g, &err);
        if (s == SLM_OK) {
            opened++;
            touch_all(g);
            close_exact(g);
        } else {
            failed++;
            if (!err.msg[0]) no_msg++;
        }
    }
    CHECK(no_msg == 0, "%d failures without a message", no_msg);
    CHECK(opened > 0 && failed > 0, "bit flips: %d opened, %d failed", opened, failed);
    printf("bit flips: %d opened, %d failed cleanly; %zu truncations\n", opened, failed, n);
    free(copy);
    free(buf);
}

static void test_writer_errors(void) {
    slm_gguf_writer *w;
    slm_error err;
    CHECK(slm_gguf_writer_create(&w, &err) == SLM_OK, "create");
    CHECK(slm_gguf_writer_add_tensor(w, "x", SLM_Q8_0, 1, (int64_t[]){33}, NULL, 0) == SLM_ERR_INVALID_ARG,
          "q8_0 row of 33");
    CHECK(slm_gguf_writer_add_u32(w, "after", 1) != SLM_OK, "errors are sticky");
    void *buf;
    size_t n;
    CHECK(slm_gguf_writer_write_memory(w, &buf, &n, &err) == SLM_ERR_INVALID_ARG && strstr(err.msg, "x"),
          "write reports the first error: %s", err.msg);
    slm_gguf_writer_free(w);
    /* An unknown type with an explicit size is written; the reader then refuses it. */
    CHECK(slm_gguf_writer_create(&w, &err) == SLM_OK, "create");
    slm_gguf_writer_add_tensor(w, "blk.3.ffn_up.weight", 10, 2, (int64_t[]){256, 4}, NULL, 4 * 84);
    CHECK(slm_gguf_writer_write_memory(w, &buf, &n, &err) == SLM_OK, "write: %s", err.msg);
    slm_gguf *g;
    slm_status s = open_exact(buf, n, &g, &err);
    CHECK(s == SLM_ERR_UNSUPPORTED && strstr(err.msg, "blk.3.ffn_up.weight") && strstr(err.msg, "10") &&
              strstr(err.msg, "q2_k"),
          "unknown type: %s %s", slm_status_name(s), err.msg);
    if (!s) close_exact(g);
    free(buf);
    slm_gguf_writer_free(w);
}

static void test_real_model(void) {
    char buf[1024];
    const char *path = slm_test_model("SmolLM2-135M-Instruct.Q4_1.gguf", buf, sizeof buf);
    if (!path) {
        printf("SmolLM2 model not found under $SLM_TEST_MODELS: real-model checks skipped\n");
        return;
    }
    slm_gguf *g;
    slm_error err;
    slm_status s = slm_gguf_open(path, &g, &err);
    CHECK(s == SLM_OK, "open %s: %s", path, err.msg);
    if (s) return;
    uint64_t u = 0;
    slm_gguf_str a;
    CHECK(slm_gguf_get_str(g, "general.architecture", &a) && slm_gguf_str_eq(a, "llama"), "architecture");
    CHECK(slm_gguf_get_u64(g, "llama.block_count", &u) && u == 30, "block_count %llu", (unsigned long long)u);
    CHECK(g->n_tensors == 272, "n_tensors %llu", (unsigned long long)g->n_tensors);
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == SLM_Q8_0 && t->ne[0] == 576 && t->ne[1] == 49152 && t->n_dims == 2, "token_embd.weight");
    if (t) CHECK(t->size == 49152ull * 576 / 32 * 34, "token_embd size %llu", (unsigned long long)t->size);
    const slm_gguf_kv *kv = slm_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->arr_type == SLM_GGUF_STRING && kv->arr_len == 49152, "tokens");
    slm_gguf_str s0;
    if (kv) CHECK(slm_gguf_arr_str(kv, kv->arr_len - 1, &s0) && s0.len > 0, "last token");
    touch_all(g);
    printf("%s: %llu kvs, %llu tensors checked\n", path, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
    slm_gguf_close(g);
}

int main(void) {
    test_round_trip();
    test_io_errors();
    test_writer_errors();
    test_tensor_directory();
    test_hostile_metadata();
    test_truncations_and_flips();
    test_real_model();
    return slm_test_finish("test_gguf");
}
