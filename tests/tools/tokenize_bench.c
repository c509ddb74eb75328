/* tokenize_bench: tokenizer speed on about 1 MB of text (tokens/s and MB/s for encode and decode). It measures
 * the tokenizer module itself on vocabulary-only GGUF files, so it lives with the test tools that see the
 * internal headers, not in bench/.
 *
 *   tokenize_bench [--text FILE] [--reps N] [VOCAB.gguf ...]
 *
 * Without files it measures every .gguf in ../shared/fixtures/vocab (run from the repository root, or set
 * SLM_SHARED). Without --text the text is built in: prose, code, several scripts, emoji and whitespace
 * runs, repeated with a counter to about 1 MB (the same bytes on every run). Reports the best of N runs. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *const PARAGRAPHS[] = {
    "The quick brown fox jumps over the lazy dog. It's a sentence that uses every letter, and we've used it "
    "for years to test fonts, keyboards and, apparently, tokenizers. Don't you think so? I'll never know.\n\n",
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"
    "for (size_t i = 0; i < len; i++) {\n\tsum += data[i] * 0x9e3779b9u;\n}\n",
    "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller staatlichen "
    "Gewalt. Le cœur a ses raisons que la raison ne connaît point. ¿Qué hora es? Son las 3:45.\n",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Ελληνικά γράμματα. 你好，世界！这是一个测试句子。"
    "日本語のテキストも少し。한국어 문장도 있습니다. مرحبا بالعالم. नमस्ते दुनिया.\n",
    "Emoji 🚀🔥 and flags 🇺🇸🇯🇵, families 👨‍👩‍👧‍👦, numbers 1234567890 3.14159 2,718,281 and "
    "   runs   of    spaces\t\ttabs\n\n\n   and blank lines.\n",
    "{\"id\": 42, \"name\": \"slm\", \"tags\": [\"fast\", \"small\"], \"ok\": true, \"ratio\": 0.125}\n"
    "<html><body><p class=\"x\">Hello &amp; welcome</p></body></html>\n",
};

static char *builtin_text(size_t target, size_t *len) {
    char *buf = malloc(target + 4096);
    size_t n = 0;
    for (int k = 0; buf && n < target; k++) {
        const char *p = PARAGRAPHS[k % (int)(sizeof PARAGRAPHS / sizeof PARAGRAPHS[0])];
        n += (size_t)sprintf(buf + n, "[%d] %s", k, p);
    }
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int bench_one(const char *path, const char *text, size_t len, int reps) {
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    double t0 = now();
    if (slm_gguf_open(path, &g, &err) || slm_tokenizer_create(g, &t, &err)) {
        fprintf(stderr, "tokenize_bench: %s: %s\n", path, err.msg);
        slm_gguf_close(g);
        return 1;
    }
    double load_s = now() - t0;
    slm_tokens v = {0};
    double best_enc = 1e30, best_dec = 1e30;
    for (int r = 0; r < reps; r++) {
        v.n = 0;
        t0 = now();
        if (slm_tokenizer_encode(t, text, len, false, false, &v, &err)) {
            fprintf(stderr, "tokenize_bench: %s\n", err.msg);
            return 1;
        }
        double e = now() - t0;
        if (e < best_enc) best_enc = e;
        char *dec;
        size_t dl;
        t0 = now();
        if (slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, &err)) return 1;
        double d = now() - t0;
        if (d < best_dec) best_dec = d;
        free(dec);
    }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("%-34s %-10s %8d tok  load %6.1f ms  encode %10.0f tok/s %6.2f MB/s  decode %11.0f tok/s\n", name,
           slm_tokenizer_pre(t), v.n, load_s * 1e3, v.n / best_enc, len / best_enc / 1e6, v.n / best_dec);
    slm_tokens_free(&v);
    slm_tokenizer_free(t);
    slm_gguf_close(g);
    return 0;
}

int main(int argc, char **argv) {
    const char *text_path = NULL;
    int reps = 3;
    const char *files[64];
    int nf = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (nf < 64) files[nf++] = argv[i];
    }
    if (reps < 1) reps = 1;
    size_t len = 0;
    char *text = text_path ? read_file(text_path, &len) : builtin_text(1 << 20, &len);
    if (!text) {
        fprintf(stderr, "tokenize_bench: cannot read %s\n", text_path ? text_path : "(built-in text)");
        return 1;
    }
    static char paths[64][768];
    if (!nf) {
        const char *shared = getenv("SLM_SHARED");
        char dir[512];
        snprintf(dir, sizeof dir, "%s/fixtures/vocab", shared ? shared : "../shared");
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) && nf < 64) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            snprintf(paths[nf], sizeof paths[nf], "%s/%s", dir, e->d_name);
            files[nf] = paths[nf];
            nf++;
        }
        if (d) closedir(d);
        if (!nf) {
            fprintf(stderr, "tokenize_bench: no vocabulary given and none in %s\n", dir);
            return 1;
        }
    }
    printf("text: %zu bytes, best of %d runs, one thread\n", len, reps);
    int rc = 0;
    for (int i = 0; i < nf; i++) rc |= bench_one(files[i], text, len, reps);
    free(text);
    return rc;
}
