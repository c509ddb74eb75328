/* `slm chat -m MODEL [-t N] [-c CTX] [--temp T ...] [--system TEXT]`: an interactive chat loop.
 *
 * Each turn renders the whole conversation with the model's chat template and tokenizes it; only the
 * tokens after the longest common prefix with what the context already holds are evaluated, so the KV
 * cache is reused across turns even when re-tokenizing the reply gives other ids than were sampled. When
 * the conversation outgrows the context, the oldest turns are dropped (the system message stays).
 * Commands: /exit (or end of input) quits, /reset forgets the conversation. The template's turn markers are
 * always special tokens; text the user types that looks like one ("<|im_end|>") is parsed as one too unless
 * --no-parse-special (the default is llama.cpp's). -v reports on stderr, per
 * turn, how many prompt tokens came from the cache and how many were evaluated (tests/reference/
 * test_chat_cli.py reads it to check that a turn evaluates only its new tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_common.h"
#include "slm.h"

typedef struct history {
    slm_chat_message *msgs;
    char **owned; /* the contents, malloc'd */
    int n, cap;
} history;

static bool history_add(history *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        slm_chat_message *m = realloc(h->msgs, (size_t)cap * sizeof *m);
        if (!m) return false;
        h->msgs = m;
        char **o = realloc(h->owned, (size_t)cap * sizeof *o);
        if (!o) return false;
        h->owned = o;
        h->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return false;
    memcpy(c, content, len);
    c[len] = 0;
    h->owned[h->n] = c;
    h->msgs[h->n] = (slm_chat_message){role, c};
    h->n++;
    return true;
}

/* Removes messages [i, i + k). */
static void history_drop(history *h, int i, int k) {
    /* nothing to drop (/reset before the first message): h->msgs may still be NULL, and memmove on a null
     * pointer is undefined even for 0 bytes */
    if (k <= 0) return;
    for (int j = i; j < i + k; j++) free(h->owned[j]);
    memmove(h->msgs + i, h->msgs + i + k, (size_t)(h->n - i - k) * sizeof *h->msgs);
    memmove(h->owned + i, h->owned + i + k, (size_t)(h->n - i - k) * sizeof *h->owned);
    h->n -= k;
}

static void history_free(history *h) {
    for (int i = 0; i < h->n; i++) free(h->owned[i]);
    free(h->msgs);
    free(h->owned);
}

typedef struct chat {
    slm_model *m;
    slm_context *c;
    slm_sampler *smp;
    history hist;
    int32_t *toks; /* the tokens now in the KV cache */
    int n_toks;
    int32_t *prompt; /* scratch: the rendered conversation */
    int n_ctx;
    int n_predict;
    bool parse_special; /* in the user's text (the template's markers always are) */
    bool verbose;
    int n_turns;
} chat;

/* Renders and tokenizes the conversation with the generation prompt into ch->prompt; returns the token
 * count, or -1 (message printed). Drops the oldest turns while it does not leave room for a reply. */
static int render(chat *ch) {
    slm_error err = {{0}};
    int reserve = ch->n_ctx / 4 < 512 ? ch->n_ctx / 4 : 512; /* room kept for the reply */
    for (;;) {
        int n = 0;
        slm_status s = slm_chat_tokenize(ch->m, ch->hist.msgs, ch->hist.n, true, ch->parse_special, ch->prompt,
                                         ch->n_ctx, &n, &err);
        if (s && s != SLM_ERR_CONTEXT) {
            fprintf(stderr, "slm: chat template: %s\n", err.msg);
            return -1;
        }
        if (!s && n + reserve <= ch->n_ctx) return n;
        /* too long: forget the oldest exchange after the system message */
        int first = ch->hist.n && !strcmp(ch->hist.msgs[0].role, "system") ? 1 : 0;
        if (ch->hist.n - first <= 1) {
            if (!s && n < ch->n_ctx) return n; /* a single long message: answer in what is left */
            fprintf(stderr, "slm: the message does not fit in the context of %d tokens (use -c)\n", ch->n_ctx);
            history_drop(&ch->hist, ch->hist.n - 1, 1);
            return -1;
        }
        history_drop(&ch->hist, first, ch->hist.n - first >= 3 ? 2 : 1);
        fprintf(stderr, "slm: (the oldest turn was dropped to fit the context)\n");
    }
}

/* Evaluates the rendered prompt, reusing the cached prefix, then streams the reply; appends it to the
 * history. Returns false on an engine error or when stdout cannot be written (the reason is printed). */
static bool turn(chat *ch, int n) {
    slm_error err = {{0}};
    if (n < 1) {
        fprintf(stderr, "slm: the conversation rendered to no tokens\n");
        return false;
    }
    int keep = 0;
    while (keep < n && keep < ch->n_toks && ch->toks[keep] == ch->prompt[keep]) keep++;
    if (keep == n) keep--; /* the last token must be evaluated again to get its logits */
    if (keep < ch->n_toks) slm_context_rewind(ch->c, keep);
    memcpy(ch->toks + keep, ch->prompt + keep, (size_t)(n - keep) * sizeof *ch->toks);
    ch->n_toks = keep;
    slm_status s = slm_eval(ch->c, ch->prompt + keep, n - keep, false, &err);
    if (s) {
        fprintf(stderr, "slm: eval: %s\n", err.msg);
        slm_context_rewind(ch->c, 0);
        ch->n_toks = 0;
        return false;
    }
    ch->n_toks = n;
    for (int i = keep; i < n; i++) slm_sampler_accept(ch->smp, ch->prompt[i]);
    ch->n_turns++;
    if (ch->verbose)
        fprintf(stderr, "slm: turn %d: prompt %d tokens, %d reused from the cache, %d evaluated\n", ch->n_turns, n,
                keep, n - keep);

    slm_detokenizer *d;
    if ((s = slm_detokenizer_create(ch->m, true, &d, &err))) {
        fprintf(stderr, "slm: detokenizer: %s\n", err.msg);
        return false;
    }
    char *reply = NULL;
    size_t rlen = 0, rcap = 0;
    bool ok = true, full = false;
    int n_gen = 0;
    /* the logits of the last evaluated token are always there to sample from; the context bounds only the
     * evaluation of what was sampled, checked below, so that running out of room is said and not silent */
    for (int g = 0; g < ch->n_predict; g++) {
        int32_t t = slm_sampler_sample(ch->smp, slm_logits(ch->c, -1));
        if (slm_token_is_eog(ch->m, t)) break;
        n_gen++;
        slm_sampler_accept(ch->smp, t);
        size_t l;
        const char *out = slm_detokenizer_push(d, t, &l);
        if (out && l) {
            if (!slm_cli_write(out, l)) {
                ok = false;
                break;
            }
            if (rlen + l + 1 > rcap) {
                size_t cap = rcap ? rcap * 2 : 1024;
                while (cap < rlen + l + 1) cap *= 2;
                char *r = realloc(reply, cap);
                if (!r) {
                    ok = false;
                    break;
                }
                reply = r;
                rcap = cap;
            }
            memcpy(reply + rlen, out, l);
            rlen += l;
        }
        if (ch->n_toks >= ch->n_ctx) {
            full = true;
            break;
        }
        s = slm_eval(ch->c, &t, 1, false, &err);
        if (s) {
            fprintf(stderr, "\nslm: eval: %s\n", err.msg);
            ok = false;
            break;
        }
        ch->toks[ch->n_toks++] = t;
    }
    size_t l;
    const char *tail = slm_detokenizer_flush(d, &l);
    if (ok && tail && !slm_cli_write(tail, l)) ok = false;
    if (ok && !slm_cli_write("\n", 1)) ok = false;
    if (full)
        fprintf(stderr,
                "slm: the context is full (%d tokens): the reply was cut off; the next turn drops the oldest "
                "turns, or start with a larger -c\n",
                ch->n_ctx);
    if (ch->verbose) fprintf(stderr, "slm: turn %d: reply %d tokens\n", ch->n_turns, n_gen);
    slm_detokenizer_free(d);
    if (!history_add(&ch->hist, "assistant", reply ? reply : "", rlen)) ok = false;
    free(reply);
    return ok;
}

int slm_cmd_chat(int argc, char **argv) {
    slm_cli_opts o;
    if (!slm_cli_parse("chat", argc, argv, 2, &o)) return 1;
    if (o.help) {
        slm_cli_usage(stdout, "chat");
        return 0;
    }
    if (!o.model) {
        fprintf(stderr, "slm: no model given (-m FILE; see slm chat --help)\n");
        return 1;
    }
    if (o.n_predict_set && o.n_predict < 1) {
        fprintf(stderr, "slm: -n: a reply needs at least 1 token ('%d')\n", o.n_predict);
        return 1;
    }
    chat ch;
    memset(&ch, 0, sizeof ch);
    /* -n caps a reply; the shared default (128, meant for `slm run`) is too short for chat replies */
    ch.n_predict = o.n_predict_set ? o.n_predict : 4096;
    ch.parse_special = !o.no_parse_special;
    slm_error err = {{0}};
    int rc = 1;
    slm_status s = slm_model_load_debug(o.model, &o.params, &o.debug, &ch.m, &err);
    if (s) {
        fprintf(stderr, "slm: cannot load model: %s (%s)\n", err.msg, slm_status_name(s));
        return 1;
    }
    const char *family = NULL;
    bool from_vocab = false;
    if ((s = slm_chat_template_info(ch.m, &family, &from_vocab, &err))) {
        fprintf(stderr, "slm: %s\n", err.msg);
        slm_model_free(ch.m);
        return 1;
    }
    ch.verbose = o.params.verbose;
    bool tty = isatty(STDIN_FILENO);
    if (from_vocab && (tty || ch.verbose))
        fprintf(stderr, "slm: the model has no chat template: using the %s layout its vocabulary's turn tokens imply\n",
                family);
    if ((s = slm_context_create(ch.m, &ch.c, &err))) {
        fprintf(stderr, "slm: cannot create context: %s\n", err.msg);
        goto done;
    }
    ch.n_ctx = slm_context_n_ctx(ch.c);
    ch.toks = malloc((size_t)ch.n_ctx * sizeof *ch.toks);
    ch.prompt = malloc((size_t)ch.n_ctx * sizeof *ch.prompt);
    if (!ch.toks || !ch.prompt) {
        fprintf(stderr, "slm: out of memory\n");
        goto done;
    }
    if ((s = slm_sampler_create(&o.sampling, slm_model_get_info(ch.m).n_vocab, &ch.smp, &err))) {
        fprintf(stderr, "slm: sampler: %s\n", err.msg);
        goto done;
    }
    if (o.system && !history_add(&ch.hist, "system", o.system, strlen(o.system))) goto done;
    if (tty)
        fprintf(stderr, "slm: chatting with %s (%s template); /exit to quit, /reset to start over\n",
                slm_model_get_info(ch.m).name, family);
    char *line = NULL;
    size_t cap = 0;
    rc = 0;
    for (;;) {
        if (tty && !slm_cli_write("> ", 2)) {
            rc = 1;
            break;
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            int keep = o.system ? 1 : 0;
            history_drop(&ch.hist, keep, ch.hist.n - keep);
            fprintf(stderr, "slm: conversation cleared\n");
            continue;
        }
        if (!history_add(&ch.hist, "user", line, (size_t)n)) {
            rc = 1;
            break;
        }
        int np = render(&ch);
        if (np < 0) continue;
        if (!turn(&ch, np)) {
            rc = 1;
            break;
        }
    }
    free(line);
done:
    history_free(&ch.hist);
    slm_sampler_free(ch.smp);
    free(ch.toks);
    free(ch.prompt);
    slm_context_free(ch.c);
    slm_model_free(ch.m);
    return rc;
}
