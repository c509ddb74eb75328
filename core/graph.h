/* The forward pass of one batch as an ordered list of ops, each tagged with its layer. Operands live on the
 * device of their layer: the layer's weights, that device's scratch and the layer's KV cache. */
#ifndef SLM_GRAPH_H
#define SLM_GRAPH_H

#include "backend.h"
#include "model.h"
#include "scratch.h"

typedef struct slm_graph {
    slm_op *ops;
    int n_ops, cap;
} slm_graph;

typedef struct slm_graph_inputs {
    const slm_model *m;
    slm_scratch *scratch;    /* [m->n_devices]; device 0's holds the token ids */
    slm_tensor *k_cache;     /* [n_layer] f16 [n_kv*hd, n_ctx] on the layer's device */
    slm_tensor *v_cache;
    int n_tokens;
    bool all_logits;         /* logits for every token (else the last one only) */
} slm_graph_inputs;

slm_status slm_graph_build(const slm_graph_inputs *in, slm_graph *g, slm_error *err);
void slm_graph_free(slm_graph *g);
/* The device an op runs on. */
int slm_graph_op_device(const slm_model *m, const slm_op *op);

#endif
