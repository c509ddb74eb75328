/* The forward pass of one batch as an ordered list of ops, each carrying its layer and its device (from the
 * placement), with the weights that device holds (the placement's binding table), that device's scratch and
 * the layer's KV cache. Where data must move between devices the graph says so: a transfer names the bytes
 * and the op it must precede. The scheduler runs it without knowing the model. */
#ifndef SLM_GRAPH_H
#define SLM_GRAPH_H

#include "backend.h"
#include "kv_cache.h"
#include "model.h"
#include "scratch.h"

/* dst (on one device) = src (the same bytes on another), before op `before` runs. */
typedef struct slm_transfer {
    int before;
    slm_tensor src, dst;
} slm_transfer;

typedef struct slm_graph {
    slm_op *ops;
    int n_ops, cap;
    slm_transfer *xfers; /* in the order of their `before` */
    int n_xfers, xcap;
} slm_graph;

/* The tokens of one sequence in a batch: columns [first, first + n) of the activations. */
typedef struct slm_graph_part {
    int seq, first, n;
} slm_graph_part;

typedef struct slm_graph_inputs {
    const slm_model *m;
    slm_scratch *scratch; /* [n_devices]; device 0's holds the token ids */
    const slm_kv_cache *kv;
    int n_tokens;
    /* The sequences of the batch, in column order, together n_tokens: every op but the KV cache's runs
     * on all the columns at once (each weight read once for every sequence); each part writes and attends
     * to its own sequence's cache. None (n_parts 0): one part of sequence 0, every token. */
    const slm_graph_part *parts;
    int n_parts;
    /* logits for every token (one part only); else for the last token of each part, logits column i
     * for part i */
    bool all_logits;
} slm_graph_inputs;

/* Builds the graph, then moves each op its device cannot run (slm_device_supports) to the CPU with the
 * host's weights and scratch, declaring the copies of its activations; fails when such an op reads the
 * KV cache, which stays where its layer is. */
slm_status slm_graph_build(const slm_graph_inputs *in, slm_graph *g, slm_error *err);
void slm_graph_free(slm_graph *g);

#endif
