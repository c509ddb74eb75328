/* Bytes read per generated token, the numerator of effective bandwidth. Decode is a chain of mat-vecs that
 * stream every layer weight and the output head once; of the token embedding only one row is read; the
 * attention of a token at position i reads i + 1 rows of K and of V in every layer. */
#include <string.h>

#include "bench.h"

void bench_bytes_from_plan(const slm_plan_info *pi, uint64_t kv_per_pos, bench_bytes *out) {
    memset(out, 0, sizeof *out);
    int n = pi->n_devices < SLM_MAX_DEVICES ? pi->n_devices : SLM_MAX_DEVICES, n_layer = 0;
    for (int d = 0; d < n; d++) n_layer += pi->device[d].n_layers;
    for (int d = 0; d < n; d++) {
        out->dev_weights[d] = pi->device[d].read_bytes_per_token;
        /* every layer caches the same rows */
        out->dev_kv_per_pos[d] = n_layer ? kv_per_pos / (uint64_t)n_layer * (uint64_t)pi->device[d].n_layers : 0;
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
