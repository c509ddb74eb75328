/* The --sweep-ngl plot: tokens/s against the number of GPU units (layers, + the head), the planner's
 * prediction and the measurement as two polylines with markers, axes with round ticks. Plain SVG 1.1, no
 * scripts or external resources, so it opens in any browser. */
#include <math.h>
#include <stdio.h>

#include "bench.h"

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about n ticks over [0, max]. */
static double nice_step(double max, int n) {
    if (max <= 0) return 1;
    double raw = max / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void polyline(FILE *f, const bench_sweep_point *p, int n, bool measured, double x0, double y0, double sx,
                     double sy, const char *color) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
            measured ? "" : " stroke-dasharray=\"6 4\"");
    for (int i = 0; i < n; i++) {
        double v = measured ? p[i].measured : p[i].predicted;
        if (v > 0) fprintf(f, "%.1f,%.1f ", x0 + p[i].gpu_units * sx, y0 - v * sy);
    }
    fputs("\"/>\n", f);
    for (int i = 0; i < n; i++) {
        double v = measured ? p[i].measured : p[i].predicted;
        if (v > 0)
            fprintf(f,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%d GPU units: %.2f tok/s</title>"
                    "</circle>\n",
                    x0 + p[i].gpu_units * sx, y0 - v * sy, color, p[i].gpu_units, v);
    }
}

void bench_svg_sweep_file(FILE *f, const char *title, const bench_sweep_point *p, int n) {
    const double W = 720, H = 440, L = 70, R = 20, T = 50, B = 60;
    int max_x = 1;
    double max_y = 0;
    for (int i = 0; i < n; i++) {
        if (p[i].gpu_units > max_x) max_x = p[i].gpu_units;
        if (p[i].measured > max_y) max_y = p[i].measured;
        if (p[i].predicted > max_y) max_y = p[i].predicted;
    }
    if (max_y <= 0) max_y = 1;
    double ystep = nice_step(max_y, 6), ytop = ceil(max_y / ystep) * ystep;
    double sx = (W - L - R) / max_x, sy = (H - T - B) / ytop, x0 = L, y0 = H - B;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
    /* grid and y ticks */
    for (double y = 0; y <= ytop + ystep / 2; y += ystep) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y0 - y * sy, W - R,
                y0 - y * sy);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", x0 - 6, y0 - y * sy + 4, y);
    }
    double xstep = nice_step(max_x, 10);
    if (xstep < 1) xstep = 1;
    for (double x = 0; x <= max_x + 0.5; x += xstep)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x0 + x * sx, y0 + 18, x);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0, W - R, y0);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0, x0, (double)T);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">GPU layers (+1 = output head)</text>\n",
            x0 + (W - L - R) / 2, H - 18);
    fprintf(f,
            "<text x=\"18\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.0f)\">tokens/s "
            "(generation)</text>\n",
            y0 - (H - T - B) / 2, y0 - (H - T - B) / 2);
    polyline(f, p, n, false, x0, y0, sx, sy, "#1f77b4");
    polyline(f, p, n, true, x0, y0, sx, sy, "#d62728");
    /* legend */
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#1f77b4\" stroke-width=\"2\" "
            "stroke-dasharray=\"6 4\"/><text x=\"%.0f\" y=\"%.0f\">predicted</text>\n",
            x0 + 12, (double)T + 8, x0 + 42, (double)T + 8, x0 + 48, (double)T + 12);
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#d62728\" stroke-width=\"2\"/>"
            "<text x=\"%.0f\" y=\"%.0f\">measured</text>\n",
            x0 + 12, (double)T + 26, x0 + 42, (double)T + 26, x0 + 48, (double)T + 30);
    fputs("</svg>\n", f);
}

slm_status bench_svg_sweep(const char *path, const char *title, const bench_sweep_point *p, int n, slm_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return bench_fail(err, SLM_ERR_IO, "cannot create %s", path);
    bench_svg_sweep_file(f, title, p, n);
    if (fclose(f)) return bench_fail(err, SLM_ERR_IO, "writing %s failed", path);
    return SLM_OK;
}
