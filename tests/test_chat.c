/* Chat templates: family detection from real template texts and, for files without one, from the
 * vocabulary's special tokens; the exact rendering of each family, written out by hand from the families'
 * documented prompt formats; where the messages' contents lie in the text, and their tokenization with the
 * template's markers special and the contents plain (slm_chat_tokenize). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "gguf_write.h"
#include "test_util.h"
#include "tokenizer.h"

/* Template texts as the models' GGUF files carry them (abridged where the rest does not matter). */
static const char SMOLLM2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char QWEN25_ESCAPED[] = /* a template that writes its newlines as the escape \n */
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}{%- endif %}";
static const char CHATML_PLAIN[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char LLAMA3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
static const char PHI3[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
    "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') "
    "%}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}";
static const char PHI4[] =
    "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + "
    "message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + "
    "message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}";
static const char GEMMA[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}";

static void expect_with(const char *tmpl, const slm_tokenizer *vocab, const slm_chat_msg *msgs, int n, bool gen,
                        const char *want, const char *what) {
    slm_chat_template t;
    slm_error err = {{0}};
    slm_status s = slm_chat_template_init(tmpl, vocab, &t, &err);
    CHECK(s == SLM_OK, "%s: init: %s", what, err.msg);
    if (s) return;
    char *out = NULL;
    s = slm_chat_render(&t, msgs, n, gen, &out, &err);
    CHECK(s == SLM_OK, "%s: apply: %s", what, err.msg);
    CHECK(out && !strcmp(out, want), "%s:\n--- got ---\n%s\n--- want ---\n%s", what, out ? out : "(null)", want);
    free(out);
    slm_chat_template_free(&t);
}

static void expect(const char *tmpl, const slm_chat_msg *msgs, int n, bool gen, const char *want, const char *what) {
    expect_with(tmpl, NULL, msgs, n, gen, want, what);
}

/* A small SentencePiece vocabulary in memory: <unk> <s> </s> "▁" "a", then the given tokens, all of type
 * `type` (3 control, 4 user-defined, 1 normal). NULL on failure (reported). */
static slm_tokenizer *make_vocab(const char *const *extra, int n_extra, int32_t type) {
    const char *toks[16] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a"};
    int32_t types[16] = {2, 3, 3, 1, 1};
    float scores[16] = {0};
    int n = 5;
    for (int i = 0; i < n_extra && n < 16; i++, n++) {
        toks[n] = extra[i];
        types[n] = type;
    }
    slm_error err = {{0}};
    slm_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t size = 0;
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    slm_status s = slm_gguf_writer_create(&w, &err);
    if (!s) {
        slm_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        slm_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
        slm_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
        slm_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
        s = slm_gguf_writer_write_memory(w, &buf, &size, &err);
    }
    if (!s) s = slm_gguf_open_memory(buf, size, &g, &err);
    if (!s) s = slm_tokenizer_create(g, &t, &err); /* copies what it needs: g and buf may go */
    CHECK(s == SLM_OK, "synthetic vocabulary: %s", err.msg);
    slm_gguf_close(g);
    free(buf);
    slm_gguf_writer_free(w);
    return t;
}

/* No tokenizer.chat_template: the family comes from the vocabulary's special tokens, never a guess. */
static void check_vocab_fallback(void) {
    static const struct {
        const char *toks[4];
        int n;
        slm_chat_family want;
    } cases[] = {
        {{"<start_of_turn>", "<end_of_turn>"}, 2, SLM_CHAT_GEMMA},
        {{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, 3, SLM_CHAT_LLAMA3},
        {{"<|im_start|>", "<|im_end|>"}, 2, SLM_CHAT_CHATML},
        {{"<|user|>", "<|assistant|>", "<|end|>", "<|system|>"}, 4, SLM_CHAT_PHI3},
        {{"<|im_start|>", "<|im_end|>", "<|im_sep|>"}, 3, SLM_CHAT_PHI4}, /* not ChatML: more specific */
        {{"<|im_start|>"}, 1, SLM_CHAT_NONE},                             /* half a pair is no layout */
        {{"<start_of_turn>"}, 1, SLM_CHAT_NONE},
        {{"[INST]", "[/INST]"}, 2, SLM_CHAT_NONE}, /* Llama 2: not supported */
        {{0}, 0, SLM_CHAT_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int32_t type = 3; type <= 4; type++) {
            slm_tokenizer *v = make_vocab(cases[i].toks, cases[i].n, type);
            if (!v) continue;
            slm_chat_family got = slm_chat_detect_vocab(v);
            CHECK(got == cases[i].want, "vocab case %zu (type %d): family %s, want %s", i, type,
                  slm_chat_family_name(got), slm_chat_family_name(cases[i].want));
            slm_chat_template t;
            slm_error err = {{0}};
            slm_status s = slm_chat_template_init(NULL, v, &t, &err);
            if (cases[i].want == SLM_CHAT_NONE)
                CHECK(s == SLM_ERR_UNSUPPORTED && strstr(err.msg, "no chat template"),
                      "vocab case %zu: no fitting family must fail clearly (%d: %s)", i, s, err.msg);
            else CHECK(s == SLM_OK && t.family == cases[i].want && t.from_vocab, "vocab case %zu: init %d", i, s);
            if (!s) slm_chat_template_free(&t);
            slm_tokenizer_free(v);
        }
    }
    /* markers that are ordinary vocabulary text would not tokenize to the model's turn tokens */
    static const char *const gemma[] = {"<start_of_turn>", "<end_of_turn>"};
    slm_tokenizer *v = make_vocab(gemma, 2, 1);
    if (v) CHECK(slm_chat_detect_vocab(v) == SLM_CHAT_NONE, "normal-typed markers are no chat tokens");
    slm_tokenizer_free(v);
    CHECK(slm_chat_detect_vocab(NULL) == SLM_CHAT_NONE, "no vocabulary");
    slm_chat_template t;
    slm_error err = {{0}};
    CHECK(slm_chat_template_init(NULL, NULL, &t, &err) == SLM_ERR_UNSUPPORTED && err.msg[0],
          "neither template nor vocabulary fails");
    /* a template in the file wins over the vocabulary */
    v = make_vocab(gemma, 2, 3);
    const slm_chat_msg hi[] = {{"user", "Hi!"}};
    expect_with(NULL, v, hi, 1, true, "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
                "no template, Gemma vocabulary");
    expect_with(CHATML_PLAIN, v, hi, 1, true, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
                "the file's template wins over the vocabulary");
    char *out = NULL;
    CHECK(slm_chat_format_single(NULL, v, NULL, "Hi!", &out, &err) == SLM_OK && out &&
              !strcmp(out, "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n"),
          "single from the vocabulary: %s", out ? out : err.msg);
    free(out);
    slm_tokenizer_free(v);
}

/* Gemma 3's file has no tokenizer.chat_template: its vocabulary must give the Gemma layout, and the rendered
 * prompt must tokenize to its turn tokens (<start_of_turn> is id 105, <end_of_turn> 106). */
static void check_gemma_model(void) {
    char path[600];
    if (!slm_test_model("gemma-3-270m-q4_k_m.gguf", path, sizeof path)) {
        printf("test_chat: no Gemma 3 test model: its vocabulary check skipped\n");
        return;
    }
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    slm_tokenizer *tok = NULL;
    slm_status s = slm_gguf_open(path, &g, &err);
    if (!s) s = slm_tokenizer_create(g, &tok, &err);
    CHECK(s == SLM_OK, "gemma-3: %s", err.msg);
    if (s) {
        slm_gguf_close(g);
        return;
    }
    slm_gguf_str tmpl;
    CHECK(!slm_gguf_get_str(g, "tokenizer.chat_template", &tmpl), "gemma-3 test file unexpectedly has a template");
    CHECK(slm_tokenizer_find(tok, "<start_of_turn>", 15) == 105 && slm_tokenizer_find(tok, "<|im_start|>", 12) < 0,
          "gemma-3 vocabulary: <start_of_turn> is 105, no <|im_start|>");
    char *text = NULL;
    s = slm_chat_format_single(NULL, tok, NULL, "Hi!", &text, &err);
    CHECK(s == SLM_OK && text && !strcmp(text, "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n"),
          "gemma-3 without a template renders Gemma's layout: %s", text ? text : err.msg);
    if (text) {
        /* <bos> <start_of_turn> user \n Hi ! <end_of_turn> \n <start_of_turn> model \n; the word ids are
         * SentencePiece's own on this vocabulary (tests/reference/test_tokenizer_spm.py builds that reference) */
        static const int32_t want[] = {2, 105, 2364, 107, 10979, 236888, 106, 107, 105, 4368, 107};
        slm_tokens v = {0};
        s = slm_tokenizer_encode(tok, text, strlen(text), true, true, &v, &err);
        CHECK(s == SLM_OK && v.n == 11 && !memcmp(v.ids, want, sizeof want), "gemma-3 prompt ids (%d tokens)", v.n);
        slm_tokens_free(&v);
    }
    free(text);
    slm_tokenizer_free(tok);
    slm_gguf_close(g);
}

/* slm_chat_render_spans: each non-empty content's span holds exactly that content (trimmed where the family
 * trims), in order, and the template's own text lies outside every span. */
static void check_spans(void) {
    const slm_chat_msg conv[] = {{"system", "Be brief."}, {"user", "Hi!"}, {"assistant", ""}, {"user", "2+2?"}};
    const char *const tmpls[] = {CHATML_PLAIN, SMOLLM2, LLAMA3, PHI3, PHI4, GEMMA};
    for (size_t k = 0; k < sizeof tmpls / sizeof tmpls[0]; k++) {
        slm_chat_template t;
        slm_error err = {{0}};
        if (slm_chat_template_init(tmpls[k], NULL, &t, &err)) {
            CHECK(0, "spans %zu: init: %s", k, err.msg);
            continue;
        }
        char *text = NULL;
        slm_text_span *sp = NULL;
        int n = -1;
        slm_status s = slm_chat_render_spans(&t, conv, 4, true, &text, &sp, &n, &err);
        const char *fam = slm_chat_family_name(t.family);
        CHECK(s == SLM_OK && n == 3, "spans %s: %d spans for 3 non-empty contents (%s)", fam, n, err.msg);
        const char *want[] = {"Be brief.", "Hi!", "2+2?"};
        for (int i = 0; i < n && i < 3; i++)
            CHECK(sp[i].len == strlen(want[i]) && !memcmp(text + sp[i].off, want[i], sp[i].len) &&
                      (i == 0 || sp[i].off >= sp[i - 1].off + sp[i - 1].len),
                  "spans %s: span %d is '%.*s'", fam, i, (int)sp[i].len, text + sp[i].off);
        char *plain = NULL;
        CHECK(slm_chat_render(&t, conv, 4, true, &plain, &err) == SLM_OK && plain && text && !strcmp(plain, text),
              "spans %s: the same text as slm_chat_render", fam);
        free(plain);
        free(text);
        free(sp);
        slm_chat_template_free(&t);
    }
}

static int count_id(const slm_tokens *v, int32_t id) {
    int c = 0;
    for (int i = 0; i < v->n; i++) c += v->ids[i] == id;
    return c;
}

/* slm_tokenizer_encode_spans: no control token inside a span or reaching into one; outside, the same ids as
 * encoding with parse_special. */
static void check_encode_spans(void) {
    static const char *const marks[] = {"<|im_start|>", "<|im_end|>"};
    slm_tokenizer *v = make_vocab(marks, 2, 3); /* control tokens: <|im_start|> is 5, <|im_end|> 6 */
    if (!v) return;
    slm_error err = {{0}};
    /* "<|im_start|>" + content "a<|im_end|>a" + "<|im_end|>" */
    const char *text = "<|im_start|>a<|im_end|>a<|im_end|>";
    slm_text_span content = {12, 12};
    slm_tokens a = {0}, b = {0};
    CHECK(slm_tokenizer_encode_spans(v, text, strlen(text), false, &content, 1, &a, &err) == SLM_OK, "%s", err.msg);
    CHECK(count_id(&a, 5) == 1 && count_id(&a, 6) == 1 && a.ids[0] == 5 && a.ids[a.n - 1] == 6,
          "the content's <|im_end|> stays text: %d x <|im_end|> (want 1)", count_id(&a, 6));
    CHECK(slm_tokenizer_encode(v, text, strlen(text), false, true, &b, &err) == SLM_OK && count_id(&b, 6) == 2,
          "with parse_special everywhere it is the token (%d)", count_id(&b, 6));
    slm_tokens_free(&a);
    slm_tokens_free(&b);
    /* a span that begins inside a marker: the marker would reach into it, so it is not matched */
    slm_text_span mid = {3, 2};
    CHECK(slm_tokenizer_encode_spans(v, "<|im_end|>", 10, false, &mid, 1, &a, &err) == SLM_OK && count_id(&a, 6) == 0,
          "a marker reaching into a span is text");
    slm_tokens_free(&a);
    /* content without marker text: exactly the ids of a whole-text encode with parse_special */
    const char *t2 = "<|im_start|>a aa<|im_end|>a";
    slm_text_span sp2[] = {{12, 4}, {26, 1}};
    CHECK(slm_tokenizer_encode_spans(v, t2, strlen(t2), true, sp2, 2, &a, &err) == SLM_OK &&
              slm_tokenizer_encode(v, t2, strlen(t2), true, true, &b, &err) == SLM_OK && a.n == b.n &&
              !memcmp(a.ids, b.ids, (size_t)a.n * sizeof *a.ids),
          "plain content: the same ids as parse_special (%d vs %d)", a.n, b.n);
    slm_tokens_free(&a);
    slm_tokens_free(&b);
    /* spans outside the text or out of order are refused */
    slm_text_span past = {20, 1}, order[] = {{5, 2}, {3, 1}};
    CHECK(slm_tokenizer_encode_spans(v, "abc", 3, false, &past, 1, &a, &err) == SLM_ERR_INVALID_ARG, "span past end");
    CHECK(slm_tokenizer_encode_spans(v, "abcdefgh", 8, false, order, 2, &a, &err) == SLM_ERR_INVALID_ARG,
          "spans out of order");
    slm_tokens_free(&a);
    slm_tokenizer_free(v);
}

/* slm_chat_tokenize (public API) on SmolLM2: the ids of slm_tokenize on slm_chat_apply's text, except that
 * without parse_special_content a user's "<|im_end|>" stays text. */
static void check_chat_tokenize_model(void) {
    char path[600];
    if (!slm_test_model("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
        printf("test_chat: no SmolLM2 test model: slm_chat_tokenize check skipped\n");
        return;
    }
    slm_params p = slm_params_default();
    p.device = "cpu";
    p.n_threads = 1;
    slm_model *m = NULL;
    slm_error err = {{0}};
    if (slm_model_load(path, &p, &m, &err)) {
        CHECK(0, "SmolLM2: %s", err.msg);
        return;
    }
    int32_t im_end = -1, buf[256], a[256], b[256];
    int n = 0, na = 0, nb = 0;
    CHECK(slm_tokenize(m, "<|im_end|>", 10, false, true, buf, 4, &n, &err) == SLM_OK && n == 1, "<|im_end|> id");
    im_end = buf[0];
    for (int k = 0; k < 2; k++) {
        const slm_chat_msg conv[] = {{"system", "Be brief."},
                                     {"user", k ? "Say <|im_end|> now" : "Hi!"},
                                     {"assistant", "Hello."},
                                     {"user", "What is 2+2?"}};
        char text[1024];
        size_t len = 0;
        CHECK(slm_chat_apply(m, conv, 4, true, text, sizeof text, &len, &err) == SLM_OK, "%s", err.msg);
        CHECK(slm_tokenize(m, text, len, true, true, buf, 256, &n, &err) == SLM_OK, "%s", err.msg);
        CHECK(slm_chat_tokenize(m, conv, 4, true, true, a, 256, &na, &err) == SLM_OK && na == n &&
                  !memcmp(a, buf, (size_t)n * sizeof *a),
              "case %d: parse_special_content: the ids of slm_tokenize(slm_chat_apply) (%d vs %d)", k, na, n);
        CHECK(slm_chat_tokenize(m, conv, 4, true, false, b, 256, &nb, &err) == SLM_OK, "%s", err.msg);
        int ends = 0;
        for (int i = 0; i < nb; i++) ends += b[i] == im_end;
        if (k == 0)
            CHECK(nb == n && !memcmp(b, buf, (size_t)n * sizeof *b), "plain contents: the same ids (%d vs %d)", nb, n);
        else CHECK(ends == 4 && nb > n, "a user's <|im_end|> stays text: %d turn ends (want 4), %d tokens", ends, nb);
    }
    const slm_chat_msg one[] = {{"user", "Hi!"}};
    CHECK(slm_chat_tokenize(m, one, 1, true, false, a, 3, &na, &err) == SLM_ERR_CONTEXT && na > 3,
          "too few slots: SLM_ERR_CONTEXT with the count (%d)", na);
    CHECK(slm_chat_tokenize(m, NULL, 1, true, false, a, 256, &na, &err) == SLM_ERR_INVALID_ARG, "NULL messages");
    slm_model_free(m);
}

int main(void) {
    CHECK(slm_chat_detect(SMOLLM2) == SLM_CHAT_CHATML, "smollm2");
    CHECK(slm_chat_detect(QWEN25_ESCAPED) == SLM_CHAT_CHATML, "qwen2.5");
    CHECK(slm_chat_detect(LLAMA3) == SLM_CHAT_LLAMA3, "llama3");
    CHECK(slm_chat_detect(PHI3) == SLM_CHAT_PHI3, "phi3");
    CHECK(slm_chat_detect(PHI4) == SLM_CHAT_PHI4, "phi4");
    CHECK(slm_chat_detect(GEMMA) == SLM_CHAT_GEMMA, "gemma");
    CHECK(slm_chat_detect("{{ messages }}") == SLM_CHAT_NONE, "unknown");
    CHECK(slm_chat_detect(NULL) == SLM_CHAT_NONE, "null");
    CHECK(!strcmp(slm_chat_family_name(SLM_CHAT_GEMMA), "gemma"), "name");

    slm_chat_template t;
    slm_error err = {{0}};
    CHECK(slm_chat_template_init("{{ messages }}", NULL, &t, &err) == SLM_ERR_UNSUPPORTED && err.msg[0],
          "an unknown template is refused with a message");
    CHECK(slm_chat_template_init(QWEN25_ESCAPED, NULL, &t, &err) == SLM_OK && t.default_system &&
              !strcmp(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
          "default system prompt from an escaped template: %s", t.default_system ? t.default_system : "(none)");
    slm_chat_template_free(&t);

    const slm_chat_msg conv[] = {
        {"user", "Hi!"},
        {"assistant", "Hello. How can I help?"},
        {"user", "What is 2+2?"},
    };
    const slm_chat_msg with_sys[] = {
        {"system", "Be brief."},
        {"user", "Hi!"},
    };

    /* ChatML with the template's own default system message (SmolLM2) */
    expect(SMOLLM2, conv, 3, true,
           "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
           "<|im_start|>user\nHi!<|im_end|>\n"
           "<|im_start|>assistant\nHello. How can I help?<|im_end|>\n"
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
           "<|im_start|>assistant\n",
           "smollm2 conversation");
    expect(SMOLLM2, with_sys, 2, true,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
           "smollm2 with a system message (replaces the default)");
    expect(CHATML_PLAIN, conv, 1, false, "<|im_start|>user\nHi!<|im_end|>\n", "chatml, no generation prompt");
    {
        static const char *const chatml[] = {"<|im_start|>", "<|im_end|>"};
        slm_tokenizer *v = make_vocab(chatml, 2, 3);
        expect_with(NULL, v, conv, 1, true, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
                    "no template, ChatML vocabulary: ChatML without a default system");
        slm_tokenizer_free(v);
    }

    /* Llama 3: contents trimmed, no BOS text (the tokenizer adds <|begin_of_text|>) */
    const slm_chat_msg padded[] = {{"system", "  Be brief.\n"}, {"user", "\nHi! "}};
    expect(LLAMA3, padded, 2, true,
           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n",
           "llama3");
    expect(LLAMA3, conv, 2, false,
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello. How can I help?<|eot_id|>",
           "llama3 without generation prompt");

    /* Phi-3 */
    expect(PHI3, conv, 3, true,
           "<|user|>\nHi!<|end|>\n<|assistant|>\nHello. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n"
           "<|assistant|>\n",
           "phi3");
    expect(PHI3, with_sys, 2, true, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\n",
           "phi3 with system");

    /* Phi-4 */
    expect(PHI4, with_sys, 2, true,
           "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi!<|im_end|>"
           "<|im_start|>assistant<|im_sep|>",
           "phi4");

    /* Gemma: assistant is "model", the system text opens the first user turn */
    expect(GEMMA, conv, 3, true,
           "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello. How can I help?<end_of_turn>\n"
           "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
           "gemma");
    expect(GEMMA, with_sys, 2, true, "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\n",
           "gemma with system");

    /* bad roles are refused */
    const slm_chat_msg bad[] = {{"tool", "x"}};
    char *out = NULL;
    CHECK(slm_chat_template_init(CHATML_PLAIN, NULL, &t, &err) == SLM_OK, "init");
    CHECK(slm_chat_render(&t, bad, 1, true, &out, &err) == SLM_ERR_INVALID_ARG && !out, "role 'tool' refused");
    slm_chat_template_free(&t);

    /* the helper behind `slm run --chat` */
    CHECK(slm_chat_format_single(SMOLLM2, NULL, "Be brief.", "Hi!", &out, &err) == SLM_OK, "single: %s", err.msg);
    CHECK(out &&
              !strcmp(out,
                      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                      "<|im_start|>assistant\n"),
          "single with system: %s", out ? out : "(null)");
    free(out);
    CHECK(slm_chat_format_single(LLAMA3, NULL, NULL, "Hi!", &out, &err) == SLM_OK, "single llama3");
    CHECK(out &&
              !strcmp(out,
                      "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n"),
          "single llama3: %s", out ? out : "(null)");
    free(out);
    CHECK(slm_chat_format_single("{{ messages }}", NULL, NULL, "Hi!", &out, &err) == SLM_ERR_UNSUPPORTED, "unknown");
    check_vocab_fallback();
    check_gemma_model();
    check_spans();
    check_encode_spans();
    check_chat_tokenize_model();
    return slm_test_finish("test_chat");
}
