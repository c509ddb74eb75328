/* Tokenizer tests: every case of the vocab fixtures (../shared/fixtures/vocab, expected ids from the
 * families' own tokenizers), round trips, special tokens, invalid UTF-8, SentencePiece's single <unk> for
 * a run of unknown characters, and the streaming detokenizer. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_write.h"
#include "test_util.h"
#include "tokenizer.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

static const char *fixture_dir(char *buf, size_t len) {
    const char *shared = getenv("SLM_SHARED");
    snprintf(buf, len, "%s/fixtures/vocab", shared ? shared : "../shared");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/README.md", buf);
    FILE *f = fopen(probe, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}

static slm_tokenizer *load(const char *dir, const char *name, slm_gguf **g) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    slm_error err = {{0}};
    *g = NULL;
    if (slm_gguf_open(path, g, &err)) {
        CHECK(0, "cannot open %s: %s", path, err.msg);
        return NULL;
    }
    slm_tokenizer *t = NULL;
    slm_status s = slm_tokenizer_create(*g, &t, &err);
    CHECK(s == SLM_OK, "%s: tokenizer: %s", name, err.msg);
    return t;
}

static bool encode(const slm_tokenizer *t, const char *s, size_t n, bool add_special, bool parse_special,
                   slm_tokens *v) {
    v->n = 0;
    slm_error err = {{0}};
    slm_status st = slm_tokenizer_encode(t, s, n, add_special, parse_special, v, &err);
    CHECK(st == SLM_OK, "encode failed: %s", err.msg);
    return st == SLM_OK;
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Lines of s[0..n) that are exactly `line` (counted line by line, apart from the case parser below). */
static int count_lines_equal(const char *s, size_t n, const char *line) {
    int k = 0;
    size_t ll = strlen(line);
    for (const char *p = s, *end = s + n; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t l = (size_t)((eol ? eol : end) - p);
        if (l == ll && !memcmp(p, line, ll)) k++;
        p = eol ? eol + 1 : end;
    }
    return k;
}

/* Newline-terminated lines of s[0..n), plus an unterminated last one. */
static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k + (n && s[n - 1] != '\n');
}

/* All cases of one fixture; returns the number of cases checked. *want: how many the files hold, from a
 * count of their own (the separator lines of .inp, which must equal the lines of .out). */
static int run_fixture(const char *dir, const char *name, int *want_cases) {
    char path[600];
    size_t inp_len, out_len;
    snprintf(path, sizeof path, "%s/%s.inp", dir, name);
    char *inp = read_all(path, &inp_len);
    snprintf(path, sizeof path, "%s/%s.out", dir, name);
    char *outp = read_all(path, &out_len);
    CHECK(inp && outp, "%s: cannot read the .inp/.out files", name);
    *want_cases = -1;
    if (inp && outp) {
        int seps = count_lines_equal(inp, inp_len, "__ggml_vocab_test__"), lines = count_lines(outp, out_len);
        CHECK(seps == lines && seps > 0, "%s: %d inputs in .inp but %d lines in .out", name, seps, lines);
        *want_cases = seps;
    }
    slm_gguf *g;
    slm_tokenizer *t = inp && outp ? load(dir, name, &g) : NULL;
    int cases = 0;
    if (!t) goto done;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const char *p = inp, *end = inp + inp_len, *line = outp;
    slm_tokens v = {0};
    while (p < end) {
        const char *q = strstr(p, sep);
        if (!q) break;
        size_t n = (size_t)(q - p);
        /* expected ids: one line of the .out file */
        int32_t want[1024];
        int nw = 0;
        const char *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        for (const char *c = line; c < eol;) {
            char *e;
            long id = strtol(c, &e, 10);
            if (e == c) break;
            if (nw < 1024) want[nw++] = (int32_t)id;
            c = e;
        }
        line = *eol ? eol + 1 : eol;
        if (encode(t, p, n, false, false, &v)) {
            bool same = v.n == nw && (nw == 0 || !memcmp(v.ids, want, (size_t)nw * sizeof *want));
            CHECK(same, "%s case %d (\"%.*s\"): ids differ", name, cases, (int)(n > 60 ? 60 : n), p);
            if (!same) {
                print_ids("want", want, nw);
                print_ids("got ", v.ids, v.n);
            }
            /* decoding gives the text back (these vocabularies are lossless on these inputs) */
            char *dec = NULL;
            size_t dl = 0;
            slm_error err = {{0}};
            CHECK(slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, &err) == SLM_OK, "decode: %s", err.msg);
            CHECK(dec && dl == n && !memcmp(dec, p, n), "%s case %d: decode(encode(s)) != s: \"%s\"", name, cases,
                  dec ? dec : "");
            free(dec);
        }
        cases++;
        p = q + sizeof sep - 1;
    }
    slm_tokens_free(&v);
    slm_tokenizer_free(t);
    slm_gguf_close(g);
done:
    free(inp);
    free(outp);
    return cases;
}

static int32_t one_token(const slm_tokenizer *t, const char *s) {
    slm_tokens v = {0};
    int32_t id = -2;
    if (encode(t, s, strlen(s), false, true, &v) && v.n == 1) id = v.ids[0];
    slm_tokens_free(&v);
    return id;
}

/* Special tokens, flags and end-of-generation ids of the Qwen2 (ChatML) and Llama 3 vocabularies. */
static void check_specials(const char *dir) {
    slm_gguf *g;
    slm_tokenizer *t = load(dir, "ggml-vocab-qwen2.gguf", &g);
    if (t) {
        int32_t im_start = slm_tokenizer_find(t, "<|im_start|>", 12), im_end = slm_tokenizer_find(t, "<|im_end|>", 10);
        CHECK(im_start > 0 && im_end > 0, "qwen2: chat tokens missing (%d %d)", im_start, im_end);
        CHECK(one_token(t, "<|im_start|>") == im_start, "parse_special must give one token");
        slm_tokens v = {0};
        const char *s = "<|im_start|>user\nhi<|im_end|>";
        encode(t, s, strlen(s), false, false, &v);
        CHECK(v.n > 6, "without parse_special the special text is ordinary text (%d tokens)", v.n);
        for (int i = 0; i < v.n; i++) CHECK(v.ids[i] != im_start && v.ids[i] != im_end, "special id at %d", i);
        encode(t, s, strlen(s), false, true, &v);
        CHECK(v.n >= 4 && v.ids[0] == im_start && v.ids[v.n - 1] == im_end, "parse_special: %d tokens", v.n);
        CHECK(slm_tokenizer_is_eog(t, im_end), "<|im_end|> ends generation");
        CHECK(slm_tokenizer_is_eog(t, slm_tokenizer_eos(t)), "EOS ends generation");
        CHECK(!slm_tokenizer_is_eog(t, im_start), "<|im_start|> does not end generation");
        CHECK(slm_tokenizer_eot(t) == im_end, "qwen2 end of turn: %d", slm_tokenizer_eot(t));
        CHECK(!slm_tokenizer_add_bos(t), "qwen2 adds no BOS");
        encode(t, "hi", 2, true, false, &v);
        CHECK(v.n == 1, "add_special adds nothing for qwen2 (%d tokens)", v.n);
        CHECK(!strcmp(slm_tokenizer_pre(t), "qwen2"), "pre %s", slm_tokenizer_pre(t));
        /* Qwen2 normalizes to NFC: "o" + combining acute is "ó" (needs the ICU build, SLM_HAVE_ICU) */
        {
            slm_tokens a = {0}, b = {0};
            const char *decomposed = "Adi\x6f\xcc\x81s caf\x65\xcc\x81", *composed = "Adi\xc3\xb3s caf\xc3\xa9";
            encode(t, decomposed, strlen(decomposed), false, false, &a);
            encode(t, composed, strlen(composed), false, false, &b);
            CHECK(a.n == b.n && a.n > 0 && !memcmp(a.ids, b.ids, (size_t)a.n * sizeof *a.ids),
                  "NFC: decomposed text must tokenize as composed (%d vs %d tokens)%s", a.n, b.n,
#ifdef SLM_HAVE_ICU
                  ""
#else
                  ": this build has no ICU (SLM_HAVE_ICU)"
#endif
            );
            slm_tokens_free(&a);
            slm_tokens_free(&b);
        }
        /* pieces of control tokens are their text; a byte-level piece maps back to raw bytes */
        char buf[64];
        int n = slm_tokenizer_piece(t, im_end, buf, sizeof buf);
        CHECK(n == 10 && !memcmp(buf, "<|im_end|>", 10), "piece of <|im_end|>: %d", n);
        CHECK(slm_tokenizer_piece(t, im_end, buf, 4) == -10, "a small buffer reports the size needed");
        int32_t sp = slm_tokenizer_find(t, "\xc4\xa0the", 5); /* "Ġthe" */
        n = slm_tokenizer_piece(t, sp, buf, sizeof buf);
        CHECK(sp >= 0 && n == 4 && !memcmp(buf, " the", 4), "piece of \"Ġthe\": %d", n);
        /* invalid UTF-8 never fails and survives a round trip */
        const char bad[] = "a\xff\xfe b\xc3 \xe2\x82 \xed\xa0\x80 z\xf0\x9f";
        encode(t, bad, sizeof bad - 1, false, false, &v);
        char *dec = NULL;
        size_t dl = 0;
        CHECK(v.n > 0 && slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, NULL) == SLM_OK, "decode");
        CHECK(dec && dl == sizeof bad - 1 && !memcmp(dec, bad, dl), "invalid UTF-8 round trip");
        free(dec);
        /* a long run of one character stays fast and exact (heap merges) */
        size_t big = 200000;
        char *sp_run = malloc(big);
        memset(sp_run, ' ', big);
        CHECK(encode(t, sp_run, big, false, false, &v) && v.n > 0, "long run");
        slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, NULL);
        CHECK(dec && dl == big && !memcmp(dec, sp_run, big), "long run round trip");
        free(dec);
        free(sp_run);
        slm_tokens_free(&v);
        slm_tokenizer_free(t);
        slm_gguf_close(g);
    }
    t = load(dir, "ggml-vocab-llama-bpe.gguf", &g);
    if (t) {
        int32_t bot = slm_tokenizer_find(t, "<|begin_of_text|>", 17), eot = slm_tokenizer_find(t, "<|eot_id|>", 10);
        CHECK(slm_tokenizer_bos(t) == bot && bot == 128000, "llama3 BOS %d", slm_tokenizer_bos(t));
        CHECK(slm_tokenizer_add_bos(t), "llama3 adds BOS");
        slm_tokens v = {0};
        encode(t, "Hello", 5, true, false, &v);
        CHECK(v.n == 2 && v.ids[0] == bot, "BOS first (%d tokens)", v.n);
        CHECK(slm_tokenizer_is_eog(t, eot) && slm_tokenizer_eot(t) == eot, "<|eot_id|> ends a turn");
        CHECK(one_token(t, "<|start_header_id|>") == slm_tokenizer_find(t, "<|start_header_id|>", 19), "header");
        slm_tokens_free(&v);
        slm_tokenizer_free(t);
        slm_gguf_close(g);
    }
    t = load(dir, "ggml-vocab-llama-spm.gguf", &g);
    if (t) {
        CHECK(slm_tokenizer_get_kind(t) == SLM_TOKENIZER_SPM, "llama-spm is SentencePiece");
        CHECK(slm_tokenizer_bos(t) == 1 && slm_tokenizer_eos(t) == 2 && slm_tokenizer_add_bos(t), "SPM flags");
        slm_tokens v = {0};
        encode(t, "Hello", 5, true, false, &v);
        CHECK(v.n >= 2 && v.ids[0] == 1, "SPM BOS");
        CHECK(one_token(t, "</s>") == 2, "</s> parsed as EOS");
        encode(t, "</s>", 4, false, false, &v);
        CHECK(v.n > 1, "</s> as text without parse_special");
        /* characters outside the vocabulary fall back to bytes; invalid bytes too */
        const char bad[] = "x\xff\xc3(\xf0\x9f\x98";
        encode(t, bad, sizeof bad - 1, false, false, &v);
        char *dec = NULL;
        size_t dl = 0;
        slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, NULL);
        CHECK(dec && dl == sizeof bad - 1 && !memcmp(dec, bad, dl), "SPM invalid UTF-8 round trip");
        free(dec);
        /* streaming: the leading space of the first piece is dropped, bytes of a character are held */
        const char *s = "Hi \xf0\x9f\xa6\x99 \xe1\x9e\x80!";
        encode(t, s, strlen(s), false, false, &v);
        slm_detok d;
        slm_detok_init(&d, t, true);
        char acc[128];
        size_t al = 0, l;
        bool whole = true;
        for (int i = 0; i < v.n; i++) {
            const char *o = slm_detok_push(&d, v.ids[i], &l);
            CHECK(o != NULL, "push");
            /* every chunk handed out is complete UTF-8 */
            for (size_t k = 0; o && k < l;) {
                int seq = 0;
                unsigned char c = (unsigned char)o[k];
                seq = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
                if (k + (size_t)seq > l) whole = false;
                k += (size_t)seq;
            }
            if (o && al + l < sizeof acc) {
                memcpy(acc + al, o, l);
                al += l;
            }
        }
        const char *o = slm_detok_flush(&d, &l);
        CHECK(o && l == 0, "nothing held at the end");
        CHECK(whole, "stream chunks split a character");
        CHECK(al == strlen(s) && !memcmp(acc, s, al), "stream gives the text back: \"%.*s\"", (int)al, acc);
        slm_detok_free(&d);
        slm_tokens_free(&v);
        slm_tokenizer_free(t);
        slm_gguf_close(g);
    }
}

/* A SentencePiece vocabulary without <0xNN> byte pieces, written in memory: characters outside it become
 * <unk>, and SentencePiece emits one <unk> for a whole run of them (its encoder merges adjacent unknown
 * pieces), not one per character. */
static void check_unknown_runs(void) {
    static const char *const toks[] = {"<unk>",
                                       "<s>",
                                       "</s>",
                                       "\xe2\x96\x81",
                                       "a",
                                       "b",
                                       "\xe2\x96\x81"
                                       "a",
                                       "ab"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1};
    static const float scores[] = {0, 0, 0, -1, -2, -3, -0.5f, -0.25f};
    enum { UNK = 0, SP = 3, A = 4, B = 5, SP_A = 6, AB = 7 };
    slm_error err = {{0}};
    slm_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t size = 0;
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    CHECK(slm_gguf_writer_create(&w, &err) == SLM_OK, "writer: %s", err.msg);
    if (!w) return;
    slm_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    slm_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 8);
    slm_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, 8);
    slm_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, 8);
    slm_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", UNK);
    slm_status s = slm_gguf_writer_write_memory(w, &buf, &size, &err);
    if (!s) s = slm_gguf_open_memory(buf, size, &g, &err);
    if (!s) s = slm_tokenizer_create(g, &t, &err);
    CHECK(s == SLM_OK, "no-byte SPM vocabulary: %s", err.msg);
    if (t) {
        struct {
            const char *text;
            int n;
            int32_t ids[8];
        } cases[] = {
            {"zz", 2, {SP, UNK}}, /* the run is one <unk> */
            {"z", 2, {SP, UNK}},
            {"azzb", 3, {SP_A, UNK, B}},                   /* known symbols on both sides end the run */
            {"z z", 4, {SP, UNK, SP, UNK}},                /* "▁" is known: two runs */
            {"ab\xc3\xa9\xe2\x82\xacz", 3, {SP, AB, UNK}}, /* unknown characters of any length */
            {"zab", 3, {SP, UNK, AB}},
        };
        slm_tokens v = {0};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (!encode(t, cases[i].text, strlen(cases[i].text), false, false, &v)) continue;
            bool same = v.n == cases[i].n && !memcmp(v.ids, cases[i].ids, (size_t)v.n * sizeof *v.ids);
            CHECK(same, "no-byte SPM \"%s\": ids differ", cases[i].text);
            if (!same) {
                print_ids("want", cases[i].ids, cases[i].n);
                print_ids("got ", v.ids, v.n);
            }
        }
        slm_tokens_free(&v);
    }
    slm_tokenizer_free(t);
    slm_gguf_close(g);
    free(buf);
    slm_gguf_writer_free(w);
}

/* The UTF-8 stream on its own: held tails, invalid bytes replaced, always valid output. */
static void check_detok_bytes(void) {
    slm_detok d;
    slm_detok_init(&d, NULL, false);
    size_t l;
    const char *o = slm_detok_push_bytes(&d, "ab\xe2\x82", 4, &l);
    CHECK(l == 2 && !memcmp(o, "ab", 2), "held tail");
    o = slm_detok_push_bytes(&d, "\xac", 1, &l);
    CHECK(l == 3 && !memcmp(o, "\xe2\x82\xac", 3), "completed euro sign");
    o = slm_detok_push_bytes(&d, "\xff", 1, &l);
    CHECK(l == 3 && !memcmp(o, "\xef\xbf\xbd", 3), "invalid byte becomes U+FFFD");
    o = slm_detok_push_bytes(&d, "\xe2", 1, &l);
    CHECK(l == 0, "lead byte held");
    o = slm_detok_push_bytes(&d, "x", 1, &l);
    CHECK(l == 4 && !memcmp(o, "\xef\xbf\xbdx", 4), "broken sequence: U+FFFD then the byte (%zu)", l);
    o = slm_detok_push_bytes(&d, "\xf0\x9f", 2, &l);
    CHECK(l == 0, "two of four held");
    o = slm_detok_flush(&d, &l);
    CHECK(l == 6, "flush replaces the unfinished tail (%zu)", l);
    o = slm_detok_push_bytes(&d, "\xed\xa0\x80", 3, &l); /* a surrogate is never valid */
    CHECK(l == 9, "surrogate bytes replaced (%zu)", l);
    slm_detok_free(&d);
}

/* The public API (include/slm.h) over a real model's tokenizer, when the test model is present. The ids
 * are those of the transformers tokenizer built from the same file. */
static void check_public_api(void) {
    char path[600];
    if (!slm_test_model("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
        printf("test_tokenizer: no SmolLM2 test model: public API checks skipped\n");
        return;
    }
    slm_model *m = NULL;
    slm_error err = {{0}};
    slm_params p = slm_params_default();
    slm_status s = slm_model_load(path, &p, &m, &err);
    CHECK(s == SLM_OK, "load %s: %s", path, err.msg);
    if (s) return;
    const char *chat =
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    static const int32_t want[] = {1,   9690,  198, 6077, 5453, 30, 2,   198,  1,  4093,
                                   198, 26843, 17,  2,    198,  1,  520, 9531, 198};
    int32_t ids[64];
    int n = 0;
    s = slm_tokenize(m, chat, strlen(chat), true, true, ids, 64, &n, &err);
    CHECK(s == SLM_OK && n == 19 && !memcmp(ids, want, sizeof want), "SmolLM2 chat prompt ids (%d tokens)", n);
    s = slm_tokenize(m, chat, strlen(chat), true, true, ids, 5, &n, &err);
    CHECK(s == SLM_ERR_CONTEXT && n == 19, "a small buffer fails with the count needed (%d)", n);
    CHECK(slm_token_bos(m) == 1 && slm_token_eos(m) == 2, "SmolLM2 BOS/EOS %d %d", slm_token_bos(m), slm_token_eos(m));
    CHECK(slm_token_is_eog(m, 2) && !slm_token_is_eog(m, 1), "<|im_end|> ends generation, <|im_start|> does not");
    char buf[64];
    int l = slm_token_to_piece(m, 9690, buf, sizeof buf);
    CHECK(l == 6 && !memcmp(buf, "system", 6), "piece of 9690: %d", l);
    slm_model_free(m);
}

int main(void) {
    char dirbuf[512];
    const char *dir = fixture_dir(dirbuf, sizeof dirbuf);
    check_detok_bytes();
    check_unknown_runs();
    if (!dir) {
        fprintf(stderr, "test_tokenizer: no vocab fixtures (set SLM_SHARED): skipping the fixture cases\n");
        if (slm_test_failures) return slm_test_finish("test_tokenizer");
        return SLM_TEST_SKIP;
    }
    static const char *const names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                                        "ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-gpt-2.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int want = 0, n = run_fixture(dir, names[i], &want);
        CHECK(n == want, "%s: %d cases checked of the %d in the files", names[i], n, want);
        printf("%s: %d cases\n", names[i], n);
    }
    check_specials(dir);
    check_public_api();
    return slm_test_finish("test_tokenizer");
}
