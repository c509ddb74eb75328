/* GET /metrics: request counters kept here (by endpoint and status), and the engine's figures (tokens,
 * queue, slots, KV cache) read from it at each scrape, in Prometheus's text exposition format. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "serve.h"

/* The statuses the server answers with; anything else is counted as "other". */
static const int statuses[] = {200, 400, 401, 404, 405, 413, 500, 503};
#define N_STATUS ((int)(sizeof statuses / sizeof statuses[0]) + 1)

static const char *const endpoint_names[SERVE_EP_COUNT] = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "other"};

struct serve_metrics {
    pthread_mutex_t mu;
    long long requests[SERVE_EP_COUNT][N_STATUS];
};

serve_metrics *serve_metrics_create(void) {
    serve_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void serve_metrics_free(serve_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void serve_metrics_request(serve_metrics *m, serve_endpoint ep, int status) {
    int s = N_STATUS - 1;
    for (int i = 0; i < N_STATUS - 1; i++)
        if (statuses[i] == status) s = i;
    pthread_mutex_lock(&m->mu);
    m->requests[ep][s]++;
    pthread_mutex_unlock(&m->mu);
}

char *serve_metrics_text(serve_metrics *m, const serve_engine_stats *st) {
    serve_buf b = {0};
    bool ok = serve_buf_addf(&b,
                             "# HELP slm_requests_total HTTP requests answered, by endpoint and status.\n"
                             "# TYPE slm_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (int e = 0; e < SERVE_EP_COUNT; e++)
        for (int s = 0; s < N_STATUS; s++) {
            if (!m->requests[e][s]) continue;
            char code[8];
            if (s < N_STATUS - 1) snprintf(code, sizeof code, "%d", statuses[s]);
            else snprintf(code, sizeof code, "other");
            ok = ok &&
                serve_buf_addf(&b, "slm_requests_total{endpoint=\"%s\",status=\"%s\"} %lld\n", endpoint_names[e], code,
                               m->requests[e][s]);
        }
    pthread_mutex_unlock(&m->mu);
    double tps = st->busy_s > 0 ? (double)st->completion_tokens / st->busy_s : 0;
    ok = ok &&
        serve_buf_addf(
             &b,
             "# HELP slm_prompt_tokens_total Prompt tokens of the requests that reached a slot.\n"
             "# TYPE slm_prompt_tokens_total counter\n"
             "slm_prompt_tokens_total %lld\n"
             "# HELP slm_completion_tokens_total Tokens generated.\n"
             "# TYPE slm_completion_tokens_total counter\n"
             "slm_completion_tokens_total %lld\n"
             "# HELP slm_engine_busy_seconds_total Seconds the engine spent evaluating (prompts and generation).\n"
             "# TYPE slm_engine_busy_seconds_total counter\n"
             "slm_engine_busy_seconds_total %.6f\n"
             "# HELP slm_tokens_per_second Generated tokens per busy second of the engine, all slots together.\n"
             "# TYPE slm_tokens_per_second gauge\n"
             "slm_tokens_per_second %.3f\n"
             "# HELP slm_queue_depth Requests waiting for a slot.\n"
             "# TYPE slm_queue_depth gauge\n"
             "slm_queue_depth %d\n"
             "# HELP slm_slots_active Slots running a request.\n"
             "# TYPE slm_slots_active gauge\n"
             "slm_slots_active %d\n"
             "# HELP slm_slots_total Slots (--parallel).\n"
             "# TYPE slm_slots_total gauge\n"
             "slm_slots_total %d\n"
             "# HELP slm_kv_cache_used_tokens Positions held in the slots' KV caches.\n"
             "# TYPE slm_kv_cache_used_tokens gauge\n"
             "slm_kv_cache_used_tokens %lld\n"
             "# HELP slm_kv_cache_capacity_tokens Positions the slots' KV caches can hold.\n"
             "# TYPE slm_kv_cache_capacity_tokens gauge\n"
             "slm_kv_cache_capacity_tokens %lld\n"
             "# HELP slm_kv_cache_usage_ratio Used over capacity.\n"
             "# TYPE slm_kv_cache_usage_ratio gauge\n"
             "slm_kv_cache_usage_ratio %.6f\n",
             st->prompt_tokens, st->completion_tokens, st->busy_s, tps, st->queued, st->active, st->n_slots,
             st->kv_used, st->kv_total, st->kv_total ? (double)st->kv_used / (double)st->kv_total : 0.0);
    if (!ok) {
        serve_buf_free(&b);
        return NULL;
    }
    return b.p;
}
