/* `slm serve`: an OpenAI-compatible HTTP server on the public API. Its parts, one file each:
 *
 *   cmd_serve.c      options, model load, signals, start and orderly shutdown
 *   serve_http.c     libmicrohttpd: routing, auth, request bodies, errors, streaming (handler threads)
 *   serve_json.c     jansson: request bodies to serve_request, responses and SSE chunks to text
 *   serve_engine.c   the engine thread: the queue, the --parallel slots and the step loop
 *   serve_stop.c     stop strings matched across token boundaries (text held back while it may be one)
 *   serve_metrics.c  counters and the Prometheus text of GET /metrics
 *   serve_buf.c      a growable byte buffer the others share
 *
 * Threads: HTTP handler threads parse, validate, tokenize (the model is read-only) and enqueue a job; the
 * one engine thread owns the slm_context (a sequence per slot) and is the only thread that evaluates; a job's output reaches
 * its handler through the job's channel (mutex + condition variable). Nothing here includes an internal
 * header: the server is an application of include/slm.h. */
#ifndef SLM_SERVE_H
#define SLM_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* ---- serve_buf.c ---- */
typedef struct serve_buf {
    char *p; /* NUL-terminated when not NULL */
    size_t n, cap;
} serve_buf;
bool serve_buf_add(serve_buf *b, const char *s, size_t n); /* false: out of memory (b unchanged) */
bool serve_buf_addf(serve_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void serve_buf_consume(serve_buf *b, size_t n); /* drops the first n bytes */
void serve_buf_free(serve_buf *b);

/* ---- serve_json.c ---- */
typedef enum serve_kind { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

/* An OpenAI-style error: the HTTP status and the four fields of {"error": {...}}. */
typedef struct serve_error {
    int status;
    char message[512];
    const char *type; /* "invalid_request_error", "authentication_error", "server_error", ... */
    char param[48];   /* the offending field, or "" */
    const char *code; /* "context_length_exceeded", ... or NULL */
} serve_error;
void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));

#define SERVE_MAX_STOP 16

/* A request body as the engine needs it; unknown fields were ignored, every known one type- and
 * range-checked. */
typedef struct serve_request {
    serve_kind kind;
    slm_chat_message *messages; /* chat: roles are static strings, contents owned */
    int n_messages;
    char *prompt; /* completions */
    bool stream;
    bool include_usage; /* stream_options.include_usage: a last chunk with usage */
    int max_tokens;     /* -1: not given (until the context is full) */
    bool ignore_eos;    /* llama.cpp's extension: end-of-generation tokens do not end the reply (benchmarks) */
    slm_sampler_params sampling;
    char *stop[SERVE_MAX_STOP];
    int n_stop;
} serve_request;

/* Parses a body of /v1/chat/completions or /v1/completions; sampling starts from defaults. False with a
 * 400 in *err when the JSON is malformed or a field has the wrong type or range. */
bool serve_parse_request(serve_kind kind, const char *body, size_t len, const slm_sampler_params *defaults,
                         serve_request *out, serve_error *err);
void serve_request_free(serve_request *r);

/* The response texts (malloc'd, NULL when out of memory). */
typedef struct serve_reply_info {
    serve_kind kind;
    const char *id; /* "chatcmpl-7" */
    long long created;
    const char *model;
} serve_reply_info;
char *serve_json_error(const serve_error *e);
char *serve_json_reply(const serve_reply_info *r, const char *text, size_t len, const char *finish, int n_prompt,
                       int n_completion);
/* One SSE chunk's JSON: the assistant role opens the first chat chunk (first), finish closes the last. */
char *serve_json_chunk(const serve_reply_info *r, const char *text, size_t len, bool first, const char *finish);
/* The chunk of stream_options.include_usage: no choices, the usage. */
char *serve_json_usage_chunk(const serve_reply_info *r, int n_prompt, int n_completion);
char *serve_json_models(const char *model, long long created);

/* ---- serve_stop.c ---- */
/* Generated text passes through this before it is shown: text that may be the beginning of a stop string is
 * held back until the next pieces decide, and a stop string found (within a piece or across pieces) ends
 * the text before it; the stop string itself is never shown. */
typedef struct serve_stop {
    char *const *stop; /* borrowed */
    int n_stop;
    serve_buf held;
    bool hit;
} serve_stop;
void serve_stop_init(serve_stop *s, char *const *stop, int n_stop);
/* Feeds the next piece; appends to out what can be shown now. Returns true once a stop string completed
 * (then nothing more is shown). False from an out-of-memory append shows as hit with out unchanged: the
 * caller ends the stream rather than show a stop string. */
bool serve_stop_push(serve_stop *s, const char *text, size_t len, serve_buf *out);
/* The end of generation without a stop: what was held back is shown after all. */
void serve_stop_flush(serve_stop *s, serve_buf *out);
void serve_stop_free(serve_stop *s);

/* ---- serve_metrics.c ---- */
typedef struct serve_metrics serve_metrics;
typedef enum serve_endpoint {
    SERVE_EP_CHAT,
    SERVE_EP_COMPLETIONS,
    SERVE_EP_MODELS,
    SERVE_EP_HEALTH,
    SERVE_EP_METRICS,
    SERVE_EP_OTHER,
    SERVE_EP_COUNT
} serve_endpoint;
/* What the engine reports for the gauges. */
typedef struct serve_engine_stats {
    int queued, active, n_slots;
    long long kv_used, kv_total; /* positions held in the slots' KV caches, and their capacity */
    long long prompt_tokens, completion_tokens;
    double busy_s; /* seconds the engine spent stepping slots */
} serve_engine_stats;
serve_metrics *serve_metrics_create(void);
void serve_metrics_free(serve_metrics *m);
void serve_metrics_request(serve_metrics *m, serve_endpoint ep, int status);
/* The Prometheus text exposition; malloc'd, NULL when out of memory. */
char *serve_metrics_text(serve_metrics *m, const serve_engine_stats *st);

/* ---- serve_engine.c ---- */
typedef struct serve_engine serve_engine;
typedef struct serve_job serve_job;

typedef struct serve_engine_config {
    int n_parallel;   /* slots: the sequences of the engine's one context */
    int queue_limit;  /* jobs waiting while every slot is busy before submissions get "queue full" */
    int prompt_chunk; /* prompt tokens a slot evaluates per step, so that a long prompt cannot stall the others */
} serve_engine_config;

/* Creates the context of the slots' sequences and starts the engine thread. */
slm_status serve_engine_create(slm_model *m, const serve_engine_config *cfg, serve_engine **out, slm_error *err);
/* Cancels every job (queued and running: their readers see them end) and joins the engine thread. */
void serve_engine_shutdown(serve_engine *e);
void serve_engine_free(serve_engine *e);
serve_engine_stats serve_engine_get_stats(serve_engine *e);
int serve_engine_n_ctx(const serve_engine *e);

/* A job: prompt tokens (copied), the request's generation settings, and the channel its reader waits on.
 * starts_text: the reply is a text of its own (chat) rather than the prompt's continuation (completions).
 * NULL with *err set when the sampler refuses the settings (400) or memory runs out. The creator holds one
 * reference. */
serve_job *serve_job_create(serve_engine *e, const int32_t *tokens, int n_tokens, const serve_request *r,
                            bool starts_text, serve_error *err);
typedef enum serve_submit { SERVE_SUBMIT_OK, SERVE_SUBMIT_FULL, SERVE_SUBMIT_CLOSED } serve_submit;
/* Queues the job for a slot; the engine takes its own reference. */
serve_submit serve_engine_submit(serve_engine *e, serve_job *j);

typedef struct serve_job_status {
    bool done;
    const char *finish; /* "stop", "length" once done; NULL when it failed or was cancelled */
    int n_prompt, n_completion;
    char error[256]; /* an engine failure ("" when none) */
} serve_job_status;
/* Waits up to timeout_ms for text after the first *consumed bytes of the job's output or for its end;
 * appends the new text to out and advances *consumed. Returns the status as of then. */
serve_job_status serve_job_wait(serve_job *j, size_t *consumed, serve_buf *out, int timeout_ms);
/* The reader is gone (client disconnected): the engine frees the job's slot at its next step. */
void serve_job_cancel(serve_job *j);
void serve_job_release(serve_job *j);

/* ---- serve_http.c ---- */
typedef struct serve_http serve_http;
typedef struct serve_http_config {
    const char *host;    /* an address or name to bind ("127.0.0.1", "::1", "0.0.0.0") */
    int port;            /* 0: any free port (serve_http_port says which) */
    const char *api_key; /* NULL: no key asked */
    serve_engine *engine;
    serve_metrics *metrics;
    slm_model *model;       /* for tokenizing in the handler threads (read-only) */
    const char *model_name; /* the id /v1/models lists and replies name */
    long long created;
    slm_sampler_params sampling; /* the defaults a request's fields override */
    int default_max_tokens;      /* -1: until the context is full */
} serve_http_config;
/* Starts listening with libmicrohttpd's threads; NULL with why when it cannot. */
serve_http *serve_http_start(const serve_http_config *cfg, char *why, size_t why_len);
int serve_http_port(const serve_http *h);
/* Stops accepting connections; those open go on. */
void serve_http_quiesce(serve_http *h);
/* Closes every connection (their handlers must be able to end: shut the engine down first), after up to 2 s
 * for those with a reply under way to send its end, and frees. */
void serve_http_stop(serve_http *h);

#endif
