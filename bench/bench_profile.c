/* --profile: where a decode step's time goes. A context on the model decodes n_gen tokens one at a time with
 * an op observer set (slm_context_set_observer): the engine's own scheduler then runs every op of its graph
 * alone, waits for it and reports its device, bytes and time, and this file sums them by op name
 * ("attn_q", "ffn_down", "attention", "boundary_copy", ...). Running op by op adds a dispatch and a sync per
 * op but leaves out what slm_eval does around the graph, so the footer prints the ratio to the fused decode;
 * the split between ops is what this is for. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "slm.h"

typedef struct prof_entry {
    const char *name;
    const char *kind;
    const char *device;
    double seconds;
    double bytes; /* weight or cache bytes read */
    long calls;
} prof_entry;

typedef struct prof_state {
    prof_entry e[64];
    int n_e;
    double total, total_bytes;
} prof_state;

static prof_entry *entry(prof_state *p, const slm_op_event *ev) {
    for (int i = 0; i < p->n_e; i++)
        if (!strcmp(p->e[i].kind, ev->kind) && !strcmp(p->e[i].device, ev->device_name) &&
            !strcmp(p->e[i].name, ev->name))
            return &p->e[i];
    if (p->n_e == (int)(sizeof p->e / sizeof p->e[0])) return &p->e[p->n_e - 1];
    prof_entry *e = &p->e[p->n_e++];
    memset(e, 0, sizeof *e);
    e->name = ev->name;
    e->kind = ev->kind;
    e->device = ev->device_name;
    return e;
}

static void observe(const slm_op_event *ev, void *user) {
    prof_state *p = user;
    prof_entry *e = entry(p, ev);
    e->seconds += ev->seconds;
    e->bytes += (double)ev->bytes;
    e->calls++;
    p->total += ev->seconds;
    p->total_bytes += (double)ev->bytes;
}

static int cmp_time(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->seconds, y = ((const prof_entry *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void report(FILE *f, const slm_model *m, const prof_state *p, int n_gen, double fused_s_per_token) {
    slm_model_info info = slm_model_get_info(m);
    fprintf(f, "\nprofile: %s, %d decode steps (positions 0-%d), every op run and synchronised alone\n\n",
            info.name && info.name[0] ? info.name : info.arch, n_gen, n_gen - 1);
    fprintf(f, "| op | kind | device | calls/token | ms/token | %% of time | MB/token | GB/s |\n");
    fprintf(f, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    double total = p->total;
    for (int i = 0; i < p->n_e; i++) {
        const prof_entry *e = &p->e[i];
        double ms = e->seconds * 1e3 / n_gen, mb = e->bytes / 1e6 / n_gen;
        fprintf(f, "| %s | %s | %s | %.0f | %.3f | %.1f%% | ", e->name, e->kind, e->device, (double)e->calls / n_gen,
                ms, total > 0 ? 100.0 * e->seconds / total : 0.0);
        /* three decimals of MB (kB): the norms and one embedding row of a small model are a few kB */
        if (e->bytes > 0) fprintf(f, "%.3f | %.2f |\n", mb, e->seconds > 0 ? e->bytes / e->seconds / 1e9 : 0.0);
        else fprintf(f, "- | - |\n");
    }
    /* the byte total is the tg rows' bytes per token at the same mean position, a check on both */
    fprintf(f, "| total | | | | %.3f | 100%% | %.3f | %.2f |\n", total * 1e3 / n_gen, p->total_bytes / 1e6 / n_gen,
            total > 0 ? p->total_bytes / total / 1e9 : 0.0);
    fprintf(f, "\n%.2f tokens/s op by op", total > 0 ? n_gen / total : 0.0);
    if (fused_s_per_token > 0)
        fprintf(f, "; the tg%d row's fused decode: %.3f ms/token (%.2f tokens/s), op by op / fused = %.2f", n_gen,
                fused_s_per_token * 1e3, 1.0 / fused_s_per_token, total / n_gen / fused_s_per_token);
    fprintf(f,
            ". Op by op adds a dispatch and a synchronisation per op; on a busy machine every one can also"
            " wait for a descheduled worker thread.\n");
}

slm_status bench_profile(FILE *f, slm_model *m, int n_gen, bool warmup, double fused_s_per_token, slm_error *err) {
    if (n_gen < 1) n_gen = 16;
    prof_state *p = calloc(1, sizeof *p);
    slm_context *c = NULL;
    slm_status s = p ? slm_context_create(m, &c, err) : bench_fail(err, SLM_ERR_NOMEM, "profile: out of memory");
    int n_vocab = slm_model_get_info(m).n_vocab;
    uint64_t rng = 12345;
    /* the warm-up decodes position 0 unobserved, so the first timed op does not pay for cold caches, page
     * faults in the weights and sleeping workers */
    for (int step = warmup ? -1 : 0; step < n_gen && !s; step++) {
        if (step == 0) {
            slm_context_rewind(c, 0);
            slm_context_set_observer(c, observe, p);
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int32_t tok = (int32_t)(rng % (uint64_t)n_vocab);
        s = slm_eval(c, &tok, 1, false, err);
    }
    if (!s) {
        qsort(p->e, (size_t)p->n_e, sizeof p->e[0], cmp_time);
        report(f, m, p, n_gen, fused_s_per_token);
    }
    slm_context_free(c);
    free(p);
    return s;
}
