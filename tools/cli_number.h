/* Strict parsing of numbers given on a command line, shared by slm (tools/) and slm-bench (bench/), so that
 * both refuse the same nonsense the same way. The whole string must be the number: no empty string, no
 * leading blank, no trailing characters ("12abc", "4 "), no overflow, no NaN or infinity. strtol and strtod
 * alone accept all of these in one way or another (an empty string as 0, "12abc" as 12, "-1" as
 * ULLONG_MAX for strtoull), and a NaN converted to an integer type is undefined behaviour.
 *
 * On failure each returns false and writes why into why[0..why_len) ("not a whole number", "out of
 * range 1..1024"), for a message of the form "OPTION: 'VALUE' is WHY". Depends on the C library alone. */
#ifndef SLM_CLI_NUMBER_H
#define SLM_CLI_NUMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A decimal integer in [lo, hi] (an optional leading '-' or '+'). */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out, char *why, size_t why_len);
/* A decimal integer in [0, UINT64_MAX] (a seed): a leading '-' is refused, not wrapped around. */
bool cli_parse_u64(const char *s, uint64_t *out, char *why, size_t why_len);
/* A finite decimal number (strtod's syntax without "nan" and "inf"); the range is the caller's. */
bool cli_parse_double(const char *s, double *out, char *why, size_t why_len);
/* A byte count: a finite number >= 0 with an optional K, M or G suffix (powers of 1024; "KiB", "KB", "K"
 * alike), at most SIZE_MAX bytes: "4G", "512MiB", "1000000", "1.5G". */
bool cli_parse_size(const char *s, size_t *out, char *why, size_t why_len);

#endif
