/* kernels/ref ops against hand computations on tiny inputs and against properties that must hold
 * exactly or nearly (RoPE at position 0 is the identity and preserves norms; attention over one
 * position returns V, over identical keys the mean of V). */
#include <string.h>

#include "ops_ref.h"
#include "test_util.h"
#include "types.h"

static int close_to(double got, double want, double tol) { return fabs(got - want) <= tol * (1.0 + fabs(want)); }

static void test_rmsnorm(void) {
    /* x = {1, 2, 3, 4}: mean(x^2) = 30 / 4 = 7.5, so y = x * w / sqrt(7.5 + eps). */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f}, y[4];
    slm_ref_rmsnorm(x, w, y, 4, 0.0f);
    double r = 1.0 / sqrt(7.5);
    CHECK(close_to(y[0], 1 * r, 1e-6) && close_to(y[1], 2 * r, 1e-6) && close_to(y[2], 6 * r, 1e-6) &&
              close_to(y[3], 2 * r, 1e-6),
          "rmsnorm y = %g %g %g %g", y[0], y[1], y[2], y[3]);
    slm_ref_rmsnorm(x, w, y, 4, 0.5f); /* eps enters under the root: 1/sqrt(8) */
    CHECK(close_to(y[2], 6 / sqrt(8.0), 1e-6), "rmsnorm eps y[2] = %g", y[2]);
    /* All zeros with eps > 0 stay zeros (no NaN). */
    float z[3] = {0, 0, 0}, wz[3] = {1, 1, 1}, yz[3];
    slm_ref_rmsnorm(z, wz, yz, 3, 1e-5f);
    CHECK(yz[0] == 0 && yz[1] == 0 && yz[2] == 0, "rmsnorm of zeros: %g %g %g", yz[0], yz[1], yz[2]);
    /* In place, and the output's rms is 1 for unit weights. */
    uint64_t s = 7;
    float v[96], ones[96];
    slm_test_fill(v, 96, &s, 3.0f);
    for (int i = 0; i < 96; i++) ones[i] = 1;
    slm_ref_rmsnorm(v, ones, v, 96, 0.0f);
    double ss = 0;
    for (int i = 0; i < 96; i++) ss += (double)v[i] * v[i];
    CHECK(close_to(ss / 96, 1.0, 1e-6), "rms after norm %g", sqrt(ss / 96));
}

static void test_rope(void) {
    /* Position 0 is the identity, bit for bit, in both modes. */
    uint64_t s = 11;
    float x[64], y[64];
    slm_test_fill(x, 64, &s, 1.0f);
    for (int neox = 0; neox < 2; neox++) {
        memcpy(y, x, sizeof x);
        slm_ref_rope(y, 64, 0, 10000.0f, 1.0f, NULL, neox);
        CHECK(memcmp(x, y, sizeof x) == 0, "rope at pos 0 changes the vector (neox %d)", neox);
    }

    /* Normal mode by hand: n_rot = 4 of 6 dims, pos = 1, base 10000: pair (0,1) turns by theta_0 = 1,
     * pair (2,3) by theta_1 = 10000^(-2/4) = 0.01; dims 4, 5 untouched. x = {1, 0, 1, 0, 9, -9}. */
    float a[6] = {1, 0, 1, 0, 9, -9};
    slm_ref_rope(a, 4, 1, 10000.0f, 1.0f, NULL, 0);
    CHECK(close_to(a[0], cos(1.0), 1e-6) && close_to(a[1], sin(1.0), 1e-6), "normal pair 0: %g %g", a[0], a[1]);
    CHECK(close_to(a[2], cos(0.01), 1e-6) && close_to(a[3], sin(0.01), 1e-6), "normal pair 1: %g %g", a[2], a[3]);
    CHECK(a[4] == 9 && a[5] == -9, "dims past n_rot changed: %g %g", a[4], a[5]);

    /* NeoX by hand: pairs (0,2) and (1,3). x = {1, 2, 0, 0}: x0' = cos 1, x2' = sin 1, x1' = 2 cos 0.01,
     * x3' = 2 sin 0.01. */
    float b[4] = {1, 2, 0, 0};
    slm_ref_rope(b, 4, 1, 10000.0f, 1.0f, NULL, 1);
    CHECK(close_to(b[0], cos(1.0), 1e-6) && close_to(b[2], sin(1.0), 1e-6), "neox pair 0: %g %g", b[0], b[2]);
    CHECK(close_to(b[1], 2 * cos(0.01), 1e-6) && close_to(b[3], 2 * sin(0.01), 1e-6), "neox pair 1: %g %g", b[1], b[3]);

    /* freq_scale and factors: pos 4, scale 0.5, factors {2, 4}: theta_0 = 4 * 1 * 0.5 / 2 = 1,
     * theta_1 = 4 * 0.01 * 0.5 / 4 = 0.005. */
    float c[4] = {1, 0, 0, 3}, f[2] = {2, 4};
    slm_ref_rope(c, 4, 4, 10000.0f, 0.5f, f, 0);
    CHECK(close_to(c[0], cos(1.0), 1e-6) && close_to(c[1], sin(1.0), 1e-6), "scaled pair 0: %g %g", c[0], c[1]);
    CHECK(close_to(c[2], -3 * sin(0.005), 1e-6) && close_to(c[3], 3 * cos(0.005), 1e-6), "scaled pair 1: %g %g", c[2],
          c[3]);

    /* Norm is preserved, and the score of rotated q, k depends only on the distance of their positions. */
    float q[64], k[64], q1[64], k1[64], q2[64], k2[64];
    slm_test_fill(q, 64, &s, 1.0f);
    slm_test_fill(k, 64, &s, 1.0f);
    for (int neox = 0; neox < 2; neox++) {
        memcpy(y, x, sizeof x);
        slm_ref_rope(y, 64, 37, 10000.0f, 1.0f, NULL, neox);
        double n0 = 0, n1 = 0;
        for (int i = 0; i < 64; i++) n0 += (double)x[i] * x[i], n1 += (double)y[i] * y[i];
        CHECK(close_to(n1, n0, 1e-5), "rope changes the norm: %g -> %g (neox %d)", n0, n1, neox);

        memcpy(q1, q, sizeof q), memcpy(k1, k, sizeof k), memcpy(q2, q, sizeof q), memcpy(k2, k, sizeof k);
        slm_ref_rope(q1, 64, 10, 10000.0f, 1.0f, NULL, neox);
        slm_ref_rope(k1, 64, 3, 10000.0f, 1.0f, NULL, neox);
        slm_ref_rope(q2, 64, 107, 10000.0f, 1.0f, NULL, neox);
        slm_ref_rope(k2, 64, 100, 10000.0f, 1.0f, NULL, neox);
        double d1 = 0, d2 = 0;
        for (int i = 0; i < 64; i++) d1 += (double)q1[i] * k1[i], d2 += (double)q2[i] * k2[i];
        CHECK(close_to(d1, d2, 1e-5), "q.k at distance 7 differs: %g vs %g (neox %d)", d1, d2, neox);
    }
}

static void test_swiglu(void) {
    /* silu(g) = g / (1 + e^-g): silu(0) = 0, silu(1) = 0.7310585786, silu(-1) = -0.2689414214,
     * silu(20) = 19.99999996, silu(-100) = -3.7e-42 (tiny, finite). */
    float g[5] = {0, 1, -1, 20, -100}, u[5] = {1, 2, 3, 0.5f, 1}, y[5];
    slm_ref_swiglu(g, u, y, 5);
    CHECK(y[0] == 0, "silu(0) * 1 = %g", y[0]);
    CHECK(close_to(y[1], 2 * 0.7310585786, 1e-7), "silu(1) * 2 = %.9g", y[1]);
    CHECK(close_to(y[2], 3 * -0.2689414214, 1e-7), "silu(-1) * 3 = %.9g", y[2]);
    CHECK(close_to(y[3], 10.0, 1e-7), "silu(20) * 0.5 = %.9g", y[3]);
    CHECK(isfinite(y[4]) && fabsf(y[4]) < 1e-30f, "silu(-100) = %g", y[4]);
}

static void test_geglu(void) {
    /* gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), values from Python's math module:
     * gelu(1) = 0.8411919906, gelu(-1) = -0.1588080094, gelu(3) = 2.9963626079, gelu(-3) = -0.0036373921;
     * gelu(0) = 0; far out it is x (or -0), never NaN. */
    float g[7] = {0, 1, -1, 3, -3, 100, -100}, u[7] = {1, 2, 3, 1, 1, 0.5f, 1}, y[7];
    slm_ref_geglu(g, u, y, 7);
    CHECK(y[0] == 0, "gelu(0) * 1 = %g", y[0]);
    CHECK(close_to(y[1], 2 * 0.8411919906, 1e-7), "gelu(1) * 2 = %.9g", y[1]);
    CHECK(close_to(y[2], 3 * -0.1588080094, 1e-7), "gelu(-1) * 3 = %.9g", y[2]);
    CHECK(close_to(y[3], 2.9963626079, 1e-7), "gelu(3) = %.9g", y[3]);
    CHECK(close_to(y[4], -0.0036373921, 1e-6), "gelu(-3) = %.9g", y[4]);
    CHECK(y[5] == 50.0f, "gelu(100) * 0.5 = %.9g", y[5]);
    CHECK(y[6] == 0.0f, "gelu(-100) = %g", y[6]);
}

/* Fills a f16 cache row slot with values. */
static void put_h(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = slm_f32_to_f16(src[i]);
}

static void test_attention(void) {
    enum { HD = 4, NH = 4, NKV = 2, MAXPOS = 8 };
    uint16_t kc[MAXPOS * HD * NKV], vc[MAXPOS * HD * NKV];
    float q[HD * NH], out[HD * NH];
    uint64_t s = 99;
    slm_test_fill(q, HD * NH, &s, 1.0f);

    /* One position: every head returns the V of its kv head (heads 0,1 -> kv 0; heads 2,3 -> kv 1).
     * Positions past pos hold NaN: causality means they are never read. */
    for (size_t i = 0; i < sizeof kc / 2; i++) kc[i] = 0x7e00, vc[i] = 0x7e00;
    float k0[HD * NKV], v0[HD * NKV] = {1, 2, 3, 4, -5, -6, -7, -8};
    slm_test_fill(k0, HD * NKV, &s, 1.0f);
    put_h(kc, k0, HD * NKV);
    put_h(vc, v0, HD * NKV);
    slm_ref_attention(q, kc, vc, out, HD, NH, NKV, 0, 0.5f);
    for (int h = 0; h < NH; h++)
        for (int d = 0; d < HD; d++)
            CHECK(out[h * HD + d] == v0[(h / 2) * HD + d], "one position: head %d dim %d = %g", h, d, out[h * HD + d]);

    /* Identical keys at every position: uniform weights, so the output is the mean of V. */
    enum { P = 5 };
    float vals[P][HD * NKV];
    for (int t = 0; t < P; t++) {
        put_h(kc + t * HD * NKV, k0, HD * NKV);
        for (int i = 0; i < HD * NKV; i++) vals[t][i] = (float)(t * 8 + i) * 0.25f - 3.0f; /* f16-exact */
        put_h(vc + t * HD * NKV, vals[t], HD * NKV);
    }
    slm_ref_attention(q, kc, vc, out, HD, NH, NKV, P - 1, 0.5f);
    for (int h = 0; h < NH; h++) {
        for (int d = 0; d < HD; d++) {
            double mean = 0;
            for (int t = 0; t < P; t++) mean += vals[t][(h / 2) * HD + d];
            mean /= P;
            CHECK(close_to(out[h * HD + d], mean, 1e-6), "uniform keys: head %d dim %d = %g, mean %g", h, d,
                  out[h * HD + d], mean);
        }
    }

    /* Two positions by hand (1 head, head_dim 2): q = {1, 0}, k0 = {0, 0}, k1 = {1, 0}, scale = ln 3:
     * scores 0 and ln 3, weights 1/4 and 3/4; v0 = {4, 0}, v1 = {0, 8} -> out = {1, 6}. */
    uint16_t k2[4], v2[4];
    float kk[4] = {0, 0, 1, 0}, vv[4] = {4, 0, 0, 8}, q2[2] = {1, 0}, o2[2];
    put_h(k2, kk, 4);
    put_h(v2, vv, 4);
    slm_ref_attention(q2, k2, v2, o2, 2, 1, 1, 1, (float)log(3.0));
    CHECK(close_to(o2[0], 1.0, 1e-6) && close_to(o2[1], 6.0, 1e-6), "hand attention = %g %g", o2[0], o2[1]);

    /* Huge scores must not overflow: scores 1000 and 2000 put all weight on position 1. */
    float kk2[4] = {1, 0, 2, 0};
    put_h(k2, kk2, 4);
    slm_ref_attention(q2, k2, v2, o2, 2, 1, 1, 1, 1000.0f);
    CHECK(o2[0] == 0 && o2[1] == 8, "large scores: %g %g (want v1 = 0 8)", o2[0], o2[1]);

    /* A sliding window: with the keys equal the output is the mean of the V rows the window shows, rows
     * pos - window + 1..pos; the rows before it hold NaN, which must never be read. Window 0 is the whole
     * past, a window wider than the past too. */
    enum { P2 = 6 };
    uint16_t kw[P2 * HD * NKV], vw[P2 * HD * NKV];
    float vrow[P2][HD * NKV];
    for (int t = 0; t < P2; t++) {
        put_h(kw + t * HD * NKV, k0, HD * NKV);
        for (int i = 0; i < HD * NKV; i++) vrow[t][i] = (float)(t * 8 + i) * 0.5f - 7.0f;
        put_h(vw + t * HD * NKV, vrow[t], HD * NKV);
    }
    int windows[4] = {1, 3, 0, 100};
    for (int wi = 0; wi < 4; wi++) {
        int w = windows[wi], pos = P2 - 1, first = w && pos + 1 > w ? pos + 1 - w : 0;
        uint16_t kn[P2 * HD * NKV], vn[P2 * HD * NKV];
        memcpy(kn, kw, sizeof kn);
        memcpy(vn, vw, sizeof vn);
        for (int i = 0; i < first * HD * NKV; i++) kn[i] = vn[i] = 0x7e00;
        slm_ref_attention_window(q, kn, vn, out, HD, NH, NKV, pos, w, 0.5f);
        for (int h = 0; h < NH; h++)
            for (int d = 0; d < HD; d++) {
                double mean = 0;
                for (int t = first; t <= pos; t++) mean += vrow[t][(h / 2) * HD + d];
                mean /= pos + 1 - first;
                CHECK(close_to(out[h * HD + d], mean, 1e-6), "window %d: head %d dim %d = %g, mean %g", w, h, d,
                      out[h * HD + d], mean);
            }
    }
}

int main(void) {
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_geglu();
    test_attention();
    return slm_test_finish("test_ops_ref");
}
