/* Every CUDA kernel against kernels/ref through the generic op harness (tests/op_harness.h), plus a
 * decode-like split run several times with new positions uploaded to the same device buffer, which is the
 * path that captures a CUDA graph once and replays it; prompt-batch GEMMs with activations beyond f16's
 * range and with the weight dequantized in more than one chunk; and the same decode and GEMMs on a device
 * opened with SLM_CUDA_GRAPHS=0 and with SLM_CUDA_SYNC=1. Prints one line per check with its NMSE so a run
 * on a lent GPU can be diagnosed from its log. Skips (77) when the build has no CUDA backend or the machine
 * has no usable CUDA device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_quant.h"
#include "backend.h"
#include "op_harness.h"
#include "ops_ref.h"
#include "quant_ref.h"
#include "test_util.h"

#ifdef SLM_HAVE_CUDA
#include "cuda_backend.h"
#include "cuda_internal.h" /* SLM_CUDA_GEMM_CHUNK_ELEMS */
#include "cuda_kernels.h"  /* slm_cuda_host_dequant_row */

/* One decode step of a tiny attention block, as one split:
 *   xn = rmsnorm(x) * nw; q = Wq xn; k = Wk xn; v = Wv xn; rope(q), rope(k) at pos; cache[pos] = k, v;
 *   a = attention(q, cache, pos); x = x + Wo a
 * run for steps positions p0, p0+1, ... with the same ops; the host recomputes each step with kernels/ref. */
enum { HD = 64, NH = 4, NKV = 2, NE = HD * NH, NKVE = HD * NKV, NCTX = 96 };

typedef struct host_state {
    float x[NE];
    uint16_t kc[NKVE * NCTX], vc[NKVE * NCTX];
} host_state;

/* The device's mat-vec of quantized weights (T <= SLM_CUDA_MATVEC_MAX_COLS) multiplies 8-bit activation
 * blocks of 32 made by the CPU's recipe, so the reference multiplies the CPU's blocks of 32 (those of its
 * Q8_0 format), dequantized: only summation order then differs. Float weights and prompt GEMMs keep f32. */
static void q8_act(slm_dtype t, int64_t K, int64_t T, float *col) {
    if (T > SLM_CUDA_MATVEC_MAX_COLS || slm_cuda_matvec_scratch(t, K, T) == 0) return;
    void *xq = malloc(slm_act_row_bytes(SLM_Q8_0, K));
    slm_act_quantize(SLM_Q8_0, col, xq, K);
    const float *d = slm_act32_d(xq);
    const int8_t *q = slm_act32_q(xq, K);
    for (int64_t i = 0; i < K; i++) col[i] = d[i / 32] * (float)q[i];
    free(xq);
}

static void ref_matvec(slm_dtype t, const uint8_t *w, size_t rb, const float *x, float *y, int K, int N, bool q8) {
    float xa[NE];
    memcpy(xa, x, sizeof(float) * (size_t)K);
    if (q8) q8_act(t, K, 1, xa);
    for (int r = 0; r < N; r++) y[r] = slm_ref_dot_row(t, w + (size_t)r * rb, xa, K);
}

static void ref_step(host_state *s, slm_dtype t, const uint8_t *wq, const uint8_t *wk, const uint8_t *wv,
                     const uint8_t *wo, size_t rb_in, size_t rb_o, const float *nw, int pos, bool q8) {
    float xn[NE], q[NE], k[NKVE], v[NKVE], a[NE], o[NE];
    slm_ref_rmsnorm(s->x, nw, xn, NE, 1e-5f);
    ref_matvec(t, wq, rb_in, xn, q, NE, NE, q8);
    ref_matvec(t, wk, rb_in, xn, k, NE, NKVE, q8);
    ref_matvec(t, wv, rb_in, xn, v, NE, NKVE, q8);
    for (int h = 0; h < NH; h++) slm_ref_rope(q + h * HD, HD, pos, 10000.0f, 1.0f, NULL, 1);
    for (int h = 0; h < NKV; h++) slm_ref_rope(k + h * HD, HD, pos, 10000.0f, 1.0f, NULL, 1);
    for (int i = 0; i < NKVE; i++) {
        s->kc[pos * NKVE + i] = slm_f32_to_f16(k[i]);
        s->vc[pos * NKVE + i] = slm_f32_to_f16(v[i]);
    }
    slm_ref_attention(q, s->kc, s->vc, a, HD, NH, NKV, pos, 1.0f / sqrtf((float)HD));
    ref_matvec(t, wo, rb_o, a, o, NE, NE, q8);
    for (int i = 0; i < NE; i++) s->x[i] += o[i];
}

static void decode_replay(slm_harness *h, slm_dtype t, int p0, int steps) {
    slm_device *dev = h->dev;
    slm_error err = {{0}};
    char what[128];
    size_t rb, rbo;
    uint8_t *wq = slm_harness_weights(h, t, NE, NE, &rb), *wk = slm_harness_weights(h, t, NE, NKVE, &rb);
    uint8_t *wv = slm_harness_weights(h, t, NE, NKVE, &rb), *wo = slm_harness_weights(h, t, NE, NE, &rbo);
    static host_state s;
    float nw[NE];
    slm_test_fill(s.x, NE, slm_harness_rng(h), 1.0f);
    slm_test_fill(nw, NE, slm_harness_rng(h), 1.0f);
    for (int i = 0; i < NKVE * NCTX; i++) {
        s.kc[i] = slm_f32_to_f16(slm_test_randf(slm_harness_rng(h)));
        s.vc[i] = slm_f32_to_f16(slm_test_randf(slm_harness_rng(h)));
    }
    /* one activation buffer: x | xn | q | k | v | a | o | pos */
    size_t o_x = 0, o_xn = o_x + NE * 4, o_q = o_xn + NE * 4, o_k = o_q + NE * 4, o_v = o_k + NKVE * 4;
    size_t o_a = o_v + NKVE * 4, o_o = o_a + NE * 4, o_pos = o_o + NE * 4, act_bytes = o_pos + 64;
    slm_harness_buf bact, bw[4], bnw, bkc, bvc;
    bool ok = slm_harness_alloc(h, &bact, NULL, act_bytes) && slm_harness_alloc(h, &bw[0], wq, rb * NE) &&
        slm_harness_alloc(h, &bw[1], wk, rb * NKVE) && slm_harness_alloc(h, &bw[2], wv, rb * NKVE) &&
        slm_harness_alloc(h, &bw[3], wo, rbo * NE) && slm_harness_alloc(h, &bnw, nw, sizeof nw) &&
        slm_harness_alloc(h, &bkc, s.kc, sizeof s.kc) && slm_harness_alloc(h, &bvc, s.vc, sizeof s.vc);
    CHECK(ok, "decode replay: buffers");
    if (ok) ok = slm_buffer_upload(&bact.buf, SLM_HARNESS_OFFSET + o_x, s.x, sizeof s.x, &err) == SLM_OK;
    const size_t B = SLM_HARNESS_OFFSET;
    slm_tensor x = slm_tensor_make(&bact.buf, B + o_x, SLM_F32, NE, 1, 1, 1);
    slm_tensor xn = slm_tensor_make(&bact.buf, B + o_xn, SLM_F32, NE, 1, 1, 1);
    slm_tensor q = slm_tensor_make(&bact.buf, B + o_q, SLM_F32, NE, 1, 1, 1);
    slm_tensor k = slm_tensor_make(&bact.buf, B + o_k, SLM_F32, NKVE, 1, 1, 1);
    slm_tensor v = slm_tensor_make(&bact.buf, B + o_v, SLM_F32, NKVE, 1, 1, 1);
    slm_tensor a = slm_tensor_make(&bact.buf, B + o_a, SLM_F32, NE, 1, 1, 1);
    slm_tensor o = slm_tensor_make(&bact.buf, B + o_o, SLM_F32, NE, 1, 1, 1);
    slm_tensor pos = slm_tensor_make(&bact.buf, B + o_pos, SLM_I32, 1, 1, 1, 1);
    slm_tensor kc = slm_tensor_make(&bkc.buf, B, SLM_F16, NKVE, NCTX, 1, 1);
    slm_tensor vc = slm_tensor_make(&bvc.buf, B, SLM_F16, NKVE, NCTX, 1, 1);
    slm_op ops[12];
    memset(ops, 0, sizeof ops);
    int n = 0;
    ops[n].kind = SLM_OP_RMSNORM;
    ops[n].p.norm.eps = 1e-5f;
    ops[n].src[0] = x;
    ops[n].src[1] = slm_tensor_make(&bnw.buf, B, SLM_F32, NE, 1, 1, 1);
    ops[n++].dst = xn;
    slm_tensor outs[3] = {q, k, v};
    int64_t rows[3] = {NE, NKVE, NKVE};
    for (int i = 0; i < 3; i++) {
        ops[n].kind = SLM_OP_MATMUL;
        ops[n].src[0] = slm_tensor_make(&bw[i].buf, B, t, NE, rows[i], 1, 1);
        ops[n].src[1] = xn;
        ops[n++].dst = outs[i];
    }
    for (int i = 0; i < 2; i++) {
        slm_tensor hv = i ? k : q;
        hv.ne[0] = HD;
        hv.ne[1] = i ? NKV : NH;
        hv.ne[2] = 1;
        hv.nb[1] = HD * 4;
        hv.nb[2] = hv.nb[1] * (size_t)hv.ne[1];
        hv.nb[3] = hv.nb[2];
        ops[n].kind = SLM_OP_ROPE;
        ops[n].dst = ops[n].src[0] = hv;
        ops[n].src[1] = pos;
        ops[n].p.rope.n_rot = HD;
        ops[n].p.rope.neox = true;
        ops[n].p.rope.freq_base = 10000.0f;
        ops[n++].p.rope.freq_scale = 1.0f;
    }
    ops[n].kind = SLM_OP_KV_WRITE;
    ops[n].src[0] = k;
    ops[n].src[1] = pos;
    ops[n++].dst = kc;
    ops[n].kind = SLM_OP_KV_WRITE;
    ops[n].src[0] = v;
    ops[n].src[1] = pos;
    ops[n++].dst = vc;
    ops[n].kind = SLM_OP_ATTENTION;
    ops[n].src[0] = q;
    ops[n].src[1] = kc;
    ops[n].src[2] = vc;
    ops[n].src[3] = pos;
    ops[n].dst = a;
    ops[n].p.attn.n_head = NH;
    ops[n].p.attn.n_head_kv = NKV;
    ops[n].p.attn.head_dim = HD;
    ops[n++].p.attn.scale = 1.0f / sqrtf((float)HD);
    ops[n].kind = SLM_OP_MATMUL;
    ops[n].src[0] = slm_tensor_make(&bw[3].buf, B, t, NE, NE, 1, 1);
    ops[n].src[1] = a;
    ops[n++].dst = o;
    ops[n].kind = SLM_OP_ADD;
    ops[n].src[0] = x;
    ops[n].src[1] = o;
    ops[n++].dst = x;
    for (int i = 0; i < n; i++) ops[i].name = "decode_replay";

    slm_cuda_stats before = slm_cuda_get_stats(dev);
    for (int step = 0; ok && step < steps; step++) {
        int32_t p = p0 + step;
        snprintf(what, sizeof what, "decode replay %s step %d pos %d", slm_dtype_name(t), step, p);
        /* new position into the same device buffer, then the identical split */
        ok = slm_buffer_upload(&bact.buf, B + o_pos, &p, 4, &err) == SLM_OK;
        CHECK(ok, "%s: upload: %s", what, err.msg);
        if (!ok || !slm_harness_exec(h, ops, n, what)) break;
        float got[NE];
        ok = slm_harness_download(h, &bact, got, sizeof got);
        if (!ok) break;
        ref_step(&s, t, wq, wk, wv, wo, rb, rbo, nw, p, !before.matvec_f32);
        slm_harness_judge(h, what, got, s.x, NE, 1e-4);
        /* carry the device's own residual forward so later steps test the kernels, not drift */
        memcpy(s.x, got, sizeof got);
    }
    slm_cuda_stats after = slm_cuda_get_stats(dev);
    printf("  decode replay %s: %llu capture(s), %llu graph launch(es), graphs %s\n", slm_dtype_name(t),
           (unsigned long long)(after.captures - before.captures),
           (unsigned long long)(after.graph_launches - before.graph_launches), after.graphs_enabled ? "on" : "off");
    if (ok && !after.graphs_enabled) {
        /* SLM_CUDA_GRAPHS=0 or SLM_CUDA_SYNC=1: every step eager */
        CHECK(after.captures == before.captures && after.graph_launches == before.graph_launches,
              "decode replay with graphs off: %llu captures, %llu launches",
              (unsigned long long)(after.captures - before.captures),
              (unsigned long long)(after.graph_launches - before.graph_launches));
    }
    if (ok && after.graphs_enabled && steps >= 3) {
        /* step 0 runs eagerly, step 1 captures, the rest replay */
        CHECK(after.captures - before.captures == 1, "decode replay: %llu captures, expected 1",
              (unsigned long long)(after.captures - before.captures));
        CHECK(after.graph_launches - before.graph_launches == (uint64_t)(steps - 1),
              "decode replay: %llu graph launches, expected %d",
              (unsigned long long)(after.graph_launches - before.graph_launches), steps - 1);
    }
    slm_harness_free(h, &bact);
    for (int i = 0; i < 4; i++) slm_harness_free(h, &bw[i]);
    slm_harness_free(h, &bnw);
    slm_harness_free(h, &bkc);
    slm_harness_free(h, &bvc);
    free(wq);
    free(wk);
    free(wv);
    free(wo);
}

/* A prompt batch (T > SLM_CUDA_MATVEC_MAX_COLS: dequantize + f16 GEMM) whose activations exceed f16's 65504:
 * columns of magnitude 1e5 throughout, columns of ordinary values with one outlier of 1e5, ordinary columns,
 * and one column of 1e30 (far beyond any power-of-two step a fixed scale could take). Every output must be
 * finite and match the reference column by column (a whole-batch NMSE would let the large columns hide the
 * others). */
static void large_columns(float *x, int64_t K, int64_t T) {
    for (int64_t c = 0; c < T; c++) {
        float *xc = x + c * K;
        if (c == T - 1)
            for (int64_t i = 0; i < K; i++) xc[i] *= 1e30f;
        else if (c % 3 == 0)
            for (int64_t i = 0; i < K; i++) xc[i] *= 1e5f;
        else if (c % 3 == 1) xc[(c * 37) % K] = c % 2 ? 1e5f : -1e5f;
    }
}

static void gemm_large_activations(slm_harness *h, slm_dtype t, bool bias) {
    slm_harness_matmul_opts o = {
        .label = "gemm activations 1e5", .shape_x = large_columns, .per_column = true, .tol = h->tol_matmul_quant};
    slm_harness_matmul_ex(h, t, 512, 80, 13, bias, &o);
}

/* Activation columns the 8-bit blocks must survive, by column: all values near 1e5; a block of zeros
 * (scale 0); a block of subnormals (1 / scale overflows: quantized to 0); ordinary values. */
static void special_columns(float *x, int64_t K, int64_t T) {
    for (int64_t c = 0; c < T; c++) {
        float *xc = x + c * K;
        if (c % 4 == 0)
            for (int64_t i = 0; i < K; i++) xc[i] *= 1e5f;
        else if (c % 4 == 1)
            for (int64_t i = 32; i < 64 && i < K; i++) xc[i] = 0.0f;
        else if (c % 4 == 2)
            for (int64_t i = 0; i < 32 && i < K; i++) xc[i] *= 1e-39f;
    }
}

/* A NaN activation makes its column's outputs NaN (not a quietly wrong number); the other columns stay
 * right. */
static void matvec_nan(slm_harness *h, slm_dtype t, int64_t K) {
    const int64_t N = 24, T = 2;
    char what[96];
    snprintf(what, sizeof what, "matvec NaN activation %s K=%lld", slm_dtype_name(t), (long long)K);
    size_t rb;
    uint8_t *w = slm_harness_weights(h, t, K, N, &rb);
    float *x = malloc(sizeof(float) * (size_t)(K * T)), got[24 * 2], want[24];
    slm_test_fill(x, K * T, slm_harness_rng(h), 1.0f);
    x[K / 2] = NAN;
    slm_harness_buf bw, bx, by;
    if (slm_harness_alloc(h, &bw, w, rb * (size_t)N) && slm_harness_alloc(h, &bx, x, sizeof(float) * (size_t)(K * T)) &&
        slm_harness_alloc(h, &by, NULL, sizeof got)) {
        slm_op op;
        memset(&op, 0, sizeof op);
        op.kind = SLM_OP_MATMUL;
        op.name = "matvec_nan";
        op.dst = slm_tensor_make(&by.buf, h->offset, SLM_F32, N, T, 1, 1);
        op.src[0] = slm_tensor_make(&bw.buf, h->offset, t, K, N, 1, 1);
        op.src[1] = slm_tensor_make(&bx.buf, h->offset, SLM_F32, K, T, 1, 1);
        if (slm_harness_exec(h, &op, 1, what) && slm_harness_download(h, &by, got, sizeof got)) {
            int n_nan = 0;
            for (int64_t r = 0; r < N; r++) n_nan += got[r] != got[r];
            CHECK(n_nan == N, "%s: %d of %lld outputs of the NaN column are NaN", what, n_nan, (long long)N);
            float *x1 = x + K;
            if (h->matmul_act) h->matmul_act(t, K, T, x1);
            for (int64_t r = 0; r < N; r++) want[r] = slm_ref_dot_row(t, w + (size_t)r * rb, x1, K);
            slm_harness_judge(h, what, got + N, want, N, h->tol_matmul_quant);
        }
    } else {
        CHECK(0, "%s: buffers", what);
    }
    slm_harness_free(h, &bw);
    slm_harness_free(h, &bx);
    slm_harness_free(h, &by);
    free(w);
    free(x);
}

/* The quantized mat-vecs beyond slm_harness_run_all: every width 1..8 (one per type), K past one staged
 * slice of activations and not a multiple of it, row counts that leave a thread block part empty, the
 * special columns, NaN. */
static void matvec_checks(slm_harness *h) {
    static const slm_dtype types[] = {SLM_Q4_0, SLM_Q4_1, SLM_Q5_0, SLM_Q5_1, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K};
    for (int i = 0; i < 8; i++) {
        slm_dtype t = types[i];
        bool k256 = slm_dtype_get(t)->block_elems == 256;
        slm_harness_matmul(h, t, k256 ? 2304 : 2144, 37, 1 + i, i % 2);
        slm_harness_matmul_opts o = {.label = "matvec special columns", .shape_x = special_columns, .per_column = true};
        slm_harness_matmul_ex(h, t, k256 ? 768 : 352, 20, 4, i % 2 == 0, &o);
        if (t == SLM_Q4_0 || t == SLM_Q4_K || t == SLM_Q6_K) matvec_nan(h, t, k256 ? 512 : 320);
    }
}

/* The checks of the backend's paths that an environment variable selects, on a device opened with it set:
 * the decode split and prompt GEMMs (with graphs off or sync on: eager every step, no capture, no graph
 * launch), and with SLM_CUDA_MATVEC=f32 mat-vecs on f32 activations, judged against plain kernels/ref. */
static void env_variant(const char *name, const char *value) {
    setenv(name, value, 1);
    slm_error err = {{0}};
    slm_device *dev = NULL;
    slm_status s = slm_device_open("cuda:0", NULL, &dev, &err);
    unsetenv(name); /* read at open: later devices are unaffected */
    CHECK(s == SLM_OK, "open cuda:0 with %s=%s: %s", name, value, err.msg);
    if (s) return;
    char label[64];
    snprintf(label, sizeof label, "test_cuda_ops %s=%s", name, value);
    slm_harness h;
    slm_harness_init(&h, dev);
    h.verbose = true;
    h.tol_matmul_quant = 1e-5;
    slm_cuda_stats st = slm_cuda_get_stats(dev);
    bool mv = strcmp(name, "SLM_CUDA_MATVEC") == 0;
    CHECK(st.graphs_enabled == mv, "%s: graphs %s", label, st.graphs_enabled ? "on" : "off");
    CHECK(st.sync_each == (strcmp(name, "SLM_CUDA_SYNC") == 0), "%s: sync_each %d", label, st.sync_each);
    CHECK(st.matvec_f32 == mv, "%s: matvec_f32 %d", label, st.matvec_f32);
    if (!st.matvec_f32) h.matmul_act = q8_act;
    if (mv) {
        slm_harness_matmul(&h, SLM_Q4_K, 768, 37, 3, true);
        slm_harness_matmul(&h, SLM_Q8_0, 352, 37, 1, false);
    }
    decode_replay(&h, SLM_Q4_K, 7, 4);
    slm_harness_matmul(&h, SLM_Q6_K, 256, 70, 20, true);
    gemm_large_activations(&h, SLM_Q8_0, false);
    slm_harness_report(&h, label);
    slm_test_failures += h.n_fail;
    slm_device_close(dev);
}

/* The power-of-two scale of the prompt GEMM's f16 activations (the kernel's rule, run on the host): every
 * column's largest magnitude lands in [2^14, 2^15), far from 65504 and from the subnormals, so a value
 * converted scaled and unscaled after is within f16's rounding of itself. Zero, NaN and inf keep 1. Needs no
 * GPU. */
static void f16_scales(void) {
    const float maxes[] = {0.0f, 1e-30f, 1.0f, 32767.0f, 32768.0f, 65504.0f, 65520.0f, 1e5f, 3.3e6f, 1e30f, 3.4e38f};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        float m = maxes[i], s = slm_cuda_f16_scale_for(m);
        int e;
        float f = frexpf(s, &e);
        CHECK(f == 0.5f, "scale %g for %g is not a power of two", s, m);
        if (m == 0.0f) CHECK(s == 1.0f, "a column of zeros gets scale %g", s);
        else
            CHECK(m * s >= 16384.0f && m * s < 32768.0f, "max %g scaled by %g is %g, not in [2^14, 2^15)", m, s, m * s);
        /* the largest value and a value 1e-3 of it, through f16 and back */
        for (int k = 0; k < 2; k++) {
            float v = k ? m * 1e-3f : m;
            float back = slm_f16_to_f32(slm_f32_to_f16(v * s)) / s;
            CHECK(isfinite(back) && fabsf(back - v) <= fabsf(v) * 0x1p-11f + 1e-45f,
                  "%g through f16 with scale %g comes back as %g", v, s, back);
        }
    }
    CHECK(slm_cuda_f16_scale_for(INFINITY) == 1.0f, "inf gets a scale");
    CHECK(slm_cuda_f16_scale_for(NAN) == 1.0f, "NaN gets a scale");
    printf("  f16 activation scales: %s\n", slm_test_failures ? "FAIL" : "ok");
}

/* The kernels' block decoders, run on the host, against kernels/ref: rows made by the reference quantizer
 * and rows of random bytes (every bit pattern of quants, packed scales and high bits; the f16 scale fields
 * set to finite values). Needs no GPU. */
static void host_decoders(void) {
    static const slm_dtype types[] = {SLM_F32,  SLM_F16,  SLM_BF16, SLM_Q4_0, SLM_Q4_1, SLM_Q5_0,
                                      SLM_Q5_1, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K};
    uint64_t rng = 0xc0dec0deULL;
    const int64_t n = 1024;
    float *x = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    uint16_t *row16 = malloc(4 * n + 64); /* 2-byte aligned storage for any row of n elements */
    uint8_t *row = (uint8_t *)row16;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        slm_dtype t = types[ti];
        const slm_dtype_info *inf = slm_dtype_get(t);
        size_t rb = slm_dtype_row_bytes(t, n);
        for (int variant = 0; variant < 2; variant++) {
            if (variant == 1 && inf->block_elems == 1) break;
            if (variant == 0) {
                slm_test_fill(x, n, &rng, 2.0f);
                if (t == SLM_F32) memcpy(row, x, rb);
                else if (t == SLM_F16)
                    for (int64_t i = 0; i < n; i++) row16[i] = slm_f32_to_f16(x[i]);
                else if (t == SLM_BF16)
                    for (int64_t i = 0; i < n; i++) {
                        uint32_t u;
                        memcpy(&u, &x[i], 4);
                        row16[i] = (uint16_t)(u >> 16);
                    }
                else slm_ref_quantize_row(t, x, row, n);
            } else {
                for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)(slm_test_rand(&rng) >> 33);
                /* finite f16 scales: d (and dmin / m) at their offsets in each block */
                int offs[2] = {0, 2}, n_offs = 1;
                if (t == SLM_Q4_1 || t == SLM_Q5_1 || t == SLM_Q4_K || t == SLM_Q5_K) n_offs = 2;
                if (t == SLM_Q6_K) offs[0] = 208;
                for (int64_t b = 0; b < n / inf->block_elems; b++)
                    for (int k = 0; k < n_offs; k++) {
                        uint16_t h = slm_f32_to_f16(slm_test_randf(&rng));
                        memcpy(row + b * inf->block_bytes + offs[k], &h, 2);
                    }
            }
            for (int64_t i = 0; i < n; i++) got[i] = NAN; /* every element must be written */
            slm_ref_dequant_row(t, row, want, n);
            bool ok = slm_cuda_host_dequant_row(t, row, got, n);
            CHECK(ok, "host decoder refused %s", slm_dtype_name(t));
            double e = ok ? slm_test_nmse(got, want, n) : 1.0;
            bool finite = true;
            for (int64_t i = 0; i < n; i++) finite = finite && got[i] == got[i];
            printf("  host decoder %-5s %-12s nmse %.3g %s\n", slm_dtype_name(t),
                   variant ? "random bytes" : "quantized", e, e <= 1e-12 && finite ? "ok" : "FAIL");
            CHECK(e <= 1e-12 && finite, "host decoder %s (%s): nmse %g", slm_dtype_name(t),
                  variant ? "random" : "quantized", e);
        }
    }
    free(x);
    free(want);
    free(got);
    free(row16);
}

/* Prompt batches on the tiled attention kernel: a tile is ROWS (token, query head) pairs of one KV head (64,
 * 32, 16 rows for head_dim up to 64, 128, 256), so GQA groups that do not divide it straddle tiles; few
 * blocks split the keys (partials, merge), many write the output directly. */
static void prompt_attention(slm_harness *h) {
    slm_harness_attention(h, 64, 8, 1, 4200, 40, 4100, 32); /* group of 8, 5 tiles, 16-way key split */
    slm_harness_attention(h, 128, 4, 1, 4110, 33, 4060, 0); /* group of 4, a partial last tile */
    slm_harness_attention(h, 80, 6, 2, 4150, 21, 4100, 16); /* groups of 3 across tile edges */
    slm_harness_attention(h, 256, 2, 2, 600, 24, 500, 0);   /* no GQA, largest head_dim, 2-way split */
    slm_harness_attention(h, 255, 20, 1, 300, 3, 290, 0);   /* a group wider than a tile, odd head_dim */
    slm_harness_attention(h, 7, 3, 3, 300, 70, 200, 0);     /* odd head_dim, no split: direct output */
    slm_harness_attention(h, 16, 2, 1, 600, 520, 40, 8);    /* a whole n_batch of 512+ tokens */
    /* positions in any order, repeated, past n_ctx (clamped) and negative (output 0); the last tile's
     * tokens all negative: its blocks see no key */
    enum { T = 20 };
    int32_t pos[T] = {700, 3, 3, 1099, 5000, 0, -1, 512, 90, 91, 40, 1098, 250, 251, 252, 600, -1, -7, -1, -2};
    slm_harness_attention_pos(h, 64, 4, 1, 1100, T, pos, 32, "pos shuffled, split");
    slm_harness_attention_pos(h, 64, 4, 1, 300, T, pos, 0, "pos shuffled, clamped, no split");
    /* the planner sizes the working memory once, for n_batch tokens: no narrower batch may need more */
    size_t at_batch = slm_cuda_attention_scratch_floats(64, 9, 512, 2048), worst = 0;
    for (int64_t t = 1; t <= 512; t++) {
        size_t f = slm_cuda_attention_scratch_floats(64, 9, t, 2048);
        worst = f > worst ? f : worst;
    }
    CHECK(worst <= at_batch && at_batch > 0, "attention scratch: %zu floats at 512 tokens, %zu at fewer", at_batch,
          worst);
}

/* SLM_TEST_MATVEC="q4_k 2048 2048 1" runs that one mat-mul (type K N T) and nothing else: a process whose
 * SLM_CUDA_EMU_MEMSTATS=1 figures are those of one weight type at one shape. Operands start 256-byte
 * aligned as a model's tensors do, unless a fifth field gives their byte offset. */
static int one_matvec(slm_device *dev, const char *spec) {
    char name[16];
    long long K, N, T, offset = 0;
    if (sscanf(spec, "%15s %lld %lld %lld %lld", name, &K, &N, &T, &offset) < 4) return 2;
    for (size_t i = 0; i < SLM_HARNESS_N_WTYPES; i++) {
        slm_dtype t = slm_harness_weight_types[i];
        if (strcmp(slm_dtype_name(t), name)) continue;
        slm_harness h;
        slm_harness_init(&h, dev);
        h.verbose = true;
        h.offset = (size_t)offset;
        slm_harness_matmul(&h, t, K, N, T, false);
        slm_device_close(dev);
        return h.n_fail ? 1 : 0;
    }
    fprintf(stderr, "SLM_TEST_MATVEC: unknown weight type %s\n", name);
    return 2;
}
#endif

int main(void) {
#ifndef SLM_HAVE_CUDA
    printf("test_cuda_ops: built without CUDA: skip\n");
    return SLM_TEST_SKIP;
#else
    if (!getenv("SLM_TEST_MATVEC")) {
        host_decoders();
        f16_scales();
    }
    int n_dev = slm_backend_cuda.count(); /* must not crash without a driver */
    CHECK(n_dev >= 0, "count %d", n_dev);
    if (n_dev <= 0) {
        printf("test_cuda_ops: no CUDA device (no driver or no GPU): device checks skipped\n");
        return slm_test_failures ? slm_test_finish("test_cuda_ops") : SLM_TEST_SKIP;
    }
    slm_error err = {{0}};
    slm_device *dev = NULL;
    slm_status s = slm_device_open("cuda:0", NULL, &dev, &err);
    if (s == SLM_ERR_NO_DEVICE || s == SLM_ERR_UNSUPPORTED) {
        printf("test_cuda_ops: no usable CUDA device (%s): skip\n", err.msg);
        return SLM_TEST_SKIP;
    }
    CHECK(s == SLM_OK, "open cuda:0: %s: %s", slm_status_name(s), err.msg);
    if (s) return slm_test_finish("test_cuda_ops");
    if (getenv("SLM_TEST_MATVEC")) return one_matvec(dev, getenv("SLM_TEST_MATVEC"));
    printf("device: %s\n", dev->name);
    size_t free_b = 0, total_b = 0;
    slm_device_memory(dev, &free_b, &total_b);
    printf("memory: %.2f GiB free of %.2f GiB\n", free_b / 1073741824.0, total_b / 1073741824.0);
    CHECK(total_b > 0 && free_b <= total_b, "memory: free %zu total %zu", free_b, total_b);

    /* Errors are statuses, not crashes: an absurd allocation and out-of-range copies. */
    slm_buffer huge;
    s = slm_buffer_alloc(dev, (size_t)1 << 62, &huge, &err);
    CHECK(s == SLM_ERR_DEVICE || s == SLM_ERR_NOMEM, "huge alloc returned %s", slm_status_name(s));
    slm_buffer small;
    s = slm_buffer_alloc(dev, 64, &small, &err);
    CHECK(s == SLM_OK, "small alloc: %s", err.msg);
    if (!s) {
        char tmp[128] = {0}, back[64];
        for (int i = 0; i < 64; i++) tmp[i] = (char)(i * 3 + 1);
        CHECK(slm_buffer_upload(&small, 32, tmp, 64, &err) == SLM_ERR_INVALID_ARG, "upload past the end");
        CHECK(slm_buffer_download(&small, 0, tmp, 65, &err) == SLM_ERR_INVALID_ARG, "download past the end");
        CHECK(slm_buffer_upload(&small, 0, tmp, 64, &err) == SLM_OK, "upload: %s", err.msg);
        CHECK(slm_buffer_download(&small, 0, back, 64, &err) == SLM_OK, "download: %s", err.msg);
        CHECK(memcmp(back, tmp, 64) == 0, "round trip through device memory differs");
        slm_buffer_release(&small);
    }
    /* a large upload crosses the pinned staging halves */
    {
        size_t nbig = ((size_t)20 << 20) + 12;
        uint8_t *src = malloc(nbig), *dst = malloc(nbig);
        slm_buffer big;
        for (size_t i = 0; i < nbig; i++) src[i] = (uint8_t)(i * 2654435761u >> 13);
        s = slm_buffer_alloc(dev, nbig + 4, &big, &err);
        CHECK(s == SLM_OK, "big alloc: %s", err.msg);
        if (!s) {
            CHECK(slm_buffer_upload(&big, 4, src, nbig, &err) == SLM_OK, "big upload: %s", err.msg);
            CHECK(slm_buffer_download(&big, 4, dst, nbig, &err) == SLM_OK, "big download: %s", err.msg);
            CHECK(memcmp(src, dst, nbig) == 0, "big round trip differs");
            slm_buffer_release(&big);
        }
        free(src);
        free(dst);
    }

    slm_harness h;
    slm_harness_init(&h, dev);
    h.verbose = true;                       /* one NMSE line per check: the log of a remote GPU run is the diagnosis */
    h.host_only_kinds = 1u << SLM_OP_EMBED; /* the graph runs the embedding lookup on the host */
    /* Mat-vecs of quantized weights multiply the same 8-bit activations the reference is given (q8_act),
     * float ones f32 activations; prompt GEMMs see f16 weights and activations (relative rounding 2^-11
     * each: NMSE ~1e-7). */
    h.tol_matmul_quant = 1e-5;
    h.matmul_act = q8_act;
    slm_harness_run_all(&h);
    matvec_checks(&h);
    /* batch widths around the mat-vec / GEMM switch */
    slm_harness_matmul(&h, SLM_Q4_K, 512, 77, 8, true);
    slm_harness_matmul(&h, SLM_Q4_K, 512, 77, 9, true);
    slm_harness_matmul(&h, SLM_Q8_0, 2048, 300, 64, false);
    slm_harness_matmul(&h, SLM_F16, 256, 40, 33, true);
    slm_harness_attention(&h, 256, 2, 1, 200, 1, 150, 0);  /* the largest head_dim */
    slm_harness_attention(&h, 80, 6, 3, 700, 20, 600, 32); /* prompt batch deep into the cache */
    slm_harness_run_long_positions(&h);                    /* rope at 128k as the CPU, prompt batches at 4k */
    slm_harness_run_gemma(&h);                             /* GeGLU, per-head norms of 256, sliding windows */
    slm_harness_run_kv_types(&h);                          /* no quantized KV kernel yet: refused, a skip each */
    prompt_attention(&h);
    /* the GEMM's weight dequantized in two chunks (SLM_CUDA_GEMM_CHUNK_ELEMS / K rows, then the rest) */
    slm_harness_matmul(&h, SLM_Q4_0, 4096, (SLM_CUDA_GEMM_CHUNK_ELEMS / 4096) + 5, 9, true);
    gemm_large_activations(&h, SLM_Q4_K, true);
    gemm_large_activations(&h, SLM_F16, false);
    gemm_large_activations(&h, SLM_BF16, true);

    decode_replay(&h, SLM_Q4_K, 5, 5);
    decode_replay(&h, SLM_Q8_0, 60, 4);

    if (dev->ops->measure_bandwidth) {
        double bw = slm_device_measure_bandwidth(dev);
        printf("read bandwidth: %.1f GB/s\n", bw / 1e9);
        CHECK(bw > 0, "bandwidth %g", bw);
    }
    slm_harness_report(&h, "test_cuda_ops");
    slm_test_failures += h.n_fail;
    slm_device_close(dev);
    env_variant("SLM_CUDA_GRAPHS", "0");
    env_variant("SLM_CUDA_SYNC", "1");
    env_variant("SLM_CUDA_MATVEC", "f32");
    /* the debug setting --f32-act reaches the device as its config's f32_activations */
    slm_device_config f32cfg = {.f32_activations = true};
    s = slm_device_open("cuda:0", &f32cfg, &dev, &err);
    CHECK(s == SLM_OK, "open cuda:0 with f32 activations: %s", err.msg);
    if (!s) {
        CHECK(slm_cuda_get_stats(dev).matvec_f32 == 1, "f32_activations did not select f32 mat-vecs");
        slm_device_close(dev);
    }
    return slm_test_finish("test_cuda_ops");
#endif
}
