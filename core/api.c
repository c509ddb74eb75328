/* The public API of include/slm.h over internals that have no public face of their own: the model's
 * tokenizer (tokenize, pieces, special tokens, the streaming detokenizer), its chat template, and the
 * devices of the compiled-in backends. Only glue lives here, turning the internal interfaces into the
 * public ones; the work is done in tokenizer*.c, detokenizer.c, chat.c and backends/registry.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "chat.h"
#include "error.h"
#include "model.h"
#include "slm.h"
#include "tokenizer.h"

/* ---------------------------------------------------------------------------------------------------- */
/* Tokenizer */

static const slm_tokenizer *model_tok(const slm_model *m) { return m ? slm_model_tokenizer(m) : NULL; }

slm_status slm_tokenize(const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *out, int max_out, int *n_out, slm_error *err) {
    const slm_tokenizer *t = model_tok(m);
    *n_out = 0;
    if (!t) return slm_fail(err, SLM_ERR_UNSUPPORTED, "the model has no tokenizer");
    slm_tokens v = {0};
    slm_status s = slm_tokenizer_encode(t, text, len, add_special, parse_special, &v, err);
    if (s) return s;
    *n_out = v.n;
    if (v.n > max_out) {
        slm_tokens_free(&v);
        return slm_fail(err, SLM_ERR_CONTEXT, "the text is %d tokens, more than the %d allowed", *n_out, max_out);
    }
    if (v.n) memcpy(out, v.ids, (size_t)v.n * sizeof *out);
    slm_tokens_free(&v);
    return SLM_OK;
}

int slm_token_to_piece(const slm_model *m, int32_t token, char *buf, int buf_len) {
    const slm_tokenizer *t = model_tok(m);
    return t ? slm_tokenizer_piece(t, token, buf, buf_len) : 0;
}

int32_t slm_token_bos(const slm_model *m) {
    const slm_tokenizer *t = model_tok(m);
    return t ? slm_tokenizer_bos(t) : -1;
}

int32_t slm_token_eos(const slm_model *m) {
    const slm_tokenizer *t = model_tok(m);
    return t ? slm_tokenizer_eos(t) : -1;
}

bool slm_token_is_eog(const slm_model *m, int32_t token) {
    const slm_tokenizer *t = model_tok(m);
    return t && slm_tokenizer_is_eog(t, token);
}

struct slm_detokenizer {
    slm_detok d;
};

slm_status slm_detokenizer_create(const slm_model *m, bool starts_text, slm_detokenizer **out, slm_error *err) {
    *out = NULL;
    const slm_tokenizer *t = model_tok(m);
    if (!t) return slm_fail(err, SLM_ERR_UNSUPPORTED, "the model has no tokenizer");
    slm_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for a detokenizer");
    slm_detok_init(&d->d, t, starts_text);
    *out = d;
    return SLM_OK;
}

const char *slm_detokenizer_push(slm_detokenizer *d, int32_t token, size_t *len) {
    return slm_detok_push(&d->d, token, len);
}

const char *slm_detokenizer_flush(slm_detokenizer *d, size_t *len) { return slm_detok_flush(&d->d, len); }

void slm_detokenizer_free(slm_detokenizer *d) {
    if (!d) return;
    slm_detok_free(&d->d);
    free(d);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Chat templates */

/* The model's template (or the family its vocabulary implies). */
static slm_status model_template(const slm_model *m, slm_chat_template *t, slm_error *err) {
    const slm_tokenizer *tok = model_tok(m);
    if (!tok) {
        memset(t, 0, sizeof *t);
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "the model has no tokenizer: chat needs one");
    }
    return slm_chat_template_init(slm_model_chat_template(m), tok, t, err);
}

slm_status slm_chat_template_info(const slm_model *m, const char **family, bool *from_vocab, slm_error *err) {
    slm_chat_template t;
    slm_status s = model_template(m, &t, err);
    if (family) *family = slm_chat_family_name(t.family);
    if (from_vocab) *from_vocab = t.from_vocab;
    slm_chat_template_free(&t);
    return s;
}

slm_status slm_chat_apply(const slm_model *m, const slm_chat_message *messages, int n, bool add_assistant_turn,
                          char *buf, size_t buf_len, size_t *len, slm_error *err) {
    *len = 0;
    if (n < 0 || (n && !messages))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "chat: %d messages at %p", n, (const void *)messages);
    if (!buf && buf_len) return slm_fail(err, SLM_ERR_INVALID_ARG, "chat: no buffer for %zu bytes", buf_len);
    slm_chat_template t;
    slm_status s = model_template(m, &t, err);
    char *text = NULL;
    if (!s) s = slm_chat_render(&t, messages, n, add_assistant_turn, &text, err);
    slm_chat_template_free(&t);
    if (s) return s;
    *len = strlen(text);
    if (buf && *len >= buf_len)
        s = slm_fail(err, SLM_ERR_INVALID_ARG, "chat: the text is %zu bytes, the buffer holds %zu with its NUL", *len,
                     buf_len);
    else if (buf) memcpy(buf, text, *len + 1);
    free(text);
    return s;
}

slm_status slm_chat_tokenize(const slm_model *m, const slm_chat_message *messages, int n, bool add_assistant_turn,
                             bool parse_special_content, int32_t *out, int max_out, int *n_out, slm_error *err) {
    *n_out = 0;
    if (n < 0 || (n && !messages))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "chat: %d messages at %p", n, (const void *)messages);
    if (max_out < 0 || (max_out && !out))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "chat: no room for tokens (%d at %p)", max_out, (void *)out);
    slm_chat_template t;
    slm_status s = model_template(m, &t, err);
    char *text = NULL;
    slm_text_span *spans = NULL;
    int n_spans = 0;
    if (!s) s = slm_chat_render_spans(&t, messages, n, add_assistant_turn, &text, &spans, &n_spans, err);
    slm_chat_template_free(&t);
    if (s) return s;
    /* the rendered text never holds BOS: the tokenizer adds it where the model wants one */
    slm_tokens v = {0};
    if (parse_special_content) s = slm_tokenizer_encode(model_tok(m), text, strlen(text), true, true, &v, err);
    else s = slm_tokenizer_encode_spans(model_tok(m), text, strlen(text), true, spans, n_spans, &v, err);
    free(text);
    free(spans);
    if (s) return s;
    *n_out = v.n;
    if (v.n > max_out)
        s = slm_fail(err, SLM_ERR_CONTEXT, "the conversation is %d tokens, more than the %d allowed", v.n, max_out);
    else if (v.n) memcpy(out, v.ids, (size_t)v.n * sizeof *out);
    slm_tokens_free(&v);
    return s;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Devices */

int slm_devices_list(slm_device_info *out, int max) {
    int k = 0;
    for (const slm_backend_ops *const *b = slm_backends(); *b; b++) {
        int n = (*b)->count();
        for (int i = 0; i < n; i++, k++) {
            if (k >= max) continue; /* counted, not opened: the caller only asked how many */
            slm_device_info *di = &out[k];
            memset(di, 0, sizeof *di);
            snprintf(di->spec, sizeof di->spec, "%s:%d", (*b)->name, i);
            di->gpu = strcmp((*b)->name, "cpu") != 0;
            slm_device *dev;
            slm_error err = {{0}};
            if (slm_device_open(di->spec, NULL, &dev, &err)) {
                snprintf(di->error, sizeof di->error, "%.255s", err.msg[0] ? err.msg : "failed");
                continue;
            }
            snprintf(di->name, sizeof di->name, "%s", dev->name);
            di->software = dev->software;
            dev->ops->memory(dev, &di->free_bytes, &di->total_bytes);
            slm_device_close(dev);
        }
    }
    return k;
}
