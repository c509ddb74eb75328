/* Stop strings across token boundaries. A stop string may arrive split over several tokens ("</s" then
 * "top>"), so the text is shown only once no stop string can still begin in it: the longest tail of the
 * unshown text that is a prefix of some stop string is held back, and the rest is shown. The search runs
 * over the held text plus the new piece, so a stop string inside one piece or across pieces is found alike,
 * and the earliest one wins. */
#include <string.h>

#include "serve.h"

void serve_stop_init(serve_stop *s, char *const *stop, int n_stop) {
    *s = (serve_stop){.stop = stop, .n_stop = n_stop};
}

/* The length of the longest tail of t[0..n) that is a proper prefix of a stop string (it may yet become one). */
static size_t held_tail(const serve_stop *s, const char *t, size_t n) {
    size_t best = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t l = strlen(s->stop[i]);
        if (!l) continue;
        size_t k = l - 1 < n ? l - 1 : n;
        for (; k > best; k--)
            if (!memcmp(t + n - k, s->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

bool serve_stop_push(serve_stop *s, const char *text, size_t len, serve_buf *out) {
    if (s->hit) return true;
    if (!s->n_stop) {
        if (!serve_buf_add(out, text, len)) s->hit = true;
        return s->hit;
    }
    if (!serve_buf_add(&s->held, text, len)) return s->hit = true;
    const char *t = s->held.p;
    size_t n = s->held.n, cut = n;
    for (int i = 0; i < s->n_stop; i++) {
        size_t l = strlen(s->stop[i]);
        const char *at = l ? memmem(t, n, s->stop[i], l) : NULL;
        if (at && (size_t)(at - t) < cut) cut = (size_t)(at - t);
    }
    if (cut < n) {
        s->hit = true;
        serve_buf_add(out, t, cut);
        serve_buf_consume(&s->held, n);
        return true;
    }
    size_t keep = held_tail(s, t, n);
    if (!serve_buf_add(out, t, n - keep)) return s->hit = true;
    serve_buf_consume(&s->held, n - keep);
    return false;
}

void serve_stop_flush(serve_stop *s, serve_buf *out) {
    if (!s->hit && s->held.n) serve_buf_add(out, s->held.p, s->held.n);
    serve_buf_consume(&s->held, s->held.n);
}

void serve_stop_free(serve_stop *s) { serve_buf_free(&s->held); }
