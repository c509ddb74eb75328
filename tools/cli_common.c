#include "cli_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool slm_cli_parse_size(const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return false;
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 0: break;
    default: return false;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return false;
    *out = (size_t)(v * mul);
    return true;
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float *out) {
    char *end;
    *out = strtof(s, &end);
    return *s && !*end;
}

bool slm_cli_parse(int argc, char **argv, int first, slm_cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->params = slm_params_default();
    o->sampling = slm_sampler_params_default();
    o->n_predict = 128;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = v && parse_int(v, 0, 1 << 24, &o->n_predict);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = v && parse_int(v, 1, 1024, &o->params.n_threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = v && parse_int(v, 1, 1 << 24, &o->params.n_ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) ok = v && parse_int(v, 1, 1 << 20, &o->params.n_batch);
        else if (!strcmp(a, "--temp")) ok = v && parse_float(v, &o->sampling.temp);
        else if (!strcmp(a, "--top-k")) ok = v && parse_int(v, 0, 1 << 30, &o->sampling.top_k);
        else if (!strcmp(a, "--top-p")) ok = v && parse_float(v, &o->sampling.top_p);
        else if (!strcmp(a, "--min-p")) ok = v && parse_float(v, &o->sampling.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = v && parse_float(v, &o->sampling.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) ok = v && parse_int(v, 0, 1 << 20, &o->sampling.repeat_last_n);
        else if (!strcmp(a, "--seed")) {
            ok = v != NULL;
            if (ok) o->sampling.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--device")) o->params.device = v;
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) {
            if (v && !strcmp(v, "all")) o->params.n_gpu_layers = SLM_NGL_ALL;
            else if (v && !strcmp(v, "auto")) o->params.n_gpu_layers = SLM_NGL_AUTO;
            else ok = v && parse_int(v, 0, 1 << 20, &o->params.n_gpu_layers);
        } else if (!strcmp(a, "--vram-budget")) ok = v && slm_cli_parse_size(v, &o->params.vram_budget);
        else if (!strcmp(a, "-ts") || !strcmp(a, "--tensor-split")) {
            ok = v != NULL;
            o->params.tensor_split = v;
        } else {
            takes = false;
            if (!strcmp(a, "--chat")) o->chat = true;
            else if (!strcmp(a, "--greedy")) o->sampling.temp = 0;
            else if (!strcmp(a, "--f32-act")) o->debug.f32_activations = true;
            else if (!strcmp(a, "--no-bos")) o->no_bos = true;
            else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->params.verbose = true;
            else {
                fprintf(stderr, "slm: unknown option '%s' (see slm --help)\n", a);
                return false;
            }
        }
        if (takes && !v) {
            fprintf(stderr, "slm: option %s needs a value\n", a);
            return false;
        }
        if (!ok) {
            fprintf(stderr, "slm: bad value '%s' for %s\n", v, a);
            return false;
        }
        if (takes) i++;
    }
    return true;
}

void slm_cli_write(const char *text, size_t n) {
    if (!n) return;
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

slm_status slm_cli_chat_text(const slm_model *m, const slm_chat_message *msgs, int n, char **out, slm_error *err) {
    size_t len = 0;
    *out = NULL;
    slm_status s = slm_chat_apply(m, msgs, n, true, NULL, 0, &len, err);
    if (s) return s;
    char *text = malloc(len + 1);
    if (!text) {
        snprintf(err->msg, sizeof err->msg, "out of memory for %zu bytes of chat text", len);
        return SLM_ERR_NOMEM;
    }
    s = slm_chat_apply(m, msgs, n, true, text, len + 1, &len, err);
    if (s) free(text);
    else *out = text;
    return s;
}
