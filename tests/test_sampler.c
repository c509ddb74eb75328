/* Sampler: greedy picks the argmax, seeds reproduce, filters restrict the candidates as documented. */
#include <math.h>
#include "slm.h"
#include "test_util.h"

#define V 100

static int32_t sample_once(slm_sampler_params p, const float *logits) {
    slm_sampler *s;
    slm_error err;
    if (slm_sampler_create(&p, V, &s, &err)) return -1;
    int32_t t = slm_sampler_sample(s, logits);
    slm_sampler_free(s);
    return t;
}

int main(void) {
    float logits[V];
    uint64_t rng = 42;
    slm_test_fill(logits, V, &rng, 3.0f);
    logits[37] = 10.0f;
    slm_sampler_params p = slm_sampler_params_default();

    p.temp = 0;
    CHECK(sample_once(p, logits) == 37, "greedy must pick the argmax");

    /* top-k 1 at any temperature is greedy */
    p = slm_sampler_params_default();
    p.top_k = 1;
    p.temp = 5.0f;
    for (int seed = 1; seed < 20; seed++) {
        p.seed = (uint64_t)seed;
        CHECK(sample_once(p, logits) == 37, "top-k 1 must pick the argmax (seed %d)", seed);
    }

    /* the same seed gives the same sequence; different seeds differ somewhere */
    p = slm_sampler_params_default();
    p.temp = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    float flat[V];
    for (int i = 0; i < V; i++) flat[i] = 0;
    slm_sampler *a, *b, *c;
    slm_error err;
    p.seed = 7;
    slm_sampler_create(&p, V, &a, &err);
    slm_sampler_create(&p, V, &b, &err);
    p.seed = 8;
    slm_sampler_create(&p, V, &c, &err);
    int same_ab = 1, same_ac = 1, hist[V] = {0};
    for (int i = 0; i < 2000; i++) {
        int32_t ta = slm_sampler_sample(a, flat), tb = slm_sampler_sample(b, flat), tc = slm_sampler_sample(c, flat);
        same_ab &= ta == tb;
        same_ac &= ta == tc;
        CHECK(ta >= 0 && ta < V, "token %d out of range", ta);
        if (ta >= 0 && ta < V) hist[ta]++;
    }
    CHECK(same_ab, "same seed must reproduce");
    CHECK(!same_ac, "different seeds should differ");
    /* a flat distribution is roughly uniform: each of 100 tokens ~20 times in 2000 draws */
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < V; i++) {
        if (hist[i] < lo) lo = hist[i];
        if (hist[i] > hi) hi = hist[i];
    }
    CHECK(lo >= 3 && hi <= 45, "flat distribution looks skewed: min %d max %d", lo, hi);
    slm_sampler_free(a);
    slm_sampler_free(b);
    slm_sampler_free(c);

    /* min-p: with one dominant token and min_p 0.5, only tokens within half its probability survive */
    float two[V];
    for (int i = 0; i < V; i++) two[i] = -20.0f;
    two[3] = 1.0f;
    two[4] = 1.0f - 0.1f; /* p4/p3 = e^-0.1 = 0.90 > 0.5: survives */
    two[5] = 1.0f - 2.0f; /* p5/p3 = e^-2 = 0.135 < 0.5: dropped */
    p = slm_sampler_params_default();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.5f;
    int seen[V] = {0};
    for (int seed = 1; seed <= 300; seed++) {
        p.seed = (uint64_t)seed;
        int32_t t = sample_once(p, two);
        if (t >= 0) seen[t]++;
    }
    CHECK(seen[3] > 0 && seen[4] > 0, "min-p kept tokens should be drawn (%d, %d)", seen[3], seen[4]);
    CHECK(seen[5] == 0, "min-p must drop token 5 (drawn %d times)", seen[5]);

    /* p3 = 1 / (1 + e^-0.1 + e^-2) = 0.49 of the mass: top-p 0.45 keeps only token 3 */
    p.min_p = 0;
    p.top_p = 0.45f;
    int others = 0;
    for (int seed = 1; seed <= 200; seed++) {
        p.seed = (uint64_t)seed;
        others += sample_once(p, two) != 3;
    }
    CHECK(others == 0, "top-p 0.45 must keep only the top token (%d others)", others);

    /* repetition penalty turns the argmax away from a repeated token */
    float rp[V];
    for (int i = 0; i < V; i++) rp[i] = 0;
    rp[10] = 2.0f;
    rp[11] = 1.5f;
    p = slm_sampler_params_default();
    p.temp = 0;
    p.repeat_penalty = 2.0f;
    slm_sampler *s;
    slm_sampler_create(&p, V, &s, &err);
    CHECK(slm_sampler_sample(s, rp) == 10, "no history: argmax");
    slm_sampler_accept(s, 10);
    CHECK(slm_sampler_sample(s, rp) == 11, "penalised 10 (2.0/2 = 1.0 < 1.5) must lose to 11");
    slm_sampler_free(s);

    /* presence penalty: once per token that occurred, however often; frequency: per occurrence */
    float pp[V];
    for (int i = 0; i < V; i++) pp[i] = 0;
    pp[20] = 3.0f;
    pp[21] = 2.5f;
    pp[22] = 1.0f;
    p = slm_sampler_params_default();
    p.temp = 0;
    p.presence_penalty = 1.0f;
    slm_sampler_create(&p, V, &s, &err);
    CHECK(slm_sampler_sample(s, pp) == 20, "presence: no history, argmax");
    slm_sampler_accept(s, 20);
    CHECK(slm_sampler_sample(s, pp) == 21, "presence: 20 at 3 - 1 = 2 must lose to 21 at 2.5");
    slm_sampler_accept(s, 21);
    slm_sampler_accept(s, 21);
    slm_sampler_accept(s, 21);
    CHECK(slm_sampler_sample(s, pp) == 20, "presence counts once: 20 at 2 beats 21 at 1.5");
    slm_sampler_free(s);
    p.presence_penalty = 0;
    p.frequency_penalty = 0.6f;
    p.repeat_last_n = 2; /* the additive penalties see the whole history, not this window */
    slm_sampler_create(&p, V, &s, &err);
    slm_sampler_accept(s, 20);
    CHECK(slm_sampler_sample(s, pp) == 21, "frequency: 20 at 3 - 0.6 = 2.4 must lose to 21 at 2.5");
    slm_sampler_accept(s, 21);
    slm_sampler_accept(s, 21);
    slm_sampler_accept(s, 22);
    slm_sampler_accept(s, 22);
    /* 20: 2.4, 21: 2.5 - 1.2 = 1.3, 22: 1 - 1.2 = -0.2 */
    CHECK(slm_sampler_sample(s, pp) == 20, "frequency: per occurrence, beyond repeat_last_n");
    slm_sampler_free(s);
    /* a negative penalty favours what occurred */
    p.frequency_penalty = -2.5f;
    slm_sampler_create(&p, V, &s, &err);
    slm_sampler_accept(s, 22);
    CHECK(slm_sampler_sample(s, pp) == 22, "a negative penalty must favour 22 (1 + 2.5 = 3.5 > 3)");
    slm_sampler_free(s);

    CHECK(slm_sampler_create(&p, 0, &s, &err) == SLM_ERR_INVALID_ARG, "zero vocab must fail");
    /* settings the server and the CLI may pass through from a user: NaN, inf and a zero penalty are refused */
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        slm_sampler_params q = slm_sampler_params_default();
        q.temp = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "temp %g must fail", bad[i]);
        q = slm_sampler_params_default();
        q.top_p = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "top_p %g must fail", bad[i]);
        q = slm_sampler_params_default();
        q.min_p = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "min_p %g must fail", bad[i]);
        q = slm_sampler_params_default();
        q.repeat_penalty = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "repeat_penalty %g must fail", bad[i]);
        q = slm_sampler_params_default();
        q.presence_penalty = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "presence_penalty %g must fail", bad[i]);
        q = slm_sampler_params_default();
        q.frequency_penalty = bad[i];
        CHECK(slm_sampler_create(&q, V, &s, &err) == SLM_ERR_INVALID_ARG, "frequency_penalty %g must fail", bad[i]);
    }
    p = slm_sampler_params_default();
    p.repeat_penalty = 0;
    CHECK(slm_sampler_create(&p, V, &s, &err) == SLM_ERR_INVALID_ARG, "repeat_penalty 0 must fail");
    return slm_test_finish("test_sampler");
}
