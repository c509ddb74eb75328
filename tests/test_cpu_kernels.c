/* The CPU kernels (scalar, AVX2, AVX-512: each variant this CPU can run) against kernels/ref.
 *
 * For every weight type and odd shapes (rows not a multiple of any tile, k of one and several blocks,
 * 1..7 activation columns, padded and unaligned weight rows, a strided output):
 *   - matmul of weights from slm_ref_quantize_row with activations through quantize_act is compared with
 *     slm_ref_dot_row on the f32 activations. Quantized weight types meet 8-bit activations, so the
 *     output differs from the reference by the activation rounding. Two checks:
 *       1. every output: |out - ref| <= sum_i |w_i| * max|x| / 254 (+ float slack). This is a hard bound:
 *          each activation is coded as d * q with d = (block max|x|) / 127, so |x_i - d q_i| <= d / 2.
 *       2. NMSE over all outputs of a (type, k) < 1e-4. For uniform random data the expected value is
 *          (d^2 / 12) / E[x^2] ~ 1.5e-5, so 1e-4 passes with margin yet catches a wrong scale, a wrong
 *          nibble order or a dropped min term (each gives NMSE ~ 1e-2 or worse).
 *     Float weight types (f32 activations) must match to 1e-10 NMSE.
 *   - each SIMD variant against the scalar variant: the integer parts are exact, only float summation
 *     order differs, so NMSE < 1e-10.
 *   - attend_f16 (one head of attention over the f16 KV cache) against slm_ref_attention.
 *   - when $SLM_TEST_MODELS holds SmolLM2-135M-Instruct.Q4_1.gguf: the first rows of every quantized
 *     matrix in it (real Q4_1 / Q8_0 scales and mins, not our quantizer's) under the same checks, through
 *     matmul and (where the set has one) the packed GEMM. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "gguf.h"
#include "matvec_x16.h"
#include "ops_ref.h"
#include "quant_ref.h"
#include "test_util.h"
#include "types.h"

static const slm_dtype TYPES[] = {SLM_F32,  SLM_F16,  SLM_BF16, SLM_Q4_0, SLM_Q4_1, SLM_Q5_0,
                                  SLM_Q5_1, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K};
#define N_TYPES (int)(sizeof(TYPES) / sizeof(TYPES[0]))
#define MAX_COLS 7

typedef struct err_sum {
    double num, den;
} err_sum;

static void err_add(err_sum *e, const float *a, const float *ref, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        e->num += d * d;
        e->den += (double)ref[i] * ref[i];
    }
}
static double err_nmse(const err_sum *e) { return e->den > 0 ? e->num / e->den : e->num; }

typedef struct isa_run {
    slm_cpu_kernels k;
    err_sum vs_ref, vs_scalar;
} isa_run;

/* One (type, n_rows, k) case over every usable ISA and 1..MAX_COLS columns. */
/* The reference dot of every row r (weights w, dequantized wd [n_rows][k]) with every column c of x, and
 * the error each output may have: half an 8-bit activation step per element when act_q8 (sum|w| * amax /
 * 254, with 1% slack), plus 1e-5 relative to sum|w*x| for summation order, plus `floor`. */
static void ref_and_bound(slm_dtype t, const uint8_t *w, size_t wrb, const float *wd, const float *x, int64_t k,
                          int64_t n_rows, int64_t n_cols, int64_t os, bool act_q8, double floor, float *ref,
                          float *bound) {
    for (int64_t c = 0; c < n_cols; c++) {
        float amax = 0;
        for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[c * k + i]));
        for (int64_t r = 0; r < n_rows; r++) {
            ref[c * os + r] = slm_ref_dot_row(t, w + (size_t)r * wrb, x + c * k, k);
            double sw = 0, swx = 0;
            for (int64_t i = 0; i < k; i++) {
                sw += fabs(wd[r * k + i]);
                swx += fabs((double)wd[r * k + i] * x[c * k + i]);
            }
            bound[c * os + r] = (float)((act_q8 ? 1.01 * sw * amax / 254.0 : 0.0) + 1e-5 * swx + floor);
        }
    }
}

static void run_case(slm_dtype t, int64_t n_rows, int64_t k, size_t row_pad, isa_run *runs, int n_runs,
                     uint64_t *seed) {
    size_t rb = slm_dtype_row_bytes(t, k), wrb = rb + row_pad;
    uint8_t *w = calloc((size_t)n_rows, wrb);
    float *wf = malloc((size_t)k * sizeof(float)), *wd = malloc((size_t)n_rows * k * sizeof(float));
    float *x = malloc((size_t)MAX_COLS * k * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++) {
        /* rows with a non-zero mean give the Q4_1/Q5_1/K-quant min terms something to do */
        slm_test_fill(wf, k, seed, 1.0f + 0.25f * (float)(r % 3));
        float bias = (r % 2) ? 0.4f : 0.0f;
        for (int64_t i = 0; i < k; i++) wf[i] += bias;
        slm_ref_quantize_row(t, wf, w + (size_t)r * wrb, k);
        slm_ref_dequant_row(t, w + (size_t)r * wrb, wd + r * k, k);
    }
    for (int c = 0; c < MAX_COLS; c++) {
        slm_test_fill(x + c * k, k, seed, 2.0f);
        if (c == 2)
            for (int64_t i = 0; i < k && i < 32; i++) x[c * k + i] = 0; /* a block of zeros: scale 0 */
        if (c == 3) x[c * k + k / 2] = 40.0f;                           /* an outlier */
    }
    /* reference and the per-output bound */
    int64_t ostride = n_rows + 3;
    float *ref = malloc((size_t)MAX_COLS * ostride * sizeof(float));
    float *bound = malloc((size_t)MAX_COLS * ostride * sizeof(float));
    ref_and_bound(t, w, wrb, wd, x, k, n_rows, MAX_COLS, ostride, slm_dtype_is_quant(t), 1e-6, ref, bound);

    size_t act = runs[0].k.act_row_bytes(t, k);
    CHECK(act > 0 && act % 64 == 0, "act_row_bytes(%s, %lld) = %zu", slm_dtype_name(t), (long long)k, act);
    uint8_t *xq = malloc(act * MAX_COLS);
    float *out = malloc((size_t)MAX_COLS * ostride * sizeof(float));
    float *scalar_out = malloc((size_t)MAX_COLS * ostride * sizeof(float));
    for (int nc = 1; nc <= MAX_COLS; nc++) {
        for (int ir = 0; ir < n_runs; ir++) {
            const slm_cpu_kernels *kk = &runs[ir].k;
            CHECK(kk->act_row_bytes(t, k) == act, "act_row_bytes differs between variants");
            for (int c = 0; c < nc; c++) kk->quantize_act(t, x + c * k, xq + (size_t)c * act, k);
            for (int64_t i = 0; i < MAX_COLS * ostride; i++) out[i] = -12345.0f; /* sentinel */
            kk->matmul(t, w, wrb, n_rows, xq, act, nc, k, out, ostride);
            int bad = 0;
            for (int c = 0; c < MAX_COLS; c++) {
                for (int64_t r = 0; r < ostride; r++) {
                    float o = out[c * ostride + r];
                    if (c >= nc || r >= n_rows) {
                        if (o != -12345.0f) bad++; /* wrote outside its rows/columns */
                        continue;
                    }
                    float e = fabsf(o - ref[c * ostride + r]);
                    if (!(e <= bound[c * ostride + r])) {
                        if (bad < 3)
                            fprintf(stderr, "  %s %s rows=%lld k=%lld nc=%d: out[%d][%lld] = %g, ref %g, bound %g\n",
                                    slm_cpu_isa_name(kk->isa), slm_dtype_name(t), (long long)n_rows, (long long)k, nc,
                                    c, (long long)r, o, ref[c * ostride + r], bound[c * ostride + r]);
                        bad++;
                    }
                }
                /* the outlier column is held to the hard bound only: one large element coarsens its
                 * whole block (256 elements for k-quants), which NMSE on random data is not about */
                if (c < nc && c != 3) err_add(&runs[ir].vs_ref, out + c * ostride, ref + c * ostride, n_rows);
            }
            CHECK(bad == 0, "%s %s rows=%lld k=%lld nc=%d: %d outputs out of bound or written out of range",
                  slm_cpu_isa_name(kk->isa), slm_dtype_name(t), (long long)n_rows, (long long)k, nc, bad);
            if (ir == 0) {
                memcpy(scalar_out, out, (size_t)MAX_COLS * ostride * sizeof(float));
            } else {
                for (int c = 0; c < nc; c++)
                    err_add(&runs[ir].vs_scalar, out + c * ostride, scalar_out + c * ostride, n_rows);
            }
        }
    }
    free(w);
    free(wf);
    free(wd);
    free(x);
    free(ref);
    free(bound);
    free(xq);
    free(out);
    free(scalar_out);
}

static void test_matmul(isa_run *runs, int n_runs) {
    uint64_t seed = 0x5eed1234abcdull;
    static const int64_t rows[] = {1, 7, 19};
    for (int ti = 0; ti < N_TYPES; ti++) {
        slm_dtype t = TYPES[ti];
        int be = slm_dtype_get(t)->block_elems;
        int64_t ks[3];
        if (be == 1) {
            ks[0] = 5, ks[1] = 37, ks[2] = 300;
        } else {
            ks[0] = be, ks[1] = 3 * be, ks[2] = be == 32 ? 2048 : 4096;
        }
        for (int ki = 0; ki < 3; ki++) {
            for (int ir = 0; ir < n_runs; ir++) runs[ir].vs_ref = runs[ir].vs_scalar = (err_sum){0, 0};
            for (int ri = 0; ri < 3; ri++) {
                /* rows of the second shape start at odd addresses: no kernel may assume alignment */
                run_case(t, rows[ri], ks[ki], ri == 1 ? 3 : 0, runs, n_runs, &seed);
            }
            double lim = slm_dtype_is_quant(t) ? 1e-4 : 1e-10;
            for (int ir = 0; ir < n_runs; ir++) {
                double e = err_nmse(&runs[ir].vs_ref);
                CHECK(e < lim, "%s %s k=%lld: NMSE vs ref %.3g >= %.0e", slm_cpu_isa_name(runs[ir].k.isa),
                      slm_dtype_name(t), (long long)ks[ki], e, lim);
                if (ir > 0) {
                    double es = err_nmse(&runs[ir].vs_scalar);
                    CHECK(es < 1e-10, "%s %s k=%lld: NMSE vs scalar %.3g", slm_cpu_isa_name(runs[ir].k.isa),
                          slm_dtype_name(t), (long long)ks[ki], es);
                }
                if (ki == 2)
                    printf("  %-6s %-5s k=%-5lld NMSE vs ref %.2e%s\n", slm_cpu_isa_name(runs[ir].k.isa),
                           slm_dtype_name(t), (long long)ks[ki], e, ir > 0 ? "" : " (scalar)");
            }
        }
    }
}

/* attend_f16 for one query head against slm_ref_attention (double sums): head 1 of 2 kv heads, so the
 * rows are strided and offset; head sizes with and without 8- and 64-element tails; lengths around the
 * 8-position blocks; a scale that makes most weights underflow; and a NaN query that must give NaN. */
static void test_attend(isa_run *runs, int n_runs) {
    uint64_t seed = 77;
    static const int hds[] = {1, 7, 64, 80, 96, 128, 200};
    static const int64_t ns[] = {1, 7, 8, 9, 17, 100, 1000};
    static const float scales[] = {0.125f, 4.0f};
    for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
        for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
            for (size_t si = 0; si < 2; si++) {
                int hd = hds[hi];
                int64_t n = ns[ni];
                size_t row = 2 * (size_t)hd; /* 2 kv heads per cached position */
                uint16_t *kc = malloc((size_t)n * row * 2), *vc = malloc((size_t)n * row * 2);
                float *q = malloc(row * 4), *ref = malloc(row * 4), *out = malloc(((size_t)hd + 1) * 4),
                      *scores = malloc((size_t)n * 4);
                float vmax = 0;
                for (size_t i = 0; i < (size_t)n * row; i++) {
                    kc[i] = slm_f32_to_f16(slm_test_randf(&seed) * 3.0f);
                    vc[i] = slm_f32_to_f16(slm_test_randf(&seed) * 2.0f);
                    if (fabsf(slm_f16_to_f32(vc[i])) > vmax) vmax = fabsf(slm_f16_to_f32(vc[i]));
                }
                slm_test_fill(q, (int64_t)row, &seed, 1.0f);
                slm_ref_attention(q, kc, vc, ref, hd, 2, 2, (int)n - 1, scales[si]);
                for (int ir = 0; ir < n_runs; ir++) {
                    const slm_cpu_kernels *kk = &runs[ir].k;
                    out[hd] = 99.0f; /* sentinel past the end */
                    kk->attend_f16(q + hd, kc + hd, vc + hd, row, row, n, hd, scales[si], scores, out);
                    int bad = 0;
                    for (int i = 0; i < hd; i++)
                        if (!(fabsf(out[i] - ref[hd + i]) <= 2e-5f * vmax)) bad++;
                    CHECK(bad == 0 && out[hd] == 99.0f, "%s attend_f16 hd=%d n=%lld scale=%g: %d of %d wrong",
                          slm_cpu_isa_name(kk->isa), hd, (long long)n, scales[si], bad, hd);
                    if (hi == 3 && si == 0) {
                        float keep = q[hd];
                        q[hd] = NAN;
                        kk->attend_f16(q + hd, kc + hd, vc + hd, row, row, n, hd, scales[si], scores, out);
                        q[hd] = keep;
                        int nan = 0;
                        for (int i = 0; i < hd; i++) nan += isnan(out[i]) != 0;
                        CHECK(nan == hd, "%s attend_f16 NaN query n=%lld: %d of %d outputs NaN",
                              slm_cpu_isa_name(kk->isa), (long long)n, nan, hd);
                    }
                }
                free(kc);
                free(vc);
                free(q);
                free(ref);
                free(out);
                free(scores);
            }
}

/* Real weights: up to 48 rows of every 2-D weight of a type the kernels take, random activations. */
static void test_real_model(isa_run *runs, int n_runs) {
    char path[512];
    if (!slm_test_model("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
        printf("real-model check: fixture not found, not run\n");
        return;
    }
    slm_gguf *g = NULL;
    slm_error err = {0};
    if (slm_gguf_open(path, &g, &err) != SLM_OK) {
        CHECK(0, "cannot open %s: %s", path, err.msg);
        return;
    }
    uint64_t seed = 4242;
    int n_checked = 0;
    for (uint64_t ti = 0; ti < g->n_tensors; ti++) {
        const slm_gguf_tensor *t = &g->tensors[ti];
        if (t->n_dims != 2 || !slm_dtype_is_quant(t->type)) continue;
        int64_t k = t->ne[0], n_rows = t->ne[1] < 48 ? t->ne[1] : 48, nc = 5;
        size_t rb = slm_dtype_row_bytes(t->type, k);
        float *x = malloc((size_t)(nc * k) * sizeof(float)), *ref = malloc((size_t)(nc * n_rows) * sizeof(float));
        float *out = malloc((size_t)(nc * n_rows) * sizeof(float)), *wd = malloc((size_t)k * sizeof(float));
        float *bound = malloc((size_t)(nc * n_rows) * sizeof(float));
        slm_test_fill(x, nc * k, &seed, 1.0f);
        for (int64_t c = 0; c < nc; c++) {
            float amax = 0;
            for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[c * k + i]));
            for (int64_t r = 0; r < n_rows; r++) {
                const uint8_t *wr = (const uint8_t *)t->data + (size_t)r * rb;
                ref[c * n_rows + r] = slm_ref_dot_row(t->type, wr, x + c * k, k);
                slm_ref_dequant_row(t->type, wr, wd, k);
                double sw = 0, swx = 0;
                for (int64_t i = 0; i < k; i++) {
                    sw += fabs(wd[i]);
                    swx += fabs((double)wd[i] * x[c * k + i]);
                }
                bound[c * n_rows + r] = (float)(1.01 * sw * amax / 254.0 + 1e-5 * swx + 1e-6);
            }
        }
        for (int ir = 0; ir < n_runs; ir++) {
            const slm_cpu_kernels *kk = &runs[ir].k;
            size_t act = kk->act_row_bytes(t->type, k);
            uint8_t *xq = malloc(act * (size_t)nc);
            for (int64_t c = 0; c < nc; c++) kk->quantize_act(t->type, x + c * k, xq + (size_t)c * act, k);
            kk->matmul(t->type, t->data, rb, n_rows, xq, act, nc, k, out, n_rows);
            int bad = 0;
            for (int64_t i = 0; i < nc * n_rows; i++) bad += !(fabsf(out[i] - ref[i]) <= bound[i]);
            double e = slm_test_nmse(out, ref, nc * n_rows);
            CHECK(bad == 0 && e < 1e-4, "%s real tensor %.*s (%s, k=%lld): %d out of bound, NMSE %.3g",
                  slm_cpu_isa_name(kk->isa), (int)t->name.len, t->name.ptr, slm_dtype_name(t->type), (long long)k, bad,
                  e);
            free(xq);
            if (kk->gemm && kk->gemm_has(t->type)) {
                /* the packed GEMM on the same real rows (its own activation layout and scratch) */
                size_t ga = kk->gemm_act_row_bytes(k), sb = kk->gemm_scratch_bytes(k);
                uint8_t *gx = aligned_alloc(64, ga * (size_t)nc), *scratch = aligned_alloc(64, sb);
                for (int64_t c = 0; c < nc; c++) kk->gemm_quantize_act(x + c * k, gx + (size_t)c * ga, k);
                kk->gemm(t->type, t->data, rb, false, n_rows, gx, ga, nc, k, out, n_rows, scratch);
                int gbad = 0;
                for (int64_t i = 0; i < nc * n_rows; i++) gbad += !(fabsf(out[i] - ref[i]) <= bound[i]);
                double ge = slm_test_nmse(out, ref, nc * n_rows);
                CHECK(gbad == 0 && ge < 1e-4, "%s gemm real tensor %.*s (%s, k=%lld): %d out of bound, NMSE %.3g",
                      slm_cpu_isa_name(kk->isa), (int)t->name.len, t->name.ptr, slm_dtype_name(t->type), (long long)k,
                      gbad, ge);
                free(gx);
                free(scratch);
            }
        }
        n_checked++;
        free(x);
        free(ref);
        free(out);
        free(wd);
        free(bound);
    }
    CHECK(n_checked > 0, "no quantized 2-D tensor found in %s", path);
    printf("real-model check: %d tensors of %s\n", n_checked, path);
    slm_gguf_close(g);
}

/* ---- the packed GEMM of prompt batches (slm_cpu_kernels.gemm, where the set has one) ----
 * Every type it takes, rows not a multiple of its 16-row group (and more rows than one tile of groups),
 * odd column counts (its 6-column blocking) and more columns than one of its column chunks, k of one to
 * many blocks, against slm_ref_dot_row under the same per-output bound and NMSE limit as matmul. For the 32-element types its activations are the
 * matmul's (Q8_32), so it must also agree with the scalar matmul up to float summation order; the
 * K-quants meet finer activation blocks than the matmul's, so only the reference applies to them. */

static const slm_dtype GEMM_TYPES[] = {SLM_Q4_0, SLM_Q4_1, SLM_Q5_0, SLM_Q5_1, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K};
#define N_GEMM_TYPES (int)(sizeof(GEMM_TYPES) / sizeof(GEMM_TYPES[0]))

/* extreme != 0: block scales of the weights swing between ~1e3 and ~1e-5 (f16 subnormal scales) and the
 * activation columns between 1e5 and 1e-5, to catch overflow or lost precision in the scale products. */
static void gemm_case(const slm_cpu_kernels *kk, const slm_cpu_kernels *scalar, slm_dtype t, int64_t n_rows, int64_t k,
                      int64_t n_cols, int extreme, uint64_t *seed, err_sum *vs_ref) {
    size_t wrb = slm_dtype_row_bytes(t, k) + 1; /* odd row pitch: no alignment of the weights assumed */
    uint8_t *w = calloc((size_t)n_rows, wrb);
    float *wf = malloc((size_t)k * sizeof(float)), *wd = malloc((size_t)n_rows * k * sizeof(float));
    float *x = malloc((size_t)n_cols * k * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++) {
        slm_test_fill(wf, k, seed, 1.0f + 0.25f * (float)(r % 3));
        for (int64_t i = 0; i < k; i++) {
            if (r % 2) wf[i] += 0.4f;
            if (extreme) wf[i] *= ((i / 32 + r) % 3 == 0) ? 3e3f : ((i / 32 + r) % 3 == 1) ? 2e-4f : 1.0f;
        }
        slm_ref_quantize_row(t, wf, w + (size_t)r * wrb, k);
        slm_ref_dequant_row(t, w + (size_t)r * wrb, wd + r * k, k);
    }
    for (int64_t c = 0; c < n_cols; c++) {
        float sc = extreme ? (c % 3 == 0 ? 1e5f : c % 3 == 1 ? 1e-5f : 1.0f) : 2.0f;
        slm_test_fill(x + c * k, k, seed, sc);
        if (c % 5 == 2)
            for (int64_t i = 0; i < 32; i++) x[c * k + i] = 0; /* a block of zeros: scale 0 */
    }
    int64_t os = n_rows + 5;
    size_t n_out = (size_t)n_cols * os;
    float *ref = malloc(n_out * sizeof(float)), *bound = malloc(n_out * sizeof(float));
    float *out = malloc(n_out * sizeof(float)), *mm = malloc(n_out * sizeof(float));
    ref_and_bound(t, w, wrb, wd, x, k, n_rows, n_cols, os, true, 1e-30, ref, bound);
    size_t act = kk->gemm_act_row_bytes(k);
    CHECK(act % 64 == 0, "gemm_act_row_bytes(%lld) = %zu is not a multiple of 64", (long long)k, act);
    uint8_t *xq = aligned_alloc(64, act * (size_t)n_cols);
    size_t sb = kk->gemm_scratch_bytes(k);
    CHECK(sb > 0 && sb % 64 == 0, "gemm_scratch_bytes(%lld) = %zu", (long long)k, sb);
    uint8_t *scratch = aligned_alloc(64, sb);
    memset(scratch, 0xff, sb); /* NaN bytes: the GEMM may not rely on zeroed scratch */
    for (int64_t c = 0; c < n_cols; c++) kk->gemm_quantize_act(x + c * k, xq + (size_t)c * act, k);
    for (size_t i = 0; i < n_out; i++) out[i] = -12345.0f;
    kk->gemm(t, w, wrb, false, n_rows, xq, act, n_cols, k, out, os, scratch);
    int bad = 0;
    for (int64_t c = 0; c < n_cols; c++) {
        for (int64_t r = 0; r < os; r++) {
            float o = out[c * os + r];
            if (r >= n_rows) {
                bad += o != -12345.0f; /* wrote past its rows */
                continue;
            }
            if (!(fabsf(o - ref[c * os + r]) <= bound[c * os + r])) {
                if (bad < 3)
                    fprintf(stderr, "  gemm %s rows=%lld k=%lld T=%lld%s: out[%lld][%lld] = %g, ref %g, bound %g\n",
                            slm_dtype_name(t), (long long)n_rows, (long long)k, (long long)n_cols,
                            extreme ? " extreme" : "", (long long)c, (long long)r, o, ref[c * os + r],
                            bound[c * os + r]);
                bad++;
            }
        }
        if (!extreme) err_add(vs_ref, out + c * os, ref + c * os, n_rows);
    }
    CHECK(bad == 0, "gemm %s rows=%lld k=%lld T=%lld%s: %d outputs out of bound or written out of range",
          slm_dtype_name(t), (long long)n_rows, (long long)k, (long long)n_cols, extreme ? " extreme" : "", bad);
    if (slm_dtype_get(t)->block_elems == 32) {
        /* same activation blocks as matmul: only float summation order may differ */
        CHECK(kk->gemm_act_row_bytes(k) == scalar->act_row_bytes(t, k), "gemm and matmul activations differ");
        scalar->matmul(t, w, wrb, n_rows, xq, act, n_cols, k, mm, os);
        err_sum e = {0, 0};
        for (int64_t c = 0; c < n_cols; c++) err_add(&e, out + c * os, mm + c * os, n_rows);
        CHECK(err_nmse(&e) < 1e-10, "gemm %s rows=%lld k=%lld T=%lld%s: NMSE vs scalar matmul %.3g", slm_dtype_name(t),
              (long long)n_rows, (long long)k, (long long)n_cols, extreme ? " extreme" : "", err_nmse(&e));
    }
    free(w);
    free(wf);
    free(wd);
    free(x);
    free(ref);
    free(bound);
    free(out);
    free(mm);
    free(xq);
    free(scratch);
}

/* The GEMM's activation quantizer must give exactly the bytes of quantize_act's Q8_32 format (the
 * portable one): random blocks, exact ties (x / d = n + 0.5 with d = 1), a zero block, a block with a
 * NaN and one with an inf (scale NaN, zero quants). */
static void test_gemm_quantize(const slm_cpu_kernels *kk, const slm_cpu_kernels *portable) {
    const int64_t k = 7 * 32;
    float x[7 * 32];
    uint64_t seed = 31337;
    slm_test_fill(x, k, &seed, 3.0f);
    for (int i = 0; i < 32; i++) x[32 + i] = (i == 0) ? 127.0f : (float)(i - 16) + 0.5f; /* d = 1: ties */
    for (int i = 0; i < 32; i++) x[64 + i] = 0.0f;
    x[96 + 5] = NAN;
    x[128 + 31] = -INFINITY;
    x[160 + 3] = 1e30f; /* finite, large */
    size_t ab = kk->gemm_act_row_bytes(k);
    CHECK(ab == portable->act_row_bytes(SLM_Q8_0, k), "gemm_act_row_bytes differs from the Q8_32 format");
    uint8_t *a = calloc(1, ab), *b = calloc(1, ab);
    kk->gemm_quantize_act(x, a, k);
    portable->quantize_act(SLM_Q8_0, x, b, k);
    /* NaN scales compare unequal as floats but are the same bytes only by chance: compare NaN-ness */
    const float *da = (const float *)a, *db = (const float *)b;
    int bad = 0;
    for (int i = 0; i < 2 * 7; i++) bad += !(isnan(da[i]) ? isnan(db[i]) : da[i] == db[i]);
    /* the quants follow d[7] and s[7], rounded up to 64 bytes (act_quant.h) */
    const int8_t *qa = (const int8_t *)a + 64, *qb = (const int8_t *)b + 64;
    for (int i = 0; i < k; i++) bad += qa[i] != qb[i];
    CHECK(bad == 0, "%s gemm_quantize_act differs from quantize_act in %d values", slm_cpu_isa_name(kk->isa), bad);
    CHECK(isnan(da[3]) && isnan(da[4]) && qa[96 + 5] == 0 && qa[128 + 31] == 0, "NaN / inf blocks not flagged");
    CHECK(qa[32 + 1] == -15 && qa[32 + 17] == 2 && qa[32] == 127, "ties not rounded half away from zero: %d %d",
          qa[32 + 1], qa[32 + 17]);
    free(a);
    free(b);
}

static void test_gemm(const isa_run *runs, int n_runs) {
    int n_sets = 0;
    for (int ir = 0; ir < n_runs; ir++) {
        const slm_cpu_kernels *kk = &runs[ir].k;
        if (!kk->gemm) continue;
        n_sets++;
        test_gemm_quantize(kk, &runs[0].k);
        CHECK(kk->gemm_has && kk->gemm_act_row_bytes && kk->gemm_quantize_act && kk->gemm_scratch_bytes &&
                  kk->gemm_min_cols >= 2,
              "%s: incomplete gemm entry", slm_cpu_isa_name(kk->isa));
        CHECK(!kk->gemm_has(SLM_F32) && !kk->gemm_has(SLM_F16), "%s: gemm claims a type it has no packing for",
              slm_cpu_isa_name(kk->isa));
        uint64_t seed = 0x9e3779b97f4a7c15ull;
        static const int64_t rows[] = {1, 17, 45, 143};
        static const int64_t cols[] = {7, 9, 33, 100};
        static const int64_t ks[] = {256, 1024, 4096};
        for (int ti = 0; ti < N_GEMM_TYPES; ti++) {
            slm_dtype t = GEMM_TYPES[ti];
            CHECK(kk->gemm_has(t), "%s: gemm lacks %s", slm_cpu_isa_name(kk->isa), slm_dtype_name(t));
            for (int ki = 0; ki < 3; ki++) {
                err_sum e = {0, 0};
                for (int ri = 0; ri < 4; ri++) {
                    /* the big shapes only at the first k: the reference dot is the slow part */
                    if (ks[ki] == 4096 && rows[ri] > 45) continue;
                    gemm_case(kk, &runs[0].k, t, rows[ri], ks[ki], cols[(ri + ki) % 4], 0, &seed, &e);
                }
                CHECK(err_nmse(&e) < 1e-4, "%s gemm %s k=%lld: NMSE vs ref %.3g", slm_cpu_isa_name(kk->isa),
                      slm_dtype_name(t), (long long)ks[ki], err_nmse(&e));
                if (ki == 2)
                    printf("  %-6s gemm %-5s k=%-5lld NMSE vs ref %.2e\n", slm_cpu_isa_name(kk->isa), slm_dtype_name(t),
                           (long long)ks[ki], err_nmse(&e));
            }
            /* more columns than one of the GEMM's column chunks at k = 4096 (~200): several chunks */
            {
                err_sum e = {0, 0};
                gemm_case(kk, &runs[0].k, t, 33, 4096, 230, 0, &seed, &e);
                CHECK(err_nmse(&e) < 1e-4, "%s gemm %s k=4096 T=230: NMSE vs ref %.3g", slm_cpu_isa_name(kk->isa),
                      slm_dtype_name(t), err_nmse(&e));
            }
            /* extreme scales: the per-output bound only (NMSE would be that of the largest outputs) */
            err_sum unused = {0, 0};
            gemm_case(kk, &runs[0].k, t, 21, 512, 9, 1, &seed, &unused);
        }
    }
    if (n_sets == 0) printf("packed gemm: no kernel set on this CPU has one, not tested\n");
}

/* ---- the repacked decode layout (slm_cpu_kernels.matvec_x16, where the set has it) ----
 * For each type it takes: packing then unpacking gives the GGUF rows back byte for byte; matvec_x16 with
 * 1..10 columns (past its 8-column groups) against the scalar matmul on the GGUF rows (the same integer
 * dots: NMSE < 1e-10) and the reference (the matmul's per-output bound); every column's bits the same
 * whatever the column count (a server's replies must not depend on its load); and the packed GEMM on the
 * repacked rows gives exactly the bits it gives on the GGUF rows. extreme: the swinging scales of
 * gemm_case. */
#define X16_MAX_COLS 10
static void x16_case(const slm_cpu_kernels *kk, const slm_cpu_kernels *scalar, slm_dtype t, int64_t n_rows, int64_t k,
                     int extreme, uint64_t *seed) {
    size_t rb = slm_dtype_row_bytes(t, k);
    uint8_t *w = malloc((size_t)n_rows * rb), *wx = malloc((size_t)n_rows * rb), *back = malloc((size_t)n_rows * rb);
    float *wf = malloc((size_t)k * sizeof(float)), *wd = malloc((size_t)n_rows * k * sizeof(float));
    float *x = malloc((size_t)X16_MAX_COLS * k * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++) {
        slm_test_fill(wf, k, seed, 1.0f + 0.25f * (float)(r % 3));
        for (int64_t i = 0; i < k; i++)
            if (extreme) wf[i] *= ((i / 32 + r) % 3 == 0) ? 3e3f : ((i / 32 + r) % 3 == 1) ? 2e-4f : 1.0f;
        slm_ref_quantize_row(t, wf, w + (size_t)r * rb, k);
        slm_ref_dequant_row(t, w + (size_t)r * rb, wd + r * k, k);
    }
    for (int c = 0; c < X16_MAX_COLS; c++) {
        slm_test_fill(x + c * k, k, seed, extreme ? (c % 3 == 0 ? 1e5f : c % 3 == 1 ? 1e-5f : 1.0f) : 2.0f);
        if (c == 2)
            for (int64_t i = 0; i < 32; i++) x[c * k + i] = 0; /* a block of zeros: scale 0 */
    }
    slm_x16_pack(t, w, rb, n_rows, k, wx);
    slm_x16_unpack(t, wx, n_rows, k, back, rb);
    CHECK(!memcmp(back, w, (size_t)n_rows * rb), "x16 %s rows=%lld k=%lld: pack then unpack changed the rows",
          slm_dtype_name(t), (long long)n_rows, (long long)k);
    int64_t os = n_rows + 5;
    size_t n_out = (size_t)X16_MAX_COLS * os;
    float *ref = malloc(n_out * sizeof(float)), *bound = malloc(n_out * sizeof(float));
    float *out = malloc(n_out * sizeof(float)), *one = malloc(n_out * sizeof(float)),
          *mm = malloc(n_out * sizeof(float));
    ref_and_bound(t, w, rb, wd, x, k, n_rows, X16_MAX_COLS, os, true, 1e-30, ref, bound);
    size_t act = kk->act_row_bytes(t, k);
    uint8_t *xq = aligned_alloc(64, act * X16_MAX_COLS);
    for (int c = 0; c < X16_MAX_COLS; c++) kk->quantize_act(t, x + c * k, xq + (size_t)c * act, k);
    scalar->matmul(t, w, rb, n_rows, xq, act, X16_MAX_COLS, k, mm, os);
    /* each column alone, then all of them at every count */
    for (int c = 0; c < X16_MAX_COLS; c++)
        kk->matvec_x16(t, wx, rb, n_rows, xq + (size_t)c * act, act, 1, k, one + c * os, os);
    for (int nc = 1; nc <= X16_MAX_COLS; nc++) {
        for (size_t i = 0; i < n_out; i++) out[i] = -12345.0f;
        kk->matvec_x16(t, wx, rb, n_rows, xq, act, nc, k, out, os);
        int bad = 0, differ = 0;
        err_sum e = {0, 0};
        for (int c = 0; c < X16_MAX_COLS; c++)
            for (int64_t r = 0; r < os; r++) {
                float o = out[c * os + r];
                if (c >= nc || r >= n_rows) {
                    bad += o != -12345.0f; /* wrote outside its rows or columns */
                    continue;
                }
                if (!(fabsf(o - ref[c * os + r]) <= bound[c * os + r])) {
                    if (bad < 3)
                        fprintf(stderr, "  x16 %s rows=%lld k=%lld nc=%d%s: out[%d][%lld] = %g, ref %g, bound %g\n",
                                slm_dtype_name(t), (long long)n_rows, (long long)k, nc, extreme ? " extreme" : "", c,
                                (long long)r, o, ref[c * os + r], bound[c * os + r]);
                    bad++;
                }
                differ += memcmp(&o, &one[c * os + r], sizeof o) != 0;
            }
        for (int c = 0; c < nc; c++) err_add(&e, out + c * os, mm + c * os, n_rows);
        CHECK(bad == 0, "x16 %s rows=%lld k=%lld nc=%d%s: %d outputs out of bound or written out of range",
              slm_dtype_name(t), (long long)n_rows, (long long)k, nc, extreme ? " extreme" : "", bad);
        CHECK(differ == 0, "x16 %s rows=%lld k=%lld nc=%d: %d outputs differ from the same column alone",
              slm_dtype_name(t), (long long)n_rows, (long long)k, nc, differ);
        CHECK(extreme || err_nmse(&e) < 1e-10, "x16 %s rows=%lld k=%lld nc=%d: NMSE vs scalar matmul %.3g",
              slm_dtype_name(t), (long long)n_rows, (long long)k, nc, err_nmse(&e));
    }
    if (kk->gemm && kk->gemm_has(t)) {
        size_t ga = kk->gemm_act_row_bytes(k), sb = kk->gemm_scratch_bytes(k);
        uint8_t *gx = aligned_alloc(64, ga * X16_MAX_COLS), *scratch = aligned_alloc(64, sb);
        for (int c = 0; c < X16_MAX_COLS; c++) kk->gemm_quantize_act(x + c * k, gx + (size_t)c * ga, k);
        kk->gemm(t, w, rb, false, n_rows, gx, ga, X16_MAX_COLS, k, mm, os, scratch);
        kk->gemm(t, wx, rb, true, n_rows, gx, ga, X16_MAX_COLS, k, out, os, scratch);
        int differ = 0;
        for (int c = 0; c < X16_MAX_COLS; c++) differ += memcmp(out + c * os, mm + c * os, (size_t)n_rows * 4) != 0;
        CHECK(differ == 0, "gemm on x16 %s rows=%lld k=%lld: %d columns differ from the GGUF rows'", slm_dtype_name(t),
              (long long)n_rows, (long long)k, differ);
        free(gx);
        free(scratch);
    }
    free(w);
    free(wx);
    free(back);
    free(wf);
    free(wd);
    free(x);
    free(ref);
    free(bound);
    free(out);
    free(one);
    free(mm);
    free(xq);
}

static void test_x16(const isa_run *runs, int n_runs) {
    uint64_t seed = 0x16;
    int n_sets = 0;
    for (int ir = 0; ir < n_runs; ir++) {
        const slm_cpu_kernels *kk = &runs[ir].k;
        if (!kk->x16_has) continue;
        n_sets++;
        static const slm_dtype types[] = {SLM_Q4_0, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K};
        for (int ti = 0; ti < 5; ti++) {
            slm_dtype t = types[ti];
            /* every type the kernel computes, whether or not the set repacks it (AVX2: Q4_0 only; it has
             * no kernel for Q8_0's 8-bit codes, whose 16-bit pair sums would overflow) */
            bool can = kk->isa == SLM_ISA_AVX512 ? slm_cpu_matvec_x16_has_avx512(t) : slm_cpu_matvec_x16_has_avx2(t);
            bool want = kk->isa == SLM_ISA_AVX512 || t != SLM_Q8_0;
            CHECK(can == want && slm_x16_type(t) && (!kk->x16_has(t) || can), "%s: x16 kernel for %s: %d, expected %d",
                  slm_cpu_isa_name(kk->isa), slm_dtype_name(t), can, want);
            if (!can) continue;
            static const int64_t rows[] = {16, 48, 160}, ks[] = {256, 768, 2048};
            for (int ri = 0; ri < 3; ri++)
                for (int ki = 0; ki < 3; ki++)
                    x16_case(kk, &runs[0].k, t, rows[ri], ks[ki] / (slm_dtype_get(t)->block_elems == 256 ? 1 : 8), 0,
                             &seed);
            x16_case(kk, &runs[0].k, t, 32, 512, 1, &seed);
        }
        CHECK(!kk->x16_has(SLM_Q4_1) && !kk->x16_has(SLM_Q5_0), "%s: x16 claims a type without the layout",
              slm_cpu_isa_name(kk->isa));
    }
    printf("x16 layout: %d kernel set(s) checked\n", n_sets);
}

int main(void) {
    slm_cpu_isa best = slm_cpu_isa_detect();
    printf("best ISA here: %s\n", slm_cpu_isa_name(best));
    CHECK(slm_cpu_kernels_get(best).isa == best, "kernels_get(detect()) gives another ISA");
    isa_run runs[3];
    int n_runs = 0;
    for (int i = SLM_ISA_SCALAR; i <= SLM_ISA_AVX512; i++) {
        slm_cpu_kernels k = slm_cpu_kernels_get((slm_cpu_isa)i);
        if (k.isa != (slm_cpu_isa)i) {
            /* falls back to a lower ISA: this CPU or build lacks it */
            CHECK((int)k.isa < i, "kernels_get(%d) returned a higher ISA %d", i, (int)k.isa);
            CHECK(i > (int)best, "%s is below the detected best ISA but unavailable", slm_cpu_isa_name((slm_cpu_isa)i));
            printf("%s: not available on this CPU, not tested\n", slm_cpu_isa_name((slm_cpu_isa)i));
            continue;
        }
        CHECK(k.matmul && k.quantize_act && k.act_row_bytes && k.attend_f16, "%s: missing function",
              slm_cpu_isa_name(k.isa));
        runs[n_runs++] = (isa_run){.k = k};
    }
    test_matmul(runs, n_runs);
    /* the exact-activation set (--f32-act): same shapes and bounds, and far closer to the reference */
    isa_run exact = {.k = slm_cpu_kernels_f32act(best)};
    test_matmul(&exact, 1);
    printf("f32 activations: NMSE vs reference %.3g\n", err_nmse(&exact.vs_ref));
    CHECK(err_nmse(&exact.vs_ref) < 1e-10, "f32-activation mat-mul NMSE %g", err_nmse(&exact.vs_ref));
    test_gemm(runs, n_runs);
    test_x16(runs, n_runs);
    test_attend(runs, n_runs);
    test_real_model(runs, n_runs);
    return slm_test_finish("test_cpu_kernels");
}
