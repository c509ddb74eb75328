/* Output: a markdown table with a header of build, CPU and device facts (the default), CSV with one header
 * line, and one JSON document. Every row carries its configuration, so rows from several runs can be
 * concatenated and compared. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *kind_name(bench_test_kind k) { return k == BENCH_PP ? "pp" : "tg"; }

/* "pp512", "tg128", and "tg128 x4" for 4 sequences generating together */
static void test_name(const bench_row *w, char *buf, size_t len) {
    char depth[24] = "";
    if (w->n_depth > 0) snprintf(depth, sizeof depth, " @ d%d", w->n_depth); /* llama-bench's spelling */
    if (w->n_parallel > 1) snprintf(buf, len, "%s%d x%d%s", kind_name(w->kind), w->n_tokens, w->n_parallel, depth);
    else snprintf(buf, len, "%s%d%s", kind_name(w->kind), w->n_tokens, depth);
}

/* "q8_0" when K and V have one type, else "q8_0/f16" (K/V). */
static void kv_text(const bench_row *w, char *buf, size_t len) {
    if (!w->kv_type_v[0] || !strcmp(w->kv_type, w->kv_type_v)) snprintf(buf, len, "%s", w->kv_type);
    else snprintf(buf, len, "%s/%s", w->kv_type, w->kv_type_v);
}

static void ngl_text(int ngl, char *buf, size_t len) {
    if (ngl == SLM_NGL_ALL) snprintf(buf, len, "all");
    else if (ngl == SLM_NGL_AUTO) snprintf(buf, len, "auto");
    else snprintf(buf, len, "%d", ngl);
}

void bench_format_double(char *buf, size_t len, double v) {
    /* %.17g always reads back exactly but turns 0.1 into 0.10000000000000001; the first precision that
     * reads back is the shortest exact text */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* ---- markdown ---- */

/* Sizes and counts small enough to show as 0.00 GiB / 0.00 B (test models) get a smaller unit. */
static void size_text(uint64_t bytes, char *buf, size_t len) {
    if (bytes >= (1ull << 30)) snprintf(buf, len, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    else snprintf(buf, len, "%.2f MiB", bytes / (1024.0 * 1024.0));
}

static void count_text(uint64_t n, char *buf, size_t len) {
    if (n >= 1000000000ull) snprintf(buf, len, "%.2f B", n / 1e9);
    else snprintf(buf, len, "%.2f M", n / 1e6);
}

static void md_cell(FILE *f, const char *s) {
    /* a '|' inside a cell would split it */
    fputc(' ', f);
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
    fputs(" |", f);
}

/* Why a decode row read faster than its device's peak, which a ceiling must not allow. */
static void peak_warning(FILE *f, const bench_sysinfo *s, const bench_row *w, int k) {
    fprintf(f, "[w%d] warning: %s %s%d read %.2f GB/s (%.0f%% of the peak %.2f GB/s): ", k, w->model,
            kind_name(w->kind), w->n_tokens, w->gbps, w->pct_peak, w->peak_gbps);
    if (s->llc_bytes && w->model_bytes <= s->llc_bytes)
        fprintf(f,
                "the model (%.1f MiB) fits in the last-level cache (%.0f MiB), so its bytes came partly from the"
                " cache.\n",
                w->model_bytes / 1048576.0, s->llc_bytes / 1048576.0);
    else if (w->gbps <= w->peak_gbps + w->peak_spread_gbps)
        fprintf(f,
                "within the spread of the peak's own runs (± %.2f GB/s): the machine's bandwidth varied between"
                " the measurements.\n",
                w->peak_spread_gbps);
    else
        fprintf(f,
                "beyond the spread of the peak's own runs (± %.2f GB/s): the measured peak is no ceiling here"
                " (a busy or shared machine?); give the device's figure with --peak-gbps.\n",
                w->peak_spread_gbps);
}

void bench_report_markdown(FILE *f, const bench_sysinfo *s, const bench_results *r) {
    fprintf(f, "slm %s (commit %s, %s, %s) | backends: %s\n", s->version, s->commit, s->build_type, s->compiler,
            s->backends);
    fprintf(f, "CPU: %s | %d cores | %s | last-level cache %.0f MiB | %.1f GiB RAM\n", s->cpu, s->n_cores,
            s->cpu_features, s->llc_bytes / (1024.0 * 1024.0), s->mem_gib);
    for (int i = 0; i < s->n_dev; i++) {
        const bench_device_fact *d = &s->dev[i];
        char how[256] = "";
        if (d->given) snprintf(how, sizeof how, " (given with --peak-gbps, not measured)");
        else if (d->buffer_mib > 0)
            snprintf(how, sizeof how, " ± %.2f (best of %d read kernels: %s; a %d MiB buffer)", d->spread / 1e9,
                     d->n_kernels, d->kernel, d->buffer_mib);
        else
            snprintf(how, sizeof how, " ± %.2f (best of %d launch shapes: %s)", d->spread / 1e9, d->n_kernels,
                     d->kernel);
        if (d->peak > 0)
            fprintf(f, "peak read bandwidth: %s (%s): %.2f GB/s%s\n", d->spec, d->name, d->peak / 1e9, how);
        else fprintf(f, "peak read bandwidth: %s (%s): not measured\n", d->spec, d->name);
    }
    fprintf(f, "date: %s\n\n", s->date);
    fprintf(f,
            "| model | size | params | backend | threads | ngl | n_batch | type_kv | test | t/s | MB/token | GB/s "
            "| %% of peak |\n");
    fprintf(f, "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |\n");
    int n_err = 0, n_warn = 0;
    for (int i = 0; i < r->n; i++) {
        const bench_row *w = &r->rows[i];
        char buf[160];
        fputc('|', f);
        md_cell(f, w->model);
        size_text(w->model_bytes, buf, sizeof buf);
        md_cell(f, buf);
        count_text(w->model_params, buf, sizeof buf);
        md_cell(f, buf);
        md_cell(f, w->device);
        snprintf(buf, sizeof buf, "%d", w->threads);
        md_cell(f, buf);
        ngl_text(w->n_gpu_layers, buf, sizeof buf);
        md_cell(f, buf);
        snprintf(buf, sizeof buf, "%d", w->n_batch);
        md_cell(f, buf);
        kv_text(w, buf, sizeof buf);
        md_cell(f, buf);
        test_name(w, buf, sizeof buf);
        md_cell(f, buf);
        if (!w->ok) {
            snprintf(buf, sizeof buf, "error [%d]", ++n_err);
            md_cell(f, buf);
            fputs(" | | |\n", f);
            continue;
        }
        snprintf(buf, sizeof buf, "%.2f ± %.2f", w->ts_mean, w->ts_sd);
        md_cell(f, buf);
        if (w->kind == BENCH_TG) {
            /* three decimals (kB) below 10 MB, where one decimal would hide a small model's differences */
            snprintf(buf, sizeof buf, w->bytes_per_token < 1e7 ? "%.3f" : "%.1f", w->bytes_per_token / 1e6);
            md_cell(f, buf);
            snprintf(buf, sizeof buf, "%.2f", w->gbps);
            md_cell(f, buf);
            if (w->peak_exceeded) snprintf(buf, sizeof buf, "above peak [w%d]", ++n_warn);
            else if (w->pct_peak > 0) snprintf(buf, sizeof buf, "%.0f%%", w->pct_peak);
            else snprintf(buf, sizeof buf, "-");
            md_cell(f, buf);
        } else {
            fputs(" | | |", f);
        }
        fputc('\n', f);
    }
    if (n_err) {
        fputc('\n', f);
        int k = 0;
        for (int i = 0; i < r->n; i++)
            if (!r->rows[i].ok) fprintf(f, "[%d] %s: %s\n", ++k, r->rows[i].model, r->rows[i].error);
    }
    if (n_warn) {
        fputc('\n', f);
        int k = 0;
        for (int i = 0; i < r->n; i++)
            if (r->rows[i].ok && r->rows[i].kind == BENCH_TG && r->rows[i].peak_exceeded)
                peak_warning(f, s, &r->rows[i], ++k);
    }
    bool any_tg = false;
    for (int i = 0; i < r->n; i++) any_tg |= r->rows[i].ok && r->rows[i].kind == BENCH_TG;
    if (any_tg)
        fprintf(f,
                "\nMB/token: weights read per generated token (every layer, the output head, one embedding row)"
                " + the KV cache (K and V rows as stored: f16, q8_0 or q4_0) read at the mean position, the depth"
                " (-d) included. GB/s = MB/token x t/s; %% of peak = the time the"
                " bytes take at each device's peak / the measured time; the peak is the fastest of several read"
                " kernels, ± the spread of its own runs. A decode that reads faster than the peak gets a warning"
                " instead of a percentage above 100.\n");
    bool any_par = false;
    for (int i = 0; i < r->n; i++) any_par |= r->rows[i].ok && r->rows[i].n_parallel > 1;
    if (any_par)
        fprintf(f,
                "tgN xP: P sequences of one context generate N tokens each, one batched pass of P tokens per step"
                " (slm serve --parallel P): t/s is theirs together (each sequence's is t/s / P), and MB/token counts"
                " the weights once per step, shared by its P tokens.\n");
}

/* ---- CSV ---- */

void bench_csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v) {
    char buf[40];
    fputc(',', f);
    if (!isfinite(v)) return;
    bench_format_double(buf, sizeof buf, v);
    fputs(buf, f);
}

void bench_report_csv(FILE *f, const bench_sysinfo *s, const bench_results *r) {
    fprintf(
        f,
        "build_commit,build_version,build_type,compiler,backends,cpu_info,cpu_features,n_cores,test_time,"
        "model,model_type,size_bytes,params,device,device_name,threads,n_gpu_layers,n_batch,type_k,type_v,test,"
        "n_tokens,n_depth,reps,ok,error,avg_ts,stddev_ts,avg_s,bytes_per_token,weight_bytes_per_token,gbps,peak_gbps,"
        "peak_spread_gbps,pct_peak,peak_exceeded,predicted_ts,prediction,placement,n_parallel,avg_ts_per_stream\n");
    for (int i = 0; i < r->n; i++) {
        const bench_row *w = &r->rows[i];
        char ngl[16];
        ngl_text(w->n_gpu_layers, ngl, sizeof ngl);
        const char *facts[] = {s->commit, s->version, s->build_type, s->compiler, s->backends, s->cpu, s->cpu_features};
        for (size_t k = 0; k < sizeof facts / sizeof facts[0]; k++) {
            bench_csv_field(f, facts[k]);
            fputc(',', f);
        }
        fprintf(f, "%d,", s->n_cores);
        bench_csv_field(f, s->date);
        fputc(',', f);
        bench_csv_field(f, w->model);
        fputc(',', f);
        bench_csv_field(f, w->model_type);
        fprintf(f, ",%llu,%llu,", (unsigned long long)w->model_bytes, (unsigned long long)w->model_params);
        bench_csv_field(f, w->device);
        fputc(',', f);
        bench_csv_field(f, w->device_name);
        fprintf(f, ",%d,%s,%d,", w->threads, ngl, w->n_batch);
        bench_csv_field(f, w->kv_type);
        fputc(',', f);
        bench_csv_field(f, w->kv_type_v[0] ? w->kv_type_v : w->kv_type);
        char name[64];
        test_name(w, name, sizeof name);
        fprintf(f, ",%s,%d,%d,%d,%s,", name, w->n_tokens, w->n_depth, w->reps, w->ok ? "true" : "false");
        bench_csv_field(f, w->error);
        csv_num(f, w->ts_mean);
        csv_num(f, w->ts_sd);
        csv_num(f, w->t_mean);
        csv_num(f, w->bytes_per_token);
        csv_num(f, w->weight_bytes_per_token);
        csv_num(f, w->gbps);
        csv_num(f, w->peak_gbps);
        csv_num(f, w->peak_spread_gbps);
        csv_num(f, w->pct_peak);
        fprintf(f, ",%s", w->peak_exceeded ? "true" : "false");
        csv_num(f, w->predicted_ts);
        fputc(',', f);
        bench_csv_field(f, w->prediction_src);
        fputc(',', f);
        bench_csv_field(f, w->placement);
        fprintf(f, ",%d", w->n_parallel > 1 ? w->n_parallel : 1);
        csv_num(f, w->ts_stream);
        fputc('\n', f);
    }
}

/* ---- JSON ---- */

void bench_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, const char *key, double v, bool comma) {
    char buf[40];
    fprintf(f, "\"%s\": ", key);
    if (isfinite(v)) {
        bench_format_double(buf, sizeof buf, v);
        fputs(buf, f);
    } else fputs("null", f);
    if (comma) fputs(", ", f);
}

/* Counts and sizes as integers: a double would round a byte count above 2^53 and print it as 1.03e+06. */
static void json_int(FILE *f, const char *key, uint64_t v, bool comma) {
    fprintf(f, "\"%s\": %llu", key, (unsigned long long)v);
    if (comma) fputs(", ", f);
}

static void json_str(FILE *f, const char *key, const char *v, bool comma) {
    fprintf(f, "\"%s\": ", key);
    bench_json_string(f, v);
    if (comma) fputs(", ", f);
}

void bench_report_json(FILE *f, const bench_sysinfo *s, const bench_results *r) {
    fputs("{\n  \"build\": {", f);
    json_str(f, "version", s->version, true);
    json_str(f, "commit", s->commit, true);
    json_str(f, "build_type", s->build_type, true);
    json_str(f, "compiler", s->compiler, true);
    json_str(f, "backends", s->backends, false);
    fputs("},\n  \"system\": {", f);
    json_str(f, "cpu", s->cpu, true);
    json_str(f, "cpu_features", s->cpu_features, true);
    json_int(f, "n_cores", (uint64_t)(s->n_cores > 0 ? s->n_cores : 0), true);
    json_num(f, "mem_gib", s->mem_gib, true);
    json_int(f, "llc_bytes", s->llc_bytes, true);
    json_str(f, "date", s->date, false);
    fputs("},\n  \"devices\": [", f);
    for (int i = 0; i < s->n_dev; i++) {
        fputs(i ? ",\n    {" : "\n    {", f);
        json_str(f, "spec", s->dev[i].spec, true);
        json_str(f, "name", s->dev[i].name, true);
        json_int(f, "threads", (uint64_t)s->dev[i].threads, true);
        json_int(f, "buffer_mib", (uint64_t)s->dev[i].buffer_mib, true);
        json_num(f, "peak_gbps", s->dev[i].peak / 1e9, true);
        json_num(f, "peak_spread_gbps", s->dev[i].spread / 1e9, true);
        json_int(f, "n_kernels", (uint64_t)s->dev[i].n_kernels, true);
        json_str(f, "kernel", s->dev[i].kernel, true);
        json_str(f, "peak_source", s->dev[i].given ? "given" : "measured", false);
        fputc('}', f);
    }
    fputs(s->n_dev ? "\n  ],\n  \"results\": [" : "],\n  \"results\": [", f);
    for (int i = 0; i < r->n; i++) {
        const bench_row *w = &r->rows[i];
        char buf[32];
        fputs(i ? ",\n    {" : "\n    {", f);
        json_str(f, "model", w->model, true);
        json_str(f, "model_type", w->model_type, true);
        json_int(f, "size_bytes", w->model_bytes, true);
        json_int(f, "params", w->model_params, true);
        json_str(f, "device", w->device, true);
        json_str(f, "device_name", w->device_name, true);
        json_int(f, "threads", (uint64_t)(w->threads > 0 ? w->threads : 0), true);
        ngl_text(w->n_gpu_layers, buf, sizeof buf);
        json_str(f, "n_gpu_layers", buf, true);
        json_int(f, "n_batch", (uint64_t)(w->n_batch > 0 ? w->n_batch : 0), true);
        json_str(f, "type_k", w->kv_type, true);
        json_str(f, "type_v", w->kv_type_v[0] ? w->kv_type_v : w->kv_type, true);
        char tn[64];
        test_name(w, tn, sizeof tn);
        json_str(f, "test", tn, true);
        json_int(f, "n_tokens", (uint64_t)(w->n_tokens > 0 ? w->n_tokens : 0), true);
        json_int(f, "n_depth", (uint64_t)(w->n_depth > 0 ? w->n_depth : 0), true);
        json_int(f, "n_parallel", (uint64_t)(w->n_parallel > 1 ? w->n_parallel : 1), true);
        json_num(f, "avg_ts_per_stream", w->ts_stream, true);
        json_int(f, "reps", (uint64_t)(w->reps > 0 ? w->reps : 0), true);
        fprintf(f, "\"ok\": %s, ", w->ok ? "true" : "false");
        json_str(f, "error", w->error, true);
        json_num(f, "avg_ts", w->ts_mean, true);
        json_num(f, "stddev_ts", w->ts_sd, true);
        json_num(f, "avg_s", w->t_mean, true);
        json_num(f, "bytes_per_token", w->bytes_per_token, true);
        json_num(f, "weight_bytes_per_token", w->weight_bytes_per_token, true);
        json_num(f, "gbps", w->gbps, true);
        json_num(f, "peak_gbps", w->peak_gbps, true);
        json_num(f, "peak_spread_gbps", w->peak_spread_gbps, true);
        json_num(f, "pct_peak", w->pct_peak, true);
        fprintf(f, "\"peak_exceeded\": %s, ", w->peak_exceeded ? "true" : "false");
        json_num(f, "predicted_ts", w->predicted_ts, true);
        json_str(f, "prediction", w->prediction_src, true);
        json_str(f, "placement", w->placement, false);
        fputc('}', f);
    }
    fputs(r->n ? "\n  ]\n}\n" : "]\n}\n", f);
}
