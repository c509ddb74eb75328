/* One benchmark test on a loaded model: a prompt of n tokens in one eval (pp) or n single-token evals (tg;
 * with n_parallel P > 1, P sequences of one context each generate n tokens, one slm_eval_batch of P tokens
 * per step, as slm serve's decode pass runs them), repeated on a fresh context, with the bandwidth
 * accounting of generation runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "synth.h"

static double run_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

bench_stats bench_stats_of(const double *x, int n) {
    bench_stats s = {0, 0, n};
    if (n < 1) return s;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    s.mean = sum / n;
    if (n > 1) {
        double sq = 0;
        for (int i = 0; i < n; i++) sq += (x[i] - s.mean) * (x[i] - s.mean);
        s.sd = sqrt(sq / (n - 1)); /* sample standard deviation, as llama-bench reports */
    }
    return s;
}

bench_row *bench_results_add(bench_results *r) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        bench_row *rows = realloc(r->rows, (size_t)cap * sizeof *rows);
        if (!rows) return NULL;
        r->rows = rows;
        r->cap = cap;
    }
    bench_row *row = &r->rows[r->n++];
    memset(row, 0, sizeof *row);
    return row;
}

void bench_results_free(bench_results *r) {
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---- model sources ---- */

slm_status bench_source_synthetic(bench_source *src, const char *spec, int n_threads, slm_error *err) {
    memset(src, 0, sizeof *src);
    slm_synth_spec s;
    slm_status st = slm_synth_parse(spec, &s, err);
    if (st) return st;
    snprintf(src->label, sizeof src->label, "synthetic %s", s.name);
    return slm_synth_build(&s, n_threads, &src->synth_data, &src->synth_size, err);
}

void bench_source_free(bench_source *src) {
    free(src->synth_data);
    memset(src, 0, sizeof *src);
}

slm_status bench_source_load(const bench_source *src, const slm_params *p, slm_model **m, slm_error *err) {
    *m = NULL;
    if (src->path) return slm_model_load(src->path, p, m, err);
    return slm_model_load_memory(src->synth_data, src->synth_size, p, m, err); /* the same path as a file */
}

/* ---- one test ---- */

static void fail_row(bench_row *row, const char *msg) {
    row->ok = false;
    snprintf(row->error, sizeof row->error, "%s", msg);
}

/* Seconds per token at each device's peak for this row's bytes: the time decode would take if every
 * device streamed its share at its measured peak. 0 when a peak is unknown. */
static double ideal_seconds(int n_devices, const bench_bytes *b, bench_sysinfo *si, const bench_options *o,
                            const bench_row *row, int n_past, int n_gen, const bench_device_fact **peak_out) {
    double t = 0;
    for (int d = 0; d < n_devices; d++) {
        double bytes = bench_bytes_per_token(b, d, n_past, n_gen);
        if (bytes <= 0) continue;
        const char *spec = d == 0 ? "cpu" : row->device;
        const bench_device_fact *f = bench_sysinfo_peak(si, o, spec, d == 0 ? row->threads : 0, !o->no_peak);
        if (!f || f->peak <= 0) return 0;
        t += bytes / f->peak;
    }
    /* the peak column shows the device that holds most of the bytes */
    double best = -1;
    for (int d = 0; d < n_devices; d++) {
        double bytes = bench_bytes_per_token(b, d, n_past, n_gen);
        if (bytes > best) {
            best = bytes;
            *peak_out = bench_sysinfo_peak(si, o, d == 0 ? "cpu" : row->device, d == 0 ? row->threads : 0, false);
        }
    }
    return t;
}

void bench_run_test(slm_model *m, const bench_options *o, bench_sysinfo *si, bench_row *row) {
    slm_error err = {{0}};
    int n = row->n_tokens;
    row->ok = true;
    row->reps = 0;
    slm_plan_info pi = slm_model_plan_info(m);
    snprintf(row->placement, sizeof row->placement, "%s", pi.text);
    int n_vocab = slm_model_get_info(m).n_vocab;
    int32_t *toks = malloc((size_t)(n > 0 ? n : 1) * sizeof *toks);
    double *ts = malloc((size_t)o->reps * sizeof *ts), *tsec = malloc((size_t)o->reps * sizeof *tsec);
    slm_context *c = NULL;
    slm_batch_part *parts = NULL;
    if (!toks || !ts || !tsec) {
        fail_row(row, "out of memory");
        goto done;
    }
    uint64_t st = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)n + 1;
    for (int i = 0; i < n; i++) {
        st ^= st >> 12;
        st ^= st << 25;
        st ^= st >> 27;
        toks[i] = (int32_t)((st * 2685821657736338717ull >> 33) % (uint64_t)n_vocab);
    }
    int P = row->kind == BENCH_TG && row->n_parallel > 1 ? row->n_parallel : 1;
    parts = calloc((size_t)P, sizeof *parts);
    if (!parts || slm_context_create_seqs(m, P, &c, &err)) {
        fail_row(row, parts ? err.msg : "out of memory");
        goto done;
    }
    int depth = row->n_depth;
    if (n + depth > slm_context_n_ctx(c)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%d tokens%s do not fit the context of %d", n + depth,
                 depth ? " (with the depth)" : "", slm_context_n_ctx(c));
        fail_row(row, msg);
        goto done;
    }
    if (depth > 0) {
        /* -d: every sequence's cache filled once with `depth` prompt tokens (untimed); each repetition then
         * rewinds to that position, so that the rows it reads are the same as after a fresh fill */
        int32_t *fill = malloc((size_t)depth * sizeof *fill);
        if (!fill) {
            fail_row(row, "out of memory");
            goto done;
        }
        for (int i = 0; i < depth; i++) fill[i] = toks[i % (n > 0 ? n : 1)];
        fprintf(stderr, " (filling %d positions)", depth);
        slm_status s = SLM_OK;
        for (int q = 0; q < P && !s; q++)
            for (int at = 0; at < depth && !s; at += row->n_batch) {
                int len = depth - at < row->n_batch ? depth - at : row->n_batch;
                slm_batch_part part = {.seq = q, .tokens = fill + at, .n = len};
                s = slm_eval_batch(c, &part, 1, &err);
            }
        free(fill);
        if (s) {
            fail_row(row, err.msg);
            goto done;
        }
    }
    int warm = o->warmup ? (row->kind == BENCH_PP ? (n < row->n_batch ? n : row->n_batch) : 2) : 0;
    if (warm > n) warm = n;
    for (int r = -(warm > 0); r < o->reps; r++) {
        for (int q = 0; q < P; q++) slm_seq_rewind(c, q, depth);
        int count = r < 0 ? warm : n;
        double t0 = run_now();
        slm_status s = SLM_OK;
        if (row->kind == BENCH_PP) s = slm_eval(c, toks, count, false, &err);
        else if (P == 1)
            for (int i = 0; i < count && !s; i++) s = slm_eval(c, &toks[i], 1, false, &err);
        else
            for (int i = 0; i < count && !s; i++) {
                /* each sequence its own token: sequence q at step i takes token (i + q) mod n */
                for (int q = 0; q < P; q++) parts[q] = (slm_batch_part){.seq = q, .tokens = &toks[(i + q) % n], .n = 1};
                s = slm_eval_batch(c, parts, P, &err);
            }
        double dt = run_now() - t0;
        if (s) {
            fail_row(row, err.msg);
            goto done;
        }
        if (r >= 0) {
            tsec[r] = dt;
            ts[r] = dt > 0 ? (double)count * P / dt : 0;
        }
    }
    row->reps = o->reps;
    bench_stats s = bench_stats_of(ts, o->reps), t = bench_stats_of(tsec, o->reps);
    row->ts_mean = s.mean;
    row->ts_sd = s.sd;
    row->ts_stream = s.mean / P;
    row->t_mean = t.mean;
    if (row->kind == BENCH_TG) {
        bench_bytes b;
        bench_bytes_from_plan(&pi, slm_model_kv_read_bytes(m), &b);
        /* a batched step reads the weights once for its P tokens and each sequence's own KV rows */
        double kv = bench_bytes_per_token(&b, -1, depth, n) - (double)b.weights;
        row->weight_bytes_per_token = (double)b.weights / P;
        row->bytes_per_token = row->weight_bytes_per_token + kv;
        row->gbps = row->bytes_per_token * row->ts_mean / 1e9;
        const bench_device_fact *peak = NULL;
        double ideal = ideal_seconds(pi.n_devices, &b, si, o, row, depth, n, &peak);
        if (peak) {
            row->peak_gbps = peak->peak / 1e9;
            row->peak_spread_gbps = peak->spread / 1e9;
        }
        /* a step's time at peak: the weights once, the KV of every sequence */
        if (ideal > 0 && P > 1) ideal += (P - 1) * kv / (peak ? peak->peak : 1e30);
        if (ideal > 0) row->pct_peak = 100.0 * ideal * row->ts_mean / P;
        row->peak_exceeded = row->pct_peak > 100.0;
        if (P > 1) {
            /* the planner predicts one sequence's decode */
        } else if (pi.predicted_tps > 0) {
            row->predicted_ts = pi.predicted_tps;
            snprintf(row->prediction_src, sizeof row->prediction_src, "planner");
        } else if (ideal > 0) {
            row->predicted_ts = 1.0 / ideal;
            snprintf(row->prediction_src, sizeof row->prediction_src, "estimate");
        }
    }
done:
    slm_context_free(c);
    free(parts);
    free(toks);
    free(ts);
    free(tsec);
}
