/* slm serve without sockets: request bodies parsed and checked into serve_request (types, ranges, nulls,
 * unknown fields, content parts, n, stop), the error and reply JSON, stop strings matched across token
 * boundaries without ever showing part of one, and the engine on a tiny synthetic model: jobs run on two
 * slots at once give the text each gives alone, max_tokens and a full context end with "length", a full
 * queue refuses, and cancelled jobs (queued or running) end and free their slots. */
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "serve.h"
#include "synth.h"
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

/* A greedy job on prompt {seed, seed + 1, ...} of n tokens. */
static serve_job *job(serve_engine *e, int seed, int n, int max_tokens) {
    int32_t toks[64];
    for (int i = 0; i < n; i++) toks[i] = (seed * 7 + i * 3) % 500 + 1;
    serve_request r = {.kind = SERVE_COMPLETION, .max_tokens = max_tokens, .sampling = slm_sampler_params_default()};
    r.sampling.temp = 0;
    serve_error err;
    serve_job *j = serve_job_create(e, toks, n, &r, false, &err);
    CHECK(j != NULL, "job: %s", err.message);
    return j;
}

/* Waits for the job's end; its text goes to out. */
static serve_job_status finish(serve_job *j, serve_buf *out) {
    size_t consumed = 0;
    serve_job_status st;
    do st = serve_job_wait(j, &consumed, out, 1000);
    while (!st.done);
    return st;
}

static bool wait_idle(serve_engine *e) {
    for (int i = 0; i < 500; i++) {
        serve_engine_stats st = serve_engine_get_stats(e);
        if (!st.active && !st.queued) return true;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return false;
}

static void test_engine(void) {
    slm_synth_spec spec;
    slm_error err = {{0}};
    void *data = NULL;
    size_t size = 0;
    if (slm_synth_parse("custom:q4_0:n_layer=2:n_embd=256:n_ff=256:n_vocab=512", &spec, &err) ||
        slm_synth_build(&spec, 1, &data, &size, &err)) {
        CHECK(false, "synthetic model: %s", err.msg);
        return;
    }
    slm_params p = slm_params_default();
    p.device = "cpu";
    p.n_threads = 1;
    p.n_ctx = 48;
    slm_model *m = NULL;
    if (slm_model_load_memory(data, size, &p, &m, &err)) {
        CHECK(false, "load: %s", err.msg);
        free(data);
        return;
    }
    /* alone, one after the other, on one slot */
    serve_engine *e1 = NULL, *e2 = NULL;
    serve_engine_config one = {.n_parallel = 1, .queue_limit = 8, .prompt_chunk = 4};
    CHECK(serve_engine_create(m, &one, &e1, &err) == SLM_OK, "engine: %s", err.msg);
    enum { N = 3 };
    serve_buf alone[N] = {{0}}, both[N] = {{0}};
    int n_alone[N];
    for (int i = 0; e1 && i < N; i++) {
        serve_job *j = job(e1, i, 5 + 4 * i, 6);
        CHECK(serve_engine_submit(e1, j) == SERVE_SUBMIT_OK, "submit alone %d", i);
        serve_job_status st = finish(j, &alone[i]);
        n_alone[i] = st.n_completion;
        CHECK(st.finish && !strcmp(st.finish, "length") && st.n_completion == 6 && st.n_prompt == 5 + 4 * i,
              "alone %d: finish %s after %d tokens of a %d-token prompt", i, st.finish ? st.finish : st.error,
              st.n_completion, st.n_prompt);
        serve_job_release(j);
    }
    /* a prompt that fills the context but one: one token, then "length" */
    if (e1) {
        serve_job *j = job(e1, 9, 47, 100);
        serve_engine_submit(e1, j);
        serve_buf out = {0};
        serve_job_status st = finish(j, &out);
        CHECK(st.finish && !strcmp(st.finish, "length") && st.n_completion == 2,
              "a full context: %d tokens (want 2: one evaluated into the last position, one more sampled), %s",
              st.n_completion, st.finish ? st.finish : st.error);
        serve_job_release(j);
        serve_buf_free(&out);
    }
    serve_engine_free(e1);

    /* together on two slots: the same texts (prompts go in 4-token chunks between the other's tokens) */
    serve_engine_config two = {.n_parallel = 2, .queue_limit = 1, .prompt_chunk = 4};
    CHECK(serve_engine_create(m, &two, &e2, &err) == SLM_OK, "engine: %s", err.msg);
    if (e2) {
        serve_job *js[N];
        for (int i = 0; i < N; i++) {
            js[i] = job(e2, i, 5 + 4 * i, 6);
            CHECK(serve_engine_submit(e2, js[i]) == SERVE_SUBMIT_OK, "submit %d", i);
        }
        for (int i = 0; i < N; i++) {
            serve_job_status st = finish(js[i], &both[i]);
            CHECK(st.n_completion == n_alone[i] && both[i].n == alone[i].n &&
                      (!both[i].n || !memcmp(both[i].p, alone[i].p, both[i].n)),
                  "job %d on two slots: the text it gives alone", i);
            serve_job_release(js[i]);
        }
        CHECK(wait_idle(e2), "idle after the jobs");
        serve_engine_stats st = serve_engine_get_stats(e2);
        CHECK(st.n_slots == 2 && st.kv_total == 96 && st.kv_used > 0 && st.completion_tokens == 3 * 6,
              "stats: %d slots, KV %lld/%lld, %lld tokens", st.n_slots, st.kv_used, st.kv_total, st.completion_tokens);

        /* long jobs (until the context is full): two run, one waits, the fourth is refused */
        serve_job *lj[4];
        serve_submit sub[4];
        for (int i = 0; i < 4; i++) {
            lj[i] = job(e2, 20 + i, 4, -1);
            sub[i] = serve_engine_submit(e2, lj[i]);
        }
        CHECK(sub[0] == SERVE_SUBMIT_OK && sub[1] == SERVE_SUBMIT_OK && sub[2] == SERVE_SUBMIT_OK,
              "three long jobs accepted");
        /* on a fast machine the first may have ended before the fourth came: then it was accepted */
        CHECK(sub[3] == SERVE_SUBMIT_FULL || sub[3] == SERVE_SUBMIT_OK, "the fourth: full or accepted");
        for (int i = 0; i < 4; i++) serve_job_cancel(lj[i]);
        for (int i = 0; i < 4; i++) {
            serve_buf out = {0};
            if (sub[i] == SERVE_SUBMIT_OK) {
                serve_job_status st = finish(lj[i], &out);
                CHECK(st.done && (st.finish || !strcmp(st.error, "cancelled")), "cancelled job %d ends (%s)", i,
                      st.finish ? st.finish : st.error);
            }
            serve_job_release(lj[i]);
            serve_buf_free(&out);
        }
        CHECK(wait_idle(e2), "cancelled jobs free their slots and the queue");
        /* shutdown ends what is still queued or running, and refuses new jobs */
        serve_job *a = job(e2, 30, 4, -1), *b = job(e2, 31, 4, -1);
        serve_engine_submit(e2, a);
        serve_engine_submit(e2, b);
        serve_engine_shutdown(e2);
        serve_buf out = {0};
        serve_job_status sa = finish(a, &out), sb = finish(b, &out);
        CHECK(sa.done && sb.done && (sa.finish || sa.error[0]) && (sb.finish || sb.error[0]), "shutdown ends jobs");
        serve_job *c = job(e2, 32, 4, 4);
        CHECK(serve_engine_submit(e2, c) == SERVE_SUBMIT_CLOSED, "no job after shutdown");
        serve_job_release(a);
        serve_job_release(b);
        serve_job_release(c);
        serve_buf_free(&out);
    }
    serve_engine_free(e2);
    for (int i = 0; i < N; i++) {
        serve_buf_free(&alone[i]);
        serve_buf_free(&both[i]);
    }
    slm_model_free(m);
    free(data);
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
            "\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"n\":1,\"ignore_eos\":true,\"user\":\"ignored\","
            "\"logit_bias\":{}}",
            &r, &e),
        "full chat request refused: %s", e.message);
    CHECK(r.n_messages == 4, "messages %d", r.n_messages);
    if (r.n_messages == 4) {
        CHECK(!strcmp(r.messages[0].role, "system") && !strcmp(r.messages[0].content, "be brief"), "message 0");
        CHECK(!strcmp(r.messages[1].role, "user") && !strcmp(r.messages[1].content, "hello"), "text parts joined");
        CHECK(!strcmp(r.messages[2].role, "assistant") && !strcmp(r.messages[2].content, ""), "null content");
        CHECK(!strcmp(r.messages[3].role, "system"), "developer is system");
    }
    CHECK(r.stream && r.include_usage && r.max_tokens == 7 && r.ignore_eos, "stream, usage, max_tokens, ignore_eos");
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
    CHECK(r.sampling.temp == d.temp && !r.stream && r.max_tokens == 9 && r.n_stop == 1 && !r.ignore_eos, "defaults");
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
    refused(SERVE_CHAT, "{" MSG ", \"ignore_eos\": 1}", "ignore_eos");
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

    test_engine();
    return slm_test_finish("test_serve");
}
