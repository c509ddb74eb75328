/* Token sampling: repetition, presence and frequency penalties, then greedy or temperature with top-k, top-p and min-p filters.
 * The RNG state lives in the sampler, so a seed reproduces a run. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "slm.h"

struct slm_sampler {
    slm_sampler_params p;
    int n_vocab;
    uint64_t rng;
    int32_t *history; /* ring of the last repeat_last_n accepted tokens */
    int n_history, history_at;
    int32_t *counts;            /* [n_vocab] occurrences of each accepted token; only with presence or
                                   frequency penalties (NULL otherwise: no cost for the common case) */
    float *work;                /* [n_vocab] adjusted logits */
    struct slm_candidate *cand; /* [n_vocab] */
};

typedef struct slm_candidate {
    float v; /* logit, then probability weight */
    int32_t id;
} slm_candidate;

slm_sampler_params slm_sampler_params_default(void) {
    slm_sampler_params p = {.temp = 0.8f,
                            .top_k = 40,
                            .top_p = 0.95f,
                            .min_p = 0.05f,
                            .repeat_penalty = 1.0f,
                            .repeat_last_n = 64,
                            .seed = 0x5eed};
    return p;
}

slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out, slm_error *err) {
    *out = NULL;
    if (n_vocab < 1) return slm_fail(err, SLM_ERR_INVALID_ARG, "sampler: vocabulary size %d", n_vocab);
    /* NaN compares false with everything and would switch a stage off or on at random: refused, as is a
     * penalty that divides by zero or flips the logits' signs */
    if (!isfinite(p->temp) || !isfinite(p->top_p) || !isfinite(p->min_p))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "sampler: temp %g, top_p %g, min_p %g must be finite", p->temp,
                        p->top_p, p->min_p);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "sampler: presence_penalty %g, frequency_penalty %g must be finite",
                        p->presence_penalty, p->frequency_penalty);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be finite and > 0",
                        p->repeat_penalty);
    slm_sampler *s = calloc(1, sizeof *s);
    if (!s) return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a sampler");
    s->p = *p;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->n_vocab = n_vocab;
    s->rng = p->seed ? p->seed : 0x9e3779b97f4a7c15ull;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->history = malloc((size_t)(s->p.repeat_last_n + 1) * sizeof *s->history);
    bool counted = p->presence_penalty != 0 || p->frequency_penalty != 0;
    if (counted) s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    if (!s->work || !s->cand || !s->history || (counted && !s->counts)) {
        slm_sampler_free(s);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory creating a sampler");
    }
    *out = s;
    return SLM_OK;
}

void slm_sampler_free(slm_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->cand);
    free(s->history);
    free(s->counts);
    free(s);
}

void slm_sampler_accept(slm_sampler *s, int32_t token) {
    /* saturating: a count past INT32_MAX would wrap to a negative penalty */
    if (s->counts && token >= 0 && token < s->n_vocab && s->counts[token] < INT32_MAX) s->counts[token]++;
    if (!s->p.repeat_last_n) return;
    s->history[s->history_at] = token;
    s->history_at = (s->history_at + 1) % s->p.repeat_last_n;
    if (s->n_history < s->p.repeat_last_n) s->n_history++;
}

/* splitmix64: a small, well-mixed generator; uniform double in [0, 1). */
static double next_uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int by_logit_desc(const void *a, const void *b) {
    float x = ((const slm_candidate *)a)->v, y = ((const slm_candidate *)b)->v;
    return (x < y) - (x > y);
}

/* Moves the k largest candidates to the front, sorted (quickselect, then a sort of just those k). */
static void top_sorted(slm_candidate *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = c[(lo + hi) / 2].v;
        int i = lo, j = hi;
        while (i <= j) {
            while (c[i].v > pivot) i++;
            while (c[j].v < pivot) j--;
            if (i <= j) {
                slm_candidate t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

int32_t slm_sampler_sample(slm_sampler *s, const float *logits) {
    int n = s->n_vocab;
    float *v = s->work;
    memcpy(v, logits, (size_t)n * sizeof *v);
    if (s->p.repeat_penalty != 1.0f && s->p.repeat_penalty > 0) {
        for (int i = 0; i < s->n_history; i++) {
            int32_t t = s->history[i];
            if (t < 0 || t >= n) continue;
            /* applied once per distinct token: mark by penalising only if not already done */
            bool seen = false;
            for (int j = 0; j < i; j++) seen |= s->history[j] == t;
            if (seen) continue;
            v[t] = v[t] > 0 ? v[t] / s->p.repeat_penalty : v[t] * s->p.repeat_penalty;
        }
    }
    if (s->counts) {
        for (int t = 0; t < n; t++)
            if (s->counts[t]) v[t] -= s->p.presence_penalty + s->p.frequency_penalty * (float)s->counts[t];
    }
    if (s->p.temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (v[i] > v[best]) best = i;
        return best;
    }
    slm_candidate *c = s->cand;
    for (int i = 0; i < n; i++) c[i] = (slm_candidate){v[i], i};
    int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    top_sorted(c, n, k);
    /* softmax weights over the k candidates at temperature */
    float mx = c[0].v;
    for (int i = 0; i < k; i++) c[i].v = expf((c[i].v - mx) / s->p.temp);
    /* min-p: drop candidates below min_p * p(best); top-p: keep the smallest prefix with mass >= top_p */
    int keep = k;
    if (s->p.min_p > 0.0f) {
        int j = 1;
        while (j < keep && c[j].v >= s->p.min_p * c[0].v) j++;
        keep = j;
    }
    if (s->p.top_p < 1.0f) {
        double kept = 0, acc = 0;
        for (int i = 0; i < keep; i++) kept += c[i].v;
        int j = 0;
        while (j < keep) {
            acc += c[j++].v;
            if (acc >= s->p.top_p * kept) break;
        }
        keep = j;
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += c[i].v;
    double r = next_uniform(&s->rng) * total;
    for (int i = 0; i < keep; i++) {
        r -= c[i].v;
        if (r <= 0) return c[i].id;
    }
    return c[keep - 1].id;
}
