/* Shared helpers of the C tests: checks that count failures, seeded random data, NMSE and cosine, fixture paths. */
#ifndef SLM_TEST_UTIL_H
#define SLM_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLM_TEST_SKIP 77

static int slm_test_failures = 0;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                                   \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            slm_test_failures++;                                                                                       \
        }                                                                                                              \
    } while (0)

/* Ends a test: prints a summary line and returns the exit code. */
static inline int slm_test_finish(const char *name) {
    if (slm_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, slm_test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

/* xorshift64*: reproducible random data without global state. */
static inline uint64_t slm_test_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
static inline float slm_test_randf(uint64_t *s) { /* uniform in [-1, 1) */
    return (float)((slm_test_rand(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static inline void slm_test_fill(float *x, int64_t n, uint64_t *s, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = slm_test_randf(s) * scale;
}

/* Normalised mean squared error of a against the reference b. */
static inline double slm_test_nmse(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* Cosine similarity of two logit vectors (how the model-level tests compare a device's logits with the CPU's). */
static inline double slm_test_cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa * bb) + 1e-30);
}

/* Path of a fixture model under $SLM_TEST_MODELS, or NULL (caller skips) when absent. */
static inline const char *slm_test_model(const char *file, char *buf, size_t len) {
    const char *dir = getenv("SLM_TEST_MODELS");
    if (!dir) return NULL;
    snprintf(buf, len, "%s/%s", dir, file);
    FILE *f = fopen(buf, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}

#endif
