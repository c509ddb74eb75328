#include "scratch.h"

#include <string.h>

uint64_t slm_scratch_layout(const slm_hparams *hp, int n_batch, bool with_logits, slm_buffer *buf, slm_scratch *s) {
    slm_scratch tmp;
    if (!s) s = &tmp;
    /* buf usually is s->buf (the scratch owns its buffer): keep it across the reset */
    slm_buffer keep = buf ? *buf : (slm_buffer){0};
    memset(s, 0, sizeof *s);
    if (buf) *buf = keep;
    int64_t B = n_batch, E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    size_t at = 0;
    struct {
        slm_tensor *t;
        slm_dtype type;
        int64_t rows;
    } parts[] = {
        {&s->x, SLM_F32, E},         {&s->xn, SLM_F32, E},
        {&s->q, SLM_F32, Q},         {&s->k, SLM_F32, KV},
        {&s->v, SLM_F32, KV},        {&s->att, SLM_F32, Q},
        {&s->tmp, SLM_F32, E},       {&s->gate, SLM_F32, hp->n_ff},
        {&s->up, SLM_F32, hp->n_ff}, {&s->logits, SLM_F32, with_logits ? hp->n_vocab : 0},
        {&s->pos, SLM_I32, 1},       {&s->ids, SLM_I32, 1},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!parts[i].rows) continue;
        /* positions and ids are one row of B entries; the rest are B columns */
        bool vec = parts[i].type == SLM_I32;
        *parts[i].t = slm_tensor_make(buf, at, parts[i].type, vec ? B : parts[i].rows, vec ? 1 : B, 1, 1);
        at += (slm_tensor_bytes(parts[i].t) + 255) & ~(size_t)255;
    }
    if (!buf) memset(s, 0, sizeof *s);
    return at;
}

#define SCRATCH_FIELDS(s)                                                                                              \
    {                                                                                                                  \
        &(s)->x, &(s)->xn, &(s)->q, &(s)->k, &(s)->v, &(s)->att, &(s)->tmp, &(s)->gate, &(s)->up, &(s)->logits,        \
            &(s)->pos, &(s)->ids                                                                                       \
    }

bool slm_scratch_remap(const slm_scratch *from, const slm_scratch *to, slm_tensor *t) {
    if (t->buf != &from->buf) return false;
    const slm_tensor *a[] = SCRATCH_FIELDS(from), *b[] = SCRATCH_FIELDS(to);
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        size_t lo = a[i]->offset, n = slm_tensor_bytes(a[i]);
        if (!a[i]->buf || !b[i]->buf || t->offset < lo || t->offset >= lo + n) continue;
        t->offset = b[i]->offset + (t->offset - lo);
        t->buf = b[i]->buf;
        return true;
    }
    return false;
}
