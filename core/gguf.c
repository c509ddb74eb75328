/* GGUF v2/v3 reader. The file is untrusted: every count and length is checked against the bytes that are
 * left BEFORE anything is allocated or dereferenced, so a hostile header (n_kv = 2^60, a string of length
 * 2^63) fails with a message instead of a huge malloc or a read past the end.
 *
 * Layout (little endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, n_kv * {string key, u32 type, value},
 * n_tensors * {string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset}, padding to the alignment,
 * tensor data. A string is u64 length + bytes; an array is u32 element type + u64 count + elements. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MIN_ALIGNMENT 8u
#define GGUF_MAX_ALIGNMENT (1u << 30) /* keeps align-up arithmetic far from overflow */
#define GGUF_MAX_KEY_LEN 65535        /* the spec's limit on key length */
#define GGUF_MAX_NAME_LEN 64          /* the spec's limit on tensor name length */
/* Smallest encodings, used to bound counts by the bytes left before allocating anything per item. */
#define GGUF_MIN_KV_BYTES 14     /* u64 key len + 1 key byte + u32 type + 1 value byte */
#define GGUF_MIN_TENSOR_BYTES 33 /* u64 name len + 1 name byte + u32 n_dims + one u64 dim + u32 type + u64 off */

/* Offset tables ("tables") of variable-sized arrays live in one pool of uint64 per file:
 *   array of strings, n elements:  T[i] = byte offset of element i from kv->data (at its u64 length)
 *   array of arrays, n elements:   T[i] = byte offset of element i from kv->data (at its u32 type);
 *                                  T[n + i] = distance in entries from T to element i's own table, 0 if the
 *                                  element's elements have a fixed size.
 * Relative distances keep a nested table valid wherever the pool ends up after reallocations. */
typedef struct gguf_impl {
    slm_gguf pub; /* first: slm_gguf * and gguf_impl * convert both ways */
    uint64_t *pool;
    size_t pool_len, pool_cap;
    uint64_t *kv_hash; /* open addressing, entry = index + 1, 0 = empty */
    uint64_t *tensor_hash;
    uint64_t kv_mask, tensor_mask;
} gguf_impl;

typedef struct reader {
    const uint8_t *b;
    size_t size, pos;
    const char *path;
    slm_error *err;
    gguf_impl *g;
} reader;

size_t slm_gguf_scalar_size(uint32_t t) {
    switch (t) {
    case SLM_GGUF_UINT8:
    case SLM_GGUF_INT8:
    case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_UINT16:
    case SLM_GGUF_INT16: return 2;
    case SLM_GGUF_UINT32:
    case SLM_GGUF_INT32:
    case SLM_GGUF_FLOAT32: return 4;
    case SLM_GGUF_UINT64:
    case SLM_GGUF_INT64:
    case SLM_GGUF_FLOAT64: return 8;
    default: return 0; /* string, array, or not a type */
    }
}

const char *slm_gguf_type_name(uint32_t t) {
    static const char *const names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                        "bool",  "string", "array",  "uint64", "int64",  "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A printable copy of a name from the file for messages: hostile bytes must not reach a terminal. */
static const char *show(const char *p, uint64_t len, char buf[96]) {
    size_t n = len > 64 ? 64 : (size_t)len, j = 0;
    for (size_t i = 0; i < n; i++) buf[j++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    if (len > n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = 0;
    return buf;
}

static uint64_t hash_bytes(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* ---- bounds-checked reading ---- */

static size_t left(const reader *r) { return r->size - r->pos; }

static slm_status need(reader *r, uint64_t n, const char *what, const char *name) {
    if (n <= left(r)) return SLM_OK;
    char b[96];
    return slm_fail(r->err, SLM_ERR_FORMAT, "%s: truncated: %s%s%s needs %llu bytes at offset %zu but %zu are left",
                    r->path, what, name ? " " : "", name ? show(name, strlen(name), b) : "", (unsigned long long)n,
                    r->pos, left(r));
}

static slm_status rd_u32(reader *r, uint32_t *v, const char *what, const char *name) {
    slm_status s = need(r, 4, what, name);
    if (s) return s;
    *v = (uint32_t)le(r->b + r->pos, 4);
    r->pos += 4;
    return SLM_OK;
}

static slm_status rd_u64(reader *r, uint64_t *v, const char *what, const char *name) {
    slm_status s = need(r, 8, what, name);
    if (s) return s;
    *v = le(r->b + r->pos, 8);
    r->pos += 8;
    return SLM_OK;
}

static slm_status rd_str(reader *r, slm_gguf_str *out, const char *what, const char *name) {
    uint64_t len;
    slm_status s = rd_u64(r, &len, what, name);
    if (s) return s;
    if (len > left(r)) {
        char b[96];
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: %s%s%s: string length %llu at offset %zu exceeds the %zu bytes left", r->path, what,
                        name ? " " : "", name ? show(name, strlen(name), b) : "", (unsigned long long)len, r->pos - 8,
                        left(r));
    }
    out->ptr = (const char *)r->b + r->pos;
    out->len = len;
    r->pos += (size_t)len;
    return SLM_OK;
}

/* Reserves n entries of the table pool; returns the index of the first. */
static slm_status pool_reserve(reader *r, uint64_t n, size_t *idx) {
    gguf_impl *g = r->g;
    /* Every entry stands for >= 4 bytes of file, so the pool is bounded by the file size; still check. */
    if (n > (SIZE_MAX / 8) - g->pool_len)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: array offset table too large", r->path);
    size_t want = g->pool_len + (size_t)n;
    if (want > g->pool_cap) {
        size_t cap = g->pool_cap ? g->pool_cap : 64;
        while (cap < want) cap = cap > SIZE_MAX / 16 ? want : cap * 2;
        uint64_t *p = realloc(g->pool, cap * sizeof *p);
        if (!p) return slm_fail(r->err, SLM_ERR_NOMEM, "%s: out of memory for %zu array offsets", r->path, cap);
        g->pool = p;
        g->pool_cap = cap;
    }
    *idx = g->pool_len;
    g->pool_len = want;
    return SLM_OK;
}

/* Reads an array body (u32 element type, u64 count, elements) of kv `key`. *table gets the pool index of
 * its offset table or SIZE_MAX when its elements have a fixed size. */
static slm_status rd_array(reader *r, const char *key, int depth, uint32_t *arr_type, uint64_t *arr_len,
                           const uint8_t **data, size_t *table) {
    char b[96];
    slm_status s;
    if (depth > SLM_GGUF_MAX_DEPTH)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: key %s: arrays nested deeper than %d", r->path,
                        show(key, strlen(key), b), SLM_GGUF_MAX_DEPTH);
    uint32_t t;
    uint64_t n;
    if ((s = rd_u32(r, &t, "array type of key", key)) || (s = rd_u64(r, &n, "array length of key", key))) return s;
    if (t > SLM_GGUF_FLOAT64)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: key %s: unknown array element type %u", r->path,
                        show(key, strlen(key), b), t);
    *arr_type = t;
    *arr_len = n;
    *data = r->b + r->pos;
    *table = SIZE_MAX;
    size_t start = r->pos;
    size_t esz = slm_gguf_scalar_size(t);
    /* The smallest element: fixed size, a u64 string length, or a u32 type + u64 count. */
    size_t min = esz ? esz : (t == SLM_GGUF_STRING ? 8 : 12);
    if (n > left(r) / min)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: key %s: array of %llu %s elements at offset %zu does not fit in the %zu bytes left",
                        r->path, show(key, strlen(key), b), (unsigned long long)n, slm_gguf_type_name(t), start,
                        left(r));
    if (esz || n == 0) { /* empty arrays need no table (and arr_offsets stays NULL) */
        r->pos += (size_t)(n * esz);
        return SLM_OK;
    }
    size_t tab = 0;
    if ((s = pool_reserve(r, t == SLM_GGUF_STRING ? n : 2 * n, &tab))) return s;
    for (uint64_t i = 0; i < n; i++) {
        r->g->pool[tab + i] = r->pos - start;
        if (t == SLM_GGUF_STRING) {
            slm_gguf_str str;
            if ((s = rd_str(r, &str, "array string of key", key))) return s;
        } else {
            uint32_t st;
            uint64_t sn;
            const uint8_t *sd;
            size_t sub;
            if ((s = rd_array(r, key, depth + 1, &st, &sn, &sd, &sub))) return s;
            r->g->pool[tab + n + i] = sub == SIZE_MAX ? 0 : sub - tab; /* sub > tab: reserved later */
        }
    }
    *table = tab;
    return SLM_OK;
}

/* ---- hash indexes of keys and tensor names ---- */

static slm_status index_alloc(reader *r, uint64_t n, uint64_t **tab, uint64_t *mask) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2; /* n is bounded by the file size, so this cannot overflow */
    *tab = calloc((size_t)cap, sizeof **tab);
    if (!*tab)
        return slm_fail(r->err, SLM_ERR_NOMEM, "%s: out of memory for an index of %llu names", r->path,
                        (unsigned long long)n);
    *mask = cap - 1;
    return SLM_OK;
}

typedef const slm_gguf_str *(*name_of_fn)(const slm_gguf *g, uint64_t i);
static const slm_gguf_str *kv_name(const slm_gguf *g, uint64_t i) { return &g->kv[i].key; }
static const slm_gguf_str *tensor_name(const slm_gguf *g, uint64_t i) { return &g->tensors[i].name; }

/* Index of the entry named (p, n), or UINT64_MAX; *slot gets where it would be inserted. */
static uint64_t index_find(const slm_gguf *g, const uint64_t *tab, uint64_t mask, name_of_fn name_of, const char *p,
                           uint64_t n, uint64_t *slot) {
    uint64_t h = hash_bytes(p, n) & mask;
    while (tab[h]) {
        const slm_gguf_str *s = name_of(g, tab[h] - 1);
        if (s->len == n && memcmp(s->ptr, p, (size_t)n) == 0) return tab[h] - 1;
        h = (h + 1) & mask;
    }
    if (slot) *slot = h;
    return UINT64_MAX;
}

/* ---- the parse ---- */

static slm_status parse_kvs(reader *r, size_t *tables) {
    gguf_impl *g = r->g;
    slm_gguf *pub = &g->pub;
    slm_status s;
    char kb[96];
    for (uint64_t i = 0; i < pub->n_kv; i++) {
        slm_gguf_kv *kv = &pub->kv[i];
        size_t at = r->pos;
        char what[48];
        snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
        if ((s = rd_str(r, &kv->key, what, NULL))) return s;
        if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
            return slm_fail(r->err, SLM_ERR_FORMAT, "%s: key %llu at offset %zu has length %llu (must be 1..%d)",
                            r->path, (unsigned long long)i, at, (unsigned long long)kv->key.len, GGUF_MAX_KEY_LEN);
        show(kv->key.ptr, kv->key.len, kb);
        uint64_t slot;
        if (index_find(pub, g->kv_hash, g->kv_mask, kv_name, kv->key.ptr, kv->key.len, &slot) != UINT64_MAX)
            return slm_fail(r->err, SLM_ERR_FORMAT, "%s: duplicate key %s (kv %llu)", r->path, kb,
                            (unsigned long long)i);
        g->kv_hash[slot] = i + 1;
        uint32_t t;
        if ((s = rd_u32(r, &t, "value type of key", kb))) return s;
        if (t > SLM_GGUF_FLOAT64)
            return slm_fail(r->err, SLM_ERR_FORMAT, "%s: key %s has unknown value type %u", r->path, kb, t);
        kv->type = (slm_gguf_type)t;
        kv->data = r->b + r->pos;
        if (t == SLM_GGUF_STRING) {
            slm_gguf_str str;
            if ((s = rd_str(r, &str, "string value of key", kb))) return s;
        } else if (t == SLM_GGUF_ARRAY) {
            uint32_t at2;
            if ((s = rd_array(r, kb, 1, &at2, &kv->arr_len, &kv->data, &tables[i]))) return s;
            kv->arr_type = (slm_gguf_type)at2;
        } else {
            if ((s = need(r, slm_gguf_scalar_size(t), "value of key", kb))) return s;
            r->pos += slm_gguf_scalar_size(t);
        }
    }
    return SLM_OK;
}

static slm_status read_alignment(reader *r) {
    slm_gguf *g = &r->g->pub;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const slm_gguf_kv *kv = slm_gguf_find(g, "general.alignment");
    if (!kv) return SLM_OK;
    uint64_t a;
    if (!slm_gguf_kv_u64(kv, &a))
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: general.alignment has type %s, expected an unsigned integer",
                        r->path, slm_gguf_type_name(kv->type));
    /* The GGUF spec requires a multiple of 8: tensor data is read in place as f32, f16 and 8-byte blocks, and
     * a smaller alignment makes those reads misaligned (undefined behaviour in C, traps on some CPUs). A
     * power of two keeps the align-up arithmetic a mask, as every writer produces. */
    if (a < GGUF_MIN_ALIGNMENT || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: general.alignment = %llu is not a power of two in %u..%u (GGUF requires a multiple of 8)",
                        r->path, (unsigned long long)a, GGUF_MIN_ALIGNMENT, GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return SLM_OK;
}

static slm_status parse_tensor(reader *r, uint64_t i) {
    gguf_impl *g = r->g;
    slm_gguf *pub = &g->pub;
    slm_gguf_tensor *t = &pub->tensors[i];
    slm_status s;
    char nb[96], what[48];
    snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)i);
    size_t at = r->pos;
    if ((s = rd_str(r, &t->name, what, NULL))) return s;
    if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME_LEN)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: tensor %llu at offset %zu has a name of length %llu (must be 1..%d)", r->path,
                        (unsigned long long)i, at, (unsigned long long)t->name.len, GGUF_MAX_NAME_LEN);
    const char *nm = show(t->name.ptr, t->name.len, nb);
    uint64_t slot;
    if (index_find(pub, g->tensor_hash, g->tensor_mask, tensor_name, t->name.ptr, t->name.len, &slot) != UINT64_MAX)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: duplicate tensor name %s (tensor %llu)", r->path, nm,
                        (unsigned long long)i);
    g->tensor_hash[slot] = i + 1;

    uint32_t nd;
    if ((s = rd_u32(r, &nd, "n_dims of tensor", nm))) return s;
    if (nd < 1 || nd > 4)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: tensor %s has n_dims = %u (must be 1..4)", r->path, nm, nd);
    t->n_dims = nd;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if ((s = rd_u64(r, &v, "dimensions of tensor", nm))) return s;
        if (v < 1 || v > (uint64_t)INT64_MAX)
            return slm_fail(r->err, SLM_ERR_FORMAT, "%s: tensor %s has ne[%u] = %llu (must be 1..2^63-1)", r->path, nm,
                            d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    uint32_t type;
    if ((s = rd_u32(r, &type, "type of tensor", nm))) return s;
    const slm_dtype_info *ti = slm_dtype_get(type);
    if (!ti)
        return slm_fail(r->err, SLM_ERR_UNSUPPORTED,
                        "%s: tensor %s has type %u (%s), which this build does not support", r->path, nm, type,
                        slm_dtype_name(type));
    t->type = (slm_dtype)type;
    if ((s = rd_u64(r, &t->offset, "offset of tensor", nm))) return s;

    if (t->ne[0] % ti->block_elems)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: tensor %s: row length ne[0] = %lld is not a multiple of the %s block size %d", r->path, nm,
                        (long long)t->ne[0], ti->name, ti->block_elems);
    uint64_t rows = 1, row_bytes, bytes, elems;
    bool ovf = false;
    for (int d = 1; d < 4; d++) ovf |= __builtin_mul_overflow(rows, (uint64_t)t->ne[d], &rows);
    ovf |= __builtin_mul_overflow(rows, (uint64_t)t->ne[0], &elems) || elems > (uint64_t)INT64_MAX;
    ovf |=
        __builtin_mul_overflow((uint64_t)t->ne[0] / (uint64_t)ti->block_elems, (uint64_t)ti->block_bytes, &row_bytes);
    ovf |= __builtin_mul_overflow(row_bytes, rows, &bytes);
    if (ovf)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: tensor %s: shape [%lld, %lld, %lld, %lld] overflows 64 bits",
                        r->path, nm, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3]);
    t->size = bytes;
    if (t->offset % pub->alignment)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: tensor %s: offset %llu is not a multiple of the alignment %llu",
                        r->path, nm, (unsigned long long)t->offset, (unsigned long long)pub->alignment);
    return SLM_OK;
}

typedef struct span {
    uint64_t off, end, idx;
} span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Tensor data must lie inside the file and no two tensors may share bytes. */
static slm_status check_data(reader *r) {
    slm_gguf *g = &r->g->pub;
    char b1[96], b2[96];
    uint64_t avail = g->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        slm_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->size > avail - t->offset)
            return slm_fail(r->err, SLM_ERR_FORMAT,
                            "%s: tensor %s: data [%llu, +%llu) lies outside the %llu bytes of the data section",
                            r->path, show(t->name.ptr, t->name.len, b1), (unsigned long long)t->offset,
                            (unsigned long long)t->size, (unsigned long long)avail);
        t->data = g->base + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return SLM_OK;
    span *sp = malloc((size_t)g->n_tensors * sizeof *sp);
    if (!sp) return slm_fail(r->err, SLM_ERR_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        sp[i] = (span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].size, i};
    qsort(sp, (size_t)g->n_tensors, sizeof *sp, span_cmp);
    slm_status s = SLM_OK;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (sp[i].off < sp[i - 1].end) {
            const slm_gguf_tensor *a = &g->tensors[sp[i - 1].idx], *c = &g->tensors[sp[i].idx];
            s = slm_fail(r->err, SLM_ERR_FORMAT, "%s: tensors %s [%llu, %llu) and %s [%llu, %llu) overlap", r->path,
                         show(a->name.ptr, a->name.len, b1), (unsigned long long)sp[i - 1].off,
                         (unsigned long long)sp[i - 1].end, show(c->name.ptr, c->name.len, b2),
                         (unsigned long long)sp[i].off, (unsigned long long)sp[i].end);
            break;
        }
    }
    free(sp);
    return s;
}

static slm_status parse(reader *r) {
    gguf_impl *g = r->g;
    slm_gguf *pub = &g->pub;
    slm_status s;
    if (r->size < 4 || memcmp(r->b, "GGUF", 4) != 0) {
        if (r->size < 4)
            return slm_fail(r->err, SLM_ERR_FORMAT, "%s: not a GGUF file: only %zu bytes", r->path, r->size);
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: not a GGUF file: magic is %02x %02x %02x %02x, expected \"GGUF\"",
                        r->path, r->b[0], r->b[1], r->b[2], r->b[3]);
    }
    r->pos = 4;
    if ((s = rd_u32(r, &pub->version, "version", NULL))) return s;
    if (pub->version == 1)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: GGUF version 1 is not supported (only versions 2 and 3): convert the model again",
                        r->path);
    if (pub->version == 0x02000000u || pub->version == 0x03000000u)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: big-endian GGUF files are not supported", r->path);
    if (pub->version != 2 && pub->version != 3)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: unsupported GGUF version %u (only 2 and 3)", r->path,
                        pub->version);
    if ((s = rd_u64(r, &pub->n_tensors, "tensor count", NULL)) || (s = rd_u64(r, &pub->n_kv, "kv count", NULL)))
        return s;
    if (pub->n_kv > left(r) / GGUF_MIN_KV_BYTES)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: n_kv = %llu cannot fit in the %zu bytes left", r->path,
                        (unsigned long long)pub->n_kv, left(r));
    if (pub->n_tensors > left(r) / GGUF_MIN_TENSOR_BYTES)
        return slm_fail(r->err, SLM_ERR_FORMAT, "%s: n_tensors = %llu cannot fit in the %zu bytes left", r->path,
                        (unsigned long long)pub->n_tensors, left(r));

    /* calloc(0) may return NULL: allocate at least one of each. */
    pub->kv = calloc((size_t)pub->n_kv + 1, sizeof *pub->kv);
    size_t *tables = malloc(((size_t)pub->n_kv + 1) * sizeof *tables);
    if (!pub->kv || !tables) {
        free(tables);
        return slm_fail(r->err, SLM_ERR_NOMEM, "%s: out of memory for %llu kvs", r->path,
                        (unsigned long long)pub->n_kv);
    }
    for (uint64_t i = 0; i < pub->n_kv; i++) tables[i] = SIZE_MAX;
    if (!(s = index_alloc(r, pub->n_kv, &g->kv_hash, &g->kv_mask))) s = parse_kvs(r, tables);
    if (!s) /* the pool has stopped growing: turn table indexes into pointers */
        for (uint64_t i = 0; i < pub->n_kv; i++)
            if (tables[i] != SIZE_MAX) pub->kv[i].arr_offsets = g->pool + tables[i];
    free(tables);
    if (s || (s = read_alignment(r))) return s;

    /* Re-check against what is left now that the metadata has been read. */
    if (pub->n_tensors > left(r) / GGUF_MIN_TENSOR_BYTES)
        return slm_fail(r->err, SLM_ERR_FORMAT,
                        "%s: n_tensors = %llu cannot fit in the %zu bytes left after the metadata", r->path,
                        (unsigned long long)pub->n_tensors, left(r));
    pub->tensors = calloc((size_t)pub->n_tensors + 1, sizeof *pub->tensors);
    if (!pub->tensors)
        return slm_fail(r->err, SLM_ERR_NOMEM, "%s: out of memory for %llu tensors", r->path,
                        (unsigned long long)pub->n_tensors);
    if ((s = index_alloc(r, pub->n_tensors, &g->tensor_hash, &g->tensor_mask))) return s;
    for (uint64_t i = 0; i < pub->n_tensors; i++)
        if ((s = parse_tensor(r, i))) return s;

    uint64_t a = pub->alignment;
    uint64_t data_off = ((uint64_t)r->pos + a - 1) / a * a;
    if (data_off > r->size) {
        if (pub->n_tensors)
            return slm_fail(r->err, SLM_ERR_FORMAT,
                            "%s: the data section (offset %llu) starts beyond the end of the file (%zu bytes)", r->path,
                            (unsigned long long)data_off, r->size);
        data_off = r->size; /* a file without tensors may end without padding */
    }
    pub->data_offset = data_off;
    return check_data(r);
}

static slm_status open_common(const void *data, size_t size, bool mapped, const char *path, slm_gguf **out,
                              slm_error *err) {
    gguf_impl *g = calloc(1, sizeof *g);
    if (!g) {
        if (mapped) munmap((void *)data, size);
        return slm_fail(err, SLM_ERR_NOMEM, "%s: out of memory", path);
    }
    g->pub.base = data;
    g->pub.size = size;
    g->pub.mapped = mapped;
    snprintf(g->pub.path, sizeof g->pub.path, "%s", path);
    reader r = {.b = data, .size = size, .pos = 0, .path = g->pub.path, .err = err, .g = g};
    slm_status s = parse(&r);
    if (s) {
        slm_gguf_close(&g->pub);
        return s;
    }
    *out = &g->pub;
    return SLM_OK;
}

/* What a path that is not a regular file is, for the message. */
static const char *file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file";
}

slm_status slm_gguf_open(const char *path, slm_gguf **out, slm_error *err) {
    *out = NULL;
    if (!path) return slm_fail(err, SLM_ERR_INVALID_ARG, "gguf: no path given");
    /* Only a regular file can be mapped. The type is checked before opening because opening a FIFO blocks
     * until a writer appears and opening a device may act on it (a tape rewinds); O_NONBLOCK and the fstat
     * after the open cover a path that is swapped for something else in between. */
    struct stat st;
    if (stat(path, &st) != 0) return slm_fail(err, SLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return slm_fail(err, SLM_ERR_IO, "%s is not a regular file (%s): a model must be a GGUF file", path,
                        file_kind(st.st_mode));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return slm_fail(err, SLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return slm_fail(err, SLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return slm_fail(err, SLM_ERR_IO, "%s is not a regular file (%s): a model must be a GGUF file", path,
                        file_kind(st.st_mode));
    }
    if (st.st_size == 0) {
        close(fd);
        return slm_fail(err, SLM_ERR_FORMAT, "%s: not a GGUF file: the file is empty", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return slm_fail(err, SLM_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file open */
    if (p == MAP_FAILED) return slm_fail(err, SLM_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
    return open_common(p, size, true, path, out, err);
}

slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out, slm_error *err) {
    *out = NULL;
    if (!data && size) return slm_fail(err, SLM_ERR_INVALID_ARG, "gguf: NULL buffer of %zu bytes", size);
    static const uint8_t empty[1];
    return open_common(data ? data : empty, size, false, "<memory>", out, err);
}

void slm_gguf_close(slm_gguf *pub) {
    if (!pub) return;
    gguf_impl *g = (gguf_impl *)pub;
    if (pub->mapped) munmap((void *)pub->base, pub->size);
    free(pub->kv);
    free(pub->tensors);
    free(g->pool);
    free(g->kv_hash);
    free(g->tensor_hash);
    free(g);
}

/* ---- lookup ---- */

bool slm_gguf_str_eq(slm_gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

const slm_gguf_kv *slm_gguf_find(const slm_gguf *pub, const char *key) {
    const gguf_impl *g = (const gguf_impl *)pub;
    if (!pub || !key || !g->kv_hash) return NULL;
    uint64_t i = index_find(pub, g->kv_hash, g->kv_mask, kv_name, key, strlen(key), NULL);
    return i == UINT64_MAX ? NULL : &pub->kv[i];
}

const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *pub, const char *name) {
    const gguf_impl *g = (const gguf_impl *)pub;
    if (!pub || !name || !g->tensor_hash) return NULL;
    uint64_t i = index_find(pub, g->tensor_hash, g->tensor_mask, tensor_name, name, strlen(name), NULL);
    return i == UINT64_MAX ? NULL : &pub->tensors[i];
}

/* ---- values ---- */

typedef enum num_kind { NUM_NONE, NUM_UINT, NUM_SINT, NUM_FLOAT, NUM_BOOL } num_kind;
typedef struct num {
    num_kind kind;
    uint64_t u;
    int64_t i;
    double f;
} num;

static num decode(uint32_t t, const uint8_t *p) {
    num v = {NUM_NONE, 0, 0, 0};
    switch (t) {
    case SLM_GGUF_UINT8:
    case SLM_GGUF_UINT16:
    case SLM_GGUF_UINT32:
    case SLM_GGUF_UINT64:
        v.kind = NUM_UINT;
        v.u = le(p, (int)slm_gguf_scalar_size(t));
        break;
    case SLM_GGUF_INT8:
        v.kind = NUM_SINT;
        v.i = (int8_t)p[0];
        break;
    case SLM_GGUF_INT16:
        v.kind = NUM_SINT;
        v.i = (int16_t)le(p, 2);
        break;
    case SLM_GGUF_INT32:
        v.kind = NUM_SINT;
        v.i = (int32_t)le(p, 4);
        break;
    case SLM_GGUF_INT64:
        v.kind = NUM_SINT;
        v.i = (int64_t)le(p, 8);
        break;
    case SLM_GGUF_FLOAT32: {
        uint32_t b = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        v.kind = NUM_FLOAT;
        v.f = f;
        break;
    }
    case SLM_GGUF_FLOAT64: {
        uint64_t b = le(p, 8);
        memcpy(&v.f, &b, 8);
        v.kind = NUM_FLOAT;
        break;
    }
    case SLM_GGUF_BOOL:
        v.kind = NUM_BOOL;
        v.u = p[0] != 0;
        break;
    default: break;
    }
    return v;
}

static bool num_u64(num v, uint64_t *out) {
    if (v.kind == NUM_UINT) {
        *out = v.u;
        return true;
    }
    if (v.kind == NUM_SINT && v.i >= 0) {
        *out = (uint64_t)v.i;
        return true;
    }
    return false;
}
static bool num_i64(num v, int64_t *out) {
    if (v.kind == NUM_SINT) {
        *out = v.i;
        return true;
    }
    if (v.kind == NUM_UINT && v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v.u;
        return true;
    }
    return false;
}
static bool num_f64(num v, double *out) {
    switch (v.kind) {
    case NUM_FLOAT: *out = v.f; return true;
    case NUM_UINT: *out = (double)v.u; return true;
    case NUM_SINT: *out = (double)v.i; return true;
    default: return false;
    }
}

static num kv_num(const slm_gguf_kv *kv) {
    num none = {NUM_NONE, 0, 0, 0};
    return kv && slm_gguf_scalar_size(kv->type) ? decode(kv->type, kv->data) : none;
}

bool slm_gguf_kv_u64(const slm_gguf_kv *kv, uint64_t *out) { return num_u64(kv_num(kv), out); }
bool slm_gguf_kv_i64(const slm_gguf_kv *kv, int64_t *out) { return num_i64(kv_num(kv), out); }
bool slm_gguf_kv_f64(const slm_gguf_kv *kv, double *out) { return num_f64(kv_num(kv), out); }
bool slm_gguf_kv_bool(const slm_gguf_kv *kv, bool *out) {
    num v = kv_num(kv);
    if (v.kind != NUM_BOOL) return false;
    *out = v.u != 0;
    return true;
}
bool slm_gguf_kv_str(const slm_gguf_kv *kv, slm_gguf_str *out) {
    if (!kv || kv->type != SLM_GGUF_STRING) return false;
    out->len = le(kv->data, 8); /* validated at open */
    out->ptr = (const char *)kv->data + 8;
    return true;
}

bool slm_gguf_get_u64(const slm_gguf *g, const char *key, uint64_t *out) {
    return slm_gguf_kv_u64(slm_gguf_find(g, key), out);
}
bool slm_gguf_get_i64(const slm_gguf *g, const char *key, int64_t *out) {
    return slm_gguf_kv_i64(slm_gguf_find(g, key), out);
}
bool slm_gguf_get_f64(const slm_gguf *g, const char *key, double *out) {
    return slm_gguf_kv_f64(slm_gguf_find(g, key), out);
}
bool slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out) {
    double d;
    if (!slm_gguf_get_f64(g, key, &d)) return false;
    *out = (float)d;
    return true;
}
bool slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out) {
    return slm_gguf_kv_bool(slm_gguf_find(g, key), out);
}
bool slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out) {
    return slm_gguf_kv_str(slm_gguf_find(g, key), out);
}

/* Element i of a fixed-size array as a number (NUM_NONE when out of range or not fixed-size). */
static num arr_num(const slm_gguf_kv *kv, uint64_t i) {
    num none = {NUM_NONE, 0, 0, 0};
    if (!kv || kv->type != SLM_GGUF_ARRAY || i >= kv->arr_len) return none;
    size_t esz = slm_gguf_scalar_size(kv->arr_type);
    return esz ? decode(kv->arr_type, kv->data + i * esz) : none;
}

bool slm_gguf_arr_i64(const slm_gguf_kv *kv, uint64_t i, int64_t *out) { return num_i64(arr_num(kv, i), out); }
bool slm_gguf_arr_u64(const slm_gguf_kv *kv, uint64_t i, uint64_t *out) { return num_u64(arr_num(kv, i), out); }
bool slm_gguf_arr_f64(const slm_gguf_kv *kv, uint64_t i, double *out) {
    num v = arr_num(kv, i);
    if (v.kind != NUM_FLOAT) return false;
    *out = v.f;
    return true;
}
bool slm_gguf_arr_f32(const slm_gguf_kv *kv, uint64_t i, float *out) {
    double d;
    if (!slm_gguf_arr_f64(kv, i, &d)) return false;
    *out = (float)d;
    return true;
}
bool slm_gguf_arr_bool(const slm_gguf_kv *kv, uint64_t i, bool *out) {
    num v = arr_num(kv, i);
    if (v.kind != NUM_BOOL) return false;
    *out = v.u != 0;
    return true;
}

bool slm_gguf_arr_str(const slm_gguf_kv *kv, uint64_t i, slm_gguf_str *out) {
    if (!kv || kv->type != SLM_GGUF_ARRAY || kv->arr_type != SLM_GGUF_STRING || i >= kv->arr_len || !kv->arr_offsets)
        return false;
    const uint8_t *p = kv->data + kv->arr_offsets[i];
    out->len = le(p, 8);
    out->ptr = (const char *)p + 8;
    return true;
}

bool slm_gguf_arr_nested(const slm_gguf_kv *kv, uint64_t i, slm_gguf_kv *out) {
    if (!kv || kv->type != SLM_GGUF_ARRAY || kv->arr_type != SLM_GGUF_ARRAY || i >= kv->arr_len || !kv->arr_offsets)
        return false;
    const uint8_t *p = kv->data + kv->arr_offsets[i];
    uint64_t sub = kv->arr_offsets[kv->arr_len + i];
    memset(out, 0, sizeof *out);
    out->key = kv->key;
    out->type = SLM_GGUF_ARRAY;
    out->arr_type = (slm_gguf_type)le(p, 4);
    out->arr_len = le(p + 4, 8);
    out->data = p + 12;
    out->arr_offsets = sub ? kv->arr_offsets + sub : NULL;
    return true;
}
