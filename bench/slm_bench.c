/* slm-bench: prompt processing and generation speed, effective bandwidth against each device's measured
 * peak, per-op profiles and GPU split sweeps, for GGUF files and synthetic models of real shapes.
 *
 * Output: the report (stdout or --out FILE) is flushed and closed before the exit status is chosen, and a
 * failure (a full disk, a closed stdout) is an error with its reason and exit 1, as in slm (tools/slm.c, which
 * also says why SIGPIPE keeps its default). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli_io.h"
#include "synth.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int max_of(const bench_int_list *l) {
    int m = 0;
    for (int i = 0; i < l->n; i++)
        if (l->v[i] > m) m = l->v[i];
    return m;
}

/* "llama 1.24B Q4_K - Medium" style: architecture, parameters, the file type. */
static void model_type(const slm_model *m, const slm_model_info *info, char *buf, size_t len) {
    const char *ft = slm_model_file_type(m);
    /* test-sized models would all read "0.00B" */
    bool billions = info->n_params >= 1000000000ull;
    snprintf(buf, len, "%s %.2f%s %s", info->arch, info->n_params / (billions ? 1e9 : 1e6), billions ? "B" : "M",
             ft ? ft : "mixed");
}

static void fill_config(bench_row *row, const bench_source *src, const slm_model *m, const char *device, int threads,
                        int ngl, int n_batch, const char *kv, const char *kv_v) {
    snprintf(row->model, sizeof row->model, "%s", src->label);
    if (m) {
        slm_model_info info = slm_model_get_info(m);
        row->model_bytes = info.weight_bytes;
        row->model_params = info.n_params;
        model_type(m, &info, row->model_type, sizeof row->model_type);
        slm_plan_info pi = slm_model_plan_info(m);
        snprintf(row->device_name, sizeof row->device_name, "%s", pi.device[pi.n_devices - 1].name);
    }
    snprintf(row->device, sizeof row->device, "%s", device);
    row->threads = threads;
    row->n_gpu_layers = ngl;
    row->n_batch = n_batch;
    snprintf(row->kv_type, sizeof row->kv_type, "%s", kv);
    snprintf(row->kv_type_v, sizeof row->kv_type_v, "%s", kv_v);
}

/* Adds one row per test of this configuration, all failed with msg (the model did not load, ...). */
static void error_rows(bench_results *res, const bench_options *o, const bench_source *src, const char *device,
                       int threads, int ngl, int n_batch, const char *kv, const char *kv_v, const char *msg) {
    for (int k = 0; k < 2; k++) {
        const bench_int_list *l = k ? &o->n_gen : &o->n_prompt;
        for (int i = 0; i < l->n; i++) {
            if (l->v[i] <= 0) continue;
            for (int di = 0; di < o->depths.n; di++)
                for (int pi = 0; pi < (k ? o->parallel.n : 1); pi++) {
                    bench_row *row = bench_results_add(res);
                    if (!row) return;
                    fill_config(row, src, NULL, device, threads, ngl, n_batch, kv, kv_v);
                    row->kind = k ? BENCH_TG : BENCH_PP;
                    row->n_tokens = l->v[i];
                    row->n_depth = o->depths.v[di];
                    row->n_parallel = k ? o->parallel.v[pi] : 1;
                    row->ok = false;
                    snprintf(row->error, sizeof row->error, "%s", msg);
                }
        }
    }
}

static void backends_text(char *buf, size_t len) {
    buf[0] = 0;
    slm_backend_info b[8];
    int n = slm_backends_list(b, 8);
    for (int i = 0; i < n && i < 8; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", b[i].name);
    }
}

static int run_source(const bench_options *o, bench_source *src, bench_sysinfo *si, bench_results *res, FILE *out) {
    /* -c as given (a test that does not fit fails its row, saying so); the default fits the longest test,
     * with at least 16 positions for --profile's decode steps */
    int n_ctx = max_of(&o->n_prompt) > max_of(&o->n_gen) ? max_of(&o->n_prompt) : max_of(&o->n_gen);
    n_ctx += max_of(&o->depths);
    if (n_ctx < 16) n_ctx = 16;
    if (o->n_ctx > 0) n_ctx = o->n_ctx;
    int failures = 0;
    for (int di = 0; di < o->devices.n; di++)
        for (int gi = 0; gi < o->n_gpu_layers.n; gi++)
            for (int ti = 0; ti < o->threads.n; ti++)
                for (int bi = 0; bi < o->n_batch.n; bi++)
                    for (int kvi = 0; kvi < o->kv_types.n * (o->kv_types_v.n ? o->kv_types_v.n : 1); kvi++) {
                        /* every K type with every V type (-ctv), or with itself (no -ctv) */
                        int ki = o->kv_types_v.n ? kvi / o->kv_types_v.n : kvi;
                        const char *dev = o->devices.v[di], *kv = o->kv_types.v[ki];
                        const char *kv_v = o->kv_types_v.n ? o->kv_types_v.v[kvi % o->kv_types_v.n] : kv;
                        int ngl = o->n_gpu_layers.v[gi], nb = o->n_batch.v[bi];
                        int threads = o->threads.v[ti] > 0 ? o->threads.v[ti] : si->n_cores;
                        char gpu[32], msg[600];
                        bool cpu = !strncmp(dev, "cpu", 3);
                        if (cpu && ngl != 0) {
                            /* -ngl on the default device: the first GPU there is */
                            if (!bench_first_gpu(gpu, sizeof gpu)) {
                                char b[64];
                                backends_text(b, sizeof b);
                                snprintf(msg, sizeof msg, "no GPU device for -ngl %d (backends in this build: %s)", ngl,
                                         b);
                                error_rows(res, o, src, "none", threads, ngl, nb, kv, kv_v, msg);
                                failures++;
                                continue;
                            }
                            dev = gpu;
                            cpu = false;
                        }
                        /* kv and kv_v are among BENCH_KV_TYPES (checked by bench_options_parse) */
                        slm_params p = slm_params_default();
                        p.type_k = slm_kv_type_from_name(kv);
                        p.type_v = slm_kv_type_from_name(kv_v);
                        p.n_threads = threads;
                        p.n_ctx = n_ctx;
                        p.n_batch = nb;
                        p.device = dev;
                        p.n_gpu_layers = cpu ? 0 : ngl;
                        p.vram_budget = o->vram_budget;
                        p.verbose = o->verbose;
                        slm_model *m = NULL;
                        slm_error err = {{0}};
                        fprintf(stderr, "slm-bench: %s on %s, %d threads, ngl %d, batch %d, KV %s/%s\n", src->label,
                                dev, threads, ngl, nb, kv, kv_v);
                        double t0 = now_s();
                        if (bench_source_load(src, &p, &m, &err)) {
                            error_rows(res, o, src, dev, threads, ngl, nb, kv, kv_v, err.msg);
                            failures++;
                            continue;
                        }
                        if (o->verbose) {
                            slm_plan_info pi = slm_model_plan_info(m);
                            fprintf(stderr, "slm-bench: loaded in %.2f s: %s%s%s\n", now_s() - t0, pi.text,
                                    pi.note[0] ? " | " : "", pi.note);
                        }
                        int first_row = res->n;
                        for (int k = 0; k < 2; k++) {
                            const bench_int_list *l = k ? &o->n_gen : &o->n_prompt;
                            for (int i = 0; i < l->n; i++) {
                                if (l->v[i] <= 0) continue;
                                for (int dpi = 0; dpi < o->depths.n; dpi++)
                                    for (int pi = 0; pi < (k ? o->parallel.n : 1); pi++) {
                                        bench_row *row = bench_results_add(res);
                                        if (!row) break;
                                        fill_config(row, src, m, dev, threads, ngl, nb, kv, kv_v);
                                        row->kind = k ? BENCH_TG : BENCH_PP;
                                        row->n_tokens = l->v[i];
                                        row->n_depth = o->depths.v[dpi];
                                        row->n_parallel = k ? o->parallel.v[pi] : 1;
                                        fprintf(stderr, "slm-bench:   %s%d", k ? "tg" : "pp", l->v[i]);
                                        if (row->n_depth) fprintf(stderr, " @ d%d", row->n_depth);
                                        if (row->n_parallel > 1) fprintf(stderr, ", %d sequences", row->n_parallel);
                                        fprintf(stderr, " x %d ...", o->reps);
                                        bench_run_test(m, o, si, row);
                                        if (row->ok) fprintf(stderr, " %.2f t/s\n", row->ts_mean);
                                        else fprintf(stderr, " error: %s\n", row->error);
                                        failures += !row->ok;
                                    }
                            }
                        }
                        if (o->profile) {
                            /* out is the side stream printed after the main table (to stderr for csv and json,
                             * which stay machine-readable) */
                            FILE *pf = out;
                            int n = max_of(&o->n_gen) > 0 ? max_of(&o->n_gen) : 32;
                            if (n > n_ctx) n = n_ctx;
                            /* the tg row of the same length, whose fused time the profile is compared with */
                            double fused = 0;
                            for (int r = first_row; r < res->n; r++)
                                if (res->rows[r].kind == BENCH_TG && res->rows[r].ok && res->rows[r].n_tokens == n)
                                    fused = res->rows[r].t_mean / n;
                            if (bench_profile(pf, m, n, o->warmup, fused, &err)) {
                                fprintf(stderr, "slm-bench: profile failed: %s\n", err.msg);
                                failures++;
                            }
                        }
                        slm_model_free(m);
                    }
    return failures;
}

/* --sweep-ngl: every split point on the GPU, generation speed measured and predicted. */
static int run_sweep(const bench_options *o, bench_source *src, bench_sysinfo *si, bench_results *res, FILE *out) {
    char gpu[32];
    const char *dev = NULL;
    for (int i = 0; i < o->devices.n && !dev; i++)
        if (strncmp(o->devices.v[i], "cpu", 3)) dev = o->devices.v[i];
    if (!dev) dev = bench_first_gpu(gpu, sizeof gpu);
    if (!dev) {
        char b[64];
        backends_text(b, sizeof b);
        fprintf(stderr, "slm-bench: --sweep-ngl: no GPU device (backends in this build: %s); nothing to sweep\n", b);
        fprintf(out, "\n--sweep-ngl: no GPU device (backends in this build: %s); nothing to sweep\n", b);
        return 1;
    }
    int n_gen = o->n_gen.n && max_of(&o->n_gen) > 0 ? max_of(&o->n_gen) : 128;
    int threads = o->threads.v[0] > 0 ? o->threads.v[0] : si->n_cores;
    bench_sweep_point *pts = NULL;
    int n_pts = 0, failures = 0, n_units = -1;
    for (int k = 0; n_units < 0 || k <= n_units; k++) {
        slm_params p = slm_params_default();
        p.n_threads = threads;
        p.n_ctx = n_gen < 16 ? 16 : n_gen;
        p.n_batch = o->n_batch.v[0];
        p.device = dev;
        p.n_gpu_layers = k;
        p.vram_budget = o->vram_budget;
        slm_model *m = NULL;
        slm_error err = {{0}};
        fprintf(stderr, "slm-bench: sweep %s: %d GPU units ...", src->label, k);
        bench_row *row = bench_results_add(res);
        if (!row) break;
        slm_status ls = bench_source_load(src, &p, &m, &err);
        if (ls == SLM_ERR_NOMEM && o->vram_budget && n_units >= 0) {
            /* the planner refuses a split over the budget: the card is full, the sweep ends (not a failure) */
            res->n--;
            fprintf(stderr, " over --vram-budget: the sweep ends\n");
            fprintf(out, "\nsweep: %d GPU units and more exceed --vram-budget (%s)\n", k, err.msg);
            break;
        }
        if (ls) {
            fill_config(row, src, NULL, dev, threads, k, p.n_batch, "f16", "f16");
            row->kind = BENCH_TG;
            row->n_tokens = n_gen;
            snprintf(row->error, sizeof row->error, "%s", err.msg);
            fprintf(stderr, " error: %s\n", err.msg);
            failures++;
            if (n_units < 0) break;
            continue;
        }
        if (n_units < 0) n_units = slm_model_get_info(m).n_layer + 1;
        fill_config(row, src, m, dev, threads, k, p.n_batch, "f16", "f16");
        row->kind = BENCH_TG;
        row->n_tokens = n_gen;
        bench_run_test(m, o, si, row);
        fprintf(stderr, row->ok ? " %.2f t/s\n" : " error\n", row->ts_mean);
        bench_sweep_point *np = realloc(pts, (size_t)(n_pts + 1) * sizeof *pts);
        if (np) {
            pts = np;
            pts[n_pts++] = (bench_sweep_point){k, row->ok ? row->ts_mean : 0, row->predicted_ts};
        }
        failures += !row->ok;
        slm_model_free(m);
    }
    if (n_pts) {
        fprintf(out, "\nsweep: %s on %s (tg%d, %d thread%s): predicted (%s) vs measured tokens/s\n\n", src->label, dev,
                n_gen, threads, threads == 1 ? "" : "s", n_pts && res->n ? res->rows[res->n - 1].prediction_src : "");
        fprintf(out, "| GPU units | predicted t/s | measured t/s |\n| ---: | ---: | ---: |\n");
        for (int i = 0; i < n_pts; i++)
            fprintf(out, "| %d | %.2f | %.2f |\n", pts[i].gpu_units, pts[i].predicted, pts[i].measured);
        char title[200];
        snprintf(title, sizeof title, "%s on %s: tokens/s vs GPU layers", src->label, dev);
        slm_error err = {{0}};
        if (bench_svg_sweep(o->svg_path, title, pts, n_pts, &err)) {
            fprintf(stderr, "slm-bench: %s\n", err.msg);
            failures++;
        } else fprintf(stderr, "slm-bench: wrote %s\n", o->svg_path);
    }
    free(pts);
    return failures;
}

/* Closes the report stream (path NULL: stdout); false, with the reason printed, when the report was lost. */
static bool close_report(FILE *f, const char *path) {
    int e = cli_close_stream(f);
    if (e) fprintf(stderr, "slm-bench: writing %s: %s\n", path ? path : "to stdout", strerror(e));
    return e == 0;
}

static int bench_main(int argc, char **argv) {
    bench_options o;
    slm_error err = {{0}};
    if (bench_options_parse(argc, argv, &o, &err)) {
        fprintf(stderr, "slm-bench: %s\n", err.msg);
        fprintf(stderr, "usage: slm-bench -m FILE | --synthetic SPEC [options]; see --help\n");
        bench_options_free(&o);
        return 2;
    }
    if (o.help) {
        bench_options_usage(stdout);
        bench_options_free(&o);
        return close_report(stdout, NULL) ? 0 : 1;
    }
    int n_threads_build = max_of(&o.threads) > 0 ? max_of(&o.threads) : 0;
    if (o.write_synthetic) {
        slm_synth_spec s;
        double t0 = now_s();
        if (slm_synth_parse(o.synthetic.v[0], &s, &err) ||
            slm_synth_write_file(&s, n_threads_build, o.write_synthetic, &err)) {
            fprintf(stderr, "slm-bench: %s\n", err.msg);
            bench_options_free(&o);
            return 1;
        }
        fprintf(stderr, "slm-bench: wrote %s (%s, %.3fB parameters) in %.1f s\n", o.write_synthetic, s.name,
                slm_synth_param_count(&s) / 1e9, now_s() - t0);
        bench_options_free(&o);
        return 0;
    }
    FILE *out = stdout;
    if (o.out_path && !(out = fopen(o.out_path, "w"))) {
        fprintf(stderr, "slm-bench: cannot create %s: %s\n", o.out_path, strerror(errno));
        bench_options_free(&o);
        return 1;
    }
    bench_sysinfo si;
    bench_sysinfo_collect(&si);
    /* profile and sweep tables are collected here and printed after the main table */
    char *extra_buf = NULL;
    size_t extra_len = 0;
    FILE *extra = open_memstream(&extra_buf, &extra_len);
    if (!extra) extra = out;
    bench_results res = {0};
    int failures = 0;
    int n_src = o.models.n + o.synthetic.n;
    for (int i = 0; i < n_src; i++) {
        bench_source src;
        memset(&src, 0, sizeof src);
        if (i < o.models.n) {
            src.path = o.models.v[i];
            const char *base = strrchr(src.path, '/');
            snprintf(src.label, sizeof src.label, "%s", base ? base + 1 : src.path);
        } else {
            const char *spec = o.synthetic.v[i - o.models.n];
            double t0 = now_s();
            fprintf(stderr, "slm-bench: building synthetic %s ...", spec);
            if (bench_source_synthetic(&src, spec, n_threads_build, &err)) {
                fprintf(stderr, " %s\n", err.msg);
                snprintf(src.label, sizeof src.label, "synthetic %s", spec);
                error_rows(&res, &o, &src, o.devices.v[0], 0, o.n_gpu_layers.v[0], o.n_batch.v[0], "f16", "f16",
                           err.msg);
                failures++;
                continue;
            }
            fprintf(stderr, " %.2f GiB in %.1f s\n", src.synth_size / (1024.0 * 1024 * 1024), now_s() - t0);
        }
        failures += run_source(&o, &src, &si, &res, extra);
        if (o.sweep_ngl) failures += run_sweep(&o, &src, &si, &res, extra);
        bench_source_free(&src);
    }
    /* the CPU peak at all cores for the header even when no row needed it */
    if (!o.no_peak) bench_sysinfo_peak(&si, &o, "cpu", si.n_cores, true);
    if (o.format == BENCH_MD) {
        fputc('\n', out);
        bench_report_markdown(out, &si, &res);
    } else if (o.format == BENCH_CSV) bench_report_csv(out, &si, &res);
    else bench_report_json(out, &si, &res);
    if (extra != out) {
        fclose(extra);
        if (extra_len) fwrite(extra_buf, 1, extra_len, o.format == BENCH_MD ? out : stderr);
        free(extra_buf);
    }
    /* --out's file, then stdout (which held the progress-free report or nothing): each may have lost it */
    bool written = out == stdout || close_report(out, o.out_path);
    written = close_report(stdout, NULL) && written;
    bench_results_free(&res);
    bench_options_free(&o);
    return failures || !written ? 1 : 0;
}

int main(int argc, char **argv) {
    cli_guard_std_fds();
    return bench_main(argc, argv);
}
