/* The pre-tokenizer of byte-level BPE: the text is split into chunks by the family's regular expressions
 * (PCRE2, Unicode properties), the split patterns of the families' published tokenizer.json files, and each
 * chunk is encoded on its own (tokenizer_bpe.c). Qwen2 also puts the text in Unicode normal form C first
 * (ICU, when built with SLM_HAVE_ICU). */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "utf8.h"

#ifdef SLM_HAVE_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

#define P_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define P_LLAMA3                                                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"           \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define P_QWEN2                                                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"                \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define P_DIGIT "\\p{N}"

typedef struct pre_def {
    const char *names; /* space separated tokenizer.ggml.pre values */
    const char *pattern[SLM_TOK_MAX_PASSES];
    bool ignore_merges;
    bool nfc;
} pre_def;

static const pre_def PRE_DEFS[] = {
    {" llama-bpe llama3 ", {P_LLAMA3}, true, false},
    {" dbrx smaug-bpe falcon3 ", {P_LLAMA3}, false, false},
    {" qwen2 deepseek-r1-qwen megrez ", {P_QWEN2}, false, true},
    /* Digits(individual_digits: every \p{N} character alone) then GPT-2's ByteLevel split */
    {" smollm starcoder refact codeshell ", {P_DIGIT, P_GPT2}, false, false},
    {" default gpt-2 gpt2 phi-2 olmo jina-es jina-de poro-chat ", {P_GPT2}, false, false},
};

static const pre_def *pre_lookup(const char *name) {
    char key[40];
    snprintf(key, sizeof key, " %s ", name);
    for (size_t i = 0; i < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; i++)
        if (strstr(PRE_DEFS[i].names, key)) return &PRE_DEFS[i];
    return NULL;
}

slm_status slm_tok_pre_init(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    slm_gguf_str pre = {"default", 7};
    slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    snprintf(t->pre, sizeof t->pre, "%.*s", (int)(pre.len < 31 ? pre.len : 31), pre.ptr);
    const pre_def *d = pre_lookup(t->pre);
    if (!d) {
        /* an unknown name: GPT-2's split is the common ancestor of the others and the safest guess */
        d = pre_lookup("default");
        snprintf(t->pre, sizeof t->pre, "default");
    }
    t->ignore_merges = d->ignore_merges;
    t->nfc = d->nfc;
    for (int i = 0; i < SLM_TOK_MAX_PASSES && d->pattern[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        /* MATCH_INVALID_UTF: invalid bytes never match and fall into the gaps between matches, which become
         * chunks of their own, so any byte string can be tokenized */
        t->re[i] = pcre2_compile((PCRE2_SPTR)d->pattern[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return slm_fail(err, SLM_ERR_UNSUPPORTED, "pre-tokenizer %s: pattern %d does not compile: %s", t->pre, i,
                            (const char *)msg);
        }
        pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE); /* without JIT (unsupported CPU) it still works */
        t->n_re = i + 1;
    }
    return SLM_OK;
}

/* Splits text by pre-tokenizer pass `pass` (matches and the gaps between them are chunks) and hands each
 * chunk to the next pass, the last one to BPE. */
static bool pre_split(const slm_tokenizer *t, slm_tok_work *w, int pass, const char *text, size_t len,
                      slm_tokens *out) {
    if (pass == t->n_re) return slm_tok_bpe_encode(t, w, text, len, out);
    size_t off = 0, last = 0;
    while (off < len) {
        int rc = pcre2_match(t->re[pass], (PCRE2_SPTR)text, len, off, 0, w->md, NULL);
        /* the JIT stack is small; the interpreter keeps its backtracking on the heap */
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
            rc = pcre2_match(t->re[pass], (PCRE2_SPTR)text, len, off, PCRE2_NO_JIT, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break; /* the rest is one gap */
        if (rc < 0) {
            w->regex_rc = rc;
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t s = ov[0], e = ov[1];
        if (s > last && !pre_split(t, w, pass + 1, text + last, s - last, out)) return false;
        if (e > s && !pre_split(t, w, pass + 1, text + s, e - s, out)) return false;
        if (e == s) { /* an empty match: step over one character so the loop progresses */
            off = s + (size_t)slm_utf8_char_len((const unsigned char *)text + s, len - s);
            last = s;
        } else off = last = e;
    }
    if (last < len && !pre_split(t, w, pass + 1, text + last, len - last, out)) return false;
    return true;
}

#ifdef SLM_HAVE_ICU
/* NFC of one valid UTF-8 run into w->norm; false when ICU fails (the caller then keeps the text). */
static bool nfc_run(slm_tok_work *w, const char *text, size_t len, size_t *out_len) {
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&e);
    if (U_FAILURE(e) || len > 0x1fffffff) return false;
    UChar *u16 = malloc(len * 2 * sizeof *u16 + 2), *n16 = malloc(len * 6 * sizeof *n16 + 2);
    bool ok = false;
    int32_t l16 = 0, ln = 0, l8 = 0;
    if (!u16 || !n16) goto done;
    u_strFromUTF8(u16, (int32_t)(len * 2 + 1), &l16, text, (int32_t)len, &e);
    if (U_FAILURE(e)) goto done;
    ln = unorm2_normalize(nfc, u16, l16, n16, (int32_t)(len * 6 + 1), &e);
    if (U_FAILURE(e)) goto done;
    /* NFC never makes UTF-8 longer than 3x its UTF-16 length */
    if (!slm_tok_grow((void **)&w->norm, &w->norm_cap, (size_t)ln * 3 + 1, 1)) goto done;
    u_strToUTF8(w->norm, (int32_t)w->norm_cap, &l8, n16, ln, &e);
    ok = U_SUCCESS(e);
    *out_len = (size_t)l8;
done:
    free(u16);
    free(n16);
    return ok;
}
#endif

/* Normal form C before the split (Qwen2's normalizer). Only runs of valid UTF-8 are normalized; invalid
 * bytes pass through unchanged, so any byte string still round-trips. Without ICU the text is used as
 * it is (the same for text already in NFC, which is nearly all text). */
static bool split_nfc(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out) {
#ifdef SLM_HAVE_ICU
    /* quick path: ASCII and Latin-1-only text below U+0300 cannot change */
    size_t i = 0;
    while (i < len && (unsigned char)text[i] < 0xcc) i++;
    if (i == len) return pre_split(t, w, 0, text, len, out);
    size_t run = 0;
    for (i = 0; i <= len;) {
        int seq = 1, r = i < len ? slm_utf8_check((const unsigned char *)text + i, len - i, &seq) : -1;
        if (r == 1) {
            i += (size_t)seq;
            continue;
        }
        if (i > run) {
            size_t nl = 0;
            if (nfc_run(w, text + run, i - run, &nl)) {
                /* w->norm is reused by the next run: normalize, then tokenize from a private copy */
                char *copy = malloc(nl ? nl : 1);
                if (!copy) return false;
                memcpy(copy, w->norm, nl);
                bool ok = pre_split(t, w, 0, copy, nl, out);
                free(copy);
                if (!ok) return false;
            } else if (!pre_split(t, w, 0, text + run, i - run, out)) return false;
        }
        if (i == len) break;
        if (!pre_split(t, w, 0, text + i, 1, out)) return false; /* an invalid byte, alone */
        run = ++i;
    }
    return true;
#else
    return pre_split(t, w, 0, text, len, out);
#endif
}

bool slm_tok_pre_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out) {
    return t->nfc ? split_nfc(t, w, text, len, out) : pre_split(t, w, 0, text, len, out);
}
