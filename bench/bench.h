/* slm-bench internals, shared by the files of bench/ and by tests/test_bench.c.
 *
 * bench_options.c   command line -> bench_options (lists, ranges, defaults, help)
 * bench_bandwidth.c the CPU peak read's buffer size (the read itself: slm_device_peak_read), the first GPU
 * bench_account.c   bytes read per generated token (weights + KV cache), per device
 * bench_run.c       one configuration: load (file or synthetic), prompt and generation runs, statistics
 * bench_profile.c   --profile: every op of a decode step timed on its own
 * bench_sysinfo.c   build, CPU and device facts for the report header
 * bench_report.c    markdown, CSV and JSON output
 * bench_svg.c       --sweep-ngl plot
 * slm_bench.c       main
 *
 * bench/ builds on the public API (slm.h, its measurement block) and support/synth.h alone. */
#ifndef SLM_BENCH_H
#define SLM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "slm.h"

#define BENCH_MAX_LIST 64
#define BENCH_MAX_STR 16

typedef struct bench_int_list {
    int v[BENCH_MAX_LIST];
    int n;
} bench_int_list;

typedef struct bench_str_list {
    char *v[BENCH_MAX_STR]; /* owned (strdup) */
    int n;
} bench_str_list;

typedef enum bench_format { BENCH_MD, BENCH_CSV, BENCH_JSON } bench_format;

typedef struct bench_options {
    bench_str_list models;       /* -m FILE */
    bench_str_list synthetic;    /* --synthetic SPEC */
    const char *write_synthetic; /* --write-synthetic FILE: write the (first) synthetic model and exit */
    bench_int_list n_prompt;     /* -p (0 entries or value 0: no prompt test) */
    bench_int_list n_gen;        /* -n */
    bench_int_list threads;      /* -t */
    bench_int_list n_gpu_layers; /* -ngl: SLM_NGL_ALL (-1, "all"), SLM_NGL_AUTO (-2, "auto"), N */
    bench_int_list n_batch;      /* -b */
    bench_int_list parallel;     /* --parallel: sequences decoding together in the tg tests (default 1) */
    bench_str_list devices;      /* -dev: cpu, vulkan:0, cuda:0 */
    bench_str_list kv_types;     /* -ctk: K cache types, each one of BENCH_KV_TYPES, checked while parsing */
    bench_str_list kv_types_v;   /* -ctv: V cache types (none given: each row's V type is its K type) */
    bench_int_list depths;       /* -d: positions the cache holds before each test (default 0) */
    int reps;                    /* -r */
    int n_ctx;                   /* -c: 0 = the largest p + n of the tests */
    bench_format format;         /* -o md|csv|json */
    const char *out_path;        /* --out FILE (default stdout) */
    bool profile;                /* --profile */
    bool sweep_ngl;              /* --sweep-ngl */
    const char *svg_path;        /* --svg FILE (sweep plot) */
    bool warmup;                 /* --no-warmup clears */
    bool verbose;                /* -v */
    bool help;                   /* -h */
    bool no_peak;                /* --no-peak: skip the bandwidth measurement */
    int peak_mib;                /* --peak-mib: buffer of the CPU read; 0 (default): bench_default_peak_mib */
    /* --peak-gbps [SPEC=]N: a device's peak given (a datasheet figure) instead of measured; SPEC "cpu" when
     * left out */
    struct {
        char spec[32];
        double bytes_per_s;
    } peak_given[8];
    int n_peak_given;
    size_t vram_budget; /* --vram-budget: a GPU's memory as if it had only this much (0: its own) */
    uint64_t seed;      /* token ids of the runs */
} bench_options;

/* Formats the message into err (when not NULL) and returns s: bench's own failures read like the library's. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
slm_status
bench_fail(slm_error *err, slm_status s, const char *fmt, ...);

/* The KV cache types the engine has, for -ctk (the usage error lists them). */
#define BENCH_KV_TYPES "f16,q8_0,q4_0"
bool bench_kv_type_supported(const char *name);

/* Fills defaults, then parses argv. Fails with SLM_ERR_INVALID_ARG and a message naming the option. */
slm_status bench_options_parse(int argc, char **argv, bench_options *o, slm_error *err);
void bench_options_free(bench_options *o);
void bench_options_usage(FILE *f);
/* "0,8,16", "0-32+8" (first-last+step), "all", "auto" -> values appended to l. */
slm_status bench_parse_int_list(const char *s, bool allow_ngl_words, bench_int_list *l, slm_error *err);

/* ---- bandwidth ---- */

/* The default buffer of the CPU peak read: at least 4x the last-level cache (llc_bytes, 0 if unknown) so
 * that the figure is DRAM's and not the cache's, and at least 512 MiB, but no more than half of the
 * available memory (avail_bytes, 0 if unknown); never under 16 MiB. */
int bench_default_peak_mib(uint64_t llc_bytes, uint64_t avail_bytes);
/* The largest CPU cache of cpu0 from sysfs (else sysconf), in bytes; 0 when unknown. */
uint64_t bench_llc_bytes(void);
/* MemAvailable from /proc/meminfo (else free pages), in bytes; 0 when unknown. */
uint64_t bench_available_bytes(void);
/* ---- accounting ---- */

typedef struct bench_bytes {
    uint64_t weights;                      /* weights read per generated token: layers + head + one embedding row */
    uint64_t kv_per_pos;                   /* KV bytes read per token per cache position (all layers, K and V) */
    uint64_t dev_weights[SLM_MAX_DEVICES]; /* weights by the device that reads them */
    uint64_t dev_kv_per_pos[SLM_MAX_DEVICES];
} bench_bytes;

/* From a loaded model's placement (slm_model_plan_info: the weights each device reads) and the KV bytes read per
 * cached position (slm_model_kv_read_bytes, every layer), split by the layers of each device.
 * tests/test_bench.c checks both against a count from the file's tensor directory. */
void bench_bytes_from_plan(const slm_plan_info *pi, uint64_t kv_per_pos, bench_bytes *out);
/* KV positions read on average per token when n_gen tokens are generated after n_past: token i attends
 * n_past + i + 1 positions, so the mean is n_past + (n_gen + 1) / 2. */
double bench_kv_mean_positions(int n_past, int n_gen);
/* Bytes per generated token on device d (d < 0: all devices). */
double bench_bytes_per_token(const bench_bytes *b, int d, int n_past, int n_gen);

/* ---- runs ---- */

typedef enum bench_test_kind { BENCH_PP, BENCH_TG } bench_test_kind;

typedef struct bench_stats {
    double mean, sd; /* of the samples */
    int n;
} bench_stats;
bench_stats bench_stats_of(const double *x, int n);

typedef struct bench_row {
    /* configuration */
    char model[96];      /* file name or synthetic spec */
    char model_type[64]; /* "llama 1B Q4_0" style */
    uint64_t model_bytes, model_params;
    char device[32]; /* "cpu", "cuda:0" */
    char device_name[160];
    int threads, n_gpu_layers, n_batch;
    char kv_type[8];   /* K cache type */
    char kv_type_v[8]; /* V cache type */
    int n_depth;       /* positions filled before the test (-d) */
    bench_test_kind kind;
    int n_tokens;   /* p or n */
    int n_parallel; /* tg: sequences generating n tokens each, one batched step per token (1: one) */
    /* results */
    bool ok;
    char error[640];
    double ts_mean, ts_sd; /* tokens/s (tg with n_parallel > 1: of all sequences together) */
    double ts_stream;      /* tokens/s of each sequence (ts_mean / n_parallel) */
    double t_mean;         /* seconds per repetition */
    int reps;
    /* generation only */
    double bytes_per_token; /* weights + KV (of its types) at the mean position, the depth included */
    double weight_bytes_per_token;
    double gbps;             /* bytes_per_token * t/s */
    double peak_gbps;        /* the peak of the device(s) used */
    double peak_spread_gbps; /* ... and the spread of its measurement (0 when given) */
    double pct_peak;         /* ideal time at peak / measured time, in % */
    bool peak_exceeded;      /* pct_peak above 100: the report warns instead of printing it */
    char placement[512];     /* the plan text */
    double predicted_ts;     /* planner (or bench estimate) tokens/s, 0 when not predicted */
    char prediction_src[16]; /* "planner", "estimate" */
} bench_row;

typedef struct bench_results {
    bench_row *rows;
    int n, cap;
} bench_results;
bench_row *bench_results_add(bench_results *r);
void bench_results_free(bench_results *r);

/* ---- system facts ---- */

typedef struct bench_device_fact {
    char spec[32];
    char name[160];
    double peak;     /* bytes/s */
    double spread;   /* bytes/s between the winning kernel's fastest and slowest run; 0 when given */
    int n_kernels;   /* read kernels or launch shapes tried */
    char kernel[96]; /* the one that gave the peak */
    bool given;      /* --peak-gbps: not measured */
    int threads;     /* cpu: the thread count of the measurement */
    int buffer_mib;  /* cpu: the size of the buffer read; 0 for other devices */
} bench_device_fact;

typedef struct bench_sysinfo {
    char version[32], commit[48], build_type[24], compiler[96], backends[64];
    char cpu[128], cpu_features[96];
    int n_cores;
    double mem_gib;
    uint64_t llc_bytes; /* last-level cache, 0 when unknown */
    int peak_mib;       /* the CPU peak read's buffer when --peak-mib is not given */
    bench_device_fact dev[8];
    int n_dev;
    char date[32];
} bench_sysinfo;
void bench_sysinfo_collect(bench_sysinfo *s);
/* A device name without the spec it starts with ("vulkan:0 llvmpipe" -> "llvmpipe"), else name itself. */
const char *bench_device_name_tail(const char *name, const char *spec);
/* The fact of (spec, threads): its peak measured once (or taken from --peak-gbps) and remembered in s; NULL
 * when not measured (measure false, or no room). */
const bench_device_fact *bench_sysinfo_peak(bench_sysinfo *s, const bench_options *o, const char *spec, int threads,
                                            bool measure);

/* ---- output ---- */

void bench_report_markdown(FILE *f, const bench_sysinfo *s, const bench_results *r);
/* Every CSV row repeats the build and CPU facts (as llama-bench's do), so rows of several runs concatenate. */
void bench_report_csv(FILE *f, const bench_sysinfo *s, const bench_results *r);
/* The shortest of %.15g, %.16g, %.17g that reads back as v: exact, yet 12.5 stays "12.5". */
void bench_format_double(char *buf, size_t len, double v);
void bench_report_json(FILE *f, const bench_sysinfo *s, const bench_results *r);
/* Writes s as a JSON string (quotes and escapes). */
void bench_json_string(FILE *f, const char *s);
/* Writes s as a CSV field (quoted when it holds a comma, quote or newline). */
void bench_csv_field(FILE *f, const char *s);

/* ---- sweep plot ---- */

typedef struct bench_sweep_point {
    int gpu_units;              /* layers (+ head) on the GPU */
    double measured, predicted; /* tokens/s; <= 0: missing */
} bench_sweep_point;
/* An SVG line chart of tokens/s against GPU layers with both curves. */
slm_status bench_svg_sweep(const char *path, const char *title, const bench_sweep_point *p, int n, slm_error *err);
void bench_svg_sweep_file(FILE *f, const char *title, const bench_sweep_point *p, int n);

/* ---- one model configuration ---- */

/* A model source: a path or a synthetic spec built once into memory. */
typedef struct bench_source {
    char label[96];
    const char *path; /* file, or NULL */
    void *synth_data; /* synthetic GGUF bytes (owned) */
    size_t synth_size;
} bench_source;
slm_status bench_source_synthetic(bench_source *src, const char *spec, int n_threads, slm_error *err);
void bench_source_free(bench_source *src);
slm_status bench_source_load(const bench_source *src, const slm_params *p, slm_model **m, slm_error *err);

/* The GPU device to use for -ngl > 0 when none was named: "cuda:0" or "vulkan:0", or NULL. */
const char *bench_first_gpu(char *buf, size_t len);

/* Runs pp (n prompt tokens in one eval) or tg (n single-token evals) reps times on a fresh context and
 * fills the result fields of row (the configuration fields must be set). */
void bench_run_test(slm_model *m, const bench_options *o, bench_sysinfo *si, bench_row *row);

/* --profile: times every op of n_gen decode steps one by one and prints a table to f. warmup: one untimed
 * step first. fused_s_per_token: the tg row's measured seconds per token, printed beside the op-by-op total
 * (0: none). */
slm_status bench_profile(FILE *f, slm_model *m, int n_gen, bool warmup, double fused_s_per_token, slm_error *err);

#endif
