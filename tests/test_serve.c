/* slm serve without sockets: request bodies parsed and checked into serve_request (types, ranges, nulls,
 * unknown fields, content parts, n, stop), the error and reply JSON, and stop strings matched across token
 * boundaries without ever showing part of one. */
#include <jansson.h>
#include <string.h>

#include "serve.h"
#include "test_util.h"

static bool parse(serve_kind kind, const char *body, serve_request *r, serve_error *e) {
    slm_sampler_params d = slm_sampler_params_default();
    return serve_parse_request(kind, body, strlen(body), &d, r, e);
}

/* The request must be refused with 400 naming param (NULL: no param). */
static void refused(serve_kind kind, const char *body, const char *param) {
    serve_request r;
    serve_error e = {0};
    bool ok = parse(kind, body, &r, &e);
    CHECK(!ok, "accepted: %s", body);
    if (ok) {
        serve_request_free(&r);
        return;
    }
    CHECK(e.status == 400, "status %d for %s", e.status, body);
    CHECK(!strcmp(e.param, param ? param : ""), "param '%s' (want '%s') for %s: %s", e.param, param ? param : "", body,
          e.message);
}

/* Feeds pieces through a stop matcher; returns what was shown, and whether it stopped. */
static const char *through_stop(char *const *stop, int n_stop, const char *const *pieces, int n, bool *hit) {
    static char shown[256];
    serve_stop s;
    serve_stop_init(&s, stop, n_stop);
    serve_buf out = {0};
    *hit = false;
    for (int i = 0; i < n && !*hit; i++) {
        size_t before = out.n;
        *hit = serve_stop_push(&s, pieces[i], strlen(pieces[i]), &out);
        /* nothing shown may end in the middle of a stop string that is still possible: checked as "no shown
         * text contains a stop string" below, and the held text is bounded by the longest stop */
        (void)before;
    }
    if (!*hit) serve_stop_flush(&s, &out);
    snprintf(shown, sizeof shown, "%s", out.p ? out.p : "");
    serve_buf_free(&out);
    serve_stop_free(&s);
    return shown;
}

int main(void) {
    serve_request r;
    serve_error e;

    /* a full chat request */
    CHECK(
        parse(
            SERVE_CHAT,
            "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hel\"},{\"type\":\"text\",\"text\":\"lo\"}]},"
            "{\"role\":\"assistant\",\"content\":null},{\"role\":\"developer\",\"content\":\"d\"}],"
            "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":7,\"temperature\":0,"
            "\"top_p\":0.5,\"top_k\":3,\"min_p\":0.1,\"seed\":42,\"stop\":[\"a\",\"\",\"bc\"],"
            "\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"n\":1,\"user\":\"ignored\",\"logit_bias\":{}}",
            &r, &e),
        "full chat request refused: %s", e.message);
    CHECK(r.n_messages == 4, "messages %d", r.n_messages);
    if (r.n_messages == 4) {
        CHECK(!strcmp(r.messages[0].role, "system") && !strcmp(r.messages[0].content, "be brief"), "message 0");
        CHECK(!strcmp(r.messages[1].role, "user") && !strcmp(r.messages[1].content, "hello"), "text parts joined");
        CHECK(!strcmp(r.messages[2].role, "assistant") && !strcmp(r.messages[2].content, ""), "null content");
        CHECK(!strcmp(r.messages[3].role, "system"), "developer is system");
    }
    CHECK(r.stream && r.include_usage && r.max_tokens == 7, "stream, usage, max_tokens");
    CHECK(r.sampling.temp == 0 && r.sampling.top_p == 0.5f && r.sampling.top_k == 3 && r.sampling.min_p == 0.1f &&
              r.sampling.seed == 42 && r.sampling.presence_penalty == 0.5f && r.sampling.frequency_penalty == -1,
          "sampling fields");
    CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "a") && !strcmp(r.stop[1], "bc"), "stop list, empty dropped");
    serve_request_free(&r);

    /* defaults, nulls as absent, max_completion_tokens winning */
    CHECK(parse(SERVE_CHAT,
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":null,\"stop\":\"x\","
                "\"max_tokens\":5,\"max_completion_tokens\":9}",
                &r, &e),
          "minimal chat refused: %s", e.message);
    slm_sampler_params d = slm_sampler_params_default();
    CHECK(r.sampling.temp == d.temp && !r.stream && r.max_tokens == 9 && r.n_stop == 1, "defaults");
    serve_request_free(&r);
    CHECK(parse(SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e) && r.max_tokens == -1,
          "max_tokens absent is -1");
    serve_request_free(&r);

    /* completions: a string, or a list of one */
    CHECK(parse(SERVE_COMPLETION, "{\"prompt\":\"once\"}", &r, &e) && !strcmp(r.prompt, "once"), "prompt");
    serve_request_free(&r);
    CHECK(parse(SERVE_COMPLETION, "{\"prompt\":[\"once\"]}", &r, &e) && !strcmp(r.prompt, "once"), "prompt list");
    serve_request_free(&r);

    /* refusals */
    refused(SERVE_CHAT, "{\"messages\": [", NULL);
    refused(SERVE_CHAT, "[1, 2]", NULL);
    refused(SERVE_CHAT, "{}", "messages");
    refused(SERVE_CHAT, "{\"messages\": []}", "messages");
    refused(SERVE_CHAT, "{\"messages\": \"hi\"}", "messages");
    refused(SERVE_CHAT, "{\"messages\": [3]}", "messages[0]");
    refused(SERVE_CHAT, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "messages[0].role");
    refused(SERVE_CHAT, "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", "messages[0].role");
    refused(SERVE_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content");
    refused(SERVE_CHAT,
            "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}",
            "messages[0].content");
#define MSG "\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]"
    refused(SERVE_CHAT, "{" MSG ", \"n\": 2}", "n");
    refused(SERVE_CHAT, "{" MSG ", \"stream\": \"yes\"}", "stream");
    refused(SERVE_CHAT, "{" MSG ", \"max_tokens\": \"10\"}", "max_tokens");
    refused(SERVE_CHAT, "{" MSG ", \"max_tokens\": 0}", "max_tokens");
    refused(SERVE_CHAT, "{" MSG ", \"max_tokens\": 1.5}", "max_tokens");
    refused(SERVE_CHAT, "{" MSG ", \"temperature\": \"hot\"}", "temperature");
    refused(SERVE_CHAT, "{" MSG ", \"temperature\": 3}", "temperature");
    refused(SERVE_CHAT, "{" MSG ", \"top_p\": -0.1}", "top_p");
    refused(SERVE_CHAT, "{" MSG ", \"top_k\": -1}", "top_k");
    refused(SERVE_CHAT, "{" MSG ", \"presence_penalty\": 2.5}", "presence_penalty");
    refused(SERVE_CHAT, "{" MSG ", \"frequency_penalty\": true}", "frequency_penalty");
    refused(SERVE_CHAT, "{" MSG ", \"seed\": 1.5}", "seed");
    refused(SERVE_CHAT, "{" MSG ", \"stop\": 3}", "stop");
    refused(SERVE_CHAT, "{" MSG ", \"stop\": [\"a\", 3]}", "stop");
    refused(SERVE_CHAT, "{" MSG ", \"stream_options\": 1}", "stream_options");
    refused(SERVE_CHAT, "{" MSG ", \"model\": 1}", "model");
    refused(SERVE_COMPLETION, "{\"prompt\": 5}", "prompt");
    refused(SERVE_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", "prompt");
    refused(SERVE_COMPLETION, "{}", "prompt");

    /* the error body is OpenAI's shape */
    serve_error_set(&e, 400, "invalid_request_error", "n", NULL, "only n = %d", 1);
    char *js = serve_json_error(&e);
    json_t *o = json_loads(js, 0, NULL);
    json_t *err = json_object_get(o, "error");
    CHECK(err && !strcmp(json_string_value(json_object_get(err, "message")), "only n = 1") &&
              !strcmp(json_string_value(json_object_get(err, "type")), "invalid_request_error") &&
              !strcmp(json_string_value(json_object_get(err, "param")), "n") &&
              json_is_null(json_object_get(err, "code")),
          "error JSON: %s", js);
    json_decref(o);
    free(js);

    /* a reply and a chunk carry text, finish_reason and usage where OpenAI puts them */
    serve_reply_info info = {SERVE_CHAT, "chatcmpl-1", 1700000000, "m.gguf"};
    js = serve_json_reply(&info, "h\xc3\xa9", 3, "length", 5, 2);
    o = json_loads(js, 0, NULL);
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    CHECK(ch && !strcmp(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "h\xc3\xa9") &&
              !strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length") &&
              json_integer_value(json_object_get(json_object_get(o, "usage"), "total_tokens")) == 7 &&
              !strcmp(json_string_value(json_object_get(o, "object")), "chat.completion"),
          "reply JSON: %s", js);
    json_decref(o);
    free(js);
    js = serve_json_chunk(&info, "x", 1, true, NULL);
    o = json_loads(js, 0, NULL);
    ch = json_array_get(json_object_get(o, "choices"), 0);
    json_t *delta = json_object_get(ch, "delta");
    CHECK(delta && !strcmp(json_string_value(json_object_get(delta, "role")), "assistant") &&
              !strcmp(json_string_value(json_object_get(delta, "content")), "x") &&
              json_is_null(json_object_get(ch, "finish_reason")),
          "chunk JSON: %s", js);
    json_decref(o);
    free(js);

    /* stop strings */
    char *stops[] = {"STOP", "\n\n", "xyz"};
    bool hit;
    const char *p1[] = {"Hello", " wor", "ld"};
    CHECK(!strcmp(through_stop(stops, 3, p1, 3, &hit), "Hello world") && !hit, "no stop");
    const char *p2[] = {"one ST", "O", "P two"};
    CHECK(!strcmp(through_stop(stops, 3, p2, 3, &hit), "one ") && hit, "across three pieces");
    const char *p3[] = {"a\n", "\nb"};
    CHECK(!strcmp(through_stop(stops, 3, p3, 2, &hit), "a") && hit, "newline pair across pieces");
    const char *p4[] = {"abcSTOPdef"};
    CHECK(!strcmp(through_stop(stops, 3, p4, 1, &hit), "abc") && hit, "inside one piece");
    const char *p5[] = {"ST", "OR", "E"};
    CHECK(!strcmp(through_stop(stops, 3, p5, 3, &hit), "STORE") && !hit, "a false start is shown after all");
    const char *p6[] = {"xy"};
    CHECK(!strcmp(through_stop(stops, 3, p6, 1, &hit), "xy") && !hit, "held text flushed at the end");
    const char *p7[] = {"a xyz STOP"};
    CHECK(!strcmp(through_stop(stops, 3, p7, 1, &hit), "a ") && hit, "the earliest stop wins");
    /* while a stop string may be starting, it is held back: nothing shown so far */
    serve_stop s;
    serve_stop_init(&s, stops, 3);
    serve_buf out = {0};
    CHECK(!serve_stop_push(&s, "go S", 4, &out) && out.n == 3 && !memcmp(out.p, "go ", 3), "'S' held back");
    CHECK(!serve_stop_push(&s, "TO", 2, &out) && out.n == 3, "'STO' held back");
    CHECK(!serve_stop_push(&s, "NE", 2, &out) && !strcmp(out.p, "go STONE"), "released when it cannot be a stop");
    serve_buf_free(&out);
    serve_stop_free(&s);
    /* without stop strings, everything passes at once */
    const char *p8[] = {"a", "b"};
    CHECK(!strcmp(through_stop(NULL, 0, p8, 2, &hit), "ab") && !hit, "no stop strings");
    return slm_test_finish("test_serve");
}
