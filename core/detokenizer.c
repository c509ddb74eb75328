/* From tokens back to text: each token's decoded bytes (its piece: "▁" becomes a space, <0xNN> its byte,
 * byte-level BPE code points their bytes), whole-sequence decoding, and the streaming detokenizer that holds
 * partial UTF-8 sequences between tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_impl.h"
#include "utf8.h"

/* Decoded bytes of token i written to out (room for 4 * text length), returning their count. */
static size_t make_piece(const slm_tokenizer *t, int i, char *out) {
    const char *s = t->text_pool + t->text_off[i];
    size_t n = t->text_len[i], o = 0;
    int ty = t->type[i];
    if (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED || ty == SLM_TOKEN_TYPE_UNKNOWN) {
        memcpy(out, s, n);
        return n;
    }
    if (t->kind == SLM_TOKENIZER_SPM) {
        unsigned v;
        if (ty == SLM_TOKEN_TYPE_BYTE && n == 6 && sscanf(s, "<0x%2x>", &v) == 1) {
            out[0] = (char)v;
            return 1;
        }
        for (size_t k = 0; k < n;) {
            if (k + 3 <= n && !memcmp(s + k, "\xe2\x96\x81", 3)) {
                out[o++] = ' ';
                k += 3;
            } else out[o++] = s[k++];
        }
        return o;
    }
    for (size_t k = 0; k < n;) {
        int seq;
        if (slm_utf8_check((const unsigned char *)s + k, n - k, &seq) == 1) {
            uint32_t cp = slm_utf8_decode((const unsigned char *)s + k, seq);
            if (cp < 324 && t->cp_byte[cp] >= 0) out[o++] = (char)t->cp_byte[cp];
            else {
                memcpy(out + o, s + k, (size_t)seq);
                o += (size_t)seq;
            }
            k += (size_t)seq;
        } else out[o++] = s[k++];
    }
    return o;
}

slm_status slm_tok_make_pieces(slm_tokenizer *t, slm_error *err) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += t->text_len[i];
    t->piece_pool = malloc(total + 1);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_pool || !t->piece_off || !t->piece_len)
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory for token pieces");
    /* a piece is never longer than its text: "▁" (3 bytes) becomes 1, mapped code points shrink or stay */
    size_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = (uint32_t)off;
        t->piece_len[i] = (uint32_t)make_piece(t, i, t->piece_pool + off);
        off += t->piece_len[i];
    }
    return SLM_OK;
}

int slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, char *buf, int buf_len) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int n = (int)t->piece_len[id];
    if (n > buf_len) return -n;
    memcpy(buf, t->piece_pool + t->piece_off[id], (size_t)n);
    return n;
}

static bool is_special_type(int ty) { return ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_UNKNOWN; }

slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, int n, bool skip_special, char **out,
                                size_t *len, slm_error *err) {
    size_t total = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab) total += t->piece_len[ids[i]];
    char *s = malloc(total);
    if (!s) return slm_fail(err, SLM_ERR_NOMEM, "out of memory decoding %d tokens", n);
    size_t o = 0;
    bool strip = t->kind == SLM_TOKENIZER_SPM && t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        bool special = is_special_type(t->type[id]);
        bool separator = special || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED;
        const char *p = t->piece_pool + t->piece_off[id];
        size_t l = t->piece_len[id];
        if (separator) {
            /* the text after a special token had its own "▁" prefix (see encode_raw in tokenizer.c) */
            strip = t->kind == SLM_TOKENIZER_SPM && t->add_space_prefix;
            if (special && skip_special) continue;
        } else if (strip) {
            if (l && p[0] == ' ') {
                p++;
                l--;
            }
            strip = false;
        }
        memcpy(s + o, p, l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    *len = o;
    return SLM_OK;
}

void slm_detok_init(slm_detok *d, const slm_tokenizer *tok, bool strip_leading_space) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->strip_space = strip_leading_space && tok && tok->kind == SLM_TOKENIZER_SPM && tok->add_space_prefix;
}

void slm_detok_free(slm_detok *d) {
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

static bool detok_out(slm_detok *d, const void *p, size_t n) {
    if (!slm_tok_grow((void **)&d->buf, &d->cap, d->len + n + 1, 1)) return false;
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    d->buf[d->len] = 0;
    return true;
}

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Emits the complete sequences of pend + bytes and keeps an incomplete tail in pend. */
static bool detok_feed(slm_detok *d, const unsigned char *bytes, size_t n) {
    size_t i = 0;
    /* finish the held sequence first, one byte at a time */
    while (d->n_pend && i < n) {
        d->pend[d->n_pend++] = bytes[i++];
        int seq, r = slm_utf8_check(d->pend, (size_t)d->n_pend, &seq);
        if (r == 0) continue;
        if (r == 1) {
            if (!detok_out(d, d->pend, (size_t)seq)) return false;
            d->n_pend = 0;
        } else {
            /* the held lead byte is bad: replace it and rescan what followed it */
            unsigned char rest[4];
            int nr = d->n_pend - 1;
            memcpy(rest, d->pend + 1, (size_t)nr);
            d->n_pend = 0;
            if (!detok_out(d, REPLACEMENT, 3)) return false;
            if (!detok_feed(d, rest, (size_t)nr)) return false;
        }
    }
    size_t run = i; /* start of a run of valid sequences copied in one go */
    while (i < n) {
        int seq, r = slm_utf8_check(bytes + i, n - i, &seq);
        if (r == 1) {
            i += (size_t)seq;
            continue;
        }
        if (!detok_out(d, bytes + run, i - run)) return false;
        if (r == 0) {
            d->n_pend = (int)(n - i);
            memcpy(d->pend, bytes + i, n - i);
            return true;
        }
        if (!detok_out(d, REPLACEMENT, 3)) return false;
        run = ++i;
    }
    return detok_out(d, bytes + run, n - run);
}

const char *slm_detok_push_bytes(slm_detok *d, const char *bytes, size_t n, size_t *len) {
    d->len = 0;
    if (!detok_out(d, "", 0) || !detok_feed(d, (const unsigned char *)bytes, n)) {
        *len = 0;
        return NULL;
    }
    *len = d->len;
    return d->buf;
}

const char *slm_detok_push(slm_detok *d, int32_t id, size_t *len) {
    const slm_tokenizer *t = d->tok;
    if (!t || id < 0 || id >= t->n_vocab) return slm_detok_push_bytes(d, "", 0, len);
    const char *p = t->piece_pool + t->piece_off[id];
    size_t l = t->piece_len[id];
    if (d->strip_space && !is_special_type(t->type[id])) {
        if (l && p[0] == ' ') {
            p++;
            l--;
        }
        d->strip_space = false;
    }
    return slm_detok_push_bytes(d, p, l, len);
}

const char *slm_detok_flush(slm_detok *d, size_t *len) {
    d->len = 0;
    bool ok = detok_out(d, "", 0);
    for (int i = 0; ok && i < d->n_pend; i++) ok = detok_out(d, REPLACEMENT, 3);
    d->n_pend = 0;
    if (!ok) {
        *len = 0;
        return NULL;
    }
    *len = d->len;
    return d->buf;
}
