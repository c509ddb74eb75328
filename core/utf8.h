/* UTF-8 for the tokenizer's parts: validating, measuring, encoding and decoding single characters. */
#ifndef SLM_UTF8_H
#define SLM_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Classifies the sequence at s[0..n): 1 = complete and valid (*seq = its length), 0 = a valid but
 * incomplete prefix, -1 = invalid (*seq = 1). Overlongs, surrogates and code points past U+10FFFF are
 * invalid. */
static inline int slm_utf8_check(const unsigned char *s, size_t n, int *seq) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    *seq = 1;
    if (c < 0x80) return 1;
    if (c < 0xc2) return -1;
    if (c < 0xe0) need = 2;
    else if (c < 0xf0) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c < 0xf5) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (s[i] < lo_i || s[i] > hi_i) return -1;
    }
    *seq = need;
    return 1;
}

/* Length of the character at s (1 for a byte that does not start a complete valid sequence). */
static inline int slm_utf8_char_len(const unsigned char *s, size_t n) {
    int seq;
    return slm_utf8_check(s, n, &seq) == 1 ? seq : 1;
}

static inline int slm_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the character at s (which utf8_check found valid and complete, seq bytes long). */
static inline uint32_t slm_utf8_decode(const unsigned char *s, int seq) {
    if (seq == 1) return s[0];
    uint32_t cp = s[0] & (0x7f >> seq);
    for (int i = 1; i < seq; i++) cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

#endif
