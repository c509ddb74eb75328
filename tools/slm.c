/* The slm command: run, chat, logits, devices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "slm.h"

static void usage(void) {
    fprintf(stderr,
            "usage: slm <command> [options]\n"
            "  run     -m MODEL -p PROMPT [-n N] [--chat] [--system TEXT]   generate text\n"
            "  chat    -m MODEL [--system TEXT]                            interactive chat (/exit to quit)\n"
            "  logits  -m MODEL --tokens ID,ID,... --out FILE [-n N]       write float32 logits [T][n_vocab],\n"
            "                                                              then print N greedy token ids\n"
            "  devices                                                     list compute devices\n"
            "options: -t THREADS  -c CTX  -b BATCH  --temp T  --top-k K  --top-p P  --min-p P\n"
            "         --repeat-penalty R  --seed S  --greedy  --device auto|cpu|vulkan:N|cuda:N[,...]\n"
            "         -ngl N|all|auto  --vram-budget SIZE  --tensor-split 3,1  -v\n"
            "         --f32-act  (CPU: f32 activations in mat-muls; slow, for accuracy checks)\n");
}

static int fail(const char *what, slm_status s, const slm_error *err) {
    fprintf(stderr, "slm: %s: %s (%s)\n", what, err->msg[0] ? err->msg : "failed", slm_status_name(s));
    return 1;
}

static int load(const slm_cli_opts *o, slm_model **m, slm_context **c) {
    slm_error err = {{0}};
    if (!o->model) {
        fprintf(stderr, "slm: no model given (-m FILE)\n");
        return 1;
    }
    slm_status s = slm_model_load_debug(o->model, &o->params, &o->debug, m, &err);
    if (s) return fail("cannot load model", s, &err);
    slm_plan_info plan = slm_model_plan_info(*m);
    if (o->params.verbose || plan.note[0]) {
        if (plan.note[0]) fprintf(stderr, "slm: %s\n", plan.note);
        fprintf(stderr, "slm: plan: %s\n", plan.text);
    }
    s = slm_context_create(*m, c, &err);
    if (s) {
        slm_model_free(*m);
        return fail("cannot create context", s, &err);
    }
    return 0;
}

static int cmd_run(const slm_cli_opts *o) {
    if (!o->prompt) {
        fprintf(stderr, "slm: no prompt given (-p TEXT)\n");
        return 1;
    }
    slm_model *m;
    slm_context *c;
    if (load(o, &m, &c)) return 1;
    slm_error err = {{0}};
    int rc = 1;
    char *text = NULL;
    int32_t *toks = NULL;
    slm_sampler *smp = NULL;
    slm_detokenizer *detok = NULL;
    const char *prompt = o->prompt;
    if (o->chat) {
        slm_chat_message msgs[2];
        int n_msgs = 0;
        if (o->system) msgs[n_msgs++] = (slm_chat_message){"system", o->system};
        msgs[n_msgs++] = (slm_chat_message){"user", o->prompt};
        slm_status s = slm_cli_chat_text(m, msgs, n_msgs, &text, &err);
        if (s) {
            fail("chat template", s, &err);
            goto done;
        }
        prompt = text;
    }
    int n_ctx = slm_context_n_ctx(c), n = 0;
    toks = malloc((size_t)n_ctx * sizeof *toks);
    slm_status s = slm_tokenize(m, prompt, strlen(prompt), !o->no_bos, o->chat, toks, n_ctx, &n, &err);
    if (s) {
        fail("cannot tokenize the prompt", s, &err);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "slm: the prompt is empty\n");
        goto done;
    }
    if (n >= n_ctx) {
        fprintf(stderr, "slm: the prompt is %d tokens but the context is %d (use -c to enlarge it)\n", n, n_ctx);
        goto done;
    }
    s = slm_sampler_create(&o->sampling, slm_model_get_info(m).n_vocab, &smp, &err);
    if (s) {
        fail("sampler", s, &err);
        goto done;
    }
    for (int i = 0; i < n; i++) slm_sampler_accept(smp, toks[i]);
    /* the generated text continues the prompt: a SentencePiece word's leading space is kept */
    s = slm_detokenizer_create(m, false, &detok, &err);
    if (s) {
        fail("detokenizer", s, &err);
        goto done;
    }
    s = slm_eval(c, toks, n, false, &err);
    if (s) {
        fail("eval", s, &err);
        goto done;
    }
    for (int n_gen = 0; n_gen < o->n_predict && slm_context_pos(c) < n_ctx; n_gen++) {
        int32_t t = slm_sampler_sample(smp, slm_logits(c, -1));
        if (slm_token_is_eog(m, t)) break;
        slm_sampler_accept(smp, t);
        size_t l;
        const char *piece = slm_detokenizer_push(detok, t, &l);
        if (piece) slm_cli_write(piece, l);
        if (slm_context_pos(c) >= n_ctx) break;
        s = slm_eval(c, &t, 1, false, &err);
        if (s) {
            fail("eval", s, &err);
            goto done;
        }
    }
    size_t l;
    const char *tail = slm_detokenizer_flush(detok, &l);
    if (tail) slm_cli_write(tail, l);
    printf("\n");
    slm_perf pf = slm_context_perf(c);
    double pp = pf.prompt_s > 0 ? pf.n_prompt / pf.prompt_s : 0, tg = pf.gen_s > 0 ? pf.n_gen / pf.gen_s : 0;
    fprintf(stderr, "slm: prompt %d tok %.1f tok/s | gen %d tok %.1f tok/s | %.2f GB/s weights (%.1f MiB/token)\n", n,
            pp, pf.n_gen, tg, tg * (double)pf.bytes_per_token / 1e9, pf.bytes_per_token / 1048576.0);
    rc = 0;
done:
    free(text);
    free(toks);
    slm_detokenizer_free(detok);
    slm_sampler_free(smp);
    slm_context_free(c);
    slm_model_free(m);
    return rc;
}

/* Parses "1,2,3" into a malloc'd array. */
static int32_t *parse_ids(const char *s, int *n) {
    int cap = 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    *n = 0;
    while (ids && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 0x7fffffff) {
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
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            free(ids);
            return NULL;
        }
    }
    return ids;
}

static int cmd_logits(const slm_cli_opts *o) {
    int n = 0;
    int32_t *ids = o->tokens ? parse_ids(o->tokens, &n) : NULL;
    if (!ids || n == 0) {
        fprintf(stderr, "slm: logits needs --tokens ID,ID,...\n");
        free(ids);
        return 1;
    }
    slm_model *m;
    slm_context *c;
    if (load(o, &m, &c)) {
        free(ids);
        return 1;
    }
    slm_error err = {{0}};
    int rc = 1, n_vocab = slm_model_get_info(m).n_vocab;
    FILE *f = NULL;
    slm_status s = slm_eval(c, ids, n, true, &err);
    if (s) {
        fail("eval", s, &err);
        goto done;
    }
    if (o->out) {
        f = fopen(o->out, "wb");
        if (!f) {
            fprintf(stderr, "slm: cannot write %s\n", o->out);
            goto done;
        }
        for (int i = 0; i < n; i++) fwrite(slm_logits(c, i), sizeof(float), (size_t)n_vocab, f);
        if (fclose(f)) {
            fprintf(stderr, "slm: cannot write %s\n", o->out);
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
            fail("eval", s, &err);
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

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "chat")) return slm_cmd_chat(argc, argv);
    if (!strcmp(cmd, "devices")) return cmd_devices();
    slm_cli_opts o;
    if (strcmp(cmd, "run") && strcmp(cmd, "logits")) {
        fprintf(stderr, "slm: unknown command '%s'\n", cmd);
        usage();
        return 1;
    }
    if (!slm_cli_parse(argc, argv, 2, &o)) return 1;
    return !strcmp(cmd, "run") ? cmd_run(&o) : cmd_logits(&o);
}
