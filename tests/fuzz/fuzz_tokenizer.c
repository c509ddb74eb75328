/* libFuzzer target: encode and decode random bytes with the vocabulary fixtures' tokenizers.
 *
 * Vocabularies: $SLM_FUZZ_VOCAB (one GGUF file), else every .gguf in ../shared/fixtures/vocab (run from the
 * repository root, or set SLM_SHARED). The first input byte picks the tokenizer and the add_special /
 * parse_special flags; the rest is the text. Checks: encoding never fails, every id is in range,
 * decode(encode(s)) == s where the tokenizer is lossless, and the streaming detokenizer only ever hands
 * out valid UTF-8. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

#define MAX_VOCABS 8

/* The harness's own state: libFuzzer gives no other place to keep tokenizers between inputs. */
static slm_gguf *g_files[MAX_VOCABS];
static slm_tokenizer *g_toks[MAX_VOCABS];
static int g_n;

static void load(const char *path) {
    if (g_n == MAX_VOCABS) return;
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    if (slm_gguf_open(path, &g, &err) || slm_tokenizer_create(g, &t, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        slm_gguf_close(g);
        return;
    }
    g_files[g_n] = g;
    g_toks[g_n++] = t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *one = getenv("SLM_FUZZ_VOCAB");
    if (one) {
        load(one);
    } else {
        const char *shared = getenv("SLM_SHARED");
        char dir[512];
        snprintf(dir, sizeof dir, "%s/fixtures/vocab", shared ? shared : "../shared");
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            char path[800];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            load(path);
        }
        if (d) closedir(d);
    }
    if (!g_n) {
        fprintf(stderr, "fuzz_tokenizer: no vocabulary: set SLM_FUZZ_VOCAB=FILE.gguf or run from the repo root\n");
        abort();
    }
    return 0;
}

/* Is s[0..n) valid UTF-8? (The detokenizer promises it.) */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        int k = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
        if (!k || i + (size_t)k > n) return 0;
        for (int j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        if (k == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f))) return 0;
        if (k == 4 && ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))) return 0;
        i += (size_t)k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int sel = data[0];
    const slm_tokenizer *t = g_toks[(sel >> 2) % g_n];
    bool add_special = sel & 1, parse_special = sel & 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    slm_tokens v = {0};
    slm_error err = {{0}};
    if (slm_tokenizer_encode(t, text, len, add_special, parse_special, &v, &err)) {
        fprintf(stderr, "encode failed: %s\n", err.msg);
        abort();
    }
    int n_vocab = slm_tokenizer_n_vocab(t);
    for (int i = 0; i < v.n; i++)
        if (v.ids[i] < 0 || v.ids[i] >= n_vocab) abort();

    /* lossless: byte-level BPE (unless it normalizes to NFC) and SentencePiece without U+2581 in the text */
    bool spm = slm_tokenizer_get_kind(t) == SLM_TOKENIZER_SPM;
    bool lossless =
        !add_special && (spm ? !memmem(text, len, "\xe2\x96\x81", 3) : strcmp(slm_tokenizer_pre(t), "qwen2") != 0);
    char *dec = NULL;
    size_t dl = 0;
    if (slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, &err)) abort();
    if (lossless && (dl != len || memcmp(dec, text, len))) {
        fprintf(stderr, "decode(encode(s)) != s (%zu vs %zu bytes)\n", dl, len);
        abort();
    }
    free(dec);

    slm_detok d;
    slm_detok_init(&d, t, true);
    for (int i = 0; i < v.n; i++) {
        size_t l;
        const char *o = slm_detok_push(&d, v.ids[i], &l);
        if (!o || !valid_utf8((const unsigned char *)o, l)) abort();
    }
    size_t l;
    const char *o = slm_detok_flush(&d, &l);
    if (!o || !valid_utf8((const unsigned char *)o, l)) abort();
    slm_detok_free(&d);
    slm_tokens_free(&v);
    return 0;
}
