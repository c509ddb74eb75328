/* The weight slots of a model: per layer and for the whole model, as views of one buffer (the file mapping
 * or one device's copy). Binding them from a file is model.c's job, copying them to devices
 * model_place.c's; this is the shape both share. */
#ifndef SLM_WEIGHTS_H
#define SLM_WEIGHTS_H

#include "backend.h"

#define SLM_LAYER_MAX_WEIGHTS 16

typedef struct slm_layer {
    slm_tensor attn_norm;            /* f32 [n_embd] */
    slm_tensor wq, wk, wv, wo;       /* [n_embd, n_head*hd], [n_embd, n_kv*hd] x2, [n_head*hd, n_embd] */
    slm_tensor bq, bk, bv;           /* f32 biases (qwen2), buf NULL when absent */
    slm_tensor q_norm, k_norm;       /* f32 [head_dim] per-head norms (qwen3), buf NULL when absent */
    slm_tensor ffn_norm;             /* f32 [n_embd] */
    slm_tensor w_gate, w_up, w_down; /* [n_embd, n_ff] x2, [n_ff, n_embd] */
    slm_tensor post_attn_norm;       /* f32 [n_embd] on the attention output (gemma3), buf NULL when absent */
    slm_tensor post_ffw_norm;        /* f32 [n_embd] on the feed-forward output (gemma3), buf NULL when absent */
} slm_layer;

/* A layer's weight slots in one fixed order, absent ones included (buf NULL): the one list of what a layer
 * holds, for byte counts and uploads. Returns SLM_LAYER_MAX_WEIGHTS. */
int slm_layer_weights(slm_layer *L, slm_tensor *out[SLM_LAYER_MAX_WEIGHTS]);
/* Bytes of the layer's present weights. */
uint64_t slm_layer_bytes(const slm_layer *L);

/* Every weight of the model as views of one buffer: the file mapping, or one device's copy of its share. */
typedef struct slm_weights {
    slm_tensor tok_embd;    /* [n_embd, n_vocab] (the host's binding only) */
    slm_tensor output_norm; /* f32 [n_embd] */
    slm_tensor output;      /* [n_embd, n_vocab] (tied: token_embd) */
    slm_tensor rope_freqs;  /* f32 [n_rot/2] rope divisors, buf NULL when absent */
    slm_layer *layers;      /* [n_layer]; a device's table holds only its own layers */
} slm_weights;

#endif
