/* Option parsing, usage texts and checked stdout output for the slm subcommands. */
#include "cli_common.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_io.h"
#include "cli_number.h"

void slm_cli_usage(FILE *f, const char *cmd) {
    bool all = !cmd;
    if (all) fprintf(f, "usage: slm <command> [options]   (slm <command> --help: that command's options)\n");
    if (all || !strcmp(cmd, "run"))
        fprintf(f, "%s",
                all ? "  run     -m MODEL -p PROMPT [-n N] [--chat [--system TEXT]]   generate text\n"
                    : "usage: slm run -m MODEL -p PROMPT [-n N] [--chat [--system TEXT] [--no-parse-special]]\n"
                      "  generates N tokens (default 128) after PROMPT; --chat wraps it in the model's chat "
                      "template\n");
    if (all || !strcmp(cmd, "chat"))
        fprintf(f, "%s",
                all ? "  chat    -m MODEL [--system TEXT]                            interactive chat (/exit, /reset)\n"
                    : "usage: slm chat -m MODEL [--system TEXT] [-n N] [--no-parse-special]\n"
                      "  an interactive conversation on stdin; /exit quits, /reset starts over; -n caps a "
                      "reply (default 4096)\n");
    if (all || !strcmp(cmd, "logits"))
        fprintf(
            f, "%s",
            all ? "  logits  -m MODEL --tokens ID,ID,... --out FILE [-n N]       write float32 logits [T][n_vocab],\n"
                  "                                                              then print N greedy token ids\n"
                : "usage: slm logits -m MODEL --tokens ID,ID,... [--out FILE] [-n N]\n"
                  "  writes float32 logits [T][n_vocab] to FILE, then prints N greedy token ids\n");
    if (all || !strcmp(cmd, "perplexity"))
        fprintf(f, "%s",
                all ? "  perplexity -m MODEL -f TEXT [-c 512] [--chunks N]           perplexity of a text; KL against "
                      "a base\n"
                    : "usage: slm perplexity -m MODEL -f TEXT [-c 512] [-b N] [--chunks N]\n"
                      "                      [--kl-divergence-base FILE [--kl-divergence]]\n"
                      "  splits the text's tokens into chunks of -c tokens (default 512; BOS first when the model\n"
                      "  adds one), evaluates each from scratch and scores the second half of each; prints the\n"
                      "  running perplexity per chunk, then the perplexity with its standard error and tokens/s.\n"
                      "  At least 2 chunks of text are needed; --chunks N scores the first N only.\n"
                      "  --kl-divergence-base FILE: also writes the log-probabilities of every scored token to\n"
                      "  FILE (a reference, from the higher-precision model). With --kl-divergence: reads FILE\n"
                      "  instead and compares this model (or device, or build) with it: mean and max KL\n"
                      "  divergence, top-1 agreement; the tokens come from FILE (-f is then optional, and\n"
                      "  must give the same tokens when present).\n");
    if (all || !strcmp(cmd, "tokenize"))
        fprintf(f, "%s",
                all ? "  tokenize -m MODEL -p TEXT|-f FILE [--ids|--pieces]          print the model's tokens\n"
                    : "usage: slm tokenize -m MODEL (-p TEXT | -f FILE) [--ids | --pieces] [--no-bos]\n"
                      "                    [--parse-special]\n"
                      "  prints the tokens of TEXT as the model's tokenizer makes them: one line per token,\n"
                      "  ID<TAB>'PIECE' (the piece's control characters, quote, backslash and bytes that are\n"
                      "  not UTF-8 escaped C-style); --ids: one list [ID, ID, ...]; --pieces: the pieces\n"
                      "  alone, one a line. The count goes to stderr. --no-bos: without the BOS (and other\n"
                      "  special tokens) the model adds; --parse-special: special-token text in TEXT\n"
                      "  (\"<|im_start|>\") is the special token (by default it is plain text).\n");
    if (all || !strcmp(cmd, "serve"))
        fprintf(f, "%s",
                all ? "  serve   -m MODEL [--port 8080] [--parallel N]               OpenAI-compatible HTTP server\n"
                    : "usage: slm serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [-c CTX]\n"
                      "                 [--api-key KEY] [--queue-limit N] [-n N]\n"
                      "  serves the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models) and /health,\n"
                      "  /metrics until SIGINT or SIGTERM. --host: the address to listen on (default 127.0.0.1,\n"
                      "  this machine only); --port 0: any free port; --parallel: requests generated at once\n"
                      "  (default 1; each has a context of -c tokens); --queue-limit: requests that may wait for\n"
                      "  a slot before the server answers 503 (default 64); --api-key (or $SLM_API_KEY): every\n"
                      "  request needs 'Authorization: Bearer KEY'; -n: max_tokens when a request has none\n"
                      "  (default: until the context is full). The sampling options are the defaults that a\n"
                      "  request's fields override.\n");
    if (all || !strcmp(cmd, "devices"))
        fprintf(f, "%s",
                all ? "  devices                                                     list compute devices\n"
                    : "usage: slm devices\n  lists the compute devices of every compiled-in backend\n");
    if (!all && (!strcmp(cmd, "devices") || !strcmp(cmd, "tokenize"))) return;
    fprintf(f,
            "options: -t THREADS  -c CTX  -b BATCH  --temp T (>= 0)  --top-k K  --top-p P (0 < P <= 1)\n"
            "         --min-p P (0..1)  --repeat-penalty R (> 0)  --repeat-last-n N  --seed S  --greedy\n"
            "         --device auto|cpu|vulkan:N|cuda:N[,...]  -ngl N|all|auto  --vram-budget SIZE (4G, 512M)\n"
            "         --tensor-split 3,1  --no-bos (without --chat)  -v  -h/--help\n"
            "         -ctk, -ctv f16|q8_0|q4_0  (KV cache types of K and V; quantized: CPU layers only, head\n"
            "                                    size a multiple of 32; default f16)\n"
            "         --no-parse-special  (--chat, chat: text of the user's that looks like a special token,\n"
            "                              \"<|im_end|>\", stays text; by default it is parsed as the token)\n"
            "         --f32-act  (CPU, CUDA: f32 activations in mat-muls; slow, for accuracy checks)\n");
}

/* A message for a bad value: "slm: -t: '0' is out of range 1..1024". */
static bool bad(const char *opt, const char *v, const char *why) {
    if (!*v) fprintf(stderr, "slm: %s: the value is empty\n", opt);
    else fprintf(stderr, "slm: %s: '%s' is %s\n", opt, v, why);
    return false;
}

static bool opt_int(const char *opt, const char *v, int lo, int hi, int *out) {
    char why[96];
    long long x;
    if (!cli_parse_int(v, lo, hi, &x, why, sizeof why)) return bad(opt, v, why);
    *out = (int)x;
    return true;
}

/* A float option in [lo, hi] (lo_open, hi_open: the bound itself excluded); range names it in the message.
 * The value must also fit a float: converting a larger double is undefined behaviour. */
static bool opt_float(const char *opt, const char *v, double lo, bool lo_open, double hi, bool hi_open,
                      const char *range, float *out) {
    char why[96];
    double x;
    if (!cli_parse_double(v, &x, why, sizeof why)) return bad(opt, v, why);
    if (x < lo || (lo_open && x == lo) || x > hi || (hi_open && x == hi)) {
        snprintf(why, sizeof why, "out of range (%s)", range);
        return bad(opt, v, why);
    }
    *out = (float)x;
    return true;
}

/* --tensor-split: finite shares >= 0, not all zero. The library checks the count against the GPUs it opens
 * (and ignores the option with one device), so the syntax is checked here, where every run sees it. */
static bool opt_split(const char *opt, const char *v) {
    char item[64], why[96];
    double sum = 0;
    for (const char *p = v;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item) return bad(opt, v, "not a list of shares like 3,1");
        memcpy(item, p, len);
        item[len] = 0;
        double x;
        if (!cli_parse_double(item, &x, why, sizeof why) || x < 0 || x > 1e6)
            return bad(opt, v, "not a list of shares like 3,1 (each a number in 0..1000000)");
        sum += x;
        if (!p[len]) break;
        p += len + 1;
    }
    return sum > 0 ? true : bad(opt, v, "all zero (at least one share must be > 0)");
}

bool slm_cli_parse(const char *cmd, int argc, char **argv, int first, slm_cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->params = slm_params_default();
    o->sampling = slm_sampler_params_default();
    o->n_predict = 128;
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 1;
    o->queue_limit = 64;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        /* flags first, so that an unknown option is never taken for one missing its value */
        bool flag = true;
        if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--greedy")) o->sampling.temp = 0;
        else if (!strcmp(a, "--f32-act")) o->debug.f32_activations = true;
        else if (!strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--no-parse-special")) o->no_parse_special = true;
        else if (!strcmp(a, "--parse-special")) o->parse_special = true;
        else if (!strcmp(a, "--kl-divergence")) o->kl = true;
        else if (!strcmp(a, "--ids")) o->ids = true;
        else if (!strcmp(a, "--pieces")) o->pieces = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->params.verbose = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) o->help = true;
        else flag = false;
        if (flag) continue;
        static const char *const with_value[] = {"-m",
                                                 "--model",
                                                 "-p",
                                                 "--prompt",
                                                 "--system",
                                                 "--tokens",
                                                 "--out",
                                                 "-n",
                                                 "--n-predict",
                                                 "-t",
                                                 "--threads",
                                                 "-c",
                                                 "--ctx-size",
                                                 "-b",
                                                 "--batch-size",
                                                 "--temp",
                                                 "--top-k",
                                                 "--top-p",
                                                 "--min-p",
                                                 "--repeat-penalty",
                                                 "--repeat-last-n",
                                                 "--seed",
                                                 "--device",
                                                 "-ngl",
                                                 "--n-gpu-layers",
                                                 "--vram-budget",
                                                 "-ts",
                                                 "--tensor-split",
                                                 "-ctk",
                                                 "--cache-type-k",
                                                 "-ctv",
                                                 "--cache-type-v",
                                                 "--host",
                                                 "--port",
                                                 "--parallel",
                                                 "--queue-limit",
                                                 "--api-key",
                                                 "-f",
                                                 "--file",
                                                 "--kl-divergence-base",
                                                 "--chunks",
                                                 NULL};
        bool known = false;
        for (int k = 0; with_value[k] && !known; k++) known = !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "slm: unknown option '%s' (see slm %s --help)\n", a, cmd);
            return false;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "slm: option %s needs a value\n", a);
            return false;
        }
        const char *v = argv[++i];
        bool ok = true;
        /* text values: an empty model path, output file or device is a mistake (an empty prompt is refused
         * by `slm run` itself, an empty system message is a valid choice) */
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--out") || !strcmp(a, "--device") ||
            !strcmp(a, "--tokens") || !strcmp(a, "--host") || !strcmp(a, "--api-key") || !strcmp(a, "-f") ||
            !strcmp(a, "--file") || !strcmp(a, "--kl-divergence-base")) {
            if (!*v) ok = bad(a, v, "empty");
        }
        if (!ok) return false;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->file = v;
        else if (!strcmp(a, "--kl-divergence-base")) o->kl_base = v;
        else if (!strcmp(a, "--chunks")) ok = opt_int(a, v, 1, 1 << 24, &o->chunks);
        else if (!strcmp(a, "--port")) ok = opt_int(a, v, 0, 65535, &o->port);
        else if (!strcmp(a, "--parallel")) ok = opt_int(a, v, 1, 256, &o->parallel);
        else if (!strcmp(a, "--queue-limit")) ok = opt_int(a, v, 0, 1 << 20, &o->queue_limit);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            ok = opt_int(a, v, 0, 1 << 24, &o->n_predict);
            o->n_predict_set = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = opt_int(a, v, 1, 1024, &o->params.n_threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = opt_int(a, v, 1, 1 << 24, &o->params.n_ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) ok = opt_int(a, v, 1, 1 << 20, &o->params.n_batch);
        else if (!strcmp(a, "--temp")) ok = opt_float(a, v, 0, false, FLT_MAX, false, ">= 0", &o->sampling.temp);
        else if (!strcmp(a, "--top-k")) ok = opt_int(a, v, 0, 1 << 30, &o->sampling.top_k);
        else if (!strcmp(a, "--top-p")) ok = opt_float(a, v, 0, true, 1, false, "0 < P <= 1", &o->sampling.top_p);
        else if (!strcmp(a, "--min-p")) ok = opt_float(a, v, 0, false, 1, false, "0 <= P <= 1", &o->sampling.min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            ok = opt_float(a, v, 0, true, FLT_MAX, false, "> 0", &o->sampling.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) ok = opt_int(a, v, 0, 1 << 20, &o->sampling.repeat_last_n);
        else if (!strcmp(a, "--seed")) {
            char why[96];
            if (!cli_parse_u64(v, &o->sampling.seed, why, sizeof why)) ok = bad(a, v, why);
        } else if (!strcmp(a, "--device")) o->params.device = v;
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) {
            if (!strcmp(v, "all")) o->params.n_gpu_layers = SLM_NGL_ALL;
            else if (!strcmp(v, "auto")) o->params.n_gpu_layers = SLM_NGL_AUTO;
            else {
                char why[96];
                long long x;
                if (cli_parse_int(v, 0, 1 << 20, &x, why, sizeof why)) o->params.n_gpu_layers = (int)x;
                else ok = bad(a, v, "not a layer count (0..1048576), all or auto");
            }
        } else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k") || !strcmp(a, "-ctv") ||
                   !strcmp(a, "--cache-type-v")) {
            int t = slm_kv_type_from_name(v);
            if (t < 0) ok = bad(a, v, "not a KV cache type (f16, q8_0, q4_0)");
            else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k")) o->params.type_k = t;
            else o->params.type_v = t;
        } else if (!strcmp(a, "--vram-budget")) {
            char why[96];
            if (!cli_parse_size(v, &o->params.vram_budget, why, sizeof why)) ok = bad(a, v, why);
        } else {
            ok = opt_split(a, v);
            o->params.tensor_split = v;
        }
        if (!ok) return false;
    }
    return true;
}

int slm_cli_fail(const char *what, slm_status s, const slm_error *err) {
    fprintf(stderr, "slm: %s: %s (%s)\n", what, err->msg[0] ? err->msg : "failed", slm_status_name(s));
    return 1;
}

int slm_cli_load(const slm_cli_opts *o, slm_model **m, slm_context **c) {
    slm_error err = {{0}};
    if (!o->model) {
        fprintf(stderr, "slm: no model given (-m FILE)\n");
        return 1;
    }
    slm_status s = slm_model_load_debug(o->model, &o->params, &o->debug, m, &err);
    if (s) return slm_cli_fail("cannot load model", s, &err);
    slm_plan_info plan = slm_model_plan_info(*m);
    if (o->params.verbose || plan.note[0]) {
        if (plan.note[0]) fprintf(stderr, "slm: %s\n", plan.note);
        fprintf(stderr, "slm: plan: %s\n", plan.text);
    }
    if (!c) return 0;
    s = slm_context_create(*m, c, &err);
    if (s) {
        slm_model_free(*m);
        return slm_cli_fail("cannot create context", s, &err);
    }
    return 0;
}

char *slm_cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "slm: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    int e = 0;
    while (buf) {
        if (n == cap) {
            char *bigger = cap < SIZE_MAX / 4 ? realloc(buf, cap * 2 + 1) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                e = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        errno = 0;
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                e = errno ? errno : EIO;
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "slm: cannot read %s: %s\n", path, strerror(e ? e : ENOMEM));
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int32_t *slm_cli_tokenize(const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                          int *n) {
    slm_error err = {{0}};
    /* a guess first (tokens rarely outnumber bytes); the call says how many it needs when it is short */
    int cap = len < (1u << 20) ? (int)len + 16 : 1 << 20;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) {
            fprintf(stderr, "slm: out of memory for %d tokens\n", cap);
            return NULL;
        }
        slm_status s = slm_tokenize(m, text, len, add_special, parse_special, ids, cap, n, &err);
        if (!s) return ids;
        free(ids);
        if (s != SLM_ERR_CONTEXT || *n <= cap) {
            slm_cli_fail("cannot tokenize the text", s, &err);
            return NULL;
        }
        cap = *n;
    }
    fprintf(stderr, "slm: cannot tokenize the text: its length changed between two calls\n");
    return NULL;
}

/* A failed write to stdout was reported already: slm_cli_close_stdout does not say it twice. */
static bool stdout_failure_reported;

bool slm_cli_write(const char *text, size_t n) {
    if (!n) return true;
    /* errno of the failing call: a later flush may succeed or fail otherwise and hide the reason */
    errno = 0;
    if (fwrite(text, 1, n, stdout) == n && fflush(stdout) == 0) return true;
    fprintf(stderr, "slm: writing to stdout: %s\n", errno ? strerror(errno) : "write error");
    stdout_failure_reported = true;
    return false;
}

bool slm_cli_close_stdout(void) {
    int e = cli_close_stream(stdout);
    /* a stdout that cli_guard_std_fds made /dev/null, with nothing written to it, closes without complaint;
     * EBADF can only come from a descriptor closed behind stdio's back */
    if (!e) return true;
    if (!stdout_failure_reported) fprintf(stderr, "slm: writing to stdout: %s\n", strerror(e));
    return false;
}
