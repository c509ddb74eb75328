/* slm-bench command line: llama-bench's conventions (comma lists make one row per combination) plus the
 * synthetic-model, bandwidth, profile and sweep options. */
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli_number.h"

void bench_options_usage(FILE *f) {
    fprintf(f,
            "usage: slm-bench [options]\n"
            "\n"
            "model (repeatable; each is benchmarked in turn):\n"
            "  -m, --model FILE             a GGUF file\n"
            "  --synthetic SPEC             a synthetic model of a real shape with random weights, built in memory:\n"
            "                               llama3-1b:q4_0, llama3-3b:q4_k_m, llama3-8b:q4_k_m, qwen2.5-14b:q4_k_m,\n"
            "                               qwen3-0.6b:q4_k_m, qwen3-8b:q4_k_m, qwen3-14b:q4_k_m, phi4-14b:q4_k_m,\n"
            "                               custom:q4_0:n_layer=2:n_embd=256 (keys: n_layer n_embd\n"
            "                               n_head n_head_kv head_dim n_ff n_vocab n_ctx arch tied seed)\n"
            "  --write-synthetic FILE       write the synthetic model to FILE as GGUF and exit\n"
            "\n"
            "tests (lists: 1,2,3 or first-last+step; every combination is a row):\n"
            "  -p, --n-prompt LIST          prompt processing test sizes (default 512; 0 = none)\n"
            "  -n, --n-gen LIST             generation test sizes (default 128; 0 = none)\n"
            "  -r, --repetitions N          repetitions of each test (default 5)\n"
            "  -t, --threads LIST           CPU threads (default: all cores)\n"
            "  -ngl, --n-gpu-layers LIST    layers on the GPU: N, all, auto (default 0)\n"
            "  -dev, --device LIST          cpu, vulkan:N, cuda:N (default cpu; a GPU is picked when -ngl > 0)\n"
            "  -b, --batch-size LIST        largest batch per eval (default 512)\n"
            "  --parallel LIST              tg tests: this many sequences generate together in one context,\n"
            "                               each step one batched pass (default 1); t/s is their sum\n"
            "  -ctk, --cache-type-k LIST    K cache type: " BENCH_KV_TYPES " (default f16)\n"
            "  -ctv, --cache-type-v LIST    V cache type (default: each row's K type)\n"
            "  -d, --n-depth LIST           positions in the cache before each test (default 0): the cache is\n"
            "                               filled with that many prompt tokens once per row, untimed\n"
            "  -c, --ctx-size N             context (default: the largest -d plus the largest -p or -n, at\n"
            "                               least 16; each test starts from a context of -d positions)\n"
            "  --no-warmup                  no warm-up run before each test\n"
            "\n"
            "bandwidth and analysis:\n"
            "  --profile                    time every op of the decode steps on its own (per-op table)\n"
            "  --sweep-ngl                  run every GPU/CPU split point; predicted vs measured tokens/s\n"
            "  --svg FILE                   the sweep plot (default slm-bench-sweep.svg)\n"
            "  --vram-budget SIZE           plan each GPU as if it had SIZE of memory (4G, 512M): a smaller\n"
            "                               card on a large one; the sweep ends at the first split over it\n"
            "  --no-peak                    do not measure peak bandwidth (no %% of peak)\n"
            "  --peak-mib N                 buffer of the CPU peak read in MiB (default: 4x the last-level\n"
            "                               cache and at least 512, at most half the available memory)\n"
            "  --peak-gbps [DEV=]N          a device's peak read in GB/s (a datasheet figure) instead of the\n"
            "                               measured one; DEV defaults to cpu; repeat for several devices\n"
            "\n"
            "output:\n"
            "  -o, --output md|csv|json     format (default md)\n"
            "  --out FILE                   write to FILE instead of stdout\n"
            "  -v, --verbose                load messages and the plan on stderr\n"
            "  --seed N                     token ids of the runs\n"
            "  -h, --help\n");
}

slm_status bench_fail(slm_error *err, slm_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

bool bench_kv_type_supported(const char *name) {
    /* a whole-word match in the comma-separated BENCH_KV_TYPES */
    size_t n = strlen(name);
    for (const char *p = BENCH_KV_TYPES; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n)) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static void str_list_free(bench_str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    l->n = 0;
}

void bench_options_free(bench_options *o) {
    str_list_free(&o->models);
    str_list_free(&o->synthetic);
    str_list_free(&o->devices);
    str_list_free(&o->kv_types);
    str_list_free(&o->kv_types_v);
}

static slm_status push_int(bench_int_list *l, int v, const char *s, slm_error *err) {
    if (l->n == BENCH_MAX_LIST)
        return bench_fail(err, SLM_ERR_INVALID_ARG, "'%s': more than %d values", s, BENCH_MAX_LIST);
    l->v[l->n++] = v;
    return SLM_OK;
}

/* s[0..len) as a number in 0..INT_MAX, by the parser slm's own options use (tools/cli_number.h). */
static bool to_int(const char *s, size_t len, int *out) {
    char buf[32], why[96];
    long long v;
    /* a sign is not part of the list syntax ("-" separates a range), so digits only */
    if (!len || len >= sizeof buf || s[0] < '0' || s[0] > '9') return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (!cli_parse_int(buf, 0, INT_MAX, &v, why, sizeof why)) return false;
    *out = (int)v;
    return true;
}

slm_status bench_parse_int_list(const char *s, bool ngl_words, bench_int_list *l, slm_error *err) {
    if (!s || !*s) return bench_fail(err, SLM_ERR_INVALID_ARG, "empty list");
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int a, b, step = 1;
        const char *dash = memchr(p, '-', len);
        slm_status st;
        if (ngl_words && len == 3 && !strncmp(p, "all", 3)) {
            if ((st = push_int(l, SLM_NGL_ALL, s, err))) return st;
        } else if (ngl_words && len == 4 && !strncmp(p, "auto", 4)) {
            if ((st = push_int(l, SLM_NGL_AUTO, s, err))) return st;
        } else if (dash && dash > p) {
            /* first-last[+step] */
            const char *plus = memchr(dash, '+', len - (size_t)(dash - p));
            size_t blen = plus ? (size_t)(plus - dash - 1) : len - (size_t)(dash - p) - 1;
            if (!to_int(p, (size_t)(dash - p), &a) || !to_int(dash + 1, blen, &b) ||
                (plus && (!to_int(plus + 1, len - (size_t)(plus - p) - 1, &step) || step < 1)) || b < a)
                return bench_fail(err, SLM_ERR_INVALID_ARG, "'%.*s' in '%s' is not a range first-last[+step]", (int)len,
                                  p, s);
            for (int v = a; v <= b; v += step)
                if ((st = push_int(l, v, s, err))) return st;
        } else {
            if (!to_int(p, len, &a))
                return bench_fail(err, SLM_ERR_INVALID_ARG, "'%.*s' in '%s' is not a non-negative number%s", (int)len,
                                  p, s, ngl_words ? ", all or auto" : "");
            if ((st = push_int(l, a, s, err))) return st;
        }
        if (!e) break;
        p = e + 1;
        if (!*p) return bench_fail(err, SLM_ERR_INVALID_ARG, "'%s' ends with a comma", s);
    }
    return SLM_OK;
}

static slm_status parse_str_list(const char *s, bench_str_list *l, bool split, slm_error *err) {
    if (!s || !*s) return bench_fail(err, SLM_ERR_INVALID_ARG, "empty value");
    const char *p = s;
    for (;;) {
        const char *e = split ? strchr(p, ',') : NULL;
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len) return bench_fail(err, SLM_ERR_INVALID_ARG, "empty item in '%s'", s);
        if (l->n == BENCH_MAX_STR) return bench_fail(err, SLM_ERR_INVALID_ARG, "too many values ('%s')", s);
        l->v[l->n] = strndup(p, len);
        if (!l->v[l->n]) return bench_fail(err, SLM_ERR_NOMEM, "out of memory");
        l->n++;
        if (!e) return SLM_OK;
        p = e + 1;
    }
}

static void set_defaults(bench_options *o) {
    memset(o, 0, sizeof *o);
    o->reps = 5;
    o->warmup = true;
    o->format = BENCH_MD;
    o->svg_path = "slm-bench-sweep.svg";
    o->peak_mib = 0; /* sized from the cache and memory when the peak is measured */
    o->seed = 42;
}

static bool is_opt(const char *a, const char *s1, const char *s2) { return !strcmp(a, s1) || (s2 && !strcmp(a, s2)); }

/* The options that take a value (the flags are listed in bench_options_parse). */
static bool takes_value(const char *a) {
    static const char *const names[] = {"-m",
                                        "--model",
                                        "--synthetic",
                                        "--write-synthetic",
                                        "-p",
                                        "--n-prompt",
                                        "-n",
                                        "--n-gen",
                                        "-t",
                                        "--threads",
                                        "-ngl",
                                        "--n-gpu-layers",
                                        "-b",
                                        "--batch-size",
                                        "-dev",
                                        "--device",
                                        "-ctk",
                                        "--cache-type",
                                        "--cache-type-k",
                                        "-ctv",
                                        "--cache-type-v",
                                        "-d",
                                        "--n-depth",
                                        "-r",
                                        "--repetitions",
                                        "-c",
                                        "--ctx-size",
                                        "--peak-mib",
                                        "--peak-gbps",
                                        "--seed",
                                        "-o",
                                        "--output",
                                        "--out",
                                        "--svg",
                                        "--vram-budget",
                                        "--parallel",
                                        NULL};
    for (int k = 0; names[k]; k++)
        if (!strcmp(a, names[k])) return true;
    return false;
}

/* "[DEV=]N": N GB/s for device DEV ("cpu" when left out); a later figure for the same device replaces it. */
static slm_status parse_peak_given(const char *v, bench_options *o, slm_error *err) {
    const char *eq = strchr(v, '=');
    char spec[32] = "cpu";
    if (eq) {
        if (eq == v || (size_t)(eq - v) >= sizeof spec)
            return bench_fail(err, SLM_ERR_INVALID_ARG, "'%s': expected DEV=GBPS (cpu=40, cuda:0=4800) or GBPS", v);
        snprintf(spec, sizeof spec, "%.*s", (int)(eq - v), v);
    }
    const char *num = eq ? eq + 1 : v;
    double gbps;
    char why[96];
    if (!cli_parse_double(num, &gbps, why, sizeof why))
        return bench_fail(err, SLM_ERR_INVALID_ARG, "'%s' is %s", num, why);
    if (!(gbps > 0) || gbps > 1e6) return bench_fail(err, SLM_ERR_INVALID_ARG, "'%s': GB/s must be above 0", num);
    int k = 0;
    while (k < o->n_peak_given && strcmp(o->peak_given[k].spec, spec)) k++;
    if (k == (int)(sizeof o->peak_given / sizeof o->peak_given[0]))
        return bench_fail(err, SLM_ERR_INVALID_ARG, "at most %d devices", k);
    if (k == o->n_peak_given) o->n_peak_given++;
    snprintf(o->peak_given[k].spec, sizeof o->peak_given[k].spec, "%s", spec);
    o->peak_given[k].bytes_per_s = gbps * 1e9;
    return SLM_OK;
}

slm_status bench_options_parse(int argc, char **argv, bench_options *o, slm_error *err) {
    set_defaults(o);
    slm_status st = SLM_OK;
    /* lists given on the command line replace the defaults, and repeated options append */
    for (int i = 1; i < argc && !st; i++) {
        const char *a = argv[i];
#define IS(s1, s2) is_opt(a, s1, s2)
        bool flag = IS("-h", "--help") || IS("--profile", NULL) || IS("--sweep-ngl", NULL) || IS("--no-warmup", NULL) ||
            IS("-v", "--verbose") || IS("--no-peak", NULL);
        /* an unknown option is named as such, also as the last argument (not as one missing its value) */
        if (!flag && !takes_value(a))
            return bench_fail(err, SLM_ERR_INVALID_ARG, "unknown option '%s' (see --help)", a);
        const char *v = NULL;
        if (!flag) {
            if (i + 1 >= argc) return bench_fail(err, SLM_ERR_INVALID_ARG, "option %s needs a value", a);
            v = argv[++i];
            /* an empty file name or format is a mistake, not a default (lists say so themselves) */
            if (!*v) return bench_fail(err, SLM_ERR_INVALID_ARG, "%s: the value is empty", a);
        }
        if (IS("-h", "--help")) o->help = true;
        else if (IS("--profile", NULL)) o->profile = true;
        else if (IS("--sweep-ngl", NULL)) o->sweep_ngl = true;
        else if (IS("--no-warmup", NULL)) o->warmup = false;
        else if (IS("--no-peak", NULL)) o->no_peak = true;
        else if (IS("-v", "--verbose")) o->verbose = true;
        else if (IS("-m", "--model")) st = parse_str_list(v, &o->models, false, err);
        else if (IS("--synthetic", NULL)) st = parse_str_list(v, &o->synthetic, true, err);
        else if (IS("--write-synthetic", NULL)) o->write_synthetic = v;
        else if (IS("-p", "--n-prompt")) st = bench_parse_int_list(v, false, &o->n_prompt, err);
        else if (IS("-n", "--n-gen")) st = bench_parse_int_list(v, false, &o->n_gen, err);
        else if (IS("-t", "--threads")) st = bench_parse_int_list(v, false, &o->threads, err);
        else if (IS("-ngl", "--n-gpu-layers")) st = bench_parse_int_list(v, true, &o->n_gpu_layers, err);
        else if (IS("-b", "--batch-size")) st = bench_parse_int_list(v, false, &o->n_batch, err);
        else if (IS("--parallel", NULL)) st = bench_parse_int_list(v, false, &o->parallel, err);
        else if (IS("-dev", "--device")) st = parse_str_list(v, &o->devices, true, err);
        else if (IS("-d", "--n-depth")) st = bench_parse_int_list(v, false, &o->depths, err);
        else if (IS("-ctk", "--cache-type-k") || IS("--cache-type", "-ctv") || IS("--cache-type-v", NULL)) {
            /* rejected here rather than as error rows at run time: a name the engine does not have */
            bench_str_list *l = IS("-ctv", "--cache-type-v") ? &o->kv_types_v : &o->kv_types;
            int first = l->n;
            st = parse_str_list(v, l, true, err);
            for (int k = first; k < l->n && !st; k++)
                if (!bench_kv_type_supported(l->v[k]))
                    st = bench_fail(err, SLM_ERR_INVALID_ARG, "KV cache type '%s' is not supported (supported: %s)",
                                    l->v[k], BENCH_KV_TYPES);
        } else if (IS("--seed", NULL)) {
            char why[96];
            if (!cli_parse_u64(v, &o->seed, why, sizeof why))
                st = bench_fail(err, SLM_ERR_INVALID_ARG, "'%s' is %s", v, why);
        } else if (IS("-r", "--repetitions") || IS("-c", "--ctx-size") || IS("--peak-mib", NULL)) {
            char why[96];
            long long x;
            /* -r and -c count from 1; --peak-mib 0 means "sized automatically" and below 16 is refused later */
            bool from1 = !IS("--peak-mib", NULL);
            if (!cli_parse_int(v, from1, INT_MAX, &x, why, sizeof why))
                st = bench_fail(err, SLM_ERR_INVALID_ARG, "'%s' is %s", v, why);
            else if (IS("-r", "--repetitions")) o->reps = (int)x;
            else if (IS("-c", "--ctx-size")) o->n_ctx = (int)x;
            else o->peak_mib = (int)x;
        } else if (IS("--peak-gbps", NULL)) {
            st = parse_peak_given(v, o, err);
        } else if (IS("--vram-budget", NULL)) {
            char why[96] = "";
            if (!cli_parse_size(v, &o->vram_budget, why, sizeof why) || o->vram_budget == 0)
                st = bench_fail(err, SLM_ERR_INVALID_ARG, "--vram-budget '%s' is %s", v,
                                o->vram_budget == 0 && !why[0] ? "zero" : why);
        } else if (IS("-o", "--output")) {
            if (!strcmp(v, "md")) o->format = BENCH_MD;
            else if (!strcmp(v, "csv")) o->format = BENCH_CSV;
            else if (!strcmp(v, "json")) o->format = BENCH_JSON;
            else st = bench_fail(err, SLM_ERR_INVALID_ARG, "-o %s: the formats are md, csv and json", v);
        } else if (IS("--out", NULL)) o->out_path = v;
        else if (IS("--svg", NULL)) o->svg_path = v;
        else st = bench_fail(err, SLM_ERR_INVALID_ARG, "unknown option '%s' (see --help)", a);
#undef IS
        if (st && !err) break;
        if (st && err && strncmp(err->msg, a, strlen(a))) {
            /* name the option in the message */
            char tmp[sizeof err->msg];
            snprintf(tmp, sizeof tmp, "%.40s: %.400s", a, err->msg);
            snprintf(err->msg, sizeof err->msg, "%s", tmp);
        }
    }
    if (st) return st;
    if (o->help) return SLM_OK;
    if (o->reps < 1) return bench_fail(err, SLM_ERR_INVALID_ARG, "-r must be at least 1");
    if (o->peak_mib && o->peak_mib < 16) return bench_fail(err, SLM_ERR_INVALID_ARG, "--peak-mib must be at least 16");
    if (!o->models.n && !o->synthetic.n)
        return bench_fail(err, SLM_ERR_INVALID_ARG, "no model: give -m FILE or --synthetic SPEC");
    if (o->write_synthetic && !o->synthetic.n)
        return bench_fail(err, SLM_ERR_INVALID_ARG, "--write-synthetic needs --synthetic SPEC");
    if (!o->n_prompt.n) push_int(&o->n_prompt, 512, "", NULL);
    if (!o->n_gen.n) push_int(&o->n_gen, 128, "", NULL);
    if (!o->threads.n) push_int(&o->threads, 0, "", NULL); /* 0: all cores, resolved at run time */
    if (!o->n_batch.n) push_int(&o->n_batch, 512, "", NULL);
    for (int i = 0; i < o->n_batch.n; i++)
        if (o->n_batch.v[i] < 1) return bench_fail(err, SLM_ERR_INVALID_ARG, "-b: batch sizes must be at least 1");
    if (!o->parallel.n) push_int(&o->parallel, 1, "", NULL);
    for (int i = 0; i < o->parallel.n; i++)
        if (o->parallel.v[i] < 1 || o->parallel.v[i] > SLM_MAX_SEQS)
            return bench_fail(err, SLM_ERR_INVALID_ARG, "--parallel: 1 to %d sequences", SLM_MAX_SEQS);
    if (!o->devices.n) parse_str_list("cpu", &o->devices, false, NULL);
    if (!o->n_gpu_layers.n) {
        /* a named GPU device without -ngl means all layers on it */
        bool gpu = false;
        for (int i = 0; i < o->devices.n; i++) gpu |= strncmp(o->devices.v[i], "cpu", 3) != 0;
        push_int(&o->n_gpu_layers, gpu ? SLM_NGL_ALL : 0, "", NULL);
    }
    if (!o->kv_types.n) parse_str_list("f16", &o->kv_types, false, NULL);
    if (!o->depths.n) push_int(&o->depths, 0, "", NULL);
    bool any = false;
    for (int i = 0; i < o->n_prompt.n; i++) any |= o->n_prompt.v[i] > 0;
    for (int i = 0; i < o->n_gen.n; i++) any |= o->n_gen.v[i] > 0;
    if (!any && !o->write_synthetic && !o->profile)
        return bench_fail(err, SLM_ERR_INVALID_ARG, "nothing to run: every -p and -n is 0");
    return SLM_OK;
}
