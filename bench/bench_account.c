/* Bytes read per generated token, the numerator of effective bandwidth. Decode is a chain of mat-vecs that
 * stream every layer weight and the output head once; of the token embedding only one row is read; the
 * attention of a token at position i reads i + 1 rows of K and of V in every layer. */
#include <string.h>

#include "arch.h"
#include "bench.h"

void bench_bytes_from_gguf(const slm_gguf *g, int kv_type_bytes, bench_bytes *out) {
    memset(out, 0, sizeof *out);
    bool has_output = slm_gguf_find_tensor(g, "output.weight") != NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        if (slm_gguf_str_eq(t->name, "rope_freqs.weight")) continue;  /* a few floats, kept by the rope op */
        if (slm_gguf_str_eq(t->name, "token_embd.weight")) {
            out->weights += t->size / (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);  /* one row */
            if (!has_output) out->weights += t->size;                           /* tied: it is the head */
            continue;
        }
        out->weights += t->size;
    }
    slm_hparams hp;
    if (slm_arch_read_hparams(g, &hp, NULL) == SLM_OK)
        out->kv_per_pos = 2ull * (uint64_t)hp.n_layer * (uint64_t)hp.n_head_kv * (uint64_t)hp.head_dim *
                          (uint64_t)kv_type_bytes;
    out->dev_weights[0] = out->weights;
    out->dev_kv_per_pos[0] = out->kv_per_pos;
}

void bench_bytes_from_model(const slm_model *m, int kv_type_bytes, bench_bytes *out) {
    memset(out, 0, sizeof *out);
    const slm_hparams *hp = &m->hp;
    uint64_t kv_layer = 2ull * (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim * (uint64_t)kv_type_bytes;
    slm_plan_info pi = slm_model_plan_info(m);
    for (int d = 0; d < pi.n_devices; d++) {
        out->dev_weights[d] = pi.device[d].read_bytes_per_token;
        out->dev_kv_per_pos[d] = kv_layer * (uint64_t)pi.device[d].n_layers;
    }
    for (int d = 0; d < SLM_MAX_DEVICES; d++) {
        out->weights += out->dev_weights[d];
        out->kv_per_pos += out->dev_kv_per_pos[d];
    }
}

double bench_kv_mean_positions(int n_past, int n_gen) {
    if (n_gen < 1) return 0;
    return (double)n_past + (double)(n_gen + 1) / 2.0;
}

double bench_bytes_per_token(const bench_bytes *b, int d, int n_past, int n_gen) {
    double pos = bench_kv_mean_positions(n_past, n_gen);
    if (d < 0) return (double)b->weights + (double)b->kv_per_pos * pos;
    if (d >= SLM_MAX_DEVICES) return 0;
    return (double)b->dev_weights[d] + (double)b->dev_kv_per_pos[d] * pos;
}
