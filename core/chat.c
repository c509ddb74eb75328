/* Chat templates: the family is recognised by the marker tokens its template text writes, and each family's
 * layout is rendered by hand. Running the Jinja itself would need a Jinja interpreter; the handful of
 * supported layouts are fixed strings around the messages, so a renderer per family is exact and small. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

const char *slm_chat_family_name(slm_chat_family f) {
    switch (f) {
    case SLM_CHAT_CHATML: return "chatml";
    case SLM_CHAT_LLAMA3: return "llama3";
    case SLM_CHAT_PHI3: return "phi3";
    case SLM_CHAT_PHI4: return "phi4";
    case SLM_CHAT_GEMMA: return "gemma";
    case SLM_CHAT_NONE: break;
    }
    return "none";
}

slm_chat_family slm_chat_detect(const char *tmpl) {
    if (!tmpl) return SLM_CHAT_NONE;
    /* most specific markers first: Phi-4 writes <|im_start|> too */
    if (strstr(tmpl, "<|im_sep|>")) return SLM_CHAT_PHI4;
    if (strstr(tmpl, "<|start_header_id|>")) return SLM_CHAT_LLAMA3;
    if (strstr(tmpl, "<start_of_turn>")) return SLM_CHAT_GEMMA;
    if (strstr(tmpl, "<|assistant|>") && strstr(tmpl, "<|end|>")) return SLM_CHAT_PHI3;
    if (strstr(tmpl, "<|im_start|>")) return SLM_CHAT_CHATML;
    return SLM_CHAT_NONE;
}

/* A ChatML template's built-in system message: the literal after "<|im_start|>system" + newline (written
 * as a newline or as the escape \n) up to "<|im_end|>", when no quote interrupts it (a quote would mean
 * the template splices in the caller's own system message there instead). */
static char *default_system(const char *tmpl) {
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(tmpl, head); p; p = strstr(p + 1, head)) {
        const char *s = p + sizeof head - 1;
        if (*s == '\n') s++;
        else if (s[0] == '\\' && s[1] == 'n') s += 2;
        else continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e || e == s) continue;
        size_t n = (size_t)(e - s);
        if (memchr(s, '\'', n) || memchr(s, '"', n)) continue;
        char *out = malloc(n + 1), *o = out;
        if (!out) return NULL;
        for (const char *c = s; c < e; c++) {
            if (c[0] == '\\' && c + 1 < e && c[1] == 'n') {
                *o++ = '\n';
                c++;
            } else *o++ = *c;
        }
        *o = 0;
        return out;
    }
    return NULL;
}

/* A turn marker must be one special token: the rendered text is tokenized with parse_special, and a marker
 * that came out as ordinary text pieces would mean nothing to the model. */
static bool has_special(const slm_tokenizer *t, const char *text) {
    int32_t id = slm_tokenizer_find(t, text, strlen(text));
    slm_token_type ty = slm_tokenizer_token_type(t, id);
    return id >= 0 && (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED);
}

slm_chat_family slm_chat_detect_vocab(const slm_tokenizer *t) {
    if (!t) return SLM_CHAT_NONE;
    if (has_special(t, "<|im_sep|>") && has_special(t, "<|im_start|>")) return SLM_CHAT_PHI4;
    if (has_special(t, "<|start_header_id|>") && has_special(t, "<|end_header_id|>")) return SLM_CHAT_LLAMA3;
    if (has_special(t, "<start_of_turn>") && has_special(t, "<end_of_turn>")) return SLM_CHAT_GEMMA;
    if (has_special(t, "<|user|>") && has_special(t, "<|end|>")) return SLM_CHAT_PHI3;
    if (has_special(t, "<|im_start|>") && has_special(t, "<|im_end|>")) return SLM_CHAT_CHATML;
    return SLM_CHAT_NONE;
}

slm_status slm_chat_template_init(const char *tmpl, const slm_tokenizer *vocab, slm_chat_template *out,
                                  slm_error *err) {
    memset(out, 0, sizeof *out);
    if (!tmpl) {
        out->family = slm_chat_detect_vocab(vocab);
        out->from_vocab = true;
        if (out->family == SLM_CHAT_NONE)
            return slm_fail(err, SLM_ERR_UNSUPPORTED,
                            "the model has no chat template (tokenizer.chat_template) and %s: chat needs a template "
                            "(use `slm run` without --chat for plain text)",
                            vocab ? "its vocabulary has the turn tokens of no supported family (<|im_start|>, "
                                    "<|start_header_id|>, <start_of_turn>, <|user|> + <|end|>, <|im_sep|>)"
                                  : "no vocabulary to choose one from");
        return SLM_OK;
    }
    out->family = slm_chat_detect(tmpl);
    if (out->family == SLM_CHAT_NONE)
        return slm_fail(err, SLM_ERR_UNSUPPORTED,
                        "the model's chat template is of no supported family (ChatML, Llama 3, Phi-3, Phi-4, "
                        "Gemma): it starts \"%.60s\"",
                        tmpl);
    if (out->family == SLM_CHAT_CHATML) out->default_system = default_system(tmpl);
    return SLM_OK;
}

void slm_chat_template_free(slm_chat_template *t) {
    free(t->default_system);
    t->default_system = NULL;
}

/* A growable string, and where the messages' contents lie in it (when spans is wanted). */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
    bool want_spans;
    slm_text_span *spans;
    int n_spans, cap_spans;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* A message's content (text from the caller, not the template): recorded as a span when asked. */
static void put_content_n(sbuf *b, const char *s, size_t n) {
    size_t off = b->n;
    put_n(b, s, n);
    if (b->oom || !b->want_spans || n == 0) return;
    if (b->n_spans == b->cap_spans) {
        int cap = b->cap_spans ? b->cap_spans * 2 : 8;
        slm_text_span *q = realloc(b->spans, (size_t)cap * sizeof *q);
        if (!q) {
            b->oom = true;
            return;
        }
        b->spans = q;
        b->cap_spans = cap;
    }
    b->spans[b->n_spans++] = (slm_text_span){off, n};
}

static void put_content(sbuf *b, const char *s) { put_content_n(b, s, strlen(s)); }

/* Jinja's |trim: strips leading and trailing whitespace (Llama 3 and Gemma templates trim contents). */
static void put_trimmed(sbuf *b, const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    put_content_n(b, s, n);
}

static void render(const slm_chat_template *t, const slm_chat_msg *msgs, int n, bool gen, sbuf *b) {
    switch (t->family) {
    case SLM_CHAT_NONE:
    case SLM_CHAT_CHATML:
        if (t->default_system && (n == 0 || strcmp(msgs[0].role, "system"))) {
            put(b, "<|im_start|>system\n");
            put(b, t->default_system);
            put(b, "<|im_end|>\n");
        }
        for (int i = 0; i < n; i++) {
            put(b, "<|im_start|>");
            put(b, msgs[i].role);
            put(b, "\n");
            put_content(b, msgs[i].content);
            put(b, "<|im_end|>\n");
        }
        if (gen) put(b, "<|im_start|>assistant\n");
        break;
    case SLM_CHAT_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(b, "<|start_header_id|>");
            put(b, msgs[i].role);
            put(b, "<|end_header_id|>\n\n");
            put_trimmed(b, msgs[i].content);
            put(b, "<|eot_id|>");
        }
        if (gen) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case SLM_CHAT_PHI3:
        for (int i = 0; i < n; i++) {
            put(b, "<|");
            put(b, msgs[i].role);
            put(b, "|>\n");
            put_content(b, msgs[i].content);
            put(b, "<|end|>\n");
        }
        if (gen) put(b, "<|assistant|>\n");
        break;
    case SLM_CHAT_PHI4:
        for (int i = 0; i < n; i++) {
            put(b, "<|im_start|>");
            put(b, msgs[i].role);
            put(b, "<|im_sep|>");
            put_content(b, msgs[i].content);
            put(b, "<|im_end|>");
        }
        if (gen) put(b, "<|im_start|>assistant<|im_sep|>");
        break;
    case SLM_CHAT_GEMMA: {
        /* Gemma has no system turn: its templates put the system text at the top of the first user turn */
        int first = 0;
        const char *sys = NULL;
        if (n && !strcmp(msgs[0].role, "system")) {
            sys = msgs[0].content;
            first = 1;
        }
        for (int i = first; i < n; i++) {
            bool asst = !strcmp(msgs[i].role, "assistant");
            put(b, asst ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
            if (sys && i == first) {
                put_trimmed(b, sys);
                put(b, "\n\n");
            }
            put_trimmed(b, msgs[i].content);
            put(b, "<end_of_turn>\n");
        }
        if (sys && first == n) { /* only a system message: it still opens a user turn */
            put(b, "<start_of_turn>user\n");
            put_trimmed(b, sys);
            put(b, "\n\n<end_of_turn>\n");
        }
        if (gen) put(b, "<start_of_turn>model\n");
        break;
    }
    }
}

slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n, bool add_generation_prompt,
                           char **out, slm_error *err) {
    return slm_chat_render_spans(t, msgs, n, add_generation_prompt, out, NULL, NULL, err);
}

slm_status slm_chat_render_spans(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                                 bool add_generation_prompt, char **out, slm_text_span **spans, int *n_spans,
                                 slm_error *err) {
    *out = NULL;
    if (spans) {
        *spans = NULL;
        *n_spans = 0;
    }
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "chat message %d has no role or no content", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return slm_fail(err, SLM_ERR_INVALID_ARG, "chat message %d has role '%.40s' (system, user, assistant)", i,
                            r);
        if (!strcmp(r, "system") && i > 0 && t->family == SLM_CHAT_GEMMA)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "Gemma takes a system message only first (message %d)", i);
    }
    sbuf b = {0};
    b.want_spans = spans != NULL;
    put(&b, "");
    render(t, msgs, n, add_generation_prompt, &b);
    if (b.oom) {
        free(b.p);
        free(b.spans);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory rendering %d chat messages", n);
    }
    *out = b.p;
    if (spans) {
        *spans = b.spans;
        *n_spans = b.n_spans;
    }
    return SLM_OK;
}

slm_status slm_chat_format_single(const char *tmpl, const slm_tokenizer *vocab, const char *system, const char *prompt,
                                  char **out, slm_error *err) {
    *out = NULL;
    slm_chat_template t;
    slm_status s = slm_chat_template_init(tmpl, vocab, &t, err);
    if (s) return s;
    slm_chat_msg msgs[2];
    int n = 0;
    if (system) msgs[n++] = (slm_chat_msg){"system", system};
    msgs[n++] = (slm_chat_msg){"user", prompt ? prompt : ""};
    s = slm_chat_render(&t, msgs, n, true, out, err);
    slm_chat_template_free(&t);
    return s;
}
