/* slm-bench: option parsing, bytes per token by hand for a small shape, statistics, well-formed JSON / CSV /
 * markdown / SVG, and one pp and tg run on a small synthetic model (values, never timings). */
#include <stdlib.h>
#include <string.h>

#include "../bench/bench.h"
#include "arch.h"
#include "gguf.h"
#include "model.h"
#include "synth_gguf.h"
#include "test_util.h"

/* Built by cmake/bench.cmake, test_bench links the bench library (SLM_BENCH_LIB); built by the plain tests
 * glob, which links only slm, it compiles the library files in itself. */
#ifndef SLM_BENCH_LIB
#include "../bench/bench_account.c"
#include "../bench/bench_bandwidth.c"
#include "../bench/bench_options.c"
#include "../bench/bench_profile.c"
#include "../bench/bench_report.c"
#include "../bench/bench_run.c"
#include "../bench/bench_svg.c"
#include "../bench/bench_sysinfo.c"
#endif

/* ---- option parsing ---- */

static slm_status parse(bench_options *o, slm_error *err, const char *line) {
    char buf[512];
    char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    argv[argc++] = "slm-bench";
    for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    return bench_options_parse(argc, argv, o, err);
}

static void test_options(void) {
    bench_options o;
    slm_error err = {{0}};
    CHECK(parse(&o, &err, "-m a.gguf -p 512 -n 128 -r 3 -t 1,2 -ngl 0,8,16,all -b 256,512 -o json") == SLM_OK,
          "parse: %s", err.msg);
    CHECK(o.models.n == 1 && !strcmp(o.models.v[0], "a.gguf"), "model");
    CHECK(o.n_prompt.n == 1 && o.n_prompt.v[0] == 512 && o.n_gen.n == 1 && o.n_gen.v[0] == 128, "p/n");
    CHECK(o.reps == 3 && o.format == BENCH_JSON, "reps/format");
    CHECK(o.threads.n == 2 && o.threads.v[0] == 1 && o.threads.v[1] == 2, "threads");
    CHECK(o.n_gpu_layers.n == 4 && o.n_gpu_layers.v[2] == 16 && o.n_gpu_layers.v[3] == SLM_NGL_ALL, "ngl list");
    CHECK(o.n_batch.n == 2 && o.n_batch.v[1] == 512, "batch");
    CHECK(o.devices.n == 1 && !strcmp(o.devices.v[0], "cpu") && o.kv_types.n == 1 && !strcmp(o.kv_types.v[0], "f16"),
          "default device and KV type");
    bench_options_free(&o);

    /* defaults */
    CHECK(parse(&o, &err, "--synthetic llama3-1b:q4_0,custom:q8_0") == SLM_OK, "parse: %s", err.msg);
    CHECK(o.synthetic.n == 2 && !strcmp(o.synthetic.v[1], "custom:q8_0"), "synthetic list");
    CHECK(o.n_prompt.v[0] == 512 && o.n_gen.v[0] == 128 && o.reps == 5 && o.format == BENCH_MD, "defaults");
    CHECK(o.n_gpu_layers.n == 1 && o.n_gpu_layers.v[0] == 0 && o.threads.n == 1 && o.threads.v[0] == 0, "defaults 2");
    CHECK(o.warmup && !o.profile && !o.sweep_ngl && o.peak_mib == 0, "flags (peak buffer sized at run time)");
    bench_options_free(&o);

    /* --peak-gbps: the CPU's when no device is named, a later figure replaces an earlier one */
    CHECK(parse(&o, &err, "-m x --peak-gbps 40 --peak-gbps cuda:0=4800.5 --peak-gbps cpu=41.5") == SLM_OK, "parse: %s",
          err.msg);
    CHECK(o.n_peak_given == 2 && !strcmp(o.peak_given[0].spec, "cpu") && o.peak_given[0].bytes_per_s == 41.5e9 &&
              !strcmp(o.peak_given[1].spec, "cuda:0") && o.peak_given[1].bytes_per_s == 4800.5e9,
          "--peak-gbps list");
    bench_options_free(&o);
    const char *bad_peaks[] = {"0", "-3", "=5", "cpu=", "fast", "cpu=nan"};
    for (size_t k = 0; k < sizeof bad_peaks / sizeof bad_peaks[0]; k++) {
        char line[64];
        snprintf(line, sizeof line, "-m x --peak-gbps %s", bad_peaks[k]);
        err.msg[0] = 0;
        CHECK(parse(&o, &err, line) != SLM_OK && strstr(err.msg, "--peak-gbps"), "%s: '%s'", line, err.msg);
        bench_options_free(&o);
    }

    /* a GPU device without -ngl puts every layer on it; ranges, auto, flags */
    CHECK(parse(&o, &err, "-m x -dev cuda:0 -p 0 -n 1-4+1,64 --profile --sweep-ngl --svg s.svg --no-warmup -o csv") ==
              SLM_OK,
          "parse: %s", err.msg);
    CHECK(o.n_gpu_layers.n == 1 && o.n_gpu_layers.v[0] == SLM_NGL_ALL, "dev implies ngl all");
    CHECK(o.n_gen.n == 5 && o.n_gen.v[0] == 1 && o.n_gen.v[3] == 4 && o.n_gen.v[4] == 64, "range list");
    CHECK(o.profile && o.sweep_ngl && !o.warmup && !strcmp(o.svg_path, "s.svg") && o.format == BENCH_CSV, "flags 2");
    bench_options_free(&o);

    bench_int_list l = {{0}, 0};
    CHECK(bench_parse_int_list("0-32+8", false, &l, &err) == SLM_OK && l.n == 5 && l.v[4] == 32 && l.v[1] == 8,
          "0-32+8");
    l.n = 0;
    CHECK(bench_parse_int_list("auto,4", true, &l, &err) == SLM_OK && l.n == 2 && l.v[0] == SLM_NGL_AUTO, "auto");

    const char *bad[] = {
        "",                              /* no model */
        "-m x -p",                       /* missing value */
        "-m x -p 1,,2",                  /* empty item */
        "-m x -p 12a",                   /* not a number */
        "-m x -t all",                   /* words only for -ngl */
        "-m x -o xml",                   /* format */
        "-m x --frobnicate",             /* unknown */
        "-m x -r 0",                     /* reps */
        "-m x -r 1,2",                   /* one number */
        "-m x -p 5-1",                   /* empty range */
        "-m x -p 0 -n 0",                /* nothing to run */
        "-m x -b 0",                     /* batch */
        "--write-synthetic f.gguf -m x", /* needs --synthetic */
        "-m x --peak-mib 8",             /* too small a buffer to measure anything */
        "-m x -ctk q5_0",                /* not a KV cache type the engine has */
        "-m x -ctk f16,q4_1",            /* one bad item spoils the list */
        "-m x -ctk f1",                  /* no prefix match */
        "-m x -ctv q8",                  /* -ctv likewise */
        "-m x -d -1",                    /* depth */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        CHECK(parse(&o, &err, bad[i]) == SLM_ERR_INVALID_ARG && err.msg[0], "'%s' must be rejected", bad[i]);
        bench_options_free(&o);
    }
    CHECK(parse(&o, &err, "-h") == SLM_OK && o.help, "help needs no model");
    bench_options_free(&o);

    /* an unsupported KV type is a usage error naming the type and the supported ones */
    err.msg[0] = 0;
    CHECK(parse(&o, &err, "-m x -ctk q5_0") == SLM_ERR_INVALID_ARG && strstr(err.msg, "'q5_0'") &&
              strstr(err.msg, "supported: f16,q8_0,q4_0") && strstr(err.msg, "-ctk"),
          "KV type message: %s", err.msg);
    bench_options_free(&o);
    CHECK(parse(&o, &err, "-m x -ctk f16,q8_0 -ctv q4_0 -d 0,4096,16384") == SLM_OK && o.kv_types.n == 2 &&
              !strcmp(o.kv_types.v[1], "q8_0") && o.kv_types_v.n == 1 && !strcmp(o.kv_types_v.v[0], "q4_0") &&
              o.depths.n == 3 && o.depths.v[2] == 16384,
          "K and V type lists, depths: %s", err.msg);
    bench_options_free(&o);
    CHECK(parse(&o, &err, "-m x") == SLM_OK && o.depths.n == 1 && o.depths.v[0] == 0 && o.kv_types_v.n == 0,
          "default depth 0, V types follow K: %s", err.msg);
    bench_options_free(&o);
    CHECK(parse(&o, &err, "-m x --cache-type f16,f16 --peak-mib 64") == SLM_OK && o.kv_types.n == 2 &&
              !strcmp(o.kv_types.v[1], "f16") && o.peak_mib == 64,
          "f16 twice, peak buffer: %s", err.msg);
    bench_options_free(&o);
    CHECK(bench_kv_type_supported("f16") && bench_kv_type_supported("q8_0") && bench_kv_type_supported("q4_0") &&
              !bench_kv_type_supported("") && !bench_kv_type_supported("f16x") && !bench_kv_type_supported("q8") &&
              !bench_kv_type_supported("q4_1"),
          "KV type table");
}

/* ---- the peak read's buffer and the device label ---- */

static void test_peak_buffer(void) {
    const uint64_t MiB = 1ull << 20, GiB = 1ull << 30;
    /* max(512 MiB, 4 x LLC), at most half the available memory, at least 16 MiB */
    CHECK(bench_default_peak_mib(0, 0) == 512, "nothing known: %d", bench_default_peak_mib(0, 0));
    CHECK(bench_default_peak_mib(32 * MiB, 64 * GiB) == 512, "small LLC: %d",
          bench_default_peak_mib(32 * MiB, 64 * GiB));
    CHECK(bench_default_peak_mib(480 * MiB, 22 * GiB) == 1920, "480 MiB LLC: %d",
          bench_default_peak_mib(480 * MiB, 22 * GiB));
    CHECK(bench_default_peak_mib(200 * MiB + 1, 0) == 801, "rounded up to whole MiB: %d",
          bench_default_peak_mib(200 * MiB + 1, 0));
    CHECK(bench_default_peak_mib(480 * MiB, 2 * GiB) == 1024, "capped by memory: %d",
          bench_default_peak_mib(480 * MiB, 2 * GiB));
    CHECK(bench_default_peak_mib(0, 20 * MiB) == 16, "floor: %d", bench_default_peak_mib(0, 20 * MiB));
    /* this machine: the sysinfo default follows the same rule from what sysfs says */
    bench_sysinfo si;
    bench_sysinfo_collect(&si);
    CHECK(si.llc_bytes == bench_llc_bytes() && si.peak_mib >= 16 &&
              (si.peak_mib >= 512 || bench_available_bytes() / 2 < 512 * MiB),
          "sysinfo: llc %llu, peak buffer %d MiB", (unsigned long long)si.llc_bytes, si.peak_mib);
    CHECK(!strcmp(bench_device_name_tail("vulkan:0 llvmpipe (LLVM 15)", "vulkan:0"), "llvmpipe (LLVM 15)") &&
              !strcmp(bench_device_name_tail("vulkan:01 x", "vulkan:0"), "vulkan:01 x") &&
              !strcmp(bench_device_name_tail("cuda:0", "cuda:0"), "cuda:0"),
          "device name tail");
}

static void test_format_double(void) {
    char buf[40];
    bench_format_double(buf, sizeof buf, 12.5);
    CHECK(!strcmp(buf, "12.5"), "12.5 -> %s", buf);
    bench_format_double(buf, sizeof buf, 949904.0);
    CHECK(!strcmp(buf, "949904"), "an integral value prints as an integer: %s", buf);
    bench_format_double(buf, sizeof buf, 0.1);
    CHECK(!strcmp(buf, "0.1"), "0.1 -> %s", buf);
    const double vals[] = {1.0 / 3.0, 9007199254740993.0, 1e-300, 123456.789012345678, 2.0 / 3.0 * 1e9};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        bench_format_double(buf, sizeof buf, vals[i]);
        CHECK(strtod(buf, NULL) == vals[i], "%.17g printed as %s does not read back", vals[i], buf);
    }
}

static void test_stats(void) {
    double x[] = {1, 2, 3, 4};
    bench_stats s = bench_stats_of(x, 4);
    CHECK(fabs(s.mean - 2.5) < 1e-12 && fabs(s.sd - 1.2909944487358056) < 1e-9, "mean %g sd %g", s.mean, s.sd);
    s = bench_stats_of(x, 1);
    CHECK(s.mean == 1 && s.sd == 0, "one sample");
}

/* ---- bytes per token, by hand ----
 * custom:q4_0 = llama, 2 layers, n_embd 256, 4 heads of 64, 2 KV heads, n_ff 512, vocab 1024, untied.
 * Q4_0: 18 bytes per 32 -> a row of 256 is 144 B, of 512 is 288 B. Q6_K: 210 bytes per 256.
 *   attn_q   256 rows x 144 = 36864      attn_k  128 x 144 = 18432    attn_v 18432
 *   attn_out 256 x 144      = 36864      gate    512 x 144 = 73728    up     73728
 *   down     256 x 288      = 73728      norms   2 x 256 x 4 = 2048
 *   layer = 333824, two layers = 667648
 *   output   1024 x 210 = 215040 (Q6_K), output_norm 1024, one token_embd row 144
 *   weights = 667648 + 215040 + 1024 + 144 = 883856
 *   KV per cached position: 2 (K, V) x 2 layers x 128 x 2 B (f16) = 1024
 * tg128 from an empty cache attends 1..128 positions, 64.5 on average: 883856 + 64.5 * 1024 = 949904. */
#define HAND_WEIGHTS 883856.0
#define HAND_KV 1024.0

/* The same bytes from the GGUF tensor directory alone, independently of the engine's placement (every tensor
 * on the host; rope_freqs excluded, the embedding counted as one row, plus the whole matrix when it is also
 * the output head). kv_type_bytes: bytes per cached element (2 for f16). */
static void file_bytes(const slm_gguf *g, int kv_type_bytes, bench_bytes *out) {
    memset(out, 0, sizeof *out);
    bool has_output = slm_gguf_find_tensor(g, "output.weight") != NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        if (slm_gguf_str_eq(t->name, "rope_freqs.weight")) continue; /* a few floats, kept by the rope op */
        if (slm_gguf_str_eq(t->name, "token_embd.weight")) {
            out->weights += t->size / (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]); /* one row */
            if (!has_output) out->weights += t->size;                             /* tied: it is the head */
            continue;
        }
        out->weights += t->size;
    }
    slm_hparams hp;
    if (slm_arch_read_hparams(g, &hp, NULL) == SLM_OK)
        out->kv_per_pos =
            2ull * (uint64_t)hp.n_layer * (uint64_t)hp.n_head_kv * (uint64_t)hp.head_dim * (uint64_t)kv_type_bytes;
    out->dev_weights[0] = out->weights;
    out->dev_kv_per_pos[0] = out->kv_per_pos;
}

static void test_accounting(void) {
    slm_synth_spec s;
    slm_error err = {{0}};
    CHECK(slm_synth_parse("custom:q4_0", &s, &err) == SLM_OK, "%s", err.msg);
    slm_gguf *g = NULL;
    void *data = NULL;
    CHECK(slm_synth_open(&s, 2, &g, &data, &err) == SLM_OK, "build: %s", err.msg);
    if (!g) return;
    bench_bytes b;
    file_bytes(g, 2, &b);
    CHECK(b.weights == (uint64_t)HAND_WEIGHTS, "weights %llu, by hand 883856", (unsigned long long)b.weights);
    CHECK(b.kv_per_pos == (uint64_t)HAND_KV, "kv %llu, by hand 1024", (unsigned long long)b.kv_per_pos);
    CHECK(fabs(bench_kv_mean_positions(0, 128) - 64.5) < 1e-12, "mean position");
    CHECK(fabs(bench_kv_mean_positions(100, 1) - 101) < 1e-12, "one token after 100 sees 101 positions");
    CHECK(fabs(bench_bytes_per_token(&b, -1, 0, 128) - 949904.0) < 1e-6, "tg128 bytes %.1f",
          bench_bytes_per_token(&b, -1, 0, 128));

    /* the engine's placement (slm_model_plan_info, what bench reads) gives the same bytes as the file */
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = 64;
    slm_model *m = NULL;
    CHECK(slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK, "load: %s", err.msg);
    if (m) {
        bench_bytes bm;
        slm_plan_info pi = slm_model_plan_info(m);
        bench_bytes_from_plan(&pi, slm_model_kv_read_bytes(m), &bm);
        CHECK(bm.weights == b.weights && bm.weights == (uint64_t)HAND_WEIGHTS && bm.dev_weights[0] == bm.weights,
              "model weights %llu, file %llu", (unsigned long long)bm.weights, (unsigned long long)b.weights);
        CHECK(bm.kv_per_pos == b.kv_per_pos && bm.kv_per_pos == (uint64_t)HAND_KV, "model kv %llu",
              (unsigned long long)bm.kv_per_pos);
        slm_context *c = NULL;
        if (slm_context_create(m, &c, &err) == SLM_OK) {
            slm_perf pf = slm_context_perf(c);
            CHECK(pf.bytes_per_token == (uint64_t)HAND_WEIGHTS, "engine's bytes_per_token %llu",
                  (unsigned long long)pf.bytes_per_token);
            slm_context_free(c);
        }

        /* one pp and one tg run: the rows are filled with the values the accounting gives */
        bench_options o;
        CHECK(parse(&o, &err, "--synthetic custom:q4_0 -r 2 --no-peak") == SLM_OK, "%s", err.msg);
        bench_sysinfo si;
        bench_sysinfo_collect(&si);
        bench_row row;
        memset(&row, 0, sizeof row);
        row.kind = BENCH_PP;
        row.n_tokens = 8;
        row.n_batch = 512;
        row.threads = 2;
        bench_run_test(m, &o, &si, &row);
        CHECK(row.ok && row.reps == 2 && row.ts_mean > 0 && row.bytes_per_token == 0, "pp row: %s", row.error);
        memset(&row, 0, sizeof row);
        row.kind = BENCH_TG;
        row.n_tokens = 4;
        row.n_batch = 512;
        row.threads = 2;
        bench_run_test(m, &o, &si, &row);
        /* tg4: 2.5 positions on average */
        CHECK(row.ok && row.ts_mean > 0, "tg row: %s", row.error);
        CHECK(fabs(row.bytes_per_token - (HAND_WEIGHTS + 2.5 * HAND_KV)) < 1e-6, "tg4 bytes %.1f", row.bytes_per_token);
        CHECK(fabs(row.gbps - row.bytes_per_token * row.ts_mean / 1e9) < 1e-9, "GB/s = bytes x t/s");
        CHECK(row.pct_peak == 0, "no peak measured, no %% of peak");
        memset(&row, 0, sizeof row);
        row.kind = BENCH_PP;
        row.n_tokens = 65; /* the context is 64 */
        row.n_batch = 512;
        bench_run_test(m, &o, &si, &row);
        CHECK(!row.ok && row.error[0], "a test larger than the context is an error row");
        bench_options_free(&o);
        slm_model_free(m);
    }
    free(data);

    /* tied: the embedding matrix (Q6_K, as the head) is read whole, plus the row of the lookup */
    CHECK(slm_synth_parse("custom:q4_0:tied=1", &s, &err) == SLM_OK, "%s", err.msg);
    CHECK(slm_synth_open(&s, 2, &g, &data, &err) == SLM_OK, "build: %s", err.msg);
    if (g) {
        file_bytes(g, 2, &b);
        CHECK(b.weights == 667648 + 1024 + 215040 + 210, "tied weights %llu", (unsigned long long)b.weights);
        slm_model *mt = NULL;
        CHECK(slm_model_load_gguf(g, &p, NULL, &mt, &err) == SLM_OK, "load tied: %s", err.msg);
        if (mt) {
            slm_plan_info pi = slm_model_plan_info(mt);
            bench_bytes bm;
            bench_bytes_from_plan(&pi, slm_model_kv_read_bytes(mt), &bm);
            CHECK(bm.weights == b.weights, "tied: the engine reads %llu, the file says %llu",
                  (unsigned long long)bm.weights, (unsigned long long)b.weights);
            slm_model_free(mt);
        }
        /* the model took g, loaded or not */
    }
    free(data);

    /* a split placement: each device's weights, and the KV cache by its layers (1 of 4 on the CPU) */
    slm_plan_info pi;
    memset(&pi, 0, sizeof pi);
    pi.n_devices = 2;
    pi.device[0].read_bytes_per_token = 1000;
    pi.device[0].n_layers = 1;
    pi.device[1].read_bytes_per_token = 3000;
    pi.device[1].n_layers = 3;
    bench_bytes_from_plan(&pi, 1024, &b);
    CHECK(b.weights == 4000 && b.kv_per_pos == 1024 && b.dev_weights[1] == 3000 && b.dev_kv_per_pos[0] == 256,
          "split: %llu %llu", (unsigned long long)b.weights, (unsigned long long)b.kv_per_pos);
    CHECK(bench_bytes_per_token(&b, 1, 0, 4) == 3000 + 2.5 * 768 && bench_bytes_per_token(&b, 2, 0, 4) == 0 &&
              bench_bytes_per_token(&b, -1, 0, 4) == 4000 + 2.5 * 1024,
          "per-device bytes per token");
}

/* ---- output formats ---- */

/* A minimal JSON validator (RFC 8259 grammar, no semantics): returns the end of the value or NULL. */
static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}
static const char *jvalue(const char *p, int depth);
static const char *jstring(const char *p) {
    if (*p++ != '"') return NULL;
    while (*p && *p != '"') {
        if ((unsigned char)*p < 0x20) return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) return NULL;
        }
        p++;
    }
    return *p == '"' ? p + 1 : NULL;
}
static const char *jnumber(const char *p) {
    const char *s = p;
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9') p++;
    else return NULL;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return NULL;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return NULL;
        while (*p >= '0' && *p <= '9') p++;
    }
    return p > s ? p : NULL;
}
static const char *jvalue(const char *p, int depth) {
    if (depth > 32) return NULL;
    p = ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (obj) {
                p = jstring(ws(p));
                if (!p) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            p = jvalue(p, depth + 1);
            if (!p) return NULL;
            p = ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"') return jstring(p);
    if (!strncmp(p, "true", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    if (!strncmp(p, "null", 4)) return p + 4;
    return jnumber(p);
}
static bool json_valid(const char *s) {
    const char *e = jvalue(s, 0);
    return e && !*ws(e);
}

/* CSV fields of one line, honouring quotes; returns the count and copies field i into out. */
static int csv_fields(const char *line, int want, char *out, size_t out_len) {
    int n = 0;
    size_t o = 0;
    bool q = false;
    if (out_len) out[0] = 0;
    for (const char *p = line;; p++) {
        if (q) {
            if (*p == '"' && p[1] == '"') {
                if (n == want && o + 1 < out_len) out[o++] = '"';
                p++;
            } else if (*p == '"') q = false;
            else if (!*p) return -1; /* unterminated */
            else if (n == want && o + 1 < out_len) out[o++] = *p;
            continue;
        }
        if (*p == '"') q = true;
        else if (*p == ',' || *p == 0) {
            if (n == want && out_len) out[o] = 0;
            n++;
            if (!*p) return n;
        } else if (n == want && o + 1 < out_len) out[o++] = *p;
    }
}

static void make_rows(bench_results *r) {
    bench_row *w = bench_results_add(r);
    snprintf(w->model, sizeof w->model, "weird \"name\", with\\ | pipes\nand a newline");
    snprintf(w->model_type, sizeof w->model_type, "llama 1.24B Q4_0");
    snprintf(w->device, sizeof w->device, "cpu");
    snprintf(w->kv_type, sizeof w->kv_type, "q8_0");
    snprintf(w->kv_type_v, sizeof w->kv_type_v, "q4_0");
    w->n_depth = 4096;
    w->model_bytes = 773000000;
    w->model_params = 1235814400;
    w->threads = 2;
    w->n_batch = 512;
    w->kind = BENCH_TG;
    w->n_tokens = 128;
    w->ok = true;
    w->reps = 5;
    w->ts_mean = 12.5;
    w->ts_sd = 0.25;
    w->bytes_per_token = 949904;
    w->gbps = 0.011873;
    w->pct_peak = 61.5;
    w = bench_results_add(r);
    snprintf(w->model, sizeof w->model, "second");
    snprintf(w->device, sizeof w->device, "none");
    w->n_gpu_layers = SLM_NGL_ALL;
    w->kind = BENCH_PP;
    w->n_tokens = 512;
    w->ok = false;
    snprintf(w->error, sizeof w->error, "no GPU device for -ngl all (backends in this build: cpu)");
}

static char *capture_begin(FILE **f, char **buf, size_t *len) {
    *f = open_memstream(buf, len);
    return *buf;
}

static void test_formats(void) {
    bench_results r = {0};
    make_rows(&r);
    bench_sysinfo si;
    bench_sysinfo_collect(&si);
    snprintf(si.cpu, sizeof si.cpu, "CPU \"quoted\"\tname");
    si.n_dev = 1;
    snprintf(si.dev[0].spec, sizeof si.dev[0].spec, "cpu");
    snprintf(si.dev[0].name, sizeof si.dev[0].name, "cpu, 2 threads");
    si.dev[0].peak = 12.34e9;
    si.dev[0].spread = 0.5e9;
    si.dev[0].n_kernels = 8;
    snprintf(si.dev[0].kernel, sizeof si.dev[0].kernel, "avx512, 4 streams, prefetch, 2 threads");
    si.dev[0].threads = 2;
    si.dev[0].buffer_mib = 1920;
    FILE *f;
    char *buf = NULL;
    size_t len = 0;

    capture_begin(&f, &buf, &len);
    bench_report_json(f, &si, &r);
    fclose(f);
    CHECK(json_valid(buf), "JSON is not well formed:\n%s", buf);
    CHECK(strstr(buf, "\"avg_ts\": 12.5,") && strstr(buf, "\"n_gpu_layers\": \"all\"") &&
              strstr(buf, "\"peak_gbps\": 12.34,") && strstr(buf, "\"peak_spread_gbps\": 0.5,") &&
              strstr(buf, "\"peak_source\": \"measured\"}") && strstr(buf, "\"ok\": false") &&
              strstr(buf, "\"buffer_mib\": 1920,") && strstr(buf, "\"peak_exceeded\": false"),
          "JSON values:\n%s", buf);
    /* counts and byte sizes exactly, never 7.73e+08 */
    CHECK(strstr(buf, "\"size_bytes\": 773000000,") && strstr(buf, "\"params\": 1235814400,") &&
              strstr(buf, "\"bytes_per_token\": 949904,") && strstr(buf, "\"gbps\": 0.011873,") &&
              strstr(buf, "\"n_tokens\": 128,") && !strstr(buf, "e+"),
          "JSON numbers:\n%s", buf);
    CHECK(json_valid("{\"a\": [1, 2.5e3, \"x\\n\"], \"b\": null}") && !json_valid("{\"a\": 1,}") &&
              !json_valid("{\"a\": \"\n\"}") && !json_valid("[1 2]"),
          "the validator itself");
    free(buf);
    bench_results empty = {0};
    capture_begin(&f, &buf, &len);
    bench_report_json(f, &si, &empty);
    fclose(f);
    CHECK(json_valid(buf), "empty JSON:\n%s", buf);
    free(buf);

    capture_begin(&f, &buf, &len);
    bench_report_csv(f, &si, &r);
    fclose(f);
    /* split into records: a newline inside quotes belongs to the field */
    int records = 0, header_fields = -1;
    bool q = false;
    char *start = buf, *header = NULL;
    for (char *p = buf; *p; p++) {
        if (*p == '"') q = !q;
        if (*p == '\n' && !q) {
            *p = 0;
            int n = csv_fields(start, -1, NULL, 0);
            if (header_fields < 0) {
                header_fields = n;
                header = start;
            }
            CHECK(n == header_fields && n == 41, "record %d has %d fields (header %d)", records, n, header_fields);
            if (records >= 1) {
                /* the fields by their header names, as a spreadsheet would read them */
                static const struct {
                    const char *name, *row1, *row2;
                } want[] = {
                    {"model", "weird \"name\", with\\ | pipes\nand a newline", "second"},
                    {"cpu_info", "CPU \"quoted\"\tname", "CPU \"quoted\"\tname"},
                    {"n_cores", NULL, NULL},
                    {"avg_ts", "12.5", "0"},
                    {"size_bytes", "773000000", "0"},
                    {"params", "1235814400", "0"},
                    {"bytes_per_token", "949904", "0"},
                    {"gbps", "0.011873", "0"},
                    {"test", "tg128 @ d4096", "pp512"},
                    {"n_depth", "4096", "0"},
                    {"type_k", "q8_0", ""},
                    {"type_v", "q4_0", ""},
                    {"n_gpu_layers", "0", "all"},
                    {"ok", "true", "false"},
                    {"peak_exceeded", "false", "false"},
                    {"build_commit", NULL, NULL},
                };
                for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
                    int col = -1;
                    char name[64], field[128];
                    for (int c = 0; c < header_fields && col < 0; c++) {
                        csv_fields(header, c, name, sizeof name);
                        if (!strcmp(name, want[k].name)) col = c;
                    }
                    CHECK(col >= 0, "CSV has no column %s", want[k].name);
                    if (col < 0) continue;
                    csv_fields(start, col, field, sizeof field);
                    const char *w = records == 1 ? want[k].row1 : want[k].row2;
                    if (!strcmp(want[k].name, "build_commit")) w = si.commit;
                    char cores[16];
                    snprintf(cores, sizeof cores, "%d", si.n_cores);
                    if (!strcmp(want[k].name, "n_cores")) w = cores;
                    CHECK(!strcmp(field, w), "row %d %s: [%s], expected [%s]", records, want[k].name, field, w);
                }
            }
            records++;
            start = p + 1;
        }
    }
    CHECK(records == 3 && !q, "CSV: %d records", records);
    free(buf);

    capture_begin(&f, &buf, &len);
    bench_report_markdown(f, &si, &r);
    fclose(f);
    /* the header names each device once and says how the CPU peak was read; small sizes keep their digits */
    CHECK(strstr(buf,
                 "peak read bandwidth: cpu (cpu, 2 threads): 12.34 GB/s ± 0.50 (best of 8 read kernels: avx512, "
                 "4 streams, prefetch, 2 threads; a 1920 MiB buffer)") &&
              strstr(buf, "| 737.19 MiB | 1.24 B |") && strstr(buf, "| 0.950 |"),
          "markdown header and cells:\n%s", buf);
    /* every table line has the same number of unescaped '|' */
    int cols = -1, lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '|') continue;
        int n = 0;
        for (char *p = line; *p; p++) n += *p == '|' && (p == line || p[-1] != '\\');
        if (cols < 0) cols = n;
        CHECK(n == cols && n == 14, "markdown line with %d bars: %s", n, line);
        lines++;
    }
    CHECK(lines == 4, "header, rule and two rows: %d", lines);
    free(buf);

    /* a decode above the peak: a warning instead of the percentage, saying why (model in the cache, within
     * the peak's spread, beyond it) */
    static const struct {
        uint64_t model_bytes;
        double gbps;
        const char *why;
    } above[] = {{1 << 20, 13.0, "fits in the last-level cache"},
                 {(uint64_t)4 << 30, 12.5, "within the spread"},
                 {(uint64_t)4 << 30, 14.0, "beyond the spread"}};
    si.llc_bytes = (uint64_t)32 << 20;
    for (size_t k = 0; k < sizeof above / sizeof above[0]; k++) {
        r.rows[0].model_bytes = above[k].model_bytes;
        r.rows[0].gbps = above[k].gbps;
        r.rows[0].peak_gbps = 12.34;
        r.rows[0].peak_spread_gbps = 0.5;
        r.rows[0].pct_peak = 100 * above[k].gbps / 12.34;
        r.rows[0].peak_exceeded = true;
        capture_begin(&f, &buf, &len);
        bench_report_markdown(f, &si, &r);
        fclose(f);
        CHECK(strstr(buf, "| above peak [w1] |") && strstr(buf, "[w1] warning: ") && strstr(buf, above[k].why) &&
                  !strstr(buf, "105% |") && !strstr(buf, "101% |"),
              "peak warning (%s):\n%s", above[k].why, buf);
        free(buf);
    }

    bench_sweep_point pts[] = {{0, 10, 11}, {1, 12, 12.5}, {2, 0, 14}, {3, 20, 19}};
    capture_begin(&f, &buf, &len);
    bench_svg_sweep_file(f, "a <title> & more", pts, 4);
    fclose(f);
    int circles = 0, polylines = 0;
    for (char *p = buf; (p = strstr(p, "<circle")); p++) circles++;
    for (char *p = buf; (p = strstr(p, "<polyline")); p++) polylines++;
    CHECK(strstr(buf, "<svg") && strstr(buf, "</svg>") && strstr(buf, "a &lt;title&gt; &amp; more"), "svg frame");
    CHECK(polylines == 2 && circles == 7, "two curves, 7 points (one missing measurement): %d %d", polylines, circles);
    free(buf);
    bench_results_free(&r);
}

static void test_bandwidth(void) {
    /* no timing assertions: the measurement runs and gives a positive, finite number, a spread below it and
     * the kernel that gave it */
    slm_peak_read pk;
    slm_error err = {{0}};
    slm_status s = slm_device_peak_read("cpu", 2, (size_t)32 << 20, &pk, &err);
    CHECK(s == SLM_OK && pk.bytes_per_s > 0 && isfinite(pk.bytes_per_s), "cpu read bandwidth %g: %s", pk.bytes_per_s,
          err.msg);
    CHECK(pk.spread >= 0 && pk.spread < pk.bytes_per_s, "spread %g of %g", pk.spread, pk.bytes_per_s);
    CHECK(pk.n_kernels >= 4 && strstr(pk.kernel, "stream") && strstr(pk.kernel, "thread"), "kernel '%s' of %d",
          pk.kernel, pk.n_kernels);
    CHECK(!strncmp(pk.name, "cpu", 3), "the CPU device's name: %s", pk.name);
    err.msg[0] = 0;
    s = slm_device_peak_read("nodevice:0", 0, 0, &pk, &err);
    CHECK(s != SLM_OK && pk.bytes_per_s == 0 && err.msg[0] && !pk.name[0], "an unknown device: %g, '%s'",
          pk.bytes_per_s, err.msg);
}

int main(void) {
    test_options();
    test_peak_buffer();
    test_format_double();
    test_stats();
    test_accounting();
    test_formats();
    test_bandwidth();
    return slm_test_finish("test_bench");
}
