/* Scalar reference of every op: plain loops, sums in double, no shortcuts. Fast kernels are judged
 * against these, so clarity beats speed here. */
#include "ops_ref.h"

#include <math.h>
#include <stdlib.h>

#include "quant_ref.h"

void slm_ref_rmsnorm(const float *x, const float *w, float *y, int n, float eps) {
    if (n <= 0) return;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + (double)eps);
    /* w == NULL is a norm without weight (all ones); x may alias y. */
    for (int i = 0; i < n; i++) y[i] = (float)((double)x[i] * inv * (w ? (double)w[i] : 1.0));
}

void slm_ref_rope(float *x, int n_rot, int pos, float freq_base, float freq_scale, const float *factors, int neox) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        /* theta_i = pos * base^(-2i/n_rot) * freq_scale / factor_i */
        double theta = (double)pos * pow((double)freq_base, -2.0 * i / n_rot) * (double)freq_scale;
        if (factors) theta /= (double)factors[i];
        double c = cos(theta), s = sin(theta);
        int a = neox ? i : 2 * i;
        int b = neox ? i + half : 2 * i + 1;
        double x0 = x[a], x1 = x[b];
        x[a] = (float)(x0 * c - x1 * s);
        x[b] = (float)(x0 * s + x1 * c);
    }
}

void slm_ref_swiglu(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i++) {
        double gi = g[i];
        /* silu(g) = g * sigmoid(g); for very negative g exp overflows to inf and the quotient is -0. */
        double silu = gi / (1.0 + exp(-gi));
        y[i] = (float)(silu * (double)u[i]);
    }
}

void slm_ref_geglu(const float *g, const float *u, float *y, int n) {
    const double c = sqrt(2.0 / M_PI);
    for (int i = 0; i < n; i++) {
        double gi = g[i];
        /* tanh saturates to +-1 for large |g|: gelu(g) -> g or -0, never NaN */
        double gelu = 0.5 * gi * (1.0 + tanh(c * (gi + 0.044715 * gi * gi * gi)));
        y[i] = (float)(gelu * (double)u[i]);
    }
}

void slm_ref_attention(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out, int head_dim,
                       int n_head, int n_head_kv, int pos, float scale) {
    slm_ref_attention_window(q, k_cache, v_cache, out, head_dim, n_head, n_head_kv, pos, 0, scale);
}

void slm_ref_attention_window(const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                              int head_dim, int n_head, int n_head_kv, int pos, int window, float scale) {
    /* an f16 cache is one of the typed cache's types: the same loop, the f16 values widened exactly */
    size_t row = (size_t)head_dim * (size_t)(n_head_kv > 0 ? n_head_kv : 0) * sizeof(uint16_t);
    slm_ref_attention_kv(q, SLM_F16, k_cache, row, SLM_F16, v_cache, row, out, head_dim, n_head, n_head_kv, pos, window,
                         scale);
}

void slm_ref_attention_kv(const float *q, slm_dtype k_type, const void *k_cache, size_t k_row_bytes, slm_dtype v_type,
                          const void *v_cache, size_t v_row_bytes, float *out, int head_dim, int n_head, int n_head_kv,
                          int pos, int window, float scale) {
    if (head_dim <= 0 || n_head <= 0 || n_head_kv <= 0 || pos < 0 || n_head % n_head_kv || window < 0) return;
    int group = n_head / n_head_kv;
    int first = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    int n_kv = pos + 1 - first;
    int64_t kv_row = (int64_t)head_dim * n_head_kv;
    /* every row seen, dequantized once: [n_kv][kv_row] of K then of V */
    float *kf = malloc((size_t)n_kv * (size_t)kv_row * sizeof(float));
    float *vf = malloc((size_t)n_kv * (size_t)kv_row * sizeof(float));
    double *p = malloc((size_t)n_kv * sizeof(double)), *acc = malloc((size_t)head_dim * sizeof(double));
    if (!kf || !vf || !p || !acc) {
        for (int i = 0; i < head_dim * n_head; i++) out[i] = NAN;
        goto done;
    }
    for (int t = 0; t < n_kv; t++) {
        slm_ref_dequant_row(k_type, (const uint8_t *)k_cache + (size_t)(first + t) * k_row_bytes, kf + t * kv_row,
                            kv_row);
        slm_ref_dequant_row(v_type, (const uint8_t *)v_cache + (size_t)(first + t) * v_row_bytes, vf + t * kv_row,
                            kv_row);
    }
    for (int h = 0; h < n_head; h++) {
        int hk = h / group;
        const float *qh = q + (size_t)h * head_dim;
        double mx = -INFINITY;
        for (int t = 0; t < n_kv; t++) {
            const float *k = kf + t * kv_row + (size_t)hk * head_dim;
            double s = 0;
            for (int d = 0; d < head_dim; d++) s += (double)qh[d] * k[d];
            p[t] = s * (double)scale;
            if (p[t] > mx) mx = p[t];
        }
        double sum = 0;
        for (int t = 0; t < n_kv; t++) {
            p[t] = exp(p[t] - mx);
            sum += p[t];
        }
        for (int d = 0; d < head_dim; d++) acc[d] = 0;
        for (int t = 0; t < n_kv; t++) {
            const float *v = vf + t * kv_row + (size_t)hk * head_dim;
            double w = p[t] / sum;
            for (int d = 0; d < head_dim; d++) acc[d] += w * v[d];
        }
        for (int d = 0; d < head_dim; d++) out[(size_t)h * head_dim + d] = (float)acc[d];
    }
done:
    free(kf);
    free(vf);
    free(p);
    free(acc);
}
