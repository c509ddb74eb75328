#include "weights.h"

#include <string.h>

int slm_layer_weights(slm_layer *L, slm_tensor *out[SLM_LAYER_MAX_WEIGHTS]) {
    slm_tensor *all[SLM_LAYER_MAX_WEIGHTS] = {&L->attn_norm,    &L->wq,     &L->wk,   &L->wv,     &L->wo,
                                              &L->bq,           &L->bk,     &L->bv,   &L->q_norm, &L->k_norm,
                                              &L->ffn_norm,     &L->w_gate, &L->w_up, &L->w_down, &L->post_attn_norm,
                                              &L->post_ffw_norm};
    memcpy(out, all, sizeof all);
    return SLM_LAYER_MAX_WEIGHTS;
}

uint64_t slm_layer_bytes(const slm_layer *L) {
    slm_tensor *w[SLM_LAYER_MAX_WEIGHTS];
    uint64_t n = 0;
    for (int i = 0, k = slm_layer_weights((slm_layer *)L, w); i < k; i++)
        if (w[i]->buf) n += slm_tensor_bytes(w[i]);
    return n;
}
