/* GGUF writer: metadata is encoded into one growing byte buffer as it is added; tensors are kept as
 * descriptors pointing at the caller's data and laid out (aligned offsets) when written. */
#include "gguf_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    const void *data;
    size_t size;
} wtensor;

struct slm_gguf_writer {
    uint32_t version;
    uint8_t *kv; /* encoded kvs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *tensors;
    size_t n_tensors, tensors_cap;
    uint64_t alignment; /* from general.alignment when it is a valid power of two, else 32 */
    slm_status status;  /* first failure of an add_* call */
    const char *const *skip_keys, *const *skip_tensors; /* names later adds leave out (slm_gguf_writer_skip) */
    size_t n_skip_keys, n_skip_tensors;
    char msg[256];
};

static slm_status sticky(slm_gguf_writer *w, slm_status s, const char *what, const char *key) {
    if (!w->status) {
        w->status = s;
        snprintf(w->msg, sizeof w->msg, "gguf writer: %s (%s)", what, key ? key : "");
    }
    return w->status;
}

static bool grow(slm_gguf_writer *w, size_t more) {
    if (w->status) return false;
    if (more > SIZE_MAX / 2 - w->kv_len) return false;
    size_t want = w->kv_len + more;
    if (want <= w->kv_cap) return true;
    size_t cap = w->kv_cap ? w->kv_cap : 256;
    while (cap < want) cap *= 2;
    uint8_t *p = realloc(w->kv, cap);
    if (!p) return false;
    w->kv = p;
    w->kv_cap = cap;
    return true;
}

static void put(slm_gguf_writer *w, const void *p, size_t n) {
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_le(slm_gguf_writer *w, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, (size_t)n);
}

/* The little-endian bytes of one C value of a fixed-size type. */
static uint64_t scalar_bits(slm_gguf_type t, const void *p) {
    switch (t) {
    case SLM_GGUF_BOOL: return *(const bool *)p ? 1 : 0;
    case SLM_GGUF_UINT8:
    case SLM_GGUF_INT8: return *(const uint8_t *)p;
    case SLM_GGUF_UINT16:
    case SLM_GGUF_INT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case SLM_GGUF_UINT32:
    case SLM_GGUF_INT32:
    case SLM_GGUF_FLOAT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    default: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

static bool listed(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

/* Key, then the value type. False: write no value (a failure, kept in w->status, or a skipped key). */
static bool begin_kv(slm_gguf_writer *w, const char *key, slm_gguf_type type, size_t value_bytes) {
    if (w->status) return false;
    if (!key) {
        sticky(w, SLM_ERR_INVALID_ARG, "NULL key", "");
        return false;
    }
    if (listed(w->skip_keys, w->n_skip_keys, key)) return false;
    size_t kl = strlen(key);
    if (value_bytes > SIZE_MAX / 4 || !grow(w, 8 + kl + 4 + value_bytes)) {
        sticky(w, SLM_ERR_NOMEM, "out of memory", key);
        return false;
    }
    put_le(w, kl, 8);
    put(w, key, kl);
    put_le(w, (uint32_t)type, 4);
    w->n_kv++;
    if (strcmp(key, "general.alignment") == 0) w->alignment = 32; /* set again below if valid */
    return true;
}

static void note_alignment(slm_gguf_writer *w, const char *key, slm_gguf_type t, uint64_t bits) {
    if (strcmp(key, "general.alignment") != 0) return;
    bool uint = t == SLM_GGUF_UINT8 || t == SLM_GGUF_UINT16 || t == SLM_GGUF_UINT32 || t == SLM_GGUF_UINT64;
    if (uint && bits && !(bits & (bits - 1)) && bits <= (1u << 30)) w->alignment = bits;
}

slm_status slm_gguf_writer_create(slm_gguf_writer **out, slm_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return slm_fail(err, SLM_ERR_NOMEM, "gguf writer: out of memory");
    (*out)->version = 3;
    (*out)->alignment = 32;
    return SLM_OK;
}

void slm_gguf_writer_free(slm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv);
    free(w);
}

void slm_gguf_writer_set_version(slm_gguf_writer *w, uint32_t version) { w->version = version; }

void slm_gguf_writer_skip(slm_gguf_writer *w, const char *const *keys, size_t n_keys, const char *const *tensors,
                          size_t n_tensors) {
    w->skip_keys = keys;
    w->n_skip_keys = keys ? n_keys : 0;
    w->skip_tensors = tensors;
    w->n_skip_tensors = tensors ? n_tensors : 0;
}

slm_status slm_gguf_writer_add_scalar(slm_gguf_writer *w, const char *key, slm_gguf_type type, const void *value) {
    if (type == SLM_GGUF_STRING) return slm_gguf_writer_add_str(w, key, (const char *)value);
    size_t n = slm_gguf_scalar_size(type);
    if (!n) return sticky(w, SLM_ERR_INVALID_ARG, "add_scalar needs a fixed-size type", key);
    if (!begin_kv(w, key, type, n)) return w->status;
    uint64_t bits = scalar_bits(type, value);
    put_le(w, bits, (int)n);
    note_alignment(w, key, type, bits);
    return SLM_OK;
}

slm_status slm_gguf_writer_add_u32(slm_gguf_writer *w, const char *key, uint32_t v) {
    return slm_gguf_writer_add_scalar(w, key, SLM_GGUF_UINT32, &v);
}
slm_status slm_gguf_writer_add_i32(slm_gguf_writer *w, const char *key, int32_t v) {
    return slm_gguf_writer_add_scalar(w, key, SLM_GGUF_INT32, &v);
}
slm_status slm_gguf_writer_add_u64(slm_gguf_writer *w, const char *key, uint64_t v) {
    return slm_gguf_writer_add_scalar(w, key, SLM_GGUF_UINT64, &v);
}
slm_status slm_gguf_writer_add_f32(slm_gguf_writer *w, const char *key, float v) {
    return slm_gguf_writer_add_scalar(w, key, SLM_GGUF_FLOAT32, &v);
}
slm_status slm_gguf_writer_add_bool(slm_gguf_writer *w, const char *key, bool v) {
    return slm_gguf_writer_add_scalar(w, key, SLM_GGUF_BOOL, &v);
}

slm_status slm_gguf_writer_add_str(slm_gguf_writer *w, const char *key, const char *v) {
    if (!v) return sticky(w, SLM_ERR_INVALID_ARG, "NULL string value", key);
    size_t n = strlen(v);
    if (!begin_kv(w, key, SLM_GGUF_STRING, 8 + n)) return w->status;
    put_le(w, n, 8);
    put(w, v, n);
    return SLM_OK;
}

slm_status slm_gguf_writer_add_arr(slm_gguf_writer *w, const char *key, slm_gguf_type elem, const void *values,
                                   uint64_t n) {
    size_t es = slm_gguf_scalar_size(elem);
    if (!es) return sticky(w, SLM_ERR_INVALID_ARG, "add_arr needs a fixed-size element type", key);
    if (n && !values) return sticky(w, SLM_ERR_INVALID_ARG, "NULL array values", key);
    if (n > SIZE_MAX / 16) return sticky(w, SLM_ERR_NOMEM, "array too large", key);
    if (!begin_kv(w, key, SLM_GGUF_ARRAY, 12 + (size_t)n * es)) return w->status;
    put_le(w, (uint32_t)elem, 4);
    put_le(w, n, 8);
    /* C arrays of bool need not be 1 byte per element: convert each. */
    for (uint64_t i = 0; i < n; i++)
        put_le(w, scalar_bits(elem, (const uint8_t *)values + i * (elem == SLM_GGUF_BOOL ? sizeof(bool) : es)),
               (int)es);
    return SLM_OK;
}

slm_status slm_gguf_writer_add_arr_i32(slm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    return slm_gguf_writer_add_arr(w, key, SLM_GGUF_INT32, v, n);
}
slm_status slm_gguf_writer_add_arr_f32(slm_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    return slm_gguf_writer_add_arr(w, key, SLM_GGUF_FLOAT32, v, n);
}

slm_status slm_gguf_writer_add_arr_str(slm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    if (n && !strs) return sticky(w, SLM_ERR_INVALID_ARG, "NULL string array", key);
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) return sticky(w, SLM_ERR_INVALID_ARG, "NULL string in array", key);
        size_t l = strlen(strs[i]);
        if (l > SIZE_MAX / 4 - total) return sticky(w, SLM_ERR_NOMEM, "array too large", key);
        total += 8 + l;
    }
    if (!begin_kv(w, key, SLM_GGUF_ARRAY, total)) return w->status;
    put_le(w, SLM_GGUF_STRING, 4);
    put_le(w, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        size_t l = strlen(strs[i]);
        put_le(w, l, 8);
        put(w, strs[i], l);
    }
    return SLM_OK;
}

slm_status slm_gguf_writer_add_raw(slm_gguf_writer *w, const char *key, slm_gguf_type type, const void *bytes,
                                   size_t len) {
    if (len && !bytes) return sticky(w, SLM_ERR_INVALID_ARG, "NULL raw value", key);
    if (!begin_kv(w, key, type, len)) return w->status;
    put(w, bytes, len);
    return SLM_OK;
}

slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                      const int64_t *ne, const void *data, size_t size) {
    if (w->status) return w->status;
    if (!name || n_dims < 1 || n_dims > 4 || !ne)
        return sticky(w, SLM_ERR_INVALID_ARG, "tensor needs a name and 1..4 dims", name);
    if (listed(w->skip_tensors, w->n_skip_tensors, name)) return SLM_OK;
    if (!size) {
        const slm_dtype_info *ti = slm_dtype_get(type);
        if (!ti) return sticky(w, SLM_ERR_INVALID_ARG, "tensor of an unknown type needs an explicit size", name);
        uint64_t rows = 1, bytes;
        bool ovf = false;
        for (int d = 1; d < n_dims; d++) ovf |= ne[d] < 1 || __builtin_mul_overflow(rows, (uint64_t)ne[d], &rows);
        size_t row = slm_dtype_row_bytes((slm_dtype)type, ne[0]);
        ovf |= !row || __builtin_mul_overflow((uint64_t)row, rows, &bytes) || bytes > SIZE_MAX / 2;
        if (ovf) return sticky(w, SLM_ERR_INVALID_ARG, "tensor shape does not fit its type's blocks", name);
        size = (size_t)bytes;
    }
    if (w->n_tensors == w->tensors_cap) {
        size_t cap = w->tensors_cap ? 2 * w->tensors_cap : 16;
        wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p) return sticky(w, SLM_ERR_NOMEM, "out of memory", name);
        w->tensors = p;
        w->tensors_cap = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return sticky(w, SLM_ERR_NOMEM, "out of memory", name);
    t->type = type;
    t->n_dims = (uint32_t)n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->size = size;
    w->n_tensors++;
    return SLM_OK;
}

/* ---- output ---- */

typedef struct sink {
    FILE *f;      /* or */
    uint8_t *buf; /* exactly sized in advance */
    size_t len;
    bool failed;
} sink;

static void emit(sink *s, const void *p, size_t n) {
    if (s->failed || !n) return;
    if (s->f) {
        if (fwrite(p, 1, n, s->f) != n) s->failed = true;
    } else {
        memcpy(s->buf + s->len, p, n);
    }
    s->len += n;
}

static void emit_le(sink *s, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    emit(s, b, (size_t)n);
}

static void emit_zeros(sink *s, size_t n) {
    static const uint8_t z[256];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        emit(s, z, k);
        n -= k;
    }
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static size_t header_bytes(const slm_gguf_writer *w) {
    size_t n = 4 + 4 + 8 + 8 + w->kv_len;
    for (size_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8 * w->tensors[i].n_dims + 4 + 8;
    return n;
}

/* Total bytes of the file, or 0 on overflow. */
static size_t total_bytes(const slm_gguf_writer *w) {
    size_t a = (size_t)w->alignment, off = align_up(header_bytes(w), a);
    for (size_t i = 0; i < w->n_tensors; i++) {
        size_t sz = align_up(w->tensors[i].size, a);
        if (sz < w->tensors[i].size || sz > SIZE_MAX - off) return 0;
        off += sz;
    }
    return off;
}

static void emit_all(const slm_gguf_writer *w, sink *s) {
    size_t a = (size_t)w->alignment;
    emit(s, "GGUF", 4);
    emit_le(s, w->version, 4);
    emit_le(s, w->n_tensors, 8);
    emit_le(s, w->n_kv, 8);
    emit(s, w->kv, w->kv_len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        size_t nl = strlen(t->name);
        emit_le(s, nl, 8);
        emit(s, t->name, nl);
        emit_le(s, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) emit_le(s, (uint64_t)t->ne[d], 8);
        emit_le(s, t->type, 4);
        emit_le(s, off, 8);
        off += align_up(t->size, a);
    }
    emit_zeros(s, align_up(s->len, a) - s->len);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) emit(s, t->data, t->size);
        else emit_zeros(s, t->size);
        emit_zeros(s, align_up(t->size, a) - t->size);
    }
}

slm_status slm_gguf_writer_write_file(const slm_gguf_writer *w, FILE *f, slm_error *err) {
    if (w->status) return slm_fail(err, w->status, "%s", w->msg);
    sink s = {.f = f};
    emit_all(w, &s);
    if (s.failed || fflush(f) != 0) return slm_fail(err, SLM_ERR_IO, "gguf writer: write failed: %s", strerror(errno));
    return SLM_OK;
}

slm_status slm_gguf_writer_write_path(const slm_gguf_writer *w, const char *path, slm_error *err) {
    if (w->status) return slm_fail(err, w->status, "%s", w->msg);
    FILE *f = fopen(path, "wb");
    if (!f) return slm_fail(err, SLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    slm_status st = slm_gguf_writer_write_file(w, f, err);
    if (fclose(f) != 0 && !st) st = slm_fail(err, SLM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

slm_status slm_gguf_writer_write_memory(const slm_gguf_writer *w, void **out, size_t *size, slm_error *err) {
    *out = NULL;
    *size = 0;
    if (w->status) return slm_fail(err, w->status, "%s", w->msg);
    size_t n = total_bytes(w);
    if (!n) return slm_fail(err, SLM_ERR_NOMEM, "gguf writer: file size overflows");
    sink s = {.buf = malloc(n)};
    if (!s.buf) return slm_fail(err, SLM_ERR_NOMEM, "gguf writer: out of memory for %zu bytes", n);
    emit_all(w, &s);
    *out = s.buf;
    *size = s.len;
    return SLM_OK;
}
