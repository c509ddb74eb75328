/* The HTTP side of `slm serve`, on libmicrohttpd: routing, the API key, request bodies and their limit,
 * OpenAI-style errors, and replies (whole or streamed as server-sent events).
 *
 * libmicrohttpd runs a thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a handler may block: a
 * non-streamed request waits on its job's channel in the handler (looking every 250 ms whether the client
 * closed the connection, then it cancels the job), and a streamed one in the content reader callback, which
 * returns each piece of text as an SSE chunk as soon as the engine publishes it. While a
 * stream has nothing to send for a second (a long prompt in prefill) it sends an SSE comment: clients ignore
 * it, and writing it is how a client that went away is noticed. A connection that ends before its reply did
 * (a write failed, the client closed) reaches request_completed, which cancels the job: the engine frees its
 * slot at its next step. */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

/* Request bodies above this get 413: a context's worth of text is far smaller. */
#define BODY_LIMIT (4u << 20)

struct serve_http {
    struct MHD_Daemon *d;
    serve_http_config cfg;
    atomic_ullong next_id;
    atomic_int n_jobs; /* requests holding a job, until their connection is done with it */
    int port;
};

/* Per request: the body as it arrives, then the job and what its stream still has to send. */
typedef struct request {
    serve_http *h;
    serve_endpoint ep;
    serve_buf body;
    bool too_big;
    /* streaming */
    serve_job *job;
    serve_reply_info info;
    char id[48];
    bool include_usage;
    bool first, ended;
    size_t consumed;
    serve_buf text, pending;
} request;

static int respond(request *r, struct MHD_Connection *c, int status, const char *type, char *body) {
    if (!body) return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 405) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->ep == SERVE_EP_CHAT || r->ep == SERVE_EP_COMPLETIONS ? "POST" : "GET");
    }
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    int ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    serve_metrics_request(r->h->cfg.metrics, r->ep, status);
    return ret;
}

static int respond_error(request *r, struct MHD_Connection *c, const serve_error *e) {
    return respond(r, c, e->status, "application/json", serve_json_error(e));
}

static int fail(request *r, struct MHD_Connection *c, int status, const char *type, const char *code, const char *msg) {
    serve_error e;
    serve_error_set(&e, status, type, NULL, code, "%s", msg);
    return respond_error(r, c, &e);
}

/* Compares in time independent of where the strings differ, so that the key cannot be guessed byte by byte
 * from response times. */
static bool same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++) diff |= (unsigned char)(i < la ? a[i] : 0) ^ (unsigned char)b[i];
    return diff == 0;
}

static bool authorized(serve_http *h, struct MHD_Connection *c) {
    if (!h->cfg.api_key) return true;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!v || strncasecmp(v, "Bearer ", 7)) return false;
    v += 7;
    while (*v == ' ') v++;
    return same_secret(v, h->cfg.api_key);
}

/* True when the client has closed its end of the connection (a read would see end of file): a handler
 * waiting for a whole reply checks this, as it writes nothing until the end. */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- streaming ---- */

static bool add_event(serve_buf *b, char *json) {
    bool ok =
        json && serve_buf_add(b, "data: ", 6) && serve_buf_add(b, json, strlen(json)) && serve_buf_add(b, "\n\n", 2);
    free(json);
    return ok;
}

/* Fills r->pending with the next events: new text, or the end (finish chunk, usage, [DONE]), or a comment
 * after a quiet second. False when the stream cannot continue (out of memory). */
static bool next_events(request *r) {
    r->text.n = 0;
    serve_job_status st = serve_job_wait(r->job, &r->consumed, &r->text, 1000);
    bool ok = true;
    if (r->text.n) {
        ok = add_event(&r->pending, serve_json_chunk(&r->info, r->text.p, r->text.n, r->first, NULL));
        r->first = false;
    }
    if (ok && st.done) {
        if (st.finish) {
            ok = add_event(&r->pending, serve_json_chunk(&r->info, "", 0, r->first, st.finish));
            if (ok && r->include_usage)
                ok = add_event(&r->pending, serve_json_usage_chunk(&r->info, st.n_prompt, st.n_completion));
        } else {
            /* the status line went out long ago: the failure is told in the stream, as OpenAI does */
            serve_error e;
            serve_error_set(&e, 500, "server_error", NULL, NULL, "%s", st.error);
            ok = add_event(&r->pending, serve_json_error(&e));
        }
        ok = ok && serve_buf_add(&r->pending, "data: [DONE]\n\n", 14);
        r->ended = true;
    } else if (ok && !r->text.n) {
        ok = serve_buf_add(&r->pending, ": waiting\n\n", 11);
    }
    return ok;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    request *r = cls;
    (void)pos;
    while (!r->pending.n) {
        if (r->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!next_events(r)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = r->pending.n < max ? r->pending.n : max;
    memcpy(buf, r->pending.p, n);
    serve_buf_consume(&r->pending, n);
    return (ssize_t)n;
}

/* ---- the endpoints ---- */

static int generate(request *r, struct MHD_Connection *c, serve_kind kind) {
    serve_http *h = r->h;
    serve_error e;
    serve_request req;
    if (!serve_parse_request(kind, r->body.p ? r->body.p : "", r->body.n, &h->cfg.sampling, &req, &e))
        return respond_error(r, c, &e);
    if (req.max_tokens < 0) req.max_tokens = h->cfg.default_max_tokens;
    int n_ctx = serve_engine_n_ctx(h->cfg.engine), n = 0;
    slm_status s;
    slm_error err = {{0}};
    int32_t *toks;
    int cap;
    if (kind == SERVE_CHAT) {
        cap = n_ctx;
        toks = malloc((size_t)cap * sizeof *toks);
        /* the clients' texts are never read as control tokens: a message cannot end its turn early */
        s = toks ? slm_chat_tokenize(h->cfg.model, req.messages, req.n_messages, true, false, toks, cap, &n, &err)
                 : SLM_ERR_NOMEM;
    } else {
        /* a token is at least one byte, plus BOS: the count is always known, whatever the context. The
         * prompt is the client's own raw text: special-token text in it is parsed, so that a client can write a
         * template by hand (llama.cpp's server does the same; `slm run` without --chat does not). */
        cap = (int)(strlen(req.prompt) < (size_t)n_ctx * 64 ? strlen(req.prompt) + 2 : (size_t)n_ctx * 64);
        toks = malloc((size_t)cap * sizeof *toks);
        s = toks ? slm_tokenize(h->cfg.model, req.prompt, strlen(req.prompt), true, true, toks, cap, &n, &err)
                 : SLM_ERR_NOMEM;
    }
    int ret;
    if (s == SLM_ERR_CONTEXT || (!s && n >= n_ctx)) {
        serve_error_set(&e, 400, "invalid_request_error", kind == SERVE_CHAT ? "messages" : "prompt",
                        "context_length_exceeded",
                        "the prompt is %d tokens but the context is %d: at most %d prompt tokens leave room for a "
                        "reply (start the server with a larger -c)",
                        n, n_ctx, n_ctx - 1);
        ret = respond_error(r, c, &e);
    } else if (s) {
        serve_error_set(&e, s == SLM_ERR_NOMEM ? 500 : 400,
                        s == SLM_ERR_NOMEM ? "server_error" : "invalid_request_error", NULL, NULL,
                        "cannot tokenize the prompt: %s", err.msg[0] ? err.msg : slm_status_name(s));
        ret = respond_error(r, c, &e);
    } else if (n == 0) {
        ret = fail(r, c, 400, "invalid_request_error", NULL, "the prompt is empty");
    } else {
        serve_job *j = serve_job_create(h->cfg.engine, toks, n, &req, kind == SERVE_CHAT, &e);
        serve_submit sub = j ? serve_engine_submit(h->cfg.engine, j) : SERVE_SUBMIT_OK;
        if (!j) {
            ret = respond_error(r, c, &e);
        } else if (sub != SERVE_SUBMIT_OK) {
            serve_job_release(j);
            ret = fail(r, c, 503, "server_error", sub == SERVE_SUBMIT_FULL ? "queue_full" : "shutting_down",
                       sub == SERVE_SUBMIT_FULL ? "the server is busy: the request queue is full (--queue-limit); "
                                                  "try again later"
                                                : "the server is shutting down");
        } else {
            snprintf(r->id, sizeof r->id, "%s-%llu", kind == SERVE_CHAT ? "chatcmpl" : "cmpl",
                     (unsigned long long)atomic_fetch_add(&h->next_id, 1));
            r->info = (serve_reply_info){kind, r->id, (long long)time(NULL), h->cfg.model_name};
            r->job = j; /* released in request_completed, which also cancels it if unfinished */
            atomic_fetch_add(&h->n_jobs, 1);
            if (req.stream) {
                r->first = true;
                r->include_usage = req.include_usage;
                struct MHD_Response *resp =
                    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, r, NULL);
                if (!resp) {
                    ret = MHD_NO;
                } else {
                    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
                    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
                    ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
                    MHD_destroy_response(resp);
                    serve_metrics_request(h->cfg.metrics, r->ep, 200);
                }
            } else {
                serve_job_status st;
                bool gone = false;
                do {
                    st = serve_job_wait(j, &r->consumed, &r->text, 250);
                    if (!st.done && !gone && client_gone(c)) {
                        serve_job_cancel(j);
                        gone = true;
                    }
                } while (!st.done);
                if (st.finish) {
                    ret = respond(
                        r, c, 200, "application/json",
                        serve_json_reply(&r->info, r->text.p, r->text.n, st.finish, st.n_prompt, st.n_completion));
                } else {
                    ret = fail(r, c, 500, "server_error", NULL, st.error);
                }
            }
        }
    }
    free(toks);
    serve_request_free(&req);
    return ret;
}

static int route(request *r, struct MHD_Connection *c, const char *url, const char *method) {
    serve_http *h = r->h;
    static const struct {
        const char *path, *method;
        serve_endpoint ep;
    } routes[] = {{"/v1/chat/completions", "POST", SERVE_EP_CHAT},
                  {"/v1/completions", "POST", SERVE_EP_COMPLETIONS},
                  {"/v1/models", "GET", SERVE_EP_MODELS},
                  {"/health", "GET", SERVE_EP_HEALTH},
                  {"/metrics", "GET", SERVE_EP_METRICS}};
    int k = -1;
    for (int i = 0; i < (int)(sizeof routes / sizeof routes[0]); i++)
        if (!strcmp(url, routes[i].path)) k = i;
    r->ep = k < 0 ? SERVE_EP_OTHER : routes[k].ep;
    /* the key guards every path, so that an unauthorized client learns nothing, not even which exist */
    if (!authorized(h, c))
        return fail(r, c, 401, "authentication_error", "invalid_api_key",
                    "missing or wrong API key: send the header 'Authorization: Bearer KEY'");
    if (k < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "no such endpoint: %.100s", url);
        return fail(r, c, 404, "invalid_request_error", "not_found", msg);
    }
    if (strcmp(method, routes[k].method)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%.100s takes %s, not %.16s", url, routes[k].method, method);
        return fail(r, c, 405, "invalid_request_error", "method_not_allowed", msg);
    }
    if (r->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %u bytes", BODY_LIMIT);
        return fail(r, c, 413, "invalid_request_error", "request_too_large", msg);
    }
    switch (r->ep) {
    case SERVE_EP_CHAT: return generate(r, c, SERVE_CHAT);
    case SERVE_EP_COMPLETIONS: return generate(r, c, SERVE_COMPLETION);
    case SERVE_EP_MODELS:
        return respond(r, c, 200, "application/json", serve_json_models(h->cfg.model_name, h->cfg.created));
    case SERVE_EP_HEALTH: return respond(r, c, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    case SERVE_EP_METRICS: {
        serve_engine_stats st = serve_engine_get_stats(h->cfg.engine);
        return respond(r, c, 200, "text/plain; version=0.0.4", serve_metrics_text(h->cfg.metrics, &st));
    }
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->h = cls;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* an oversized body is read to its end and dropped, so that the client gets its 413 rather than a
         * connection closed under its upload */
        if (!r->too_big && r->body.n + *upload_data_size > BODY_LIMIT) {
            r->too_big = true;
            serve_buf_free(&r->body);
        }
        if (!r->too_big && !serve_buf_add(&r->body, upload_data, *upload_data_size)) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return route(r, c, url, method) == MHD_YES ? MHD_YES : MHD_NO;
}

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    request *r = *con_cls;
    if (!r) return;
    if (r->job) {
        /* whether the client left or the reply was sent: a job that is still running is not wanted */
        serve_job_cancel(r->job);
        serve_job_release(r->job);
        atomic_fetch_sub(&r->h->n_jobs, 1);
    }
    serve_buf_free(&r->body);
    serve_buf_free(&r->text);
    serve_buf_free(&r->pending);
    free(r);
    *con_cls = NULL;
}

serve_http *serve_http_start(const serve_http_config *cfg, char *why, size_t why_len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int g = getaddrinfo(cfg->host, port, &hints, &ai);
    if (g) {
        snprintf(why, why_len, "cannot resolve --host '%s': %s", cfg->host, gai_strerror(g));
        return NULL;
    }
    serve_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    atomic_init(&h->next_id, 1);
    atomic_init(&h->n_jobs, 0);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_POLL |
        MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, request_completed, h, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        snprintf(why, why_len, "cannot listen on %s port %d (in use, or not an address of this machine?)", cfg->host,
                 cfg->port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->port;
    return h;
}

int serve_http_port(const serve_http *h) { return h->port; }

void serve_http_quiesce(serve_http *h) {
    MHD_socket s = MHD_quiesce_daemon(h->d);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void serve_http_stop(serve_http *h) {
    if (!h) return;
    /* the engine has ended every job: give their connections a moment to send that end (the last SSE events,
     * a 500) before the sockets close under them */
    for (int i = 0; i < 200 && atomic_load(&h->n_jobs) > 0; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    MHD_stop_daemon(h->d);
    free(h);
}
