/* Activation buffers of one device for a batch of up to n_batch tokens. Every device that runs a split has
 * one, laid out alike (the logits only on the output device), so that an activation has a twin on every
 * device: the graph builder declares which cross a device boundary. */
#ifndef SLM_SCRATCH_H
#define SLM_SCRATCH_H

#include "arch.h"
#include "backend.h"

typedef struct slm_scratch {
    slm_buffer buf;
    slm_tensor x;        /* f32 [n_embd, B]   residual stream */
    slm_tensor xn;       /* f32 [n_embd, B]   normed input of a block */
    slm_tensor q;        /* f32 [n_head*hd, B] */
    slm_tensor k, v;     /* f32 [n_kv*hd, B] */
    slm_tensor att;      /* f32 [n_head*hd, B] */
    slm_tensor tmp;      /* f32 [n_embd, B]   block output before the residual add */
    slm_tensor gate, up; /* f32 [n_ff, B] */
    slm_tensor logits;   /* f32 [n_vocab, B]  (output device only) */
    slm_tensor pos;      /* i32 [B] */
    slm_tensor ids;      /* i32 [B] (host only) */
} slm_scratch;

/* Lays the tensors out in buf (NULL: only sizes) and returns the bytes needed. */
uint64_t slm_scratch_layout(const slm_hparams *hp, int n_batch, bool with_logits, slm_buffer *buf, slm_scratch *s);

/* A view into from's tensors moved to the same place in to's (false when t is not in from's buffer). */
bool slm_scratch_remap(const slm_scratch *from, const slm_scratch *to, slm_tensor *t);

#endif
