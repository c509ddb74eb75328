/* tokenize: slm's tokenizer on a GGUF file (a full model or a vocabulary-only file), for the Python
 * reference test (tests/reference/test_tokenizer_hf.py).
 *
 *   tokenize FILE.gguf [--add-special] [--parse-special] < INPUT
 *
 * Each line of INPUT is one string, hex encoded (so strings may hold newlines or any bytes). Each output
 * line is "ID ID ID|HEX": the ids, then the hex of the decoded ids (decode(encode(s))). An empty string
 * is an empty line. Exit status 1 when the file or the tokenizer cannot be loaded.
 *
 *   tokenize FILE.gguf --chat [--template FILE] < INPUT
 *
 * Renders conversations with the chat template of FILE (or the template text in --template FILE; with
 * neither, the family FILE's vocabulary implies) through core/chat.c. INPUT lines are "ROLE HEX" (the
 * content hex encoded); a line "= 0" or "= 1" ends a conversation, rendering it without or with the
 * generation prompt. Output: one line per conversation, "FAMILY HEX" (the rendered text), or
 * "ERROR message" (also once, alone, when no template can be chosen). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t unhex(char *line, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        if (hi < 0 || lo < 0) break;
        line[len++] = (char)(hi * 16 + lo);
    }
    return len;
}

static char *read_text(const char *path) {
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
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static int chat_mode(const slm_gguf *g, const char *tmpl_path) {
    char *tmpl = NULL;
    slm_gguf_str v;
    if (tmpl_path) {
        if (!(tmpl = read_text(tmpl_path))) {
            fprintf(stderr, "tokenize: cannot read %s\n", tmpl_path);
            return 1;
        }
    } else if (slm_gguf_get_str(g, "tokenizer.chat_template", &v) && (tmpl = malloc(v.len + 1))) {
        memcpy(tmpl, v.ptr, v.len);
        tmpl[v.len] = 0;
    }
    slm_chat_template t;
    slm_error err = {{0}};
    /* the vocabulary picks the family when there is no template; a file without one still renders */
    slm_tokenizer *vocab = NULL;
    if (slm_tokenizer_create(g, &vocab, &err)) vocab = NULL;
    slm_status s = slm_chat_template_init(tmpl, vocab, &t, &err);
    slm_tokenizer_free(vocab);
    free(tmpl);
    if (s) {
        printf("ERROR %s\n", err.msg);
        return 0;
    }
    slm_chat_msg msgs[64];
    char *owned[64];
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        line[len] = 0;
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = 0;
        if (!strcmp(line, "=")) {
            char *out = NULL;
            s = slm_chat_render(&t, msgs, n, sp[1] == '1', &out, &err);
            if (s) printf("ERROR %s\n", err.msg);
            else {
                printf("%s ", slm_chat_family_name(t.family));
                for (const char *c = out; *c; c++) printf("%02x", (unsigned char)*c);
                printf("\n");
            }
            free(out);
            for (int i = 0; i < n; i++) free(owned[i]);
            n = 0;
            continue;
        }
        if (n == 64) continue;
        size_t cl = strlen(sp + 1);
        owned[n] = malloc(strlen(line) + cl + 2);
        if (!owned[n]) break;
        strcpy(owned[n], line);
        char *content = owned[n] + strlen(line) + 1;
        memcpy(content, sp + 1, cl + 1);
        content[unhex(content, cl)] = 0;
        msgs[n] = (slm_chat_msg){owned[n], content};
        n++;
    }
    for (int i = 0; i < n; i++) free(owned[i]);
    free(line);
    slm_chat_template_free(&t);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *tmpl_path = NULL;
    bool add_special = false, parse_special = false, chat = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--add-special")) add_special = true;
        else if (!strcmp(argv[i], "--parse-special")) parse_special = true;
        else if (!strcmp(argv[i], "--chat")) chat = true;
        else if (!strcmp(argv[i], "--template") && i + 1 < argc) tmpl_path = argv[++i];
        else path = argv[i];
    }
    if (!path) {
        fprintf(stderr,
                "usage: tokenize FILE.gguf [--add-special] [--parse-special] < hex lines\n"
                "       tokenize FILE.gguf --chat [--template FILE] < conversations\n");
        return 2;
    }
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    if (chat) {
        if (slm_gguf_open(path, &g, &err)) {
            fprintf(stderr, "tokenize: %s\n", err.msg);
            return 1;
        }
        int rc = chat_mode(g, tmpl_path);
        slm_gguf_close(g);
        return rc;
    }
    if (slm_gguf_open(path, &g, &err) || slm_tokenizer_create(g, &t, &err)) {
        fprintf(stderr, "tokenize: %s\n", err.msg);
        slm_gguf_close(g);
        return 1;
    }
    size_t cap = 0;
    char *line = NULL;
    ssize_t n;
    slm_tokens v = {0};
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        size_t len = unhex(line, (size_t)n);
        v.n = 0;
        if (slm_tokenizer_encode(t, line, len, add_special, parse_special, &v, &err)) {
            fprintf(stderr, "tokenize: %s\n", err.msg);
            rc = 1;
            break;
        }
        for (int i = 0; i < v.n; i++) printf(i ? " %d" : "%d", v.ids[i]);
        char *dec = NULL;
        size_t dl = 0;
        if (slm_tokenizer_decode(t, v.ids, v.n, false, &dec, &dl, &err)) {
            fprintf(stderr, "tokenize: %s\n", err.msg);
            rc = 1;
            break;
        }
        putchar('|');
        for (size_t i = 0; i < dl; i++) printf("%02x", (unsigned char)dec[i]);
        putchar('\n');
        free(dec);
    }
    fflush(stdout);
    free(line);
    slm_tokens_free(&v);
    slm_tokenizer_free(t);
    slm_gguf_close(g);
    return rc;
}
