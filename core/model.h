/* A loaded model: hyper-parameters, the tokenizer, and every weight bound to a per-layer slot with its
 * shape checked, placed on a device by the plan. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include "arch.h"
#include "backend.h"
#include "gguf.h"
#include "slm.h"
#include "slm_debug.h"

typedef struct slm_tokenizer slm_tokenizer;

typedef struct slm_layer {
    slm_tensor attn_norm;             /* f32 [n_embd] */
    slm_tensor wq, wk, wv, wo;        /* [n_embd, n_head*hd], [n_embd, n_kv*hd] x2, [n_head*hd, n_embd] */
    slm_tensor bq, bk, bv;            /* f32 biases (qwen2), buf NULL when absent */
    slm_tensor ffn_norm;              /* f32 [n_embd] */
    slm_tensor w_gate, w_up, w_down;  /* [n_embd, n_ff] x2, [n_ff, n_embd] */
    int device;                       /* index into slm_model.devices */
    uint64_t weight_bytes;
} slm_layer;

struct slm_model {
    slm_gguf *gguf;
    slm_hparams hp;
    slm_params params;
    slm_debug_params dbg;                   /* testing knobs (include/slm_debug.h) */
    slm_tokenizer *tok;

    slm_device *devices[SLM_MAX_DEVICES];   /* [0] is always the CPU */
    int n_devices;
    slm_buffer host_weights;                /* the mapping, wrapped by the CPU device */
    slm_buffer dev_weights[SLM_MAX_DEVICES];/* weights uploaded to other devices */

    slm_tensor tok_embd;                    /* [n_embd, n_vocab], always on the CPU */
    slm_tensor output_norm;                 /* f32 [n_embd] */
    slm_tensor output;                      /* [n_embd, n_vocab] (tied: token_embd) */
    slm_tensor rope_freqs;                  /* f32 [n_rot/2], buf NULL when absent (host binding) */
    slm_tensor rope_freqs_on[SLM_MAX_DEVICES]; /* the same on each device that runs layers */
    int output_device;
    slm_layer *layers;
    uint64_t output_bytes;
    int n_ctx, n_batch;                     /* resolved from params and the model */
    char name[128];                         /* general.name */
    char *chat_template;                    /* tokenizer.chat_template, NUL-terminated, or NULL */
    char plan_text[512];                    /* the placement, for -v and slm-bench */
    char plan_note[512];                    /* why the placement differs from the request, if it does */
    double predicted_tps;                   /* the planner's decode prediction (0 on a single device) */
};

/* Bytes between positions of the f16 K (or V) cache: n_head_kv * head_dim halves, padded (model.c). */
size_t slm_kv_row_bytes(const slm_hparams *hp);
/* One layer's K or V cache for n_ctx positions at offset of buf (slm_kv_row_bytes(hp) * n_ctx bytes). */
slm_tensor slm_kv_tensor(slm_buffer *buf, size_t offset, const slm_hparams *hp, int64_t n_ctx);

/* Loads from an already opened GGUF (a file or a synthetic model in memory); takes ownership of g. */
slm_status slm_model_load_gguf(slm_gguf *g, const slm_params *params, const slm_debug_params *dbg, slm_model **out,
                               slm_error *err);
const slm_tokenizer *slm_model_tokenizer(const slm_model *m);
const char *slm_model_chat_template(const slm_model *m);   /* NULL when the file has none */

#endif
