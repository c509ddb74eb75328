/* The slm command: run, chat, logits, perplexity, tokenize, devices, serve.
 *
 * Output: every write to stdout and to --out files is checked, and stdout is flushed and closed before the
 * exit status is chosen, so a full disk or a closed descriptor is an error with its reason and exit 1, never
 * a silent success. SIGPIPE keeps its default: when the reader of a pipe goes away (`slm run ... | head -1`)
 * slm ends at its next write without a message, as cat or grep do; a parent that ignores SIGPIPE gets the
 * EPIPE reported like any other write error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_common.h"
#include "cli_io.h"
#include "cli_number.h"
#include "slm.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmd_run(const slm_cli_opts *o) {
    if (!o->prompt) {
        fprintf(stderr, "slm: no prompt given (-p TEXT)\n");
        return 1;
    }
    slm_model *m;
    slm_context *c;
    if (slm_cli_load(o, &m, &c)) return 1;
    slm_error err = {{0}};
    int rc = 1;
    int32_t *toks = NULL;
    slm_sampler *smp = NULL;
    slm_detokenizer *detok = NULL;
    int n_ctx = slm_context_n_ctx(c), n = 0;
    toks = malloc((size_t)n_ctx * sizeof *toks);
    if (!toks) {
        fprintf(stderr, "slm: out of memory for %d tokens\n", n_ctx);
        goto done;
    }
    slm_status s;
    if (o->chat) {
        slm_chat_message msgs[2];
        int n_msgs = 0;
        if (o->system) msgs[n_msgs++] = (slm_chat_message){"system", o->system};
        msgs[n_msgs++] = (slm_chat_message){"user", o->prompt};
        /* the template's markers are always special tokens; the prompt's own text only without
         * --no-parse-special (the default, as llama.cpp's) */
        s = slm_chat_tokenize(m, msgs, n_msgs, true, !o->no_parse_special, toks, n_ctx, &n, &err);
    } else {
        s = slm_tokenize(m, o->prompt, strlen(o->prompt), !o->no_bos, false, toks, n_ctx, &n, &err);
    }
    if (s == SLM_ERR_CONTEXT || (!s && n >= n_ctx)) {
        fprintf(stderr, "slm: the prompt is %d tokens but the context is %d (use -c to enlarge it)\n", n, n_ctx);
        goto done;
    }
    if (s) {
        slm_cli_fail("cannot tokenize the prompt", s, &err);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "slm: the prompt is empty\n");
        goto done;
    }
    s = slm_sampler_create(&o->sampling, slm_model_get_info(m).n_vocab, &smp, &err);
    if (s) {
        slm_cli_fail("sampler", s, &err);
        goto done;
    }
    for (int i = 0; i < n; i++) slm_sampler_accept(smp, toks[i]);
    /* the generated text continues the prompt: a SentencePiece word's leading space is kept */
    s = slm_detokenizer_create(m, false, &detok, &err);
    if (s) {
        slm_cli_fail("detokenizer", s, &err);
        goto done;
    }
    double t0 = now_s();
    s = slm_eval(c, toks, n, false, &err);
    double prompt_s = now_s() - t0, gen_s = 0;
    if (s) {
        slm_cli_fail("eval", s, &err);
        goto done;
    }
    /* n_gen counts the tokens sampled and shown; n_eval those evaluated after them (the last one is not:
     * its logits would not be used), which the speed is measured on */
    int n_gen = 0, n_eval = 0;
    bool full = false;
    while (n_gen < o->n_predict) {
        int32_t t = slm_sampler_sample(smp, slm_logits(c, -1));
        if (slm_token_is_eog(m, t)) break;
        slm_sampler_accept(smp, t);
        n_gen++;
        size_t l;
        const char *piece = slm_detokenizer_push(detok, t, &l);
        if (piece && !slm_cli_write(piece, l)) goto done;
        if (n_gen == o->n_predict) break;
        if (slm_context_pos(c) >= n_ctx) {
            full = true;
            break;
        }
        t0 = now_s();
        s = slm_eval(c, &t, 1, false, &err);
        gen_s += now_s() - t0;
        n_eval++;
        if (s) {
            slm_cli_fail("eval", s, &err);
            goto done;
        }
    }
    size_t l;
    const char *tail = slm_detokenizer_flush(detok, &l);
    if (tail && !slm_cli_write(tail, l)) goto done;
    if (!slm_cli_write("\n", 1)) goto done;
    if (full)
        fprintf(stderr, "slm: the context is full (%d tokens): generation stopped after %d tokens (use -c)\n", n_ctx,
                n_gen);
    slm_perf pf = slm_context_perf(c);
    double pp = prompt_s > 0 ? n / prompt_s : 0, tg = gen_s > 0 ? n_eval / gen_s : 0;
    fprintf(stderr, "slm: prompt %d tok %.1f tok/s | gen %d tok %.1f tok/s | %.2f GB/s weights (%.1f MiB/token)\n", n,
            pp, n_gen, tg, tg * (double)pf.bytes_per_token / 1e9, pf.bytes_per_token / 1048576.0);
    rc = 0;
done:
    free(toks);
    slm_detokenizer_free(detok);
    slm_sampler_free(smp);
    slm_context_free(c);
    slm_model_free(m);
    return rc;
}

/* Parses "1,2,3" into a malloc'd array; NULL (with the reason printed) for an empty item, a non-number, or an
 * id beyond int32. The vocabulary bound is checked by slm_eval. */
static int32_t *parse_ids(const char *s, int *n) {
    int cap = 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    *n = 0;
    for (const char *p = s; ids;) {
        char item[32], why[96];
        size_t len = strcspn(p, ",");
        long long v = 0;
        bool ok = len < sizeof item;
        if (ok) {
            memcpy(item, p, len);
            item[len] = 0;
            ok = cli_parse_int(item, 0, INT32_MAX, &v, why, sizeof why);
        }
        if (!ok) {
            fprintf(stderr, "slm: --tokens: '%.*s' in '%s' is %s\n", (int)(len < 40 ? len : 40), p, s,
                    len < sizeof item ? why : "too long");
            free(ids);
            return NULL;
        }
        if (*n == cap) {
            int32_t *bigger = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!bigger) {
                free(ids);
                return NULL;
            }
            ids = bigger;
        }
        ids[(*n)++] = (int32_t)v;
        if (!p[len]) break;
        p += len + 1;
    }
    return ids;
}

static int cmd_logits(const slm_cli_opts *o) {
    int n = 0;
    if (!o->tokens) {
        fprintf(stderr, "slm: logits needs --tokens ID,ID,...\n");
        return 1;
    }
    int32_t *ids = parse_ids(o->tokens, &n);
    if (!ids) return 1;
    slm_model *m;
    slm_context *c;
    if (slm_cli_load(o, &m, &c)) {
        free(ids);
        return 1;
    }
    slm_error err = {{0}};
    int rc = 1, n_vocab = slm_model_get_info(m).n_vocab;
    slm_status s = slm_eval(c, ids, n, true, &err);
    if (s) {
        slm_cli_fail("eval", s, &err);
        goto done;
    }
    if (o->out) {
        FILE *f = fopen(o->out, "wb");
        if (!f) {
            fprintf(stderr, "slm: cannot create %s: %s\n", o->out, strerror(errno));
            goto done;
        }
        /* every row and the close are checked: a full disk shows at one or the other */
        bool ok = true;
        int e = 0;
        for (int i = 0; i < n && ok; i++) {
            errno = 0;
            ok = fwrite(slm_logits(c, i), sizeof(float), (size_t)n_vocab, f) == (size_t)n_vocab;
            e = errno;
        }
        errno = 0;
        if (fclose(f) != 0 && ok) {
            ok = false;
            e = errno;
        }
        if (!ok) {
            fprintf(stderr, "slm: writing %s: %s\n", o->out, e ? strerror(e) : "write error");
            goto done;
        }
    }
    for (int g = 0; g < o->n_predict; g++) {
        const float *lg = slm_logits(c, -1);
        int32_t best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (lg[i] > lg[best]) best = i;
        printf("%s%d", g ? " " : "", best);
        if (g + 1 == o->n_predict) break;
        s = slm_eval(c, &best, 1, false, &err);
        if (s) {
            slm_cli_fail("eval", s, &err);
            goto done;
        }
    }
    printf("\n");
    rc = 0;
done:
    free(ids);
    slm_context_free(c);
    slm_model_free(m);
    return rc;
}

static int cmd_devices(void) {
    slm_backend_info backends[16];
    int nb = slm_backends_list(backends, 16);
    slm_device_info devs[64];
    int nd = slm_devices_list(devs, 64);
    if (nb > 16) nb = 16;
    if (nd > 64) nd = 64;
    for (int b = 0; b < nb; b++) {
        size_t bl = strlen(backends[b].name);
        int shown = 0;
        for (int d = 0; d < nd; d++) {
            const slm_device_info *di = &devs[d];
            if (strncmp(di->spec, backends[b].name, bl) || di->spec[bl] != ':') continue;
            shown++;
            if (di->error[0]) {
                printf("%-10s (cannot open: %s)\n", di->spec, di->error);
                continue;
            }
            printf("%-10s %s  %.1f GiB free / %.1f GiB%s\n", di->spec, di->name, di->free_bytes / 1073741824.0,
                   di->total_bytes / 1073741824.0, di->software ? "  (software: used only with --device)" : "");
        }
        if (shown == 0) printf("%-10s (none present)\n", backends[b].name);
    }
    return 0;
}

/* Runs a subcommand; its output to stdout is checked by main afterwards. */
static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        slm_cli_usage(stderr, NULL);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        slm_cli_usage(stdout, NULL);
        return 0;
    }
    if (!strcmp(cmd, "chat")) return slm_cmd_chat(argc, argv);
    if (!strcmp(cmd, "perplexity")) return slm_cmd_perplexity(argc, argv);
    if (!strcmp(cmd, "tokenize")) return slm_cmd_tokenize(argc, argv);
    if (!strcmp(cmd, "serve")) {
#ifdef SLM_HAVE_SERVE
        return slm_cmd_serve(argc, argv);
#else
        fprintf(stderr,
                "slm: this slm was built without the server (configured with SLM_SERVE=OFF, or without "
                "libmicrohttpd and jansson: on Debian apt install libmicrohttpd-dev libjansson-dev, then "
                "configure and build again)\n");
        return 1;
#endif
    }
    if (!strcmp(cmd, "devices")) {
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                slm_cli_usage(stdout, cmd);
                return 0;
            }
            fprintf(stderr, "slm: devices takes no argument ('%s'; see slm devices --help)\n", argv[i]);
            return 1;
        }
        return cmd_devices();
    }
    if (strcmp(cmd, "run") && strcmp(cmd, "logits")) {
        fprintf(stderr, "slm: unknown command '%s'\n", cmd);
        slm_cli_usage(stderr, NULL);
        return 1;
    }
    slm_cli_opts o;
    if (!slm_cli_parse(cmd, argc, argv, 2, &o)) return 1;
    if (o.help) {
        slm_cli_usage(stdout, cmd);
        return 0;
    }
    return !strcmp(cmd, "run") ? cmd_run(&o) : cmd_logits(&o);
}

int main(int argc, char **argv) {
    cli_guard_std_fds();
    int rc = dispatch(argc, argv);
    /* a command that succeeded but whose output was lost has failed */
    if (!slm_cli_close_stdout() && rc == 0) rc = 1;
    return rc;
}
