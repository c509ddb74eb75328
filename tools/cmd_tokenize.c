/* slm tokenize: the tokens of a text as the model's tokenizer makes them, so that users and scripts can
 * check prompts and their lengths.
 *
 * Output (stdout): by default one line per token, ID<TAB>'PIECE'; --ids: one line [ID, ID, ...] (the form
 * scripts parse as JSON or Python); --pieces: the pieces alone, one a line. A piece is the bytes the token
 * stands for in text (slm_token_to_piece: a SentencePiece word's mark is a space), with control characters, the quote, the backslash and bytes that are not part
 * of valid UTF-8 escaped as in C ("\n", "\x0b", "\xe2"), so every line is one token and valid UTF-8. The
 * count goes to stderr, so that stdout stays just the tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "slm.h"

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when it is not one (overlong forms,
 * surrogates and code points beyond U+10FFFF included). */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Appends the escaped form of piece p[0..n) to out (of at least 4 * n + 1 bytes); returns its length. */
static size_t escape_piece(const char *p, size_t n, char *out) {
    const unsigned char *s = (const unsigned char *)p;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int l = utf8_len(s + i, n - i);
        const char *named = c == '\n' ? "\\n"
            : c == '\t'               ? "\\t"
            : c == '\r'               ? "\\r"
            : c == '\\'               ? "\\\\"
            : c == '\''               ? "\\'"
                                      : NULL;
        if (named) {
            memcpy(out + o, named, 2);
            o += 2;
            i++;
        } else if (l == 0 || c < 0x20 || c == 0x7f) {
            o += (size_t)sprintf(out + o, "\\x%02x", c);
            i++;
        } else {
            memcpy(out + o, s + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
        }
    }
    out[o] = 0;
    return o;
}

int slm_cmd_tokenize(int argc, char **argv) {
    slm_cli_opts o;
    if (!slm_cli_parse("tokenize", argc, argv, 2, &o)) return 1;
    if (o.help) {
        slm_cli_usage(stdout, "tokenize");
        return 0;
    }
    if (o.ids && o.pieces) {
        fprintf(stderr, "slm: tokenize: --ids and --pieces are two different outputs: choose one\n");
        return 1;
    }
    if (!o.prompt == !o.file) {
        fprintf(stderr, "slm: tokenize needs the text: -p TEXT or -f FILE (one of them)\n");
        return 1;
    }
    /* the tokenizer alone is used: no GPU is started unless one is named */
    if (!o.params.device) o.params.device = "cpu";
    char *text = NULL;
    size_t len;
    if (o.file) {
        text = slm_cli_read_file(o.file, &len);
        if (!text) return 1;
    } else {
        len = strlen(o.prompt);
    }
    slm_model *m;
    if (slm_cli_load(&o, &m, NULL)) {
        free(text);
        return 1;
    }
    int rc = 1, n = 0;
    char *line = NULL;
    int32_t *ids = slm_cli_tokenize(m, text ? text : o.prompt, len, !o.no_bos, o.parse_special, &n);
    if (!ids) goto done;
    if (o.ids) {
        if (!slm_cli_write("[", 1)) goto done;
        for (int i = 0; i < n; i++) {
            char num[24];
            int l = snprintf(num, sizeof num, "%s%d", i ? ", " : "", ids[i]);
            if (!slm_cli_write(num, (size_t)l)) goto done;
        }
        if (!slm_cli_write("]\n", 2)) goto done;
    } else {
        int cap = 256;
        char *piece = malloc((size_t)cap);
        line = malloc((size_t)cap * 4 + 32);
        if (!piece || !line) {
            free(piece);
            fprintf(stderr, "slm: out of memory\n");
            goto done;
        }
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            int l = slm_token_to_piece(m, ids[i], piece, cap);
            if (l < 0) {
                /* a piece longer than the buffer: its length is -l */
                char *p2 = realloc(piece, (size_t)-l), *l2 = p2 ? realloc(line, (size_t)-l * 4 + 32) : NULL;
                if (p2) piece = p2;
                if (l2) line = l2;
                if (!p2 || !l2) {
                    fprintf(stderr, "slm: out of memory\n");
                    ok = false;
                    break;
                }
                cap = -l;
                l = slm_token_to_piece(m, ids[i], piece, cap);
            }
            size_t o2 = 0;
            if (!o.pieces) o2 = (size_t)sprintf(line, "%d\t'", ids[i]);
            o2 += escape_piece(piece, (size_t)l, line + o2);
            if (!o.pieces) line[o2++] = '\'';
            line[o2++] = '\n';
            ok = slm_cli_write(line, o2);
        }
        free(piece);
        if (!ok) goto done;
    }
    fprintf(stderr, "slm: %d tokens\n", n);
    rc = 0;
done:
    free(line);
    free(ids);
    free(text);
    slm_model_free(m);
    return rc;
}
