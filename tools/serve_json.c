/* The server's JSON, through jansson: request bodies of /v1/chat/completions and /v1/completions checked
 * field by field into a serve_request, and every response body and SSE chunk built as OpenAI's API
 * reference describes them. Unknown fields are ignored (clients send many we do not implement: user,
 * logit_bias, tools ...), a field set to null counts as absent (the official clients send nulls), and a known
 * field of the wrong type or out of range is a 400 naming it. */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static bool invalid(serve_error *e, const char *param, const char *fmt, const char *what) {
    serve_error_set(e, 400, "invalid_request_error", param, NULL, fmt, param, what);
    return false;
}

/* The field, or NULL when it is absent or null. */
static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_number(json_t *o, const char *key, double lo, double hi, float *out, serve_error *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return invalid(e, key, "'%s' must be a number%s", "");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        serve_error_set(e, 400, "invalid_request_error", key, NULL, "'%s' is %g, outside %g..%g", key, x, lo, hi);
        return false;
    }
    *out = (float)x;
    return true;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, bool *given,
                    serve_error *e) {
    json_t *v = field(o, key);
    if (given) *given = v != NULL;
    if (!v) return true;
    if (!json_is_integer(v)) return invalid(e, key, "'%s' must be an integer%s", "");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        serve_error_set(e, 400, "invalid_request_error", key, NULL, "'%s' is %lld, outside %lld..%lld", key, x, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out, serve_error *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return invalid(e, key, "'%s' must be true or false%s", "");
    *out = json_is_true(v);
    return true;
}

static char *dup_string(json_t *v) {
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, json_string_value(v), n);
        s[n] = 0;
    }
    return s;
}

static bool oom(serve_error *e) {
    serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory parsing the request");
    return false;
}

/* A message's content: a string, or an array of parts of which only {"type": "text"} ones are understood
 * (images and audio are refused rather than silently dropped). */
static bool message_content(json_t *c, int i, char **out, serve_error *e) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c) {
        *out = strdup("");
        return *out ? true : oom(e);
    }
    if (json_is_string(c)) {
        *out = dup_string(c);
        return *out ? true : oom(e);
    }
    if (!json_is_array(c)) return invalid(e, param, "'%s' must be a string or an array of text parts%s", "");
    serve_buf b = {0};
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text)) {
            serve_buf_free(&b);
            return invalid(e, param, "'%s': only parts {\"type\": \"text\", \"text\": ...} are supported%s", "");
        }
        if (!serve_buf_add(&b, json_string_value(text), json_string_length(text))) {
            serve_buf_free(&b);
            return oom(e);
        }
    }
    *out = b.p ? b.p : strdup("");
    return *out ? true : oom(e);
}

static bool parse_messages(json_t *root, serve_request *r, serve_error *e) {
    json_t *msgs = field(root, "messages");
    if (!msgs) return invalid(e, "messages", "'%s' is required%s", "");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return invalid(e, "messages", "'%s' must be a non-empty array of messages%s", "");
    if (json_array_size(msgs) > 100000) return invalid(e, "messages", "'%s' has too many messages%s", "");
    size_t n = json_array_size(msgs);
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return oom(e);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char param[48];
        snprintf(param, sizeof param, "messages[%d]", (int)i);
        if (!json_is_object(m)) return invalid(e, param, "'%s' must be an object with role and content%s", "");
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", (int)i);
        if (!json_is_string(role)) return invalid(e, param, "'%s' must be a string%s", "");
        const char *rv = json_string_value(role), *as = NULL;
        /* "developer" is what newer clients call the system message */
        if (!strcmp(rv, "system") || !strcmp(rv, "developer")) as = "system";
        else if (!strcmp(rv, "user")) as = "user";
        else if (!strcmp(rv, "assistant")) as = "assistant";
        if (!as) return invalid(e, param, "'%s' must be system, developer, user or assistant%s", "");
        char *content;
        if (!message_content(field(m, "content"), (int)i, &content, e)) return false;
        r->messages[i] = (slm_chat_message){as, content};
        r->n_messages = (int)i + 1;
    }
    return true;
}

static bool parse_prompt(json_t *root, serve_request *r, serve_error *e) {
    json_t *p = field(root, "prompt");
    if (!p) return invalid(e, "prompt", "'%s' is required%s", "");
    /* a list of one prompt is the same request; several would be several choices (n > 1) */
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (!json_is_string(p)) return invalid(e, "prompt", "'%s' must be a string (or a list of one string)%s", "");
    r->prompt = dup_string(p);
    return r->prompt ? true : oom(e);
}

static bool parse_stop(json_t *root, serve_request *r, serve_error *e) {
    json_t *s = field(root, "stop");
    if (!s) return true;
    if (json_is_string(s)) {
        if (json_string_length(s) && !(r->stop[r->n_stop++] = dup_string(s))) return oom(e);
        return true;
    }
    if (!json_is_array(s)) return invalid(e, "stop", "'%s' must be a string or an array of strings%s", "");
    if (json_array_size(s) > SERVE_MAX_STOP) {
        serve_error_set(e, 400, "invalid_request_error", "stop", NULL, "'stop' has %zu strings, at most %d",
                        json_array_size(s), SERVE_MAX_STOP);
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v) {
        if (!json_is_string(v)) return invalid(e, "stop", "'%s' must be a string or an array of strings%s", "");
        /* an empty stop string would stop before the first token: ignored, as it cannot be meant */
        if (json_string_length(v) && !(r->stop[r->n_stop++] = dup_string(v))) return oom(e);
    }
    return true;
}

static bool parse_fields(json_t *root, serve_kind kind, serve_request *r, serve_error *e) {
    json_t *model = field(root, "model");
    if (model && !json_is_string(model)) return invalid(e, "model", "'%s' must be a string%s", "");
    if (kind == SERVE_CHAT ? !parse_messages(root, r, e) : !parse_prompt(root, r, e)) return false;
    long long n = 1, x;
    bool given;
    if (!get_int(root, "n", LLONG_MIN, LLONG_MAX, &n, NULL, e)) return false;
    if (n != 1) {
        serve_error_set(e, 400, "invalid_request_error", "n", NULL, "'n' is %lld: only n = 1 is supported", n);
        return false;
    }
    if (!get_bool(root, "stream", &r->stream, e)) return false;
    if (!get_bool(root, "ignore_eos", &r->ignore_eos, e)) return false;
    json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) return invalid(e, "stream_options", "'%s' must be an object%s", "");
        if (!get_bool(so, "include_usage", &r->include_usage, e)) return false;
    }
    /* max_completion_tokens is the newer name of max_tokens; it wins when both are given */
    if (!get_int(root, "max_tokens", 1, 1 << 24, &x, &given, e)) return false;
    if (given) r->max_tokens = (int)x;
    if (!get_int(root, "max_completion_tokens", 1, 1 << 24, &x, &given, e)) return false;
    if (given) r->max_tokens = (int)x;
    slm_sampler_params *sp = &r->sampling;
    if (!get_number(root, "temperature", 0, 2, &sp->temp, e)) return false;
    if (!get_number(root, "top_p", 0, 1, &sp->top_p, e)) return false;
    if (!get_number(root, "min_p", 0, 1, &sp->min_p, e)) return false;
    if (!get_number(root, "presence_penalty", -2, 2, &sp->presence_penalty, e)) return false;
    if (!get_number(root, "frequency_penalty", -2, 2, &sp->frequency_penalty, e)) return false;
    if (!get_int(root, "top_k", 0, 1 << 30, &x, &given, e)) return false;
    if (given) sp->top_k = (int)x;
    if (!get_int(root, "seed", LLONG_MIN, LLONG_MAX, &x, &given, e)) return false;
    if (given) sp->seed = (uint64_t)x;
    return parse_stop(root, r, e);
}

bool serve_parse_request(serve_kind kind, const char *body, size_t len, const slm_sampler_params *defaults,
                         serve_request *out, serve_error *err) {
    *out = (serve_request){.kind = kind, .max_tokens = -1, .sampling = *defaults};
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        serve_error_set(err, 400, "invalid_request_error", NULL, NULL,
                        "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return false;
    }
    bool ok;
    if (!json_is_object(root)) {
        serve_error_set(err, 400, "invalid_request_error", NULL, NULL, "the body must be a JSON object");
        ok = false;
    } else {
        ok = parse_fields(root, kind, out, err);
    }
    json_decref(root);
    if (!ok) serve_request_free(out);
    return ok;
}

void serve_request_free(serve_request *r) {
    for (int i = 0; i < r->n_messages; i++) free((char *)r->messages[i].content);
    free(r->messages);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    *r = (serve_request){0};
}

/* ---- responses ---- */

static char *dump(json_t *o) {
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Generated text is valid UTF-8 (the detokenizer's promise, and stop strings cut only where a valid stop
 * string begins); should it ever not be, an empty string is sent rather than no response. */
static json_t *text_value(const char *text, size_t len) {
    json_t *s = json_stringn(text ? text : "", text ? len : 0);
    return s ? s : json_string("");
}

static json_t *usage(int n_prompt, int n_completion) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", n_prompt, "completion_tokens", n_completion, "total_tokens",
                     n_prompt + n_completion);
}

static json_t *envelope(const serve_reply_info *r, const char *object, json_t *choices) {
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", r->id, "object", object, "created", (json_int_t)r->created,
                     "model", r->model, "choices", choices);
}

char *serve_json_error(const serve_error *e) {
    return dump(json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", e->message, "type",
                          e->type ? e->type : "server_error", "param", e->param[0] ? e->param : NULL, "code", e->code));
}

char *serve_json_reply(const serve_reply_info *r, const char *text, size_t len, const char *finish, int n_prompt,
                       int n_completion) {
    json_t *choice;
    if (r->kind == SERVE_CHAT)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content",
                           text_value(text, len), "logprobs", "finish_reason", finish);
    else
        choice = json_pack("{s:o, s:i, s:n, s:s}", "text", text_value(text, len), "index", 0, "logprobs",
                           "finish_reason", finish);
    json_t *o = envelope(r, r->kind == SERVE_CHAT ? "chat.completion" : "text_completion", json_pack("[o]", choice));
    if (o) json_object_set_new(o, "usage", usage(n_prompt, n_completion));
    return dump(o);
}

char *serve_json_chunk(const serve_reply_info *r, const char *text, size_t len, bool first, const char *finish) {
    json_t *choice;
    if (r->kind == SERVE_CHAT) {
        json_t *delta = json_object();
        if (delta && first) json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && (len || !finish)) json_object_set_new(delta, "content", text_value(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "delta", delta, "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:o, s:i, s:n, s:s?}", "text", text_value(text, len), "index", 0, "logprobs",
                           "finish_reason", finish);
    }
    return dump(
        envelope(r, r->kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion", json_pack("[o]", choice)));
}

char *serve_json_usage_chunk(const serve_reply_info *r, int n_prompt, int n_completion) {
    json_t *o = envelope(r, r->kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion", json_array());
    if (o) json_object_set_new(o, "usage", usage(n_prompt, n_completion));
    return dump(o);
}

char *serve_json_models(const char *model, long long created) {
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", model, "object", "model",
                          "created", (json_int_t)created, "owned_by", "slm"));
}
