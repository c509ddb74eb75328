/* The device-generic op harness (interface and use in op_harness.h), compiled once into the slm_op_harness
 * library that the op tests link.
 *
 * CHECK here counts in this file's copy of slm_test_failures (test_util.h keeps one per translation unit),
 * which no test reads: every failure here also counts in h->n_fail, and slm_harness_finish, inline in the
 * test's own file, adds h->n_fail to the test's counter. */
#include "op_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops_ref.h"
#include "quant_ref.h"

void slm_harness_init(slm_harness *h, slm_device *dev) {
    memset(h, 0, sizeof *h);
    h->dev = dev;
    h->seed = 0x5eedf00dULL;
    h->offset = SLM_HARNESS_OFFSET;
    h->require_all = true;
    h->verbose = getenv("SLM_TEST_VERBOSE") != NULL;
    h->tol_matmul_float = 1e-5;
    h->tol_matmul_quant = 2e-4; /* room for 8-bit activation quantization on the CPU */
    h->tol_f32 = 1e-5;
    /* angles in double as the reference: only the rounding of the outputs to float differs (NMSE ~1e-15) */
    h->tol_rope_long = 1e-12;
    h->tol_kv = 1e-6;
    h->tol_attn = 1e-4;
}

static double slm_harness_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- buffers ---------------------------------------------------------------------------------------- */

bool slm_harness_alloc(slm_harness *h, slm_harness_buf *b, const void *data, size_t bytes) {
    slm_error err = {{0}};
    memset(b, 0, sizeof *b);
    size_t total = bytes + h->offset + 64;
    if (slm_buffer_alloc(h->dev, total, &b->buf, &err)) {
        fprintf(stderr, "harness: alloc of %zu bytes failed: %s\n", total, err.msg);
        return false;
    }
    b->live = true;
    if (data && slm_buffer_upload(&b->buf, h->offset, data, bytes, &err)) {
        fprintf(stderr, "harness: upload of %zu bytes failed: %s\n", bytes, err.msg);
        return false;
    }
    return true;
}

void slm_harness_free(slm_harness *h, slm_harness_buf *b) {
    if (b->live) slm_buffer_release(&b->buf);
    b->live = false;
}

bool slm_harness_download(slm_harness *h, slm_harness_buf *b, void *out, size_t bytes) {
    slm_error err = {{0}};
    if (slm_buffer_download(&b->buf, h->offset, out, bytes, &err)) {
        fprintf(stderr, "harness: download failed: %s\n", err.msg);
        return false;
    }
    return true;
}

bool slm_harness_exec(slm_harness *h, const slm_op *ops, int n, const char *what) {
    slm_error err = {{0}};
    for (int i = 0; i < n; i++) {
        if (!slm_device_supports(h->dev, &ops[i])) {
            if (h->require_all) {
                CHECK(0, "%s: %s reports op %s unsupported", what, h->dev->name, slm_op_kind_name(ops[i].kind));
                h->n_fail++;
            } else {
                printf("  skip %s (unsupported)\n", what);
                h->n_skip++;
            }
            return false;
        }
    }
    double t0 = slm_harness_now();
    slm_status s = slm_device_run(h->dev, ops, n, &err);
    if (!s) s = slm_device_sync(h->dev, &err);
    double dt = slm_harness_now() - t0;
    if (s) {
        CHECK(0, "%s: run failed: %s: %s", what, slm_status_name(s), err.msg);
        h->n_fail++;
        return false;
    }
    if (n == 1) {
        h->op_seconds[ops[0].kind] += dt;
        h->op_count[ops[0].kind]++;
    }
    return true;
}

void slm_harness_judge(slm_harness *h, const char *what, const float *got, const float *want, int64_t n, double tol) {
    double e = slm_test_nmse(got, want, n);
    bool ok = e <= tol && e == e;
    for (int64_t i = 0; i < n && ok; i++) ok = got[i] == got[i]; /* no NaN */
    if (h->verbose || !ok) printf("  %-52s nmse %.3g (limit %.1g) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    CHECK(ok, "%s: nmse %g > %g", what, e, tol);
    if (ok) h->n_pass++;
    else h->n_fail++;
}

uint64_t *slm_harness_rng(slm_harness *h) { return &h->seed; }

void *slm_harness_weights(slm_harness *h, slm_dtype t, int64_t K, int64_t N, size_t *row_bytes) {
    *row_bytes = slm_dtype_row_bytes(t, K);
    uint8_t *w = malloc(*row_bytes * (size_t)N);
    float *row = malloc(sizeof(float) * (size_t)K);
    for (int64_t r = 0; r < N; r++) {
        /* varied row magnitudes so per-block scales differ */
        slm_test_fill(row, K, slm_harness_rng(h), 0.5f + (float)(r % 7) * 0.25f);
        uint8_t *dst = w + (size_t)r * *row_bytes;
        if (t == SLM_F32) {
            memcpy(dst, row, sizeof(float) * (size_t)K);
        } else if (t == SLM_F16) {
            for (int64_t i = 0; i < K; i++) ((uint16_t *)dst)[i] = slm_f32_to_f16(row[i]);
        } else if (t == SLM_BF16) {
            for (int64_t i = 0; i < K; i++) {
                uint32_t u;
                memcpy(&u, &row[i], 4);
                ((uint16_t *)dst)[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
            }
        } else {
            slm_ref_quantize_row(t, row, dst, K);
        }
    }
    free(row);
    return w;
}

/* ---- one check per op kind --------------------------------------------------------------------------- */

/* Column x of width T as the device will multiply it (a copy in *buf, or x itself). */
static const float *ref_act(const slm_harness *h, slm_dtype t, const float *x, int64_t K, int64_t T, float *buf) {
    if (!h->matmul_act) return x;
    memcpy(buf, x, sizeof(float) * (size_t)K);
    h->matmul_act(t, K, T, buf);
    return buf;
}

void slm_harness_matmul(slm_harness *h, slm_dtype t, int64_t K, int64_t N, int64_t T, bool bias) {
    slm_harness_matmul_ex(h, t, K, N, T, bias, NULL);
}

void slm_harness_matmul_ex(slm_harness *h, slm_dtype t, int64_t K, int64_t N, int64_t T, bool bias,
                           const slm_harness_matmul_opts *o) {
    static const slm_harness_matmul_opts plain = {0};
    if (!o) o = &plain;
    char what[160];
    snprintf(what, sizeof what, "%s %s K=%lld N=%lld T=%lld%s", o->label ? o->label : "matmul", slm_dtype_name(t),
             (long long)K, (long long)N, (long long)T, bias ? " +bias" : "");
    size_t rb;
    void *w = slm_harness_weights(h, t, K, N, &rb);
    float *x = malloc(sizeof(float) * (size_t)(K * T)), *b = malloc(sizeof(float) * (size_t)N);
    float *got = malloc(sizeof(float) * (size_t)(N * T)), *want = malloc(sizeof(float) * (size_t)(N * T));
    slm_test_fill(x, K * T, slm_harness_rng(h), 1.0f);
    slm_test_fill(b, N, slm_harness_rng(h), 1.0f);
    if (o->shape_x) o->shape_x(x, K, T);
    slm_harness_buf bw, bx, bb, by;
    bool ok = slm_harness_alloc(h, &bw, w, rb * (size_t)N) &&
        slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)(K * T)) &&
        slm_harness_alloc(h, &bb, b, sizeof(float) * (size_t)N) &&
        slm_harness_alloc(h, &by, NULL, sizeof(float) * (size_t)(N * T));
    if (ok) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_MATMUL;
        op.name = "harness_matmul";
        op.dst = slm_tensor_make(&by.buf, h->offset, SLM_F32, N, T, 1, 1);
        op.src[0] = slm_tensor_make(&bw.buf, h->offset, t, K, N, 1, 1);
        op.src[1] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, K, T, 1, 1);
        if (bias) op.src[2] = slm_tensor_make(&bb.buf, h->offset, SLM_F32, N, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &by, got, sizeof(float) * (size_t)(N * T))) {
            float *xa = malloc(sizeof(float) * (size_t)K);
            for (int64_t c = 0; c < T; c++) {
                const float *xc = ref_act(h, t, x + c * K, K, T, xa);
                for (int64_t r = 0; r < N; r++)
                    want[c * N + r] = slm_ref_dot_row(t, (uint8_t *)w + (size_t)r * rb, xc, K) + (bias ? b[r] : 0.0f);
            }
            free(xa);
            bool is_float = t == SLM_F32 || t == SLM_F16 || t == SLM_BF16;
            double tol = o->tol > 0 ? o->tol : is_float ? h->tol_matmul_float : h->tol_matmul_quant;
            if (o->per_column) {
                int64_t n_inf = 0;
                for (int64_t i = 0; i < N * T; i++) n_inf += !isfinite(got[i]);
                CHECK(n_inf == 0, "%s: %lld outputs not finite", what, (long long)n_inf);
                for (int64_t c = 0; c < T; c++) {
                    char col[200];
                    snprintf(col, sizeof col, "%s column %lld", what, (long long)c);
                    slm_harness_judge(h, col, got + c * N, want + c * N, N, tol);
                }
            } else {
                slm_harness_judge(h, what, got, want, N * T, tol);
            }
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bw);
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bb);
    slm_harness_free(h, &by);
    free(w);
    free(x);
    free(b);
    free(got);
    free(want);
}

static void embed_check(slm_harness *h, slm_dtype t, int64_t n_embd, int64_t n_vocab, int64_t T, float scale) {
    char what[128];
    snprintf(what, sizeof what, "embed %s n_embd=%lld n_vocab=%lld T=%lld scale=%g", slm_dtype_name(t),
             (long long)n_embd, (long long)n_vocab, (long long)T, scale);
    size_t rb;
    void *w = slm_harness_weights(h, t, n_embd, n_vocab, &rb);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)(slm_test_rand(slm_harness_rng(h)) % (uint64_t)n_vocab);
    ids[T - 1] = (int32_t)(n_vocab - 1); /* the last row too */
    float *got = malloc(sizeof(float) * (size_t)(n_embd * T)), *want = malloc(sizeof(float) * (size_t)(n_embd * T));
    slm_harness_buf bw, bi, by;
    bool ok = slm_harness_alloc(h, &bw, w, rb * (size_t)n_vocab) &&
        slm_harness_alloc(h, &bi, ids, sizeof(int32_t) * (size_t)T) &&
        slm_harness_alloc(h, &by, NULL, sizeof(float) * (size_t)(n_embd * T));
    if (ok) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_EMBED;
        op.name = "harness_embed";
        op.dst = slm_tensor_make(&by.buf, h->offset, SLM_F32, n_embd, T, 1, 1);
        op.src[0] = slm_tensor_make(&bw.buf, h->offset, t, n_embd, n_vocab, 1, 1);
        op.src[1] = slm_tensor_make(&bi.buf, h->offset, SLM_I32, T, 1, 1, 1);
        op.p.embed.scale = scale;
        if (slm_harness_exec(h, &op, 1, what) &&
            slm_harness_download(h, &by, got, sizeof(float) * (size_t)(n_embd * T))) {
            for (int64_t i = 0; i < T; i++)
                slm_ref_dequant_row(t, (uint8_t *)w + (size_t)ids[i] * rb, want + i * n_embd, n_embd);
            for (int64_t i = 0; i < n_embd * T; i++) want[i] *= scale;
            slm_harness_judge(h, what, got, want, n_embd * T, h->tol_f32);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bw);
    slm_harness_free(h, &bi);
    slm_harness_free(h, &by);
    free(w);
    free(ids);
    free(got);
    free(want);
}

void slm_harness_embed(slm_harness *h, slm_dtype t, int64_t n_embd, int64_t n_vocab, int64_t T) {
    embed_check(h, t, n_embd, n_vocab, T, 1.0f);
}

void slm_harness_embed_scaled(slm_harness *h, slm_dtype t, int64_t n_embd, int64_t n_vocab, int64_t T, float scale) {
    embed_check(h, t, n_embd, n_vocab, T, scale);
}

void slm_harness_rmsnorm(slm_harness *h, int64_t n, int64_t T) {
    char what[128];
    snprintf(what, sizeof what, "rmsnorm n=%lld T=%lld", (long long)n, (long long)T);
    float *x = malloc(sizeof(float) * (size_t)(n * T)), *w = malloc(sizeof(float) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)(n * T)), *want = malloc(sizeof(float) * (size_t)(n * T));
    slm_test_fill(x, n * T, slm_harness_rng(h), 3.0f);
    slm_test_fill(w, n, slm_harness_rng(h), 1.0f);
    slm_harness_buf bx, bw, by;
    if (slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)(n * T)) &&
        slm_harness_alloc(h, &bw, w, sizeof(float) * (size_t)n) &&
        slm_harness_alloc(h, &by, NULL, sizeof(float) * (size_t)(n * T))) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_RMSNORM;
        op.name = "harness_rmsnorm";
        op.p.norm.eps = 1e-5f;
        op.dst = slm_tensor_make(&by.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.src[0] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.src[1] = slm_tensor_make(&bw.buf, h->offset, SLM_F32, n, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &by, got, sizeof(float) * (size_t)(n * T))) {
            for (int64_t t = 0; t < T; t++) slm_ref_rmsnorm(x + t * n, w, want + t * n, (int)n, op.p.norm.eps);
            slm_harness_judge(h, what, got, want, n * T, h->tol_f32);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bw);
    slm_harness_free(h, &by);
    free(x);
    free(w);
    free(got);
    free(want);
}

void slm_harness_rmsnorm_heads(slm_harness *h, int64_t hd, int64_t n_head, int64_t T) {
    char what[128];
    snprintf(what, sizeof what, "rmsnorm in place per head hd=%lld heads=%lld T=%lld", (long long)hd, (long long)n_head,
             (long long)T);
    int64_t n = hd * n_head * T;
    float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)hd);
    float *got = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
    slm_test_fill(x, n, slm_harness_rng(h), 3.0f);
    slm_test_fill(w, hd, slm_harness_rng(h), 1.0f);
    slm_harness_buf bx, bw;
    if (slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)n) &&
        slm_harness_alloc(h, &bw, w, sizeof(float) * (size_t)hd)) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_RMSNORM;
        op.name = "harness_rmsnorm_heads";
        op.p.norm.eps = 1e-6f;
        /* the graph's view: the activation [hd*n_head, T] read as columns of one head */
        op.dst = op.src[0] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, hd, n_head * T, 1, 1);
        op.src[1] = slm_tensor_make(&bw.buf, h->offset, SLM_F32, hd, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &bx, got, sizeof(float) * (size_t)n)) {
            for (int64_t c = 0; c < n_head * T; c++) slm_ref_rmsnorm(x + c * hd, w, want + c * hd, (int)hd, 1e-6f);
            slm_harness_judge(h, what, got, want, n, h->tol_f32);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bw);
    free(x);
    free(w);
    free(got);
    free(want);
}

static void rope_check(slm_harness *h, int hd, int n_head, int64_t T, int n_rot, bool neox, bool factors, int pos0,
                       double tol) {
    char what[128];
    snprintf(what, sizeof what, "rope %s hd=%d heads=%d T=%lld n_rot=%d pos0=%d%s", neox ? "neox" : "norm", hd, n_head,
             (long long)T, n_rot, pos0, factors ? " +factors" : "");
    int64_t n = (int64_t)hd * n_head * T;
    float *x = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
    float *ff = malloc(sizeof(float) * (size_t)(n_rot / 2 + 1));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    slm_test_fill(x, n, slm_harness_rng(h), 2.0f);
    for (int i = 0; i < n_rot / 2; i++) ff[i] = 1.0f + (float)i * 0.37f;
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + (int32_t)t * 7;
    slm_harness_buf bx, bp, bf;
    if (slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)n) &&
        slm_harness_alloc(h, &bp, pos, sizeof(int32_t) * (size_t)T) &&
        slm_harness_alloc(h, &bf, ff, sizeof(float) * (size_t)(n_rot / 2))) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_ROPE;
        op.name = "harness_rope";
        op.p.rope.n_rot = n_rot;
        op.p.rope.neox = neox;
        op.p.rope.freq_base = 10000.0f;
        op.p.rope.freq_scale = 0.5f;
        op.dst = slm_tensor_make(&bx.buf, h->offset, SLM_F32, hd, n_head, T, 1);
        op.src[0] = op.dst;
        op.src[1] = slm_tensor_make(&bp.buf, h->offset, SLM_I32, T, 1, 1, 1);
        if (factors) op.src[2] = slm_tensor_make(&bf.buf, h->offset, SLM_F32, n_rot / 2, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &bx, got, sizeof(float) * (size_t)n)) {
            for (int64_t t = 0; t < T; t++)
                for (int hh = 0; hh < n_head; hh++)
                    slm_ref_rope(x + (t * n_head + hh) * hd, n_rot, pos[t], op.p.rope.freq_base, op.p.rope.freq_scale,
                                 factors ? ff : NULL, neox);
            slm_harness_judge(h, what, got, x, n, tol);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bp);
    slm_harness_free(h, &bf);
    free(x);
    free(got);
    free(ff);
    free(pos);
}

void slm_harness_rope(slm_harness *h, int hd, int n_head, int64_t T, int n_rot, bool neox, bool factors, int pos0) {
    rope_check(h, hd, n_head, T, n_rot, neox, factors, pos0, h->tol_f32);
}

void slm_harness_kv_write(slm_harness *h, int64_t n, int64_t n_ctx, int64_t T, int pos0, int64_t pad) {
    char what[128];
    snprintf(what, sizeof what, "kv_write n=%lld n_ctx=%lld T=%lld pos0=%d pad=%lld", (long long)n, (long long)n_ctx,
             (long long)T, pos0, (long long)pad);
    const int64_t ld = n + pad, ne = ld * n_ctx;
    float *x = malloc(sizeof(float) * (size_t)(n * T));
    uint16_t *cache = malloc(2 * (size_t)ne), *back = malloc(2 * (size_t)ne);
    float *got = malloc(sizeof(float) * (size_t)ne), *want = malloc(sizeof(float) * (size_t)ne);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    slm_test_fill(x, n * T, slm_harness_rng(h), 4.0f);
    for (int64_t i = 0; i < ne; i++) cache[i] = slm_f32_to_f16(slm_test_randf(slm_harness_rng(h)));
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + (int32_t)t;
    slm_harness_buf bx, bc, bp;
    if (slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)(n * T)) &&
        slm_harness_alloc(h, &bc, cache, 2 * (size_t)ne) &&
        slm_harness_alloc(h, &bp, pos, sizeof(int32_t) * (size_t)T)) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_KV_WRITE;
        op.name = "harness_kv_write";
        op.dst = slm_tensor_make(&bc.buf, h->offset, SLM_F16, n, n_ctx, 1, 1);
        op.dst.nb[1] = 2 * (size_t)ld;
        op.dst.nb[2] = op.dst.nb[3] = op.dst.nb[1] * (size_t)n_ctx;
        op.src[0] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.src[1] = slm_tensor_make(&bp.buf, h->offset, SLM_I32, T, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &bc, back, 2 * (size_t)ne)) {
            for (int64_t i = 0; i < ne; i++) {
                got[i] = slm_f16_to_f32(back[i]);
                want[i] = slm_f16_to_f32(cache[i]);
            }
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < n; i++) want[pos[t] * ld + i] = slm_f16_to_f32(slm_f32_to_f16(x[t * n + i]));
            slm_harness_judge(h, what, got, want, ne, h->tol_kv);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bc);
    slm_harness_free(h, &bp);
    free(x);
    free(cache);
    free(back);
    free(got);
    free(want);
    free(pos);
}

static void attention_check(slm_harness *h, const char *what, int hd, int n_head, int n_head_kv, int64_t n_ctx,
                            int64_t T, const int32_t *pos_in, int64_t pad, int window) {
    int64_t nq = (int64_t)hd * n_head, nkv = (int64_t)hd * n_head_kv, ld = nkv + pad;
    float *q = malloc(sizeof(float) * (size_t)(nq * T));
    uint16_t *k = malloc(2 * (size_t)(nkv * n_ctx)), *v = malloc(2 * (size_t)(nkv * n_ctx));
    uint16_t *kd = malloc(2 * (size_t)(ld * n_ctx)), *vd = malloc(2 * (size_t)(ld * n_ctx));
    float *got = malloc(sizeof(float) * (size_t)(nq * T)), *want = malloc(sizeof(float) * (size_t)(nq * T));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    slm_test_fill(q, nq * T, slm_harness_rng(h), 1.0f);
    for (int64_t i = 0; i < nkv * n_ctx; i++) {
        k[i] = slm_f32_to_f16(slm_test_randf(slm_harness_rng(h)) * 2.0f);
        v[i] = slm_f32_to_f16(slm_test_randf(slm_harness_rng(h)));
    }
    for (int64_t r = 0; r < n_ctx; r++)
        for (int64_t i = 0; i < ld; i++) {
            kd[r * ld + i] = i < nkv ? k[r * nkv + i] : 0x7e00; /* f16 NaN */
            vd[r * ld + i] = i < nkv ? v[r * nkv + i] : 0x7e00;
        }
    memcpy(pos, pos_in, sizeof(int32_t) * (size_t)T);
    slm_harness_buf bq, bk, bv, bp, bo;
    if (slm_harness_alloc(h, &bq, q, sizeof(float) * (size_t)(nq * T)) &&
        slm_harness_alloc(h, &bk, kd, 2 * (size_t)(ld * n_ctx)) &&
        slm_harness_alloc(h, &bv, vd, 2 * (size_t)(ld * n_ctx)) &&
        slm_harness_alloc(h, &bp, pos, sizeof(int32_t) * (size_t)T) &&
        slm_harness_alloc(h, &bo, NULL, sizeof(float) * (size_t)(nq * T))) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_ATTENTION;
        op.name = "harness_attention";
        op.p.attn.n_head = n_head;
        op.p.attn.n_head_kv = n_head_kv;
        op.p.attn.head_dim = hd;
        op.p.attn.scale = 1.0f / sqrtf((float)hd);
        op.p.attn.window = window;
        op.dst = slm_tensor_make(&bo.buf, h->offset, SLM_F32, nq, T, 1, 1);
        op.src[0] = slm_tensor_make(&bq.buf, h->offset, SLM_F32, nq, T, 1, 1);
        op.src[1] = slm_tensor_make(&bk.buf, h->offset, SLM_F16, nkv, n_ctx, 1, 1);
        op.src[2] = slm_tensor_make(&bv.buf, h->offset, SLM_F16, nkv, n_ctx, 1, 1);
        for (int j = 1; j <= 2; j++) {
            op.src[j].nb[1] = 2 * (size_t)ld;
            op.src[j].nb[2] = op.src[j].nb[3] = op.src[j].nb[1] * (size_t)n_ctx;
        }
        op.src[3] = slm_tensor_make(&bp.buf, h->offset, SLM_I32, T, 1, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &bo, got, sizeof(float) * (size_t)(nq * T))) {
            memset(want, 0, sizeof(float) * (size_t)(nq * T)); /* a token at pos < 0 sees nothing: 0 */
            for (int64_t t = 0; t < T; t++)
                slm_ref_attention_window(q + t * nq, k, v, want + t * nq, hd, n_head, n_head_kv,
                                         pos[t] < n_ctx ? pos[t] : (int)(n_ctx - 1), window, op.p.attn.scale);
            slm_harness_judge(h, what, got, want, nq * T, h->tol_attn);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bq);
    slm_harness_free(h, &bk);
    slm_harness_free(h, &bv);
    slm_harness_free(h, &bp);
    slm_harness_free(h, &bo);
    free(q);
    free(k);
    free(v);
    free(kd);
    free(vd);
    free(got);
    free(want);
    free(pos);
}

void slm_harness_attention(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T, int pos0,
                           int64_t pad) {
    char what[128];
    snprintf(what, sizeof what, "attention hd=%d heads=%d/%d n_ctx=%lld T=%lld pos0=%d pad=%lld", hd, n_head, n_head_kv,
             (long long)n_ctx, (long long)T, pos0, (long long)pad);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + (int32_t)t;
    attention_check(h, what, hd, n_head, n_head_kv, n_ctx, T, pos, pad, 0);
    free(pos);
}

void slm_harness_attention_window(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T, int pos0,
                                  int64_t pad, int window) {
    char what[160];
    snprintf(what, sizeof what, "attention hd=%d heads=%d/%d n_ctx=%lld T=%lld pos0=%d pad=%lld window=%d", hd, n_head,
             n_head_kv, (long long)n_ctx, (long long)T, pos0, (long long)pad, window);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + (int32_t)t;
    attention_check(h, what, hd, n_head, n_head_kv, n_ctx, T, pos, pad, window);
    free(pos);
}

void slm_harness_attention_pos(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T,
                               const int32_t *pos, int64_t pad, const char *label) {
    char what[160];
    snprintf(what, sizeof what, "attention hd=%d heads=%d/%d n_ctx=%lld T=%lld pad=%lld %s", hd, n_head, n_head_kv,
             (long long)n_ctx, (long long)T, (long long)pad, label);
    attention_check(h, what, hd, n_head, n_head_kv, n_ctx, T, pos, pad, 0);
}

void slm_harness_eltwise(slm_harness *h, slm_op_kind kind, int64_t n, int64_t T) {
    char what[128];
    snprintf(what, sizeof what, "%s n=%lld T=%lld", slm_op_kind_name(kind), (long long)n, (long long)T);
    int64_t ne = n * T;
    float *a = malloc(sizeof(float) * (size_t)ne), *b = malloc(sizeof(float) * (size_t)ne);
    float *got = malloc(sizeof(float) * (size_t)ne), *want = malloc(sizeof(float) * (size_t)ne);
    slm_test_fill(a, ne, slm_harness_rng(h), 4.0f);
    slm_test_fill(b, ne, slm_harness_rng(h), 2.0f);
    slm_harness_buf ba, bb, by;
    if (slm_harness_alloc(h, &ba, a, sizeof(float) * (size_t)ne) &&
        slm_harness_alloc(h, &bb, b, sizeof(float) * (size_t)ne) &&
        slm_harness_alloc(h, &by, NULL, sizeof(float) * (size_t)ne)) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = kind;
        op.name = "harness_eltwise";
        op.src[0] = slm_tensor_make(&ba.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.src[1] = slm_tensor_make(&bb.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.dst = kind == SLM_OP_ADD ? op.src[0] : slm_tensor_make(&by.buf, h->offset, SLM_F32, n, T, 1, 1);
        slm_harness_buf *out = kind == SLM_OP_ADD ? &ba : &by;
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, out, got, sizeof(float) * (size_t)ne)) {
            if (kind == SLM_OP_ADD) {
                for (int64_t i = 0; i < ne; i++) want[i] = a[i] + b[i];
            } else if (kind == SLM_OP_GEGLU) {
                for (int64_t t = 0; t < T; t++) slm_ref_geglu(a + t * n, b + t * n, want + t * n, (int)n);
            } else {
                for (int64_t t = 0; t < T; t++) slm_ref_swiglu(a + t * n, b + t * n, want + t * n, (int)n);
            }
            slm_harness_judge(h, what, got, want, ne, h->tol_f32);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &ba);
    slm_harness_free(h, &bb);
    slm_harness_free(h, &by);
    free(a);
    free(b);
    free(got);
    free(want);
}

void slm_harness_chain(slm_harness *h, slm_dtype t, int64_t n, int64_t T) {
    char what[128];
    snprintf(what, sizeof what, "chain rmsnorm>matmul>add>swiglu>matmul>add %s n=%lld T=%lld", slm_dtype_name(t),
             (long long)n, (long long)T);
    size_t rb;
    void *w = slm_harness_weights(h, t, n, n, &rb);
    int64_t ne = n * T;
    float *x = malloc(sizeof(float) * (size_t)ne), *nw = malloc(sizeof(float) * (size_t)n),
          *bias = malloc(sizeof(float) * (size_t)n);
    float *r_n = malloc(sizeof(float) * (size_t)ne), *r_x = malloc(sizeof(float) * (size_t)ne),
          *r_g = malloc(sizeof(float) * (size_t)ne);
    float *r_x2 = malloc(sizeof(float) * (size_t)ne), *got = malloc(sizeof(float) * (size_t)ne);
    slm_test_fill(x, ne, slm_harness_rng(h), 1.0f);
    slm_test_fill(nw, n, slm_harness_rng(h), 1.0f);
    slm_test_fill(bias, n, slm_harness_rng(h), 0.5f);
    slm_harness_buf bw, bx, bn, bb, bg, bx2;
    if (slm_harness_alloc(h, &bw, w, rb * (size_t)n) && slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)ne) &&
        slm_harness_alloc(h, &bn, nw, sizeof(float) * (size_t)n) &&
        slm_harness_alloc(h, &bb, bias, sizeof(float) * (size_t)n) &&
        slm_harness_alloc(h, &bg, NULL, 2 * sizeof(float) * (size_t)ne) &&
        slm_harness_alloc(h, &bx2, NULL, sizeof(float) * (size_t)ne)) {
        /* bg holds two activations: [n, T] normed at offset 0 and [n, T] gated after it */
        slm_tensor tx = slm_tensor_make(&bx.buf, h->offset, SLM_F32, n, T, 1, 1);
        slm_tensor tn = slm_tensor_make(&bg.buf, h->offset, SLM_F32, n, T, 1, 1);
        slm_tensor tg = slm_tensor_make(&bg.buf, h->offset + sizeof(float) * (size_t)ne, SLM_F32, n, T, 1, 1);
        slm_tensor tx2 = slm_tensor_make(&bx2.buf, h->offset, SLM_F32, n, T, 1, 1);
        slm_tensor tw = slm_tensor_make(&bw.buf, h->offset, t, n, n, 1, 1);
        slm_op ops[6];
        memset(ops, 0, sizeof ops);
        ops[0].kind = SLM_OP_RMSNORM;
        ops[0].p.norm.eps = 1e-6f;
        ops[0].dst = tn;
        ops[0].src[0] = tx;
        ops[0].src[1] = slm_tensor_make(&bn.buf, h->offset, SLM_F32, n, 1, 1, 1);
        ops[1].kind = SLM_OP_MATMUL;
        ops[1].dst = tg;
        ops[1].src[0] = tw;
        ops[1].src[1] = tn;
        ops[1].src[2] = slm_tensor_make(&bb.buf, h->offset, SLM_F32, n, 1, 1, 1);
        ops[2].kind = SLM_OP_ADD;
        ops[2].dst = tx;
        ops[2].src[0] = tx;
        ops[2].src[1] = tg;
        ops[3].kind = SLM_OP_SWIGLU;
        ops[3].dst = tn;
        ops[3].src[0] = tx;
        ops[3].src[1] = tx;
        ops[4].kind = SLM_OP_MATMUL;
        ops[4].dst = tx2;
        ops[4].src[0] = tw;
        ops[4].src[1] = tn;
        ops[5].kind = SLM_OP_ADD;
        ops[5].dst = tx2;
        ops[5].src[0] = tx2;
        ops[5].src[1] = tx;
        for (int i = 0; i < 6; i++) ops[i].name = "harness_chain";
        if (slm_harness_exec(h, ops, 6, what) && slm_harness_download(h, &bx2, got, sizeof(float) * (size_t)ne)) {
            float *xa = malloc(sizeof(float) * (size_t)n);
            for (int64_t c = 0; c < T; c++) {
                float *xc = x + c * n, *nc = r_n + c * n, *xn = r_x + c * n, *gc = r_g + c * n, *x2 = r_x2 + c * n;
                slm_ref_rmsnorm(xc, nw, nc, (int)n, 1e-6f);
                const float *na = ref_act(h, t, nc, n, T, xa);
                for (int64_t r = 0; r < n; r++)
                    xn[r] = xc[r] + slm_ref_dot_row(t, (uint8_t *)w + (size_t)r * rb, na, n) + bias[r];
                slm_ref_swiglu(xn, xn, gc, (int)n);
                const float *ga = ref_act(h, t, gc, n, T, xa);
                for (int64_t r = 0; r < n; r++)
                    x2[r] = slm_ref_dot_row(t, (uint8_t *)w + (size_t)r * rb, ga, n) + xn[r];
            }
            free(xa);
            bool is_float = t == SLM_F32 || t == SLM_F16 || t == SLM_BF16;
            slm_harness_judge(h, what, got, r_x2, ne, 4 * (is_float ? h->tol_matmul_float : h->tol_matmul_quant));
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bw);
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bn);
    slm_harness_free(h, &bb);
    slm_harness_free(h, &bg);
    slm_harness_free(h, &bx2);
    free(w);
    free(x);
    free(nw);
    free(bias);
    free(r_n);
    free(r_x);
    free(r_g);
    free(r_x2);
    free(got);
}

/* ---- the whole suite --------------------------------------------------------------------------------- */

#define SLM_HARNESS_WTYPE_LIST                                                                                         \
    SLM_F32, SLM_F16, SLM_BF16, SLM_Q4_0, SLM_Q4_1, SLM_Q5_0, SLM_Q5_1, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K
/* The header declares the array with SLM_HARNESS_N_WTYPES elements, so a shorter list would be zero-filled. */
_Static_assert(sizeof((slm_dtype[]){SLM_HARNESS_WTYPE_LIST}) / sizeof(slm_dtype) == SLM_HARNESS_N_WTYPES,
               "SLM_HARNESS_N_WTYPES must count the weight types");
const slm_dtype slm_harness_weight_types[SLM_HARNESS_N_WTYPES] = {SLM_HARNESS_WTYPE_LIST};

void slm_harness_run_matmuls(slm_harness *h, slm_dtype t) {
    const slm_dtype_info *ti = slm_dtype_get(t);
    int64_t qb = ti->block_elems;
    if (qb == 1) {
        slm_harness_matmul(h, t, 100, 37, 1, false); /* K not a multiple of 32 */
        slm_harness_matmul(h, t, 576, 130, 1, true);
        slm_harness_matmul(h, t, 333, 65, 7, true);
        slm_harness_matmul(h, t, 64, 1, 1, false);
    } else if (qb == 32) {
        slm_harness_matmul(h, t, 32, 1, 1, false);
        slm_harness_matmul(h, t, 96, 67, 1, false);
        slm_harness_matmul(h, t, 576, 129, 1, true);
        slm_harness_matmul(h, t, 1536, 31, 1, false);
        slm_harness_matmul(h, t, 160, 65, 5, true);
        slm_harness_matmul(h, t, 576, 70, 19, false);
    } else {
        slm_harness_matmul(h, t, 256, 1, 1, false);
        slm_harness_matmul(h, t, 768, 67, 1, true);
        slm_harness_matmul(h, t, 1536, 130, 1, false);
        slm_harness_matmul(h, t, 512, 33, 6, true);
        slm_harness_matmul(h, t, 256, 70, 19, false);
    }
}

void slm_harness_run_batches(slm_harness *h, slm_dtype t) {
    int64_t qb = slm_dtype_get(t)->block_elems;
    if (qb == 1) {
        slm_harness_matmul(h, t, 100, 130, 33, true);
        slm_harness_matmul(h, t, 64, 257, 64, false);
    } else if (qb == 32) {
        slm_harness_matmul(h, t, 160, 130, 37, true);
        slm_harness_matmul(h, t, 96, 300, 64, false);
    } else {
        slm_harness_matmul(h, t, 512, 129, 40, true);
        slm_harness_matmul(h, t, 256, 200, 70, false);
    }
}

void slm_harness_run_all(slm_harness *h) {
    for (int i = 0; i < SLM_HARNESS_N_WTYPES; i++) {
        slm_dtype t = slm_harness_weight_types[i];
        slm_harness_run_matmuls(h, t);
        int64_t qb = slm_dtype_get(t)->block_elems;
        if (!(h->host_only_kinds >> SLM_OP_EMBED & 1))
            slm_harness_embed(h, t, qb == 256 ? 512 : (qb == 32 ? 96 : 70), 300, 5);
    }
    slm_harness_rmsnorm(h, 576, 1);
    slm_harness_rmsnorm(h, 100, 3);
    slm_harness_rmsnorm(h, 4099, 2);
    slm_harness_rmsnorm_heads(h, 128, 16, 1); /* Qwen 3's q heads at decode */
    slm_harness_rmsnorm_heads(h, 64, 3, 5);
    slm_harness_rope(h, 64, 9, 1, 64, false, false, 5);
    slm_harness_rope(h, 64, 9, 3, 64, true, false, 1000);
    slm_harness_rope(h, 128, 3, 4, 96, true, true, 17); /* partial rotation + frequency factors */
    slm_harness_rope(h, 80, 5, 2, 32, false, true, 4000);
    slm_harness_kv_write(h, 192, 40, 1, 17, 0);
    slm_harness_kv_write(h, 130, 64, 9, 3, 0);
    slm_harness_kv_write(h, 512, 50, 3, 20, 32);     /* padded rows, as the KV cache has them */
    slm_harness_attention(h, 64, 4, 2, 32, 1, 0, 0); /* first token: one key */
    slm_harness_attention(h, 64, 9, 3, 128, 1, 100, 0);
    slm_harness_attention(h, 128, 4, 1, 1100, 1, 1030, 0); /* long context at batch 1 */
    slm_harness_attention(h, 96, 6, 2, 2100, 1, 2049, 0);
    slm_harness_attention(h, 64, 4, 4, 96, 9, 40, 0); /* prompt batch, causal */
    slm_harness_attention(h, 128, 2, 1, 300, 13, 0, 0);
    slm_harness_attention(h, 64, 32, 8, 600, 1, 550, 32); /* padded rows (8 kv heads of 64, as Llama 3.2 1B) */
    slm_harness_attention(h, 64, 32, 8, 200, 7, 100, 32);
    slm_harness_eltwise(h, SLM_OP_SWIGLU, 1536, 1);
    slm_harness_eltwise(h, SLM_OP_SWIGLU, 1000, 3);
    slm_harness_eltwise(h, SLM_OP_ADD, 576, 1);
    slm_harness_eltwise(h, SLM_OP_ADD, 77, 5);
    slm_harness_chain(h, SLM_Q4_0, 256, 1);
    slm_harness_chain(h, SLM_Q6_K, 512, 3);
    slm_harness_chain(h, SLM_F32, 96, 2);
    for (int i = 0; i < SLM_HARNESS_N_WTYPES; i++) slm_harness_run_batches(h, slm_harness_weight_types[i]);
}

void slm_harness_run_long_positions(slm_harness *h) {
    /* RoPE near 128k: the angle pos * base^(-2i/n_rot) is ~1e5 rad for the fast pairs, where float's
     * spacing is 0.008 rad: a kernel that forms it in float lands at NMSE ~1e-7 there (1e-10 at 4k), inside
     * tol_f32 but 1e7 times the rounding of the result, so these are judged by tol_rope_long. 4096 too,
     * the context length of many models. */
    rope_check(h, 64, 3, 3, 64, false, false, 131000, h->tol_rope_long);
    rope_check(h, 128, 2, 2, 128, true, false, 131060, h->tol_rope_long);
    rope_check(h, 128, 2, 2, 96, true, true, 131072, h->tol_rope_long); /* partial rotation + frequency factors */
    rope_check(h, 64, 4, 12, 64, true, false, 4090, h->tol_rope_long);
    /* a prompt batch of 12 tokens (above the 8 of the decode paths) written at and attending over rows
     * near 4k of a padded cache (head_dim 64, few heads: the emulator runs these thread by thread) */
    slm_harness_kv_write(h, 128, 4200, 12, 4090, 32);
    slm_harness_attention(h, 64, 4, 2, 4200, 12, 4090, 32);
    slm_harness_attention(h, 64, 2, 1, 4120, 9, 4096, 0);
}

void slm_harness_run_gemma(slm_harness *h) {
    /* GeGLU at Gemma 3 270M's feed-forward width (decode) and a prompt batch of an odd width; the inputs
     * reach |x| ~ 4, where the cubic term of the tanh GELU matters */
    slm_harness_eltwise(h, SLM_OP_GEGLU, 2048, 1);
    slm_harness_eltwise(h, SLM_OP_GEGLU, 1000, 3);
    /* embeddings times sqrt(n_embd) (640: 270M's width) */
    if (!(h->host_only_kinds >> SLM_OP_EMBED & 1)) {
        slm_harness_embed_scaled(h, SLM_Q8_0, 640, 300, 5, sqrtf(640.0f));
        slm_harness_embed_scaled(h, SLM_Q4_K, 512, 200, 3, 0.5f);
    }
    /* Gemma 3's per-head norms: 4 q heads and 1 k head of 256 */
    slm_harness_rmsnorm_heads(h, 256, 4, 1);
    slm_harness_rmsnorm_heads(h, 256, 1, 7);
    /* Sliding windows: decode at, below and beyond the window (one row; a window that starts inside a key
     * tile; one much shorter than the past, the split-K paths over a long cache), prompt batches whose
     * tokens' windows start at different rows (across tile edges), Gemma 3 270M's shape (4 heads on 1 kv head
     * of 256), a window of 1, a window wider than the past (the same as none), padded rows. */
    slm_harness_attention_window(h, 64, 4, 2, 64, 1, 40, 0, 1);
    slm_harness_attention_window(h, 64, 4, 2, 128, 1, 100, 0, 37);
    slm_harness_attention_window(h, 128, 4, 1, 1100, 1, 1030, 0, 100);
    slm_harness_attention_window(h, 64, 4, 4, 96, 9, 40, 0, 16);
    slm_harness_attention_window(h, 64, 4, 2, 300, 13, 250, 32, 50);
    slm_harness_attention_window(h, 256, 4, 1, 80, 1, 70, 0, 32);
    slm_harness_attention_window(h, 256, 4, 1, 80, 7, 30, 0, 20);
    slm_harness_attention_window(h, 64, 2, 1, 700, 20, 600, 0, 512);
    slm_harness_attention_window(h, 64, 2, 1, 48, 5, 3, 0, 512);
    slm_harness_attention_window(h, 64, 2, 1, 48, 5, 10, 0, 1);
}

/* ---- quantized KV caches ---- */

/* Whether the device has a kernel for op; a refusal is counted as a skip with its reason. */
static bool kv_supported(slm_harness *h, const slm_op *op, const char *what) {
    if (h->dev->ops->supports(h->dev, op)) return true;
    printf("  skip %s: %s refuses this KV cache type (no kernel)\n", what, h->dev->name);
    h->n_skip++;
    return false;
}

void slm_harness_kv_write_type(slm_harness *h, slm_dtype t, int64_t n, int64_t n_ctx, int64_t T, int pos0, size_t pad) {
    char what[160];
    snprintf(what, sizeof what, "kv_write %s n=%lld n_ctx=%lld T=%lld pos0=%d pad=%zu", slm_dtype_name(t), (long long)n,
             (long long)n_ctx, (long long)T, pos0, pad);
    size_t row = slm_dtype_row_bytes(t, n), ld = row + pad, bytes = ld * (size_t)n_ctx;
    float *x = malloc(sizeof(float) * (size_t)(n * T));
    uint8_t *cache = malloc(bytes), *back = malloc(bytes), *want = malloc(bytes);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    slm_test_fill(x, n * T, slm_harness_rng(h), 4.0f);
    memset(cache, 0x7e, bytes);
    for (int64_t t2 = 0; t2 < T; t2++) pos[t2] = pos0 + (int32_t)t2;
    memcpy(want, cache, bytes);
    for (int64_t t2 = 0; t2 < T; t2++) slm_ref_quantize_row(t, x + t2 * n, want + (size_t)pos[t2] * ld, n);
    slm_harness_buf bx, bc, bp;
    bool ok = slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)(n * T)) &&
        slm_harness_alloc(h, &bc, cache, bytes) && slm_harness_alloc(h, &bp, pos, sizeof(int32_t) * (size_t)T);
    if (ok) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_KV_WRITE;
        op.name = "harness_kv_write";
        op.dst = slm_tensor_make(&bc.buf, h->offset, t, n, n_ctx, 1, 1);
        op.dst.nb[1] = ld;
        op.dst.nb[2] = op.dst.nb[3] = ld * (size_t)n_ctx;
        op.src[0] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, n, T, 1, 1);
        op.src[1] = slm_tensor_make(&bp.buf, h->offset, SLM_I32, T, 1, 1, 1);
        if (kv_supported(h, &op, what) && slm_harness_exec(h, &op, 1, what) &&
            slm_harness_download(h, &bc, back, bytes)) {
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < bytes; i++)
                if (back[i] != want[i] && !bad++) first = i;
            CHECK(bad == 0, "%s: %zu bytes differ from the reference quantizer's, the first at row %zu byte %zu", what,
                  bad, first / ld, first % ld);
            if (bad) h->n_fail++;
            else h->n_pass++;
            if (h->verbose) printf("  %s: %s\n", what, bad ? "FAIL" : "ok");
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bx);
    slm_harness_free(h, &bc);
    slm_harness_free(h, &bp);
    free(x);
    free(cache);
    free(back);
    free(want);
    free(pos);
}

void slm_harness_attention_kv(slm_harness *h, slm_dtype kt, slm_dtype vt, int hd, int n_head, int n_head_kv,
                              int64_t n_ctx, int64_t T, int pos0, size_t pad, int window) {
    char what[192];
    snprintf(what, sizeof what, "attention K %s V %s hd=%d heads=%d/%d n_ctx=%lld T=%lld pos0=%d pad=%zu window=%d",
             slm_dtype_name(kt), slm_dtype_name(vt), hd, n_head, n_head_kv, (long long)n_ctx, (long long)T, pos0, pad,
             window);
    int64_t nq = (int64_t)hd * n_head, nkv = (int64_t)hd * n_head_kv;
    size_t kld = slm_dtype_row_bytes(kt, nkv) + pad, vld = slm_dtype_row_bytes(vt, nkv) + pad;
    float *q = malloc(sizeof(float) * (size_t)(nq * T)), *row = malloc(sizeof(float) * (size_t)nkv);
    uint8_t *kc = malloc(kld * (size_t)n_ctx), *vc = malloc(vld * (size_t)n_ctx);
    float *got = malloc(sizeof(float) * (size_t)(nq * T)), *want = malloc(sizeof(float) * (size_t)(nq * T));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    slm_test_fill(q, nq * T, slm_harness_rng(h), 1.0f);
    memset(kc, 0x7e, kld * (size_t)n_ctx);
    memset(vc, 0x7e, vld * (size_t)n_ctx);
    for (int64_t r = 0; r < n_ctx; r++) {
        slm_test_fill(row, nkv, slm_harness_rng(h), 2.0f);
        slm_ref_quantize_row(kt, row, kc + (size_t)r * kld, nkv);
        slm_test_fill(row, nkv, slm_harness_rng(h), 1.0f);
        slm_ref_quantize_row(vt, row, vc + (size_t)r * vld, nkv);
    }
    for (int64_t t = 0; t < T; t++) pos[t] = pos0 + (int32_t)t;
    slm_harness_buf bq, bk, bv, bp, bo;
    bool ok = slm_harness_alloc(h, &bq, q, sizeof(float) * (size_t)(nq * T)) &&
        slm_harness_alloc(h, &bk, kc, kld * (size_t)n_ctx) && slm_harness_alloc(h, &bv, vc, vld * (size_t)n_ctx) &&
        slm_harness_alloc(h, &bp, pos, sizeof(int32_t) * (size_t)T) &&
        slm_harness_alloc(h, &bo, NULL, sizeof(float) * (size_t)(nq * T));
    if (ok) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_ATTENTION;
        op.name = "harness_attention_kv";
        op.p.attn.n_head = n_head;
        op.p.attn.n_head_kv = n_head_kv;
        op.p.attn.head_dim = hd;
        op.p.attn.scale = 1.0f / sqrtf((float)hd);
        op.p.attn.window = window;
        op.dst = slm_tensor_make(&bo.buf, h->offset, SLM_F32, nq, T, 1, 1);
        op.src[0] = slm_tensor_make(&bq.buf, h->offset, SLM_F32, nq, T, 1, 1);
        op.src[1] = slm_tensor_make(&bk.buf, h->offset, kt, nkv, n_ctx, 1, 1);
        op.src[1].nb[1] = kld;
        op.src[1].nb[2] = op.src[1].nb[3] = kld * (size_t)n_ctx;
        op.src[2] = slm_tensor_make(&bv.buf, h->offset, vt, nkv, n_ctx, 1, 1);
        op.src[2].nb[1] = vld;
        op.src[2].nb[2] = op.src[2].nb[3] = vld * (size_t)n_ctx;
        op.src[3] = slm_tensor_make(&bp.buf, h->offset, SLM_I32, T, 1, 1, 1);
        if (kv_supported(h, &op, what) && slm_harness_exec(h, &op, 1, what) &&
            slm_harness_download(h, &bo, got, sizeof(float) * (size_t)(nq * T))) {
            for (int64_t t = 0; t < T; t++)
                slm_ref_attention_kv(q + t * nq, kt, kc, kld, vt, vc, vld, want + t * nq, hd, n_head, n_head_kv, pos[t],
                                     window, op.p.attn.scale);
            slm_harness_judge(h, what, got, want, nq * T, h->tol_attn);
        }
    } else {
        CHECK(0, "%s: buffers", what);
        h->n_fail++;
    }
    slm_harness_free(h, &bq);
    slm_harness_free(h, &bk);
    slm_harness_free(h, &bv);
    slm_harness_free(h, &bp);
    slm_harness_free(h, &bo);
    free(q);
    free(row);
    free(kc);
    free(vc);
    free(got);
    free(want);
    free(pos);
}

void slm_harness_run_kv_types(slm_harness *h) {
    /* writes: one token and a batch, a row of 3 KV heads of 96 (not a power of two), padded rows */
    slm_harness_kv_write_type(h, SLM_Q8_0, 256, 40, 1, 17, 0);
    slm_harness_kv_write_type(h, SLM_Q4_0, 288, 64, 9, 30, 46);
    slm_harness_kv_write_type(h, SLM_Q8_0, 1024, 300, 33, 200, 64);
    /* attention (the harness runs these on 1 and 2 threads): one position; decode at 5000 positions (20 chunks, split across threads); prompt batches
     * across a chunk edge (256); groups of 1, 2, 4 and 12 query heads per KV head (12: two calls of at most
     * 8); head sizes 64, 96, 128; mixed K and V types; padded rows (NaN bytes there); a sliding window */
    slm_harness_attention_kv(h, SLM_Q8_0, SLM_Q8_0, 64, 4, 1, 8, 1, 0, 0, 0);
    slm_harness_attention_kv(h, SLM_Q8_0, SLM_Q8_0, 64, 32, 8, 5000, 1, 4999, 0, 0);
    slm_harness_attention_kv(h, SLM_Q4_0, SLM_Q4_0, 128, 8, 2, 5000, 1, 4321, 64, 0);
    slm_harness_attention_kv(h, SLM_Q8_0, SLM_Q4_0, 96, 6, 3, 600, 7, 250, 30, 0);
    slm_harness_attention_kv(h, SLM_Q4_0, SLM_F16, 64, 12, 1, 300, 5, 200, 0, 0);
    slm_harness_attention_kv(h, SLM_F16, SLM_Q8_0, 128, 8, 8, 520, 1, 515, 16, 0);
    slm_harness_attention_kv(h, SLM_Q8_0, SLM_Q8_0, 64, 4, 2, 1200, 1, 1100, 0, 300);
    slm_harness_attention_kv(h, SLM_Q4_0, SLM_Q8_0, 64, 4, 2, 700, 20, 600, 0, 512);
    /* prompt batches past whole chunks, whose tokens go through each KV head together (the CPU's joint
     * chunks, then each token's last ones): 2, 4 and 8 query heads per KV head, a batch tail, f16 mixed in */
    slm_harness_attention_kv(h, SLM_Q8_0, SLM_Q8_0, 64, 8, 2, 1100, 13, 1000, 0, 0);
    slm_harness_attention_kv(h, SLM_Q4_0, SLM_F16, 128, 8, 1, 800, 5, 700, 32, 0);
    slm_harness_attention_kv(h, SLM_F16, SLM_Q4_0, 64, 16, 2, 600, 9, 512, 0, 0);
}

void slm_harness_report(const slm_harness *h, const char *name) {
    printf("%s on %s: %d passed, %d failed, %d skipped\n", name, h->dev->name, h->n_pass, h->n_fail, h->n_skip);
    for (int k = 0; k < SLM_OP_KIND_COUNT; k++)
        if (h->op_count[k])
            printf("  %-10s %3d runs, %8.3f ms mean (run+sync wall time, test shapes)\n",
                   slm_op_kind_name((slm_op_kind)k), h->op_count[k], 1e3 * h->op_seconds[k] / h->op_count[k]);
}
