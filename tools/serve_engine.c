/* The engine: one thread that owns the model's --parallel slots and is the only one that evaluates.
 *
 * HTTP handler threads create jobs (prompt tokens, sampler, detokenizer, stop strings) and queue them; the
 * engine moves queued jobs into free slots and then steps every active slot once per iteration:
 *
 *     admit queued jobs into free slots
 *     decode pass: the last sampled token of every generating slot, in one forward pass; each samples,
 *                  detokenizes, matches stop strings and publishes to its channel
 *     prefill pass: the next chunk of the prompt admitted first; once all of it is in, it samples too
 *
 * The slots are the sequences of one context (slot i is sequence i), so a step reads each weight once for
 * all of them: n streams cost little more than one.
 *
 * Prompts go in at most cfg.prompt_chunk tokens per step, so a long prompt delays the generating slots by
 * one chunk per token they generate instead of stalling them until it is done. Each slot keeps the tokens of its
 * KV cache after a job; the next job takes the free slot whose cache shares the longest prefix with its
 * prompt and evaluates only the rest (a multi-turn client pays for its new turn).
 *
 * Locks: e->mu guards the queue, the slots' job pointers as the other threads see them and the statistics;
 * a job's mu guards its channel (output text, status, cancel flag). e->mu may be taken before a job's mu,
 * never the other way round. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

/* Prompt tokens evaluated again after a reused prefix (admit). */
#define REUSE_TAIL 32

struct serve_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    serve_engine *e;
    /* the request, fixed at creation */
    int32_t *tokens;
    int n_tokens;
    int max_tokens;  /* -1: until the context is full */
    bool ignore_eos; /* end-of-generation tokens are never sampled */
    slm_sampler *smp;
    slm_detokenizer *detok;
    char *stop_strs[SERVE_MAX_STOP];
    serve_stop stop; /* the engine's alone */
    /* the channel (mu) */
    serve_buf out;
    bool done, cancelled;
    const char *finish;
    int n_completion;
    char error[256];
    /* the queue (e->mu) */
    serve_job *next;
    bool queued;
};

typedef struct slot {
    int seq;         /* its sequence in the engine's context */
    int32_t *cached; /* the tokens in its sequence's KV cache, in order */
    int n_cached;
    serve_job *job;  /* NULL: free */
    int n_prompt_in; /* prompt tokens of job in the cache */
    int32_t last;    /* the token sampled last: evaluated at the next step */
    int n_gen;
    long long admitted; /* the order jobs came into slots: prompts go in first come, first served */
    int part;           /* engine_forward's verdict for this pass: its part of the batch (-1: not evaluated) */
    bool failed;        /* ... or its failure */
    char why[256];
    serve_buf shown; /* scratch: the text one step makes visible */
} slot;

struct serve_engine {
    slm_model *m;
    serve_engine_config cfg;
    slm_context *ctx; /* one sequence per slot */
    int n_ctx, n_batch;
    slot *slots;
    slm_batch_part *parts; /* [n_parallel]: engine_forward's batch */
    int32_t *eog;          /* the vocabulary's end-of-generation tokens (ignore_eos masks them) */
    int n_eog, n_vocab;
    float *masked; /* [n_vocab]: a logit row with them masked */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job *q_head, *q_tail;
    int n_queued, n_active;
    long long n_admitted;
    bool closing;
    long long prompt_tokens, completion_tokens, kv_used;
    double busy_s;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- jobs and their channels ---- */

serve_job *serve_job_create(serve_engine *e, const int32_t *tokens, int n_tokens, const serve_request *r,
                            bool starts_text, serve_error *err) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) goto oom;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->e = e;
    j->max_tokens = r->max_tokens;
    j->ignore_eos = r->ignore_eos;
    j->tokens = malloc((size_t)n_tokens * sizeof *j->tokens);
    if (!j->tokens) goto oom;
    memcpy(j->tokens, tokens, (size_t)n_tokens * sizeof *tokens);
    j->n_tokens = n_tokens;
    int n_stop = 0;
    for (int i = 0; i < r->n_stop; i++) {
        if (!(j->stop_strs[i] = strdup(r->stop[i]))) goto oom;
        n_stop++;
    }
    serve_stop_init(&j->stop, j->stop_strs, n_stop);
    slm_error se = {{0}};
    slm_status s = slm_sampler_create(&r->sampling, slm_model_get_info(e->m).n_vocab, &j->smp, &se);
    if (s == SLM_ERR_INVALID_ARG) {
        serve_error_set(err, 400, "invalid_request_error", NULL, NULL, "%s", se.msg);
        serve_job_release(j);
        return NULL;
    }
    if (s || slm_detokenizer_create(e->m, starts_text, &j->detok, &se)) goto oom;
    return j;
oom:
    serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory creating the job");
    serve_job_release(j);
    return NULL;
}

void serve_job_release(serve_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->tokens);
    slm_sampler_free(j->smp);
    slm_detokenizer_free(j->detok);
    serve_stop_free(&j->stop);
    for (int i = 0; i < SERVE_MAX_STOP; i++) free(j->stop_strs[i]);
    serve_buf_free(&j->out);
    free(j);
}

serve_job_status serve_job_wait(serve_job *j, size_t *consumed, serve_buf *out, int timeout_ms) {
    pthread_mutex_lock(&j->mu);
    if (j->out.n <= *consumed && !j->done && timeout_ms > 0) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        long long ns = t.tv_nsec + (long long)timeout_ms * 1000000;
        t.tv_sec += (time_t)(ns / 1000000000);
        t.tv_nsec = (long)(ns % 1000000000);
        while (j->out.n <= *consumed && !j->done)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &t)) break;
    }
    if (j->out.n > *consumed && serve_buf_add(out, j->out.p + *consumed, j->out.n - *consumed)) *consumed = j->out.n;
    serve_job_status st = {.done = j->done && *consumed == j->out.n,
                           .finish = j->finish,
                           .n_prompt = j->n_tokens,
                           .n_completion = j->n_completion};
    snprintf(st.error, sizeof st.error, "%s", j->error);
    pthread_mutex_unlock(&j->mu);
    return st;
}

/* Appends text to the job's channel and wakes its reader. */
static void publish(serve_job *j, const char *text, size_t len, int n_completion) {
    pthread_mutex_lock(&j->mu);
    /* out of memory here loses text the client would have seen: end the job as an error instead */
    if (len && !serve_buf_add(&j->out, text, len) && !j->error[0])
        snprintf(j->error, sizeof j->error, "out of memory buffering the reply");
    j->n_completion = n_completion;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Ends the job's stream: finish "stop" or "length", or NULL with why (a failure or a cancel). */
static void job_end(serve_job *j, const char *finish, const char *why) {
    pthread_mutex_lock(&j->mu);
    j->done = true;
    if (!j->error[0]) j->finish = finish;
    if (!finish && !j->error[0]) snprintf(j->error, sizeof j->error, "%s", why ? why : "cancelled");
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static bool job_cancelled(serve_job *j) {
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

void serve_job_cancel(serve_job *j) {
    serve_engine *e = j->e;
    bool dequeued = false;
    pthread_mutex_lock(&e->mu);
    if (j->queued) {
        /* still waiting: out of the queue now, so that it stops counting against --queue-limit */
        serve_job **p = &e->q_head;
        while (*p != j) p = &(*p)->next;
        *p = j->next;
        if (e->q_tail == j) {
            e->q_tail = NULL;
            for (serve_job *q = e->q_head; q; q = q->next) e->q_tail = q;
        }
        j->queued = false;
        e->n_queued--;
        dequeued = true;
    }
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
    /* a running job is dropped by the engine at its next step (the engine is stepping: it is not asleep) */
    pthread_mutex_unlock(&e->mu);
    if (dequeued) {
        job_end(j, NULL, "cancelled");
        serve_job_release(j); /* the engine's reference */
    }
}

serve_submit serve_engine_submit(serve_engine *e, serve_job *j) {
    pthread_mutex_lock(&e->mu);
    serve_submit r = SERVE_SUBMIT_OK;
    if (e->closing) r = SERVE_SUBMIT_CLOSED;
    /* queued jobs that free slots will take at once are not waiting: only the rest count against the limit */
    else if (e->n_queued >= e->cfg.queue_limit + (e->cfg.n_parallel - e->n_active)) r = SERVE_SUBMIT_FULL;
    if (r == SERVE_SUBMIT_OK) {
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        j->queued = true;
        j->next = NULL;
        if (e->q_tail) e->q_tail->next = j;
        else e->q_head = j;
        e->q_tail = j;
        e->n_queued++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return r;
}

/* ---- slots ---- */

static void slot_sample(serve_engine *e, slot *s);

/* The logits a slot's next token is sampled from, after engine_forward. */
static const float *slot_logits(serve_engine *e, slot *s) { return slm_batch_logits(e->ctx, s->part); }

/* Records in the slots what a successful pass over e->parts[0..n) evaluated. */
static void forward_done(serve_engine *e, slot **in, int n) {
    for (int i = 0; i < n; i++) {
        slot *s = in[i];
        const slm_batch_part *p = &e->parts[i];
        memcpy(s->cached + s->n_cached, p->tokens, (size_t)p->n * sizeof *p->tokens);
        s->n_cached += p->n;
        if (s->n_prompt_in < s->job->n_tokens) s->n_prompt_in += p->n;
        s->part = i;
    }
}

/* One forward pass over e->parts[0..n), part i for slot in[i]. Leaves each evaluated slot's part (for
 * slot_logits); a slot that fails gets failed and why. */
static void engine_forward(serve_engine *e, slot **in, int n) {
    for (int i = 0; i < n; i++) {
        in[i]->part = -1;
        in[i]->failed = false;
    }
    slm_error err = {{0}};
    slm_status st = slm_eval_batch(e->ctx, e->parts, n, &err);
    if (!st) {
        forward_done(e, in, n);
        return;
    }
    /* a failed pass grew no sequence: each part alone, so that only the slots that fail by themselves end */
    for (int i = 0; i < n; i++) {
        slm_batch_part one = e->parts[i];
        st = slm_eval_batch(e->ctx, &one, 1, &err);
        if (st) {
            in[i]->failed = true;
            snprintf(in[i]->why, sizeof in[i]->why, "evaluation failed: %.200s (%s)", err.msg, slm_status_name(st));
            continue;
        }
        e->parts[0] = one;
        forward_done(e, &in[i], 1);
        /* its logits are part 0 of this pass: sample before the next pass replaces them */
        in[i]->part = 0;
        if (in[i]->n_prompt_in == in[i]->job->n_tokens) slot_sample(e, in[i]);
        in[i]->part = -1;
    }
}

/* Positions held in the slots' KV caches (e->mu held; the engine thread's own figures). */
static long long kv_used(const serve_engine *e) {
    long long kv = 0;
    for (int i = 0; i < e->cfg.n_parallel; i++) kv += e->slots[i].n_cached;
    return kv;
}

/* Frees the slot and ends its job's stream, in that order: a client that has its reply sees the slot free and
 * the statistics that include it. */
static void slot_end(serve_engine *e, slot *s, const char *finish, const char *why) {
    serve_job *j = s->job;
    s->job = NULL;
    pthread_mutex_lock(&e->mu);
    e->n_active--;
    e->kv_used = kv_used(e);
    pthread_mutex_unlock(&e->mu);
    job_end(j, finish, why);
    serve_job_release(j);
}

static void slot_finish(serve_engine *e, slot *s, const char *finish, const char *why) {
    serve_job *j = s->job;
    if (finish) {
        /* the end of the text: what the detokenizer and the stop matcher still hold comes out (the
         * detokenizer's last bytes may complete a stop string after all) */
        size_t l = 0;
        const char *tail = slm_detokenizer_flush(j->detok, &l);
        s->shown.n = 0;
        if (tail && l && serve_stop_push(&j->stop, tail, l, &s->shown)) finish = "stop";
        else serve_stop_flush(&j->stop, &s->shown);
        publish(j, s->shown.p, s->shown.n, s->n_gen);
    }
    slot_end(e, s, finish, why);
}

/* Samples the slot's next token and sends what it makes visible. */
static void slot_sample(serve_engine *e, slot *s) {
    serve_job *j = s->job;
    const float *logits = slot_logits(e, s);
    if (j->ignore_eos) {
        memcpy(e->masked, logits, (size_t)e->n_vocab * sizeof *logits);
        for (int i = 0; i < e->n_eog; i++) e->masked[e->eog[i]] = -INFINITY;
        logits = e->masked;
    }
    int32_t t = slm_sampler_sample(j->smp, logits);
    if (slm_token_is_eog(e->m, t)) {
        slot_finish(e, s, "stop", NULL);
        return;
    }
    slm_sampler_accept(j->smp, t);
    s->n_gen++;
    pthread_mutex_lock(&e->mu);
    e->completion_tokens++;
    pthread_mutex_unlock(&e->mu);
    size_t l = 0;
    const char *piece = slm_detokenizer_push(j->detok, t, &l);
    s->shown.n = 0;
    bool hit = serve_stop_push(&j->stop, piece ? piece : "", piece ? l : 0, &s->shown);
    publish(j, s->shown.p, s->shown.n, s->n_gen);
    if (hit) {
        slot_end(e, s, "stop", NULL);
    } else if (s->n_gen == j->max_tokens || s->n_cached >= e->n_ctx) {
        slot_finish(e, s, "length", NULL);
    } else {
        s->last = t;
    }
}

/* The free slot for job j: the one whose cache shares the longest prefix with its prompt; of equals, the one
 * with the least cached, so that a conversation's cache is not thrown away while an emptier slot is free. */
static slot *pick_slot(serve_engine *e, serve_job *j, int *prefix) {
    slot *best = NULL;
    *prefix = -1;
    for (int i = 0; i < e->cfg.n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->job) continue;
        int p = 0;
        while (p < s->n_cached && p < j->n_tokens && s->cached[p] == j->tokens[p]) p++;
        if (p > *prefix || (p == *prefix && s->n_cached < best->n_cached)) {
            *prefix = p;
            best = s;
        }
    }
    return best;
}

/* Moves queued jobs into free slots (e->mu held). */
static void admit(serve_engine *e) {
    while (e->q_head && e->n_active < e->cfg.n_parallel) {
        serve_job *j = e->q_head;
        e->q_head = j->next;
        if (!e->q_head) e->q_tail = NULL;
        j->queued = false;
        e->n_queued--;
        int p;
        slot *s = pick_slot(e, j, &p);
        /* At least the prompt's last REUSE_TAIL tokens (all of a shorter one) are evaluated again: a few
         * tokens after a cached prefix would run other kernels than a whole prompt (the CPU's mat-vec path
         * below 9 or 24 columns, its packed GEMM above), and the reply would depend on what the slot held
         * before. So a request's greedy reply is the same on a fresh server and a busy one; a new turn of a
         * conversation is usually longer than that anyway. The last token is always evaluated: its logits
         * give the first generated token. */
        if (p > j->n_tokens - REUSE_TAIL) p = j->n_tokens > REUSE_TAIL ? j->n_tokens - REUSE_TAIL : 0;
        slm_seq_rewind(e->ctx, s->seq, p);
        s->n_cached = p;
        s->n_prompt_in = p;
        s->n_gen = 0;
        s->admitted = e->n_admitted++;
        s->job = j;
        e->n_active++;
        e->prompt_tokens += j->n_tokens;
    }
}

/* After a pass: a failed slot ends, a slot whose prompt is in samples its next token. */
static void settle(serve_engine *e, slot **in, int n) {
    for (int i = 0; i < n; i++) {
        slot *s = in[i];
        if (s->failed) {
            /* start this slot afresh: its cache is not to be trusted after a failure */
            slm_seq_rewind(e->ctx, s->seq, 0);
            s->n_cached = 0;
            slot_finish(e, s, NULL, s->why);
        } else if (s->part >= 0 && s->n_prompt_in == s->job->n_tokens) {
            slot_sample(e, s);
        }
    }
}

/* One iteration over the active slots: a decode pass with the last sampled token of every generating slot
 * (at most n_batch of them), then a prefill pass with the next chunk of the prompt admitted first. Kept
 * apart, each sequence's numbers do not depend on what else runs: a decode pass of a few sequences runs the
 * mat-vec kernels a lone sequence runs, column for column, and a prompt goes in as it would alone, so a
 * request's greedy reply is the same however many others share the server. */
static void engine_step(serve_engine *e) {
    slot *in[e->cfg.n_parallel];
    int n = 0;
    for (int i = 0; i < e->cfg.n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->job && job_cancelled(s->job)) slot_finish(e, s, NULL, "cancelled");
        if (!s->job || s->n_prompt_in < s->job->n_tokens || n == e->n_batch) continue;
        e->parts[n] = (slm_batch_part){.seq = s->seq, .tokens = &s->last, .n = 1};
        in[n++] = s;
    }
    if (n) {
        engine_forward(e, in, n);
        settle(e, in, n);
    }
    slot *first = NULL;
    for (int i = 0; i < e->cfg.n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->job && s->n_prompt_in < s->job->n_tokens && (!first || s->admitted < first->admitted)) first = s;
    }
    if (!first) return;
    int k = first->job->n_tokens - first->n_prompt_in;
    if (k > e->cfg.prompt_chunk) k = e->cfg.prompt_chunk;
    if (k > e->n_batch) k = e->n_batch;
    e->parts[0] = (slm_batch_part){.seq = first->seq, .tokens = first->job->tokens + first->n_prompt_in, .n = k};
    engine_forward(e, &first, 1);
    settle(e, &first, 1);
}

static void *engine_main(void *arg) {
    serve_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->closing && !e->q_head && !e->n_active) pthread_cond_wait(&e->cv, &e->mu);
        if (e->closing) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        admit(e);
        pthread_mutex_unlock(&e->mu);
        double t0 = now_s();
        engine_step(e);
        double dt = now_s() - t0;
        pthread_mutex_lock(&e->mu);
        e->busy_s += dt;
        e->kv_used = kv_used(e);
        pthread_mutex_unlock(&e->mu);
    }
    /* shutting down: every stream still open ends now */
    for (int i = 0; i < e->cfg.n_parallel; i++)
        if (e->slots[i].job) slot_finish(e, &e->slots[i], NULL, "the server is shutting down");
    pthread_mutex_lock(&e->mu);
    serve_job *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    while (q) {
        serve_job *next = q->next;
        q->queued = false;
        job_end(q, NULL, "the server is shutting down");
        serve_job_release(q);
        q = next;
    }
    return NULL;
}

/* ---- the engine ---- */

slm_status serve_engine_create(slm_model *m, const serve_engine_config *cfg, serve_engine **out, slm_error *err) {
    *out = NULL;
    serve_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->m = m;
    e->cfg = *cfg;
    if (e->cfg.prompt_chunk < 1) e->cfg.prompt_chunk = 128;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->slots = calloc((size_t)cfg->n_parallel, sizeof *e->slots);
    e->parts = calloc((size_t)cfg->n_parallel, sizeof *e->parts);
    if (!e->slots || !e->parts) goto oom;
    slm_status st = slm_context_create_seqs(m, cfg->n_parallel, &e->ctx, err);
    if (st) {
        serve_engine_free(e);
        return st;
    }
    e->n_ctx = slm_context_n_ctx(e->ctx);
    e->n_batch = slm_model_plan_info(m).n_batch;
    e->n_vocab = slm_model_get_info(m).n_vocab;
    e->eog = malloc((size_t)e->n_vocab * sizeof *e->eog);
    e->masked = malloc((size_t)e->n_vocab * sizeof *e->masked);
    if (!e->eog || !e->masked) goto oom;
    for (int32_t t = 0; t < e->n_vocab; t++)
        if (slm_token_is_eog(m, t)) e->eog[e->n_eog++] = t;
    for (int i = 0; i < cfg->n_parallel; i++) {
        e->slots[i].seq = i;
        if (!(e->slots[i].cached = malloc((size_t)e->n_ctx * sizeof(int32_t)))) goto oom;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        snprintf(err->msg, sizeof err->msg, "cannot start the engine thread");
        serve_engine_free(e);
        return SLM_ERR_NOMEM;
    }
    e->started = true;
    *out = e;
    return SLM_OK;
oom:
    snprintf(err->msg, sizeof err->msg, "out of memory creating %d slots", cfg->n_parallel);
    serve_engine_free(e);
    return SLM_ERR_NOMEM;
}

void serve_engine_shutdown(serve_engine *e) {
    if (!e || !e->started) return;
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->started = false;
}

void serve_engine_free(serve_engine *e) {
    if (!e) return;
    serve_engine_shutdown(e);
    if (e->slots)
        for (int i = 0; i < e->cfg.n_parallel; i++) {
            free(e->slots[i].cached);
            serve_buf_free(&e->slots[i].shown);
        }
    free(e->slots);
    free(e->parts);
    free(e->eog);
    free(e->masked);
    slm_context_free(e->ctx);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

serve_engine_stats serve_engine_get_stats(serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    serve_engine_stats st = {.queued = e->n_queued,
                             .active = e->n_active,
                             .n_slots = e->cfg.n_parallel,
                             .kv_used = e->kv_used,
                             .kv_total = (long long)e->n_ctx * e->cfg.n_parallel,
                             .prompt_tokens = e->prompt_tokens,
                             .completion_tokens = e->completion_tokens,
                             .busy_s = e->busy_s};
    pthread_mutex_unlock(&e->mu);
    return st;
}

int serve_engine_n_ctx(const serve_engine *e) { return e->n_ctx; }
