#include "cli_number.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Refuses what the strto* functions would skip or take as 0: an empty string and a leading blank. */
static bool starts_well(const char *s, char *why, size_t why_len) {
    if (!s || !*s) {
        snprintf(why, why_len, "empty");
        return false;
    }
    if (isspace((unsigned char)*s)) {
        snprintf(why, why_len, "not a number (leading blank)");
        return false;
    }
    return true;
}

bool cli_parse_int(const char *s, long long lo, long long hi, long long *out, char *why, size_t why_len) {
    if (!starts_well(s, why, why_len)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end) {
        snprintf(why, why_len, "not a whole number");
        return false;
    }
    if (errno == ERANGE || v < lo || v > hi) {
        snprintf(why, why_len, "out of range %lld..%lld", lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out, char *why, size_t why_len) {
    if (!starts_well(s, why, why_len)) return false;
    /* strtoull negates a leading '-' into a huge value: "-1" would be accepted as 18446744073709551615 */
    if (*s == '-') {
        snprintf(why, why_len, "out of range 0..%llu", (unsigned long long)UINT64_MAX);
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end) {
        snprintf(why, why_len, "not a whole number");
        return false;
    }
    if (errno == ERANGE || v > UINT64_MAX) {
        snprintf(why, why_len, "out of range 0..%llu", (unsigned long long)UINT64_MAX);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* The number at the start of s in *v and where it ends in *end; false (with why) when there is none or it is
 * not finite ("nan", "inf", "1e999"). */
static bool lead_double(const char *s, double *v, char **end, char *why, size_t why_len) {
    if (!starts_well(s, why, why_len)) return false;
    errno = 0;
    *v = strtod(s, end);
    if (*end == s) {
        snprintf(why, why_len, "not a number");
        return false;
    }
    if (!isfinite(*v)) {
        snprintf(why, why_len, "not a finite number");
        return false;
    }
    return true;
}

bool cli_parse_double(const char *s, double *out, char *why, size_t why_len) {
    double v;
    char *end;
    if (!lead_double(s, &v, &end, why, why_len)) return false;
    if (*end) {
        snprintf(why, why_len, "not a number");
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_size(const char *s, size_t *out, char *why, size_t why_len) {
    double v;
    char *end;
    if (!lead_double(s, &v, &end, why, why_len)) return false;
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K': mul = 1024.0; break;
    case 'm':
    case 'M': mul = 1024.0 * 1024; break;
    case 'g':
    case 'G': mul = 1024.0 * 1024 * 1024; break;
    default: break;
    }
    if (mul > 1) {
        end++;
        if (*end == 'i') end++;
        if (*end == 'B') end++;
    } else if (*end == 'B') end++;
    if (*end) {
        snprintf(why, why_len, "not a size (a number with an optional K, M or G)");
        return false;
    }
    /* (double)SIZE_MAX rounds up to 2^64 on 64-bit hosts: a product equal to it does not fit either, and
     * converting a double that does not fit into size_t is undefined behaviour */
    double bytes = v * mul;
    if (v < 0 || bytes >= (double)SIZE_MAX) {
        snprintf(why, why_len, "out of range (0 to %zu bytes)", (size_t)SIZE_MAX);
        return false;
    }
    *out = (size_t)bytes;
    return true;
}
