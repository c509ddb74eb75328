/* Several sequences in one context, evaluated together (slm_eval_batch), against each sequence run alone in a
 * one-sequence context: N_SEQ prompts of different lengths start at different rounds, go in by chunks of at
 * most CHUNK tokens beside the single generated tokens of the others, and each then generates N_GEN tokens
 * (the reference's greedy tokens are fed, so that one early difference cannot spread). Every next-token
 * logit row must agree with the lone run's (cosine, largest difference against the row's spread) and pick
 * the same token: a sequence that saw another's rows, or positions shifted between sequences, fails at once.
 * Then the API's refusals (a sequence twice, one that does not exist, too many tokens, a full context) leave
 * every sequence as it was, and rewinding one sequence leaves the others.
 *
 * On the CPU, then each GPU backend present (vulkan:0, cuda:0) with every layer there and split with the CPU
 * (the first layer on the CPU); SLM_TEST_DEVICES=cuda:0 limits the GPU runs to that one. A tiny synthetic
 * model with grouped-query attention, the public API only. */
#include "slm.h"
#include "synth.h"
#include "test_util.h"

#define N_SEQ 5
#define N_GEN 6
#define CHUNK 4
#define MAX_PROMPT 13

/* Mixed batches (prompt chunks beside generated tokens) take other kernels than the lone run's (the CPU's
 * packed GEMM, a GPU's prompt GEMM on f16 or f32 activations where decode runs a mat-vec on 8-bit ones): they
 * agree to within the 8-bit activation bounds of the logits tests, not bit for bit. On the CPU, a pass of
 * generated tokens only (up to 8 sequences: slm serve's decode pass) and a lone prompt are bit for bit what
 * the sequence gets alone. */
#define MIN_COSINE 0.9995
#define MAX_REL_DIFF 0.03

typedef struct lone_run {
    int n_prompt;
    int32_t prompt[MAX_PROMPT];
    int32_t gen[N_GEN + 1]; /* greedy tokens: gen[0] from the prompt's logits */
    float *logits;          /* [N_GEN + 1, n_vocab]: after the prompt, then after each generated token */
} lone_run;

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static slm_model *load(const void *data, size_t size, const char *device, int ngl) {
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = 32;
    p.n_batch = 16;
    p.device = device;
    p.n_gpu_layers = ngl;
    slm_model *m = NULL;
    slm_error err = {{0}};
    if (slm_model_load_memory(data, size, &p, &m, &err)) {
        CHECK(0, "load on %s (ngl %d): %s", device, ngl, err.msg);
        return NULL;
    }
    return m;
}

static bool lone(slm_model *m, lone_run *r, int n_vocab) {
    slm_context *c = NULL;
    slm_error err = {{0}};
    if (slm_context_create(m, &c, &err)) {
        CHECK(0, "context: %s", err.msg);
        return false;
    }
    bool ok = slm_eval(c, r->prompt, r->n_prompt, false, &err) == SLM_OK;
    for (int g = 0; ok; g++) {
        const float *l = slm_logits(c, -1);
        memcpy(r->logits + (size_t)g * n_vocab, l, (size_t)n_vocab * sizeof(float));
        r->gen[g] = argmax(l, n_vocab);
        if (g == N_GEN) break;
        ok = slm_eval(c, &r->gen[g], 1, false, &err) == SLM_OK;
    }
    CHECK(ok, "lone run: %s", err.msg);
    slm_context_free(c);
    return ok;
}

/* Compares a batched row with the lone run's; returns the cosine. */
static double compare(const float *a, const float *b, int n, double *rel) {
    double dot = 0, na = 0, nb = 0, diff = 0;
    float lo = b[0], hi = b[0];
    for (int i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        double d = fabs((double)a[i] - b[i]);
        if (d > diff) diff = d;
        if (b[i] < lo) lo = b[i];
        if (b[i] > hi) hi = b[i];
    }
    *rel = diff / (hi - lo > 0 ? hi - lo : 1);
    return dot / sqrt(na * nb + 1e-30);
}

/* The state of one sequence in the batched run. */
typedef struct seq_state {
    int start_round; /* the round its prompt begins */
    int n_in;        /* prompt tokens in */
    int n_gen;       /* tokens generated (compared) so far */
} seq_state;

/* The sequences in rounds: mixed, each round one pass with a prompt chunk of every sequence still taking its
 * prompt and the last token of every other one; or as slm serve runs them (!mixed), a pass of every
 * generated token, then one of a single prompt chunk, and then exact: every row bit for bit the lone run's. */
static void batched(slm_model *m, lone_run *runs, int n_vocab, const char *what, bool mixed, bool exact) {
    slm_context *c = NULL;
    slm_error err = {{0}};
    /* one sequence more than used: an idle sequence must change nothing */
    if (slm_context_create_seqs(m, N_SEQ + 1, &c, &err)) {
        CHECK(0, "%s: context of %d sequences: %s", what, N_SEQ + 1, err.msg);
        return;
    }
    CHECK(slm_context_n_seq(c) == N_SEQ + 1, "%s: n_seq %d", what, slm_context_n_seq(c));
    seq_state st[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) st[s] = (seq_state){.start_round = s / 2};
    double worst_cos = 1, worst_rel = 0;
    int compared = 0, agree = 0, rounds = 0, widest = 0, differ = 0;
    for (int round = 0; round < 128; round++) {
        slm_batch_part parts[N_SEQ];
        int idx[N_SEQ], n_parts = 0, n_tok = 0;
        /* !mixed: even rounds take the generated tokens, odd ones the first prompt still going in */
        bool decode_only = !mixed && round % 2 == 0;
        for (int s = 0; s < N_SEQ; s++) {
            lone_run *r = &runs[s];
            if (round < st[s].start_round * (mixed ? 1 : 2) || st[s].n_gen > N_GEN) continue;
            bool prompt = st[s].n_in < r->n_prompt;
            if (!mixed && (prompt == decode_only || (prompt && n_parts))) continue;
            /* sequences live at seq ids 1..N_SEQ, in reverse: ids and column order differ */
            slm_batch_part p = {.seq = N_SEQ - s};
            if (st[s].n_in < r->n_prompt) {
                p.tokens = r->prompt + st[s].n_in;
                /* !mixed: the whole prompt at once, as the lone run takes it (as slm serve's chunks of 128) */
                int chunk = mixed ? CHUNK : MAX_PROMPT;
                p.n = r->n_prompt - st[s].n_in < chunk ? r->n_prompt - st[s].n_in : chunk;
            } else {
                p.tokens = &r->gen[st[s].n_gen - 1];
                p.n = 1;
            }
            idx[n_parts] = s;
            parts[n_parts++] = p;
            n_tok += p.n;
        }
        bool done = true;
        for (int s = 0; s < N_SEQ; s++) done = done && st[s].n_gen > N_GEN;
        if (done) break;
        if (!n_parts) continue;
        rounds++;
        if (n_tok > widest) widest = n_tok;
        slm_status rc = slm_eval_batch(c, parts, n_parts, &err);
        if (rc) {
            CHECK(0, "%s: round %d: %s", what, round, err.msg);
            break;
        }
        for (int i = 0; i < n_parts; i++) {
            int s = idx[i];
            lone_run *r = &runs[s];
            if (st[s].n_in < r->n_prompt) st[s].n_in += parts[i].n;
            if (st[s].n_in < r->n_prompt) continue; /* mid-prompt: no next token yet */
            const float *l = slm_batch_logits(c, i);
            double rel, cs = compare(l, r->logits + (size_t)st[s].n_gen * n_vocab, n_vocab, &rel);
            if (cs < worst_cos) worst_cos = cs;
            if (rel > worst_rel) worst_rel = rel;
            compared++;
            agree += argmax(l, n_vocab) == r->gen[st[s].n_gen];
            differ += memcmp(l, r->logits + (size_t)st[s].n_gen * n_vocab, (size_t)n_vocab * sizeof(float)) != 0;
            CHECK(cs >= MIN_COSINE && rel <= MAX_REL_DIFF, "%s: sequence %d, token %d: cosine %.7f, difference %.4f",
                  what, s, st[s].n_gen, cs, rel);
            st[s].n_gen++;
        }
    }
    int expect = N_SEQ * (N_GEN + 1);
    printf("%s, %s: %d sequences in %d passes (widest %d tokens): %d/%d next tokens agree, %d rows not bit for bit "
           "the lone run's, worst cosine %.7f, largest difference %.5f of the row's spread\n",
           what, mixed ? "mixed passes" : "decode and prefill passes", N_SEQ, rounds, widest, agree, compared, differ,
           worst_cos, worst_rel);
    CHECK(!exact || differ == 0, "%s: %d rows differ from the lone runs' bits", what, differ);
    CHECK(compared == expect && agree == expect, "%s: %d of %d rows compared, %d agree", what, compared, expect, agree);
    for (int s = 0; s < N_SEQ; s++)
        CHECK(slm_seq_pos(c, N_SEQ - s) == runs[s].n_prompt + N_GEN, "%s: sequence %d holds %d tokens", what, s,
              slm_seq_pos(c, N_SEQ - s));
    CHECK(slm_seq_pos(c, 0) == 0 && slm_context_pos(c) == 0, "%s: the idle sequence holds %d tokens", what,
          slm_seq_pos(c, 0));
    slm_context_free(c);
}

/* Refusals change nothing; rewinding one sequence leaves the others; a rewound sequence recomputes alike. */
static void api_checks(slm_model *m, lone_run *runs, int n_vocab) {
    slm_context *c = NULL;
    slm_error err = {{0}};
    CHECK(slm_context_create_seqs(m, 0, &c, &err) == SLM_ERR_INVALID_ARG, "0 sequences accepted");
    CHECK(slm_context_create_seqs(m, SLM_MAX_SEQS + 1, &c, &err) == SLM_ERR_INVALID_ARG, "too many sequences");
    if (slm_context_create_seqs(m, 3, &c, &err)) {
        CHECK(0, "context: %s", err.msg);
        return;
    }
    lone_run *a = &runs[0], *b = &runs[1];
    slm_batch_part two[2] = {{0, a->prompt, a->n_prompt}, {2, b->prompt, b->n_prompt}};
    CHECK(slm_eval_batch(c, two, 2, &err) == SLM_OK, "two prompts: %s", err.msg);
    int pa = slm_seq_pos(c, 0), pb = slm_seq_pos(c, 2);
    int32_t big[32] = {0}, bad = n_vocab;
    slm_batch_part dup[2] = {{0, a->gen, 1}, {0, b->gen, 1}};
    CHECK(slm_eval_batch(c, dup, 2, &err) == SLM_ERR_INVALID_ARG, "a sequence twice accepted");
    slm_batch_part none[1] = {{3, a->gen, 1}};
    CHECK(slm_eval_batch(c, none, 1, &err) == SLM_ERR_INVALID_ARG, "sequence 3 of 3 accepted");
    slm_batch_part wide[2] = {{1, big, 10}, {2, big, 10}}; /* 20 tokens > n_batch 16 */
    CHECK(slm_eval_batch(c, wide, 2, &err) == SLM_ERR_INVALID_ARG, "more than n_batch accepted");
    slm_batch_part oov[2] = {{1, a->gen, 1}, {2, &bad, 1}};
    CHECK(slm_eval_batch(c, oov, 2, &err) == SLM_ERR_INVALID_ARG, "a token outside the vocabulary accepted");
    CHECK(slm_seq_pos(c, 0) == pa && slm_seq_pos(c, 1) == 0 && slm_seq_pos(c, 2) == pb,
          "refused batches changed the sequences: %d %d %d", slm_seq_pos(c, 0), slm_seq_pos(c, 1), slm_seq_pos(c, 2));
    /* sequence 0 back to its prompt's start minus one token, evaluated again together with b's next token:
     * both must match the lone runs */
    slm_seq_rewind(c, 0, a->n_prompt - 1);
    CHECK(slm_seq_pos(c, 0) == a->n_prompt - 1 && slm_seq_pos(c, 2) == pb, "rewind moved %d %d", slm_seq_pos(c, 0),
          slm_seq_pos(c, 2));
    slm_batch_part again[2] = {{2, &b->gen[0], 1}, {0, &a->prompt[a->n_prompt - 1], 1}};
    CHECK(slm_eval_batch(c, again, 2, &err) == SLM_OK, "after rewind: %s", err.msg);
    double rel;
    CHECK(compare(slm_batch_logits(c, 1), a->logits, n_vocab, &rel) >= MIN_COSINE && rel <= MAX_REL_DIFF,
          "rewound sequence differs (%.4f)", rel);
    CHECK(compare(slm_batch_logits(c, 0), b->logits + n_vocab, n_vocab, &rel) >= MIN_COSINE && rel <= MAX_REL_DIFF,
          "the other sequence differs after a rewind (%.4f)", rel);
    CHECK(slm_batch_logits(c, 2) == NULL, "logits of a part that was not there");
    /* sequence 1 filled to its last position (n_ctx 32): one token more does not fit, and the part beside
     * it is not evaluated either */
    pb = slm_seq_pos(c, 2);
    slm_batch_part fill[1] = {{1, big, 16}};
    CHECK(slm_eval_batch(c, fill, 1, &err) == SLM_OK && slm_eval_batch(c, fill, 1, &err) == SLM_OK, "fill: %s",
          err.msg);
    slm_batch_part past[2] = {{2, &b->gen[1], 1}, {1, big, 1}};
    CHECK(slm_eval_batch(c, past, 2, &err) == SLM_ERR_CONTEXT, "a token past the context accepted");
    CHECK(slm_seq_pos(c, 1) == 32 && slm_seq_pos(c, 2) == pb, "a refused batch changed the sequences: %d %d",
          slm_seq_pos(c, 1), slm_seq_pos(c, 2));
    slm_context_free(c);
}

static void run_on(const void *data, size_t size, const char *device, int ngl, const char *what, bool api) {
    slm_model *m = load(data, size, device, ngl);
    if (!m) return;
    int n_vocab = slm_model_get_info(m).n_vocab;
    lone_run runs[N_SEQ];
    uint64_t rng = 0x5eed;
    bool ok = true;
    for (int s = 0; s < N_SEQ; s++) {
        runs[s].n_prompt = 1 + (int)((s * 5 + 3) % MAX_PROMPT); /* 4, 9, 1, 6, 11 */
        for (int i = 0; i < runs[s].n_prompt; i++) runs[s].prompt[i] = (int32_t)(slm_test_rand(&rng) % n_vocab);
        runs[s].logits = malloc((size_t)(N_GEN + 1) * n_vocab * sizeof(float));
        ok = ok && runs[s].logits && lone(m, &runs[s], n_vocab);
    }
    if (ok) batched(m, runs, n_vocab, what, true, false);
    if (ok) batched(m, runs, n_vocab, what, false, !strcmp(what, "cpu"));
    if (ok && api) api_checks(m, runs, n_vocab);
    for (int s = 0; s < N_SEQ; s++) free(runs[s].logits);
    slm_model_free(m);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    slm_synth_spec s;
    slm_error err = {{0}};
    void *data = NULL;
    size_t size = 0;
    if (slm_synth_parse("custom:q4_0:n_layer=2:n_embd=256:n_head=4:n_head_kv=2:n_ff=256:n_vocab=512", &s, &err) ||
        slm_synth_build(&s, 1, &data, &size, &err)) {
        fprintf(stderr, "synthetic model: %s\n", err.msg);
        return 1;
    }
    const char *only = getenv("SLM_TEST_DEVICES");
    if (!only || !*only) run_on(data, size, "cpu", 0, "cpu", true);
    slm_backend_info bi[8];
    int nb = slm_backends_list(bi, 8);
    for (int i = 0; i < nb && i < 8; i++) {
        if (!strcmp(bi[i].name, "cpu") || bi[i].n_devices < 1) continue;
        char spec[32], what[64];
        snprintf(spec, sizeof spec, "%s:0", bi[i].name);
        if (only && *only && !strstr(only, spec)) continue;
        snprintf(what, sizeof what, "%s, every layer", spec);
        run_on(data, size, spec, SLM_NGL_ALL, what, true);
        snprintf(what, sizeof what, "%s, layer 0 on the cpu", spec);
        run_on(data, size, spec, 1, what, false);
    }
    free(data);
    return slm_test_finish("test_batch");
}
