#include "scheduler.h"

#include "error.h"

static slm_status cross(slm_sched *s, int from, int to, int n_tokens, slm_error *err) {
    slm_device *a = s->m->devices[from], *b = s->m->devices[to];
    slm_tensor xa = slm_tensor_cols(s->scratch[from].x, 0, n_tokens);
    slm_tensor xb = slm_tensor_cols(s->scratch[to].x, 0, n_tokens);
    size_t bytes = slm_tensor_bytes(&xa);
    if (bytes > s->staging_size) return slm_fail(err, SLM_ERR_INVALID_ARG, "scheduler: staging too small");
    slm_status st = a->ops->sync(a, err);
    if (!st) st = a->ops->download(a, s->staging, xa.buf, xa.offset, bytes, err);
    if (!st) st = b->ops->upload(b, xb.buf, xb.offset, s->staging, bytes, err);
    return st;
}

slm_status slm_sched_run(slm_sched *s, const slm_graph *g, int n_tokens, slm_error *err) {
    const slm_model *m = s->m;
    int i = 0, cur = 0;
    slm_status st = SLM_OK;
    while (i < g->n_ops && !st) {
        int dev = slm_graph_op_device(m, &g->ops[i]);
        int j = i + 1;
        while (j < g->n_ops && slm_graph_op_device(m, &g->ops[j]) == dev) j++;
        if (dev != cur) st = cross(s, cur, dev, n_tokens, err);
        if (!st) st = m->devices[dev]->ops->run(m->devices[dev], g->ops + i, j - i, err);
        cur = dev;
        i = j;
    }
    if (!st) st = m->devices[cur]->ops->sync(m->devices[cur], err);
    return st;
}
